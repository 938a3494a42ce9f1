"""The SQLite store: one file, WAL mode, durable commits, numbered migrations.

Two kinds of process share the file (``sgalert serve`` and any number of ``sgalert tui``), so every
write is a ``BEGIN IMMEDIATE`` transaction that re-reads what it decides on, and SQLite's busy
timeout makes a writer wait for another rather than fail.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from sgalert.errors import StoreError, StoreGone, StoreUnwritable
from sgalert.records.migrations import HEAD_VERSION, MIGRATIONS, STEPS

BUSY_TIMEOUT_MS = 15_000

T = TypeVar("T")


async def on_connection(db: aiosqlite.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``work`` on the connection's own thread: many statements for one thread hop.

    Each aiosqlite call is a round trip to its worker thread (about 0.1 ms here), which dominated
    storing a case. aiosqlite has no public door for running a function on that thread, so this
    uses ``_execute``, the one its own ``execute`` uses. pyproject.toml caps aiosqlite to the tested
    minor and ``tests/test_store.py`` fails loudly if a release drops that door.
    """
    execute: Callable[..., Awaitable[T]] = db._execute
    return await execute(work, db._conn)


#: Ids asked for in one ``IN (...)``: SQLite refuses a statement with more host parameters than
#: its limit (999 before 3.32, 32,766 since), and a query holds a few of its own besides.
IN_CHUNK = 500


def in_statements(
    sql: str, ids: Sequence[Any], *, params: Sequence[Any] = (), chunk: int = IN_CHUNK
) -> Iterator[tuple[str, list[Any]]]:
    """``sql`` once per chunk of ``ids``: the statement and its parameters, to run in turn.

    ``sql`` marks where the ids go with one ``{ids}``, e.g. ``... WHERE case_id IN ({ids})``;
    ``params`` are the parameters before that mark. An ``ORDER BY`` orders each chunk, not the
    whole. No ids, no statement. Work on the connection's own thread (:meth:`Store.transact`)
    runs these with ``conn.execute``; async code uses :func:`fetch_in`.
    """
    if sql.count("{ids}") != 1:
        raise ValueError("the statement needs exactly one {ids} mark")
    step = max(chunk, 1)
    for start in range(0, len(ids), step):
        part = list(ids[start : start + step])
        yield sql.replace("{ids}", ",".join("?" * len(part))), [*params, *part]


async def fetch_in(
    db: aiosqlite.Connection,
    sql: str,
    ids: Sequence[Any],
    *,
    params: Sequence[Any] = (),
    chunk: int = IN_CHUNK,
) -> list[sqlite3.Row]:
    """Every row of ``sql`` for all ``ids``, ``chunk`` at a time (see :func:`in_statements`)."""
    rows: list[sqlite3.Row] = []
    for statement, parameters in in_statements(sql, ids, params=params, chunk=chunk):
        rows += await db.execute_fetchall(statement, parameters)
    return rows


def split_statements(script: str) -> list[str]:
    """Split a migration into single statements, keeping trigger bodies whole."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if pending.strip():
                statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise StoreError("a migration ends with an incomplete SQL statement")
    return statements


#: What SQLite keeps beside a store while it is in use (the journal only outside WAL mode).
STORE_COMPANIONS = ("-wal", "-shm", "-journal")


def leftover_companions(store: Path) -> list[Path]:
    """The files SQLite keeps beside a store that are there although the store is not: left
    by another store (deleted or moved away without them). SQLite would read a write-ahead log
    into a new store made at ``store``, whose pages would then be that other store's."""
    if os.path.lexists(store):
        return []
    found = [store.with_name(store.name + end) for end in STORE_COMPANIONS]
    return [path for path in found if os.path.lexists(path)]


def is_store_file(store: Path, candidate: Path) -> bool:
    """Whether ``candidate`` is the store at ``store`` or a file SQLite keeps beside it, by its
    name or as the same file under another name (a hard or symbolic link).

    For a path a person gives (a copy to write, a message to read): a copy put in its place
    would replace every case, and reading one in a process that has the store open drops that
    process's locks (see :func:`_unwritable`). So this asks stat(2) and never opens a file."""
    names = [store, *(store.with_name(store.name + end) for end in STORE_COMPANIONS)]
    where = _where(candidate)
    if any(where == _where(name) for name in names):
        return True
    try:
        found = os.stat(candidate)
    except (OSError, ValueError):
        return False
    for name in names:
        try:
            known = os.stat(name)
        except (OSError, ValueError):
            continue
        if (known.st_dev, known.st_ino) == (found.st_dev, found.st_ino):
            return True
    return False


def _where(path: Path) -> Path:
    """``path`` with its folder resolved, its last part as given (it may not exist yet)."""
    absolute = path.expanduser().absolute()
    return absolute.parent.resolve() / absolute.name


def _unwritable(path: Path) -> str | None:
    """Why this process cannot write the store at ``path``, or None. SQLite would open a
    read-only store read-only and fail at the first write, and one in a read-only folder not at
    all (its WAL and shared-memory files live beside it), either way as if it were no store.

    Asked of access(2), never by opening the file: POSIX locks belong to the process, so closing
    any descriptor on the store drops the SQLite locks of every connection this process has on
    it, and another process closing its connection then deletes the write-ahead log in use."""
    reason = None
    if path.exists() and not _may_write(path):
        reason = f"{path} ({_why_not(path)})"
    if reason is None and not _may_write(path.parent, search=True):
        reason = f"{path.parent} (its files cannot be made or changed)"
    if reason is None:
        return None
    return (
        f"the workspace cannot be written: {reason}; sgalert needs to write its store and the"
        " folder it is in, even to read a case: check the permissions, or that the disk is not"
        " read-only"
    )


def _may_write(path: Path, *, search: bool = False) -> bool:
    mode = os.W_OK | (os.X_OK if search else 0)
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)


def _why_not(path: Path) -> str:
    try:
        read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    return "read-only file system" if read_only else "permission denied"


def _identity(path: Path) -> tuple[int, int]:
    found = os.stat(path)
    return (found.st_dev, found.st_ino)


class Store:
    """An open store. Use :meth:`open`; close with :meth:`close` or ``async with``."""

    def __init__(self, path: Path, connection: aiosqlite.Connection) -> None:
        self.path = path
        self._db = connection
        self._write_lock = asyncio.Lock()
        self._file: tuple[int, int] | None = None  # (device, inode) of the file opened

    @classmethod
    async def open(cls, path: Path, *, create: bool = False) -> Store:
        """Open (and with ``create``, make) the store, then migrate it to the head version."""
        if not create and not path.is_file():
            raise StoreError(f"{path}: no store here; run `sgalert init` first")
        unwritable = _unwritable(path)
        if unwritable is not None:
            raise StoreUnwritable(unwritable)
        try:
            connection = await aiosqlite.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open the store ({exc})") from None
        connection.row_factory = sqlite3.Row
        store = cls(path, connection)
        try:
            await store._configure(create=create)
            await store.migrate()
            store._file = _identity(path)
        except BaseException:
            await connection.close()
            raise
        return store

    def check_file(self) -> None:
        """Raise :class:`StoreGone` if the store's path no longer names the file this store
        has open (deleted, or replaced by a copy): SQLite goes on writing to the old file, whose
        cases vanish when it closes, so nothing written now may be relied on."""
        if self._file is None:
            return
        try:
            now = _identity(self.path)
        except OSError:
            now = None
        if now != self._file:
            what = "deleted" if now is None else "replaced by another file"
            raise StoreGone(
                f"{self.path}: the store file was {what} while in use; what is written now"
                " would be lost, so stopping; put the store back or restore the latest backup"
            )

    async def _configure(self, *, create: bool) -> None:
        """Set the connection up; without ``create``, first refuse a file that holds no store.

        SQLite takes an empty file for a new database, so a store truncated to nothing (a copy
        that stopped, a full disk) was made afresh: no cases, no audit log, and no people, so
        anyone could add themselves as the first DSL. Asked before WAL mode writes a header.
        """
        try:
            await self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if not create and await self.schema_version() == 0:
                cursor = await self._db.execute("SELECT count(*) FROM sqlite_master")
                row = await cursor.fetchone()
                what = (
                    "it holds another program's database"
                    if row is not None and row[0]
                    else "the file is empty: no cases, people or audit log"
                )
                raise StoreError(f"{self.path}: not an sgalert store ({what})")
            cursor = await self._db.execute("PRAGMA journal_mode = WAL")
            row = await cursor.fetchone()
            if row is None or str(row[0]).lower() != "wal":
                raise StoreError(f"{self.path}: the store could not switch to WAL mode")
            await self._db.execute("PRAGMA synchronous = FULL")
            await self._db.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not an sgalert store ({exc})") from None

    async def schema_version(self) -> int:
        cursor = await self._db.execute("PRAGMA user_version")
        row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def migrate(self, target: int = HEAD_VERSION) -> None:
        """Apply pending migrations up to ``target``, each in its own transaction."""
        current = await self.schema_version()
        if current > HEAD_VERSION:
            raise StoreError(
                f"{self.path}: store schema {current} is newer than this sgalert "
                f"({HEAD_VERSION}); upgrade sgalert"
            )
        for number, script in MIGRATIONS:
            if number > target:
                break
            if number <= current:
                # No write lock for what is done: a command that only reads (status, doctor)
                # opens while another process holds a long write transaction.
                continue
            async with self.write() as db:
                cursor = await db.execute("PRAGMA user_version")
                row = await cursor.fetchone()
                if row is not None and int(row[0]) >= number:
                    continue  # another process applied it while we waited
                for statement in split_statements(script):
                    await db.execute(statement)
                step = STEPS.get(number)
                if step is not None:
                    await on_connection(db, step)
                await db.execute(f"PRAGMA user_version = {int(number)}")

    async def _statement(self, sql: str) -> None:
        """Run a transaction-control statement to completion even if we are cancelled.

        aiosqlite runs it on its thread regardless; awaiting it shielded keeps our idea of the
        transaction the same as the connection's, and the cancellation is re-raised after.
        """
        task = asyncio.ensure_future(self._db.execute(sql))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            await task
            raise

    @asynccontextmanager
    async def write(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction: ``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any error.

        Safe under cancellation: a BEGIN or COMMIT in flight finishes, and a transaction that
        began is always ended, so the shared connection is never left inside one.
        """
        async with self._write_lock:
            try:
                await self._statement("BEGIN IMMEDIATE")
            except asyncio.CancelledError:
                await self._rollback_quietly()
                raise
            except sqlite3.OperationalError as exc:
                raise StoreError(f"{self.path}: the store is busy ({exc}); try again") from None
            try:
                yield self._db
            except BaseException:
                await self._rollback_quietly()
                raise
            try:
                await self._statement("COMMIT")
            except sqlite3.Error as exc:
                await self._rollback_quietly()
                raise self._commit_failed(exc) from None

    async def _rollback_quietly(self) -> None:
        if self._db.in_transaction:
            await self._statement("ROLLBACK")

    def _commit_failed(self, exc: sqlite3.Error) -> StoreError:
        """A COMMIT that failed (busy, disk I/O, a deferred constraint) leaves SQLite inside the
        transaction; the caller has rolled it back, so the change is gone and the shared
        connection is clean for the next writer."""
        return StoreError(
            f"{self.path}: the store could not save the change ({exc}); nothing was saved"
        )

    async def transact(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` as one write transaction entirely on the connection's thread.

        BEGIN IMMEDIATE, the work and COMMIT (or ROLLBACK) cost one thread hop instead of one
        per statement: the path for hot, self-contained writes such as storing a new case.
        Cancellation cannot cut it in half: it is awaited to the end, then re-raised.
        """

        def run(conn: sqlite3.Connection) -> T:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreError(f"{self.path}: the store is busy ({exc}); try again") from None
            try:
                result = work(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise self._commit_failed(exc) from None
            return result

        async with self._write_lock:
            task = asyncio.ensure_future(on_connection(self._db, run))
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                await asyncio.wait([task])
                raise

    @asynccontextmanager
    async def read(self) -> AsyncIterator[aiosqlite.Connection]:
        """A consistent snapshot for several reads (a deferred transaction)."""
        async with self._write_lock:
            try:
                await self._statement("BEGIN")
            except asyncio.CancelledError:
                await self._rollback_quietly()
                raise
            try:
                yield self._db
            finally:
                if self._db.in_transaction:
                    await self._statement("COMMIT")

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        """A single read outside any explicit transaction."""
        async with self._write_lock:
            cursor = await self._db.execute(sql, tuple(params))
            return list(await cursor.fetchall())

    async def checkpoint(self, *, wait_ms: int) -> bool:
        """Copy every page of the write-ahead log into the store and empty the log (a TRUNCATE
        checkpoint), outside any transaction; False when another process's reader or writer
        kept it from finishing. It waits ``wait_ms`` for them, not the busy timeout: while it
        waits it holds the write lock, so every other writer (the engine) waits with it."""

        def run(conn: sqlite3.Connection) -> bool:
            conn.execute(f"PRAGMA busy_timeout = {int(wait_ms)}")
            try:
                row = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            return row is not None and int(row[0]) == 0

        async with self._write_lock:
            return await on_connection(self._db, run)

    async def close(self) -> None:
        await self._db.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
