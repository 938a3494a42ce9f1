"""Who is on duty at any instant: a weekly pattern, dated covers, and a fallback order.

There is always cover [school 2.1.3, 2.1.4]: a shift or a dated cover names the person; when
neither does, the fallback order (by default the DSLs, then the deputies, then the headteacher as
the most senior member of staff [school 4.1.0]) answers, and that instant counts as a **gap**
that ``sgalert rota check`` reports, because a fallback is a safety net, not a plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sgalert.school_calendar import SchoolCalendar

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


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

    def _applies(self, day: date, calendar: SchoolCalendar) -> bool:
        if day.weekday() not in self.days:
            return False
        if self.when == "term":
            return calendar.in_term(day)
        if self.when == "holiday":
            return not calendar.in_term(day)
        return True

    def covers(self, local: datetime, calendar: SchoolCalendar) -> bool:
        day, clock = local.date(), local.time()
        if self.start < self.end:
            return self._applies(day, calendar) and self.start <= clock < self.end
        return (self._applies(day, calendar) and clock >= self.start) or (
            self._applies(day - timedelta(days=1), calendar) and clock < self.end
        )


@dataclass(frozen=True, slots=True)
class Cover:
    """A dated override: this person covers from ``starts_at`` until ``ends_at`` (UTC)."""

    id: int
    who: str
    starts_at: datetime
    ends_at: datetime


@dataclass(frozen=True, slots=True)
class OnDuty:
    """The answer to "who is on duty?", with the rule that chose them."""

    who: str | None
    rule: str
    fallback: bool


@dataclass(frozen=True, slots=True)
class Gap:
    start: datetime
    end: datetime
    covered_by: str | None


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

    def who(
        self,
        at: datetime,
        covers: Iterable[Cover] = (),
        available: Mapping[str, bool] | None = None,
    ) -> OnDuty:
        """Who is on duty at ``at``; ``available`` (email -> still a person) skips leavers."""

        def usable(email: str) -> bool:
            return available is None or available.get(email.lower(), False)

        for cover in sorted(covers, key=lambda c: c.starts_at, reverse=True):
            if cover.starts_at <= at < cover.ends_at and usable(cover.who):
                begins = self.calendar.local(cover.starts_at)
                ends = self.calendar.local(cover.ends_at)
                return OnDuty(
                    cover.who, f"cover {begins:%a %d %b %H:%M} to {ends:%a %d %b %H:%M}", False
                )
        local = self.calendar.local(at)
        for shift in self.shifts:
            if shift.covers(local, self.calendar) and usable(shift.who):
                return OnDuty(shift.who, shift.describe(), False)
        for email in self.fallback:
            if usable(email):
                return OnDuty(email, "fallback: no shift or cover at this time", True)
        return OnDuty(None, "nobody: no shift, no cover and no fallback person", True)

    def gaps(
        self,
        start: datetime,
        days: int = 14,
        covers: Sequence[Cover] = (),
        available: Mapping[str, bool] | None = None,
        step: timedelta = timedelta(minutes=5),
    ) -> list[Gap]:
        """Stretches in the next ``days`` covered only by the fallback (or by nobody)."""
        found: list[Gap] = []
        moment = start.replace(second=0, microsecond=0)
        end = start + timedelta(days=days)
        open_gap: tuple[datetime, str | None] | None = None
        while moment < end:
            duty = self.who(moment, covers, available)
            if duty.fallback and open_gap is None:
                open_gap = (moment, duty.who)
            elif not duty.fallback and open_gap is not None:
                found.append(Gap(open_gap[0], moment, open_gap[1]))
                open_gap = None
            moment += step
        if open_gap is not None:
            found.append(Gap(open_gap[0], end, open_gap[1]))
        return found
