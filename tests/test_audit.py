"""The audit log: append-only by trigger, tamper-evident by hash chain."""

from __future__ import annotations

import sqlite3

import pytest

from sgalert.errors import AuditChainBroken
from sgalert.records import audit

from .conftest import Team, encompass_case


async def _tamper(team: Team, sql: str, params: tuple[object, ...] = ()) -> None:
    async with team.service.store.write() as db:
        await db.execute("DROP TRIGGER audit_no_update")
        await db.execute("DROP TRIGGER audit_no_delete")
        await db.execute(sql, params)


async def test_every_action_is_chained(team: Team) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    await team.service.acknowledge(team["dsl@example.org"], stored.ref)
    await team.service.add_note(team["dsl@example.org"], stored.ref, "Spoke to class teacher.")
    await team.service.open_case(team["dsl@example.org"], stored.ref)
    count = await team.service.verify_audit()
    async with team.service.store.read() as db:
        entries = await audit.entries(db, case_id=stored.id)
    assert [e.action for e in reversed(entries)] == [
        "case-created",
        "acknowledged",
        "note-added",
        "case-read",
    ]
    assert count == len(await team.service.store.fetchall("SELECT seq FROM audit"))
    # Content never reaches the log.
    details = " ".join(str(e.detail) for e in entries)
    assert "class teacher" not in details and "Ada" not in details


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit SET actor = 'someone-else' WHERE seq = 3",
        "DELETE FROM audit WHERE seq = 3",
    ],
)
async def test_triggers_refuse_update_and_delete(team: Team, statement: str) -> None:
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        async with team.service.store.write() as db:
            await db.execute(statement)
    await team.service.verify_audit()


@pytest.mark.parametrize(
    "column,value",
    [
        ("actor", "someone-else@example.org"),
        ("action", "case-read"),
        ("detail", '{"person":"x"}'),
        ("at", "2020-01-01T00:00:00.000000Z"),
    ],
)
async def test_edited_row_is_named_by_verify(team: Team, column: str, value: str) -> None:
    await _tamper(team, f"UPDATE audit SET {column} = ? WHERE seq = 4", (value,))
    with pytest.raises(AuditChainBroken, match="audit entry 4 ") as caught:
        await team.service.verify_audit()
    assert caught.value.seq == 4


async def test_rehashed_row_still_breaks_the_chain_after_it(team: Team) -> None:
    """A forger who recomputes the edited row's own hash is caught by the next row."""
    rows = await team.service.store.fetchall("SELECT * FROM audit WHERE seq = 2")
    row = rows[0]
    forged = audit.entry_hash(
        row["prev_hash"],
        2,
        row["at"],
        "forger@example.org",
        row["action"],
        row["case_id"],
        row["detail"],
    )
    await _tamper(
        team, "UPDATE audit SET actor = 'forger@example.org', hash = ? WHERE seq = 2", (forged,)
    )
    with pytest.raises(AuditChainBroken, match="audit entry 3 does not follow"):
        await team.service.verify_audit()


async def test_deleted_row_is_found_missing(team: Team) -> None:
    await _tamper(team, "DELETE FROM audit WHERE seq = 5")
    with pytest.raises(AuditChainBroken, match="audit entry 5 is missing"):
        await team.service.verify_audit()


async def test_a_cases_history_is_read_by_index_not_by_scanning_the_log(team: Team) -> None:
    """The log grows by several entries per case for ever; a case view, a child file and the
    desk's new-activity check read one case's entries through an index."""
    queries = [
        "SELECT * FROM audit WHERE case_id = ? ORDER BY seq DESC LIMIT 200",
        "SELECT MAX(seq) FROM audit WHERE seq > ? AND case_id = ?",
        "SELECT seq FROM audit WHERE case_id IN (?, ?) AND action IN ('assigned') ORDER BY seq",
    ]
    async with team.service.store.read() as db:
        for sql in queries:
            cursor = await db.execute(f"EXPLAIN QUERY PLAN {sql}", (1,) * sql.count("?"))
            plan = " ".join(str(row[3]) for row in await cursor.fetchall())
            assert "audit_by_case" in plan, (sql, plan)
