"""The case record and state changes: signed entries, corrections, acknowledgement, closure."""

from __future__ import annotations

import json

import pytest

from sgalert.errors import IllegalTransition, InvalidInput, NotEntitled
from sgalert.model import CaseState, Role
from sgalert.records import audit, crypto
from sgalert.records.cases import field_aad
from sgalert.records.chronology import EntryKind

from .conftest import Team, add_member, encompass_case


async def test_note_is_timed_attributed_and_signed(team: Team) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    entry_id = await team.service.add_note(
        team["deputy@example.org"], stored.ref, 'Ada said: "I hid under the bed."'
    )
    view = await team.service.open_case(team["dsl@example.org"], stored.ref)
    (entry,) = view.chronology
    assert entry.id == entry_id
    assert entry.author.email == "deputy@example.org"
    assert entry.text == 'Ada said: "I hid under the bed."'
    assert entry.signature_valid


async def test_altered_entry_shows_signature_invalid(team: Team) -> None:
    """A reader holding the data key re-seals altered words: the signature catches it."""
    (stored,) = await team.service.create_cases([encompass_case()])
    entry_id = await team.service.add_note(team["dsl@example.org"], stored.ref, "Spoke to Ada.")
    store = team.service.store
    async with store.write() as db:
        from sgalert.records.cases import unwrap_data_keys

        keys = await unwrap_data_keys(db, team["head@example.org"], [stored.id])
        key = keys[(stored.id, "content")]
        cursor = await db.execute("SELECT blob FROM chronology WHERE id = ?", (entry_id,))
        row = await cursor.fetchone()
        assert row is not None
        aad = field_aad(stored.id, f"chronology/{entry_id}", "content")
        sealed = json.loads(crypto.aead_open(key, row[0], aad))
        sealed["payload"]["text"] = "Did not speak to Ada."
        forged = crypto.aead_seal(key, crypto.canonical_json(sealed), aad)
        await db.execute("DROP TRIGGER chronology_no_update")
        await db.execute("UPDATE chronology SET blob = ? WHERE id = ?", (forged, entry_id))
    view = await team.service.open_case(team["dsl@example.org"], stored.ref)
    (entry,) = view.chronology
    assert entry.text == "Did not speak to Ada."
    assert entry.signature_valid is False


async def test_entries_cannot_be_edited_in_place(team: Team) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    entry_id = await team.service.add_note(team["dsl@example.org"], stored.ref, "First words.")
    with pytest.raises(Exception, match="never edited"):
        async with team.service.store.write() as db:
            await db.execute("UPDATE chronology SET kind = 'note' WHERE id = ?", (entry_id,))


async def test_correction_points_to_the_original_which_stays(team: Team) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    original = await team.service.add_note(team["dsl@example.org"], stored.ref, "Met at 15:00.")
    fix = await team.service.add_note(
        team["dsl@example.org"], stored.ref, "Correction: met at 16:00.", corrects=original
    )
    view = await team.service.open_case(team["dsl@example.org"], stored.ref)
    assert [e.id for e in view.chronology] == [original, fix]
    assert view.chronology[0].text == "Met at 15:00."
    assert view.chronology[1].corrects == original


async def test_acknowledge_once_then_close_with_outcome(team: Team) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    summary = await team.service.acknowledge(team["dsl@example.org"], stored.ref)
    assert summary.state is CaseState.ACKNOWLEDGED
    assert summary.acknowledged_by == "dsl@example.org"
    with pytest.raises(IllegalTransition, match="already acknowledged by dsl@example.org"):
        await team.service.acknowledge(team["deputy@example.org"], stored.ref)

    await team.service.record_decision(
        team["dsl@example.org"], stored.ref, "Monitor in class", "No disclosure; known to school"
    )
    closed = await team.service.close_case(
        team["dsl@example.org"], stored.ref, "Monitored, no further action", "Settled in class"
    )
    assert closed.state is CaseState.CLOSED
    view = await team.service.open_case(team["dsl@example.org"], stored.ref)
    kinds = [(e.kind, e.text, e.reason) for e in view.chronology]
    assert kinds == [
        (EntryKind.DECISION, "Monitor in class", "No disclosure; known to school"),
        (EntryKind.OUTCOME, "Monitored, no further action", "Settled in class"),
    ]
    with pytest.raises(IllegalTransition):
        await team.service.close_case(team["dsl@example.org"], stored.ref, "again", "again")
    with pytest.raises(IllegalTransition):
        await team.service.acknowledge(team["dsl@example.org"], stored.ref)


async def test_closing_an_unacknowledged_case_records_who_acknowledged(team: Team) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    closed = await team.service.close_case(
        team["deputy@example.org"], stored.ref, "Duplicate of a phoned notice", "Same incident"
    )
    assert closed.acknowledged_by == "deputy@example.org"


async def test_decision_and_close_need_their_reasons(team: Team) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    with pytest.raises(InvalidInput):
        await team.service.record_decision(team["dsl@example.org"], stored.ref, "Refer", " ")
    with pytest.raises(InvalidInput):
        await team.service.close_case(team["dsl@example.org"], stored.ref, "Done", "")


async def test_assign_only_to_entitled_people(team: Team) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    summary = await team.service.assign(team["dsl@example.org"], stored.ref, "deputy@example.org")
    assert summary.assignee == "deputy@example.org"
    with pytest.raises(NotEntitled, match="staff@example.org"):
        await team.service.assign(team["dsl@example.org"], stored.ref, "staff@example.org")
    await add_member(team, "dsl2@example.org", Role.DSL, "dsl@example.org")
    summary = await team.service.assign(team["dsl@example.org"], stored.ref, "dsl2@example.org")
    assert summary.assignee == "dsl2@example.org"


async def test_actions_by_people_not_entitled_are_refused_and_audited(team: Team) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    staff = team["staff@example.org"]
    for action in (
        team.service.acknowledge(staff, stored.ref),
        team.service.add_note(staff, stored.ref, "I should not be here"),
        team.service.close_case(staff, stored.ref, "x", "y"),
    ):
        with pytest.raises(NotEntitled):
            await action
    async with team.service.store.read() as db:
        entries = await audit.entries(db, case_id=stored.id)
    assert sorted(e.detail["action"] for e in entries if e.action == "refused") == [
        "acknowledge",
        "close",
        "note-added",
    ]
    summary = await team.service.summary(stored.ref)
    assert summary.state is CaseState.NEW


async def test_manual_entry_is_sealed_routed_and_signed(team: Team) -> None:
    stored = await team.service.record_manual_case(
        team["dsl@example.org"],
        source=encompass_case().source,
        facts={"child_name": "Dot Invented", "police_reference": "EX/1/26"},
        body_text="Phoned in by the police at 21:40.",
        caller="PC 0000, Example Constabulary",
    )
    summary = await team.service.summary(stored.ref)
    assert "manual-entry" in summary.flags and summary.state is CaseState.NEW
    view = await team.service.open_case(team["head@example.org"], stored.ref)
    assert view.facts["child_name"] == "Dot Invented"
    (entry,) = view.chronology
    assert entry.kind is EntryKind.CASE_RECORDED and entry.signature_valid
    assert entry.author.email == "dsl@example.org"


async def test_references_count_up_per_year(team: Team) -> None:
    stored = await team.service.create_cases([encompass_case() for _ in range(3)])
    assert [s.ref for s in stored] == ["SG-2026-0001", "SG-2026-0002", "SG-2026-0003"]
    (more,) = await team.service.create_cases([encompass_case()])
    assert more.ref == "SG-2026-0004"
    by_id = await team.service.summary(stored[1].id)
    assert by_id.ref == "SG-2026-0002"
    assert (await team.service.summary("sg-2026-0002")).id == stored[1].id
