"""HTML bodies to readable plain text, with table rows kept as ``label: value`` lines.

Police and council notices often arrive as HTML tables; turning a two-cell row into
``Child's name: Ada Example`` lets one set of label rules serve plain and HTML notices alike.
Scripts, styles and comments are dropped; nothing is fetched or executed.
"""

from __future__ import annotations

from html.parser import HTMLParser

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
    "table",
    "section",
    "article",
    "header",
    "footer",
    "blockquote",
    "pre",
    "hr",
    "dt",
    "dd",
}
_SKIP = {"script", "style", "head", "title", "template", "noscript"}


class _TextCollector(HTMLParser):
    def __init__(self, limit: int) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.size = 0
        self.limit = limit
        self.skip_depth = 0
        self.row: list[str] | None = None
        self.cell: list[str] | None = None

    def _emit(self, text: str) -> None:
        if self.size < self.limit:
            self.out.append(text)
            self.size += len(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip_depth += 1
        elif tag == "tr":
            self.row = []
        elif tag in ("td", "th") and self.row is not None:
            self.cell = []
        elif tag in _BLOCK:
            self._break()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "hr"):
            self._break()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag in ("td", "th") and self.row is not None and self.cell is not None:
            self.row.append(" ".join("".join(self.cell).split()))
            self.cell = None
        elif tag == "tr" and self.row is not None:
            cells = [c for c in self.row if c]
            if len(cells) == 2 and not cells[0].endswith(":"):
                self._emit(f"\n{cells[0]}: {cells[1]}\n")
            elif cells:
                self._emit("\n" + " | ".join(cells) + "\n")
            self.row = None
        elif tag in _BLOCK:
            self._break()

    def _break(self) -> None:
        if self.cell is not None:
            self.cell.append(" ")
        else:
            self._emit("\n")

    def handle_data(self, data: str) -> None:
        if self.skip_depth:
            return
        if self.cell is not None:
            self.cell.append(data)
        else:
            self._emit(data)


def html_to_text(html: str, limit: int = 2_000_000) -> str:
    """Readable text from HTML; never raises on broken markup, stops after ``limit`` chars."""
    collector = _TextCollector(limit)
    try:
        collector.feed(html)
        collector.close()
    except (AssertionError, ValueError):  # html.parser's own complaints about broken markup
        pass
    lines = [" ".join(line.split()) for line in "".join(collector.out).splitlines()]
    text: list[str] = []
    for line in lines:
        if line or (text and text[-1]):
            text.append(line)
    return "\n".join(text).strip()
