"""The child file: every case about one child, as one chronology of significant events.

A school keeps "a chronology of significant events" on each child's file [school 1.13.0]. sgalert
stores cases, not children, and a child's name and date of birth exist only inside each case's
sealed facts. So the file is built on demand, for one unlocked, entitled person, inside this
process: :func:`child_file` starts from one case (the *anchor*), decrypts the facts of every case
that person can open, keeps those about the same child, and merges their records into one timeline.
Nothing derived from the match (no name, no list of linked cases) is ever written to the store.

Matching rule (conservative: merging two different children's records is worse than missing one)
    A case is **in the file** when its child's name, normalised by :func:`name_key`, equals the
    anchor's, the name has at least two words, and both cases record the same valid date of birth.
    Normalising drops an annotation after the name (``(Year 4)``, ``(aged 9)``, ``- Y4``, as
    :func:`sgalert.intake.names.strip_annotations` does), folds case, accents and repeated
    whitespace, drops apostrophes, treats hyphens and other punctuation as word breaks, and puts
    the surname last when the writing says which word is the surname: ``"Surname, Forename"`` (one
    comma) or a police-style ``"SURNAME Forename"`` (leading words in capitals followed by words
    that are not). Otherwise word order is kept as written, so ``"Ada Invented"`` and ``"Invented
    Ada"`` do not match. Middle names must agree, initials do not match full names, and nicknames or
    changed surnames are not recognised: such cases are missed, not merged. Twins (same surname
    and birthday) differ by forename.

    A case with the same normalised name but **no usable date of birth** on it or on the anchor
    (a lesson report names a ``pupil`` and gives no date of birth; a one-word name never confirms
    a match) is listed separately as *possible, name only*: shown so the DSL can open and judge
    it, never merged into the chronology. The same name with a *different* date of birth is a
    different child and is not shown at all.

Entitlement and audit
    Only cases whose content key this identity can unwrap are considered; the rest are skipped
    without a trace in the result, so the file never hints that they exist. Refusing the anchor is
    audited like any refused read. Matching decrypts only each case's facts field, without a
    ``case-read`` entry per case (it shows nothing of them); the cases that make up the file are
    then opened through :meth:`~sgalert.desk.service.CaseService.open_cases`, which audits each
    read, and one ``child-file-viewed`` entry is written against the anchor with counts only.

Scale
    Matching is a linear scan: every case's facts are decrypted once per view, in chunks of
    ``chunk_size`` cases, each chunk in its own short read transaction so the desk's other work
    interleaves. A few thousand cases take well under a second; at tens of thousands a blind index
    (a keyed hash of the name key and birth date sealed per case) would be the next step. Assignment
    and deadline events come from the audit log, which is read once per view for the matched cases.
"""

from __future__ import annotations

import enum
import json
import re
import unicodedata
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, NoReturn

from cryptography.exceptions import InvalidTag

from sgalert.clock import parse_iso, utcnow
from sgalert.desk.access import Refused, refuse
from sgalert.desk.views import UPKEEP
from sgalert.errors import IntegrityError, InvalidInput, NotFound
from sgalert.intake.dates import find_date
from sgalert.intake.names import strip_annotations
from sgalert.model import CaseSummary, KeyName, Source
from sgalert.records import audit, crypto
from sgalert.records.cases import FIELD_FACTS, case_ref, field_aad, unwrap_data_keys
from sgalert.records.chronology import EntryKind
from sgalert.records.keyring import Identity
from sgalert.records.store import fetch_in
from sgalert.routing.escalation import INTAKE_CLOCKS

if TYPE_CHECKING:
    from sgalert.desk.case_view import CaseView
    from sgalert.desk.service import CaseService

CHUNK_SIZE = 500

# The facts that name the child: Encompass notices and manual entries use child_name/child_dob;
# lesson reports name a pupil and carry no date of birth.
NAME_FACTS = ("child_name", "pupil")
DOB_FACTS = ("child_dob",)

_APOSTROPHES = re.compile("['\u2018\u2019\u02bc\u0060\u00b4]")
_WORD_BREAKS = re.compile(r"[\W_]+")


class Match(enum.StrEnum):
    """Why a case is in the file."""

    ANCHOR = "anchor"  # the case the file was opened from
    SAME_CHILD = "same-child"  # same name and the same date of birth
    NAME_ONLY = "name-only"  # same name, no date of birth to confirm it: listed, not merged
    CONFIRMED = "confirmed"  # a name-only match the person viewing said is the same child


class EventKind(enum.StrEnum):
    """A significant event in a child's chronology."""

    RECEIVED = "received"
    RECORDED = "recorded"  # a phoned notification's signed first entry
    ACKNOWLEDGED = "acknowledged"
    ASSIGNED = "assigned"
    NOTE = "note"
    DECISION = "decision"
    REFERRAL = "referral"
    DEADLINE_SET = "deadline-set"
    DEADLINE_MET = "deadline-met"
    DEADLINE_MISSED = "deadline-missed"
    CLOSED = "closed"


# Order of events recorded at the same instant.
_RANK = {kind: index for index, kind in enumerate(EventKind)}
_ENTRY_KINDS: dict[EntryKind, EventKind] = {
    EntryKind.CASE_RECORDED: EventKind.RECORDED,
    EntryKind.NOTE: EventKind.NOTE,
    EntryKind.DECISION: EventKind.DECISION,
    EntryKind.REFERRAL: EventKind.REFERRAL,
    EntryKind.OUTCOME: EventKind.CLOSED,
}


@dataclass(frozen=True, slots=True)
class FileEvent:
    """One event, attributed and tied to its case.

    ``by`` is who did it: a person's email, ``engine``, or for a receipt the mailbox it came from.
    ``by_name`` is the signer's name for signed entries. ``signed`` is None for events read from
    case metadata and the audit log, else whether the entry's signature holds. ``text`` and
    ``reason`` are the entry's own words (untrusted: show with markup off); for an assignment,
    ``text`` is the assignee's email. ``clock`` and ``due_at`` name a statutory deadline.
    """

    at: datetime
    kind: EventKind
    ref: str
    case_id: str
    source: Source
    by: str | None = None
    by_name: str | None = field(default=None, repr=False)
    text: str = field(default="", repr=False)
    reason: str | None = field(default=None, repr=False)
    signed: bool | None = None
    corrects: str | None = None
    clock: str | None = None
    due_at: datetime | None = None
    late: bool = False


@dataclass(frozen=True, slots=True)
class FileCase:
    """A case listed in the file: metadata only, and why it is there."""

    summary: CaseSummary
    match: Match


@dataclass(frozen=True, slots=True)
class ChildFile:
    """One child's file as this person may see it. Holds personal data: never log it."""

    anchor: CaseSummary
    child_name: str = field(repr=False)
    child_dob: date | None = field(repr=False)
    cases: tuple[FileCase, ...]  # the anchor and every confirmed match, oldest first
    possible: tuple[FileCase, ...]  # same name, no date of birth to confirm: not merged
    events: tuple[FileEvent, ...] = field(repr=False)  # the merged chronology, oldest first
    searched: int  # how many cases this person can open were compared
    # How many cases the store held, and the highest row, when the file was built.
    store_mark: tuple[int, int] = field(default=(0, 0), repr=False)

    @property
    def refs(self) -> tuple[str, ...]:
        return tuple(case.summary.ref for case in self.cases)


# ----- matching -----------------------------------------------------------------------------


def _fold(text: str) -> str:
    """Compatibility-normalised with accents removed; control characters (tabs, newlines) become
    spaces, invisible format characters (bidi marks, soft hyphens) are dropped."""
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text))
    kept: list[str] = []
    for ch in decomposed:
        category = unicodedata.category(ch)
        if category == "Cc":
            kept.append(" ")
        elif category not in ("Mn", "Me") and category[0] != "C":
            kept.append(ch)
    return "".join(kept)


def _is_capitals(word: str) -> bool:
    letters = [ch for ch in word if ch.isalpha()]
    return len(letters) >= 2 and all(ch.isupper() for ch in letters)


def name_key(name: str) -> tuple[str, ...]:
    """The words of a child's name, normalised for matching, forenames first, surname last.

    ``"Ada Invented"``, ``" ada  INVENTED "``, ``"Invented, Ada"`` and ``"INVENTED Ada"`` give
    ``("ada", "invented")``; ``"Zoë O'Brien-Smith"`` and ``"Zoe OBrien Smith"`` agree. What
    extraction strips after a name (``"(Year 4)"``, ``"- aged 9"``) is stripped here too. A word
    order with no marker of the surname is kept as written. See the module docstring for why.
    """
    text = strip_annotations(_fold(name))[0]  # "Ada Invented (Year 4)" is Ada Invented
    if text.count(",") == 1:
        surname, forenames = text.split(",")
        if surname.strip() and forenames.strip():
            text = f"{forenames} {surname}"
    else:
        words = text.split()
        leading = 0
        while leading < len(words) and _is_capitals(words[leading]):
            leading += 1
        rest = words[leading:]
        if leading and rest and not any(_is_capitals(word) for word in rest):
            text = " ".join(rest + words[:leading])
    text = _APOSTROPHES.sub("", text.casefold())
    return tuple(word for word in _WORD_BREAKS.split(text) if word)


def parse_dob(value: object) -> date | None:
    """A date of birth from a fact: ISO ``YYYY-MM-DD`` (what extraction stores), or one plainly
    written day-first date (``14/03/2017``, ``14 March 2017``) as typed into a manual entry.
    Anything ambiguous (more than one date, free text with other numbers) gives None."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            return None
    if len(re.findall(r"\d+", text)) > 3:
        return None
    return find_date(text)


@dataclass(frozen=True, slots=True)
class _Child:
    """Who a case is about, as far as matching needs; never leaves this module."""

    case_id: str
    key: tuple[str, ...] = field(repr=False)
    dob: date | None = field(repr=False)


def _child_of(case_id: str, facts: Mapping[str, Any]) -> _Child | None:
    name = next((v for k in NAME_FACTS if isinstance(v := facts.get(k), str) and v.strip()), None)
    if name is None:
        return None
    key = name_key(name)
    if not key:
        return None
    dob = next((d for k in DOB_FACTS if (d := parse_dob(facts.get(k))) is not None), None)
    return _Child(case_id, key, dob)


def names_child(facts: Mapping[str, Any]) -> bool:
    """Whether a case's facts name a child, so that it can anchor a child file."""
    return _child_of("", facts) is not None


def compare(anchor: _Child, other: _Child) -> Match | None:
    """Whether ``other`` is about the anchor's child (see the module docstring)."""
    if other.key != anchor.key:
        return None
    if anchor.dob is not None and other.dob is not None:
        if anchor.dob != other.dob:
            return None
        return Match.SAME_CHILD if len(anchor.key) >= 2 else Match.NAME_ONLY
    return Match.NAME_ONLY


# ----- reading ------------------------------------------------------------------------------


async def _children(
    service: CaseService, identity: Identity, case_ids: Sequence[str]
) -> dict[str, _Child | None]:
    """Decrypt just the facts of the cases this identity can open; others are left out."""
    found: dict[str, _Child | None] = {}
    async with service.store.read() as db:
        keys = await unwrap_data_keys(db, identity, case_ids)
        readable = [i for i in case_ids if (i, KeyName.CONTENT.value) in keys]
        if not readable:
            return found
        facts_rows = await fetch_in(
            db,
            "SELECT case_id, blob FROM sealed_fields WHERE field = ? AND key_name = ?"
            " AND case_id IN ({ids})",
            readable,
            params=(FIELD_FACTS, KeyName.CONTENT.value),
        )
        rows = {str(row[0]): bytes(row[1]) for row in facts_rows}
        for case_id in readable:
            blob = rows.get(case_id)
            if blob is None:
                found[case_id] = None
                continue
            key = keys[(case_id, KeyName.CONTENT.value)]
            try:
                plain = crypto.aead_open(
                    key, blob, field_aad(case_id, FIELD_FACTS, KeyName.CONTENT)
                )
            except InvalidTag:
                raise IntegrityError(
                    f"sealed field {FIELD_FACTS!r} of case {await case_ref(db, case_id)} failed "
                    "its integrity check: it was altered or does not belong to this case"
                ) from None
            try:
                facts = json.loads(plain)
            except ValueError:
                facts = None
            found[case_id] = _child_of(case_id, facts) if isinstance(facts, dict) else None
    return found


async def _refuse(service: CaseService, identity: Identity, anchor: CaseSummary) -> NoReturn:
    await refuse(service.store, identity, Refused(anchor.id, anchor.ref), "child-file")


async def _context(
    service: CaseService, case_ids: Sequence[str]
) -> tuple[dict[str, str], list[audit.AuditEntry], dict[str, str]]:
    """Where each case came from, the audit entries the chronology needs, and people's emails."""
    async with service.store.read() as db:
        rows = await fetch_in(
            db, "SELECT id, origin, source_name FROM cases WHERE id IN ({ids})", case_ids
        )
        origins = {str(r[0]): str(r[2] or r[1]) for r in rows}
        rows = await fetch_in(
            db,
            "SELECT seq, at, actor, action, case_id, detail, prev_hash, hash FROM audit"
            " WHERE case_id IN ({ids}) AND action IN ('assigned', 'clock-started', 'clock-met')",
            case_ids,
        )
        entries = [
            audit.AuditEntry(
                seq=row[0],
                at=row[1],
                actor=row[2],
                action=row[3],
                case_id=row[4],
                detail=json.loads(row[5]),
                prev_hash=row[6],
                hash=row[7],
            )
            for row in sorted(rows, key=lambda row: int(row[0]))  # by seq, across chunks
        ]
        assignees = sorted(
            {str(e.detail["assignee"]) for e in entries if e.action == "assigned"} - {""}
        )
        rows = await fetch_in(db, "SELECT id, email FROM people WHERE id IN ({ids})", assignees)
        people = {str(r[0]): str(r[1]) for r in rows}
    return origins, entries, people


# ----- the chronology -----------------------------------------------------------------------


def _case_events(
    view: CaseView,
    origin: str | None,
    entries: Sequence[audit.AuditEntry],
    people: Mapping[str, str],
    now: datetime,
) -> list[FileEvent]:
    summary = view.summary
    events: list[FileEvent] = []

    def add(at: datetime, kind: EventKind, **details: Any) -> None:
        events.append(FileEvent(at, kind, summary.ref, summary.id, summary.source, **details))

    intake = next((c for c in view.clocks if c.kind in INTAKE_CLOCKS), None)
    add(
        summary.received_at,
        EventKind.RECEIVED,
        by=origin,
        clock=intake.kind if intake else None,
        due_at=intake.due_at if intake else None,
    )
    closed_by_outcome = False
    for entry in view.chronology:
        kind = _ENTRY_KINDS.get(entry.kind, EventKind.NOTE)
        closed_by_outcome |= kind is EventKind.CLOSED
        add(
            entry.at,
            kind,
            by=entry.author.email,
            by_name=entry.author.name,
            text=entry.text,
            reason=entry.reason,
            signed=entry.signature_valid,
            corrects=entry.corrects,
        )
    if summary.closed_at is not None and not closed_by_outcome:
        add(summary.closed_at, EventKind.CLOSED)
    # Closing acknowledges a case that was not; that is the closure, not a separate event.
    if summary.acknowledged_at is not None and summary.acknowledged_at != summary.closed_at:
        add(
            summary.acknowledged_at,
            EventKind.ACKNOWLEDGED,
            by=summary.acknowledged_by,
        )
    met_by: dict[str, str] = {}
    for item in entries:
        clock_kind = str(item.detail.get("clock", ""))
        if item.action == "assigned":
            assignee = people.get(str(item.detail.get("assignee", "")), "")
            add(
                parse_iso(item.at),
                EventKind.ASSIGNED,
                by=item.actor,
                text=assignee,
            )
        elif item.action == "clock-started":
            due = item.detail.get("due_at")
            add(
                parse_iso(item.at),
                EventKind.DEADLINE_SET,
                by=item.actor,
                clock=clock_kind,
                due_at=parse_iso(str(due)) if due else None,
            )
        elif item.action == "clock-met":
            met_by[clock_kind] = item.actor
    for clock in view.clocks:
        late = clock.met_at is not None and clock.met_at > clock.due_at
        unmet_past_due = clock.met_at is None and clock.due_at <= now
        closed_first = summary.closed_at is not None and summary.closed_at < clock.due_at
        if late or (unmet_past_due and not closed_first):
            add(
                clock.due_at,
                EventKind.DEADLINE_MISSED,
                clock=clock.kind,
                due_at=clock.due_at,
            )
        if clock.met_at is not None:
            by = met_by.get(clock.kind)
            if by is None and clock.kind in INTAKE_CLOCKS:
                by = summary.acknowledged_by  # acknowledging meets the intake clock
            add(
                clock.met_at,
                EventKind.DEADLINE_MET,
                by=by,
                clock=clock.kind,
                due_at=clock.due_at,
                late=late,
            )
    return events


def merge_events(events: Sequence[FileEvent]) -> tuple[FileEvent, ...]:
    """Oldest first; at the same instant, in the order a case's life runs, then by reference."""
    return tuple(sorted(events, key=lambda e: (e.at, _RANK[e.kind], e.ref)))


async def child_file(
    service: CaseService,
    identity: Identity,
    ref: str,
    *,
    now: datetime | None = None,
    confirmed: Collection[str] = (),
    chunk_size: int = CHUNK_SIZE,
) -> ChildFile:
    """The file of the child named in case ``ref``, as ``identity`` may see it.

    ``confirmed`` names (by reference) name-only matches the person has judged to be the same
    child: those are merged like a full match, for this view only (nothing about the match is
    stored; the audit entry counts them).

    Raises :class:`~sgalert.errors.NotFound` for an unknown case,
    :class:`~sgalert.errors.NotEntitled` (audited) when the person cannot open it, and
    :class:`~sgalert.errors.InvalidInput` when the case names no child. ``now`` decides which
    unmet deadlines have been missed. Costs one facts decryption per case the person can open:
    see the module docstring for limits.
    """
    anchor = await service.summary(ref, viewer=UPKEEP)  # any case: a refusal is audited
    first = await _children(service, identity, [anchor.id])
    if anchor.id not in first:
        await _refuse(service, identity, anchor)
    anchor_child = first[anchor.id]
    if anchor_child is None:
        raise InvalidInput(
            f"case {anchor.ref} records no child's name, so it has no child file; read the case"
            " and note who it is about"
        )
    rows = await service.store.fetchall("SELECT id, rowid FROM cases ORDER BY received_at, rowid")
    ids = [str(row[0]) for row in rows]
    store_mark = (len(rows), max((int(row[1]) for row in rows), default=0))
    matches: dict[str, Match] = {anchor.id: Match.ANCHOR}
    searched = 0
    step = max(chunk_size, 1)
    for start in range(0, len(ids), step):
        children = await _children(service, identity, ids[start : start + step])
        searched += len(children)
        for case_id, child in children.items():
            if child is None or case_id == anchor.id:
                continue
            found = compare(anchor_child, child)
            if found is not None:
                matches[case_id] = found
    if confirmed:
        wanted = {ref.strip().upper() for ref in confirmed}
        named = [i for i, m in matches.items() if m is Match.NAME_ONLY]
        async with service.store.read() as db:
            rows = await fetch_in(db, "SELECT id, ref FROM cases WHERE id IN ({ids})", named)
        for row in rows:
            if str(row[1]) in wanted:
                matches[str(row[0])] = Match.CONFIRMED
    merged = [i for i, m in matches.items() if m is not Match.NAME_ONLY]
    views: list[CaseView] = []
    for start in range(0, len(merged), 200):
        views += await service.open_cases(identity, merged[start : start + 200])
    views.sort(key=lambda v: (v.summary.received_at, v.summary.ref))
    anchor_view = next((v for v in views if v.summary.id == anchor.id), None)
    if anchor_view is None:  # access was withdrawn while the file was being built
        await _refuse(service, identity, anchor)
    possible: list[CaseSummary] = []
    for case_id in (i for i, m in matches.items() if m is Match.NAME_ONLY):
        try:
            possible.append(await service.summary(case_id, viewer=identity))
        except NotFound:  # deleted by retention a moment ago
            continue
    possible.sort(key=lambda s: (s.received_at, s.ref))
    origins, entries, people = await _context(service, [v.summary.id for v in views])
    moment = now or utcnow()
    events: list[FileEvent] = []
    for view in views:
        own = [e for e in entries if e.case_id == view.summary.id]
        events += _case_events(view, origins.get(view.summary.id), own, people, moment)
    name = next(
        (v for k in NAME_FACTS if isinstance(v := anchor_view.facts.get(k), str) and v.strip()),
        "",
    )
    judged = sum(m is Match.CONFIRMED for m in matches.values())
    async with service.store.write() as db:
        await audit.append(
            db,
            [
                audit.AuditEvent(
                    identity.email,
                    "child-file-viewed",
                    anchor.id,
                    {"cases": len(views), "possible": len(possible), "searched": searched}
                    | ({"confirmed": judged} if judged else {}),
                )
            ],
        )
    return ChildFile(
        anchor=anchor_view.summary,
        child_name=name.strip(),
        child_dob=anchor_child.dob,
        cases=tuple(
            FileCase(v.summary, matches.get(v.summary.id, Match.SAME_CHILD)) for v in views
        ),
        possible=tuple(FileCase(s, Match.NAME_ONLY) for s in possible),
        events=merge_events(events),
        searched=searched,
        store_mark=store_mark,
    )


async def is_stale(service: CaseService, found: ChildFile) -> bool:
    """Whether a case was added or removed, or a listed case changed, since ``found`` was built.

    Metadata only, so it needs no key and is not audited; a new case may or may not be about the
    child, and only building the file again can tell.
    """
    rows = await service.store.fetchall("SELECT COUNT(*), COALESCE(MAX(rowid), 0) FROM cases")
    if (int(rows[0][0]), int(rows[0][1])) != found.store_mark:
        return True
    listed = {c.summary.id: c.summary.updated_at for c in (*found.cases, *found.possible)}
    async with service.store.read() as db:
        current = await fetch_in(
            db, "SELECT id, updated_at FROM cases WHERE id IN ({ids})", list(listed)
        )
    return len(current) != len(listed) or any(
        parse_iso(str(row[1])) != listed[str(row[0])] for row in current
    )


__all__ = [
    "ChildFile",
    "EventKind",
    "FileCase",
    "FileEvent",
    "Match",
    "child_file",
    "is_stale",
    "merge_events",
    "name_key",
    "names_child",
    "parse_dob",
]
