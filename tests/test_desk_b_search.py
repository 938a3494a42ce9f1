"""Search after unlock (issue 16 B): by child's name, date of birth, police reference or words,
over the cases the person can read, from an index held in memory and forgotten at lock.

Also the child file: a name written with an annotation ("Ada Invented (Year 4)") is the same
child, and a name-only match is offered for the DSL to judge, never merged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from textual.widgets import DataTable, Input, Static

from sgalert.config import load_config
from sgalert.desk.service import CaseService
from sgalert.records.audit import entries
from sgalert.records.store import Store
from tui.app import SgalertApp, make_app
from tui.screens.case import CaseScreen
from tui.screens.child import ChildFileScreen
from tui.screens.dialogs import ConfirmScreen
from tui.screens.search import SearchScreen
from tui.screens.unlock import UnlockScreen

from .conftest import encompass_case
from .test_tui_support import FakeClock, make_workspace, seed_desk, settle, unlock, wait_for

SIZE = (100, 30)


async def seed(root: Path) -> tuple[SgalertApp, dict[str, str], Path]:
    workspace = make_workspace(root)
    refs = await seed_desk(workspace)
    store = await Store.open(workspace.store_path)
    service = CaseService(store, load_config(workspace.config_path), FakeClock())
    try:
        dot = encompass_case("Dot Invented", police_reference="HX/2026/00417")
        dot.received_at = datetime(2026, 11, 21, 20, 0, tzinfo=UTC)
        later = encompass_case("Ada Invented (Year 4)")
        later.received_at = datetime(2026, 11, 22, 21, 58, tzinfo=UTC)
        namesake = encompass_case("Ada Invented")
        namesake.content["fields"] = b'{"child_name": "Ada Invented"}'  # no date of birth
        (stored_dot, stored_later, stored_namesake) = await service.create_cases(
            [dot, later, namesake]
        )
        refs["dot"], refs["later"] = stored_dot.ref, stored_later.ref
        refs["namesake"] = stored_namesake.ref
    finally:
        await service.close()
    app = make_app(workspace, as_email="dsl@example.org", clock=FakeClock())
    return app, refs, root


def found(app: SgalertApp) -> dict[str, str]:
    table = app.screen.query_one("#search-results", DataTable)
    return {
        str(row[0]): str(row[5]) for row in (table.get_row_at(i) for i in range(table.row_count))
    }


async def type_query(pilot: object, app: SgalertApp, text: str) -> None:
    box = app.screen.query_one("#search-query", Input)
    box.value = text
    await pilot.pause(0.3)  # type: ignore[attr-defined]
    await settle(pilot)  # type: ignore[arg-type]


async def test_search_finds_by_name_birth_date_and_police_ref_and_is_forgotten_at_lock(
    tmp_path: Path,
) -> None:
    app, refs, root = await seed(tmp_path / "ws")
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        await settle(pilot)
        index = app.search_index
        assert index is not None and len(index) == 8  # the whistleblowing case is not the DSL's
        await pilot.press("f")
        await settle(pilot)
        assert isinstance(app.screen, SearchScreen)

        await type_query(pilot, app, "ada invented")
        hits = found(app)
        assert hits[refs["new"]] == hits[refs["later"]] == "child's name"
        assert refs["dot"] not in hits

        await type_query(pilot, app, "2026/00417")
        assert found(app) == {refs["dot"]: "police reference"}
        await type_query(pilot, app, "hx 2026 00417")
        assert found(app) == {refs["dot"]: "police reference"}

        await type_query(pilot, app, "14/03/2017")
        assert refs["dot"] in found(app) and found(app)[refs["dot"]] == "date of birth"

        await type_query(pilot, app, "allegation")  # only in the whistleblowing case
        assert found(app) == {}
        status = app.screen.query_one("#search-status", Static)
        assert "0 cases found." in str(status.visual)

        # A case that arrives while searching is indexed (only it) and found.
        await type_query(pilot, app, "eve invented")
        assert found(app) == {}
        (eve,) = await CaseService(app.service.store, app.service.config).create_cases(
            [encompass_case("Eve Invented")]
        )
        await wait_for(pilot, lambda: found(app) == {eve.ref: "child's name"})
        assert len(index) == 9

        await pilot.press("ctrl+l")
        await settle(pilot)
        assert isinstance(app.screen, UnlockScreen)
        assert app.search_index is None and len(index) == 0
        assert not [s for s in app.screen_stack if isinstance(s, SearchScreen)]
    # Never written anywhere: no file of the workspace holds a name from the index.
    for path in root.rglob("*"):
        if path.is_file():
            assert b"Dot Invented" not in path.read_bytes(), path


async def test_the_child_file_reads_through_an_annotation_and_offers_a_name_only_match(
    tmp_path: Path,
) -> None:
    app, refs, _ = await seed(tmp_path / "ws")
    async with app.run_test(size=(120, 40)) as pilot:
        await unlock(pilot)
        app.open_case(refs["later"])
        await settle(pilot)
        assert isinstance(app.screen, CaseScreen)
        await pilot.press("F")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ChildFileScreen)
        child = screen.file
        assert child is not None
        in_file = set(child.refs)
        assert {refs["later"], refs["new"]} <= in_file  # "(Year 4)" is not part of the name
        assert refs["namesake"] not in in_file
        assert refs["namesake"] in {case.summary.ref for case in child.possible}

        # The DSL judges the name-only case to be the same child: it joins this view.
        table = screen.query_one("#child-cases", DataTable)
        table.move_cursor(row=table.get_row_index(refs["namesake"]))
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        assert app.screen is screen
        assert refs["namesake"] in screen.file.refs and not screen.file.possible
        async with app.service.store.read() as db:
            (viewed,) = [e for e in await entries(db, limit=3) if e.action == "child-file-viewed"]
        assert viewed.detail["confirmed"] == 1
