"""One case, decrypted: facts first, then the message as plain text, then the record.

Every string that came from outside goes through :func:`~tui.formatting.untrusted` (a ``Text``,
never markup, control and bidi characters shown as escapes). Actions that cannot be undone ask
first. The screen is closed whenever the desk locks.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static

from sgalert.audit import AuditEntry
from sgalert.clock import parse_iso
from sgalert.keyring import Identity
from sgalert.model import CaseState, CaseSummary, Role, Source
from sgalert.service import REFERRALS, CaseView

from ..formatting import (
    CLOCK_LABELS,
    FACT_LABELS,
    FLAG_SHORT,
    OVERDUE,
    SOURCE_LONG,
    countdown,
    local_time,
    untrusted,
)
from ..queries import case_history
from . import DeskScreen
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
        text.append_text(untrusted(item.filename, one_line=True))
        text.append(f"  {item.content_type}  {item.size:,} bytes", "dim")
    text.append("\n(Saving a decrypted copy is not available from the desk yet.)", "dim")
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
            "h", "history", "History", id="case.history", tooltip="Reads, notifications", show=False
        ),
        Binding("r", "reload", "Reload", id="case.reload", show=False),
    ]

    def __init__(self, view: CaseView) -> None:
        super().__init__()
        self.view = view
        self.stale = False
        self.history_shown = False

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
            yield _section("Notifications, escalations and reads")
            yield Static(Text("Press h to show them.", style="dim"), id="history", markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#case-body").focus()
        self.set_interval(self.desk.poll_seconds, lambda: self.tick(self.desk.now()))

    def action_history(self) -> None:
        self.history_shown = True
        self._load_history()

    def _load_history(self) -> None:
        if not self.history_shown:
            return
        self.desk.submit(
            case_history(self.desk.service, self.view.summary.id),
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
        self.refresh_bindings()

    def tick(self, now: datetime) -> None:
        self.query_one("#clocks", Static).update(
            _clocks(self.view, now, self.desk.zone), layout=False
        )

    def store_changed(self) -> None:
        """Someone changed a case: say so if it is this one (reading it again is audited, so the
        desk does not do it on its own)."""

        def compare(summary: CaseSummary) -> None:
            if summary.updated_at != self.view.summary.updated_at and not self.stale:
                self.stale = True
                notice = self.query_one("#case-stale", Static)
                notice.update(Text("This case has changed since you opened it. Press r to reload."))
                notice.remove_class("-hidden")

        self.desk.submit(
            self.desk.service.summary(self.view.summary.id),
            description="Checking the case",
            done=compare,
            latest="case-check",
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
        return True

    def action_back(self) -> None:
        self.dismiss(None)

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
