"""A consistent copy of a live store, made with SQLite's online backup API.

The engine keeps writing while a backup runs. ``sqlite3.Connection.backup`` copies every page in
one step under a read transaction, which in WAL mode blocks no writer and sees one committed
state: the copy is the store as it was at one instant, never half a transaction. The copy is as
sealed as the store (case contents stay AES-GCM blobs under keys only people's passphrases
unwrap) and is checked before it is trusted: SQLite's integrity check and the audit chain.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sgalert.errors import StoreError
from sgalert.records.audit import GENESIS_HASH, entry_hash

_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class StoreCopy:
    """What a copy holds: its schema version and the audit chain's length and head."""

    schema: int
    audit_entries: int
    audit_head: str


def copy_store(source: Path, target: Path) -> StoreCopy:
    """Copy the store at ``source`` to the new file ``target`` (mode 0600), then check it.

    Blocking: run it in a worker thread. ``target`` must not exist.
    """
    if not source.is_file():
        raise StoreError(f"{source}: no store here to back up; check --workspace")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        # Not mode=ro: a read-only connection cannot open a WAL store whose engine is stopped.
        src = sqlite3.connect(source)
    except sqlite3.Error as exc:
        raise StoreError(f"{source}: cannot open the store to back it up ({exc})") from None
    try:
        src.execute("PRAGMA busy_timeout = 15000")
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            # The copy stands alone: no -wal file to carry along.
            dst.execute("PRAGMA journal_mode = DELETE")
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise StoreError(f"{source}: the backup could not be made ({exc})") from None
    finally:
        src.close()
    return check_copy(target)


def check_copy(path: Path) -> StoreCopy:
    """Integrity and audit chain of a store file nobody else has open; raises StoreError."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: not a store ({exc})") from None
    try:
        said = [str(row[0]) for row in db.execute("PRAGMA integrity_check")]
        if said != ["ok"]:
            raise StoreError(f"{path}: the copy fails SQLite's integrity check ({said[0]})")
        schema = int(db.execute("PRAGMA user_version").fetchone()[0])
        prev, count = GENESIS_HASH, 0
        for seq, at, actor, action, case_id, detail, prev_hash, stored in db.execute(
            "SELECT seq, at, actor, action, case_id, detail, prev_hash, hash FROM audit"
            " ORDER BY seq"
        ):
            count += 1
            if seq != count or prev_hash != prev:
                raise StoreError(f"{path}: the audit chain breaks at entry {seq}")
            if entry_hash(prev, seq, at, actor, action, case_id, detail) != stored:
                raise StoreError(f"{path}: audit entry {seq} does not match its hash")
            prev = stored
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: not an sgalert store ({exc})") from None
    finally:
        db.close()
    return StoreCopy(schema=schema, audit_entries=count, audit_head=prev)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
