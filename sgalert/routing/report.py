"""The governors' termly report: the digest's figures over a term, for the safeguarding governor.

Counts by source and week, response times against each policy's first step, statutory clock
compliance, escalations, cover gaps and mailbox outages, and how they moved between the first and
second half of the period. Built from plaintext metadata only (never decrypts) and, unlike the
digest, it names no case at all: counts and times. How it reads (text, CSV, HTML with a small
inline SVG chart per figure) is :mod:`sgalert.routing.report_render`.
"""

from __future__ import annotations

import sqlite3
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sgalert.clock import iso, parse_iso
from sgalert.config import Config
from sgalert.errors import InvalidInput
from sgalert.model import Source
from sgalert.records.alerts import AlertKind
from sgalert.routing.digest import ABOUT_HEAD, first_step_allowance
from sgalert.rules.policy import ABOUT_HEAD_POLICY

# Time-to-acknowledge buckets: (label, upper bound in minutes).
ACK_BUCKETS: tuple[tuple[str, float], ...] = (
    ("under 5 min", 5),
    ("5-10 min", 10),
    ("10-30 min", 30),
    ("30-60 min", 60),
    ("1-4 h", 240),
    ("4-24 h", 1440),
    ("over 24 h", float("inf")),
)
MAX_DAYS = 400  # a term, or a school year at most


@dataclass
class Week:
    """One week (Monday to Sunday, local time) of the period."""

    start: date
    new: Counter[str] = field(default_factory=Counter)
    acknowledged: list[float] = field(default_factory=list)  # seconds from arrival
    escalated: int = 0
    clocks_due: int = 0
    clocks_on_time: int = 0

    @property
    def total(self) -> int:
        return sum(self.new.values())


@dataclass(frozen=True, slots=True)
class ClockCompliance:
    kind: str
    due: int
    on_time: int
    late: int
    unmet: int

    @property
    def rate(self) -> float | None:
        return self.on_time / self.due if self.due else None


@dataclass(frozen=True, slots=True)
class TermReport:
    """Everything the report says: counts and times only."""

    school: str
    first: date
    last: date
    generated_at: datetime
    zone_name: str
    weeks: tuple[Week, ...]
    by_source: dict[str, int]
    about_head: int
    ack_seconds: dict[str, list[float]]  # per policy group, cases arrived in the period
    unacknowledged: int
    allowances: dict[str, float]
    clocks: tuple[ClockCompliance, ...]
    escalated: int
    highest_steps: Counter[int]
    answered_after: Counter[int]
    cover_gap_alerts: int
    sources_down: int
    hours_down: float
    engine_starts: int
    alerts_raised: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_source.values())


def period(config: Config, first: date, last: date) -> tuple[datetime, datetime]:
    """From local midnight starting ``first`` to local midnight after ``last``, in UTC."""
    if last < first:
        raise InvalidInput(f"--to {last} is before --from {first}; give the term's first day first")
    if (last - first).days > MAX_DAYS:
        raise InvalidInput(f"a report covers at most {MAX_DAYS} days; give a term or a year")
    zone = config.calendar.zone
    start = datetime.combine(first, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    return start, end


def build_report(
    conn: sqlite3.Connection, config: Config, first: date, last: date, now: datetime
) -> TermReport:
    """The report for ``first``..``last`` (inclusive, local dates), on the connection's thread."""
    start, end = period(config, first, last)
    since, until = iso(start), iso(end)
    zone = config.calendar.zone
    monday = first - timedelta(days=first.weekday())
    weeks: dict[date, Week] = {}
    current = monday
    while current <= last:
        weeks[current] = Week(current)
        current += timedelta(days=7)

    # Each week's start as stored text (UTC ISO 8601 sorts as time), so a row finds its week
    # by bisecting its own timestamp: no parsing of 100,000 times.
    ordered = list(weeks.values())
    bounds = [iso(datetime.combine(w.start, time(0), tzinfo=zone).astimezone(UTC)) for w in ordered]

    def week_of(stamp: str) -> Week:
        return ordered[max(0, bisect_right(bounds, stamp) - 1)]

    by_source: Counter[str] = Counter()
    ack_seconds: dict[str, list[float]] = {}
    about_head = unacknowledged = 0
    for source, head, received, seconds in conn.execute(
        "SELECT source, flags LIKE '%\"about-head\"%', received_at,"
        " (julianday(acknowledged_at) - julianday(received_at)) * 86400.0 FROM cases"
        " WHERE received_at >= ? AND received_at < ?",
        (since, until),
    ):
        week = week_of(received)
        week.new[source] += 1
        by_source[source] += 1
        about_head += head
        if seconds is None:
            unacknowledged += 1
            continue
        week.acknowledged.append(seconds)
        ack_seconds.setdefault(ABOUT_HEAD if head else source, []).append(seconds)

    clocks: dict[str, list[int]] = {}
    for kind, due_at, met_at in conn.execute(
        "SELECT kind, due_at, met_at FROM clocks WHERE due_at >= ? AND due_at < ?",
        (since, until),
    ):
        tally = clocks.setdefault(str(kind), [0, 0, 0, 0])
        tally[0] += 1
        week = week_of(due_at)
        week.clocks_due += 1
        if met_at is not None and met_at <= due_at:
            tally[1] += 1
            week.clocks_on_time += 1
        elif met_at is not None:
            tally[2] += 1
        else:
            tally[3] += 1

    highest: Counter[int] = Counter()
    answered: Counter[int] = Counter()
    steps_by_case: dict[str, list[tuple[int, str]]] = {}
    acks: dict[str, str | None] = {}
    for case_id, step, fired, ack_at in conn.execute(
        "SELECT t.case_id, t.step, t.fired_at, c.acknowledged_at FROM timers t"
        " JOIN cases c ON c.id = t.case_id WHERE t.case_id IN (SELECT case_id FROM timers"
        " WHERE kind IN ('step', 'repeat') AND step >= 1 AND fired_at >= ? AND fired_at < ?)"
        " AND t.kind IN ('step', 'repeat') AND t.fired_at IS NOT NULL AND t.fired_at < ?",
        (since, until, until),
    ):
        steps_by_case.setdefault(str(case_id), []).append((int(step), str(fired)))
        acks[str(case_id)] = ack_at
    for case_id, fired in steps_by_case.items():
        top = max(step for step, _ in fired)
        highest[top + 1] += 1
        escalated_at = min(at for step, at in fired if step >= 1)
        if since <= escalated_at < until:
            week_of(escalated_at).escalated += 1
        ack = acks.get(case_id)
        if ack is not None:
            before = [step for step, at in fired if at <= ack]
            answered[(max(before) if before else 0) + 1] += 1

    down_rows = conn.execute(
        "SELECT raised_at, cleared_at FROM system_alerts WHERE kind = ? AND raised_at < ?"
        " AND (cleared_at IS NULL OR cleared_at >= ?)",
        (AlertKind.SOURCE_DOWN.value, until, since),
    ).fetchall()
    hours = 0.0
    for raised, cleared in down_rows:
        begin = max(parse_iso(raised), start)
        finish = min(parse_iso(cleared) if cleared else now, end)
        hours += max(0.0, (finish - begin).total_seconds() / 3600)
    raised_counts = {
        str(kind): int(n)
        for kind, n in conn.execute(
            "SELECT kind, COUNT(*) FROM system_alerts WHERE raised_at >= ? AND raised_at < ?"
            " GROUP BY kind",
            (since, until),
        )
    }
    starts = conn.execute(
        "SELECT COUNT(*) FROM audit WHERE action = 'engine-started' AND at >= ? AND at < ?",
        (since, until),
    ).fetchone()[0]
    allowances = {s.value: first_step_allowance(config.policies[s]) for s in Source}
    allowances[ABOUT_HEAD] = first_step_allowance(ABOUT_HEAD_POLICY)
    return TermReport(
        school=config.school_name,
        first=first,
        last=last,
        generated_at=now,
        zone_name=zone.key,
        weeks=tuple(weeks.values()),
        by_source={s.value: by_source.get(s.value, 0) for s in Source},
        about_head=about_head,
        ack_seconds=ack_seconds,
        unacknowledged=unacknowledged,
        allowances=allowances,
        clocks=tuple(ClockCompliance(kind, *tally) for kind, tally in sorted(clocks.items())),
        escalated=len(steps_by_case),
        highest_steps=highest,
        answered_after=answered,
        cover_gap_alerts=raised_counts.get(AlertKind.ROTA_GAP.value, 0),
        sources_down=len(down_rows),
        hours_down=hours,
        engine_starts=int(starts),
        alerts_raised=raised_counts,
    )


def ack_histogram(seconds: list[float]) -> list[tuple[str, int]]:
    counts = [0] * len(ACK_BUCKETS)
    for value in seconds:
        minutes = value / 60
        for index, (_, bound) in enumerate(ACK_BUCKETS):
            if minutes < bound:
                counts[index] += 1
                break
    return [(label, n) for (label, _), n in zip(ACK_BUCKETS, counts, strict=True)]
