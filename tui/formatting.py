"""How the desk shows times, countdowns, flags and untrusted text.

Untrusted text (subjects, bodies, names, anything a stranger wrote) only ever reaches a widget
as a :class:`rich.text.Text` built by :func:`untrusted`: a ``Text`` is never parsed for markup, and
:func:`sgalert.text.printable` turns control and bidi characters into visible escapes first. So a
subject of ``\\x1b[31m[/b]`` shows as exactly those characters.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, tzinfo

from rich.text import Text

# The clocks' names, local times and durations are the core's, so the desk and the command line
# say them the same way; re-exported here for the screens.
from sgalert.desk.views import CLOCK_LABELS as CLOCK_LABELS
from sgalert.desk.views import SOON_SECONDS, span
from sgalert.desk.views import local_time as local_time
from sgalert.model import CaseState, Flag, Source
from sgalert.text import printable

SOURCE_SHORT: dict[Source, str] = {
    Source.ENCOMPASS: "Encompass",
    Source.WHISTLE: "Whistle",
    Source.LESSON: "Lesson",
}
SOURCE_LONG: dict[Source, str] = {
    Source.ENCOMPASS: "Operation Encompass",
    Source.WHISTLE: "Whistleblowing",
    Source.LESSON: "Lesson termination",
}
STATE_SHORT: dict[CaseState, str] = {
    CaseState.NEW: "NEW",
    CaseState.ACKNOWLEDGED: "acked",
    CaseState.CLOSED: "closed",
}
# Short labels keep the queue inside 80 columns; the help screen lists what each one means.
FLAG_SHORT: dict[str, str] = {
    Flag.UNVERIFIED_SENDER: "unverified",
    Flag.NEEDS_TRIAGE: "triage",
    Flag.MALFORMED: "malformed",
    Flag.ABOUT_HEAD: "about-head",
    Flag.POSSIBLE_DUPLICATE: "dup?",
    Flag.MANUAL_ENTRY: "phoned",
    Flag.HOSTILE_TEXT: "hostile",
    Flag.DISCLOSURE: "disclosure",
}
FLAG_MEANING: dict[str, str] = {
    Flag.UNVERIFIED_SENDER: "the sender could not be verified (SPF/DKIM/DMARC or domain)",
    Flag.NEEDS_TRIAGE: "facts could not be extracted: read the message and record them",
    Flag.MALFORMED: "the message broke a parsing limit; it is kept whole as evidence",
    Flag.ABOUT_HEAD: "an allegation about the headteacher: chair and monitoring officer only",
    Flag.POSSIBLE_DUPLICATE: "same Message-ID as an earlier case: check, never assume",
    Flag.MANUAL_ENTRY: "recorded by hand from a phone call",
    Flag.HOSTILE_TEXT: "the text held control or bidi characters, shown as escapes",
    Flag.DISCLOSURE: "the lesson report records a disclosure or an immediate risk: act now",
}
FACT_LABELS: dict[str, str] = {
    "child_name": "Child",
    "child_dob": "Date of birth",
    "school": "School",
    "incident_at": "Incident",
    "police_reference": "Police ref",
    "child_present": "Child present",
    "incident_location": "Location",
    "voice_of_child": "Child's words",
    "welfare_check": "Welfare check",
    "forwarded": "Forwarded",
    "teacher": "Teacher",
    "pupil": "Pupil",
    "lesson": "Lesson",
    "ended_at": "Ended at",
    "reason": "Reason",
    "reason_detail": "Reason detail",
    "responsible_adult_present": "Adult present",
    "summary": "Summary",
    "subject_of_allegation": "About",
    "preferred_contact": "Preferred contact",
}
OVERDUE = "bold red"
SOON = "bold yellow"


def untrusted(text: str, *, one_line: bool = False, style: str = "") -> Text:
    """Text from outside, safe to show: escapes visible, never parsed as markup."""
    return Text(printable(text, keep_newlines=not one_line), style=style)


# Facts that hold a date or a moment, written by the extractor (or typed) as ISO 8601.
DATE_FACTS = frozenset({"child_dob"})
# Dates of birth: shown with the age they give on today's date.
BIRTH_FACTS = frozenset({"child_dob"})
MOMENT_FACTS = frozenset({"incident_at", "ended_at"})


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 minute``, ``2 minutes``, ``1,204 entries`` (``many`` for irregular plurals)."""
    return f"{count:,} {word if count == 1 else many or word + 's'}"


def age_on(born: date, today: date) -> int | None:
    """Completed years on ``today``; None for a date still to come. Born on 29 February, a
    child is a year older on 1 March in a year without one (as UK law counts it)."""
    if born > today:
        return None
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def fact_text(key: str, value: str, zone: tzinfo, now: datetime | None = None) -> str:
    """A fact as the desk shows it: a date or moment the extractor wrote as ISO 8601 in the UK's
    order and the school's time zone (``14 Mar 2017``, ``Sun 22 Nov 2026 20:30``), a date of
    birth with the age it gives on ``now``'s day in the school's zone (``14 Mar 2017 (age 9)``);
    anything else, including a date typed in another shape, exactly as it was written."""
    if key not in DATE_FACTS | MOMENT_FACTS:
        return value
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            shown = f"{day.day} {day:%b %Y}"
            age = age_on(day, now.astimezone(zone).date()) if now is not None else None
            return shown if key not in BIRTH_FACTS or age is None else f"{shown} (age {age})"
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is not None:  # a naive time is local already: never guess its zone
        moment = moment.astimezone(zone)
    return f"{moment:%a} {moment.day} {moment:%b %Y %H:%M}"


def short_time(moment: datetime, zone: tzinfo) -> str:
    local = moment.astimezone(zone)
    return f"{local.day} {local:%b %H:%M}"


def countdown(due: datetime | None, now: datetime) -> Text:
    """Time left until ``due``, red once it has passed, yellow in the last hour."""
    if due is None:
        return Text("-", style="dim")
    seconds = int((due - now).total_seconds())
    if seconds < 0:
        return Text(f"over {span(-seconds)}", style=OVERDUE)
    return Text(span(seconds), style=SOON if seconds < SOON_SECONDS else "")


def ago(then: datetime, now: datetime) -> str:
    return f"{span(int((now - then).total_seconds()))} ago"


def flags_text(flags: tuple[str, ...] | list[str]) -> str:
    return " ".join(FLAG_SHORT.get(flag, flag) for flag in flags)


def person_name(email: str | None, names: Mapping[str, str] | None = None) -> str:
    """A member of staff by name (``names``: lower-cased email to name, from the people
    table); an address nobody has is shown as it is, so nothing is hidden."""
    if not email:
        return "nobody"
    return printable((names or {}).get(email.lower(), email), keep_newlines=False)


def person_label(email: str | None, names: Mapping[str, str] | None = None) -> str:
    """An assignee as the queue's narrow column shows it: first name and initial ("Dana E."),
    or the address's local part for an address nobody has. Staff metadata, not personal data
    about a child."""
    if not email:
        return "-"
    name = (names or {}).get(email.lower())
    if name:
        first, *rest = name.split()
        return printable(f"{first} {rest[-1][0]}." if rest else first, keep_newlines=False)
    return printable(email.split("@", 1)[0], keep_newlines=False)
