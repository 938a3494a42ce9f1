"""Whether a person's public key may be sealed to, and the audit entries that vouch for keys.

A grant wraps a case's data key to the grantee's X25519 public key, and a membership seals a
group key to it; both read that key from the ``people`` table, which anyone who can write the
store file could change to a key of their own. So the audit log records each person's public
key when they are added (``person-added``; ``person-key-recorded`` for the people a store had at
the upgrade that brought this in, migration 12), as it records their signing key, and nothing is
wrapped or sealed to a person whose stored key is not the first one the log recorded for them:
:func:`check_person_key` refuses with :class:`PersonKeyUntrusted`, and :func:`alerting` raises a
system alert for it once the refused transaction has rolled back.

The same few audit entries vouch for signing keys and for legacy group keys
(:mod:`sgalert.records.keytrust`); :func:`vouched_now` reads them all with one indexed query.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiosqlite

from sgalert.clock import utcnow
from sgalert.errors import IntegrityError
from sgalert.records import audit
from sgalert.records.alerts import AlertKind, raise_alert
from sgalert.records.store import Store, on_connection

#: The action of the entries migration 12 writes for the people a store already had.
KEY_RECORDED = "person-key-recorded"
#: The audit actions that vouch for keys (migration 12 indexes exactly these, so the checks find
#: them without reading the whole log).
TRUST_ACTIONS = ("person-added", "signing-key-recorded", "group-key-legacy", KEY_RECORDED)
# Spelt out, not bound: SQLite uses a partial index only when it can see the query matches it.
VOUCHING = (
    "SELECT action, detail FROM audit WHERE action IN"
    f" ({', '.join(repr(a) for a in TRUST_ACTIONS)}) ORDER BY seq"
)


@dataclass(frozen=True, slots=True)
class Vouched:
    """What the audit log first recorded: each person's signing key and public key, each legacy
    group key (all as hex). A later entry cannot replace what an earlier one recorded."""

    signing: dict[str, str] = field(default_factory=dict)
    public: dict[str, str] = field(default_factory=dict)
    legacy: dict[tuple[str, int], str] = field(default_factory=dict)


def vouched_now(conn: sqlite3.Connection) -> Vouched:
    """The keys the audit log vouches for, on the connection's thread."""
    found = Vouched()
    for action, detail in conn.execute(VOUCHING):
        data = json.loads(detail)
        if action == "group-key-legacy":
            slot = (str(data.get("group")), int(data.get("version", 0)))
            found.legacy.setdefault(slot, str(data.get("public_key")))
            continue
        person = str(data.get("person"))
        if isinstance(data.get("signing_key"), str):
            found.signing.setdefault(person, data["signing_key"])
        if isinstance(data.get("public_key"), str):
            found.public.setdefault(person, data["public_key"])
    return found


class PersonKeyUntrusted(IntegrityError):
    """A person's stored public key is not the one the audit log recorded: nothing is sealed
    to it. Names the person by email (staff, not a case's people), never the key."""

    def __init__(self, person_id: str, email: str) -> None:
        super().__init__(
            f"the public key on file for {email} is not the one the audit log recorded for"
            " them: it was replaced in the store, so nothing was sealed to it; keep the store as"
            " evidence and tell the head"
        )
        self.person_id = person_id


def untrusted_people_now(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    """(id, email) of every current person whose stored public key the audit log does not
    vouch for, for ``keys status``."""
    public = vouched_now(conn).public
    return [
        (str(person_id), str(email))
        for person_id, email, key in conn.execute(
            "SELECT id, email, x25519_public FROM people WHERE removed_at IS NULL"
            " ORDER BY created_at, email"
        )
        if public.get(str(person_id)) != bytes(key).hex()
    ]


def check_person_key_now(
    conn: sqlite3.Connection, person_id: str, email: str, public_raw: bytes
) -> None:
    """Refuse (:class:`PersonKeyUntrusted`) unless ``public_raw`` is the key the audit log
    first recorded for this person."""
    if vouched_now(conn).public.get(person_id) != public_raw.hex():
        raise PersonKeyUntrusted(person_id, email)


async def check_person_key(
    db: aiosqlite.Connection, person_id: str, email: str, public_raw: bytes
) -> None:
    """:func:`check_person_key_now` in the caller's transaction, before anything is wrapped or
    sealed to the person; run the transaction inside :func:`alerting`."""
    await on_connection(db, lambda conn: check_person_key_now(conn, person_id, email, public_raw))


@asynccontextmanager
async def alerting(store: Store) -> AsyncIterator[None]:
    """Around a transaction that may seal to a person: a :class:`PersonKeyUntrusted` raised
    inside (which rolled the work back) opens a system alert and is audited, in a transaction
    of its own, then goes on to the caller."""
    try:
        yield
    except PersonKeyUntrusted as refused:
        person_id, now = refused.person_id, utcnow()
        detail = {"reason": "stored public key is not the one the audit log recorded"}

        def record(conn: sqlite3.Connection) -> None:
            raise_alert(conn, AlertKind.PERSON_KEY_UNTRUSTED, person_id, now, detail)
            audit.append_now(
                conn,
                [
                    audit.AuditEvent(
                        audit.SYSTEM, "person-key-refused", detail={"person": person_id}
                    )
                ],
            )

        async with store.write() as db:
            await on_connection(db, record)
        raise


def baseline_now(conn: sqlite3.Connection) -> list[audit.AuditEvent]:
    """Migration 12's entries: each person's public key as the store holds it at the upgrade."""
    return [
        audit.AuditEvent(
            audit.SYSTEM, KEY_RECORDED, detail={"person": str(pid), "public_key": bytes(key).hex()}
        )
        for pid, key in conn.execute("SELECT id, x25519_public FROM people ORDER BY created_at, id")
    ]


__all__ = [
    "KEY_RECORDED",
    "TRUST_ACTIONS",
    "VOUCHING",
    "PersonKeyUntrusted",
    "Vouched",
    "alerting",
    "baseline_now",
    "check_person_key",
    "check_person_key_now",
    "untrusted_people_now",
    "vouched_now",
]
