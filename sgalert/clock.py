"""Time in one place: UTC storage, ISO 8601 text, and an injectable clock for tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

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
