"""Escalation decided in transactions: steps on time, nothing after an acknowledgement."""

from __future__ import annotations

import asyncio
import json

from sgalert.desk.service import CaseService
from sgalert.engine.serve import Engine
from sgalert.records.store import Store

from .conftest import Team, encompass_case, whistle_case
from .engine_helpers import RecordingNotifier, VirtualClock


def make_engine(team: Team, clock: VirtualClock) -> tuple[Engine, RecordingNotifier]:
    email = RecordingNotifier("email")
    team.service._clock = clock
    assert team.service.plan is not None
    team.service.plan = type(team.service.plan)(
        school="Test School",
        calendar=team.service.plan.calendar,
        policies=team.service.plan.policies,
        channels=("email",),
        per_person_channels=frozenset({"email"}),
    )
    engine = Engine(
        team.service,
        team.service.store.path.parent,
        notifiers={"email": email},
        clock=clock,
        watch=False,
    )
    return engine, email


async def outbox(team: Team) -> list[tuple[str, str, str]]:
    rows = await team.service.store.fetchall(
        "SELECT recipient, state, payload FROM outbox ORDER BY id"
    )
    return [(r[0], r[1], json.loads(r[2])["urgency"]) for r in rows]


async def test_unacknowledged_case_reaches_the_deputy_after_ten_minutes(team: Team) -> None:
    clock = VirtualClock()
    engine, email = make_engine(team, clock)
    await team.service.create_cases([encompass_case()])
    await engine.tick_timers()
    assert [r[0] for r in await outbox(team)] == ["dsl@example.org"]  # on duty (fallback)
    clock.advance(minutes=9)
    await engine.tick_timers()
    assert len(await outbox(team)) == 1
    clock.advance(minutes=1, seconds=1)
    await engine.tick_timers()
    assert [r[0] for r in await outbox(team)] == ["dsl@example.org", "deputy@example.org"]
    clock.advance(minutes=10)
    await engine.tick_timers()
    assert [r[0] for r in await outbox(team)][-1] == "head@example.org"
    clock.advance(minutes=30)
    await engine.tick_timers()
    repeat = {r[0] for r in (await outbox(team))[3:]}
    assert repeat == {"dsl@example.org", "deputy@example.org", "head@example.org"}
    await engine.sender.send_due()
    assert len(email.sent) == 6


async def test_acknowledged_case_gets_no_further_step(team: Team) -> None:
    clock = VirtualClock()
    engine, email = make_engine(team, clock)
    (stored,) = await team.service.create_cases([encompass_case()])
    await engine.tick_timers()
    clock.advance(minutes=5)
    await team.service.acknowledge(team["dsl@example.org"], stored.ref)
    for _ in range(4):
        clock.advance(minutes=15)
        await engine.tick_timers()
    await engine.sender.send_due()
    assert [r[0] for r in await outbox(team)] == ["dsl@example.org"]
    assert email.sent == []  # the one page was queued before the ack and superseded by it
    pending = await team.service.store.fetchall(
        "SELECT count(*) FROM timers WHERE fired_at IS NULL AND cancelled_at IS NULL"
    )
    assert pending[0][0] == 0
    met = await team.service.store.fetchall("SELECT met_at FROM clocks")
    assert all(row[0] for row in met)


async def test_page_queued_before_an_ack_is_superseded_not_sent(team: Team) -> None:
    clock = VirtualClock()
    engine, email = make_engine(team, clock)
    (stored,) = await team.service.create_cases([encompass_case()])
    await engine.tick_timers()  # queued, not yet sent
    await team.service.acknowledge(team["deputy@example.org"], stored.ref)
    await engine.sender.send_due()
    assert email.sent == []
    assert [r[1] for r in await outbox(team)] == ["superseded"]


async def test_ack_racing_an_escalation_never_pages_after_the_ack(team: Team) -> None:
    """Two connections, as two processes: the engine ticks while a DSL acknowledges."""
    clock = VirtualClock()
    engine, email = make_engine(team, clock)
    other = CaseService(await Store.open(team.service.store.path), team.service.config, clock)
    try:
        stored = await team.service.create_cases([encompass_case() for _ in range(12)])
        clock.advance(minutes=10, seconds=1)
        for case in stored:
            await asyncio.gather(
                engine.tick_timers(),
                other.acknowledge(team["dsl@example.org"], case.ref),
                engine.sender.send_due(),
            )
        await engine.sender.send_due()
        rows = await team.service.store.fetchall(
            "SELECT o.created_at, c.acknowledged_at, o.state, o.delivered_at FROM outbox o"
            " JOIN cases c ON c.id = o.case_id"
        )
        for created, acknowledged, state, delivered in rows:
            assert created <= acknowledged, "a page was decided after the acknowledgement"
            if delivered is not None:
                assert state == "delivered"
        sent_refs = [n.case_ref for n, _ in email.sent]
        assert len(sent_refs) <= len(rows)
    finally:
        await other.close()


async def test_no_page_carries_personal_data(team: Team) -> None:
    clock = VirtualClock()
    engine, email = make_engine(team, clock)
    await team.service.create_cases([encompass_case("Ada Invented"), whistle_case()])
    for _ in range(3):
        await engine.tick_timers()
        clock.advance(minutes=11)
    await engine.sender.send_due()
    assert email.sent
    for notification, _ in email.sent:
        text = notification.subject() + notification.body()
        for secret in (
            "Ada",
            "Invented",
            "2017-03-14",
            "Riley",
            "riley@example.org",
            "allegation",
            "Child present",
        ):
            assert secret not in text
        assert notification.case_ref in text
    # The whistle case only ever paged the monitoring officer.
    whistle_pages = {r.address for n, r in email.sent if n.source == "whistle"}
    assert whistle_pages == {"mo@example.org"}


async def test_about_head_allegation_never_pages_the_head(team: Team) -> None:
    clock = VirtualClock()
    engine, email = make_engine(team, clock)
    await team.service.create_cases([whistle_case(about_head=True)])
    for _ in range(4):
        await engine.tick_timers()
        clock.advance(days=1, minutes=1)
    await engine.sender.send_due()
    recipients = {r.address for _, r in email.sent}
    assert "chair@example.org" in recipients
    assert "head@example.org" not in recipients


async def test_encompass_clock_is_the_next_school_day_and_warns_before_it(team: Team) -> None:
    make_engine(team, VirtualClock())
    await team.service.create_cases([encompass_case()])
    clocks = await team.service.store.fetchall("SELECT kind, due_at FROM clocks")
    # Received Sunday 22 Nov 21:55: due Monday 23 Nov 08:30 (GMT).
    assert [(r[0], r[1]) for r in clocks] == [
        ("encompass-before-school-day", "2026-11-23T08:30:00.000000Z")
    ]
    warning = await team.service.store.fetchall(
        "SELECT due_at FROM timers WHERE kind = 'clock-warning'"
    )
    assert warning[0][0] == "2026-11-23T08:00:00.000000Z"


async def test_a_slow_channel_does_not_hold_back_the_other(team: Team) -> None:
    import time

    from sgalert.routing.escalation import Plan

    class Slow(RecordingNotifier):
        async def send(self, notification, recipient):  # type: ignore[no-untyped-def]
            await asyncio.sleep(1.0)
            return await super().send(notification, recipient)

    class Timed(RecordingNotifier):
        at: float = 0.0

        async def send(self, notification, recipient):  # type: ignore[no-untyped-def]
            self.at = time.monotonic()
            return await super().send(notification, recipient)

    clock = VirtualClock()
    team.service._clock = clock
    assert team.service.plan is not None
    team.service.plan = Plan(
        school="Test School",
        calendar=team.service.plan.calendar,
        channels=("email", "teams"),
        per_person_channels=frozenset({"email"}),
    )
    email, teams = Slow("email"), Timed("teams", per_person=False)
    engine = Engine(
        team.service,
        team.service.store.path.parent,
        notifiers={"email": email, "teams": teams},
        clock=clock,
        watch=False,
    )
    await team.service.create_cases([encompass_case()])
    await engine.tick_timers()
    started = time.monotonic()
    await engine.sender.send_due()
    assert teams.at - started < 0.5, "the Teams card waited for the slow mail server"
    assert len(email.sent) == 1 and len(teams.sent) == 1
