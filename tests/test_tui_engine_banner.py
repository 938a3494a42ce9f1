"""The desk's engine banner knows as soon as `sgalert status` does.

The engine renews a 15-second lease every 5 seconds. A lease that ran out unrenewed means the
engine died or hangs; no lease at all means it stopped. Either way nobody is being paged, and the
desk must say so at once (on mount and on the next poll), not a minute later. The engine is played
by a second connection writing the lease row, as the real one does from its own process.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from textual.widgets import Static

from sgalert.clock import iso
from sgalert.desk.views import DEFAULT_LEASE
from sgalert.engine.serve import LEASE_SECONDS
from sgalert.workspace import Workspace
from tui.app import SgalertApp, make_app

from .test_tui_desk import plain
from .test_tui_support import NOW, FakeClock, make_workspace, seed_desk, settle, wait_for

SIZE = (80, 24)


@pytest.fixture
async def workspace(tmp_path: Path) -> Workspace:
    workspace = make_workspace(tmp_path / "ws")
    await seed_desk(workspace, hostile=False)
    return workspace


def engine_beats(workspace: Workspace, at: datetime) -> None:
    """What the engine's lease keeper writes: a heartbeat and a lease of LEASE_SECONDS."""
    with sqlite3.connect(workspace.store_path) as db:
        db.execute(
            "INSERT INTO engine_lease (id, holder, expires_at, heartbeat_at) VALUES (1, ?, ?, ?)"
            " ON CONFLICT(id) DO UPDATE SET expires_at = excluded.expires_at,"
            " heartbeat_at = excluded.heartbeat_at",
            ("engine.test:4242", iso(at + timedelta(seconds=LEASE_SECONDS)), iso(at)),
        )
    db.close()


def engine_stops(workspace: Workspace) -> None:
    """A clean stop deletes the lease (Engine.release_lease)."""
    with sqlite3.connect(workspace.store_path) as db:
        db.execute("DELETE FROM engine_lease")
    db.close()


def engine_banner(app: SgalertApp) -> str | None:
    texts = [plain(s) for s in app.queue_screen.query(".banner").results(Static)]
    found = [t for t in texts if t.startswith("ENGINE")]
    return found[0] if found else None


def test_the_desk_and_the_engine_agree_on_the_lease() -> None:
    assert timedelta(seconds=LEASE_SECONDS) == DEFAULT_LEASE


async def test_a_lapsed_lease_shows_on_mount(workspace: Workspace) -> None:
    engine_beats(workspace, NOW - timedelta(seconds=20))  # killed 20 s ago
    app = make_app(workspace, as_email="dsl@example.org", clock=FakeClock(), poll_seconds=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        banner = engine_banner(app)
        assert banner is not None and banner.startswith("ENGINE SILENT: last heartbeat 0m 20s ago")


async def test_an_engine_that_stops_beating_shows_within_a_poll(workspace: Workspace) -> None:
    clock = FakeClock()
    engine_beats(workspace, NOW)
    app = make_app(workspace, as_email="dsl@example.org", clock=clock, poll_seconds=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert engine_banner(app) is None
        clock.advance(timedelta(seconds=10))  # two renewals missed: still within the lease
        await pilot.pause(0.2)
        assert engine_banner(app) is None
        clock.advance(timedelta(seconds=6))  # the lease has run out
        await wait_for(pilot, lambda: engine_banner(app) is not None, within=5)
        assert str(engine_banner(app)).startswith("ENGINE SILENT: last heartbeat 0m 16s ago")
        engine_beats(workspace, clock())  # a standby engine takes over
        await wait_for(pilot, lambda: engine_banner(app) is None, within=5)


async def test_an_engine_that_stops_cleanly_shows_within_a_poll(workspace: Workspace) -> None:
    engine_beats(workspace, NOW)
    app = make_app(workspace, as_email="dsl@example.org", clock=FakeClock(), poll_seconds=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert engine_banner(app) is None
        engine_stops(workspace)
        await wait_for(pilot, lambda: engine_banner(app) is not None, within=5)
        assert str(engine_banner(app)).startswith("ENGINE NOT RUNNING")
