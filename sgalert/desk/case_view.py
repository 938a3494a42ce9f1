"""What an entitled person sees of a case once it is decrypted: :class:`CaseView`.

A case opened on its own is checked against the manifest the audit chain holds for it
(:mod:`sgalert.records.manifest`): a record changed behind sgalert's back is shown with one line
saying so (:attr:`CaseView.tampered`), not as if whole.

Opening a case is itself recorded: every read is audited (``case-read``, and whether the
reporter's identity was in it), in the transaction that decrypts it, and a person who may not
read the case is refused and the refusal audited (see :mod:`sgalert.desk.access`). Opening one
case meets the clocks that ask for it to be read (an Encompass notice, before the next school
day), audited as ``clock-met`` by reading.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import aiosqlite

from sgalert.clock import parse_iso
from sgalert.desk.access import Refused, destroyed, refusals
from sgalert.desk.views import SUMMARY_SQL, CaseClock, find_summary, summary_from_row
from sgalert.model import CaseSummary, KeyName
from sgalert.records import audit, manifest
from sgalert.records.cases import (
    FIELD_ATTACHMENTS,
    FIELD_BODY,
    FIELD_FACTS,
    open_field,
    open_fields,
    unwrap_key_versions,
)
from sgalert.records.chronology import ChronologyEntry, read_entries
from sgalert.records.keyring import Identity
from sgalert.records.store import Store, fetch_in, on_connection
from sgalert.routing.escalation import meet_by_reading


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True, slots=True)
class CaseView:
    """What an entitled person sees of a case once it is decrypted."""

    summary: CaseSummary
    facts: dict[str, Any]
    body_text: str
    subject: str
    sender: dict[str, Any] | None
    notes: dict[str, Any]
    attachments: tuple[Attachment, ...]
    reporter: dict[str, Any] | None
    chronology: tuple[ChronologyEntry, ...]
    clocks: tuple[CaseClock, ...]
    # One line when the record is not what the audit chain's manifest says (a chronology entry
    # or sealed field removed, swapped or added outside sgalert): shown, never silently whole.
    tampered: str | None = None


@dataclass(frozen=True, slots=True)
class CasePreview:
    """The queue's glance at a case: its facts, clocks and latest entries, not its message."""

    summary: CaseSummary
    facts: dict[str, Any]
    clocks: tuple[CaseClock, ...]
    latest: tuple[ChronologyEntry, ...]  # the last few entries, oldest first


PREVIEW_ENTRIES = 3


async def preview_case(store: Store, identity: Identity, ref: str) -> CasePreview | None:
    """Decrypt the facts and the last :data:`PREVIEW_ENTRIES` chronology entries of one case
    for the queue's preview pane; None if this person may not read it (a glance down the queue
    is not an attempt on a case, so that is not a refusal). Audited as ``case-previewed``: a
    preview is not reading the notice, so it meets no clock."""
    async with store.write() as db:
        summary = await find_summary(db, ref)
        if summary.destroyed_at is not None:
            return None
        versions = await unwrap_key_versions(db, identity, [summary.id])
        keys = {slot: found[min(found)] for slot, found in versions.items()}
        content = (summary.id, KeyName.CONTENT.value)
        if content not in keys:
            return None
        facts = json.loads(await open_field(db, keys, summary.id, FIELD_FACTS) or b"{}")
        # Every version: entries written after a revoke are sealed with the rotated key.
        every = {summary.id: tuple(versions[content].values())}
        entries = (await read_entries(db, every))[summary.id]
        clocks = (await _clocks(db, [summary.id]))[summary.id]
        await audit.append(db, [audit.AuditEvent(identity.email, "case-previewed", summary.id, {})])
    return CasePreview(summary, facts, tuple(clocks), tuple(entries[-PREVIEW_ENTRIES:]))


def _read_event(identity: Identity, case_id: str, view: CaseView) -> audit.AuditEvent:
    detail = {"identity": view.reporter is not None} | ({"tampered": True} if view.tampered else {})
    return audit.AuditEvent(identity.email, "case-read", case_id, detail)


async def open_case(
    store: Store, identity: Identity, ref: str, *, now: datetime | None = None
) -> CaseView:
    """Decrypt what this person may see of one case. Audited, refusals included. Given
    ``now``, the clocks met by reading the case are met (see :func:`meet_by_reading`)."""
    async with refusals(store, identity, "read"), store.write() as db:
        summary = await find_summary(db, ref)
        if summary.destroyed_at is not None:
            raise destroyed(identity, summary)
        views = await _open(db, identity, [summary])
        if summary.id not in views:
            raise Refused(summary.id, summary.ref)
        view = views[summary.id]
        found = await on_connection(db, lambda conn: manifest.check_now(conn, summary.id))
        if found:
            view = replace(view, tampered=found[0].line())
        events = [_read_event(identity, summary.id, view)]
        if now is not None:
            met = await on_connection(db, lambda conn: meet_by_reading(conn, summary.id, now))
            events += [
                audit.AuditEvent(
                    identity.email, "clock-met", summary.id, {"clock": kind, "via": "read"}
                )
                for kind in met
            ]
            if met:
                clocks = (await _clocks(db, [summary.id]))[summary.id]
                view = replace(
                    view, summary=await find_summary(db, summary.id), clocks=tuple(clocks)
                )
        await audit.append(db, events)
        return view


async def open_cases(store: Store, identity: Identity, refs: Sequence[str]) -> list[CaseView]:
    """Decrypt many cases in one transaction (child-file matching, bulk review).

    Cases the person may not read are left out, not refused: a search over a queue is not an
    attempt on one case. Each case read is audited.
    """
    async with store.write() as db:
        marks = ",".join("?" * len(refs))
        cursor = await db.execute(
            SUMMARY_SQL + f" WHERE c.id IN ({marks}) OR c.ref IN ({marks})",
            [*refs, *(ref.strip().upper() for ref in refs)],
        )
        summaries = [summary_from_row(row) for row in await cursor.fetchall()]
        views = await _open(db, identity, summaries)
        await audit.append(
            db, [_read_event(identity, case_id, view) for case_id, view in views.items()]
        )
    order = {s.id: i for i, s in enumerate(summaries)}
    return sorted(views.values(), key=lambda v: order[v.summary.id])


async def _clocks(db: aiosqlite.Connection, ids: Sequence[str]) -> dict[str, list[CaseClock]]:
    clocks: dict[str, list[CaseClock]] = {case_id: [] for case_id in ids}
    rows = await fetch_in(
        db, "SELECT case_id, kind, due_at, met_at FROM clocks WHERE case_id IN ({ids})", ids
    )
    for row in sorted(rows, key=lambda row: str(row["due_at"])):  # ISO UTC: sorts as time
        clocks[row["case_id"]].append(
            CaseClock(
                row["kind"],
                parse_iso(row["due_at"]),
                parse_iso(row["met_at"]) if row["met_at"] else None,
            )
        )
    return clocks


async def _open(
    db: aiosqlite.Connection, identity: Identity, summaries: Sequence[CaseSummary]
) -> dict[str, CaseView]:
    """The views of the cases this person can unwrap; the others are left out."""
    versions = await unwrap_key_versions(db, identity, [s.id for s in summaries])
    keys = {slot: found[min(found)] for slot, found in versions.items()}
    readable = [s for s in summaries if (s.id, KeyName.CONTENT.value) in keys]
    opened = await open_fields(db, keys, [s.id for s in readable])
    # Every version: entries written after a revoke are sealed with the rotated key.
    content_keys = {s.id: tuple(versions[(s.id, KeyName.CONTENT.value)].values()) for s in readable}
    chronologies = await read_entries(db, content_keys)
    clocks = await _clocks(db, [s.id for s in readable])
    views: dict[str, CaseView] = {}
    for summary in readable:
        fields = opened[summary.id]
        reporter = json.loads(fields["reporter"]) if "reporter" in fields else None
        attachments = tuple(
            Attachment(a["filename"], a["content_type"], int(a["size"]))
            for a in json.loads(fields.get(FIELD_ATTACHMENTS, b"[]"))
        )
        views[summary.id] = CaseView(
            summary=summary,
            facts=json.loads(fields.get(FIELD_FACTS, b"{}")),
            body_text=fields.get(FIELD_BODY, b"").decode("utf-8", "replace"),
            subject=fields.get("subject", b"").decode("utf-8", "replace"),
            sender=json.loads(fields["sender"]) if "sender" in fields else None,
            notes=json.loads(fields.get("ingest_notes", b"{}")),
            attachments=attachments,
            reporter=reporter,
            chronology=tuple(chronologies[summary.id]),
            clocks=tuple(clocks[summary.id]),
        )
    return views
