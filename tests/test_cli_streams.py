"""Standard input and output as they really are: not always UTF-8, not always text, not always
open, sometimes full. Real subprocesses on a real store; a refusal is one line and the record
is as it was, since a signed chronology entry can never be taken back.
"""

from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from .cli_helpers import one_line, sgalert_cli
from .conftest import PASSPHRASES, Team, encompass_case

pytestmark = pytest.mark.slow

DSL = "dsl@example.org"


def root(team: Team) -> Path:
    return team.service.store.path.parent


def counts(team: Team) -> tuple[int, int]:
    """How many cases and chronology entries the store holds, read as another process would."""
    with closing(sqlite3.connect(team.service.store.path)) as db:
        cases = db.execute("SELECT COUNT(*) FROM cases").fetchone()[0]
        entries = db.execute("SELECT COUNT(*) FROM chronology").fetchone()[0]
    return int(cases), int(entries)


# A note saved by a Windows editor in its 'ANSI' code page; a PDF piped by mistake; a file past
# the limit. Each was stored, signed, for good (the first as lone surrogates), or a traceback.
NOT_TEXT = {
    "windows-1252": ("Pupil said the caf\xe9 was closed.\r\n".encode("cp1252"), "not UTF-8 text"),
    "binary": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n\x00\x00\x01\x02 obj", "binary data"),
    "over 1 MB": (b"The pupil said. " * 70_000, "more than 1 MB"),
}


@pytest.mark.parametrize("kind", sorted(NOT_TEXT))
@pytest.mark.parametrize("command", ["note", "case new"])
async def test_standard_input_that_is_not_text_is_refused_and_nothing_is_recorded(
    team: Team, tmp_path: Path, kind: str, command: str
) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    given, said = NOT_TEXT[kind]
    (tmp_path / "given").write_bytes(given)
    args = (
        ("note", stored.ref, "--text", "-")
        if command == "note"
        else ("case", "new", "--source", "encompass", "--caller", "PC 1", "--text", "-")
    )
    before = counts(team)
    result = sgalert_cli(
        root(team),
        *args,
        "--as",
        DSL,
        passphrase=PASSPHRASES[DSL],
        stdin_file=tmp_path / "given",
    )
    line = one_line(result)
    assert line.startswith("sgalert: standard input ") and said in line, line
    assert "nothing was recorded" in line
    assert "caf" not in line and "pupil" not in line.casefold()
    assert counts(team) == before


async def test_a_note_saved_by_notepad_reads_as_typed(team: Team, tmp_path: Path) -> None:
    """UTF-8 with a byte-order mark and CRLF line endings is text: kept without either."""
    (stored,) = await team.service.create_cases([encompass_case()])
    (tmp_path / "note.txt").write_bytes("\ufeffSpoke to Ada.\r\nShe is safe.\r\n".encode())
    noted = sgalert_cli(
        root(team),
        *("note", stored.ref, "--text", "-", "--as", DSL),
        passphrase=PASSPHRASES[DSL],
        stdin_file=tmp_path / "note.txt",
    )
    assert noted.returncode == 0, noted.stderr
    shown = sgalert_cli(
        root(team), "case", "show", stored.ref, "--as", DSL, "--json", passphrase=PASSPHRASES[DSL]
    )
    texts = [entry["text"] for entry in json.loads(shown.stdout)["chronology"]]
    assert texts[-1] == "Spoke to Ada.\nShe is safe."


# ----- standard output that cannot be written --------------------------------------------------

FULL_DISK = ("sh", "-c", 'exec "$@" >/dev/full', "sh")  # as `> list.txt` on a full disk
CLOSED = ("sh", "-c", 'exec "$@" >&-', "sh")  # as a scheduler that starts it without one


@pytest.mark.parametrize(
    ("wrapper", "said"),
    [(FULL_DISK, "could not be written (No space left on device)"), (CLOSED, "is closed")],
    ids=["full disk", "closed"],
)
@pytest.mark.parametrize(
    "args",
    [("cases", "list"), ("cases", "list", "--json"), ("status",), ("case", "show", "--as", DSL)],
    ids=" ".join,
)
async def test_output_that_cannot_be_written_is_one_line(
    team: Team, wrapper: tuple[str, ...], said: str, args: tuple[str, ...]
) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    if args[0] == "case":
        args = (*args, stored.ref)
    result = sgalert_cli(root(team), *args, passphrase=PASSPHRASES[DSL], wrapper=wrapper)
    assert one_line(result) == f"sgalert: standard output {said}" + (
        ", so what it shows is incomplete"
        if wrapper is FULL_DISK
        else ", so nothing could be shown"
    )


async def test_an_acknowledgement_with_nowhere_to_say_so_is_still_whole(team: Team) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    result = sgalert_cli(
        root(team), "ack", stored.ref, "--as", DSL, passphrase=PASSPHRASES[DSL], wrapper=CLOSED
    )
    assert one_line(result) == "sgalert: standard output is closed, so nothing could be shown"
    summary = await team.service.summary(stored.ref)
    assert summary.state.value == "acknowledged"


# ----- command-line text that is not UTF-8 ------------------------------------------------------

LATIN1 = os.fsdecode("caf\xe9".encode("latin-1"))  # as a Latin-1 terminal passes 'café'


@pytest.mark.parametrize(
    ("args", "given"),
    [
        (("note", "{ref}", "--text", LATIN1, "--i-know-argv-is-visible"), "text"),
        (("case", "new", "--source", "encompass", "--caller", f"PC {LATIN1}"), "caller"),
        (
            (
                "case",
                "new",
                "--source",
                "encompass",
                "--caller",
                "PC 1",
                "--field",
                f"school={LATIN1}",
            ),
            "field",
        ),
        (
            (
                "rota",
                "cover",
                "--who",
                f"{LATIN1}@example.org",
                "--from",
                "2036-01-01T10:00",
                "--to",
                "2036-01-02T10:00",
            ),
            "who",
        ),
    ],
    ids=["note", "caller", "field", "cover"],
)
async def test_command_line_text_that_is_not_utf8_is_refused_before_anything_is_done(
    team: Team, args: tuple[str, ...], given: str
) -> None:
    """Signed into the record as lone surrogates (a note, a caller) or a UnicodeEncodeError
    traceback (a --field, a cover's --who)."""
    (stored,) = await team.service.create_cases([encompass_case()])
    before = counts(team)
    result = sgalert_cli(
        root(team),
        *(arg.replace("{ref}", stored.ref) for arg in args),
        "--as",
        DSL,
        passphrase=PASSPHRASES[DSL],
    )
    assert one_line(result) == (
        f"sgalert: what was given for {given} is not UTF-8 text; set the terminal to UTF-8 and"
        " try again (nothing was done)"
    )
    assert counts(team) == before
