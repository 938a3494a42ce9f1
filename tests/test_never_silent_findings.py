"""Defects the never-silent harness (tests/test_invariants.py) found beyond issue 12's list.

Each is pinned by one focused test, marked ``xfail(strict=True)`` until the engine is fixed: the
fix turns it into an unexpected pass, which fails the run until the marker is removed. The
channels are the harness's in-memory fakes (a pure unit test of the engine), on a real store.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sgalert.config import SourceConfig
from sgalert.engine.replies import process_reply
from sgalert.engine.serve import Engine
from sgalert.model import CaseState, Role, Source
from sgalert.records.keyring import remove_person
from sgalert.routing.duty import add_cover
from sgalert.routing.escalation import Plan

from .conftest import Team, add_member, encompass_case, whistle_case
from .engine_helpers import VirtualClock
from .invariants_support import EMAIL, TEAMS, FakeChannel, Ledger, reply

REPLIES = SourceConfig(name="replies", type=Source.ENCOMPASS, kind="maildir", purpose="replies")


def engine_with(team: Team, clock: VirtualClock, *channels: FakeChannel) -> Engine:
    """The engine on the team's store with these channels (in fallback order), default policies."""
    team.service._clock = clock
    assert team.service.plan is not None
    team.service.plan = Plan(
        school="Test School",
        calendar=team.service.plan.calendar,
        policies=team.service.plan.policies,
        channels=tuple(c.name for c in channels),
        per_person_channels=frozenset(c.name for c in channels if c.per_person),
    )
    return Engine(
        team.service,
        team.service.store.path.parent,
        notifiers={c.name: c for c in channels},
        clock=clock,
        watch=False,
    )


async def send_until_quiet(engine: Engine, clock: VirtualClock, minutes: float) -> None:
    """Run the outbox as its loop would, retry by retry, for ``minutes`` of virtual time."""
    end = clock() + timedelta(minutes=minutes)
    while clock() < end:
        await engine.sender.send_due()
        upcoming = await engine.sender.next_attempt()
        if upcoming is None or upcoming > end:
            break
        clock.advance(seconds=max((upcoming - clock()).total_seconds(), 0.0) + 0.001)


async def test_a_page_failing_for_hours_does_not_crash_the_outbox(team: Team) -> None:
    """A channel down for four hours: every retry of the page fails. The backoff is computed as
    5 s * 2**(attempts-1) before it is capped, which overflows timedelta at attempt 45 (about
    3.5 hours in), so record_failure raises OverflowError, send_due raises, and `sgalert serve`
    stops. The page must instead go out once the channel is back."""
    clock = VirtualClock()
    ledger = Ledger(clock)
    email = FakeChannel(EMAIL, True, ledger)
    engine = engine_with(team, clock, email)
    email.up = False
    (stored,) = await team.service.create_cases([encompass_case()])
    await engine.tick_timers()
    await send_until_quiet(engine, clock, minutes=4 * 60)
    email.up = True
    clock.advance(minutes=6)
    await engine.sender.send_due()
    assert [d.case_ref for d in ledger.deliveries] == [stored.ref]


async def deputy2_paged(team: Team, clock: VirtualClock) -> tuple[Engine, Ledger, str]:
    """A second deputy is on duty (a dated cover) when a notice arrives; the page is queued."""
    await add_member(team, "deputy2@example.org", Role.DEPUTY, approver="deputy@example.org")
    ledger = Ledger(clock)
    engine = engine_with(team, clock, FakeChannel(EMAIL, True, ledger))
    await add_cover(
        team.service,
        team["dsl@example.org"],
        "deputy2@example.org",
        clock(),
        clock() + timedelta(hours=4),
        now=clock(),
    )
    (stored,) = await team.service.create_cases([encompass_case()])
    await engine.tick_timers()
    return engine, ledger, stored.ref


async def test_a_removed_person_cannot_acknowledge_by_replying_to_an_old_page(team: Team) -> None:
    """The deputy on duty is paged, then leaves and is removed; their old page's token still
    acknowledges the case by reply, which stops every further page about it."""
    clock = VirtualClock()
    engine, ledger, ref = await deputy2_paged(team, clock)
    await engine.sender.send_due()
    (page,) = ledger.deliveries
    assert page.address == "deputy2@example.org" and page.ack_token is not None
    await remove_person(team.service.store, team["deputy@example.org"], "deputy2@example.org")
    outcome = await process_reply(
        team.service, reply(page.address, page.ack_token, 1), REPLIES, clock
    )
    assert not outcome.accepted
    assert (await team.service.summary(ref)).state is CaseState.NEW


async def test_a_page_queued_before_someone_is_removed_does_not_reach_them(team: Team) -> None:
    """A page is queued for the deputy on duty, who is removed before it goes out: the leaver
    still receives it (with a live acknowledgement token)."""
    clock = VirtualClock()
    engine, ledger, _ref = await deputy2_paged(team, clock)
    await remove_person(team.service.store, team["deputy@example.org"], "deputy2@example.org")
    await engine.sender.send_due()
    assert [d.address for d in ledger.deliveries if d.address == "deputy2@example.org"] == []


async def test_a_whistleblowing_page_never_falls_back_to_a_shared_channel(team: Team) -> None:
    """Email fails twice for the monitoring officer's page about a whistleblowing report; the
    fallback posts it to the shared Teams channel, telling everyone there that a report exists
    (design 6: shared channels never carry whistleblowing or about-head pages)."""
    clock = VirtualClock()
    ledger = Ledger(clock)
    email, teams = FakeChannel(EMAIL, True, ledger), FakeChannel(TEAMS, False, ledger)
    engine = engine_with(team, clock, email, teams)
    email.up = False
    await team.service.create_cases([whistle_case()])
    await engine.tick_timers()
    await send_until_quiet(engine, clock, minutes=10)
    assert [d.key for d in ledger.deliveries if d.shared] == []


async def test_a_shared_page_falling_back_to_email_goes_to_people(team: Team) -> None:
    """Teams fails twice for an Operation Encompass card; its fallback on the email channel is
    addressed to "teams" (the shared row's recipient), a person-less address, so nobody is
    emailed and a mail server would bounce it."""
    clock = VirtualClock()
    ledger = Ledger(clock)
    email, teams = FakeChannel(EMAIL, True, ledger), FakeChannel(TEAMS, False, ledger)
    engine = engine_with(team, clock, email, teams)
    teams.up = False
    await team.service.create_cases([encompass_case()])
    await engine.tick_timers()
    await send_until_quiet(engine, clock, minutes=10)
    nobody = [d.key for d in ledger.deliveries if not d.shared and d.person_id is None]
    assert nobody == []


async def test_an_encompass_deadline_passing_unmet_pages_at_the_deadline(team: Team) -> None:
    """A notice on Sunday night nobody acknowledges: the team is warned at 08:00, but when the
    school day starts at 08:30 with the notice unread, nothing is paged until the next 30-minute
    repeat (08:45). Design 6: statutory clocks page until met."""
    clock = VirtualClock(start=datetime(2026, 11, 22, 21, 55, tzinfo=UTC))
    ledger = Ledger(clock)
    engine = engine_with(team, clock, FakeChannel(EMAIL, True, ledger))
    (stored,) = await team.service.create_cases([encompass_case()])
    deadline = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)  # Monday 08:30 (GMT)
    while clock() < deadline:  # the engine ticks at every due timer, as its loop does
        await engine.tick_timers()
        await engine.sender.send_due()
        upcoming = await engine.sender.next_attempt() or deadline
        rows = await team.service.store.fetchall(
            "SELECT MIN(due_at) FROM timers WHERE fired_at IS NULL AND cancelled_at IS NULL"
        )
        due = datetime.fromisoformat(rows[0][0].replace("Z", "+00:00")) if rows[0][0] else deadline
        step = min(due, upcoming, deadline)
        clock.advance(seconds=max((step - clock()).total_seconds(), 0.001))
    await engine.tick_timers()
    await engine.sender.send_due()
    at_deadline = [d for d in ledger.deliveries if d.case_ref == stored.ref and d.at >= deadline]
    assert at_deadline


async def test_a_page_no_channel_can_deliver_raises_a_system_alert(team: Team) -> None:
    """Every channel is down: within five minutes the page has failed on each of them, and a
    system alert must say so (the TUI's banner), since nobody can be paged."""
    clock = VirtualClock()
    ledger = Ledger(clock)
    email, teams = FakeChannel(EMAIL, True, ledger), FakeChannel(TEAMS, False, ledger)
    engine = engine_with(team, clock, email, teams)
    email.up = teams.up = False
    await team.service.create_cases([encompass_case()])
    await engine.tick_timers()
    await send_until_quiet(engine, clock, minutes=5)
    await engine.tick_alerts()
    assert await team.service.open_alerts()
