"""The store: migrations from empty to head, durability settings, refusing foreign files."""

from __future__ import annotations

import asyncio
import inspect
import re
import sqlite3
import sys
import threading
from importlib.metadata import version
from pathlib import Path

import aiosqlite
import pytest

from sgalert.errors import StoreError
from sgalert.records.migrations import HEAD_VERSION, MIGRATIONS
from sgalert.records.store import (
    IN_CHUNK,
    Store,
    fetch_in,
    in_statements,
    on_connection,
    split_statements,
)


def _sql(path: Path, statement: str) -> object:
    """Run one statement on a plain sqlite3 connection, closing it again."""
    connection = sqlite3.connect(path)
    try:
        row = connection.execute(statement).fetchone()
        connection.commit()
        return row
    finally:
        connection.close()


async def test_migrates_empty_file_to_head_with_durable_settings(tmp_path: Path) -> None:
    path = tmp_path / "sgalert.db"
    store = await Store.open(path, create=True)
    async with store:
        assert await store.schema_version() == HEAD_VERSION
        async with store.read() as db:
            pragmas = {}
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout"):
                cursor = await db.execute(f"PRAGMA {name}")
                row = await cursor.fetchone()
                assert row is not None
                pragmas[name] = row[0]
        assert pragmas == {
            "journal_mode": "wal",
            "synchronous": 2,
            "foreign_keys": 1,
            "busy_timeout": 15000,
        }
        tables = {
            row[0]
            for row in await store.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        assert {
            "people",
            "groups",
            "cases",
            "key_wraps",
            "sealed_fields",
            "chronology",
            "clocks",
            "audit",
        } <= tables


async def test_each_migration_applies_in_order_and_reopen_is_a_no_op(tmp_path: Path) -> None:
    path = tmp_path / "sgalert.db"
    numbers = [number for number, _ in MIGRATIONS]
    assert numbers == list(range(1, len(numbers) + 1)), "migrations are numbered 1, 2, 3…"
    store = await Store.open(path, create=True)
    await store.close()
    schema_before = _sql(path, "SELECT group_concat(sql) FROM sqlite_master")
    store = await Store.open(path)
    assert await store.schema_version() == HEAD_VERSION
    await store.close()
    schema_after = _sql(path, "SELECT group_concat(sql) FROM sqlite_master")
    assert schema_before == schema_after


async def test_refuses_a_store_from_a_newer_sgalert(tmp_path: Path) -> None:
    path = tmp_path / "sgalert.db"
    _sql(path, f"PRAGMA user_version = {HEAD_VERSION + 1}")
    with pytest.raises(StoreError, match="newer than this sgalert"):
        await Store.open(path)


async def test_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "sgalert.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not an sgalert store"):
        await Store.open(path)


async def test_missing_store_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="sgalert init"):
        await Store.open(tmp_path / "absent.db")


async def test_failed_transaction_rolls_back(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db", create=True) as store:
        with pytest.raises(RuntimeError):
            async with store.write() as db:
                await db.execute("INSERT INTO ref_counters (year, last) VALUES (2026, 5)")
                raise RuntimeError("crash mid-transaction")
        assert await store.fetchall("SELECT * FROM ref_counters") == []


def test_trigger_bodies_stay_whole() -> None:
    statements = split_statements(
        "CREATE TABLE t (a);\nCREATE TRIGGER x BEFORE DELETE ON t\n"
        "BEGIN SELECT RAISE(ABORT, 'no; never'); END;\n"
    )
    assert len(statements) == 2 and statements[1].endswith("END;")


async def test_cancelled_while_waiting_to_begin_leaves_the_store_usable(tmp_path: Path) -> None:
    """Another process holds the write lock; we give up waiting; the connection must recover."""
    import asyncio

    path = tmp_path / "s.db"
    async with await Store.open(path, create=True) as store:
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")

            async def write_something() -> None:
                async with store.write() as db:
                    await db.execute("INSERT INTO ref_counters (year, last) VALUES (2030, 1)")

            task = asyncio.create_task(write_something())
            await asyncio.sleep(0.2)  # our BEGIN IMMEDIATE is now waiting on the busy handler
            task.cancel()
            blocker.execute("ROLLBACK")
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            blocker.close()
        async with store.write() as db:  # fails with "within a transaction" if left open
            await db.execute("INSERT INTO ref_counters (year, last) VALUES (2031, 1)")
        rows = await store.fetchall("SELECT year FROM ref_counters")
        assert [row[0] for row in rows] == [2031]


# ----- chunked IN queries -------------------------------------------------------------------


async def store_with_numbers(tmp_path: Path, count: int, limit: int) -> Store:
    """A store holding the numbers 0..count-1, whose SQLite takes at most ``limit`` parameters
    in one statement (as an SQLite older than 3.32 would: 999)."""
    store = await Store.open(tmp_path / "sgalert.db", create=True)
    async with store.write() as db:
        await db.execute("CREATE TEMP TABLE numbers (n INTEGER PRIMARY KEY, tag TEXT)")
        await db.executemany(
            "INSERT INTO numbers VALUES (?, ?)",
            [(n, "odd" if n % 2 else "even") for n in range(count)],
        )
        await on_connection(
            db, lambda conn: conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)
        )
    return store


async def test_fetch_in_asks_past_sqlites_parameter_limit(tmp_path: Path) -> None:
    ids = list(range(2_500))
    store = await store_with_numbers(tmp_path, 3_000, limit=IN_CHUNK + 10)
    async with store, store.read() as db:
        with pytest.raises(sqlite3.OperationalError, match="too many SQL variables"):
            marks = ",".join("?" * len(ids))
            await db.execute_fetchall(f"SELECT n FROM numbers WHERE n IN ({marks})", ids)
        rows = await fetch_in(
            db,
            "SELECT n FROM numbers WHERE tag = ? AND n IN ({ids}) ORDER BY n",
            ids,
            params=("odd",),
        )
        assert [row[0] for row in rows] == list(range(1, 2_500, 2))
        assert await fetch_in(db, "SELECT n FROM numbers WHERE n IN ({ids})", []) == []


async def test_in_statements_chunk_work_on_the_connections_thread(tmp_path: Path) -> None:
    ids = [*range(1_200), 99_999]  # one that is not there
    statements = list(in_statements("SELECT n FROM numbers WHERE n IN ({ids})", ids))
    assert [len(params) for _, params in statements] == [500, 500, 201]
    async with await store_with_numbers(tmp_path, 1_500, limit=IN_CHUNK + 10) as store:
        rows = await store.transact(
            lambda conn: [row[0] for sql, ps in statements for row in conn.execute(sql, ps)]
        )
        assert sorted(rows) == list(range(1_200))


def test_a_chunked_query_needs_exactly_one_place_for_the_ids() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        list(in_statements("SELECT 1 WHERE 1 IN (?)", [1]))


# ----- aiosqlite's private door -------------------------------------------------------------


async def test_aiosqlite_still_has_the_private_door_the_store_uses(tmp_path: Path) -> None:
    """``on_connection`` runs whole transactions on aiosqlite's worker thread through its
    private ``Connection._execute`` and ``Connection._conn``; pyproject.toml pins aiosqlite to
    the releases where they exist. An upgrade that drops or changes them must fail here, in CI,
    not in a school's engine."""
    installed = version("aiosqlite")
    fix = (
        f"aiosqlite {installed} changed the private API sgalert.records.store.on_connection "
        "relies on ({}); keep aiosqlite within the range pinned in pyproject.toml, or move "
        "on_connection to aiosqlite's new door"
    )
    execute = getattr(aiosqlite.Connection, "_execute", None)
    assert inspect.iscoroutinefunction(execute), fix.format("Connection._execute")
    assert isinstance(getattr(aiosqlite.Connection, "_conn", None), property), fix.format(
        "Connection._conn"
    )
    async with await Store.open(tmp_path / "sgalert.db", create=True) as store:
        async with store.read() as db:
            inner = db._conn
            assert isinstance(inner, sqlite3.Connection), fix.format(
                "_conn is no sqlite3 connection"
            )
            seen = await on_connection(db, lambda conn: (conn, threading.get_ident()))
        assert seen[0] is inner, fix.format("_execute does not pass the connection through")
        assert seen[1] != threading.get_ident(), fix.format("_execute ran on the event loop")


def _fill_every_table(connection: sqlite3.Connection) -> dict[str, int]:
    """One row in every table that will take one: a store in use, not an empty one, because a
    migration that adds a NOT NULL column or rebuilds a table fails only when rows exist."""
    tables = [
        str(row[0])
        for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    filled: dict[str, int] = {}
    for _ in range(3):  # a table whose parent is filled later goes in on the next round
        for table in tables:
            if table in filled:
                continue
            columns = connection.execute(f"PRAGMA table_info({table})").fetchall()
            created = str(
                connection.execute(
                    "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
                ).fetchone()[0]
            )
            values: list[object] = []
            for _cid, name, kind, notnull, _default, pk in columns:
                kind = str(kind).upper()
                allowed = re.search(
                    rf"\b{name}\b[^,]*?CHECK\s*\(\s*{name}\s+IN\s*\(\s*'([^']*)'", created, re.S
                )
                if not notnull and not pk:
                    values.append(None)  # optional columns, often references, stay empty
                elif allowed:
                    values.append(allowed.group(1))
                elif "INT" in kind:
                    values.append(1)
                elif "BLOB" in kind:
                    values.append(b"\x00")
                else:
                    values.append("x")
            marks = ", ".join("?" for _ in values)
            try:
                connection.execute(f"INSERT INTO {table} VALUES ({marks})", values)
            except sqlite3.Error:
                continue  # a CHECK or a foreign key this filler cannot satisfy
            filled[table] = 1
    connection.commit()
    return filled


@pytest.mark.parametrize("version", range(1, HEAD_VERSION))
async def test_a_store_in_use_upgrades_from_every_earlier_version(
    tmp_path: Path, version: int
) -> None:
    """A school upgrading sgalert from any release: every later migration applies to a store
    that holds rows, keeps them, and leaves the same schema a new store has."""
    fresh = tmp_path / "fresh.db"
    await (await Store.open(fresh, create=True)).close()

    path = tmp_path / "old.db"
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA foreign_keys = ON")
    for number, script in MIGRATIONS[:version]:
        connection.execute("BEGIN")
        for statement in split_statements(script):
            connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {number}")
        connection.execute("COMMIT")
    connection.isolation_level = ""
    filled = _fill_every_table(connection)
    connection.close()
    assert "ref_counters" in filled  # the filler did fill something

    async with await Store.open(path) as store:
        assert await store.schema_version() == HEAD_VERSION
        for table in filled:
            rows = await store.fetchall(f"SELECT COUNT(*) FROM {table}")
            assert rows[0][0] >= 1, f"{table} lost its row upgrading from {version}"
        assert [tuple(r) for r in await store.fetchall("PRAGMA integrity_check")] == [("ok",)]

    def schema(at: Path) -> set[tuple[str, str]]:
        connection = sqlite3.connect(at)
        try:
            return {
                (str(kind), str(name))
                for kind, name in connection.execute(
                    "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
                )
            }
        finally:
            connection.close()

    assert schema(path) == schema(fresh)


_READ_AND_CLOSE = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1])
connection.execute("SELECT count(*) FROM sqlite_master").fetchall()
connection.close()
"""
_COUNT_KEPT = """
import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM kept").fetchone()[0])
"""


async def test_opening_the_store_again_keeps_this_process_s_locks(tmp_path: Path) -> None:
    """Opening a second store in a process that already has one (the desk and the engine do, and
    so does every test) must not drop the first one's SQLite locks: POSIX locks belong to the
    process, so any descriptor on the store that is closed drops them all. Then another process
    closing its connection took the store for unused and deleted the write-ahead log and shared
    memory under the first, whose later commits were lost (and the store corrupted)."""
    path = tmp_path / "sgalert.db"
    async with await Store.open(path, create=True) as first:
        async with first.write() as db:
            await db.execute("CREATE TABLE kept (n INTEGER)")
        async with await Store.open(path):
            pass
        done = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _READ_AND_CLOSE, str(path)
        )
        assert await done.wait() == 0
        assert Path(f"{path}-wal").exists(), "another process deleted the live write-ahead log"
        async with first.write() as db:
            await db.execute("INSERT INTO kept VALUES (1)")
        reader = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _COUNT_KEPT, str(path), stdout=asyncio.subprocess.PIPE
        )
        out, _ = await reader.communicate()
        assert out.decode().strip() == "1", "a commit made after the second open was lost"


_HOLD_A_READ = """
import sqlite3, sys, time
reader = sqlite3.connect(sys.argv[1], isolation_level=None)
reader.execute("BEGIN")
reader.execute("SELECT count(*) FROM kept").fetchall()
print("reading", flush=True)
time.sleep(60)
"""
_WRITE_ONCE = """
import sqlite3, sys, time
writer = sqlite3.connect(sys.argv[1], isolation_level=None)
writer.execute("PRAGMA busy_timeout = 15000")
time.sleep(0.5)
started = time.monotonic()
writer.execute("BEGIN IMMEDIATE")
writer.execute("INSERT INTO kept VALUES (2)")
writer.execute("COMMIT")
print(round(time.monotonic() - started, 1))
"""


async def test_the_shredding_checkpoint_does_not_hold_up_the_engine(tmp_path: Path) -> None:
    """`retention run` empties the write-ahead log after shredding; while a desk was reading,
    that checkpoint held the store's write lock for the whole busy timeout, so the engine could
    not store a case or record a page for 15 seconds. Now it gives up within a few seconds and
    says so (the data keys are gone either way)."""
    from sgalert.records import shredding

    path = tmp_path / "sgalert.db"
    async with await Store.open(path, create=True) as store:
        async with store.write() as db:
            await db.execute("CREATE TABLE kept (n INTEGER)")
        reader = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _HOLD_A_READ, str(path), stdout=asyncio.subprocess.PIPE
        )
        try:
            assert reader.stdout is not None
            assert await reader.stdout.readline() == b"reading\n"
            async with store.write() as db:  # a page the reader's snapshot does not have
                await db.execute("INSERT INTO kept VALUES (1)")
            engine = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _WRITE_ONCE, str(path), stdout=asyncio.subprocess.PIPE
            )
            assert await shredding.checkpoint(store) is False  # the reader stopped it
            out, _ = await engine.communicate()
            assert engine.returncode == 0
            assert float(out) < 5, f"the engine's write waited {float(out)}s for the checkpoint"
        finally:
            reader.kill()
            await reader.wait()
