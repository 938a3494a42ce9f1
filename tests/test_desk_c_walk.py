"""Found walking the desk at 22:00 on a Sunday (80x24): Escape asks before it throws away what
was typed; Next goes on to the next waiting case after a decision; the queue's flags and the
unlock dialog's button fit at 80x24; "Escalated to you" toasts go when their case is
acknowledged and never cover a dialog's buttons."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, TextArea

from tui.screens.dialogs import ConfirmScreen, DecisionScreen, NoteScreen
from tui.screens.manual import NewCaseScreen

from .test_tui_desk import Desk, app_for, open_case
from .test_tui_support import make_workspace, seed_desk, settle, unlock

SIZE = (80, 24)


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
