"""The school's calendar: terms, half terms, INSET days and bank holidays, in school local time.

Two kinds of day matter to the statutory clocks:

- a **school day** is a weekday inside a term, outside its half term, that is neither an INSET
  day nor a bank holiday: a day the child is in school. Operation Encompass is about the start
  of the next one (weekends, half terms and holidays included, the notice must be read first).
- a **working day** is a weekday that is not a bank holiday, term or not: the whistleblowing,
  LADO and suspension clocks count these.

Bank holidays come from the ``holidays`` package for the configured UK nation.

Beyond the last configured term the calendar does not know the school's holidays, so it falls
back to counting every working day (that is not an INSET day or closure) as a school day: a
deadline a little early is safer than none, and intake must never stop because nobody typed in
next year's dates. :meth:`SchoolCalendar.beyond_terms` says when that fallback answered, so a
case can be flagged ``calendar-ended`` and the team warned (see
:mod:`sgalert.routing.calendar_check`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo

import holidays

NATIONS = {
    "england": "ENG",
    "wales": "WLS",
    "scotland": "SCT",
    "northern-ireland": "NIR",
}


@dataclass(frozen=True, slots=True)
class Term:
    name: str
    start: date
    end: date
    half_term: tuple[date, date] | None = None

    def __contains__(self, day: object) -> bool:
        if not isinstance(day, date) or not self.start <= day <= self.end:
            return False
        return not (self.half_term and self.half_term[0] <= day <= self.half_term[1])


@dataclass(frozen=True)
class SchoolCalendar:
    """Answers "is this a school day?" and "when does the next one start?"."""

    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Europe/London"))
    terms: tuple[Term, ...] = ()
    inset_days: frozenset[date] = frozenset()
    nation: str = "england"
    day_starts: time = time(8, 30)
    day_ends: time = time(15, 30)
    extra_closures: frozenset[date] = frozenset()

    @cached_property
    def _bank_holidays(self) -> holidays.HolidayBase:
        return holidays.country_holidays("GB", subdiv=NATIONS[self.nation])

    def bank_holiday(self, day: date) -> str | None:
        name = self._bank_holidays.get(day)
        return str(name) if name else None

    def in_term(self, day: date) -> bool:
        return any(day in term for term in self.terms)

    def is_working_day(self, day: date) -> bool:
        return day.weekday() < 5 and self.bank_holiday(day) is None

    @cached_property
    def last_term_day(self) -> date | None:
        """The last day the configured terms cover; None when no term is configured."""
        return max((term.end for term in self.terms), default=None)

    def beyond_terms(self, day: date) -> bool:
        """Whether ``day`` is after every configured term (or none is configured), where school
        days are guessed as working days."""
        last = self.last_term_day
        return last is None or day > last

    def is_school_day(self, day: date) -> bool:
        return (
            self.is_working_day(day)
            and (self.in_term(day) or self.beyond_terms(day))
            and day not in self.inset_days
            and day not in self.extra_closures
        )

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.zone)

    def _at(self, day: date, clock: time) -> datetime:
        return datetime.combine(day, clock, tzinfo=self.zone)

    def next_school_day_start(self, moment: datetime) -> datetime:
        """The start of the first school day whose start is after ``moment``. Never fails: past
        the last configured term, the next working day stands in (see :meth:`beyond_terms`)."""
        today = self.local(moment).date()
        first = self._school_day_from(today)
        start = self._at(first, self.day_starts)
        if start > moment:  # always so for a later day; today only before the day starts
            return start
        return self._at(self._school_day_from(first + timedelta(days=1)), self.day_starts)

    def next_school_day_guessed(self, moment: datetime) -> bool:
        """Whether the next school day after ``moment`` lies beyond the configured terms, so it
        was guessed from working days: a case due then is flagged ``calendar-ended``."""
        return self.beyond_terms(self.local(self.next_school_day_start(moment)).date())

    @cached_property
    def _first_school_day_from(self) -> dict[date, date]:
        return {}

    def _school_day_from(self, day: date) -> date:
        """The first school day on or after ``day`` (remembered: every new case asks).

        The search ends: the terms, INSET days and closures are finite, and beyond them every
        working day is a school day.
        """
        known = self._first_school_day_from.get(day)
        if known is not None:
            return known
        candidate = day
        while not self.is_school_day(candidate):
            candidate += timedelta(days=1)
        self._first_school_day_from[day] = candidate
        return candidate

    def in_school_hours(self, moment: datetime) -> bool:
        local = self.local(moment)
        return self.is_school_day(local.date()) and self.day_starts <= local.time() < self.day_ends

    def add_working_days(self, moment: datetime, count: int) -> datetime:
        """The same local time ``count`` working days later (the end of a statutory window)."""
        local = self.local(moment)
        day = local.date()
        added = 0
        while added < count:
            day += timedelta(days=1)
            if self.is_working_day(day):
                added += 1
        return datetime.combine(day, local.time(), tzinfo=self.zone)

    def add_school_days(self, moment: datetime, count: int) -> datetime:
        """The end of the school day ``count`` school days after ``moment``'s day."""
        day = self.local(moment).date()
        added = 0
        while added < count:  # ends: beyond the last term every working day counts
            day += timedelta(days=1)
            if self.is_school_day(day):
                added += 1
        return self._at(day, self.day_ends)

    def school_days(self, start: date, end: date) -> Iterable[date]:
        day = start
        while day <= end:
            if self.is_school_day(day):
                yield day
            day += timedelta(days=1)
