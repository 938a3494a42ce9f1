"""The queue's "My cases" tab: a person's own open cases (issue 16, part B).

Assigned to them, paged to them while unacknowledged (escalated to them), or waiting on a clock
they started. The tab's count is the number of rows it lists.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from textual.widgets import Tab

from sgalert.config import load_config
from sgalert.desk.service import CaseService
from sgalert.records.store import Store, on_connection
from sgalert.routing.escalation import Duty, fire_due
from sgalert.workspace import Workspace
from tui.app import SgalertApp, make_app
from tui.case_list import CaseList

from .conftest import PASSPHRASES
from .test_tui_support import NOW, FakeClock, make_workspace, seed_desk, settle, unlock

SIZE = (100, 30)


async def seed(root: Path) -> tuple[Workspace, dict[str, str]]:
    """The invented desk, plus: the DSL starts a LADO clock on the case the deputy
    acknowledged, and the engine pages the deputy (on duty on Sunday night) about new cases."""
    workspace = make_workspace(root)
    refs = await seed_desk(workspace)
    store = await Store.open(workspace.store_path)
    service = CaseService(store, load_config(workspace.config_path), FakeClock())
    try:
        dsl = await service.unlock("dsl@example.org", PASSPHRASES["dsl@example.org"])
        await service.start_clock(dsl, refs["acknowledged"], "lado-1-working-day")
        plan = service.plan
        assert plan is not None
        async with store.write() as db:
            queued = await on_connection(
                db,
                lambda conn: fire_due(
                    conn, plan, Duty("deputy@example.org"), NOW + timedelta(minutes=30)
                ),
            )
        assert queued
    finally:
        await service.close()
    return workspace, refs


def listed(app: SgalertApp) -> set[str]:
    return set(app.queue_screen.query_one(CaseList).keys)


def my_tab(app: SgalertApp) -> str:
    return app.queue_screen.query_one("#mine", Tab).label_text


async def test_my_cases_are_assigned_paged_or_clocked_by_me(tmp_path: Path) -> None:
    workspace, refs = await seed(tmp_path / "ws")

    app = make_app(workspace, as_email="dsl@example.org", clock=FakeClock())
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        await pilot.press("6")
        await settle(pilot)
        # The lesson case is assigned to the DSL; the LADO clock on the other is theirs.
        assert listed(app) == {refs["lesson"], refs["acknowledged"]}
        assert my_tab(app) == "My cases 2"

    app = make_app(workspace, as_email="deputy@example.org", clock=FakeClock())
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, "deputy@example.org")
        await pilot.press("6")
        await settle(pilot)
        # Paged about the two unacknowledged Encompass notices, never the whistleblowing one;
        # and the case they acknowledged is theirs.
        assert listed(app) == {refs["new"], refs["hostile"], refs["acknowledged"]}
        assert my_tab(app) == "My cases 3"

    app = make_app(workspace, as_email="head@example.org", clock=FakeClock())
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, "head@example.org")
        await pilot.press("6")
        await settle(pilot)
        assert listed(app) == set()
        assert my_tab(app) == "My cases 0"
