"""The child file: matching one child's cases inside an entitled person's decrypted view, the
merged chronology, entitlement, and an audit trail without personal data.

Every person and child here is invented.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime

import pytest

from sgalert.desk.child_file import (
    ChildFile,
    EventKind,
    Match,
    child_file,
    is_stale,
    name_key,
    parse_dob,
)
from sgalert.desk.service import CaseService
from sgalert.errors import InvalidInput, NotEntitled, NotFound
from sgalert.model import Flag, Source
from sgalert.records import audit
from sgalert.records.cases import FIELD_ATTACHMENTS, FIELD_BODY, FIELD_FACTS, NewCase

from .conftest import Team, encompass_case, whistle_case

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 10, 1, 9, 5, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def at(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def lesson_case(pupil: str) -> NewCase:
    facts = {"teacher": "Tess Teacher", "pupil": pupil, "reason": "chat message"}
    return NewCase(
        source=Source.LESSON,
        received_at=at(11, 10, 16, 5),
        origin="mailbox",
        content={
            FIELD_FACTS: json.dumps(facts).encode(),
            FIELD_BODY: b"Lesson ended after an invented chat message.",
            FIELD_ATTACHMENTS: b"[]",
        },
    )


# ----- the matching rule ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    [
        "Ada Invented",
        "  ada   INVENTED ",
        "Invented, Ada",
        "INVENTED, Ada",
        "INVENTED Ada",
        "Ada\tInvented",
        "Ada Invented\u202e",
        # An annotation after the name (issue 16) is not part of it.
        "Ada Invented (Year 4)",
        "INVENTED Ada (aged 9)",
        "Ada Invented - Y4",
        "Invented, Ada (Reception)",
    ],
)
def test_spelling_and_order_variants_share_one_key(written: str) -> None:
    assert name_key(written) == ("ada", "invented")


def test_accents_apostrophes_and_hyphens_are_folded() -> None:
    expected = ("zoe", "obrien", "smith")
    assert name_key("Zoë O'Brien-Smith") == expected
    assert name_key("Zoe OBrien Smith") == expected
    assert name_key("O\u2019BRIEN-SMITH, Zoë") == expected


@pytest.mark.parametrize(
    "other",
    [
        "Invented Ada",  # no marker says which word is the surname: kept as written
        "Ada Mary Invented",  # a middle name on one notice only
        "A Invented",  # an initial
        "Ada Invent",
        "Ada",
    ],
)
def test_conservative_where_it_could_be_another_child(other: str) -> None:
    assert name_key(other) != name_key("Ada Invented")


def test_dates_of_birth_as_extracted_or_typed() -> None:
    assert parse_dob("2017-03-14") == date(2017, 3, 14)
    assert parse_dob(" 14/03/2017 ") == date(2017, 3, 14)
    assert parse_dob("14 March 2017") == date(2017, 3, 14)
    for unusable in ("14/03/2017 or 15/03/2017", "unknown", "2017-02-30", "", None, 20170314):
        assert parse_dob(unusable) is None


# ----- against a real store -------------------------------------------------------------------


class Story:
    """Seven invented cases: four about Ada (born 14 March 2017), one about another Ada, one
    naming a pupil Ada without a date of birth, one sealed away from the DSLs."""

    def __init__(self, service: CaseService, clock: Clock) -> None:
        self.service = service
        self.clock = clock
        self.refs: dict[str, str] = {}


@pytest.fixture
async def story(team: Team) -> Story:
    clock = Clock()
    service = CaseService(team.service.store, team.service.config, clock)
    story = Story(service, clock)
    dsl, deputy = team["dsl@example.org"], team["deputy@example.org"]

    # Phoned in on 1 October, written surname first with a typed date of birth; never acknowledged.
    phoned = await service.record_manual_case(
        deputy,
        Source.ENCOMPASS,
        facts={"child_name": "INVENTED, Ada", "child_dob": "14/03/2017"},
        body_text="Police phoned: Ada present at an invented incident.",
        caller="PC Invented, Example Constabulary",
        received_at=at(10, 1, 9, 0),
    )
    story.refs["phoned"] = phoned.ref

    police_style = encompass_case("INVENTED Ada")
    police_style.received_at = at(11, 1, 23, 0)
    other_child = encompass_case("Ada Invented", child_dob="2016-01-01")
    other_child.received_at = at(11, 2, 23, 0)
    # Sealed to the chair and the monitoring officer alone: an allegation about the head that
    # names the child (an Encompass notice about the head stays with the DSLs).
    sealed_away = encompass_case("Ada Invented")
    sealed_away.source = Source.WHISTLE
    sealed_away.flags = frozenset({Flag.ABOUT_HEAD})
    sealed_away.received_at = at(11, 3, 23, 0)
    anchor = encompass_case("Ada Invented")  # received Sun 22 Nov 21:55
    stored = await service.create_cases(
        [
            police_style,
            other_child,
            sealed_away,
            lesson_case("Ada Invented"),
            anchor,
            whistle_case(),
        ]
    )
    for name, case in zip(
        ("police", "other-child", "sealed-away", "lesson", "anchor", "whistle"), stored, strict=True
    ):
        story.refs[name] = case.ref

    ref = story.refs["anchor"]
    clock.now = at(11, 23, 7, 30)
    await service.acknowledge(dsl, ref)
    clock.now = at(11, 23, 7, 40)
    await service.add_note(dsl, ref, 'Invented: Ada said "I hid [upstairs]".')
    clock.now = at(11, 23, 7, 50)
    await service.record_decision(dsl, ref, "Speak to Ada first thing", "Invented reason.")
    clock.now = at(11, 23, 8, 0)
    await service.refer(dsl, ref, "lado", "Invented referral.")
    clock.now = at(11, 23, 9, 0)
    await service.meet_clock(dsl, ref, "lado-1-working-day")
    clock.now = at(11, 23, 9, 10)
    await service.assign(dsl, ref, "deputy@example.org")
    clock.now = at(11, 24, 10, 0)
    await service.close_case(dsl, ref, "Early help offered", "Invented: family accepted support.")
    clock.now = at(11, 24, 12, 0)
    return story


async def file_for(story: Story, team: Team, email: str, name: str) -> ChildFile:
    return await child_file(
        story.service, team[email], story.refs[name], now=story.clock(), chunk_size=2
    )


async def test_matches_name_variants_with_the_same_date_of_birth(story: Story, team: Team) -> None:
    found = await file_for(story, team, "dsl@example.org", "anchor")
    refs = story.refs
    assert found.refs == (refs["phoned"], refs["police"], refs["anchor"])  # oldest first
    assert {c.summary.ref: c.match for c in found.cases}[refs["anchor"]] is Match.ANCHOR
    assert found.child_name == "Ada Invented" and found.child_dob == date(2017, 3, 14)
    # The same file, whichever of the child's cases it is opened from.
    again = await file_for(story, team, "deputy@example.org", "phoned")
    assert again.refs == found.refs
    assert again.child_name == "INVENTED, Ada"


async def test_same_name_with_another_birthday_is_another_child(story: Story, team: Team) -> None:
    found = await file_for(story, team, "dsl@example.org", "anchor")
    shown = {c.summary.ref for c in (*found.cases, *found.possible)}
    assert story.refs["other-child"] not in shown
    assert story.refs["other-child"] not in {e.ref for e in found.events}
    theirs = await file_for(story, team, "dsl@example.org", "other-child")
    assert theirs.refs == (story.refs["other-child"],)


async def test_a_pupil_without_a_birthday_is_possible_not_merged(story: Story, team: Team) -> None:
    found = await file_for(story, team, "dsl@example.org", "anchor")
    assert [(c.summary.ref, c.match) for c in found.possible] == [
        (story.refs["lesson"], Match.NAME_ONLY)
    ]
    assert story.refs["lesson"] not in {e.ref for e in found.events}
    # Opened from the lesson report: it has no date of birth, so nothing is confirmed.
    from_lesson = await file_for(story, team, "dsl@example.org", "lesson")
    assert from_lesson.refs == (story.refs["lesson"],)
    assert {c.summary.ref for c in from_lesson.possible} == {
        story.refs["phoned"],
        story.refs["police"],
        story.refs["anchor"],
        story.refs["other-child"],
    }


async def test_cases_the_viewer_cannot_open_are_simply_absent(story: Story, team: Team) -> None:
    found = await file_for(story, team, "dsl@example.org", "anchor")
    hidden = story.refs["sealed-away"]
    assert hidden not in found.refs and hidden not in {c.summary.ref for c in found.possible}
    assert hidden not in {e.ref for e in found.events}
    assert found.searched == 5  # the DSL can open five of the seven cases
    # The chair can open the sealed-away case and sees a file of one, with no hint of the rest.
    chairs = await file_for(story, team, "chair@example.org", "sealed-away")
    assert chairs.refs == (hidden,) and chairs.possible == () and chairs.searched == 1
    assert {e.ref for e in chairs.events} == {hidden}


async def test_refused_anchor_is_audited_and_a_case_without_a_child_is_refused(
    story: Story, team: Team
) -> None:
    with pytest.raises(NotEntitled, match="no such case, or you are not entitled to it"):
        await file_for(story, team, "mo@example.org", "anchor")
    summary = await story.service.summary(story.refs["anchor"])
    async with story.service.store.read() as db:
        refusals = [e for e in await audit.entries(db, case_id=summary.id) if e.action == "refused"]
    assert refusals[0].actor == "mo@example.org" and refusals[0].detail == {"action": "child-file"}
    with pytest.raises(InvalidInput, match="no child"):
        await file_for(story, team, "mo@example.org", "whistle")
    with pytest.raises(NotFound):
        await child_file(story.service, team["dsl@example.org"], "SG-2026-9999")


async def test_the_desk_reaches_the_child_file_through_its_service(
    story: Story, team: Team
) -> None:
    dsl = team["dsl@example.org"]
    found = await story.service.child_file(dsl, story.refs["anchor"], now=story.clock())
    direct = await file_for(story, team, "dsl@example.org", "anchor")
    assert (found.refs, found.possible, found.events) == (
        direct.refs,
        direct.possible,
        direct.events,
    )
    assert not await story.service.child_file_is_stale(found)
    await story.service.add_note(dsl, story.refs["phoned"], "Invented note.")
    assert await story.service.child_file_is_stale(found)


async def test_one_chronology_in_time_order_attributed_and_signed(story: Story, team: Team) -> None:
    found = await file_for(story, team, "dsl@example.org", "anchor")
    phoned, police, anchor = story.refs["phoned"], story.refs["police"], story.refs["anchor"]
    # Events timed by the service's clock, in order (assignments and started deadlines are
    # timed by the audit log, checked separately below).
    timed = [
        (e.ref, e.kind, e.at)
        for e in found.events
        if e.kind not in (EventKind.ASSIGNED, EventKind.DEADLINE_SET)
    ]
    assert [(ref, kind) for ref, kind, _ in timed] == [
        (phoned, EventKind.RECEIVED),
        (phoned, EventKind.RECORDED),
        (phoned, EventKind.DEADLINE_MISSED),  # never acknowledged before the school day
        (police, EventKind.RECEIVED),
        (police, EventKind.DEADLINE_MISSED),
        (anchor, EventKind.RECEIVED),
        (anchor, EventKind.ACKNOWLEDGED),
        (anchor, EventKind.DEADLINE_MET),  # acknowledging met the intake clock
        (anchor, EventKind.NOTE),
        (anchor, EventKind.DECISION),
        (anchor, EventKind.REFERRAL),
        (anchor, EventKind.DEADLINE_MET),  # the LADO clock
        (anchor, EventKind.CLOSED),
    ]
    assert [moment for _, _, moment in timed] == sorted(moment for _, _, moment in timed)
    by_kind = {(e.ref, e.kind): e for e in found.events}

    received = by_kind[(anchor, EventKind.RECEIVED)]
    assert received.source is Source.ENCOMPASS and received.at == at(11, 22, 21, 55)
    assert received.clock == "encompass-before-school-day" and received.due_at is not None
    assert by_kind[(phoned, EventKind.RECEIVED)].by == "manual"
    recorded = by_kind[(phoned, EventKind.RECORDED)]
    assert recorded.by == "deputy@example.org" and recorded.signed is True
    assert "PC Invented" in recorded.text

    assert by_kind[(anchor, EventKind.ACKNOWLEDGED)].by == "dsl@example.org"
    note = by_kind[(anchor, EventKind.NOTE)]
    assert note.text == 'Invented: Ada said "I hid [upstairs]".'
    assert note.by == "dsl@example.org" and note.by_name == "Dsl Example" and note.signed is True
    decision = by_kind[(anchor, EventKind.DECISION)]
    assert decision.text == "Speak to Ada first thing" and decision.reason == "Invented reason."
    assert by_kind[(anchor, EventKind.REFERRAL)].text.startswith("Referred to the LADO")
    lado = [
        e
        for e in found.events
        if e.clock == "lado-1-working-day" and e.kind is not EventKind.RECEIVED
    ]
    assert sorted(e.kind for e in lado) == [EventKind.DEADLINE_MET, EventKind.DEADLINE_SET]
    started = next(e for e in lado if e.kind is EventKind.DEADLINE_SET)
    met = next(e for e in lado if e.kind is EventKind.DEADLINE_MET)
    assert started.by == "dsl@example.org" and started.due_at == met.due_at
    assert met.by == "dsl@example.org" and met.at == at(11, 23, 9, 0) and not met.late
    assigned = by_kind[(anchor, EventKind.ASSIGNED)]
    assert assigned.by == "dsl@example.org" and assigned.text == "deputy@example.org"
    closed = by_kind[(anchor, EventKind.CLOSED)]
    assert closed.text == "Early help offered" and closed.reason is not None
    assert closed.by == "dsl@example.org" and closed.signed is True


async def test_viewing_is_audited_once_without_personal_data(story: Story, team: Team) -> None:
    async with story.service.store.read() as db:
        before = (await audit.entries(db, limit=1))[0].seq
    found = await file_for(story, team, "dsl@example.org", "anchor")
    async with story.service.store.read() as db:
        added = [e for e in await audit.entries(db, limit=100) if e.seq > before]
        refs = {
            str(row[0]): str(row[1])
            for row in await db.execute_fetchall("SELECT id, ref FROM cases")
        }
    viewed = [e for e in added if e.action == "child-file-viewed"]
    assert len(viewed) == 1
    assert refs[str(viewed[0].case_id)] == story.refs["anchor"]
    assert viewed[0].actor == "dsl@example.org"
    assert viewed[0].detail == {"cases": 3, "possible": 1, "searched": 5}
    # The cases whose records are shown are read (and audited) as any read; nothing else is.
    read = sorted(refs[str(e.case_id)] for e in added if e.action == "case-read")
    assert read == sorted(found.refs)
    assert {e.action for e in added} == {"child-file-viewed", "case-read"}
    async with story.service.store.read() as db:
        everything = await audit.entries(db, limit=10_000)
    written = json.dumps([(e.actor, e.action, e.detail) for e in everything]).lower()
    written = _UUID.sub("<id>", written)  # a random id may spell "ada" or "2017" in hex
    for personal in ("ada", "invented", "2017", "14/03"):
        assert not re.search(rf"\b{re.escape(personal)}\b", written), personal
    assert "Ada" not in repr(found)  # the file's repr never carries the child


async def test_a_phoned_case_joins_the_emailed_one_in_a_single_chunk(team: Team) -> None:
    """The default chunk size, the service's own clock, an ISO date typed by hand."""
    service = team.service
    dsl = team["dsl@example.org"]
    first = await service.record_manual_case(
        dsl,
        Source.ENCOMPASS,
        facts={"child_name": "bea  invented", "child_dob": "2018-05-01"},
        body_text="Invented.",
        caller="Example Constabulary",
    )
    (second,) = await service.create_cases([encompass_case("Bea Invented", child_dob="2018-05-01")])
    found = await child_file(service, dsl, second.ref)
    assert set(found.refs) == {first.ref, second.ref}
    assert not await is_stale(service, found)
    await service.add_note(dsl, first.ref, "Invented note.")
    assert await is_stale(service, found)
    again = await child_file(service, dsl, second.ref)
    assert not await is_stale(service, again)
    await service.create_cases([encompass_case("Someone Else")])
    assert await is_stale(service, again)  # a new case may be about the child
