"""Acknowledging a case by replying to its notification email.

Each notification email carries a single-use token (``ACK-`` and 16 hex digits). A reply that
arrives in the configured reply mailbox acknowledges the case when, and only when:

- it carries a token sgalert issued (only its SHA-256 is stored), not yet used, not expired,
  sent to someone who has not since been removed (a leaver's old pages must not stop an
  escalation);
- it comes from the address that notification was sent to (checked with sgalert's own strict
  From parser, never ``email.utils``);
- its sender passes the authenticity checks of that mailbox (Authentication-Results, allowed
  domains, no spoofing signs).

Anything else is refused and audited; the reply never becomes a case. A valid reply to a case
someone else already acknowledged uses up the token and changes nothing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sgalert.clock import Clock, iso, parse_iso, utcnow
from sgalert.config import SourceConfig
from sgalert.desk.transitions import mark_acknowledged
from sgalert.engine.workplace import Workplace
from sgalert.intake.mime import parse_message
from sgalert.intake.sender import check_sender
from sgalert.ports import Deliver, Inbound, IngestOutcome
from sgalert.records import audit

TOKEN = re.compile(r"\bACK-[0-9A-F]{16}\b")


@dataclass(frozen=True, slots=True)
class ReplyOutcome:
    accepted: bool
    reason: str
    case_ref: str | None = None


async def process_reply(
    service: Workplace, raw: bytes, source: SourceConfig, clock: Clock = utcnow
) -> ReplyOutcome:
    parsed = parse_message(raw)
    verdict = check_sender(
        parsed.from_header,
        parsed.authentication_results,
        authserv_id=source.authserv_id,
        allowed_domains=source.sender_domains,
    )
    tokens = list(dict.fromkeys(TOKEN.findall(f"{parsed.subject}\n{parsed.body_text}")))
    if not tokens:
        return await _refuse(service, None, "no acknowledgement token in the reply")
    if len(tokens) > 1:
        return await _refuse(service, None, "more than one token in the reply")
    digest = hashlib.sha256(tokens[0].encode()).hexdigest()
    now = clock()
    async with service.store.write() as db:
        rows = list(
            await db.execute_fetchall(
                "SELECT t.case_id, t.expires_at, t.used_at, p.email, p.id, c.ref, c.state,"
                " p.removed_at"
                " FROM ack_tokens t JOIN people p ON p.id = t.person_id"
                " JOIN cases c ON c.id = t.case_id WHERE t.token_sha256 = ?",
                (digest,),
            )
        )
        if not rows:
            reason = "unknown token (forged or mistyped)"
        else:
            case_id, expires, used, email, person_id, ref, state, removed = rows[0]
            if used:
                reason = "token already used"
            elif removed:
                reason = "the person the token was sent to has been removed"
            elif parse_iso(expires) < now:
                reason = "token expired"
            elif (verdict.sender.address or "").lower() != str(email).lower():
                reason = "reply not from the address the notification was sent to"
            elif verdict.problems:
                reason = "reply sender not authenticated"
            else:
                await db.execute(
                    "UPDATE ack_tokens SET used_at = ? WHERE token_sha256 = ?", (iso(now), digest)
                )
                if state == "new":
                    # The page carried no word of the case, so replying to it is not reading
                    # it: a clock that asks for the notice to be read stays open until someone
                    # opens the case.
                    await mark_acknowledged(
                        db, case_id, person_id, str(email), now, via="reply", read=False
                    )
                    return ReplyOutcome(True, "acknowledged", str(ref))
                await audit.append(
                    db,
                    [audit.AuditEvent(str(email), "ack-reply-late", case_id, {"state": state})],
                )
                return ReplyOutcome(True, f"case already {state}", str(ref))
    case = rows[0][0] if rows else None
    return await _refuse(service, case, reason)


async def _refuse(service: Workplace, case_id: str | None, reason: str) -> ReplyOutcome:
    async with service.store.write() as db:
        await audit.append(
            db, [audit.AuditEvent(audit.ENGINE, "ack-reply-refused", case_id, {"reason": reason})]
        )
    return ReplyOutcome(False, reason)


def make_reply_deliver(service: Workplace, source: SourceConfig, clock: Clock = utcnow) -> Deliver:
    """A deliver function for a reply mailbox: acknowledges, never creates cases."""

    async def deliver(
        messages: Sequence[Inbound], *, checkpoint: str | None = None
    ) -> list[IngestOutcome]:
        for message in messages:
            await process_reply(service, message.raw, source, clock)
        if checkpoint is not None:
            async with service.store.write() as db:
                await db.execute(
                    "INSERT INTO inbox_checkpoints (source_name, state, updated_at)"
                    " VALUES (?, ?, ?) ON CONFLICT(source_name) DO UPDATE SET"
                    " state = excluded.state, updated_at = excluded.updated_at",
                    (source.name, checkpoint, iso(clock())),
                )
        service.store.check_file()  # deleted or replaced: keep the replies in their mailbox
        return []

    return deliver
