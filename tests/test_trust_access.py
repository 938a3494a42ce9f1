"""The trust model in the core (issue 13, items 1, 2, 3, 4 and 7): who may read, be granted,
grant, revoke, be assigned, be paged, see a case in a list, and read the audit log.

Each test is an attack that worked before the access policy was one core module."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from cryptography.exceptions import InvalidTag

from sgalert.desk.views import UPKEEP, QueueQuery, QueueView
from sgalert.errors import InvalidInput, NotEntitled, NotFound
from sgalert.intake.extract import extract
from sgalert.model import Flag, KeyName, Source
from sgalert.records import crypto
from sgalert.records.cases import data_key_info, field_aad, unwrap_data_keys
from sgalert.records.entitlement import entitled_people
from sgalert.records.store import on_connection

from .conftest import Team, encompass_case, whistle_case
from .engine_helpers import VirtualClock
from .test_escalation import make_engine

DSL, DEPUTY, HEAD = "dsl@example.org", "deputy@example.org", "head@example.org"
MO, CHAIR, STAFF = "mo@example.org", "chair@example.org", "staff@example.org"


async def refusals(team: Team, actor: str) -> list[dict[str, object]]:
    rows = await team.service.store.fetchall(
        "SELECT detail FROM audit WHERE action = 'refused' AND actor = ? ORDER BY seq", (actor,)
    )
    return [json.loads(row[0]) for row in rows]


# ----- 1. an allegation about the head never reaches the head ------------------------------


@pytest.mark.parametrize("grantor", [MO, CHAIR])
async def test_an_allegation_about_the_head_cannot_be_granted_to_the_head(
    team: Team, grantor: str
) -> None:
    (stored,) = await team.service.create_cases([whistle_case(about_head=True)])
    with pytest.raises(NotEntitled):
        await team.service.grant(team[grantor], stored.ref, HEAD)
    with pytest.raises(NotEntitled):
        await team.service.open_case(team[HEAD], stored.ref)
    async with team.service.store.read() as db:
        entitled = await on_connection(db, lambda conn: entitled_people(conn, stored.id))
    assert HEAD not in entitled
    assert [r["action"] for r in await refusals(team, grantor)] == ["grant"]


async def test_the_assign_list_of_an_allegation_about_the_head_never_offers_the_head(
    team: Team,
) -> None:
    (stored,) = await team.service.create_cases([whistle_case(about_head=True)])
    offered = [p.email for p in await team.service.eligible_assignees(team[CHAIR], stored.ref)]
    assert offered == [CHAIR, MO]
    with pytest.raises(NotEntitled):
        await team.service.assign(team[CHAIR], stored.ref, HEAD)
    # An ordinary case offers the team that reads it, the head included.
    (plain,) = await team.service.create_cases([whistle_case()])
    assert [p.email for p in await team.service.eligible_assignees(team[MO], plain.ref)] == [MO]


# ----- 2. grants have limits, and can be taken back ----------------------------------------


async def test_a_granted_investigator_cannot_pass_a_whistleblowing_case_on(team: Team) -> None:
    (stored,) = await team.service.create_cases([whistle_case()])
    await team.service.grant(team[MO], stored.ref, DSL)
    with pytest.raises(NotEntitled, match="grant access"):
        await team.service.grant(team[DSL], stored.ref, STAFF)
    with pytest.raises(NotEntitled):
        await team.service.open_case(team[STAFF], stored.ref)
    assert [r["action"] for r in await refusals(team, DSL)] == ["grant"]


async def test_a_grant_carries_the_reporters_identity_only_when_the_mo_says_so(
    team: Team,
) -> None:
    (stored,) = await team.service.create_cases([whistle_case()])
    await team.service.grant(team[MO], stored.ref, DSL)
    assert (await team.service.open_case(team[DSL], stored.ref)).reporter is None
    await team.service.grant(team[MO], stored.ref, DEPUTY, with_identity=True)
    reporter = (await team.service.open_case(team[DEPUTY], stored.ref)).reporter
    assert reporter is not None and reporter["name"] == "Riley Reporter"


async def test_revoking_a_grant_shuts_the_person_out_of_what_is_written_next(team: Team) -> None:
    (stored,) = await team.service.create_cases([whistle_case()])
    await team.service.grant(team[MO], stored.ref, DSL, with_identity=True)
    await team.service.add_note(team[DSL], stored.ref, "Spoke to the invented witness.")
    async with team.service.store.read() as db:  # what the investigator could have kept
        old = await unwrap_data_keys(db, team[DSL], [stored.id])

    version = await team.service.revoke(team[MO], stored.ref, DSL)
    assert version == 1
    with pytest.raises(NotEntitled):
        await team.service.open_case(team[DSL], stored.ref)
    entry = await team.service.add_note(team[MO], stored.ref, "Investigation moved on.")

    # The revoked key opens nothing written after the revoke.
    rows = await team.service.store.fetchall("SELECT blob FROM chronology WHERE id = ?", (entry,))
    aad = field_aad(stored.id, f"chronology/{entry}", KeyName.CONTENT)
    with pytest.raises(InvalidTag):
        crypto.aead_open(old[(stored.id, KeyName.CONTENT.value)], rows[0][0], aad)
    # Those still entitled read the old and the new, signatures whole.
    view = await team.service.open_case(team[MO], stored.ref)
    assert [e.text for e in view.chronology] == [
        "Spoke to the invented witness.",
        "Investigation moved on.",
    ]
    assert all(e.signature_valid for e in view.chronology)
    assert view.reporter is not None
    # A later grant reaches every version of the key.
    await team.service.grant(team[MO], stored.ref, DEPUTY)
    later = await team.service.open_case(team[DEPUTY], stored.ref)
    assert len(later.chronology) == 2 and later.facts
    audited = await team.service.store.fetchall(
        "SELECT actor, detail FROM audit WHERE action = 'access-revoked'"
    )
    assert [(r[0], json.loads(r[1])["keys"]) for r in audited] == [(MO, ["content", "identity"])]


async def test_only_a_grantor_may_revoke_and_only_a_grant(team: Team) -> None:
    (stored,) = await team.service.create_cases([whistle_case()])
    await team.service.grant(team[MO], stored.ref, DSL)
    await team.service.grant(team[MO], stored.ref, DEPUTY)
    with pytest.raises(NotEntitled):
        await team.service.revoke(team[DSL], stored.ref, DEPUTY)
    assert (await team.service.open_case(team[DEPUTY], stored.ref)).facts
    with pytest.raises(NotFound, match="no grant"):
        await team.service.revoke(team[MO], stored.ref, STAFF)
    # A grant to someone who also reads the case by their role: revoking it would mislead.
    (plain,) = await team.service.create_cases([encompass_case()])
    await team.service.grant(team[DSL], plain.ref, HEAD)
    with pytest.raises(InvalidInput, match="through their role"):
        await team.service.revoke(team[DSL], plain.ref, HEAD)
    kept = await team.service.store.fetchall(
        "SELECT COUNT(*), MAX(version) FROM key_wraps WHERE recipient = ?", (team[HEAD].id,)
    )
    assert tuple(kept[0]) == (1, 0)  # nothing changed: the grant stands, no key rotated


# ----- 3. the about-head rule on every source ----------------------------------------------


HEAD_NAME = "Morgan Invented"  # the invented head, as [school] head_names gives them


@pytest.mark.parametrize("source", [Source.LESSON, Source.ENCOMPASS, Source.WHISTLE])
def test_a_notice_of_any_source_that_names_the_head_is_about_the_head(source: Source) -> None:
    found = extract(
        source,
        "Concern",
        f"Pupil: Ada Invented\n{HEAD_NAME} ended the lesson and shouted at the pupil.",
        [],
        zone=ZoneInfo("Europe/London"),
        head_names=(HEAD_NAME,),
    )
    assert Flag.ABOUT_HEAD in found.flags


@pytest.mark.parametrize("source", [Source.LESSON, Source.ENCOMPASS])
def test_a_notice_addressed_to_the_headteacher_is_not_about_them(source: Source) -> None:
    """Police notices open "Dear Headteacher" and lesson reports copy the head in: read for the
    title, nearly every one would be kept from the head and rerouted, so only the head's own
    names count outside an allegation (an allegation is still read for the title)."""
    body = (
        "Dear Headteacher,\nPupil: Ada Invented\nThe police attended an incident overnight."
        " The headteacher has been copied in."
    )
    found = extract(source, "Notice", body, [], zone=ZoneInfo("Europe/London"))
    assert Flag.ABOUT_HEAD not in found.flags
    allegation = extract(Source.WHISTLE, "Concern", body, [], zone=ZoneInfo("Europe/London"))
    assert Flag.ABOUT_HEAD in allegation.flags


async def test_a_concern_taken_by_phone_about_the_head_is_sealed_from_the_head_and_never_pages_them(
    team: Team,
) -> None:
    """A lesson the head ended stays with the safeguarding team, who must act on it at once; the
    chair takes the head's place; the head neither reads it nor is paged."""
    assert team.service.config is not None
    team.service.config = replace(team.service.config, head_names=(HEAD_NAME,))
    clock = VirtualClock()
    engine, email = make_engine(team, clock)
    stored = await team.service.record_manual_case(
        team[DSL],
        Source.LESSON,
        facts={"pupil": "Ada Invented"},
        body_text=f"{HEAD_NAME} ended the lesson; the pupil was upset.",
        caller="Invented Parent",
        received_at=datetime(2026, 11, 23, 9, 0, tzinfo=UTC),
    )
    summary = await team.service.summary(stored.ref, viewer=UPKEEP)
    assert Flag.ABOUT_HEAD in summary.flags
    with pytest.raises(NotEntitled):
        await team.service.open_case(team[HEAD], stored.ref)
    for reader in (DSL, CHAIR):
        opened = await team.service.open_case(team[reader], stored.ref)
        assert opened.facts == {"pupil": "Ada Invented"}
    for _ in range(4):
        await engine.tick_timers()
        clock.advance(days=1, minutes=1)
    await engine.sender.send_due()
    recipients = {r.address for _, r in email.sent}
    assert DSL in recipients and HEAD not in recipients


async def test_an_encompass_notice_about_the_head_pages_the_team_and_the_chair_not_the_head(
    team: Team,
) -> None:
    """The DSL must still know before the child arrives; the step that would page the head
    pages the chair instead."""
    clock = VirtualClock()
    engine, email = make_engine(team, clock)
    case = replace(encompass_case(), flags=frozenset({Flag.ABOUT_HEAD}))
    (stored,) = await team.service.create_cases([case])
    with pytest.raises(NotEntitled):
        await team.service.open_case(team[HEAD], stored.ref)
    assert (await team.service.open_case(team[DEPUTY], stored.ref)).facts["child_name"]
    for _ in range(6):
        await engine.tick_timers()
        clock.advance(minutes=11)
    await engine.sender.send_due()
    order = [r.address for _, r in email.sent]
    assert order[0] == DSL  # the first page, at once, to the DSL on duty
    assert CHAIR in order and HEAD not in order
    clocks = await team.service.store.fetchall(
        "SELECT kind FROM clocks WHERE case_id = ?", (stored.id,)
    )
    assert [c[0] for c in clocks] == ["encompass-before-school-day"]


async def test_a_key_wrongly_wrapped_to_the_head_still_never_pages_or_opens(team: Team) -> None:
    """Defence in depth: a grant made before the rule existed (or by hand) is ignored."""
    (stored,) = await team.service.create_cases([whistle_case(about_head=True)])
    async with team.service.store.write() as db:  # what main's unchecked grant wrote
        keys = await unwrap_data_keys(db, team[CHAIR], [stored.id])
        head = team[HEAD].person
        info = data_key_info(stored.id, KeyName.CONTENT, "person", head.id, 0)
        await db.execute(
            "INSERT INTO key_wraps VALUES (?, 'content', 'person', ?, 0, ?)",
            (
                stored.id,
                head.id,
                crypto.wrap_to_public_key(keys[(stored.id, "content")], head.x25519_public, info),
            ),
        )
        entitled = await on_connection(db, lambda conn: entitled_people(conn, stored.id))
    assert HEAD not in entitled
    with pytest.raises(NotEntitled):
        await team.service.add_note(team[HEAD], stored.ref, "Invented.")
    with pytest.raises(NotEntitled):
        await team.service.open_case(team[HEAD], stored.ref)
    assert await team.service.open_cases(team[HEAD], [stored.ref]) == []


# ----- 4. metadata does not tell the head, or anyone not entitled ---------------------------


async def test_lists_queues_and_counts_hide_confidential_cases_from_those_who_cannot_read_them(
    team: Team,
) -> None:
    await team.service.create_cases([whistle_case(about_head=True), encompass_case()])
    (plain,) = await team.service.create_cases([whistle_case()])
    for who in (HEAD, DSL, None):
        viewer = team[who] if who else None
        listed = await team.service.list_cases(viewer=viewer)
        assert [c.source for c in listed] == [Source.ENCOMPASS], who
        page = await team.service.queue_page(QueueQuery(view=QueueView.ALL), viewer=viewer)
        assert [c.source for c in page.rows] == [Source.ENCOMPASS] and page.total == 1
        counts = await team.service.queue_counts(viewer)
        assert counts[QueueView.WHISTLE] == 0 and counts[QueueView.ALL] == 1
        assert (await team.service.unacknowledged(viewer=viewer)).total == 1
    assert len(await team.service.list_cases(viewer=team[MO])) == 3  # both allegations too
    await team.service.grant(team[MO], plain.ref, DSL)
    assert len(await team.service.list_cases(viewer=team[DSL])) == 2  # now granted one
    # The audit log does not tell the head either.
    rows = await team.service.audit_log(team[HEAD])
    created = [r.entry.detail for r in rows if r.entry.action == "case-created"]
    assert created and all(d["source"] == "encompass" for d in created if d)


# ----- 7. the audit log is the DSLs' and the head's, decided in the core --------------------


@pytest.mark.parametrize("reader", [MO, CHAIR, STAFF])
async def test_the_audit_log_is_refused_to_others_and_the_refusal_is_audited(
    team: Team, reader: str
) -> None:
    with pytest.raises(NotEntitled, match="the audit log"):
        await team.service.audit_log(team[reader])
    assert [r["action"] for r in await refusals(team, reader)] == ["read-audit-log"]
    assert await team.service.audit_log(team[DSL])


async def test_a_cases_audit_trail_is_only_for_those_who_can_read_the_case(team: Team) -> None:
    (stored,) = await team.service.create_cases([whistle_case(about_head=True)])
    for outsider in (HEAD, DSL, STAFF):
        with pytest.raises(NotEntitled):
            await team.service.case_history(team[outsider], stored.id)
        assert [r["action"] for r in await refusals(team, outsider)] == ["read-history"]
    trail = await team.service.case_history(team[CHAIR], stored.id)
    assert [entry.action for entry in trail] == ["refused"] * 3 + ["case-created"]
