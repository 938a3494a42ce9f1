"""The desk's read-only metadata queries, against a real store: what the queue shows, in what
order, page by page; the counts and facts behind the banners; the audit log; live-update marks."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sgalert.clock import parse_iso
from sgalert.config import SourceConfig
from sgalert.desk.service import CaseService
from sgalert.desk.views import (
    PAGE_SIZE,
    UPKEEP,
    ChangeProbe,
    QueueQuery,
    QueueView,
    SortKey,
    _where,
)
from sgalert.engine.serve import Engine
from sgalert.engine.watch import SourceMonitor
from sgalert.errors import NotFound, StoreError
from sgalert.model import CaseState, CaseSummary, Source
from sgalert.records.cases import FIELD_ATTACHMENTS, FIELD_BODY, FIELD_FACTS, NewCase
from sgalert.records.store import Store

from .conftest import Team, encompass_case, whistle_case
from .engine_helpers import RecordingNotifier

# Wednesday 25 November 2026, midday: a school day in term.
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class HandClock:
    """Time that moves only when the test sets it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclasses.dataclass
class Desk:
    service: CaseService
    clock: HandClock
    refs: dict[str, str]  # the case's part in the story -> its reference

    def names(self, rows: tuple[CaseSummary, ...]) -> list[str]:
        by_ref = {ref: name for name, ref in self.refs.items()}
        return [by_ref[row.ref] for row in rows]


def lesson_case(received_at: datetime) -> NewCase:
    return NewCase(
        source=Source.LESSON,
        received_at=received_at,
        origin="mailbox",
        content={
            FIELD_FACTS: json.dumps({"teacher": "Tess Invented"}).encode(),
            FIELD_BODY: b"An invented online lesson was ended.",
            FIELD_ATTACHMENTS: b"[]",
        },
    )


def encompass_at(child: str, received_at: datetime) -> NewCase:
    case = encompass_case(child)
    case.received_at = received_at
    return case


@pytest.fixture
async def desk(team: Team) -> Desk:
    """Seven cases, each stored, acknowledged or closed at the time the story says.

    needs action, in priority order at NOW:
      overdue-new    Encompass from Sunday night, due before Monday's school day, unacknowledged
      whistle-new    allegation about the head, due in 5 working days, unacknowledged
      lesson-new     lesson notice, no clock, unacknowledged
      acked-overdue  acknowledged Friday, LADO clock started Friday: overdue
      acked-due      acknowledged today, LADO clock started today: due tomorrow
      acked-plain    acknowledged Monday, no open clock
    and closed (closed today).
    """
    service = team.service
    clock = HandClock(datetime(2026, 11, 20, 9, 5, tzinfo=UTC))
    service._clock = clock
    dsl = team["dsl@example.org"]
    refs: dict[str, str] = {}

    async def store(name: str, case: NewCase) -> str:
        (stored,) = await service.create_cases([case])
        refs[name] = stored.ref
        return stored.ref

    await store("whistle-new", whistle_case(about_head=True))  # received Friday 09:00
    clock.now = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    ref = await store("acked-overdue", encompass_at("Bo Invented", clock.now))
    await service.acknowledge(dsl, ref)
    await service.start_clock(dsl, ref, "lado-1-working-day")
    clock.now = datetime(2026, 11, 22, 21, 56, tzinfo=UTC)
    ref = await store("overdue-new", encompass_case("Ada Invented"))  # received Sunday 21:55
    # Given to the deputy by hand: assigning at the desk would acknowledge it (working on it).
    async with service.store.write() as db:
        await db.execute(
            "UPDATE cases SET assignee_id = (SELECT id FROM people WHERE email = ?) WHERE ref = ?",
            ("deputy@example.org", ref),
        )
    clock.now = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    await store("lesson-new", lesson_case(clock.now))
    clock.now = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
    ref = await store("acked-plain", encompass_at("Cy Invented", clock.now))
    await service.acknowledge(dsl, ref)
    await service.assign(dsl, ref, "deputy@example.org")
    clock.now = datetime(2026, 11, 25, 10, 30, tzinfo=UTC)
    ref = await store("acked-due", encompass_at("Di Invented", clock.now))
    await service.acknowledge(dsl, ref)
    await service.assign(dsl, ref, "dsl@example.org")
    await service.start_clock(dsl, ref, "lado-1-working-day")
    clock.now = datetime(2026, 11, 25, 11, 15, tzinfo=UTC)
    ref = await store("closed", encompass_at("Ed Invented", clock.now))
    await service.close_case(dsl, ref, "No further action", "Invented: school already aware.")
    clock.now = NOW
    return Desk(service, clock, refs)


async def page(desk: Desk, **query: Any) -> list[str]:
    """The names of one whole view's cases, in the order the queue shows them."""
    found = await desk.service.queue_page(QueueQuery(**query), viewer=UPKEEP)
    return desk.names(found.rows)


# ----- what each view holds ----------------------------------------------------------------


async def test_the_story_has_the_deadlines_it_claims(desk: Desk) -> None:
    """The orders below rest on these facts about the clocks; check them, not assume them."""
    rows = (await desk.service.queue_page(QueueQuery(view=QueueView.ALL), viewer=UPKEEP)).rows
    due = {name: row.next_deadline for name, row in zip(desk.names(rows), rows, strict=True)}
    assert due["overdue-new"] is not None and due["overdue-new"] < NOW
    assert due["acked-overdue"] is not None and due["acked-overdue"] < NOW
    assert due["whistle-new"] is not None and due["whistle-new"] > NOW
    assert due["acked-due"] is not None and NOW < due["acked-due"] < due["whistle-new"]
    assert due["lesson-new"] is None and due["acked-plain"] is None and due["closed"] is None


async def test_needs_action_is_every_open_case_unacknowledged_and_overdue_first(
    desk: Desk,
) -> None:
    assert await page(desk) == [
        "overdue-new",  # unacknowledged and overdue
        "whistle-new",  # unacknowledged, by its clock
        "lesson-new",  # unacknowledged, no clock
        "acked-overdue",  # overdue
        "acked-due",  # the rest by clock,
        "acked-plain",  # no clock last
    ]


async def test_the_priority_follows_the_clock_it_is_judged_by(desk: Desk) -> None:
    desk.clock.now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)  # back on Friday: nothing overdue
    names = await page(desk)
    assert names[:3] == ["overdue-new", "whistle-new", "lesson-new"]  # unacknowledged by clock
    assert names[3:] == ["acked-overdue", "acked-due", "acked-plain"]


async def test_source_views_and_all(desk: Desk) -> None:
    encompass = await page(desk, view=QueueView.ENCOMPASS, sort=SortKey.RECEIVED)
    assert encompass == ["closed", "acked-due", "acked-plain", "overdue-new", "acked-overdue"]
    assert await page(desk, view=QueueView.WHISTLE, sort=SortKey.RECEIVED) == ["whistle-new"]
    assert await page(desk, view=QueueView.LESSON, sort=SortKey.RECEIVED) == ["lesson-new"]
    assert sorted(await page(desk, view=QueueView.ALL)) == sorted(desk.refs)


async def test_queue_counts_match_the_views(desk: Desk) -> None:
    counts = await desk.service.queue_counts(viewer=UPKEEP)
    assert counts == {
        QueueView.NEEDS_ACTION: 6,
        QueueView.ENCOMPASS: 5,
        QueueView.WHISTLE: 1,
        QueueView.LESSON: 1,
        QueueView.ALL: 7,
        QueueView.MINE: 0,  # nobody's: no person was named
    }
    for view, count in counts.items():
        found = await desk.service.queue_page(QueueQuery(view=view), viewer=UPKEEP)
        assert found.total == count == len(found.rows)


# ----- searching ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("acknowledged", {"acked-overdue", "acked-due", "acked-plain"}),  # state
        ("closed", {"closed"}),
        ("about-head", {"whistle-new"}),  # flag
        ("lesson", {"lesson-new"}),  # source
        ("deputy@", {"overdue-new", "acked-plain"}),  # assignee
        ("DEPUTY acknowledged", {"acked-plain"}),  # every term must match, any case
        ("S_", set()),  # wildcards are literal: "_" is not any character
        ("%", set()),
        ("nobody-matches-this", set()),
    ],
)
async def test_search_matches_metadata_only_and_every_term(
    desk: Desk, search: str, expected: set[str]
) -> None:
    assert set(await page(desk, view=QueueView.ALL, search=search)) == expected


async def test_search_by_reference_and_within_a_view(desk: Desk) -> None:
    ref = desk.refs["acked-due"]
    assert await page(desk, view=QueueView.ALL, search=ref.lower()) == ["acked-due"]
    assert await page(desk, view=QueueView.NEEDS_ACTION, search="closed") == []
    found = await desk.service.queue_page(QueueQuery(search="encompass"), viewer=UPKEEP)
    assert found.total == 4 and set(desk.names(found.rows)) == {
        "overdue-new",
        "acked-overdue",
        "acked-due",
        "acked-plain",
    }


def test_search_terms_are_escaped_like_patterns() -> None:
    clauses, params = _where(QueueQuery(search="100% a_b c\\d"))
    assert params["t0"] == "%100\\%%" and params["t1"] == "%a\\_b%" and params["t2"] == "%c\\\\d%"
    assert " ".join(clauses).count("ESCAPE") == 15


# ----- sorting -----------------------------------------------------------------------------

BY_RECEIVED = [
    "closed",
    "acked-due",
    "acked-plain",
    "lesson-new",
    "overdue-new",
    "acked-overdue",
    "whistle-new",
]


async def test_sort_by_received_newest_first_and_reversed(desk: Desk) -> None:
    assert await page(desk, view=QueueView.ALL, sort=SortKey.RECEIVED) == BY_RECEIVED
    reverse = await page(desk, view=QueueView.ALL, sort=SortKey.RECEIVED, descending=True)
    assert reverse == BY_RECEIVED[::-1]


async def test_sort_by_reference_state_and_assignee(desk: Desk) -> None:
    by_ref = sorted(desk.refs, key=desk.refs.__getitem__, reverse=True)
    assert await page(desk, view=QueueView.ALL, sort=SortKey.REF) == by_ref
    assert await page(desk, view=QueueView.ALL, sort=SortKey.STATE) == [
        "lesson-new",  # new, newest first
        "overdue-new",
        "whistle-new",
        "acked-due",  # acknowledged
        "acked-plain",
        "acked-overdue",
        "closed",
    ]
    assert await page(desk, view=QueueView.ALL, sort=SortKey.ASSIGNEE) == [
        "acked-plain",  # deputy@, newest first
        "overdue-new",
        "acked-due",  # dsl@
        "closed",  # nobody assigned: last, newest first
        "lesson-new",
        "acked-overdue",
        "whistle-new",
    ]


async def test_sort_by_deadline_dated_by_clock_then_the_rest_newest_first(desk: Desk) -> None:
    found = await desk.service.queue_page(
        QueueQuery(view=QueueView.ALL, sort=SortKey.DEADLINE), viewer=UPKEEP
    )
    names = desk.names(found.rows)
    dated = [row.next_deadline for row in found.rows if row.next_deadline is not None]
    assert len(dated) == 4 and dated == sorted(dated)
    assert names[4:] == ["closed", "acked-plain", "lesson-new"]
    latest_first = await desk.service.queue_page(
        QueueQuery(view=QueueView.ALL, sort=SortKey.DEADLINE, descending=True), viewer=UPKEEP
    )
    assert desk.names(latest_first.rows) == names[3::-1] + names[4:]


# ----- paging ------------------------------------------------------------------------------


@pytest.mark.parametrize("sort", list(SortKey))
async def test_pages_join_up_to_the_whole_view(desk: Desk, sort: SortKey) -> None:
    """Three at a time: no case repeated or skipped, even across the deadline sort's split."""
    view = QueueView.NEEDS_ACTION if sort is SortKey.PRIORITY else QueueView.ALL
    whole = await page(desk, view=view, sort=sort)
    joined: list[str] = []
    query = QueueQuery(view=view, sort=sort, limit=3)
    while True:
        found = await desk.service.queue_page(query, viewer=UPKEEP)
        assert found.total == len(whole)
        assert found.has_previous == (query.offset > 0)
        joined += desk.names(found.rows)
        if not found.has_next:
            break
        query = dataclasses.replace(query, offset=query.offset + 3)
    assert joined == whole


async def test_paging_is_stable_when_cases_arrive_at_the_same_moment(team: Team) -> None:
    same = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    stored = await team.service.create_cases([lesson_case(same) for _ in range(7)])
    for sort in (SortKey.RECEIVED, SortKey.PRIORITY, SortKey.DEADLINE, SortKey.STATE):
        refs: list[str] = []
        for offset in range(0, 7, 2):
            found = await team.service.queue_page(
                QueueQuery(view=QueueView.LESSON, sort=sort, offset=offset, limit=2), viewer=UPKEEP
            )
            refs += [row.ref for row in found.rows]
        assert sorted(refs) == sorted(s.ref for s in stored), sort


async def test_a_page_past_the_end_is_the_last_page(desk: Desk) -> None:
    found = await desk.service.queue_page(
        QueueQuery(view=QueueView.ALL, sort=SortKey.RECEIVED, offset=30, limit=3), viewer=UPKEEP
    )
    assert found.query.offset == 6 and desk.names(found.rows) == ["whistle-new"]
    assert found.total == 7 and not found.has_next and found.has_previous


async def test_a_known_total_spares_the_count_and_a_search_recounts(desk: Desk) -> None:
    query = QueueQuery(view=QueueView.ALL, limit=3)
    assert (await desk.service.queue_page(query, known_total=7, viewer=UPKEEP)).total == 7
    searched = dataclasses.replace(query, search="lesson")
    assert (await desk.service.queue_page(searched, known_total=7, viewer=UPKEEP)).total == 1


async def test_an_empty_store_has_an_empty_queue(service: CaseService) -> None:
    found = await service.queue_page(QueueQuery(offset=PAGE_SIZE), viewer=UPKEEP)
    assert found.rows == () and found.total == 0 and not found.has_next
    assert set((await service.queue_counts(viewer=UPKEEP)).values()) == {0}


def test_changing_view_starts_at_the_top_with_a_sort_that_fits() -> None:
    query = QueueQuery(offset=200)
    encompass = query.with_view(QueueView.ENCOMPASS)
    assert encompass.sort is SortKey.RECEIVED and encompass.offset == 0
    assert encompass.with_view(QueueView.NEEDS_ACTION).sort is SortKey.PRIORITY
    by_ref = dataclasses.replace(query, sort=SortKey.REF).with_view(QueueView.ALL)
    assert by_ref.sort is SortKey.REF


# ----- what the banners need ---------------------------------------------------------------


async def test_unacknowledged_counts_all_and_those_assigned_to_one_person(desk: Desk) -> None:
    waiting = await desk.service.unacknowledged("Deputy@Example.org", viewer=UPKEEP)
    assert (waiting.total, waiting.assigned) == (3, 1)  # acked-plain is theirs but acknowledged
    deputy = await desk.service.unlock("deputy@example.org", "deputy-passphrase-1")
    # At the deputy's desk: only the cases they can open (not the whistleblowing one).
    theirs = await desk.service.unacknowledged("deputy@example.org", deputy)
    assert (theirs.total, theirs.assigned) == (2, 1)
    nobody = await desk.service.unacknowledged(viewer=UPKEEP)
    assert (nobody.total, nobody.assigned) == (3, 0)
    await desk.service.acknowledge(
        await desk.service.unlock("deputy@example.org", "deputy-passphrase-1"),
        desk.refs["overdue-new"],
    )
    assert (await desk.service.unacknowledged("deputy@example.org", viewer=UPKEEP)).assigned == 0


async def test_engine_heartbeat_is_none_until_an_engine_runs(team: Team) -> None:
    assert await team.service.engine_heartbeat() is None
    clock = HandClock(NOW)
    engine = Engine(
        team.service,
        team.service.store.path.parent,
        notifiers={"email": RecordingNotifier("email")},
        clock=clock,
        holder="host-a:1",
        watch=False,
    )
    assert await engine.try_lease()
    assert await team.service.engine_heartbeat() == NOW
    clock.now = NOW + timedelta(seconds=20)
    assert await engine.try_lease()
    assert await team.service.engine_heartbeat() == NOW + timedelta(seconds=20)


async def test_open_alerts_are_the_sources_that_are_down(team: Team) -> None:
    assert await team.service.open_alerts() == []
    clock = HandClock(NOW)
    source = SourceConfig(name="encompass-imap", type=Source.ENCOMPASS, kind="imap")
    monitor = SourceMonitor(team.service.store, source, clock=clock)
    await monitor.failing("connection problem: ConnectionRefusedError")
    clock.now = NOW + timedelta(hours=1)
    await monitor.check()
    (alert,) = await team.service.open_alerts()
    assert alert["kind"] == "source-down" and alert["source"] == "encompass-imap"
    assert parse_iso(alert["since"]) == NOW
    await monitor.ok()
    assert await team.service.open_alerts() == []


# ----- the audit log -----------------------------------------------------------------------


async def test_audit_log_is_newest_first_with_case_references(desk: Desk) -> None:
    dsl = await desk.service.unlock("dsl@example.org", "dsl-passphrase-1")
    rows = await desk.service.audit_log(dsl)
    seqs = [row.entry.seq for row in rows]
    assert seqs == sorted(seqs, reverse=True) and len(rows) > 10
    for row in rows:
        assert (row.ref is None) == (row.entry.case_id is None)
    assert rows[0].entry.action == "unlock"  # the reader's own, just now
    assert rows[1].entry.action == "closed" and rows[1].ref == desk.refs["closed"]
    summaries = {
        name: await desk.service.summary(ref, viewer=UPKEEP) for name, ref in desk.refs.items()
    }
    ref_by_id = {s.id: s.ref for s in summaries.values()}
    assert all(row.ref == ref_by_id[row.entry.case_id] for row in rows if row.entry.case_id)
    assert [row.entry.seq for row in await desk.service.audit_log(dsl, limit=3)] == seqs[:3]


async def test_case_history_is_that_case_only_newest_first(desk: Desk) -> None:
    summary = await desk.service.summary(desk.refs["acked-overdue"])
    dsl = await desk.service.unlock("dsl@example.org", "dsl-passphrase-1")
    history = await desk.service.case_history(dsl, summary.id)
    assert {entry.case_id for entry in history} == {summary.id}
    actions = [entry.action for entry in history]
    assert actions.index("clock-started") < actions.index("acknowledged")  # newest first
    assert [entry.seq for entry in history] == sorted((e.seq for e in history), reverse=True)
    assert len(await desk.service.case_history(dsl, summary.id, limit=1)) == 1
    with pytest.raises(NotFound):
        await desk.service.case_history(dsl, "no-such-case")


# ----- noticing changes --------------------------------------------------------------------


async def test_change_probe_sees_this_process_writing_and_the_heartbeat(desk: Desk) -> None:
    probe = desk.service.change_probe()
    try:
        first = probe.poll()
        assert first is not None and first.heartbeat_at is None
        assert probe.poll() is None  # nothing committed since
        dsl = await desk.service.unlock("dsl@example.org", "dsl-passphrase-1")
        await desk.service.acknowledge(dsl, desk.refs["overdue-new"])
        moved = probe.poll()
        assert moved is not None and moved.audit_seq > first.audit_seq
        assert probe.poll() is None
    finally:
        probe.close()


async def test_someone_looking_is_not_a_change_a_desk_reloads_on(desk: Desk) -> None:
    """Unlocking, reading, previewing are audited but change nothing a desk shows: the state
    mark stays, so 100,000 readable cases are not re-counted because someone glanced at one
    (before: every audit entry reloaded and re-counted every desk on the store)."""
    probe = desk.service.change_probe()
    try:
        first = probe.poll()
        assert first is not None
        dsl = await desk.service.unlock("dsl@example.org", "dsl-passphrase-1")
        await desk.service.preview_case(dsl, desk.refs["acked-plain"])
        looked = probe.poll()
        assert looked is not None and looked.audit_seq > first.audit_seq
        assert looked.state_seq == first.state_seq
        await desk.service.acknowledge(dsl, desk.refs["overdue-new"])
        moved = probe.poll()
        assert moved is not None and moved.state_seq > looked.state_seq
    finally:
        probe.close()


def test_change_probe_turns_a_missing_store_into_a_store_error(tmp_path: Path) -> None:
    probe = ChangeProbe(tmp_path / "missing" / "sgalert.sqlite3")
    with pytest.raises(StoreError, match="cannot read the store"):
        probe.poll()
    probe.close()


async def test_case_activity_finds_entries_about_one_case_after_a_point(desk: Desk) -> None:
    service = desk.service
    one, other = desk.refs["overdue-new"], desk.refs["lesson-new"]
    one_id, other_id = (await service.summary(one)).id, (await service.summary(other)).id
    (newest,) = await service.store.fetchall("SELECT MAX(seq) FROM audit")
    seen = int(newest[0])
    assert await service.case_activity(one_id, after=seen) is None
    dsl = await service.unlock("dsl@example.org", "dsl-passphrase-1")
    await service.add_note(dsl, other, "About the other case.")
    assert await service.case_activity(one_id, after=seen) is None
    await service.add_note(dsl, one, "About this one.")
    found = await service.case_activity(one_id, after=seen)
    assert found is not None and found > seen
    assert await service.case_activity(one_id, after=found) is None
    assert await service.case_activity(other_id, after=seen) is not None


def test_change_probe_never_creates_a_store(tmp_path: Path) -> None:
    """Read-only: pointed where the store should be, it must not leave an empty database that
    would later pass for one. A ``?`` or ``#`` in the folder's name stays part of the path."""
    folder = tmp_path / "odd ?name#%20"
    folder.mkdir()
    missing = folder / "sgalert.sqlite3"
    probe = ChangeProbe(missing)
    with pytest.raises(StoreError, match="cannot read the store"):
        probe.poll()
    probe.close()
    assert list(folder.iterdir()) == [] and not (tmp_path / "odd ").exists()


async def test_change_probe_reads_a_store_in_an_oddly_named_folder(tmp_path: Path) -> None:
    path = tmp_path / "odd ?name#%20" / "sgalert.sqlite3"
    path.parent.mkdir()
    store = await Store.open(path, create=True)
    probe = ChangeProbe(path)
    try:
        marks = probe.poll()
        assert marks is not None and marks.audit_seq == 0
    finally:
        probe.close()
        await store.close()


async def test_service_state_changes_are_visible_to_the_desk(desk: Desk) -> None:
    """An acknowledgement moves a case between priority groups, and closing leaves the view."""
    dsl = await desk.service.unlock("dsl@example.org", "dsl-passphrase-1")
    await desk.service.acknowledge(dsl, desk.refs["overdue-new"])
    names = await page(desk)
    assert names.index("overdue-new") > names.index("lesson-new")  # no longer unacknowledged
    await desk.service.close_case(dsl, desk.refs["overdue-new"], "Monitoring", "Invented reason.")
    assert "overdue-new" not in await page(desk)
    summary = await desk.service.summary(desk.refs["overdue-new"])
    assert summary.state is CaseState.CLOSED
