"""The one door to the core for the TUI and the CLI: a thin façade over the desk's modules.

It opens the store, holds the config, its escalation plan and the clock, and hands each call to
the module that answers it: :mod:`~sgalert.desk.transitions` (every state change, one write
transaction each with its check), :mod:`~sgalert.desk.views`, :mod:`~sgalert.desk.case_view`,
:mod:`~sgalert.desk.notification_history` and :mod:`~sgalert.desk.attachments` (what people see
and export). Reading a case needs an unlocked :class:`~sgalert.records.keyring.Identity`; listing
cases needs nothing, because the metadata it returns carries no personal data.

The engine and routing never import this module: they name only what they use (the engine's
:class:`~sgalert.engine.workplace.Workplace`, the rota's ``RotaSources``), which this service
happens to be. The new-case path below (seal, store, schedule) is ingest's, on its way to intake.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import aiosqlite

from sgalert.clock import Clock, utcnow
from sgalert.config import Config, load_config
from sgalert.desk import (
    attachments,
    audit_view,
    case_view,
    notification_history,
    rota_week,
    search,
    transitions,
)
from sgalert.desk import child_file as child_files
from sgalert.desk import views as desk
from sgalert.desk.attachments import AttachmentContent, SavedAttachment
from sgalert.desk.audit_view import AuditLine
from sgalert.desk.case_view import Attachment, CaseClock, CaseView
from sgalert.desk.child_file import ChildFile, EventKind, FileCase, FileEvent, Match, names_child
from sgalert.desk.export import default_directory, os_error_reason, proposed_name
from sgalert.desk.notification_history import (
    EscalationTimer,
    NotificationHistory,
    NotificationRecord,
    delivery_error_class,
)
from sgalert.desk.rota_week import RotaWeek, Slot, Stretch
from sgalert.desk.search import Hit, Matched, SearchIndex
from sgalert.desk.transitions import REFERRALS
from sgalert.errors import InvalidInput
from sgalert.intake.new_cases import NewCases
from sgalert.model import CaseState, CaseSummary, Flag, KeyName, Readers, Source
from sgalert.records import audit, keyring
from sgalert.records.audit import AuditEntry
from sgalert.records.cases import (
    FIELD_ATTACHMENTS,
    FIELD_BODY,
    FIELD_FACTS,
    NewCase,
    SealedBatch,
    StoredCase,
    seal_cases,
)
from sgalert.records.chronology import INSERT_ENTRY, EntryKind, seal_entry
from sgalert.records.keyring import Identity, Person
from sgalert.records.store import Store
from sgalert.routing import duty
from sgalert.routing.calendar_check import flag_guessed_deadlines
from sgalert.routing.duty import RotaView
from sgalert.routing.escalation import (
    ACTION_CLOCKS,
    CLOCK_TIMER,
    SYSTEM_ALERT_TEXT,
    Plan,
    action_clock_due,
    make_plan,
)
from sgalert.rules.rota import Cover, Gap, OnDuty
from sgalert.workspace import Workspace

if TYPE_CHECKING:
    from sgalert.intake.ingest import Ingestor

# The types in the façade's signatures: the TUI and the CLI name them from here, never from the
# modules that define them (tests/test_structure.py holds the TUI to that).
__all__ = [
    "ACTION_CLOCKS",
    "CLOCK_TIMER",
    "SYSTEM_ALERT_TEXT",
    "AuditEntry",
    "AuditLine",
    "CaseService",
    "CaseView",
    "ChildFile",
    "Cover",
    "EventKind",
    "FileCase",
    "FileEvent",
    "Gap",
    "Hit",
    "Identity",
    "Match",
    "Matched",
    "OnDuty",
    "Person",
    "RotaView",
    "RotaWeek",
    "SearchIndex",
    "Slot",
    "StoredCase",
    "Stretch",
    "Workspace",
    "default_directory",
    "names_child",
    "os_error_reason",
    "proposed_name",
]


class _Rotated(Exception):
    """A group key rotated between sealing and storing: seal again inside the transaction."""


class CaseService:
    """Case operations over one store. Build with :meth:`open`; close with :meth:`close`."""

    def __init__(self, store: Store, config: Config | None, clock: Clock = utcnow) -> None:
        self.store = store
        # The new-case path owns the config, plan and clock it reads; this façade hands them
        # on (so a change here, a test's virtual clock say, reaches it too).
        self.new_cases = NewCases(
            store, config, make_plan(config) if config is not None else None, clock
        )

    @property
    def config(self) -> Config | None:
        return self.new_cases.config

    @config.setter
    def config(self, config: Config | None) -> None:
        self.new_cases.config = config

    @property
    def plan(self) -> Plan | None:
        return self.new_cases.plan

    @plan.setter
    def plan(self, plan: Plan | None) -> None:
        self.new_cases.plan = plan

    @property
    def _clock(self) -> Clock:
        return self.new_cases.clock

    @_clock.setter
    def _clock(self, clock: Clock) -> None:
        self.new_cases.clock = clock

    def schedule_now(
        self, conn: sqlite3.Connection, pairs: Sequence[tuple[StoredCase, NewCase]]
    ) -> None:
        """Clocks and first escalation timers, in the transaction that stores the cases."""
        self.new_cases.schedule_now(conn, pairs)

    async def _insert(
        self, db: aiosqlite.Connection, batch: SealedBatch, actor: str
    ) -> list[StoredCase]:
        return await self.new_cases.insert(db, batch, actor)

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
        return await desk.list_cases(
            self.store, state=state, source=source, limit=limit, offset=offset
        )

    async def summary(self, ref: str) -> CaseSummary:
        async with self.store.read() as db:
            return await desk.find_summary(db, ref)

    # ----- the desk: queue, counts, banners, live updates (no unlock needed) --------------

    async def queue_page(
        self, query: desk.QueueQuery, *, known_total: int | None = None
    ) -> desk.QueuePage:
        """One page of the queue, paged, sorted and filtered in SQL; overdue judged by this
        service's clock. ``known_total`` is the view's count from :meth:`queue_counts`, which
        saves a count per page turn when there is no search."""
        return await desk.queue_page(self.store, query, self._clock(), known_total=known_total)

    async def queue_counts(self, reader: str | None = None) -> dict[desk.QueueView, int]:
        """How many cases each queue view holds; with ``reader`` (an email), of the cases that
        person can read."""
        return await desk.queue_counts(self.store, reader)

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
        """Unacknowledged cases, how many of them are assigned to ``email``, and the open cases
        overdue by this service's clock; given ``email``, of the cases that person can read."""
        return await desk.unacknowledged(self.store, email, now=self._clock())

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
        return await self.new_cases.create_cases(cases, actor)

    async def store_sealed(
        self, sealed: SealedBatch, actor: str = audit.ENGINE
    ) -> list[StoredCase]:
        """Store cases sealed by :meth:`seal`, resealing first if a group key rotated since."""
        return await self.new_cases.store_sealed(sealed, actor)

    async def create_cases_in_batches(
        self, cases: Sequence[NewCase], batch_size: int = 100, actor: str = audit.ENGINE
    ) -> list[StoredCase]:
        """Store a backlog: each batch in one transaction, sealing the next while one commits."""
        return await self.new_cases.create_cases_in_batches(cases, batch_size, actor)

    async def seal(self, cases: Sequence[NewCase]) -> SealedBatch:
        """Seal outside any transaction, so storing can overlap sealing."""
        return await self.new_cases.seal(cases)

    async def reseal_if_rotated(self, db: aiosqlite.Connection, sealed: SealedBatch) -> SealedBatch:
        """Inside the write transaction: if a group key rotated since sealing, seal again."""
        return await self.new_cases.reseal_if_rotated(db, sealed)

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
        return await case_view.open_case(self.store, identity, ref)

    async def open_cases(self, identity: Identity, refs: Sequence[str]) -> list[CaseView]:
        """Decrypt many cases in one transaction (child-file matching, bulk review); the ones
        this person may not read are left out. Each case read is audited."""
        return await case_view.open_cases(self.store, identity, refs)

    # ----- attachments and notification history ------------------------------------------

    async def attachment(self, identity: Identity, ref: str, index: int) -> AttachmentContent:
        """Decrypt one attachment for export, audited as one; prefer :meth:`save_attachment`."""
        return await attachments.attachment(self.store, identity, ref, index)

    async def save_attachment(
        self,
        identity: Identity,
        ref: str,
        index: int,
        destination: Path,
        *,
        overwrite: bool = False,
    ) -> SavedAttachment:
        """Write a decrypted copy of one attachment to ``destination`` (mode 0600, atomically,
        recorded exactly when written); see :func:`sgalert.desk.attachments.save_attachment`."""
        return await attachments.save_attachment(
            self.store, identity, ref, index, destination, overwrite=overwrite
        )

    async def notification_history(self, identity: Identity, ref: str) -> NotificationHistory:
        """Every page about the case and its escalation timers, for someone entitled to it; a
        refusal is audited. Metadata only, never a channel's error text."""
        return await notification_history.notification_history(self.store, identity, ref)

    async def case_activity(self, case_id: str, *, after: int) -> int | None:
        """The newest audit entry about a case after sequence number ``after``, or None: what
        a case view reloads its notification history on (every page, delivery and timer of a
        case is audited under it). Metadata only; a short scan of the log's newest entries."""
        return await desk.case_activity(self.store, case_id, after=after)

    async def search_index(
        self, identity: Identity, *, update: SearchIndex | None = None
    ) -> SearchIndex:
        """Decrypt the facts and text of every case this person can read into an index held
        in memory only (never written anywhere); call ``forget()`` on it at lock. With
        ``update``, index just the cases it lacks (new ones) into it. Audited with a count;
        see :mod:`sgalert.desk.search`."""
        return await search.build(self.store, identity, into=update)

    async def child_file(
        self,
        identity: Identity,
        ref: str,
        *,
        now: datetime | None = None,
        confirmed: Sequence[str] = (),
    ) -> child_files.ChildFile:
        """The file of the child named in case ``ref``, as this person may see it (audited);
        ``confirmed``: references of name-only matches they judged the same child, merged."""
        return await child_files.child_file(self, identity, ref, now=now, confirmed=confirmed)

    async def child_file_is_stale(self, found: child_files.ChildFile) -> bool:
        """Whether a case was added, removed or changed since ``found`` was built."""
        return await child_files.is_stale(self, found)

    # ----- the rota ---------------------------------------------------------------------

    async def rota(self, *, since: datetime | None = None) -> RotaView:
        """Who is on duty when, with the covers that end after ``since``. Metadata only."""
        if self.config is None:
            raise InvalidInput("this workspace has no config, so it has no rota")
        return await duty.load_rota(self, since=since)

    async def rota_week(self, monday: date) -> RotaWeek:
        """The week from ``monday`` as a grid: each day's duty slots, who covers each (by
        name), the gaps and the covers. Metadata only; built off the event loop."""
        if self.config is None:
            raise InvalidInput("this workspace has no config, so it has no rota")
        since = datetime.combine(monday - timedelta(days=1), time(0), self.config.timezone)
        view = await duty.load_rota(self, since=since)
        return await asyncio.to_thread(rota_week.build, view, monday)

    async def add_cover(
        self, identity: Identity, who: str, starts: datetime, ends: datetime
    ) -> Cover:
        """Record that ``who`` covers from ``starts`` to ``ends``, in ``identity``'s name."""
        return await duty.add_cover(self, identity, who, starts, ends)

    def action_clock_due(self, kind: str, started: datetime) -> datetime | None:
        """When a clock started now would run out, or None without a config to say."""
        if self.plan is None:
            return None
        return action_clock_due(self.plan, kind, started)

    # ----- acting (see :mod:`sgalert.desk.transitions`) -----------------------------------

    async def add_note(
        self, identity: Identity, ref: str, text: str, *, corrects: str | None = None
    ) -> str:
        """Add a signed note; a correction names the entry it corrects, which stays as it was."""
        return await transitions.add_note(
            self.store, self._clock, identity, ref, text, corrects=corrects
        )

    async def record_decision(
        self, identity: Identity, ref: str, decision: str, reason: str
    ) -> str:
        """A signed decision and its reason; refused on a closed case."""
        return await transitions.record_decision(
            self.store, self._clock, identity, ref, decision, reason
        )

    async def acknowledge(self, identity: Identity, ref: str) -> CaseSummary:
        """NEW -> ACKNOWLEDGED, decided in one transaction so no escalation can follow it."""
        return await transitions.acknowledge(self.store, self._clock, identity, ref)

    async def assign(self, identity: Identity, ref: str, assignee_email: str) -> CaseSummary:
        """Give the case to an entitled person; someone who cannot read it is refused."""
        return await transitions.assign(self.store, self._clock, identity, ref, assignee_email)

    async def close_case(
        self, identity: Identity, ref: str, outcome: str, reason: str
    ) -> CaseSummary:
        """Close with an outcome and its reason, as a signed entry. Closing also acknowledges."""
        return await transitions.close_case(self.store, self._clock, identity, ref, outcome, reason)

    async def grant(self, identity: Identity, ref: str, grantee_email: str) -> None:
        """Wrap the case's content key to one more person (never the whistleblower's identity)."""
        await transitions.grant(self.store, identity, ref, grantee_email)

    async def refer(self, identity: Identity, ref: str, to: str, text: str) -> str:
        """Record a referral as a signed entry; a LADO referral starts its clock with it."""
        return await transitions.refer(self.store, self._clock, self.plan, identity, ref, to, text)

    async def start_clock(self, identity: Identity, ref: str, kind: str) -> datetime:
        """Start a statutory clock (LADO, suspension confirmation, file transfer)."""
        return await transitions.start_clock(
            self.store, self._clock, self.plan, identity, ref, kind
        )

    async def meet_clock(self, identity: Identity, ref: str, kind: str) -> None:
        """Record that a statutory deadline was met; its warnings stop."""
        await transitions.meet_clock(self.store, self._clock, identity, ref, kind)

    # ----- the engine's intake --------------------------------------------------------------

    def ingestor(self) -> Ingestor:
        """The intake that turns this workspace's mail into cases, for the engine's watchers."""
        from sgalert.intake.ingest import Ingestor

        assert self.config is not None
        return Ingestor(self.new_cases, self.config)

    # ----- audit --------------------------------------------------------------------------

    async def verify_audit(self) -> int:
        async with self.store.read() as db:
            return await audit.verify(db)

    async def audit_log(self, *, limit: int = 500) -> tuple[desk.AuditRow, ...]:
        """The newest audit entries, each case shown by reference. Metadata only; who may see
        the log is the desk's decision (the DSLs and the headteacher)."""
        return await desk.audit_log(self.store, limit=limit)

    async def audit_lines(self, *, limit: int = 500) -> tuple[AuditLine, ...]:
        """The newest audit entries in words ("Dana Example acknowledged SG-2026-0003"), each
        with its raw fields (ids, emails, hash) for a detail view. Metadata only."""
        return await audit_view.audit_lines(self.store, limit=limit)

    async def case_history(self, case_id: str, *, limit: int = 200) -> list[audit.AuditEntry]:
        """One case's audit trail, newest first: reads, notifications, escalations, actions."""
        return await desk.case_history(self.store, case_id, limit=limit)


async def open_service(workspace: Workspace, clock: Clock = utcnow) -> CaseService:
    """Open the workspace's store with its validated config."""
    return await CaseService.open(workspace, clock)


__all__ = [
    "REFERRALS",
    "Attachment",
    "AttachmentContent",
    "CaseClock",
    "CaseService",
    "CaseView",
    "EscalationTimer",
    "NotificationHistory",
    "NotificationRecord",
    "SavedAttachment",
    "delivery_error_class",
    "load_config",
    "make_plan",
    "open_service",
]
