"""What an investigator is shown of an allegation names no reporter, and nothing on the desk
leaves it unaudited (trust model items 5 and 13)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual.command import CommandList, CommandPalette

from .test_tui_support import make_workspace, seed_desk, settle, unlock

# ----- item 13: no screenshot of a decrypted case --------------------------------------------


def _files_under(*roots: Path) -> list[Path]:
    return [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]


async def test_the_palette_offers_no_screenshot_and_the_action_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Textual's own palette offered "Screenshot": an SVG of the decrypted case on screen,
    written to ~/Downloads, readable by anyone, in no audit log."""
    from tui.app import make_app
    from tui.screens.case import CaseScreen

    from .test_tui_support import FakeClock

    home, downloads, cwd = tmp_path / "home", tmp_path / "downloads", tmp_path / "cwd"
    for folder in (home, downloads, cwd):
        folder.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DOWNLOAD_DIR", str(downloads))
    monkeypatch.chdir(cwd)
    workspace = make_workspace(tmp_path / "ws")
    refs = await seed_desk(workspace)
    app = make_app(workspace, as_email="dsl@example.org", clock=FakeClock())
    async with app.run_test(size=(100, 30)) as pilot:
        await unlock(pilot)
        app.open_case(refs["new"])
        await settle(pilot)
        assert isinstance(app.screen, CaseScreen)

        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert "Screenshot" not in titles and "Quit" in titles

        await pilot.press("ctrl+p")
        await settle(pilot)
        assert isinstance(app.screen, CommandPalette)
        await pilot.press("t")  # matches "Theme" and "Quit" and, before, "Screenshot"
        options = app.screen.query_one(CommandList)

        def shown() -> list[str]:
            return [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]

        for _ in range(200):
            if any("Theme" in s for s in shown()) and any("Quit" in s for s in shown()):
                break
            await pilot.pause(0.05)
        await pilot.pause(0.3)  # the system commands arrive together; let the last one land
        assert any("Quit" in s for s in shown()), shown()
        assert not any("Screenshot" in s for s in shown()), shown()
        await pilot.press("escape")
        await settle(pilot)

        # No key on the case screen is bound to it, and the action and its helpers write nothing.
        bound = [b.binding.action for b in app.screen.active_bindings.values()]
        assert not any("screenshot" in action for action in bound)
        await app.run_action("screenshot")
        app.deliver_screenshot()
        app.save_screenshot(path=str(cwd))
        await asyncio.sleep(0.5)  # a delivery is written from a thread
        await settle(pilot)
        assert _files_under(home, downloads, cwd) == []
