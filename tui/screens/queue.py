"""The queue: what is new, what is overdue, what is due next.

Metadata only (no unlock needed), one page of ``PAGE_SIZE`` rows at a time, filtered and sorted in
SQL, so the queue is as quick with 100,000 cases as with ten. Moving past the last row loads the
next page. The store watcher reloads the page when anyone changes a case; a one-second tick keeps
the deadline countdowns live without touching the store.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, tzinfo
from typing import ClassVar, Literal

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.timer import Timer
from textual.widgets import Button, Footer, Input, Static, Tab, Tabs

from sgalert.desk.service import CasePreview, Identity
from sgalert.desk.views import QueuePage, QueueQuery, QueueView, SortKey
from sgalert.model import CaseState, CaseSummary

from ..case_list import CaseList, Column, Row
from ..formatting import (
    SOURCE_SHORT,
    STATE_SHORT,
    countdown,
    flags_text,
    local_time,
    person_label,
    short_time,
)
from ..preview import PreviewPane
from ..status import Banner
from . import DeskModal, DeskScreen

Select = Literal["keep", "first", "last"]
# How long the highlight must rest before the preview loads: holding down a key to move down
# the list never loads the cases passed over.
PREVIEW_DEBOUNCE = 0.15
AckAnswer = Literal["read", "unread", "open"]
ACK_BUTTONS: dict[str, AckAnswer] = {"read": "read", "unread": "unread", "open": "open"}

# Fixed widths: columns never jump between pages or tabs, and a new page never changes the
# table's size, so loading one costs no layout pass. At 80 columns the deadline keeps its
# countdown and local time (``10h 30m Mon 08:30``), the flags two whole words (``unverified
# hostile``), and Received, which the preview pane says too, is left out.
COLUMNS = (
    Column("ref", "Reference", 13),
    Column("source", "Source", 9),
    Column("received", "Received", 12, optional=True),
    Column("state", "State", 6),
    Column("assignee", "Assignee", 8),
    Column("deadline", "Deadline", 24, least=17),
    Column("flags", "Flags", 36, least=18),
)
# One tab per queue view, in this order.
TAB_LABELS: dict[QueueView, str] = {
    QueueView.NEEDS_ACTION: "Needs action",
    QueueView.ENCOMPASS: "Encompass",
    QueueView.WHISTLE: "Whistleblowing",
    QueueView.LESSON: "Lesson",
    QueueView.ALL: "All",
    QueueView.MINE: "My cases",
}
OPEN_CYCLE = (SortKey.PRIORITY, SortKey.DEADLINE, SortKey.RECEIVED, SortKey.REF, SortKey.ASSIGNEE)
SORT_CYCLE: dict[QueueView, tuple[SortKey, ...]] = {
    QueueView.NEEDS_ACTION: OPEN_CYCLE,
    QueueView.MINE: OPEN_CYCLE,
}
DEFAULT_CYCLE = (SortKey.RECEIVED, SortKey.DEADLINE, SortKey.STATE, SortKey.REF, SortKey.ASSIGNEE)
# How each order reads, natural then reversed (``S``), and its arrow: ↓ when the values fall
# down the list (newest first), ↑ when they rise (soonest deadline first). Priority and state
# are ranks, not values, so they are said in words only.
SORT_WORDS: dict[SortKey, tuple[tuple[str, str], tuple[str, str]]] = {
    SortKey.PRIORITY: (("most urgent first", ""), ("least urgent first", "")),
    SortKey.DEADLINE: (("soonest deadline first", "↑"), ("latest deadline first", "↓")),
    SortKey.RECEIVED: (("newest first", "↓"), ("oldest first", "↑")),
    SortKey.REF: (("newest reference first", "↓"), ("oldest reference first", "↑")),
    SortKey.STATE: (("new first", ""), ("closed first", "")),
    SortKey.ASSIGNEE: (("assignee A to Z", "↑"), ("assignee Z to A", "↓")),
}


class AcknowledgeScreen(DeskModal[AckAnswer | None]):
    """Acknowledging from the queue, without the case open: have you read it? Only reading it
    meets an Encompass notice's "read before the next school day"; unread, escalation stops but
    that deadline stays open until someone opens the case."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer('read')", "Read it", id="ack.read"),
        Binding("u", "answer('unread')", "Unread", id="ack.unread"),
        Binding("o", "answer('open')", "Open it", id="ack.open"),
        Binding("n,escape", "answer(None)", "Cancel", id="ack.cancel"),
    ]

    def __init__(self, ref: str) -> None:
        super().__init__()
        self.ref = ref

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(f"Acknowledge {self.ref}? Have you read it?"), classes="dialog-title")
            yield Static(
                Text(
                    "You take responsibility for this case now: escalation stops and the"
                    " acknowledgement is recorded in your name. This cannot be undone. Only"
                    " reading the case meets a deadline to read it (an Encompass notice before"
                    " the next school day): acknowledged unread, that deadline stays open until"
                    " someone opens the case."
                ),
                classes="dialog-body",
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button("I have read it (y)", variant="error", id="read")
                yield Button("Not yet read (u)", id="unread")
                yield Button("Open it (o)", id="open")
                yield Button("Cancel (n)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def action_answer(self, answer: AckAnswer | None) -> None:
        self.dismiss(answer)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(ACK_BUTTONS.get(event.button.id or ""))


def due_time(due: datetime, zone: tzinfo, now: datetime) -> str:
    """A deadline's local time, short: ``Mon 08:30`` within the coming week, else ``7 Dec 08:30``
    (UK order; the preview and the case say it in full)."""
    local, today = due.astimezone(zone), now.astimezone(zone)
    if 0 <= (local.date() - today.date()).days < 6:
        return f"{local:%a %H:%M}"
    return f"{local.day} {local:%b %H:%M}"


def sort_label(query: QueueQuery) -> str:
    """``by received ↓ newest first``: the key, and the order in words as well as an arrow."""
    words, arrow = SORT_WORDS[query.sort][query.descending]
    return f"by {query.sort.value} {arrow} {words}" if arrow else f"by {query.sort.value}, {words}"


class QueueScreen(DeskScreen[None]):
    """The desk's home: banners, tabs, the page of cases, the filter."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter", id="queue.filter", tooltip="Filter by metadata"),
        Binding("s", "sort", "Sort", id="queue.sort", tooltip="Sort by the next column"),
        Binding("S", "reverse", "Reverse", id="queue.reverse", show=False),
        Binding("a", "acknowledge", "Ack", id="queue.acknowledge", tooltip="Acknowledge"),
        Binding(
            "n", "app.new_case", "New", id="queue.new_case", tooltip="Record a phoned notification"
        ),
        Binding("r", "app.open_rota", "Rota", id="queue.rota", tooltip="Who is on duty"),
        Binding("f", "app.search", "Find", id="queue.search", tooltip="By child, birth date, ref"),
        Binding("l", "app.open_audit", "Audit", id="queue.audit", tooltip="The log", show=False),
        Binding("u", "app.unlock", "Unlock", id="queue.unlock", tooltip="Unlock your key"),
        Binding("1", "tab('needs')", "Needs action", id="queue.tab.needs", show=False),
        Binding("2", "tab('encompass')", "Encompass tab", id="queue.tab.encompass", show=False),
        Binding("3", "tab('whistle')", "Whistleblowing tab", id="queue.tab.whistle", show=False),
        Binding("4", "tab('lesson')", "Lesson tab", id="queue.tab.lesson", show=False),
        Binding("5", "tab('all')", "All cases tab", id="queue.tab.all", show=False),
        Binding(
            "6",
            "tab('mine')",
            "My cases tab",
            id="queue.tab.mine",
            show=False,
            tooltip="Assigned to you, paged to you, or a clock you started",
        ),
        Binding("right_square_bracket", "page(1)", "Next page", id="queue.next", show=False),
        Binding("left_square_bracket", "page(-1)", "Previous page", id="queue.prev", show=False),
        Binding("escape", "clear_filter", "Clear filter", id="queue.clear_filter", show=False),
    ]

    def __init__(self, counts: dict[QueueView, int] | None = None) -> None:
        super().__init__()
        self.query_state = QueueQuery()
        self.page: QueuePage | None = None
        self._select: Select = "keep"
        self._deadline_text: dict[str, str] = {}
        self._banners: list[Banner] = []
        self._search_timer: Timer | None = None
        self._counts: dict[QueueView, int] = dict(counts or {})
        self._whoami = ""
        self._preview_timer: Timer | None = None
        # What the pane's decrypted preview is of: (reference, updated_at, whose epoch). A
        # reload of the same unchanged case (the store watcher reloads the page on every
        # commit, a preview's own audit entry included) keeps it rather than reading it again.
        self._previewed: tuple[str, datetime, int] | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="topbar"):
            yield Static(id="school", markup=False)
            yield Static(id="whoami", markup=False)
        yield Vertical(id="banners")
        # Counted before the first paint, so the tabs do not change width a moment later.
        yield Tabs(*(Tab(self._tab_label(tab), id=tab.value) for tab in TAB_LABELS), id="tabs")
        yield CaseList(COLUMNS, id="queue")
        yield PreviewPane(id="preview")
        yield Input(
            placeholder="Filter: reference, source, state, flag, assignee (Esc clears)",
            id="filter",
            classes="-hidden",
        )
        yield Static(id="queue-status", markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.identity_changed()
        table = self.query_one(CaseList)
        table.focus()
        self.watch(table, "cursor_row", self._highlight_moved, init=False)
        # The screen's own timer: it stops with the screen, so it never ticks a torn-down DOM.
        self.set_interval(self.desk.poll_seconds, lambda: self.tick(self.desk.now()))

    # ----- loading ------------------------------------------------------------------------

    def reload(self, select: Select = "keep", *, recount: bool = True) -> None:
        """Fetch the current page (one query for its ids, one for its rows). ``recount`` also
        recounts the tabs: needed when the store changed, not when paging or sorting."""
        self._select = select
        desk = self.desk
        if recount:
            self._counts = {}
        query = self.query_state
        # The tabs count what this person can read; the page counts what it lists.
        desk.submit(
            desk.service.queue_page(
                query, known_total=self._counts.get(query.view), viewer=desk.identity
            ),
            description="Loading the queue",
            done=self._show_page,
            latest="queue",
        )
        if recount:
            desk.submit(
                desk.service.queue_counts(desk.identity),
                description="Counting cases",
                done=self._show_counts,
                latest="queue-counts",
            )

    def _show_page(self, page: QueuePage) -> None:
        table = self.query_one(CaseList)
        if page.query != self.query_state:
            self.query_state = page.query  # clamped to the last page
        previous_ref = table.highlighted
        previous_row = table.cursor_row
        now = self.desk.now()
        zone = self.desk.zone
        self._deadline_text.clear()
        rows: list[Row] = []
        for case in page.rows:
            deadline = self._deadline(case, now)
            self._deadline_text[case.ref] = deadline.plain
            new = case.state is CaseState.NEW
            cells = {
                "ref": Text(case.ref, style="bold" if new else ""),
                "source": Text(SOURCE_SHORT[case.source]),
                "received": Text(short_time(case.received_at, zone)),
                "state": Text(STATE_SHORT[case.state], style="bold red" if new else ""),
                "assignee": Text(person_label(case.assignee, self.desk.names)),
                "deadline": deadline,
                "flags": Text(flags_text(case.flags)),
            }
            rows.append(Row(case.ref, cells, highlight=case.ref in self.desk.fresh))
        self.page = page
        refs = [case.ref for case in page.rows]
        if self._select == "first" or not refs:
            row = 0
        elif self._select == "last":
            row = len(refs) - 1
        elif previous_ref in refs:
            row = refs.index(previous_ref)
        else:
            row = min(previous_row, len(refs) - 1)
        self._select = "keep"
        table.set_rows(rows, cursor=row)
        self._show_status()

    # ----- the preview pane -----------------------------------------------------------------

    def _highlight_moved(self) -> None:
        """Wait for the highlight to rest, then load its preview (in a worker)."""
        if self._preview_timer is not None:
            self._preview_timer.stop()
        self._preview_timer = self.set_timer(PREVIEW_DEBOUNCE, self._load_preview)

    def _summary(self, ref: str | None) -> CaseSummary | None:
        rows = self.page.rows if self.page is not None else ()
        return next((case for case in rows if case.ref == ref), None)

    def on_screen_resume(self) -> None:
        self._highlight_moved()  # back on top: bring the preview up to date

    def _load_preview(self) -> None:
        desk = self.desk
        if desk.screen is not self:
            return  # covered (a case, a dialog): nothing to glance at until it comes back
        pane = self.query_one(PreviewPane)
        summary = self._summary(self._highlighted_ref())
        identity = desk.identity
        if summary is None or identity is None:
            self._previewed = None
            pane.show(summary, None, desk.zone, desk.now(), locked=True)
            return
        seen = (summary.ref, summary.updated_at, desk.epoch)
        if seen == self._previewed and not pane.locked and not pane.loading:
            pane.show(summary, pane.preview, desk.zone, desk.now(), locked=False)
            return
        if pane.summary is None or pane.summary.ref != summary.ref or pane.locked:
            # Until the worker answers, what is known without decrypting.
            pane.show(summary, None, desk.zone, desk.now(), locked=False, loading=True)

        def loaded(preview: CasePreview | None) -> None:
            if self._highlighted_ref() == summary.ref and desk.identity is identity:
                self._previewed = seen
                pane.show(summary, preview, desk.zone, desk.now(), locked=False)

        desk.submit(
            desk.service.preview_case(identity, summary.ref),
            description=f"Previewing {summary.ref}",
            done=loaded,
            sensitive=True,
            latest="preview",
        )

    def show_fresh(self) -> None:
        """Highlight the new cases not yet opened here (the desk's ``fresh`` references)."""
        if self.is_mounted:
            self.query_one(CaseList).set_highlights(frozenset(self.desk.fresh))

    def _tab_label(self, tab: QueueView) -> str:
        count = self._counts.get(tab)
        return TAB_LABELS[tab] if count is None else f"{TAB_LABELS[tab]} {count:,}"

    def _show_counts(self, counts: dict[QueueView, int]) -> None:
        self._counts = counts
        tabs = self.query_one(Tabs)
        for tab in TAB_LABELS:
            widget = tabs.query_one(f"#{tab.value}", Tab)
            label = self._tab_label(tab)
            if widget.label_text != label:
                widget.label = label

    def _deadline(self, case: CaseSummary, now: datetime) -> Text:
        """The countdown and, beside it, the local time it runs out (``10h 30m Mon 08:30``)."""
        if case.state is CaseState.CLOSED:
            return Text("-", style="dim")
        text = countdown(case.next_deadline, now)
        if case.next_deadline is not None:
            text.append(f" {due_time(case.next_deadline, self.desk.zone, now)}", style="dim")
        return text

    def _highlighted_ref(self) -> str | None:
        return self.query_one(CaseList).highlighted

    def _show_status(self) -> None:
        page = self.page
        query = self.query_state
        parts = [TAB_LABELS[query.view]]
        if page is None:
            parts.append("loading…")
        elif not page.rows:
            parts.append("no cases" + (" match the filter" if query.search else ""))
        else:
            first = query.offset + 1
            parts.append(f"{first:,}-{query.offset + len(page.rows):,} of {page.total:,}")
        parts.append(sort_label(query))
        if query.search:
            parts.append(f"filter “{query.search}”")
        # Fixed one-line bar: no layout pass needed (a layout costs tens of milliseconds).
        self.query_one("#queue-status", Static).update(Text("  ·  ".join(parts)), layout=False)

    # ----- live ---------------------------------------------------------------------------

    def tick(self, now: datetime) -> None:
        """Once a second: countdowns, the clock in the top bar, time-judged banners."""
        self._show_whoami(now)
        self.show_banners()
        if self.page is None:
            return
        self.query_one(PreviewPane).redraw(self.desk.zone, now)
        table = self.query_one(CaseList)
        for case in self.page.rows:
            text = self._deadline(case, now)
            if self._deadline_text.get(case.ref) != text.plain:
                self._deadline_text[case.ref] = text.plain
                table.update_cell(case.ref, "deadline", text)

    def identity_changed(self) -> None:
        if self.desk.identity is None:
            self._previewed = None
            self.query_one(PreviewPane).clear()  # locked: nothing decrypted stays on screen
        self.reload()  # what the queue shows depends on who is looking
        self._highlight_moved()
        self._show_whoami(self.desk.now())
        self.show_banners()
        self.refresh_bindings()

    def _show_whoami(self, now: datetime) -> None:
        desk = self.desk
        who = (
            f"{desk.identity.email} · unlocked"
            if desk.identity is not None
            else "locked: metadata only"
        )
        text = f"{who} · {local_time(now, desk.zone)}"
        if text == self._whoami:
            return  # the tick runs every second; the minute changes once a minute
        resized = len(text) != len(self._whoami)
        self._whoami = text
        self.query_one("#school", Static).update(Text(f"sgalert · {desk.school}"), layout=False)
        self.query_one("#whoami", Static).update(Text(text), layout=resized)

    def show_banners(self) -> None:
        if not self.is_mounted:
            return
        banners = self.desk.current_banners()
        if banners == self._banners:
            return
        self._banners = banners
        box = self.query_one("#banners", Vertical)
        box.remove_children()
        box.mount_all(
            Static(Text(b.text), classes=f"banner -{b.severity}", markup=False) for b in banners
        )

    # ----- keys ---------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "acknowledge":
            return None if not self.page or not self.page.rows else True
        return True

    @on(Tabs.TabActivated)
    def _tab_chosen(self, event: Tabs.TabActivated) -> None:
        if event.tab.id is None:
            return
        view = QueueView(event.tab.id)
        if self.page is not None and view is self.query_state.view:
            return
        self.query_state = self.query_state.with_view(view)
        self.reload(select="first", recount=self.page is None and not self._counts)

    def action_tab(self, tab: str) -> None:
        self.query_one(Tabs).active = tab

    @on(CaseList.PageRequest)
    def _page_request(self, event: CaseList.PageRequest) -> None:
        self.action_page(event.step)

    def action_page(self, step: int) -> None:
        page = self.page
        if page is None or (step > 0 and not page.has_next) or (step < 0 and not page.has_previous):
            return
        offset = max(self.query_state.offset + step * self.query_state.limit, 0)
        self.query_state = replace(self.query_state, offset=offset)
        self.reload(select="first" if step > 0 else "last", recount=False)

    def action_sort(self) -> None:
        cycle = SORT_CYCLE.get(self.query_state.view, DEFAULT_CYCLE)
        current = self.query_state.sort
        following = cycle[(cycle.index(current) + 1) % len(cycle)] if current in cycle else cycle[0]
        self.query_state = replace(self.query_state, sort=following, descending=False, offset=0)
        self.reload(select="first", recount=False)

    def action_reverse(self) -> None:
        self.query_state = replace(
            self.query_state, descending=not self.query_state.descending, offset=0
        )
        self.reload(select="first", recount=False)

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.remove_class("-hidden")
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_class("-hidden") and not self.query_state.search:
            return
        box.value = ""
        box.add_class("-hidden")
        self.query_one(CaseList).focus()
        if self.query_state.search:
            self.query_state = replace(self.query_state, search="", offset=0)
            self.reload(select="first")

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        if self._search_timer is not None:
            self._search_timer.stop()
        self._search_timer = self.set_timer(0.2, self._apply_filter)

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self._apply_filter()
        self.query_one(CaseList).focus()

    def _apply_filter(self) -> None:
        search = self.query_one("#filter", Input).value.strip()
        if search != self.query_state.search:
            self.query_state = replace(self.query_state, search=search, offset=0)
            self.reload(select="first")

    @on(CaseList.Selected)
    def _row_selected(self, event: CaseList.Selected) -> None:
        self.desk.open_case(event.key)

    def action_acknowledge(self) -> None:
        ref = self._highlighted_ref()
        if ref is None:
            return
        desk = self.desk

        def answered(identity: Identity, answer: AckAnswer | None) -> None:
            if answer is None:
                return
            if answer == "open":
                desk.open_case(ref)
                return
            desk.submit(
                desk.service.acknowledge(identity, ref, read=answer == "read"),
                description=f"Acknowledging {ref}",
                done=lambda _: self._acknowledged(ref),
            )

        desk.require_identity(
            lambda identity: desk.push_screen(
                AcknowledgeScreen(ref), lambda answer: answered(identity, answer)
            )
        )

    def _acknowledged(self, ref: str) -> None:
        self.desk.notify(f"{ref} acknowledged.", markup=False)
        self.reload()
        self.desk.refresh_status()
