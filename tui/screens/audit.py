"""The audit log with the chain's verification status (DSLs and the headteacher).

Each entry is a sentence: who did what to which case, by name and reference ("Dana Example
acknowledged SG-2026-0003"); the words come from the core
(:class:`~sgalert.desk.service.AuditLine`). The raw entry (emails, ids, the hash) opens on
``enter``. Entries name actions, people and cases, never case content. The chain is verified
from the first entry on opening and on ``v``; a break is shown in red with the entry that fails.
"""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Input, Static

from sgalert.clock import parse_iso
from sgalert.desk.service import AuditLine
from sgalert.errors import AuditChainBroken, SgalertError

from ..formatting import OVERDUE, local_time, plural, untrusted
from . import DeskModal, DeskScreen


class AuditEntryScreen(DeskModal[None]):
    """One entry as stored: every field, ids and emails included, under its sentence."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter,q", "close", "Close", id="audit.entry.close"),
    ]

    def __init__(self, line: AuditLine) -> None:
        super().__init__()
        self.line = line

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=False, expand=True)
        table.add_column(no_wrap=True, style="bold")
        table.add_column(overflow="fold")
        for label, value in self.line.details:
            table.add_row(untrusted(label, one_line=True), untrusted(value, one_line=True))
        with VerticalScroll(classes="dialog wide", id="audit-entry"):
            yield Static(Text(f"Audit entry #{self.line.entry.seq}"), classes="dialog-title")
            yield Static(untrusted(self.line.what, one_line=True), classes="dialog-body")
            yield Static(table, id="audit-entry-fields")

    def action_close(self) -> None:
        self.dismiss(None)


class AuditScreen(DeskScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="audit.back", tooltip="Back to the queue"),
        Binding("enter", "show_entry", "Details", id="audit.entry", tooltip="The raw entry"),
        Binding("slash", "filter", "Filter", id="audit.filter", tooltip="Filter the entries"),
        Binding("v", "verify", "Verify chain", id="audit.verify", tooltip="Check every hash"),
        Binding("r", "reload", "Reload", id="audit.reload", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.entries: tuple[AuditLine, ...] | None = None
        self._shown: list[AuditLine] = []

    def compose(self) -> ComposeResult:
        yield Static(Text("Audit log"), classes="screen-title", markup=False)
        yield Static(Text("Verifying the chain…"), id="chain", markup=False)
        yield Input(
            placeholder="Filter: a name, a case or words", id="audit-filter", classes="-hidden"
        )
        yield DataTable(id="audit", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#audit", DataTable)
        table.add_columns("When", "What happened")
        table.focus()
        self.action_reload()
        self.action_verify()

    def action_back(self) -> None:
        self.dismiss(None)

    def action_reload(self) -> None:
        identity = self.desk.identity
        if identity is None:
            return
        self.desk.submit(
            self.desk.service.audit_lines(identity),
            description="Reading the audit log",
            done=self._show,
            latest="audit",
        )

    def store_changed(self) -> None:
        self.action_reload()

    def _show(self, rows: tuple[AuditLine, ...]) -> None:
        self.entries = rows
        self._fill()

    def _fill(self) -> None:
        if self.entries is None:
            return
        needle = self.query_one("#audit-filter", Input).value.strip().lower()
        table = self.query_one("#audit", DataTable)
        table.clear()
        self._shown = []
        zone = self.desk.zone
        for line in self.entries:
            entry = line.entry
            haystack = f"{line.what} {entry.actor} {entry.action} {line.ref or ''}".lower()
            if needle and needle not in haystack:
                continue
            self._shown.append(line)
            style = OVERDUE if entry.action in ("refused", "unlock-failed") else ""
            table.add_row(
                local_time(parse_iso(entry.at), zone),
                untrusted(line.what, one_line=True, style=style),
                key=str(entry.seq),
            )

    def action_show_entry(self) -> None:
        table = self.query_one("#audit", DataTable)
        if not self._shown or not 0 <= table.cursor_row < len(self._shown):
            return
        self.desk.push_screen(AuditEntryScreen(self._shown[table.cursor_row]))

    @on(DataTable.RowSelected, "#audit")
    def _row_chosen(self, event: DataTable.RowSelected) -> None:
        self.action_show_entry()

    def action_verify(self) -> None:
        chain = self.query_one("#chain", Static)
        chain.update(Text("Verifying the chain…"))

        def verified(count: int) -> None:
            chain.update(
                Text(
                    f"✓ Chain intact: all {plural(count, 'entry', 'entries')} verified.",
                    style="green",
                )
            )

        def broken(error: SgalertError) -> bool:
            if isinstance(error, AuditChainBroken):
                chain.update(Text(f"✗ CHAIN BROKEN: {error}", style=OVERDUE))
                return True
            return False

        self.desk.submit(
            self.desk.service.verify_audit(),
            description="Verifying the audit chain",
            done=verified,
            failed=broken,
            latest="audit-verify",
        )

    def action_filter(self) -> None:
        box = self.query_one("#audit-filter", Input)
        box.remove_class("-hidden")
        box.focus()

    @on(Input.Changed, "#audit-filter")
    def _filtered(self) -> None:
        self._fill()

    @on(Input.Submitted, "#audit-filter")
    def _filter_done(self) -> None:
        self.query_one("#audit", DataTable).focus()
