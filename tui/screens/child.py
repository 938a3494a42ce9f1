"""The child file: every case about one child and one chronology of significant events.

Built by :func:`sgalert.desk.child_file.child_file` for the unlocked person, from the case it is
opened on (``F`` on a case, or "Child file" in the command palette). The cases it lists are the ones
this person can open whose child has the same name and date of birth; cases with the same name
and no date of birth are listed apart as *possible, name only* and kept out of the chronology.
Names, notes and reasons are untrusted text: shown through :func:`~tui.formatting.untrusted`,
never as markup. Like a case, the screen closes whenever the desk locks.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Static

from sgalert.clock import in_words
from sgalert.desk.service import ChildFile, EventKind, FileCase, FileEvent, Identity, Match

from ..formatting import (
    CLOCK_LABELS,
    OVERDUE,
    SOURCE_LONG,
    SOURCE_SHORT,
    STATE_SHORT,
    plural,
    untrusted,
)
from . import DeskScreen
from .dialogs import ConfirmScreen

if TYPE_CHECKING:
    from tui.app import SgalertApp

LABEL = "bold"

EVENT_LABELS: dict[EventKind, str] = {
    EventKind.RECEIVED: "RECEIVED",
    EventKind.RECORDED: "RECORDED",
    EventKind.ACKNOWLEDGED: "ACKNOWLEDGED",
    EventKind.ASSIGNED: "ASSIGNED",
    EventKind.NOTE: "NOTE",
    EventKind.DECISION: "DECISION",
    EventKind.REFERRAL: "REFERRAL",
    EventKind.DEADLINE_SET: "DEADLINE SET",
    EventKind.DEADLINE_MET: "DEADLINE MET",
    EventKind.DEADLINE_MISSED: "DEADLINE MISSED",
    EventKind.CLOSED: "CLOSED",
}
MATCH_LABELS: dict[Match, str] = {
    Match.ANCHOR: "this case",
    Match.SAME_CHILD: "name + DOB",
    Match.NAME_ONLY: "name only?",
    Match.CONFIRMED: "confirmed by you",
}


def open_child_file(desk: SgalertApp, ref: str) -> None:
    """Build and show the file of the child in case ``ref`` (asks for the passphrase first).

    From a case opened out of a child file, the file underneath is shown again rather than
    stacking a second copy of it.
    """
    stack = desk.screen_stack
    if len(stack) >= 2 and isinstance(stack[-2], ChildFileScreen) and ref in stack[-2].file.refs:
        desk.pop_screen()
        return

    def load(identity: Identity) -> None:
        desk.submit(
            desk.service.child_file(identity, ref, now=desk.now()),
            description=f"Building the child file from {ref}",
            done=lambda found: desk.push_screen(ChildFileScreen(found)),
            sensitive=True,
            latest="child-file",
        )

    desk.require_identity(load)


def title(found: ChildFile) -> Text:
    text = Text("Child file: ")
    text.append_text(untrusted(found.child_name, one_line=True, style="bold"))
    if found.child_dob is not None:
        text.append(f", born {found.child_dob.strftime('%d %b %Y')}")
    else:
        text.append(", date of birth not recorded")
    return text


def summary_line(found: ChildFile) -> Text:
    cases = len(found.cases)
    text = Text(f"{plural(cases, 'case')} with the same name and date of birth")
    if found.possible:
        text.append(f" · {len(found.possible)} possible, name only (not merged)", "yellow")
    text.append(f" · from the {plural(found.searched, 'case')} you can open", "dim")
    return text


def _who(event: FileEvent) -> Text:
    if event.by_name and event.by:
        return untrusted(f"{event.by_name} <{event.by}>", one_line=True)
    return untrusted(event.by or "", one_line=True)


def _deadline(event: FileEvent, zone: Any) -> str:
    label = CLOCK_LABELS.get(event.clock or "", event.clock or "deadline")
    due = f"due {when(event.due_at, zone)}" if event.due_at else ""
    return f"{label}: {due}" if due else label


def when(moment: datetime, zone: Any) -> str:
    """A child's file spans years, so its times carry the year."""
    return in_words(moment, zone, year=True)


def _event(event: FileEvent, zone: Any) -> Text:
    """One event in at most a few lines that fit 80 columns: when, which case, what, then who
    and the words."""
    kind = event.kind
    text = Text()
    text.append(when(event.at, zone), LABEL)
    text.append(f"  {event.ref}  ")
    text.append(EVENT_LABELS[kind], OVERDUE if kind is EventKind.DEADLINE_MISSED else LABEL)
    if kind is EventKind.RECEIVED:
        text.append(f"  {SOURCE_LONG[event.source]}")
        if event.by:
            text.append("\n  via ")
            text.append_text(
                untrusted("phone" if event.by == "manual" else event.by, one_line=True)
            )
        if event.clock:
            text.append(f"\n  {_deadline(event, zone)}", "dim")
        return text
    if event.signed is True:
        text.append("  ✓ signed", "green")
    elif event.signed is False:
        text.append("  ✗ SIGNATURE INVALID: altered after it was written", OVERDUE)
    if kind in (EventKind.DEADLINE_SET, EventKind.DEADLINE_MET, EventKind.DEADLINE_MISSED):
        text.append(f"\n  {_deadline(event, zone)}")
        if kind is EventKind.DEADLINE_MET and event.late:
            text.append("  (met late)", OVERDUE)
    if event.by:
        text.append("\n  by ")
        text.append_text(_who(event))
    if kind is EventKind.ASSIGNED:
        text.append("\n  to ")
        text.append_text(untrusted(event.text or "-", one_line=True))
        return text
    if event.corrects:
        text.append(f"\n  corrects entry {event.corrects[:8]}", "italic")
    for line in untrusted(event.text).split("\n") if event.text else []:
        text.append("\n  ")
        text.append_text(line)
    if event.reason:
        text.append("\n  Reason: ", LABEL)
        text.append_text(untrusted(event.reason, one_line=True))
    return text


def chronology(found: ChildFile, zone: Any) -> Text:
    if not found.events:
        return Text("Nothing recorded yet.", style="dim")
    text = Text()
    for index, event in enumerate(found.events):
        if index:
            text.append("\n\n")
        text.append_text(_event(event, zone))
    return text


class ChildFileScreen(DeskScreen[None]):
    """The matched cases (enter opens one) and their merged chronology."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="child.back", tooltip="Back to the case"),
        Binding("enter", "open_case", "Open case", id="child.open", tooltip="Open the case"),
        Binding("r", "reload", "Rebuild", id="child.reload", tooltip="Match the cases again"),
        Binding("y", "confirm_match", "Same child", id="child.confirm", tooltip="Confirm a match"),
    ]

    def __init__(self, found: ChildFile) -> None:
        super().__init__()
        self.file = found
        # Name-only matches this person said are the same child: merged in this view only.
        self.confirmed: set[str] = {
            c.summary.ref for c in found.cases if c.match is Match.CONFIRMED
        }

    def compose(self) -> ComposeResult:
        yield Static(title(self.file), id="child-title", classes="screen-title", markup=False)
        yield Static(summary_line(self.file), id="child-summary", markup=False)
        yield Static("", id="child-stale", classes="-hidden", markup=False)
        yield DataTable(id="child-cases", cursor_type="row", zebra_stripes=True)
        yield Static(
            Text(f"Chronology ({plural(len(self.file.events), 'event')})"),
            id="child-chronology-title",
            classes="section-title",
            markup=False,
        )
        with VerticalScroll(id="child-body"):
            yield Static(chronology(self.file, self.desk.zone), id="child-chronology", markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#child-cases", DataTable)
        table.add_column("Ref", key="ref")
        table.add_column("Source", key="source")
        table.add_column("Received", key="received")
        table.add_column("State", key="state")
        table.add_column("Match", key="match")
        self._fill()
        table.focus()

    def _row(self, case: FileCase) -> list[Text]:
        summary = case.summary
        style = "yellow" if case.match is Match.NAME_ONLY else ""
        return [
            Text(summary.ref, style="bold" if case.match is Match.ANCHOR else style),
            Text(SOURCE_SHORT[summary.source], style=style),
            Text(when(summary.received_at, self.desk.zone), style=style),
            Text(STATE_SHORT[summary.state], style=style),
            Text(MATCH_LABELS[case.match], style=style),
        ]

    def _fill(self) -> None:
        table = self.query_one("#child-cases", DataTable)
        table.clear()
        for case in (*self.file.cases, *self.file.possible):
            table.add_row(*self._row(case), key=case.summary.ref)
        anchor = self.file.anchor.ref
        if anchor in self.file.refs:
            table.move_cursor(row=table.get_row_index(anchor))

    def show_file(self, found: ChildFile) -> None:
        self.file = found
        self.query_one("#child-title", Static).update(title(found))
        self.query_one("#child-summary", Static).update(summary_line(found))
        self.query_one("#child-stale", Static).add_class("-hidden")
        self.query_one("#child-chronology-title", Static).update(
            Text(f"Chronology ({plural(len(found.events), 'event')})")
        )
        self.query_one("#child-chronology", Static).update(chronology(found, self.desk.zone))
        self._fill()

    def store_changed(self) -> None:
        """Say so when a case was added or one listed here changed: it may change the file, and
        only matching again can tell (rebuilding is audited, so the desk does not do it itself)."""

        def compare(stale: bool) -> None:
            if stale:
                notice = self.query_one("#child-stale", Static)
                notice.update(Text("Cases have changed since this file was built. Press r."))
                notice.remove_class("-hidden")

        self.desk.submit(
            self.desk.service.child_file_is_stale(self.file),
            description="Checking the child file",
            done=compare,
            latest="child-file-check",
        )

    def action_back(self) -> None:
        self.dismiss(None)

    def _selected_ref(self) -> str | None:
        table = self.query_one("#child-cases", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return str(key.value) if key.value is not None else None

    def action_open_case(self) -> None:
        ref = self._selected_ref()
        if ref is not None:
            self.desk.open_case(ref)

    @on(DataTable.RowSelected, "#child-cases")
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.desk.open_case(str(event.row_key.value))

    def action_reload(self) -> None:
        def load(identity: Identity) -> None:
            self.desk.submit(
                self.desk.service.child_file(
                    identity,
                    self.file.anchor.ref,
                    now=self.desk.now(),
                    confirmed=sorted(self.confirmed),
                ),
                description="Rebuilding the child file",
                done=self.show_file,
                sensitive=True,
                latest="child-file-reload",
            )

        self.desk.require_identity(load)

    def action_confirm_match(self) -> None:
        """Ask whether a name-only match is the same child; yes merges it into this view."""
        ref = self._selected_ref()
        possible = {case.summary.ref for case in self.file.possible}
        if ref is None or ref not in possible:
            self.desk.notify(
                "Choose a case marked “name only?” to confirm it is the same child.",
                markup=False,
            )
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.confirmed.add(ref)
                self.action_reload()

        self.desk.push_screen(
            ConfirmScreen(
                f"Is {ref} about the same child?",
                "It has the same name but no date of birth to confirm it. Yes merges its record"
                " into this file while you look at it; nothing about the match is stored, and"
                " the audit log counts it as confirmed by you.",
                confirm="Same child",
            ),
            answered,
        )
