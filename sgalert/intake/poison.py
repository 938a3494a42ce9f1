"""Messages that cannot be read: tries counted, quarantine, held messages.

A message that cannot be prepared or stored (a bug its bytes set off, or one that kills the
process) must not hold up its mailbox. Tries are counted in the store *before* each try, so a
crash counts too; one that fails :data:`MAX_TRIES` times is **quarantined**: sealed whole,
unread, as a ``needs-triage`` case (:func:`quarantined_case`) that pages like any other of its
source. Should even that fail, the message is **held**: left unread in its mailbox, skipped from
then on, listed by ``sgalert status`` and raised as a ``message-quarantined`` system alert (its
mailbox key and error class, no content) until an operator releases it (``held release``).
The ingestor (:mod:`sgalert.intake.ingest`) decides when; this module keeps the record.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sgalert.clock import iso, parse_iso, utcnow
from sgalert.errors import NotFound, SgalertError
from sgalert.intake.prepare import FIELD_NOTES, FIELD_SUBJECT, SourceRules, sha256_hex
from sgalert.model import Flag, Source
from sgalert.ports import Inbound
from sgalert.records import audit
from sgalert.records.alerts import AlertKind
from sgalert.records.cases import FIELD_ATTACHMENTS, FIELD_BODY, FIELD_FACTS, FIELD_RAW, NewCase
from sgalert.records.store import Store, in_statements, on_connection
from sgalert.text import printable

# A message is tried this many times at most, a crash mid-try included, then quarantined.
MAX_TRIES = 3
MESSAGE_QUARANTINED = (
    AlertKind.MESSAGE_QUARANTINED.value
)  # the system alert for a message held unread
QUARANTINED = "could not be read: quarantined"
# How much of a quarantined message is shown as its text (the original is kept whole).
_QUARANTINE_SHOWN = 256 * 1024


def _shown_raw(raw: bytes) -> str:
    """The bytes as text for a person to read, escaped; nothing if even that fails."""
    try:
        return printable(raw[:_QUARANTINE_SHOWN].decode("utf-8", "replace"))
    except Exception:  # reading the message is what failed: show nothing rather than fail
        return ""


def quarantined_case(
    message: Inbound, rules: SourceRules, *, failed: int, error: str | None, now: datetime
) -> NewCase:
    """A message that could not be prepared or stored, as a case all the same.

    Nothing is parsed (parsing may be what failed): the original bytes are sealed whole, as a
    malformed message's are, with the escaped text for reading and a triage reason. A whistle's
    original names its reporter, so it is sealed apart with the identity and not shown.
    """
    raw = message.raw
    why = (
        f"preparing or storing it failed {failed} time(s) ({error})"
        if error
        else "the process stopped while reading it, each time it tried"
    )
    notes = {
        "problems": [f"sgalert could not read this message: {why}"],
        "sender": [],
        "triage": [
            f"{QUARANTINED}; the original message is kept whole: read it and record the facts"
        ],
    }
    whistle = rules.type is Source.WHISTLE
    content: dict[str, bytes] = {
        FIELD_SUBJECT: b"",
        FIELD_FACTS: b"{}",
        FIELD_BODY: b"" if whistle else _shown_raw(raw).encode(),
        FIELD_ATTACHMENTS: b"[]",
        FIELD_NOTES: json.dumps(notes, ensure_ascii=False).encode(),
    }
    identity: dict[str, bytes] = {}
    (identity if whistle else content)[FIELD_RAW] = raw
    return NewCase(
        source=rules.type,
        received_at=message.received_at or now,
        origin="mailbox" if message.key else "file",
        content=content,
        identity=identity,
        flags=frozenset({Flag.NEEDS_TRIAGE, Flag.MALFORMED}),
        source_name=rules.name,
        content_sha256=sha256_hex(raw),
    )


def message_fault(exc: BaseException) -> bool:
    """Whether a failure may be the message's own doing, so trying it alone may get past it.

    sgalert's own errors (nobody holds a key yet, the store is busy, an earlier batch failed)
    and SQLite's operational ones (disk full, I/O error, locked) hold up every message alike:
    they are retried as before, and no message is counted or quarantined for them.
    """
    return isinstance(exc, Exception) and not isinstance(
        exc, SgalertError | sqlite3.OperationalError
    )


@dataclass(slots=True)
class Try:
    """One message's tries, as the store counts them, and whether the last is still going."""

    tries: int = 0
    open: bool = False
    error: str | None = None

    def failed(self, error: str) -> None:
        self.open, self.error = False, error


def count_tries_now(
    conn: sqlite3.Connection,
    keys: Sequence[str],
    source_name: str,
    now: str,
    error: str | None = None,
    *,
    batch: bool = False,
) -> dict[str, tuple[int, bool]]:
    """Count one more try for each key, in its own committed transaction, before the try: so a
    try that crashes the process is counted too. Returns each key's count before, and whether
    it is held (held keys are not counted: they are not tried). For a ``batch``, nothing is
    counted if any key was tried before: its messages will be tried (and counted) alone."""
    known: dict[str, tuple[int, bool]] = {}
    for statement, chunk in in_statements(
        "SELECT idempotency_key, tries, held_at IS NOT NULL FROM ingest_tries"
        " WHERE idempotency_key IN ({ids})",
        keys,
    ):
        for key, tries, held in conn.execute(statement, chunk):
            known[key] = (int(tries), bool(held))
    if batch and any(tries for tries, held in known.values() if not held):
        return known
    conn.executemany(
        "INSERT INTO ingest_tries (idempotency_key, source_name, tries, error, first_tried_at,"
        " last_tried_at) VALUES (?, ?, 1, ?, ?, ?) ON CONFLICT(idempotency_key) DO UPDATE SET"
        " tries = tries + 1, error = coalesce(excluded.error, error),"
        " last_tried_at = excluded.last_tried_at WHERE held_at IS NULL",
        [(key, source_name, error, now, now) for key in keys],
    )
    return known


def uncount_now(conn: sqlite3.Connection, keys: Sequence[str]) -> None:
    rows = [(key,) for key in keys]
    conn.executemany(
        "UPDATE ingest_tries SET tries = tries - 1 WHERE idempotency_key = ? AND held_at IS NULL",
        rows,
    )
    conn.executemany(
        "DELETE FROM ingest_tries WHERE idempotency_key = ? AND tries <= 0 AND held_at IS NULL",
        rows,
    )


def hold_now(
    conn: sqlite3.Connection,
    key: str | None,
    source_name: str,
    error: str,
    quarantine_error: str,
    now: datetime,
) -> None:
    """Remember a message that is not a case (so it is skipped, not retried for ever) and
    page the team about it: a new ``message-quarantined`` alert for its source, listing
    every message held there by its mailbox key and error class. A file has no mailbox to
    hold it in: the person who ran ``sgalert ingest`` is told, and the audit log records it."""
    at = iso(now)
    if key is not None:
        conn.execute(
            "INSERT INTO ingest_tries (idempotency_key, source_name, tries, error, first_tried_at,"
            " last_tried_at, held_at) VALUES (?, ?, 0, ?, ?, ?, ?)"
            " ON CONFLICT(idempotency_key) DO UPDATE SET error = excluded.error,"
            " last_tried_at = excluded.last_tried_at, held_at = excluded.held_at",
            (key, source_name, error, at, at, at),
        )
        _refresh_held_alert(conn, source_name, at, page_again=True)
    audit.append_now(
        conn,
        [
            audit.AuditEvent(
                audit.ENGINE,
                "message-held",
                detail={
                    "source": source_name,
                    "key": key or "(a file)",
                    "error": error,
                    "quarantine_error": quarantine_error,
                },
            )
        ],
    )


_ALERT_LISTS = 20  # held messages named in an alert's detail; `sgalert status` lists them all


def _refresh_held_alert(
    conn: sqlite3.Connection, source_name: str, at: str, *, page_again: bool
) -> None:
    """Raise the source's ``message-quarantined`` alert again (paged anew) for a newly held
    message; after a release, update it quietly, or clear it once none is held."""
    rows = conn.execute(
        "SELECT idempotency_key, error, held_at FROM ingest_tries"
        " WHERE source_name = ? AND held_at IS NOT NULL ORDER BY held_at, idempotency_key",
        (source_name,),
    ).fetchall()
    held = [{"key": str(r[0]), "error": str(r[1]), "at": str(r[2])} for r in rows]
    open_alert = conn.execute(
        "SELECT id FROM system_alerts WHERE kind = ? AND source_name = ? AND cleared_at IS NULL",
        (MESSAGE_QUARANTINED, source_name),
    ).fetchone()
    if not held or page_again:
        conn.execute(
            "UPDATE system_alerts SET cleared_at = ? WHERE kind = ? AND source_name = ?"
            " AND cleared_at IS NULL",
            (at, MESSAGE_QUARANTINED, source_name),
        )
    if not held:
        return
    detail = json.dumps(
        {"since": held[0]["at"], "held": len(held), "messages": held[:_ALERT_LISTS]}
    )
    if not page_again and open_alert is not None:
        conn.execute("UPDATE system_alerts SET detail = ? WHERE id = ?", (detail, open_alert[0]))
    else:
        conn.execute(
            "INSERT INTO system_alerts (kind, source_name, raised_at, detail) VALUES (?, ?, ?, ?)",
            (MESSAGE_QUARANTINED, source_name, at, detail),
        )


@dataclass(frozen=True, slots=True)
class HeldMessage:
    """A message left unread in its mailbox because it could be neither read nor quarantined."""

    key: str
    source_name: str
    error: str
    held_at: datetime


async def held_messages(store: Store) -> list[HeldMessage]:
    """Every held message, oldest first: metadata only (mailbox key and error class)."""
    rows = await store.fetchall(
        "SELECT idempotency_key, source_name, error, held_at FROM ingest_tries"
        " WHERE held_at IS NOT NULL ORDER BY held_at, idempotency_key"
    )
    return [HeldMessage(str(r[0]), str(r[1]), str(r[2]), parse_iso(r[3])) for r in rows]


async def release_held(store: Store, key: str, actor: str = audit.ENGINE) -> HeldMessage:
    """Forget a held message (someone has dealt with it), so its mailbox is free to offer it
    again, with fresh tries; the source's alert is updated, or cleared if none is left."""
    found = [h for h in await held_messages(store) if h.key == key]
    if not found:
        raise NotFound(f"no held message has the key {key!r}; `sgalert status` lists them")
    now = iso(utcnow())
    async with store.write() as db:
        await db.execute(
            "DELETE FROM ingest_tries WHERE idempotency_key = ? AND held_at IS NOT NULL", (key,)
        )
        await on_connection(
            db, lambda conn: _refresh_held_alert(conn, found[0].source_name, now, page_again=False)
        )
        await audit.append(
            db,
            [
                audit.AuditEvent(
                    actor, "message-released", detail={"source": found[0].source_name, "key": key}
                )
            ],
        )
    return found[0]
