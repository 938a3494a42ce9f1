"""`sgalert status` is unhealthy while a channel is failing or the engine's lease has run out.

The channel is the workspace's real maildrop channel, made to fail the way a disk does (its
folder cannot be written), and the engine's real outbox sender attempts the pages. The status
is the real command in a subprocess; it names the channel and never an address.
"""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sgalert.clock import iso
from sgalert.desk.views import failing_channels
from sgalert.engine.serve import Engine

from .cli_helpers import sgalert_cli
from .conftest import Team, encompass_case
from .engine_helpers import VirtualClock

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def status(team: Team) -> tuple[int, str, dict[str, object]]:
    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return sgalert_cli(team.service.store.path.parent, "status", *extra)

    text, as_json = run(), run("--json")
    assert "Traceback" not in text.stderr + as_json.stderr
    assert text.returncode == as_json.returncode
    return text.returncode, text.stdout, json.loads(as_json.stdout)


async def paging_engine(team: Team) -> tuple[Engine, VirtualClock, Path]:
    """The engine with the workspace's own channels, holding a fresh lease, one case paged."""
    clock = VirtualClock(start=datetime.now(UTC))
    root = team.service.store.path.parent
    team.service._clock = clock
    engine = Engine(team.service, root, clock=clock, watch=False)
    assert await engine.try_lease()
    await team.service.create_cases([encompass_case()])
    await engine.tick_timers()
    return engine, clock, root / "outbox" / "email"


async def test_a_channel_that_keeps_failing_makes_status_unhealthy(team: Team) -> None:
    engine, clock, maildir = await paging_engine(team)
    maildir.mkdir(parents=True)
    (maildir / "tmp").write_text("not a folder")  # the channel cannot write: retried
    assert await engine.sender.send_due() > 0

    code, _, report = status(team)
    assert code == 0, report  # one failed attempt is a blip, not a failing channel
    assert report["failing_channels"] == []

    clock.advance(minutes=1)
    assert await engine.sender.send_due() > 0
    await engine.try_lease()
    code, text, report = status(team)
    assert code == 1
    assert [c["channel"] for c in report["failing_channels"]] == ["email"]  # type: ignore[attr-defined,index]
    line = next(line for line in text.splitlines() if line.startswith("CHANNEL FAILING"))
    assert re.match(r"CHANNEL FAILING email: [1-9]\d* page\(s\) not delivered", line)
    assert "@" not in line

    (maildir / "tmp").unlink()  # fixed: the next retry gets through
    clock.advance(minutes=5)
    assert await engine.sender.send_due() > 0
    await engine.try_lease()
    code, _, report = status(team)
    assert report["failing_channels"] == []
    assert code == 0


async def test_a_page_that_failed_for_good_counts_until_the_channel_delivers(
    team: Team,
) -> None:
    engine, clock, maildir = await paging_engine(team)
    maildir.parent.mkdir(parents=True, exist_ok=True)
    maildir.write_text("not a folder")  # NotADirectoryError: not worth retrying
    await engine.sender.send_due()
    rows = await team.service.store.fetchall("SELECT state FROM outbox")
    assert {r[0] for r in rows} == {"failed"}
    code, _, report = status(team)
    assert code == 1
    assert [c["channel"] for c in report["failing_channels"]] == ["email"]  # type: ignore[attr-defined,index]

    maildir.unlink()
    clock.advance(minutes=10)  # the case's next escalation step pages again, and it arrives
    await engine.tick_timers()
    await engine.sender.send_due()
    delivered = await team.service.store.fetchall(
        "SELECT COUNT(*) FROM outbox WHERE state = 'delivered'"
    )
    assert delivered[0][0] > 0
    assert await failing_channels(team.service.store) == []


async def test_status_judges_the_engine_by_its_lease(team: Team) -> None:
    now = datetime.now(UTC)
    async with team.service.store.write() as db:
        await db.execute(
            "INSERT INTO engine_lease (id, holder, expires_at, heartbeat_at) VALUES (1, ?, ?, ?)",
            ("engine.test:4242", iso(now - timedelta(seconds=5)), iso(now - timedelta(seconds=20))),
        )
    code, text, report = status(team)
    assert code == 1
    assert "engine: STALE" in text
    assert report["engine"]["stale"] is True  # type: ignore[index]
