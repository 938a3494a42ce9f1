"""`sgalert case show` shows what the desk shows: the statutory clocks counting down, and with
`--original` the sealed message as it arrived, safe to read in a terminal (a real subprocess,
real Argon2id, a real store, messages ingested as a mailbox would deliver them)."""

from __future__ import annotations

import base64
import json
import re
import sqlite3
from contextlib import closing
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tests.test_cli import Cli

pytestmark = pytest.mark.slow

DSL = ("--as", "dsl@example.org")
CHAIR = ("--as", "chair@example.org")
MO = ("--as", "mo@example.org")
LONDON = ZoneInfo("Europe/London")

# Terminal control in every place a stranger can put it: an RFC 2047 subject hiding a clear-screen
# and a right-to-left override, a base64 body with an OSC 52 clipboard write, a C1 CSI, a bare
# carriage return that would overwrite the line, and a line dressed as one of sgalert's own.
HOSTILE_BODY = (
    "Notice for the DSL.\r\n"
    "\x1b]52;c;ZWNobyBwd25lZA==\x07 clipboard\r\n"
    "\x9b31m C1 red and \u202eevil\u202c bidi\r\n"
    "overwrite me\rHIDDEN\r\n"
    "[1.2] application/pdf  (a line that pretends to be a part)\r\n"
)
SUBJECT = base64.b64encode("Notice \x1b[2J\u202eezilaer".encode()).decode()


def hostile_message() -> bytes:
    body = base64.b64encode(HOSTILE_BODY.encode()).decode()
    return (
        "From: Example Police <encompass@police.example.org>\r\n"
        "To: dsl@example.org\r\n"
        f"Subject: =?utf-8?b?{SUBJECT}?=\r\n"
        "Message-ID: <hostile-1@police.example.org>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b1"\r\n'
        "\r\n"
        "--b1\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        f"{body}\r\n"
        "--b1\r\n"
        'Content-Type: application/pdf; name="notice.pdf"\r\n'
        'Content-Disposition: attachment; filename="notice.pdf"\r\n'
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        f"{base64.b64encode(b'%PDF-1.7 invented').decode()}\r\n"
        "--b1--\r\n"
    ).encode()


def huge_message() -> bytes:
    lines = "".join(f"line {n:06d} of a very long notice\r\n" for n in range(6_000))
    return (
        "From: Example Police <encompass@police.example.org>\r\n"
        "Subject: A long notice\r\n"
        "Message-ID: <huge-1@police.example.org>\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\n'
        "\r\n"
        f"{lines}THE LAST LINE\r\n"
    ).encode()


def about_the_head() -> bytes:
    return (
        b"From: Riley Reporter <riley.reporter@example.org>\r\n"
        b"Subject: A concern about the headteacher\r\n"
        b"Message-ID: <whistle-head-1@example.org>\r\n"
        b'Content-Type: text/plain; charset="utf-8"\r\n'
        b"\r\n"
        b"I am worried about something the headteacher did.\r\n"
    )


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> tuple[Cli, dict[str, str]]:
    """A workspace with a DSL, a chair and a monitoring officer, and four cases: a hostile
    notice, a huge one, a whistleblowing report about the head, and one phoned in long ago."""
    root = tmp_path_factory.mktemp("show")
    tool = Cli(root / "ws")
    tool.run("init", "--school-name", "Example First School")
    for name, email, role in [
        ("Dana Example", "dsl@example.org", "dsl"),
        ("Casey Example", "chair@example.org", "chair"),
        ("Morgan Example", "mo@example.org", "monitoring-officer"),
    ]:
        if role == "dsl":  # the first person, then added by them
            tool.run(
                *("user", "add", "--first", "--name", name, "--email", email, "--role", role),
                passphrase=f"{role}-passphrase",
            )
        else:
            tool.run(
                *("user", "add", "--name", name, "--email", email, "--role", role),
                *("--by", "dsl@example.org"),
                passphrase="dsl-passphrase",
                new_passphrase=f"{role}-passphrase",
            )
    refs = {}
    for key, source, raw in [
        ("hostile", "encompass", hostile_message()),
        ("huge", "encompass", huge_message()),
        ("whistle", "whistle", about_the_head()),
    ]:
        path = root / f"{key}.eml"
        path.write_bytes(raw)
        made = tool.run("ingest", str(path), "--source", source, "--json")
        refs[key] = json.loads(made.stdout)["ref"]
    tool.run(
        *("case", "new", "--source", "encompass", *DSL, "--caller", "PC 0000, Example Police"),
        *("--text", "-", "--received-at", "2026-11-22T21:55:00Z"),
        passphrase="dsl-passphrase",
        stdin="child_name: Ada Invented\n\nPhoned in.\n",
    )
    listed = json.loads(tool.run("cases", "list", "--json").stdout)
    refs["phoned"] = next(c["ref"] for c in listed if "manual-entry" in c["flags"])
    return tool, refs


def audit_rows(tool: Cli, action: str) -> list[tuple[str, str]]:
    with closing(sqlite3.connect(tool.workspace / "sgalert.db")) as db:
        return db.execute("SELECT actor, detail FROM audit WHERE action = ?", (action,)).fetchall()


def test_original_neutralises_every_escape(desk: tuple[Cli, dict[str, str]]) -> None:
    tool, refs = desk
    out = tool.run(
        "case", "show", refs["hostile"], "--original", *DSL, passphrase="dsl-passphrase"
    ).stdout
    for unsafe in ("\x1b", "\x07", "\x9b", "\u202e", "\u202c", "\r"):
        assert unsafe not in out
    # Shown as what they are, decoded: the subject's words, the body's text, each escape visible.
    assert "Subject: Notice \\x1b[2J\\u202eezilaer" in out
    assert "| \\x1b]52;c;ZWNobyBwd25lZA==\\x07 clipboard" in out
    assert "| \\x9b31m C1 red and \\u202eevil\\u202c bidi" in out
    assert "| overwrite me\\x0dHIDDEN" in out
    # The tree: the container, its text part decoded, the PDF named but not dumped.
    assert "[1] multipart/mixed" in out
    assert "  [1.1] text/plain" in out and "  [1.2] application/pdf" in out
    assert 'filename="notice.pdf"' in out and "%PDF" not in out
    # The message's own lines are marked as its own: a line cannot pass for a part.
    assert "| [1.2] application/pdf  (a line that pretends to be a part)" in out
    assert [d for a, d in audit_rows(tool, "original-read") if a == "dsl@example.org"]


def test_original_is_capped_unless_full(desk: tuple[Cli, dict[str, str]]) -> None:
    tool, refs = desk
    capped = tool.run(
        "case", "show", refs["huge"], "--original", *DSL, passphrase="dsl-passphrase"
    ).stdout
    assert "THE LAST LINE" not in capped
    assert len(capped) < 64 * 1024 + 200
    assert capped.rstrip().endswith("add --full to see all of it")
    full = tool.run(
        "case", "show", refs["huge"], "--original", "--full", *DSL, passphrase="dsl-passphrase"
    ).stdout
    assert "| THE LAST LINE" in full and "--full" not in full
    assert "| line 005999 of a very long notice" in full


def test_whistle_original_only_for_the_identity_compartment(
    desk: tuple[Cli, dict[str, str]],
) -> None:
    tool, refs = desk
    ref = refs["whistle"]
    # The chair reads a report about the head, but not who made it: the original names them.
    shown = tool.run("case", "show", ref, *CHAIR, passphrase="chair-passphrase").stdout
    assert "riley" not in shown.lower()
    refused = tool.run(
        "case", "show", ref, "--original", *CHAIR, passphrase="chair-passphrase", check=False
    )
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr == (
        f"sgalert: chair@example.org is not entitled to the original message of case {ref}"
        " (it is sealed with the reporter's identity)\n"
    )
    assert ("chair@example.org", '{"action":"read-original","key":"identity"}') in audit_rows(
        tool, "refused"
    )
    seen = tool.run(
        "case", "show", ref, "--original", *MO, passphrase="monitoring-officer-passphrase"
    ).stdout
    assert "From: Riley Reporter <riley.reporter@example.org>" in seen


def test_original_of_a_phoned_case_and_bad_combinations(
    desk: tuple[Cli, dict[str, str]],
) -> None:
    tool, refs = desk
    phoned = tool.run(
        "case", "show", refs["phoned"], "--original", *DSL,
        passphrase="dsl-passphrase", check=False,
    )  # fmt: skip
    assert phoned.returncode == 1
    assert phoned.stderr == (
        f"sgalert: case {refs['phoned']} has no original message (it was recorded by hand)\n"
    )
    full_alone = tool.run(
        "case", "show", refs["phoned"], "--full", *DSL, passphrase="dsl-passphrase", check=False
    )
    assert full_alone.returncode == 1 and "Traceback" not in full_alone.stderr
    assert "--full" in full_alone.stderr


def local(iso: str) -> str:
    moment = datetime.fromisoformat(iso).astimezone(LONDON)
    return f"{moment:%a} {moment.day} {moment:%b %H:%M}"


def test_clocks_show_local_due_times_and_countdowns(desk: tuple[Cli, dict[str, str]]) -> None:
    tool, refs = desk
    as_dsl = (*DSL, "--json")
    ref = refs["phoned"]
    (clock,) = json.loads(
        tool.run("case", "show", ref, *as_dsl, passphrase="dsl-passphrase").stdout
    )["clocks"]
    text = tool.run("case", "show", ref, *DSL, passphrase="dsl-passphrase").stdout
    assert "Clocks (times in Europe/London):" in text
    assert "  Read before the next school day\n" in text
    # Received on a Sunday night in November, due the Monday morning: reading it weeks later
    # meets the clock, and the line says by how much it was late.
    met = rf"met {re.escape(local(clock['met_at']))}, \d+d \d\dh late"
    assert re.search(rf"\n    due {re.escape(local(clock['due_at']))}  {met}\n", text)

    tool.run(
        "clock", "start", ref, "--kind", "lado-1-working-day", *DSL, passphrase="dsl-passphrase"
    )
    clocks = json.loads(tool.run("case", "show", ref, *as_dsl, passphrase="dsl-passphrase").stdout)[
        "clocks"
    ]
    by_kind = {c["kind"]: c for c in clocks}
    text = tool.run("case", "show", ref, *DSL, passphrase="dsl-passphrase").stdout
    encompass = by_kind["encompass-before-school-day"]
    lado = by_kind["lado-1-working-day"]
    # Reading the notice met that clock; it still shows when.
    assert f"due {local(encompass['due_at'])}  met {local(encompass['met_at'])}" in text
    # A LADO referral's working day counts down in days and hours, or hours and minutes.
    assert re.search(
        rf"  LADO within 1 working day\n    due {re.escape(local(lado['due_at']))}  "
        r"(SOON: )?(\d+d \d\dh|\d+h \d\dm|\d+m \d\ds) left\n",
        text,
    )


def test_a_message_intake_would_not_parse_is_shown_as_escaped_raw_text() -> None:
    """A notice over intake's part limit (a flood of parts, as a malformed case holds) is not
    handed to the parser: its raw text is shown, still escaped and marked as the message's."""
    from sgalert.config import ParseLimits
    from sgalert.desk.original import render_original

    parts = "".join("--b\r\nContent-Type: text/plain\r\n\r\npart\r\n" for _ in range(30))
    raw = (
        'Subject: many parts\x1b[5m\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        f"{parts}--b--\r\n"
    ).encode()
    shown = render_original(raw, ParseLimits(max_parts=2))
    assert "Its MIME structure is not shown: message has more than 20 MIME parts" in shown
    assert "| Subject: many parts\\x1b[5m" in shown and "\x1b" not in shown
    assert "[1] multipart/mixed" not in shown


def test_next_step_is_printed_after_the_header_and_in_json(
    desk: tuple[Cli, dict[str, str]],
) -> None:
    """The desk's "what to do now", in the school's words, with its deadline as a local time."""
    tool, refs = desk
    ref = refs["whistle"]
    mo = (*MO, "--json")
    data = json.loads(
        tool.run("case", "show", ref, *mo, passphrase="monitoring-officer-passphrase").stdout
    )
    text = tool.run("case", "show", ref, *MO, passphrase="monitoring-officer-passphrase").stdout
    words = (
        "Whistleblowing: open it: it is about the headteacher, for the chair and Monitoring Officer"
    )
    assert data["next_step"]["text"] == words
    due = datetime.fromisoformat(data["next_step"]["due_at"]).astimezone(LONDON)
    at = local(data["next_step"]["due_at"])
    # The line after the header; the year is named only when it is not this year's.
    assert text.splitlines()[2] in (
        f"next step: {words} before {at}",
        f"next step: {words} before {at[:-6]} {due.year} {at[-5:]}",
    )
    # An Encompass notice without a time to meet still asks for the class teacher to be told.
    text = tool.run("case", "show", refs["hostile"], *DSL, passphrase="dsl-passphrase").stdout
    assert (
        text.splitlines()[2] == "next step: Encompass: read the notice and tell the class teacher"
    )
