"""People and keys: passphrases, group membership, approval and rotation."""

from __future__ import annotations

import time

import pytest

from sgalert.desk.service import CaseService
from sgalert.errors import (
    AlreadyExists,
    InvalidInput,
    MembershipError,
    NotEntitled,
    WrongPassphrase,
)
from sgalert.model import Role
from sgalert.records import audit
from sgalert.records.crypto import TEST_KDF, KdfParams
from sgalert.records.keyring import (
    add_first_person,
    add_person,
    approve_member,
    list_people,
    remove_person,
)

from .conftest import Team, add_member, encompass_case, store_file_bytes


async def _dsl_key_versions(team: Team, case_id: str) -> list[int]:
    """Which versions of the dsl group key a case's content key is wrapped to."""
    rows = await team.service.store.fetchall(
        "SELECT b.version FROM key_wraps w JOIN batch_keys b ON b.batch_id = w.recipient"
        " WHERE w.case_id = ? AND w.key_name = 'content' AND b.group_name = 'dsl'",
        (case_id,),
    )
    return [int(row[0]) for row in rows]


async def test_wrong_passphrase_is_refused_and_audited(team: Team) -> None:
    with pytest.raises(WrongPassphrase, match="dsl@example.org"):
        await team.service.unlock("dsl@example.org", "not-the-passphrase")
    async with team.service.store.read() as db:
        latest = (await audit.entries(db, limit=1))[0]
    assert (latest.actor, latest.action) == ("dsl@example.org", "unlock-failed")


async def test_right_passphrase_unlocks_with_real_argon2id(service: CaseService) -> None:
    await add_first_person(
        service.store,
        name="Real Kdf",
        email="real@example.org",
        role=Role.DSL,
        passphrase="a real passphrase",
    )
    started = time.perf_counter()
    identity = await service.unlock("real@example.org", "a real passphrase")
    elapsed = time.perf_counter() - started
    assert identity.email == "real@example.org" and not identity.locked
    # Informational: the default parameters are meant to cost a noticeable fraction of a second.
    assert elapsed > 0.01
    stored = await service.store.fetchall("SELECT kdf FROM people")
    params, salt = KdfParams.from_json(stored[0][0])
    assert params == KdfParams() and len(salt) == 16


async def test_private_keys_are_not_stored_in_the_clear(team: Team) -> None:
    from sgalert.records.crypto import raw_private_bytes

    raw = raw_private_bytes(team["dsl@example.org"].x25519())
    path = team.service.store.path
    assert raw not in store_file_bytes(path, path.with_name(path.name + "-wal"))


async def test_email_is_unique_and_validated(team: Team) -> None:
    with pytest.raises(AlreadyExists):
        await add_person(
            team.service.store,
            by=team["dsl@example.org"],
            name="Dup",
            email="DSL@example.org",
            role=Role.DSL,
            passphrase="unrelated-duplicate-words",
            kdf=TEST_KDF,
        )
    with pytest.raises(InvalidInput):
        await add_person(
            team.service.store,
            by=team["dsl@example.org"],
            name="Bad",
            email="not-an-email",
            role=Role.DSL,
            passphrase="unrelated-duplicate-words",
            kdf=TEST_KDF,
        )
    with pytest.raises(InvalidInput, match="at least 8"):
        await add_person(
            team.service.store,
            by=team["dsl@example.org"],
            name="Short",
            email="short@example.org",
            role=Role.DSL,
            passphrase="short",
            kdf=TEST_KDF,
        )


async def test_second_member_is_pending_until_approved(team: Team) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    await add_person(
        team.service.store,
        by=team["dsl@example.org"],
        name="New Deputy",
        email="dep2@example.org",
        role=Role.DEPUTY,
        passphrase="dep2-passphrase",
        kdf=TEST_KDF,
    )
    newcomer = await team.service.unlock("dep2@example.org", "dep2-passphrase")
    with pytest.raises(NotEntitled):
        await team.service.open_case(newcomer, stored.ref)
    people = {p.email: groups for p, groups in await list_people(team.service.store)}
    assert people["dep2@example.org"] == {"deputy": "pending"}

    # Someone outside the group cannot approve; a member can.
    with pytest.raises(NotEntitled):
        await approve_member(team.service.store, team["head@example.org"], "dep2@example.org")
    assert await approve_member(
        team.service.store, team["deputy@example.org"], "dep2@example.org"
    ) == ["deputy"]
    view = await team.service.open_case(newcomer, stored.ref)
    assert view.facts["child_name"] == "Ada Invented"


async def test_removing_a_member_rotates_the_group_key(team: Team) -> None:
    leaver = await add_member(team, "dsl2@example.org", Role.DSL, "dsl@example.org")
    (before,) = await team.service.create_cases([encompass_case()])
    rotated = await remove_person(team.service.store, team["dsl@example.org"], "dsl2@example.org")
    assert rotated == ["dsl"]
    (after,) = await team.service.create_cases([encompass_case()])
    assert await _dsl_key_versions(team, after.id) == [2]

    # The leaver's unlocked session still holds only version 1: the new case is out of reach,
    # even though their private keys are still in this process's memory.
    leaver._group_keys.clear()
    with pytest.raises(NotEntitled):
        await team.service.open_case(leaver, after.ref)
    with pytest.raises(NotEntitled, match="removed"):
        await team.service.unlock("dsl2@example.org", "dsl2@example.org-passphrase")

    # The remaining member reads both old and new cases.
    for ref in (before.ref, after.ref):
        await team.service.open_case(team["dsl@example.org"], ref)


async def test_last_member_cannot_be_removed(team: Team) -> None:
    with pytest.raises(MembershipError, match="last member of dsl"):
        await remove_person(team.service.store, team["head@example.org"], "dsl@example.org")


async def test_monitoring_officer_joins_the_identity_compartment(team: Team) -> None:
    people = {p.email: groups for p, groups in await list_people(team.service.store)}
    assert people["mo@example.org"] == {
        "monitoring-officer": "active",
        "whistle-identity": "active",
    }
    assert people["dsl@example.org"] == {"dsl": "active"}


async def test_case_sealed_before_a_rotation_is_resealed_when_stored(team: Team) -> None:
    leaver = await add_member(team, "dsl2@example.org", Role.DSL, "dsl@example.org")
    sealed = await team.service.seal([encompass_case()])
    await remove_person(team.service.store, team["dsl@example.org"], "dsl2@example.org")
    (stored,) = await team.service.store_sealed(sealed)
    assert await _dsl_key_versions(team, stored.id) == [2]
    leaver._group_keys.clear()
    with pytest.raises(NotEntitled):
        await team.service.open_case(leaver, stored.ref)
