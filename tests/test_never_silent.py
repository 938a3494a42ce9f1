"""Failure paths of paging: each one still reaches a person, or raises a system alert.

Each test here reproduces a fault found on the engine before it was fixed: statutory pages
dropped after an acknowledgement, a policy channel or target that silently paged nobody,
fallbacks that multiplied without end, a slow channel holding back the others, a later step
paging the same person again, and pages left waiting out a dead engine's claim.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sgalert.engine.serve import Engine
from sgalert.model import Source
from sgalert.ports import DeliveryError, Notification, Receipt, Recipient
from sgalert.routing.escalation import Duty, Plan, fire_due
from sgalert.rules.policy import DEFAULT_POLICIES, Policy, Step

from .conftest import Team, encompass_case, whistle_case
from .engine_helpers import RecordingNotifier, VirtualClock
from .test_escalation import make_engine


class DownNotifier:
    """A channel that is down until switched back on; counts every attempt."""

    def __init__(self, name: str, *, per_person: bool = True) -> None:
        self.name = name
        self.per_person = per_person
        self.up = False
        self.attempts = 0
        self.sent: list[tuple[Notification, Recipient]] = []

    async def send(self, notification: Notification, recipient: Recipient) -> Receipt:
        self.attempts += 1
        if not self.up:
            raise DeliveryError("connection refused")
        self.sent.append((notification, recipient))
        return Receipt(self.name, "ok")

    async def close(self) -> None:
        return None


class WatchedNotifier(RecordingNotifier):
    """Records pages and lets a test wait until a number of them have arrived."""

    def __init__(self, name: str, *, per_person: bool) -> None:
        super().__init__(name, per_person)
        self.arrived = asyncio.Event()

    async def send(self, notification: Notification, recipient: Recipient) -> Receipt:
        receipt = await super().send(notification, recipient)
        self.arrived.set()
        return receipt

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.sent) < count:
                self.arrived.clear()
                await self.arrived.wait()


class HangingNotifier:
    """A black-holed mail server: every send waits until released."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.per_person = True
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def send(self, notification: Notification, recipient: Recipient) -> Receipt:
        self.started.set()
        await self.release.wait()
        return Receipt(self.name, "late")

    async def close(self) -> None:
        return None


def _plan(
    team: Team, channels: tuple[str, ...], per_person: frozenset[str], **policies: Policy
) -> Plan:
    assert team.service.plan is not None
    return Plan(
        school="Test School",
        calendar=team.service.plan.calendar,
        policies={**DEFAULT_POLICIES, **{Source(k): v for k, v in policies.items()}},
        channels=channels,
        per_person_channels=per_person,
    )


def _engine(team: Team, clock: VirtualClock, plan: Plan, notifiers: dict[str, object]) -> Engine:
    team.service._clock = clock
    team.service.plan = plan
    return Engine(
        team.service,
        team.service.store.path.parent,
        notifiers=notifiers,  # type: ignore[arg-type]
        clock=clock,
        watch=False,
    )


async def _alerts(team: Team) -> list[tuple[str, str, bool]]:
    rows = await team.service.store.fetchall(
        "SELECT kind, source_name, cleared_at IS NULL FROM system_alerts ORDER BY id"
    )
    return [(str(r[0]), str(r[1]), bool(r[2])) for r in rows]


# ----- 1. statutory clocks page after acknowledgement ---------------------------------------


async def test_lado_warning_and_deadline_pages_are_delivered_after_acknowledgement(
    team: Team,
) -> None:
    clock = VirtualClock(start=datetime(2026, 11, 27, 15, 0, tzinfo=UTC))  # a Friday
    engine, email = make_engine(team, clock)
    (stored,) = await team.service.create_cases([encompass_case()])
    await team.service.acknowledge(team["dsl@example.org"], stored.ref)
    await team.service.refer(team["dsl@example.org"], stored.ref, "lado", "Called the LADO.")
    await engine.sender.send_due()
    email.sent.clear()

    clock.advance(days=2, hours=20)  # Monday 11:00: four hours before the deadline
    await engine.tick_timers()
    await engine.sender.send_due()
    warned = [(n.reason, r.address) for n, r in email.sent]
    assert warned and all("LADO" in reason and "close" in reason for reason, _ in warned)
    assert {address for _, address in warned} >= {"dsl@example.org", "deputy@example.org"}

    email.sent.clear()
    clock.advance(hours=4, seconds=1)  # the working day has passed
    await engine.tick_timers()
    await engine.sender.send_due()
    assert email.sent and all("passed" in n.reason for n, _ in email.sent)
    assert all(n.urgency == "overdue" for n, _ in email.sent)

    # Met: the pages stop, even one already queued and not yet sent.
    clock.advance(hours=1)
    await team.service.start_clock(
        team["dsl@example.org"], stored.ref, "suspension-confirmation-1-working-day"
    )
    clock.advance(hours=24)
    await engine.tick_timers()  # the suspension warning is queued …
    await team.service.meet_clock(
        team["dsl@example.org"], stored.ref, "suspension-confirmation-1-working-day"
    )
    email.sent.clear()
    await engine.sender.send_due()  # … and dropped, because the clock was met meanwhile
    assert email.sent == []


async def test_acknowledging_still_stops_the_acknowledgement_escalation(team: Team) -> None:
    clock = VirtualClock()
    engine, email = make_engine(team, clock)
    (stored,) = await team.service.create_cases([encompass_case()])
    await engine.tick_timers()
    await team.service.acknowledge(team["dsl@example.org"], stored.ref)
    await engine.sender.send_due()
    clock.advance(hours=3)
    await engine.tick_timers()
    await engine.sender.send_due()
    assert email.sent == []


# ----- 2. channels and targets that resolve to nothing ----------------------------------------


async def test_policy_naming_an_unconfigured_channel_pages_on_the_configured_one(
    team: Team,
) -> None:
    clock = VirtualClock()
    mail = RecordingNotifier("mail")  # the school renamed [channels.email] to [channels.mail]
    plan = _plan(team, ("mail",), frozenset({"mail"}))
    engine = _engine(team, clock, plan, {"mail": mail})
    (stored,) = await team.service.create_cases([encompass_case()])
    await engine.tick_timers()
    await engine.sender.send_due()
    assert [r.address for _, r in mail.sent] == ["dsl@example.org"]
    assert ("channel-missing", "encompass policy: email, teams", True) in await _alerts(team)

    await engine.tick_alerts()  # the alert itself is paged to the team
    await engine.sender.send_due()
    alerts = [n for n, _ in mail.sent if n.source == "system"]
    assert alerts and "not configured" in alerts[0].reason
    assert stored.ref in {n.case_ref for n, _ in mail.sent}


async def test_target_with_nobody_pages_everyone_entitled_and_raises_an_alert(
    team: Team,
) -> None:
    clock = VirtualClock()
    email = RecordingNotifier("email")
    # A policy that names a role nobody holds for this source (the chair cannot read Encompass).
    nobody = Policy(
        steps=(Step("chair", ("email",), 0),),
        repeat_target="team",
        repeat_channels=("email",),
        repeat_minutes=600,
    )
    plan = _plan(team, ("email",), frozenset({"email"}), encompass=nobody)
    engine = _engine(team, clock, plan, {"email": email})
    await team.service.create_cases([encompass_case()])
    await engine.tick_timers()
    await engine.sender.send_due()
    assert {r.address for _, r in email.sent} == {
        "dsl@example.org",
        "deputy@example.org",
        "head@example.org",
    }
    assert ("no-recipient", "encompass policy: chair", True) in await _alerts(team)


async def test_removed_persons_address_as_target_still_pages_someone(team: Team) -> None:
    clock = VirtualClock()
    email = RecordingNotifier("email")
    gone = Policy(
        steps=(Step("former-dsl@example.org", ("email",), 0),),
        repeat_target="team",
        repeat_channels=("email",),
        repeat_minutes=600,
    )
    plan = _plan(team, ("email",), frozenset({"email"}), lesson=gone)
    engine = _engine(team, clock, plan, {"email": email})
    case = dataclasses.replace(encompass_case(), source=Source.LESSON)
    await team.service.create_cases([case])
    await engine.tick_timers()
    await engine.sender.send_due()
    assert email.sent, "a target that resolves to nobody must not page nobody"
    assert any(kind == "no-recipient" for kind, _, _ in await _alerts(team))


# ----- 5. fallbacks are bounded; an undeliverable page raises one alert ---------------------


async def test_every_channel_down_for_an_hour_stays_bounded_and_raises_one_alert(
    team: Team,
) -> None:
    clock = VirtualClock()
    email, graph, teams = (
        DownNotifier("email"),
        DownNotifier("graph"),
        DownNotifier("teams", per_person=False),
    )
    only_dsl = Policy(
        steps=(Step("dsl", ("email",), 0),),
        repeat_target="dsl",
        repeat_channels=("email",),
        repeat_minutes=24 * 60,
    )
    plan = _plan(
        team, ("email", "graph", "teams"), frozenset({"email", "graph"}), encompass=only_dsl
    )
    engine = _engine(team, clock, plan, {"email": email, "graph": graph, "teams": teams})
    (stored,) = await team.service.create_cases([encompass_case()])
    await engine.tick_timers()
    for _ in range(120):  # an hour in 30-second ticks
        await engine.sender.send_due()
        clock.advance(seconds=30)
    rows = await team.service.store.fetchall(
        "SELECT channel, COUNT(*) FROM outbox WHERE case_id IS NOT NULL GROUP BY channel"
    )
    assert {str(r[0]): int(r[1]) for r in rows} == {"email": 1, "graph": 1, "teams": 1}
    attempts = email.attempts + graph.attempts + teams.attempts
    # Three rows, each backing off to one try every 5 minutes: about 16 tries each in the hour
    # (it was 61 rows and 652 tries when each fallback queued its own).
    assert attempts <= 3 * 20, f"{attempts} attempts in an hour"
    undeliverable = [a for a in await _alerts(team) if a[0] == "page-undeliverable"]
    assert undeliverable == [("page-undeliverable", stored.ref, True)]

    email.up = graph.up = teams.up = True  # the network is back
    clock.advance(minutes=6)
    await engine.sender.send_due()
    await engine.sender.send_due()
    case_pages = [n for n, _ in email.sent + graph.sent + teams.sent if n.source != "system"]
    assert len(case_pages) == 3  # one per channel, not a pile
    assert next(a for a in await _alerts(team) if a[0] == "page-undeliverable")[2] is False


async def test_whistleblowing_page_never_falls_back_to_a_shared_channel(team: Team) -> None:
    clock = VirtualClock()
    email, teams = DownNotifier("email"), DownNotifier("teams", per_person=False)
    teams.up = True
    plan = _plan(team, ("email", "teams"), frozenset({"email"}))
    engine = _engine(team, clock, plan, {"email": email, "teams": teams})
    await team.service.create_cases([whistle_case(), whistle_case(about_head=True)])
    await engine.tick_timers()
    for _ in range(6):
        await engine.sender.send_due()
        clock.advance(minutes=1)
    assert teams.sent == []
    assert any(a[0] == "page-undeliverable" for a in await _alerts(team))


# ----- 6. one slow channel never delays another ---------------------------------------------


async def test_black_holed_mail_server_does_not_hold_back_the_next_teams_card(
    team: Team,
) -> None:
    clock = VirtualClock()
    email, teams = HangingNotifier("email"), WatchedNotifier("teams", per_person=False)
    plan = _plan(team, ("email", "teams"), frozenset({"email"}))
    engine = _engine(team, clock, plan, {"email": email, "teams": teams})
    loop = asyncio.create_task(engine.outbox_loop())
    try:
        (first,) = await team.service.create_cases([encompass_case()])
        await engine.tick_timers()
        await teams.wait_for(1)
        async with asyncio.timeout(5):
            await email.started.wait()
        (second,) = await team.service.create_cases([encompass_case("Bo Invented")])
        await engine.tick_timers()
        await teams.wait_for(2)
        assert [n.case_ref for n, _ in teams.sent] == [first.ref, second.ref]
    finally:
        email.release.set()
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)


# ----- 8. a later step pages someone new ---------------------------------------------------


async def test_step_two_pages_someone_new_when_the_deputy_was_on_duty(team: Team) -> None:
    service = team.service
    service._clock = VirtualClock()
    plan = _plan(team, ("email",), frozenset({"email"}))
    (stored,) = await service.create_cases([encompass_case()])
    now = service._clock()
    duty = Duty("deputy@example.org")
    await service.store.transact(lambda conn: fire_due(conn, plan, duty, now))
    later = now + timedelta(minutes=10, seconds=1)
    await service.store.transact(lambda conn: fire_due(conn, plan, duty, later))
    rows = await service.store.fetchall(
        "SELECT o.recipient, t.step FROM outbox o JOIN timers t ON t.id = o.timer_id"
        " WHERE o.case_id = ? ORDER BY o.id",
        (stored.id,),
    )
    assert [(str(r[0]), int(r[1])) for r in rows] == [
        ("deputy@example.org", 0),
        ("dsl@example.org", 1),  # not the deputy again
    ]


# ----- 9. wording: elapsed time and the school's time zone ----------------------------------


async def test_reminder_after_thirty_hours_says_thirty_hours(team: Team) -> None:
    clock = VirtualClock(start=datetime(2026, 11, 22, 21, 55, tzinfo=UTC))
    engine, _ = make_engine(team, clock)
    await team.service.create_cases([encompass_case()])
    await engine.tick_timers()
    for _ in range(62):  # the repeat every 30 minutes, for 31 hours
        clock.advance(minutes=30)
        await engine.tick_timers()
    rows = await team.service.store.fetchall("SELECT payload FROM outbox ORDER BY id DESC LIMIT 1")
    reason = json.loads(rows[0][0])["reason"]
    assert reason == "still not acknowledged after 31 h", reason


async def test_page_times_are_in_the_schools_time_zone(team: Team) -> None:
    assert team.service.config is not None
    dublin = dataclasses.replace(team.service.config.calendar, zone=ZoneInfo("Europe/Paris"))
    team.service.config = dataclasses.replace(team.service.config, calendar=dublin)
    clock = VirtualClock(start=datetime(2026, 7, 1, 9, 0, tzinfo=UTC))
    engine, email = make_engine(team, clock)
    await team.service.create_cases([encompass_case()])
    await engine.tick_timers()
    await engine.sender.send_due()
    (notification, _), *_ = email.sent
    assert notification.zone == ZoneInfo("Europe/Paris")
    assert "Received: Sun 22 Nov 2026 22:55 CET" in notification.body()


# ----- 10. a dead engine's claims are released at takeover ----------------------------------


async def test_new_engine_sends_a_dead_engines_claimed_pages_at_once(team: Team) -> None:
    clock = VirtualClock()
    dead = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )

    dead_holder = f"{socket.gethostname()}:{int(dead.stdout)}"
    first, _ = make_engine(team, clock)
    first.holder = dead_holder
    assert await first.try_lease()
    await team.service.create_cases([encompass_case()])
    await first.tick_timers()
    # The first engine claims its pages and dies before it can send or record them.
    claimed = await first.sender._claim("email", 50)
    assert claimed

    clock.advance(seconds=5)  # well inside the 60-second claim
    second, email = make_engine(team, clock)
    second.holder = f"{socket.gethostname()}:{os.getpid()}"
    assert await second.try_lease()
    await second.sender.send_due()
    assert [r.address for _, r in email.sent] == ["dsl@example.org"]
    rows = await team.service.store.fetchall("SELECT state FROM outbox")
    assert [str(r[0]) for r in rows] == ["delivered"]


async def test_status_lists_an_alert_that_has_no_since(team: Team) -> None:
    clock = VirtualClock()
    email = RecordingNotifier("email")
    nobody = Policy(
        steps=(Step("chair", ("email",), 0),),
        repeat_target="team",
        repeat_channels=("email",),
        repeat_minutes=600,
    )
    plan = _plan(team, ("email",), frozenset({"email"}), encompass=nobody)
    engine = _engine(team, clock, plan, {"email": email})
    await team.service.create_cases([encompass_case()])
    await engine.tick_timers()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGALERT_")}
    env["SGALERT_WORKSPACE"] = str(team.service.store.path.parent)
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "sgalert", "status"],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "ALERT no-recipient: encompass policy: chair since" in result.stdout
    assert "Traceback" not in result.stderr
