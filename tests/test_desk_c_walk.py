"""Found walking the desk at 22:00 on a Sunday (80x24): Escape asks before it throws away what
was typed; Next goes on to the next waiting case after a decision; the queue's flags and the
unlock dialog's button fit at 80x24; "Escalated to you" toasts go when their case is
acknowledged and never cover a dialog's buttons."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from textual.geometry import Region
from textual.notifications import Notification
from textual.pilot import Pilot
from textual.widgets import Button, Input, TextArea
from textual.widgets._toast import Toast

from sgalert.model import CaseState, CaseSummary, Source
from tui.app import SgalertApp
from tui.attention import DesktopTerminal, Escalation, escalation_text
from tui.next_case import next_ref
from tui.screens.case import CaseScreen
from tui.screens.dialogs import ConfirmScreen, DecisionScreen, NoteScreen
from tui.screens.manual import NewCaseScreen
from tui.screens.unlock import UnlockScreen

from .test_tui_attention import ACK_SCRIPT, ESCALATE_SCRIPT, run_script
from .test_tui_desk import Desk, app_for, open_case
from .test_tui_support import make_workspace, seed_desk, settle, unlock, wait_for

SIZE = (80, 24)
AT = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)
SUMMARY = CaseSummary(
    "id", "SG-2026-0001", Source.ENCOMPASS, CaseState.NEW, AT, AT, AT, (), None, None, None,
    None, None,
)  # fmt: skip


@pytest.fixture
async def desk(tmp_path: Path) -> Desk:
    workspace = make_workspace(tmp_path / "ws")
    return Desk(workspace, await seed_desk(workspace))


# ----- Escape asks before discarding ----------------------------------------------------------


async def test_escape_on_a_typed_note_asks_before_discarding_it(desk: Desk) -> None:
    app = app_for(desk)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        case = await open_case(pilot, app, desk.refs["acknowledged"])
        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, NoteScreen)
        await pilot.press(*"Bea said it was loud")
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)  # asked, not thrown away
        assert "Discard what you typed?" in str(app.screen.query_one(".dialog-title").render())
        await pilot.press("escape")  # no: back to the note, the words still there
        await settle(pilot)
        assert isinstance(app.screen, NoteScreen)
        assert app.screen.query_one("#note", TextArea).text == "Bea said it was loud"
        await pilot.press("escape", "y")  # yes: discarded
        await settle(pilot)
        assert app.screen is case


async def test_escape_on_a_typed_decision_or_phone_form_asks_an_empty_one_closes(
    desk: Desk,
) -> None:
    app = app_for(desk)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        case = await open_case(pilot, app, desk.refs["acknowledged"])
        await pilot.press("d")
        await settle(pilot)
        assert isinstance(app.screen, DecisionScreen)
        await pilot.press("escape")  # nothing typed: closes at once
        await settle(pilot)
        assert app.screen is case
        await pilot.press("d")
        await settle(pilot)
        await pilot.press(*"Monitor", "escape")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, DecisionScreen)
        assert app.screen.query_one("#decision", Input).value == "Monitor"
        await pilot.press("escape", "y")
        await settle(pilot)
        assert app.screen is case
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("n")  # the phoned notification's form: prefilled time is not typing
        await settle(pilot)
        assert isinstance(app.screen, NewCaseScreen)
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is app.queue_screen
        await pilot.press("n")
        await settle(pilot)
        await pilot.press(*"PC Example", "escape")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, NewCaseScreen)
        assert app.screen.query_one("#caller", Input).value == "PC Example"


# ----- 80x24 ----------------------------------------------------------------------------------


async def test_at_80x24_the_queue_shows_whole_flags(desk: Desk) -> None:
    app = app_for(desk)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("escape")  # metadata only
        await settle(pilot)
        shown = screen_text(app)
        assert "Flags" in shown  # the header, not "F"
        hostile = next(line for line in shown.splitlines() if desk.refs["hostile"] in line)
        assert "hostile unverified" in hostile, hostile  # both flags, whole
        assert "10h 30m Mon 08:30" in hostile  # the deadline keeps its countdown and time


async def test_at_80x24_the_unlock_button_stays_on_the_dialog(desk: Desk) -> None:
    """However much the dialog has to say (why it locked, the drafts kept, a problem), its
    Unlock button is on screen, inside the dialog, and the problem is in view."""
    why = (
        "Locked after 10 minutes without a key press. Your draft (New case: a notification"
        " taken by phone) is sealed in memory and reopens when you unlock. "
    )
    app = app_for(desk)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        await app.push_screen(UnlockScreen(email="dsl@example.org", reason=why * 3), app._unlocked)
        await settle(pilot)
        await pilot.press(*"not-the-passphrase", "enter")
        await settle(pilot)
        button = app.screen.query_one("#unlock-button", Button)
        dialog = app.screen.query_one("#unlock").region
        screen = Region(0, 0, *SIZE)
        assert screen.contains_region(button.region), button.region
        inside = dialog.shrink((1, 1, 1, 1))  # within the dialog's border
        assert inside.contains_region(button.region), (button.region, dialog)
        assert "Wrong passphrase" in screen_text(app)
        await unlock(pilot)


def screen_text(app: SgalertApp) -> str:
    """The screen as the person sees it, one line of text a row."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(segment.text for segment in strip) for strip in strips)


# ----- Next -----------------------------------------------------------------------------------


async def decide(pilot: Pilot[object], app: SgalertApp, ref: str) -> None:
    await pilot.press("d")
    await settle(pilot)
    assert isinstance(app.screen, DecisionScreen)
    await pilot.press(*"Tell the class teacher", "tab", *"Invented: quiet night at home.")
    await pilot.press("ctrl+s")
    await settle(pilot)
    assert isinstance(app.screen, CaseScreen) and app.screen.ref == ref
    assert app.screen.view.summary.state is CaseState.ACKNOWLEDGED  # decided: no longer waiting


async def test_next_after_a_decision_goes_to_the_next_waiting_case(desk: Desk) -> None:
    app = app_for(desk)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        first, second = desk.refs["hostile"], desk.refs["new"]  # both waiting, in this order
        await open_case(pilot, app, first)
        await decide(pilot, app, first)
        await pilot.press("right_square_bracket")  # Next
        await settle(pilot)
        assert isinstance(app.screen, CaseScreen) and app.screen.ref == second
        await decide(pilot, app, second)
        await pilot.press("right_square_bracket")  # nothing waits: on through Needs action
        await settle(pilot)
        assert isinstance(app.screen, CaseScreen) and app.screen.ref != second
        await pilot.press("escape")  # each case took the place of the last: back to the queue
        await settle(pilot)
        assert app.screen is app.queue_screen


def test_next_prefers_a_waiting_case_then_walks_the_order() -> None:
    def case(ref: str, state: CaseState) -> CaseSummary:
        return dataclasses.replace(SUMMARY, ref=ref, state=state)

    new, acked = CaseState.NEW, CaseState.ACKNOWLEDGED
    rows = [case("A", acked), case("B", new), case("C", acked), case("D", acked)]
    assert next_ref(rows, "A") == "B"
    assert next_ref(rows, "B") == "C"  # nothing else waits: the one after
    assert next_ref([case("A", acked), case("C", acked), case("D", acked)], "D") == "A"  # round
    assert next_ref([case("A", acked)], "Z") == "A"  # the open case has left the list
    assert next_ref([case("A", new)], "A") is None


# ----- "Escalated to you" toasts ----------------------------------------------------------------


def escalation_toasts(app: SgalertApp) -> list[Notification]:
    return [n for n in app._notifications if n.title == "Escalated to you"]


async def test_an_escalation_toast_is_short_and_goes_once_its_cases_are_acknowledged(
    desk: Desk,
) -> None:
    app = app_for(desk, poll_seconds=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)  # locked: the usual state at 22:00
        await run_script(ESCALATE_SCRIPT, str(desk.workspace.root))
        await wait_for(pilot, lambda: escalation_toasts(app))
        await settle(pilot)
        assert all(n.timeout <= 20 for n in escalation_toasts(app))  # not a minute
        named = {
            r for n in escalation_toasts(app) for r in re.findall(r"SG-\d{4}-\d{4}", n.message)
        }
        assert named
        for ref in sorted(named):  # a colleague takes them on
            await run_script(ACK_SCRIPT, str(desk.workspace.root), ref)
        await wait_for(pilot, lambda: not escalation_toasts(app))


async def test_escalation_toasts_never_cover_a_dialogs_buttons(desk: Desk) -> None:
    app = app_for(desk, poll_seconds=0.1)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, UnlockScreen)
        await run_script(ESCALATE_SCRIPT, str(desk.workspace.root))
        await wait_for(pilot, lambda: app.screen.query(Toast))  # came while the dialog is open
        await settle(pilot)
        button = app.screen.query_one("#unlock-button", Button).region
        for toast in app.screen.query(Toast):
            assert not toast.region.overlaps(button), (toast.region, button)
        await pilot.press("escape")  # the queue, where the toast stays
        await settle(pilot)
        assert escalation_toasts(app)
        await pilot.press("a")  # a dialog opens (asking for the passphrase first)
        await settle(pilot)
        assert isinstance(app.screen, UnlockScreen)
        assert not escalation_toasts(app) and not app.screen.query(Toast)
        assert app.fresh  # the rows stay highlighted


def test_a_case_escalated_twice_since_the_last_look_is_named_once() -> None:
    steps = [
        Escalation(1, "SG-2026-0005", 1),
        Escalation(2, "SG-2026-0006", 1),
        Escalation(3, "SG-2026-0005", 2),
    ]
    assert escalation_text(steps) == (
        "SG-2026-0005: nobody has acknowledged it yet\nSG-2026-0006: nobody has acknowledged it yet"
    )
    assert DesktopTerminal().escalation_notice(steps) == (
        "\x1b]9;sgalert: Escalated to you: SG-2026-0005, SG-2026-0006\x07"
    )
