"""HTML bodies to readable plain text, with table rows kept as ``label: value`` lines.

Police and council notices often arrive as HTML tables; turning a two-cell row into
``Child's name: Ada Example`` lets one set of label rules serve plain and HTML notices alike.
A header row (every cell a ``<th>``, or wholly bold) is written as cells, ``Surname | Forename(s)``,
and so is each later row of its table with as many cells, so the labels stay over their values
instead of reading as one label whose value is the next label.
Tables nest (a layout table whose one cell holds the whole message, paragraphs and a data table
included), so each open table and cell is tracked on a stack and a cell keeps its own line
breaks: a one-cell layout row comes out as the lines it holds, not as one run-on line. Scripts,
styles, the head and comments are dropped; nothing is fetched or executed. The tokenizer is
sgalert's own and linear in the input, so hostile markup cannot stall the ingest path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import unescape

_BLOCK = {
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "section",
    "article",
    "header",
    "footer",
    "blockquote",
    "pre",
    "hr",
    "dt",
    "dd",
    "caption",
}
# Elements whose content is never shown as text; skipped to their end tag.
_RAW_TEXT = ("script", "style", "title", "template", "noscript")
_TABLE_TAGS = ("table", "tr", "td", "th")
# A cell whose every word is in these is a header cell, like a <th>.
_BOLD = ("b", "strong")
# Tags that belong in the head; any other tag (or any text) ends a head left unclosed.
_HEAD_TAGS = ("meta", "link", "base", "head", "html")
# Tables nested deeper than this are read as text: real layouts nest a few levels, and each
# level re-renders what it holds.
_MAX_TABLE_DEPTH = 16
# At most this many tags and runs of text are read (under a second of work); the rest is noted.
MAX_TOKENS = 1_000_000
NOT_READ = "(The rest of this HTML was not read: it holds too much markup.)"
# A label cell longer than this is prose, not a label.
_MAX_LABEL = 60


@dataclass(slots=True)
class _Table:
    row: list[list[str]] | None = None
    cell: list[str] | None = None
    # The open cell: a <th>, and whether any of its text was written outside <b>/<strong>.
    cell_th: bool = False
    cell_plain: bool = False
    heads: list[bool] = field(default_factory=list)  # per cell of the row: a header cell?
    columns: int = 0  # the cells of this table's header row, once one is seen


def _cell_lines(parts: list[str]) -> list[str]:
    return [line for line in (" ".join(raw.split()) for raw in "".join(parts).split("\n")) if line]


def _render_row(cells: list[list[str]], heads: list[bool], table: _Table) -> str:
    rendered = [_cell_lines(c) for c in cells]
    if all(len(lines) <= 1 for lines in rendered):  # never a layout row of paragraphs
        filled = [head for head, lines in zip(heads, rendered, strict=True) if lines]
        if len(filled) >= 2 and all(filled):  # a header row: labels over the values below
            table.columns = len(cells)
        if table.columns >= 2 and len(cells) == table.columns:
            return "\n" + " | ".join(lines[0] if lines else "-" for lines in rendered) + "\n"
    rendered = [lines for lines in rendered if lines]
    if not rendered:
        return ""
    if len(rendered) == 2 and len(rendered[0]) == 1 and len(rendered[0][0]) <= _MAX_LABEL:
        label = rendered[0][0].rstrip(":").rstrip()
        return f"\n{label}: {' '.join(rendered[1])}\n"
    if all(len(lines) == 1 for lines in rendered):
        return "\n" + " | ".join(lines[0] for lines in rendered) + "\n"
    return "\n" + "\n".join(line for lines in rendered for line in lines) + "\n"


class _TextCollector:
    """Builds the text from tokens: start tags, end tags and character data."""

    def __init__(self, limit: int) -> None:
        self.out: list[str] = []
        self.size = 0
        self.limit = limit
        self.tables: list[_Table] = []
        self.too_deep = 0
        self.bold = 0  # open <b> and <strong> tags in the current cell

    def _sink(self) -> _Table | None:
        """Where text goes now: the innermost open cell's table, else the document (None)."""
        for table in reversed(self.tables):
            if table.cell is not None:
                return table
        return None

    def _write(self, text: str) -> None:
        table = self._sink()
        if table is not None and table.cell is not None:
            # Bounded by the HTML itself; counted when the row is written.
            table.cell.append(text)
            if not self.bold and not table.cell_plain and not text.isspace():
                table.cell_plain = True
        elif self.size < self.limit:
            self.out.append(text)
            self.size += len(text)

    @property
    def full(self) -> bool:
        return self.size >= self.limit

    def start(self, tag: str) -> None:
        if tag == "table" and len(self.tables) >= _MAX_TABLE_DEPTH:
            self.too_deep += 1  # nested past any real layout: its cells read as plain text
        if tag in _TABLE_TAGS and self.too_deep:
            self._write(" ")
        elif tag == "table":
            self._write("\n")
            self.tables.append(_Table())
        elif tag == "tr" and self.tables:
            self._end_row()
            self.tables[-1].row = []
        elif tag in ("td", "th") and self.tables:
            table = self.tables[-1]
            self._end_cell()
            if table.row is None:
                table.row = []
            table.cell, table.cell_th, table.cell_plain = [], tag == "th", False
            self.bold = 0
        elif tag in _BOLD:
            self.bold += 1
        elif tag in _BLOCK:
            self._write("\n")

    def end(self, tag: str) -> None:
        if tag in _BOLD:
            self.bold = max(0, self.bold - 1)
        elif tag in _TABLE_TAGS and self.too_deep:
            self.too_deep -= tag == "table"
            self._write(" ")
        elif tag in ("td", "th") and self.tables:
            self._end_cell()
        elif tag == "tr" and self.tables:
            self._end_row()
        elif tag == "table" and self.tables:
            self._end_row()
            self.tables.pop()
            self._write("\n")
        elif tag in _BLOCK:
            self._write("\n")

    def data(self, text: str) -> None:
        self._write(text)

    def _end_cell(self) -> None:
        table = self.tables[-1]
        if table.cell is not None:
            if table.row is None:
                table.row = []
            table.row.append(table.cell)
            table.heads.append(table.cell_th or not table.cell_plain)
            table.cell = None
            self.bold = 0

    def _end_row(self) -> None:
        self._end_cell()
        table = self.tables[-1]
        if table.row is not None:
            row, table.row = table.row, None
            heads, table.heads = table.heads, []
            text = _render_row(row, heads, table)
            if text:
                self._write(text)

    def finish(self) -> str:
        while self.tables:  # unclosed tables: keep what they hold
            self._end_row()
            self.tables.pop()
        return "".join(self.out)


# A quoted attribute value longer than this, or never closed, is not read as one (the tag then
# ends at its first ">" or before the next "<", as if unquoted): see _TOKEN.
_MAX_QUOTED = 65536

# One token at a time, each pattern stopping at the next "<" at the latest, so every byte is
# scanned a bounded number of times: linear on any input. (html.parser in the Pythons sgalert
# supports is quadratic on some malformed input: 40 KB of "<a<a<a" took most of a second, and
# the time grows with the square of the size.) The one exception is a quoted attribute value
# (``title="a > b"``, ``data-x='<b>'``), which, as in browsers, ends at its closing quote and not
# at a ">" or "<" inside it: a value written after "=" is read to its closing quote if that comes
# within _MAX_QUOTED characters. A try that fails scans at most that far and means no such quote
# lies within that stretch, so the next failing try starts beyond it; a try that succeeds
# consumes what it scanned. Still linear, and an unclosed quote never swallows the notice.
_TOKEN = re.compile(
    rf"""
    (?P<comment><!--.*?(?:-->|\Z))
  | <(?P<close>/?)(?P<tag>[A-Za-z][A-Za-z0-9:-]*)
        (?:[^<>=]+|=\s*(?:"[^"]{{0,{_MAX_QUOTED}}}"|'[^']{{0,{_MAX_QUOTED}}}')?)*
        (?:>|(?=<)|\Z)
  | (?P<other><[!?/][^<>]*(?:>|(?=<)|\Z))
  | (?P<text>[^<]{{1,65536}}|<{{1,65536}}(?![A-Za-z!?/])|<)
    """,
    re.DOTALL | re.VERBOSE,
)


def _raw_text_end(tag: str) -> re.Pattern[str]:
    return re.compile(rf"</{tag}\s*>", re.IGNORECASE)


_RAW_TEXT_ENDS = {tag: _raw_text_end(tag) for tag in _RAW_TEXT}


def html_to_text(html: str, limit: int = 2_000_000) -> str:
    """Readable text from HTML; never raises on broken markup, stops after ``limit`` chars."""
    return render_html(html, limit)[0]


def render_html(html: str, limit: int = 2_000_000, max_tokens: int = MAX_TOKENS) -> tuple[str, int]:
    """:func:`html_to_text` within a budget of tokens (tags and runs of text); returns the text
    and the tokens used, so a caller reading many HTML parts can share one budget between them.
    """
    collector = _TextCollector(limit)
    position, length = 0, len(html)
    in_head = False
    tokens = 0
    while position < length and not collector.full:
        if tokens >= max_tokens:
            collector.data(f"\n\n{NOT_READ}\n")
            break
        tokens += 1
        token = _TOKEN.match(html, position)
        if token is None:  # cannot happen (a lone "<" is text), but never loop forever
            break
        position = token.end()
        tag = (token["tag"] or "").lower()
        if token["text"] is not None:
            data = unescape(token["text"])
            in_head = in_head and not data.strip()  # text ends an unclosed head, as in browsers
            if not in_head:
                collector.data(data)
        elif not tag:
            continue  # comments, doctypes, processing instructions
        elif token["close"]:
            if tag == "head":
                in_head = False
            collector.end(tag)
        elif tag in _RAW_TEXT:  # skip to its end tag (or the end): its content is not text
            ending = _RAW_TEXT_ENDS[tag].search(html, position)
            position = ending.end() if ending else length
        elif tag == "head":
            in_head = True
        else:
            if tag not in _HEAD_TAGS:
                in_head = False
            collector.start(tag)
    lines = [" ".join(line.split()) for line in collector.finish().splitlines()]
    text: list[str] = []
    for line in lines:
        if line or (text and text[-1]):
            text.append(line)
    return "\n".join(text).strip(), tokens
