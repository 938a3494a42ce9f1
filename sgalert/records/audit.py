"""The append-only, hash-chained audit log.

Each entry stores the SHA-256 of the previous entry and its own hash over a canonical encoding,
so editing, inserting or removing any row breaks the chain at that point. Triggers refuse UPDATE
and DELETE; ``verify`` catches anyone who goes around them. Entries name actions, people and case
ids, never case content.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import aiosqlite

from sgalert.clock import iso, utcnow
from sgalert.errors import AuditChainBroken
from sgalert.records.crypto import canonical_json
from sgalert.records.store import on_connection

GENESIS_HASH = "0" * 64

# Actor names for entries that no person caused.
ENGINE = "engine"
SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One thing to record. ``detail`` holds ids, counts and reasons codes: never content."""

    actor: str
    action: str
    case_id: str | None = None
    detail: Mapping[str, object] | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: str
    actor: str
    action: str
    case_id: str | None
    detail: dict[str, object]
    prev_hash: str
    hash: str


def entry_hash(
    prev_hash: str, seq: int, at: str, actor: str, action: str, case_id: str | None, detail: str
) -> str:
    body = canonical_json(
        {
            "seq": seq,
            "at": at,
            "actor": actor,
            "action": action,
            "case_id": case_id,
            "detail": detail,
        }
    )
    return hashlib.sha256(prev_hash.encode("ascii") + body).hexdigest()


async def append(
    db: aiosqlite.Connection, events: Iterable[AuditEvent], at: datetime | None = None
) -> str:
    """Append events inside the caller's write transaction; returns the new head hash."""
    batch = list(events)
    return await on_connection(db, lambda conn: append_now(conn, batch, at))


def append_now(
    conn: sqlite3.Connection, events: Iterable[AuditEvent], at: datetime | None = None
) -> str:
    """:func:`append` for code already running on the connection's thread."""
    row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (int(row[0]), str(row[1])) if row else (0, GENESIS_HASH)
    stamp = iso(at or utcnow())
    rows = []
    for event in events:
        seq += 1
        detail = canonical_json(dict(event.detail or {})).decode("ascii")
        digest = entry_hash(prev, seq, stamp, event.actor, event.action, event.case_id, detail)
        rows.append((seq, stamp, event.actor, event.action, event.case_id, detail, prev, digest))
        prev = digest
    if rows:
        conn.executemany(
            "INSERT INTO audit (seq, at, actor, action, case_id, detail, prev_hash, hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return prev


async def verify(db: aiosqlite.Connection, batch: int = 5000) -> int:
    """Check the whole chain; returns the number of entries, or raises AuditChainBroken."""
    prev = GENESIS_HASH
    expected_seq = 1
    checked = 0
    last_seq = 0
    while True:
        cursor = await db.execute(
            "SELECT seq, at, actor, action, case_id, detail, prev_hash, hash FROM audit"
            " WHERE seq > ? ORDER BY seq LIMIT ?",
            (last_seq, batch),
        )
        rows = await cursor.fetchall()
        if not rows:
            return checked
        for seq, at, actor, action, case_id, detail, prev_hash, stored in rows:
            if seq != expected_seq:
                raise AuditChainBroken(
                    expected_seq, f"audit entry {expected_seq} is missing (next is {seq})"
                )
            if prev_hash != prev:
                raise AuditChainBroken(seq, f"audit entry {seq} does not follow entry {seq - 1}")
            recomputed = entry_hash(prev, seq, at, actor, action, case_id, detail)
            if recomputed != stored:
                raise AuditChainBroken(seq, f"audit entry {seq} does not match its hash")
            prev = stored
            expected_seq += 1
            checked += 1
            last_seq = seq


async def head(db: aiosqlite.Connection) -> tuple[int, str]:
    """The newest entry's number and hash: the digest carries it to anchor the log outside."""
    cursor = await db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
    row = await cursor.fetchone()
    return (int(row[0]), str(row[1])) if row else (0, GENESIS_HASH)


async def entries(
    db: aiosqlite.Connection, *, case_id: str | None = None, limit: int = 1000
) -> list[AuditEntry]:
    """Newest entries first, optionally for one case."""
    if case_id is None:
        cursor = await db.execute("SELECT * FROM audit ORDER BY seq DESC LIMIT ?", (limit,))
    else:
        cursor = await db.execute(
            "SELECT * FROM audit WHERE case_id = ? ORDER BY seq DESC LIMIT ?", (case_id, limit)
        )
    return [
        AuditEntry(
            seq=row["seq"],
            at=row["at"],
            actor=row["actor"],
            action=row["action"],
            case_id=row["case_id"],
            detail=json.loads(row["detail"]),
            prev_hash=row["prev_hash"],
            hash=row["hash"],
        )
        for row in await cursor.fetchall()
    ]
