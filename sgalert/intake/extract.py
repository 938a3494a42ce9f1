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

from zoneinfo import ZoneInfo

from sgalert.intake.encompass import extract_encompass
from sgalert.intake.labels import Extraction
from sgalert.intake.lesson import extract_lesson
from sgalert.intake.mime import AttachmentPart
from sgalert.intake.whistle import extract_whistle, mentions_head
from sgalert.model import Flag, Source
from sgalert.text import printable

# Extraction too: it is what ``extract`` returns.
__all__ = ["Extraction", "extract"]

_ARCHIVE_TYPES = (
    "application/zip",
    "application/x-zip-compressed",
    "application/x-7z-compressed",
    "application/x-rar-compressed",
    "application/gzip",
)


def extract(
    source: Source,
    subject: str,
    body: str,
    attachments: list[AttachmentPart],
    *,
    zone: ZoneInfo,
    head_names: tuple[str, ...] = (),
) -> Extraction:
    """The facts and flags for one message of the given source.

    Whatever the source, a message that names the headteacher (by a configured name or by
    title) is flagged about-head, so it is sealed to the chair and the monitoring officer and
    never pages the head: a lesson report or a notice can be about the head as much as an
    allegation can."""
    if source is Source.ENCOMPASS:
        result = extract_encompass(subject, body, attachments, zone)
    elif source is Source.LESSON:
        result = extract_lesson(subject, body, zone)
    else:
        result = extract_whistle(subject, body, head_names)
    if Flag.ABOUT_HEAD not in result.flags and mentions_head(f"{subject}\n{body}", head_names):
        result.flags.add(Flag.ABOUT_HEAD)
        result.reasons.append("the notice names the headteacher; routed to the chair")
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
