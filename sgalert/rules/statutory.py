"""Statutory clocks and escalation timers as types that carry their own rules.

A clock knows how its deadline is computed from the school calendar, how long before it runs
out the team is warned, what starts it (a notice arriving, or an action such as a LADO
referral), and whether acknowledging the case meets it. The engine and the outbox ask the rule,
never the case's state, whether a page is still wanted: acknowledging a case stops its
*acknowledgement* escalation, never a statutory deadline such as the LADO's one working day.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sgalert.errors import InvalidInput
from sgalert.model import CaseState
from sgalert.rules.school_calendar import SchoolCalendar


class StatutoryClock(enum.StrEnum):
    """A deadline set by law or statutory guidance, stored by this name in ``clocks.kind``."""

    # Police notice read before the child arrives the next school day [school 1.4.4].
    ENCOMPASS_BEFORE_SCHOOL_DAY = "encompass-before-school-day"
    # The Monitoring Officer informed in writing within 5 working days [HMS].
    WHISTLE_MONITORING_OFFICER = "whistle-monitoring-officer-5-working-days"
    # An allegation that an adult harmed a child goes to the LADO within one working day (KCSIE).
    LADO = "lado-1-working-day"
    # Written confirmation of a suspension within one working day [school 4.2.6].
    SUSPENSION_CONFIRMATION = "suspension-confirmation-1-working-day"
    # A child-protection file moving school goes within 5 school days [school 1.13.0].
    FILE_TRANSFER = "file-transfer-5-school-days"


class StartedBy(enum.StrEnum):
    """What starts a clock: a notice arriving (intake) or a person's action."""

    INTAKE = "intake"
    ACTION = "action"


@dataclass(frozen=True, slots=True)
class ClockRule:
    """How one statutory clock behaves."""

    clock: StatutoryClock
    started_by: StartedBy
    due: Callable[[SchoolCalendar, datetime], datetime]
    warn_before: timedelta
    # Intake clocks are met by reading the notice (Encompass) or by the Monitoring Officer,
    # who is the one paged, acknowledging it (whistleblowing). Action clocks are met only when
    # someone records that the deadline was met.
    met_by_acknowledgement: bool
    # What the deadline asks for, in the school's words, for pages and the desk.
    wording: str
    # The deadline asks for the notice to be read: an acknowledgement meets it only from
    # someone who has read the case (opened it, or said so); opening the case meets it too.
    met_by_reading: bool = False


def _next_school_day(calendar: SchoolCalendar, start: datetime) -> datetime:
    return calendar.next_school_day_start(start)


def _working_days(count: int) -> Callable[[SchoolCalendar, datetime], datetime]:
    return lambda calendar, start: calendar.add_working_days(start, count)


def _school_days(count: int) -> Callable[[SchoolCalendar, datetime], datetime]:
    return lambda calendar, start: calendar.add_school_days(start, count)


CLOCK_RULES: Mapping[StatutoryClock, ClockRule] = {
    rule.clock: rule
    for rule in (
        ClockRule(
            StatutoryClock.ENCOMPASS_BEFORE_SCHOOL_DAY,
            StartedBy.INTAKE,
            _next_school_day,
            timedelta(minutes=30),
            met_by_acknowledgement=True,
            wording="read the notice before the next school day starts",
            met_by_reading=True,
        ),
        ClockRule(
            StatutoryClock.WHISTLE_MONITORING_OFFICER,
            StartedBy.INTAKE,
            _working_days(5),
            timedelta(days=1),
            met_by_acknowledgement=True,
            wording="inform the Monitoring Officer in writing within 5 working days",
        ),
        ClockRule(
            StatutoryClock.LADO,
            StartedBy.ACTION,
            _working_days(1),
            timedelta(hours=4),
            met_by_acknowledgement=False,
            wording="refer to the LADO within 1 working day",
        ),
        ClockRule(
            StatutoryClock.SUSPENSION_CONFIRMATION,
            StartedBy.ACTION,
            _working_days(1),
            timedelta(hours=4),
            met_by_acknowledgement=False,
            wording="confirm the suspension in writing within 1 working day",
        ),
        ClockRule(
            StatutoryClock.FILE_TRANSFER,
            StartedBy.ACTION,
            _school_days(5),
            timedelta(days=1),
            met_by_acknowledgement=False,
            wording="send the child protection file within 5 school days",
        ),
    )
}

INTAKE_CLOCKS: tuple[StatutoryClock, ...] = tuple(
    c for c, r in CLOCK_RULES.items() if r.started_by is StartedBy.INTAKE
)
ACTION_CLOCKS: tuple[StatutoryClock, ...] = tuple(
    c for c, r in CLOCK_RULES.items() if r.started_by is StartedBy.ACTION
)
MET_BY_ACKNOWLEDGEMENT: tuple[StatutoryClock, ...] = tuple(
    c for c, r in CLOCK_RULES.items() if r.met_by_acknowledgement
)
MET_BY_READING: tuple[StatutoryClock, ...] = tuple(
    c for c, r in CLOCK_RULES.items() if r.met_by_reading
)


def statutory_clock(name: str) -> StatutoryClock:
    """The clock called ``name``, or one clear line naming the ones that exist."""
    try:
        return StatutoryClock(name)
    except ValueError:
        known = ", ".join(c.value for c in StatutoryClock)
        raise InvalidInput(f"unknown clock {name!r}; use one of {known}") from None


def action_clock(name: str) -> StatutoryClock:
    """A clock a person may start by hand (not one that a notice starts by arriving)."""
    clock = statutory_clock(name)
    if CLOCK_RULES[clock].started_by is not StartedBy.ACTION:
        known = ", ".join(c.value for c in ACTION_CLOCKS)
        raise InvalidInput(f"clock {name!r} starts with the notice; use one of {known}")
    return clock


class TimerKind(enum.StrEnum):
    """Why a timer row exists. Stored in ``timers.kind``; action clocks add their name."""

    STEP = "step"  # the next step of the acknowledgement escalation
    REPEAT = "repeat"  # the repeating reminder after the last step
    INTAKE_CLOCK = "clock-warning"  # the source's own clock is about to run out
    ACTION_CLOCK = "clock"  # stored as "clock:<name>"; step 0 warns, step 1 says it passed

    @property
    def stops_on_acknowledgement(self) -> bool:
        """Whether acknowledging the case makes this timer's pages unwanted."""
        return self in (TimerKind.STEP, TimerKind.REPEAT)


ACTION_PREFIX = "clock:"


@dataclass(frozen=True, slots=True)
class TimerOrigin:
    """A timer's kind, and for an action clock which one."""

    kind: TimerKind
    clock: StatutoryClock | None = None

    @classmethod
    def parse(cls, stored: str) -> TimerOrigin:
        if stored.startswith(ACTION_PREFIX):
            return cls(TimerKind.ACTION_CLOCK, StatutoryClock(stored.removeprefix(ACTION_PREFIX)))
        return cls(TimerKind(stored))

    def stored(self) -> str:
        if self.kind is TimerKind.ACTION_CLOCK:
            assert self.clock is not None
            return ACTION_PREFIX + self.clock.value
        return self.kind.value


def page_still_wanted(
    origin: TimerOrigin | None, case_state: CaseState | None, clock_met: bool
) -> bool:
    """Whether a queued page should still go out, decided by what raised it.

    ``origin`` is None for pages that no timer raised (system alerts), which always go out.
    Acknowledgement escalation stops once the case is acknowledged; a statutory clock's pages
    stop only when the clock is met (or the case is closed, a deliberate decision by an
    entitled person that is itself recorded and audited).
    """
    if origin is None or case_state is None:
        return True
    if case_state is CaseState.CLOSED:
        return False
    if origin.kind.stops_on_acknowledgement:
        return case_state is CaseState.NEW
    return not clock_met
