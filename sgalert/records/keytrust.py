"""Whether a group's public key may be sealed to, and signing the keys of older stores.

A public key in the store is only as good as the store: anyone who can write the file could swap
a group's public key for one of their own, and every later case would be sealed to them. So each
group key version is signed (Ed25519) by the person who created or rotated it, and each person's
public signing key is written into the hash-chained audit log when they are added (or, for people
who predate signing, at the upgrade). :func:`load_public_keyring` leaves out, and reports, any
group key whose signature fails, whose signer is not a current member entitled to that group, or
whose signer's key is not the one the audit log first recorded for them.

Keys from before signing existed were written into the audit log at the upgrade (migration 10)
and are accepted as "legacy, unsigned" until a member runs ``sgalert keys sign``, which proves
each key genuine by holding its private half before signing it. A person's own public key, which
grants and memberships are sealed to, is checked the same way against the audit log
(:mod:`sgalert.records.personkeys`).
"""

from __future__ import annotations

import enum
import sqlite3
from dataclasses import dataclass
from datetime import datetime

import aiosqlite

from sgalert.clock import utcnow
from sgalert.errors import IntegrityError, NotEntitled
from sgalert.model import Role
from sgalert.records import audit, crypto
from sgalert.records.alerts import AlertKind, clear_alert, raise_alert
from sgalert.records.keyring import (
    GroupKey,
    Identity,
    PublicKeyring,
    group_key_message,
    group_private_key,
    groups_for_role,
)
from sgalert.records.personkeys import TRUST_ACTIONS, VOUCHING, vouched_now
from sgalert.records.store import Store, on_connection

# The audit query the keyring's checks share with person keys (tests look at its plan).
_VOUCHING = VOUCHING


class KeyTrust(enum.StrEnum):
    """Whether a group's current public key may be sealed to."""

    SIGNED = "signed"
    LEGACY = "legacy"  # unsigned, but the key the upgrade recorded in the audit log
    UNTRUSTED = "untrusted"


@dataclass(frozen=True, slots=True)
class GroupKeyStatus:
    group: str
    version: int
    trust: KeyTrust
    reason: str  # why, in words that name no key and no person's details
    public_raw: bytes


@dataclass(frozen=True, slots=True)
class _Signer:
    role: Role
    signing_key: bytes
    removed: bool


def _judge(
    key: tuple[str, int, bytes, str | None, bytes | None],
    signer: _Signer | None,
    member: bool,
    vouched_signing_key: str | None,
    legacy_key: str | None,
) -> tuple[KeyTrust, str]:
    group, version, public_raw, _, signature = key
    if signature is None:
        if legacy_key == public_raw.hex():
            return KeyTrust.LEGACY, "unsigned key from before signing"
        return KeyTrust.UNTRUSTED, "unsigned, and not the key the audit log holds"
    if signer is None:
        return KeyTrust.UNTRUSTED, "signed by no known person"
    if signer.removed or group not in groups_for_role(signer.role) or not member:
        return KeyTrust.UNTRUSTED, "signed by someone not a current member of the group"
    if vouched_signing_key != signer.signing_key.hex():
        return KeyTrust.UNTRUSTED, "its signer's key is not the one the audit log holds"
    try:
        valid = crypto.verify_signature(
            crypto.load_ed25519_public(signer.signing_key),
            signature,
            group_key_message(group, version, public_raw),
        )
    except ValueError:
        valid = False
    if not valid:
        return KeyTrust.UNTRUSTED, "its signature does not match the key"
    return KeyTrust.SIGNED, "signed by a current member"


def group_key_statuses_now(conn: sqlite3.Connection) -> list[GroupKeyStatus]:
    """Each group's current key and whether it may be sealed to, on the connection's thread."""
    vouched = vouched_now(conn)
    people = {
        str(r[0]): _Signer(Role(r[1]), bytes(r[2]), r[3] is not None)
        for r in conn.execute("SELECT id, role, ed25519_public, removed_at FROM people")
    }
    active = {
        (str(r[0]), str(r[1]))
        for r in conn.execute(
            "SELECT group_name, person_id FROM group_members WHERE state = 'active'"
        )
    }
    statuses: list[GroupKeyStatus] = []
    for row in conn.execute(
        "SELECT g.name, g.current_version, k.public_key, k.signer_id, k.signature FROM groups g"
        " JOIN group_keys k ON k.group_name = g.name AND k.version = g.current_version"
        " ORDER BY g.name"
    ):
        key = (
            str(row[0]),
            int(row[1]),
            bytes(row[2]),
            None if row[3] is None else str(row[3]),
            None if row[4] is None else bytes(row[4]),
        )
        group, version, public_raw, signer_id, _ = key
        trust, reason = _judge(
            key,
            people.get(signer_id or ""),
            (group, signer_id or "") in active,
            vouched.signing.get(signer_id or ""),
            vouched.legacy.get((group, version)),
        )
        statuses.append(GroupKeyStatus(group, version, trust, reason, public_raw))
    return statuses


async def group_key_statuses(db: aiosqlite.Connection) -> list[GroupKeyStatus]:
    """Each group's current key and its trust, for ``doctor`` and ``audit verify``."""
    return await on_connection(db, group_key_statuses_now)


def load_public_keyring_now(conn: sqlite3.Connection) -> PublicKeyring:
    """:func:`load_public_keyring` for code already running on the connection's thread."""
    statuses = group_key_statuses_now(conn)
    return PublicKeyring(
        groups={
            s.group: GroupKey(s.group, s.version, crypto.load_x25519_public(s.public_raw))
            for s in statuses
            if s.trust is not KeyTrust.UNTRUSTED
        },
        untrusted={s.group: s.reason for s in statuses if s.trust is KeyTrust.UNTRUSTED},
        legacy=frozenset(s.group for s in statuses if s.trust is KeyTrust.LEGACY),
    )


async def load_public_keyring(db: aiosqlite.Connection) -> PublicKeyring:
    """Current public keys of all groups whose key is trusted (see the module's docstring).

    This is all the engine needs to create cases. Groups left out are in ``untrusted``: the
    caller raises a system alert for them (:func:`alert_untrusted`), since a case that cannot
    be sealed to one of its reader groups must never be quiet about it.
    """
    return await on_connection(db, load_public_keyring_now)


def alert_untrusted_now(conn: sqlite3.Connection, ring: PublicKeyring, now: datetime) -> None:
    """Raise (once, until cleared) a system alert for each group key the ring left out."""
    for group, reason in sorted(ring.untrusted.items()):
        raise_alert(conn, AlertKind.GROUP_KEY_UNTRUSTED, group, now, {"reason": reason})


async def alert_untrusted(db: aiosqlite.Connection, ring: PublicKeyring) -> None:
    """:func:`alert_untrusted_now` inside the caller's write transaction."""
    if ring.untrusted:
        now = utcnow()
        await on_connection(db, lambda conn: alert_untrusted_now(conn, ring, now))


async def sign_group_keys(store: Store, signer: Identity) -> tuple[list[str], list[str]]:
    """Sign the current key of each group the signer holds whose key is not signed and trusted.

    The signer proves the public key is genuine by holding its private half: a stored public key
    that does not match the private key sealed to the signer was swapped, and is refused, never
    signed. Returns the groups signed and the groups still not trusted (a member of those must
    sign them).
    """
    signed: list[str] = []
    async with store.write() as db:
        if signer.person.removed:
            raise NotEntitled(f"{signer.email} has been removed")
        statuses = await group_key_statuses(db)
        mine = await active_groups(db, signer.id)
        for found in statuses:
            if found.trust is KeyTrust.SIGNED or found.group not in mine:
                continue
            if found.group not in groups_for_role(signer.person.role):
                continue
            private = await group_private_key(db, signer, found.group, found.version)
            if private is None:
                continue
            cursor = await db.execute(
                "SELECT public_key FROM group_keys WHERE group_name = ? AND version = ?",
                (found.group, found.version),
            )
            row = await cursor.fetchone()
            assert row is not None
            public_raw = crypto.raw_public_bytes(private.public_key())
            if bytes(row["public_key"]) != public_raw:
                raise IntegrityError(
                    f"the stored public key of {found.group} is not the key its members hold: it"
                    " was replaced in the store, so it is not signed; keep the store as evidence"
                    " and tell the head (removing a member rotates the group to a new, signed key)"
                )
            await db.execute(
                "UPDATE group_keys SET signer_id = ?, signature = ?"
                " WHERE group_name = ? AND version = ?",
                (
                    signer.id,
                    signer.sign(group_key_message(found.group, found.version, public_raw)),
                    found.group,
                    found.version,
                ),
            )
            await audit.append(
                db,
                [
                    audit.AuditEvent(
                        signer.email,
                        "group-key-signed",
                        detail={"group": found.group, "version": found.version},
                    )
                ],
            )
            signed.append(found.group)
        now = utcnow()

        def clear(conn: sqlite3.Connection) -> None:
            for group in signed:
                clear_alert(conn, AlertKind.GROUP_KEY_UNTRUSTED, group, now)

        await on_connection(db, clear)
        remaining = [
            s.group
            for s in await group_key_statuses(db)
            if s.trust is not KeyTrust.SIGNED and s.group not in signed
        ]
    return signed, remaining


__all__ = [
    "TRUST_ACTIONS",
    "GroupKeyStatus",
    "KeyTrust",
    "alert_untrusted",
    "alert_untrusted_now",
    "group_key_statuses",
    "group_key_statuses_now",
    "load_public_keyring",
    "load_public_keyring_now",
    "sign_group_keys",
]


async def active_groups(db: aiosqlite.Connection, person_id: str) -> set[str]:
    """The groups this person is an active member of (holds the key of)."""
    cursor = await db.execute(
        "SELECT group_name FROM group_members WHERE person_id = ? AND state = 'active'",
        (person_id,),
    )
    return {row["group_name"] for row in await cursor.fetchall()}
