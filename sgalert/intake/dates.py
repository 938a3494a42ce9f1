"""UK-style dates and times as police and council notices write them.

``14/03/2017``, ``14-03-2017``, ``30.06.2019``, ``02-Sep-2015``, ``2 September 2015``,
``2017-03-14``, with optional times such as ``21:40``, ``2140 hrs``, ``9.40pm``, ``9.40 p.m.``.
Day first, always: a UK notice never means month first. Anything ambiguous or impossible returns
None so the raw text is kept instead of a wrong date.
"""

from __future__ import annotations

import contextlib
import re
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

_MONTHS = {
    name: index
    for index, names in enumerate(
        [
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ],
        start=1,
    )
    for name in names
}

_NUMERIC = re.compile(r"\b(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4}|\d{2})\b")
_ISO = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_NAMED = re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)?[\s\-]+([A-Za-z]{3,9})\.?,?[\s\-]+(\d{4}|\d{2})\b")
# The minutes' lookahead refuses a following digit or a date's next part (".2019", "/03"), but
# not a full stop ending the sentence: "at 9.40pm." is 21:40, never 09:40.
_TIME = re.compile(
    r"(?<![\d/.\-])(\d{1,2})[:.](\d{2})(?!\d|[./\-]\d)(?:\s*([ap])\.?m\b\.?)?"
    r"|\b(\d{2})(\d{2})\s*(?:hrs|hours|h)\b"
    r"|\b(\d{1,2})\s*([ap])\.?m\b",
    re.IGNORECASE,
)


def _year(text: str) -> int:
    value = int(text)
    if len(text) == 2:
        value += 2000 if value <= 69 else 1900
    return value


def find_date(text: str) -> date | None:
    """The first day-first date in ``text``, or None."""
    candidates: list[tuple[int, date]] = []
    for match in _ISO.finditer(text):
        with contextlib.suppress(ValueError):
            candidates.append((match.start(), date(int(match[1]), int(match[2]), int(match[3]))))
    for match in _NUMERIC.finditer(text):
        with contextlib.suppress(ValueError):
            candidates.append((match.start(), date(_year(match[3]), int(match[2]), int(match[1]))))
    for match in _NAMED.finditer(text):
        month = _MONTHS.get(match[2].lower())
        if month is None:
            continue
        with contextlib.suppress(ValueError):
            candidates.append((match.start(), date(_year(match[3]), month, int(match[1]))))
    if not candidates:
        return None
    return min(candidates, key=lambda item: item[0])[1]


def find_time(text: str) -> time | None:
    """The first clock time in ``text`` (24-hour, ``hrs`` or am/pm), or None."""
    for match in _TIME.finditer(text):
        if match[1] is not None:
            hour, minute, meridiem = int(match[1]), int(match[2]), match[3]
        elif match[4] is not None:
            hour, minute, meridiem = int(match[4]), int(match[5]), None
        else:
            hour, minute, meridiem = int(match[6]), 0, match[7]
        if meridiem:
            if not 1 <= hour <= 12:
                continue
            hour = hour % 12 + (12 if meridiem.lower() == "p" else 0)
        if 0 <= hour <= 23 and 0 <= minute <= 59:
            return time(hour, minute)
    return None


def find_datetime(text: str, zone: ZoneInfo) -> datetime | date | None:
    """A local date-time (the school's zone), or just the date when no time is given.

    A missing time is not invented as midnight: the date alone is returned.
    """
    day = find_date(text)
    if day is None:
        return None
    without_dates = _NAMED.sub(" ", _NUMERIC.sub(" ", _ISO.sub(" ", text)))
    clock = find_time(without_dates)
    if clock is None:
        return day
    return datetime.combine(day, clock, tzinfo=zone)


def iso_or_none(moment: datetime | date | None) -> str | None:
    """ISO 8601 for a date or date-time found, or None if none was."""
    if moment is None:
        return None
    return moment.isoformat()
