"""The case record: timed, attributed, signed entries that are never edited.

An entry's payload (who, when, what kind, which entry it corrects, the words) is signed with the
author's Ed25519 key, then sealed under the case's content key. Anyone entitled to the case can
check the signature, so an entry altered by someone with database access (even a reader who holds
the data key) shows ``signature_valid = False``.
"""

from __future__ import annotations

import base64
import enum
import json
import sqlite3
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import aiosqlite
from cryptography.exceptions import InvalidTag

from sgalert.clock import iso, parse_iso
from sgalert.errors import IntegrityError
from sgalert.model import KeyName
from sgalert.records import crypto, manifest
from sgalert.records.cases import case_ref, field_aad
from sgalert.records.keyring import Identity, Person, person_by_id
from sgalert.records.store import fetch_in, on_connection


class EntryKind(enum.StrEnum):
    """What an entry records. Plaintext metadata, so it names a kind, never the content."""

    NOTE = "note"
    DECISION = "decision"
    REFERRAL = "referral"
    OUTCOME = "outcome"
    CASE_RECORDED = "case-recorded"


@dataclass(frozen=True, slots=True)
class ChronologyEntry:
    """One decrypted entry, with whether its signature holds."""

    id: str
    at: datetime
    author: Person
    kind: EntryKind
    text: str
    reason: str | None
    corrects: str | None
    signature_valid: bool


def _field_name(entry_id: str) -> str:
    return f"chronology/{entry_id}"


def _payload(
    case_id: str,
    entry_id: str,
    at: str,
    author_id: str,
    kind: EntryKind,
    corrects: str | None,
    text: str,
    reason: str | None,
) -> dict[str, object]:
    return {
        "v": 1,
        "case": case_id,
        "entry": entry_id,
        "at": at,
        "author": author_id,
        "kind": kind.value,
        "corrects": corrects,
        "text": text,
        "reason": reason,
    }


def seal_entry(
    identity: Identity,
    data_key: bytes,
    case_id: str,
    kind: EntryKind,
    text: str,
    *,
    at: datetime,
    reason: str | None = None,
    corrects: str | None = None,
) -> tuple[str, tuple[str, str, str, str, str, str | None, bytes]]:
    """Sign and seal an entry; returns its id and the row to insert."""
    entry_id = str(uuid.uuid4())
    stamp = iso(at)
    payload = _payload(case_id, entry_id, stamp, identity.id, kind, corrects, text, reason)
    signature = identity.sign(crypto.canonical_json(payload))
    plain = crypto.canonical_json(
        {"payload": payload, "signature": base64.b64encode(signature).decode("ascii")}
    )
    blob = crypto.aead_seal(
        data_key, plain, field_aad(case_id, _field_name(entry_id), KeyName.CONTENT)
    )
    return entry_id, (entry_id, case_id, stamp, identity.id, kind.value, corrects, blob)


INSERT_ENTRY = (
    "INSERT INTO chronology (id, case_id, at, author_id, kind, corrects, blob)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


async def insert_entry(
    db: aiosqlite.Connection, row: tuple[str, str, str, str, str, str | None, bytes]
) -> str:
    """Store a sealed entry inside the caller's write transaction; returns the case's new
    manifest, which the caller's audit entry for the write must carry under
    :data:`~sgalert.records.manifest.MANIFEST` (``audit verify`` compares the rows with it)."""
    case_id = row[1]

    def work(conn: sqlite3.Connection) -> str:
        conn.execute(INSERT_ENTRY, row)
        return manifest.case_manifest_now(conn, case_id)

    return await on_connection(db, work)


async def read_entries(
    db: aiosqlite.Connection, keys: Mapping[str, bytes | Sequence[bytes]]
) -> dict[str, list[ChronologyEntry]]:
    """Decrypt and check every entry of these cases (case id -> content key, or every version
    of it when it was rotated: an entry is sealed with the version current when written),
    oldest first."""
    entries: dict[str, list[ChronologyEntry]] = {case_id: [] for case_id in keys}
    authors: dict[str, Person] = {}
    rows = await fetch_in(
        db,
        "SELECT id, case_id, at, author_id, kind, corrects, blob FROM chronology"
        " WHERE case_id IN ({ids}) ORDER BY at, rowid",  # each case falls in one chunk
        list(keys),
    )
    for row in rows:
        case_id = row["case_id"]
        if row["author_id"] not in authors:
            authors[row["author_id"]] = await person_by_id(db, row["author_id"])
        entries[case_id].append(
            await _open_entry(db, row, keys[case_id], authors[row["author_id"]])
        )
    return entries


async def _open_entry(
    db: aiosqlite.Connection,
    row: aiosqlite.Row,
    data_keys: bytes | Sequence[bytes],
    author: Person,
) -> ChronologyEntry:
    case_id, entry_id = row["case_id"], row["id"]
    aad = field_aad(case_id, _field_name(entry_id), KeyName.CONTENT)
    plain: bytes | None = None
    for data_key in [data_keys] if isinstance(data_keys, bytes) else data_keys:
        try:
            plain = crypto.aead_open(data_key, row["blob"], aad)
            break
        except InvalidTag:
            continue
    if plain is None:
        raise IntegrityError(
            f"chronology entry {entry_id} of case {await case_ref(db, case_id)} failed its "
            "integrity check"
        )
    sealed = json.loads(plain)
    payload = sealed["payload"]
    expected_meta = {
        "case": case_id,
        "entry": entry_id,
        "at": row["at"],
        "author": row["author_id"],
        "kind": row["kind"],
        "corrects": row["corrects"],
    }
    meta_matches = all(payload.get(k) == v for k, v in expected_meta.items())
    try:
        signature = base64.b64decode(sealed["signature"], validate=True)
    except ValueError:
        signature = b""
    valid = meta_matches and crypto.verify_signature(
        author.ed25519_public, signature, crypto.canonical_json(payload)
    )
    return ChronologyEntry(
        id=entry_id,
        at=parse_iso(row["at"]),
        author=author,
        kind=EntryKind(row["kind"]),
        text=str(payload.get("text", "")),
        reason=payload.get("reason"),
        corrects=row["corrects"],
        signature_valid=valid,
    )
