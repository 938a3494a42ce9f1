"""Reading ``label: value`` text, and the :class:`Extraction` every source's reading fills.

Each label is normalised (case, punctuation, spacing, a plural "(s)") and looked up in a
source's table (in :mod:`~sgalert.intake.encompass`, :mod:`~sgalert.intake.lesson`,
:mod:`~sgalert.intake.whistle`); the value is on the same line after ``:``, ``-``, ``|`` or a
tab, or on the next line, or (for values recognisable on sight: dates, times, references) after
a single space. Labels and values may also sit side by side in one row (``Surname: INVENTED
Forename(s): Ada``, or a four-column form), or a row of labels over a row of values.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(slots=True)
class Extraction:
    """Facts for the sealed record, plus flags and the reasons behind them."""

    facts: dict[str, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    reasons: list[str] = field(default_factory=list)


_NOT_LABEL_CHARS = re.compile(r"[^a-z0-9]+")
_PLURAL_MARK = re.compile(r"\(s\)")  # "Forename(s)", "First name(s)"
_QUOTE_MARKS = re.compile(r"^(?:\s*>)+")
_BULLET = re.compile("^[*\u2022\\-\u2013]\\s+")
_MARKED = frozenset(">*\u2022-\u2013|")


@functools.lru_cache(maxsize=16384)
def normalise_label(label: str) -> str:
    """Lower case, letters and digits only, single spaces: ``Child's Name:`` -> ``childs name``,
    ``Forename(s)`` -> ``forename``.

    Cached: the same few hundred label spellings recur in every notice of a force.
    """
    lowered = _PLURAL_MARK.sub("", label.lower().replace("\u2019", "'").replace("'", ""))
    cleaned = _NOT_LABEL_CHARS.sub(" ", lowered)
    return " ".join(cleaned.split())


def _lines(text: str) -> list[str]:
    """Body lines with quoting (``>``) and bullets stripped."""
    return list(_lines_of(text))


@functools.lru_cache(maxsize=8)
def _lines_of(text: str) -> tuple[str, ...]:
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped[:1] in _MARKED or stripped[-1:] == "|":  # the few lines needing more work
            if stripped[:1] == ">":
                stripped = _QUOTE_MARKS.sub("", stripped).strip()
            if stripped[:1] in ("*", "\u2022", "-", "\u2013"):
                stripped = _BULLET.sub("", stripped)
            stripped = stripped.strip("|").strip()  # a table row written | label | value |
        lines.append(stripped)
    return tuple(lines)


@functools.lru_cache(maxsize=16)
def _first_words(labels: tuple[str, ...]) -> frozenset[str]:
    return frozenset(label.split(" ", 1)[0] for label in labels)


@functools.lru_cache(maxsize=8)
def _candidate_lines(text: str, starts: frozenset[str]) -> tuple[int, ...]:
    """Indexes of the lines that could hold a label: most prose lines are ruled out here.

    Every way of reading a label (the text before a separator, the whole line, the first cell
    of a header row) begins with the line's first word, so a line whose first word begins no
    label holds none. A first word with no letters or digits rules nothing out.
    """
    candidates = []
    for index, line in enumerate(_lines_of(text)):
        if line:
            first = normalise_label(line.split(None, 1)[0]).split(" ", 1)[0]
            if not first or first in starts:
                candidates.append(index)
    return tuple(candidates)


_LABEL_VALUE = re.compile(r"^(.{1,60}?)\s*(?::|\t| - | \u2013 |\|| {2,})\s*(.*)$")
_CELL_SPLIT = re.compile(r"\s*\|\s*|\s*\t\s*| {2,}")
_EMPTY_CELLS = frozenset({"", "-", "\u2013", "\u2014"})


def _is_row(line: str) -> bool:
    return "|" in line or "\t" in line or "  " in line


def _cells(line: str) -> list[str]:
    """A table row's cells, split at ``|``, tabs or runs of spaces; empty cells keep their place
    (``INVENTED | | 14/03/2017``), so each value stays under its label."""
    return [cell.strip() for cell in _CELL_SPLIT.split(line.strip().strip("|").strip())]


def _header_row(
    lines: list[str], index: int, labels: Mapping[str, str]
) -> tuple[list[tuple[str, str]], int] | None:
    """A row of labels over a row of values (``Surname | Forename(s) | DOB``): the pairs and the
    index of the row of values, else None.

    Columns whose heading is not a known label (``Gender``, ``UPN``) are skipped. A row mostly of
    labels is never read as one label whose value is the other labels, even with no row of values
    under it; a row at most half labels is a header only over a row of plain values (otherwise
    it may be pairs, ``Child present | Yes | Location | Home``).
    """
    line = lines[index]
    if not _is_row(line):
        return None  # a single cell: not a header row
    cells = _cells(line)
    fields = [labels.get(normalise_label(cell)) if cell else None for cell in cells]
    known = sum(name is not None for name in fields)
    if known < 2:
        return None
    mostly_labels = 2 * known > len(cells)
    at = next((i for i in range(index + 1, min(index + 3, len(lines))) if lines[i]), None)
    values = _cells(lines[at]) if at is not None else []
    named = [labels.get(normalise_label(v)) if v else None for v in values]
    if mostly_labels:  # a value may happen to be a label word ("School" as the location)
        fits = not set(fields) & set(named) - {None} and sum(n is not None for n in named) <= 1
    else:
        fits = not any(named)
    if at is None or len(values) != len(cells) or not fits:
        return ([], index) if mostly_labels else None
    pairs = [
        (name, "" if value in _EMPTY_CELLS else value)
        for name, value in zip(fields, values, strict=True)
        if name is not None
    ]
    return pairs, at


def _names_a_label(value: str, labels: Mapping[str, str]) -> bool:
    """Is this "value" the next label, as in ``Surname: Forename(s)`` (a two-column header row
    written as label and value) or ``Surname | Forename(s) | DOB``?"""
    if _is_row(value):
        return labels.get(normalise_label(_cells(value)[0])) is not None
    # Only a name part ("Forename(s)") is never a value; they are short, most values are not.
    return len(value) <= 30 and labels.get(normalise_label(value), "").startswith("_")


def _pairs_in_cells(line: str, labels: Mapping[str, str]) -> list[tuple[str, str]]:
    """Labelled values side by side on one line: the pairs, else none. Either every cell is a
    label, a colon and a value (``Surname: INVENTED    Forename(s): Ada``), or labels and values
    alternate (``Surname | INVENTED | Forename(s) | Ada``, a four-column form)."""
    cells = _cells(line)
    pairs = []
    for cell in (cell for cell in cells if cell):
        label, colon, value = cell.partition(":")
        name = labels.get(normalise_label(label)) if colon else None
        if name is None:
            break
        pairs.append((name, value.strip()))
    else:
        return pairs if len(pairs) >= 2 else []
    if len(cells) < 4 or len(cells) % 2:
        return []
    names = [labels.get(normalise_label(cell)) if cell else None for cell in cells]
    if all(names[0::2]) and not any(names[1::2]):
        return [(name, value) for name, value in zip(names[0::2], cells[1::2], strict=True) if name]
    return []


def labelled_values(text: str, labels: Mapping[str, str]) -> dict[str, str]:
    """First value found for each field; a label alone on a line takes the next line.

    A row of labels over a row of values (an HTML table with a header row, or its plain-text
    rendering) gives each label the value below it.
    """
    found: dict[str, str] = {}
    lines = _lines(text)
    values_rows: set[int] = set()
    for index in _candidate_lines(text, _first_words(tuple(labels))):
        if index in values_rows:
            continue
        line = lines[index]
        header = _header_row(lines, index, labels)
        if header is not None:
            pairs, values_row = header
            values_rows.add(values_row)
            for field_name, cell in pairs:
                if cell and field_name not in found:
                    found[field_name] = cell[:500]
            continue
        side_by_side = _pairs_in_cells(line, labels) if _is_row(line) else []
        for field_name, cell in side_by_side:
            if cell and field_name not in found:
                found[field_name] = cell[:500]
        if side_by_side:
            continue
        separated = (
            ":" in line
            or "\t" in line
            or "|" in line
            or " - " in line
            or ("  " in line or " \u2013 " in line)
        )
        match = _LABEL_VALUE.match(line) if separated else None
        candidates = []
        if match:
            value = match[2].lstrip("| \t").strip()
            if not (value and _names_a_label(value, labels)):
                candidates.append((match[1], value))
        if len(line) <= 80:  # a label alone on its line (its value on the next) is short
            candidates.append((line, ""))
        for label, value in candidates:
            name = labels.get(normalise_label(label))
            if name is None:
                continue
            if not value:
                following = next((ln for ln in lines[index + 1 : index + 3] if ln), "")
                if following and labels.get(normalise_label(following.split(":")[0])) is None:
                    value = following
            if value and name not in found:
                found[name] = value[:500]
            break
    return found


def unseparated_values(
    text: str, labels: Mapping[str, str], recognisable: Mapping[str, Callable[[str], bool]]
) -> dict[str, str]:
    """Values written after their label with only a space, for fields recognisable on sight."""
    found: dict[str, str] = {}
    starts = _first_words(tuple(labels))
    lines = _lines_of(text)
    for index in _candidate_lines(text, starts):
        words = lines[index].split()
        for size in range(min(6, len(words) - 1), 0, -1):
            name = labels.get(normalise_label(" ".join(words[:size])))
            if name is None:
                continue
            value = " ".join(words[size:]).lstrip(".:#- ").strip()
            check = recognisable.get(name)
            if check is not None and value and check(value) and name not in found:
                found[name] = value[:500]
            break
    return found
