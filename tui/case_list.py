"""The queue's list of cases, drawn a line at a time (Toolong's approach).

A ``DataTable`` measures every cell of every row whenever its rows change, which cost ~40 ms a
page; this widget has fixed columns and renders only the lines on screen, each cached as a
:class:`~textual.strip.Strip` until its row changes. It holds one page of rows; moving past
either end posts :class:`CaseList.PageRequest` so the screen can fetch the next page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget


@dataclass(frozen=True, slots=True)
class Column:
    """``width`` when the list is wide enough; narrower, a column gives up cells down to
    ``least`` (None: it keeps its width), and an ``optional`` one is left out last of all."""

    key: str
    label: str
    width: int
    least: int | None = None
    optional: bool = False


def fit(columns: Sequence[Column], width: int) -> list[tuple[Column, int]]:
    """The columns shown in ``width`` cells (each after a one-cell gap) and their widths: first
    every shrinkable column shrinks towards its least, then optional columns are left out; cells
    left over go back to the shrunk columns, left to right."""
    shown = list(columns)
    while True:
        least = sum((c.least if c.least is not None else c.width) + 1 for c in shown)
        optional = [c for c in shown if c.optional]
        if least <= width or not optional:
            break
        shown.remove(optional[0])
    spare = width - least
    fitted = []
    for column in shown:
        size = column.least if column.least is not None else column.width
        grow = min(max(spare, 0), column.width - size)
        spare -= grow
        fitted.append((column, size + grow))
    return fitted


@dataclass(slots=True)
class Row:
    key: str
    cells: dict[str, Text]
    highlight: bool = False  # a new case not yet opened here


class CaseList(Widget, can_focus=True):
    """Fixed columns, a header line, a cursor; one page of rows."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select", "Open", id="queue.open", tooltip="Open the case"),
        Binding("up", "move(-1)", "Up", id="queue.up", show=False, system=True),
        Binding("down", "move(1)", "Down", id="queue.down", show=False, system=True),
        Binding("pageup", "page(-1)", "Page up", id="queue.page_up", show=False, system=True),
        Binding("pagedown", "page(1)", "Page down", id="queue.page_down", show=False, system=True),
        Binding("home", "edge(-1)", "First row", id="queue.home", show=False, system=True),
        Binding("end", "edge(1)", "Last row", id="queue.end", show=False, system=True),
    ]
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "case-list--header",
        "case-list--cursor",
        "case-list--odd",
        "case-list--fresh",
    }
    DEFAULT_CSS = """
    CaseList {
        height: 1fr;
    }
    CaseList > .case-list--header {
        text-style: bold;
        background: $panel;
    }
    CaseList > .case-list--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
        text-style: bold;
    }
    CaseList:blur > .case-list--cursor {
        background: $block-cursor-blurred-background;
        text-style: none;
    }
    CaseList > .case-list--odd {
        background: $surface-lighten-1 30%;
    }
    CaseList > .case-list--fresh {
        background: $warning 35%;
        text-style: bold;
    }
    """

    cursor_row: reactive[int] = reactive(0, always_update=True)

    class Selected(Message):
        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    class PageRequest(Message):
        def __init__(self, step: int) -> None:
            super().__init__()
            self.step = step

    def __init__(self, columns: Sequence[Column], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.columns = tuple(columns)
        self._rows: list[Row] = []
        self._index: dict[str, int] = {}
        self._top = 0
        self._cache: dict[tuple[int, bool, int], Strip] = {}
        self._fitted: tuple[int, list[tuple[Column, int]]] | None = None

    # ----- data ---------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self._rows)

    @property
    def keys(self) -> list[str]:
        return [row.key for row in self._rows]

    @property
    def highlighted(self) -> str | None:
        return self._rows[self.cursor_row].key if self._rows else None

    def get_row_index(self, key: str) -> int:
        return self._index[key]

    def cell(self, key: str, column: str) -> str:
        return self._rows[self._index[key]].cells[column].plain

    def set_rows(self, rows: Sequence[Row], cursor: int = 0) -> None:
        self._rows = list(rows)
        self._index = {row.key: index for index, row in enumerate(self._rows)}
        self._cache.clear()
        self._top = 0
        self.cursor_row = max(0, min(cursor, len(self._rows) - 1))
        self.refresh()

    def set_highlights(self, keys: set[str] | frozenset[str]) -> None:
        """Highlight the rows whose key is in ``keys`` and only those; redraws what changed."""
        for index, row in enumerate(self._rows):
            wanted = row.key in keys
            if row.highlight != wanted:
                row.highlight = wanted
                for cursor in (False, True):
                    self._cache.pop((index, cursor, self.size.width), None)
                line = index - self._top + 1
                if 0 < line < self.size.height:
                    self._refresh_line(line)

    def update_cell(self, key: str, column: str, value: Text) -> None:
        index = self._index.get(key)
        if index is None:
            return
        self._rows[index].cells[column] = value
        for cursor in (False, True):
            self._cache.pop((index, cursor, self.size.width), None)
        line = index - self._top + 1
        if 0 < line < self.size.height:
            self._refresh_line(line)

    def move_cursor(self, *, row: int) -> None:
        self.cursor_row = max(0, min(row, len(self._rows) - 1))

    def _refresh_line(self, line: int) -> None:
        self.refresh(Region(0, line, self.size.width, 1))

    # ----- cursor and scrolling -----------------------------------------------------------

    @property
    def _visible_rows(self) -> int:
        return max(self.size.height - 1, 1)

    def watch_cursor_row(self, old: int, new: int) -> None:
        visible = self._visible_rows
        if new < self._top:
            self._top = new
            self.refresh()
        elif new >= self._top + visible:
            self._top = new - visible + 1
            self.refresh()
        else:
            for index in (old, new):
                line = index - self._top + 1
                if 0 < line < self.size.height:
                    self._refresh_line(line)

    def on_resize(self, event: events.Resize) -> None:
        self._cache.clear()
        self.watch_cursor_row(self.cursor_row, self.cursor_row)
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._cache.clear()  # the theme changed: every cached line has old colours

    def action_move(self, step: int) -> None:
        target = self.cursor_row + step
        if not self._rows or target >= len(self._rows):
            self.post_message(self.PageRequest(1))
        elif target < 0:
            self.post_message(self.PageRequest(-1))
        else:
            self.cursor_row = target

    def action_page(self, step: int) -> None:
        last = len(self._rows) - 1
        if step > 0 and self.cursor_row >= last:
            self.post_message(self.PageRequest(1))
        elif step < 0 and self.cursor_row <= 0:
            self.post_message(self.PageRequest(-1))
        else:
            self.move_cursor(row=self.cursor_row + step * self._visible_rows)

    def action_edge(self, step: int) -> None:
        self.move_cursor(row=0 if step < 0 else len(self._rows) - 1)

    def action_select(self) -> None:
        if self._rows:
            self.post_message(self.Selected(self._rows[self.cursor_row].key))

    def on_click(self, event: events.Click) -> None:
        index = self._top + event.y - 1
        if event.y >= 1 and 0 <= index < len(self._rows):
            if index == self.cursor_row and event.chain > 1:
                self.action_select()
            self.cursor_row = index

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        self.action_move(1)

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self.action_move(-1)

    # ----- drawing ------------------------------------------------------------------------

    def _line(self, cells: dict[str, Text] | None, style: Style) -> Strip:
        width = self.size.width
        text = Text(no_wrap=True, overflow="crop", end="")
        if self._fitted is None or self._fitted[0] != width:
            self._fitted = (width, fit(self.columns, width))
        for column, size in self._fitted[1]:
            value = cells[column.key] if cells is not None else Text(column.label)
            cell = value.copy()
            cell.truncate(size, overflow="ellipsis", pad=True)
            text.append(" ")
            text.append_text(cell)
        segments = list(text.render(self.app.console))
        strip = Strip(segments).crop(0, width).extend_cell_length(width)
        return strip.apply_style(style)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        if y == 0:
            header = self.get_component_rich_style("case-list--header")
            return self._line(None, base + header)
        index = self._top + y - 1
        if index >= len(self._rows):
            return Strip([Segment(" " * width, base)], width)
        cursor = index == self.cursor_row
        key = (index, cursor, width)
        cached = self._cache.get(key)
        if cached is None:
            style = base
            if index % 2:
                style += self.get_component_rich_style("case-list--odd")
            if self._rows[index].highlight:
                style += self.get_component_rich_style("case-list--fresh")
            if cursor:
                style += self.get_component_rich_style("case-list--cursor")
            cached = self._cache[key] = self._line(self._rows[index].cells, style)
        return cached
