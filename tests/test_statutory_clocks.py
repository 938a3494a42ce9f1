"""Statutory clocks started by actions: warned before, paged after, quiet once met."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sgalert.records.chronology import EntryKind

from .conftest import Team, encompass_case
from .engine_helpers import VirtualClock
from .test_escalation import make_engine


async def pages(team: Team) -> list[dict[str, object]]:
    rows = await team.service.store.fetchall("SELECT recipient, payload FROM outbox ORDER BY id")
    return [{"to": r[0], **json.loads(r[1])} for r in rows]


async def test_lado_referral_starts_a_one_working_day_clock_that_pages_until_met(
    team: Team,
) -> None:
    clock = VirtualClock(start=datetime(2026, 11, 27, 15, 0, tzinfo=UTC))  # a Friday
    engine, _ = make_engine(team, clock)
    (stored,) = await team.service.create_cases([encompass_case()])
    await team.service.acknowledge(team["dsl@example.org"], stored.ref)
    await team.service.refer(team["dsl@example.org"], stored.ref, "lado", "Called the LADO.")
    view = await team.service.open_case(team["dsl@example.org"], stored.ref)
    assert view.chronology[-1].kind is EntryKind.REFERRAL
    assert view.chronology[-1].text.startswith("Referred to the LADO")
    lado = [c for c in view.clocks if c.kind == "lado-1-working-day"]
    assert lado[0].due_at == datetime(2026, 11, 30, 15, 0, tzinfo=UTC)  # Monday, same time

    before = len(await pages(team))
    clock.advance(days=2, hours=20)  # Monday 11:00: four hours before
    await engine.tick_timers()
    warned = (await pages(team))[before:]
    assert warned and all("LADO within 1 working day" in str(p["reason"]) for p in warned)
    assert {p["to"] for p in warned} == {
        "dsl@example.org",
        "deputy@example.org",
        "head@example.org",
    }

    await team.service.meet_clock(team["dsl@example.org"], stored.ref, "lado-1-working-day")
    clock.advance(days=1)
    await engine.tick_timers()
    assert len(await pages(team)) == before + len(warned)  # nothing after it was met


async def test_file_transfer_counts_school_days_across_christmas(team: Team) -> None:
    clock = VirtualClock(start=datetime(2026, 12, 16, 12, 0, tzinfo=UTC))
    make_engine(team, clock)
    (stored,) = await team.service.create_cases([encompass_case()])
    due = await team.service.start_clock(
        team["dsl@example.org"], stored.ref, "file-transfer-5-school-days"
    )
    assert due == datetime(2027, 1, 7, 15, 30, tzinfo=UTC)  # 17, 18 Dec, 5, 6, 7 Jan


async def test_acknowledging_meets_the_intake_clock_only(team: Team) -> None:
    clock = VirtualClock()
    make_engine(team, clock)
    (stored,) = await team.service.create_cases([encompass_case()])
    await team.service.start_clock(
        team["dsl@example.org"], stored.ref, "suspension-confirmation-1-working-day"
    )
    # Starting a clock on a NEW case is working on it: it acknowledges the case first.
    assert (await team.service.summary(stored.ref)).acknowledged_by == "dsl@example.org"
    rows = await team.service.store.fetchall("SELECT kind, met_at FROM clocks ORDER BY kind")
    met = {row[0]: row[1] is not None for row in rows}
    assert met == {
        "encompass-before-school-day": True,
        "suspension-confirmation-1-working-day": False,
    }
