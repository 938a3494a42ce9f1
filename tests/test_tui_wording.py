"""Small wording defects at the desk (issue 16): plurals, the sort order said the right way round,
a help screen for people rather than programmers, and facts' dates in the UK's local format."""

from __future__ import annotations

import io
import re
from datetime import UTC, date, datetime, timedelta
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
from tui.formatting import age_on, fact_text, plural
from tui.preview import PreviewPane
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
        assert "14 Mar 2017 (age 9)" in facts  # on Sunday 22 Nov 2026, the desk's day
        assert "2026-07-04T23:30" not in facts and "2017-03-14" not in facts
        assert re.search(r"Police ref +2026-07-04", facts)  # not a date fact: exactly as written


def test_plurals_and_fact_dates_as_values() -> None:
    assert plural(1, "minute") == "1 minute" and plural(2, "minute") == "2 minutes"
    assert plural(1, "event") == "1 event" and plural(1_204, "entry", "entries") == "1,204 entries"
    london = ZoneInfo("Europe/London")
    assert fact_text("child_dob", "14/03/2017", london) == "14/03/2017"  # typed: kept as typed
    assert fact_text("incident_at", "2026-11-22T20:30:00", london) == "Sun 22 Nov 2026 20:30"
    assert fact_text("incident_at", "last Tuesday", london) == "last Tuesday"


def test_a_date_of_birth_shows_the_age_on_the_desks_day_in_the_schools_zone() -> None:
    london = ZoneInfo("Europe/London")
    sunday = datetime(2026, 11, 22, 22, 0, tzinfo=UTC)
    assert fact_text("child_dob", "2017-03-14", london, sunday) == "14 Mar 2017 (age 9)"
    # The day before the birthday, the day itself, the day after.
    assert fact_text("child_dob", "2016-11-23", london, sunday) == "23 Nov 2016 (age 9)"
    assert fact_text("child_dob", "2016-11-22", london, sunday) == "22 Nov 2016 (age 10)"
    assert fact_text("child_dob", "2016-11-21", london, sunday) == "21 Nov 2016 (age 10)"
    # 23:30 UTC on 22 Nov in a zone already on the 23rd: the school's day decides.
    late = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)
    tokyo = ZoneInfo("Asia/Tokyo")
    assert fact_text("child_dob", "2016-11-23", london, late) == "23 Nov 2016 (age 9)"
    assert fact_text("child_dob", "2016-11-23", tokyo, late) == "23 Nov 2016 (age 10)"
    # Typed in another shape, or not a date at all: as typed, no age. No clock: no age.
    assert fact_text("child_dob", "14/03/2017", london, sunday) == "14/03/2017"
    assert fact_text("child_dob", "2017-02-30", london, sunday) == "2017-02-30"
    assert fact_text("child_dob", "2017-03-14", london) == "14 Mar 2017"
    # Not yet born (a typing slip): the date, no age. Not a date of birth: no age.
    assert fact_text("child_dob", "2027-01-05", london, sunday) == "5 Jan 2027"
    assert fact_text("incident_at", "2026-11-20", london, sunday) == "20 Nov 2026"


def test_born_on_29_february() -> None:
    leap = date(2016, 2, 29)
    assert age_on(leap, date(2027, 2, 28)) == 10  # no 29th in 2027: a year older on 1 March
    assert age_on(leap, date(2027, 3, 1)) == 11
    assert age_on(leap, date(2028, 2, 28)) == 11
    assert age_on(leap, date(2028, 2, 29)) == 12
    assert age_on(leap, leap) == 0 and age_on(leap, date(2016, 2, 28)) is None
    london = ZoneInfo("Europe/London")
    at = datetime(2027, 2, 28, 12, tzinfo=UTC)
    assert fact_text("child_dob", "2016-02-29", london, at) == "29 Feb 2016 (age 10)"


async def test_the_preview_shows_the_age_beside_a_date_of_birth(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path / "ws")
    await seed_desk(workspace, hostile=False)
    app = make_app(workspace, as_email="dsl@example.org", clock=FakeClock())
    async with app.run_test(size=(120, 34)) as pilot:
        await unlock(pilot)
        pane = app.queue_screen.query_one(PreviewPane)
        table = app.queue_screen.query_one(CaseList)
        for row in range(table.row_count):
            table.move_cursor(row=row)
            await settle(pilot)
            if "Date of birth" in plain(pane):
                break
        await wait_for(pilot, lambda: "Date of birth" in plain(pane))
        assert "Date of birth: 14 Mar 2017 (age 9)" in plain(pane)
