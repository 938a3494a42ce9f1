"""kill -9 of the engine mid-escalation: after a restart every due step fires once, none twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sgalert.clock import iso
from sgalert.workspace import Workspace

from .conftest import Team, encompass_case
from .imap_helpers import wait_for

pytestmark = pytest.mark.slow

SPEED = 600.0  # one virtual minute is 0.1 s


def start_engine(workspace: Workspace, start: datetime, epoch: float) -> subprocess.Popen[bytes]:
    with open(workspace.root / "engine.log", "ab") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.engine_child",
                str(workspace.root),
                iso(start),
                str(epoch),
                str(SPEED),
            ],
            cwd=Path(__file__).parent.parent,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


async def test_kill_9_mid_escalation_then_restart_fires_each_step_once(
    team: Team, workspace: Workspace
) -> None:
    start = datetime(2026, 11, 22, 21, 55, tzinfo=UTC)
    epoch = time.time()

    def virtual_now() -> datetime:
        return start + timedelta(seconds=(time.time() - epoch) * SPEED)

    team.service._clock = virtual_now
    stored = await team.service.create_cases([encompass_case() for _ in range(4)])
    store = team.service.store

    async def fired(kind: str, step: int) -> int:
        rows = await store.fetchall(
            "SELECT count(*) FROM timers WHERE kind = ? AND step = ? AND fired_at IS NOT NULL",
            (kind, step),
        )
        return int(rows[0][0])

    first = start_engine(workspace, start, epoch)
    try:
        # Step 0 at once, the deputy step at 10 virtual minutes (1 s): kill in between.
        await wait_for(lambda: _ge(fired("step", 0), 4), what="first pages")
        await asyncio.sleep(0.3)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    assert await fired("step", 1) == 0, "killed too late: the deputy step had already fired"

    await asyncio.sleep(1.5)  # the deputy step falls due while no engine runs
    restarted_at = time.monotonic()
    second = start_engine(workspace, start, epoch)
    try:
        await wait_for(lambda: _ge(fired("step", 1), 4), within=20, what="overdue deputy step")
        overdue_after = time.monotonic() - restarted_at
        await wait_for(lambda: _ge(fired("step", 2), 4), within=20, what="the head step")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=20)
    assert overdue_after < 10

    rows = await store.fetchall(
        "SELECT case_id, kind, step FROM timers WHERE fired_at IS NOT NULL AND kind = 'step'"
    )
    counts = Counter((r[0], r[1], r[2]) for r in rows)
    assert counts and max(counts.values()) == 1, "a step fired twice"
    assert {(case.id, 0) for case in stored} <= {(c, s) for c, _, s in counts}
    keys = await store.fetchall("SELECT idempotency_key, state FROM outbox")
    assert len({k for k, _ in keys}) == len(keys)
    mail = list((workspace.root / "outbox" / "email" / "new").iterdir())
    delivered = [k for k, s in keys if s == "delivered"]
    # At least once: every delivered page is there once; a page sent when the engine stopped,
    # before it was recorded, is there too (and would be sent again, to the same file).
    assert len(delivered) <= len(mail) <= len(keys)


async def _ge(value: object, target: int) -> bool:
    assert asyncio.iscoroutine(value)
    return await value >= target


def test_child_needs_arguments() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.engine_child"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
        timeout=60,
        env={**os.environ},
    )
    assert result.returncode != 0
