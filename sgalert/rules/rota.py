"""Who is on duty at any instant: a weekly pattern, dated covers, and a fallback order.

There is always cover [school 2.1.3, 2.1.4]: a shift or a dated cover names the person; when
neither does, the fallback order (by default the DSLs, then the deputies, then the headteacher as
the most senior member of staff [school 4.1.0]) answers, and that instant counts as a **gap**
that ``sgalert rota check`` reports, because a fallback is a safety net, not a plan.

Gaps are found by arithmetic on intervals, not by sampling: each shift's occurrences are laid
out as exact UTC intervals (the school's wall clock, across DST changes), joined with the dated
covers, and subtracted from the window. So a one-minute hole between two shifts is a one-minute
gap, and a gap that starts at 17:03 is reported at 17:03.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from sgalert.clock import in_words
from sgalert.rules.school_calendar import SchoolCalendar

#: The longest cover: one for longer (a secondment, a long absence) belongs in the rota's shifts,
#: and a cover of decades is a mistyped year that would put one person on duty for good.
LONGEST_COVER = timedelta(days=366)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

Span = tuple[datetime, datetime]  # [start, end): end excluded


def wall_clock(zone: tzinfo, day: date, clock: time) -> datetime:
    """The first instant (UTC) at which the school's clocks read ``clock`` on ``day``.

    On the night the clocks go back, 01:00-01:59 happens twice: a shift starting or ending at
    01:30 means the first 01:30. On the night they go forward, 01:00-01:59 never happens: a
    shift starting or ending then starts or ends when the clocks jump, the first moment they
    read later than it. So a 22:00-07:00 shift lasts 10 hours in October and 8 in March.
    """
    naive = datetime.combine(day, clock)
    first = naive.replace(tzinfo=zone).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == naive:
        return first
    # Skipped by the clocks going forward: the change itself lies between the readings with
    # the offsets after (fold=1, earlier) and before (fold=0, later) it; find it to the second.
    low = int(naive.replace(tzinfo=zone, fold=1).timestamp())
    high = int(first.timestamp())
    after = first.astimezone(zone).utcoffset()
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == after:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def term_arrangements(day: date, calendar: SchoolCalendar) -> bool:
    """Whether the term pattern runs on ``day`` (else the holiday one).

    In term, INSET days included (the staff are in school), but not on a bank holiday inside a
    term, such as the early May bank holiday: the school is shut and holiday cover applies.
    """
    return calendar.in_term(day) and calendar.bank_holiday(day) is None


@dataclass(frozen=True, slots=True)
class Shift:
    """A weekly slot. ``end`` at or before ``start`` runs past midnight into the next day."""

    who: str
    days: frozenset[int]
    start: time
    end: time
    when: str = "always"  # "term", "holiday" (outside term, half terms included) or "always"

    def describe(self) -> str:
        days = ",".join(WEEKDAYS[d] for d in sorted(self.days))
        return f"shift {days} {self.start:%H:%M}-{self.end:%H:%M} ({self.when})"

    def applies(self, day: date, calendar: SchoolCalendar) -> bool:
        """Whether this shift starts on ``day`` (an overnight one then runs into the next)."""
        if day.weekday() not in self.days:
            return False
        if self.when == "term":
            return term_arrangements(day, calendar)
        if self.when == "holiday":
            return not term_arrangements(day, calendar)
        return True

    def occurrence(self, day: date, calendar: SchoolCalendar) -> Span | None:
        """The exact UTC interval this shift covers when it starts on ``day``, if it does."""
        if not self.applies(day, calendar):
            return None
        ends_on = day + timedelta(days=1) if self.end <= self.start else day
        start = wall_clock(calendar.zone, day, self.start)
        end = wall_clock(calendar.zone, ends_on, self.end)
        return (start, end) if start < end else None


@dataclass(frozen=True, slots=True)
class Cover:
    """A dated override: this person covers from ``starts_at`` until ``ends_at`` (UTC)."""

    id: int
    who: str
    starts_at: datetime
    ends_at: datetime


def cover_problem(starts: datetime, ends: datetime, now: datetime, zone: tzinfo) -> str | None:
    """Why a cover from ``starts`` to ``ends``, asked for at ``now``, cannot be added, in one
    line; None if it can. One that has already ended would put nobody on duty, yet a week's
    grid would show it as if it had been the plan. The CLI and the desk both ask this."""
    if ends <= starts:
        return "a cover must end after it starts"
    if ends <= now:
        return f"a cover must end in the future: this one ended {in_words(ends, zone, year=True)}"
    if ends - starts > LONGEST_COVER:
        return (
            f"a cover lasts at most {LONGEST_COVER.days} days, and this one ends"
            f" {in_words(ends, zone, year=True)}: check the year, or put a longer arrangement in"
            " the rota's shifts ([rota] in sgalert.toml)"
        )
    return None


@dataclass(frozen=True, slots=True)
class OnDuty:
    """The answer to "who is on duty?", with the rule that chose them."""

    who: str | None
    rule: str
    fallback: bool


@dataclass(frozen=True, slots=True)
class Gap:
    """A stretch covered only by the fallback (or by nobody): from ``start`` until ``end``,
    both exact (``end`` is the first covered moment)."""

    start: datetime
    end: datetime
    covered_by: str | None

    def describe(self, zone: tzinfo) -> str:
        """``Mon 7 Dec 17:03-17:04``, or ``Sat 28 Nov 07:00 to Sun 29 Nov 19:00`` (the UK's
        order, as the desk writes its times)."""
        start, end = self.start.astimezone(zone), self.end.astimezone(zone)
        if start.date() == end.date():
            return f"{start:%a} {start.day} {start:%b %H:%M}-{end:%H:%M}"
        return f"{start:%a} {start.day} {start:%b %H:%M} to {end:%a} {end.day} {end:%b %H:%M}"


def merge(spans: Iterable[Span]) -> list[Span]:
    """Sorted, overlapping or touching spans joined; empty ones dropped."""
    merged: list[Span] = []
    for start, end in sorted(s for s in spans if s[0] < s[1]):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def subtract(window: Span, covered: Sequence[Span]) -> list[Span]:
    """The parts of ``window`` outside ``covered`` (merged, as :func:`merge` returns)."""
    holes: list[Span] = []
    cursor, end = window
    for start, finish in covered:
        if start >= end:
            break
        if finish <= cursor:
            continue
        if start > cursor:
            holes.append((cursor, start))
        cursor = finish
    if cursor < end:
        holes.append((cursor, end))
    return holes


def _usable(email: str, available: Mapping[str, bool] | None) -> bool:
    """Still a person (``available`` maps email to that); None means everyone is."""
    return available is None or available.get(email.lower(), False)


class Rota:
    def __init__(
        self,
        calendar: SchoolCalendar,
        shifts: Sequence[Shift],
        fallback: Sequence[str],
    ) -> None:
        self.calendar = calendar
        self.shifts = tuple(shifts)
        self.fallback = tuple(fallback)
        self._occurrences: dict[tuple[int, date], Span | None] = {}

    def _occurrence(self, index: int, day: date) -> Span | None:
        key = (index, day)
        if key not in self._occurrences:
            self._occurrences[key] = self.shifts[index].occurrence(day, self.calendar)
        return self._occurrences[key]

    def _shift_spans(self, start: datetime, end: datetime) -> Iterator[tuple[int, Span]]:
        """Every occurrence of every shift that may touch [start, end)."""
        first = self.calendar.local(start).date() - timedelta(days=2)
        last = self.calendar.local(end).date() + timedelta(days=1)
        for index in range(len(self.shifts)):
            day = first
            while day <= last:
                span = self._occurrence(index, day)
                if span is not None and span[0] < end and start < span[1]:
                    yield index, span
                day += timedelta(days=1)

    def who(
        self,
        at: datetime,
        covers: Iterable[Cover] = (),
        available: Mapping[str, bool] | None = None,
    ) -> OnDuty:
        """Who is on duty at ``at``; ``available`` (email -> still a person) skips leavers."""

        at = at.astimezone(UTC)  # aware times in one zone compare by wall clock: never here
        for cover in sorted(covers, key=lambda c: c.starts_at.astimezone(UTC), reverse=True):
            if cover.starts_at <= at < cover.ends_at and _usable(cover.who, available):
                zone = self.calendar.zone
                begins = in_words(cover.starts_at, zone)
                ends = in_words(cover.ends_at, zone)
                return OnDuty(cover.who, f"cover {begins} to {ends}", False)
        today = self.calendar.local(at).date()
        for index, shift in enumerate(self.shifts):
            if not _usable(shift.who, available):
                continue
            for offset in (-1, 0, 1):
                span = self._occurrence(index, today + timedelta(days=offset))
                if span is not None and span[0] <= at < span[1]:
                    return OnDuty(shift.who, shift.describe(), False)
        for email in self.fallback:
            if _usable(email, available):
                return OnDuty(email, "fallback: no shift or cover at this time", True)
        return OnDuty(None, "nobody: no shift, no cover and no fallback person", True)

    def covered(
        self,
        start: datetime,
        end: datetime,
        covers: Iterable[Cover] = (),
        available: Mapping[str, bool] | None = None,
    ) -> list[Span]:
        """The exact stretches of [start, end) that a shift or a dated cover names someone for."""

        start, end = start.astimezone(UTC), end.astimezone(UTC)
        spans = [
            (c.starts_at.astimezone(UTC), c.ends_at.astimezone(UTC))
            for c in covers
            if _usable(c.who, available)
        ]
        spans += [
            span
            for index, span in self._shift_spans(start, end)
            if _usable(self.shifts[index].who, available)
        ]
        return [(max(s, start), min(e, end)) for s, e in merge(spans) if s < end and start < e]

    def gaps(
        self,
        start: datetime,
        days: int = 14,
        covers: Sequence[Cover] = (),
        available: Mapping[str, bool] | None = None,
    ) -> list[Gap]:
        """Stretches in the ``days`` from ``start`` (to the minute) covered only by the fallback
        (or by nobody), each with its exact start and end."""
        first = start.astimezone(UTC).replace(second=0, microsecond=0)
        window = (first, first + timedelta(days=days))
        fallback = next((e for e in self.fallback if _usable(e, available)), None)
        covered = self.covered(*window, covers, available)
        return [Gap(s, e, fallback) for s, e in subtract(window, covered)]

    def next_change(
        self,
        start: datetime,
        end: datetime,
        covers: Sequence[Cover] = (),
        available: Mapping[str, bool] | None = None,
    ) -> tuple[datetime, OnDuty] | None:
        """The first moment after ``start`` and before ``end`` when someone else is on duty.

        Who is on duty only changes where a shift or cover starts or ends, so only those
        moments are asked about: the answer is exact.
        """
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        current = self.who(start, covers, available)
        edges = {edge for _, span in self._shift_spans(start, end) for edge in span}
        edges |= {edge.astimezone(UTC) for c in covers for edge in (c.starts_at, c.ends_at)}
        for edge in sorted(e for e in edges if start < e < end):
            duty = self.who(edge, covers, available)
            if duty.who != current.who:
                return edge, duty
        return None
