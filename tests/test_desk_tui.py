"""The DSL's desk at 22:00 on a Sunday, driven through Textual's Pilot: acknowledging by working
(asked once per person), acknowledging from the queue (have you read it?), the preview pane
(facts for an unlocked reader, nothing when locked), the priority order with a disclosure, and
each case's next step with its deadline as a local time."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from textual.widgets import TextArea

from sgalert.config import load_config
from sgalert.desk.service import CaseService, DeskSetting
from sgalert.model import CaseState, Flag, Source
from sgalert.records.cases import FIELD_ATTACHMENTS, FIELD_BODY, FIELD_FACTS, NewCase
from sgalert.records.store import Store
from tui.app import SgalertApp
from tui.case_list import CaseList
from tui.preview import PreviewPane
from tui.screens.case import CaseScreen
from tui.screens.dialogs import ConfirmScreen, NoteScreen
from tui.screens.queue import AcknowledgeScreen

from .test_tui_desk import Desk, app_for, open_case
from .test_tui_support import FakeClock, make_workspace, seed_desk, settle, unlock, wait_for

SIZE = (120, 34)
ENCOMPASS_CLOCK = "encompass-before-school-day"


@pytest.fixture
async def desk(tmp_path: Path) -> Desk:
    workspace = make_workspace(tmp_path / "ws")
    return Desk(workspace, await seed_desk(workspace, working_confirmed=False))


async def stored(desk: Desk, ref: str) -> tuple[CaseState, str | None, bool]:
    """A case's state, who acknowledged it and whether its Encompass clock is met, read from
    the store by another connection."""
    store = await Store.open(desk.workspace.store_path)
    service = CaseService(store, load_config(desk.workspace.config_path))
    try:
        summary = await service.summary(ref)
        rows = await store.fetchall(
            "SELECT met_at FROM clocks WHERE case_id = ? AND kind = ?",
            (summary.id, ENCOMPASS_CLOCK),
        )
        return summary.state, summary.acknowledged_by, rows[0][0] is not None
    finally:
        await service.close()


def highlight(app: SgalertApp, ref: str) -> None:
    table = app.queue_screen.query_one(CaseList)
    table.move_cursor(row=table.get_row_index(ref))


def pane(app: SgalertApp) -> str:
    return str(app.queue_screen.query_one(PreviewPane).render())


# ----- acknowledge by working -----------------------------------------------------------------


async def test_working_on_a_new_case_asks_once_then_acknowledges_it(desk: Desk) -> None:
    app = app_for(desk)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        await open_case(pilot, app, desk.refs["new"])
        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)  # the first time: asked
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, NoteScreen)
        app.screen.query_one(TextArea).insert("Invented: called the class teacher.")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, CaseScreen)
        assert app.screen.view.summary.state is CaseState.ACKNOWLEDGED

        # Another new case: not asked again, the note dialog opens at once.
        await pilot.press("escape")
        await settle(pilot)
        await open_case(pilot, app, desk.refs["hostile"])
        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, NoteScreen)
    state, by, read = await stored(desk, desk.refs["new"])
    assert (state, by, read) == (CaseState.ACKNOWLEDGED, "dsl@example.org", True)
    assert (await stored(desk, desk.refs["hostile"]))[0] is CaseState.NEW  # nothing saved

    # Remembered for this person in the workspace, on the next desk too; not for the deputy.
    store = await Store.open(desk.workspace.store_path)
    service = CaseService(store, load_config(desk.workspace.config_path))
    try:
        people = {person.email: person.id for person, _ in await service.people()}
        setting = DeskSetting.ACKNOWLEDGE_BY_WORKING
        assert await service.desk_setting(people["dsl@example.org"], setting)
        assert not await service.desk_setting(people["deputy@example.org"], setting)
    finally:
        await service.close()


async def test_declining_the_confirmation_leaves_the_case_new(desk: Desk) -> None:
    app = app_for(desk)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        await open_case(pilot, app, desk.refs["new"])
        await pilot.press("d")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, CaseScreen)
    assert (await stored(desk, desk.refs["new"]))[0] is CaseState.NEW


async def test_acknowledging_from_the_queue_asks_whether_it_was_read(desk: Desk) -> None:
    app = app_for(desk)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        highlight(app, desk.refs["new"])
        await pilot.press("a")
        await settle(pilot)
        assert isinstance(app.screen, AcknowledgeScreen)
        await pilot.press("u")  # not yet read
        await settle(pilot)
        highlight(app, desk.refs["hostile"])
        await pilot.press("a")
        await settle(pilot)
        await pilot.press("y")  # I have read it
        await settle(pilot)
    # Unread: escalation stops, but the notice still has to be read before Monday's school day.
    assert await stored(desk, desk.refs["new"]) == (
        CaseState.ACKNOWLEDGED,
        "dsl@example.org",
        False,
    )
    assert await stored(desk, desk.refs["hostile"]) == (
        CaseState.ACKNOWLEDGED,
        "dsl@example.org",
        True,
    )

    # Opening the case is reading it: the requirement is met then.
    app = app_for(desk)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        await open_case(pilot, app, desk.refs["new"])
    assert (await stored(desk, desk.refs["new"]))[2]


async def test_open_it_from_the_acknowledge_question_opens_the_case(desk: Desk) -> None:
    app = app_for(desk)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        highlight(app, desk.refs["new"])
        await pilot.press("a")
        await settle(pilot)
        await pilot.press("o")
        await settle(pilot)
        assert isinstance(app.screen, CaseScreen) and app.screen.ref == desk.refs["new"]
    assert (await stored(desk, desk.refs["new"]))[:2] == (CaseState.NEW, None)


# ----- the preview pane -----------------------------------------------------------------------


async def test_the_preview_shows_facts_to_an_unlocked_reader_and_nothing_when_locked(
    desk: Desk,
) -> None:
    app = app_for(desk)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("escape")  # stay locked
        await settle(pilot)
        highlight(app, desk.refs["acknowledged"])
        await wait_for(pilot, lambda: "Locked: unlock to preview" in pane(app))
        assert "Bea" not in pane(app) and "loud" not in pane(app)

        await pilot.press("u")
        await unlock(pilot)
        await wait_for(pilot, lambda: "Bea Invented" in pane(app))
        shown = pane(app)
        assert "Date of birth: 14 Mar 2017" in shown
        assert "Read before the next school day: met" in shown
        assert "it was loud but I was in bed" in shown  # the last chronology entry
        assert "Child present at an incident" not in shown  # never the message itself

        # Moving on: the preview follows the highlight once it rests.
        highlight(app, desk.refs["new"])
        await wait_for(pilot, lambda: "Ada Invented" in pane(app))
        assert "Bea" not in pane(app)
        assert (
            "Next: Encompass: read the notice and tell the class teacher before Mon 23 Nov 08:30"
            in pane(app)
        )

        await pilot.press("ctrl+l")
        await pilot.pause()
        assert "Ada" not in pane(app)  # gone at the lock, before anything else happens
        await pilot.press("escape")
        await wait_for(pilot, lambda: "Locked: unlock to preview" in pane(app))
        assert "Ada" not in pane(app)


async def test_a_preview_of_a_case_is_audited_once_and_meets_no_clock(desk: Desk) -> None:
    app = app_for(desk, poll_seconds=0.2)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        highlight(app, desk.refs["new"])
        await wait_for(pilot, lambda: "Ada Invented" in pane(app))
        # The preview's own audit entry is a commit the store watcher sees, and the queue
        # reloads on it: an unchanged case is not previewed (nor audited) again and again.
        await pilot.pause(3.5)
        await settle(pilot)
        assert "Ada Invented" in pane(app)
    assert (await stored(desk, desk.refs["new"]))[2] is False
    store = await Store.open(desk.workspace.store_path)
    try:
        rows = await store.fetchall(
            "SELECT actor FROM audit WHERE action = 'case-previewed' AND case_id ="
            " (SELECT id FROM cases WHERE ref = ?)",
            (desk.refs["new"],),
        )
    finally:
        await store.close()
    assert [row[0] for row in rows] == ["dsl@example.org"]


# ----- ordering and the next step -------------------------------------------------------------


def disclosure_lesson(received_at: datetime) -> NewCase:
    return NewCase(
        source=Source.LESSON,
        received_at=received_at,
        origin="mailbox",
        content={
            FIELD_FACTS: json.dumps({"teacher": "Tess Teacher", "pupil": "Dee Invented"}).encode(),
            FIELD_BODY: b"Lesson ended: the pupil disclosed something (invented).",
            FIELD_ATTACHMENTS: b"[]",
        },
        flags=frozenset({Flag.DISCLOSURE}),
    )


async def test_a_disclosure_is_listed_with_the_urgent_encompass_notices(desk: Desk) -> None:
    store = await Store.open(desk.workspace.store_path)
    service = CaseService(store, load_config(desk.workspace.config_path), FakeClock())
    try:
        (case,) = await service.create_cases(
            [disclosure_lesson(datetime(2026, 11, 22, 21, 0, tzinfo=UTC))]
        )
    finally:
        await service.close()
    # Monday 09:00: the Sunday-night Encompass notices are past "before the school day".
    app = app_for(desk, FakeClock(datetime(2026, 11, 23, 9, 0, tzinfo=UTC)))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        keys = app.queue_screen.query_one(CaseList).keys
        refs = desk.refs
        # Unacknowledged and due: the two Encompass notices by deadline, the disclosure (due on
        # arrival, Sunday 21:00) before them.
        assert keys[:3] == [case.ref, refs["hostile"], refs["new"]]
        highlight(app, case.ref)
        await wait_for(pilot, lambda: "over a disclosure or risk" in pane(app))
        assert "Dee" not in pane(app)  # locked: metadata only


def test_next_step_wording_is_the_cores(desk: Desk) -> None:
    """The wording lives in the core, so the CLI can say the same: checked here on summaries."""
    from sgalert.desk.service import next_step, uk_time
    from sgalert.model import CaseSummary

    london = ZoneInfo("Europe/London")
    now = datetime(2026, 11, 22, 22, 0, tzinfo=UTC)
    due = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)
    base = CaseSummary(
        id="x", ref="SG-2026-0001", source=Source.ENCOMPASS, state=CaseState.NEW,
        received_at=now, created_at=now, updated_at=now, flags=(), assignee=None,
        acknowledged_at=None, acknowledged_by=None, closed_at=None, next_deadline=due,
        next_clock=ENCOMPASS_CLOCK,
    )  # fmt: skip
    assert uk_time(datetime(2026, 12, 7, 8, 30, tzinfo=UTC), london, now) == "Mon 7 Dec 08:30"
    assert next_step(base).said(london, now) == (
        "Encompass: read the notice and tell the class teacher before Mon 23 Nov 08:30"
    )
    lado = dataclasses.replace(base, state=CaseState.ACKNOWLEDGED, next_clock="lado-1-working-day")
    assert (
        next_step(lado).said(london, now) == "Encompass: refer to the LADO before Mon 23 Nov 08:30"
    )
    closed = dataclasses.replace(base, state=CaseState.CLOSED, next_deadline=None)
    assert next_step(closed).said(london, now) == "Encompass: closed, nothing to do"
