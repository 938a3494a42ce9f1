"""Whistleblowing reports: an allegation about an adult, routed to the chair if it names the
headteacher."""

from __future__ import annotations

import re
from collections.abc import Mapping

from sgalert.intake.labels import Extraction, labelled_values
from sgalert.model import Flag

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
