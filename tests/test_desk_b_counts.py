"""Counts on the desk are of the cases the person at it can act on (issue 16, part B).

The seeded desk has three unacknowledged cases: two Operation Encompass notices (the DSL team's)
and one whistleblowing allegation (the monitoring officer's alone). Each person is told only of
the cases they could open, and of the ones with a clock past due.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from textual.content import Content
from textual.widgets import Static, Tab

from sgalert.workspace import Workspace
from tui.app import SgalertApp, make_app

from .test_tui_support import FakeClock, make_workspace, seed_desk, settle, unlock

SIZE = (100, 30)
MONDAY_MORNING = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # the Encompass clocks have run out


@pytest.fixture
async def workspace(tmp_path: Path) -> Workspace:
    workspace = make_workspace(tmp_path / "ws")
    await seed_desk(workspace)
    return workspace


def banner_texts(app: SgalertApp) -> list[str]:
    texts = []
    for widget in app.queue_screen.query(".banner").results(Static):
        visual = widget.visual
        texts.append(visual.plain if isinstance(visual, Content) else str(widget.content))
    return texts


def tab_labels(app: SgalertApp) -> dict[str, str]:
    return {str(tab.id): tab.label_text for tab in app.queue_screen.query(Tab).results(Tab)}


async def desk_of(workspace: Workspace, email: str, clock: FakeClock) -> SgalertApp:
    app = make_app(workspace, as_email=email, clock=clock)
    app.animation_level = "none"
    return app


@pytest.mark.parametrize(
    ("email", "unacknowledged", "tabs"),
    [
        (
            "dsl@example.org",
            "2 unacknowledged cases",
            {"needs": "Needs action 4", "whistle": "Whistleblowing 0", "all": "All 5"},
        ),
        (
            "mo@example.org",
            "1 unacknowledged case.",
            {"needs": "Needs action 1", "encompass": "Encompass 0", "all": "All 1"},
        ),
    ],
)
async def test_counts_are_of_the_cases_the_person_can_read(
    workspace: Workspace, email: str, unacknowledged: str, tabs: dict[str, str]
) -> None:
    app = await desk_of(workspace, email, FakeClock())
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, email)
        await settle(pilot)
        shown = banner_texts(app)
        assert [text for text in shown if unacknowledged in text], shown
        assert not [text for text in shown if "3 unacknowledged" in text]
        labels = tab_labels(app)
        for tab, label in tabs.items():
            assert labels[tab] == label


async def test_the_banner_counts_overdue_cases_for_the_dsl_not_the_monitoring_officer(
    workspace: Workspace,
) -> None:
    app = await desk_of(workspace, "dsl@example.org", FakeClock(MONDAY_MORNING))
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        await settle(pilot)
        assert "OVERDUE: 2 cases with a clock past due." in banner_texts(app)
    app = await desk_of(workspace, "mo@example.org", FakeClock(MONDAY_MORNING))
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot, "mo@example.org")
        await settle(pilot)
        assert not [text for text in banner_texts(app) if "OVERDUE" in text]
