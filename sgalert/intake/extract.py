"""Pulling the facts out of a notification's text, per source.

Notices differ by police force and council: label variants ("Child's Name", "Name of child",
"DOB", "D.O.B.", "Occurrence number", "Incident ref", "Crime reference"), plain text or HTML
tables (already turned into ``label: value`` lines, or a row of labels over a row of values),
forwarded copies with ``>`` quoting, and UK date formats. Each label is normalised (case,
punctuation, spacing, a plural "(s)") and looked up in a table; the value is on the same line
after ``:``, ``-``, ``|`` or a tab, or on the next line, or (for values recognisable on sight:
dates, times, references) after a single space. Labels and values may also sit side by side in
one row (``Surname: INVENTED    Forename(s): Ada``, or a four-column form). An incident's date
and time may be on separate rows.

The child's name may be split into Surname, Forename(s) (First name(s), Given name) and Middle
name, over rows or over columns (``Surname | Forename(s) | DOB`` over a row of values, in either
order, with unknown columns skipped), and is put together as "Forename Middle Surname". What a
notice writes after a name, ``(age 13)``, ``(Year 4)``, ``(Y4)``, ``- Year 4``, is taken off the
name and kept as ``year_group`` or ``age_stated`` (:func:`strip_annotations`), so the name
matches the same child elsewhere. A lesson report written as a sentence is read only in the music
service's own phrasing ("Lesson ended with pupil Ada Invented, piano, at 17:40").

Never silent: what is not found is absent, and a notice without the facts that make it
actionable (an Encompass notice that does not name the child, a lesson report that names no
pupil) is flagged ``needs-triage`` and ``facts-missing`` with the reason (portal wrapper,
attachment only, nothing found), so the page can say so before anyone unlocks the case.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sgalert.intake.dates import find_date, find_datetime, find_time
from sgalert.intake.mime import AttachmentPart
from sgalert.model import Flag, Source
from sgalert.text import printable

ENCOMPASS_LABELS: Mapping[str, str] = {
    **dict.fromkeys(
        [
            "childs name",
            "child name",
            "name of child",
            "child",
            "childs full name",
            "name of child young person",
            "child young persons name",
            "young persons name",
            "pupil name",
            "pupils name",
            "name of pupil",
            "full name of child",
            "child s name",
        ],
        "child_name",
    ),
    # A name split over rows or columns; put together as "Forename Middle Surname".
    **dict.fromkeys(
        [
            "surname",
            "family name",
            "last name",
            "childs surname",
            "childs family name",
            "childs last name",
        ],
        "_surname",
    ),
    **dict.fromkeys(
        [
            "forename",
            "forenames",
            "first name",
            "first names",
            "given name",
            "given names",
            "childs forename",
            "childs forenames",
            "childs first name",
            "childs first names",
            "childs given name",
        ],
        "_forename",
    ),
    **dict.fromkeys(["middle name", "middle names", "childs middle name"], "_middle_name"),
    **dict.fromkeys(
        [
            "dob",
            "d o b",
            "date of birth",
            "childs dob",
            "child dob",
            "childs date of birth",
            "child date of birth",
        ],
        "child_dob",
    ),
    **dict.fromkeys(
        [
            "school",
            "school name",
            "name of school",
            "school setting",
            "educational setting",
            "setting",
            "school attended",
            "education setting",
            "school nursery",
        ],
        "school",
    ),
    **dict.fromkeys(
        [
            "date of incident",
            "incident date",
            "date time of incident",
            "incident date time",
            "date and time of incident",
            "date time of occurrence",
            "occurrence date",
            "date of occurrence",
            "incident datetime",
        ],
        "incident_at",
    ),
    # A time on its own row (the date on another) is joined to the date; see extract_encompass.
    **dict.fromkeys(
        ["time of incident", "incident time", "time of occurrence", "occurrence time"],
        "_incident_time",
    ),
    **dict.fromkeys(
        [
            "police reference",
            "police ref",
            "occurrence number",
            "occurrence no",
            "occurrence ref",
            "occurrence reference",
            "incident ref",
            "incident reference",
            "incident number",
            "crime reference",
            "crime ref",
            "crime number",
            "log number",
            "reference number",
            "reference",
            "ref",
            "urn",
            "storm reference",
            "niche reference",
        ],
        "police_reference",
    ),
    **dict.fromkeys(
        [
            "child present",
            "was the child present",
            "child present at incident",
            "children present",
            "was child present",
            "child witnessed",
            "did the child witness the incident",
            "child witnessed incident",
            "child present y n",
        ],
        "child_present",
    ),
    **dict.fromkeys(
        [
            "location",
            "incident location",
            "location of incident",
            "address of incident",
            "incident address",
        ],
        "incident_location",
    ),
    **dict.fromkeys(
        [
            "voice of the child",
            "voice of child",
            "childs voice",
            "childs account",
            "what the child said",
            "child disclosure",
            "childs views",
        ],
        "voice_of_child",
    ),
    **dict.fromkeys(
        [
            "welfare check",
            "welfare check made",
            "welfare check completed",
            "was a welfare check made",
            "child seen by officers",
            "child seen",
            "welfare check done",
        ],
        "welfare_check",
    ),
}

LESSON_LABELS: Mapping[str, str] = {
    **dict.fromkeys(
        ["teacher", "teacher name", "tutor", "instrumental teacher", "staff member"], "teacher"
    ),
    **dict.fromkeys(
        ["pupil", "pupil name", "student", "student name", "learner", "child"], "pupil"
    ),
    **dict.fromkeys(["lesson", "lesson details", "instrument", "class", "session"], "lesson"),
    **dict.fromkeys(
        [
            "ended at",
            "lesson ended",
            "time ended",
            "date time ended",
            "ended",
            "termination time",
            "date and time",
        ],
        "ended_at",
    ),
    **dict.fromkeys(
        ["reason", "reason for ending", "reason for termination", "concern", "reason lesson ended"],
        "reason_text",
    ),
    **dict.fromkeys(
        [
            "responsible adult present",
            "adult present",
            "parent present",
            "was a responsible adult present",
            "responsible adult",
        ],
        "responsible_adult_present",
    ),
}

WHISTLE_LABELS: Mapping[str, str] = {
    **dict.fromkeys(
        [
            "preferred contact",
            "preferred means of contact",
            "contact me by",
            "how to contact me",
            "contact preference",
        ],
        "preferred_contact",
    ),
    **dict.fromkeys(
        [
            "staff member",
            "person concerned",
            "allegation about",
            "concern about",
            "name of staff member",
        ],
        "subject_of_allegation",
    ),
}

_PORTAL_WORDS = re.compile(
    r"secure (?:message|e-?mail|portal)|encrypted (?:message|e-?mail)|egress|"
    r"click (?:here|the link) to (?:view|read|open)|view (?:the|your) (?:secure )?message|"
    r"messag(?:e|ing) portal|sign in to (?:read|view)",
    re.IGNORECASE,
)
_URL = re.compile(r"https?://\S+", re.IGNORECASE)
# The headteacher by title. "The head" but not "the head of music"; "Principal" as a title, not
# "the principal reason"; never a deputy, assistant, associate or vice head or principal.
_HEAD_WORDS = re.compile(
    r"\b(?:head[ -]?teacher|head[ -]?master|head[ -]?mistress|executive head"
    r"|head of (?:the )?school|the head(?! of\b)|(?-i:Principal)"
    r"|the principal(?! (?:reason|concern|cause|issue|problem|point|aim|purpose|part|role|focus"
    r"|source|thing)\b))\b",
    re.IGNORECASE,
)
_NOT_THE_HEAD = re.compile(
    r"\b(?:deputy|assistant|associate|vice|former|previous|trainee)[ -]$", re.IGNORECASE
)
_ARCHIVE_TYPES = (
    "application/zip",
    "application/x-zip-compressed",
    "application/x-7z-compressed",
    "application/x-rar-compressed",
    "application/gzip",
)
_FORWARD_WORDS = ("forwarded message", "original message", "attached message")
_FORWARD_MARKERS = re.compile(
    r"^(?:-{2,}[ \t]*(?:forwarded message|original message|attached message)[ \t]*-{2,}"
    r"|begin forwarded message:)[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)


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


_REFERENCE = re.compile(r"^[A-Z]{0,4}[/-]?\d{2,}(?:[/-]\d{2,}[A-Z0-9/-]*|\d*)$", re.IGNORECASE)

# Fields whose value is recognisable on sight, so "D.O.B 30.06.2019" or "Occurrence No.
# 44/123456/26" (no colon, one space) can be read without mistaking prose for a label.
_ENCOMPASS_RECOGNISABLE: Mapping[str, Callable[[str], bool]] = {
    "child_dob": lambda value: find_date(value) is not None,
    "incident_at": lambda value: find_date(value) is not None,
    "_incident_time": lambda value: find_time(value) is not None,
    "police_reference": lambda value: _REFERENCE.match(value.strip(" .:#")) is not None,
}


def _unseparated_values(
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


def _forwarded(body: str) -> bool:
    """Does a separator line mark a forwarded or attached copy? (Words first: a line-anchored,
    case-blind pattern tried at every line of a long body costs more than the rest of it.)"""
    lowered = body.lower()
    return any(word in lowered for word in _FORWARD_WORDS) and bool(_FORWARD_MARKERS.search(body))


def _iso(moment: datetime | date | None) -> str | None:
    if moment is None:
        return None
    return moment.isoformat()


def _triage_reason(text: str, attachments: list[AttachmentPart]) -> str:
    if _PORTAL_WORDS.search(text) and _URL.search(text):
        return "the notice is behind a secure-mail portal link; open it there and record the facts"
    if attachments:
        names = ", ".join(printable(a.filename, keep_newlines=False) for a in attachments[:3])
        return f"the notice is in an attachment only ({names}); open it and record the facts"
    return "no notification facts were found in the message; read it and record the facts"


_SUBJECT_REFERENCE = re.compile(
    r"\b(?i:occurrence|incident|crime|ref(?:erence)?|log|urn)\b[^\n]{0,20}?"
    r"\b([A-Z]{0,4}[/-]?\d{2,}[/-]\d{2,}[A-Z0-9/-]*)"
)
_DATE_LIKE = re.compile(r"\d{1,2}[/-]\d{1,2}[/-](?:\d{4}|\d{2})")


def _subject_reference(subject: str) -> str | None:
    """A police reference named in the subject (``Occurrence 44/123456/26``), never a date."""
    for match in _SUBJECT_REFERENCE.finditer(subject):
        if not _DATE_LIKE.fullmatch(match[1]):
            return match[1]
    return None


# What a notice may write after a child's name: a year group, an age, a date of birth. Each is
# one item; a bracket may hold several ("Year 4, aged 9").
_ANNOTATION_ITEM = re.compile(
    r"(?:year|yr|y)\s*(?P<year>\d{1,2}|r)"
    r"|(?P<stage>reception|nursery)"
    r"|(?:age|aged)\s*:?\s*(?P<age>\d{1,2})(?:\s*(?:years?|yrs?)(?:\s*old)?)?"
    r"|(?P<age_only>\d{1,2})\s*(?:years?|yrs?)(?:\s*old)?"
    r"|(?:dob|d\.?\s?o\.?\s?b\.?|date of birth|born)\s*:?\s*(?P<dob>[\w ./-]{6,30})",
    re.IGNORECASE,
)
_BRACKETED = re.compile(r"\(([^()]{1,60})\)\s*$")
_TRAILING = re.compile(r"([-\u2013\u2014,])\s*([^-\u2013\u2014,()]{1,40})$")


def _annotation(text: str) -> dict[str, str] | None:
    """The facts in one annotation (``Year 4, aged 9``), or None if any part is not one."""
    facts: dict[str, str] = {}
    for item in re.split(r"\s*[,;]\s*", text.strip()):
        match = _ANNOTATION_ITEM.fullmatch(item)
        if match is None:
            return None
        if match["year"]:
            year = match["year"].upper()
            facts["year_group"] = "Reception" if year == "R" else f"Year {int(year)}"
        elif match["stage"]:
            facts["year_group"] = match["stage"].capitalize()
        elif match["age"] or match["age_only"]:
            facts["age_stated"] = str(int(match["age"] or match["age_only"]))
        else:
            born = find_date(match["dob"])
            if born is None:
                return None
            facts["child_dob"] = born.isoformat()
    return facts


def strip_annotations(name: str) -> tuple[str, dict[str, str]]:
    """A child's name without what follows it, and what followed as facts.

    ``Ada Invented (Year 4)``, ``Ada Invented (aged 9)``, ``Ada Invented - Y4`` and ``Ada
    Invented, age 9`` are all ``Ada Invented`` (with ``year_group`` or ``age_stated``), so the
    name matches the same child elsewhere; :func:`sgalert.desk.child_file.name_key` uses this too.
    Only recognised annotations are taken off: ``Ada Invented (known as Addie)`` and hyphenated
    names are kept as written.
    """
    text = name.strip()
    facts: dict[str, str] = {}
    for _ in range(4):  # a name carries a few annotations at most
        found = None
        if bracket := _BRACKETED.search(text):
            cut, found = bracket.start(), _annotation(bracket[1])
        elif trailing := _TRAILING.search(text):
            cut = trailing.start()
            # A dash with a space before it: "Ada Invented - Y4", never "O'Brien-Smith".
            if trailing[1] == "," or text[cut - 1 : cut].isspace():
                found = _annotation(trailing[2])
        if found is None or not text[:cut].strip():
            break
        text = text[:cut].rstrip()
        facts = {**found, **facts}
    return text, facts


def _name_facts(name: str, facts: dict[str, str]) -> str:
    """The name without its annotations; their facts added to ``facts`` where not yet known."""
    bare, found = strip_annotations(name)
    for key, value in found.items():
        facts.setdefault(key, value)
    return bare


def _child_name(values: dict[str, str], result: Extraction) -> None:
    """The child's name as ``Forename Middle Surname``, from one field or from its parts; a name
    with only some of its parts is kept and flagged for a person to check."""
    parts = {key: values.pop(key, "") for key in ("_forename", "_middle_name", "_surname")}
    extra: dict[str, str] = {}
    if "child_name" in values:
        values["child_name"] = _name_facts(values["child_name"], extra)
    elif parts["_forename"] or parts["_surname"]:
        bare = {key: _name_facts(value, extra) for key, value in parts.items()}
        values["child_name"] = " ".join(part for part in bare.values() if part)
        for have, missing in (("_surname", "_forename"), ("_forename", "_surname")):
            if not bare[missing]:
                result.flags.add(Flag.NEEDS_TRIAGE)
                result.reasons.append(
                    f"the notice gives the child's {have[1:]} but no {missing[1:]}; "
                    "read it and check the name"
                )
    for key, value in extra.items():
        values.setdefault(key, value)


def _incident_at(date_text: str | None, time_text: str | None, zone: ZoneInfo) -> str | None:
    """The incident's local date-time as ISO 8601, from one field or a date and a time row."""
    text = date_text or time_text
    if text is None:
        return None
    moment = find_datetime(text, zone)
    if isinstance(moment, datetime) or moment is None:
        return _iso(moment) or text
    clock = find_time(time_text) if date_text and time_text else None
    return datetime.combine(moment, clock, tzinfo=zone).isoformat() if clock else moment.isoformat()


def extract_encompass(
    subject: str, body: str, attachments: list[AttachmentPart], zone: ZoneInfo
) -> Extraction:
    result = Extraction()
    values = labelled_values(body, ENCOMPASS_LABELS)
    for name, value in _unseparated_values(body, ENCOMPASS_LABELS, _ENCOMPASS_RECOGNISABLE).items():
        values.setdefault(name, value)
    _child_name(values, result)
    if "child_dob" in values:
        dob = find_date(values["child_dob"])
        values["child_dob"] = dob.isoformat() if dob else values["child_dob"]
    incident = _incident_at(
        values.pop("incident_at", None), values.pop("_incident_time", None), zone
    )
    if incident:
        values["incident_at"] = incident
    if "police_reference" not in values:
        reference = _subject_reference(subject)
        if reference:
            values["police_reference"] = reference
    result.facts.update(values)
    if _forwarded(body):
        result.facts.setdefault("forwarded", "yes")
    if not values.get("child_name"):
        # Without the child the notice cannot be acted on before the next school day, whatever
        # else was found (a reference in the subject of a PDF-only notice, say). The plaintext
        # flag lets the page say so before anyone unlocks the case.
        result.flags.update((Flag.NEEDS_TRIAGE, Flag.FACTS_MISSING))
        result.reasons.append(_triage_reason(body, attachments))
    return result


_LESSON_REASONS = (
    ("chat message", re.compile(r"\b(?:chat|message|messaged|typed|text(?:ed)?)\b", re.I)),
    ("dress", re.compile(r"\b(?:dress(?:ed)?|clothing|clothes|attire|undressed)\b", re.I)),
    ("behaviour", re.compile(r"\b(?:behaviou?r|conduct|language|gesture|rude)\b", re.I)),
)


# The music service's own phrasing of a lesson report written as a sentence: an ending word and
# "lesson" or "session" (either order), then "with pupil" (or student, learner) and the name:
# "Lesson ended with pupil Ada Invented, piano, at 17:40", "I terminated the online lesson with
# student Ada Invented (violin)". Nothing else in running text is read as a name.
_ENDED_WITH_PUPIL = re.compile(
    r"\b(?:(?:lesson|session)\b[^.]{0,30}?\b(?:ended|terminated|stopped|closed|finished)"
    r"|(?:ended|terminated|stopped|closed|finished)\b[^.]{0,30}?\b(?:lesson|session))"
    r"\b[^.]{0,20}?\bwith\s+(?:the\s+)?(?:pupil|student|learner)\s+",
    re.IGNORECASE,
)
# A word of a name: letters, with an apostrophe or hyphen inside (O'Brien-Smith).
_NAME_WORD = re.compile(r"[ \t]*([^\W\d_](?:[^\W\d_]|['\u2019-](?=[^\W\d_]))*)")
_BRACKETS_AT = re.compile(r"\s*\(([^()\n]{1,40})\)")
_LISTED_AT = re.compile(r"\s*,\s*([^\W\d_][^,.;()\n]{0,39}?)\s*(?:,|(?=[.;\n]|\s+at\b|$))")
_NOT_A_LESSON = re.compile(
    r"(?:at|on|in|because|as|after|when|who|which|and|but|during|while|for|so|then)\b",
    re.IGNORECASE,
)
_ENDED_AT_TIME = re.compile(
    r"\s*,?\s*at\s+(\d{1,2}[:.]\d{2}(?:\s?(?:[ap]\.?m\b\.?|hrs?\b))?)", re.IGNORECASE
)
_SENTENCE = re.compile(r"(?:[^.]|\.(?!\s|\Z)){0,400}")  # to the full stop, at most 400 chars


def _lesson_sentence(body: str) -> tuple[dict[str, str], str]:
    """Pupil, lesson and end time from the phrasing above, and the sentence (which says why,
    when no "Reason" row does). The name is the capitalised words after "pupil", at least two:
    "with pupil Ada, piano" or "with pupil absent" gives nothing."""
    lowered = body.lower()
    if "pupil" not in lowered and "student" not in lowered and "learner" not in lowered:
        return {}, ""
    for match in _ENDED_WITH_PUPIL.finditer(body):
        words: list[str] = []
        position = match.end()
        while (
            len(words) < 4 and (word := _NAME_WORD.match(body, position)) and word[1][0].isupper()
        ):
            words.append(word[1])
            position = word.end()
        if len(words) < 2:
            continue
        # "with pupil Ada Invented's camera off" is about Ada Invented.
        words[-1] = re.sub(r"['\u2019]s$", "", words[-1])
        facts = {"pupil": " ".join(words)}
        while bracket := _BRACKETS_AT.match(body, position):
            found = _annotation(bracket[1])
            if found is None and "lesson" not in facts and not _NOT_A_LESSON.match(bracket[1]):
                facts["lesson"] = bracket[1].strip()
            elif found is None:
                break
            else:
                facts = {**found, **facts}
            position = bracket.end()
        listed = _LISTED_AT.match(body, position)
        if listed and "lesson" not in facts and not _NOT_A_LESSON.match(listed[1]):
            facts["lesson"] = listed[1].strip()
            position = listed.end()
        if ended := _ENDED_AT_TIME.match(body, position):
            facts["ended_at"] = ended[1]
        sentence = _SENTENCE.match(body, match.start())
        return facts, sentence[0] if sentence else ""
    return {}, ""


def extract_lesson(subject: str, body: str, zone: ZoneInfo) -> Extraction:
    result = Extraction()
    values = labelled_values(body, LESSON_LABELS)
    sentence, why = _lesson_sentence(body)
    for key, value in sentence.items():
        values.setdefault(key, value)
    reason_text = values.pop("reason_text", "")
    if "pupil" in values:
        values["pupil"] = _name_facts(values["pupil"], values)
    if "ended_at" in values:
        values["ended_at"] = _iso(find_datetime(values["ended_at"], zone)) or values["ended_at"]
    basis = reason_text or f"{subject}\n{why}"
    values["reason"] = next(
        (name for name, pattern in _LESSON_REASONS if pattern.search(basis)), "other"
    )
    if reason_text:
        values["reason_detail"] = reason_text
    result.facts.update(values)
    if not values.get("pupil"):
        # Who the concern is about is what the safeguarding team needs first.
        result.flags.update((Flag.NEEDS_TRIAGE, Flag.FACTS_MISSING))
        result.reasons.append("the report names no pupil; read it and record who it is about")
    return result


def mentions_head(text: str, head_names: tuple[str, ...] = ()) -> bool:
    """Does the text name the headteacher, by a configured name or by title?"""
    for name in head_names:
        words = name.split()
        if words and re.search(
            r"\b" + r"\s+".join(re.escape(w) for w in words) + r"\b", text, re.IGNORECASE
        ):
            return True
    for match in _HEAD_WORDS.finditer(text):
        before = text[max(0, match.start() - 12) : match.start()]
        if not _NOT_THE_HEAD.search(before):
            return True
    return False


def extract_whistle(subject: str, body: str, head_names: tuple[str, ...]) -> Extraction:
    result = Extraction()
    result.facts.update(labelled_values(body, WHISTLE_LABELS))
    result.facts["summary"] = subject[:200]
    if mentions_head(f"{subject}\n{body}", head_names):
        result.flags.add(Flag.ABOUT_HEAD)
        result.reasons.append("the allegation names the headteacher; routed to the chair")
    return result


def extract(
    source: Source,
    subject: str,
    body: str,
    attachments: list[AttachmentPart],
    *,
    zone: ZoneInfo,
    head_names: tuple[str, ...] = (),
) -> Extraction:
    """The facts and flags for one message of the given source."""
    if source is Source.ENCOMPASS:
        result = extract_encompass(subject, body, attachments, zone)
    elif source is Source.LESSON:
        result = extract_lesson(subject, body, zone)
    else:
        result = extract_whistle(subject, body, head_names)
    archives = [
        printable(a.filename, keep_newlines=False)
        for a in attachments
        if a.content_type in _ARCHIVE_TYPES
        or a.filename.lower().endswith((".zip", ".7z", ".rar", ".gz"))
    ]
    if archives:
        result.flags.add(Flag.NEEDS_TRIAGE)
        result.reasons.append(
            f"archive attachment not opened ({', '.join(archives[:3])}); check it on a safe machine"
        )
    return result
