"""Person public keys are authenticated (issue 13, the gap left after signed group keys).

Someone who can write the store file swaps a person's X25519 public key for one of their own:
the next grant, membership or group-key rotation would be sealed to them. Each must be refused
in one line, with nothing sealed to the new key, a system alert raised and the refusal audited.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sgalert.desk.service import CaseService
from sgalert.errors import IntegrityError
from sgalert.model import Role
from sgalert.records import audit, crypto
from sgalert.records.keyring import add_person, approve_member, remove_person
from sgalert.records.migrations import MIGRATIONS
from sgalert.records.personkeys import KEY_RECORDED, vouched_now
from sgalert.records.store import Store, on_connection, split_statements

from .cli_helpers import sgalert_cli
from .conftest import PASSPHRASES, TEST_KDF, Team, add_member, whistle_case

DSL, MO, DEPUTY = "dsl@example.org", "mo@example.org", "deputy@example.org"


def _raw(path: Path) -> sqlite3.Connection:
    """The store as a tool that ignores sgalert would open it: autocommit, triggers dropped."""
    return sqlite3.connect(path, isolation_level=None)


def _swap_person_key(path: Path, email: str) -> bytes:
    """Replace a person's X25519 public key with the attacker's; returns the attacker's."""
    attacker = crypto.raw_public_bytes(X25519PrivateKey.generate().public_key())
    with closing(_raw(path)) as db:
        db.execute("DROP TRIGGER IF EXISTS people_keys_no_swap")
        db.execute("UPDATE people SET x25519_public = ? WHERE email = ?", (attacker, email))
    return attacker


def _person_id(path: Path, email: str) -> str:
    with closing(_raw(path)) as db:
        return str(db.execute("SELECT id FROM people WHERE email = ?", (email,)).fetchone()[0])


def _wraps_to(path: Path, person_id: str) -> int:
    with closing(_raw(path)) as db:
        wraps = db.execute(
            "SELECT COUNT(*) FROM key_wraps WHERE recipient_kind = 'person' AND recipient = ?",
            (person_id,),
        ).fetchone()[0]
        seals = db.execute(
            "SELECT COUNT(*) FROM group_key_seals WHERE person_id = ?", (person_id,)
        ).fetchone()[0]
    return int(wraps) + int(seals)


def _alerted(path: Path, person_id: str) -> bool:
    with closing(_raw(path)) as db:
        row = db.execute(
            "SELECT 1 FROM system_alerts WHERE kind = 'person-key-untrusted' AND source_name = ?"
            " AND cleared_at IS NULL",
            (person_id,),
        ).fetchone()
        refused = db.execute(
            "SELECT COUNT(*) FROM audit WHERE action = 'person-key-refused'"
            " AND json_extract(detail, '$.person') = ?",
            (person_id,),
        ).fetchone()[0]
    return row is not None and int(refused) >= 1


async def test_a_grant_to_a_person_whose_key_was_swapped_is_refused_and_alerted(
    team: Team,
) -> None:
    path = team.service.store.path
    (stored,) = await team.service.create_cases([whistle_case()])
    dsl_id = _person_id(path, DSL)
    before = _wraps_to(path, dsl_id)
    _swap_person_key(path, DSL)

    with pytest.raises(IntegrityError, match=f"public key on file for {DSL} is not the one"):
        await team.service.grant(team[MO], stored.ref, DSL)

    assert _wraps_to(path, dsl_id) == before  # nothing wrapped to the attacker's key
    with closing(_raw(path)) as db:
        granted = db.execute("SELECT COUNT(*) FROM audit WHERE action = 'access-granted'")
        assert granted.fetchone() == (0,)
    assert _alerted(path, dsl_id)
    # Everyone else is unaffected: the monitoring officer still grants to the deputy.
    await team.service.grant(team[MO], stored.ref, DEPUTY)


async def test_grant_on_the_command_line_is_one_clear_line(team: Team) -> None:
    path = team.service.store.path
    (stored,) = await team.service.create_cases([whistle_case()])
    _swap_person_key(path, DSL)
    argv = ("grant", stored.ref, "--to", DSL, "--as", MO)
    result = await asyncio.to_thread(sgalert_cli, path.parent, *argv, passphrase=PASSPHRASES[MO])
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        f"sgalert: the public key on file for {DSL} is not the one the audit log recorded for"
        " them: it was replaced in the store, so nothing was sealed to it; keep the store as"
        " evidence and tell the head\n"
    )
    assert _alerted(path, _person_id(path, DSL))


async def test_revoking_rotates_only_to_keys_the_audit_log_vouches_for(team: Team) -> None:
    """A revoke rewraps the case's new key to every other grantee: never to a swapped key."""
    path = team.service.store.path
    (stored,) = await team.service.create_cases([whistle_case()])
    await team.service.grant(team[MO], stored.ref, DSL)
    await team.service.grant(team[MO], stored.ref, DEPUTY)
    _swap_person_key(path, DEPUTY)
    deputy_id = _person_id(path, DEPUTY)
    before = _wraps_to(path, deputy_id)

    with pytest.raises(IntegrityError, match=f"public key on file for {DEPUTY}"):
        await team.service.revoke(team[MO], stored.ref, DSL)
    assert _wraps_to(path, deputy_id) == before
    assert _alerted(path, deputy_id)


async def test_a_membership_is_not_sealed_to_a_swapped_key(team: Team) -> None:
    path = team.service.store.path
    await add_person(
        team.service.store,
        by=team[DSL],
        name="Second Example",
        email="dsl2@example.org",
        role=Role.DSL,
        passphrase="dsl2@example.org-passphrase",
        kdf=TEST_KDF,
    )
    newcomer = _person_id(path, "dsl2@example.org")
    _swap_person_key(path, "dsl2@example.org")

    with pytest.raises(IntegrityError, match="public key on file for dsl2@example.org"):
        await approve_member(team.service.store, team[DSL], "dsl2@example.org")
    assert _wraps_to(path, newcomer) == 0
    assert _alerted(path, newcomer)


async def test_a_group_key_rotation_is_not_sealed_to_a_swapped_key(team: Team) -> None:
    path = team.service.store.path
    await add_member(team, "dsl2@example.org", Role.DSL, DSL)
    await add_member(team, "dsl3@example.org", Role.DSL, DSL)
    second = _person_id(path, "dsl2@example.org")
    before = _wraps_to(path, second)
    _swap_person_key(path, "dsl2@example.org")

    with pytest.raises(IntegrityError, match="public key on file for dsl2@example.org"):
        await remove_person(team.service.store, team[DSL], "dsl3@example.org")
    assert _wraps_to(path, second) == before  # no new group key version sealed to it
    with closing(_raw(path)) as db:  # the removal was rolled back with it
        assert db.execute(
            "SELECT removed_at FROM people WHERE email = 'dsl3@example.org'"
        ).fetchone() == (None,)


async def test_keys_are_never_changed_by_a_plain_update(team: Team) -> None:
    with closing(_raw(team.service.store.path)) as db, pytest.raises(sqlite3.IntegrityError):
        db.execute("UPDATE people SET x25519_public = x'00' WHERE email = ?", (DSL,))


# ----- upgrading a store whose people predate recorded public keys ------------------------------


def _as_version_11(source: Path, target: Path) -> None:
    """A store at schema 11 holding ``source``'s rows, its audit log as version 11 wrote it
    (``person-added`` without the public key), its chain rebuilt."""
    with closing(_raw(target)) as db:
        for number, script in MIGRATIONS:
            if number > 11:
                break
            for statement in split_statements(script):
                db.execute(statement)
        db.execute("PRAGMA user_version = 11")
        db.execute("ATTACH DATABASE ? AS old", (str(source),))
        tables = [
            str(r[0])
            for r in db.execute(
                "SELECT name FROM main.sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%' AND name != 'audit'"
            )
        ]
        for table in tables:
            columns = ", ".join(str(r[1]) for r in db.execute(f"PRAGMA main.table_info({table})"))
            db.execute(f"INSERT INTO main.{table} ({columns}) SELECT {columns} FROM old.{table}")
        events = []
        for actor, action, case_id, detail in db.execute(
            "SELECT actor, action, case_id, detail FROM old.audit ORDER BY seq"
        ).fetchall():
            data = json.loads(detail)
            data.pop("public_key", None) if action == "person-added" else None
            events.append(audit.AuditEvent(actor, action, case_id, data))
        db.execute("DETACH DATABASE old")
        audit.append_now(db, events)


async def test_an_upgraded_store_records_each_persons_key_and_checks_it_from_then_on(
    team: Team, tmp_path: Path
) -> None:
    (stored,) = await team.service.create_cases([whistle_case()])
    old = tmp_path / "old.db"
    _as_version_11(team.service.store.path, old)
    with closing(_raw(old)) as db:
        assert vouched_now(db).public == {}  # what version 11 knew: nothing

    async with await Store.open(old) as store, store.read() as db:
        vouched = await on_connection(db, vouched_now)
        assert await audit.verify(db) > 0
    async with await Store.open(old):
        pass  # opening again records nothing more
    with closing(_raw(old)) as db:
        count = db.execute("SELECT COUNT(*) FROM audit WHERE action = ?", (KEY_RECORDED,))
        assert count.fetchone() == (len(vouched.public),) == (6,)

    _swap_person_key(old, DSL)
    async with await Store.open(old) as store:
        service = CaseService(store, None)
        with pytest.raises(IntegrityError, match=f"public key on file for {DSL}"):
            await service.grant(team[MO], stored.ref, DSL)
        await service.grant(team[MO], stored.ref, DEPUTY)  # a key recorded at the upgrade


async def test_keys_status_names_a_person_whose_key_was_swapped(team: Team) -> None:
    path = team.service.store.path
    shown = await asyncio.to_thread(sgalert_cli, path.parent, "keys", "status")
    assert shown.returncode == 0, shown.stderr
    assert "people's public keys: each is the one the audit log recorded" in shown.stdout
    _swap_person_key(path, DSL)
    shown = await asyncio.to_thread(sgalert_cli, path.parent, "keys", "status")
    assert shown.returncode == 1
    assert f"{DSL}'s public key: NOT TRUSTED" in shown.stdout
