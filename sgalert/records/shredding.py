"""Crypto-shredding a case at the end of its retention period, and legal holds that forbid it.

Destroying a case is one transaction, on the connection's thread:

1. the case is re-read: it must exist, be closed, not be destroyed already and not be under a
   legal hold (checked here, and again by a trigger, so no path around this one can shred a
   held case);
2. ``cases.destroyed_at`` is set: the triggers of migration 11 allow deleting a case's record
   only once that mark is there, and refuse anything new being sealed into it after;
3. the case's data-key wraps go (``key_wraps``): this is the crypto-shredding: no one can
   decrypt what is left, wherever a copy of it lies. Its sealed rows go too (``sealed_fields``:
   facts, body, the sealed original, attachments, the reporter's identity; ``chronology``: every
   signed entry), with ``PRAGMA secure_delete`` so freed pages are zeroed, and batch keys that
   no longer wrap any data key;
4. the plaintext metadata the counts need stays: reference, source, times, state, flags, clocks,
   timers, notifications; the hashes that recognise a repeat of the message are cleared (a hash
   of a message would confirm a guess at its content), and its acknowledgement tokens go;
5. one audit entry ``case-destroyed`` names the case, the reason (``retention``), the rule and
   how many rows of each kind went: never content.

:func:`checkpoint` then moves the zeroed pages into the database file and empties the WAL.
:func:`destruction_problems` is the check a verifier (``audit verify``, a manifest of each case's
sealed rows) runs to accept the rows' absence: a case may lack its sealed rows only if it is
marked destroyed and the audit log says so.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sgalert.clock import iso, parse_iso
from sgalert.errors import IllegalTransition, NotFound
from sgalert.model import CaseState
from sgalert.records import audit, manifest
from sgalert.records.store import Store

DESTROYED_ACTION = "case-destroyed"
HOLD_PLACED_ACTION = "legal-hold-placed"
HOLD_RELEASED_ACTION = "legal-hold-released"


@dataclass(frozen=True, slots=True)
class Shredded:
    """What one destruction removed (row counts only)."""

    case_id: str
    ref: str
    sealed_fields: int
    chronology: int
    key_wraps: int


@dataclass(frozen=True, slots=True)
class Hold:
    """An active legal hold: plaintext who and when; its reason is a sealed record entry."""

    case_id: str
    placed_at: datetime
    placed_by: str
    entry_id: str


def destroyed_line(ref: str, destroyed_at: datetime) -> str:
    """How a destroyed case is shown and why it cannot be opened: one line, no content."""
    return (
        f"case {ref} was destroyed under retention on {destroyed_at.date().isoformat()};"
        " only its metadata (source, dates, state) is kept"
    )


def active_hold_now(conn: sqlite3.Connection, case_id: str) -> Hold | None:
    row = conn.execute(
        "SELECT case_id, placed_at, placed_by, entry_id FROM legal_holds"
        " WHERE case_id = ? AND released_at IS NULL",
        (case_id,),
    ).fetchone()
    if row is None:
        return None
    return Hold(str(row[0]), parse_iso(str(row[1])), str(row[2]), str(row[3]))


def held_case_ids_now(conn: sqlite3.Connection) -> set[str]:
    """Every case under a legal hold now."""
    rows = conn.execute("SELECT case_id FROM legal_holds WHERE released_at IS NULL").fetchall()
    return {str(row[0]) for row in rows}


def place_hold_now(
    conn: sqlite3.Connection, case_id: str, ref: str, person_id: str, entry_id: str, now: datetime
) -> None:
    """Record a hold inside the caller's transaction (which wrote its sealed reason)."""
    held = active_hold_now(conn, case_id)
    if held is not None:
        raise IllegalTransition(
            f"case {ref} is already under a legal hold (since {held.placed_at.date().isoformat()})"
        )
    conn.execute(
        "INSERT INTO legal_holds (case_id, placed_at, placed_by, entry_id) VALUES (?, ?, ?, ?)",
        (case_id, iso(now), person_id, entry_id),
    )


def release_hold_now(
    conn: sqlite3.Connection, case_id: str, ref: str, person_id: str, entry_id: str, now: datetime
) -> None:
    """Lift the case's hold inside the caller's transaction; the hold's row stays as history."""
    cursor = conn.execute(
        "UPDATE legal_holds SET released_at = ?, released_by = ?, released_entry_id = ?"
        " WHERE case_id = ? AND released_at IS NULL",
        (iso(now), person_id, entry_id, case_id),
    )
    if cursor.rowcount == 0:
        raise IllegalTransition(f"case {ref} is not under a legal hold")


def shred_now(
    conn: sqlite3.Connection,
    case_id: str,
    *,
    actor: str,
    now: datetime,
    rule: Mapping[str, object],
) -> Shredded:
    """Destroy one case inside the caller's write transaction (see the module's docstring).

    ``rule`` is metadata for the audit entry (the source's period, what expiry does, the day
    it expired). Raises NotFound or IllegalTransition, changing nothing, if the case may not
    be destroyed now.
    """
    row = conn.execute(
        "SELECT ref, source, state, destroyed_at FROM cases WHERE id = ?", (case_id,)
    ).fetchone()
    if row is None:
        raise NotFound(f"no case {case_id}")
    ref, source, state, destroyed_at = (str(row[0]), str(row[1]), str(row[2]), row[3])
    if destroyed_at is not None:
        raise IllegalTransition(destroyed_line(ref, parse_iso(str(destroyed_at))))
    if state != CaseState.CLOSED:
        raise IllegalTransition(f"case {ref} is {state}, not closed: it is not destroyed")
    if active_hold_now(conn, case_id) is not None:
        raise IllegalTransition(f"case {ref} is under a legal hold: it is not destroyed")
    conn.execute("PRAGMA secure_delete = ON")  # this connection's freed pages are zeroed
    stamp = iso(now)
    conn.execute(
        "UPDATE cases SET destroyed_at = ?, updated_at = ?, content_sha256 = NULL,"
        " message_id_sha256 = NULL WHERE id = ?",
        (stamp, stamp, case_id),
    )
    batches = [
        str(r[0])
        for r in conn.execute(
            "SELECT DISTINCT recipient FROM key_wraps"
            " WHERE case_id = ? AND recipient_kind = 'batch'",
            (case_id,),
        )
    ]
    wraps = conn.execute("DELETE FROM key_wraps WHERE case_id = ?", (case_id,)).rowcount
    fields = conn.execute("DELETE FROM sealed_fields WHERE case_id = ?", (case_id,)).rowcount
    entries = conn.execute("DELETE FROM chronology WHERE case_id = ?", (case_id,)).rowcount
    conn.executemany(
        "DELETE FROM batch_keys WHERE batch_id = ? AND NOT EXISTS (SELECT 1 FROM key_wraps"
        " WHERE recipient_kind = 'batch' AND recipient = ?)",
        [(batch, batch) for batch in batches],
    )
    conn.execute("DELETE FROM ack_tokens WHERE case_id = ?", (case_id,))
    conn.execute(
        "UPDATE timers SET cancelled_at = ? WHERE case_id = ? AND fired_at IS NULL"
        " AND cancelled_at IS NULL",
        (stamp, case_id),
    )
    detail = {
        "ref": ref,
        "reason": "retention",
        "source": source,
        "rule": dict(rule),
        "sealed_fields": fields,
        "chronology": entries,
        "key_wraps": wraps,
        # What is left of the record (nothing): audit verify's manifest check then agrees that
        # the rows are gone because retention removed them, not someone behind sgalert's back.
        manifest.MANIFEST: manifest.case_manifest_now(conn, case_id),
    }
    audit.append_now(conn, [audit.AuditEvent(actor, DESTROYED_ACTION, case_id, detail)], now)
    return Shredded(case_id, ref, fields, entries, wraps)


#: How long the checkpoint after shredding waits for other processes' readers and writers. It
#: holds the write lock while it waits, so the engine cannot store a case or record a page
#: meanwhile: a short wait, not the busy timeout.
CHECKPOINT_WAIT_MS = 2_000


async def checkpoint(store: Store) -> bool:
    """After shredding, outside any transaction: copy every page into the database file and
    empty the WAL, so no page from before the shredding survives in it. False when another
    process's open read (or a write) stopped it within :data:`CHECKPOINT_WAIT_MS` (those pages
    go at a later checkpoint); the shredding itself is complete either way: the data keys are
    gone."""
    return await store.checkpoint(wait_ms=CHECKPOINT_WAIT_MS)


def destruction_problems(conn: sqlite3.Connection) -> list[str]:
    """Every way the store's destroyed cases disagree with the audit log: a case marked
    destroyed without its ``case-destroyed`` entry, one with sealed rows or data keys left, or
    an entry for a case not marked destroyed. Empty when all agree. References only."""
    marked = {
        str(r[0]): str(r[1])
        for r in conn.execute("SELECT id, ref FROM cases WHERE destroyed_at IS NOT NULL")
    }
    logged: dict[str, str] = {}
    for case_id, detail in conn.execute(
        "SELECT case_id, detail FROM audit WHERE action = ?", (DESTROYED_ACTION,)
    ):
        logged[str(case_id)] = str(json.loads(detail).get("ref", case_id))
    problems = [
        f"case {ref} is marked destroyed but the audit log has no {DESTROYED_ACTION} entry"
        for case_id, ref in sorted(marked.items(), key=lambda item: item[1])
        if case_id not in logged
    ]
    problems += [
        f"the audit log says case {ref} was destroyed but it is not marked so"
        for case_id, ref in sorted(logged.items(), key=lambda item: item[1])
        if case_id not in marked
    ]
    for table in ("key_wraps", "sealed_fields", "chronology"):
        for (ref,) in conn.execute(
            f"SELECT DISTINCT c.ref FROM {table} t JOIN cases c ON c.id = t.case_id"
            " WHERE c.destroyed_at IS NOT NULL ORDER BY c.ref"
        ):
            problems.append(f"case {ref} is marked destroyed but still has {table} rows")
    return problems
