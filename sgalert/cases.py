"""Sealing new cases and reading sealed content back.

Sealing needs only a :class:`~sgalert.keyring.PublicKeyring`: a fresh AES-256-GCM data key per
case (and a second one for a whistleblower's identity) encrypts each field with associated data
binding the case id, field and key name; the data key is then wrapped with HPKE to each entitled
group's current public key. Reading needs an unlocked :class:`~sgalert.keyring.Identity`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import aiosqlite
from cryptography.exceptions import InvalidTag

from sgalert import audit, crypto
from sgalert.clock import iso, utcnow
from sgalert.errors import IntegrityError, NoEntitledReaders
from sgalert.keyring import Identity, PublicKeyring, group_private_key
from sgalert.model import CaseState, KeyName, Readers, Source, readers_for

_DATA_KEY_INFO = "sgalert/data-key/v1"
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
class StoredCase:
    id: str
    ref: str


def data_key_info(case_id: str, key_name: str, kind: str, recipient: str, version: int) -> bytes:
    return crypto.label(_DATA_KEY_INFO, case_id, key_name, kind, recipient, version)


def field_aad(case_id: str, field_name: str, key_name: str) -> bytes:
    return crypto.label(_FIELD_AAD, case_id, field_name, key_name)


def seal_field(case_id: str, field_name: str, key_name: str, key: bytes, plain: bytes) -> bytes:
    return crypto.aead_seal(key, plain, field_aad(case_id, field_name, key_name))


def seal_case(
    new: NewCase, keyring: PublicKeyring, configured: Mapping[Source, Readers] | None = None
) -> SealedCase:
    """Seal a case to its entitled groups using public keys only."""
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
        present = [keyring.get(group) for group in groups]
        holders = [key for key in present if key is not None]
        if not holders:
            raise NoEntitledReaders(
                f"no member of {', '.join(groups) or 'any group'} has keys yet, so a "
                f"{new.source.value} case cannot be sealed; add one with `sgalert user add`"
            )
        data_key = crypto.new_data_key()
        data_keys[key_name.value] = data_key
        for holder in holders:
            info = data_key_info(new.id, key_name, "group", holder.name, holder.version)
            wrapped = crypto.wrap_to_public_key(data_key, holder.public_key, info)
            wraps.append((new.id, key_name.value, "group", holder.name, holder.version, wrapped))
        for name, plain in plain_fields.items():
            blob = seal_field(new.id, name, key_name, data_key, plain)
            sealed.append((new.id, name, key_name.value, blob))
    return SealedCase(case=new, wraps=tuple(wraps), fields=tuple(sealed), data_keys=data_keys)


async def insert_sealed(
    db: aiosqlite.Connection, cases: Sequence[SealedCase], actor: str
) -> list[StoredCase]:
    """Insert sealed cases inside the caller's write transaction, giving each a short reference."""
    now = iso(utcnow())
    counters: dict[int, int] = {}
    stored: list[StoredCase] = []
    case_rows = []
    for sealed in cases:
        year = sealed.case.received_at.year
        if year not in counters:
            cursor = await db.execute("SELECT last FROM ref_counters WHERE year = ?", (year,))
            row = await cursor.fetchone()
            counters[year] = int(row[0]) if row else 0
        counters[year] += 1
        ref = f"SG-{year}-{counters[year]:04d}"
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
    await db.executemany(
        "INSERT INTO ref_counters (year, last) VALUES (?, ?)"
        " ON CONFLICT(year) DO UPDATE SET last = excluded.last",
        list(counters.items()),
    )
    await db.executemany(
        "INSERT INTO cases (id, ref, source, origin, received_at, created_at, updated_at, state,"
        " flags, source_name, content_sha256, message_id_sha256, duplicate_of)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        case_rows,
    )
    await db.executemany(
        "INSERT INTO key_wraps (case_id, key_name, recipient_kind, recipient, version, wrapped)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [wrap for sealed in cases for wrap in sealed.wraps],
    )
    await db.executemany(
        "INSERT INTO sealed_fields (case_id, field, key_name, blob) VALUES (?, ?, ?, ?)",
        [row for sealed in cases for row in sealed.fields],
    )
    await db.executemany(
        "INSERT INTO clocks (case_id, kind, due_at) VALUES (?, ?, ?)",
        [(s.case.id, kind, iso(due)) for s in cases for kind, due in s.case.clocks.items()],
    )
    await audit.append(
        db,
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
                },
            )
            for sealed, item in zip(cases, stored, strict=True)
        ],
    )
    return stored


async def unwrap_data_keys(
    db: aiosqlite.Connection, identity: Identity, case_ids: Iterable[str]
) -> dict[tuple[str, str], bytes]:
    """Every data key of these cases that the identity can reach: (case id, key name) -> key."""
    ids = list(dict.fromkeys(case_ids))
    found: dict[tuple[str, str], bytes] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        cursor = await db.execute(
            "SELECT case_id, key_name, recipient_kind, recipient, version, wrapped FROM key_wraps"
            f" WHERE case_id IN ({marks})",
            chunk,
        )
        for row in await cursor.fetchall():
            slot = (row["case_id"], row["key_name"])
            if slot in found:
                continue
            kind, recipient, version = row["recipient_kind"], row["recipient"], row["version"]
            if kind == "person":
                if recipient != identity.id:
                    continue
                private = identity.x25519()
            else:
                group_key = await group_private_key(db, identity, recipient, int(version))
                if group_key is None:
                    continue
                private = group_key
            info = data_key_info(slot[0], slot[1], kind, recipient, int(version))
            try:
                found[slot] = crypto.unwrap_with_private_key(row["wrapped"], private, info)
            except InvalidTag:
                raise IntegrityError(
                    f"a wrapped key of case {await case_ref(db, slot[0])} failed its "
                    "integrity check"
                ) from None
    return found


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
    for start in range(0, len(case_ids), 500):
        chunk = list(case_ids[start : start + 500])
        marks = ",".join("?" * len(chunk))
        cursor = await db.execute(
            f"SELECT case_id, field, key_name, blob FROM sealed_fields WHERE case_id IN ({marks})",
            chunk,
        )
        for row in await cursor.fetchall():
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
