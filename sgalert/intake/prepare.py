"""One message's bytes to a prepared case: everything about it that needs no store.

``prepare`` is pure CPU and never raises on hostile input: parse with limits, check the sender,
extract the facts, strike a whistleblower's name from what is shown, escape what will be
displayed, and lay out the fields to seal (the original bytes are kept whole, as evidence). It
runs in the ingest worker processes (:mod:`sgalert.intake.workers`), so this module imports only
what preparing needs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from sgalert.clock import utcnow
from sgalert.config import ParseLimits, SourceConfig
from sgalert.intake.extract import extract
from sgalert.intake.mime import parse_message
from sgalert.intake.redact import EMAIL_MARK, PHONE_MARK, ReporterRedactor
from sgalert.intake.redact import MARK as REPORTER_MARK
from sgalert.intake.sender import check_sender
from sgalert.model import Flag, Source
from sgalert.ports import Inbound
from sgalert.records.cases import (
    FIELD_ATTACHMENTS,
    FIELD_BODY,
    FIELD_FACTS,
    FIELD_RAW,
    FIELD_REPORTER,
    NewCase,
)
from sgalert.text import has_unsafe, printable

FIELD_SUBJECT = "subject"
FIELD_SENDER = "sender"
FIELD_NOTES = "ingest_notes"

# Rich/Textual markup that could restyle or act in a UI: closing tags, links, actions.
_MARKUP = re.compile(r"\[/[^\]\n]{0,40}\]|\[(?:link|@click|on\s+click)[= ]", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class SourceRules:
    """What ingest needs to know about where a message came from."""

    name: str
    type: Source
    authserv_id: str | None = None
    sender_domains: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, source: SourceConfig) -> SourceRules:
        return cls(source.name, source.type, source.authserv_id, source.sender_domains)


@dataclass(slots=True)
class Prepared:
    case: NewCase
    key: str | None
    message_id_sha256: str | None = None
    notes: list[str] = field(default_factory=list)

    def without_raw(self) -> Prepared:
        """The same, minus the original bytes: a worker need not send back what it was sent."""
        self.case.content = {k: v for k, v in self.case.content.items() if k != FIELD_RAW}
        self.case.identity = {k: v for k, v in self.case.identity.items() if k != FIELD_RAW}
        return self

    def with_raw(self, raw: bytes) -> Prepared:
        """Put the original bytes back where :func:`prepare` seals them (apart, for a whistle)."""
        if self.case.source is Source.WHISTLE:
            self.case.identity = {**self.case.identity, FIELD_RAW: raw}
        else:
            self.case.content = {**self.case.content, FIELD_RAW: raw}
        return self


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _looks_hostile(*texts: str) -> bool:
    return any(has_unsafe(t) or _MARKUP.search(t) for t in texts)


def _as_written(text: str) -> str:
    return text


def prepare(
    message: Inbound,
    rules: SourceRules,
    *,
    zone: ZoneInfo,
    head_names: tuple[str, ...] = (),
    limits: ParseLimits | None = None,
    now: datetime | None = None,
) -> Prepared:
    """Everything about one message that needs no store: never raises on hostile input."""
    raw = message.raw
    parsed = parse_message(raw, limits)
    verdict = check_sender(
        parsed.from_header,
        parsed.authentication_results,
        authserv_id=rules.authserv_id,
        allowed_domains=rules.sender_domains,
    )
    found = extract(
        rules.type,
        parsed.subject,
        parsed.body_text,
        parsed.attachments,
        zone=zone,
        head_names=head_names,
    )
    whistle = rules.type is Source.WHISTLE
    facts = {key: printable(value) for key, value in found.facts.items()}
    contact = facts.pop("preferred_contact", None) if whistle else None
    # Whoever is granted an allegation reads what is shown of it: the reporter's own name and
    # address in it (a signature, say) are struck out; the original is sealed with their identity.
    redactor = ReporterRedactor(verdict.sender) if whistle else None
    shown = redactor or _as_written
    shown_filename = redactor.filename if redactor else _as_written
    subject, body_text = shown(parsed.subject), shown(parsed.body_text)
    facts = {key: shown(value) for key, value in facts.items()}
    reasons = [shown(reason) for reason in found.reasons]
    flags: set[str] = set(found.flags)
    if parsed.problems:
        flags.add(Flag.MALFORMED)
    if verdict.problems:
        flags.add(Flag.UNVERIFIED_SENDER)
    shown_body = printable(body_text)
    # Judged on the text as written: striking a name (and a bidi control hidden inside it)
    # out of what is shown must not hide that the message was hostile.
    if _looks_hostile(parsed.subject, parsed.body_text, verdict.sender.display_name):
        flags.add(Flag.HOSTILE_TEXT)

    sender = {
        "display_name": printable(verdict.sender.display_name, keep_newlines=False),
        "address": verdict.sender.address or printable(parsed.from_header, keep_newlines=False),
    }
    notes = {
        "problems": [printable(p, keep_newlines=False) for p in parsed.problems],
        "sender": [printable(p, keep_newlines=False) for p in verdict.problems],
        "triage": reasons,
    }
    attachments = [
        {
            "filename": printable(shown_filename(a.filename), keep_newlines=False),
            "content_type": a.content_type,
            "size": len(a.payload),
        }
        for a in parsed.attachments
    ]
    if redactor is not None and redactor.hits:
        notes["identity"] = [
            f"the reporter's name or address, or a phone number or email address, appeared in"
            f" the message and reads {REPORTER_MARK}, {PHONE_MARK} or {EMAIL_MARK} here; the"
            " original is sealed with the reporter's identity"
        ]
    content: dict[str, bytes] = {
        FIELD_SUBJECT: printable(subject, keep_newlines=False).encode(),
        FIELD_FACTS: json.dumps(facts, ensure_ascii=False).encode(),
        FIELD_BODY: shown_body.encode(),
        FIELD_ATTACHMENTS: json.dumps(attachments, ensure_ascii=False).encode(),
        FIELD_NOTES: json.dumps(notes, ensure_ascii=False).encode(),
    }
    identity: dict[str, bytes] = {}
    # A whistleblower's attachments (a signed statement, a forwarded email) may name them as
    # surely as the message does: sealed with their identity; the list (names redacted) is not.
    attached = identity if whistle else content
    for index, attachment in enumerate(parsed.attachments):
        attached[f"attachment/{index}"] = attachment.payload
    if whistle:
        # The reporter, and the original message that names them, are sealed apart so an
        # investigator can be granted the allegation without who made it [HMS].
        reporter = dict(sender)
        if contact:
            reporter["preferred_contact"] = contact
        identity[FIELD_REPORTER] = json.dumps(reporter, ensure_ascii=False).encode()
        identity[FIELD_RAW] = raw
    else:
        content[FIELD_SENDER] = json.dumps(sender, ensure_ascii=False).encode()
        content[FIELD_RAW] = raw
    case = NewCase(
        source=rules.type,
        received_at=message.received_at or now or utcnow(),
        origin="mailbox" if message.key else "file",
        content=content,
        identity=identity,
        flags=frozenset(flags),
        source_name=rules.name,
        content_sha256=sha256_hex(raw),
    )
    message_id = parsed.message_id.strip() if parsed.message_id else None
    return Prepared(
        case=case,
        key=message.key,
        message_id_sha256=sha256_hex(message_id.encode("utf-8", "replace")) if message_id else None,
    )


def prepare_chunk(
    messages: Sequence[Inbound],
    rules: SourceRules,
    zone_name: str,
    head_names: tuple[str, ...],
    limits: ParseLimits,
    now: datetime,
) -> list[Prepared]:
    """:func:`prepare` for a list of messages: the unit of work sent to a worker process."""
    zone = ZoneInfo(zone_name)
    return [
        prepare(m, rules, zone=zone, head_names=head_names, limits=limits, now=now).without_raw()
        for m in messages
    ]
