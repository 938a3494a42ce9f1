"""A new case gets the DSL's attention (issue 16): the bell rings, a toast names the source and the
reference (never anything from inside the case), and the row stays highlighted until the case is
opened here. Configurable for a terminal through ``SGALERT_DESK_ATTENTION``; on by default."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from sgalert.desk.views import AuditRow
from sgalert.errors import ConfigError
from sgalert.model import Source
from sgalert.records.audit import AuditEntry
from sgalert.workspace import Workspace
from tui.app import SgalertApp, make_app
from tui.attention import Attention, new_cases
from tui.case_list import CaseList
from tui.screens.case import CaseScreen

from .conftest import PASSPHRASES
from .test_tui_support import FakeClock, make_workspace, seed_desk, settle, unlock, wait_for

SIZE = (80, 24)

# Another process records a case, as the engine does when a notice arrives.
CREATE_SCRIPT = """
import asyncio, json, sys
from datetime import UTC, datetime
from pathlib import Path
from sgalert.desk.service import CaseService
from sgalert.model import Source
from sgalert.records.cases import FIELD_ATTACHMENTS, FIELD_BODY, FIELD_FACTS, NewCase
from sgalert.workspace import Workspace

async def main() -> None:
    root = Path(sys.argv[1])
    service = await CaseService.open(Workspace(root / "sgalert.toml", root / "sgalert.db"))
    facts = {"child_name": "Zed Invented", "child_dob": "2016-01-02"}
    case = NewCase(
        source=Source.ENCOMPASS,
        received_at=datetime(2026, 11, 22, 21, 59, tzinfo=UTC),
        origin="mailbox",
        content={
            FIELD_FACTS: json.dumps(facts).encode(),
            FIELD_BODY: b"Zed was present at an invented incident.",
            FIELD_ATTACHMENTS: b"[]",
        },
    )
    try:
        (stored,) = await service.create_cases([case])
        print(stored.ref)
    finally:
        await service.close()

asyncio.run(main())
"""

ACK_SCRIPT = """
import asyncio, os, sys
from pathlib import Path
from sgalert.desk.service import CaseService
from sgalert.workspace import Workspace

async def main() -> None:
    root = Path(sys.argv[1])
    service = await CaseService.open(Workspace(root / "sgalert.toml", root / "sgalert.db"))
    try:
        who = await service.unlock("deputy@example.org", os.environ["SGALERT_PASSPHRASE"])
        await service.acknowledge(who, sys.argv[2])
    finally:
        await service.close()

asyncio.run(main())
"""


async def run_script(script: str, *args: str) -> str:
    env = {**os.environ, "SGALERT_PASSPHRASE": PASSPHRASES["deputy@example.org"]}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode().strip()


def counting_bell(app: SgalertApp) -> list[int]:
    rings: list[int] = []
    app.bell = lambda: rings.append(1)  # type: ignore[method-assign]
    return rings


def toasts(app: SgalertApp) -> list[tuple[str, str]]:
    return [(n.title, n.message) for n in app._notifications]


def highlighted(app: SgalertApp) -> set[str]:
    table = app.queue_screen.query_one(CaseList)
    return {row.key for row in table._rows if row.highlight}


@pytest.fixture
async def workspace(tmp_path: Path) -> Workspace:
    workspace = make_workspace(tmp_path / "ws")
    await seed_desk(workspace)
    return workspace


async def test_a_new_case_from_another_process_rings_toasts_and_is_highlighted(
    workspace: Workspace,
) -> None:
    app = make_app(workspace, as_email="dsl@example.org", clock=FakeClock(), poll_seconds=0.1)
    rings = counting_bell(app)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        existing = set(app.queue_screen.query_one(CaseList).keys)
        assert rings == [] and highlighted(app) == set()  # what was there at start is not new
        ref = await run_script(CREATE_SCRIPT, str(workspace.root))
        await wait_for(pilot, lambda: ref in highlighted(app))
        await settle(pilot)
        assert ref not in existing
        assert rings == [1]
        assert ("New case", f"Operation Encompass {ref}") in toasts(app)
        shown = " ".join(f"{title} {message}" for title, message in toasts(app))
        assert "Zed" not in shown and "Invented" not in shown and "incident" not in shown
        assert highlighted(app) == {ref}
        # A colleague acknowledging another case is a change, not a new case: no more noise.
        table = app.queue_screen.query_one(CaseList)
        waiting = sorted(
            r
            for r in existing
            if table.cell(r, "state") == "NEW" and table.cell(r, "source") == "Encompass"
        )
        await run_script(ACK_SCRIPT, str(workspace.root), waiting[0])
        await wait_for(pilot, lambda: table.cell(waiting[0], "state") == "acked")
        await pilot.pause(0.5)
        await settle(pilot)
        assert rings == [1]
        # Opening it here is what clears the highlight.
        table.move_cursor(row=table.get_row_index(ref))
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, CaseScreen) and app.screen.ref == ref
        await pilot.press("escape")
        await settle(pilot)
        assert highlighted(app) == set()


async def test_attention_can_be_turned_off_for_a_terminal(workspace: Workspace) -> None:
    app = make_app(
        workspace,
        as_email="dsl@example.org",
        clock=FakeClock(),
        poll_seconds=0.1,
        attention=Attention.parse("off"),
    )
    rings = counting_bell(app)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        ref = await run_script(CREATE_SCRIPT, str(workspace.root))
        await wait_for(pilot, lambda: ref in app.queue_screen.query_one(CaseList).keys)
        await pilot.pause(0.3)
        await settle(pilot)
        assert rings == [] and highlighted(app) == set()
        assert not [title for title, _ in toasts(app) if "new case" in title.lower()]


def test_the_setting_reads_like_the_docs_say() -> None:
    assert Attention.parse(None) == Attention() == Attention(True, True, True)
    assert Attention.parse("") == Attention()
    assert Attention.parse("off") == Attention(False, False, False)
    assert Attention.parse("toast, highlight") == Attention(bell=False)
    with pytest.raises(ConfigError, match="SGALERT_DESK_ATTENTION.*unknown sound"):
        Attention.parse("bell,sound")


def entry(seq: int, action: str, actor: str, **detail: object) -> AuditRow:
    found = AuditEntry(seq, "2026-11-22T22:00:00Z", actor, action, "case-id", detail, "", "")
    return AuditRow(found, str(detail.get("ref")) if "ref" in detail else None)


def test_only_cases_created_after_the_last_look_and_not_by_me_are_new() -> None:
    rows = [
        entry(12, "case-created", "engine", ref="SG-2026-0012", source="whistle"),
        entry(11, "case-created", "dsl@example.org", ref="SG-2026-0011", source="encompass"),
        entry(10, "acknowledged", "deputy@example.org", ref="SG-2026-0009"),
        entry(9, "case-created", "engine", ref="SG-2026-0009", source="lesson"),
        entry(8, "case-created", "engine", ref="SG-2026-0008", source="lesson"),
    ]
    found = new_cases(rows, after=8, me="DSL@example.org")
    assert [(c.ref, c.source) for c in found] == [
        ("SG-2026-0009", Source.LESSON),
        ("SG-2026-0012", Source.WHISTLE),
    ]
