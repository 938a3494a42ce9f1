"""Timers that page people until a case is acknowledged, decided inside one transaction.

When a case is stored, :func:`schedule_new_cases` (in the same transaction) sets its statutory
clock and its first timers. :func:`fire_due` runs in the engine's write transaction: for each due
timer it re-reads the case, and if the case is still unacknowledged it writes outbox rows for the
step's recipients and schedules the next timer; if the case was acknowledged it cancels the
timer. Because acknowledging takes the same write lock, a step is either decided before the
acknowledgement commits (and its pages were already queued) or after it (and nothing is paged).
A restart loses nothing: the timers are rows, and a due one fires on the next tick, once.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sgalert import audit
from sgalert.cases import NewCase, StoredCase
from sgalert.clock import iso, parse_iso
from sgalert.model import Flag, Role, Source
from sgalert.policy import ABOUT_HEAD_POLICY, DEFAULT_POLICIES, Policy
from sgalert.school_calendar import SchoolCalendar

ACK_TOKEN_DAYS = 7
STEP, REPEAT, CLOCK_WARNING = "step", "repeat", "clock-warning"


@dataclass(frozen=True, slots=True)
class Plan:
    """What the engine needs to decide who to page: policies, calendar, rota, people."""

    school: str
    calendar: SchoolCalendar
    policies: Mapping[Source, Policy] = field(default_factory=lambda: dict(DEFAULT_POLICIES))
    channels: tuple[str, ...] = ("email", "teams")
    per_person_channels: frozenset[str] = frozenset({"email"})
    reply_address: str | None = None
    # What each configured mailbox receives, by its name: who hears that it is down.
    source_types: Mapping[str, Source] = field(default_factory=dict)

    def policy(self, source: Source, flags: Sequence[str]) -> Policy:
        if Flag.ABOUT_HEAD in flags:
            return ABOUT_HEAD_POLICY
        return self.policies[source]

    def clock_due(self, clock: str, received: datetime) -> datetime | None:
        if clock == "encompass-before-school-day":
            return self.calendar.next_school_day_start(received)
        if clock == "whistle-monitoring-officer-5-working-days":
            return self.calendar.add_working_days(received, 5)
        return None


def schedule_new_cases(
    conn: sqlite3.Connection, plan: Plan, cases: Sequence[tuple[StoredCase, NewCase]], now: datetime
) -> None:
    """Clocks and first timers for new cases, in the transaction that stores them."""
    clocks, timers = [], []
    for stored, case in cases:
        policy = plan.policy(case.source, sorted(case.flags))
        if policy.steps:
            due = now + timedelta(minutes=policy.steps[0].delay_minutes)
            timers.append((stored.id, STEP, 0, iso(due), iso(now)))
        if policy.clock:
            due_at = plan.clock_due(policy.clock, case.received_at)
            if due_at is not None:
                clocks.append((stored.id, policy.clock, iso(due_at)))
                warn = max(due_at - timedelta(minutes=policy.warn_minutes_before), now)
                timers.append((stored.id, CLOCK_WARNING, 0, iso(warn), iso(now)))
    conn.executemany(
        "INSERT OR IGNORE INTO clocks (case_id, kind, due_at) VALUES (?, ?, ?)", clocks
    )
    conn.executemany(
        "INSERT INTO timers (case_id, kind, step, due_at, created_at) VALUES (?, ?, ?, ?, ?)",
        timers,
    )


@dataclass(frozen=True, slots=True)
class Person:
    id: str
    email: str
    role: str


@dataclass(frozen=True, slots=True)
class Duty:
    """Who the rota says is on duty at the tick, as an email (or None)."""

    on_duty: str | None


def _entitled(conn: sqlite3.Connection, case_id: str) -> dict[str, Person]:
    """People who can read the case: only they are paged (and only they could acknowledge)."""
    rows = conn.execute(
        "SELECT DISTINCT p.id, p.email, p.role FROM key_wraps w"
        " JOIN batch_keys b ON b.batch_id = w.recipient AND w.recipient_kind = 'batch'"
        " JOIN group_key_seals s ON s.group_name = b.group_name AND s.version = b.version"
        " JOIN group_members m ON m.group_name = s.group_name AND m.person_id = s.person_id"
        "   AND m.state = 'active'"
        " JOIN people p ON p.id = s.person_id AND p.removed_at IS NULL"
        " WHERE w.case_id = ? AND w.key_name = 'content'"
        " UNION SELECT p.id, p.email, p.role FROM key_wraps w JOIN people p ON p.id = w.recipient"
        " WHERE w.case_id = ? AND w.recipient_kind = 'person' AND w.key_name = 'content'"
        " AND p.removed_at IS NULL",
        (case_id, case_id),
    ).fetchall()
    return {str(r[1]).lower(): Person(str(r[0]), str(r[1]), str(r[2])) for r in rows}


def _resolve(target: str, entitled: Mapping[str, Person], duty: Duty) -> list[Person]:
    if target == "on-duty":
        on_duty = entitled.get(duty.on_duty or "")
        chosen = [on_duty] if on_duty is not None else []
        if not chosen:  # the person on duty cannot read this case: page its entitled DSLs
            chosen = [p for p in entitled.values() if p.role == Role.DSL]
        return chosen or list(entitled.values())
    if target == "team":
        roles = {Role.DSL, Role.DEPUTY, Role.HEAD}
        return [p for p in entitled.values() if p.role in roles] or list(entitled.values())
    if "@" in target:
        person = entitled.get(target.lower())
        return [person] if person else []
    return [p for p in entitled.values() if p.role == target]


def _new_token() -> str:
    return "ACK-" + secrets.token_hex(8).upper()


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
        action_clock = kind.removeprefix(CLOCK_TIMER) if kind.startswith(CLOCK_TIMER) else None
        if action_clock is not None:
            met = conn.execute(
                "SELECT met_at FROM clocks WHERE case_id = ? AND kind = ?", (case_id, action_clock)
            ).fetchone()
            stop = state == "closed" or met is None or met[0] is not None
        else:
            stop = state != "new"
        if stop:
            conn.execute("UPDATE timers SET cancelled_at = ? WHERE id = ?", (iso(now), timer_id))
            continue
        flags = json.loads(flags_json)
        policy = plan.policy(Source(source), flags)
        due = parse_iso(due_at)
        if kind == STEP and step < len(policy.steps):
            current = policy.steps[step]
            target, channels = current.target, current.channels
            reason = "new case" if step == 0 else f"not acknowledged: escalation step {step + 1}"
            urgency = "urgent" if step == 0 else "reminder"
            if step + 1 < len(policy.steps):
                following = (STEP, step + 1, policy.steps[step + 1].delay_minutes)
            else:
                following = (REPEAT, step + 1, policy.repeat_minutes)
        elif kind in (STEP, REPEAT):
            target, channels = policy.repeat_target, policy.repeat_channels
            reason = f"still not acknowledged after {(now - parse_iso(received)).seconds // 60} min"
            urgency = "reminder"
            following = (REPEAT, step + 1, policy.repeat_minutes)
        elif action_clock is not None:
            target, channels = "team", policy.repeat_channels
            what = action_clock.replace("-", " ")
            reason = (
                f"statutory deadline ({what}) is close"
                if step == 0
                else f"statutory deadline ({what}) has passed"
            )
            urgency = "overdue" if step else "reminder"
            following = None
        else:  # the intake clock is about to run out
            target, channels = policy.repeat_target, policy.repeat_channels
            reason = "the statutory deadline is close and the case is not acknowledged"
            urgency = "overdue"
            following = None
        entitled = _entitled(conn, case_id)
        recipients = _resolve(target, entitled, duty)
        clock_due = conn.execute(
            "SELECT MIN(due_at) FROM clocks WHERE case_id = ? AND met_at IS NULL", (case_id,)
        ).fetchone()[0]
        for channel in channels:
            if channel not in plan.channels:
                continue
            people = recipients if channel in plan.per_person_channels else [None]
            for person in people:
                key = f"timer-{timer_id}:{channel}:{person.id if person else 'shared'}"
                token = _new_token() if person is not None else None
                payload = {
                    "idempotency_key": key,
                    "school": plan.school,
                    "case_ref": ref,
                    "source": source,
                    "received_at": received,
                    "urgency": urgency,
                    "step": step,
                    "reason": reason,
                    "ack_token": token,
                    "reply_address": plan.reply_address,
                    "due_at": clock_due,
                }
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO outbox (idempotency_key, case_id, timer_id, channel,"
                    " recipient, person_id, payload, state, next_attempt_at, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                    (
                        key,
                        case_id,
                        timer_id,
                        channel,
                        person.email if person else channel,
                        person.id if person else None,
                        json.dumps(payload),
                        iso(now),
                        iso(now),
                    ),
                )
                if cursor.rowcount and token is not None and person is not None:
                    conn.execute(
                        "INSERT INTO ack_tokens (token_sha256, case_id, person_id, outbox_id,"
                        " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            hashlib.sha256(token.encode()).hexdigest(),
                            case_id,
                            person.id,
                            cursor.lastrowid,
                            iso(now),
                            iso(now + timedelta(days=ACK_TOKEN_DAYS)),
                        ),
                    )
                queued += cursor.rowcount
        conn.execute("UPDATE timers SET fired_at = ? WHERE id = ?", (iso(now), timer_id))
        if following is not None:
            next_kind, next_step, delay = following
            conn.execute(
                "INSERT INTO timers (case_id, kind, step, due_at, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    case_id,
                    next_kind,
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
                    "target": target,
                    "recipients": sorted(p.id for p in recipients),
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


# Clocks that acknowledging a case meets: the notice was read (Encompass) or the Monitoring
# Officer, who is the one paged and the one who acknowledges, has been informed (whistle).
INTAKE_CLOCKS = ("encompass-before-school-day", "whistle-monitoring-officer-5-working-days")

# Clocks started by an action (a referral, a suspension, a file moving school), with how long
# before the deadline the team is warned.
ACTION_CLOCKS: Mapping[str, timedelta] = {
    "lado-1-working-day": timedelta(hours=4),
    "suspension-confirmation-1-working-day": timedelta(hours=4),
    "file-transfer-5-school-days": timedelta(days=1),
}
CLOCK_TIMER = "clock:"


def action_clock_due(plan: Plan, kind: str, started: datetime) -> datetime:
    if kind == "file-transfer-5-school-days":
        return plan.calendar.add_school_days(started, 5)
    if kind in ACTION_CLOCKS:
        return plan.calendar.add_working_days(started, 1)
    raise ValueError(f"unknown clock {kind!r}")


def start_action_clock(
    conn: sqlite3.Connection, plan: Plan, case_id: str, kind: str, now: datetime
) -> datetime:
    """Start a statutory clock on a case: a warning before it runs out, and a page when it has."""
    due = action_clock_due(plan, kind, now)
    cursor = conn.execute(
        "INSERT OR IGNORE INTO clocks (case_id, kind, due_at) VALUES (?, ?, ?)",
        (case_id, kind, iso(due)),
    )
    if cursor.rowcount:
        warn = max(due - ACTION_CLOCKS[kind], now)
        conn.executemany(
            "INSERT INTO timers (case_id, kind, step, due_at, created_at) VALUES (?, ?, ?, ?, ?)",
            [
                (case_id, CLOCK_TIMER + kind, 0, iso(warn), iso(now)),
                (case_id, CLOCK_TIMER + kind, 1, iso(due), iso(now)),
            ],
        )
    return due


def stop_for_acknowledged(conn: sqlite3.Connection, case_id: str, now: datetime) -> None:
    """In the acknowledging transaction: no further step, no queued page, intake clocks met."""
    conn.execute(
        "UPDATE timers SET cancelled_at = ? WHERE case_id = ? AND fired_at IS NULL"
        " AND cancelled_at IS NULL AND kind NOT LIKE 'clock:%'",
        (iso(now), case_id),
    )
    conn.execute(
        "UPDATE outbox SET state = 'superseded' WHERE case_id = ? AND state = 'pending'",
        (case_id,),
    )
    conn.execute(
        "UPDATE clocks SET met_at = ? WHERE case_id = ? AND met_at IS NULL"
        f" AND kind IN ({','.join('?' * len(INTAKE_CLOCKS))})",
        (iso(now), case_id, *INTAKE_CLOCKS),
    )


SYSTEM_ALERT_TEXT = {
    "source-down": "a watched mailbox cannot be reached, so new notifications may be missed",
    "rota-gap": "the rota has gaps in the next 14 days where only the fallback is on duty",
}


def _alert_recipients(
    conn: sqlite3.Connection, plan: Plan, kind: str, source_name: str, channel: str
) -> list[tuple[str | None, str, str]]:
    """Who is paged about one system alert on one channel: (person id, address, what it is).

    The DSL team always (they keep sgalert running). The whistleblowing mailbox is the
    monitoring officer's [HMS], so when it is down they are paged too, and only they are told
    which mailbox: the team and shared channels read "a watched mailbox", because a page leaves
    the machine and an allegation may be about one of the team.
    """
    named = f"{kind} ({source_name})"
    whistle = kind == "source-down" and plan.source_types.get(source_name) is Source.WHISTLE
    told = f"{kind} (a watched mailbox)" if whistle else named
    if channel not in plan.per_person_channels:
        return [(None, channel, told)]
    roles = [Role.DSL.value, Role.DEPUTY.value, Role.HEAD.value]
    if whistle:
        roles.append(Role.MONITORING_OFFICER.value)
    people = conn.execute(
        f"SELECT id, email, role FROM people WHERE removed_at IS NULL"
        f" AND role IN ({','.join('?' * len(roles))}) ORDER BY email",
        roles,
    ).fetchall()
    return [
        (str(pid), str(email), named if role == Role.MONITORING_OFFICER.value else told)
        for pid, email, role in people
    ]


def page_system_alerts(conn: sqlite3.Connection, plan: Plan, now: datetime) -> int:
    """Queue pages to the DSL team (and, for the whistleblowing mailbox, the monitoring officer)
    for every open system alert not yet paged."""
    alerts = conn.execute(
        "SELECT id, kind, source_name, raised_at FROM system_alerts"
        " WHERE cleared_at IS NULL AND paged_at IS NULL"
    ).fetchall()
    if not alerts:
        return 0
    queued = 0
    for alert_id, kind, source_name, raised_at in alerts:
        for channel in plan.channels:
            people = _alert_recipients(conn, plan, kind, source_name, channel)
            for person_id, address, what in people:
                key = f"alert-{alert_id}:{channel}:{person_id or 'shared'}"
                payload = {
                    "idempotency_key": key,
                    "school": plan.school,
                    "case_ref": what,
                    "source": "system",
                    "received_at": raised_at,
                    "urgency": "alert",
                    "step": 0,
                    "reason": SYSTEM_ALERT_TEXT.get(kind, kind),
                    "ack_token": None,
                    "reply_address": None,
                    "due_at": None,
                }
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO outbox (idempotency_key, channel, recipient, person_id,"
                    " payload, state, next_attempt_at, created_at)"
                    " VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)",
                    (key, channel, address, person_id, json.dumps(payload), iso(now), iso(now)),
                )
                queued += cursor.rowcount
        conn.execute("UPDATE system_alerts SET paged_at = ? WHERE id = ?", (iso(now), alert_id))
    audit.append_now(
        conn,
        [
            audit.AuditEvent(audit.ENGINE, "alert-paged", detail={"alert": a[0], "kind": a[1]})
            for a in alerts
        ],
    )
    return queued
