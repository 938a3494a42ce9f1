"""Who sees which cases in metadata views (lists, counts, banners, the audit log's case
lines): one rule, as SQL over ``cases c``, so a list and its count can never disagree.

It follows :func:`sgalert.rules.access.may_see`: somebody not yet identified sees no
confidential case (whistleblowing, or about the head); a person sees those only when they can
read them, and the head never sees a case about the head; the store's own upkeep sees every
case so none is missed. The desk narrows a person to the cases they can open and act on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sgalert.model import Role
from sgalert.records.entitlement import READS_CASE_SQL
from sgalert.records.keyring import Identity


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking at the metadata: a person (their id and role), somebody not yet identified
    (no id: sees no confidential case), or the store's own upkeep (``every_case``: retention,
    ``sgalert status``), which must see every case so none is missed."""

    person_id: str | None = None
    role: Role | None = None
    every_case: bool = False
    # Their email: "My cases" finds their own cases by it (assignee, pages, clocks started).
    email: str | None = None
    # The desk's scope: only the cases this person can open and act on, so its queue and its
    # counts agree and a monitoring officer is not told of cases they could open none of.
    readable_only: bool = False


NOBODY = Viewer()
UPKEEP = Viewer(every_case=True)

_CONFIDENTIAL = "(c.source = 'whistle' OR c.flags LIKE '%\"about-head\"%')"


def visible(viewer: Viewer) -> tuple[str | None, dict[str, object]]:
    """The SQL condition (over ``cases c``, named parameters) for the cases this viewer may see
    in lists and counts, or None for every case: :func:`sgalert.rules.access.may_see`."""
    if viewer.every_case:
        return None, {}
    if viewer.person_id is None:
        return f"NOT {_CONFIDENTIAL}", {}
    clause = (
        READS_CASE_SQL if viewer.readable_only else f"(NOT {_CONFIDENTIAL} OR {READS_CASE_SQL})"
    )
    if viewer.role is Role.HEAD:
        clause = f"c.flags NOT LIKE '%\"about-head\"%' AND {clause}"
    return clause, {"viewer": viewer.person_id}


def viewer_of(viewer: Identity | Viewer | None) -> Viewer:
    """Who is looking at metadata, as the views take it."""
    if viewer is None:
        return NOBODY
    if isinstance(viewer, Viewer):
        return viewer
    return Viewer(viewer.id, viewer.person.role, email=viewer.person.email)


def desk_viewer(viewer: Identity | Viewer | None) -> Viewer:
    """Who is at the desk, scoped to the cases they can open and act on: the queue, its counts
    and the banners agree, and nobody is told of cases they could open none of (issue 16). A
    :class:`Viewer` given as such is taken as it is."""
    if viewer is None or isinstance(viewer, Viewer):
        return viewer_of(viewer)
    return replace(viewer_of(viewer), readable_only=True)
