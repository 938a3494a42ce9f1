"""Pieces for engine tests: a virtual clock, a recording notifier, and a team with a rota."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sgalert.ports import Notification, Receipt, Recipient

# Sunday 22 November 2026, 21:55 in London: a notice the night before a school day.
SUNDAY_NIGHT = datetime(2026, 11, 22, 21, 55, tzinfo=UTC)


class VirtualClock:
    """Time that runs ``speed`` times faster than the wall clock, or only when moved by hand."""

    def __init__(self, start: datetime = SUNDAY_NIGHT, speed: float = 0.0) -> None:
        self.start = start
        self.speed = speed
        self.offset = timedelta()
        self._real = time.monotonic()

    def __call__(self) -> datetime:
        elapsed = (time.monotonic() - self._real) * self.speed
        return self.start + self.offset + timedelta(seconds=elapsed)

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


@dataclass
class RecordingNotifier:
    """For pure unit tests of the escalation logic: records what would have been sent."""

    name: str
    per_person: bool = True
    sent: list[tuple[Notification, Recipient]] = field(default_factory=list)

    async def send(self, notification: Notification, recipient: Recipient) -> Receipt:
        self.sent.append((notification, recipient))
        return Receipt(self.name, "recorded")

    async def close(self) -> None:
        return None
