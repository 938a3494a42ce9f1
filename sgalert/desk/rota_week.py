"""One week of the rota as a grid: each day's duty slots, who covers each, and the gaps.

The slots are the day cut at every time a weekly shift starts or ends (07:00-19:00 and
19:00-07:00 for a day DSL and a night deputy), so together they cover all 24 hours and no
stretch of the day can hide outside the grid. Within a slot, who is on duty is asked of the
rota exactly (:meth:`~sgalert.rules.rota.Rota.next_change`): a cover from 09:00 to 12:00 splits
its slot in three. A stretch only the fallback, or nobody, covers is a gap. Metadata only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sgalert.routing.duty import RotaView
from sgalert.rules.rota import Cover, wall_clock

DAYS = 7


@dataclass(frozen=True, slots=True)
class Stretch:
    """Part of a slot with one person on duty (``who`` None: nobody at all)."""

    start: datetime
    end: datetime
    who: str | None
    fallback: bool  # only the fallback (or nobody) covers it: a gap
    cover: bool  # a dated cover, not the weekly pattern


@dataclass(frozen=True, slots=True)
class Slot:
    """One duty slot of one day, from ``start`` to ``end`` (UTC)."""

    day: date
    start: datetime
    end: datetime
    stretches: tuple[Stretch, ...]

    @property
    def gap(self) -> bool:
        return any(stretch.fallback for stretch in self.stretches)


@dataclass(frozen=True, slots=True)
class RotaWeek:
    """Monday to Sunday: ``slots[day][n]`` is the ``n``-th slot (``labels[n]``) of that day."""

    monday: date
    labels: tuple[str, ...]
    slots: tuple[tuple[Slot, ...], ...]
    names: dict[str, str]  # lower-cased email to name, for everyone the rota may name
    covers: tuple[Cover, ...] = ()  # the dated covers the grid honours that end after it starts

    @property
    def days(self) -> tuple[date, ...]:
        return tuple(self.monday + timedelta(days=n) for n in range(DAYS))

    def gaps(self) -> list[Slot]:
        return [slot for day in self.slots for slot in day if slot.gap]


def monday_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def boundaries(view: RotaView) -> list[time]:
    """The times of day at which a weekly shift starts or ends, in order (midnight if none)."""
    found = sorted({t for shift in view.rota.shifts for t in (shift.start, shift.end)})
    return found or [time(0, 0)]


def _label(start: time, end: time) -> str:
    if start == end:
        return "all day" if start == time(0, 0) else f"from {start:%H:%M}"
    return f"{start:%H:%M}-{end:%H:%M}"


def _stretches(view: RotaView, start: datetime, end: datetime) -> tuple[Stretch, ...]:
    found: list[Stretch] = []
    at = start
    duty = view.who(at)
    while at < end:
        change = view.rota.next_change(at, end, view.covers, view.available)
        until = change[0] if change is not None else end
        found.append(Stretch(at, until, duty.who, duty.fallback, duty.rule.startswith("cover")))
        if change is None:
            break
        at, duty = change
    return tuple(found)


def build(view: RotaView, monday: date) -> RotaWeek:
    """The week starting on ``monday`` (any date is moved back to its Monday)."""
    monday = monday_of(monday)
    zone = view.rota.calendar.zone
    cuts = boundaries(view)
    pairs = [(cuts[n], cuts[(n + 1) % len(cuts)]) for n in range(len(cuts))]
    slots: list[tuple[Slot, ...]] = []
    for offset in range(DAYS):
        day = monday + timedelta(days=offset)
        row: list[Slot] = []
        for begins, ends in pairs:
            start = wall_clock(zone, day, begins)
            last = day + timedelta(days=1) if ends <= begins else day
            end = wall_clock(zone, last, ends)
            row.append(Slot(day, start, end, _stretches(view, start, end)))
        slots.append(tuple(row))
    names = {email: person.name for email, person in view.people.items()}
    # The same covers the grid asked about, minus one for someone since removed (the rota
    # skips those), so the list of dated covers never names a cover the grid does not show.
    week_starts = slots[0][0].start
    covers = tuple(
        c for c in view.covers if c.ends_at > week_starts and view.available.get(c.who, False)
    )
    return RotaWeek(monday, tuple(_label(a, b) for a, b in pairs), tuple(slots), names, covers)
