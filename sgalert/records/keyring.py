"""People, their keys, and the groups (roles and compartments) that hold case keys.

The shape is 1Password's: each group has an X25519 key pair whose private half is sealed to every
current member; a case's data keys are wrapped to the group's public key. Adding a member is one
sealing, done by someone who already holds the group key; removing one rotates the group key so
new cases are sealed to a key the leaver never had. Creating a case needs only public keys
(:class:`PublicKeyring`), which is all the always-on engine ever loads.

Each group key version is signed (Ed25519) by the person who created or rotated it, and each
person's public signing key goes into the audit log's ``person-added`` entry, so a public key
swapped in the store is refused rather than sealed to: :mod:`sgalert.records.keytrust` checks
them and loads the :class:`PublicKeyring`.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import aiosqlite
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from sgalert.clock import iso, utcnow
from sgalert.errors import (
    AlreadyExists,
    IntegrityError,
    InvalidInput,
    MembershipError,
    NotEntitled,
    NotFound,
    UnlockThrottled,
    WrongPassphrase,
)
from sgalert.model import ROLE_COMPARTMENTS, WHISTLE_IDENTITY, Role
from sgalert.records import audit, crypto
from sgalert.records.passphrase import (
    check_strength,
    record_failure,
    record_success,
    refuse_if_throttled,
)
from sgalert.records.personkeys import alerting, check_person_key
from sgalert.records.store import Store
from sgalert.text import person_name_problem, printable

_PERSON_KEYS_AAD = "sgalert/person-keys/v1"
_GROUP_SEAL_INFO = "sgalert/group-key/v1"
_GROUP_KEY_SIGNATURE = "sgalert/group-key-signature/v1"


@dataclass(frozen=True, slots=True)
class Person:
    """A person's public record: what anyone may see."""

    id: str
    name: str
    email: str
    role: Role
    x25519_public: X25519PublicKey
    ed25519_public: Ed25519PublicKey
    created_at: datetime
    removed: bool


@dataclass(slots=True)
class Identity:
    """An unlocked person. Private keys live only here, in memory, until :meth:`forget`."""

    person: Person
    _x25519: X25519PrivateKey | None
    _ed25519: Ed25519PrivateKey | None
    _group_keys: dict[tuple[str, int], X25519PrivateKey] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.person.id

    @property
    def email(self) -> str:
        return self.person.email

    @property
    def locked(self) -> bool:
        return self._x25519 is None

    def x25519(self) -> X25519PrivateKey:
        if self._x25519 is None:
            raise NotEntitled(f"{self.person.email} is locked; unlock again")
        return self._x25519

    def sign(self, message: bytes) -> bytes:
        if self._ed25519 is None:
            raise NotEntitled(f"{self.person.email} is locked; unlock again")
        return self._ed25519.sign(message)

    def forget(self) -> None:
        """Drop every private key (the TUI's lock); Python cannot wipe memory, so best effort."""
        self._x25519 = None
        self._ed25519 = None
        self._group_keys.clear()


@dataclass(frozen=True, slots=True)
class GroupKey:
    name: str
    version: int
    public_key: X25519PublicKey


@dataclass(frozen=True, slots=True)
class PublicKeyring:
    """The current public key of every group that has a trusted one: enough to seal, never to
    read. ``untrusted`` names the groups left out and why (a reason, never a key); ``legacy``
    the groups whose key predates signing and is accepted until someone signs it."""

    groups: dict[str, GroupKey]
    untrusted: Mapping[str, str] = field(default_factory=dict)
    legacy: frozenset[str] = frozenset()

    def get(self, name: str) -> GroupKey | None:
        return self.groups.get(name)


def _person_from_row(row: aiosqlite.Row) -> Person:
    return Person(
        id=row["id"],
        name=row["name"],
        email=row["email"],
        role=Role(row["role"]),
        x25519_public=crypto.load_x25519_public(row["x25519_public"]),
        ed25519_public=crypto.load_ed25519_public(row["ed25519_public"]),
        created_at=datetime.fromisoformat(row["created_at"].replace("Z", "+00:00")),
        removed=row["removed_at"] is not None,
    )


def _group_kind(name: str) -> str:
    return "role" if name in {role.value for role in Role} else "compartment"


def groups_for_role(role: Role) -> tuple[str, ...]:
    """The role's own group plus the compartments that role joins automatically."""
    return (role.value, *ROLE_COMPARTMENTS.get(role, ()))


def group_key_message(group: str, version: int, public_raw: bytes) -> bytes:
    """What a group key's signer signs: the group, the version and the public key itself."""
    return crypto.label(_GROUP_KEY_SIGNATURE, group, version, public_raw.hex())


def _seal_info(group: str, version: int, person_id: str) -> bytes:
    return crypto.label(_GROUP_SEAL_INFO, group, version, person_id)


def _seal_group_key(
    group: str, version: int, private_key: X25519PrivateKey, person: Person
) -> bytes:
    return crypto.wrap_to_public_key(
        crypto.raw_private_bytes(private_key),
        person.x25519_public,
        _seal_info(group, version, person.id),
    )


_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")


def normalise_email(email: str) -> str:
    """A plain address (``name@school.example.org``) or :class:`InvalidInput`.

    Addresses are printed by the CLI and the desk and sent to mail servers, so only the ordinary
    characters of an address are accepted: no spaces, quotes, terminal escapes or bidi controls,
    whatever a mail standard would allow. The refusal never echoes the value back raw.
    """
    cleaned = email.strip()
    local, at, domain = cleaned.rpartition("@")
    if (
        not at
        or len(cleaned) > 254
        or not _LOCAL_PART.fullmatch(local)
        or len(local) > 64
        or not _DOMAIN.fullmatch(domain)
    ):
        raise InvalidInput(f"{printable(cleaned)!r} is not a plain email address")
    return f"{local}@{domain.lower()}"


async def find_person(db: aiosqlite.Connection, email: str) -> Person:
    cursor = await db.execute("SELECT * FROM people WHERE email = ?", (email.strip(),))
    row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"no person with email {email.strip()}")
    return _person_from_row(row)


async def person_by_id(db: aiosqlite.Connection, person_id: str) -> Person:
    cursor = await db.execute("SELECT * FROM people WHERE id = ?", (person_id,))
    row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"no person with id {person_id}")
    return _person_from_row(row)


async def list_people(store: Store) -> list[tuple[Person, dict[str, str]]]:
    """Every person with their group memberships (group -> active/pending)."""
    people = await store.fetchall("SELECT * FROM people ORDER BY created_at, email")
    members = await store.fetchall("SELECT group_name, person_id, state FROM group_members")
    by_person: dict[str, dict[str, str]] = {}
    for row in members:
        by_person.setdefault(row["person_id"], {})[row["group_name"]] = row["state"]
    return [(_person_from_row(row), by_person.get(row["id"], {})) for row in people]


# Who may add a person once the workspace has one: the people a school's records are confined to
# (the DSL and the headteacher [school 1.13.0]) and the monitoring officer, who answers for
# whistleblowing [HMS]. A deputy, the chair and staff may not: each newcomer's access to a group
# is still pending until a member of that group seals its key to them (:func:`approve_member`).
ADDS_PEOPLE = frozenset({Role.DSL, Role.HEAD, Role.MONITORING_OFFICER})
_ADDERS = "a DSL, the headteacher or a monitoring officer"


async def add_first_person(
    store: Store,
    *,
    name: str,
    email: str,
    role: Role,
    passphrase: str,
    kdf: crypto.KdfParams | None = None,
) -> tuple[Person, dict[str, str]]:
    """The first-run bootstrap: create the first person, only while the workspace has nobody.

    They must be someone who may add the others (:data:`ADDS_PEOPLE`); every later person is
    added by :func:`add_person`, by someone unlocked. Both checks run inside the transaction that
    inserts, so two first-runs at once cannot both succeed.
    """
    return await _add(
        store, None, name=name, email=email, role=role, passphrase=passphrase, kdf=kdf
    )


async def add_person(
    store: Store,
    *,
    by: Identity,
    name: str,
    email: str,
    role: Role,
    passphrase: str,
    kdf: crypto.KdfParams | None = None,
) -> tuple[Person, dict[str, str]]:
    """Create a person with fresh keys wrapped under their passphrase, added by ``by``.

    ``by`` must be unlocked (their private key must match the one on file), current, and one of
    :data:`ADDS_PEOPLE`; the audit entry names who added whom. For each of the person's groups:
    if the group has no key yet, it is created and sealed to this person (active); otherwise the
    membership is pending until an existing member approves it, because only someone holding the
    group key can seal it to a newcomer.
    """
    return await _add(store, by, name=name, email=email, role=role, passphrase=passphrase, kdf=kdf)


async def _check_adder(db: aiosqlite.Connection, by: Identity | None, role: Role) -> str:
    """Refuse unless this add is allowed: the audit actor if it is."""
    if by is None:
        cursor = await db.execute("SELECT 1 FROM people LIMIT 1")
        if await cursor.fetchone() is not None:
            raise NotEntitled(
                "this workspace already has people: a DSL, the headteacher or a monitoring officer"
                " adds the next with `sgalert user add ... --by THEIR_EMAIL`"
            )
        if role not in ADDS_PEOPLE:
            raise InvalidInput(f"the first person must be {_ADDERS}, who can then add the others")
        return audit.SYSTEM
    adder = await person_by_id(db, by.id)
    held = crypto.raw_public_bytes(by.x25519().public_key())  # NotEntitled when locked
    if held != crypto.raw_public_bytes(adder.x25519_public):
        raise NotEntitled(f"the keys given for {adder.email} are not theirs; unlock again")
    if adder.removed:
        raise NotEntitled(f"{adder.email} has been removed and may not add people")
    if adder.role not in ADDS_PEOPLE:
        raise NotEntitled(f"{adder.email} may not add people: only {_ADDERS} may")
    return adder.email


async def _add(
    store: Store,
    by: Identity | None,
    *,
    name: str,
    email: str,
    role: Role,
    passphrase: str,
    kdf: crypto.KdfParams | None,
) -> tuple[Person, dict[str, str]]:
    problem = person_name_problem(name)
    if problem is not None:
        raise InvalidInput(problem)
    email = normalise_email(email)
    check_strength(passphrase, name=name, email=email)
    params = kdf or crypto.KdfParams()
    person_id = str(uuid.uuid4())
    x_private = X25519PrivateKey.generate()
    ed_private = Ed25519PrivateKey.generate()
    salt = crypto.new_salt()
    kek = await asyncio.to_thread(crypto.derive_passphrase_key, passphrase, salt, params)
    wrapped = crypto.aead_seal(
        kek,
        crypto.raw_private_bytes(x_private) + crypto.raw_private_bytes(ed_private),
        crypto.label(_PERSON_KEYS_AAD, person_id),
    )
    now = utcnow()
    person = Person(
        id=person_id,
        name=name.strip(),
        email=email,
        role=role,
        x25519_public=x_private.public_key(),
        ed25519_public=ed_private.public_key(),
        created_at=now,
        removed=False,
    )
    memberships: dict[str, str] = {}
    async with store.write() as db:
        actor = await _check_adder(db, by, role)
        cursor = await db.execute("SELECT 1 FROM people WHERE email = ?", (email,))
        if await cursor.fetchone():
            raise AlreadyExists(f"a person with email {email} already exists")
        await db.execute(
            "INSERT INTO people (id, name, email, role, x25519_public, ed25519_public,"
            " wrapped_private, kdf, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                person_id,
                person.name,
                email,
                role.value,
                crypto.raw_public_bytes(person.x25519_public),
                crypto.raw_public_bytes(person.ed25519_public),
                wrapped,
                params.to_json(salt),
                iso(now),
            ),
        )
        for group in groups_for_role(role):
            cursor = await db.execute("SELECT 1 FROM groups WHERE name = ?", (group,))
            if await cursor.fetchone() is None:
                group_private = X25519PrivateKey.generate()
                public_raw = crypto.raw_public_bytes(group_private.public_key())
                await db.execute(
                    "INSERT INTO groups (name, kind, current_version) VALUES (?, ?, 1)",
                    (group, _group_kind(group)),
                )
                await db.execute(
                    "INSERT INTO group_keys (group_name, version, public_key, created_at,"
                    " signer_id, signature) VALUES (?, 1, ?, ?, ?, ?)",
                    (
                        group,
                        public_raw,
                        iso(now),
                        person_id,
                        ed_private.sign(group_key_message(group, 1, public_raw)),
                    ),
                )
                await db.execute(
                    "INSERT INTO group_key_seals (group_name, version, person_id, sealed)"
                    " VALUES (?, 1, ?, ?)",
                    (group, person_id, _seal_group_key(group, 1, group_private, person)),
                )
                memberships[group] = "active"
            else:
                memberships[group] = "pending"
            await db.execute(
                "INSERT INTO group_members (group_name, person_id, state, added_at)"
                " VALUES (?, ?, ?, ?)",
                (group, person_id, memberships[group], iso(now)),
            )
        await audit.append(
            db,
            [
                audit.AuditEvent(
                    actor=actor,
                    action="person-added",
                    detail={
                        "person": person_id,
                        "role": role.value,
                        "groups": memberships,
                        # Vouch for the key that signs their group keys and record entries,
                        # and for the one grants and group keys are sealed to (personkeys).
                        "signing_key": crypto.raw_public_bytes(person.ed25519_public).hex(),
                        "public_key": crypto.raw_public_bytes(person.x25519_public).hex(),
                        "by": by.id if by is not None else "first-run",
                    },
                )
            ],
        )
    return person, memberships


async def unlock(store: Store, email: str, passphrase: str) -> Identity:
    """Derive the person's key-encryption key and unwrap their private keys. Audited either way."""
    async with store.read() as db:
        person = await find_person(db, email)
        cursor = await db.execute(
            "SELECT wrapped_private, kdf FROM people WHERE id = ?", (person.id,)
        )
        row = await cursor.fetchone()
    if person.removed:
        async with store.write() as db:
            await audit.append(db, [audit.AuditEvent(actor=person.email, action="unlock-refused")])
        raise NotEntitled(f"{person.email} has been removed and cannot unlock")
    assert row is not None
    try:
        async with store.read() as db:
            await refuse_if_throttled(db, person.id, utcnow())
    except UnlockThrottled:
        async with store.write() as db:
            await audit.append(
                db, [audit.AuditEvent(actor=person.email, action="unlock-throttled")]
            )
        raise
    params, salt = crypto.KdfParams.from_json(row["kdf"])
    kek = await asyncio.to_thread(crypto.derive_passphrase_key, passphrase, salt, params)
    try:
        raw = crypto.aead_open(
            kek, row["wrapped_private"], crypto.label(_PERSON_KEYS_AAD, person.id)
        )
    except InvalidTag:
        async with store.write() as db:
            failures = await record_failure(db, person.id, utcnow())
            await audit.append(
                db,
                [
                    audit.AuditEvent(
                        actor=person.email, action="unlock-failed", detail={"in_a_row": failures}
                    )
                ],
            )
        raise WrongPassphrase(f"wrong passphrase for {person.email}") from None
    identity = Identity(
        person=person,
        _x25519=crypto.load_x25519_private(raw[:32]),
        _ed25519=crypto.load_ed25519_private(raw[32:]),
    )
    async with store.write() as db:
        await record_success(db, person.id)
        await audit.append(db, [audit.AuditEvent(actor=person.email, action="unlock")])
    return identity


async def group_private_key(
    db: aiosqlite.Connection, identity: Identity, group: str, version: int
) -> X25519PrivateKey | None:
    """The group key version if this person holds it, else None. Cached on the identity."""
    cached = identity._group_keys.get((group, version))
    if cached is not None:
        return cached
    cursor = await db.execute(
        "SELECT s.sealed FROM group_key_seals s JOIN group_members m"
        " ON m.group_name = s.group_name AND m.person_id = s.person_id AND m.state = 'active'"
        " WHERE s.group_name = ? AND s.version = ? AND s.person_id = ?",
        (group, version, identity.id),
    )
    row = await cursor.fetchone()
    return None if row is None else _unseal(identity, group, version, row["sealed"])


def _unseal(identity: Identity, group: str, version: int, sealed: bytes) -> X25519PrivateKey:
    """A group key version sealed to this person, opened and cached on the identity."""
    try:
        raw = crypto.unwrap_with_private_key(
            sealed, identity.x25519(), _seal_info(group, version, identity.id)
        )
    except InvalidTag:
        raise IntegrityError(
            f"the {group} key sealed to {identity.email} failed its integrity check"
        ) from None
    key = identity._group_keys[(group, version)] = crypto.load_x25519_private(raw)
    return key


async def _check_key(db: aiosqlite.Connection, person: Person) -> None:
    """Refuse to seal to a person whose public key is not the one the audit log recorded."""
    public_raw = crypto.raw_public_bytes(person.x25519_public)
    await check_person_key(db, person.id, person.email, public_raw)


async def held_group_keys(
    db: aiosqlite.Connection, identity: Identity
) -> dict[tuple[str, int], X25519PrivateKey]:
    """Every group key version this person holds through an active membership, in one query."""
    rows = await db.execute_fetchall(
        "SELECT s.group_name, s.version, s.sealed FROM group_key_seals s JOIN group_members m"
        " ON m.group_name = s.group_name AND m.person_id = s.person_id AND m.state = 'active'"
        " WHERE s.person_id = ?",
        (identity.id,),
    )
    held: dict[tuple[str, int], X25519PrivateKey] = {}
    for group, version, sealed in rows:
        slot = (str(group), int(version))
        held[slot] = identity._group_keys.get(slot) or _unseal(identity, *slot, bytes(sealed))
    return held


async def _all_group_versions(
    db: aiosqlite.Connection, identity: Identity, group: str
) -> dict[int, X25519PrivateKey]:
    cursor = await db.execute(
        "SELECT version FROM group_keys WHERE group_name = ? ORDER BY version", (group,)
    )
    versions: dict[int, X25519PrivateKey] = {}
    for row in await cursor.fetchall():
        key = await group_private_key(db, identity, group, int(row["version"]))
        if key is not None:
            versions[int(row["version"])] = key
    return versions


async def approve_member(store: Store, approver: Identity, email: str) -> list[str]:
    """Seal every group key the approver holds to a person whose membership is pending.

    Older key versions are sealed too, so the newcomer can read the group's earlier cases.
    Returns the groups that became active.
    """
    approved: list[str] = []
    async with alerting(store), store.write() as db:
        person = await find_person(db, email)
        if person.removed:
            raise MembershipError(f"{person.email} has been removed")
        await _check_key(db, person)
        cursor = await db.execute(
            "SELECT group_name FROM group_members WHERE person_id = ? AND state = 'pending'",
            (person.id,),
        )
        pending = [row["group_name"] for row in await cursor.fetchall()]
        if not pending:
            raise MembershipError(f"{person.email} has no pending group membership")
        for group in pending:
            versions = await _all_group_versions(db, approver, group)
            if not versions:
                continue
            for version, key in versions.items():
                await db.execute(
                    "INSERT OR REPLACE INTO group_key_seals (group_name, version, person_id,"
                    " sealed) VALUES (?, ?, ?, ?)",
                    (group, version, person.id, _seal_group_key(group, version, key, person)),
                )
            await db.execute(
                "UPDATE group_members SET state = 'active' WHERE group_name = ? AND person_id = ?",
                (group, person.id),
            )
            approved.append(group)
        if not approved:
            raise NotEntitled(
                f"{approver.email} holds none of the keys for {', '.join(pending)}; ask a member"
            )
        await audit.append(
            db,
            [
                audit.AuditEvent(
                    actor=approver.email,
                    action="membership-granted",
                    detail={"person": person.id, "groups": approved},
                )
            ],
        )
    return approved


async def remove_person(store: Store, remover: Identity, email: str) -> list[str]:
    """Remove a person: drop their seals and wrapped case keys, and rotate each group key.

    Every remaining member gets the new key version and keeps the older ones, so they lose
    nothing; the leaver never receives the new version. Refused if it would leave a group with
    no active member, since that group's cases would become unreadable for ever.
    """
    rotated: list[str] = []
    now = utcnow()
    async with alerting(store), store.write() as db:
        person = await find_person(db, email)
        if person.removed:
            raise MembershipError(f"{person.email} has already been removed")
        cursor = await db.execute(
            "SELECT group_name, state FROM group_members WHERE person_id = ?", (person.id,)
        )
        memberships = [(row["group_name"], row["state"]) for row in await cursor.fetchall()]
        for group, state in memberships:
            cursor = await db.execute(
                "SELECT person_id FROM group_members WHERE group_name = ? AND state = 'active'"
                " AND person_id != ?",
                (group, person.id),
            )
            remaining = [row["person_id"] for row in await cursor.fetchall()]
            if state == "active" and not remaining:
                raise MembershipError(
                    f"{person.email} is the last member of {group}; add and approve another "
                    "member first, or its cases become unreadable"
                )
            await db.execute(
                "DELETE FROM group_key_seals WHERE group_name = ? AND person_id = ?",
                (group, person.id),
            )
            await db.execute(
                "DELETE FROM group_members WHERE group_name = ? AND person_id = ?",
                (group, person.id),
            )
            if state != "active":
                continue
            if (
                await group_private_key(db, remover, group, await _current_version(db, group))
                is None
            ):
                raise NotEntitled(
                    f"{remover.email} does not hold the {group} key; a {group} member must do this"
                )
            new_version = await _current_version(db, group) + 1
            new_private = X25519PrivateKey.generate()
            public_raw = crypto.raw_public_bytes(new_private.public_key())
            await db.execute(
                "INSERT INTO group_keys (group_name, version, public_key, created_at, signer_id,"
                " signature) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    group,
                    new_version,
                    public_raw,
                    iso(now),
                    remover.id,
                    remover.sign(group_key_message(group, new_version, public_raw)),
                ),
            )
            await db.execute(
                "UPDATE groups SET current_version = ? WHERE name = ?", (new_version, group)
            )
            for member_id in remaining:
                member = await person_by_id(db, member_id)
                await _check_key(db, member)
                await db.execute(
                    "INSERT INTO group_key_seals (group_name, version, person_id, sealed)"
                    " VALUES (?, ?, ?, ?)",
                    (
                        group,
                        new_version,
                        member_id,
                        _seal_group_key(group, new_version, new_private, member),
                    ),
                )
            rotated.append(group)
        await db.execute(
            "DELETE FROM key_wraps WHERE recipient_kind = 'person' AND recipient = ?", (person.id,)
        )
        await db.execute("UPDATE people SET removed_at = ? WHERE id = ?", (iso(now), person.id))
        await audit.append(
            db,
            [
                audit.AuditEvent(
                    actor=remover.email,
                    action="person-removed",
                    detail={"person": person.id, "rotated": rotated},
                )
            ],
        )
    return rotated


async def _current_version(db: aiosqlite.Connection, group: str) -> int:
    cursor = await db.execute("SELECT current_version FROM groups WHERE name = ?", (group,))
    row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"no group {group}")
    return int(row["current_version"])


__all__ = [
    "ADDS_PEOPLE",
    "WHISTLE_IDENTITY",
    "GroupKey",
    "Identity",
    "Person",
    "PublicKeyring",
    "add_first_person",
    "add_person",
    "approve_member",
    "find_person",
    "group_key_message",
    "group_private_key",
    "groups_for_role",
    "held_group_keys",
    "list_people",
    "remove_person",
    "unlock",
]
