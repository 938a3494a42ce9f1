"""Read-only metadata for a case desk: the queue, its counts, the banners' facts, the audit log.

Everything here reads plaintext metadata (ids, references, sources, states, times, flags, who is
assigned): no unlock, no personal data, no case content. The queue pages, sorts and filters in SQL
so 100,000 cases never become 100,000 rows in memory: one page of ids is chosen with
index-friendly queries, then the metadata of just those rows is read. :class:`ChangeProbe` lets a
desk notice, cheaply and from its own thread, that another connection changed the store.
:func:`clock_lines` says how a case's statutory clocks stand, in the same words for the desk and
the command line.

Every list, page and count is seen by a :class:`Viewer`: a whistleblowing case or an allegation
about the head appears only to people who can read it, and never to the head if it is about them
(:func:`sgalert.rules.access.may_see`, in SQL here).

Callers outside the core reach these through :class:`~sgalert.desk.service.CaseService`.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import aiosqlite

from sgalert.clock import iso, parse_iso
from sgalert.errors import NoSuchCase
from sgalert.model import CaseState, CaseSummary, Flag, Source
from sgalert.records.alerts import open_alerts_now
from sgalert.records.audit import AuditEntry, entries
from sgalert.records.store import Store, on_connection
from sgalert.routing.outbox import FALLBACK_AFTER
from sgalert.rules.access import may_see_confidential_alert

PAGE_SIZE = 100

SUMMARY_SQL = """
SELECT c.id, c.ref, c.source, c.state, c.received_at, c.created_at, c.updated_at, c.flags,
       a.email AS assignee, c.acknowledged_at, k.email AS acknowledged_by, c.closed_at,
       c.destroyed_at,
       (SELECT MIN(due_at) FROM clocks WHERE case_id = c.id AND met_at IS NULL) AS next_deadline,
       (SELECT kind FROM clocks WHERE case_id = c.id AND met_at IS NULL
        ORDER BY due_at LIMIT 1) AS next_clock
FROM cases c
LEFT JOIN people a ON a.id = c.assignee_id
LEFT JOIN people k ON k.id = c.acknowledged_by
"""


# Who sees which cases in metadata: one rule, in its own module (named here for the views).
from sgalert.desk.scope import NOBODY as NOBODY  # noqa: E402
from sgalert.desk.scope import UPKEEP as UPKEEP  # noqa: E402
from sgalert.desk.scope import Viewer as Viewer  # noqa: E402
from sgalert.desk.scope import visible as visible  # noqa: E402


async def _fetch(store: Store, sql: str, params: dict[str, object]) -> list[aiosqlite.Row]:
    """One read with named parameters."""
    async with store.read() as db:
        cursor = await db.execute(sql, params)
        return list(await cursor.fetchall())


def summary_from_row(row: aiosqlite.Row) -> CaseSummary:
    """A case's metadata from a row of :data:`SUMMARY_SQL`: the one place that shape is read."""

    def when(value: str | None) -> datetime | None:
        return parse_iso(value) if value else None

    return CaseSummary(
        id=row["id"],
        ref=row["ref"],
        source=Source(row["source"]),
        state=CaseState(row["state"]),
        received_at=parse_iso(row["received_at"]),
        created_at=parse_iso(row["created_at"]),
        updated_at=parse_iso(row["updated_at"]),
        flags=tuple(json.loads(row["flags"])),
        assignee=row["assignee"],
        acknowledged_at=when(row["acknowledged_at"]),
        acknowledged_by=row["acknowledged_by"],
        closed_at=when(row["closed_at"]),
        next_deadline=when(row["next_deadline"]),
        destroyed_at=when(row["destroyed_at"]),
        next_clock=row["next_clock"],
    )


async def find_summary(db: aiosqlite.Connection, ref: str, viewer: Viewer = UPKEEP) -> CaseSummary:
    """One case's metadata by id or reference, in the caller's transaction, if ``viewer`` may
    see it; else :class:`NoSuchCase`, as for a missing case (and a refused one)."""
    seen, params = visible(viewer)
    cursor = await db.execute(
        SUMMARY_SQL + " WHERE (c.id = :id OR c.ref = :ref)" + (f" AND {seen}" if seen else ""),
        params | {"id": ref.strip(), "ref": ref.strip().upper()},
    )
    row = await cursor.fetchone()
    if row is None:
        raise NoSuchCase()
    return summary_from_row(row)


async def list_cases(
    store: Store,
    *,
    state: CaseState | None = None,
    source: Source | None = None,
    limit: int | None = None,
    offset: int = 0,
    viewer: Viewer = NOBODY,
) -> list[CaseSummary]:
    """Metadata only, newest first, of the cases ``viewer`` may see."""
    seen, params = visible(viewer)
    where: list[str] = [seen] if seen else []
    if state is not None:
        where.append("c.state = :state")
        params["state"] = state.value
    if source is not None:
        where.append("c.source = :source")
        params["source"] = source.value
    sql = SUMMARY_SQL + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY c.received_at DESC, c.ref DESC LIMIT :limit OFFSET :offset"
    params |= {"limit": limit if limit is not None else -1, "offset": offset}
    async with store.read() as db:
        cursor = await db.execute(sql, params)
        return [summary_from_row(row) for row in await cursor.fetchall()]


class QueueView(enum.StrEnum):
    """Which cases a queue shows: those needing action (not closed), one source's, all, or the
    person's own (``MINE``: see :data:`_MINE`)."""

    NEEDS_ACTION = "needs"
    ENCOMPASS = "encompass"
    WHISTLE = "whistle"
    LESSON = "lesson"
    ALL = "all"
    MINE = "mine"


class SortKey(enum.StrEnum):
    """The queue's orders. PRIORITY: unacknowledged and overdue first, then by the next clock."""

    PRIORITY = "priority"
    RECEIVED = "received"
    DEADLINE = "deadline"
    REF = "reference"
    STATE = "state"
    ASSIGNEE = "assignee"


@dataclass(frozen=True, slots=True)
class QueueQuery:
    """One page of one view, filtered and sorted. ``descending`` flips the key's natural order.

    ``search`` is whitespace-separated terms, each matched (as a substring, wildcards taken
    literally) against the reference, source, state, flags or assignee; every term must match.
    ``person`` (an email) is whose cases ``MINE`` shows; without one it shows none.
    """

    view: QueueView = QueueView.NEEDS_ACTION
    search: str = ""
    sort: SortKey = SortKey.PRIORITY
    descending: bool = False
    offset: int = 0
    limit: int = PAGE_SIZE
    # Who is looking: confidential cases appear only to those who can read them.
    viewer: Viewer = NOBODY

    def with_view(self, view: QueueView) -> QueueQuery:
        """The first page of another view. Priority only means something where cases need
        action, so it swaps with newest-first on the way in and out of that view."""
        sort = self.sort
        if view not in OPEN_VIEWS and sort is SortKey.PRIORITY:
            sort = SortKey.RECEIVED
        if view in OPEN_VIEWS and sort is SortKey.RECEIVED:
            sort = SortKey.PRIORITY
        return replace(self, view=view, sort=sort, offset=0)


# Views of open cases only, where "most urgent first" means something.
OPEN_VIEWS = frozenset({QueueView.NEEDS_ACTION, QueueView.MINE})


@dataclass(frozen=True, slots=True)
class QueuePage:
    """The rows of one page. ``query`` is the query answered: its offset is clamped to the last
    page when the one asked for no longer exists (cases closed or filtered away meanwhile)."""

    query: QueueQuery
    rows: tuple[CaseSummary, ...]
    total: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.query.offset > 0


@dataclass(frozen=True, slots=True)
class Unacknowledged:
    """Cases nobody has acknowledged yet, and those assigned to one person; ``overdue``: open
    cases with a clock past due. Asked for one person, every count is of the cases that
    person can read, so a banner never announces cases its reader cannot open."""

    total: int
    assigned: int
    overdue: int = 0


@dataclass(frozen=True, slots=True)
class AuditRow:
    """An audit entry with its case shown by reference (ids mean nothing to people)."""

    entry: AuditEntry
    ref: str | None


# ----- the queue ---------------------------------------------------------------------------

# The next unmet clock of every case that has one. Unmet clocks are few (acknowledging meets the
# intake clock), so SQLite builds this small table once per query. "+case_id" keeps the planner
# on the partial index of unmet clocks instead of walking every clock in key order.
_NEXT_DEADLINE = (
    "(SELECT case_id, MIN(due_at) AS due FROM clocks WHERE met_at IS NULL GROUP BY +case_id)"
)
_ASSIGNEE_JOIN = " LEFT JOIN people a ON a.id = c.assignee_id"

# Orders over ids only; rowid breaks ties so a page boundary never repeats or skips a case, and
# it keeps "received" in index order. DEADLINE is answered in two parts: see _deadline_ids.
# A lesson ended over a disclosure or immediate risk (a plaintext flag set at intake) has no
# clock; unacknowledged, it is due on arrival, so it ranks with urgent Encompass notices.
_DUE = (
    "COALESCE(nd.due, CASE WHEN c.state = 'new' AND c.flags LIKE"
    " '%\"" + Flag.DISCLOSURE.value + "\"%' THEN c.received_at END)"
)
_ORDER: dict[SortKey, str] = {
    # Unacknowledged and overdue first, then unacknowledged, then overdue, then by clock.
    SortKey.PRIORITY: (
        f"CASE WHEN c.state = 'new' AND {_DUE} < :now THEN 0"
        f" WHEN c.state = 'new' THEN 1 WHEN {_DUE} < :now THEN 2 ELSE 3 END {{asc}},"
        f" {_DUE} {{asc}} NULLS LAST, c.received_at {{asc}}, c.rowid {{asc}}"
    ),
    SortKey.RECEIVED: "c.received_at {desc}, c.rowid {desc}",
    SortKey.REF: "c.ref {desc}",
    SortKey.STATE: (
        "CASE c.state WHEN 'new' THEN 0 WHEN 'acknowledged' THEN 1 ELSE 2 END {asc},"
        " c.received_at {desc}, c.rowid {desc}"
    ),
    SortKey.ASSIGNEE: "a.email {asc} NULLS LAST, c.received_at {desc}, c.rowid {desc}",
}

Params = dict[str, object]

# A person's own open cases: assigned to them, acknowledged by them and given to nobody else,
# or waiting for their step: an unacknowledged case they were paged about (escalated to them),
# or a clock they started and have not met. ``:me`` is their email; the subqueries start from
# small, indexed sets (one person's pages, unmet clocks) and never read the whole audit log.
_ME = "(SELECT id FROM people WHERE email = :me COLLATE NOCASE)"
_MINE = (
    "(c.state != 'closed' AND (c.assignee_id = " + _ME + " OR (c.assignee_id IS NULL"
    " AND c.acknowledged_by = " + _ME + ") OR (c.state = 'new' AND c.id IN"
    " (SELECT o.case_id FROM outbox o WHERE o.person_id = " + _ME + ")) OR c.id IN"
    " (SELECT k.case_id FROM clocks k JOIN audit l ON l.case_id = k.case_id"
    " AND l.action = 'clock-started' AND l.actor = :me COLLATE NOCASE"
    " AND json_extract(l.detail, '$.clock') = k.kind WHERE k.met_at IS NULL)))"
)


def _where(query: QueueQuery) -> tuple[list[str], Params]:
    """The view and search as SQL conditions; search terms are LIKE patterns with their
    wildcards escaped, so "100%" finds "100%" and not everything starting "100"."""
    seen, params = visible(query.viewer)
    clauses: list[str] = [seen] if seen else []
    if query.view is QueueView.NEEDS_ACTION:
        clauses.append("c.state IN ('new', 'acknowledged')")  # uses cases_by_state
    elif query.view is QueueView.MINE:
        clauses.append(_MINE)
        params["me"] = query.viewer.email or ""
    elif query.view is not QueueView.ALL:
        clauses.append("c.source = :source")
        params["source"] = query.view.value
    for number, term in enumerate(query.search.split()):
        name = f"t{number}"
        escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params[name] = f"%{escaped}%"
        clauses.append(
            f"(c.ref LIKE :{name} ESCAPE '\\' OR c.source LIKE :{name} ESCAPE '\\'"
            f" OR c.state LIKE :{name} ESCAPE '\\' OR c.flags LIKE :{name} ESCAPE '\\'"
            f" OR a.email LIKE :{name} ESCAPE '\\')"
        )
    return clauses, params


def _where_sql(clauses: list[str]) -> str:
    return (" WHERE " + " AND ".join(clauses)) if clauses else ""


def _order(query: QueueQuery) -> str:
    natural = {"asc": "ASC", "desc": "DESC"}
    flipped = {"asc": "DESC", "desc": "ASC"}
    return _ORDER[query.sort].format(**(flipped if query.descending else natural))


async def _ids(db: aiosqlite.Connection, sql: str, params: Params) -> list[str]:
    cursor = await db.execute(sql, params)
    return [str(row[0]) for row in await cursor.fetchall()]


async def _count(db: aiosqlite.Connection, sql: str, params: Params) -> int:
    cursor = await db.execute(sql, params)
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def _deadline_ids(
    db: aiosqlite.Connection, query: QueueQuery, clauses: list[str], params: Params
) -> list[str]:
    """Cases with an unmet clock by that clock, then the rest, newest first.

    Two index-friendly queries instead of sorting every case of the view by a computed value:
    the dated set is small, and the undated rest is read in ``received_at`` index order.
    """
    joins = _ASSIGNEE_JOIN if query.search.strip() else ""
    direction = "DESC" if query.descending else "ASC"
    dated_from = f" FROM cases c JOIN {_NEXT_DEADLINE} nd ON nd.case_id = c.id{joins}"
    dated_from += _where_sql(clauses)
    dated = await _count(db, f"SELECT COUNT(*){dated_from}", params)
    wanted = query.limit + 1
    ids: list[str] = []
    if query.offset < dated:
        ids = await _ids(
            db,
            f"SELECT c.id{dated_from} ORDER BY nd.due {direction}, c.received_at DESC,"
            " c.rowid DESC LIMIT :wanted OFFSET :offset",
            params | {"wanted": wanted, "offset": query.offset},
        )
    if len(ids) < wanted:
        undated = [
            *clauses,
            "NOT EXISTS (SELECT 1 FROM clocks u WHERE u.case_id = c.id AND u.met_at IS NULL)",
        ]
        ids += await _ids(
            db,
            f"SELECT c.id FROM cases c{joins}{_where_sql(undated)}"
            " ORDER BY c.received_at DESC, c.rowid DESC LIMIT :wanted OFFSET :offset",
            params | {"wanted": wanted - len(ids), "offset": max(query.offset - dated, 0)},
        )
    return ids


async def _page_ids(
    db: aiosqlite.Connection, query: QueueQuery, now: datetime
) -> tuple[list[str], list[str], Params]:
    """Up to ``limit + 1`` ids in page order (the extra one says whether a next page exists),
    with the conditions used, for counting the same set."""
    clauses, params = _where(query)
    if query.sort is SortKey.DEADLINE:
        return await _deadline_ids(db, query, clauses, params), clauses, params
    joins = ""
    if query.search.strip() or query.sort is SortKey.ASSIGNEE:
        joins += _ASSIGNEE_JOIN
    if query.sort is SortKey.PRIORITY:
        joins += f" LEFT JOIN {_NEXT_DEADLINE} nd ON nd.case_id = c.id"
    sql = (
        f"SELECT c.id FROM cases c{joins}{_where_sql(clauses)} ORDER BY {_order(query)}"
        " LIMIT :wanted OFFSET :offset"
    )
    page_params = params | {"now": iso(now), "wanted": query.limit + 1, "offset": query.offset}
    return await _ids(db, sql, page_params), clauses, params


async def queue_page(
    store: Store, query: QueueQuery, now: datetime, *, known_total: int | None = None
) -> QueuePage:
    """One page of the queue, read in one snapshot: the page's ids in SQL order (no per-row work
    for skipped rows), then the metadata of just those rows.

    ``now`` decides which clocks are overdue for the priority order. ``known_total`` (the view's
    count from :func:`queue_counts`, when there is no search) saves counting the view again on
    every page turn. An offset past the end is answered with the last page.
    """
    async with store.read() as db:
        ids, clauses, params = await _page_ids(db, query, now)
        total = known_total
        if total is None or query.search.strip() or (not ids and query.offset):
            joins = _ASSIGNEE_JOIN if query.search.strip() else ""
            total = await _count(
                db, f"SELECT COUNT(*) FROM cases c{joins}{_where_sql(clauses)}", params
            )
        if not ids and query.offset:
            query = replace(query, offset=max(total - 1, 0) // query.limit * query.limit)
            if total:
                ids, clauses, params = await _page_ids(db, query, now)
        has_next = len(ids) > query.limit
        ids = ids[: query.limit]
        rows: dict[str, CaseSummary] = {}
        if ids:
            cursor = await db.execute(
                f"{SUMMARY_SQL} WHERE c.id IN ({','.join('?' * len(ids))})", ids
            )
            rows = {row["id"]: summary_from_row(row) for row in await cursor.fetchall()}
    ordered = tuple(rows[i] for i in ids if i in rows)
    return QueuePage(query, ordered, max(total, query.offset + len(ordered)), has_next)


async def queue_counts(store: Store, viewer: Viewer = NOBODY) -> dict[QueueView, int]:
    """How many cases each view holds for ``viewer``, in one pass over the cases table (a
    desk's viewer counts only what the person can open: a monitoring officer is not told of
    seven cases they could open none of)."""
    seen, params = visible(viewer)
    rows = await _fetch(
        store,
        "SELECT COUNT(*), TOTAL(c.state != 'closed'), TOTAL(c.source = 'encompass'),"
        f" TOTAL(c.source = 'whistle'), TOTAL(c.source = 'lesson'), TOTAL({_MINE})"
        " FROM cases c" + (f" WHERE {seen}" if seen else ""),
        params | {"me": viewer.email or ""},
    )
    total, needs, encompass, whistle, lesson, mine = (int(value) for value in rows[0])
    return {
        QueueView.NEEDS_ACTION: needs,
        QueueView.ENCOMPASS: encompass,
        QueueView.WHISTLE: whistle,
        QueueView.LESSON: lesson,
        QueueView.ALL: total,
        QueueView.MINE: mine,
    }


# ----- what the banners need --------------------------------------------------------------


async def engine_heartbeat(store: Store) -> datetime | None:
    """When the engine last said it was alive; None if it has never run on this store.

    A stale heartbeat means nobody is being paged, which a desk must say out loud.
    """
    rows = await store.fetchall("SELECT heartbeat_at FROM engine_lease WHERE id = 1")
    return parse_iso(rows[0][0]) if rows else None


# The engine's own lease length (sgalert.engine.serve.LEASE_SECONDS, which imports this module), for
# a heartbeat whose lease's end is not known.
DEFAULT_LEASE = timedelta(seconds=15)


@dataclass(frozen=True, slots=True)
class EngineLease:
    """The engine's hold on the store: who, its last heartbeat, and when the lease runs out."""

    holder: str
    heartbeat_at: datetime
    expires_at: datetime

    def lapsed(self, now: datetime) -> bool:
        """The engine renews its lease every few seconds; one that ran out unrenewed means the
        engine died or hangs (and a standby may take over). Every desk judges it this way."""
        return engine_silent(self.heartbeat_at, self.expires_at, now)


def engine_silent(heartbeat_at: datetime, expires_at: datetime | None, now: datetime) -> bool:
    """Whether an engine that last beat at ``heartbeat_at`` has gone quiet: past its lease's
    end, or (lease unknown) a default lease's length after its last beat."""
    return now > (expires_at or heartbeat_at + DEFAULT_LEASE)


async def engine_lease(store: Store) -> EngineLease | None:
    """The engine's lease, or None when no engine holds the store (never started, or stopped
    cleanly, which deletes it): then nobody is being paged."""
    rows = await store.fetchall(
        "SELECT holder, heartbeat_at, expires_at FROM engine_lease WHERE id = 1"
    )
    if not rows:
        return None
    holder, heartbeat, expires = rows[0]
    return EngineLease(str(holder), parse_iso(heartbeat), parse_iso(expires))


@dataclass(frozen=True, slots=True)
class FailingChannel:
    """A notification channel that is not getting pages through. Names the channel only."""

    channel: str
    undelivered: int  # pages on it that failed repeatedly, or for good
    since: datetime  # when the oldest of them was queued


async def failing_channels(store: Store, viewer: Viewer = UPKEEP) -> list[FailingChannel]:
    """Channels that are failing, judged from the outbox's pages about cases ``viewer`` may see.

    A channel is failing while a page on it is still being retried after ``FALLBACK_AFTER``
    failed attempts (the point at which the outbox also tries another channel), or while a page
    on it failed for good and nothing has been delivered on that channel since it was queued.
    One transient failure is not failing: the retry usually gets through. Reads the outbox's
    undelivered rows only (delivered rows are looked up by channel for the second test).
    """
    seen, params = visible(viewer)
    rows = await _fetch(
        store,
        "SELECT o.channel, COUNT(*), MIN(o.created_at) FROM outbox o"
        " LEFT JOIN cases c ON c.id = o.case_id"
        " WHERE ((o.state IN ('pending', 'sending') AND o.attempts >= :after)"
        " OR (o.state = 'failed' AND NOT EXISTS (SELECT 1 FROM outbox d"
        "   WHERE d.channel = o.channel AND d.state = 'delivered'"
        "   AND d.delivered_at >= o.created_at)))"
        + (f" AND (o.case_id IS NULL OR {seen})" if seen else "")
        + " GROUP BY o.channel ORDER BY o.channel",
        params | {"after": FALLBACK_AFTER},
    )
    return [FailingChannel(str(r[0]), int(r[1]), parse_iso(r[2])) for r in rows]


async def unacknowledged(
    store: Store,
    email: str | None = None,
    viewer: Viewer = NOBODY,
    *,
    now: datetime | None = None,
) -> Unacknowledged:
    """Unacknowledged cases ``viewer`` may see and how many of them are assigned to ``email``;
    with ``now``, also the open cases with a clock past due."""
    seen, params = visible(viewer)
    scope = f" AND {seen}" if seen else ""
    async with store.read() as db:
        cursor = await db.execute(
            "SELECT COUNT(*), TOTAL(p.email = :email COLLATE NOCASE) FROM cases c"
            " LEFT JOIN people p ON p.id = c.assignee_id WHERE c.state = 'new'" + scope,
            params | {"email": email or ""},
        )
        row = await cursor.fetchone()
        assert row is not None
        overdue = 0
        if now is not None:
            overdue = await _count(
                db,
                "SELECT COUNT(*) FROM cases c WHERE c.state != 'closed' AND c.id IN"
                " (SELECT case_id FROM clocks WHERE met_at IS NULL AND due_at < :now)" + scope,
                params | {"now": iso(now)},
            )
    return Unacknowledged(int(row[0]), int(row[1]), overdue)


async def open_alerts(store: Store, viewer: Viewer = UPKEEP) -> list[dict[str, str]]:
    """System alerts not yet cleared, oldest first, of those ``viewer`` may see (see
    :func:`~sgalert.records.alerts.open_alerts_now`). No personal data."""
    seen, params = visible(viewer)
    told = seen is None or may_see_confidential_alert(viewer.role)
    async with store.read() as db:
        return await on_connection(db, lambda conn: open_alerts_now(conn, seen, params, told))


# ----- the audit log -----------------------------------------------------------------------


ALL: frozenset[str] = frozenset()  # every action (the marker, not an empty choice)


async def audit_log(
    store: Store, *, limit: int = 500, viewer: Viewer = NOBODY, actions: frozenset[str] = ALL
) -> tuple[AuditRow, ...]:
    """The newest ``limit`` audit entries, newest first, each case id shown as its reference;
    entries about a case ``viewer`` may not see are left out (so the log does not tell of it).
    ``actions``: only these (a desk's attention looks for new cases and escalations)."""
    seen, params = visible(viewer)
    async with store.read() as db:
        found = await entries(db, limit=limit)
        if actions is not ALL:
            found = [e for e in found if e.action in actions]
        ids = sorted({e.case_id for e in found if e.case_id})
        refs: dict[str, str] = {}
        hidden: set[str] = set()
        for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
            marks = ",".join(f":id{n}" for n in range(len(chunk)))
            cursor = await db.execute(
                f"SELECT c.id, c.ref, {seen or 1} FROM cases c WHERE c.id IN ({marks})",
                params | {f"id{n}": case_id for n, case_id in enumerate(chunk)},
            )
            for row in await cursor.fetchall():
                refs[str(row[0])] = str(row[1])
                if not row[2]:
                    hidden.add(str(row[0]))
    return tuple(
        AuditRow(e, refs.get(e.case_id) if e.case_id else None)
        for e in found
        if e.case_id not in hidden
    )


async def case_history(store: Store, case_id: str, *, limit: int = 200) -> list[AuditEntry]:
    """One case's audit trail, newest first: reads, notifications, escalations, actions.

    Entries never hold case content, so the trail needs no unlock.
    """
    async with store.read() as db:
        return await entries(db, case_id=case_id, limit=limit)


async def case_activity(store: Store, case_id: str, *, after: int) -> int | None:
    """The sequence number of the newest audit entry about ``case_id`` after ``after``, or None.

    The log has no index on the case, but its sequence number is the table's key, so only the
    entries after ``after`` are read.
    """
    rows = await store.fetchall(
        "SELECT MAX(seq) FROM audit WHERE seq > ? AND case_id = ?", (after, case_id)
    )
    value = rows[0][0] if rows else None
    return None if value is None else int(value)


# ----- noticing changes (their own module; named here for the desk) -------------------------

from sgalert.desk.changes import LOOKS as LOOKS  # noqa: E402
from sgalert.desk.changes import ChangeMarks as ChangeMarks  # noqa: E402
from sgalert.desk.changes import ChangeProbe as ChangeProbe  # noqa: E402

# ----- statutory clocks, as every client shows them ------------------------------------------
# What a case's clocks say, in words (kept in their own module; named here for the desk).
from sgalert.desk.clock_view import CLOCK_LABELS as CLOCK_LABELS  # noqa: E402
from sgalert.desk.clock_view import SOON_SECONDS as SOON_SECONDS  # noqa: E402
from sgalert.desk.clock_view import CaseClock as CaseClock  # noqa: E402
from sgalert.desk.clock_view import ClockLine as ClockLine  # noqa: E402
from sgalert.desk.clock_view import ClockStanding as ClockStanding  # noqa: E402
from sgalert.desk.clock_view import clock_lines as clock_lines  # noqa: E402
from sgalert.desk.clock_view import local_time as local_time  # noqa: E402
from sgalert.desk.clock_view import span as span  # noqa: E402
