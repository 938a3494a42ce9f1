"""Exactly one case per message, however often it arrives (design section 6).

The mailbox's own key or identical bytes mean the same case; the same Message-ID with different
bytes means a new case flagged ``possible-duplicate``, because a sender controls Message-ID and a
forged earlier copy must not suppress a real alert. The watcher's checkpoint is stored in the same
transaction as the cases, so a crash can lose neither one without the other.
"""

from __future__ import annotations

import sqlite3

import pytest

from sgalert.intake.ingest import Ingestor, load_checkpoint
from sgalert.intake.prepare import SourceRules
from sgalert.model import Flag, Source
from sgalert.ports import Inbound, IngestOutcome
from sgalert.records import audit

from .conftest import Team
from .corpus import AUTHSERV, POLICE, plain_message

RULES = SourceRules("encompass", Source.ENCOMPASS, AUTHSERV, (POLICE,))
SECOND_MAILBOX = SourceRules("encompass-graph", Source.ENCOMPASS, AUTHSERV, (POLICE,))


def notice(child: str = "Ada Invented", message_id: str = "<enc-0001@police.example.org>") -> bytes:
    return plain_message(
        "OPERATION ENCOMPASS NOTIFICATION - Occurrence 44/123456/26",
        f"Child's Name: {child}\nDOB: 14/03/2017\nOccurrence Number: 44/123456/26\n",
        message_id=message_id,
    )


def ingestor(team: Team) -> Ingestor:
    assert team.service.config is not None
    return Ingestor(team.service.new_cases, team.service.config)


async def case_count(team: Team) -> int:
    return len(await team.service.list_cases())


async def receipts(team: Team) -> list[tuple[str, str, str]]:
    rows = await team.service.store.fetchall(
        "SELECT idempotency_key, case_id, source_name FROM mailbox_receipts"
        " ORDER BY idempotency_key"
    )
    return [(row[0], row[1], row[2]) for row in rows]


def same_case(first: IngestOutcome, again: IngestOutcome) -> None:
    assert again.created is False
    assert again.case_id == first.case_id and again.ref == first.ref
    assert again.duplicate_of == first.ref
    assert again.flags == first.flags


async def test_identical_bytes_twice_is_one_case(team: Team) -> None:
    raw = notice()
    (first,) = await ingestor(team).ingest([Inbound(raw)], RULES)
    (again,) = await ingestor(team).ingest([Inbound(raw)], RULES)
    assert first.created and first.duplicate_of is None
    same_case(first, again)
    assert await case_count(team) == 1
    async with team.service.store.read() as db:
        actions = [e.action for e in await audit.entries(db, case_id=first.case_id)]
    assert actions.count("case-created") == 1
    assert actions.count("duplicate-received") == 1


async def test_same_message_id_different_bytes_is_a_new_flagged_case(team: Team) -> None:
    (first,) = await ingestor(team).ingest([Inbound(notice("Ada Invented"))], RULES)
    # A different notice under the same Message-ID: a forgery or a resend, it must not vanish.
    (second,) = await ingestor(team).ingest([Inbound(notice("Bea Invented"))], RULES)
    assert second.created
    assert second.case_id != first.case_id
    assert Flag.POSSIBLE_DUPLICATE in second.flags
    assert Flag.POSSIBLE_DUPLICATE not in first.flags
    assert second.duplicate_of == first.ref
    view = await team.service.open_case(team["dsl@example.org"], second.ref)
    assert view.facts["child_name"] == "Bea Invented"
    assert await case_count(team) == 2


async def test_message_id_is_compared_without_folding_whitespace(team: Team) -> None:
    (first,) = await ingestor(team).ingest([Inbound(notice("Ada Invented"))], RULES)
    folded = notice("Bea Invented").replace(
        b"Message-ID: <enc-0001@police.example.org>",
        b"Message-ID:\r\n <enc-0001@police.example.org>",
    )
    (second,) = await ingestor(team).ingest([Inbound(folded)], RULES)
    assert second.duplicate_of == first.ref


async def test_same_mailbox_key_twice_after_a_crash_is_one_case(team: Team) -> None:
    key = "encompass:uidvalidity=1711:uid=42"
    (first,) = await ingestor(team).ingest([Inbound(notice(), key=key)], RULES)
    # The watcher crashed before marking the message seen, so the mailbox hands it over again.
    (again,) = await ingestor(team).ingest([Inbound(notice(), key=key)], RULES)
    same_case(first, again)
    assert await receipts(team) == [(key, first.case_id, "encompass")]
    assert await case_count(team) == 1


async def test_same_mailbox_key_is_the_same_case_even_if_the_bytes_changed(team: Team) -> None:
    # Some servers rewrite a header on a second fetch; the mailbox's key still names one message.
    key = "graph:AAMkAGI2TG93AAA="
    (first,) = await ingestor(team).ingest([Inbound(notice(), key=key)], RULES)
    rewritten = b"X-MS-Exchange-Organization-SCL: -1\r\n" + notice()
    (again,) = await ingestor(team).ingest([Inbound(rewritten, key=key)], RULES)
    same_case(first, again)
    assert await case_count(team) == 1


async def test_identical_bytes_from_two_mailboxes_is_one_case_with_both_receipts(
    team: Team,
) -> None:
    raw = notice()
    (first,) = await ingestor(team).ingest([Inbound(raw, key="imap:encompass:7:101")], RULES)
    (again,) = await ingestor(team).ingest(
        [Inbound(raw, key="graph:encompass:AAMkAD=")], SECOND_MAILBOX
    )
    same_case(first, again)
    assert await receipts(team) == [
        ("graph:encompass:AAMkAD=", first.case_id, "encompass-graph"),
        ("imap:encompass:7:101", first.case_id, "encompass"),
    ]
    assert await case_count(team) == 1


async def test_duplicates_within_one_batch(team: Team) -> None:
    raw = notice()
    batch = [
        Inbound(raw, key="imap:encompass:7:1"),
        Inbound(raw, key="imap:encompass:7:2"),  # the same bytes delivered twice
        Inbound(notice("Bea Invented"), key="imap:encompass:7:3"),  # same Message-ID
        Inbound(raw, key="imap:encompass:7:1"),  # the same key again
        Inbound(notice("Cai Invented", "<enc-0002@police.example.org>"), key="imap:encompass:7:4"),
    ]
    first, copy, resend, rekeyed, other = await ingestor(team).ingest(batch, RULES)
    assert first.created and first.duplicate_of is None
    same_case(first, copy)
    same_case(first, rekeyed)
    assert resend.created and resend.case_id != first.case_id
    assert Flag.POSSIBLE_DUPLICATE in resend.flags and resend.duplicate_of == first.ref
    assert other.created and Flag.POSSIBLE_DUPLICATE not in other.flags
    assert other.duplicate_of is None
    assert await case_count(team) == 3
    assert {(key, case_id) for key, case_id, _ in await receipts(team)} == {
        ("imap:encompass:7:1", first.case_id),
        ("imap:encompass:7:2", first.case_id),
        ("imap:encompass:7:3", resend.case_id),
        ("imap:encompass:7:4", other.case_id),
    }
    # The same batch again, as after a crash before the mailbox was told: nothing new at all.
    again = await ingestor(team).ingest(batch, RULES)
    assert [o.created for o in again] == [False] * 5
    assert [o.case_id for o in again] == [
        first.case_id,
        first.case_id,
        resend.case_id,
        first.case_id,
        other.case_id,
    ]
    assert await case_count(team) == 3


async def test_a_large_batch_is_deduplicated_the_same_way(team: Team) -> None:
    # Over four messages, prepare runs in a worker thread; the rules do not change.
    raws = [notice(f"Child {i} Invented", f"<enc-{i:04d}@police.example.org>") for i in range(12)]
    batch = [Inbound(raw, key=f"imap:encompass:9:{i}") for i, raw in enumerate(raws)]
    outcomes = await ingestor(team).ingest([*batch, *batch[:3]], RULES)
    assert [o.created for o in outcomes] == [True] * 12 + [False] * 3
    assert [o.case_id for o in outcomes[12:]] == [o.case_id for o in outcomes[:3]]
    assert await case_count(team) == 12


async def test_checkpoint_is_stored_with_the_batch(team: Team) -> None:
    assert await load_checkpoint(team.service.store, "encompass") is None
    (outcome,) = await ingestor(team).ingest(
        [Inbound(notice(), key="imap:encompass:7:1")], RULES, checkpoint="uidvalidity=7;uidnext=2"
    )
    assert outcome.created
    assert await load_checkpoint(team.service.store, "encompass") == "uidvalidity=7;uidnext=2"
    # A later batch moves it on; an empty batch may move it on by itself.
    await ingestor(team).ingest([], RULES, checkpoint="uidvalidity=7;uidnext=9")
    assert await load_checkpoint(team.service.store, "encompass") == "uidvalidity=7;uidnext=9"
    assert await load_checkpoint(team.service.store, "encompass-graph") is None


async def test_checkpoint_and_cases_commit_or_fail_together(team: Team) -> None:
    # Make the checkpoint write itself fail, inside ingest's transaction: the case written just
    # before it in that transaction must not survive, or a restart would skip nothing yet hold
    # a case whose checkpoint was lost (and vice versa).
    async with team.service.store.write() as db:
        await db.execute(
            "CREATE TRIGGER refuse_checkpoint BEFORE INSERT ON inbox_checkpoints"
            " BEGIN SELECT RAISE(ABORT, 'checkpoint refused'); END"
        )
    with pytest.raises(sqlite3.IntegrityError, match="checkpoint refused"):
        await ingestor(team).ingest(
            [Inbound(notice(), key="imap:encompass:7:1")], RULES, checkpoint="uidnext=2"
        )
    assert await case_count(team) == 0
    assert await receipts(team) == []
    assert await load_checkpoint(team.service.store, "encompass") is None
    async with team.service.store.write() as db:
        await db.execute("DROP TRIGGER refuse_checkpoint")
    (outcome,) = await ingestor(team).ingest(
        [Inbound(notice(), key="imap:encompass:7:1")], RULES, checkpoint="uidnext=2"
    )
    assert outcome.created
    assert await load_checkpoint(team.service.store, "encompass") == "uidnext=2"


async def test_same_mailbox_key_twice_in_one_batch_with_changed_bytes(team: Team) -> None:
    key = "graph:AAMkAGI2TG93AAB="
    rewritten = b"X-MS-Exchange-Organization-SCL: -1\r\n" + notice()
    first, again = await ingestor(team).ingest(
        [Inbound(notice(), key=key), Inbound(rewritten, key=key)], RULES
    )
    same_case(first, again)
    assert await case_count(team) == 1
