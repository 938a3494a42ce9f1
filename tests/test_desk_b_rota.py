"""The rota's week grid (issue 16 B): days down, duty slots across, people by name, gaps in
red with the fallback named, the week turned with [ and ], and a slot covered from the grid.

The invented rota: the DSL on weekdays 07:00-19:00 in term, the deputy every night; so each
weekend day, 07:00-19:00, is a gap the fallback (the DSL) holds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.text import Text
from textual.widgets import DataTable, Input, Select, Static

from sgalert.desk.service import CaseService
from tui.app import make_app
from tui.screens.dialogs import ConfirmScreen
from tui.screens.rota import CoverScreen, RotaScreen

from .test_tui_support import FakeClock, make_workspace, seed_desk, settle, unlock


def grid(screen: RotaScreen) -> dict[str, list[str]]:
    """The week as shown: day label to the slots' text."""
    table = screen.query_one("#week", DataTable)
    shown: dict[str, list[str]] = {}
    for row in range(table.row_count):
        cells = [c.plain if isinstance(c, Text) else str(c) for c in table.get_row_at(row)]
        shown[cells[0]] = cells[1:]
    return shown


def headers(screen: RotaScreen) -> list[str]:
    table = screen.query_one("#week", DataTable)
    return [str(column.label) for column in table.columns.values()]


async def test_the_week_grid_names_who_covers_each_slot_and_shows_the_gaps(
    tmp_path: Path,
) -> None:
    workspace = make_workspace(tmp_path / "ws")
    await seed_desk(workspace, hostile=False)
    app = make_app(workspace, as_email="dsl@example.org", clock=FakeClock())
    async with app.run_test(size=(100, 40)) as pilot:
        await unlock(pilot)
        await pilot.press("r")
        await settle(pilot)
        rota = app.screen
        assert isinstance(rota, RotaScreen)
        assert headers(rota) == ["Day", "07:00-19:00", "19:00-07:00"]
        # Sunday 22 November: this week is Monday 16 to Sunday 22.
        week = grid(rota)
        assert next(iter(week)) == "Mon 16 Nov" and list(week)[-1] == "Sun 22 Nov"
        assert week["Mon 16 Nov"] == ["Dsl Example", "Deputy Example"]
        assert week["Sat 21 Nov"] == ["GAP: fallback Dsl Example", "Deputy Example"]
        title = rota.query_one("#week-title", Static).visual
        assert "This week" in str(title) and "2 slots with a gap" in str(title)

        await pilot.press("right_square_bracket")
        await settle(pilot)
        week = grid(rota)
        assert next(iter(week)) == "Mon 23 Nov"
        assert week["Sat 28 Nov"][0] == "GAP: fallback Dsl Example"

        # Cover Saturday's gap from the grid: the form opens on that slot exactly.
        table = rota.query_one("#week", DataTable)
        table.cursor_coordinate = table.cursor_coordinate._replace(row=5, column=1)
        await pilot.press("enter")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, CoverScreen)
        assert form.query_one("#starts", Input).value == "2026-11-28 07:00"
        assert form.query_one("#ends", Input).value == "2026-11-28 19:00"
        form.query_one("#who", Select).value = "head@example.org"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        assert app.screen is rota
        week = grid(rota)
        assert week["Sat 28 Nov"] == ["Head Example (cover)", "Deputy Example"]
        assert week["Sun 29 Nov"][0] == "GAP: fallback Dsl Example"

        await pilot.press("left_square_bracket", "left_square_bracket")
        await settle(pilot)
        assert next(iter(grid(rota))) == "Mon 9 Nov"
        await pilot.press("t")
        await settle(pilot)
        assert next(iter(grid(rota))) == "Mon 16 Nov"


async def test_a_cover_inside_a_slot_splits_it_by_the_hour(tmp_path: Path) -> None:
    from sgalert.config import load_config
    from sgalert.records.store import Store

    from .conftest import PASSPHRASES

    workspace = make_workspace(tmp_path / "ws")
    await seed_desk(workspace, hostile=False)
    store = await Store.open(workspace.store_path)
    service = CaseService(store, load_config(workspace.config_path), FakeClock())
    try:
        dsl = await service.unlock("dsl@example.org", PASSPHRASES["dsl@example.org"])
        await service.add_cover(
            dsl,
            "head@example.org",
            datetime(2026, 11, 24, 9, 0, tzinfo=UTC),
            datetime(2026, 11, 24, 12, 0, tzinfo=UTC),
        )
        week = await service.rota_week(datetime(2026, 11, 25).date())
    finally:
        await service.close()
    tuesday = week.slots[1][0]
    assert [(s.who, s.cover) for s in tuesday.stretches] == [
        ("dsl@example.org", False),
        ("head@example.org", True),
        ("dsl@example.org", False),
    ]
    assert tuesday.stretches[1].start == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    assert not tuesday.gap and [s.day.isoformat() for s in week.gaps()] == [
        "2026-11-28",
        "2026-11-29",
    ]


async def test_a_cover_that_has_already_ended_is_refused_by_the_form_and_the_service(
    tmp_path: Path,
) -> None:
    """Found walking the desk: a cover wholly in the past was added, and then the list of
    dated covers (from now) and the week's grid (the whole week) disagreed about it."""
    from sgalert.errors import InvalidInput

    workspace = make_workspace(tmp_path / "ws")
    await seed_desk(workspace, hostile=False)
    app = make_app(workspace, as_email="dsl@example.org", clock=FakeClock())
    async with app.run_test(size=(100, 40)) as pilot:
        await unlock(pilot)
        await pilot.press("r")
        await settle(pilot)
        rota = app.screen
        assert isinstance(rota, RotaScreen)
        await pilot.press("a")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, CoverScreen)
        form.query_one("#who", Select).value = "head@example.org"
        form.query_one("#starts", Input).value = "2026-11-21 07:00"
        form.query_one("#ends", Input).value = "2026-11-21 19:00"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is form
        problem = str(form.query_one(".form-problem", Static).visual)
        assert problem == "A cover must end in the future: this one ended Sat 21 Nov 2026 19:00."
        assert app.identity is not None
        with pytest.raises(InvalidInput, match="must end in the future"):
            await app.service.add_cover(
                app.identity,
                "head@example.org",
                datetime(2026, 11, 21, 7, 0, tzinfo=UTC),
                datetime(2026, 11, 21, 19, 0, tzinfo=UTC),
            )
        assert "(cover)" not in " ".join(grid(rota)["Sat 21 Nov"])


async def test_the_dated_covers_list_names_the_covers_the_week_shows(tmp_path: Path) -> None:
    """A cover arranged on Friday for Saturday has passed by Sunday night: the grid still shows
    it on Saturday, and so does the list (it showed 'None.' beside the grid's cover)."""
    from sgalert.config import load_config
    from sgalert.records.store import Store

    from .conftest import PASSPHRASES

    workspace = make_workspace(tmp_path / "ws")
    await seed_desk(workspace, hostile=False)
    clock = FakeClock(datetime(2026, 11, 20, 12, 0, tzinfo=UTC))
    store = await Store.open(workspace.store_path)
    service = CaseService(store, load_config(workspace.config_path), clock)
    try:
        dsl = await service.unlock("dsl@example.org", PASSPHRASES["dsl@example.org"])
        await service.add_cover(
            dsl,
            "head@example.org",
            datetime(2026, 11, 21, 7, 0, tzinfo=UTC),
            datetime(2026, 11, 21, 19, 0, tzinfo=UTC),
        )
    finally:
        await service.close()
    app = make_app(workspace, as_email="dsl@example.org", clock=FakeClock())
    async with app.run_test(size=(100, 40)) as pilot:
        await unlock(pilot)
        await pilot.press("r")
        await settle(pilot)
        rota = app.screen
        assert isinstance(rota, RotaScreen)
        assert grid(rota)["Sat 21 Nov"][0] == "Head Example (cover)"
        covers = rota.query_one("#covers", DataTable)
        assert [str(c) for c in covers.get_row_at(0)] == [
            "Head Example",
            "Sat 21 Nov 07:00",
            "Sat 21 Nov 19:00",
        ]
        title = rota.query_one("#covers-title", Static).visual
        assert str(title) == "Dated covers from Mon 16 Nov"
        await pilot.press("right_square_bracket")
        await settle(pilot)
        assert str(covers.get_row_at(0)[0]) == "None."
