"""The trust model in the core: signed group public keys and each case's manifest.

Someone who can write the store file (but holds nobody's passphrase) tries two things: swap a
group's public key for their own, so later cases are sealed to them; and remove or alter a case's
record behind sgalert's back (triggers dropped, raw SQL). The first must be refused and raised
as a system alert, with nothing lost; the second must be named by ``audit verify``.
"""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import aiosqlite
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sgalert.cli.context import ENV_PASSPHRASE, Context
from sgalert.cli.main import _parser
from sgalert.errors import AuditChainBroken, IntegrityError, NoEntitledReaders, NotEntitled
from sgalert.model import Role, Source
from sgalert.records import audit, crypto, keytrust
from sgalert.records.cases import batch_key_info
from sgalert.records.keyring import group_key_message, remove_person
from sgalert.records.keytrust import KeyTrust, group_key_statuses, sign_group_keys
from sgalert.records.migrations import MIGRATIONS
from sgalert.records.store import Store, split_statements
from sgalert.workspace import CONFIG_NAME, STORE_NAME, Workspace

from .conftest import PASSPHRASES, Team, add_member, encompass_case, whistle_case


def _raw(path: Path) -> sqlite3.Connection:
    """The store as a tool that ignores sgalert would open it: no foreign keys, autocommit."""
    return sqlite3.connect(path, isolation_level=None)


def _swap_group_key(path: Path, group: str) -> X25519PrivateKey:
    """Replace a group's current public key with one the attacker holds the private half of."""
    attacker = X25519PrivateKey.generate()
    with closing(_raw(path)) as db:
        db.execute("DROP TRIGGER IF EXISTS group_keys_no_swap")
        db.execute(
            "UPDATE group_keys SET public_key = ? WHERE group_name = ?"
            " AND version = (SELECT current_version FROM groups WHERE name = ?)",
            (crypto.raw_public_bytes(attacker.public_key()), group, group),
        )
    return attacker


def _attacker_can_open(path: Path, case_id: str, attacker: X25519PrivateKey) -> bool:
    """Whether any batch key of the case opens with the attacker's private key."""
    with closing(_raw(path)) as db:
        rows = db.execute(
            "SELECT b.batch_id, b.group_name, b.version, b.wrapped FROM batch_keys b"
            " JOIN key_wraps w ON w.recipient_kind = 'batch' AND w.recipient = b.batch_id"
            " WHERE w.case_id = ?",
            (case_id,),
        ).fetchall()
    assert rows, "the case has no batch keys at all"
    for batch_id, group, version, wrapped in rows:
        try:
            crypto.unwrap_with_private_key(
                wrapped, attacker, batch_key_info(batch_id, group, int(version))
            )
        except InvalidTag:
            continue
        return True
    return False


def _open_alerts(path: Path) -> list[tuple[str, str]]:
    with closing(_raw(path)) as db:
        return [
            (str(kind), str(subject))
            for kind, subject in db.execute(
                "SELECT kind, source_name FROM system_alerts WHERE cleared_at IS NULL"
            )
        ]


async def _verify(store: Store) -> int:
    async with store.read() as db:
        return await audit.verify(db)


# ----- signed group keys ------------------------------------------------------------------------


async def test_a_group_key_swapped_in_the_store_is_not_sealed_to_and_raises_an_alert(
    team: Team,
) -> None:
    path = team.service.store.path
    attacker = _swap_group_key(path, "dsl")

    (stored,) = await team.service.create_cases([encompass_case()])

    assert not _attacker_can_open(path, stored.id, attacker)
    assert ("group-key-untrusted", "dsl") in _open_alerts(path)
    # Nothing lost: sealed to the groups whose keys are still good, so the deputy reads it.
    view = await team.service.open_case(team["deputy@example.org"], stored.ref)
    assert view.facts["child_name"] == "Ada Invented"
    with pytest.raises(NotEntitled):
        await team.service.open_case(team["dsl@example.org"], stored.ref)


async def test_a_case_whose_only_readers_key_is_swapped_is_held_and_alerted(team: Team) -> None:
    path = team.service.store.path
    _swap_group_key(path, "monitoring-officer")

    with pytest.raises(NoEntitledReaders, match="failed its signature check"):
        await team.service.create_cases([whistle_case()])

    # Held, not stored under the attacker's key; the alert outlives the refused transaction.
    with closing(_raw(path)) as db:
        assert db.execute("SELECT COUNT(*) FROM cases").fetchone() == (0,)
    assert ("group-key-untrusted", "monitoring-officer") in _open_alerts(path)


async def test_a_signing_key_swapped_for_a_forgers_is_not_trusted(team: Team) -> None:
    """A forger who re-signs a swapped key with a key of their own put in a member's row is
    caught by the audit log, which recorded the member's real signing key when they joined."""
    path = team.service.store.path
    attacker = X25519PrivateKey.generate()
    forger = Ed25519PrivateKey.generate()
    public_raw = crypto.raw_public_bytes(attacker.public_key())
    with closing(_raw(path)) as db:
        db.execute("DROP TRIGGER group_keys_no_swap")
        db.execute("DROP TRIGGER people_keys_no_swap")
        db.execute(
            "UPDATE group_keys SET public_key = ?, signature = ? WHERE group_name = 'dsl'",
            (public_raw, forger.sign(group_key_message("dsl", 1, public_raw))),
        )
        db.execute(
            "UPDATE people SET ed25519_public = ? WHERE email = 'dsl@example.org'",
            (crypto.raw_public_bytes(forger.public_key()),),
        )

    (stored,) = await team.service.create_cases([encompass_case()])

    assert not _attacker_can_open(path, stored.id, attacker)
    async with team.service.store.read() as db:
        (dsl,) = [s for s in await group_key_statuses(db) if s.group == "dsl"]
    assert dsl.trust is KeyTrust.UNTRUSTED
    assert "audit log" in dsl.reason


async def test_a_rotated_key_is_signed_by_the_remover(team: Team) -> None:
    await add_member(team, "dsl2@example.org", Role.DSL, "dsl@example.org")
    await remove_person(team.service.store, team["dsl@example.org"], "dsl2@example.org")

    async with team.service.store.read() as db:
        statuses = {s.group: s for s in await group_key_statuses(db)}
    assert statuses["dsl"].version == 2
    assert {s.trust for s in statuses.values()} == {KeyTrust.SIGNED}


# ----- the manifest -----------------------------------------------------------------------------


async def test_a_chronology_entry_deleted_behind_the_triggers_fails_audit_verify(
    team: Team,
) -> None:
    (case, other) = await team.service.create_cases([encompass_case(), encompass_case("Bo")])
    entry = await team.service.add_note(team["dsl@example.org"], case.ref, "Spoke to the class.")
    await team.service.add_note(team["dsl@example.org"], other.ref, "Nothing to add.")
    assert await _verify(team.service.store) > 0

    with closing(_raw(team.service.store.path)) as db:
        db.execute("DROP TRIGGER IF EXISTS chronology_no_delete")
        db.execute("DELETE FROM chronology WHERE id = ?", (entry,))

    with pytest.raises(AuditChainBroken) as broken:
        await _verify(team.service.store)
    message = str(broken.value)
    assert message.startswith(f"case {case.ref}: ")
    assert other.ref not in message
    assert "Spoke" not in message and "\n" not in message


async def test_a_sealed_field_edited_or_added_is_detected(team: Team) -> None:
    (case,) = await team.service.create_cases([encompass_case()])
    path = team.service.store.path
    with closing(_raw(path)) as db:
        db.execute("DROP TRIGGER IF EXISTS sealed_fields_no_update")
        (blob,) = db.execute(
            "SELECT blob FROM sealed_fields WHERE case_id = ? AND field = 'body_text'", (case.id,)
        ).fetchone()
        tampered = bytes(blob[:-1]) + bytes([blob[-1] ^ 1])
        db.execute(
            "UPDATE sealed_fields SET blob = ? WHERE case_id = ? AND field = 'body_text'",
            (tampered, case.id),
        )
    with pytest.raises(AuditChainBroken, match=f"case {case.ref}: .*no longer match"):
        await _verify(team.service.store)

    with closing(_raw(path)) as db:  # put it back, then slip in a field of the attacker's own
        db.execute(
            "UPDATE sealed_fields SET blob = ? WHERE case_id = ? AND field = 'body_text'",
            (blob, case.id),
        )
    await _verify(team.service.store)
    with closing(_raw(path)) as db:
        db.execute(
            "INSERT INTO sealed_fields (case_id, field, key_name, blob) VALUES (?, 'x', 'content',"
            " x'00')",
            (case.id,),
        )
    with pytest.raises(AuditChainBroken, match=f"case {case.ref}: "):
        await _verify(team.service.store)


async def test_every_way_sgalert_writes_a_record_keeps_the_manifest(team: Team) -> None:
    dsl = team["dsl@example.org"]
    (case,) = await team.service.create_cases([encompass_case()])
    note = await team.service.add_note(dsl, case.ref, "First note.")
    await team.service.add_note(dsl, case.ref, "Corrected note.", corrects=note)
    await team.service.record_decision(dsl, case.ref, "Monitor.", "No further harm reported.")
    await team.service.refer(dsl, case.ref, "lado", "Asked for advice.")
    await team.service.close_case(dsl, case.ref, "Closed: no action.", "Resolved at school.")
    await team.service.record_manual_case(
        dsl, Source.ENCOMPASS, facts={"child_name": "Cy"}, body_text="By phone.", caller="PC Ex"
    )
    assert await _verify(team.service.store) > 0


# ----- upgrading a store from before signing and manifests --------------------------------------


def _as_version_9(source: Path, target: Path) -> None:
    """A store at schema 9 holding ``source``'s rows: what an existing workspace looks like."""
    with closing(_raw(target)) as db:
        for number, script in MIGRATIONS:
            if number > 9:
                break
            for statement in split_statements(script):
                db.execute(statement)
        db.execute("PRAGMA user_version = 9")
        db.execute("ATTACH DATABASE ? AS old", (str(source),))
        tables = [
            str(r[0])
            for r in db.execute(
                "SELECT name FROM main.sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%'"
            )
        ]
        for table in tables:
            columns = ", ".join(str(r[1]) for r in db.execute(f"PRAGMA main.table_info({table})"))
            db.execute(f"INSERT INTO main.{table} ({columns}) SELECT {columns} FROM old.{table}")
        db.execute("DETACH DATABASE old")


async def test_an_upgraded_store_accepts_its_keys_as_legacy_until_a_member_signs_them(
    team: Team, tmp_path: Path
) -> None:
    (case,) = await team.service.create_cases([encompass_case()])
    await team.service.add_note(team["dsl@example.org"], case.ref, "Before the upgrade.")
    old = tmp_path / "old.db"
    _as_version_9(team.service.store.path, old)

    async with await Store.open(old) as store:
        async with store.read() as db:
            statuses = await group_key_statuses(db)
        assert {s.trust for s in statuses} == {KeyTrust.LEGACY}
        assert await _verify(store) > 0  # the upgrade recorded every case's manifest

        signed, remaining = await sign_group_keys(store, team["dsl@example.org"])
        assert signed == ["dsl"]
        assert "deputy" in remaining
        async with store.read() as db:
            trust = {s.group: s.trust for s in await group_key_statuses(db)}
        assert trust["dsl"] is KeyTrust.SIGNED and trust["deputy"] is KeyTrust.LEGACY

        # A record row removed after the upgrade is caught like any other.
        with closing(_raw(old)) as db:
            db.execute("DROP TRIGGER chronology_no_delete")
            db.execute("DELETE FROM chronology WHERE case_id = ?", (case.id,))
        with pytest.raises(AuditChainBroken, match=f"case {case.ref}: "):
            await _verify(store)


async def test_a_legacy_key_swapped_after_the_upgrade_is_refused_and_never_signed(
    team: Team, tmp_path: Path
) -> None:
    old = tmp_path / "old.db"
    _as_version_9(team.service.store.path, old)
    async with await Store.open(old):
        pass
    _swap_group_key(old, "deputy")

    async with await Store.open(old) as store:
        async with store.read() as db:
            trust = {s.group: s.trust for s in await group_key_statuses(db)}
        assert trust["deputy"] is KeyTrust.UNTRUSTED and trust["dsl"] is KeyTrust.LEGACY
        with pytest.raises(IntegrityError, match="deputy is not the key its members hold"):
            await sign_group_keys(store, team["deputy@example.org"])


async def test_the_trust_lookups_use_the_audit_index(team: Team) -> None:
    """The keyring reads the few entries that vouch for keys, not the whole audit log."""
    async with aiosqlite.connect(team.service.store.path) as db:
        plan = await db.execute_fetchall(f"EXPLAIN QUERY PLAN {keytrust._VOUCHING}")
    assert any("audit_trust" in str(row[-1]) for row in plan), plan


async def _command(root: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    args = _parser().parse_args(["--workspace", str(root), *argv])
    code = await args.handler(Context(args))
    return int(code), capsys.readouterr().out


async def test_audit_verify_warns_of_legacy_keys_until_keys_sign(
    team: Team,
    workspace: Workspace,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await team.service.create_cases([encompass_case()])
    root = tmp_path / "upgraded"
    root.mkdir()
    shutil.copy(workspace.config_path, root / CONFIG_NAME)
    _as_version_9(team.service.store.path, root / STORE_NAME)

    code, out = await _command(root, capsys, "audit", "verify")
    assert code == 0, out
    assert "every case's sealed fields and chronology match" in out
    assert "warning: dsl key (version 1): legacy, unsigned" in out

    monkeypatch.setenv(ENV_PASSPHRASE, PASSPHRASES["dsl@example.org"])
    code, out = await _command(root, capsys, "keys", "sign", "--as", "dsl@example.org")
    assert code == 0 and out.startswith("signed the keys of dsl\n"), out

    code, out = await _command(root, capsys, "keys", "status")
    assert "dsl key (version 1): signed by a current member" in out
    assert "deputy key (version 1): legacy, unsigned" in out
    assert code == 0

    _swap_group_key(root / STORE_NAME, "head")
    code, out = await _command(root, capsys, "audit", "verify")
    assert code == 1
    assert "warning: head key (version 1): NOT TRUSTED" in out
