"""Never lose a keystroke (issue 16): every dialog opens with its first field focused, and the idle
lock keeps a half-typed note or dialog text, sealed in memory, for the same person after unlock.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from textual.widget import Widget
from textual.widgets import Input, TextArea

from sgalert.workspace import Workspace
from tui.app import SgalertApp, make_app
from tui.case_list import CaseList
from tui.screens.case import CaseScreen
from tui.screens.dialogs import DecisionScreen, FormScreen

from .test_tui_support import FakeClock, make_workspace, seed_desk, settle, unlock

SIZE = (80, 24)


@dataclass
class Desk:
    workspace: Workspace
    refs: dict[str, str]


@pytest.fixture
async def desk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Desk:
    monkeypatch.setenv("XDG_DOWNLOAD_DIR", str(tmp_path))
    workspace = make_workspace(tmp_path / "ws")
    return Desk(workspace, await seed_desk(workspace))


async def open_case(pilot: object, app: SgalertApp, ref: str) -> CaseScreen:
    table = app.screen.query_one(CaseList)
    table.move_cursor(row=table.get_row_index(ref))
    await pilot.press("enter")  # type: ignore[attr-defined]
    await settle(pilot)  # type: ignore[arg-type]
    assert isinstance(app.screen, CaseScreen)
    return app.screen


def focused_id(app: SgalertApp) -> str | None:
    focused: Widget | None = app.screen.focused
    return focused.id if focused is not None else None


# ----- focus on open ------------------------------------------------------------------------

# Key on the case screen, the field that must have the focus when its dialog opens.
CASE_DIALOGS = (
    ("n", "note"),  # Note
    ("d", "decision"),  # Decision
    ("c", "outcome"),  # Close
    ("f", "to"),  # Refer
    ("s", "person"),  # Assign
    ("t", "clock"),  # Start a clock
    ("m", "clock"),  # Deadline met
    ("e", "path"),  # Save an attachment: the attachment is chosen already, the path is next
)


async def test_every_dialog_focuses_its_first_field_on_open(desk: Desk) -> None:
    app = make_app(desk.workspace, as_email="dsl@example.org", clock=FakeClock())
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        screen = await open_case(pilot, app, desk.refs["new"])
        for key, field in CASE_DIALOGS:
            await pilot.press(key)
            await settle(pilot)
            assert isinstance(app.screen, FormScreen), key
            assert focused_id(app) == field, (key, focused_id(app))
            await pilot.press("escape")
            await settle(pilot)
            assert app.screen is screen
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("n")  # a phoned notification
        await settle(pilot)
        assert focused_id(app) == "caller"
        await pilot.press("escape", "r")
        await settle(pilot)
        await pilot.press("a")  # Add cover on the rota
        await settle(pilot)
        assert isinstance(app.screen, FormScreen)
        assert focused_id(app) == "who"


async def test_the_first_words_typed_into_a_decision_land_in_it(desk: Desk) -> None:
    app = make_app(desk.workspace, as_email="dsl@example.org", clock=FakeClock())
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        await open_case(pilot, app, desk.refs["new"])
        await pilot.press("d", *"Speak to Ada", "tab", *"She trusts her teacher")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, DecisionScreen)
        assert dialog.query_one("#decision", Input).value == "Speak to Ada"
        assert dialog.query_one("#reason", TextArea).text == "She trusts her teacher"
