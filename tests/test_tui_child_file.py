"""The child file on the desk, driven through Textual's Pilot at 80x24.

The invented desk has Ada's emailed notice; a second, phoned notice about her is recorded with
her name written surname first. The file opened from either case shows both.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from rich.table import Table
from textual.content import Content
from textual.widgets import DataTable, Static

from sgalert.desk.service import CaseService
from sgalert.model import Source
from tui.app import SgalertApp, make_app
from tui.case_list import CaseList
from tui.commands import DeskCommands
from tui.screens.case import CaseScreen
from tui.screens.child import ChildFileScreen
from tui.screens.help import HelpScreen
from tui.screens.queue import QueueScreen
from tui.screens.unlock import UnlockScreen

from .conftest import PASSPHRASES
from .test_tui_support import FakeClock, make_workspace, seed_desk, settle, unlock, wait_for

SIZE = (80, 24)
MARKUP = "[bold]not bold[/bold] [@click=app.quit]x[/]"


def plain(widget: Static) -> str:
    visual = widget.visual
    return visual.plain if isinstance(visual, Content) else str(widget.content)


async def seed(tmp_path: Path) -> tuple[SgalertApp, dict[str, str]]:
    workspace = make_workspace(tmp_path / "ws")
    refs = await seed_desk(workspace)
    service = await CaseService.open(workspace)
    try:
        deputy = await service.unlock("deputy@example.org", PASSPHRASES["deputy@example.org"])
        phoned = await service.record_manual_case(
            deputy,
            Source.ENCOMPASS,
            facts={"child_name": "INVENTED, Ada", "child_dob": "14/03/2017"},
            body_text="Police phoned about an invented incident.",
            caller="PC Invented, Example Constabulary",
            received_at=datetime(2026, 11, 1, 9, 0, tzinfo=UTC),
        )
        await service.add_note(deputy, phoned.ref, f"Invented note: {MARKUP}")
        refs["phoned"] = phoned.ref
    finally:
        await service.close()
    return make_app(workspace, as_email="dsl@example.org", clock=FakeClock()), refs


async def open_case(pilot: object, app: SgalertApp, ref: str) -> CaseScreen:
    table = app.screen.query_one(CaseList)
    table.move_cursor(row=table.get_row_index(ref))
    await pilot.press("enter")  # type: ignore[attr-defined]
    await settle(pilot)  # type: ignore[arg-type]
    assert isinstance(app.screen, CaseScreen) and app.screen.ref == ref
    return app.screen


async def test_child_file_from_a_case_lists_both_cases_and_one_chronology(
    tmp_path: Path,
) -> None:
    app, refs = await seed(tmp_path)
    anchor, phoned = refs["new"], refs["phoned"]
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        case = await open_case(pilot, app, anchor)
        await pilot.press("F")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ChildFileScreen)
        table = screen.query_one("#child-cases", DataTable)
        listed = [str(key.value) for key in table.rows]
        assert listed == [phoned, anchor]  # oldest first
        assert refs["closed"] not in listed  # Cal, another child
        title = plain(screen.query_one("#child-title", Static))
        assert "Ada Invented" in title and "14 Mar 2017" in title
        shown = plain(screen.query_one("#child-chronology", Static))
        assert phoned in shown and anchor in shown
        assert "RECORDED" in shown and "PC Invented" in shown and "✓ signed" in shown
        assert MARKUP in shown  # untrusted text shown literally, never as markup
        assert screen.query_one("#child-body").size.height >= 8  # usable at 80x24
        await pilot.pause(0.3)  # the watcher sees the reads just audited: not a change
        await settle(pilot)
        assert screen.query_one("#child-stale", Static).has_class("-hidden")
        assert app.identity is not None
        await app.service.add_note(app.identity, phoned, "Invented: a colleague's note.")
        await wait_for(pilot, lambda: not screen.query_one("#child-stale").has_class("-hidden"))
        await pilot.press("r")
        await settle(pilot)
        assert screen.query_one("#child-stale", Static).has_class("-hidden")
        assert "a colleague's note" in plain(screen.query_one("#child-chronology", Static))

        # Enter opens the highlighted case; F from there goes back to the same file.
        table.move_cursor(row=table.get_row_index(phoned))
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, CaseScreen) and app.screen.ref == phoned
        await pilot.press("F")
        await settle(pilot)
        assert app.screen is screen
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is case


async def test_palette_and_help_offer_the_child_file_and_locking_closes_it(
    tmp_path: Path,
) -> None:
    app, refs = await seed(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        await open_case(pilot, app, refs["new"])
        labels = {label: command for label, _, command in DeskCommands(app.screen)._commands()}
        (label,) = [label for label in labels if label.startswith("Child file")]
        await pilot.press("question_mark")
        await settle(pilot)
        help_screen = app.screen
        assert isinstance(help_screen, HelpScreen)
        rows = help_screen._binding_table()
        assert isinstance(rows, Table)
        keys = [str(cell) for cell in rows.columns[0]._cells]
        does = [str(cell) for cell in rows.columns[1]._cells]
        assert "F" in keys and does[keys.index("F")].startswith("Open the child's file")
        await pilot.press("escape")
        await settle(pilot)
        await labels[label]()  # what the palette runs
        await settle(pilot)
        assert isinstance(app.screen, ChildFileScreen)
        await pilot.press("ctrl+l")
        await settle(pilot)
        assert isinstance(app.screen, UnlockScreen)
        assert not any(isinstance(s, ChildFileScreen | CaseScreen) for s in app.screen_stack)
        assert isinstance(app.screen_stack[-2], QueueScreen)


async def test_a_lesson_report_without_a_birthday_has_a_file_of_its_own(tmp_path: Path) -> None:
    app, refs = await seed(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        await pilot.press("5")  # the All tab holds the lesson report too
        await settle(pilot)
        await open_case(pilot, app, refs["lesson"])
        await pilot.press("F")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ChildFileScreen)
        assert [str(k.value) for k in screen.query_one(DataTable).rows] == [refs["lesson"]]
        title = plain(screen.query_one("#child-title", Static))
        assert "Pip Invented" in title and "date of birth not recorded" in title
