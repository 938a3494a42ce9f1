"""The on-call DSL's desk: a Textual app over :mod:`sgalert.desk.service`.

Build it with :func:`make_app` (the CLI, the tests and the snapshot apps all do, as Posting does)
and run it with :func:`run`. The app owns three things every screen relies on:

- **the service and the unlocked identity**. The private key lives only in the
  :class:`~sgalert.records.keyring.Identity` held here; locking (``ctrl+l``, or
  ``idle_lock_minutes`` without a key press) calls
  :meth:`~sgalert.records.keyring.Identity.forget`, closes every screen that may show decrypted
  content, and asks for the passphrase again.
- **jobs**. Every call into the core runs as a worker started by :meth:`SgalertApp.submit`; its
  result comes back to a callback, and every failure of every worker lands in
  :meth:`SgalertApp.on_worker_state_changed`, the one place errors are shown (Harlequin's rule).
  A job that reads decrypted content is dropped if the desk was locked while it ran.
- **time**. One injected clock drives countdowns, the idle lock, banners and every action's
  timestamp, so tests and snapshots are stable.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, ClassVar, Generic, TypeVar

from textual import events
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.notifications import Notification, Notify, SeverityLevel
from textual.screen import ModalScreen, Screen
from textual.worker import Worker, WorkerState

from sgalert.clock import Clock, utcnow
from sgalert.desk.service import CaseService, CaseView, Identity, SearchIndex, Workspace
from sgalert.desk.views import AuditRow, ChangeMarks
from sgalert.errors import InvalidInput, SgalertError
from sgalert.model import CaseState, Role

from .attention import (
    ENV_ATTENTION,
    Attention,
    DesktopTerminal,
    Escalation,
    NewCase,
    escalation_text,
    escalations_to,
    new_cases,
    toast_text,
)
from .commands import DeskCommands
from .drafts import Draft, Drafts, SealedDraft, Where
from .formatting import plural
from .next_case import open_next_case
from .screens import DeskScreen
from .screens.audit import AuditScreen
from .screens.case import CaseScreen
from .screens.dialogs import FormScreen
from .screens.help import HelpScreen
from .screens.manual import start_manual_entry
from .screens.queue import QueueScreen
from .screens.rota import RotaScreen
from .screens.search import SearchScreen
from .screens.unlock import UnlockScreen
from .status import Banner, DeskStatus, banners, gather_status
from .watcher import StoreChanged, StoreWatcher, WatcherTrouble

log = logging.getLogger("sgalert.tui")

T = TypeVar("T")

DARK, LIGHT = "textual-dark", "textual-light"
STATUS_REFRESH = timedelta(minutes=5)
AUDIT_ROLES = frozenset({Role.DSL, Role.DEPUTY, Role.HEAD})
# Audit entries read per look for new cases: a poll's worth, and more than the engine writes
# between two polls even in a burst.
ATTENTION_READ = 200
# How long a new case's and an escalation's toasts stay (seconds): long enough to be read, not
# so long they sit over the work. Each goes sooner once none of its cases waits, or a dialog
# opens; the row stays highlighted until the case is opened.
NEW_CASE_TOAST = 30
ESCALATION_TOAST = 20


@dataclass(slots=True)
class _Job(Generic[T]):
    description: str
    done: Callable[[T], object] | None
    failed: Callable[[SgalertError], bool] | None
    epoch: int | None  # set for jobs whose result shows decrypted content
    latest: str | None  # only the newest job of this name may report back


class SgalertApp(App[int]):
    """The desk. Construct through :func:`make_app`."""

    CSS_PATH = "sgalert.tcss"
    TITLE = "sgalert"
    COMMANDS = App.COMMANDS | {DeskCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+l", "lock", "Lock", id="app.lock", priority=True, tooltip="Forget your key"),
        Binding("question_mark", "help", "Help", id="app.help", tooltip="Every key binding"),
        # On a case only (see check_action); elsewhere ] is the next page or week. Not in the
        # footer, which has no room left at 80 columns: help and the palette list it.
        Binding(
            "right_square_bracket",
            "next_case",
            "Next case",
            id="app.next_case",
            tooltip="The next case needing attention",
            show=False,
        ),
        Binding("ctrl+t", "toggle_theme", "Light/dark", id="app.theme", show=False),
        Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True, show=False),
    ]

    def __init__(
        self,
        workspace: Workspace,
        *,
        as_email: str | None = None,
        clock: Clock = utcnow,
        idle_lock_minutes: float | None = None,
        poll_seconds: float = 1.0,
        theme: str = DARK,
        attention: Attention | None = None,
        terminal: DesktopTerminal | None = None,
    ) -> None:
        super().__init__()
        self.workspace = workspace
        self.as_email = as_email
        self.clock = clock
        self.poll_seconds = poll_seconds
        self._idle_override = idle_lock_minutes
        self._service: CaseService | None = None
        self.identity: Identity | None = None
        self.status: DeskStatus | None = None
        self.zone: tzinfo = UTC
        self.idle_limit = timedelta(minutes=10)
        self._epoch = 0
        self._jobs: dict[Worker[Any], _Job[Any]] = {}
        self._newest: dict[str, Worker[Any]] = {}
        self._last_input = clock()
        self._status_at: datetime | None = None
        self._watcher: StoreWatcher | None = None
        self.live_trouble: str | None = None
        self._initial_theme = theme
        self._queue: QueueScreen | None = None
        # Staff names by lower-cased email, from the people table (metadata): people are shown
        # by name, their addresses in detail views.
        self.names: dict[str, str] = {}
        self.ids: dict[str, str] = {}  # staff ids by lower-cased email (metadata)
        # Search over the cases the unlocked person can read: built after unlock, in memory
        # only, forgotten at lock.
        self.search_index: SearchIndex | None = None
        self.attention = attention or Attention()
        # How this terminal shows a desktop notification; None: not at all (unknown to make_app's
        # callers, detected from the environment by run).
        self.terminal = terminal
        self.drafts = Drafts()
        # People who confirmed that working on a new case acknowledges it (see tui.working).
        self.working_confirmed: set[str] = set()
        # New cases highlighted in the queue until opened here (references: metadata only).
        self.fresh: set[str] = set()
        self._attention_seq: int | None = None  # the newest audit entry looked at
        self._attention_busy = False
        self._attention_again = False
        # The attention toasts on screen and the references each names (metadata only).
        self._attention_toasts: dict[str, tuple[Notification, frozenset[str]]] = {}

    # ----- the core -----------------------------------------------------------------------

    @property
    def epoch(self) -> int:
        """Changes at every unlock and lock: what was decrypted under an older one is stale."""
        return self._epoch

    @property
    def service(self) -> CaseService:
        if self._service is None:
            raise RuntimeError("the store is not open yet")
        return self._service

    @property
    def school(self) -> str:
        config = self._service.config if self._service else None
        return config.school_name if config else "sgalert"

    def now(self) -> datetime:
        return self.clock()

    @property
    def person_email(self) -> str | None:
        """Whose desk this is: the unlocked person, else the one it was started for. Counts
        are of the cases this person can read (metadata only, so no unlock is needed)."""
        return self.identity.email if self.identity is not None else self.as_email

    @property
    def queue_screen(self) -> QueueScreen:
        if self._queue is None:
            raise RuntimeError("the queue is not mounted yet")
        return self._queue

    # ----- lifecycle ----------------------------------------------------------------------

    async def on_mount(self) -> None:
        self.theme = self._initial_theme
        try:
            self._service = await CaseService.open(self.workspace, self.clock)
        except SgalertError as error:
            self.exit(return_code=1, message=str(error))
            return
        config = self.service.config
        if config is not None:
            self.zone = config.timezone
            minutes = self._idle_override or config.idle_lock_minutes
            self.idle_limit = timedelta(minutes=minutes)
        elif self._idle_override:
            self.idle_limit = timedelta(minutes=self._idle_override)
        self.title = f"sgalert · {self.school}"
        people = [person for person, _ in await self.service.people()]
        self.names = {person.email.lower(): person.name for person in people}
        # Whose desk this is before unlock: escalations paging them still ring (tui.attention).
        self.ids = {person.email.lower(): person.id for person in people if not person.removed}
        self._queue = QueueScreen(await self.service.queue_counts(self.identity))
        await self.push_screen(self._queue)
        self._watcher = StoreWatcher(
            self.service.change_probe(), self.post_message, interval=self.poll_seconds
        )
        self.run_worker(
            self._watcher.run, thread=True, name="store watcher", group="watch", exit_on_error=False
        )
        self.set_interval(self.poll_seconds, self._tick, name="tick")
        self.screen_change_signal.subscribe(self, self._screen_changed)
        self.refresh_status()
        self.action_unlock()

    async def on_unmount(self) -> None:
        await self._shutdown_service()

    async def _shutdown_service(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        if self.identity is not None:
            self.identity.forget()
            self.identity = None
        self._forget_search_index()
        if self._service is not None:
            service, self._service = self._service, None
            await service.close()

    async def action_quit(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        self.exit(return_code=0)

    # ----- jobs: every call into the core, every error in one place ------------------------

    def submit(
        self,
        work: Coroutine[Any, Any, T],
        *,
        description: str,
        done: Callable[[T], object] | None = None,
        failed: Callable[[SgalertError], bool] | None = None,
        sensitive: bool = False,
        latest: str | None = None,
    ) -> Worker[T]:
        """Run ``work`` as a worker. ``done`` gets the result; ``failed`` may claim an
        :class:`SgalertError` (returning True) before the generic error notice shows it.

        ``latest`` names a stream of jobs (the queue's page, say) of which only the newest
        reports back. Older ones are left to finish, never cancelled: a call cancelled while
        it waits for SQLite's ``BEGIN`` would leave the store's one connection inside a
        transaction, since the statement runs on aiosqlite's thread regardless.
        """
        worker: Worker[T] = self.run_worker(
            work, name=description, group=latest or "default", exit_on_error=False
        )
        self._jobs[worker] = _Job(
            description, done, failed, self._epoch if sensitive else None, latest
        )
        if latest is not None:
            self._newest[latest] = worker
        return worker

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state is WorkerState.SUCCESS:
            job = self._jobs.pop(worker, None)
            if job is None or job.done is None:
                return
            if job.epoch is not None and job.epoch != self._epoch:
                return  # locked while it ran: its result must not reach the screen
            if job.latest is not None and self._newest.get(job.latest) is not worker:
                return  # a newer job of the same kind is on its way
            try:
                job.done(worker.result)
            except NoMatches:
                pass  # the screen that asked has gone
            except Exception as error:
                self.report_error(error, job.description)
        elif event.state is WorkerState.ERROR:
            job = self._jobs.pop(worker, None)
            self.report_error(worker.error, job.description if job else worker.name, job)
        elif event.state is WorkerState.CANCELLED:
            self._jobs.pop(worker, None)

    def report_error(
        self, error: BaseException | None, what: str, job: _Job[Any] | None = None
    ) -> None:
        if isinstance(error, SgalertError):
            if job is not None and job.failed is not None and job.failed(error):
                return
            self.notify(str(error), title=what, severity="error", timeout=10, markup=False)
            return
        log.error("%s failed", what, exc_info=error)
        name = type(error).__name__ if error else "unknown error"
        self.notify(
            f"{what} failed unexpectedly ({name}). Nothing was changed that you were not told"
            " about; try again, and tell whoever runs sgalert if it keeps happening.",
            title="Unexpected error",
            severity="error",
            timeout=15,
            markup=False,
        )

    # ----- unlocking and locking ----------------------------------------------------------

    def action_unlock(self) -> None:
        if self.identity is not None or isinstance(self.screen, UnlockScreen):
            return
        email = self.as_email
        self.push_screen(UnlockScreen(email=email), self._unlocked)

    def require_identity(self, then: Callable[[Identity], object]) -> None:
        """Run ``then`` with the unlocked identity, asking for the passphrase first if needed."""
        if self.identity is not None:
            then(self.identity)
            return

        def after(identity: Identity | None) -> None:
            self._unlocked(identity)
            if identity is not None:
                then(identity)

        if isinstance(self.screen, UnlockScreen):
            return
        self.push_screen(UnlockScreen(email=self.as_email), after)

    def _unlocked(self, identity: Identity | None) -> None:
        if identity is None:
            return
        if self.identity is not None and self.identity is not identity:
            self.identity.forget()
        self.identity = identity
        self.as_email = identity.email
        self._epoch += 1
        self._last_input = self.clock()
        self.refresh_status()
        self._identity_changed()
        self.refresh_bindings()
        self._reopen_draft(identity)
        self._build_search_index(identity)

    def _build_search_index(self, identity: Identity) -> None:
        """Index the cases this person can read, off the event loop's way; a result that
        arrives after a lock (or for someone else) is forgotten at once, never shown."""
        self._forget_search_index()
        epoch = self._epoch

        def ready(index: SearchIndex) -> None:
            if epoch != self._epoch or self.identity is None:
                index.forget()
                return
            self.search_index = index
            for screen in self.screen_stack:
                if isinstance(screen, SearchScreen):
                    screen.search_ready()

        self.submit(
            self.service.search_index(identity),
            description="Preparing search",
            done=ready,
            latest="search-index",
        )

    def _update_search_index(self) -> None:
        """Index the cases that arrived since (only those: an update that finds none writes
        nothing, so its own audit entry cannot set off another)."""
        index, identity = self.search_index, self.identity
        if index is None or identity is None:
            return

        def updated(found: SearchIndex) -> None:
            for screen in self.screen_stack:
                if isinstance(screen, SearchScreen) and not found.forgotten:
                    screen.search_ready()

        self.submit(
            self.service.search_index(identity, update=index),
            description="Updating search",
            done=updated,
            latest="search-update",
        )

    def _forget_search_index(self) -> None:
        if self.search_index is not None:
            self.search_index.forget()
            self.search_index = None

    def action_lock(self) -> None:
        self.lock("Locked. Your key has been forgotten.")

    def lock(self, reason: str) -> None:
        """Forget the key and close every screen that could show decrypted content; a dialog
        with something typed in it is sealed first (see :mod:`tui.drafts`)."""
        had_identity = self.identity is not None
        kept = self._seal_draft()
        if kept is not None:
            reason = (
                f"{reason} Your draft ({kept.title}) is sealed in memory and reopens when you"
                " unlock."
            )
        if self.identity is not None:
            self.identity.forget()
            self.identity = None
        self._forget_search_index()
        self._epoch += 1
        while self._queue is not None and self.screen is not self._queue:
            if len(self.screen_stack) <= 1:
                break
            self.pop_screen()
        self._identity_changed()
        if had_identity or not isinstance(self.screen, UnlockScreen):
            self.push_screen(UnlockScreen(email=self.as_email, reason=reason), self._unlocked)

    # ----- drafts across the lock -----------------------------------------------------------

    def _seal_draft(self) -> SealedDraft | None:
        """Seal the topmost dialog holding typed text (or a draft given back but not yet taken)
        to the unlocked person, before the lock closes it."""
        identity = self.identity
        if identity is None:
            return None
        untaken, self.drafts.restoring = self.drafts.restoring, None
        stack = self.screen_stack
        for index in range(len(stack) - 1, 0, -1):
            form = stack[index]
            if not isinstance(form, FormScreen):
                continue
            where = _where(stack[index - 1], form)
            if where is not None and form.has_draft:
                draft = Draft(
                    type(form).__name__,
                    where,
                    form.draft_title,
                    form.draft_fields(),
                    form.focused_field(),
                )
                return self.drafts.seal(identity.person, draft)
            break
        if untaken is not None:
            return self.drafts.seal(identity.person, untaken)
        return None

    def _reopen_draft(self, identity: Identity) -> None:
        """Open again where this person's draft was; the dialog fills itself when it mounts."""
        draft = self.drafts.open_for(identity)
        if draft is None:
            return
        self.drafts.restoring = draft
        where = draft.where
        if where.surface == "case" and where.ref is not None:
            self.open_case(where.ref, then=where.action)
        elif where.surface == "rota":
            rota = RotaScreen()
            self.push_screen(rota)
            self.call_after_refresh(self._reopen_form, rota, where.action)
        elif self._queue is not None:
            self.call_after_refresh(self._reopen_form, self._queue, where.action)

    async def _reopen_form(self, screen: DeskScreen[Any], action: str) -> None:
        if self.screen is not screen or self.drafts.restoring is None:
            return  # locked again, or the person went elsewhere: the draft waits for the lock
        target: App[int] | DeskScreen[Any] = self if action.startswith("app.") else screen
        if target.check_action(action.removeprefix("app."), ()) is False:
            self.notify(
                "Your draft could not be reopened: the case has changed. It is kept until you"
                " lock, and fills the same dialog if you open it.",
                severity="warning",
                timeout=15,
                markup=False,
            )
            return
        await self.run_action(action, screen)

    def _identity_changed(self) -> None:
        if self._queue is not None:
            self._queue.identity_changed()

    def reload_queue(self) -> None:
        if self._queue is not None:
            self._queue.reload()
        self.refresh_status()

    # ----- input, idle and the clock ------------------------------------------------------

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key | events.MouseDown | events.MouseScrollDown) and not (
            event.is_forwarded
        ):
            self._last_input = self.clock()
        await super().on_event(event)

    def _tick(self) -> None:
        """The idle lock and the periodic status check; screens keep their own tickers."""
        now = self.clock()
        if self.identity is not None and now - self._last_input >= self.idle_limit:
            minutes = plural(int(self.idle_limit.total_seconds() // 60), "minute")
            self.lock(f"Locked after {minutes} without a key press.")
        if self._status_at is not None and now - self._status_at >= STATUS_REFRESH:
            self.refresh_status()

    # ----- live updates and banners -------------------------------------------------------

    def on_store_changed(self, message: StoreChanged) -> None:
        if message.previous is None:
            self._attention_seq = message.marks.audit_seq  # what was there before is not new
        elif message.cases_changed and self.attention.any:
            self._look_for_new_cases()
        if self.status is not None:
            # Also when the lease is gone (a clean stop deletes it): the banner says so now.
            self.status = _with_lease(self.status, message.marks)
            self.show_banners()
        if message.cases_changed and message.previous is not None:
            self._withdraw_settled_toasts()
            self._update_search_index()
            if self._queue is not None:
                self._queue.reload()
            self.refresh_status()
            for screen in self.screen_stack:
                changed = getattr(screen, "store_changed", None)
                if callable(changed):
                    changed()

    # ----- attention: a new case rings, toasts and is highlighted -------------------------

    def _look_for_new_cases(self) -> None:
        """Read the audit entries after the last one looked at, one read at a time (a change
        that comes meanwhile asks for another read when this one is done)."""
        if self._attention_busy:
            self._attention_again = True
            return
        after = self._attention_seq
        if after is None or self._service is None:
            return
        self._attention_busy = True
        self._attention_again = False

        def done(rows: tuple[AuditRow, ...]) -> None:
            self._attention_busy = False
            if rows:
                self._attention_seq = max(after, max(row.entry.seq for row in rows))
            me = self.identity.email if self.identity is not None else self.as_email
            self._announce(new_cases(rows, after=after, me=me))
            my_id = (
                self.identity.id if self.identity is not None else self.ids.get((me or "").lower())
            )
            self._announce_escalations(escalations_to(rows, after=after, person_id=my_id))
            if self._attention_again:
                self._look_for_new_cases()

        def failed(_: SgalertError) -> bool:
            self._attention_busy = False
            return False  # shown by the one error handler

        self.submit(
            self.service.attention_entries(self.identity, limit=ATTENTION_READ),
            description="Looking for new cases",
            done=done,
            failed=failed,
        )

    def _announce(self, cases: list[NewCase]) -> None:
        if not cases:
            return
        if self.attention.bell:
            self.bell()
        if self.attention.toast:
            title = "New case" if len(cases) == 1 else f"{len(cases)} new cases"
            self._toast(toast_text(cases), title, "warning", NEW_CASE_TOAST, cases)
        if self.attention.highlight:
            self.fresh.update(case.ref for case in cases)
            if self._queue is not None:
                self._queue.show_fresh()
        if self.attention.desktop and self.terminal is not None:
            self.desktop_notice(self.terminal.notice(cases))

    def _announce_escalations(self, escalations: list[Escalation]) -> None:
        """A case nobody acknowledged has been escalated to the person at this desk: as loud as
        a new case (they may be the next person the school is counting on)."""
        if not escalations:
            return
        if self.attention.bell:
            self.bell()
        if self.attention.toast:
            text = escalation_text(escalations)
            self._toast(text, "Escalated to you", "error", ESCALATION_TOAST, escalations)
        if self.attention.highlight:
            self.fresh.update(e.ref for e in escalations)
            if self._queue is not None:
                self._queue.show_fresh()
        if self.attention.desktop and self.terminal is not None:
            self.desktop_notice(self.terminal.escalation_notice(escalations))

    def _toast(
        self,
        text: str,
        title: str,
        severity: SeverityLevel,
        timeout: float,
        about: list[NewCase] | list[Escalation],
    ) -> None:
        """A toast kept track of, so it can go once none of the cases it names waits."""
        notification = Notification(text, title, severity, timeout, markup=False)
        refs = frozenset(item.ref for item in about)
        self._attention_toasts[notification.identity] = (notification, refs)
        self.post_message(Notify(notification))

    def _withdraw_toasts(self, keep: Callable[[frozenset[str]], bool] = lambda _: False) -> None:
        for key, (notification, refs) in list(self._attention_toasts.items()):
            if notification not in self._notifications or not keep(refs):
                del self._attention_toasts[key]
                self._unnotify(notification)

    def _screen_changed(self, screen: Screen[Any]) -> None:
        """A dialog opened: the attention toasts go rather than sit over its buttons (the bell
        has rung and the rows stay highlighted). One that comes while a dialog is open shows
        at the top of the screen (sgalert.tcss), clear of the buttons at a dialog's foot."""
        if isinstance(screen, ModalScreen):
            self._withdraw_toasts()

    def _withdraw_settled_toasts(self) -> None:
        """The store changed: a toast goes once none of the cases it names still waits
        (acknowledged here, by a colleague, by a reply to a page)."""
        self._withdraw_toasts(lambda _: True)  # forget the ones that timed out
        named = {ref for _, refs in self._attention_toasts.values() for ref in refs}
        if not named or self._service is None:
            return
        service, viewer = self.service, self.identity

        async def waiting() -> set[str]:
            found: set[str] = set()
            for ref in sorted(named):
                try:
                    summary = await service.summary(ref, viewer=viewer)
                except SgalertError:
                    continue  # gone from this desk's sight: not waiting here
                if summary.state is CaseState.NEW:
                    found.add(ref)
            return found

        self.submit(
            waiting(),
            description="Checking the cases named in notices",
            done=lambda still: self._withdraw_toasts(lambda refs: bool(refs & still)),
            latest="attention-toasts",
        )

    def desktop_notice(self, sequence: str) -> None:
        """Write a desktop notification's escape sequence through the driver, as Textual's own
        bell and clipboard do: it goes out between two frames, so the screen is not disturbed."""
        if sequence and self._driver is not None:
            self._driver.write(sequence)

    def seen(self, ref: str) -> None:
        """The case was opened here: its row is no longer highlighted."""
        if ref in self.fresh:
            self.fresh.discard(ref)
            if self._queue is not None:
                self._queue.show_fresh()

    def on_watcher_trouble(self, message: WatcherTrouble) -> None:
        self.live_trouble = message.reason
        self.show_banners()

    def refresh_status(self) -> None:
        if self._service is None:
            return
        self._status_at = self.clock()
        email = self.person_email
        self.submit(
            gather_status(self.service, email, self.clock(), self.identity),
            description="Checking the engine, sources and rota",
            done=self._status_ready,
            latest="status",
        )

    def _status_ready(self, status: DeskStatus) -> None:
        self.status = status
        self.show_banners()

    def show_banners(self) -> None:
        if self._queue is not None:
            self._queue.show_banners()

    def current_banners(self) -> list[Banner]:
        found: list[Banner] = []
        if self.live_trouble:
            found.append(
                Banner("live", "error", f"LIVE UPDATES PAUSED: {self.live_trouble}. Retrying.")
            )
        email = self.identity.email if self.identity else None
        found += banners(self.status, self.clock(), self.zone, email, self.names)
        return found

    # ----- no screenshots -----------------------------------------------------------------
    # Textual's "Screenshot" writes what is on screen (a decrypted case) to an SVG in the
    # Downloads folder: readable by anyone on the machine, outside the store, in no audit log.
    # Case material leaves only through the audited attachment export, so it is not offered,
    # and every way in (the action, a key a later Textual binds to it) refuses.

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """Textual's own palette commands, less "Screenshot"."""
        for command in super().get_system_commands(screen):
            if command.title != "Screenshot":
                yield command

    def action_screenshot(self, filename: str | None = None, path: str | None = None) -> None:
        self._no_screenshot()

    def deliver_screenshot(
        self,
        filename: str | None = None,
        path: str | None = None,
        time_format: str | None = None,
    ) -> str | None:
        self._no_screenshot()
        return None

    def save_screenshot(
        self,
        filename: str | None = None,
        path: str | None = None,
        time_format: str | None = None,
    ) -> str:
        """Refused too (``TEXTUAL_SCREENSHOT`` would call it): nothing is written."""
        self._no_screenshot()
        return ""

    def _no_screenshot(self) -> None:
        log.warning("screenshot refused")
        self.notify(
            "Screenshots are off: they would leave a readable copy of the case outside the"
            " store. Save an attachment with its own audited export instead.",
            severity="warning",
            markup=False,
        )

    # ----- app-wide actions ---------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "unlock":
            return self.identity is None
        if action == "next_case":
            return isinstance(self.screen, CaseScreen)
        return True

    def action_next_case(self) -> None:
        if isinstance(self.screen, CaseScreen):
            open_next_case(self, self.screen.ref)

    def action_toggle_theme(self) -> None:
        self.theme = LIGHT if self.theme == DARK else DARK

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.screen))

    def action_open_rota(self) -> None:
        if not isinstance(self.screen, RotaScreen):
            self.push_screen(RotaScreen())

    def action_open_audit(self) -> None:
        def show(identity: Identity) -> None:
            if identity.person.role not in AUDIT_ROLES:
                self.notify(
                    "The audit log is for the DSLs and the headteacher.",
                    severity="warning",
                    markup=False,
                )
                return
            if not isinstance(self.screen, AuditScreen):
                self.push_screen(AuditScreen())

        self.require_identity(show)

    def action_search(self) -> None:
        def show(_: Identity) -> None:
            if not isinstance(self.screen, SearchScreen):
                self.push_screen(SearchScreen())

        self.require_identity(show)

    def action_new_case(self) -> None:
        self.require_identity(lambda identity: start_manual_entry(self, identity))

    def open_case(self, ref: str, *, then: str | None = None, replacing: str | None = None) -> None:
        """Decrypt and show one case (asks for the passphrase first if locked); ``then`` is an
        action to run on it once shown (reopening a draft's dialog); ``replacing``: the case
        shown in place of this one, if it is still on top (Next)."""

        def load(identity: Identity) -> None:
            self.submit(
                self.service.open_case(identity, ref),
                description=f"Opening {ref}",
                done=lambda view: self._show_case(view, then, replacing),
                sensitive=True,
                latest="open-case",
            )

        self.require_identity(load)

    def _show_case(
        self, view: CaseView, then: str | None = None, replacing: str | None = None
    ) -> None:
        self.seen(view.summary.ref)
        screen = CaseScreen(view)
        top = self.screen
        if replacing is not None and isinstance(top, CaseScreen) and top.ref == replacing:
            self.switch_screen(screen)
        else:
            self.push_screen(screen)
        if then is not None:
            self.call_after_refresh(self._reopen_form, screen, then)


def _where(beneath: object, form: FormScreen[Any]) -> Where | None:
    """Where ``form`` was opened, if the desk knows how to open it there again."""
    action = form.reopen
    if action is None:
        return None
    if isinstance(beneath, CaseScreen):
        return Where("case", beneath.ref, action)
    if isinstance(beneath, RotaScreen):
        return Where("rota", None, action)
    if isinstance(beneath, QueueScreen):
        return Where("queue", None, action)
    return None


def _with_lease(status: DeskStatus, marks: ChangeMarks) -> DeskStatus:
    return replace(status, heartbeat_at=marks.heartbeat_at, lease_expires_at=marks.lease_expires_at)


def make_app(
    workspace: Workspace,
    *,
    as_email: str | None = None,
    clock: Clock = utcnow,
    idle_lock_minutes: float | None = None,
    poll_seconds: float = 1.0,
    theme: str = DARK,
    attention: Attention | None = None,
    terminal: DesktopTerminal | None = None,
) -> SgalertApp:
    """The desk for one workspace. ``clock`` and ``poll_seconds`` exist for tests and snapshots;
    ``idle_lock_minutes`` overrides the config's ``security.idle_lock_minutes``; ``terminal``
    says how to ask this terminal for a desktop notification (None: never)."""
    return SgalertApp(
        workspace,
        as_email=as_email,
        clock=clock,
        idle_lock_minutes=idle_lock_minutes,
        poll_seconds=poll_seconds,
        theme=theme,
        attention=attention,
        terminal=terminal,
    )


def run(workspace: Workspace, as_email: str | None) -> int:
    """Run the desk in this terminal; returns the process exit code.

    Without a terminal (a script, CI, ``</dev/null``) the desk could only wait for keys that
    never come, so it refuses at once in one line instead."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise InvalidInput(
            "the desk needs a terminal: run `sgalert tui` in one (for a script,"
            " `sgalert cases list` and `sgalert status` say what is waiting)"
        )
    attention = Attention.parse(os.environ.get(ENV_ATTENTION))
    terminal = DesktopTerminal.detect(os.environ)
    app = make_app(workspace, as_email=as_email, attention=attention, terminal=terminal)
    app.run()
    return app.return_code or 0
