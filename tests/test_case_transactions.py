"""A referral and a decision are each one transaction that checks the case's state first.

A closed case records nothing: no entry, no clock, no audit line, not even half of a referral.
And a decision re-reads the state inside the transaction that writes it, so a close committed by
another desk a moment earlier is seen, not written past.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiosqlite
import pytest

from sgalert.desk.service import CaseService
from sgalert.errors import IllegalTransition
from sgalert.records.chronology import EntryKind
from sgalert.workspace import Workspace

from .conftest import PASSPHRASES, Team, encompass_case


async def _record(team: Team, ref: str) -> tuple[list[EntryKind], list[str], list[str]]:
    """The case's chronology kinds, its clocks and its audit actions."""
    view = await team.service.open_case(team["dsl@example.org"], ref)
    rows = await team.service.store.fetchall(
        "SELECT action FROM audit WHERE case_id = ? ORDER BY seq", (view.summary.id,)
    )
    actions = [r[0] for r in rows if r[0] != "case-read"]
    return [e.kind for e in view.chronology], [c.kind for c in view.clocks], actions


async def test_a_referral_on_a_closed_case_records_nothing(team: Team) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    dsl = team["dsl@example.org"]
    await team.service.close_case(dsl, stored.ref, "No further action", "Checked with school")
    before = await _record(team, stored.ref)

    with pytest.raises(IllegalTransition, match="closed"):
        await team.service.refer(dsl, stored.ref, "lado", "Called the LADO.")
    with pytest.raises(IllegalTransition, match="closed"):
        await team.service.refer(dsl, stored.ref, "police", "Rang 101.")

    after = await _record(team, stored.ref)
    assert after == before
    assert EntryKind.REFERRAL not in after[0]
    assert "lado-1-working-day" not in after[1]


async def test_a_lado_referral_on_an_open_case_records_the_entry_and_its_clock(
    team: Team,
) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    dsl = team["dsl@example.org"]
    await team.service.refer(dsl, stored.ref, "lado", "Called the LADO.")
    kinds, clocks, actions = await _record(team, stored.ref)
    assert kinds[-1] is EntryKind.REFERRAL
    assert "lado-1-working-day" in clocks
    assert actions[-2:] == ["referred", "clock-started"]


async def test_a_decision_sees_a_close_committed_just_before_it(
    team: Team, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another desk (its own connection) closes the case after this desk last looked at it and
    before its write transaction begins: the decision must be refused, not recorded."""
    (stored,) = await team.service.create_cases([encompass_case()])
    other = await CaseService.open(workspace)
    try:
        deputy = await other.unlock("deputy@example.org", PASSPHRASES["deputy@example.org"])
        store = team.service.store
        original = store.write
        raced = False

        @asynccontextmanager
        async def write_after_the_other_desk_closes() -> AsyncIterator[aiosqlite.Connection]:
            nonlocal raced
            if not raced:
                raced = True
                await other.close_case(deputy, stored.ref, "Duplicate", "Same incident")
            async with original() as db:
                yield db

        monkeypatch.setattr(store, "write", write_after_the_other_desk_closes)
        with pytest.raises(IllegalTransition, match="closed"):
            await team.service.record_decision(
                team["dsl@example.org"], stored.ref, "Refer to early help", "Family asked"
            )
        monkeypatch.undo()
        assert raced
    finally:
        await other.close()
    kinds, _, actions = await _record(team, stored.ref)
    assert EntryKind.DECISION not in kinds
    assert "decision-recorded" not in actions
