"""The headteacher's daily digest: "nothing was missed", without one piece of personal data.

Built from plaintext metadata only (case references, sources, flags and times; timers, clocks,
system alerts, the audit chain); it never decrypts, so the engine, which holds no private key,
builds it. It covers the time since the previous digest day's slot (the last 24 hours on
consecutive school days; Friday's slot to Monday's over a weekend), reaching further back when a
digest day was missed. What it says is in ``docs/digest.md``; how it reads, and what each
recipient's copy may name, is :mod:`sgalert.routing.digest_render`.

Every digest carries the audit chain's anchor (entry number and head hash), so each emailed copy
is an outside record of the log's state, and re-verifies the previous digest's anchor ("the log
still contains yesterday's state"). Queued through the outbox once per school date: the key is
the date, the ``daily_jobs`` row says it is done, and both are written in one transaction, so a
restart or a standby engine never sends a second one.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sgalert.clock import iso, parse_iso
from sgalert.config import Config, DigestSettings
from sgalert.errors import AuditChainBroken
from sgalert.model import ABOUT_HEAD_READERS, Flag, Source, readers_for
from sgalert.ports import PageSource, Urgency
from sgalert.records import audit
from sgalert.records.alerts import AlertKind, clear_alert, raise_alert
from sgalert.routing.outbox import FALLBACK_AFTER, OutboxState, PageText, page_key, queue_page
from sgalert.rules.policy import ABOUT_HEAD_POLICY, Policy, without_the_head
from sgalert.rules.school_calendar import SchoolCalendar

DIGEST_ACTION = "digest-queued"  # the audit entry that records each digest and its anchor
JOB = "digest"  # its row in ``daily_jobs``
LATE_AFTER = timedelta(minutes=5)  # queued later than this after the slot: it says it is late
CLOCK_DAYS_AHEAD = 2  # statutory clocks due within this many school days are listed
ABOUT_HEAD = "about-head"  # the ack-time group of allegations about the head
MAX_DAYS_BACK = 366  # how far back a previous digest day is looked for
FIX = "the daily digest misses someone: check [digest] in sgalert.toml and `sgalert user list`"


# ----- when -------------------------------------------------------------------------------


def is_digest_day(calendar: SchoolCalendar, settings: DigestSettings, day: date) -> bool:
    return settings.also_non_school_days or calendar.is_school_day(day)


def slot(calendar: SchoolCalendar, settings: DigestSettings, day: date) -> datetime:
    """When ``day``'s digest is due, in UTC (the configured local time, 07:30 by default)."""
    return datetime.combine(day, settings.at, tzinfo=calendar.zone).astimezone(UTC)


def previous_digest_day(
    calendar: SchoolCalendar, settings: DigestSettings, day: date
) -> date | None:
    for back in range(1, MAX_DAYS_BACK + 1):
        earlier = day - timedelta(days=back)
        if is_digest_day(calendar, settings, earlier):
            return earlier
    return None


def clock_horizon(
    calendar: SchoolCalendar, day: date, school_days: int = CLOCK_DAYS_AHEAD
) -> datetime:
    """The end (local midnight) of the ``school_days``-th school day from ``day`` on, counting
    ``day`` itself when it is one: "due in the next 2 school days" at Monday 07:30 is Monday and
    Tuesday."""
    found, current = 0, day
    while True:
        if calendar.is_school_day(current):
            found += 1
            if found >= school_days:
                break
        current += timedelta(days=1)
    return datetime.combine(current + timedelta(days=1), time(0), tzinfo=calendar.zone).astimezone(
        UTC
    )


# ----- what -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaseFact:
    """One case as the digest knows it: its reference, source, who may read it, and times."""

    ref: str
    source: Source
    about_head: bool
    readers: frozenset[str]
    received_at: datetime
    acknowledged_at: datetime | None
    closed_at: datetime | None


@dataclass(frozen=True, slots=True)
class Escalation:
    """A case whose escalation went past its first step in the period."""

    case: CaseFact
    highest_step: int  # 1-based: 2 means the second step paged
    highest_target: str
    answered_after: int | None  # the last step that had paged when it was acknowledged
    answered_target: str | None


@dataclass(frozen=True, slots=True)
class ClockFact:
    case: CaseFact
    kind: str
    due_at: datetime
    met_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SourceDown:
    name: str
    whistle: bool  # the whistleblowing mailbox is named only to those who may know of it
    raised_at: datetime
    cleared_at: datetime | None


@dataclass(frozen=True, slots=True)
class PreviousAnchor:
    day: date
    anchor: audit.Anchor
    holds: bool
    detail: str  # "N entries checked" or what is wrong


@dataclass(frozen=True, slots=True)
class Digest:
    """Everything one day's digest says, before it is cut to each recipient's copy."""

    school: str
    day: date
    since: datetime
    until: datetime
    generated_at: datetime
    calendar: SchoolCalendar
    anchor: audit.Anchor
    new: tuple[CaseFact, ...] = ()
    acknowledged: tuple[CaseFact, ...] = ()
    closed: tuple[CaseFact, ...] = ()
    open_count: int = 0
    open_about_head: int = 0
    unacknowledged: tuple[CaseFact, ...] = ()
    # Minutes each policy's first step has before the next one pages, by source (and about-head).
    allowances: Mapping[str, float] = field(default_factory=dict)
    escalations: tuple[Escalation, ...] = ()
    deadline_warnings: int = 0
    clocks_due: tuple[ClockFact, ...] = ()
    clocks_overdue: tuple[ClockFact, ...] = ()
    clocks_met_late: tuple[ClockFact, ...] = ()
    clock_horizon: datetime | None = None
    sources_down: tuple[SourceDown, ...] = ()
    engine_starts: tuple[datetime, ...] = ()
    rota_gap: Mapping[str, object] | None = None
    alerts_raised: Mapping[str, int] = field(default_factory=dict)
    alerts_cleared: Mapping[str, int] = field(default_factory=dict)
    alerts_open: Mapping[str, int] = field(default_factory=dict)
    previous: PreviousAnchor | None = None
    missed_days: tuple[date, ...] = ()  # digest days between the last one sent and this one
    late: str | None = None  # why this digest goes out after its slot


def first_step_allowance(policy: Policy) -> float:
    """Minutes before a policy pages anyone beyond its first step (its repeat if it never does)."""
    waited = 0.0
    for step in policy.steps[1:]:
        waited += step.delay_minutes
        if waited > 0:
            return waited
    return policy.repeat_minutes


def _when(text: str | None) -> datetime | None:
    return parse_iso(text) if text else None


class _Facts:
    """Reads case rows into :class:`CaseFact` once each."""

    def __init__(self, conn: sqlite3.Connection, config: Config) -> None:
        self.conn = conn
        self.config = config
        self._cache: dict[str, CaseFact] = {}

    COLUMNS = "id, ref, source, flags, received_at, acknowledged_at, closed_at"

    def rows(self, where: str, params: Sequence[object]) -> list[CaseFact]:
        found = []
        for row in self.conn.execute(f"SELECT {self.COLUMNS} FROM cases WHERE {where}", params):
            found.append(self.fact(row))
        return found

    def fact(self, row: Sequence[object]) -> CaseFact:
        case_id = str(row[0])
        known = self._cache.get(case_id)
        if known is not None:
            return known
        source = Source(str(row[2]))
        flags = frozenset(json.loads(str(row[3])))
        readers = readers_for(source, flags, self.config.readers.get(source))
        made = CaseFact(
            ref=str(row[1]),
            source=source,
            about_head=Flag.ABOUT_HEAD in flags,
            readers=frozenset(readers.content),
            received_at=parse_iso(str(row[4])),
            acknowledged_at=_when(row[5]),  # type: ignore[arg-type]
            closed_at=_when(row[6]),  # type: ignore[arg-type]
        )
        self._cache[case_id] = made
        return made

    def by_ids(self, ids: Sequence[str]) -> dict[str, CaseFact]:
        wanted = [i for i in ids if i not in self._cache]
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            self.rows(f"id IN ({','.join('?' * len(chunk))})", chunk)
        return {i: self._cache[i] for i in ids if i in self._cache}


def _reached_someone(conn: sqlite3.Connection, day: str) -> bool:
    """Whether a date's digest was, or may still be, delivered: one of its rows (a fallback, a
    copy sent by hand) delivered, being sent, or not yet tried enough to give up. A digest that
    went to nobody, or that every channel refused, did not go out."""
    prefix = f"digest-{day}"
    rows = conn.execute(
        "SELECT state, attempts FROM outbox WHERE idempotency_key >= ? AND idempotency_key < ?",
        (prefix, prefix + "~"),  # ':' (the slot's) or '-' (sent by hand) follows the date
    ).fetchall()
    return any(
        state in (OutboxState.DELIVERED, OutboxState.SENDING)
        or (state == OutboxState.PENDING and int(attempts) < FALLBACK_AFTER)
        for state, attempts in rows
    )


def _last_digest(conn: sqlite3.Connection, day: date) -> tuple[int, dict[str, object]] | None:
    """The digest that went out for the latest date before ``day`` (its newest copy), from the
    audit log: by date, not by when it was recorded, as an old date may be sent by hand."""
    cursor = conn.execute(
        "SELECT seq, detail FROM audit WHERE action = ? ORDER BY seq DESC", (DIGEST_ACTION,)
    )
    found = [
        (str(d.get("date", "")), int(seq), d) for seq, d in ((s, json.loads(t)) for s, t in cursor)
    ]
    for sent, seq, data in sorted(found, key=lambda f: (f[0], f[1]), reverse=True):
        if sent < day.isoformat() and _reached_someone(conn, sent):
            return seq, data
    return None


def _step_target(policy: Policy, step: int) -> str:
    if step < len(policy.steps):
        return policy.steps[step].target
    return f"reminder to {policy.repeat_target}"


def _escalations(
    conn: sqlite3.Connection, facts: _Facts, config: Config, since: str, until: str
) -> tuple[tuple[Escalation, ...], int]:
    # Every fired step of every case that escalated in the period, in one pass by case.
    fired_by_case: dict[str, list[tuple[int, datetime]]] = {}
    for case_id, step, at in conn.execute(
        "SELECT case_id, step, fired_at FROM timers WHERE case_id IN (SELECT case_id FROM timers"
        " WHERE kind IN ('step', 'repeat') AND step >= 1 AND fired_at >= ? AND fired_at < ?)"
        " AND kind IN ('step', 'repeat') AND fired_at IS NOT NULL AND fired_at < ?",
        (since, until, until),
    ):
        fired_by_case.setdefault(str(case_id), []).append((int(step), parse_iso(at)))
    warnings = conn.execute(
        "SELECT COUNT(*) FROM timers WHERE (kind = 'clock-warning' OR kind LIKE 'clock:%')"
        " AND fired_at >= ? AND fired_at < ?",
        (since, until),
    ).fetchone()[0]
    cases = facts.by_ids(list(fired_by_case))
    found = []
    for case_id, fired in fired_by_case.items():
        case = cases[case_id]
        policy = config.policies[case.source]
        if case.about_head:  # as the engine paged it (Plan.policy)
            policy = (
                ABOUT_HEAD_POLICY if case.source is Source.WHISTLE else without_the_head(policy)
            )
        highest = max(step for step, _ in fired)
        answered: int | None = None
        ack = case.acknowledged_at
        if ack is not None and ack < parse_iso(until):
            before = [step for step, at in fired if at <= ack]
            answered = max(before) if before else 0
        found.append(
            Escalation(
                case=case,
                highest_step=highest + 1,
                highest_target=_step_target(policy, highest),
                answered_after=None if answered is None else answered + 1,
                answered_target=None if answered is None else _step_target(policy, answered),
            )
        )
    found.sort(key=lambda e: e.case.ref)
    return tuple(found), int(warnings)


def _clocks(
    conn: sqlite3.Connection, facts: _Facts, where: str, params: Sequence[object]
) -> tuple[ClockFact, ...]:
    rows = conn.execute(
        "SELECT k.case_id, k.kind, k.due_at, k.met_at FROM clocks k JOIN cases c ON c.id ="
        f" k.case_id WHERE {where} ORDER BY k.due_at",
        params,
    ).fetchall()
    cases = facts.by_ids([str(r[0]) for r in rows])
    return tuple(
        ClockFact(cases[str(case_id)], str(kind), parse_iso(due), _when(met))
        for case_id, kind, due, met in rows
    )


def _counts(conn: sqlite3.Connection, sql: str, params: Sequence[object]) -> dict[str, int]:
    return {str(kind): int(n) for kind, n in conn.execute(sql, params)}


def build_digest(
    conn: sqlite3.Connection,
    config: Config,
    day: date,
    now: datetime,
    *,
    late: str | None = None,
    verify_previous: bool = True,
) -> Digest:
    """``day``'s digest from the store's metadata, on the connection's thread (in a read)."""
    settings = config.digest
    calendar = config.calendar
    until_at = slot(calendar, settings, day)
    previous_day = previous_digest_day(calendar, settings, day)
    since_at = (
        slot(calendar, settings, previous_day) if previous_day else until_at - timedelta(days=1)
    )
    last = _last_digest(conn, day)
    missed: list[date] = []
    if last is not None:
        last_day = date.fromisoformat(str(last[1]["date"]))
        last_until = parse_iso(str(last[1]["until"]))
        if last_until < since_at:  # a digest day went by without one: reach back to it
            since_at = last_until
            current = last_day + timedelta(days=1)
            while current < day:
                if is_digest_day(calendar, settings, current):
                    missed.append(current)
                current += timedelta(days=1)
    since, until = iso(since_at), iso(until_at)
    facts = _Facts(conn, config)

    new = facts.rows("received_at >= ? AND received_at < ? ORDER BY received_at", (since, until))
    acknowledged = facts.rows(
        "acknowledged_at >= ? AND acknowledged_at < ? ORDER BY acknowledged_at", (since, until)
    )
    closed = facts.rows("closed_at >= ? AND closed_at < ? ORDER BY closed_at", (since, until))
    open_total, open_head = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(flags LIKE '%\"about-head\"%'), 0) FROM cases"
        " WHERE received_at < ? AND (closed_at IS NULL OR closed_at >= ?)",
        (until, until),
    ).fetchone()
    unacknowledged = facts.rows(
        "received_at < ? AND (acknowledged_at IS NULL OR acknowledged_at >= ?)"
        " AND (closed_at IS NULL OR closed_at >= ?) ORDER BY received_at",
        (until, until, until),
    )
    allowances = {s.value: first_step_allowance(config.policies[s]) for s in Source}
    allowances[ABOUT_HEAD] = first_step_allowance(ABOUT_HEAD_POLICY)
    escalations, warnings = _escalations(conn, facts, config, since, until)

    horizon = clock_horizon(calendar, day)
    unmet = (
        "c.received_at < ? AND (k.met_at IS NULL OR k.met_at >= ?)"
        " AND (c.closed_at IS NULL OR c.closed_at >= ?)"
    )
    clocks_due = _clocks(
        conn,
        facts,
        f"{unmet} AND k.due_at >= ? AND k.due_at < ?",
        (until, until, until, until, iso(horizon)),
    )
    overdue = _clocks(conn, facts, f"{unmet} AND k.due_at < ?", (until, until, until, until))
    met_late = _clocks(
        conn, facts, "k.met_at >= ? AND k.met_at < ? AND k.met_at > k.due_at", (since, until)
    )

    whistle_boxes = {s.name for s in config.sources if s.type is Source.WHISTLE}
    sources_down = tuple(
        SourceDown(str(name), str(name) in whistle_boxes, parse_iso(raised), _when(cleared))
        for name, raised, cleared in conn.execute(
            "SELECT source_name, raised_at, cleared_at FROM system_alerts WHERE kind = ?"
            " AND raised_at < ? AND (cleared_at IS NULL OR cleared_at >= ?) ORDER BY raised_at",
            (AlertKind.SOURCE_DOWN.value, until, since),
        )
    )
    gap = conn.execute(
        "SELECT detail FROM system_alerts WHERE kind = ? AND raised_at < ?"
        " AND (cleared_at IS NULL OR cleared_at >= ?) ORDER BY raised_at DESC LIMIT 1",
        (AlertKind.ROTA_GAP.value, until, until),
    ).fetchone()
    raised = _counts(
        conn,
        "SELECT kind, COUNT(*) FROM system_alerts WHERE raised_at >= ? AND raised_at < ?"
        " GROUP BY kind",
        (since, until),
    )
    cleared = _counts(
        conn,
        "SELECT kind, COUNT(*) FROM system_alerts WHERE cleared_at >= ? AND cleared_at < ?"
        " GROUP BY kind",
        (since, until),
    )
    still_open = _counts(
        conn,
        "SELECT kind, COUNT(*) FROM system_alerts WHERE raised_at < ?"
        " AND (cleared_at IS NULL OR cleared_at >= ?) GROUP BY kind",
        (until, until),
    )
    starts = tuple(
        parse_iso(str(r[0]))
        for r in conn.execute(
            "SELECT at FROM audit WHERE action = 'engine-started' AND at >= ? AND at < ?"
            " ORDER BY seq",
            (since, until),
        )
    )

    seq, head_hash = audit.head_now(conn)
    previous = None
    if last is not None and verify_previous:
        earlier = audit.Anchor(int(str(last[1]["anchor_seq"])), str(last[1]["anchor_hash"]))
        try:
            checked = audit.verify_now(conn, anchors=[earlier])
        except AuditChainBroken as broken:
            previous = PreviousAnchor(
                date.fromisoformat(str(last[1]["date"])), earlier, False, str(broken)
            )
        else:
            previous = PreviousAnchor(
                date.fromisoformat(str(last[1]["date"])),
                earlier,
                True,
                f"{checked} entries checked",
            )
    return Digest(
        school=config.school_name,
        day=day,
        since=since_at,
        until=until_at,
        generated_at=now,
        calendar=calendar,
        anchor=audit.Anchor(seq, head_hash),
        new=tuple(new),
        acknowledged=tuple(acknowledged),
        closed=tuple(closed),
        open_count=int(open_total),
        open_about_head=int(open_head),
        unacknowledged=tuple(unacknowledged),
        allowances=allowances,
        escalations=escalations,
        deadline_warnings=warnings,
        clocks_due=clocks_due,
        clocks_overdue=overdue,
        clocks_met_late=met_late,
        clock_horizon=horizon,
        sources_down=sources_down,
        engine_starts=starts,
        rota_gap=json.loads(gap[0]) if gap else None,
        alerts_raised=raised,
        alerts_cleared=cleared,
        alerts_open=still_open,
        previous=previous,
        missed_days=tuple(missed),
        late=late,
    )


# ----- to whom ----------------------------------------------------------------------------


# Roles that may know of (and read) an allegation about the headteacher.
KNOWS_ABOUT_HEAD = frozenset(str(g) for g in ABOUT_HEAD_READERS.content)


@dataclass(frozen=True, slots=True)
class Viewer:
    """Whose copy: what they may be told. ``role`` is None for an address that is not a person
    in sgalert (a governor's own email): such a copy names no case at all."""

    role: str | None

    @property
    def sees_about_head(self) -> bool:
        return self.role in KNOWS_ABOUT_HEAD

    def sees(self, case: CaseFact) -> bool:
        """Whether the case appears at all: a case about the head only to its readers (an
        allegation about the head is otherwise only counted under "referred to the chair")."""
        return not case.about_head or (self.role is not None and self.role in case.readers)

    def names(self, case: CaseFact) -> bool:
        """Whether the copy may give the case's reference: only to people who may read it."""
        return self.role is not None and self.role in case.readers


@dataclass(frozen=True, slots=True)
class DigestRecipient:
    address: str
    person_id: str | None
    role: str | None


def digest_recipients(conn: sqlite3.Connection, settings: DigestSettings) -> list[DigestRecipient]:
    """The configured roles' current people, and the configured addresses (as people, when
    they are), each once."""
    return _resolve(conn, settings)[0]


def recipient_gaps(conn: sqlite3.Connection, settings: DigestSettings) -> list[str]:
    """What is wrong with the configured recipients, in words naming no one."""
    return _resolve(conn, settings)[1]


def _resolve(
    conn: sqlite3.Connection, settings: DigestSettings
) -> tuple[list[DigestRecipient], list[str]]:
    """The recipients, and what is wrong with the configured ones (a role with nobody in it, an
    address of someone removed from sgalert, who gets no copy), in words naming no one."""
    people = conn.execute(
        "SELECT id, email, role, removed_at IS NOT NULL FROM people ORDER BY email"
    ).fetchall()
    chosen: dict[str, DigestRecipient] = {}
    gaps: list[str] = []
    for who in settings.recipients:
        if "@" in who:
            match = [p for p in people if str(p[1]).lower() == who]
            found = [DigestRecipient(str(p[1]), str(p[0]), str(p[2])) for p in match if not p[3]]
            if match and not found:
                gaps.append("a recipient has been removed from sgalert")
            elif not match:
                found = [DigestRecipient(who, None, None)]
        else:
            found = [
                DigestRecipient(str(p[1]), str(p[0]), str(p[2]))
                for p in people
                if p[2] == who and not p[3]
            ]
            if not found:
                gaps.append(f"nobody is {who}")
        for recipient in found:
            chosen.setdefault(recipient.address.lower(), recipient)
    return list(chosen.values()), gaps


def _alert_gaps(conn: sqlite3.Connection, problems: list[str], now: datetime) -> None:
    """Raise an alert for each of the digest's problems; clear those of earlier days now put
    right (a head added, a channel configured)."""
    subjects = {f"daily digest: {p}" for p in problems}
    for kind, subject in conn.execute(
        "SELECT kind, source_name FROM system_alerts WHERE kind IN (?, ?) AND cleared_at IS NULL"
        " AND source_name LIKE 'daily digest: %'",
        (AlertKind.NO_RECIPIENT.value, AlertKind.CHANNEL_MISSING.value),
    ).fetchall():
        if subject not in subjects:
            clear_alert(conn, AlertKind(kind), str(subject), now)
    for problem in problems:
        kind = AlertKind.CHANNEL_MISSING if "channel" in problem else AlertKind.NO_RECIPIENT
        raise_alert(conn, kind, f"daily digest: {problem}", now, {"audience": "team", "text": FIX})


def digest_channel(config: Config) -> str | None:
    """The configured email channel, or the first per-person channel."""
    if config.digest.channel:
        return config.digest.channel
    return next((c.name for c in config.channels if c.per_person), None)


def queue_digest(
    conn: sqlite3.Connection,
    config: Config,
    digest: Digest,
    now: datetime,
    *,
    manual: bool = False,
) -> int:
    """In a write transaction: one outbox row per recipient, the audit entry that records the
    digest's anchor, and (for the scheduled one) the day marked done. Returns rows queued; 0 if
    the day's digest was already queued (by this engine before a restart, or another)."""
    from sgalert.routing.digest_render import render_document

    day = digest.day.isoformat()
    if not manual:
        done = conn.execute("SELECT last_day FROM daily_jobs WHERE name = ?", (JOB,)).fetchone()
        if done is not None and str(done[0]) >= day:
            return 0
    channel = digest_channel(config)
    recipients, gaps = _resolve(conn, config.digest)
    origin = f"digest-{day}" + (f"-sent-{iso(now)}" if manual else "")
    queued = 0
    if channel is None:
        gaps.append("no email channel")
    elif not recipients and not gaps:
        gaps.append("nobody to send it to")
    _alert_gaps(conn, gaps, now)
    if channel is not None:
        for recipient in recipients:
            document = render_document(digest, Viewer(recipient.role))
            text = PageText(
                school=config.school_name,
                case_ref=f"daily digest {day}",
                source=PageSource.DIGEST,
                received_at=iso(now),
                urgency=Urgency.DIGEST,
                step=0,
                reason="daily digest",
                confidential=True,  # never a shared channel, never a fallback to anyone else
                document=asdict(document),
            )
            row = queue_page(
                conn,
                text,
                key=page_key(origin, channel, recipient.person_id or recipient.address),
                channel=channel,
                recipient=recipient.address,
                now=now,
                person_id=recipient.person_id,
            )
            queued += row is not None
    audit.append_now(
        conn,
        [
            audit.AuditEvent(
                audit.ENGINE,
                DIGEST_ACTION,
                detail={
                    "date": day,
                    "since": iso(digest.since),
                    "until": iso(digest.until),
                    "anchor_seq": digest.anchor.seq,
                    "anchor_hash": digest.anchor.hash,
                    "recipients": queued,
                    "late": digest.late is not None,
                    "manual": manual,
                },
            )
        ],
        now,
    )
    if not manual:
        conn.execute(
            "INSERT INTO daily_jobs (name, last_day, last_run_at) VALUES (?, ?, ?)"
            " ON CONFLICT(name) DO UPDATE SET last_day = excluded.last_day,"
            " last_run_at = excluded.last_run_at",
            (JOB, day, iso(now)),
        )
    return queued


def late_reason(
    due: datetime, now: datetime, engine_started: datetime | None, zone: ZoneInfo
) -> str | None:
    """Why a digest goes out after its slot (None when it is on time)."""
    if now - due <= LATE_AFTER:
        return None
    at = f"{due.astimezone(zone):%H:%M}"
    if engine_started is not None and engine_started > due:
        started = engine_started.astimezone(zone)
        return (
            f"it was due at {at} but sgalert's engine was not running then"
            f" (it started at {started:%H:%M on %a} {started.day} {started:%b})"
        )
    return f"it was due at {at} but could not be queued until {now.astimezone(zone):%H:%M}"


__all__ = [
    "DIGEST_ACTION",
    "Digest",
    "Viewer",
    "build_digest",
    "digest_recipients",
    "is_digest_day",
    "queue_digest",
    "slot",
]
