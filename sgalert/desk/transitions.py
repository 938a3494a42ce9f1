"""Every state change of a case, each one write transaction with its own check.

Each transition re-reads the case inside its transaction, checks the person's entitlement (they
must unwrap the case's content key) and the case's state, makes the change, and appends the audit
entry, so two desks acting at once cannot both succeed on a stale view and a refusal records
nothing but itself (see :mod:`sgalert.desk.access`). The transitions take what they need (the
store, the clock, the escalation plan) rather than the service façade, so the engine can call
them too: a reply to a page acknowledges through :func:`mark_acknowledged`, the same write as
the desk's :func:`acknowledge`.

Acknowledging by working: every action on a NEW case (a note, a decision, a referral, an
assignment, a clock started, an attachment exported) acknowledges it first, as the person acting
and in the action's own transaction (:func:`acknowledge_by_working`), so whoever is already
working on a case is never still paged about it. The audit entry says so (``via: working`` and
the action).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

import aiosqlite

from sgalert.clock import Clock, iso
from sgalert.desk.access import content_key, refusals
from sgalert.desk.views import find_summary
from sgalert.errors import IllegalTransition, InvalidInput, NotEntitled, NotFound
from sgalert.model import CaseState, CaseSummary, KeyName
from sgalert.records import audit, keyring
from sgalert.records.cases import data_key_info
from sgalert.records.chronology import INSERT_ENTRY, EntryKind, seal_entry
from sgalert.records.crypto import wrap_to_public_key
from sgalert.records.entitlement import may_read
from sgalert.records.keyring import Identity
from sgalert.records.store import Store, on_connection
from sgalert.routing.escalation import (
    ACTION_CLOCKS,
    Plan,
    start_action_clock,
    stop_for_acknowledged,
)

# Where a case can be referred: a label for the record, and the clock a referral starts.
REFERRALS: dict[str, tuple[str, str | None]] = {
    "lado": ("the LADO (allegation against an adult working with children)", "lado-1-working-day"),
    "social-care": ("children's social care", None),
    "police": ("the police", None),
    "prevent": ("Channel / Prevent", None),
    "early-help": ("early help", None),
    "marac": ("MARAC (high-risk domestic abuse)", None),
}

# More work for an entry's transaction (a referral's clock), so a refusal records nothing at all.
Then = Callable[[aiosqlite.Connection, CaseSummary], Awaitable[object]]


async def _touch(db: aiosqlite.Connection, case_id: str, now: datetime) -> None:
    await db.execute("UPDATE cases SET updated_at = ? WHERE id = ?", (iso(now), case_id))


# ----- acknowledging ------------------------------------------------------------------------


async def mark_acknowledged(
    db: aiosqlite.Connection,
    case_id: str,
    person_id: str,
    actor: str,
    now: datetime,
    *,
    via: str,
    read: bool = True,
    action: str | None = None,
) -> None:
    """NEW -> ACKNOWLEDGED inside the caller's transaction, which has checked the case is new:
    its escalation stops, the case records who, and the audit log how (``direct``, ``reply``,
    ``working``) and, for the desk, whether the person had read it. The one write of an
    acknowledgement, whichever door it came through. ``read=False`` leaves the clocks that ask
    for the notice to be read open (see :func:`~sgalert.routing.escalation.stop_for_acknowledged`).
    """
    await on_connection(db, lambda conn: stop_for_acknowledged(conn, case_id, now, read=read))
    await db.execute(
        "UPDATE cases SET state = 'acknowledged', acknowledged_at = ?,"
        " acknowledged_by = ?, updated_at = ? WHERE id = ? AND state = 'new'",
        (iso(now), person_id, iso(now), case_id),
    )
    detail: dict[str, object] = {"via": via}
    if not read:
        detail["read"] = False
    if action is not None:
        detail["action"] = action
    await audit.append(db, [audit.AuditEvent(actor, "acknowledged", case_id, detail)])


async def acknowledge_by_working(
    db: aiosqlite.Connection, identity: Identity, summary: CaseSummary, now: datetime, action: str
) -> None:
    """Inside an action's transaction, after its checks: a NEW case is acknowledged first, as
    the person acting, audited as acknowledged by working (``action`` names the work). Working
    on a case means having it open, so it counts as read."""
    if summary.state is CaseState.NEW:
        await mark_acknowledged(
            db, summary.id, identity.id, identity.email, now, via="working", action=action
        )


async def acknowledge(
    store: Store, clock: Clock, identity: Identity, ref: str, *, read: bool = True
) -> CaseSummary:
    """NEW -> ACKNOWLEDGED, decided in one transaction so no escalation can follow it.

    ``read``: whether the person has read the case (from the queue the desk asks). Unread, the
    escalation stops but a "read before the next school day" clock stays open until someone
    opens the case."""
    async with refusals(store, identity, "acknowledge"), store.write() as db:
        summary = await find_summary(db, ref)
        await content_key(db, identity, summary)
        if summary.state is CaseState.ACKNOWLEDGED:
            raise IllegalTransition(
                f"case {summary.ref} was already acknowledged by {summary.acknowledged_by}"
            )
        if summary.state is CaseState.CLOSED:
            raise IllegalTransition(f"case {summary.ref} is closed")
        await mark_acknowledged(
            db, summary.id, identity.id, identity.email, clock(), via="direct", read=read
        )
        return await find_summary(db, summary.id)


# ----- giving the case to someone -----------------------------------------------------------


async def assign(
    store: Store, clock: Clock, identity: Identity, ref: str, assignee_email: str
) -> CaseSummary:
    """Give the case to an entitled person; someone who cannot read it is refused."""
    async with refusals(store, identity, "assign"), store.write() as db:
        summary = await find_summary(db, ref)
        await content_key(db, identity, summary)
        if summary.state is CaseState.CLOSED:
            raise IllegalTransition(f"case {summary.ref} is closed")
        assignee = await keyring.find_person(db, assignee_email)
        if assignee.removed or not await on_connection(
            db, lambda conn: may_read(conn, assignee.id, summary.id)
        ):
            raise NotEntitled(
                f"{assignee.email} is not entitled to case {summary.ref}; grant access first"
            )
        await acknowledge_by_working(db, identity, summary, clock(), "assign")
        await db.execute(
            "UPDATE cases SET assignee_id = ?, updated_at = ? WHERE id = ?",
            (assignee.id, iso(clock()), summary.id),
        )
        await audit.append(
            db,
            [audit.AuditEvent(identity.email, "assigned", summary.id, {"assignee": assignee.id})],
        )
        return await find_summary(db, summary.id)


async def grant(store: Store, identity: Identity, ref: str, grantee_email: str) -> None:
    """Wrap the case's content key to one more person (an investigator, a newcomer).

    The whistleblower's identity key is never granted this way: it stays with its compartment.
    """
    async with refusals(store, identity, "grant"), store.write() as db:
        summary = await find_summary(db, ref)
        key = await content_key(db, identity, summary)
        grantee = await keyring.find_person(db, grantee_email)
        if grantee.removed:
            raise NotEntitled(f"{grantee.email} has been removed")
        info = data_key_info(summary.id, KeyName.CONTENT, "person", grantee.id, 0)
        await db.execute(
            "INSERT OR REPLACE INTO key_wraps (case_id, key_name, recipient_kind,"
            " recipient, version, wrapped) VALUES (?, 'content', 'person', ?, 0, ?)",
            (summary.id, grantee.id, wrap_to_public_key(key, grantee.x25519_public, info)),
        )
        await audit.append(
            db,
            [
                audit.AuditEvent(
                    identity.email, "access-granted", summary.id, {"grantee": grantee.id}
                )
            ],
        )


# ----- signed entries: notes, decisions, referrals, the outcome -----------------------------


async def add_entry(
    store: Store,
    clock: Clock,
    identity: Identity,
    ref: str,
    kind: EntryKind,
    text: str,
    *,
    action: str,
    reason: str | None = None,
    corrects: str | None = None,
    refused_when_closed: str | None = None,
    then: Then | None = None,
) -> str:
    """Seal and store one signed entry in one write transaction that re-reads the case.

    ``refused_when_closed``: the entry is an action a closed case does not take; the message
    raised. ``then``: more work for the same transaction (a referral's clock), so a refusal
    anywhere records nothing at all.
    """
    if not text.strip():
        raise InvalidInput("the entry's text is empty")
    async with refusals(store, identity, action), store.write() as db:
        summary = await find_summary(db, ref)
        key = await content_key(db, identity, summary)
        if refused_when_closed is not None and summary.state is CaseState.CLOSED:
            raise IllegalTransition(refused_when_closed.format(ref=summary.ref))
        if corrects is not None:
            cursor = await db.execute(
                "SELECT 1 FROM chronology WHERE id = ? AND case_id = ?", (corrects, summary.id)
            )
            if await cursor.fetchone() is None:
                raise NotFound(f"case {summary.ref} has no entry {corrects} to correct")
        await acknowledge_by_working(db, identity, summary, clock(), action)
        entry_id, row = seal_entry(
            identity, key, summary.id, kind, text, at=clock(), reason=reason, corrects=corrects
        )
        await db.execute(INSERT_ENTRY, row)
        await _touch(db, summary.id, clock())
        detail: dict[str, object] = {"entry": entry_id, "kind": kind.value}
        if corrects:
            detail["corrects"] = corrects
        await audit.append(db, [audit.AuditEvent(identity.email, action, summary.id, detail)])
        if then is not None:
            await then(db, summary)
        return entry_id


async def add_note(
    store: Store,
    clock: Clock,
    identity: Identity,
    ref: str,
    text: str,
    *,
    corrects: str | None = None,
) -> str:
    """Add a signed note; a correction names the entry it corrects, which stays as it was."""
    return await add_entry(
        store, clock, identity, ref, EntryKind.NOTE, text, action="note-added", corrects=corrects
    )


async def record_decision(
    store: Store, clock: Clock, identity: Identity, ref: str, decision: str, reason: str
) -> str:
    """A signed decision and its reason; refused on a closed case, judged in the writing
    transaction so a close committed by another desk a moment before is seen."""
    if not reason.strip():
        raise InvalidInput("a decision needs its reason")
    return await add_entry(
        store,
        clock,
        identity,
        ref,
        EntryKind.DECISION,
        decision,
        action="decision-recorded",
        reason=reason,
        refused_when_closed="case {ref} is closed; reopen it to record a decision",
    )


async def refer(
    store: Store,
    clock: Clock,
    plan: Plan | None,
    identity: Identity,
    ref: str,
    to: str,
    text: str,
) -> str:
    """Record a referral as a signed entry; a LADO referral starts its 1-working-day clock.

    Entry and clock are one transaction that checks the state first: a closed case is
    refused and records nothing, rather than keeping a referral whose clock never started.
    """
    if to not in REFERRALS:
        raise InvalidInput(f"unknown referral {to!r}; use one of {', '.join(REFERRALS)}")
    label, kind = REFERRALS[to]

    async def start(db: aiosqlite.Connection, summary: CaseSummary) -> None:
        if kind is not None:
            await start_clock_in(db, clock, plan, identity, summary, kind)

    return await add_entry(
        store,
        clock,
        identity,
        ref,
        EntryKind.REFERRAL,
        f"Referred to {label}. {text}".strip(),
        action="referred",
        refused_when_closed="case {ref} is closed; a referral is not recorded on it",
        then=start,
    )


async def close_case(
    store: Store, clock: Clock, identity: Identity, ref: str, outcome: str, reason: str
) -> CaseSummary:
    """Close with an outcome and its reason, as a signed entry. Closing also acknowledges."""
    if not outcome.strip() or not reason.strip():
        raise InvalidInput("closing needs both an outcome and its reason")
    async with refusals(store, identity, "close"), store.write() as db:
        summary = await find_summary(db, ref)
        key = await content_key(db, identity, summary)
        if summary.state is CaseState.CLOSED:
            raise IllegalTransition(f"case {summary.ref} is already closed")
        now_dt = clock()
        now = iso(now_dt)
        entry_id, row = seal_entry(
            identity, key, summary.id, EntryKind.OUTCOME, outcome, at=now_dt, reason=reason
        )
        await db.execute(INSERT_ENTRY, row)
        await on_connection(db, lambda conn: stop_for_acknowledged(conn, summary.id, clock()))
        await db.execute(
            "UPDATE cases SET state = 'closed', closed_at = ?, closed_by = ?, updated_at = ?,"
            " acknowledged_at = COALESCE(acknowledged_at, ?),"
            " acknowledged_by = COALESCE(acknowledged_by, ?) WHERE id = ?",
            (now, identity.id, now, now, identity.id, summary.id),
        )
        await audit.append(
            db, [audit.AuditEvent(identity.email, "closed", summary.id, {"entry": entry_id})]
        )
        return await find_summary(db, summary.id)


# ----- statutory clocks ---------------------------------------------------------------------


async def start_clock_in(
    db: aiosqlite.Connection,
    clock: Clock,
    plan: Plan | None,
    identity: Identity,
    summary: CaseSummary,
    kind: str,
) -> datetime:
    """Start a clock inside the caller's transaction, with its audit entry."""
    assert plan is not None, "a statutory clock needs the config's escalation plan"
    now = clock()
    due = await on_connection(
        db, lambda conn: start_action_clock(conn, plan, summary.id, kind, now)
    )
    detail = {"clock": kind, "due_at": iso(due)}
    await audit.append(db, [audit.AuditEvent(identity.email, "clock-started", summary.id, detail)])
    return due


async def start_clock(
    store: Store, clock: Clock, plan: Plan | None, identity: Identity, ref: str, kind: str
) -> datetime:
    """Start a statutory clock (LADO, suspension confirmation, file transfer)."""
    if kind not in ACTION_CLOCKS:
        raise InvalidInput(f"unknown clock {kind!r}; use one of {', '.join(ACTION_CLOCKS)}")
    async with refusals(store, identity, "start-clock"), store.write() as db:
        summary = await find_summary(db, ref)
        await content_key(db, identity, summary)
        if summary.state is CaseState.CLOSED:
            raise IllegalTransition(f"case {summary.ref} is closed")
        await acknowledge_by_working(db, identity, summary, clock(), "start-clock")
        return await start_clock_in(db, clock, plan, identity, summary, kind)


async def meet_clock(store: Store, clock: Clock, identity: Identity, ref: str, kind: str) -> None:
    """Record that a statutory deadline was met; its warnings stop."""
    async with refusals(store, identity, "meet-clock"), store.write() as db:
        summary = await find_summary(db, ref)
        await content_key(db, identity, summary)
        cursor = await db.execute(
            "UPDATE clocks SET met_at = ? WHERE case_id = ? AND kind = ? AND met_at IS NULL",
            (iso(clock()), summary.id, kind),
        )
        if cursor.rowcount == 0:
            raise NotFound(f"case {summary.ref} has no open clock {kind}")
        await audit.append(
            db, [audit.AuditEvent(identity.email, "clock-met", summary.id, {"clock": kind})]
        )
