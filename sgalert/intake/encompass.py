"""Operation Encompass notices: the police's next-school-day notice of a domestic abuse incident.

Label variants ("Child's Name", "Name of child", "DOB", "D.O.B.", "Occurrence number",
"Incident ref", "Crime reference"); the child's name whole or in parts (Surname, Forename(s),
Middle name) put together as "Forename Middle Surname"; the incident's date and time on one row
or two; a police reference in the subject. A notice that does not name the child cannot be acted
on: it is flagged ``needs-triage`` and ``facts-missing`` with the reason (portal wrapper,
attachment only, nothing found).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from sgalert.intake.dates import find_date, find_datetime, find_time, iso_or_none
from sgalert.intake.labels import Extraction, labelled_values, unseparated_values
from sgalert.intake.mime import AttachmentPart
from sgalert.intake.names import name_facts
from sgalert.model import Flag
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

_PORTAL_WORDS = re.compile(
    r"secure (?:message|e-?mail|portal)|encrypted (?:message|e-?mail)|egress|"
    r"click (?:here|the link) to (?:view|read|open)|view (?:the|your) (?:secure )?message|"
    r"messag(?:e|ing) portal|sign in to (?:read|view)",
    re.IGNORECASE,
)
_URL = re.compile(r"https?://\S+", re.IGNORECASE)
_FORWARD_WORDS = ("forwarded message", "original message", "attached message")
_FORWARD_MARKERS = re.compile(
    r"^(?:-{2,}[ \t]*(?:forwarded message|original message|attached message)[ \t]*-{2,}"
    r"|begin forwarded message:)[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)


_REFERENCE = re.compile(r"^[A-Z]{0,4}[/-]?\d{2,}(?:[/-]\d{2,}[A-Z0-9/-]*|\d*)$", re.IGNORECASE)

# Fields whose value is recognisable on sight, so "D.O.B 30.06.2019" or "Occurrence No.
# 44/123456/26" (no colon, one space) can be read without mistaking prose for a label.
_ENCOMPASS_RECOGNISABLE: Mapping[str, Callable[[str], bool]] = {
    "child_dob": lambda value: find_date(value) is not None,
    "incident_at": lambda value: find_date(value) is not None,
    "_incident_time": lambda value: find_time(value) is not None,
    "police_reference": lambda value: _REFERENCE.match(value.strip(" .:#")) is not None,
}


def _forwarded(body: str) -> bool:
    """Does a separator line mark a forwarded or attached copy? (Words first: a line-anchored,
    case-blind pattern tried at every line of a long body costs more than the rest of it.)"""
    lowered = body.lower()
    return any(word in lowered for word in _FORWARD_WORDS) and bool(_FORWARD_MARKERS.search(body))


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


def _child_name(values: dict[str, str], result: Extraction) -> None:
    """The child's name as ``Forename Middle Surname``, from one field or from its parts; a name
    with only some of its parts is kept and flagged for a person to check."""
    parts = {key: values.pop(key, "") for key in ("_forename", "_middle_name", "_surname")}
    extra: dict[str, str] = {}
    if "child_name" in values:
        values["child_name"] = name_facts(values["child_name"], extra)
    elif parts["_forename"] or parts["_surname"]:
        bare = {key: name_facts(value, extra) for key, value in parts.items()}
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
        return iso_or_none(moment) or text
    clock = find_time(time_text) if date_text and time_text else None
    return datetime.combine(moment, clock, tzinfo=zone).isoformat() if clock else moment.isoformat()


def extract_encompass(
    subject: str, body: str, attachments: list[AttachmentPart], zone: ZoneInfo
) -> Extraction:
    result = Extraction()
    values = labelled_values(body, ENCOMPASS_LABELS)
    for name, value in unseparated_values(body, ENCOMPASS_LABELS, _ENCOMPASS_RECOGNISABLE).items():
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
