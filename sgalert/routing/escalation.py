"""Timers that page people until a case is acknowledged, decided inside one transaction.

When a case is stored, :func:`schedule_new_cases` (in the same transaction) sets its statutory
clock and its first timers. :func:`fire_due` runs in the engine's write transaction: for each due
timer it re-reads the case and asks the timer's rule (:mod:`sgalert.rules.statutory`) whether a
page is still wanted; if so it writes outbox rows for the step's recipients and schedules the next
timer, and if not it cancels the timer. Because acknowledging takes the same write lock, a step is
either decided before the acknowledgement commits (and its pages were already queued) or after it
(and nothing is paged). Acknowledging stops the acknowledgement escalation only: a statutory clock's
warnings go on until the clock is met. A restart loses nothing: the timers are rows, and a due one
fires on the next tick, once.

Never silent: a step whose channels are not configured pages on the configured ones, and a target
that resolves to nobody pages everyone entitled to the case; either way a system alert tells the
team that the configuration needs fixing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sgalert.clock import iso, parse_iso
from sgalert.config import Config
from sgalert.model import CaseState, Flag, Role, Source
from sgalert.ports import PageSource, Urgency
from sgalert.records import audit
from sgalert.records.alerts import AlertKind, raise_alert
from sgalert.records.cases import NewCase, StoredCase
from sgalert.records.entitlement import Person, entitled_people, people_in_roles
from sgalert.routing.outbox import PageText, page_key, queue_page
from sgalert.rules.access import WHISTLE_GRANTORS
from sgalert.rules.policy import ABOUT_HEAD_POLICY, DEFAULT_POLICIES, Policy, without_the_head
from sgalert.rules.school_calendar import SchoolCalendar
from sgalert.rules.statutory import (
    ACTION_CLOCKS,
    ACTION_PREFIX,
    CLOCK_RULES,
    INTAKE_CLOCKS,
    MET_BY_ACKNOWLEDGEMENT,
    MET_BY_READING,
    StatutoryClock,
    TimerKind,
    TimerOrigin,
    action_clock,
    page_still_wanted,
)

# Kept for callers that name timer kinds by these strings.
STEP, REPEAT, CLOCK_WARNING = TimerKind.STEP, TimerKind.REPEAT, TimerKind.INTAKE_CLOCK
CLOCK_TIMER = ACTION_PREFIX


@dataclass(frozen=True, slots=True)
class Plan:
    """What the engine needs to decide who to page: policies, calendar, rota, people."""

    school: str
    calendar: SchoolCalendar
    policies: Mapping[Source, Policy] = field(default_factory=lambda: dict(DEFAULT_POLICIES))
    channels: tuple[str, ...] = ("email", "teams")
    per_person_channels: frozenset[str] = frozenset({"email"})
    reply_address: str | None = None
    # Whether a replies mailbox is watched, so a page may offer "reply to acknowledge" (and
    # carry a token for it). ``make_plan`` sets it from the config's sources.
    accepts_replies: bool = True
    # What each configured mailbox receives, by its name: who hears that it is down.
    source_types: Mapping[str, Source] = field(default_factory=dict)

    def policy(self, source: Source, flags: Sequence[str]) -> Policy:
        """The source's policy; for a case about the head, the allegation route, or (any other
        source) the source's own steps with the chair wherever they name the head."""
        if Flag.ABOUT_HEAD not in flags:
            return self.policies[source]
        if source is Source.WHISTLE:
            return ABOUT_HEAD_POLICY
        return without_the_head(self.policies[source])

    def clock_due(self, clock: str, received: datetime) -> datetime | None:
        try:
            rule = CLOCK_RULES[StatutoryClock(clock)]
        except ValueError:
            return None
        return rule.due(self.calendar, received)


def make_plan(config: Config) -> Plan:
    """The escalation plan a config describes: policies, calendar, configured channels."""
    return Plan(
        school=config.school_name,
        calendar=config.calendar,
        policies=config.policies,
        channels=tuple(c.name for c in config.channels),
        per_person_channels=frozenset(c.name for c in config.channels if c.per_person),
        reply_address=next(
            (str(c.options["reply_to"]) for c in config.channels if "reply_to" in c.options), None
        ),
        source_types={s.name: s.type for s in config.sources if s.purpose == "cases"},
        accepts_replies=any(s.purpose == "replies" for s in config.sources),
    )


def confidential(source: str, flags: Sequence[str]) -> bool:
    """Pages about whistleblowing or about the head never go to a shared channel."""
    return source == Source.WHISTLE or Flag.ABOUT_HEAD in flags


def schedule_new_cases(
    conn: sqlite3.Connection, plan: Plan, cases: Sequence[tuple[StoredCase, NewCase]], now: datetime
) -> None:
    """Clocks and first timers for new cases, in the transaction that stores them."""
    clocks, timers = [], []
    for stored, case in cases:
        policy = plan.policy(case.source, sorted(case.flags))
        if policy.steps:
            due = now + timedelta(minutes=policy.steps[0].delay_minutes)
            timers.append((stored.id, TimerKind.STEP.value, 0, iso(due), iso(now)))
        if policy.clock:
            due_at = plan.clock_due(policy.clock, case.received_at)
            if due_at is not None:
                clocks.append((stored.id, str(policy.clock), iso(due_at)))
                warn = max(due_at - timedelta(minutes=policy.warn_minutes_before), now)
                timers.append((stored.id, TimerKind.INTAKE_CLOCK.value, 0, iso(warn), iso(now)))
                # And at the deadline itself, if it passes unmet.
                timers.append(
                    (stored.id, TimerKind.INTAKE_CLOCK.value, 1, iso(max(due_at, now)), iso(now))
                )
    conn.executemany(
        "INSERT OR IGNORE INTO clocks (case_id, kind, due_at) VALUES (?, ?, ?)", clocks
    )
    conn.executemany(
        "INSERT INTO timers (case_id, kind, step, due_at, created_at) VALUES (?, ?, ?, ?, ?)",
        timers,
    )


@dataclass(frozen=True, slots=True)
class Duty:
    """Who the rota says is on duty at the tick, as an email (or None)."""

    on_duty: str | None


# Who is asked next when a step's own target was already paged: the most senior member of
# staff comes last [school 4.1.0].
_WIDENING = (Role.DSL, Role.DEPUTY, Role.HEAD)


def _resolve(target: str, entitled: Mapping[str, Person], duty: Duty) -> list[Person]:
    """The current, entitled people a policy target names (possibly nobody)."""
    if target == "on-duty":
        on_duty = entitled.get((duty.on_duty or "").lower())
        if on_duty is not None:
            return [on_duty]
        # The person on duty cannot read this case (or nobody is): its entitled DSLs, then the
        # deputies, then the head.
        for role in _WIDENING:
            chosen = [p for p in entitled.values() if p.role == role]
            if chosen:
                return chosen
        return []
    if target == "team":
        roles = {Role.DSL, Role.DEPUTY, Role.HEAD}
        return [p for p in entitled.values() if p.role in roles]
    if "@" in target:
        person = entitled.get(target.lower())
        return [person] if person else []
    return [p for p in entitled.values() if p.role == target]


def _someone_new(
    chosen: list[Person], entitled: Mapping[str, Person], already: set[str]
) -> list[Person]:
    """A later step widens the circle: people not paged by an earlier step, when there are any.

    If the step's own target was already paged (the deputy on duty was step 1's page), the next
    most senior entitled people not yet paged are asked instead. Only when everyone entitled has
    been paged does a step page the same people again, as a reminder.
    """
    fresh = [p for p in chosen if p.id not in already]
    if fresh:
        return fresh
    for role in _WIDENING:
        wider = [p for p in entitled.values() if p.role == role and p.id not in already]
        if wider:
            return wider
    return chosen


def _already_paged(conn: sqlite3.Connection, case_id: str) -> set[str]:
    rows = conn.execute(
        "SELECT DISTINCT o.person_id FROM outbox o JOIN timers t ON t.id = o.timer_id"
        " WHERE o.case_id = ? AND t.kind = ? AND o.person_id IS NOT NULL",
        (case_id, TimerKind.STEP.value),
    ).fetchall()
    return {str(r[0]) for r in rows}


def _elapsed(since: datetime, now: datetime) -> str:
    minutes = int((now - since).total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


@dataclass(frozen=True, slots=True)
class _Decision:
    """What one due timer pages, and what comes after it."""

    target: str
    channels: tuple[str, ...]
    reason: str
    urgency: Urgency
    following: tuple[TimerKind, int, float] | None
    widen: bool = False


def _decide(
    origin: TimerOrigin, step: int, policy: Policy, received: datetime, now: datetime
) -> _Decision:
    if origin.kind is TimerKind.STEP and step < len(policy.steps):
        current = policy.steps[step]
        following: tuple[TimerKind, int, float]
        if step + 1 < len(policy.steps):
            following = (TimerKind.STEP, step + 1, policy.steps[step + 1].delay_minutes)
        else:
            following = (TimerKind.REPEAT, step + 1, policy.repeat_minutes)
        return _Decision(
            current.target,
            current.channels,
            "new case" if step == 0 else f"not acknowledged: escalation step {step + 1}",
            Urgency.URGENT if step == 0 else Urgency.REMINDER,
            following,
            widen=step > 0,
        )
    if origin.kind in (TimerKind.STEP, TimerKind.REPEAT):
        return _Decision(
            policy.repeat_target,
            policy.repeat_channels,
            f"still not acknowledged after {_elapsed(received, now)}",
            Urgency.REMINDER,
            (TimerKind.REPEAT, step + 1, policy.repeat_minutes),
        )
    if origin.kind is TimerKind.ACTION_CLOCK:
        assert origin.clock is not None
        wording = CLOCK_RULES[origin.clock].wording
        return _Decision(
            "team",
            policy.repeat_channels,
            f"statutory deadline close: {wording}"
            if step == 0
            else f"statutory deadline passed: {wording}",
            Urgency.OVERDUE if step else Urgency.REMINDER,
            None,
        )
    return _Decision(  # the intake clock is about to run out, or has
        policy.repeat_target,
        policy.repeat_channels,
        "the statutory deadline is close and the case is not acknowledged"
        if step == 0
        else "the statutory deadline has passed and the case is not acknowledged",
        Urgency.OVERDUE,
        None,
    )


def _clock_met(conn: sqlite3.Connection, case_id: str, origin: TimerOrigin, policy: Policy) -> bool:
    """Whether the clock behind a clock timer is met (or was never started)."""
    if origin.kind is TimerKind.ACTION_CLOCK:
        clock: str | None = origin.clock
    elif origin.kind is TimerKind.INTAKE_CLOCK:
        clock = policy.clock
    else:
        return False
    row = conn.execute(
        "SELECT met_at FROM clocks WHERE case_id = ? AND kind = ?", (case_id, clock)
    ).fetchone()
    return row is None or row[0] is not None


def fire_due(
    conn: sqlite3.Connection, plan: Plan, duty: Duty, now: datetime, limit: int = 200
) -> int:
    """Fire every due timer (re-reading each case first); returns how many outbox rows queued."""
    rows = conn.execute(
        "SELECT t.id, t.case_id, t.kind, t.step, t.due_at, c.state, c.source, c.flags, c.ref,"
        " c.received_at FROM timers t JOIN cases c ON c.id = t.case_id"
        " WHERE t.fired_at IS NULL AND t.cancelled_at IS NULL AND t.due_at <= ?"
        " ORDER BY t.due_at, t.id LIMIT ?",
        (iso(now), limit),
    ).fetchall()
    queued = 0
    events: list[audit.AuditEvent] = []
    for timer_id, case_id, kind, step, due_at, state, source, flags_json, ref, received in rows:
        origin = TimerOrigin.parse(kind)
        flags = json.loads(flags_json)
        policy = plan.policy(Source(source), flags)
        met = _clock_met(conn, case_id, origin, policy)
        if not page_still_wanted(origin, CaseState(state), met):
            conn.execute("UPDATE timers SET cancelled_at = ? WHERE id = ?", (iso(now), timer_id))
            continue
        due = parse_iso(due_at)
        decision = _decide(origin, step, policy, parse_iso(received), now)
        secret = confidential(source, flags)
        entitled = entitled_people(conn, case_id)
        recipients = _resolve(decision.target, entitled, duty)
        problems: list[str] = []
        if not recipients:
            problems.append("no-recipient")
            recipients = list(entitled.values())
            raise_alert(
                conn,
                AlertKind.NO_RECIPIENT,
                f"{source} policy: {decision.target}",
                now,
                {
                    "case": None if secret else ref,
                    "target": decision.target,
                    "entitled": len(entitled),
                    "audience": "confidential" if secret else "team",
                },
            )
        elif decision.widen:
            recipients = _someone_new(recipients, entitled, _already_paged(conn, case_id))
        channels = [
            c
            for c in decision.channels
            if c in plan.channels and (c in plan.per_person_channels or not secret)
        ]
        if not channels:
            problems.append("channel-missing")
            channels = [c for c in plan.channels if c in plan.per_person_channels or not secret]
            raise_alert(
                conn,
                AlertKind.CHANNEL_MISSING,
                f"{source} policy: {', '.join(decision.channels)}",
                now,
                {
                    "case": None if secret else ref,
                    "named": list(decision.channels),
                    "used": channels,
                    "audience": "confidential" if secret else "team",
                },
            )
        clock_due = conn.execute(
            "SELECT MIN(due_at) FROM clocks WHERE case_id = ? AND met_at IS NULL", (case_id,)
        ).fetchone()[0]
        reason = decision.reason
        if Flag.FACTS_MISSING in flags:
            reason += " (facts not extracted: open the case)"
        elif Flag.NEEDS_TRIAGE in flags:
            reason += " (needs triage: open the case)"
        text = PageText(
            school=plan.school,
            case_ref=ref,
            source=PageSource(source),
            received_at=received,
            urgency=decision.urgency,
            step=step,
            reason=reason,
            reply_address=plan.reply_address,
            due_at=clock_due,
            confidential=secret,
            accepts_replies=plan.accepts_replies,
        )
        origin_key = f"timer-{timer_id}"
        for channel in channels:
            shared = channel not in plan.per_person_channels
            for person in [None] if shared else recipients:
                row_id = queue_page(
                    conn,
                    text,
                    key=page_key(origin_key, channel, person.id if person else None),
                    case_id=case_id,
                    timer_id=timer_id,
                    channel=channel,
                    recipient=person.email if person else channel,
                    person_id=person.id if person else None,
                    now=now,
                )
                queued += row_id is not None
        conn.execute("UPDATE timers SET fired_at = ? WHERE id = ?", (iso(now), timer_id))
        if decision.following is not None:
            next_kind, next_step, delay = decision.following
            conn.execute(
                "INSERT INTO timers (case_id, kind, step, due_at, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    case_id,
                    next_kind.value,
                    next_step,
                    iso(max(due, now) + timedelta(minutes=delay)),
                    iso(now),
                ),
            )
        events.append(
            audit.AuditEvent(
                audit.ENGINE,
                "escalation-step",
                case_id,
                {
                    "timer": timer_id,
                    "kind": kind,
                    "step": step,
                    "target": decision.target,
                    "recipients": sorted(p.id for p in recipients),
                    "channels": channels,
                    "problems": problems,
                    "late_ms": int((now - due).total_seconds() * 1000),
                },
            )
        )
    if events:
        audit.append_now(conn, events)
    return queued


def next_due(conn: sqlite3.Connection) -> datetime | None:
    row = conn.execute(
        "SELECT MIN(due_at) FROM timers WHERE fired_at IS NULL AND cancelled_at IS NULL"
    ).fetchone()
    return parse_iso(row[0]) if row and row[0] else None


def action_clock_due(plan: Plan, kind: str, started: datetime) -> datetime:
    """When a clock started by an action at ``started`` runs out."""
    return CLOCK_RULES[action_clock(kind)].due(plan.calendar, started)


def start_action_clock(
    conn: sqlite3.Connection, plan: Plan, case_id: str, kind: str, now: datetime
) -> datetime:
    """Start a statutory clock on a case: a warning before it runs out, and a page when it has."""
    clock = action_clock(kind)
    rule = CLOCK_RULES[clock]
    due = rule.due(plan.calendar, now)
    cursor = conn.execute(
        "INSERT OR IGNORE INTO clocks (case_id, kind, due_at) VALUES (?, ?, ?)",
        (case_id, clock.value, iso(due)),
    )
    if cursor.rowcount:
        warn = max(due - rule.warn_before, now)
        stored = TimerOrigin(TimerKind.ACTION_CLOCK, clock).stored()
        conn.executemany(
            "INSERT INTO timers (case_id, kind, step, due_at, created_at) VALUES (?, ?, ?, ?, ?)",
            [
                (case_id, stored, 0, iso(warn), iso(now)),
                (case_id, stored, 1, iso(due), iso(now)),
            ],
        )
    return due


_STOPPED_BY_ACK = (
    *(k.value for k in TimerKind if k.stops_on_acknowledgement),
    TimerKind.INTAKE_CLOCK.value,
)


def stop_for_acknowledged(
    conn: sqlite3.Connection, case_id: str, now: datetime, *, read: bool = True
) -> None:
    """In the acknowledging transaction: no further escalation step or queued page for it, and
    the clocks that acknowledgement meets are met. Statutory clocks started by actions go on.

    ``read``: whether the person acknowledging has read the case. A clock that asks for the
    notice to be read (Encompass, before the next school day) is met only if so; unread, it
    stays open until someone opens the case (:func:`meet_by_reading`)."""
    marks = ",".join("?" * len(_STOPPED_BY_ACK))
    conn.execute(
        "UPDATE timers SET cancelled_at = ? WHERE case_id = ? AND fired_at IS NULL"
        f" AND cancelled_at IS NULL AND kind IN ({marks})",
        (iso(now), case_id, *_STOPPED_BY_ACK),
    )
    conn.execute(
        "UPDATE outbox SET state = 'superseded' WHERE case_id = ? AND state = 'pending'"
        f" AND timer_id IN (SELECT id FROM timers WHERE case_id = ? AND kind IN ({marks}))",
        (case_id, case_id, *_STOPPED_BY_ACK),
    )
    met = tuple(c.value for c in MET_BY_ACKNOWLEDGEMENT if read or c not in MET_BY_READING)
    conn.execute(
        "UPDATE clocks SET met_at = ? WHERE case_id = ? AND met_at IS NULL"
        f" AND kind IN ({','.join('?' * len(met))})",
        (iso(now), case_id, *met),
    )


def meet_by_reading(conn: sqlite3.Connection, case_id: str, now: datetime) -> list[str]:
    """In the transaction that decrypts a case for someone: the clocks met by reading it are
    met now. Returns the ones this met, for the audit entry."""
    kinds = tuple(c.value for c in MET_BY_READING)
    marks = ",".join("?" * len(kinds))
    rows = conn.execute(
        f"UPDATE clocks SET met_at = ? WHERE case_id = ? AND met_at IS NULL AND kind IN ({marks})"
        " RETURNING kind",
        (iso(now), case_id, *kinds),
    ).fetchall()
    return sorted(str(row[0]) for row in rows)


SYSTEM_ALERT_TEXT = {
    "source-down": "a watched mailbox cannot be reached, so new notifications may be missed",
    "rota-gap": "the rota has gaps in the next 14 days where only the fallback is on duty",
    AlertKind.PAGE_UNDELIVERABLE: (
        "a page could not be delivered on any channel: open sgalert and check the channels"
    ),
    AlertKind.NO_RECIPIENT: (
        "an escalation step found nobody current and entitled to page: check the policy's"
        " target and the people with that role"
    ),
    AlertKind.CHANNEL_MISSING: (
        "a policy names channels that are not configured: pages went to the configured ones;"
        " run sgalert config check"
    ),
    AlertKind.MESSAGE_QUARANTINED: (
        "a message could be neither read nor quarantined and is held unread in its mailbox:"
        " see sgalert status"
    ),
    AlertKind.CALENDAR_ENDING: (
        "the school's term dates end within 60 days or have ended: add next year's"
    ),
}


def _alert_recipients(
    conn: sqlite3.Connection,
    plan: Plan,
    alert: tuple[str, str, Mapping[str, object]],
    channel: str,
) -> list[tuple[str | None, str, str]]:
    """Who is paged about one system alert (kind, subject, detail) on one channel: (person id,
    address, what it is).

    The DSL team always (they keep sgalert running). The whistleblowing mailbox is the
    monitoring officer's [HMS], so when it is down they are paged too, and only they are told
    which mailbox: the team and shared channels read "a watched mailbox", because a page leaves
    the machine and an allegation may be about one of the team. An alert raised while paging a
    confidential case (whistleblowing, or about the head) goes to no shared channel and names
    the case only to the monitoring officer; with nobody in that role, the DSL and deputies
    (never the head) hear that "a confidential case" needs them, and with no per-person channel
    at all the shared channels hear that, so it is never silence.
    """
    kind, source_name, detail = alert
    named = f"{kind} ({source_name})"
    if detail.get("audience") == "confidential":
        if channel not in plan.per_person_channels:
            # Never the case on a shared channel; but with no per-person channel configured at
            # all, the channel hears that one needs someone, rather than nobody hearing anything.
            if set(plan.channels) & plan.per_person_channels:
                return []
            return [(None, channel, f"{kind} (a confidential case)")]
        officers = people_in_roles(conn, [role.value for role in WHISTLE_GRANTORS])
        if officers:
            return [(pid, email, named) for pid, email, _ in officers]
        team = people_in_roles(conn, [Role.DSL.value, Role.DEPUTY.value])
        return [(pid, email, f"{kind} (a confidential case)") for pid, email, _ in team]
    whistle = kind == "source-down" and plan.source_types.get(source_name) is Source.WHISTLE
    told = f"{kind} (a watched mailbox)" if whistle else named
    if channel not in plan.per_person_channels:
        return [(None, channel, told)]
    roles = [Role.DSL.value, Role.DEPUTY.value, Role.HEAD.value]
    if whistle:
        roles.append(Role.MONITORING_OFFICER.value)
    return [
        (pid, email, named if role == Role.MONITORING_OFFICER.value else told)
        for pid, email, role in people_in_roles(conn, roles)
    ]


def page_system_alerts(conn: sqlite3.Connection, plan: Plan, now: datetime) -> int:
    """Queue pages to the DSL team (and, for the whistleblowing mailbox, the monitoring officer)
    for every open system alert not yet paged."""
    alerts = conn.execute(
        "SELECT id, kind, source_name, raised_at, detail FROM system_alerts"
        " WHERE cleared_at IS NULL AND paged_at IS NULL"
    ).fetchall()
    if not alerts:
        return 0
    queued = 0
    for alert_id, kind, source_name, raised_at, detail in alerts:
        about = (str(kind), str(source_name), json.loads(detail or "{}"))
        for channel in plan.channels:
            people = _alert_recipients(conn, plan, about, channel)
            for person_id, address, what in people:
                text = PageText(
                    school=plan.school,
                    case_ref=what,
                    source=PageSource.SYSTEM,
                    received_at=raised_at,
                    urgency=Urgency.ALERT,
                    step=0,
                    reason=str(about[2].get("text") or SYSTEM_ALERT_TEXT.get(kind, kind)),
                )
                row_id = queue_page(
                    conn,
                    text,
                    key=page_key(f"alert-{alert_id}", channel, person_id),
                    channel=channel,
                    recipient=address,
                    person_id=person_id,
                    now=now,
                )
                queued += row_id is not None
        conn.execute("UPDATE system_alerts SET paged_at = ? WHERE id = ?", (iso(now), alert_id))
    audit.append_now(
        conn,
        [
            audit.AuditEvent(audit.ENGINE, "alert-paged", detail={"alert": a[0], "kind": a[1]})
            for a in alerts
        ],
    )
    return queued


__all__ = [
    "ACTION_CLOCKS",
    "CLOCK_TIMER",
    "INTAKE_CLOCKS",
    "Duty",
    "Plan",
    "action_clock_due",
    "confidential",
    "fire_due",
    "meet_by_reading",
    "next_due",
    "page_system_alerts",
    "schedule_new_cases",
    "start_action_clock",
    "stop_for_acknowledged",
]
