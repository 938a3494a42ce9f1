"""Small wording defects at the desk (issue 16): plurals, the sort order said the right way round,
a help screen for people rather than programmers, and facts' dates in the UK's local format."""

from __future__ import annotations

import io
import re
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from rich.console import Console
from textual.content import Content
from textual.widgets import Static

from sgalert.config import load_config
from sgalert.desk.service import CaseService
from sgalert.records.store import Store
from tui.app import SgalertApp, make_app
from tui.case_list import CaseList
from tui.formatting import fact_text, plural
from tui.screens.case import CaseScreen
from tui.screens.help import HelpScreen
from tui.screens.queue import QueueScreen

from .conftest import encompass_case
from .test_tui_support import FakeClock, make_workspace, seed_desk, settle, unlock, wait_for

SIZE = (80, 24)


def plain(widget: Static) -> str:
    visual = widget.visual
    return visual.plain if isinstance(visual, Content) else str(widget.content)


def status_line(app: SgalertApp) -> str:
    return plain(app.queue_screen.query_one("#queue-status", Static))


async def test_the_idle_lock_says_1_minute(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path / "ws")
    await seed_desk(workspace, hostile=False)
    clock = FakeClock()
    app = make_app(
        workspace, as_email="dsl@example.org", clock=clock, idle_lock_minutes=1, poll_seconds=0.05
    )
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        clock.advance(timedelta(seconds=61))
        await wait_for(pilot, lambda: app.identity is None)
        await settle(pilot)
        reason = plain(app.screen.query_one("#unlock-reason", Static))
        assert "Locked after 1 minute without a key press." in reason


async def test_the_sort_order_is_said_the_right_way_round(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path / "ws")
    await seed_desk(workspace, hostile=False)
    app = make_app(workspace, clock=FakeClock())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        assert "by priority, most urgent first" in status_line(app)
        await pilot.press("5")  # All: newest first, the values fall down the list
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, QueueScreen)
        table = screen.query_one(CaseList)
        received = [table.cell(key, "received") for key in table.keys]
        assert received[0].startswith("22 Nov 21:55") and received[-1].startswith("19 Nov")
        assert "by received ↓ newest first" in status_line(app)
        await pilot.press("S")
        await settle(pilot)
        assert "by received ↑ oldest first" in status_line(app)
        await pilot.press("s")  # deadline: the soonest at the top, the values rise
        await settle(pilot)
        assert "by deadline ↑ soonest deadline first" in status_line(app)


async def test_help_shows_what_keys_do_not_binding_ids(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path / "ws")
    refs = await seed_desk(workspace, hostile=False)
    app = make_app(workspace, as_email="dsl@example.org", clock=FakeClock())
    async with app.run_test(size=(120, 50)) as pilot:
        await unlock(pilot)
        app.open_case(refs["new"])
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        console = Console(width=120, record=True, file=io.StringIO())
        console.print(app.screen._binding_table())
        shown = console.export_text()
        assert "Add a note to the case's record, signed in your name" in shown
        assert "Lock the desk: your key is forgotten" in shown
        for internal in ("case.note", "app.lock", "case.save_attachment", "queue.open"):
            assert internal not in shown, internal


async def test_facts_show_dates_in_the_uk_format_and_local_time(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path / "ws")
    await seed_desk(workspace, hostile=False)
    store = await Store.open(workspace.store_path)
    service = CaseService(store, load_config(workspace.config_path), FakeClock())
    try:
        summer = encompass_case(
            "Gia Invented", incident_at="2026-07-04T23:30:00+00:00", police_reference="2026-07-04"
        )
        (stored,) = await service.create_cases([summer])
    finally:
        await service.close()
    app = make_app(workspace, as_email="dsl@example.org", clock=FakeClock())
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        app.open_case(stored.ref)
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, CaseScreen)
        facts = plain(screen.query_one("#facts", Static))
        assert "Sun 5 Jul 2026 00:30" in facts  # 23:30 UTC is past midnight in London (BST)
        assert "14 Mar 2017" in facts
        assert "2026-07-04T23:30" not in facts and "2017-03-14" not in facts
        assert re.search(r"Police ref +2026-07-04", facts)  # not a date fact: exactly as written


def test_plurals_and_fact_dates_as_values() -> None:
    assert plural(1, "minute") == "1 minute" and plural(2, "minute") == "2 minutes"
    assert plural(1, "event") == "1 event" and plural(1_204, "entry", "entries") == "1,204 entries"
    london = ZoneInfo("Europe/London")
    assert fact_text("child_dob", "14/03/2017", london) == "14/03/2017"  # typed: kept as typed
    assert fact_text("incident_at", "2026-11-22T20:30:00", london) == "Sun 22 Nov 2026 20:30"
    assert fact_text("incident_at", "last Tuesday", london) == "last Tuesday"
