"""The rota screen, driven through Pilot: gaps to the minute, and a cover form opened on the
first gap exactly (not five minutes late, not a guessed twelve hours long)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from rich.text import Text
from textual.content import Content
from textual.widgets import DataTable, Input, Select, Static

from sgalert.config import render_template
from sgalert.routing.duty import load_rota
from sgalert.workspace import CONFIG_NAME, STORE_NAME, Workspace
from tui.app import make_app
from tui.screens.dialogs import ConfirmScreen
from tui.screens.rota import CoverScreen, RotaScreen

from .test_tui_support import NOW, FakeClock, seed_desk, settle, unlock

# The DSL's weekday shift ends at 17:03; the deputy's night starts at 19:00.
SHIFTS = """
[[rota.shifts]]
who = "dsl@example.org"
days = ["mon", "tue", "wed", "thu", "fri"]
from = "07:00"
to = "17:03"
when = "always"

[[rota.shifts]]
who = "deputy@example.org"
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
from = "19:00"
to = "07:00"
when = "always"
"""


def cell(table: DataTable[object], row: int, column: int) -> str:
    value = table.get_row_at(row)[column]
    return value.plain if isinstance(value, Text) else str(value)


async def test_the_cover_form_opens_on_the_exact_first_gap(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / CONFIG_NAME).write_text(render_template("Test School") + SHIFTS, encoding="utf-8")
    workspace = Workspace(config_path=root / CONFIG_NAME, store_path=root / STORE_NAME)
    await seed_desk(workspace, hostile=False)
    app = make_app(workspace, as_email="dsl@example.org", clock=FakeClock())
    async with app.run_test(size=(80, 24)) as pilot:
        await unlock(pilot)
        await pilot.press("r")
        await settle(pilot)
        rota = app.screen
        assert isinstance(rota, RotaScreen)
        duty = rota.query_one("#duty", Static).visual
        assert isinstance(duty, Content)
        assert "Dsl Example from Mon 23 Nov 07:00" in duty.plain
        gaps = rota.query_one("#gaps", DataTable)
        assert (cell(gaps, 0, 0), cell(gaps, 0, 1)) == ("Mon 23 Nov 17:03", "Mon 23 Nov 19:00")

        await pilot.press("a")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, CoverScreen)
        assert form.query_one("#starts", Input).value == "2026-11-23 17:03"
        assert form.query_one("#ends", Input).value == "2026-11-23 19:00"
        form.query_one("#who", Select).value = "head@example.org"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        assert app.screen is rota
        # The pre-filled cover closes that gap exactly: the next one is Tuesday's.
        assert (cell(gaps, 0, 0), cell(gaps, 0, 1)) == ("Tue 24 Nov 17:03", "Tue 24 Nov 19:00")
        view = await load_rota(app.service, since=NOW)
        gap_start = datetime(2026, 11, 23, 17, 3, tzinfo=UTC)
        assert view.who(gap_start).who == "head@example.org"
        assert view.gaps(NOW, 2)[0].start == datetime(2026, 11, 24, 17, 3, tzinfo=UTC)
