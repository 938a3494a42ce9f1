"""Find a case by a child's name, date of birth, police reference or any words of the notice.

Only after unlock, and only over the cases the person can read: the desk builds an index in
memory when they unlock (:meth:`~sgalert.desk.service.CaseService.search_index`) and forgets it
when it locks, which also closes this screen. Results show the child's name, so they are
decrypted content: nothing here is written anywhere. ``enter`` opens a case (audited as a read).
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Input, Static

from sgalert.desk.service import Hit

from ..formatting import SOURCE_SHORT, STATE_SHORT, plural, short_time, untrusted
from . import DeskScreen


class SearchScreen(DeskScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="search.back", tooltip="Back to the queue"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.hits: list[Hit] = []
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text("Find a case"), classes="screen-title", markup=False)
        yield Input(
            placeholder="A child's name, a date of birth, a police reference or any words",
            id="search-query",
        )
        yield Static(id="search-status", markup=False)
        yield DataTable(id="search-results", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#search-results", DataTable)
        table.add_columns("Reference", "Received", "Source", "State", "Child", "Found by")
        self.query_one("#search-query", Input).focus()
        self.search_ready()

    def search_ready(self) -> None:
        """The desk has (re)built its index: search again with what is typed."""
        self._run()

    @on(Input.Changed, "#search-query")
    def _typed(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(0.15, self._run)

    @on(Input.Submitted, "#search-query")
    def _submitted(self) -> None:
        self._run()
        if self.hits:
            self.query_one("#search-results", DataTable).focus()

    def _run(self) -> None:
        index = self.desk.search_index
        status = self.query_one("#search-status", Static)
        query = self.query_one("#search-query", Input).value
        if index is None:
            status.update(Text("Preparing search over the cases you can read…", style="dim"))
            return
        self.hits = index.search(query)
        table = self.query_one("#search-results", DataTable)
        table.clear()
        zone = self.desk.zone
        for hit in self.hits:
            table.add_row(
                hit.ref,
                short_time(hit.received_at, zone),
                SOURCE_SHORT[hit.source],
                STATE_SHORT[hit.state],
                untrusted(hit.child or "-", one_line=True),
                hit.matched.value,
                key=hit.ref,
            )
        if not query.strip():
            said = f"Type to search {plural(len(index), 'case')} you can read."
        else:
            said = f"{plural(len(self.hits), 'case')} found."
        status.update(Text(said))

    @on(DataTable.RowSelected, "#search-results")
    def _chosen(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.desk.open_case(str(event.row_key.value))

    def action_back(self) -> None:
        self.dismiss(None)
