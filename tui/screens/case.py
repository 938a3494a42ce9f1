"""One case, decrypted, and the actions on it.

The screen composes the sections that :mod:`tui.case_render` builds (facts first, then the
clocks, the message as plain text, the record) and runs the actions: each asks in a dialog,
confirms anything that cannot be undone, and runs as the unlocked person through the app's one
job runner. Saving an attachment is its own flow in :mod:`tui.case_export`. The screen is closed
whenever the desk locks.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static

from sgalert.desk.service import (
    ACTION_CLOCKS,
    REFERRALS,
    AuditEntry,
    CaseView,
    Identity,
    NotificationHistory,
    names_child,
)
from sgalert.errors import SgalertError
from sgalert.model import CaseState, CaseSummary, Role

from .. import case_render as render
from ..case_export import save_attachment
from ..formatting import CLOCK_LABELS, local_time, person_name, untrusted
from ..working import working
from . import DeskScreen
from .child import open_child_file
from .dialogs import (
    AssignScreen,
    ClockScreen,
    CloseScreen,
    Closing,
    ConfirmScreen,
    Decision,
    DecisionScreen,
    NoteScreen,
    Referral,
    ReferScreen,
)

ASSIGNABLE = frozenset({Role.DSL, Role.DEPUTY, Role.HEAD, Role.MONITORING_OFFICER, Role.CHAIR})


class CaseScreen(DeskScreen[None]):
    """The decrypted case and the actions on it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="case.back", tooltip="Back to the queue"),
        Binding("a", "acknowledge", "Ack", id="case.acknowledge", tooltip="Acknowledge"),
        Binding("n", "note", "Note", id="case.note", tooltip="Add a signed note"),
        Binding("d", "decision", "Decision", id="case.decision", tooltip="Decision + reason"),
        Binding("s", "assign", "Assign", id="case.assign", tooltip="Give it to someone"),
        Binding("c", "close_case", "Close", id="case.close", tooltip="Outcome + reason"),
        Binding("f", "refer", "Refer", id="case.refer", tooltip="LADO, social care, police…"),
        Binding("m", "meet_clock", "Deadline met", id="case.meet_clock", show=False),
        Binding(
            "t",
            "start_clock",
            "Start clock",
            id="case.start_clock",
            tooltip="Suspension confirmation, file transfer, LADO",
            show=False,
        ),
        Binding(
            "e",
            "save_attachment",
            "Save attachment",
            id="case.save_attachment",
            tooltip="Write a decrypted copy (asks first; audited)",
            show=False,
        ),
        Binding(
            "h", "history", "History", id="case.history", tooltip="Reads, notifications", show=False
        ),
        Binding("r", "reload", "Reload", id="case.reload", show=False),
        Binding(
            "F",
            "child_file",
            "Child file",
            id="case.child_file",
            tooltip="Every case about this child, one chronology",
            show=False,
        ),
    ]

    def __init__(self, view: CaseView) -> None:
        super().__init__()
        self.view = view
        self.stale = False
        self.history_shown = False
        self.notifications: NotificationHistory | None = None
        # Set when loading the notifications failed (a refusal, say): no more automatic loads,
        # since each refusal is audited and the audit entry would trigger the next load.
        self.notifications_stopped = False

    @property
    def ref(self) -> str:
        return self.view.summary.ref

    def compose(self) -> ComposeResult:
        zone = self.desk.zone
        header = render.header(self.view.summary, zone, self.desk.names)
        yield Static(header, id="case-header", markup=False)
        yield Static("", id="case-stale", classes="-hidden", markup=False)
        with VerticalScroll(id="case-body"):
            yield render.section("Facts")
            yield Static(render.facts(self.view, zone, self.desk.now()), id="facts", markup=False)
            yield render.section("Clocks")
            yield Static(render.clocks(self.view, self.desk.now(), zone), id="clocks", markup=False)
            yield render.section("Original message (plain text, shown as received)")
            yield Static(render.message(self.view), id="message", markup=False)
            yield render.section(f"Attachments ({len(self.view.attachments)})")
            yield Static(render.attachments(self.view), id="attachments", markup=False)
            reporter = render.reporter(self.view)
            if reporter is not None:
                yield render.section("Reporter")
                yield Static(reporter, id="reporter", markup=False)
            yield render.section("Chronology")
            yield Static(render.chronology(self.view, zone), id="chronology", markup=False)
            yield render.section("Notifications and escalations")
            yield Static(
                render.notifications(None, self.desk.now(), zone), id="notifications", markup=False
            )
            yield render.section("Audit trail: reads, pages and actions")
            yield Static(Text("Press h to show it.", style="dim"), id="history", markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#case-body").focus()
        self.set_interval(self.desk.poll_seconds, lambda: self.tick(self.desk.now()))
        self._load_notifications()

    def _load_notifications(self) -> None:
        """Who was paged and what is still to fire: metadata, so loaded without asking.

        Not after a failure: reloading the case (r) tries again, once it has opened."""
        identity = self.desk.identity
        if identity is None or self.notifications_stopped:
            return
        self.desk.submit(
            self.desk.service.notification_history(identity, self.view.summary.id),
            description="Loading the notifications",
            done=self._show_notifications,
            failed=self._notifications_failed,
            sensitive=True,
            latest="case-notifications",
        )

    def _show_notifications(self, history: NotificationHistory) -> None:
        if self.notifications_stopped:
            return  # a later load failed; its notice stands
        self.notifications = history
        self.query_one("#notifications", Static).update(
            render.notifications(history, self.desk.now(), self.desk.zone)
        )

    def _notifications_failed(self, error: SgalertError) -> bool:
        """Stop loading the notifications and say so, once."""
        told = self.notifications_stopped or not self.is_attached  # told already, or closed
        self.notifications_stopped = True
        if told:
            return True
        self.notifications = None
        text = Text("Not shown: ", style="bold")
        text.append_text(untrusted(str(error), one_line=True))
        text.append("\nPress r to reload the case and try again.", "dim")
        self.query_one("#notifications", Static).update(text)
        self.desk.notify(
            f"The notifications of {self.ref} are no longer updated: {error}",
            title="Notifications",
            severity="warning",
            timeout=10,
            markup=False,
        )
        return True

    def action_history(self) -> None:
        self.history_shown = True
        self._load_history()

    def _load_history(self) -> None:
        identity = self.desk.identity
        if not self.history_shown or identity is None:
            return
        self.desk.submit(
            self.desk.service.case_history(identity, self.view.summary.id),
            description="Loading the case history",
            done=self._show_history,
            latest="case-history",
        )

    def _show_history(self, found: list[AuditEntry]) -> None:
        self.query_one("#history", Static).update(render.history(found, self.desk.zone))
        self.query_one("#history", Static).scroll_visible()

    def show_view(self, view: CaseView) -> None:
        zone = self.desk.zone
        self.view = view
        self.stale = False
        self.query_one("#case-stale", Static).add_class("-hidden")
        header = render.header(view.summary, zone, self.desk.names)
        self.query_one("#case-header", Static).update(header)
        self.query_one("#facts", Static).update(render.facts(view, zone, self.desk.now()))
        self.query_one("#clocks", Static).update(render.clocks(view, self.desk.now(), zone))
        self.query_one("#message", Static).update(render.message(view))
        self.query_one("#attachments", Static).update(render.attachments(view))
        self.query_one("#chronology", Static).update(render.chronology(view, zone))
        reporter = render.reporter(view)
        if reporter is not None and self.query("#reporter"):
            self.query_one("#reporter", Static).update(reporter)
        self._load_history()
        self.notifications_stopped = False  # the case opened again: this person may read it
        self._load_notifications()
        self.refresh_bindings()

    def tick(self, now: datetime) -> None:
        self.query_one("#clocks", Static).update(
            render.clocks(self.view, now, self.desk.zone), layout=False
        )
        if self.notifications is not None:
            self.query_one("#notifications", Static).update(
                render.notifications(self.notifications, now, self.desk.zone), layout=False
            )

    def store_changed(self) -> None:
        """Someone changed the store: say so if this case changed (reading it again is audited,
        so the desk does not do it on its own), and reload its notifications only if an audit
        entry about the case came after the ones they were read with: every page, delivery
        and timer of a case is audited under it, and most changes are about other cases."""
        service = self.desk.service
        case_id = self.view.summary.id
        history = self.notifications
        check_notifications = not self.notifications_stopped

        async def check() -> tuple[CaseSummary, bool]:
            summary = await service.summary(case_id, viewer=self.desk.identity)
            if not check_notifications:
                return summary, False
            if history is None:  # not loaded yet: load it, whatever changed
                return summary, True
            newer = await service.case_activity(case_id, after=history.audit_seq)
            return summary, newer is not None

        def compare(result: tuple[CaseSummary, bool]) -> None:
            summary, notifications_moved = result
            if summary.updated_at != self.view.summary.updated_at and not self.stale:
                self.stale = True
                notice = self.query_one("#case-stale", Static)
                notice.update(Text("This case has changed since you opened it. Press r to reload."))
                notice.remove_class("-hidden")
            if notifications_moved:
                self._load_notifications()

        self.desk.submit(
            check(), description="Checking the case", done=compare, latest="case-check"
        )

    # ----- actions ------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        state = self.view.summary.state
        if action == "acknowledge":
            return state is CaseState.NEW
        if action in ("close_case", "decision", "assign", "refer"):
            return state is not CaseState.CLOSED
        if action == "meet_clock":
            return any(clock.met_at is None for clock in self.view.clocks)
        if action == "start_clock":
            return state is not CaseState.CLOSED and bool(self._startable_clocks())
        if action == "save_attachment":
            return bool(self.view.attachments)
        if action == "child_file":
            return names_child(self.view.facts)
        return True

    def action_back(self) -> None:
        self.dismiss(None)

    def action_child_file(self) -> None:
        open_child_file(self.desk, self.ref)

    def _act(
        self,
        work: Callable[[Identity], Coroutine[Any, Any, object]],
        description: str,
        success: str,
    ) -> None:
        """Run one action as the unlocked person, then show the case as it now stands."""

        def run(identity: Identity) -> None:
            def after(_: object) -> None:
                self.desk.notify(success, markup=False)
                self._reopen(identity)
                self.desk.reload_queue()

            self.desk.submit(work(identity), description=description, done=after)

        self.desk.require_identity(run)

    def _reopen(self, identity: Identity) -> None:
        self.desk.submit(
            self.desk.service.open_case(identity, self.view.summary.id),
            description=f"Reloading {self.ref}",
            done=self.show_view,
            sensitive=True,
            latest="case-reload",
        )

    def action_reload(self) -> None:
        self.desk.require_identity(self._reopen)

    def action_acknowledge(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self._act(
                    lambda who: self.desk.service.acknowledge(who, self.ref),
                    f"Acknowledging {self.ref}",
                    f"{self.ref} acknowledged.",
                )

        self.app.push_screen(
            ConfirmScreen(
                f"Acknowledge {self.ref}?",
                "You take responsibility for this case now: escalation stops and the"
                " acknowledgement is recorded in your name. This cannot be undone.",
                confirm="Acknowledge",
            ),
            answered,
        )

    @working
    def action_note(self) -> None:

        def written(text: str | None) -> None:
            if text:
                self._act(
                    lambda who: self.desk.service.add_note(who, self.ref, text),
                    f"Adding a note to {self.ref}",
                    "Note added and signed.",
                )

        self.app.push_screen(NoteScreen(self.ref), written)

    @working
    def action_decision(self) -> None:

        def decided(result: Decision | None) -> None:
            if result is not None:
                self._act(
                    lambda who: self.desk.service.record_decision(
                        who, self.ref, result.decision, result.reason
                    ),
                    f"Recording a decision on {self.ref}",
                    "Decision recorded and signed.",
                )

        self.app.push_screen(DecisionScreen(self.ref), decided)

    def action_close_case(self) -> None:
        def confirmed(closing: Closing, yes: bool | None) -> None:
            if yes:
                self._act(
                    lambda who: self.desk.service.close_case(
                        who, self.ref, closing.outcome, closing.reason
                    ),
                    f"Closing {self.ref}",
                    f"{self.ref} closed.",
                )

        def chosen(closing: Closing | None) -> None:
            if closing is None:
                return
            self.app.push_screen(
                ConfirmScreen(
                    f"Close {self.ref}?",
                    f"Outcome: {closing.outcome}. Closing stops every clock and reminder on this"
                    " case; the outcome and reason are signed in your name.",
                    confirm="Close case",
                ),
                lambda yes: confirmed(closing, yes),
            )

        self.app.push_screen(CloseScreen(self.ref), chosen)

    @working
    def action_assign(self) -> None:

        def chosen(email: str | None) -> None:
            if email:
                self._act(
                    lambda who: self.desk.service.assign(who, self.ref, email),
                    f"Assigning {self.ref}",
                    f"{self.ref} assigned to {person_name(email, self.desk.names)}.",
                )

        def ask(people: list[Any]) -> None:
            # The core says who may take the case (never the head for an allegation about them).
            choices = [
                (f"{person.name} <{person.email}> ({person.role.value})", person.email)
                for person in people
                if person.role in ASSIGNABLE
            ]
            self.app.push_screen(AssignScreen(self.ref, choices), chosen)

        self.desk.require_identity(
            lambda who: self.desk.submit(
                self.desk.service.eligible_assignees(who, self.ref),
                description="Listing who may take the case",
                done=ask,
            )
        )

    @working
    def action_refer(self) -> None:

        def confirmed(referral: Referral, yes: bool | None) -> None:
            if yes:
                self._act(
                    lambda who: self.desk.service.refer(who, self.ref, referral.to, referral.text),
                    f"Recording the referral of {self.ref}",
                    "Referral recorded and signed.",
                )

        def chosen(referral: Referral | None) -> None:
            if referral is None:
                return
            label, clock = REFERRALS[referral.to]
            starts = f" It starts the clock: {CLOCK_LABELS.get(clock, clock)}." if clock else ""
            self.app.push_screen(
                ConfirmScreen(
                    f"Refer {self.ref} to {label}?",
                    f"The referral is signed in your name and cannot be edited.{starts}",
                    confirm="Refer",
                ),
                lambda yes: confirmed(referral, yes),
            )

        agencies = [(label, key) for key, (label, _) in REFERRALS.items()]
        self.app.push_screen(ReferScreen(self.ref, agencies), chosen)

    def action_meet_clock(self) -> None:
        def confirmed(kind: str, yes: bool | None) -> None:
            if yes:
                self._act(
                    lambda who: self.desk.service.meet_clock(who, self.ref, kind),
                    f"Recording a met deadline on {self.ref}",
                    "Deadline recorded as met.",
                )

        def chosen(kind: str | None) -> None:
            if kind is None:
                return
            self.app.push_screen(
                ConfirmScreen(
                    "Record this deadline as met?",
                    f"{CLOCK_LABELS.get(kind, kind)}: its warnings stop. Recorded in your name.",
                    confirm="Met",
                ),
                lambda yes: confirmed(kind, yes),
            )

        clocks = [
            (CLOCK_LABELS.get(clock.kind, clock.kind), clock.kind)
            for clock in self.view.clocks
            if clock.met_at is None
        ]
        self.app.push_screen(ClockScreen(self.ref, clocks), chosen)

    def _startable_clocks(self) -> list[tuple[str, str]]:
        running = {clock.kind for clock in self.view.clocks}
        return [
            (CLOCK_LABELS.get(kind, kind), kind) for kind in ACTION_CLOCKS if kind not in running
        ]

    @working
    def action_start_clock(self) -> None:
        """Choose a statutory clock, confirm, start it; the section then counts it down."""

        def confirmed(kind: str, yes: bool | None) -> None:
            if yes:
                self._act(
                    lambda who: self.desk.service.start_clock(who, self.ref, kind),
                    f"Starting a clock on {self.ref}",
                    f"Clock started: {CLOCK_LABELS.get(kind, kind)}.",
                )

        def chosen(kind: str | None) -> None:
            if kind is None:
                return
            moment = self.desk.service.action_clock_due(kind, self.desk.now())
            due = "" if moment is None else f"It will be due {local_time(moment, self.desk.zone)}. "
            self.app.push_screen(
                ConfirmScreen(
                    f"Start the clock: {CLOCK_LABELS.get(kind, kind)}?",
                    f"{due}The team is warned before the deadline and paged when it passes,"
                    " until it is recorded as met (m). Starting it is recorded in your name.",
                    confirm="Start",
                ),
                lambda yes: confirmed(kind, yes),
            )

        self.app.push_screen(ClockScreen(self.ref, self._startable_clocks(), starting=True), chosen)

    @working
    def action_save_attachment(self) -> None:
        """Pick an attachment and a path, read the warning, confirm (and again to replace a
        file); only then is the decrypted copy written, mode 0600, and the export audited."""
        save_attachment(self.desk, self.view)
