"""The append-only, hash-chained audit log.

Each entry stores the SHA-256 of the previous entry and its own hash over a canonical encoding,
so editing, inserting or removing any row breaks the chain at that point. Triggers refuse UPDATE
and DELETE; ``verify`` catches anyone who goes around them. Entries name actions, people and case
ids, never case content.

The chain alone cannot see a log cut short (its tail deleted), emptied, or rebuilt from scratch
with every hash recomputed: the result is a valid chain. An *anchor* (an entry's number and hash,
``SEQ:HASH``, as :func:`head` gives it) kept outside the machine closes that gap: the daily
digest emails one every morning, and ``verify(anchors=...)`` proves the log still holds each
anchored state. Because every hash covers the one before it, a log that verifies from entry 1 and
still has the anchored hash at the anchored number holds exactly the anchored entries 1..SEQ.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from json.encoder import encode_basestring_ascii as _json_string

import aiosqlite

from sgalert.clock import iso, utcnow
from sgalert.errors import AuditChainBroken, InvalidInput
from sgalert.records import manifest
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


# A hash given in an anchor may be shortened for reading aloud, but not below 64 bits.
MIN_ANCHOR_HEX = 16
_ANCHOR = re.compile(rf"(\d{{1,18}}):([0-9a-f]{{{MIN_ANCHOR_HEX},64}})")


@dataclass(frozen=True, slots=True)
class Anchor:
    """A state of the log remembered outside it: entry ``seq`` had hash ``hash`` (or a prefix)."""

    seq: int
    hash: str

    @classmethod
    def parse(cls, text: str) -> Anchor:
        """``SEQ:HASH`` as ``audit head`` and the digest print it, or one clear line."""
        match = _ANCHOR.fullmatch(text.strip().lower())
        if match is None:
            shown = text.strip()[:40].encode("ascii", "replace").decode()
            raise InvalidInput(
                f"anchor {shown!r} is not SEQ:HASH (an entry number, a colon and at least"
                f" {MIN_ANCHOR_HEX} hex digits of its hash), as `sgalert audit head` prints it"
            )
        return cls(int(match.group(1)), match.group(2))

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"

    def matches(self, stored: str) -> bool:
        return stored.startswith(self.hash)


def entry_hash(
    prev_hash: str, seq: int, at: str, actor: str, action: str, case_id: str | None, detail: str
) -> str:
    """SHA-256 of the previous hash and the entry's canonical JSON (sorted keys, no spaces,
    ASCII: byte for byte ``canonical_json`` of the six fields, which ``tests`` holds it to).

    Spelt out rather than built by ``json.dumps`` because ``verify`` hashes every entry of a log
    that grows for ever, at 07:30 each morning for the digest: this is four times faster.
    """
    body = '{"action":%s,"actor":%s,"at":%s,"case_id":%s,"detail":%s,"seq":%d}' % (  # noqa: UP031
        _json_string(action),
        _json_string(actor),
        _json_string(at),
        "null" if case_id is None else _json_string(case_id),
        _json_string(detail),
        seq,
    )
    return hashlib.sha256((prev_hash + body).encode("ascii")).hexdigest()


def canonical_entry(
    seq: int, at: str, actor: str, action: str, case_id: str | None, detail: str
) -> bytes:
    """What :func:`entry_hash` hashes after the previous hash, the slow, obvious way."""
    return canonical_json(
        {
            "seq": seq,
            "at": at,
            "actor": actor,
            "action": action,
            "case_id": case_id,
            "detail": detail,
        }
    )


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


async def verify(
    db: aiosqlite.Connection,
    batch: int = 5000,
    *,
    anchors: Sequence[Anchor] = (),
    records: bool = True,
) -> int:
    """Check the whole chain, and that it still holds every anchored state; returns the number
    of entries, or raises AuditChainBroken naming the first entry that is wrong or missing.

    With ``records`` (the default) it then checks every case's sealed fields and chronology
    against the newest manifest the chain holds for it (:mod:`sgalert.records.manifest`): that
    reads every sealed blob, so the daily digest, which only needs the chain, leaves it out.
    """

    def check(conn: sqlite3.Connection) -> int:
        count = verify_now(conn, batch, anchors=anchors)
        if records:
            verify_records_now(conn)
        return count

    return await on_connection(db, check)


def verify_records_now(conn: sqlite3.Connection) -> None:
    """Raise AuditChainBroken, one line naming the case(s), if any record fails its manifest."""
    found = manifest.check_now(conn)
    if not found:
        return
    first, rest = found[0], found[1:]
    more = ""
    if rest:
        shown = ", ".join(m.ref for m in rest[:10])
        more = f" (and {len(rest)} more: {shown}{', ...' if len(rest) > 10 else ''})"
    raise AuditChainBroken(first.seq, first.line() + more)


def verify_now(
    conn: sqlite3.Connection, batch: int = 5000, *, anchors: Sequence[Anchor] = ()
) -> int:
    """:func:`verify` on the connection's thread: one hop for the whole log, not one per batch."""
    wanted: dict[int, list[Anchor]] = {}
    for anchor in anchors:
        wanted.setdefault(anchor.seq, []).append(anchor)
    for anchor in wanted.pop(0, []):
        if not anchor.matches(GENESIS_HASH):
            raise AuditChainBroken(0, f"anchor {_short(anchor)} is not a state of any audit log")
    prev = GENESIS_HASH
    expected_seq = 1
    checked = 0
    last_seq = 0
    while True:
        rows = conn.execute(
            "SELECT seq, at, actor, action, case_id, detail, prev_hash, hash FROM audit"
            " WHERE seq > ? ORDER BY seq LIMIT ?",
            (last_seq, batch),
        ).fetchall()
        if not rows:
            break
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
            for anchor in wanted.pop(seq, []):
                if not anchor.matches(stored):
                    raise AuditChainBroken(
                        seq,
                        f"audit entry {seq} is not the one anchored as {_short(anchor)}:"
                        " the log was rewritten since that anchor was taken",
                    )
            prev = stored
            expected_seq += 1
            checked += 1
            last_seq = seq
    if wanted:
        first = wanted[min(wanted)][0]
        ends = f"ends at entry {last_seq}" if last_seq else "is empty"
        raise AuditChainBroken(
            first.seq,
            f"audit entry {first.seq} (anchored as {_short(first)}) is missing: the log {ends},"
            " so entries were deleted since that anchor was taken",
        )
    return checked


def _short(anchor: Anchor) -> str:
    return f"{anchor.seq}:{anchor.hash[:MIN_ANCHOR_HEX]}"


async def head(db: aiosqlite.Connection) -> tuple[int, str]:
    """The newest entry's number and hash: the digest carries it to anchor the log outside."""
    return await on_connection(db, head_now)


def head_now(conn: sqlite3.Connection) -> tuple[int, str]:
    """:func:`head` for code already running on the connection's thread."""
    row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
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
