"""Pulling the facts out of a notification's text, per source.

Notices differ by police force and council: label variants ("Child's Name", "Name of child",
Surname and Forename rows, "DOB", "D.O.B.", "Occurrence number", "Incident ref"), plain text or
HTML tables (already turned into ``label: value`` lines), forwarded copies with ``>`` quoting,
and UK date formats. Each label is normalised (case, punctuation, spacing) and looked up in a
table; the value is on the same line after ``:``, ``-`` or a tab, or on the next line. What is
not found is simply absent: a notice with no facts at all is flagged ``needs-triage`` with the
reason, never left silently empty.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sgalert.dates import find_date, find_datetime
from sgalert.mime import AttachmentPart
from sgalert.model import Flag, Source

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
            "time of incident",
            "incident date time",
            "date and time of incident",
            "incident time",
            "date time of occurrence",
            "occurrence date",
            "date of occurrence",
            "incident datetime",
        ],
        "incident_at",
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
_HEAD_WORDS = re.compile(
    r"\b(?:head ?teacher|head ?master|head ?mistress|principal|the head|executive head)\b",
    re.IGNORECASE,
)
_ARCHIVE_TYPES = (
    "application/zip",
    "application/x-zip-compressed",
    "application/x-7z-compressed",
    "application/x-rar-compressed",
    "application/gzip",
)
_FORWARD_MARKERS = re.compile(
    r"^(?:-{2,}\s*(?:forwarded message|original message)\s*-{2,}|begin forwarded message:)\s*$",
    re.IGNORECASE | re.MULTILINE,
)


@dataclass(slots=True)
class Extraction:
    """Facts for the sealed record, plus flags and the reasons behind them."""

    facts: dict[str, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    reasons: list[str] = field(default_factory=list)


def normalise_label(label: str) -> str:
    cleaned = re.sub(r"[^a-z0-9]+", " ", label.lower().replace("\u2019", "'").replace("'", ""))
    return " ".join(cleaned.split())


def _lines(text: str) -> list[str]:
    """Body lines with quoting (``>``), bullets and table pipes stripped."""
    lines = []
    for line in text.splitlines():
        stripped = re.sub(r"^(?:\s*>)+", "", line).strip()
        stripped = re.sub("^[*\u2022\\-\u2013]\\s+", "", stripped)
        lines.append(stripped)
    return lines


def labelled_values(text: str, labels: Mapping[str, str]) -> dict[str, str]:
    """First value found for each field; a label alone on a line takes the next line."""
    found: dict[str, str] = {}
    lines = _lines(text)
    for index, line in enumerate(lines):
        if not line:
            continue
        match = re.match(r"^(.{1,60}?)\s*(?::|\t| - | \u2013 |\|| {2,})\s*(.*)$", line)
        candidates = []
        if match:
            candidates.append((match[1], match[2].strip()))
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


def _iso(moment: datetime | date | None) -> str | None:
    if moment is None:
        return None
    return moment.isoformat()


def _triage_reason(text: str, attachments: list[AttachmentPart]) -> str:
    if _PORTAL_WORDS.search(text) and _URL.search(text):
        return "the notice is behind a secure-mail portal link; open it there and record the facts"
    if attachments:
        names = ", ".join(a.filename for a in attachments[:3])
        return f"the notice is in an attachment only ({names}); open it and record the facts"
    return "no notification facts were found in the message; read it and record the facts"


def extract_encompass(
    subject: str, body: str, attachments: list[AttachmentPart], zone: ZoneInfo
) -> Extraction:
    result = Extraction()
    values = labelled_values(body, ENCOMPASS_LABELS)
    surname, forename = values.pop("_surname", None), values.pop("_forename", None)
    if "child_name" not in values and (surname or forename):
        values["child_name"] = " ".join(part for part in (forename, surname) if part)
    if "child_dob" in values:
        dob = find_date(values["child_dob"])
        values["child_dob"] = dob.isoformat() if dob else values["child_dob"]
    if "incident_at" in values:
        values["incident_at"] = (
            _iso(find_datetime(values["incident_at"], zone)) or values["incident_at"]
        )
    if "police_reference" not in values:
        reference = re.search(
            r"\b(?:occurrence|incident|crime|ref(?:erence)?)\b[^\n]{0,20}?"
            r"\b([A-Z]{0,4}[/-]?\d{2,}[/-]\d{2,}[A-Z0-9/-]*)",
            subject,
        )
        if reference:
            values["police_reference"] = reference[1]
    result.facts.update(values)
    if _FORWARD_MARKERS.search(body):
        result.facts.setdefault("forwarded", "yes")
    if not ({"child_name", "police_reference"} & set(values)):
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


def extract_whistle(subject: str, body: str, head_names: tuple[str, ...]) -> Extraction:
    result = Extraction()
    result.facts.update(labelled_values(body, WHISTLE_LABELS))
    result.facts["summary"] = subject[:200]
    haystack = f"{subject}\n{body}"
    names_head = any(
        re.search(rf"\b{re.escape(name)}\b", haystack, re.IGNORECASE) for name in head_names if name
    )
    if names_head or _HEAD_WORDS.search(haystack):
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
        a.filename
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
