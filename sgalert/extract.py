"""Pulling the facts out of a notification's text, per source.

Notices differ by police force and council: label variants ("Child's Name", "Name of child",
Surname and Forename rows, "DOB", "D.O.B.", "Occurrence number", "Incident ref", "Crime
reference"), plain text or HTML tables (already turned into ``label: value`` lines, or a row of
labels over a row of values), forwarded copies with ``>`` quoting, and UK date formats. Each label
is normalised (case, punctuation, spacing) and looked up in a table; the value is on the same line
after ``:``, ``-``, ``|`` or a tab, or on the next line, or (for values recognisable on sight:
dates, times, references) after a single space. An incident's date and time may be on separate
rows. What is not found is simply absent: an Encompass notice that does not name the child is
flagged ``needs-triage`` with the reason (portal wrapper, attachment only, nothing found), never
left silently empty.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sgalert.dates import find_date, find_datetime, find_time
from sgalert.mime import AttachmentPart
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
    **dict.fromkeys(["surname", "family name", "last name", "childs surname"], "_surname"),
    **dict.fromkeys(
        ["forename", "forenames", "first name", "first names", "given name", "childs forename"],
        "_forename",
    ),
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
_QUOTE_MARKS = re.compile(r"^(?:\s*>)+")
_BULLET = re.compile("^[*\u2022\\-\u2013]\\s+")
_MARKED = frozenset(">*\u2022-\u2013|")


@functools.lru_cache(maxsize=16384)
def normalise_label(label: str) -> str:
    """Lower case, letters and digits only, single spaces: ``Child's Name:`` -> ``childs name``.

    Cached: the same few hundred label spellings recur in every notice of a force.
    """
    cleaned = _NOT_LABEL_CHARS.sub(" ", label.lower().replace("\u2019", "'").replace("'", ""))
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


def _cells(line: str) -> list[str]:
    return [cell for cell in _CELL_SPLIT.split(line.strip().strip("|")) if cell]


def _header_row(
    lines: list[str], index: int, labels: Mapping[str, str]
) -> list[tuple[str, str]] | None:
    """A row of labels over a row of values (``Surname | Forename | DOB``): the pairs, else None.

    A header row is never read as one label with the other labels as its value.
    """
    line = lines[index]
    if "|" not in line and "\t" not in line and "  " not in line:
        return None  # a single cell: not a header row
    cells = _cells(line)
    if len(cells) < 2 or any(labels.get(normalise_label(c)) is None for c in cells):
        return None
    following = next((ln for ln in lines[index + 1 : index + 3] if ln), "")
    values = _cells(following)
    if len(values) != len(cells) or any(labels.get(normalise_label(v)) for v in values):
        return []
    return [(labels[normalise_label(c)], v) for c, v in zip(cells, values, strict=True)]


def labelled_values(text: str, labels: Mapping[str, str]) -> dict[str, str]:
    """First value found for each field; a label alone on a line takes the next line.

    A row of labels over a row of values (an HTML table with a header row, or its plain-text
    rendering) gives each label the value below it.
    """
    found: dict[str, str] = {}
    lines = _lines(text)
    for index in _candidate_lines(text, _first_words(tuple(labels))):
        line = lines[index]
        pairs = _header_row(lines, index, labels)
        if pairs is not None:
            for field_name, cell in pairs:
                if cell and field_name not in found:
                    found[field_name] = cell[:500]
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
            candidates.append((match[1], match[2].lstrip("| \t").strip()))
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
    surname, forename = values.pop("_surname", None), values.pop("_forename", None)
    if "child_name" not in values and (surname or forename):
        values["child_name"] = " ".join(part for part in (forename, surname) if part)
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
    if "child_name" not in values:
        # Without the child the notice cannot be acted on before the next school day, whatever
        # else was found (a reference in the subject of a PDF-only notice, say).
        result.flags.add(Flag.NEEDS_TRIAGE)
        result.reasons.append(_triage_reason(body, attachments))
    return result


_LESSON_REASONS = (
    ("chat message", re.compile(r"\b(?:chat|message|messaged|typed|text(?:ed)?)\b", re.I)),
    ("dress", re.compile(r"\b(?:dress(?:ed)?|clothing|clothes|attire|undressed)\b", re.I)),
    ("behaviour", re.compile(r"\b(?:behaviou?r|conduct|language|gesture|rude)\b", re.I)),
)


def extract_lesson(subject: str, body: str, zone: ZoneInfo) -> Extraction:
    result = Extraction()
    values = labelled_values(body, LESSON_LABELS)
    reason_text = values.pop("reason_text", "")
    if "ended_at" in values:
        values["ended_at"] = _iso(find_datetime(values["ended_at"], zone)) or values["ended_at"]
    basis = reason_text or subject
    values["reason"] = next(
        (name for name, pattern in _LESSON_REASONS if pattern.search(basis)), "other"
    )
    if reason_text:
        values["reason_detail"] = reason_text
    result.facts.update(values)
    if not ({"teacher", "pupil"} & set(values)):
        result.flags.add(Flag.NEEDS_TRIAGE)
        result.reasons.append("the report names no teacher or pupil; read it and record them")
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
