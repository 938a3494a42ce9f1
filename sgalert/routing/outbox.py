"""Delivering the outbox: at least once, with retries, fallback channels, and every attempt audited.

A *page* is one notification to one person (or one shared channel) raised by one timer or
system alert; it starts as a *root* row on the channel its policy names. Rows are claimed per
channel in a write transaction that asks the rule of whatever raised them whether the page is
still wanted (:func:`sgalert.rules.statutory.page_still_wanted`): an escalation step is dropped
(``superseded``) once the case is acknowledged, a statutory clock's warning only once the clock
is met. A claimed row carries a lease (``claimed_until``); if the engine dies mid-send, the next
engine releases the claim when it takes over, so a notification may arrive twice but is never
lost (its idempotency key travels with it).

Failures are retried with capped, jittered exponential backoff for ever. After ``FALLBACK_AFTER``
failures a root row also queues the same page on every other channel that may carry it (a shared
channel never carries a whistleblowing or about-head page); only a root spawns fallbacks, so one
page is at most one row per channel. When every row of a page has failed, one system alert says
so; it is cleared by the next page for that case that gets through.

Each channel drains on its own task with a few sends in flight, so a black-holed mail server
never holds back the Teams card.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import logging
import secrets
import sqlite3
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sgalert.clock import Clock, iso, parse_iso, utcnow
from sgalert.model import CaseState, Role
from sgalert.ports import (
    DeliveryError,
    Document,
    Notification,
    Notifier,
    PageSource,
    Receipt,
    Recipient,
    Urgency,
)
from sgalert.records import audit
from sgalert.records.alerts import AlertKind, clear_alert, raise_alert
from sgalert.records.entitlement import entitled_people, people_in_roles
from sgalert.records.store import Store
from sgalert.routing.backoff import backoff_seconds
from sgalert.rules.statutory import INTAKE_CLOCKS, TimerKind, TimerOrigin, page_still_wanted

log = logging.getLogger("sgalert.routing.outbox")

CLAIM_SECONDS = 60
PER_CHANNEL_CONCURRENCY = 4
FALLBACK_AFTER = 2
MAX_BACKOFF = timedelta(minutes=5)
BASE_BACKOFF = timedelta(seconds=5)
ACK_TOKEN_DAYS = 7


class OutboxState(enum.StrEnum):
    """Where one row of the outbox is."""

    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"  # refused for good by its channel (its fallbacks may still deliver)
    SUPERSEDED = "superseded"  # no longer wanted: acknowledged, clock met, case closed, leaver


@dataclass(frozen=True, slots=True)
class PageText:
    """What a page says, shared by every row of it. No personal data: see ``Notification``."""

    school: str
    case_ref: str
    source: PageSource
    received_at: str
    urgency: Urgency
    step: int
    reason: str
    reply_address: str | None = None
    due_at: str | None = None
    confidential: bool = False
    # A replies mailbox is watched: pages to people carry an acknowledgement code to reply with.
    accepts_replies: bool = False
    # A whole document (the daily digest): subject, text and HTML. See ``ports.Document``.
    document: Mapping[str, str] | None = None


def page_key(origin: str, channel: str, person_id: str | None) -> str:
    """The idempotency key of a page on one channel: one row per page and channel, ever. An
    address in a person's place (a governor's digest) is hashed: channels log the key."""
    if person_id and "@" in person_id:
        person_id = "to-" + hashlib.sha256(person_id.lower().encode()).hexdigest()[:16]
    return f"{origin}:{channel}:{person_id or 'shared'}"


def _new_token() -> str:
    return "ACK-" + secrets.token_hex(8).upper()


def queue_page(
    conn: sqlite3.Connection,
    text: PageText,
    *,
    key: str,
    channel: str,
    recipient: str,
    now: datetime,
    case_id: str | None = None,
    timer_id: int | None = None,
    person_id: str | None = None,
    fallback_of: int | None = None,
    ack_token: str | None = None,
    root_key: str | None = None,
) -> int | None:
    """Write one outbox row (once per key); returns its id, or None if it was already there.

    A page to a person about a case carries a single-use acknowledgement code (only its hash is
    stored) when replies are watched (``text.accepts_replies``): without a replies mailbox a
    reply would go unread, so the page must not offer one. A fallback on another personal
    channel reuses the root's code.
    """
    token = ack_token
    if token is None and person_id is not None and case_id is not None and text.accepts_replies:
        token = _new_token()
    payload = {
        **asdict(text),
        "idempotency_key": key,
        "ack_token": token,
        "root_key": root_key or key,
    }
    cursor = conn.execute(
        "INSERT OR IGNORE INTO outbox (idempotency_key, case_id, timer_id, channel, recipient,"
        " person_id, payload, state, next_attempt_at, created_at, fallback_of)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
        (
            key,
            case_id,
            timer_id,
            channel,
            recipient,
            person_id,
            json.dumps(payload),
            iso(now),
            iso(now),
            fallback_of,
        ),
    )
    if not cursor.rowcount:
        return None
    row_id = cursor.lastrowid
    if token is not None and ack_token is None and person_id is not None:
        conn.execute(
            "INSERT INTO ack_tokens (token_sha256, case_id, person_id, outbox_id,"
            " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
            (
                hashlib.sha256(token.encode()).hexdigest(),
                case_id,
                person_id,
                row_id,
                iso(now),
                iso(now + timedelta(days=ACK_TOKEN_DAYS)),
            ),
        )
    return row_id


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    key: str
    case_id: str | None
    timer_id: int | None
    channel: str
    recipient: Recipient
    notification: Notification
    attempts: int
    fallback_of: int | None
    text: PageText  # as stored, for the fallbacks

    @property
    def confidential(self) -> bool:
        return self.text.confidential


def stored_page(payload: Mapping[str, object]) -> PageText:
    """What a stored outbox row's page says: the inverse of :func:`queue_page`'s payload."""
    reply, due = payload.get("reply_address"), payload.get("due_at")
    document = payload.get("document")
    return PageText(
        school=str(payload["school"]),
        case_ref=str(payload["case_ref"]),
        source=PageSource(str(payload["source"])),
        received_at=str(payload["received_at"]),
        urgency=Urgency(str(payload["urgency"])),
        step=int(str(payload["step"])),
        reason=str(payload["reason"]),
        reply_address=str(reply) if reply else None,
        due_at=str(due) if due else None,
        confidential=bool(payload.get("confidential")),
        document={str(k): str(v) for k, v in document.items()}
        if isinstance(document, dict)
        else None,
    )


def _notification(text: PageText, payload: Mapping[str, object], zone: ZoneInfo) -> Notification:
    return Notification(
        idempotency_key=str(payload["idempotency_key"]),
        school=text.school,
        case_ref=text.case_ref,
        source=text.source,
        received_at=parse_iso(text.received_at),
        urgency=text.urgency,
        step=text.step,
        reason=text.reason,
        ack_token=str(payload["ack_token"]) if payload.get("ack_token") else None,
        reply_address=text.reply_address,
        due_at=parse_iso(text.due_at) if text.due_at else None,
        zone=zone,
        document=Document(**text.document) if text.document else None,
    )


_INTAKE = ",".join(f"'{c.value}'" for c in INTAKE_CLOCKS)

_CLAIM_SQL = (
    "SELECT o.id, o.idempotency_key, o.case_id, o.timer_id, o.channel, o.recipient,"
    " o.person_id, o.payload, o.attempts, o.fallback_of, c.state, t.kind,"
    " (SELECT COUNT(*) FROM clocks k WHERE k.case_id = o.case_id AND k.met_at IS NULL AND"
    "   (k.kind = substr(t.kind, 7) OR (t.kind = 'clock-warning' AND k.kind IN (" + _INTAKE + ")))"
    " ) AS open_clocks,"
    " p.removed_at"
    " FROM outbox o LEFT JOIN cases c ON c.id = o.case_id"
    " LEFT JOIN timers t ON t.id = o.timer_id"
    " LEFT JOIN people p ON p.id = o.person_id"
    " WHERE o.state = 'pending' AND o.next_attempt_at <= ? AND o.channel = ?"
    " ORDER BY o.next_attempt_at, o.id LIMIT ?"
)


def claim(
    conn: sqlite3.Connection,
    now: datetime,
    channel: str,
    zone: ZoneInfo,
    *,
    in_flight: Collection[int] = (),
    limit: int = 50,
) -> list[Claimed]:
    """Take a channel's due rows for sending; drop the pages nobody needs any more."""
    held = ",".join(str(int(i)) for i in in_flight) or "NULL"
    conn.execute(
        "UPDATE outbox SET state = 'pending', claimed_until = NULL"
        f" WHERE state = 'sending' AND claimed_until < ? AND id NOT IN ({held})",
        (iso(now),),
    )
    rows = conn.execute(_CLAIM_SQL, (iso(now), channel, limit)).fetchall()
    claimed: list[Claimed] = []
    superseded: list[int] = []
    for (
        row_id,
        key,
        case_id,
        timer_id,
        row_channel,
        recipient,
        person_id,
        payload_json,
        attempts,
        fallback_of,
        state,
        timer_kind,
        open_clocks,
        removed_at,
    ) in rows:
        origin = TimerOrigin.parse(timer_kind) if timer_kind else None
        if case_id is not None and origin is None:
            # A row from before timers were recorded on fallbacks: the old rule, by case state.
            origin = TimerOrigin(TimerKind.STEP)
        wanted = page_still_wanted(
            origin, CaseState(state) if state else None, clock_met=open_clocks == 0
        )
        if not wanted or removed_at is not None:
            superseded.append(row_id)
            continue
        payload = json.loads(payload_json)
        text = stored_page(payload)
        claimed.append(
            Claimed(
                id=row_id,
                key=key,
                case_id=case_id,
                timer_id=timer_id,
                channel=row_channel,
                recipient=Recipient(address=recipient, person_id=person_id),
                notification=_notification(text, payload, zone),
                attempts=attempts,
                fallback_of=fallback_of,
                text=text,
            )
        )
    conn.executemany(
        "UPDATE outbox SET state = 'superseded', claimed_until = NULL WHERE id = ?",
        [(i,) for i in superseded],
    )
    until = iso(now + timedelta(seconds=CLAIM_SECONDS))
    conn.executemany(
        "UPDATE outbox SET state = 'sending', claimed_until = ? WHERE id = ?",
        [(until, c.id) for c in claimed],
    )
    return claimed


def release_claims(conn: sqlite3.Connection) -> int:
    """Give back every claim: the engine that held them is gone (called on takeover)."""
    cursor = conn.execute(
        "UPDATE outbox SET state = 'pending', claimed_until = NULL WHERE state = 'sending'"
    )
    return cursor.rowcount


def _shared(item: Claimed) -> bool:
    """A row for a shared channel (a Teams channel): nobody's, addressed by the channel's name."""
    return item.recipient.person_id is None and item.recipient.address == item.channel


def record_success(
    conn: sqlite3.Connection, item: Claimed, receipt: Receipt, now: datetime
) -> None:
    conn.execute(
        "UPDATE outbox SET state = 'delivered', delivered_at = ?, attempts = attempts + 1,"
        " receipt = ?, claimed_until = NULL WHERE id = ?",
        (iso(now), receipt.detail[:200], item.id),
    )
    if item.case_id is not None or (item.text.document is not None and _all_copies_in(conn, item)):
        clear_alert(conn, AlertKind.PAGE_UNDELIVERABLE, item.notification.case_ref, now)
    audit.append_now(
        conn,
        [
            audit.AuditEvent(
                audit.ENGINE,
                "notification-delivered",
                item.case_id,
                {
                    "outbox": item.id,
                    "channel": item.channel,
                    "person": item.recipient.person_id,
                    "shared": _shared(item),
                    "attempt": item.attempts + 1,
                    "queued_only": receipt.queued_only,
                },
            )
        ],
    )


@dataclass(frozen=True, slots=True)
class Channels:
    """The configured channels in fallback order, and which of them reach one person each."""

    names: tuple[str, ...]
    per_person: frozenset[str]


def record_failure(
    conn: sqlite3.Connection,
    item: Claimed,
    error: DeliveryError,
    now: datetime,
    channels: Channels,
) -> None:
    attempts = item.attempts + 1
    wait = backoff_seconds(
        attempts,
        first=BASE_BACKOFF.total_seconds(),
        cap=MAX_BACKOFF.total_seconds(),
        retry_after=error.retry_after,
    )
    state = OutboxState.PENDING if error.retryable else OutboxState.FAILED
    conn.execute(
        "UPDATE outbox SET state = ?, attempts = ?, next_attempt_at = ?, last_error = ?,"
        " claimed_until = NULL WHERE id = ?",
        (state.value, attempts, iso(now + timedelta(seconds=wait)), str(error)[:200], item.id),
    )
    events = [
        audit.AuditEvent(
            audit.ENGINE,
            "notification-failed",
            item.case_id,
            {
                "outbox": item.id,
                "channel": item.channel,
                "person": item.recipient.person_id,
                "shared": _shared(item),
                "attempt": attempts,
                "retryable": error.retryable,
            },
        )
    ]
    if item.fallback_of is None and (attempts >= FALLBACK_AFTER or not error.retryable):
        for fallback in _queue_fallbacks(conn, item, now, channels):
            events.append(
                audit.AuditEvent(
                    audit.ENGINE,
                    "notification-fallback",
                    item.case_id,
                    {"outbox": item.id, "fallback": fallback},
                )
            )
    audit.append_now(conn, events)
    # A case's page, or a digest (a head who gets none must not take that as "nothing missed").
    paged = item.case_id is not None and item.timer_id is not None
    if (paged or item.text.document is not None) and _exhausted(conn, item):
        raise_alert(
            conn,
            AlertKind.PAGE_UNDELIVERABLE,
            item.notification.case_ref,
            now,
            {"timer": item.timer_id, "channel": item.channel, "audience": _audience(item)},
        )


def _all_copies_in(conn: sqlite3.Connection, item: Claimed) -> bool:
    """Whether every copy of this digest reached its reader (by a fallback, perhaps): the
    governor's arriving must not clear the alert that the head's never did."""
    origin = item.key.split(":", 1)[0]
    return not conn.execute(
        "SELECT 1 FROM outbox o WHERE o.idempotency_key >= ? AND o.idempotency_key < ?"
        " AND o.fallback_of IS NULL AND o.state != 'delivered' AND NOT EXISTS (SELECT 1 FROM"
        " outbox f WHERE f.fallback_of = o.id AND f.state = 'delivered')",
        (origin, origin + "~"),
    ).fetchone()


def _audience(item: Claimed) -> str:
    """Who may hear that this page failed: the case's own readers when it is confidential. A
    digest names no case: the team that keeps sgalert running (the head among them) hears that
    a copy went undelivered, not only the monitoring officer."""
    return "confidential" if item.confidential and item.text.document is None else "team"


def _exhausted(conn: sqlite3.Connection, item: Claimed) -> bool:
    """Whether every row that could carry this page to its people has failed, none delivered.

    The rows of one page are those of the same step that reach the same person, and the step's
    shared-channel rows (a Teams card of the step reached the team too). For a shared-channel
    page, any row of the step counts: if the people it was for got their email, nobody missed it.
    """
    root = item.fallback_of or item.id
    person = conn.execute("SELECT person_id FROM outbox WHERE id = ?", (root,)).fetchone()[0]
    rows = conn.execute(
        "SELECT id, state, attempts FROM outbox WHERE id = ? OR fallback_of = ?"
        " OR (timer_id = ? AND (? IS NULL OR person_id = ? OR person_id IS NULL))",
        (root, root, item.timer_id, person, person),
    ).fetchall()
    tried_fallbacks = False
    for row_id, state, attempts in rows:
        if state in (OutboxState.DELIVERED, OutboxState.SENDING, OutboxState.SUPERSEDED):
            return False
        if state == OutboxState.PENDING and attempts < FALLBACK_AFTER:
            return False
        if row_id == root:
            tried_fallbacks = state == OutboxState.FAILED or attempts >= FALLBACK_AFTER
    return tried_fallbacks


def _queue_fallbacks(
    conn: sqlite3.Connection, item: Claimed, now: datetime, channels: Channels
) -> list[int]:
    """The same page on every other channel that may carry it (each at most once)."""
    origin = item.key.split(":", 1)[0]
    text = item.text
    if text.document is None:  # a digest's text is the document's own
        text = replace(text, reason=f"{text.reason} (the {item.channel} channel is failing)")
    queued: list[int] = []
    for channel in channels.names:
        if channel == item.channel:
            continue
        per_person = channel in channels.per_person
        if not per_person:
            if item.confidential:
                continue  # a shared channel never learns that such a report exists
            targets: list[tuple[str | None, str]] = [(None, channel)]
        elif item.recipient.person_id is not None or text.document is not None:
            # A document (the digest) is one person's copy: it goes to them and nobody else.
            targets = [(item.recipient.person_id, item.recipient.address)]
        else:
            targets = _people_behind_shared(conn, item)
        for person_id, address in targets:
            row_id = queue_page(
                conn,
                text,
                # One card per step on a shared channel says its personal pages are failing;
                # on a personal channel the fallback is the same page as a root there would be.
                key=page_key(origin, channel, person_id or address)
                if person_id or text.document is not None
                else f"{origin}:{channel}:fallback",
                channel=channel,
                recipient=address,
                now=now,
                case_id=item.case_id,
                timer_id=item.timer_id,
                person_id=person_id,
                fallback_of=item.id,
                ack_token=item.notification.ack_token if person_id else None,
                root_key=item.key,
            )
            if row_id is not None:
                queued.append(row_id)
    return queued


def _people_behind_shared(conn: sqlite3.Connection, item: Claimed) -> list[tuple[str | None, str]]:
    """Who a failing shared-channel page was for: the people its step paged in person, or else
    the case's entitled safeguarding team (for a system alert: the team)."""
    if item.timer_id is not None:
        rows = conn.execute(
            "SELECT DISTINCT person_id, recipient FROM outbox WHERE timer_id = ?"
            " AND person_id IS NOT NULL",
            (item.timer_id,),
        ).fetchall()
        if rows:
            return [(str(r[0]), str(r[1])) for r in rows]
    if item.case_id is None:
        found = people_in_roles(conn, (Role.DSL.value, Role.DEPUTY.value, Role.HEAD.value))
        return [(pid, email) for pid, email, _ in found]
    people = list(entitled_people(conn, item.case_id).values())
    team = {Role.DSL.value, Role.DEPUTY.value, Role.HEAD.value}
    chosen = [p for p in people if p.role in team] or people
    return [(p.id, p.email) for p in chosen]


Pause = Callable[[asyncio.Event, datetime | None], Awaitable[None]]


class OutboxSender:
    """Sends due outbox rows through the configured notifiers, each channel on its own."""

    def __init__(
        self,
        store: Store,
        notifiers: Mapping[str, Notifier],
        clock: Clock = utcnow,
        zone: ZoneInfo | None = None,
    ) -> None:
        self.store = store
        self.notifiers = dict(notifiers)
        self.channels = Channels(
            tuple(self.notifiers),
            frozenset(n for n, v in self.notifiers.items() if v.per_person),
        )
        self.zone = zone or ZoneInfo("Europe/London")
        self._clock = clock
        self._in_flight: set[int] = set()
        self._wakes = {name: asyncio.Event() for name in self.channels.names}

    def wake(self) -> None:
        """New rows were queued: every channel looks now."""
        for event in self._wakes.values():
            event.set()

    async def send_due(self) -> int:
        """One round on every channel at once, each to its end. Returns rows attempted."""
        async with asyncio.TaskGroup() as group:  # one failing channel cancels the others
            rounds = [group.create_task(self.send_channel(c)) for c in self.channels.names]
        return sum(r.result() for r in rounds)

    async def send_channel(self, channel: str, limit: int = 50) -> int:
        """One round on one channel: claim its due rows, send them, record each outcome."""
        claimed = await self._claim(channel, limit)
        if claimed:
            gate = asyncio.Semaphore(PER_CHANNEL_CONCURRENCY)

            async def one(item: Claimed) -> None:
                async with gate:
                    await self._deliver(item)

            async with asyncio.TaskGroup() as group:
                for item in claimed:
                    group.create_task(one(item), name=f"send-{channel}")
        return len(claimed)

    async def _claim(self, channel: str, limit: int) -> list[Claimed]:
        now = self._clock()
        held = frozenset(self._in_flight)
        claimed = await self.store.transact(
            lambda conn: claim(conn, now, channel, self.zone, in_flight=held, limit=limit)
        )
        self._in_flight.update(item.id for item in claimed)
        return claimed

    async def run(self, pause: Pause) -> None:
        """Drain every channel for ever, each on its own task."""
        async with asyncio.TaskGroup() as group:
            for channel in self.channels.names:
                group.create_task(self._drain(channel, pause), name=f"outbox-{channel}")

    async def _drain(self, channel: str, pause: Pause) -> None:
        """Keep up to ``PER_CHANNEL_CONCURRENCY`` sends in flight on one channel."""
        wake = self._wakes[channel]
        running: set[asyncio.Task[None]] = set()

        def finished(task: asyncio.Task[None]) -> None:
            running.discard(task)
            wake.set()  # a slot is free: look for more

        async with asyncio.TaskGroup() as group:
            while True:
                free = PER_CHANNEL_CONCURRENCY - len(running)
                claimed = await self._claim(channel, free) if free > 0 else []
                for item in claimed:
                    task = group.create_task(self._deliver(item), name=f"send-{channel}")
                    running.add(task)
                    task.add_done_callback(finished)
                if claimed and len(claimed) < free:
                    continue  # maybe more became due while these were claimed
                if free <= len(claimed):  # every slot busy: wait for one to free
                    await pause(wake, None)
                else:
                    await pause(wake, await self.next_attempt(channel))

    async def _deliver(self, item: Claimed) -> None:
        notifier = self.notifiers[item.channel]
        try:
            try:
                receipt = await notifier.send(item.notification, item.recipient)
            except DeliveryError as failure:
                error = failure
            except Exception as unexpected:  # an adapter bug must not stop the other pages
                log.exception("notifier %s raised unexpectedly", item.channel)
                error = DeliveryError(f"unexpected {type(unexpected).__name__}")
            else:
                done_at = self._clock()
                await self.store.transact(lambda conn: record_success(conn, item, receipt, done_at))
                log.info(
                    "notification %d delivered on %s for %s",
                    item.id,
                    item.channel,
                    item.notification.case_ref,
                )
                return
            log.warning(
                "notification %d on %s failed: %s", item.id, item.channel, type(error).__name__
            )
            failed_at = self._clock()
            await self.store.transact(
                lambda conn: record_failure(conn, item, error, failed_at, self.channels)
            )
            self.wake()  # fallbacks may have been queued on the other channels
        finally:
            self._in_flight.discard(item.id)

    async def next_attempt(self, channel: str | None = None) -> datetime | None:
        if channel is None:
            rows = await self.store.fetchall(
                "SELECT MIN(next_attempt_at) FROM outbox WHERE state = 'pending'"
            )
        else:
            rows = await self.store.fetchall(
                "SELECT MIN(next_attempt_at) FROM outbox WHERE state = 'pending' AND channel = ?",
                (channel,),
            )
        return parse_iso(rows[0][0]) if rows and rows[0][0] else None
