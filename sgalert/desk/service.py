"""The one door to the core for the TUI and the CLI.

Every state change is one write transaction that re-reads the case, checks the transition and the
person's entitlement, records the change, and appends the audit entry. Reading a case needs an
unlocked :class:`~sgalert.records.keyring.Identity`; listing cases needs nothing, because the
metadata it returns carries no personal data.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from sgalert.clock import Clock, iso, parse_iso, utcnow
from sgalert.config import Config, load_config
from sgalert.desk import export
from sgalert.desk import views as desk
from sgalert.errors import IllegalTransition, InvalidInput, NotEntitled, NotFound
from sgalert.model import CaseState, CaseSummary, Flag, KeyName, Readers, Source
from sgalert.records import audit, keyring
from sgalert.records.cases import (
    FIELD_ATTACHMENTS,
    FIELD_BODY,
    FIELD_FACTS,
    NewCase,
    SealedBatch,
    StoredCase,
    data_key_info,
    insert_now,
    open_field,
    open_fields,
    seal_cases,
    sealed_with,
    unwrap_data_keys,
)
from sgalert.records.chronology import (
    INSERT_ENTRY,
    ChronologyEntry,
    EntryKind,
    read_entries,
    seal_entry,
)
from sgalert.records.crypto import wrap_to_public_key
from sgalert.records.keyring import Identity, Person
from sgalert.records.store import Store, on_connection
from sgalert.routing.calendar_check import flag_guessed_deadlines
from sgalert.routing.escalation import (
    ACTION_CLOCKS,
    Plan,
    schedule_new_cases,
    start_action_clock,
    stop_for_acknowledged,
)
from sgalert.workspace import Workspace

_SUMMARY_SQL = desk.SUMMARY_SQL
summary_from_row = desk.summary_from_row  # the desk's reader of that query's rows

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True, slots=True)
class CaseClock:
    kind: str
    due_at: datetime
    met_at: datetime | None


@dataclass(frozen=True, slots=True)
class CaseView:
    """What an entitled person sees of a case once it is decrypted."""

    summary: CaseSummary
    facts: dict[str, Any]
    body_text: str
    subject: str
    sender: dict[str, Any] | None
    notes: dict[str, Any]
    attachments: tuple[Attachment, ...]
    reporter: dict[str, Any] | None
    chronology: tuple[ChronologyEntry, ...]
    clocks: tuple[CaseClock, ...]


@dataclass(frozen=True, slots=True)
class AttachmentContent:
    """One attachment decrypted for export. Its name and bytes stay out of its repr, and so out
    of logs and tracebacks: a filename can name a child."""

    index: int
    filename: str = field(repr=False)
    content_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class SavedAttachment:
    """Where a decrypted copy was written (the path can hold the attachment's name)."""

    path: Path = field(repr=False)
    size: int
    replaced: bool


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    """One row of the outbox for a case: a page to one person (or a shared channel).

    ``error`` is a class of failure from a fixed vocabulary (``timeout``, ``recipient
    refused``…), never the channel's own words, which can quote an address or a server's reply.
    """

    id: int
    queued_at: datetime
    channel: str
    recipient: str  # a member of staff's address, or the channel's name for a shared channel
    raised_by: str  # the timer's kind ("step", "repeat", "clock-warning", "clock:…") or "fallback"
    step: int
    urgency: str
    reason: str
    state: str  # pending, sending, delivered, failed, superseded
    attempts: int
    next_attempt_at: datetime | None
    error: str | None
    delivered_at: datetime | None
    acknowledged_at: datetime | None  # when the acknowledgement code it carried was used
    fallback_of: int | None


@dataclass(frozen=True, slots=True)
class EscalationTimer:
    """One escalation or deadline timer of a case: fired, cancelled, or still to come."""

    id: int
    kind: str
    step: int
    created_at: datetime
    due_at: datetime
    fired_at: datetime | None
    cancelled_at: datetime | None

    @property
    def state(self) -> str:
        if self.fired_at is not None:
            return "fired"
        return "cancelled" if self.cancelled_at is not None else "pending"


@dataclass(frozen=True, slots=True)
class NotificationHistory:
    """Who was paged about a case, how, and what is still to come. Metadata only."""

    ref: str
    notifications: tuple[NotificationRecord, ...]
    timers: tuple[EscalationTimer, ...]
    # The audit log's last sequence number in the snapshot this was read from. Every page and
    # timer change appends an entry naming its case, so the history is current until
    # :meth:`CaseService.case_activity` finds an entry about the case after this one.
    audit_seq: int = 0


# Classes of delivery failure, matched on the words the notifiers use; the first match wins.
_ERROR_CLASSES: tuple[tuple[str, str], ...] = (
    ("unexpected", "unexpected error"),
    ("did not answer in time", "timeout"),
    ("tls certificate", "certificate not trusted"),
    ("throttling", "throttled"),
    ("sign-in", "sign-in refused"),
    ("authentication", "sign-in refused"),
    ("access token", "sign-in refused"),
    ("xoauth2", "sign-in refused"),
    ("recipient", "recipient refused"),
    ("not a plain address", "recipient refused"),
    ("sender", "sender refused"),
    ("unreachable", "unreachable"),
    ("could not connect", "unreachable"),
    ("could not be reached", "unreachable"),
    ("closed the connection", "unreachable"),
    ("maildir", "could not write the mail file"),
    ("over teams' limit", "message too large"),
    ("unsuitable", "server unsuitable"),
    ("redirected", "refused by the server"),
    ("refused", "refused by the server"),
    ("answered http", "refused by the server"),
    ("failed", "server error"),
)


def delivery_error_class(message: str | None) -> str | None:
    """The class of a stored delivery error, without its text."""
    if not message:
        return None
    lowered = message.lower()
    return next((name for words, name in _ERROR_CLASSES if words in lowered), "delivery error")


class _Rotated(Exception):
    """A group key rotated between sealing and storing: seal again inside the transaction."""


class _Refused(Exception):
    """Raised inside a transaction so it rolls back; turned into an audited NotEntitled."""

    def __init__(
        self,
        case_id: str,
        ref: str,
        what: str | None = None,
        detail: Mapping[str, object] | None = None,
    ) -> None:
        self.case_id = case_id
        self.ref = ref
        self.what = what or f"case {ref}"  # what the person is not entitled to
        self.detail = dict(detail or {})  # more for the audit entry (metadata only)


# Where a case can be referred: a label for the record, and the clock a referral starts.
REFERRALS: dict[str, tuple[str, str | None]] = {
    "lado": ("the LADO (allegation against an adult working with children)", "lado-1-working-day"),
    "social-care": ("children's social care", None),
    "police": ("the police", None),
    "prevent": ("Channel / Prevent", None),
    "early-help": ("early help", None),
    "marac": ("MARAC (high-risk domestic abuse)", None),
}


def make_plan(config: Config) -> Plan:
    """The escalation plan a config describes: policies, calendar, configured channels."""
    return Plan(
        school=config.school_name,
        calendar=config.calendar,
        policies=config.policies,
        channels=tuple(c.name for c in config.channels),
        per_person_channels=frozenset(c.name for c in config.channels if c.per_person),
        reply_address=next(
            (str(c.options["reply_to"]) for c in config.channels if "reply_to" in c.options), None
        ),
        source_types={s.name: s.type for s in config.sources if s.purpose == "cases"},
        accepts_replies=any(s.purpose == "replies" for s in config.sources),
    )


async def _to_thread_to_the_end(work: Callable[..., T], *args: object) -> T:
    """Run blocking file work in a worker thread and, even if cancelled, wait until it has
    finished: the thread runs on regardless, and what it leaves behind (a written or a placed
    copy) must be known before anything is cleaned up. The cancellation is re-raised after."""
    task = asyncio.ensure_future(asyncio.to_thread(work, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise


class CaseService:
    """Case operations over one store. Build with :meth:`open`; close with :meth:`close`."""

    def __init__(self, store: Store, config: Config | None, clock: Clock = utcnow) -> None:
        self.store = store
        self.config = config
        self._clock = clock
        # Public keys only; checked against the store inside every write that uses them.
        self._keyring: keyring.PublicKeyring | None = None
        self.plan = make_plan(config) if config is not None else None

    def schedule_now(
        self, conn: sqlite3.Connection, pairs: Sequence[tuple[StoredCase, NewCase]]
    ) -> None:
        """Clocks and first escalation timers, in the transaction that stores the cases."""
        if self.plan is not None and pairs:
            schedule_new_cases(conn, self.plan, pairs, self._clock())

    async def _insert(
        self, db: aiosqlite.Connection, batch: SealedBatch, actor: str
    ) -> list[StoredCase]:
        def work(conn: sqlite3.Connection) -> list[StoredCase]:
            stored = insert_now(conn, batch, actor)
            self.schedule_now(conn, [(s, c.case) for s, c in zip(stored, batch.cases, strict=True)])
            return stored

        return await on_connection(db, work)

    @classmethod
    async def open(cls, workspace: Workspace, clock: Clock = utcnow) -> CaseService:
        config = load_config(workspace.config_path)
        store = await Store.open(workspace.store_path)
        return cls(store, config, clock)

    async def close(self) -> None:
        await self.store.close()

    async def __aenter__(self) -> CaseService:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def _readers(self) -> Mapping[Source, Readers] | None:
        return self.config.readers if self.config else None

    # ----- people -------------------------------------------------------------------------

    async def unlock(self, email: str, passphrase: str) -> Identity:
        return await keyring.unlock(self.store, email, passphrase)

    async def people(self) -> list[tuple[Person, dict[str, str]]]:
        return await keyring.list_people(self.store)

    # ----- metadata (no unlock needed) ----------------------------------------------------

    async def list_cases(
        self,
        *,
        state: CaseState | None = None,
        source: Source | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[CaseSummary]:
        """Metadata only, newest first."""
        where: list[str] = []
        params: list[object] = []
        if state is not None:
            where.append("c.state = ?")
            params.append(state.value)
        if source is not None:
            where.append("c.source = ?")
            params.append(source.value)
        sql = _SUMMARY_SQL + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY c.received_at DESC, c.ref DESC LIMIT ? OFFSET ?"
        params += [limit if limit is not None else -1, offset]
        return [summary_from_row(row) for row in await self.store.fetchall(sql, params)]

    async def summary(self, ref: str) -> CaseSummary:
        async with self.store.read() as db:
            return await self._summary(db, ref)

    async def _summary(self, db: aiosqlite.Connection, ref: str) -> CaseSummary:
        cursor = await db.execute(
            _SUMMARY_SQL + " WHERE c.id = ? OR c.ref = ?", (ref.strip(), ref.strip().upper())
        )
        row = await cursor.fetchone()
        if row is None:
            raise NotFound(f"no case {ref.strip()}")
        return summary_from_row(row)

    # ----- the desk: queue, counts, banners, live updates (no unlock needed) --------------

    async def queue_page(
        self, query: desk.QueueQuery, *, known_total: int | None = None
    ) -> desk.QueuePage:
        """One page of the queue, paged, sorted and filtered in SQL; overdue judged by this
        service's clock. ``known_total`` is the view's count from :meth:`queue_counts`, which
        saves a count per page turn when there is no search."""
        return await desk.queue_page(self.store, query, self._clock(), known_total=known_total)

    async def queue_counts(self) -> dict[desk.QueueView, int]:
        """How many cases each queue view holds."""
        return await desk.queue_counts(self.store)

    async def engine_heartbeat(self) -> datetime | None:
        """When the engine last beat; None if it never ran here. Stale means nobody is paged."""
        return await desk.engine_heartbeat(self.store)

    async def engine_lease(self) -> desk.EngineLease | None:
        """The engine's lease (holder, heartbeat, end); judge it with ``lapsed``."""
        return await desk.engine_lease(self.store)

    async def failing_channels(self) -> list[desk.FailingChannel]:
        """Notification channels not getting pages through (channel names only)."""
        return await desk.failing_channels(self.store)

    async def unacknowledged(self, email: str | None = None) -> desk.Unacknowledged:
        """Unacknowledged cases, and how many of them are assigned to ``email``."""
        return await desk.unacknowledged(self.store, email)

    async def open_alerts(self) -> list[dict[str, str]]:
        """System alerts not yet cleared (a source down…): silence must not look like safety."""
        return await desk.open_alerts(self.store)

    def change_probe(self) -> desk.ChangeProbe:
        """A probe that notices commits to this store, for a desk's live updates. It opens its
        own connection in the thread that first polls it; close it from that thread."""
        return desk.ChangeProbe(self.store.path)

    # ----- creating -----------------------------------------------------------------------

    async def create_cases(
        self, cases: Sequence[NewCase], actor: str = audit.ENGINE
    ) -> list[StoredCase]:
        """Seal and store cases in one transaction using public keys only (the engine's path)."""
        return await self.store_sealed(await self.seal(cases), actor)

    async def store_sealed(
        self, sealed: SealedBatch, actor: str = audit.ENGINE
    ) -> list[StoredCase]:
        """Store cases sealed by :meth:`seal`, resealing first if a group key rotated since."""

        def work(conn: sqlite3.Connection) -> list[StoredCase]:
            current = {
                (str(r[0]), int(r[1]))
                for r in conn.execute("SELECT name, current_version FROM groups")
            }
            if not sealed.group_versions() <= current:
                raise _Rotated
            stored = insert_now(conn, sealed, actor)
            self.schedule_now(
                conn, [(s, c.case) for s, c in zip(stored, sealed.cases, strict=True)]
            )
            return stored

        try:
            return await self.store.transact(work)  # one thread hop: the usual case
        except _Rotated:
            async with self.store.write() as db:
                current = await self.reseal_if_rotated(db, sealed)
                return await self._insert(db, current, actor)

    async def create_cases_in_batches(
        self, cases: Sequence[NewCase], batch_size: int = 100, actor: str = audit.ENGINE
    ) -> list[StoredCase]:
        """Store a backlog: each batch in one transaction, sealing the next while one commits.

        Sealing is CPU work in a worker thread and SQLite releases the GIL while it writes and
        syncs, so the two overlap; a catch-up after an outage runs close to twice as fast.
        """
        chunks = [cases[i : i + batch_size] for i in range(0, len(cases), batch_size)]
        stored: list[StoredCase] = []
        if not chunks:
            return stored
        sealing = asyncio.create_task(self.seal(chunks[0]))
        for index in range(len(chunks)):
            sealed = await sealing
            if index + 1 < len(chunks):
                sealing = asyncio.create_task(self.seal(chunks[index + 1]))
            try:
                stored += await self.store_sealed(sealed, actor)
            except BaseException:
                sealing.cancel()
                raise
        return stored

    async def seal(self, cases: Sequence[NewCase]) -> SealedBatch:
        """Seal outside any transaction (in a worker thread for batches), so storing can overlap
        sealing. The public keys may be cached: :meth:`store_sealed` checks them again."""
        if self.config is not None:
            flag_guessed_deadlines(self.config.calendar, cases)
        ring = self._keyring
        if ring is None:
            async with self.store.read() as db:
                ring = self._keyring = await keyring.load_public_keyring(db)
        readers = self._readers
        if len(cases) <= 4:  # a thread hop costs more than sealing a handful
            return seal_cases(cases, ring, readers)
        return await asyncio.to_thread(seal_cases, cases, ring, readers)

    async def reseal_if_rotated(self, db: aiosqlite.Connection, sealed: SealedBatch) -> SealedBatch:
        """Inside the write transaction: if a group key rotated since sealing, seal again.

        Otherwise a person removed a moment ago could read a case sealed to the old key.
        """
        current = {
            (str(row[0]), int(row[1]))
            for row in await db.execute_fetchall("SELECT name, current_version FROM groups")
        }
        if sealed.group_versions() <= current:
            return sealed
        ring = self._keyring = await keyring.load_public_keyring(db)
        return seal_cases([s.case for s in sealed.cases], ring, self._readers)

    async def record_manual_case(
        self,
        identity: Identity,
        source: Source,
        *,
        facts: Mapping[str, str],
        body_text: str,
        caller: str,
        received_at: datetime | None = None,
        reporter: Mapping[str, str] | None = None,
        flags: frozenset[str] = frozenset(),
    ) -> StoredCase:
        """Record a notification taken by phone: sealed as any other, with a signed first entry."""
        received = received_at or self._clock()
        content = {
            FIELD_FACTS: json.dumps(dict(facts), ensure_ascii=False).encode(),
            FIELD_BODY: body_text.encode(),
            FIELD_ATTACHMENTS: b"[]",
        }
        identity_fields = {"reporter": json.dumps(dict(reporter)).encode()} if reporter else {}
        new = NewCase(
            source=source,
            received_at=received,
            origin="manual",
            content=content,
            identity=identity_fields,
            flags=frozenset(flags | {Flag.MANUAL_ENTRY}),
        )
        if self.config is not None:
            flag_guessed_deadlines(self.config.calendar, [new])
        async with self.store.write() as db:
            # Sealed inside the transaction: the signed first entry needs this exact data key.
            ring = await keyring.load_public_keyring(db)
            sealed = seal_cases([new], ring, self._readers)
            _, entry_row = seal_entry(
                identity,
                sealed.cases[0].data_keys[KeyName.CONTENT],
                new.id,
                EntryKind.CASE_RECORDED,
                f"Notification taken by phone from {caller}.",
                at=self._clock(),
            )
            (stored,) = await self._insert(db, sealed, identity.email)
            await db.execute(INSERT_ENTRY, entry_row)
            await audit.append(
                db,
                [audit.AuditEvent(identity.email, "note-added", new.id, {"kind": "case-recorded"})],
            )
        return stored

    # ----- reading ------------------------------------------------------------------------

    async def open_case(self, identity: Identity, ref: str) -> CaseView:
        """Decrypt what this person may see of one case. Audited, refusals included."""
        try:
            async with self.store.write() as db:
                summary = await self._summary(db, ref)
                views = await self._open(db, identity, [summary])
                if summary.id not in views:
                    raise _Refused(summary.id, summary.ref)
                view = views[summary.id]
                await audit.append(
                    db,
                    [
                        audit.AuditEvent(
                            identity.email,
                            "case-read",
                            summary.id,
                            {"identity": view.reporter is not None},
                        )
                    ],
                )
                return view
        except _Refused as refused:
            await self._refuse(identity, refused, "read")
            raise AssertionError("unreachable") from None

    async def open_cases(self, identity: Identity, refs: Sequence[str]) -> list[CaseView]:
        """Decrypt many cases in one transaction (child-file matching, bulk review).

        Cases the person may not read are left out, not refused: a search over a queue is not an
        attempt on one case. Each case read is audited.
        """
        async with self.store.write() as db:
            marks = ",".join("?" * len(refs))
            cursor = await db.execute(
                _SUMMARY_SQL + f" WHERE c.id IN ({marks}) OR c.ref IN ({marks})",
                [*refs, *(ref.strip().upper() for ref in refs)],
            )
            summaries = [summary_from_row(row) for row in await cursor.fetchall()]
            views = await self._open(db, identity, summaries)
            await audit.append(
                db,
                [
                    audit.AuditEvent(
                        identity.email,
                        "case-read",
                        case_id,
                        {"identity": view.reporter is not None},
                    )
                    for case_id, view in views.items()
                ],
            )
        order = {s.id: i for i, s in enumerate(summaries)}
        return sorted(views.values(), key=lambda v: order[v.summary.id])

    async def _open(
        self, db: aiosqlite.Connection, identity: Identity, summaries: Sequence[CaseSummary]
    ) -> dict[str, CaseView]:
        ids = [s.id for s in summaries]
        keys = await unwrap_data_keys(db, identity, ids)
        readable = [s for s in summaries if (s.id, KeyName.CONTENT.value) in keys]
        opened = await open_fields(db, keys, [s.id for s in readable])
        content_keys = {s.id: keys[(s.id, KeyName.CONTENT.value)] for s in readable}
        chronologies = await read_entries(db, content_keys)
        clocks: dict[str, list[CaseClock]] = {s.id: [] for s in readable}
        ids = [s.id for s in readable]
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = await db.execute_fetchall(
                "SELECT case_id, kind, due_at, met_at FROM clocks"
                f" WHERE case_id IN ({','.join('?' * len(chunk))}) ORDER BY due_at",
                chunk,
            )
            for row in rows:
                clocks[row["case_id"]].append(
                    CaseClock(
                        row["kind"],
                        parse_iso(row["due_at"]),
                        parse_iso(row["met_at"]) if row["met_at"] else None,
                    )
                )
        views: dict[str, CaseView] = {}
        for summary in readable:
            fields = opened[summary.id]
            reporter = json.loads(fields["reporter"]) if "reporter" in fields else None
            attachments = tuple(
                Attachment(a["filename"], a["content_type"], int(a["size"]))
                for a in json.loads(fields.get(FIELD_ATTACHMENTS, b"[]"))
            )
            views[summary.id] = CaseView(
                summary=summary,
                facts=json.loads(fields.get(FIELD_FACTS, b"{}")),
                body_text=fields.get(FIELD_BODY, b"").decode("utf-8", "replace"),
                subject=fields.get("subject", b"").decode("utf-8", "replace"),
                sender=json.loads(fields["sender"]) if "sender" in fields else None,
                notes=json.loads(fields.get("ingest_notes", b"{}")),
                attachments=attachments,
                reporter=reporter,
                chronology=tuple(chronologies[summary.id]),
                clocks=tuple(clocks[summary.id]),
            )
        return views

    # ----- attachments and notification history ------------------------------------------

    async def attachment(self, identity: Identity, ref: str, index: int) -> AttachmentContent:
        """Decrypt one attachment (numbered from 0 as the case view lists them) for export.

        Handing out the plaintext is an export, so it is audited as one (``attachment-exported``
        with the index and size, never the filename); a person not entitled to the case, or
        whose keys do not reach the attachment (one sealed with a whistleblower's identity), is
        refused and the refusal audited. Prefer :meth:`save_attachment`, which also writes the
        copy safely.
        """
        try:
            async with self.store.write() as db:
                summary = await self._summary(db, ref)
                content = await self._attachment(db, identity, summary, index)
                await self._audit_export(db, identity, summary, content, "caller")
                return content
        except _Refused as refused:
            await self._refuse(identity, refused, "export-attachment")
            raise AssertionError("unreachable") from None

    async def save_attachment(
        self,
        identity: Identity,
        ref: str,
        index: int,
        destination: Path,
        *,
        overwrite: bool = False,
    ) -> SavedAttachment:
        """Write a decrypted copy of one attachment to ``destination``: mode 0600, atomically,
        never over an existing file unless ``overwrite`` (:class:`AlreadyExists` otherwise).

        The log records exactly the copies that were written, and no lock is held while the
        file is: the attachment is decrypted in a read transaction; the copy is written,
        nameless, in a worker thread outside any transaction; then one short write transaction
        checks the entitlement again, appends the audit entry and gives the copy its name. If
        that does not commit, the copy is removed again and a file it replaced is restored.
        Cancelled at any point, it waits for the thread it started and cleans up first.
        """
        copy = export.StagedCopy(destination, overwrite=overwrite)
        try:
            async with self.store.read() as db:
                summary = await self._summary(db, ref)
                content = await self._attachment(db, identity, summary, index)
            await _to_thread_to_the_end(copy.write, content.data)
            try:
                async with self.store.write() as db:
                    summary = await self._summary(db, ref)
                    await self._reach_attachment(db, identity, summary, index)
                    await self._audit_export(db, identity, summary, content, "file")
                    await _to_thread_to_the_end(copy.place)
            except BaseException:
                await _to_thread_to_the_end(copy.unplace)  # no unrecorded copy stays behind
                raise
        except _Refused as refused:
            await self._refuse(identity, refused, "export-attachment")
            raise AssertionError("unreachable") from None
        finally:
            await _to_thread_to_the_end(copy.discard)
        return SavedAttachment(copy.target, len(content.data), copy.replaced)

    async def _reach_attachment(
        self, db: aiosqlite.Connection, identity: Identity, summary: CaseSummary, index: int
    ) -> tuple[Mapping[tuple[str, str], bytes], dict[str, Any]]:
        """The person's keys and the listed attachment, once it is certain they reach it.

        An attachment need not be sealed with the content key: a whistleblowing case seals its
        attachments' bytes with the identity key (a signed statement names the reporter), so an
        investigator who reads the allegation is refused its attachments. "Not there" is
        :class:`NotFound`; "there, but not for this person" is a refusal, audited.
        """
        keys = await unwrap_data_keys(db, identity, [summary.id])
        if (summary.id, KeyName.CONTENT.value) not in keys:
            raise _Refused(summary.id, summary.ref)
        listed = json.loads(await open_field(db, keys, summary.id, FIELD_ATTACHMENTS) or b"[]")
        if not 0 <= index < len(listed):
            raise NotFound(f"case {summary.ref} has no attachment number {index + 1}")
        key_name = await sealed_with(db, summary.id, f"attachment/{index}")
        if key_name is None:
            raise NotFound(f"the content of attachment {index + 1} of {summary.ref} was not kept")
        if (summary.id, key_name) not in keys:
            sealing = (
                " (it is sealed with the reporter's identity)"
                if key_name == KeyName.IDENTITY.value
                else ""
            )
            raise _Refused(
                summary.id,
                summary.ref,
                f"attachment {index + 1} of case {summary.ref}{sealing}",
                {"index": index, "key": key_name},
            )
        return keys, listed[index]

    async def _attachment(
        self, db: aiosqlite.Connection, identity: Identity, summary: CaseSummary, index: int
    ) -> AttachmentContent:
        keys, meta = await self._reach_attachment(db, identity, summary, index)
        data = await open_field(db, keys, summary.id, f"attachment/{index}")
        if data is None:
            raise NotFound(f"the content of attachment {index + 1} of {summary.ref} was not kept")
        return AttachmentContent(
            index=index,
            filename=str(meta.get("filename") or ""),
            content_type=str(meta.get("content_type") or "application/octet-stream"),
            data=data,
        )

    async def _audit_export(
        self,
        db: aiosqlite.Connection,
        identity: Identity,
        summary: CaseSummary,
        content: AttachmentContent,
        to: str,
    ) -> None:
        detail = {"ref": summary.ref, "index": content.index, "bytes": len(content.data), "to": to}
        await audit.append(
            db, [audit.AuditEvent(identity.email, "attachment-exported", summary.id, detail)]
        )

    async def notification_history(self, identity: Identity, ref: str) -> NotificationHistory:
        """Every page about the case (queued, delivered, failed, superseded) and its escalation
        timers, for someone entitled to the case; a refusal is audited. Metadata only: staff
        addresses, channels, times, and classes of failure, never a channel's error text."""
        try:
            async with self.store.read() as db:
                summary = await self._summary(db, ref)
                await self._content_key(db, identity, summary)
                rows = await db.execute_fetchall(
                    "SELECT o.id, o.created_at, o.channel, o.recipient, o.payload, o.state,"
                    " o.attempts, o.next_attempt_at, o.last_error, o.delivered_at,"
                    " o.fallback_of, t.kind AS timer_kind,"
                    " (SELECT MIN(a.used_at) FROM ack_tokens a WHERE a.outbox_id = o.id)"
                    " AS acknowledged_at"
                    " FROM outbox o LEFT JOIN timers t ON t.id = o.timer_id"
                    " WHERE o.case_id = ? ORDER BY o.created_at, o.id",
                    (summary.id,),
                )
                timer_rows = await db.execute_fetchall(
                    "SELECT id, kind, step, created_at, due_at, fired_at, cancelled_at"
                    " FROM timers WHERE case_id = ? ORDER BY due_at, id",
                    (summary.id,),
                )
                cursor = await db.execute("SELECT COALESCE(MAX(seq), 0) FROM audit")
                seq_row = await cursor.fetchone()
                audit_seq = int(seq_row[0]) if seq_row else 0
        except _Refused as refused:
            await self._refuse(identity, refused, "notification-history")
            raise AssertionError("unreachable") from None

        def when(value: str | None) -> datetime | None:
            return parse_iso(value) if value else None

        notifications = []
        for row in rows:
            payload = json.loads(row["payload"])
            state = str(row["state"])
            notifications.append(
                NotificationRecord(
                    id=int(row["id"]),
                    queued_at=parse_iso(row["created_at"]),
                    channel=str(row["channel"]),
                    recipient=str(row["recipient"]),
                    raised_by="fallback" if row["fallback_of"] else str(row["timer_kind"] or ""),
                    step=int(payload.get("step") or 0),
                    urgency=str(payload.get("urgency") or ""),
                    reason=str(payload.get("reason") or ""),
                    state=state,
                    attempts=int(row["attempts"]),
                    next_attempt_at=when(row["next_attempt_at"]) if state == "pending" else None,
                    error=delivery_error_class(row["last_error"]),
                    delivered_at=when(row["delivered_at"]),
                    acknowledged_at=when(row["acknowledged_at"]),
                    fallback_of=row["fallback_of"],
                )
            )
        timers = tuple(
            EscalationTimer(
                id=int(row["id"]),
                kind=str(row["kind"]),
                step=int(row["step"]),
                created_at=parse_iso(row["created_at"]),
                due_at=parse_iso(row["due_at"]),
                fired_at=when(row["fired_at"]),
                cancelled_at=when(row["cancelled_at"]),
            )
            for row in timer_rows
        )
        return NotificationHistory(summary.ref, tuple(notifications), timers, audit_seq)

    async def case_activity(self, case_id: str, *, after: int) -> int | None:
        """The newest audit entry about a case after sequence number ``after``, or None: what
        a case view reloads its notification history on (every page, delivery and timer of a
        case is audited under it). Metadata only; a short scan of the log's newest entries."""
        return await desk.case_activity(self.store, case_id, after=after)

    # ----- acting -------------------------------------------------------------------------

    async def _refuse(self, identity: Identity, refused: _Refused, action: str) -> None:
        detail = {"action": action, **refused.detail}
        async with self.store.write() as db:
            await audit.append(
                db, [audit.AuditEvent(identity.email, "refused", refused.case_id, detail)]
            )
        raise NotEntitled(f"{identity.email} is not entitled to {refused.what}")

    async def _content_key(
        self, db: aiosqlite.Connection, identity: Identity, summary: CaseSummary
    ) -> bytes:
        keys = await unwrap_data_keys(db, identity, [summary.id])
        key = keys.get((summary.id, KeyName.CONTENT.value))
        if key is None:
            raise _Refused(summary.id, summary.ref)
        return key

    async def _add_entry(
        self,
        identity: Identity,
        ref: str,
        kind: EntryKind,
        text: str,
        *,
        action: str,
        reason: str | None = None,
        corrects: str | None = None,
        refused_when_closed: str | None = None,
        then: Callable[[aiosqlite.Connection, CaseSummary], Awaitable[object]] | None = None,
    ) -> str:
        """Seal and store one signed entry in one write transaction that re-reads the case.

        ``refused_when_closed``: the entry is an action a closed case does not take; the message
        raised. ``then``: more work for the same transaction (a referral's clock), so a refusal
        anywhere records nothing at all.
        """
        if not text.strip():
            raise InvalidInput("the entry's text is empty")
        try:
            async with self.store.write() as db:
                summary = await self._summary(db, ref)
                key = await self._content_key(db, identity, summary)
                if refused_when_closed is not None and summary.state is CaseState.CLOSED:
                    raise IllegalTransition(refused_when_closed.format(ref=summary.ref))
                if corrects is not None:
                    cursor = await db.execute(
                        "SELECT 1 FROM chronology WHERE id = ? AND case_id = ?",
                        (corrects, summary.id),
                    )
                    if await cursor.fetchone() is None:
                        raise NotFound(f"case {summary.ref} has no entry {corrects} to correct")
                entry_id, row = seal_entry(
                    identity,
                    key,
                    summary.id,
                    kind,
                    text,
                    at=self._clock(),
                    reason=reason,
                    corrects=corrects,
                )
                await db.execute(INSERT_ENTRY, row)
                await self._touch(db, summary.id)
                detail: dict[str, object] = {"entry": entry_id, "kind": kind.value}
                if corrects:
                    detail["corrects"] = corrects
                await audit.append(
                    db, [audit.AuditEvent(identity.email, action, summary.id, detail)]
                )
                if then is not None:
                    await then(db, summary)
                return entry_id
        except _Refused as refused:
            await self._refuse(identity, refused, action)
            raise AssertionError("unreachable") from None

    async def _touch(self, db: aiosqlite.Connection, case_id: str) -> None:
        await db.execute(
            "UPDATE cases SET updated_at = ? WHERE id = ?", (iso(self._clock()), case_id)
        )

    async def add_note(
        self, identity: Identity, ref: str, text: str, *, corrects: str | None = None
    ) -> str:
        """Add a signed note; a correction names the entry it corrects, which stays as it was."""
        return await self._add_entry(
            identity, ref, EntryKind.NOTE, text, action="note-added", corrects=corrects
        )

    async def record_decision(
        self, identity: Identity, ref: str, decision: str, reason: str
    ) -> str:
        """A signed decision and its reason; refused on a closed case, judged in the writing
        transaction so a close committed by another desk a moment before is seen."""
        if not reason.strip():
            raise InvalidInput("a decision needs its reason")
        return await self._add_entry(
            identity,
            ref,
            EntryKind.DECISION,
            decision,
            action="decision-recorded",
            reason=reason,
            refused_when_closed="case {ref} is closed; reopen it to record a decision",
        )

    async def acknowledge(self, identity: Identity, ref: str) -> CaseSummary:
        """NEW -> ACKNOWLEDGED, decided in one transaction so no escalation can follow it."""
        try:
            async with self.store.write() as db:
                summary = await self._summary(db, ref)
                await self._content_key(db, identity, summary)
                if summary.state is CaseState.ACKNOWLEDGED:
                    raise IllegalTransition(
                        f"case {summary.ref} was already acknowledged by {summary.acknowledged_by}"
                    )
                if summary.state is CaseState.CLOSED:
                    raise IllegalTransition(f"case {summary.ref} is closed")
                now = iso(self._clock())
                await on_connection(
                    db, lambda conn: stop_for_acknowledged(conn, summary.id, self._clock())
                )
                await db.execute(
                    "UPDATE cases SET state = 'acknowledged', acknowledged_at = ?,"
                    " acknowledged_by = ?, updated_at = ? WHERE id = ? AND state = 'new'",
                    (now, identity.id, now, summary.id),
                )
                await audit.append(
                    db,
                    [
                        audit.AuditEvent(
                            identity.email, "acknowledged", summary.id, {"via": "direct"}
                        )
                    ],
                )
                return await self._summary(db, summary.id)
        except _Refused as refused:
            await self._refuse(identity, refused, "acknowledge")
            raise AssertionError("unreachable") from None

    async def assign(self, identity: Identity, ref: str, assignee_email: str) -> CaseSummary:
        """Give the case to an entitled person; someone who cannot read it is refused."""
        try:
            async with self.store.write() as db:
                summary = await self._summary(db, ref)
                await self._content_key(db, identity, summary)
                if summary.state is CaseState.CLOSED:
                    raise IllegalTransition(f"case {summary.ref} is closed")
                assignee = await keyring.find_person(db, assignee_email)
                if assignee.removed or not await self._may_read(db, assignee.id, summary.id):
                    raise NotEntitled(
                        f"{assignee.email} is not entitled to case {summary.ref}; "
                        "grant access first"
                    )
                await db.execute(
                    "UPDATE cases SET assignee_id = ?, updated_at = ? WHERE id = ?",
                    (assignee.id, iso(self._clock()), summary.id),
                )
                await audit.append(
                    db,
                    [
                        audit.AuditEvent(
                            identity.email, "assigned", summary.id, {"assignee": assignee.id}
                        )
                    ],
                )
                return await self._summary(db, summary.id)
        except _Refused as refused:
            await self._refuse(identity, refused, "assign")
            raise AssertionError("unreachable") from None

    async def _may_read(self, db: aiosqlite.Connection, person_id: str, case_id: str) -> bool:
        cursor = await db.execute(
            "SELECT 1 FROM key_wraps w WHERE w.case_id = ? AND w.key_name = 'content' AND ("
            " (w.recipient_kind = 'person' AND w.recipient = ?) OR"
            " (w.recipient_kind = 'batch' AND EXISTS (SELECT 1 FROM batch_keys b"
            "   JOIN group_key_seals s ON s.group_name = b.group_name AND s.version = b.version"
            "   JOIN group_members m ON m.group_name = s.group_name AND m.person_id = s.person_id"
            "   WHERE b.batch_id = w.recipient AND s.person_id = ? AND m.state = 'active')))"
            " LIMIT 1",
            (case_id, person_id, person_id),
        )
        return await cursor.fetchone() is not None

    async def close_case(
        self, identity: Identity, ref: str, outcome: str, reason: str
    ) -> CaseSummary:
        """Close with an outcome and its reason, as a signed entry. Closing also acknowledges."""
        if not outcome.strip() or not reason.strip():
            raise InvalidInput("closing needs both an outcome and its reason")
        try:
            async with self.store.write() as db:
                summary = await self._summary(db, ref)
                key = await self._content_key(db, identity, summary)
                if summary.state is CaseState.CLOSED:
                    raise IllegalTransition(f"case {summary.ref} is already closed")
                now_dt = self._clock()
                now = iso(now_dt)
                entry_id, row = seal_entry(
                    identity, key, summary.id, EntryKind.OUTCOME, outcome, at=now_dt, reason=reason
                )
                await db.execute(INSERT_ENTRY, row)
                await on_connection(
                    db, lambda conn: stop_for_acknowledged(conn, summary.id, self._clock())
                )
                await db.execute(
                    "UPDATE cases SET state = 'closed', closed_at = ?, closed_by = ?,"
                    " updated_at = ?,"
                    " acknowledged_at = COALESCE(acknowledged_at, ?),"
                    " acknowledged_by = COALESCE(acknowledged_by, ?) WHERE id = ?",
                    (now, identity.id, now, now, identity.id, summary.id),
                )
                await audit.append(
                    db,
                    [audit.AuditEvent(identity.email, "closed", summary.id, {"entry": entry_id})],
                )
                return await self._summary(db, summary.id)
        except _Refused as refused:
            await self._refuse(identity, refused, "close")
            raise AssertionError("unreachable") from None

    async def grant(self, identity: Identity, ref: str, grantee_email: str) -> None:
        """Wrap the case's content key to one more person (an investigator, a newcomer).

        The whistleblower's identity key is never granted this way: it stays with its compartment.
        """
        try:
            async with self.store.write() as db:
                summary = await self._summary(db, ref)
                key = await self._content_key(db, identity, summary)
                grantee = await keyring.find_person(db, grantee_email)
                if grantee.removed:
                    raise NotEntitled(f"{grantee.email} has been removed")
                info = data_key_info(summary.id, KeyName.CONTENT, "person", grantee.id, 0)
                await db.execute(
                    "INSERT OR REPLACE INTO key_wraps (case_id, key_name, recipient_kind,"
                    " recipient, version, wrapped) VALUES (?, 'content', 'person', ?, 0, ?)",
                    (summary.id, grantee.id, wrap_to_public_key(key, grantee.x25519_public, info)),
                )
                await audit.append(
                    db,
                    [
                        audit.AuditEvent(
                            identity.email, "access-granted", summary.id, {"grantee": grantee.id}
                        )
                    ],
                )
        except _Refused as refused:
            await self._refuse(identity, refused, "grant")

    # ----- referrals and statutory clocks ------------------------------------------------

    async def refer(self, identity: Identity, ref: str, to: str, text: str) -> str:
        """Record a referral as a signed entry; a LADO referral starts its 1-working-day clock.

        Entry and clock are one transaction that checks the state first: a closed case is
        refused and records nothing, rather than keeping a referral whose clock never started.
        """
        if to not in REFERRALS:
            raise InvalidInput(f"unknown referral {to!r}; use one of {', '.join(REFERRALS)}")
        label, clock = REFERRALS[to]

        async def start(db: aiosqlite.Connection, summary: CaseSummary) -> None:
            if clock is not None:
                await self._start_clock_in(db, identity, summary, clock)

        return await self._add_entry(
            identity,
            ref,
            EntryKind.REFERRAL,
            f"Referred to {label}. {text}".strip(),
            action="referred",
            refused_when_closed="case {ref} is closed; a referral is not recorded on it",
            then=start,
        )

    async def start_clock(self, identity: Identity, ref: str, kind: str) -> datetime:
        """Start a statutory clock (LADO, suspension confirmation, file transfer)."""
        if kind not in ACTION_CLOCKS:
            raise InvalidInput(f"unknown clock {kind!r}; use one of {', '.join(ACTION_CLOCKS)}")
        try:
            async with self.store.write() as db:
                summary = await self._summary(db, ref)
                await self._content_key(db, identity, summary)
                if summary.state is CaseState.CLOSED:
                    raise IllegalTransition(f"case {summary.ref} is closed")
                return await self._start_clock_in(db, identity, summary, kind)
        except _Refused as refused:
            await self._refuse(identity, refused, "start-clock")
            raise AssertionError("unreachable") from None

    async def _start_clock_in(
        self, db: aiosqlite.Connection, identity: Identity, summary: CaseSummary, kind: str
    ) -> datetime:
        """Start a clock inside the caller's transaction, with its audit entry."""
        plan = self.plan
        assert plan is not None
        now = self._clock()
        due = await on_connection(
            db, lambda conn: start_action_clock(conn, plan, summary.id, kind, now)
        )
        await audit.append(
            db,
            [
                audit.AuditEvent(
                    identity.email, "clock-started", summary.id, {"clock": kind, "due_at": iso(due)}
                )
            ],
        )
        return due

    async def meet_clock(self, identity: Identity, ref: str, kind: str) -> None:
        """Record that a statutory deadline was met; its warnings stop."""
        try:
            async with self.store.write() as db:
                summary = await self._summary(db, ref)
                await self._content_key(db, identity, summary)
                cursor = await db.execute(
                    "UPDATE clocks SET met_at = ? WHERE case_id = ? AND kind = ?"
                    " AND met_at IS NULL",
                    (iso(self._clock()), summary.id, kind),
                )
                if cursor.rowcount == 0:
                    raise NotFound(f"case {summary.ref} has no open clock {kind}")
                await audit.append(
                    db, [audit.AuditEvent(identity.email, "clock-met", summary.id, {"clock": kind})]
                )
        except _Refused as refused:
            await self._refuse(identity, refused, "meet-clock")

    # ----- audit --------------------------------------------------------------------------

    async def verify_audit(self) -> int:
        async with self.store.read() as db:
            return await audit.verify(db)

    async def audit_log(self, *, limit: int = 500) -> tuple[desk.AuditRow, ...]:
        """The newest audit entries, each case shown by reference. Metadata only; who may see
        the log is the desk's decision (the DSLs and the headteacher)."""
        return await desk.audit_log(self.store, limit=limit)

    async def case_history(self, case_id: str, *, limit: int = 200) -> list[audit.AuditEntry]:
        """One case's audit trail, newest first: reads, notifications, escalations, actions."""
        return await desk.case_history(self.store, case_id, limit=limit)


async def open_service(workspace: Workspace, clock: Clock = utcnow) -> CaseService:
    """Open the workspace's store with its validated config."""
    return await CaseService.open(workspace, clock)


__all__ = [
    "Attachment",
    "AttachmentContent",
    "CaseService",
    "CaseView",
    "EscalationTimer",
    "NotificationHistory",
    "NotificationRecord",
    "SavedAttachment",
    "load_config",
    "open_service",
]
