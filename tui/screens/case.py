"""One case, decrypted: facts first, then the message as plain text, then the record.

Every string that came from outside goes through :func:`~tui.formatting.untrusted` (a ``Text``,
never markup, control and bidi characters shown as escapes). Actions that cannot be undone ask
first. The screen is closed whenever the desk locks.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static

from sgalert.clock import parse_iso
from sgalert.desk.child_file import names_child
from sgalert.desk.export import default_directory, proposed_name
from sgalert.desk.service import REFERRALS, CaseView, NotificationHistory, SavedAttachment
from sgalert.errors import SgalertError
from sgalert.model import CaseState, CaseSummary, Role, Source
from sgalert.records.audit import AuditEntry
from sgalert.records.keyring import Identity
from sgalert.routing.escalation import ACTION_CLOCKS, CLOCK_TIMER, action_clock_due
from sgalert.text import printable

from ..formatting import (
    CLOCK_LABELS,
    FACT_LABELS,
    FLAG_SHORT,
    OVERDUE,
    SOURCE_LONG,
    countdown,
    local_time,
    short_time,
    untrusted,
)
from . import DeskScreen
from .child import open_child_file
from .dialogs import (
    AssignScreen,
    AttachmentSave,
    ClockScreen,
    CloseScreen,
    Closing,
    ConfirmScreen,
    Decision,
    DecisionScreen,
    NoteScreen,
    Referral,
    ReferScreen,
    SaveAttachmentScreen,
)

LABEL = "bold"
ASSIGNABLE = frozenset({Role.DSL, Role.DEPUTY, Role.HEAD, Role.MONITORING_OFFICER, Role.CHAIR})


def _section(title: str) -> Static:
    return Static(Text(title), classes="section-title", markup=False)


def _facts(view: CaseView) -> Text:
    text = Text()
    if not view.facts:
        text.append("No facts were extracted. Read the message and record them in a note.", "bold")
        return text
    width = max(len(FACT_LABELS.get(key, key)) for key in view.facts)
    for key, value in view.facts.items():
        label = FACT_LABELS.get(key, key.replace("_", " "))
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        text.append(f"{label:<{width}}  ", LABEL)
        lines = untrusted(shown).split("\n")
        for index, line in enumerate(lines):
            if index:
                text.append("\n" + " " * (width + 2))
            text.append_text(line)
        text.append("\n")
    text.rstrip()
    return text


def _message(view: CaseView) -> Text:
    text = Text()
    if view.subject:
        text.append("Subject  ", LABEL)
        text.append_text(untrusted(view.subject, one_line=True))
        text.append("\n")
    if view.sender:
        text.append("From     ", LABEL)
        name = str(view.sender.get("display_name") or "")
        address = str(view.sender.get("address") or "")
        text.append_text(untrusted(f"{name} <{address}>" if name else address, one_line=True))
        text.append("\n")
    for kind in ("sender", "problems", "triage"):
        for note in view.notes.get(kind, []) or []:
            text.append("Note     ", "bold yellow")
            text.append_text(untrusted(str(note), one_line=True))
            text.append("\n")
    if text.plain:
        text.append("\n")
    text.append_text(untrusted(view.body_text or "(no text)"))
    return text


def _attachments(view: CaseView) -> Text:
    if not view.attachments:
        return Text("None.", style="dim")
    text = Text()
    for index, item in enumerate(view.attachments):
        if index:
            text.append("\n")
        text.append(f"{index + 1}. ", LABEL)
        text.append_text(untrusted(item.filename, one_line=True))
        text.append("  ")
        text.append_text(untrusted(item.content_type, one_line=True, style="dim"))
        text.append(f"  {item.size:,} bytes", "dim")
    text.append("\nPress e to save a decrypted copy (it asks first; the export is audited).", "dim")
    return text


def _clocks(view: CaseView, now: datetime, zone: Any) -> Text:
    if not view.clocks:
        return Text("No statutory clock runs on this case.", style="dim")
    text = Text()
    for index, clock in enumerate(view.clocks):
        if index:
            text.append("\n")
        text.append(CLOCK_LABELS.get(clock.kind, clock.kind), LABEL)
        text.append(f"\n  due {local_time(clock.due_at, zone)}  ")
        if clock.met_at is not None:
            text.append(f"met {local_time(clock.met_at, zone)}", "green")
        elif view.summary.state is CaseState.CLOSED:
            text.append("case closed", "dim")
        else:
            text.append_text(countdown(clock.due_at, now))
    return text


def _chronology(view: CaseView, zone: Any) -> Text:
    if not view.chronology:
        return Text("Nothing recorded yet.", style="dim")
    text = Text()
    for index, entry in enumerate(view.chronology):
        if index:
            text.append("\n\n")
        text.append(local_time(entry.at, zone), LABEL)
        text.append("  ")
        text.append_text(untrusted(f"{entry.author.name} <{entry.author.email}>", one_line=True))
        text.append(f"  {entry.kind.value.upper()}  ", LABEL)
        if entry.signature_valid:
            text.append("✓ signed", "green")
        else:
            text.append("✗ SIGNATURE INVALID: altered after it was written", OVERDUE)
        if entry.corrects:
            text.append(f"\n  corrects entry {entry.corrects[:8]}", "italic")
        for line in untrusted(entry.text).split("\n"):
            text.append("\n  ")
            text.append_text(line)
        if entry.reason:
            text.append("\n  Reason: ", LABEL)
            text.append_text(untrusted(entry.reason, one_line=True))
    return text


def _reporter(view: CaseView) -> Text | None:
    if view.summary.source is not Source.WHISTLE:
        return None
    if view.reporter is None:
        return Text("Sealed: only the Monitoring Officer group can see who reported this.")
    text = Text()
    for key, value in view.reporter.items():
        text.append(f"{key.replace('_', ' ')}  ", LABEL)
        text.append_text(untrusted(str(value), one_line=True))
        text.append("\n")
    text.rstrip()
    return text


def _history(entries: list[AuditEntry], zone: Any) -> Text:
    if not entries:
        return Text("Nothing yet.", style="dim")
    text = Text()
    for index, entry in enumerate(reversed(entries)):
        if index:
            text.append("\n")
        text.append(local_time(parse_iso(entry.at), zone), "dim")
        text.append(f"  {entry.action:<22} ")
        text.append_text(untrusted(entry.actor, one_line=True))
    return text


DELIVERY_STATES: dict[str, tuple[str, str]] = {
    "pending": ("queued", "yellow"),
    "sending": ("sending", "yellow"),
    "delivered": ("delivered", "green"),
    "failed": ("FAILED", OVERDUE),
    "superseded": ("not sent: no longer needed (acknowledged, met or closed)", "dim"),
}


def _timer_label(kind: str, step: int) -> str:
    if kind == "step":
        return f"escalation step {step + 1}"
    if kind == "repeat":
        return "repeat reminder"
    if kind == "clock-warning":
        return "deadline warning"
    if kind.startswith(CLOCK_TIMER):
        clock = kind.removeprefix(CLOCK_TIMER)
        label = CLOCK_LABELS.get(clock, clock)
        return f"{label}: {'deadline passed' if step else 'warning'}"
    if kind == "fallback":
        return "fallback channel"
    return kind or "page"


def _notifications(history: NotificationHistory | None, now: datetime, zone: Any) -> Text:
    """Who was paged, on which channel, and how it went; then the timers still to fire."""
    if history is None:
        return Text("Loading…", style="dim")
    text = Text()
    if not history.notifications:
        text.append("Nobody has been paged about this case.", "dim")
    for index, page in enumerate(history.notifications):
        if index:
            text.append("\n")
        text.append(local_time(page.queued_at, zone), LABEL)
        text.append(f"  {page.channel}  ")
        text.append_text(untrusted(page.recipient, one_line=True))
        text.append("  ")
        text.append_text(untrusted(_timer_label(page.raised_by, page.step), one_line=True))
        label, style = DELIVERY_STATES.get(page.state, (page.state, ""))
        text.append("\n  ")
        text.append(label, style)
        if page.delivered_at is not None:
            text.append(f" {short_time(page.delivered_at, zone)}")
        tries = "attempt" if page.attempts == 1 else "attempts"
        if page.attempts:
            text.append(f" · {page.attempts} {tries}", "dim")
        if page.error:
            text.append(" · last error: ", "dim")
            text.append_text(untrusted(page.error, one_line=True))
        if page.state == "pending" and page.next_attempt_at is not None and page.attempts:
            text.append(f" · next try {short_time(page.next_attempt_at, zone)}", "dim")
        if page.acknowledged_at is not None:
            text.append(f" · acknowledged {short_time(page.acknowledged_at, zone)}", "green")
        if page.reason:
            text.append("\n  reason: ", "dim")
            text.append_text(untrusted(page.reason, one_line=True, style="dim"))
    pending = [t for t in history.timers if t.state == "pending"]
    done = [t for t in history.timers if t.state != "pending"]
    text.append("\n\nEscalation timers", LABEL)
    if not history.timers:
        text.append("\n  none", "dim")
    for timer in pending + done:
        text.append(
            f"\n  {local_time(timer.due_at, zone)}  {_timer_label(timer.kind, timer.step)}  "
        )
        if timer.fired_at is not None:
            text.append(f"fired {short_time(timer.fired_at, zone)}", "dim")
        elif timer.cancelled_at is not None:
            text.append(f"cancelled {short_time(timer.cancelled_at, zone)}", "dim")
        else:
            text.append("pending (")
            text.append_text(countdown(timer.due_at, now))
            text.append(")")
    return text


def header(summary: CaseSummary, zone: Any) -> Text:
    text = Text()
    text.append(summary.ref, "bold")
    text.append(f" · {SOURCE_LONG[summary.source]} · ")
    text.append(summary.state.value.upper(), "bold red" if summary.state is CaseState.NEW else "")
    text.append(f" · received {local_time(summary.received_at, zone)}")
    details = []
    if summary.assignee:
        details.append(f"assigned {summary.assignee}")
    if summary.acknowledged_by and summary.acknowledged_at:
        details.append(
            f"acknowledged by {summary.acknowledged_by} {local_time(summary.acknowledged_at, zone)}"
        )
    if summary.flags:
        details.append("flags " + ", ".join(FLAG_SHORT.get(f, f) for f in summary.flags))
    if details:
        text.append("\n")
        text.append_text(untrusted(" · ".join(details), one_line=True))
    return text


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
        yield Static(header(self.view.summary, zone), id="case-header", markup=False)
        yield Static("", id="case-stale", classes="-hidden", markup=False)
        with VerticalScroll(id="case-body"):
            yield _section("Facts")
            yield Static(_facts(self.view), id="facts", markup=False)
            yield _section("Clocks")
            yield Static(_clocks(self.view, self.desk.now(), zone), id="clocks", markup=False)
            yield _section("Original message (plain text, shown as received)")
            yield Static(_message(self.view), id="message", markup=False)
            yield _section(f"Attachments ({len(self.view.attachments)})")
            yield Static(_attachments(self.view), id="attachments", markup=False)
            reporter = _reporter(self.view)
            if reporter is not None:
                yield _section("Reporter")
                yield Static(reporter, id="reporter", markup=False)
            yield _section("Chronology")
            yield Static(_chronology(self.view, zone), id="chronology", markup=False)
            yield _section("Notifications and escalations")
            yield Static(
                _notifications(None, self.desk.now(), zone), id="notifications", markup=False
            )
            yield _section("Audit trail: reads, pages and actions")
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
            _notifications(history, self.desk.now(), self.desk.zone)
        )

    def _notifications_failed(self, error: SgalertError) -> bool:
        """Stop loading the notifications and say so, once."""
        if self.notifications_stopped or not self.is_attached:  # told already, or closed
            self.notifications_stopped = True
            return True
        self.notifications_stopped = True
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
        if not self.history_shown:
            return
        self.desk.submit(
            self.desk.service.case_history(self.view.summary.id),
            description="Loading the case history",
            done=self._show_history,
            latest="case-history",
        )

    def _show_history(self, found: list[AuditEntry]) -> None:
        self.query_one("#history", Static).update(_history(found, self.desk.zone))
        self.query_one("#history", Static).scroll_visible()

    def show_view(self, view: CaseView) -> None:
        zone = self.desk.zone
        self.view = view
        self.stale = False
        self.query_one("#case-stale", Static).add_class("-hidden")
        self.query_one("#case-header", Static).update(header(view.summary, zone))
        self.query_one("#facts", Static).update(_facts(view))
        self.query_one("#clocks", Static).update(_clocks(view, self.desk.now(), zone))
        self.query_one("#message", Static).update(_message(view))
        self.query_one("#attachments", Static).update(_attachments(view))
        self.query_one("#chronology", Static).update(_chronology(view, zone))
        reporter = _reporter(view)
        if reporter is not None and self.query("#reporter"):
            self.query_one("#reporter", Static).update(reporter)
        self._load_history()
        self.notifications_stopped = False  # the case opened again: this person may read it
        self._load_notifications()
        self.refresh_bindings()

    def tick(self, now: datetime) -> None:
        self.query_one("#clocks", Static).update(
            _clocks(self.view, now, self.desk.zone), layout=False
        )
        if self.notifications is not None:
            self.query_one("#notifications", Static).update(
                _notifications(self.notifications, now, self.desk.zone), layout=False
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
            summary = await service.summary(case_id)
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

    def action_note(self) -> None:
        def written(text: str | None) -> None:
            if text:
                self._act(
                    lambda who: self.desk.service.add_note(who, self.ref, text),
                    f"Adding a note to {self.ref}",
                    "Note added and signed.",
                )

        self.app.push_screen(NoteScreen(self.ref), written)

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

    def action_assign(self) -> None:
        def chosen(email: str | None) -> None:
            if email:
                self._act(
                    lambda who: self.desk.service.assign(who, self.ref, email),
                    f"Assigning {self.ref}",
                    f"{self.ref} assigned to {email}.",
                )

        def ask(people: list[tuple[Any, dict[str, str]]]) -> None:
            choices = [
                (f"{person.name} <{person.email}> ({person.role.value})", person.email)
                for person, _ in people
                if not person.removed and person.role in ASSIGNABLE
            ]
            self.app.push_screen(AssignScreen(self.ref, choices), chosen)

        self.desk.submit(self.desk.service.people(), description="Listing people", done=ask)

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
            plan = self.desk.service.plan
            due = ""
            if plan is not None:
                moment = action_clock_due(plan, kind, self.desk.now())
                due = f"It will be due {local_time(moment, self.desk.zone)}. "
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

    def action_save_attachment(self) -> None:
        """Pick an attachment and a path, read the warning, confirm (and again to replace a
        file); only then is the decrypted copy written, mode 0600, and the export audited."""
        if not self.view.attachments:
            self.desk.notify("This case has no attachments.", markup=False)
            return
        self.desk.submit(
            asyncio.to_thread(default_directory),  # it looks at the file system
            description="Finding your Downloads folder",
            done=self._ask_where_to_save,
        )

    def _ask_where_to_save(self, folder: Path) -> None:
        choices: list[tuple[Text, int]] = []
        proposals: dict[int, str] = {}
        for index, item in enumerate(self.view.attachments):
            label = Text(f"{index + 1}. ")
            label.append_text(untrusted(item.filename, one_line=True))
            label.append(f"  {item.size:,} bytes", "dim")
            choices.append((label, index))
            proposals[index] = str(folder / proposed_name(self.ref, index, item.filename))

        def save(request: AttachmentSave, overwrite: bool) -> None:
            def run(identity: Identity) -> None:
                def saved(result: SavedAttachment) -> None:
                    shown = printable(str(result.path), keep_newlines=False)
                    self.desk.notify(
                        f"Decrypted copy written to {shown} (readable by you only). Delete it"
                        " when you no longer need it.",
                        title="Attachment saved",
                        timeout=10,
                        markup=False,
                    )

                self.desk.submit(
                    self.desk.service.save_attachment(
                        identity, self.ref, request.index, request.path, overwrite=overwrite
                    ),
                    description=f"Saving an attachment of {self.ref}",
                    done=saved,
                    sensitive=True,
                )

            self.desk.require_identity(run)

        def replace_answered(request: AttachmentSave, yes: bool | None) -> None:
            if yes:
                save(request, overwrite=True)

        def checked(request: AttachmentSave, taken: bool) -> None:
            if taken:
                self.app.push_screen(
                    ConfirmScreen(
                        "Replace the existing file?",
                        "A file already exists at that path. Replacing it destroys what is"
                        " there now and cannot be undone.",
                        confirm="Replace",
                    ),
                    lambda again: replace_answered(request, again),
                )
                return
            save(request, overwrite=False)

        def warned(request: AttachmentSave, yes: bool | None) -> None:
            if yes:
                self.desk.submit(
                    asyncio.to_thread(os.path.lexists, request.path),
                    description="Checking the path",
                    done=lambda taken: checked(request, taken),
                )

        def chosen(request: AttachmentSave | None) -> None:
            if request is None:
                return
            who = self.desk.identity.email if self.desk.identity else "you"
            where = printable(str(request.path), keep_newlines=False)
            self.app.push_screen(
                ConfirmScreen(
                    "Write a decrypted copy outside the encrypted store?",
                    "WARNING: this writes a decrypted copy of confidential safeguarding material"
                    f" to\n  {where}\nwhere sgalert's encryption no longer protects it. From now"
                    f" on {who} is responsible for it: keep it on an encrypted device, share it"
                    " only with those who need to know, and delete it when it is no longer"
                    " needed. The export is recorded in the audit log in your name.",
                    confirm="Write copy",
                ),
                lambda yes: warned(request, yes),
            )

        self.app.push_screen(SaveAttachmentScreen(self.ref, choices, proposals), chosen)
