"""System alerts: whatever stops sgalert paging someone is itself raised to a person.

An alert is a row in ``system_alerts``, open until cleared, at most one open per (kind, subject).
The engine pages every open alert once (see :func:`sgalert.routing.escalation.page_system_alerts`);
``sgalert status`` and the desk's banner list them. Subjects and details name mailboxes,
channels, policies and case references only, never personal data.
"""

from __future__ import annotations

import enum
import json
import sqlite3
from collections.abc import Mapping
from datetime import datetime

from sgalert.clock import iso
from sgalert.records import audit


class AlertKind(enum.StrEnum):
    """Why sgalert itself needs a person's attention."""

    SOURCE_DOWN = "source-down"  # a watched mailbox cannot be reached
    ROTA_GAP = "rota-gap"  # nobody but the fallback is on duty at some time ahead
    PAGE_UNDELIVERABLE = "page-undeliverable"  # a page failed on every channel it may use
    NO_RECIPIENT = "no-recipient"  # a policy target resolves to nobody who can read the case
    CHANNEL_MISSING = "channel-missing"  # a policy names channels that are not configured
    MESSAGE_QUARANTINED = "message-quarantined"  # a message could not be read nor quarantined
    CALENDAR_ENDING = "calendar-ending"  # the configured terms end within 60 days, or have
    GROUP_KEY_UNTRUSTED = "group-key-untrusted"  # a group's public key fails its signature check
    PERSON_KEY_UNTRUSTED = "person-key-untrusted"  # a person's public key is not the recorded one


def raise_alert(
    conn: sqlite3.Connection,
    kind: AlertKind,
    subject: str,
    now: datetime,
    detail: Mapping[str, object] | None = None,
) -> bool:
    """Open an alert unless one of this kind and subject is open already; True if opened."""
    cursor = conn.execute(
        "INSERT OR IGNORE INTO system_alerts (kind, source_name, raised_at, detail)"
        " VALUES (?, ?, ?, ?)",
        (kind.value, subject, iso(now), json.dumps(dict(detail or {}))),
    )
    if cursor.rowcount:
        audit.append_now(
            conn,
            [
                audit.AuditEvent(
                    audit.ENGINE,
                    "alert-raised",
                    detail={"alert": cursor.lastrowid, "kind": kind.value, "subject": subject},
                )
            ],
        )
    return bool(cursor.rowcount)


def clear_alert(conn: sqlite3.Connection, kind: AlertKind, subject: str, now: datetime) -> bool:
    """Close the open alert of this kind and subject, if any; True if one was open."""
    cursor = conn.execute(
        "UPDATE system_alerts SET cleared_at = ? WHERE kind = ? AND source_name = ?"
        " AND cleared_at IS NULL",
        (iso(now), kind.value, subject),
    )
    if cursor.rowcount:
        audit.append_now(
            conn,
            [
                audit.AuditEvent(
                    audit.ENGINE, "alert-cleared", detail={"kind": kind.value, "subject": subject}
                )
            ],
        )
    return bool(cursor.rowcount)


def open_alerts_now(
    conn: sqlite3.Connection, case_seen: str | None, params: Mapping[str, object], told: bool
) -> list[dict[str, str]]:
    """Open alerts, oldest first, as one viewer may see them: a ``page-undeliverable`` alert
    (its subject is the case's reference) only if ``case_seen`` (an SQL condition over
    ``cases c``, None for any case) holds for its case, and one raised while paging a
    confidential case (``audience`` confidential, no case named) only if ``told``."""
    rows = conn.execute(
        "SELECT s.kind, s.source_name, s.raised_at, s.detail FROM system_alerts s"
        " LEFT JOIN cases c ON s.kind = 'page-undeliverable' AND c.ref = s.source_name"
        " WHERE s.cleared_at IS NULL"
        + (f" AND (c.id IS NULL OR {case_seen})" if case_seen else "")
        + " ORDER BY s.raised_at",
        dict(params),
    )
    alerts = [{"kind": r[0], "source": r[1], "raised_at": r[2], **json.loads(r[3])} for r in rows]
    return [
        a
        for a in alerts
        if told or a["kind"] == AlertKind.PAGE_UNDELIVERABLE or a.get("audience") != "confidential"
    ]
