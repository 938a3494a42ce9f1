"""How the desk looks at 80x24: snapshots with pytest-textual-snapshot.

The desk is seeded with invented people and a fixed clock, so every image is the same on every
run. The queue is taken before unlock (what anyone at the terminal sees) and must hold no
personal data. Update with ``pytest tests/test_tui_snapshots.py --snapshot-update``; with
``SGALERT_EXPORT_SCREENSHOTS=1`` the accepted images are also copied to ``docs/images/`` for the
user guide.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from sgalert.workspace import Workspace
from tui.app import LIGHT, SgalertApp, make_app
from tui.case_list import CaseList
from tui.preview import PreviewPane

from .test_tui_support import (
    FakeClock,
    make_workspace,
    seed_desk_sync,
    settle,
    unlock,
    wait_for,
)

SNAPSHOTS = Path(__file__).parent / "__snapshots__" / Path(__file__).stem
DOCS_IMAGES = Path(__file__).parent.parent / "docs" / "images"
# Names and words from the seeded cases that a metadata view must never show.
PERSONAL = ("Invented", "Riley", "Reporter", "2017-03-14", "allegation", "Child present")

Compare = Callable[..., bool]


@pytest.fixture
def seeded(tmp_path: Path) -> tuple[Workspace, dict[str, str]]:
    workspace = make_workspace(tmp_path / "ws")
    return workspace, seed_desk_sync(workspace)


def desk(workspace: Workspace, **options: Any) -> SgalertApp:
    app = make_app(workspace, as_email="dsl@example.org", clock=FakeClock(), **options)
    # The tabs' underline slides on a timer the screenshot does not wait for; a still image
    # needs it in place.
    app.animation_level = "none"
    return app


def export(name: str, request: pytest.FixtureRequest) -> None:
    if os.environ.get("SGALERT_EXPORT_SCREENSHOTS"):
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SNAPSHOTS / f"{request.node.name}.svg", DOCS_IMAGES / f"tui-{name}.svg")


def opening(ref: str) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, SgalertApp)
        await unlock(pilot)
        app.open_case(ref)
        await settle(pilot)

    return run_before


async def skip_unlock(pilot: Pilot[Any]) -> None:
    await settle(pilot)
    await pilot.press("escape")
    await settle(pilot)


def test_queue_before_unlock(
    snap_compare: Compare,
    seeded: tuple[Workspace, dict[str, str]],
    request: pytest.FixtureRequest,
) -> None:
    workspace, _ = seeded
    app = desk(workspace)
    assert snap_compare(app, run_before=skip_unlock)
    image = (SNAPSHOTS / f"{request.node.name}.svg").read_text(encoding="utf-8")
    assert not [word for word in PERSONAL if word in image]
    export("queue", request)


def test_queue_light_theme(
    snap_compare: Compare,
    seeded: tuple[Workspace, dict[str, str]],
    request: pytest.FixtureRequest,
) -> None:
    workspace, _ = seeded
    assert snap_compare(desk(workspace, theme=LIGHT), run_before=skip_unlock)
    export("queue-light", request)


@pytest.mark.parametrize("size", [(120, 34), (80, 24)], ids=["120x34", "80x24"])
def test_case_view(
    snap_compare: Compare,
    seeded: tuple[Workspace, dict[str, str]],
    request: pytest.FixtureRequest,
    size: tuple[int, int],
) -> None:
    workspace, refs = seeded
    opened = opening(refs["acknowledged"])
    assert snap_compare(desk(workspace), run_before=opened, terminal_size=size)
    if size == (80, 24):
        export("case", request)


def test_hostile_subject_shows_escapes_literally(
    snap_compare: Compare,
    seeded: tuple[Workspace, dict[str, str]],
    request: pytest.FixtureRequest,
) -> None:
    workspace, refs = seeded
    assert snap_compare(desk(workspace), run_before=opening(refs["hostile"]))
    image = (SNAPSHOTS / f"{request.node.name}.svg").read_text(encoding="utf-8")
    for literal in ("\\x1b[31mRED\\x1b[0m", "[/b][bold]not&#160;bold[/bold]", "\\u202eevil"):
        assert literal in image, literal
    export("hostile-case", request)


def test_rota(
    snap_compare: Compare,
    seeded: tuple[Workspace, dict[str, str]],
    request: pytest.FixtureRequest,
) -> None:
    workspace, _ = seeded

    async def run_before(pilot: Pilot[Any]) -> None:
        await skip_unlock(pilot)
        await pilot.press("r")
        await settle(pilot)

    assert snap_compare(desk(workspace), run_before=run_before)
    image = (SNAPSHOTS / f"{request.node.name}.svg").read_text(encoding="utf-8")
    assert not [word for word in PERSONAL if word in image]
    export("rota", request)


@pytest.mark.parametrize("size", [(120, 34), (80, 24)], ids=["120x34", "80x24"])
def test_queue_with_preview(
    snap_compare: Compare,
    seeded: tuple[Workspace, dict[str, str]],
    request: pytest.FixtureRequest,
    size: tuple[int, int],
) -> None:
    """Unlocked, the preview pane shows the highlighted case: next step, facts, clocks and the
    last chronology entries (issue 16)."""
    workspace, refs = seeded

    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, SgalertApp)
        await unlock(pilot)
        table = app.queue_screen.query_one(CaseList)
        table.move_cursor(row=table.get_row_index(refs["acknowledged"]))
        await wait_for(
            pilot, lambda: "Bea" in str(app.queue_screen.query_one(PreviewPane).render())
        )
        await settle(pilot)

    assert snap_compare(desk(workspace), run_before=run_before, terminal_size=size)
    if size == (120, 34):
        export("queue-preview", request)
