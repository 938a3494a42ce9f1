"""A COMMIT that fails must not leave the shared connection inside a half-written transaction.

The failure is real: with ``PRAGMA defer_foreign_keys`` a broken reference is only checked at
COMMIT, so the COMMIT itself raises. The next write must work, and nothing of the failed one
may be visible, or be committed later by somebody else's COMMIT.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sgalert.errors import StoreError
from sgalert.records.store import Store

ORPHAN_CLOCK = "INSERT INTO clocks (case_id, kind, due_at) VALUES ('no-such-case', 'x', 'y')"


async def _clocks(store: Store) -> int:
    rows = await store.fetchall("SELECT COUNT(*) FROM clocks")
    return int(rows[0][0])


async def _next_write_works(store: Store) -> None:
    async with store.write() as db:
        await db.execute(
            "INSERT INTO ref_counters (year, last) VALUES (2026, 1)"
            " ON CONFLICT(year) DO UPDATE SET last = last + 1"
        )
    rows = await store.fetchall("SELECT last FROM ref_counters WHERE year = 2026")
    assert rows[0][0] >= 1


async def test_write_whose_commit_fails_rolls_back(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "sgalert.db", create=True) as store:
        with pytest.raises(StoreError, match="nothing was saved"):
            async with store.write() as db:
                await db.execute("PRAGMA defer_foreign_keys = ON")
                await db.execute(ORPHAN_CLOCK)
        assert await _clocks(store) == 0
        await _next_write_works(store)
        assert await _clocks(store) == 0  # the failed row did not ride along on a later COMMIT

    # and nothing of it reached the file
    other = sqlite3.connect(tmp_path / "sgalert.db")
    try:
        assert other.execute("SELECT COUNT(*) FROM clocks").fetchone()[0] == 0
    finally:
        other.close()


async def test_transact_whose_commit_fails_rolls_back(tmp_path: Path) -> None:
    def work(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA defer_foreign_keys = ON")
        conn.execute(ORPHAN_CLOCK)

    async with await Store.open(tmp_path / "sgalert.db", create=True) as store:
        with pytest.raises(StoreError, match="nothing was saved"):
            await store.transact(work)
        assert await _clocks(store) == 0
        await _next_write_works(store)
        assert await store.transact(lambda conn: 42) == 42
        assert await _clocks(store) == 0
