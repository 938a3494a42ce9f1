"""The command line, run as a user runs it: a real subprocess, real Argon2id, a real store file."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


class Cli:
    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace

    def run(
        self,
        *args: str,
        passphrase: str | None = None,
        check: bool = True,
        stdin: str | None = None,
        new_passphrase: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SGALERT_")}
        env["SGALERT_WORKSPACE"] = str(self.workspace)
        if passphrase is not None:
            env["SGALERT_PASSPHRASE"] = passphrase
        if new_passphrase is not None:  # a newcomer's, for `user add --by`
            env["SGALERT_NEW_PASSPHRASE"] = new_passphrase
        result = subprocess.run(
            [sys.executable, "-m", "sgalert", *args],
            capture_output=True,
            text=True,
            env=env,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{args} exited {result.returncode}: {result.stderr}")
        return result

    def json(self, *args: str, passphrase: str | None = None) -> object:
        return json.loads(self.run(*args, "--json", passphrase=passphrase).stdout)


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """One workspace with a team and two cases, shared by this module's tests to save KDF time."""
    tool = Cli(tmp_path_factory.mktemp("cli") / "ws")
    tool.run("init", "--school-name", "Example First School")
    tool.run(
        *("user", "add", "--first", "--name", "Dana Example", "--email", "dsl@example.org"),
        *("--role", "dsl"),
        passphrase="dsl-passphrase",
    )
    for name, email, role in [
        ("Dev Example", "deputy@example.org", "deputy"),
        ("Harper Example", "head@example.org", "head"),
        ("Morgan Example", "mo@example.org", "monitoring-officer"),
    ]:
        tool.run(
            "user",
            "add",
            "--name",
            name,
            "--email",
            email,
            "--role",
            role,
            "--by",
            "dsl@example.org",
            passphrase="dsl-passphrase",
            new_passphrase=f"{role}-passphrase",
        )
    tool.run(
        "case",
        "new",
        "--source",
        "encompass",
        "--as",
        "dsl@example.org",
        "--caller",
        "PC 0000, Example Constabulary",
        "--text",
        "-",
        "--received-at",
        "2026-11-22T21:55:00Z",
        passphrase="dsl-passphrase",
        stdin="child_name: Ada Invented\nchild_dob: 2017-03-14\n\nPresent at incident \x1b[31m.\n",
    )
    tool.run(
        "case",
        "new",
        "--source",
        "whistle",
        "--as",
        "mo@example.org",
        "--field",
        "allegation=Invented allegation",
        "--text",
        "-",
        "--received-at",
        "2026-11-23T08:00:00Z",
        passphrase="monitoring-officer-passphrase",
        stdin="caller: Anonymous line\nreporter_name: Riley Reporter\n"
        "reporter_contact: riley@example.org\n\nAn invented allegation, as phoned in.\n",
    )
    return tool


def test_init_twice_is_refused_and_changes_nothing(cli: Cli) -> None:
    before = (cli.workspace / "sgalert.toml").read_text()
    result = cli.run("init", check=False)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "already holds" in result.stderr
    assert (cli.workspace / "sgalert.toml").read_text() == before
    assert oct((cli.workspace / "sgalert.db").stat().st_mode & 0o777) == "0o600"


def test_user_list_json(cli: Cli) -> None:
    people = cli.json("user", "list")
    assert isinstance(people, list)
    assert [(p["email"], p["role"]) for p in people] == [
        ("dsl@example.org", "dsl"),
        ("deputy@example.org", "deputy"),
        ("head@example.org", "head"),
        ("mo@example.org", "monitoring-officer"),
    ]
    assert people[3]["groups"] == {"monitoring-officer": "active", "whistle-identity": "active"}


MO_PASSPHRASE = "monitoring-officer-passphrase"


def test_cases_list_json_is_metadata_only(cli: Cli) -> None:
    # Nobody identified: no whistleblowing case is listed, nor said to exist.
    anonymous = cli.json("cases", "list")
    assert isinstance(anonymous, list) and [c["source"] for c in anonymous] == ["encompass"]
    cases = cli.json("cases", "list", "--as", "mo@example.org", passphrase=MO_PASSPHRASE)
    assert isinstance(cases, list) and len(cases) == 2
    for case in cases:
        assert {"id", "ref", "source", "state", "received_at", "flags"} <= set(case)
        assert isinstance(case["flags"], list)
    assert [c["source"] for c in cases] == ["whistle", "encompass"]
    assert cases[1]["received_at"] == "2026-11-22T21:55:00.000000Z"
    text = cli.run("cases", "list").stdout
    for secret in ("Ada", "Riley", "allegation"):
        assert secret not in text and secret not in json.dumps(cases)


def _ref(cli: Cli, source: str) -> str:
    cases = cli.json("cases", "list", "--as", "mo@example.org", passphrase=MO_PASSPHRASE)
    assert isinstance(cases, list)
    return next(str(c["ref"]) for c in cases if c["source"] == source)


def test_case_show_json(cli: Cli) -> None:
    ref = _ref(cli, "encompass")
    shown = cli.json(
        "case", "show", ref, "--as", "deputy@example.org", passphrase="deputy-passphrase"
    )
    assert isinstance(shown, dict)
    assert shown["ref"] == ref and shown["source"] == "encompass" and shown["state"] == "new"
    assert shown["fields"] == {"child_name": "Ada Invented", "child_dob": "2017-03-14"}
    assert shown["body_text"] == "Present at incident \x1b[31m."
    assert shown["attachments"] == []
    (entry,) = shown["chronology"]
    assert entry["author"] == "dsl@example.org" and entry["signature_valid"] is True
    assert {"at", "author", "text", "signature_valid"} <= set(entry)
    assert "reporter" not in shown


def test_case_show_text_escapes_terminal_controls(cli: Cli) -> None:
    ref = _ref(cli, "encompass")
    out = cli.run(
        "case", "show", ref, "--as", "head@example.org", passphrase="head-passphrase"
    ).stdout
    assert "\x1b" not in out and "\\x1b[31m" in out


def test_whistle_reporter_only_for_monitoring_officer(cli: Cli) -> None:
    ref = _ref(cli, "whistle")
    shown = cli.json(
        "case", "show", ref, "--as", "mo@example.org", passphrase="monitoring-officer-passphrase"
    )
    assert isinstance(shown, dict)
    assert shown["reporter"] == {
        "name": "Riley Reporter",
        "contact": "riley@example.org",
        "caller": "Anonymous line",  # who called is sealed with the reporter (trust item 5)
    }
    # Given on standard input, they were taken out of the facts: only the reporter holds them.
    assert list(shown["fields"]) == ["allegation"]
    assert "Riley" not in json.dumps(shown["fields"]) + json.dumps(shown["chronology"])
    refused = cli.run(
        "case", "show", ref, "--as", "dsl@example.org", passphrase="dsl-passphrase", check=False
    )
    assert refused.returncode == 2
    # Word for word what a missing case gets (the refusal is audited all the same).
    assert refused.stderr == "sgalert: no such case, or you are not entitled to it\n"
    with sqlite3.connect(cli.workspace / "sgalert.db") as db:
        rows = db.execute("SELECT actor, detail FROM audit WHERE action = 'refused'").fetchall()
    db.close()
    assert ("dsl@example.org", '{"action":"read"}') in rows


def test_wrong_passphrase_is_one_clear_line(cli: Cli) -> None:
    ref = _ref(cli, "encompass")
    result = cli.run("ack", ref, "--as", "dsl@example.org", passphrase="wrong-one", check=False)
    assert result.returncode == 1
    assert result.stderr == "sgalert: wrong passphrase for dsl@example.org\n"
    debug = cli.run(
        "--debug", "ack", ref, "--as", "dsl@example.org", passphrase="wrong-one", check=False
    )
    assert "Traceback" in debug.stderr


def test_no_passphrase_and_no_terminal_says_what_to_set(cli: Cli) -> None:
    ref = _ref(cli, "encompass")
    result = cli.run("ack", ref, "--as", "dsl@example.org", check=False)
    assert result.returncode == 1 and "SGALERT_PASSPHRASE" in result.stderr


def test_ack_note_close_then_audit_verify_and_tamper(cli: Cli) -> None:
    ref = _ref(cli, "encompass")
    assert (
        "acknowledged"
        in cli.run("ack", ref, "--as", "dsl@example.org", passphrase="dsl-passphrase").stdout
    )
    cli.run(
        "note",
        ref,
        "--as",
        "dsl@example.org",
        "--text",
        "-",
        passphrase="dsl-passphrase",
        stdin="Ada said she felt safe at school.\n",
    )
    cli.run(
        "close",
        ref,
        "--as",
        "dsl@example.org",
        "--outcome",
        "Monitored",
        "--reason",
        "No further concern after a week",
        "--i-know-argv-is-visible",
        passphrase="dsl-passphrase",
    )
    shown = cli.json("case", "show", ref, "--as", "head@example.org", passphrase="head-passphrase")
    assert isinstance(shown, dict) and shown["state"] == "closed"
    assert [e["text"] for e in shown["chronology"]][1:] == [
        "Ada said she felt safe at school.",
        "Monitored",
    ]
    verified = cli.run("audit", "verify")
    assert verified.stdout.startswith("audit chain intact: ")
    checked = int(verified.stdout.split(": ")[1].split()[0])
    assert checked > 10

    db = sqlite3.connect(cli.workspace / "sgalert.db")
    try:
        db.execute("DROP TRIGGER audit_no_update")
        db.execute("UPDATE audit SET actor = 'someone@example.org' WHERE seq = 7")
        db.commit()
    finally:
        db.close()
    broken = cli.run("audit", "verify", check=False)
    assert broken.returncode == 1
    assert broken.stderr == "sgalert: audit entry 7 does not match its hash\n"


def test_config_error_names_file_and_key(tmp_path: Path) -> None:
    tool = Cli(tmp_path / "bad")
    tool.run("init")
    config = tmp_path / "bad" / "sgalert.toml"
    config.write_text(
        config.read_text().replace('timezone = "Europe/London"', 'timezone = "Mars/Olympus"')
    )
    result = tool.run("cases", "list", check=False)
    assert result.returncode == 1
    assert result.stderr.startswith(f"sgalert: {config}: school.timezone: ")
    check = tool.run("config", "check", check=False)
    assert check.returncode == 1


def test_missing_workspace_says_how_to_start(tmp_path: Path) -> None:
    result = Cli(tmp_path / "nowhere").run("cases", "list", check=False)
    assert result.returncode == 1 and "sgalert init" in result.stderr


def test_status_without_an_engine_is_unhealthy(cli: Cli) -> None:
    result = cli.run("status", check=False)
    assert result.returncode == 1
    assert "engine: NOT RUNNING" in result.stdout
    report = json.loads(cli.run("status", "--json", check=False).stdout)
    assert report["engine"] is None and isinstance(report["unacknowledged"], list)
    for secret in ("Ada", "Riley"):
        assert secret not in result.stdout


@pytest.mark.parametrize(
    ("args", "stdin_hint"),
    [
        (("note", "{ref}", "--text", "Ada said she felt unsafe at home"), "--text -"),
        (
            (
                "case",
                "new",
                "--source",
                "encompass",
                "--caller",
                "PC 1",
                "--field",
                "child_name=Bo Invented",
            ),
            "--text -",
        ),
        (
            (
                "case",
                "new",
                "--source",
                "encompass",
                "--caller",
                "PC 1",
                "--field",
                "note=seen 14/03/2017",
            ),
            "--text -",
        ),
        (("decide", "{ref}", "--decision", "nfa", "--reason", "Bo Invented is safe"), "--reason -"),
        (
            ("decide", "{ref}", "--decision", "Bo Invented stays with Gran", "--reason", "safe"),
            "--decision -",
        ),
        (
            ("close", "{ref}", "--outcome", "Bo Invented moved away", "--reason", "moved"),
            "--outcome -",
        ),
        (
            (
                "case",
                "new",
                "--source",
                "whistle",
                "--caller",
                "anonymous",
                "--reporter-name",
                "Riley Invented",
                "--text",
                "-",
            ),
            "reporter_name:",
        ),
        (
            (
                "case",
                "new",
                "--source",
                "whistle",
                "--caller",
                "anonymous",
                "--reporter-contact",
                "07700 900123",
                "--text",
                "-",
            ),
            "reporter_contact:",
        ),
        (
            ("case", "new", "--source", "whistle", "--caller", "Riley Invented", "--text", "-"),
            "caller:",
        ),
    ],
)
def test_case_text_on_the_command_line_is_refused_and_nothing_is_recorded(
    cli: Cli, args: tuple[str, ...], stdin_hint: str
) -> None:
    """Anything on a command line is visible in ps and kept in shell history (trust model 12)."""
    ref = _ref(cli, "encompass")

    def written() -> tuple[int, int]:
        with closing(sqlite3.connect(cli.workspace / "sgalert.db")) as db:
            return (
                db.execute("SELECT COUNT(*) FROM audit").fetchone()[0],
                db.execute("SELECT COUNT(*) FROM chronology").fetchone()[0],
            )

    before = written()
    argv = [a.format(ref=ref) for a in args]
    result = cli.run(*argv, "--as", "dsl@example.org", passphrase="dsl-passphrase", check=False)
    assert result.returncode == 1, result
    assert "command line" in result.stderr and stdin_hint in result.stderr
    assert "Invented" not in result.stderr and "14/03" not in result.stderr
    assert written() == before  # nothing was recorded


def test_a_decision_and_a_closing_outcome_from_standard_input(cli: Cli) -> None:
    """Both halves of a decision on stdin (its line, a blank line, the reason); a closing
    outcome from the desk's list names nobody, so it may stand on the command line."""
    recorded = cli.run(
        "case", "new", "--source", "lesson", "--caller", "Music service office", "--text", "-",
        "--as", "dsl@example.org", passphrase="dsl-passphrase",
        stdin="Lesson ended early over a concern for Bo Invented.\n",
    )  # fmt: skip
    ref = recorded.stdout.split()[-1]
    cli.run(
        "decide", ref, "--decision", "-", "--reason", "-", "--as", "dsl@example.org",
        passphrase="dsl-passphrase",
        stdin="Bo Invented stays with his gran\n\nHis gran phoned; the home is safe.\n",
    )  # fmt: skip
    cli.run(
        "close", ref, "--outcome", "no further action", "--reason", "-", "--as",
        "dsl@example.org", passphrase="dsl-passphrase", stdin="Nothing more to do.\n",
    )  # fmt: skip
    shown = cli.json("case", "show", ref, "--as", "dsl@example.org", passphrase="dsl-passphrase")
    assert isinstance(shown, dict)
    entries = [(e["text"], e.get("reason")) for e in shown["chronology"]][-2:]
    assert entries == [
        ("Bo Invented stays with his gran", "His gran phoned; the home is safe."),
        ("no further action", "Nothing more to do."),
    ]


def test_a_note_piped_in_is_recorded(cli: Cli) -> None:
    ref = _ref(cli, "encompass")
    result = cli.run(
        "note",
        ref,
        "--as",
        "dsl@example.org",
        "--text",
        "-",
        passphrase="dsl-passphrase",
        stdin="Bo Invented's aunt phoned; the welfare check found him well.\n",
    )
    assert "added to" in result.stdout
    shown = cli.run("case", "show", ref, "--as", "dsl@example.org", passphrase="dsl-passphrase")
    assert "the welfare check found him well" in shown.stdout


def test_grant_and_revoke_a_whistleblowing_case(cli: Cli) -> None:
    """The monitoring officer grants an investigator the allegation, then takes it back."""
    ref = _ref(cli, "whistle")
    granted = cli.run(
        "grant", ref, "--to", "dsl@example.org", "--as", "mo@example.org", passphrase=MO_PASSPHRASE
    )
    assert granted.stdout == f"dsl@example.org may now read {ref}\n"
    shown = cli.json("case", "show", ref, "--as", "dsl@example.org", passphrase="dsl-passphrase")
    assert isinstance(shown, dict) and "reporter" not in shown and shown["fields"]
    passed_on = cli.run(
        "grant", ref, "--to", "deputy@example.org", "--as", "dsl@example.org",
        passphrase="dsl-passphrase", check=False,
    )  # fmt: skip
    assert passed_on.returncode == 2 and "not entitled to grant" in passed_on.stderr
    revoked = cli.run(
        "revoke", ref, "--from", "dsl@example.org", "--as", "mo@example.org",
        passphrase=MO_PASSPHRASE,
    )  # fmt: skip
    assert revoked.stdout.startswith(f"dsl@example.org may no longer read {ref}")
    refused = cli.run(
        "case", "show", ref, "--as", "dsl@example.org", passphrase="dsl-passphrase", check=False
    )
    assert refused.returncode == 2
