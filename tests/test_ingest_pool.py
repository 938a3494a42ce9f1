"""A backlog is prepared in worker processes: the cases must be exactly what one process makes.

Batches of ``POOL_MIN_BATCH`` or more messages are parsed and extracted in spawned workers, which
send back everything but the original bytes (the parent already holds them). These tests run
that path for real and compare it with the in-process one, field by field, including where the
original is sealed: with the case for a notice, apart under the identity key for a whistle.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sgalert.intake.ingest import Ingestor
from sgalert.intake.workers import POOL_MIN_BATCH
from sgalert.model import Flag
from sgalert.ports import Inbound
from sgalert.records.cases import FIELD_RAW, FIELD_REPORTER, open_fields, unwrap_data_keys
from sgalert.records.keyring import Identity

from .conftest import Team
from .test_ingest_extraction import ENCOMPASS, WHISTLE, fixture, sealed_fields

NOTICES = (
    "encompass_plain.eml",
    "encompass_html_alternative.eml",
    "encompass_html_only.eml",
    "encompass_forwarded.eml",
    "encompass_attached.eml",
    "encompass_pdf_only.eml",
)
RECEIVED = datetime(2026, 11, 23, 21, 40, tzinfo=UTC)


def backlog(names: tuple[str, ...], count: int, tag: str) -> list[Inbound]:
    """``count`` distinct messages (a numbered header keeps the bytes apart), mailbox-keyed."""
    messages = []
    for number in range(count):
        raw = b"X-Backlog: %s-%d\r\n" % (tag.encode(), number) + fixture(names[number % len(names)])
        messages.append(Inbound(raw, key=f"imap:bench/{tag}:{number}", received_at=RECEIVED))
    return messages


async def every_field(team: Team, identity: Identity, case_id: str) -> dict[str, bytes]:
    async with team.service.store.read() as db:
        keys = await unwrap_data_keys(db, identity, [case_id])
        return (await open_fields(db, keys, [case_id], skip_prefix="\0"))[case_id]


async def test_a_backlog_prepared_in_workers_keeps_every_original_and_fact(team: Team) -> None:
    messages = backlog(NOTICES, POOL_MIN_BATCH + 6, "notices")
    config = team.service.config
    assert config is not None
    pooled = Ingestor(team.service.new_cases, config, workers=2)
    single = Ingestor(team.service.new_cases, config, workers=0)
    try:
        await pooled.warm()
        assert pooled.pool._pool is not None, "the worker processes did not start"
        by_pool = await pooled.ingest(messages, ENCOMPASS)
        # The same bytes prepared in this process, as plain (unstored) cases, for comparison.
        in_process = await single.pool.prepare(messages, ENCOMPASS)
    finally:
        pooled.close()
        single.close()
    dsl = team["dsl@example.org"]
    assert [o.created for o in by_pool] == [True] * len(messages)
    for outcome, message, expected in zip(by_pool, messages, in_process, strict=True):
        stored = await every_field(team, dsl, outcome.case_id)
        assert stored[FIELD_RAW] == message.raw
        assert stored == dict(expected.case.content), outcome.ref  # attachments included
        # Copies of one fixture share its Message-ID, so all but the first are possible repeats.
        assert set(outcome.flags) - {Flag.POSSIBLE_DUPLICATE} == expected.case.flags


async def test_whistles_prepared_in_workers_keep_the_original_under_the_identity_key(
    team: Team,
) -> None:
    messages = backlog(("whistle_report.eml",), POOL_MIN_BATCH, "whistles")
    config = team.service.config
    assert config is not None
    pooled = Ingestor(team.service.new_cases, config, workers=2)
    try:
        outcomes = await pooled.ingest(messages, WHISTLE)
    finally:
        pooled.close()
    mo = team["mo@example.org"]
    dsl = team["dsl@example.org"]
    for outcome, message in zip(outcomes, messages, strict=True):
        assert outcome.created
        by_mo = await sealed_fields(team.service, mo, outcome.case_id)
        assert by_mo[FIELD_RAW] == message.raw and FIELD_REPORTER in by_mo
        by_dsl = await sealed_fields(team.service, dsl, outcome.case_id)
        assert FIELD_RAW not in by_dsl and FIELD_REPORTER not in by_dsl


async def test_a_worker_that_dies_does_not_stop_the_backlog(team: Team) -> None:
    """A killed worker breaks a process pool for good: the batch in hand is prepared in this
    process instead, and the next backlog gets a fresh pool."""
    config = team.service.config
    assert config is not None
    pooled = Ingestor(team.service.new_cases, config, workers=2)
    try:
        await pooled.warm()
        pool = pooled.pool._pool
        assert pool is not None
        for process in list(pool._processes.values()):  # type: ignore[attr-defined]
            process.kill()
            process.join()
        first = await pooled.ingest(backlog(NOTICES, POOL_MIN_BATCH, "after-kill"), ENCOMPASS)
        assert all(o.created for o in first)
        later = await pooled.ingest(backlog(NOTICES, POOL_MIN_BATCH, "fresh-pool"), ENCOMPASS)
        assert all(o.created for o in later)
        assert pooled.pool._pool is not None and pooled.pool._pool is not pool
    finally:
        pooled.close()
    assert len(await team.service.list_cases()) == 2 * POOL_MIN_BATCH
