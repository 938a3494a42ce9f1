"""The rota as the store and config describe it: who is on duty now, gaps, and dated covers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sgalert.clock import iso, parse_iso
from sgalert.config import Config
from sgalert.errors import InvalidInput
from sgalert.model import Role
from sgalert.records import audit
from sgalert.records.keyring import Identity, Person, find_person, list_people
from sgalert.records.store import Store
from sgalert.rules.rota import Cover, Gap, OnDuty, Rota, cover_problem

_SENIORITY = (Role.DSL, Role.DEPUTY, Role.HEAD)


class RotaSources(Protocol):
    """Where the rota is read from: the store (people, dated covers) and the config (shifts,
    calendar, fallback). The desk's service and the engine's workplace are both this."""

    @property
    def store(self) -> Store: ...

    @property
    def config(self) -> Config | None: ...


@dataclass(frozen=True, slots=True)
class RotaView:
    rota: Rota
    covers: tuple[Cover, ...]
    available: dict[str, bool]
    people: dict[str, Person]

    def who(self, at: datetime) -> OnDuty:
        return self.rota.who(at, self.covers, self.available)

    def gaps(self, start: datetime, days: int = 14) -> list[Gap]:
        """Every gap in the ``days`` from ``start``, with exact edges (see
        :mod:`sgalert.rules.rota`)."""
        return self.rota.gaps(start, days, self.covers, self.available)

    def next_change(self, start: datetime, days: int = 14) -> tuple[datetime, OnDuty] | None:
        """When someone other than the person on duty at ``start`` takes over, exactly."""
        return self.rota.next_change(
            start, start + timedelta(days=days), self.covers, self.available
        )

    def unknown_people(self) -> list[str]:
        """Emails named by shifts or the fallback that are not (or no longer) people."""
        named = [s.who for s in self.rota.shifts] + list(self.rota.fallback)
        return sorted({email for email in named if not self.available.get(email, False)})


async def load_rota(service: RotaSources, *, since: datetime | None = None) -> RotaView:
    """The rota with current people and the covers that end after ``since``."""
    assert service.config is not None
    everyone = [person for person, _ in await list_people(service.store)]
    people = {p.email.lower(): p for p in everyone}
    available = {email: not p.removed for email, p in people.items()}
    fallback = service.config.fallback or tuple(
        p.email.lower()
        for role in _SENIORITY
        for p in sorted(everyone, key=lambda p: p.created_at)
        if p.role is role and not p.removed
    )
    rows = await service.store.fetchall(
        "SELECT c.id, p.email, c.starts_at, c.ends_at FROM rota_covers c"
        " JOIN people p ON p.id = c.person_id WHERE c.cancelled_at IS NULL AND c.ends_at > ?"
        " ORDER BY c.starts_at",
        (iso(since) if since else "",),
    )
    covers = tuple(
        Cover(int(r[0]), str(r[1]).lower(), parse_iso(r[2]), parse_iso(r[3])) for r in rows
    )
    rota = Rota(service.config.calendar, service.config.shifts, fallback)
    return RotaView(rota, covers, available, people)


async def add_cover(
    service: RotaSources,
    actor: Identity,
    who: str,
    starts: datetime,
    ends: datetime,
    *,
    now: datetime,
) -> Cover:
    """Record that ``who`` covers from ``starts`` to ``ends``. Audited; no personal data kept.

    ``now`` is the caller's clock: a cover that has already ended is refused
    (:func:`~sgalert.rules.rota.cover_problem`)."""
    zone = service.config.timezone if service.config else UTC
    problem = cover_problem(starts, ends, now, zone)
    if problem is not None:
        raise InvalidInput(problem)
    async with service.store.write() as db:
        person = await find_person(db, who)
        if person.removed:
            raise InvalidInput(f"{person.email} has been removed and cannot cover")
        cursor = await db.execute(
            "INSERT INTO rota_covers (person_id, starts_at, ends_at, created_by, created_at)"
            " VALUES (?, ?, ?, ?, ?) RETURNING id",
            (person.id, iso(starts), iso(ends), actor.id, iso(now)),
        )
        row = await cursor.fetchone()
        assert row is not None
        await audit.append(
            db,
            [
                audit.AuditEvent(
                    actor.email,
                    "rota-cover-added",
                    detail={
                        "cover": int(row[0]),
                        "person": person.id,
                        "from": iso(starts),
                        "to": iso(ends),
                    },
                )
            ],
        )
    return Cover(int(row[0]), person.email.lower(), starts, ends)
