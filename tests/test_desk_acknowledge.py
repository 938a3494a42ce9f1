"""Acknowledge by working: any action on a NEW case acknowledges it first, as the person acting,
in the action's own transaction, and the engine stops paging about it. Only reading the case
(opening it, or saying so) meets an Encompass notice's "read before the next school day"."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from sgalert.desk.service import CaseService, DeskSetting, Identity
from sgalert.model import CaseState

from .conftest import Team, encompass_case
from .engine_helpers import VirtualClock
from .test_escalation import make_engine

DSL = "dsl@example.org"
ENCOMPASS_CLOCK = "encompass-before-school-day"
Work = Callable[[CaseService, Identity, str, Path], Awaitable[object]]

WORK: dict[str, Work] = {
    "note-added": lambda s, who, ref, _: s.add_note(who, ref, "Invented note."),
    "decision-recorded": lambda s, who, ref, _: s.record_decision(
        who, ref, "Invented decision", "Invented reason"
    ),
    "referred": lambda s, who, ref, _: s.refer(who, ref, "social-care", "Invented call."),
    "assign": lambda s, who, ref, _: s.assign(who, ref, "deputy@example.org"),
    "start-clock": lambda s, who, ref, _: s.start_clock(who, ref, "lado-1-working-day"),
    "export-attachment": lambda s, who, ref, folder: s.save_attachment(
        who, ref, 0, folder / "notice.pdf"
    ),
}


async def acknowledgements(team: Team, case_id: str) -> list[tuple[str, dict[str, object]]]:
    rows = await team.service.store.fetchall(
        "SELECT actor, detail FROM audit WHERE case_id = ? AND action = 'acknowledged'",
        (case_id,),
    )
    return [(row[0], json.loads(row[1])) for row in rows]


async def waiting_pages(team: Team, case_id: str) -> int:
    rows = await team.service.store.fetchall(
        "SELECT COUNT(*) FROM timers WHERE case_id = ? AND kind IN ('step', 'repeat')"
        " AND fired_at IS NULL AND cancelled_at IS NULL",
        (case_id,),
    )
    return int(rows[0][0])


async def pages_about(team: Team, case_id: str) -> int:
    rows = await team.service.store.fetchall(
        "SELECT COUNT(*) FROM outbox WHERE case_id = ? AND state != 'superseded'", (case_id,)
    )
    return int(rows[0][0])


async def clock_met(team: Team, case_id: str) -> bool:
    rows = await team.service.store.fetchall(
        "SELECT met_at FROM clocks WHERE case_id = ? AND kind = ?", (case_id, ENCOMPASS_CLOCK)
    )
    return rows[0][0] is not None


@pytest.mark.parametrize("action", list(WORK))
async def test_working_on_a_new_case_acknowledges_it_first_and_paging_stops(
    team: Team, tmp_path: Path, action: str
) -> None:
    clock = VirtualClock()
    engine, _ = make_engine(team, clock)
    (stored,) = await team.service.create_cases([encompass_case()])
    assert await waiting_pages(team, stored.id) == 1

    await WORK[action](team.service, team[DSL], stored.ref, tmp_path)

    summary = await team.service.summary(stored.ref)
    assert summary.state is CaseState.ACKNOWLEDGED
    assert summary.acknowledged_by == DSL
    assert await acknowledgements(team, stored.id) == [(DSL, {"via": "working", "action": action})]
    assert await waiting_pages(team, stored.id) == 0
    assert await clock_met(team, stored.id)  # working on it means having it open
    # The engine has nothing more to page about it, hours later.
    queued = await pages_about(team, stored.id)
    clock.advance(hours=3)
    await engine.tick_timers()
    assert await pages_about(team, stored.id) == queued


async def test_working_on_an_acknowledged_case_acknowledges_nothing_again(team: Team) -> None:
    make_engine(team, VirtualClock())
    (stored,) = await team.service.create_cases([encompass_case()])
    await team.service.acknowledge(team[DSL], stored.ref)
    await team.service.add_note(team["deputy@example.org"], stored.ref, "Invented note.")
    assert await acknowledgements(team, stored.id) == [(DSL, {"via": "direct"})]
    assert (await team.service.summary(stored.ref)).acknowledged_by == DSL


async def test_acknowledged_unread_leaves_the_reading_clock_open_until_the_case_is_opened(
    team: Team,
) -> None:
    make_engine(team, VirtualClock())
    (stored,) = await team.service.create_cases([encompass_case()])
    await team.service.acknowledge(team[DSL], stored.ref, read=False)

    summary = await team.service.summary(stored.ref)
    assert summary.state is CaseState.ACKNOWLEDGED
    assert await waiting_pages(team, stored.id) == 0  # escalation stops all the same
    assert not await clock_met(team, stored.id)  # but unread is not read
    assert summary.next_deadline is not None
    assert await acknowledgements(team, stored.id) == [(DSL, {"via": "direct", "read": False})]

    view = await team.service.open_case(team["deputy@example.org"], stored.ref)
    assert await clock_met(team, stored.id)
    assert [c.met_at is not None for c in view.clocks] == [True]
    rows = await team.service.store.fetchall(
        "SELECT actor, detail FROM audit WHERE case_id = ? AND action = 'clock-met'",
        (stored.id,),
    )
    assert [(r[0], json.loads(r[1])) for r in rows] == [
        ("deputy@example.org", {"clock": ENCOMPASS_CLOCK, "via": "read"})
    ]


async def test_acknowledged_having_read_it_meets_the_reading_clock(team: Team) -> None:
    make_engine(team, VirtualClock())
    (stored,) = await team.service.create_cases([encompass_case()])
    await team.service.acknowledge(team[DSL], stored.ref, read=True)
    assert await clock_met(team, stored.id)


async def test_a_desk_setting_is_remembered_per_person_without_personal_data(team: Team) -> None:
    service = team.service
    dsl, deputy = team[DSL], team["deputy@example.org"]
    setting = DeskSetting.ACKNOWLEDGE_BY_WORKING
    assert not await service.desk_setting(dsl.id, setting)
    await service.remember_desk_setting(dsl.id, setting)
    assert await service.desk_setting(dsl.id, setting)
    assert not await service.desk_setting(deputy.id, setting)
    saved = service.store.path.with_name("desk-settings.json")
    assert oct(saved.stat().st_mode & 0o777) == "0o600"
    assert DSL not in saved.read_text() and "Example" not in saved.read_text()
