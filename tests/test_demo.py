"""``sgalert demo`` as a newcomer runs it (``make demo`` without a terminal): a real subprocess,
a real SMTP server and Teams sink on loopback, the engine, invented notices, a reply."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sgalert.cli.demo_world import DRIP, PERSONAL
from sgalert.model import Source

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Run:
    workspace: Path
    code: int
    out: str
    err: str

    def line(self, start: str) -> str:
        (found,) = [line for line in self.out.splitlines() if line.startswith(start)]
        return found

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows from the demo's store, read as any SQLite client would (metadata only)."""
        db = sqlite3.connect(f"file:{self.workspace / 'sgalert.db'}?mode=ro", uri=True)
        try:
            return list(db.execute(sql))
        finally:
            db.close()


def run_demo(workspace: Path, *args: str) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGALERT_")}
    result = subprocess.run(
        [sys.executable, "-m", "sgalert", "demo", "--workspace", str(workspace), *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )
    return Run(workspace, result.returncode, result.stdout, result.stderr)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One twenty-second run shared by the tests below (the engine is what takes the time)."""
    return run_demo(tmp_path_factory.mktemp("demo") / "ws", "--no-tui", "--for", "20")


def test_summary_shows_every_source_both_channels_an_escalation_and_a_reply(demo: Run) -> None:
    assert demo.code == 0, demo.err
    cases = dict(re.findall(r"(\w+) (\d+)", demo.line("cases:").removeprefix("cases:")))
    assert {Source(s) for s, n in cases.items() if int(n) > 0} == set(Source)
    sent = re.fullmatch(
        r"notifications: +email (\d+) delivered \(the SMTP server took (\d+)\),"
        r" teams (\d+) delivered \(the Teams sink took (\d+)\)",
        demo.line("notifications:"),
    )
    assert sent is not None
    email_delivered, email_taken, teams_delivered, teams_taken = map(int, sent.groups())
    assert email_delivered == email_taken > 0 and teams_delivered == teams_taken > 0
    assert int(demo.line("escalations:").split()[1]) >= 1
    assert re.match(r"acknowledgements: +1 by email reply", demo.line("acknowledgements:"))
    assert "safeguarding digest" in demo.out and "7 new cases in this period." in demo.out


def test_the_store_holds_what_the_summary_says(demo: Run) -> None:
    by_source = dict(demo.query("SELECT source, count(*) FROM cases GROUP BY source"))
    delivered = dict(
        demo.query(
            "SELECT channel, count(*) FROM outbox WHERE state = 'delivered' GROUP BY channel"
        )
    )
    acks = demo.query(
        "SELECT a.actor, a.detail, c.source, c.state FROM audit a"
        " JOIN cases c ON c.id = a.case_id WHERE a.action = 'acknowledged'"
    )
    steps = [
        json.loads(d)
        for (d,) in demo.query("SELECT detail FROM audit WHERE action = 'escalation-step'")
    ]
    expected = {s: sum(1 for n in DRIP if n.source is s) for s in Source}
    assert by_source == {s.value: n for s, n in expected.items()}
    assert delivered["email"] >= len(DRIP) and delivered["teams"] >= 1
    [(actor, detail, source, state)] = acks
    assert actor == "dsl@example.org" and json.loads(detail) == {"via": "reply", "read": False}
    assert (source, state) == ("encompass", "acknowledged")
    deputy_pages = [s for s in steps if s["kind"] == "step" and s["step"] >= 1]
    assert deputy_pages and {s["target"] for s in deputy_pages} >= {"deputy"}


def test_the_smtp_server_took_real_pages_without_personal_data(demo: Run) -> None:
    mail = sorted((demo.workspace / "sent" / "email" / "new").iterdir())
    assert f"the SMTP server took {len(mail)})" in demo.line("notifications:")
    pages = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in mail]
    to_deputy = [p for p in pages if p["To"] == "deputy@example.org"]
    assert to_deputy, "an unanswered page went on to the deputy"
    assert all(p["Reply-To"] == "sgalert-replies@school.example.org" for p in pages)
    cards = [json.loads(p.read_bytes()) for p in (demo.workspace / "sent" / "teams").iterdir()]
    assert cards and all(c["type"] == "message" for c in cards)
    whistle_cards = [c for c in cards if "Whistleblowing" in json.dumps(c)]
    assert whistle_cards == [], "whistleblowing is never on a shared channel"
    everything = "\n".join(p.read_text(errors="replace") for p in mail) + json.dumps(cards)
    for word in PERSONAL:
        assert word not in everything


def test_the_hostile_message_is_a_flagged_case_and_nothing_printed_is_personal(demo: Run) -> None:
    flags = [set(json.loads(f)) for (f,) in demo.query("SELECT flags FROM cases")]
    assert any({"hostile-text", "malformed"} <= f for f in flags)
    printed = demo.out + demo.err
    assert demo.err == ""
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]", printed)
    for word in PERSONAL:
        assert word not in printed


def test_a_run_too_short_to_show_everything_says_why_in_one_line(tmp_path: Path) -> None:
    """Without a terminal (as under CI) the demo runs headless even without ``--no-tui``."""
    run = run_demo(tmp_path / "ws", "--for", "3")
    # The heading gives the seconds it ran, which a loaded machine makes 4 or 5.
    assert run.code == 1 and re.search(r"^== After \d+ s ==$", run.out, re.MULTILINE)
    assert run.err.count("\n") == 1 and run.err.startswith("sgalert demo: incomplete: no case")


def test_a_folder_that_is_not_empty_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "sgalert.toml").write_text("# a school's real config\n")
    run = run_demo(tmp_path, "--no-tui")
    assert run.code == 1 and run.out == ""
    assert run.err.count("\n") == 1 and "is not an empty folder" in run.err
    assert (tmp_path / "sgalert.toml").read_text() == "# a school's real config\n"


def test_without_the_dev_packages_the_demo_says_what_to_install(tmp_path: Path) -> None:
    blocked = "import sys; sys.modules['aiosmtpd'] = sys.modules['aiosmtpd.smtp'] = None\n"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            blocked + "from sgalert.cli.main import main; sys.exit(main(sys.argv[1:]))",
            "demo",
            "--no-tui",
            "--workspace",
            str(tmp_path / "ws"),
        ],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "needs aiosmtpd" in result.stderr
