"""Music-lesson reports: a lesson a teacher ended over a concern about a pupil.

Labelled rows, or a sentence in the music service's own phrasing ("Lesson ended with pupil Ada
Invented, piano, at 17:40"); nothing else in running text is read as a name. A report that names
no pupil is flagged ``needs-triage`` and ``facts-missing``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from zoneinfo import ZoneInfo

from sgalert.intake.dates import find_datetime, iso_or_none
from sgalert.intake.labels import Extraction, labelled_values
from sgalert.intake.names import annotation, name_facts
from sgalert.model import Flag

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
    **dict.fromkeys(
        ["disclosure", "disclosure made", "immediate risk", "child at risk", "risk"],
        "disclosure_row",
    ),
}


# A report that records a disclosure or an immediate risk to the pupil: ranked as urgent.
_DISCLOSURE = re.compile(
    r"\b(?:disclos(?:e|ed|es|ing|ure)|immediate(?:ly)?\s+(?:risk|danger)|(?:at|in)\s+"
    r"(?:immediate\s+)?(?:risk|danger)|unsafe\s+at\s+home|self[-\s]?harm\w*|suicid\w*)",
    re.IGNORECASE,
)
_DISCLOSURE_ROW = re.compile(r"^\s*(?:yes|y|true)\b", re.IGNORECASE)
# "no disclosure was made", "not at immediate risk": said, and ruled out.
_NEGATED = re.compile(r"(?:\b(?:no|not|never|without|nor)\b|n['\u2019]t)\W*(?:\w+\W+){0,2}$", re.I)


def _records_disclosure(text: str) -> bool:
    """Whether the report says the pupil disclosed something or is at immediate risk."""
    return any(
        not _NEGATED.search(text[max(match.start() - 40, 0) : match.start()])
        for match in _DISCLOSURE.finditer(text)
    )


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
            found = annotation(bracket[1])
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
    disclosure_row = values.pop("disclosure_row", "")
    if "pupil" in values:
        values["pupil"] = name_facts(values["pupil"], values)
    if "ended_at" in values:
        values["ended_at"] = (
            iso_or_none(find_datetime(values["ended_at"], zone)) or values["ended_at"]
        )
    basis = reason_text or f"{subject}\n{why}"
    values["reason"] = next(
        (name for name, pattern in _LESSON_REASONS if pattern.search(basis)), "other"
    )
    if reason_text:
        values["reason_detail"] = reason_text
    result.facts.update(values)
    if _DISCLOSURE_ROW.match(disclosure_row) or _records_disclosure(f"{subject}\n{basis}"):
        # A disclosure or immediate risk ranks with urgent notices (sgalert.desk.views).
        result.flags.add(Flag.DISCLOSURE)
    if not values.get("pupil"):
        # Who the concern is about is what the safeguarding team needs first.
        result.flags.update((Flag.NEEDS_TRIAGE, Flag.FACTS_MISSING))
        result.reasons.append("the report names no pupil; read it and record who it is about")
    return result
