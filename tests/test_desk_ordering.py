"""Priority that matches the policies: a lesson ended over a disclosure or an immediate risk ranks
with an urgent Encompass notice, from a plaintext flag set at intake (never the sealed words)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from sgalert.desk.views import QueueQuery
from sgalert.intake.prepare import SourceRules, prepare
from sgalert.model import Flag, Source
from sgalert.ports import Inbound
from sgalert.records.cases import FIELD_ATTACHMENTS, FIELD_BODY, FIELD_FACTS, NewCase

from .conftest import Team, encompass_case
from .corpus import AUTHSERV, plain_message
from .test_desk import HandClock
from .test_ingest_extraction import LONDON

LESSON = SourceRules("lesson", Source.LESSON, AUTHSERV)
# Monday 23 November 2026, 09:00: the Encompass notice from Sunday night is past its deadline.
MONDAY = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def lesson(received_at: datetime, *, disclosure: bool) -> NewCase:
    return NewCase(
        source=Source.LESSON,
        received_at=received_at,
        origin="mailbox",
        content={
            FIELD_FACTS: json.dumps({"teacher": "Tess Invented"}).encode(),
            FIELD_BODY: b"An invented online lesson was ended.",
            FIELD_ATTACHMENTS: b"[]",
        },
        flags=frozenset({Flag.DISCLOSURE}) if disclosure else frozenset(),
    )


def lesson_flags(body: str, subject: str = "Lesson terminated") -> frozenset[str]:
    return prepare(Inbound(plain_message(subject, body)), LESSON, zone=LONDON).case.flags


@pytest.mark.parametrize(
    "body",
    [
        "Pupil: Eli Invented\nReason: The pupil disclosed that an adult at home hurts them",
        "Pupil: Eli Invented\nReason: camera left on\nImmediate risk: Yes",
        "Pupil: Eli Invented\nReason: pupil said they were going to self-harm tonight",
    ],
)
def test_a_lesson_recording_a_disclosure_or_risk_is_flagged_at_intake(body: str) -> None:
    assert Flag.DISCLOSURE in lesson_flags(body)


@pytest.mark.parametrize(
    "body",
    [
        "Pupil: Eli Invented\nReason: Pupil typed an inappropriate message in the lesson chat",
        "Pupil: Eli Invented\nReason: rude gestures on camera; no disclosure was made",
        "Pupil: Eli Invented\nReason: camera left on\nImmediate risk: No",
    ],
)
def test_a_lesson_without_one_is_not(body: str) -> None:
    assert Flag.DISCLOSURE not in lesson_flags(body)


async def test_a_disclosure_ranks_with_urgent_encompass_and_other_lessons_do_not(
    team: Team,
) -> None:
    service = team.service
    clock = HandClock(datetime(2026, 11, 20, 9, 5, tzinfo=UTC))
    service._clock = clock
    names: dict[str, str] = {}

    async def store(name: str, case: NewCase) -> None:
        (stored,) = await service.create_cases([case])
        names[stored.ref] = name

    clock.now = datetime(2026, 11, 22, 21, 56, tzinfo=UTC)
    await store("encompass", encompass_case())  # Sunday night: due before Monday's school day
    clock.now = datetime(2026, 11, 23, 8, 50, tzinfo=UTC)
    await store("disclosure", lesson(clock.now, disclosure=True))
    await store("lesson", lesson(datetime(2026, 11, 23, 8, 40, tzinfo=UTC), disclosure=False))
    later = encompass_case("Bo Invented")
    later.received_at = clock.now = datetime(2026, 11, 23, 8, 55, tzinfo=UTC)
    await store("later", later)  # after the school day began: due before Tuesday's
    clock.now = MONDAY

    dsl = team["dsl@example.org"]
    page = await service.queue_page(QueueQuery(), viewer=dsl)
    order = [names[row.ref] for row in page.rows]
    # The disclosure is due on arrival: it ranks with the overdue Encompass notice, both ahead
    # of a notice due tomorrow and of a lesson that recorded no disclosure.
    assert order == ["encompass", "disclosure", "later", "lesson"]

    # Acknowledged, it no longer counts as overdue: it joins the other acknowledged cases.
    disclosure = next(ref for ref, name in names.items() if name == "disclosure")
    await service.acknowledge(dsl, disclosure)
    page = await service.queue_page(QueueQuery(), viewer=dsl)
    assert [names[row.ref] for row in page.rows] == ["encompass", "later", "lesson", "disclosure"]
