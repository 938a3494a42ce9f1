"""A child's name as notices write it: what follows it (``(Year 4)``, ``- Y4``, ``aged 9``)
taken off and kept as facts, so the name matches the same child elsewhere."""

from __future__ import annotations

import re

from sgalert.intake.dates import find_date

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


def annotation(text: str) -> dict[str, str] | None:
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
            cut, found = bracket.start(), annotation(bracket[1])
        elif trailing := _TRAILING.search(text):
            cut = trailing.start()
            # A dash with a space before it: "Ada Invented - Y4", never "O'Brien-Smith".
            if trailing[1] == "," or text[cut - 1 : cut].isspace():
                found = annotation(trailing[2])
        if found is None or not text[:cut].strip():
            break
        text = text[:cut].rstrip()
        facts = {**found, **facts}
    return text, facts


def name_facts(name: str, facts: dict[str, str]) -> str:
    """The name without its annotations; their facts added to ``facts`` where not yet known."""
    bare, found = strip_annotations(name)
    for key, value in found.items():
        facts.setdefault(key, value)
    return bare
