"""The one door to the core for the TUI and the CLI: a thin façade over the desk's modules.

It opens the store, holds the config, its escalation plan and the clock, and hands each call to
the module that answers it: :mod:`~sgalert.desk.transitions` (every state change, one write
transaction each with its check), :mod:`~sgalert.desk.views`, :mod:`~sgalert.desk.case_view`,
:mod:`~sgalert.desk.notification_history` and :mod:`~sgalert.desk.attachments` (what people see
and export). Reading a case needs an unlocked :class:`~sgalert.records.keyring.Identity`; listing
cases needs no unlock, because the metadata it returns carries no personal data; but every list,
page and count is of what its viewer may see (a whistleblowing case or an allegation about the
head only to those who can read it: :mod:`sgalert.rules.access`), so the TUI and the CLI pass
who is looking, and nobody identified sees no confidential case.

The engine and routing never import this module: they name only what they use (the engine's
:class:`~sgalert.engine.workplace.Workplace`, the rota's ``RotaSources``), which this service
happens to be. The new-case path below (seal, store, schedule) is ingest's, on its way to intake.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import replace
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
    drafts,
    notification_history,
    original,
    rota_week,
    search,
    transitions,
)
from sgalert.desk import child_file as child_files
from sgalert.desk import views as desk
from sgalert.desk.access import Refused, key_versions, refusals
from sgalert.desk.attachments import AttachmentContent, SavedAttachment
from sgalert.desk.audit_view import AuditLine
from sgalert.desk.case_view import Attachment, CasePreview, CaseView
from sgalert.desk.child_file import ChildFile, EventKind, FileCase, FileEvent, Match, names_child
from sgalert.desk.export import default_directory, os_error_reason, proposed_name
from sgalert.desk.next_step import NextStep, next_step, uk_time
from sgalert.desk.notification_history import (
    EscalationTimer,
    NotificationHistory,
    NotificationRecord,
    delivery_error_class,
)
from sgalert.desk.original import Original
from sgalert.desk.rota_week import RotaWeek, Slot, Stretch
from sgalert.desk.scope import desk_viewer, viewer_of
from sgalert.desk.search import Hit, Matched, SearchIndex
from sgalert.desk.settings import DeskSetting, read_setting, settings_path, write_setting
from sgalert.desk.transitions import OUTCOMES, REFERRALS
from sgalert.desk.views import CaseClock
from sgalert.errors import InvalidInput
from sgalert.intake.new_cases import NewCases
from sgalert.intake.redact import phoned_whistle
from sgalert.intake.whistle import mentions_head
from sgalert.model import CaseState, CaseSummary, Flag, KeyName, Readers, Source
from sgalert.records import audit, keyring, keytrust
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
from sgalert.records.chronology import EntryKind, insert_entry, seal_entry
from sgalert.records.keyring import Identity, Person
from sgalert.records.manifest import MANIFEST
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
from sgalert.rules.access import may_read_audit_log
from sgalert.rules.rota import Cover, Gap, OnDuty, cover_problem
from sgalert.workspace import Workspace

if TYPE_CHECKING:
    from sgalert.intake.ingest import Ingestor

# The types in the façade's signatures: the TUI and the CLI name them from here, never from the
# modules that define them (tests/test_structure.py holds the TUI to that).
__all__ = [
    "ACTION_CLOCKS",
    "CLOCK_TIMER",
    "OUTCOMES",
    "REFERRALS",
    "SYSTEM_ALERT_TEXT",
    "Attachment",
    "AttachmentContent",
    "AuditEntry",
    "AuditLine",
    "CaseClock",
    "CasePreview",
    "CaseService",
    "CaseView",
    "ChildFile",
    "Cover",
    "DeskSetting",
    "EscalationTimer",
    "EventKind",
    "FileCase",
    "FileEvent",
    "Gap",
    "Hit",
    "Identity",
    "Match",
    "Matched",
    "NextStep",
    "NotificationHistory",
    "NotificationRecord",
    "OnDuty",
    "Original",
    "Person",
    "RotaView",
    "RotaWeek",
    "SavedAttachment",
    "SearchIndex",
    "Slot",
    "StoredCase",
    "Stretch",
    "Workspace",
    "cover_problem",
    "default_directory",
    "delivery_error_class",
    "load_config",
    "make_plan",
    "names_child",
    "next_step",
    "open_service",
    "os_error_reason",
    "proposed_name",
    "uk_time",
]

Looking = Identity | desk.Viewer | None  # who is looking at metadata (see viewer_of)


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

    # ----- a person's desk settings (see :mod:`sgalert.desk.settings`) -------------------

    async def desk_setting(self, person_id: str, setting: DeskSetting) -> bool:
        """Whether this person gave this answer at a desk before (False until they have)."""
        return await asyncio.to_thread(
            read_setting, settings_path(self.store.path), person_id, setting
        )

    async def remember_desk_setting(
        self, person_id: str, setting: DeskSetting, value: bool = True
    ) -> None:
        """Remember this person's answer in the workspace, for every desk they sit at."""
        await asyncio.to_thread(
            write_setting, settings_path(self.store.path), person_id, setting, value
        )

    # ----- drafts across the idle lock (see :mod:`sgalert.desk.drafts`) ------------------

    @staticmethod
    def seal_draft(
        person: Person, values: Mapping[str, drafts.FieldValue], focus: str | None
    ) -> bytes:
        """A half-typed dialog encrypted to its writer's public key: no unlock needed."""
        return drafts.seal_draft(person, values, focus)

    @staticmethod
    def open_draft(
        identity: Identity, sealed: bytes
    ) -> tuple[dict[str, drafts.FieldValue], str | None] | None:
        """The draft's fields and focus, or None if this person's key does not open it."""
        return drafts.open_draft(identity, sealed)

    # ----- metadata (no unlock needed) ----------------------------------------------------

    async def list_cases(
        self,
        *,
        state: CaseState | None = None,
        source: Source | None = None,
        limit: int | None = None,
        offset: int = 0,
        viewer: Identity | desk.Viewer | None = None,
    ) -> list[CaseSummary]:
        """Metadata, newest first, of the cases ``viewer`` may see (nobody: none confidential;
        :data:`~sgalert.desk.views.UPKEEP`: all, for retention and ``sgalert status``)."""
        return await desk.list_cases(
            self.store,
            state=state,
            source=source,
            limit=limit,
            offset=offset,
            viewer=viewer_of(viewer),
        )

    async def summary(self, ref: str, *, viewer: Looking = None) -> CaseSummary:
        """One case's metadata if ``viewer`` may see it, else NoSuchCase (as if missing)."""
        async with self.store.read() as db:
            return await desk.find_summary(db, ref, viewer_of(viewer))

    # ----- the desk: queue, counts, banners, live updates (no unlock needed) --------------

    async def queue_page(
        self,
        query: desk.QueueQuery,
        *,
        known_total: int | None = None,
        viewer: Identity | desk.Viewer | None = None,
    ) -> desk.QueuePage:
        """One page of the queue ``viewer`` may see, paged, sorted and filtered in SQL; overdue
        judged by this service's clock. ``known_total`` is the view's count from
        :meth:`queue_counts` (for the same viewer), which saves a count per page turn when
        there is no search."""
        seen = replace(query, viewer=desk_viewer(viewer))
        page = await desk.queue_page(self.store, seen, self._clock(), known_total=known_total)
        # The caller's query back (offset clamped), so a desk compares pages as it asked them.
        return replace(page, query=replace(page.query, viewer=query.viewer))

    async def queue_counts(
        self, viewer: Identity | desk.Viewer | None = None
    ) -> dict[desk.QueueView, int]:
        """How many cases each queue view holds, of those ``viewer`` can open at the desk."""
        return await desk.queue_counts(self.store, desk_viewer(viewer))

    async def engine_heartbeat(self) -> datetime | None:
        """When the engine last beat; None if it never ran here. Stale means nobody is paged."""
        return await desk.engine_heartbeat(self.store)

    async def engine_lease(self) -> desk.EngineLease | None:
        """The engine's lease (holder, heartbeat, end); judge it with ``lapsed``."""
        return await desk.engine_lease(self.store)

    async def failing_channels(self, viewer: Looking = None) -> list[desk.FailingChannel]:
        """Channels not getting through the pages about cases ``viewer`` may see (names only)."""
        return await desk.failing_channels(self.store, viewer_of(viewer))

    async def unacknowledged(
        self, email: str | None = None, viewer: Identity | desk.Viewer | None = None
    ) -> desk.Unacknowledged:
        """Unacknowledged cases ``viewer`` can open at the desk, how many of them are assigned
        to ``email``, and the open ones overdue by this service's clock."""
        return await desk.unacknowledged(self.store, email, desk_viewer(viewer), now=self._clock())

    async def open_alerts(self, viewer: Looking = None) -> list[dict[str, str]]:
        """Open system alerts ``viewer`` may see: silence must not look like safety."""
        return await desk.open_alerts(self.store, viewer_of(viewer))

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
        """Record a notification taken by phone: sealed as any other, with a signed first entry.

        A whistleblowing call is the whistleblower's as surely as their email is: who called
        goes with the reporter's identity, sealed apart, and their names and contact details
        are struck from the facts and text an investigator may be granted. A notice that names
        the headteacher is flagged about-head, as mail is, and never reaches the head.
        """
        received = received_at or self._clock()
        recorded = f"Notification taken by phone from {caller}."
        if source is Source.WHISTLE:
            facts, body_text, reporter = phoned_whistle(facts, body_text, caller, reporter)
            recorded = "Notification taken by phone; who called is sealed with the reporter."
        content = {
            FIELD_FACTS: json.dumps(dict(facts), ensure_ascii=False).encode(),
            FIELD_BODY: body_text.encode(),
            FIELD_ATTACHMENTS: b"[]",
        }
        identity_fields = {"reporter": json.dumps(dict(reporter)).encode()} if reporter else {}
        about = self._about_head(source, facts, body_text)
        new = NewCase(
            source=source,
            received_at=received,
            origin="manual",
            content=content,
            identity=identity_fields,
            flags=frozenset(flags | {Flag.MANUAL_ENTRY} | about),
        )
        if self.config is not None:
            flag_guessed_deadlines(self.config.calendar, [new])
        async with self.store.write() as db:  # its own transaction: kept if sealing fails
            await keytrust.alert_untrusted(db, await keytrust.load_public_keyring(db))
        async with self.store.write() as db:
            # Sealed inside the transaction: the signed first entry needs this exact data key.
            ring = await keytrust.load_public_keyring(db)
            sealed = seal_cases([new], ring, self._readers)
            _, entry_row = seal_entry(
                identity,
                sealed.cases[0].data_keys[KeyName.CONTENT],
                new.id,
                EntryKind.CASE_RECORDED,
                recorded,
                at=self._clock(),
            )
            (stored,) = await self._insert(db, sealed, identity.email)
            record = await insert_entry(db, entry_row)
            await audit.append(
                db,
                [
                    audit.AuditEvent(
                        identity.email,
                        "note-added",
                        new.id,
                        {"kind": "case-recorded", MANIFEST: record},
                    )
                ],
            )
        return stored

    def _about_head(
        self, source: Source, facts: Mapping[str, str], body_text: str
    ) -> frozenset[str]:
        """The about-head flag, if what was taken down names the headteacher (the same test
        intake runs on that source's mail)."""
        names = self.config.head_names if self.config is not None else ()
        text = "\n".join([*facts.values(), body_text])
        named = mentions_head(text, names, by_title=source is Source.WHISTLE)
        return frozenset({Flag.ABOUT_HEAD}) if named else frozenset()

    # ----- reading ------------------------------------------------------------------------

    async def open_case(self, identity: Identity, ref: str) -> CaseView:
        """Decrypt what this person may see of one case. Audited, refusals included. Reading
        it meets the clocks that ask for it to be read (Encompass, before the next school day).
        """
        return await case_view.open_case(self.store, identity, ref, now=self._clock())

    async def preview_case(self, identity: Identity, ref: str) -> CasePreview | None:
        """The queue's glance at a case (facts, clocks, last entries), or None if this person
        may not read it. Audited; meets no clock (a preview is not reading the notice)."""
        return await case_view.preview_case(self.store, identity, ref)

    async def open_cases(self, identity: Identity, refs: Sequence[str]) -> list[CaseView]:
        """Decrypt many cases in one transaction (child-file matching, bulk review); the ones
        this person may not read are left out. Each case read is audited."""
        return await case_view.open_cases(self.store, identity, refs)

    async def open_original(self, identity: Identity, ref: str) -> Original:
        """Decrypt a case's original message (audited); a whistleblowing case's only for those
        who may see the reporter's identity. See :mod:`sgalert.desk.original`."""
        return await original.open_original(self.store, identity, ref)

    # ----- attachments and notification history ------------------------------------------

    async def attachment(self, identity: Identity, ref: str, index: int) -> AttachmentContent:
        """Decrypt one attachment for export, audited as one; prefer :meth:`save_attachment`."""
        return await attachments.attachment(self.store, identity, ref, index, now=self._clock())

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
            self.store, identity, ref, index, destination, overwrite=overwrite, now=self._clock()
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
        return await duty.add_cover(self, identity, who, starts, ends, now=self._clock())

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

    async def acknowledge(self, identity: Identity, ref: str, *, read: bool = True) -> CaseSummary:
        """NEW -> ACKNOWLEDGED, decided in one transaction so no escalation can follow it.
        ``read=False`` (acknowledged from the queue, unread) leaves a "read before the next
        school day" clock open until someone opens the case. Every other action on a NEW case
        acknowledges it too (see :mod:`sgalert.desk.transitions`)."""
        return await transitions.acknowledge(self.store, self._clock, identity, ref, read=read)

    async def assign(self, identity: Identity, ref: str, assignee_email: str) -> CaseSummary:
        """Give the case to an entitled person; someone who cannot read it is refused."""
        return await transitions.assign(self.store, self._clock, identity, ref, assignee_email)

    async def close_case(
        self, identity: Identity, ref: str, outcome: str, reason: str
    ) -> CaseSummary:
        """Close with an outcome and its reason, as a signed entry. Closing also acknowledges."""
        return await transitions.close_case(self.store, self._clock, identity, ref, outcome, reason)

    async def grant(
        self, identity: Identity, ref: str, grantee_email: str, *, with_identity: bool = False
    ) -> None:
        """Let one more person read the case, as the access policy allows (a whistleblowing case
        only by the monitoring officer; never the head for an allegation about the head). The
        whistleblower's identity goes too only with ``with_identity``."""
        await transitions.grant(
            self.store, identity, ref, grantee_email, with_identity=with_identity
        )

    async def revoke(self, identity: Identity, ref: str, person_email: str) -> int:
        """Take back a grant and rotate the case's key for what is written from now on; returns
        the new key version. Who may revoke is who may grant."""
        return await transitions.revoke(self.store, identity, ref, person_email)

    async def eligible_assignees(self, identity: Identity, ref: str) -> list[Person]:
        """Who the case may be assigned to: current people entitled to read it under the access
        policy (never the head for an allegation about the head)."""
        return await transitions.eligible_assignees(self.store, identity, ref)

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

    async def hold(self, identity: Identity, ref: str, reason: str) -> str:
        """Put a case under a legal hold (retention never destroys it); the reason is sealed."""
        return await transitions.place_hold(self.store, self._clock, identity, ref, reason)

    async def release_hold(self, identity: Identity, ref: str) -> str:
        """Lift a case's legal hold: retention applies to it again."""
        return await transitions.release_hold(self.store, self._clock, identity, ref)

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

    async def audit_log(self, identity: Identity, *, limit: int = 500) -> tuple[desk.AuditRow, ...]:
        """The newest audit entries, each case shown by reference, for someone who may read the
        log (the DSLs and the headteacher: :func:`sgalert.rules.access.may_read_audit_log`);
        anyone else is refused, and the refusal audited. Entries about cases this person may
        not see are left out. Metadata only."""
        async with refusals(self.store, identity, "read-audit-log"):
            if not may_read_audit_log(identity.person.role):
                raise Refused(None, "", "the audit log")
        return await desk.audit_log(self.store, limit=limit, viewer=viewer_of(identity))

    async def audit_lines(self, identity: Identity, *, limit: int = 500) -> tuple[AuditLine, ...]:
        """The newest audit entries in words ("Dana Example acknowledged SG-2026-0003"), each
        with its raw fields for a detail view: the same right, refusal and leaving-out as
        :meth:`audit_log`. Metadata only."""
        async with refusals(self.store, identity, "read-audit-log"):
            if not may_read_audit_log(identity.person.role):
                raise Refused(None, "", "the audit log")
        return await audit_view.audit_lines(self.store, limit=limit, viewer=viewer_of(identity))

    async def attention_entries(
        self, viewer: Identity | None = None, *, limit: int = 500
    ) -> tuple[desk.AuditRow, ...]:
        """The ``case-created`` and ``escalation-step`` entries among the newest ``limit``, of
        cases ``viewer`` may see: what a desk's attention (bell, toast, highlight) looks for.
        Needs no right to the audit log: it tells only what the viewer's queue shows anyway."""
        wanted, who = frozenset({"case-created", "escalation-step"}), desk_viewer(viewer)
        return await desk.audit_log(self.store, limit=limit, viewer=who, actions=wanted)

    async def case_history(
        self, identity: Identity, case_id: str, *, limit: int = 200
    ) -> list[audit.AuditEntry]:
        """One case's audit trail, newest first: reads, notifications, escalations, actions;
        for someone who can read the case (a refusal is audited)."""
        async with refusals(self.store, identity, "read-history"), self.store.read() as db:
            summary = await desk.find_summary(db, case_id)
            await key_versions(db, identity, summary)
        return await desk.case_history(self.store, summary.id, limit=limit)


async def open_service(workspace: Workspace, clock: Clock = utcnow) -> CaseService:
    """Open the workspace's store with its validated config."""
    return await CaseService.open(workspace, clock)
