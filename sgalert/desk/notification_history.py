"""Who was paged about a case, how, and what is still to come: :class:`NotificationHistory`.

Metadata only (staff addresses, channels, times, classes of failure), for someone entitled to the
case: a channel's own error text can quote an address or a server's reply, so only its class is
shown (:func:`delivery_error_class`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sgalert.clock import parse_iso
from sgalert.desk.access import content_key, refusals
from sgalert.desk.views import find_summary
from sgalert.records.keyring import Identity
from sgalert.records.store import Store
from sgalert.routing.outbox import stored_page


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    """One row of the outbox for a case: a page to one person (or a shared channel).

    ``error`` is a class of failure from a fixed vocabulary (``timeout``, ``recipient
    refused``…), never the channel's own words, which can quote an address or a server's reply.
    """

    id: int
    queued_at: datetime
    channel: str
    recipient: str  # a member of staff's address, or the channel's name for a shared channel
    raised_by: str  # the timer's kind ("step", "repeat", "clock-warning", "clock:…") or "fallback"
    step: int
    urgency: str
    reason: str
    state: str  # pending, sending, delivered, failed, superseded
    attempts: int
    next_attempt_at: datetime | None
    error: str | None
    delivered_at: datetime | None
    acknowledged_at: datetime | None  # when the acknowledgement code it carried was used
    fallback_of: int | None


@dataclass(frozen=True, slots=True)
class EscalationTimer:
    """One escalation or deadline timer of a case: fired, cancelled, or still to come."""

    id: int
    kind: str
    step: int
    created_at: datetime
    due_at: datetime
    fired_at: datetime | None
    cancelled_at: datetime | None

    @property
    def state(self) -> str:
        if self.fired_at is not None:
            return "fired"
        return "cancelled" if self.cancelled_at is not None else "pending"


@dataclass(frozen=True, slots=True)
class NotificationHistory:
    """Who was paged about a case, how, and what is still to come. Metadata only."""

    ref: str
    notifications: tuple[NotificationRecord, ...]
    timers: tuple[EscalationTimer, ...]
    # The audit log's last sequence number in the snapshot this was read from. Every page and
    # timer change appends an entry naming its case, so the history is current until
    # :meth:`CaseService.case_activity` finds an entry about the case after this one.
    audit_seq: int = 0


# Classes of delivery failure, matched on the words the notifiers use; the first match wins.
_ERROR_CLASSES: tuple[tuple[str, str], ...] = (
    ("unexpected", "unexpected error"),
    ("did not answer in time", "timeout"),
    ("tls certificate", "certificate not trusted"),
    ("throttling", "throttled"),
    ("sign-in", "sign-in refused"),
    ("authentication", "sign-in refused"),
    ("access token", "sign-in refused"),
    ("xoauth2", "sign-in refused"),
    ("recipient", "recipient refused"),
    ("not a plain address", "recipient refused"),
    ("sender", "sender refused"),
    ("unreachable", "unreachable"),
    ("could not connect", "unreachable"),
    ("could not be reached", "unreachable"),
    ("closed the connection", "unreachable"),
    ("maildir", "could not write the mail file"),
    ("over teams' limit", "message too large"),
    ("unsuitable", "server unsuitable"),
    ("redirected", "refused by the server"),
    ("refused", "refused by the server"),
    ("answered http", "refused by the server"),
    ("failed", "server error"),
)


def delivery_error_class(message: str | None) -> str | None:
    """The class of a stored delivery error, without its text."""
    if not message:
        return None
    lowered = message.lower()
    return next((name for words, name in _ERROR_CLASSES if words in lowered), "delivery error")


def _when(value: str | None) -> datetime | None:
    return parse_iso(value) if value else None


async def notification_history(store: Store, identity: Identity, ref: str) -> NotificationHistory:
    """Every page about the case (queued, delivered, failed, superseded) and its escalation
    timers, for someone entitled to the case; a refusal is audited."""
    async with refusals(store, identity, "notification-history"), store.read() as db:
        summary = await find_summary(db, ref)
        await content_key(db, identity, summary)
        rows = await db.execute_fetchall(
            "SELECT o.id, o.created_at, o.channel, o.recipient, o.payload, o.state,"
            " o.attempts, o.next_attempt_at, o.last_error, o.delivered_at,"
            " o.fallback_of, t.kind AS timer_kind,"
            " (SELECT MIN(a.used_at) FROM ack_tokens a WHERE a.outbox_id = o.id)"
            " AS acknowledged_at"
            " FROM outbox o LEFT JOIN timers t ON t.id = o.timer_id"
            " WHERE o.case_id = ? ORDER BY o.created_at, o.id",
            (summary.id,),
        )
        timer_rows = await db.execute_fetchall(
            "SELECT id, kind, step, created_at, due_at, fired_at, cancelled_at"
            " FROM timers WHERE case_id = ? ORDER BY due_at, id",
            (summary.id,),
        )
        cursor = await db.execute("SELECT COALESCE(MAX(seq), 0) FROM audit")
        seq_row = await cursor.fetchone()
        audit_seq = int(seq_row[0]) if seq_row else 0

    notifications = []
    for row in rows:
        page = stored_page(json.loads(row["payload"]))
        state = str(row["state"])
        notifications.append(
            NotificationRecord(
                id=int(row["id"]),
                queued_at=parse_iso(row["created_at"]),
                channel=str(row["channel"]),
                recipient=str(row["recipient"]),
                raised_by="fallback" if row["fallback_of"] else str(row["timer_kind"] or ""),
                step=page.step,
                urgency=page.urgency,
                reason=page.reason,
                state=state,
                attempts=int(row["attempts"]),
                next_attempt_at=_when(row["next_attempt_at"]) if state == "pending" else None,
                error=delivery_error_class(row["last_error"]),
                delivered_at=_when(row["delivered_at"]),
                acknowledged_at=_when(row["acknowledged_at"]),
                fallback_of=row["fallback_of"],
            )
        )
    timers = tuple(
        EscalationTimer(
            id=int(row["id"]),
            kind=str(row["kind"]),
            step=int(row["step"]),
            created_at=parse_iso(row["created_at"]),
            due_at=parse_iso(row["due_at"]),
            fired_at=_when(row["fired_at"]),
            cancelled_at=_when(row["cancelled_at"]),
        )
        for row in timer_rows
    )
    return NotificationHistory(summary.ref, tuple(notifications), timers, audit_seq)
