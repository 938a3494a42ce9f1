"""Delivering the outbox: at least once, with retries, fallback channels, and every attempt audited.

Rows are claimed in a write transaction that re-reads their case: a page for a case acknowledged
meanwhile is marked ``superseded`` and never sent. A claimed row carries a lease
(``claimed_until``); if the engine dies mid-send, the lease lapses and the row is sent again, so a
notification may arrive twice but is never lost (its idempotency key travels with it).
A row that keeps failing is retried with capped exponential backoff for ever, and after
``FALLBACK_AFTER`` failures the same page is also queued on the next configured channel.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from sgalert import audit
from sgalert.clock import Clock, iso, parse_iso, utcnow
from sgalert.notify import DeliveryError, Notification, Notifier, Receipt, Recipient
from sgalert.store import Store, on_connection

log = logging.getLogger("sgalert.outbox")

CLAIM_SECONDS = 60
PER_CHANNEL_CONCURRENCY = 4
FALLBACK_AFTER = 2
MAX_BACKOFF = timedelta(minutes=5)
BASE_BACKOFF = timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    key: str
    case_id: str | None
    channel: str
    recipient: Recipient
    notification: Notification
    attempts: int


def _notification(payload: Mapping[str, object], zone_name: str | None = None) -> Notification:
    from zoneinfo import ZoneInfo

    due = payload.get("due_at")
    return Notification(
        idempotency_key=str(payload["idempotency_key"]),
        school=str(payload["school"]),
        case_ref=str(payload["case_ref"]),
        source=str(payload["source"]),
        received_at=parse_iso(str(payload["received_at"])),
        urgency=str(payload["urgency"]),
        step=int(str(payload["step"])),
        reason=str(payload["reason"]),
        ack_token=str(payload["ack_token"]) if payload.get("ack_token") else None,
        reply_address=str(payload["reply_address"]) if payload.get("reply_address") else None,
        due_at=parse_iso(str(due)) if due else None,
        zone=ZoneInfo(zone_name or "Europe/London"),
    )


def claim(
    conn: sqlite3.Connection, now: datetime, channels: Sequence[str], limit: int = 50
) -> list[Claimed]:
    """Take due rows for sending; drop pages whose case was acknowledged or closed meanwhile."""
    conn.execute(
        "UPDATE outbox SET state = 'pending' WHERE state = 'sending' AND claimed_until < ?",
        (iso(now),),
    )
    marks = ",".join("?" * len(channels)) or "''"
    rows = conn.execute(
        "SELECT o.id, o.idempotency_key, o.case_id, o.channel, o.recipient, o.person_id,"
        " o.payload, o.attempts, c.state FROM outbox o LEFT JOIN cases c ON c.id = o.case_id"
        f" WHERE o.state = 'pending' AND o.next_attempt_at <= ? AND o.channel IN ({marks})"
        " ORDER BY o.next_attempt_at, o.id LIMIT ?",
        (iso(now), *channels, limit),
    ).fetchall()
    claimed: list[Claimed] = []
    superseded: list[int] = []
    for row_id, key, case_id, channel, recipient, person_id, payload, attempts, state in rows:
        if case_id is not None and state != "new":
            superseded.append(row_id)
            continue
        claimed.append(
            Claimed(
                id=row_id,
                key=key,
                case_id=case_id,
                channel=channel,
                recipient=Recipient(address=recipient, person_id=person_id),
                notification=_notification(json.loads(payload)),
                attempts=attempts,
            )
        )
    conn.executemany(
        "UPDATE outbox SET state = 'superseded' WHERE id = ?", [(i,) for i in superseded]
    )
    until = iso(now + timedelta(seconds=CLAIM_SECONDS))
    conn.executemany(
        "UPDATE outbox SET state = 'sending', claimed_until = ? WHERE id = ?",
        [(until, c.id) for c in claimed],
    )
    return claimed


def record_success(
    conn: sqlite3.Connection, item: Claimed, receipt: Receipt, now: datetime
) -> None:
    conn.execute(
        "UPDATE outbox SET state = 'delivered', delivered_at = ?, attempts = attempts + 1,"
        " receipt = ?, claimed_until = NULL WHERE id = ?",
        (iso(now), receipt.detail[:200], item.id),
    )
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
                    "attempt": item.attempts + 1,
                    "queued_only": receipt.queued_only,
                },
            )
        ],
    )


def record_failure(
    conn: sqlite3.Connection,
    item: Claimed,
    error: DeliveryError,
    now: datetime,
    channels: Sequence[str],
    per_person: frozenset[str],
) -> None:
    attempts = item.attempts + 1
    backoff = min(BASE_BACKOFF * (2 ** (attempts - 1)), MAX_BACKOFF)
    backoff *= random.uniform(0.8, 1.2)  # noqa: S311 (jitter, not secrecy)
    if error.retry_after is not None:
        backoff = max(backoff, timedelta(seconds=error.retry_after))
    state = "pending" if error.retryable else "failed"
    conn.execute(
        "UPDATE outbox SET state = ?, attempts = ?, next_attempt_at = ?, last_error = ?,"
        " claimed_until = NULL WHERE id = ?",
        (state, attempts, iso(now + backoff), str(error)[:200], item.id),
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
                "attempt": attempts,
                "retryable": error.retryable,
            },
        )
    ]
    if attempts >= FALLBACK_AFTER or not error.retryable:
        fallback = _queue_fallback(conn, item, now, channels, per_person)
        if fallback is not None:
            events.append(
                audit.AuditEvent(
                    audit.ENGINE,
                    "notification-fallback",
                    item.case_id,
                    {"outbox": item.id, "fallback": fallback},
                )
            )
    audit.append_now(conn, events)


def _queue_fallback(
    conn: sqlite3.Connection,
    item: Claimed,
    now: datetime,
    channels: Sequence[str],
    per_person: frozenset[str],
) -> int | None:
    """The same page on the next configured channel (once per row)."""
    others = [c for c in channels if c != item.channel]
    if not others:
        return None
    start = channels.index(item.channel) + 1 if item.channel in channels else 0
    ordered = list(channels[start:]) + list(channels[:start])
    channel = next(c for c in ordered if c != item.channel)
    key = f"{item.key}:fallback:{channel}"
    payload = {
        "idempotency_key": key,
        "school": item.notification.school,
        "case_ref": item.notification.case_ref,
        "source": item.notification.source,
        "received_at": iso(item.notification.received_at),
        "urgency": item.notification.urgency,
        "step": item.notification.step,
        "reason": f"{item.notification.reason} (the {item.channel} channel is failing)",
        "ack_token": item.notification.ack_token if channel in per_person else None,
        "reply_address": item.notification.reply_address,
        "due_at": iso(item.notification.due_at) if item.notification.due_at else None,
    }
    recipient = item.recipient.address if channel in per_person else channel
    cursor = conn.execute(
        "INSERT OR IGNORE INTO outbox (idempotency_key, case_id, channel, recipient, person_id,"
        " payload, state, next_attempt_at, created_at, fallback_of)"
        " VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
        (
            key,
            item.case_id,
            channel,
            recipient,
            item.recipient.person_id,
            json.dumps(payload),
            iso(now),
            iso(now),
            item.id,
        ),
    )
    return cursor.lastrowid if cursor.rowcount else None


class OutboxSender:
    """Sends due outbox rows through the configured notifiers."""

    def __init__(
        self,
        store: Store,
        notifiers: Mapping[str, Notifier],
        clock: Clock = utcnow,
    ) -> None:
        self.store = store
        self.notifiers = dict(notifiers)
        self.channels = tuple(self.notifiers)
        self.per_person = frozenset(n for n, v in self.notifiers.items() if v.per_person)
        self._clock = clock

    async def send_due(self) -> int:
        """One round: claim, send, record. Returns how many rows were attempted."""
        if not self.channels:
            return 0
        now = self._clock()
        async with self.store.write() as db:
            claimed = await on_connection(db, lambda conn: claim(conn, now, self.channels))
        # Channels are independent: a slow or hanging mail server must not hold back the Teams
        # card for the same step. Within a channel a few pages go out at once.
        by_channel: dict[str, list[Claimed]] = {}
        for item in claimed:
            by_channel.setdefault(item.channel, []).append(item)
        async with asyncio.TaskGroup() as group:
            for channel, items in by_channel.items():
                limit = asyncio.Semaphore(PER_CHANNEL_CONCURRENCY)
                for item in items:
                    group.create_task(self._deliver(item, limit), name=f"send-{channel}")
        return len(claimed)

    async def _deliver(self, item: Claimed, limit: asyncio.Semaphore) -> None:
        notifier = self.notifiers[item.channel]
        async with limit:
            try:
                receipt = await notifier.send(item.notification, item.recipient)
            except DeliveryError as failure:
                error = failure
            except Exception as unexpected:  # an adapter bug must not stop the other pages
                log.exception("notifier %s raised unexpectedly", item.channel)
                error = DeliveryError(f"unexpected {type(unexpected).__name__}")
            else:
                done_at = self._clock()
                async with self.store.write() as db:
                    await on_connection(
                        db, partial(record_success, item=item, receipt=receipt, now=done_at)
                    )
                log.info(
                    "notification %d delivered on %s for %s",
                    item.id,
                    item.channel,
                    item.notification.case_ref,
                )
                return
        log.warning("notification %d on %s failed: %s", item.id, item.channel, type(error).__name__)
        failed_at = self._clock()
        async with self.store.write() as db:
            await on_connection(
                db,
                partial(
                    record_failure,
                    item=item,
                    error=error,
                    now=failed_at,
                    channels=self.channels,
                    per_person=self.per_person,
                ),
            )

    async def next_attempt(self) -> datetime | None:
        rows = await self.store.fetchall(
            "SELECT MIN(next_attempt_at) FROM outbox WHERE state = 'pending'"
        )
        return parse_iso(rows[0][0]) if rows and rows[0][0] else None
