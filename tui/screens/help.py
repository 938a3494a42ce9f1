"""``?``: every binding of the screen underneath, the app's, and what the flags mean."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from ..formatting import FLAG_MEANING, FLAG_SHORT
from . import DeskModal


class HelpScreen(DeskModal[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "close", "Close help", id="help.close"),
    ]

    def __init__(self, under: Screen[object]) -> None:
        super().__init__()
        self.under = under

    def _binding_table(self) -> Table:
        table = Table(box=None, show_header=True, header_style="bold", expand=True)
        table.add_column("Key", no_wrap=True)
        table.add_column("Does")
        seen: set[tuple[str, str]] = set()
        for active in self.under.active_bindings.values():
            binding = active.binding
            if not binding.id or not binding.description or binding.system:
                continue
            key = self.app.get_key_display(binding)
            if (key, binding.action) in seen:
                continue
            seen.add((key, binding.action))
            does = binding.description
            if binding.tooltip:
                does = f"{does}: {binding.tooltip}"
            table.add_row(Text(key), Text(does))
        table.add_row(Text("ctrl+p"), Text("Command palette: every action by name"))
        table.add_row(Text("↑ ↓ pgup pgdn"), Text("Move; past the end of a page loads the next"))
        table.add_row(Text("tab"), Text("Next field or area"))
        return table

    def _flag_table(self) -> Table:
        table = Table(box=None, show_header=False, expand=True)
        table.add_column(no_wrap=True)
        table.add_column()
        for flag, meaning in FLAG_MEANING.items():
            table.add_row(Text(FLAG_SHORT[flag]), Text(meaning))
        return table

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog wide", id="help"):
            yield Static(Text("Keys"), classes="dialog-title", markup=False)
            yield Static(self._binding_table(), markup=False)
            yield Static(Text("Flags in the queue"), classes="section-title", markup=False)
            yield Static(self._flag_table(), markup=False)

    def action_close(self) -> None:
        self.dismiss(None)
