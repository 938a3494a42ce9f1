"""Read-only metadata queries the desk needs and :class:`~sgalert.service.CaseService` lacks.

The queue pages, sorts and filters in SQL so 100,000 cases never become 100,000 rows in memory:
only one page (``PAGE_SIZE`` rows) is fetched and shown at a time. Everything here reads plaintext
metadata only (no unlock, no personal data) through the store's own connection; these functions
are the intended shape of ``CaseService.query_cases`` / ``count_cases`` / ``engine_heartbeat`` and
move there when the core grows them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import datetime

import aiosqlite

from sgalert.audit import AuditEntry, entries
from sgalert.clock import iso, parse_iso
from sgalert.model import CaseSummary
from sgalert.service import CaseService, summary_from_row

PAGE_SIZE = 100


class QueueTab(enum.StrEnum):
    NEEDS_ACTION = "needs"
    ENCOMPASS = "encompass"
    WHISTLE = "whistle"
    LESSON = "lesson"
    ALL = "all"


TAB_LABELS: dict[QueueTab, str] = {
    QueueTab.NEEDS_ACTION: "Needs action",
    QueueTab.ENCOMPASS: "Encompass",
    QueueTab.WHISTLE: "Whistleblowing",
    QueueTab.LESSON: "Lesson",
    QueueTab.ALL: "All",
}


class SortKey(enum.StrEnum):
    PRIORITY = "priority"
    RECEIVED = "received"
    DEADLINE = "deadline"
    REF = "reference"
    STATE = "state"
    ASSIGNEE = "assignee"


# Column a sort key marks in the table header.
SORT_COLUMN: dict[SortKey, str] = {
    SortKey.PRIORITY: "deadline",
    SortKey.RECEIVED: "received",
    SortKey.DEADLINE: "deadline",
    SortKey.REF: "ref",
    SortKey.STATE: "state",
    SortKey.ASSIGNEE: "assignee",
}

# The next unmet clock of every case that has one. Unmet clocks are few (acknowledging meets the
# intake clock), so SQLite builds this small table once per query. "+case_id" keeps the planner
# on the partial index of unmet clocks instead of walking every clock in key order.
_NEXT_DEADLINE = (
    "(SELECT case_id, MIN(due_at) AS due FROM clocks WHERE met_at IS NULL GROUP BY +case_id)"
)
_ASSIGNEE_JOIN = " LEFT JOIN people a ON a.id = c.assignee_id"

# Orders over ids only; rowid breaks ties so a page boundary never repeats or skips a case, and
# it keeps "received" in index order. DEADLINE is answered in two parts: see _deadline_ids.
_ORDER: dict[SortKey, str] = {
    # Unacknowledged and overdue first, then unacknowledged, then overdue, then by clock.
    SortKey.PRIORITY: (
        "CASE WHEN c.state = 'new' AND nd.due < :now THEN 0"
        " WHEN c.state = 'new' THEN 1 WHEN nd.due < :now THEN 2 ELSE 3 END {asc},"
        " nd.due {asc} NULLS LAST, c.received_at {asc}, c.rowid {asc}"
    ),
    SortKey.RECEIVED: "c.received_at {desc}, c.rowid {desc}",
    SortKey.REF: "c.ref {desc}",
    SortKey.STATE: (
        "CASE c.state WHEN 'new' THEN 0 WHEN 'acknowledged' THEN 1 ELSE 2 END {asc},"
        " c.received_at {desc}, c.rowid {desc}"
    ),
    SortKey.ASSIGNEE: "a.email {asc} NULLS LAST, c.received_at {desc}, c.rowid {desc}",
}

_SELECT = """
SELECT c.id, c.ref, c.source, c.state, c.received_at, c.created_at, c.updated_at, c.flags,
       a.email AS assignee, c.acknowledged_at, k.email AS acknowledged_by, c.closed_at,
       (SELECT MIN(due_at) FROM clocks WHERE case_id = c.id AND met_at IS NULL) AS next_deadline
FROM cases c
LEFT JOIN people a ON a.id = c.assignee_id
LEFT JOIN people k ON k.id = c.acknowledged_by
"""


@dataclass(frozen=True, slots=True)
class QueueQuery:
    """One page of one tab, filtered and sorted. ``descending`` flips the key's natural order."""

    tab: QueueTab = QueueTab.NEEDS_ACTION
    search: str = ""
    sort: SortKey = SortKey.PRIORITY
    descending: bool = False
    offset: int = 0
    limit: int = PAGE_SIZE

    def with_tab(self, tab: QueueTab) -> QueueQuery:
        sort = self.sort
        if tab is not QueueTab.NEEDS_ACTION and sort is SortKey.PRIORITY:
            sort = SortKey.RECEIVED
        if tab is QueueTab.NEEDS_ACTION and sort is SortKey.RECEIVED:
            sort = SortKey.PRIORITY
        return replace(self, tab=tab, sort=sort, offset=0)


@dataclass(frozen=True, slots=True)
class QueuePage:
    query: QueueQuery
    rows: tuple[CaseSummary, ...]
    total: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.query.offset > 0


def _where(query: QueueQuery) -> tuple[list[str], dict[str, object]]:
    clauses: list[str] = []
    params: dict[str, object] = {}
    if query.tab is QueueTab.NEEDS_ACTION:
        clauses.append("c.state IN ('new', 'acknowledged')")  # uses cases_by_state
    elif query.tab is not QueueTab.ALL:
        clauses.append("c.source = :source")
        params["source"] = query.tab.value
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


async def _ids(db: aiosqlite.Connection, sql: str, params: dict[str, object]) -> list[str]:
    cursor = await db.execute(sql, params)
    return [str(row[0]) for row in await cursor.fetchall()]


async def _deadline_ids(
    db: aiosqlite.Connection, query: QueueQuery, clauses: list[str], params: dict[str, object]
) -> list[str]:
    """Cases with an unmet clock by that clock, then the rest, newest first.

    Two index-friendly queries instead of sorting every case of the tab by a computed value:
    the dated set is small, and the undated rest is read in ``received_at`` index order.
    """
    joins = _ASSIGNEE_JOIN if query.search.strip() else ""
    direction = "DESC" if query.descending else "ASC"
    dated_from = f" FROM cases c JOIN {_NEXT_DEADLINE} nd ON nd.case_id = c.id{joins}"
    dated_from += _where_sql(clauses)
    cursor = await db.execute(f"SELECT COUNT(*){dated_from}", params)
    count_row = await cursor.fetchone()
    dated = int(count_row[0]) if count_row else 0
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
) -> tuple[list[str], dict[str, object], list[str]]:
    clauses, params = _where(query)
    if query.sort is SortKey.DEADLINE:
        return await _deadline_ids(db, query, clauses, params), params, clauses
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
    return await _ids(db, sql, page_params), params, clauses


async def fetch_page(
    service: CaseService, query: QueueQuery, now: datetime, *, known_total: int | None = None
) -> QueuePage:
    """One page of the queue: the page's ids in SQL order (no per-row work for skipped rows),
    then the full metadata of just those rows. ``known_total`` (the tab's count, when there is
    no search) saves counting the tab again on every page turn."""
    async with service.store.read() as db:
        ids, params, clauses = await _page_ids(db, query, now)
        total = known_total
        if total is None or query.search.strip() or (not ids and query.offset):
            joins = _ASSIGNEE_JOIN if query.search.strip() else ""
            cursor = await db.execute(
                f"SELECT COUNT(*) FROM cases c{joins}{_where_sql(clauses)}", params
            )
            count_row = await cursor.fetchone()
            total = int(count_row[0]) if count_row else 0
        if not ids and query.offset and total:
            query = replace(query, offset=(total - 1) // query.limit * query.limit)
            ids, params, clauses = await _page_ids(db, query, now)
        has_next = len(ids) > query.limit
        ids = ids[: query.limit]
        rows: dict[str, CaseSummary] = {}
        if ids:
            cursor = await db.execute(f"{_SELECT} WHERE c.id IN ({','.join('?' * len(ids))})", ids)
            rows = {row["id"]: summary_from_row(row) for row in await cursor.fetchall()}
    ordered = tuple(rows[i] for i in ids if i in rows)
    return QueuePage(query, ordered, max(total, query.offset + len(ordered)), has_next)


async def tab_counts(service: CaseService) -> dict[QueueTab, int]:
    """How many cases each tab holds: one pass over the cases table."""
    rows = await service.store.fetchall(
        "SELECT COUNT(*), TOTAL(state != 'closed'), TOTAL(source = 'encompass'),"
        " TOTAL(source = 'whistle'), TOTAL(source = 'lesson') FROM cases"
    )
    total, needs, encompass, whistle, lesson = (int(value) for value in rows[0])
    return {
        QueueTab.NEEDS_ACTION: needs,
        QueueTab.ENCOMPASS: encompass,
        QueueTab.WHISTLE: whistle,
        QueueTab.LESSON: lesson,
        QueueTab.ALL: total,
    }


async def engine_heartbeat(service: CaseService) -> datetime | None:
    """When the engine last said it was alive; None if it has never run on this store."""
    rows = await service.store.fetchall("SELECT heartbeat_at FROM engine_lease WHERE id = 1")
    return parse_iso(rows[0][0]) if rows else None


async def unacknowledged(service: CaseService, email: str) -> tuple[int, int]:
    """(all unacknowledged cases, those assigned to ``email``)."""
    rows = await service.store.fetchall(
        "SELECT COUNT(*), TOTAL(p.email = ? COLLATE NOCASE) FROM cases c"
        " LEFT JOIN people p ON p.id = c.assignee_id WHERE c.state = 'new'",
        (email,),
    )
    return int(rows[0][0]), int(rows[0][1])


@dataclass(frozen=True, slots=True)
class AuditRow:
    entry: AuditEntry
    ref: str | None


@dataclass(frozen=True, slots=True)
class AuditLog:
    rows: tuple[AuditRow, ...]
    refs: dict[str, str] = field(default_factory=dict)


async def audit_log(service: CaseService, *, limit: int = 500) -> AuditLog:
    """The newest audit entries with each case id shown as its reference."""
    async with service.store.read() as db:
        found = await entries(db, limit=limit)
        ids = sorted({e.case_id for e in found if e.case_id})
        refs: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            cursor = await db.execute(
                f"SELECT id, ref FROM cases WHERE id IN ({','.join('?' * len(chunk))})", chunk
            )
            refs |= {str(row[0]): str(row[1]) for row in await cursor.fetchall()}
    return AuditLog(
        tuple(AuditRow(e, refs.get(e.case_id) if e.case_id else None) for e in found), refs
    )


async def case_history(service: CaseService, case_id: str, *, limit: int = 200) -> list[AuditEntry]:
    """The case's audit trail: reads, notifications, escalations, actions (no content)."""
    async with service.store.read() as db:
        return await entries(db, case_id=case_id, limit=limit)
