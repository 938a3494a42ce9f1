"""The case screen split by job: what it shows comes from :mod:`tui.case_render` (pure functions of
the view), what it does stays on the screen, and saving an attachment is :mod:`tui.case_export`.

The snapshots in ``test_tui_snapshots.py`` hold the looks unchanged; these tests hold the split.
"""

from __future__ import annotations

import ast
from pathlib import Path

from textual.content import Content
from textual.widgets import Static

from tui import case_render as render
from tui.app import make_app
from tui.case_list import CaseList
from tui.screens.case import CaseScreen
from tui.screens.dialogs import SaveAttachmentScreen

from .test_tui_support import FakeClock, make_workspace, seed_desk, settle, unlock

TUI = Path(__file__).resolve().parent.parent / "tui"
SIZE = (80, 24)


def plain(widget: Static) -> str:
    visual = widget.visual
    return visual.plain if isinstance(visual, Content) else str(widget.content)


async def test_the_case_screen_shows_what_the_renderers_build(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path / "ws")
    refs = await seed_desk(workspace)
    app = make_app(workspace, as_email="dsl@example.org", clock=FakeClock())
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        table = app.screen.query_one(CaseList)
        table.move_cursor(row=table.get_row_index(refs["acknowledged"]))
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, CaseScreen)
        view, zone, now = screen.view, app.zone, app.now()
        expected = {
            "#case-header": render.header(view.summary, zone, app.names),
            "#facts": render.facts(view, zone, now),
            "#clocks": render.clocks(view, now, zone),
            "#message": render.message(view),
            "#attachments": render.attachments(view),
            "#chronology": render.chronology(view, zone),
            "#notifications": render.notifications(screen.notifications, now, zone),
        }
        for selector, text in expected.items():
            assert plain(screen.query_one(selector, Static)) == text.plain, selector
        assert "Bea said" in plain(screen.query_one("#chronology", Static))
        await pilot.press("e")  # the export flow, now its own module, still starts from the key
        await settle(pilot)
        assert isinstance(app.screen, SaveAttachmentScreen)


def test_renderers_and_export_live_apart_from_the_screen() -> None:
    """The screen module holds the screen and its actions only: no section is drawn there and
    no file-system look happens there."""
    screen = (TUI / "screens" / "case.py").read_text(encoding="utf-8")
    assert len(screen.splitlines()) <= 520
    tree = ast.parse(screen)
    functions = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert functions == [], functions  # module-level renderers moved to tui/case_render.py
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not imported & {"os", "asyncio", "default_directory", "proposed_name"}
    rendering = ast.parse((TUI / "case_render.py").read_text(encoding="utf-8"))
    modules = {
        node.module or ""
        for node in ast.walk(rendering)
        if isinstance(node, ast.ImportFrom) and node.level == 0
    }
    assert not {m for m in modules if m.startswith("textual.") and m != "textual.widgets"}
