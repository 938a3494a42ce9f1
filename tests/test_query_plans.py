"""The desk's queries find their rows by an index, never by one SQLite builds for the query.

An automatic index is SQLite's sign that a lookup had no index of its own: it is built over the
whole table on every run of the query, unnoticed with a few cases and a tenth of a second per page
turn at 100,000 (``bench/tui.py``). So every statement the desk's queue runs, for each view and
order and each member of the team, is explained here on a real store.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sgalert.desk.views import QueueQuery, QueueView, SortKey
from sgalert.model import Source

from .conftest import Team, encompass_case

MONDAY = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def plans(path: str, statements: list[str]) -> dict[str, list[str]]:
    """Each SELECT's query plan, as SQLite explains it on the same store."""
    explained: dict[str, list[str]] = {}
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        for sql in dict.fromkeys(statements):
            if sql.lstrip().upper().startswith(("SELECT", "WITH")):
                rows = conn.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
                explained[sql] = [str(row[3]) for row in rows]
    return explained


async def test_the_queue_uses_no_index_built_for_the_query(team: Team) -> None:
    service = team.service
    await service.create_cases(
        [replace(encompass_case(), received_at=MONDAY - timedelta(hours=hour)) for hour in range(6)]
    )
    statements: list[str] = []
    async with service.store.read() as db:
        await db.set_trace_callback(statements.append)
    for person in team.people.values():
        await service.queue_counts(viewer=person)
        await service.unacknowledged(person.person.email, viewer=person)
        for view in QueueView:
            for sort in SortKey:
                await service.queue_page(QueueQuery(view, sort=sort), viewer=person)
        await service.queue_page(QueueQuery(search=Source.ENCOMPASS.value), viewer=person)
    async with service.store.read() as db:
        await db.set_trace_callback(None)

    explained = plans(str(service.store.path), statements)
    assert any("key_wraps" in sql and "batch_keys" in sql for sql in explained)
    assert {step for plan in explained.values() for step in built_for_the_query(plan)} == set()


def built_for_the_query(plan: list[str]) -> list[str]:
    """The steps that search a stored table by an automatic index. A subquery's result (the
    next deadline per case, say) has no index of its own to use, so one built over it is fine."""
    derived = {step.split()[-1] for step in plan if step.startswith(("MATERIALIZE", "CO-ROUTINE"))}
    return [step for step in plan if "AUTOMATIC" in step and step.split()[1] not in derived]
