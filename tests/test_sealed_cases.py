"""Sealing and opening cases: entitlement, integrity, the engine's public-key-only path."""

from __future__ import annotations

import pytest

from sgalert.desk.service import CaseService
from sgalert.errors import IntegrityError, NoEntitledReaders, NotEntitled
from sgalert.model import Role
from sgalert.records import audit
from sgalert.records.cases import insert_sealed, seal_cases
from sgalert.records.keytrust import load_public_keyring

from .conftest import Team, add_member, encompass_case, whistle_case


async def test_round_trip_for_every_entitled_reader(team: Team) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    for email in ("dsl@example.org", "deputy@example.org", "head@example.org"):
        view = await team.service.open_case(team[email], stored.ref)
        assert view.facts["child_name"] == "Ada Invented"
        assert view.body_text == "Child present at an incident."
        assert [a.filename for a in view.attachments] == ["notice.pdf"]
        assert view.reporter is None


async def test_case_created_with_public_keys_only_is_readable(team: Team) -> None:
    async with team.service.store.read() as db:
        ring = await load_public_keyring(db)
    # The engine's keyring holds public keys and versions, nothing that could decrypt.
    assert set(ring.groups) >= {"dsl", "deputy", "head", "monitoring-officer", "chair"}
    for key in ring.groups.values():
        assert not hasattr(key.public_key, "exchange")
    assert team.service.config is not None
    sealed = seal_cases([encompass_case(child="Bea Invented")], ring, team.service.config.readers)
    async with team.service.store.write() as db:
        (stored,) = await insert_sealed(db, sealed, audit.ENGINE)
    for email in ("dsl@example.org", "deputy@example.org", "head@example.org"):
        view = await team.service.open_case(team[email], stored.ref)
        assert view.facts["child_name"] == "Bea Invented"


async def test_staff_and_chair_cannot_read_encompass(team: Team) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    for email in ("staff@example.org", "chair@example.org", "mo@example.org"):
        # Answered as a missing case is: the reference is confirmed to nobody who may not read it.
        with pytest.raises(NotEntitled, match="^no such case, or you are not entitled to it$"):
            await team.service.open_case(team[email], stored.ref)


async def test_dsl_refused_whistle_case_and_refusal_is_audited(team: Team) -> None:
    (stored,) = await team.service.create_cases([whistle_case()])
    with pytest.raises(NotEntitled):
        await team.service.open_case(team["dsl@example.org"], stored.ref)
    async with team.service.store.read() as db:
        entries = await audit.entries(db, case_id=stored.id)
    refusals = [e for e in entries if e.action == "refused"]
    assert len(refusals) == 1
    assert refusals[0].actor == "dsl@example.org"
    assert refusals[0].detail == {"action": "read"}

    view = await team.service.open_case(team["mo@example.org"], stored.ref)
    assert view.facts["allegation"].startswith("Invented allegation")
    assert view.reporter == {"name": "Riley Reporter", "address": "riley@example.org"}


async def test_investigator_granted_the_allegation_never_sees_the_reporter(team: Team) -> None:
    (stored,) = await team.service.create_cases([whistle_case()])
    await team.service.grant(team["mo@example.org"], stored.ref, "staff@example.org")
    view = await team.service.open_case(team["staff@example.org"], stored.ref)
    assert view.facts["allegation"].startswith("Invented allegation")
    assert view.reporter is None


async def test_only_the_identity_compartment_sees_the_reporter(team: Team) -> None:
    # A second monitoring officer joins the role and, through approval, the compartment.
    second = await add_member(team, "mo2@example.org", Role.MONITORING_OFFICER, "mo@example.org")
    (stored,) = await team.service.create_cases([whistle_case()])
    view = await team.service.open_case(second, stored.ref)
    assert view.reporter is not None and view.reporter["name"] == "Riley Reporter"


async def test_allegation_about_head_goes_to_chair_and_mo_not_head(team: Team) -> None:
    (stored,) = await team.service.create_cases([whistle_case(about_head=True)])
    chair_view = await team.service.open_case(team["chair@example.org"], stored.ref)
    assert chair_view.facts["allegation"].startswith("Invented allegation")
    await team.service.open_case(team["mo@example.org"], stored.ref)
    with pytest.raises(NotEntitled):
        await team.service.open_case(team["head@example.org"], stored.ref)


async def test_flipped_byte_fails_integrity_naming_the_case(team: Team) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    async with team.service.store.write() as db:
        cursor = await db.execute(
            "SELECT blob FROM sealed_fields WHERE case_id = ? AND field = 'fields'", (stored.id,)
        )
        row = await cursor.fetchone()
        assert row is not None
        blob = bytearray(row[0])
        blob[20] ^= 0x01
        # Someone with the database file itself can drop the guard; the seal must still hold.
        await db.execute("DROP TRIGGER sealed_fields_no_update")
        await db.execute(
            "UPDATE sealed_fields SET blob = ? WHERE case_id = ? AND field = 'fields'",
            (bytes(blob), stored.id),
        )
    with pytest.raises(IntegrityError, match=rf"'fields' of case {stored.ref}"):
        await team.service.open_case(team["dsl@example.org"], stored.ref)


async def test_blob_copied_to_another_case_fails_naming_that_case(team: Team) -> None:
    first, second = await team.service.create_cases(
        [encompass_case("Ada Invented"), encompass_case("Cal Invented")]
    )
    async with team.service.store.write() as db:
        await db.execute("DROP TRIGGER sealed_fields_no_update")  # as an attacker with the file
        await db.execute(
            "UPDATE sealed_fields SET blob = (SELECT blob FROM sealed_fields WHERE case_id = ?"
            " AND field = 'fields') WHERE case_id = ? AND field = 'fields'",
            (first.id, second.id),
        )
    with pytest.raises(IntegrityError, match=second.ref):
        await team.service.open_case(team["dsl@example.org"], second.ref)
    # The source case is untouched.
    view = await team.service.open_case(team["dsl@example.org"], first.ref)
    assert view.facts["child_name"] == "Ada Invented"


async def test_wrapped_key_copied_to_another_case_fails(team: Team) -> None:
    first, second = await team.service.create_cases([encompass_case(), encompass_case()])
    async with team.service.store.write() as db:
        await db.execute(
            "UPDATE key_wraps SET wrapped = (SELECT wrapped FROM key_wraps w WHERE w.case_id = ?"
            " AND w.recipient = key_wraps.recipient AND w.key_name = key_wraps.key_name)"
            " WHERE case_id = ?",
            (first.id, second.id),
        )
    with pytest.raises(IntegrityError, match=second.ref):
        await team.service.open_case(team["dsl@example.org"], second.ref)


async def test_no_key_holders_means_no_silent_unreadable_case(service: CaseService) -> None:
    with pytest.raises(NoEntitledReaders, match="sgalert user add"):
        await service.create_cases([encompass_case()])
    assert await service.list_cases() == []


async def test_metadata_listing_carries_no_content(team: Team) -> None:
    await team.service.create_cases([encompass_case(), whistle_case()])
    rows = await team.service.store.fetchall("SELECT * FROM cases")
    dumped = repr([dict(row) for row in rows])
    for secret in ("Ada Invented", "Riley", "riley@example.org", "allegation", "2017-03-14"):
        assert secret not in dumped
    audit_rows = await team.service.store.fetchall("SELECT detail FROM audit")
    assert all("Ada" not in row[0] and "Riley" not in row[0] for row in audit_rows)


async def test_bulk_open_skips_cases_out_of_reach_and_audits_each_read(team: Team) -> None:
    stored = await team.service.create_cases([encompass_case(), whistle_case(), encompass_case()])
    views = await team.service.open_cases(team["dsl@example.org"], [s.ref for s in stored])
    assert [v.summary.ref for v in views] == [stored[0].ref, stored[2].ref]
    rows = await team.service.store.fetchall(
        "SELECT case_id FROM audit WHERE action = 'case-read' AND actor = 'dsl@example.org'"
    )
    assert {row[0] for row in rows} == {stored[0].id, stored[2].id}
