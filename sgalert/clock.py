"""Time in one place: UTC storage, ISO 8601 text, the school's way of writing a moment, and an
injectable clock for tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, tzinfo

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds and a ``Z``: sorts as text, parses back exactly."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: sgalert stores aware UTC times only")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def in_words(moment: datetime, zone: tzinfo, *, year: bool = False, zone_name: bool = False) -> str:
    """A moment as people at the school read it, in the UK's order without a leading zero:
    ``Mon 7 Dec 09:00``; ``Mon 7 Dec 2026 09:00 GMT`` with ``year`` and ``zone_name``. The one
    writer for pages, Teams cards, the command line and the desk, so a date reads one way."""
    local = moment.astimezone(zone)
    text = f"{local:%a} {local.day} {local:%b}"
    if year:
        text += f" {local:%Y}"
    text += f" {local:%H:%M}"
    if zone_name:
        text += f" {local:%Z}"
    return text
