"""Whether the school calendar still covers the coming weeks, and the alert when it does not.

Beyond the last configured term :class:`~sgalert.rules.school_calendar.SchoolCalendar` guesses
school days from working days, so intake never stops; but a guessed deadline ignores the holidays,
so the DSL team is told, from :data:`WARN_DAYS` before the last term ends, to add next year's dates.
The engine's daily jobs call :func:`note_calendar_coverage`; ``sgalert config check`` calls
:func:`coverage`; the case service calls :func:`flag_guessed_deadlines` on every new case.
"""

from __future__ import annotations

import enum
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from sgalert.clock import iso
from sgalert.model import Flag, Source
from sgalert.records.alerts import AlertKind, clear_alert, raise_alert
from sgalert.records.cases import NewCase
from sgalert.rules.school_calendar import SchoolCalendar

CALENDAR_ENDING = AlertKind.CALENDAR_ENDING.value
ALERT_SOURCE = "calendar"
WARN_DAYS = 60


class CoverageStatus(enum.StrEnum):
    """How far ahead the configured terms reach."""

    OK = "ok"
    ENDING = "ending"  # the last term ends within WARN_DAYS (or ends today)
    EXHAUSTED = "exhausted"  # no term is configured, or the last one has ended


@dataclass(frozen=True, slots=True)
class Coverage:
    status: CoverageStatus
    last_term_day: date | None
    days_left: int | None  # from today (school local time) to the last term day; < 0 once past


def flag_guessed_deadlines(calendar: SchoolCalendar, cases: Iterable[NewCase]) -> None:
    """Before sealing new cases: flag ``calendar-ended`` each Operation Encompass case whose
    next school day lies past the configured terms, so its deadline was guessed."""
    for case in cases:
        if case.source is Source.ENCOMPASS and calendar.next_school_day_guessed(case.received_at):
            case.flags = case.flags | {Flag.CALENDAR_ENDED}


def coverage(calendar: SchoolCalendar, now: datetime) -> Coverage:
    """The calendar's coverage on ``now``'s local day."""
    last = calendar.last_term_day
    if last is None:
        return Coverage(CoverageStatus.EXHAUSTED, None, None)
    left = (last - calendar.local(now).date()).days
    if left < 0:
        return Coverage(CoverageStatus.EXHAUSTED, last, left)
    if left <= WARN_DAYS:
        return Coverage(CoverageStatus.ENDING, last, left)
    return Coverage(CoverageStatus.OK, last, left)


def note_calendar_coverage(
    conn: sqlite3.Connection, calendar: SchoolCalendar, now: datetime
) -> Coverage:
    """In a write transaction: raise the ``calendar-ending`` system alert while the terms run
    out within :data:`WARN_DAYS` or have run out, and clear it once later terms are configured.

    The alert is raised again (and so paged again) when the terms that were ending have ended.
    """
    found = coverage(calendar, now)
    open_alert = conn.execute(
        "SELECT detail FROM system_alerts WHERE kind = ? AND source_name = ?"
        " AND cleared_at IS NULL",
        (AlertKind.CALENDAR_ENDING.value, ALERT_SOURCE),
    ).fetchone()
    if open_alert is not None:
        raised_for = json.loads(open_alert[0]).get("status")
        if found.status is CoverageStatus.OK or raised_for != found.status.value:
            clear_alert(conn, AlertKind.CALENDAR_ENDING, ALERT_SOURCE, now)
    if found.status is not CoverageStatus.OK:
        last = found.last_term_day.isoformat() if found.last_term_day else None
        raise_alert(
            conn,
            AlertKind.CALENDAR_ENDING,
            ALERT_SOURCE,
            now,
            {"since": iso(now), "status": found.status.value, "last_term": last},
        )
    return found
