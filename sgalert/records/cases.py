"""Sealing new cases and reading sealed content back.

Sealing needs only a :class:`~sgalert.records.keyring.PublicKeyring`: a fresh AES-256-GCM data key
per case (and a second one for a whistleblower's identity) encrypts each field with associated data
binding the case id, field and key name; the data key is then wrapped with HPKE to each entitled
group's current public key. Reading needs an unlocked :class:`~sgalert.records.keyring.Identity`.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import aiosqlite
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sgalert.clock import iso, utcnow
from sgalert.errors import IntegrityError, NoEntitledReaders
from sgalert.model import CaseState, KeyName, Readers, Source, readers_for
from sgalert.records import audit, crypto, manifest
from sgalert.records.keyring import Identity, PublicKeyring, held_group_keys
from sgalert.records.store import fetch_in, in_statements, on_connection
from sgalert.rules.access import barred

_DATA_KEY_INFO = "sgalert/data-key/v1"
_BATCH_KEY_INFO = "sgalert/batch-key/v1"
_FIELD_AAD = "sgalert/field/v1"

# Sealed field names. Attachments' bytes go in "attachment/<n>".
FIELD_FACTS = "fields"
FIELD_BODY = "body_text"
FIELD_RAW = "raw"
FIELD_ATTACHMENTS = "attachments"
FIELD_REPORTER = "reporter"


@dataclass(slots=True)
class NewCase:
    """A case about to be sealed; its content and identity fields are plaintext, in memory only."""

    source: Source
    received_at: datetime
    origin: str
    content: Mapping[str, bytes]
    identity: Mapping[str, bytes] = field(default_factory=dict)
    flags: frozenset[str] = frozenset()
    clocks: Mapping[str, datetime] = field(default_factory=dict)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    # Set for cases that came from a mailbox; used to recognise repeats.
    source_name: str | None = None
    content_sha256: str | None = None
    message_id_sha256: str | None = None
    duplicate_of: str | None = None


@dataclass(frozen=True, slots=True)
class SealedCase:
    """A case whose content is sealed and whose data keys are wrapped; ready to insert."""

    case: NewCase
    wraps: tuple[tuple[str, str, str, str, int, bytes], ...]
    fields: tuple[tuple[str, str, str, bytes], ...]
    # The plaintext data keys, for a creator who signs a first record entry; never stored.
    data_keys: Mapping[str, bytes] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class SealedBatch:
    """Cases sealed together, and their batch keys (each wrapped to a group key version)."""

    cases: tuple[SealedCase, ...]
    batch_keys: tuple[tuple[str, str, int, bytes], ...]

    def group_versions(self) -> set[tuple[str, int]]:
        return {(group, version) for _, group, version, _ in self.batch_keys}


@dataclass(frozen=True, slots=True)
class StoredCase:
    id: str
    ref: str


def data_key_info(case_id: str, key_name: str, kind: str, recipient: str, version: int) -> bytes:
    return crypto.label(_DATA_KEY_INFO, case_id, key_name, kind, recipient, version)


def field_aad(case_id: str, field_name: str, key_name: str) -> bytes:
    return crypto.label(_FIELD_AAD, case_id, field_name, key_name)


def seal_field(case_id: str, field_name: str, key_name: str, key: bytes, plain: bytes) -> bytes:
    return crypto.aead_seal(key, plain, field_aad(case_id, field_name, key_name))


def batch_key_info(batch_id: str, group: str, version: int) -> bytes:
    return crypto.label(_BATCH_KEY_INFO, batch_id, group, version)


def seal_cases(
    cases: Sequence[NewCase],
    keyring: PublicKeyring,
    configured: Mapping[Source, Readers] | None = None,
) -> SealedBatch:
    """Seal cases to their entitled groups using public keys only.

    Each case gets its own random data key (and a second one for a whistleblower's identity),
    which seals its fields. The data keys are wrapped with AES-256-GCM under a batch key, one per
    distinct set of reader groups in the batch, and only the batch key is wrapped with HPKE to
    each group. Everyone who can open a batch key is entitled to every case under it, so nothing
    is shared beyond entitlement, and a backlog costs one HPKE wrap per group, not per case.
    """
    batch_keys: dict[tuple[str, ...], tuple[str, bytes]] = {}
    batch_rows: list[tuple[str, str, int, bytes]] = []
    sealed_cases: list[SealedCase] = []
    for new in cases:
        readers = readers_for(new.source, new.flags, (configured or {}).get(new.source))
        parts: list[tuple[KeyName, Mapping[str, bytes], tuple[str, ...]]] = [
            (KeyName.CONTENT, new.content, readers.content)
        ]
        if new.identity:
            parts.append((KeyName.IDENTITY, new.identity, readers.identity))
        wraps: list[tuple[str, str, str, str, int, bytes]] = []
        sealed: list[tuple[str, str, str, bytes]] = []
        data_keys: dict[str, bytes] = {}
        for key_name, plain_fields, groups in parts:
            holders = [key for key in (keyring.get(g) for g in groups) if key is not None]
            distrusted = [g for g in groups if g in keyring.untrusted]
            if not holders and distrusted:
                raise NoEntitledReaders(
                    f"the {', '.join(distrusted)} group key failed its signature check, so a"
                    f" {new.source.value} case cannot be sealed to it and is held; a member must"
                    " run `sgalert keys sign`, or the group be rotated (see the system alert)"
                )
            if not holders:
                raise NoEntitledReaders(
                    f"no member of {', '.join(groups) or 'any group'} has keys yet, so a "
                    f"{new.source.value} case cannot be sealed; add one with `sgalert user add`"
                )
            reader_set = tuple(sorted(f"{h.name}:{h.version}" for h in holders))
            if reader_set not in batch_keys:
                batch_id, batch_key = str(uuid.uuid4()), crypto.new_data_key()
                batch_keys[reader_set] = (batch_id, batch_key)
                for holder in holders:
                    info = batch_key_info(batch_id, holder.name, holder.version)
                    wrapped = crypto.wrap_to_public_key(batch_key, holder.public_key, info)
                    batch_rows.append((batch_id, holder.name, holder.version, wrapped))
            batch_id, batch_key = batch_keys[reader_set]
            data_key = crypto.new_data_key()
            data_keys[key_name.value] = data_key
            info = data_key_info(new.id, key_name, "batch", batch_id, 0)
            wraps.append(
                (
                    new.id,
                    key_name.value,
                    "batch",
                    batch_id,
                    0,
                    crypto.aead_seal(batch_key, data_key, info),
                )
            )
            for name, plain in plain_fields.items():
                blob = seal_field(new.id, name, key_name, data_key, plain)
                sealed.append((new.id, name, key_name.value, blob))
        sealed_cases.append(
            SealedCase(case=new, wraps=tuple(wraps), fields=tuple(sealed), data_keys=data_keys)
        )
    return SealedBatch(cases=tuple(sealed_cases), batch_keys=tuple(batch_rows))


async def insert_sealed(
    db: aiosqlite.Connection, batch: SealedBatch, actor: str
) -> list[StoredCase]:
    """Insert sealed cases inside the caller's write transaction, giving each a short reference."""
    return await on_connection(db, lambda conn: insert_now(conn, batch, actor))


def insert_now(conn: sqlite3.Connection, batch: SealedBatch, actor: str) -> list[StoredCase]:
    """:func:`insert_sealed` for code already running on the connection's thread."""
    cases = batch.cases
    now = iso(utcnow())
    conn.executemany(
        "INSERT INTO batch_keys (batch_id, group_name, version, wrapped) VALUES (?, ?, ?, ?)",
        batch.batch_keys,
    )
    per_year: dict[int, int] = {}
    for sealed in cases:
        year = sealed.case.received_at.year
        per_year[year] = per_year.get(year, 0) + 1
    next_number: dict[int, int] = {}
    for year, count in per_year.items():
        (last,) = conn.execute(
            "INSERT INTO ref_counters (year, last) VALUES (?, ?)"
            " ON CONFLICT(year) DO UPDATE SET last = last + excluded.last RETURNING last",
            (year, count),
        ).fetchone()
        next_number[year] = int(last) - count
    stored: list[StoredCase] = []
    case_rows = []
    for sealed in cases:
        year = sealed.case.received_at.year
        next_number[year] += 1
        ref = f"SG-{year}-{next_number[year]:04d}"
        stored.append(StoredCase(id=sealed.case.id, ref=ref))
        case_rows.append(
            (
                sealed.case.id,
                ref,
                sealed.case.source.value,
                sealed.case.origin,
                iso(sealed.case.received_at),
                now,
                now,
                CaseState.NEW.value,
                json.dumps(sorted(sealed.case.flags)),
                sealed.case.source_name,
                sealed.case.content_sha256,
                sealed.case.message_id_sha256,
                sealed.case.duplicate_of,
            )
        )
    conn.executemany(
        "INSERT INTO cases (id, ref, source, origin, received_at, created_at, updated_at, state,"
        " flags, source_name, content_sha256, message_id_sha256, duplicate_of)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        case_rows,
    )
    conn.executemany(
        "INSERT INTO key_wraps (case_id, key_name, recipient_kind, recipient, version, wrapped)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [wrap for sealed in cases for wrap in sealed.wraps],
    )
    conn.executemany(
        "INSERT INTO sealed_fields (case_id, field, key_name, blob) VALUES (?, ?, ?, ?)",
        [row for sealed in cases for row in sealed.fields],
    )
    conn.executemany(
        "INSERT INTO clocks (case_id, kind, due_at) VALUES (?, ?, ?)",
        [(s.case.id, kind, iso(due)) for s in cases for kind, due in s.case.clocks.items()],
    )
    audit.append_now(
        conn,
        [
            audit.AuditEvent(
                actor=actor,
                action="case-created",
                case_id=sealed.case.id,
                detail={
                    "ref": item.ref,
                    "source": sealed.case.source.value,
                    "origin": sealed.case.origin,
                    "flags": sorted(sealed.case.flags),
                    manifest.MANIFEST: manifest.manifest_of(
                        (name, key, blob) for _, name, key, blob in sealed.fields
                    ),
                },
            )
            for sealed, item in zip(cases, stored, strict=True)
        ],
    )
    return stored


async def unwrap_data_keys(
    db: aiosqlite.Connection, identity: Identity, case_ids: Iterable[str]
) -> dict[tuple[str, str], bytes]:
    """Every data key of these cases that the identity can reach: (case id, key name) -> key.

    The key of the case's first version: the one its sealed fields are sealed with. A case whose
    content key was rotated (a revoked grant) has later versions for later chronology entries;
    :func:`unwrap_key_versions` gives them all."""
    versions = await unwrap_key_versions(db, identity, case_ids)
    return {slot: keys[min(keys)] for slot, keys in versions.items()}


async def unwrap_key_versions(
    db: aiosqlite.Connection, identity: Identity, case_ids: Iterable[str]
) -> dict[tuple[str, str], dict[int, bytes]]:
    """Every version of every data key of these cases the identity can reach:
    (case id, key name) -> version -> key. The highest version is what new writes use.

    A case the access policy bars this person from (the head and an allegation about the head)
    yields nothing, whatever key was wrapped to them: every read goes through here."""
    ids = list(dict.fromkeys(case_ids))
    flagged = await fetch_in(db, "SELECT id, flags FROM cases WHERE id IN ({ids})", ids)
    ids = [str(row[0]) for row in flagged if not barred(identity.person.role, json.loads(row[1]))]
    found: dict[tuple[str, str], dict[int, bytes]] = {}
    held = await held_group_keys(db, identity)
    batch_keys: dict[str, bytes | None] = {}
    for sql, params in in_statements(
        "SELECT case_id, key_name, recipient_kind, recipient, version, wrapped FROM key_wraps"
        " WHERE case_id IN ({ids})",
        ids,
    ):
        rows = await db.execute_fetchall(sql, params)
        wanted = {row["recipient"] for row in rows if row["recipient_kind"] == "batch"}
        await _open_batch_keys(db, held, wanted - batch_keys.keys(), batch_keys)
        for row in rows:
            slot = (row["case_id"], row["key_name"])
            kind, recipient, version = row["recipient_kind"], row["recipient"], int(row["version"])
            if version in found.get(slot, {}):
                continue
            info = data_key_info(slot[0], slot[1], kind, recipient, version)
            try:
                if kind == "batch":
                    batch_key = batch_keys.get(recipient)
                    if batch_key is None:
                        continue
                    key = crypto.aead_open(batch_key, row["wrapped"], info)
                elif kind == "person" and recipient == identity.id:
                    key = crypto.unwrap_with_private_key(row["wrapped"], identity.x25519(), info)
                else:
                    continue
            except InvalidTag:
                raise IntegrityError(
                    f"a wrapped key of case {await case_ref(db, slot[0])} failed its "
                    "integrity check"
                ) from None
            found.setdefault(slot, {})[version] = key
    return found


async def open_batch_keys(
    db: aiosqlite.Connection, identity: Identity, batch_ids: Iterable[str]
) -> dict[str, bytes]:
    """The batch keys this person's group keys open (the others are left out): what re-wraps a
    rotated data key to the same groups."""
    opened: dict[str, bytes | None] = {}
    await _open_batch_keys(db, await held_group_keys(db, identity), set(batch_ids), opened)
    return {batch_id: key for batch_id, key in opened.items() if key is not None}


async def _open_batch_keys(
    db: aiosqlite.Connection,
    held: Mapping[tuple[str, int], X25519PrivateKey],
    batch_ids: set[str],
    opened: dict[str, bytes | None],
) -> None:
    """Unwrap the batch keys this person's group keys reach; None marks one out of reach."""
    pending = sorted(batch_ids)
    for batch_id in pending:
        opened[batch_id] = None
    rows = await fetch_in(
        db,
        "SELECT batch_id, group_name, version, wrapped FROM batch_keys WHERE batch_id IN ({ids})",
        pending,
    )
    for batch_id, group, version, wrapped in rows:
        private = held.get((group, int(version)))
        if private is None or opened.get(batch_id) is not None:
            continue
        try:
            opened[batch_id] = crypto.unwrap_with_private_key(
                wrapped, private, batch_key_info(batch_id, group, int(version))
            )
        except InvalidTag:
            raise IntegrityError(
                f"batch key {batch_id} sealed to {group} failed its integrity check"
            ) from None


async def case_ref(db: aiosqlite.Connection, case_id: str) -> str:
    cursor = await db.execute("SELECT ref FROM cases WHERE id = ?", (case_id,))
    row = await cursor.fetchone()
    return str(row[0]) if row else case_id


async def open_fields(
    db: aiosqlite.Connection,
    keys: Mapping[tuple[str, str], bytes],
    case_ids: Sequence[str],
    *,
    skip_prefix: str = "attachment/",
) -> dict[str, dict[str, bytes]]:
    """Decrypt the sealed fields the keys reach: case id -> field -> plaintext.

    Attachment bodies are skipped unless asked for, since a case view needs only their list.
    """
    opened: dict[str, dict[str, bytes]] = {case_id: {} for case_id in case_ids}
    for sql, params in in_statements(  # chunk by chunk: the sealed bodies may be large
        "SELECT case_id, field, key_name, blob FROM sealed_fields WHERE case_id IN ({ids})",
        case_ids,
    ):
        for row in await db.execute_fetchall(sql, params):
            name = row["field"]
            if skip_prefix and name.startswith(skip_prefix):
                continue
            key = keys.get((row["case_id"], row["key_name"]))
            if key is None:
                continue
            try:
                opened[row["case_id"]][name] = crypto.aead_open(
                    key, row["blob"], field_aad(row["case_id"], name, row["key_name"])
                )
            except InvalidTag:
                raise IntegrityError(
                    f"sealed field {name!r} of case {await case_ref(db, row['case_id'])} failed "
                    "its integrity check: it was altered or does not belong to this case"
                ) from None
    return opened


async def sealed_with(db: aiosqlite.Connection, case_id: str, name: str) -> str | None:
    """The name of the data key a field is sealed with (``content``, ``identity``), or None if
    the case has no such field: what tells "not there" from "there, but not for these keys"."""
    cursor = await db.execute(
        "SELECT key_name FROM sealed_fields WHERE case_id = ? AND field = ?", (case_id, name)
    )
    row = await cursor.fetchone()
    return None if row is None else str(row["key_name"])


async def open_field(
    db: aiosqlite.Connection, keys: Mapping[tuple[str, str], bytes], case_id: str, name: str
) -> bytes | None:
    """Decrypt one sealed field (an attachment's bytes, say); None if the case has no such field
    or the keys do not reach it."""
    cursor = await db.execute(
        "SELECT key_name, blob FROM sealed_fields WHERE case_id = ? AND field = ?", (case_id, name)
    )
    row = await cursor.fetchone()
    if row is None:
        return None
    key = keys.get((case_id, row["key_name"]))
    if key is None:
        return None
    try:
        return crypto.aead_open(key, row["blob"], field_aad(case_id, name, row["key_name"]))
    except InvalidTag:
        raise IntegrityError(
            f"sealed field {name!r} of case {await case_ref(db, case_id)} failed its integrity"
            " check: it was altered or does not belong to this case"
        ) from None
