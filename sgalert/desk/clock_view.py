"""A case's clocks in words: when each is due, in the school's local time, and how it stands.

The CLI's ``case show`` and the desk's case screen print the same lines from here, so a
deadline reads the same wherever a DSL looks.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from sgalert.clock import in_words
from sgalert.model import CaseState


@dataclass(frozen=True, slots=True)
class CaseClock:
    """A statutory or action clock on a case: its kind, when it runs out, when it was met."""

    kind: str
    due_at: datetime
    met_at: datetime | None


CLOCK_LABELS: dict[str, str] = {
    "encompass-before-school-day": "Read before the next school day",
    "whistle-monitoring-officer-5-working-days": "Monitoring Officer within 5 working days",
    "lado-1-working-day": "LADO within 1 working day",
    "suspension-confirmation-1-working-day": "Suspension confirmed in writing, 1 working day",
    "file-transfer-5-school-days": "Child's file transferred within 5 school days",
}
"""Each clock's name as the desk, the command line and the pages say it."""

SOON_SECONDS = 3_600  # the last hour before a deadline is shown as coming soon


class ClockStanding(enum.StrEnum):
    """Where a clock stands now: what decides how loudly each client shows it."""

    MET = "met"
    CASE_CLOSED = "case-closed"
    RUNNING = "running"
    SOON = "soon"
    OVERDUE = "overdue"


@dataclass(frozen=True, slots=True)
class ClockLine:
    """One clock, ready to show: its label, its due time in the school's zone, and where it
    stands (``detail`` is the met time, or the time left or over, as words)."""

    label: str
    due: str
    standing: ClockStanding
    detail: str


def local_time(moment: datetime, zone: tzinfo) -> str:
    """A moment in the school's zone, as the desk writes it, in the UK's order without a
    leading zero: ``Mon 7 Dec 09:00``."""
    return in_words(moment, zone)


def span(seconds: int) -> str:
    """A compact duration: ``2d 03h``, ``10h 33m``, ``4m 09s``."""
    days, rest = divmod(max(seconds, 0), 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


def clock_lines(
    clocks: Sequence[CaseClock], state: CaseState, now: datetime, zone: tzinfo
) -> tuple[ClockLine, ...]:
    """A case's clocks as the desk and ``sgalert case show`` both show them (``state`` is the
    case's): the due time in the school's zone, then met, case closed, or a countdown."""
    lines = []
    for clock in clocks:
        label = CLOCK_LABELS.get(clock.kind, clock.kind)
        due = local_time(clock.due_at, zone)
        seconds = int((clock.due_at - now).total_seconds())
        if clock.met_at is not None:
            late = int((clock.met_at - clock.due_at).total_seconds())
            met = f"met {local_time(clock.met_at, zone)}" + (
                f", {span(late)} late" if late > 0 else ""
            )
            line = ClockLine(label, due, ClockStanding.MET, met)
        elif state is CaseState.CLOSED:
            line = ClockLine(label, due, ClockStanding.CASE_CLOSED, "case closed")
        elif seconds < 0:
            line = ClockLine(label, due, ClockStanding.OVERDUE, f"over {span(-seconds)}")
        else:
            standing = ClockStanding.SOON if seconds < SOON_SECONDS else ClockStanding.RUNNING
            line = ClockLine(label, due, standing, span(seconds))
        lines.append(line)
    return tuple(lines)
