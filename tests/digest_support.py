"""A store seeded for the daily digest with answers worked out by hand (see ``SEEDED``).

Europe/London in December is UTC, so every time below is also the local time. The digest for
Monday 7 December 2026 covers Friday 4 December 07:30 to Monday 07:30.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from datetime import UTC, datetime

from sgalert.clock import iso
from sgalert.desk.service import CaseService
from sgalert.model import Source
from sgalert.records import audit
from sgalert.records.cases import NewCase

from .conftest import Team, encompass_case, whistle_case
from .engine_helpers import VirtualClock


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=UTC)


def lesson_case() -> NewCase:
    return dataclasses.replace(encompass_case(child="Bea Invented"), source=Source.LESSON)


# Every personal datum the fixtures hold: none may appear in any digest byte.
PERSONAL = (
    "Ada Invented",
    "Bea Invented",
    "2017-03-14",
    "14/03/2017",
    "Riley Reporter",
    "riley@example.org",
    "Child present",
    "invented allegation",
    "Invented allegation",
    "notice.pdf",
    "police.example.org",
    "PC 0000",
    "Dsl Example",
    "Deputy Example",
    "Head Example",
    "Mo Example",
    "Chair Example",
    "Spoke to",
)


async def seed(team: Team) -> tuple[CaseService, dict[str, str]]:
    """The cases, acknowledgements, escalations, alerts and engine starts of SEEDED."""
    clock = VirtualClock(at(1, 9))
    service = CaseService(team.service.store, team.service.config, clock)
    refs: dict[str, str] = {}

    async def create(name: str, case: NewCase, when: datetime) -> None:
        clock.offset = when - clock.start
        (stored,) = await service.create_cases([dataclasses.replace(case, received_at=when)])
        refs[name] = stored.ref

    async def ack(name: str, when: datetime) -> None:
        clock.offset = when - clock.start
        await service.acknowledge(team["dsl@example.org"], refs[name])

    await create("W1", whistle_case(), at(1, 9))  # MO clock due Tue 8 Dec 09:00
    await create("E0", encompass_case(), at(3, 20))  # clock due Fri 4 Dec 08:30: overdue
    await create("C1", encompass_case(), at(4, 9))
    await ack("C1", at(4, 9, 30))  # 30 min
    clock.offset = at(4, 12) - clock.start
    await service.close_case(team["dsl@example.org"], refs["C1"], "no further action", "seen")
    await create("H1", whistle_case(about_head=True), at(5, 12))
    await create("E1", encompass_case(), at(5, 21))
    await ack("E1", at(5, 21, 4))  # 4 min
    await create("E2", encompass_case(), at(6, 22))
    await ack("E2", at(6, 22, 25))  # 25 min, after the head's step
    await create("L1", lesson_case(), at(7, 7))  # not acknowledged by 07:30
    await create("LATER", encompass_case(), at(7, 8))  # after the slot: not in Monday's digest

    ids = {
        name: (await service.store.fetchall("SELECT id FROM cases WHERE ref = ?", (ref,)))[0][0]
        for name, ref in refs.items()
    }

    def timers(conn: sqlite3.Connection) -> None:
        # The engine never ran: only the escalation this seed describes has fired.
        conn.execute("UPDATE timers SET cancelled_at = ? WHERE fired_at IS NULL", (iso(at(8, 0)),))
        fired = [
            ("E2", "step", 0, at(6, 22)),
            ("E2", "step", 1, at(6, 22, 10)),
            ("E2", "step", 2, at(6, 22, 20)),
            ("L1", "step", 0, at(7, 7)),
            ("L1", "step", 1, at(7, 7, 5)),
            ("W1", "clock-warning", 0, at(6, 9)),
            ("E0", "step", 1, at(3, 20, 10)),  # before the period: not counted
        ]
        conn.executemany(
            "INSERT INTO timers (case_id, kind, step, due_at, created_at, fired_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(ids[n], kind, step, iso(t), iso(t), iso(t)) for n, kind, step, t in fired],
        )
        alerts = [
            ("source-down", "encompass", at(5, 10), at(5, 10, 30), "{}"),
            (
                "rota-gap",
                "rota",
                at(7, 7),
                None,
                json.dumps(
                    {"first_gap_from": iso(at(9, 19)), "first_gap_to": iso(at(10, 7)), "gaps": 2}
                ),
            ),
            ("source-down", "whistle-box", at(2, 10), at(3, 10), "{}"),  # before the period
        ]
        conn.executemany(
            "INSERT INTO system_alerts (kind, source_name, raised_at, cleared_at, detail)"
            " VALUES (?, ?, ?, ?, ?)",
            [(k, s, iso(r), iso(c) if c else None, d) for k, s, r, c, d in alerts],
        )
        audit.append_now(
            conn,
            [audit.AuditEvent(audit.ENGINE, "engine-started", detail={"holder": "test:1"})],
            at(6, 8),
        )

    await service.store.transact(timers)
    return service, refs
