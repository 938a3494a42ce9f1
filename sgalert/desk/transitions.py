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

import sqlite3
from collections.abc import Awaitable, Callable
from datetime import datetime

import aiosqlite

from sgalert.clock import Clock, iso
from sgalert.desk.access import Refused, content_key, key_versions, refusals
from sgalert.desk.views import find_summary
from sgalert.errors import IllegalTransition, InvalidInput, NotEntitled, NotFound
from sgalert.model import CaseState, CaseSummary, KeyName
from sgalert.records import audit, crypto, keyring
from sgalert.records.cases import WrapRecipient, data_key_info, open_batch_keys
from sgalert.records.chronology import EntryKind, insert_entry, seal_entry
from sgalert.records.crypto import wrap_to_public_key
from sgalert.records.entitlement import entitled_people, may_read
from sgalert.records.keyring import Identity
from sgalert.records.manifest import MANIFEST
from sgalert.records.personkeys import alerting, check_person_key
from sgalert.records.shredding import (
    HOLD_PLACED_ACTION,
    HOLD_RELEASED_ACTION,
    place_hold_now,
    release_hold_now,
)
from sgalert.records.store import Store, on_connection
from sgalert.routing.escalation import (
    ACTION_CLOCKS,
    Plan,
    start_action_clock,
    stop_for_acknowledged,
)
from sgalert.rules import access as rules

# Where a case can be referred: a label for the record, and the clock a referral starts.
REFERRALS: dict[str, tuple[str, str | None]] = {
    "lado": ("the LADO (allegation against an adult working with children)", "lado-1-working-day"),
    "social-care": ("children's social care", None),
    "police": ("the police", None),
    "prevent": ("Channel / Prevent", None),
    "early-help": ("early help", None),
    "marac": ("MARAC (high-risk domestic abuse)", None),
}

# The outcomes a DSL closes with most often (the desk's list; the command line accepts them as
# they are, since they name nobody). Any other outcome is free text and may.
OUTCOMES: tuple[str, ...] = (
    "No further action",
    "Monitoring in school",
    "Early help offered",
    "Referred to children's social care",
    "Referred to the LADO",
    "Referred to the police",
    "Referred to Channel/Prevent",
    "Passed to the Monitoring Officer",
)

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


async def eligible_assignees(store: Store, identity: Identity, ref: str) -> list[keyring.Person]:
    """Who the case may be given to: current people entitled to read it under the access policy
    (never the head for an allegation about the head). Asked by someone who can read it."""
    async with refusals(store, identity, "list-assignees"), store.write() as db:
        summary = await find_summary(db, ref)
        await content_key(db, identity, summary)
        entitled = await on_connection(db, lambda conn: entitled_people(conn, summary.id))
        people = [await keyring.person_by_id(db, p.id) for p in entitled.values()]
    return sorted((p for p in people if not p.removed), key=lambda p: p.email.lower())


async def grant(
    store: Store, identity: Identity, ref: str, grantee_email: str, *, with_identity: bool = False
) -> None:
    """Wrap the case's content key (every version of it) to one more person: an investigator,
    a newcomer. Who may grant, and to whom, is :mod:`sgalert.rules.access`'s: a whistleblowing
    case only by the monitoring officer, never the head for an allegation about the head.

    The whistleblower's identity key goes too only with ``with_identity``, the monitoring
    officer's explicit choice; otherwise it stays with its compartment.
    """
    async with refusals(store, identity, "grant"), alerting(store), store.write() as db:
        summary = await find_summary(db, ref)
        versions = await key_versions(db, identity, summary)
        role = identity.person.role
        if not rules.may_grant(role, summary.source, summary.flags):
            raise Refused(
                summary.id,
                summary.ref,
                f"grant access to case {summary.ref}",
                {"reason": "not a grantor of this case"},
            )
        grantee = await keyring.find_person(db, grantee_email)
        if grantee.removed:
            raise NotEntitled(f"{grantee.email} has been removed")
        if not rules.may_hold(grantee.role, summary.flags):
            raise Refused(
                summary.id,
                summary.ref,
                f"grant case {summary.ref} to {grantee.email}",
                {"grantee": grantee.id, "reason": "about-head"},
            )
        wraps = {KeyName.CONTENT: versions}
        if with_identity:
            if not rules.may_grant_identity(role, summary.source):
                raise Refused(
                    summary.id,
                    summary.ref,
                    f"grant the reporter's identity on case {summary.ref}",
                    {"grantee": grantee.id},
                )
            wraps[KeyName.IDENTITY] = await key_versions(db, identity, summary, KeyName.IDENTITY)
        for key_name, keys in wraps.items():
            for version, key in keys.items():
                await _wrap_to_person(db, summary.id, key_name, version, key, grantee)
        detail: dict[str, object] = {"grantee": grantee.id}
        if with_identity:
            detail["identity"] = True
        await audit.append(
            db, [audit.AuditEvent(identity.email, "access-granted", summary.id, detail)]
        )


async def _wrap_to_person(
    db: aiosqlite.Connection,
    case_id: str,
    key_name: KeyName,
    version: int,
    key: bytes,
    person: keyring.Person,
) -> None:
    public_raw = crypto.raw_public_bytes(person.x25519_public)
    # Only to the key the audit log recorded for them: one swapped in the store is refused.
    await check_person_key(db, person.id, person.email, public_raw)
    info = data_key_info(case_id, key_name, WrapRecipient.PERSON, person.id, version)
    await db.execute(
        "INSERT OR REPLACE INTO key_wraps (case_id, key_name, recipient_kind,"
        " recipient, version, wrapped) VALUES (?, ?, 'person', ?, ?, ?)",
        (
            case_id,
            key_name.value,
            person.id,
            version,
            wrap_to_public_key(key, person.x25519_public, info),
        ),
    )


async def revoke(store: Store, identity: Identity, ref: str, person_email: str) -> int:
    """Take back a grant: the person's own key wraps on the case are deleted, and each data key
    they held is rotated, so every entry written from now on is sealed with a new key wrapped
    to everyone else who reads the case, and a copy of the old one opens nothing new. Who may
    revoke is who may grant. Returns the new key version. Audited; a refusal too.

    Someone who reads the case through their role's group keeps it: that is ``user remove``'s.
    """
    async with refusals(store, identity, "revoke"), alerting(store), store.write() as db:
        summary = await find_summary(db, ref)
        await key_versions(db, identity, summary)
        if not rules.may_grant(identity.person.role, summary.source, summary.flags):
            raise Refused(
                summary.id,
                summary.ref,
                f"revoke access to case {summary.ref}",
                {"reason": "not a grantor of this case"},
            )
        person = await keyring.find_person(db, person_email)
        cursor = await db.execute(
            "SELECT DISTINCT key_name FROM key_wraps WHERE case_id = ?"
            " AND recipient_kind = 'person' AND recipient = ?",
            (summary.id, person.id),
        )
        held = sorted(KeyName(str(row[0])) for row in await cursor.fetchall())
        if not held:
            raise NotFound(
                f"{person.email} holds no grant on case {summary.ref}; someone who reads it"
                " through their role is removed with `sgalert user remove`"
            )
        # The keys are read (and the revoker's reach checked) before anything is deleted.
        keys = {name: await key_versions(db, identity, summary, name) for name in held}
        await db.execute(
            "DELETE FROM key_wraps WHERE case_id = ? AND recipient_kind = 'person'"
            " AND recipient = ?",
            (summary.id, person.id),
        )
        if await on_connection(db, lambda conn: may_read(conn, person.id, summary.id)):
            # Rolled back: revoking a grant would not stop someone who reads it by their role.
            raise InvalidInput(
                f"{person.email} reads case {summary.ref} through their role, not only a grant;"
                " nothing was changed (`sgalert user remove` takes a role away)"
            )
        version = 0
        for name in held:
            version = max(version, await _rotate(db, identity, summary, name, keys[name]))
        await audit.append(
            db,
            [
                audit.AuditEvent(
                    identity.email,
                    "access-revoked",
                    summary.id,
                    {"person": person.id, "keys": [n.value for n in held], "version": version},
                )
            ],
        )
        return version


async def _rotate(
    db: aiosqlite.Connection,
    identity: Identity,
    summary: CaseSummary,
    key_name: KeyName,
    known: dict[int, bytes],
) -> int:
    """A new version of one data key, wrapped to every remaining holder of the current one."""
    cursor = await db.execute(
        "SELECT MAX(version) FROM key_wraps WHERE case_id = ? AND key_name = ?",
        (summary.id, key_name.value),
    )
    row = await cursor.fetchone()
    current = max(int(row[0]) if row and row[0] is not None else 0, max(known))
    cursor = await db.execute(
        "SELECT DISTINCT recipient_kind, recipient FROM key_wraps WHERE case_id = ?"
        " AND key_name = ?",
        (summary.id, key_name.value),
    )
    holders = [(str(r[0]), str(r[1])) for r in await cursor.fetchall()]
    batches = [r for kind, r in holders if kind == WrapRecipient.BATCH]
    opened = await open_batch_keys(db, identity, batches)
    if set(batches) - opened.keys():
        raise Refused(
            summary.id,
            summary.ref,
            f"rotate the key of case {summary.ref} (it needs someone who reads it by their role)",
        )
    new_key, version = crypto.new_data_key(), current + 1
    for kind, recipient in holders:
        if kind == WrapRecipient.BATCH:
            info = data_key_info(summary.id, key_name, WrapRecipient.BATCH, recipient, version)
            await db.execute(
                "INSERT INTO key_wraps (case_id, key_name, recipient_kind, recipient, version,"
                " wrapped) VALUES (?, ?, 'batch', ?, ?, ?)",
                (
                    summary.id,
                    key_name.value,
                    recipient,
                    version,
                    crypto.aead_seal(opened[recipient], new_key, info),
                ),
            )
        else:
            holder = await keyring.person_by_id(db, recipient)
            await _wrap_to_person(db, summary.id, key_name, version, new_key, holder)
    return version


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
        record = await insert_entry(db, row)
        await _touch(db, summary.id, clock())
        detail: dict[str, object] = {"entry": entry_id, "kind": kind.value, MANIFEST: record}
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
        record = await insert_entry(db, row)
        await on_connection(db, lambda conn: stop_for_acknowledged(conn, summary.id, clock()))
        await db.execute(
            "UPDATE cases SET state = 'closed', closed_at = ?, closed_by = ?, updated_at = ?,"
            " acknowledged_at = COALESCE(acknowledged_at, ?),"
            " acknowledged_by = COALESCE(acknowledged_by, ?) WHERE id = ?",
            (now, identity.id, now, now, identity.id, summary.id),
        )
        await audit.append(
            db,
            [
                audit.AuditEvent(
                    identity.email, "closed", summary.id, {"entry": entry_id, MANIFEST: record}
                )
            ],
        )
        return await find_summary(db, summary.id)


# ----- legal holds (retention) -------------------------------------------------------------

HoldChange = Callable[[sqlite3.Connection, str, str, str, str, datetime], None]


async def _hold_entry(
    store: Store,
    clock: Clock,
    identity: Identity,
    ref: str,
    text: str,
    reason: str | None,
    action: str,
    change: HoldChange,
) -> str:
    """A hold's signed, sealed decision and its plaintext row, in one transaction."""
    async with refusals(store, identity, action), store.write() as db:
        summary = await find_summary(db, ref)
        key = await content_key(db, identity, summary)
        now = clock()
        entry_id, row = seal_entry(
            identity, key, summary.id, EntryKind.DECISION, text, at=now, reason=reason
        )
        await on_connection(
            db, lambda conn: change(conn, summary.id, summary.ref, identity.id, entry_id, now)
        )
        record = await insert_entry(db, row)
        await _touch(db, summary.id, now)
        await audit.append(
            db,
            [
                audit.AuditEvent(
                    identity.email, action, summary.id, {"entry": entry_id, MANIFEST: record}
                )
            ],
        )
        return entry_id


async def place_hold(store: Store, clock: Clock, identity: Identity, ref: str, reason: str) -> str:
    """Put the case under a legal hold: retention never destroys it until the hold is released.

    The reason may name people, so it is a signed decision sealed in the case's record; the
    hold's own row holds only who and when. Open or closed cases alike; returns the entry id.
    """
    if not reason.strip():
        raise InvalidInput("a legal hold needs its reason")
    return await _hold_entry(
        store,
        clock,
        identity,
        ref,
        "Legal hold placed: this case is not to be destroyed under retention.",
        reason,
        HOLD_PLACED_ACTION,
        place_hold_now,
    )


async def release_hold(store: Store, clock: Clock, identity: Identity, ref: str) -> str:
    """Lift the case's legal hold (a signed entry); retention applies to it again."""
    return await _hold_entry(
        store,
        clock,
        identity,
        ref,
        "Legal hold released: retention applies to this case again.",
        None,
        HOLD_RELEASED_ACTION,
        release_hold_now,
    )


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
