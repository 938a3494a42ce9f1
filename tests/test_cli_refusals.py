"""Input the command line must refuse in one line, as a person at a terminal would meet it.

Each refusal here was once a traceback, a silent wrong answer or a broken file: a date past
the calendar's end, a local time the clocks skip, a reference with a carriage return in it, a
school name that made ``init`` write a config it could not read, a desk started where there is
no terminal. Real subprocesses on a real store; the refusal is one line and nothing changed.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tomllib
from contextlib import closing
from pathlib import Path

import pytest

from sgalert.config import render_template

from .cli_helpers import ROOT, one_line, sgalert_cli
from .conftest import PASSPHRASES, Team, encompass_case

pytestmark = pytest.mark.slow

DSL = "dsl@example.org"


def root(team: Team) -> Path:
    return team.service.store.path.parent


# ----- dates the calendar cannot reach ---------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "option", "given"),
    [
        (("digest", "--date", "0001-01-01"), "--date", "0001-01-01"),
        (("digest", "--date", "9999-12-31"), "--date", "9999-12-31"),
        (("report", "--from", "9999-12-01", "--to", "9999-12-31"), "--from", "9999-12-01"),
        (("report", "--from", "2026-12-01", "--to", "9999-12-31"), "--to", "9999-12-31"),
        (("rota", "who", "--at", "9999-12-31T23:59-05:00"), "--at", "9999-12-31T23:59-05:00"),
    ],
)
async def test_a_date_out_of_range_is_one_line_not_an_overflow(
    team: Team, args: tuple[str, ...], option: str, given: str
) -> None:
    line = one_line(sgalert_cli(root(team), *args))
    assert line == (
        f"sgalert: {option} {given!r} is out of range: sgalert takes dates from 1900-01-01 to"
        " 2999-12-31"
    )


async def test_the_edges_of_the_range_still_work(team: Team) -> None:
    for day in ("1900-01-01", "2999-12-31"):
        digest = sgalert_cli(root(team), "digest", "--date", day)
        assert digest.returncode == 0, digest.stderr


# ----- local times the clocks skip or repeat ---------------------------------------------------


def cover(team: Team, start: str, end: str) -> subprocess.CompletedProcess[str]:
    return sgalert_cli(
        root(team),
        "rota",
        "cover",
        "--who",
        "deputy@example.org",
        "--from",
        start,
        "--to",
        end,
        "--as",
        DSL,
        passphrase=PASSPHRASES[DSL],
    )


async def test_a_cover_from_a_time_the_clocks_skip_is_refused_naming_the_gap(team: Team) -> None:
    line = one_line(cover(team, "2027-03-28T01:30", "2027-03-28T09:00"))
    assert line == (
        "sgalert: --from '2027-03-28T01:30' never happens in Europe/London: on Sun 28 Mar 2027"
        " the clocks go forward from 01:00 GMT to 02:00 BST; give a time before 01:00 or from"
        " 02:00"
    )
    assert await team.service.store.fetchall("SELECT id FROM rota_covers") == []


async def test_a_cover_from_a_time_the_clocks_repeat_needs_its_offset(team: Team) -> None:
    line = one_line(cover(team, "2027-10-31T01:30", "2027-10-31T09:00"))
    assert line == (
        "sgalert: --from '2027-10-31T01:30' happens twice in Europe/London: on Sun 31 Oct 2027"
        " the clocks go back from 02:00 BST to 01:00 GMT; say which with its offset:"
        " 2027-10-31T01:30+01:00 (BST, the first) or 2027-10-31T01:30+00:00 (GMT, the second)"
    )
    assert await team.service.store.fetchall("SELECT id FROM rota_covers") == []

    chosen = cover(team, "2027-10-31T01:30+01:00", "2027-10-31T09:00")
    assert chosen.returncode == 0, chosen.stderr
    rows = await team.service.store.fetchall("SELECT starts_at FROM rota_covers")
    assert [r[0] for r in rows] == ["2027-10-31T00:30:00.000000Z"]
    # The hours either side of each change are ordinary times.
    for start in ("2027-03-28T00:59", "2027-03-28T02:00", "2027-10-31T00:59", "2027-10-31T02:00"):
        assert cover(team, start, "2027-11-01T09:00").returncode == 0


# ----- references ------------------------------------------------------------------------------


@pytest.mark.parametrize("tail", ["\r", "\x0b", "\x1b[2J", "\n"])
async def test_a_reference_with_a_control_character_is_refused(team: Team, tail: str) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    given = stored.ref + tail
    result = sgalert_cli(
        root(team),
        "case",
        "hold",
        given,
        "--reason",
        "litigation",
        "--as",
        DSL,
        passphrase=PASSPHRASES[DSL],
    )
    line = one_line(result)
    assert result.returncode == 2
    assert line == (
        f"sgalert case hold: error: argument ref: {given!r} is not a case reference; write it"
        " as SG-2026-0042, or give the case's id (see sgalert case hold --help)"
    )
    assert "\x1b" not in line and "\r" not in line
    assert await team.service.store.fetchall("SELECT case_id FROM legal_holds") == []


async def test_a_reference_in_any_case_with_spaces_or_an_id_still_finds_the_case(
    team: Team,
) -> None:
    first, second = await team.service.create_cases([encompass_case(), encompass_case()])
    acked = sgalert_cli(
        root(team), "ack", f" {first.ref.lower()} ", "--as", DSL, passphrase=PASSPHRASES[DSL]
    )
    assert acked.stdout == f"{first.ref} acknowledged by {DSL}\n", acked.stderr
    by_id = sgalert_cli(root(team), "ack", second.id, "--as", DSL, passphrase=PASSPHRASES[DSL])
    assert by_id.stdout == f"{second.ref} acknowledged by {DSL}\n", by_id.stderr


# ----- the school's name ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["Example\x1b[31m School", "Example\nSchool", "Example\u202eSchool"]
)
def test_init_refuses_a_school_name_with_a_control_character(tmp_path: Path, name: str) -> None:
    workspace = tmp_path / "ws"
    result = sgalert_cli(workspace, "init", "--school-name", name)
    line = one_line(result)
    assert line.startswith(f"sgalert init: error: argument --school-name: {name!r} holds a")
    assert not workspace.exists()  # refused before anything was made


@pytest.mark.parametrize(
    "name", ['St "Mary\'s" \\ Example', "Tab\tand\x1bescape", "Line\nbreak", "Del\x7f"]
)
def test_the_template_writes_any_name_as_a_toml_string_that_reads_back(name: str) -> None:
    assert tomllib.loads(render_template(name))["school"]["name"] == name


def test_init_with_quotes_in_the_name_makes_a_workspace_that_loads(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    made = sgalert_cli(workspace, "init", "--school-name", 'St "Mary\'s" \\ Example')
    assert made.returncode == 0, made.stderr
    checked = sgalert_cli(workspace, "config", "check")
    assert "Traceback" not in checked.stderr and checked.stderr == ""


# ----- wording and usage ------------------------------------------------------------------------


async def test_an_empty_note_on_standard_input_is_said_in_plain_english(team: Team) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    result = sgalert_cli(
        root(team),
        "note",
        stored.ref,
        "--text",
        "-",
        "--as",
        DSL,
        passphrase=PASSPHRASES[DSL],
        stdin="\n",
    )
    assert one_line(result) == "sgalert: no text on standard input for the note"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("case", "new", "--source", "police", "--caller", "PC 1", "--as", DSL),
            "sgalert case new: error: argument --source: invalid choice: 'police' (choose from"
            " 'encompass', 'whistle', 'lesson') (see sgalert case new --help)",
        ),
        (
            ("case", "new", "--source", "encompass"),
            "sgalert case new: error: the following arguments are required: --as"
            " (see sgalert case new --help)",
        ),
        ((), "sgalert: error: the following arguments are required: COMMAND (see sgalert --help)"),
        (
            ("cases", "list", "--as", ""),
            "sgalert cases list: error: argument --as: give your email address (it is empty)"
            " (see sgalert cases list --help)",
        ),
        (
            ("cases", "list", "--colour", "\x1b[31m"),
            "sgalert: error: unrecognized arguments: --colour \\x1b[31m (see sgalert --help)",
        ),
    ],
)
def test_a_usage_error_is_one_line_naming_the_help(
    tmp_path: Path, args: tuple[str, ...], line: str
) -> None:
    result = sgalert_cli(tmp_path, *args)
    assert result.returncode == 2
    assert one_line(result) == line


def test_help_still_shows_the_usage_in_full(tmp_path: Path) -> None:
    shown = sgalert_cli(tmp_path, "case", "new", "--help")
    assert shown.returncode == 0 and shown.stderr == ""
    assert shown.stdout.startswith("usage: sgalert case new [-h] --source")
    assert "--received-at RECEIVED_AT" in shown.stdout


# ----- the desk without a terminal --------------------------------------------------------------


async def test_the_desk_without_a_terminal_says_so_instead_of_waiting(team: Team) -> None:
    result = sgalert_cli(root(team), "tui", "--as", DSL, timeout=30)  # it used to wait for ever
    assert one_line(result).startswith("sgalert: the desk needs a terminal: run `sgalert tui`")
    assert result.returncode == 1


# Ctrl+C at the moment a command group loads, made exact: an import hook raises the interrupt.
_INTERRUPT_WHILE_LOADING = """
import runpy, sys

class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == "sgalert.cli.cases":
            raise KeyboardInterrupt
        return None

sys.meta_path.insert(0, CtrlC())
script = sys.argv.pop(1)
if script == "-m":
    runpy.run_module("sgalert", run_name="__main__", alter_sys=True)
else:
    runpy.run_path(script, run_name="__main__")
"""


@pytest.mark.parametrize("how", ["python -m sgalert", "the sgalert script"])
def test_ctrl_c_while_the_command_loads_is_one_line(tmp_path: Path, how: str) -> None:
    """Ctrl+C in the first half second of any command printed a traceback."""
    script = shutil.which("sgalert", path=str(Path(sys.executable).parent))
    if how == "the sgalert script" and script is None:
        pytest.skip("sgalert is not installed beside this Python")
    start = "-m" if how == "python -m sgalert" else str(script)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGALERT_")}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-c", _INTERRUPT_WHILE_LOADING, start, "--workspace", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stderr) == (130, "sgalert: interrupted\n"), result


# ----- a store emptied under the workspace ------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("cases", "list"),
        ("status",),
        ("user", "add", "--first", "--name", "Eve Example", "--email", "eve@example.org"),
    ],
    ids=" ".join,
)
def test_a_store_truncated_to_nothing_is_refused_not_made_afresh(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    """SQLite takes an empty file for a new database: `cases list` said 'No cases.', and with
    no people in it anyone could add themselves as the first DSL. The file stays as it was."""
    workspace = tmp_path / "ws"
    made = sgalert_cli(workspace, "init")
    assert made.returncode == 0, made.stderr
    store = workspace / "sgalert.db"
    store.write_bytes(b"")
    if args[0] == "user":
        args = (*args, "--role", "dsl")
    line = one_line(sgalert_cli(workspace, *args, new_passphrase="eve-quartz-lantern-fable"))
    assert line == (
        f"sgalert: {store}: not an sgalert store (the file is empty: no cases, people or audit log)"
    )
    assert store.read_bytes() == b""


# ----- numbers that cannot be meant -------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("doctor", "--timeout", "0"),
            "sgalert: --timeout 0: give the seconds each mailbox or channel may take, more than 0"
            " and at most 600, e.g. --timeout 20",
        ),
        (
            ("doctor", "--timeout", "nan"),
            "sgalert: --timeout nan: give the seconds each mailbox or channel may take, more than"
            " 0 and at most 600, e.g. --timeout 20",
        ),
        (
            ("rota", "check", "--days", "99999999"),
            "sgalert: --days 99999999: check from 1 to 3660 days ahead (ten years)",
        ),
    ],
    ids=["timeout 0", "timeout nan", "days 99999999"],
)
def test_a_number_no_one_could_mean_is_refused_in_one_line(
    tmp_path: Path, args: tuple[str, ...], line: str
) -> None:
    """`doctor --timeout 0` (or nan) failed every mailbox and channel as 'no answer within 0s;
    check the host, port and firewall', sending the IT person to a firewall that was fine;
    `rota check --days 99999999` was an OverflowError traceback."""
    workspace = tmp_path / "ws"
    assert sgalert_cli(workspace, "init").returncode == 0
    assert one_line(sgalert_cli(workspace, *args)) == line


def test_a_demo_for_nan_seconds_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    result = sgalert_cli(tmp_path, "demo", "--no-tui", "--for", "nan", "--workspace", str(folder))
    assert one_line(result) == "sgalert: --for nan: give a number of seconds, e.g. --for 20"
    assert not folder.exists()


@pytest.mark.parametrize(
    "args",
    [("cases", "list"), ("config", "check"), ("doctor",), ("backup", "copy"), ("init",)],
    ids=" ".join,
)
def test_a_config_without_its_store_points_to_the_store_or_a_backup_not_init(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    """The store deleted or its disk not mounted (by default it lives apart from the config):
    every command said 'run `sgalert init`', and init refused the folder that held the config,
    a loop with no way out. Now the line says what is missing and how to get it back; init
    still refuses, and the config is untouched."""
    workspace = tmp_path / "ws"
    assert sgalert_cli(workspace, "init").returncode == 0
    (workspace / "sgalert.db").unlink()
    config = (workspace / "sgalert.toml").read_bytes()
    if args == ("backup", "copy"):
        args = ("backup", str(tmp_path / "copy"))
    result = sgalert_cli(workspace, *args)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    said = result.stderr + result.stdout
    if args == ("init",):
        assert one_line(result).endswith("already holds an sgalert workspace; nothing changed")
    else:
        assert "run `sgalert init`" not in said
        assert (
            f"{workspace / 'sgalert.db'}: the store is missing, though its config"
            f" {workspace / 'sgalert.toml'} is there; put the store back (is its disk mounted?),"
            " or restore the latest backup into a new folder: sgalert --workspace NEW restore"
            " BACKUP"
        ) in said
    assert (workspace / "sgalert.toml").read_bytes() == config
    assert not (workspace / "sgalert.db").exists() and not (tmp_path / "copy").exists()


@pytest.mark.parametrize("name", ["Eve\nExample", "Eve\tExample"], ids=["newline", "tab"])
def test_a_name_with_a_line_break_is_refused_and_nobody_is_added(tmp_path: Path, name: str) -> None:
    """A newline in a name was taken (other control characters were refused) and split every
    one-line view that names the person: `user list`, the rota, the audit in words."""
    workspace = tmp_path / "ws"
    assert sgalert_cli(workspace, "init").returncode == 0
    add = ("user", "add", "--first", "--name", name, "--email", DSL, "--role", "dsl")
    line = one_line(sgalert_cli(workspace, *add, passphrase=PASSPHRASES[DSL]))
    assert line == "sgalert: a name cannot hold control characters or terminal escapes"
    listed = sgalert_cli(workspace, "user", "list")
    assert listed.returncode == 0 and DSL not in listed.stdout


def test_workspace_and_debug_may_follow_the_command(tmp_path: Path) -> None:
    """`sgalert restore BACKUP --workspace NEW`, as restore's help puts it, was a usage error
    ('unrecognized arguments: --workspace NEW'), at the moment a school restores its records."""
    workspace = tmp_path / "ws"
    assert sgalert_cli(workspace, "init").returncode == 0
    made = sgalert_cli(workspace, "backup", str(tmp_path / "copy"))
    assert made.returncode == 0, made.stderr
    new = tmp_path / "new"
    restored = sgalert_cli(workspace, "restore", str(tmp_path / "copy"), "--workspace", str(new))
    assert restored.returncode == 0, restored.stderr
    assert (new / "sgalert.db").is_file() and (new / "sgalert.toml").is_file()
    listed = sgalert_cli(tmp_path / "elsewhere", "cases", "list", "--workspace", str(new))
    assert (listed.returncode, listed.stdout, listed.stderr) == (0, "No cases.\n", "")
    missing = sgalert_cli(workspace, "cases", "list", "--debug", "--workspace", str(tmp_path))
    assert missing.returncode == 1 and "Traceback" in missing.stderr


@pytest.mark.parametrize(
    "args", [("cases", "list"), ("status",), ("init",), ("doctor",)], ids=" ".join
)
def test_a_workspace_this_account_may_not_enter_is_one_line(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    """The engine's workspace is its service account's (0700); a DSL who points their own
    account at it got a PermissionError traceback from the first look at the config."""
    workspace = tmp_path / "locked" / "ws"
    assert sgalert_cli(workspace, "init").returncode == 0
    # Modes do not stop root: then the command runs as a user of its own namespace, who owns
    # the files (so Python runs) but holds no capability (so mode 000 stops it).
    wrapper: tuple[str, ...] = ()
    if os.geteuid() == 0:
        wrapper = ("unshare", "--user", "--map-user=65534", "--map-group=65534")
        probe = subprocess.run([*wrapper, "true"], capture_output=True, timeout=30, check=False)
        if probe.returncode != 0:
            pytest.skip("running as root, and no user namespace to run as someone else")
    (tmp_path / "locked").chmod(0o000)
    try:
        result = sgalert_cli(workspace, *args, wrapper=wrapper)
    finally:
        (tmp_path / "locked").chmod(0o700)
    said = one_line(result) if args != ("doctor",) else result.stdout.splitlines()[0]
    assert said.endswith(
        f"{workspace / 'sgalert.toml'}: cannot be reached (Permission denied); run sgalert as"
        " the account that owns the workspace, or give yours access to its folders"
    ), said
    assert "Traceback" not in result.stderr
    assert (workspace / "sgalert.db").is_file()


async def test_a_call_received_in_the_future_is_refused_and_nothing_is_recorded(
    team: Team,
) -> None:
    """A typo in --received-at (2036 for 2026, 16 for 06) recorded a call not yet made, numbered
    in its year (SG-2036-0001) and flagged as past the calendar."""
    result = sgalert_cli(
        root(team),
        *("case", "new", "--source", "encompass", "--caller", "PC 1", "--as", DSL),
        *("--received-at", "2036-01-05T10:00"),
        passphrase=PASSPHRASES[DSL],
        stdin="",
    )
    assert one_line(result) == (
        "sgalert: --received-at 2036-01-05T10:00 is in the future; give when the call came"
    )
    assert await team.service.list_cases() == []


def test_another_programs_database_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    """A workspace pointed at some other SQLite file (user_version 0, its own tables) had
    sgalert's schema migrated into it, and then opened as an empty store."""
    workspace = tmp_path / "ws"
    assert sgalert_cli(workspace, "init").returncode == 0
    store = workspace / "sgalert.db"
    store.unlink()
    with closing(sqlite3.connect(store)) as db:
        db.execute("CREATE TABLE photos (id INTEGER, path TEXT)")
        db.execute("INSERT INTO photos VALUES (1, 'sports-day.jpg')")
        db.commit()
    before = store.read_bytes()
    line = one_line(sgalert_cli(workspace, "cases", "list"))
    assert line == f"sgalert: {store}: not an sgalert store (it holds another program's database)"
    assert store.read_bytes() == before


def test_a_config_that_is_a_pipe_is_refused_not_read_for_ever(tmp_path: Path) -> None:
    """`config check` read a named pipe (or a link to /dev/zero) in sgalert.toml's place until
    something wrote to it or memory ran out; every other command said there was no workspace."""
    workspace = tmp_path / "ws"
    assert sgalert_cli(workspace, "init").returncode == 0
    config = workspace / "sgalert.toml"
    config.unlink()
    os.mkfifo(config)
    line = one_line(sgalert_cli(workspace, "config", "check", timeout=20))
    assert line == f"sgalert: {config}: is not a file; sgalert.toml must be a regular file"


def test_a_name_longer_than_a_line_is_refused_and_nobody_is_added(tmp_path: Path) -> None:
    """A 60 KB name was taken, and filled every view that names the person."""
    workspace = tmp_path / "ws"
    assert sgalert_cli(workspace, "init").returncode == 0
    name = "Eve Example " * 5_000
    add = ("user", "add", "--first", "--name", name, "--email", DSL, "--role", "dsl")
    line = one_line(sgalert_cli(workspace, *add, passphrase=PASSPHRASES[DSL]))
    assert line == f"sgalert: a name is at most 200 characters (this one has {len(name)})"
    listed = sgalert_cli(workspace, "user", "list")
    assert listed.returncode == 0 and DSL not in listed.stdout
