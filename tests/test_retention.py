"""``sgalert retention run --dry-run`` (issue 15, item 4: the listing; the shredding itself is
tested in ``test_retention_run``).

Lesson evidence is destroyed after 2 years, Encompass records are reviewed at the child's 25th
birthday (sealed: only an unlocked reader can tell; unattended, 25 years from arrival, which is
never earlier), allegations about staff reviewed after 10 years. Open cases are never shredded.
The dry run changes nothing but its own audit entry, and never prints a child's date of birth.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from sgalert.cli import retention
from sgalert.desk.service import CaseService
from sgalert.errors import InvalidInput
from sgalert.model import Source
from sgalert.records.cases import FIELD_BODY, FIELD_FACTS, NewCase
from sgalert.records.keyring import Identity
from sgalert.rules.retention import DEFAULT_RETENTION
from sgalert.workspace import Workspace

from .conftest import PASSPHRASES, Team, encompass_case, whistle_case

RECEIVED = datetime(2026, 11, 22, 21, 55, tzinfo=UTC)


def lesson(received: datetime = RECEIVED) -> NewCase:
    return NewCase(
        source=Source.LESSON,
        received_at=received,
        origin="mailbox",
        content={
            FIELD_FACTS: json.dumps({"pupil": "Ada Invented"}).encode(),
            FIELD_BODY: b"Lesson ended: an invented chat message.",
        },
    )


class Runner:
    def __init__(self, workspace: Workspace, **args: object) -> None:
        self.workspace = workspace
        self.args = argparse.Namespace(**{"dry_run": True, "as_email": None, "on": None, **args})

    async def unlocked(self, service: CaseService) -> Identity:
        return await service.unlock(self.args.as_email, PASSPHRASES[self.args.as_email])


async def counts(team: Team) -> list[int]:
    """Rows of sealed content, data keys and record entries: what shredding would remove."""
    store = team.service.store
    return [
        (await store.fetchall(f"SELECT COUNT(*) FROM {table}"))[0][0]
        for table in ("sealed_fields", "key_wraps", "chronology")
    ]


def test_the_rules_count_from_arrival_or_from_the_childs_birth() -> None:
    assert DEFAULT_RETENTION[Source.LESSON].expires(RECEIVED) == date(2028, 11, 22)
    assert DEFAULT_RETENTION[Source.WHISTLE].expires(RECEIVED) == date(2036, 11, 22)
    encompass = DEFAULT_RETENTION[Source.ENCOMPASS]
    # The date of birth is sealed: unattended, 25 years from arrival, never before the birthday.
    assert encompass.expires(RECEIVED) == date(2051, 11, 22)
    assert encompass.expires(RECEIVED, date(2017, 3, 14)) == date(2042, 3, 14)
    assert encompass.expires(RECEIVED, date(2016, 2, 29)) == date(2041, 3, 1)


async def test_the_dry_run_lists_what_would_go_and_changes_nothing(
    team: Team, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    service, dsl, mo = team.service, team["dsl@example.org"], team["mo@example.org"]
    old_closed, old_open, recent = await service.create_cases(
        [lesson(), lesson(), lesson(datetime(2028, 6, 1, tzinfo=UTC))]
    )
    (whistle,) = await service.create_cases([whistle_case()])
    (child,) = await service.create_cases([encompass_case()])
    for ref, who in ((old_closed.ref, dsl), (whistle.ref, mo), (child.ref, dsl)):
        await service.close_case(who, ref, "no further action", "invented reason")
    before = await counts(team)

    await retention.run(Runner(workspace, on="2029-01-01"))
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{old_open.ref:14} lesson     new           expired but still open: lesson chat evidence"
        " is kept 2 years; close it first",
        f"{old_closed.ref:14} lesson     closed        would be shredded: lesson chat evidence is"
        " kept 2 years (expired 2028-11-22)",
        "dry run for 2029-01-01: 1 would be shredded, 0 due for review, 1 expired but still open,"
        " 0 kept (legal hold), 3 kept, 0 already destroyed; nothing was changed",
    ]
    assert recent.ref not in "\n".join(out)

    # Unattended, the Encompass case counts 25 years from its arrival.
    await retention.run(Runner(workspace, on="2051-11-22"))
    assert (
        f"{child.ref:14} encompass  closed        due for review: child-protection records are"
        " kept until the child's 25th birthday, then reviewed (counted from arrival: the date of"
        " birth is sealed) (expired 2051-11-22)"
    ) in capsys.readouterr().out.splitlines()

    await retention.run(Runner(workspace, on="2043-01-01", as_email="dsl@example.org"))
    out = capsys.readouterr().out.splitlines()
    assert (
        f"{child.ref:14} encompass  closed        due for review: child-protection records are"
        " kept until the child's 25th birthday, then reviewed (expired)"
    ) in out
    assert (
        f"{whistle.ref:14} whistle    closed        not assessed: you may not read this case"
    ) not in out  # whistle counts from arrival: no unlock needed
    assert (
        f"{whistle.ref:14} whistle    closed        due for review: allegations about staff are"
        " kept 10 years or to retirement age, whichever is longer (expired 2036-11-20)"
    ) in out
    assert not any("2017" in line or "2042" in line for line in out)  # no date of birth
    assert await counts(team) == before
    actions = await service.store.fetchall(
        "SELECT actor, action, detail FROM audit WHERE action = 'retention-dry-run' ORDER BY seq"
    )
    assert [(a, json.loads(d)["review"]) for a, _, d in actions] == [
        ("system", 0),
        ("system", 2),
        ("dsl@example.org", 2),
    ]


async def test_a_day_that_is_not_a_date_is_one_line(team: Team, workspace: Workspace) -> None:
    with pytest.raises(InvalidInput, match=r"--on 'next year' is not a date"):
        await retention.run(Runner(workspace, on="next year"))
    with pytest.raises(InvalidInput, match=r"--on is for --dry-run only"):
        await retention.run(Runner(workspace, dry_run=False, on="2099-01-01"))


async def test_a_reader_who_may_not_read_a_case_counts_it_from_arrival(
    team: Team, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    (child,) = await team.service.create_cases([replace(encompass_case(), received_at=RECEIVED)])
    await retention.run(Runner(workspace, on="2043-01-01", as_email="mo@example.org"))
    out = capsys.readouterr().out
    assert child.ref not in out  # kept: 25 years from arrival is 2051
    assert ", 1 kept," in out
