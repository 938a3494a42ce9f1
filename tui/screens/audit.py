"""The audit log with the chain's verification status (DSLs and the headteacher).

Entries name actions, people and cases, never case content. The chain is verified from the first
entry on opening and on ``v``; a break is shown in red with the entry that fails.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Input, Static

from sgalert.clock import parse_iso
from sgalert.desk.views import AuditRow
from sgalert.errors import AuditChainBroken, SgalertError

from ..formatting import OVERDUE, local_time, plural, untrusted
from . import DeskScreen


def _detail(row: AuditRow) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted(row.entry.detail.items()))


class AuditScreen(DeskScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="audit.back", tooltip="Back to the queue"),
        Binding("slash", "filter", "Filter", id="audit.filter", tooltip="Filter the entries"),
        Binding("v", "verify", "Verify chain", id="audit.verify", tooltip="Check every hash"),
        Binding("r", "reload", "Reload", id="audit.reload", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.entries: tuple[AuditRow, ...] | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text("Audit log"), classes="screen-title", markup=False)
        yield Static(Text("Verifying the chain…"), id="chain", markup=False)
        yield Input(
            placeholder="Filter: actor, action or case", id="audit-filter", classes="-hidden"
        )
        yield DataTable(id="audit", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#audit", DataTable)
        table.add_columns("#", "When", "Actor", "Action", "Case", "Detail")
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
            self.desk.service.audit_log(identity),
            description="Reading the audit log",
            done=self._show,
            latest="audit",
        )

    def store_changed(self) -> None:
        self.action_reload()

    def _show(self, rows: tuple[AuditRow, ...]) -> None:
        self.entries = rows
        self._fill()

    def _fill(self) -> None:
        if self.entries is None:
            return
        needle = self.query_one("#audit-filter", Input).value.strip().lower()
        table = self.query_one("#audit", DataTable)
        table.clear()
        zone = self.desk.zone
        for row in self.entries:
            entry = row.entry
            haystack = f"{entry.actor} {entry.action} {row.ref or ''}".lower()
            if needle and needle not in haystack:
                continue
            table.add_row(
                str(entry.seq),
                local_time(parse_iso(entry.at), zone),
                untrusted(entry.actor, one_line=True),
                Text(entry.action, style=OVERDUE if entry.action == "refused" else ""),
                row.ref or "",
                untrusted(_detail(row), one_line=True),
            )

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
