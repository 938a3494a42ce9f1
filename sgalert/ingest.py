"""From raw message bytes to exactly one sealed case.

``prepare`` is pure CPU: parse with limits, check the sender, extract the facts, escape what will
be displayed, and lay out the fields to seal (the original bytes are kept whole, as evidence).
``Ingestor.ingest`` seals a batch and stores it in one transaction that also recognises repeats:

- the mailbox's own key (mailbox, UIDVALIDITY, UID; or Graph's message id) seen before: the same
  case, nothing new;
- identical bytes seen before (from any mailbox, or a file): the same case, nothing new;
- the same Message-ID with different bytes: a **new** case flagged ``possible-duplicate``,
  because a sender controls Message-ID and a forged earlier copy must not suppress a real alert.

The caller marks the message read or moves it only after ``ingest`` returns: store first.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import multiprocessing
import os
import re
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from sgalert import audit
from sgalert.cases import (
    FIELD_ATTACHMENTS,
    FIELD_BODY,
    FIELD_FACTS,
    FIELD_RAW,
    FIELD_REPORTER,
    NewCase,
    SealedBatch,
    SealedCase,
    StoredCase,
    insert_now,
)
from sgalert.clock import iso, utcnow
from sgalert.config import Config, SourceConfig
from sgalert.errors import StoreError
from sgalert.extract import extract
from sgalert.mime import ParseLimits, parse_message
from sgalert.model import Flag, Source
from sgalert.redact import MARK as REPORTER_MARK
from sgalert.redact import ReporterRedactor
from sgalert.sender import check_sender
from sgalert.service import CaseService
from sgalert.store import on_connection
from sgalert.text import has_unsafe, printable

log = logging.getLogger("sgalert.ingest")

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


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message as a mailbox gave it: its bytes and the mailbox's own key for it."""

    raw: bytes
    key: str | None = None
    received_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    """What became of one message. Metadata only: safe to log and print."""

    case_id: str
    ref: str
    source: Source
    flags: tuple[str, ...]
    created: bool
    duplicate_of: str | None = None


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


def _sha256(data: bytes) -> str:
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
    shown = ReporterRedactor(verdict.sender) if whistle else _as_written
    subject, body_text = shown(parsed.subject), shown(parsed.body_text)
    facts = {key: shown(value) for key, value in facts.items()}
    reasons = [shown(reason) for reason in found.reasons]
    flags: set[str] = set(found.flags)
    if parsed.problems:
        flags.add(Flag.MALFORMED)
    if verdict.problems:
        flags.add(Flag.UNVERIFIED_SENDER)
    shown_body = printable(body_text)  # escaped once: it also says whether anything was
    if (
        shown_body != body_text
        or _looks_hostile(subject, verdict.sender.display_name)
        or (_MARKUP.search(body_text))
    ):
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
            "filename": printable(shown(a.filename), keep_newlines=False),
            "content_type": a.content_type,
            "size": len(a.payload),
        }
        for a in parsed.attachments
    ]
    if isinstance(shown, ReporterRedactor) and shown.hits:
        notes["identity"] = [
            f"the reporter's name or address appeared in the message and reads {REPORTER_MARK}"
            " here; the original is sealed with the reporter's identity"
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
        content_sha256=_sha256(raw),
    )
    message_id = parsed.message_id.strip() if parsed.message_id else None
    return Prepared(
        case=case,
        key=message.key,
        message_id_sha256=_sha256(message_id.encode("utf-8", "replace")) if message_id else None,
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


def _ready() -> bool:
    """Nothing: a worker that ran it has started and imported this module."""
    return True


# Parsing and extraction are pure Python and hold the GIL; a backlog is spread over worker
# processes (spawned, not forked: the engine has threads) so every core works on it.
POOL_MIN_BATCH = 24


class Ingestor:
    """Turns batches of inbound messages into cases through one service."""

    def __init__(self, service: CaseService, config: Config, *, workers: int | None = None) -> None:
        self.service = service
        self.config = config
        self.workers = workers if workers is not None else min(4, os.cpu_count() or 1)
        self._pool: ProcessPoolExecutor | None = None
        self._turns: dict[str, _Turns] = {}

    async def warm(self) -> None:
        """Start the worker processes now, so the first backlog does not wait for them.

        Spawning a worker and importing the parser into it takes about half a second; a
        service pays that at start-up rather than when the first notices arrive.
        """
        if self.workers < 2:
            return
        loop = asyncio.get_running_loop()
        pool = self._worker_pool()
        await asyncio.gather(*(loop.run_in_executor(pool, _ready) for _ in range(self.workers)))

    def _worker_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn")
            )
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def _prepare(self, messages: Sequence[Inbound], rules: SourceRules) -> list[Prepared]:
        if len(messages) < POOL_MIN_BATCH or self.workers < 2:
            if len(messages) > 4:
                return await asyncio.to_thread(self._prepare_all, messages, rules)
            return self._prepare_all(messages, rules)
        try:
            return await self._prepare_in_workers(messages, rules)
        except BrokenExecutor:
            # A worker died (killed, or out of memory): a broken pool stays broken, so the next
            # backlog gets a fresh one, and this batch is prepared here rather than held up.
            log.warning("an ingest worker process died; preparing this batch in-process")
            self.close()
            return await asyncio.to_thread(self._prepare_all, messages, rules)

    async def _prepare_in_workers(
        self, messages: Sequence[Inbound], rules: SourceRules
    ) -> list[Prepared]:
        pool = self._worker_pool()
        loop = asyncio.get_running_loop()
        size = -(-len(messages) // self.workers)
        zone = self.config.timezone.key
        jobs = [
            loop.run_in_executor(
                pool,
                prepare_chunk,
                list(messages[i : i + size]),
                rules,
                zone,
                self.config.head_names,
                self.config.limits,
                utcnow(),
            )
            for i in range(0, len(messages), size)
        ]
        chunks = await asyncio.gather(*jobs, return_exceptions=True)
        for chunk in chunks:  # every job settled: none is left with an unread failure
            if isinstance(chunk, BaseException):
                raise chunk
        prepared = [item for chunk in chunks if isinstance(chunk, list) for item in chunk]
        return [item.with_raw(m.raw) for item, m in zip(prepared, messages, strict=True)]

    def rules(self, source_name: str) -> SourceRules:
        return SourceRules.from_config(self.config.source(source_name))

    def _prepare_all(self, messages: Sequence[Inbound], rules: SourceRules) -> list[Prepared]:
        now = utcnow()
        return [
            prepare(
                message,
                rules,
                zone=self.config.timezone,
                head_names=self.config.head_names,
                limits=self.config.limits,
                now=now,
            )
            for message in messages
        ]

    async def ingest(
        self,
        messages: Sequence[Inbound],
        rules: SourceRules,
        *,
        checkpoint: str | None = None,
    ) -> list[IngestOutcome]:
        """Store a batch as cases in one transaction (with the watcher's checkpoint, if any).

        A watcher may hand over its next batch before the last one is stored: batches from one
        source are prepared concurrently but stored strictly in the order they were handed
        over, and if one fails, those handed over after it fail too, so a checkpoint never
        moves past messages that were not stored.
        """
        if not messages and checkpoint is None:
            return []
        turn = self._turns.setdefault(rules.name, _Turns())
        ticket = turn.take()
        try:
            prepared = await self._prepare(messages, rules)
            sealed = await self.service.seal([p.case for p in prepared])
            await turn.wait_for(ticket)
            async with self.service.store.write() as db:
                current = await self.service.reseal_if_rotated(db, sealed)
                return await on_connection(
                    db,
                    lambda conn: _store_now(
                        conn, prepared, current, rules.name, checkpoint, self.service.schedule_now
                    ),
                )
        except BaseException:
            turn.poison()
            raise
        finally:
            await asyncio.shield(turn.finish(ticket))


class _Turns:
    """Storing order for one source's batches: tickets in hand-over order."""

    def __init__(self) -> None:
        self.issued = 0
        self.serving = 1
        self.poisoned_through = 0
        self.changed = asyncio.Condition()
        self.finished: set[int] = set()

    def take(self) -> int:
        self.issued += 1
        return self.issued

    def poison(self) -> None:
        self.poisoned_through = self.issued

    async def wait_for(self, ticket: int) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: self.serving >= ticket)
        if ticket <= self.poisoned_through:
            raise StoreError("an earlier batch from this mailbox was not stored; retrying")

    async def finish(self, ticket: int) -> None:
        async with self.changed:
            self.finished.add(ticket)
            while self.serving in self.finished:
                self.finished.discard(self.serving)
                self.serving += 1
            self.changed.notify_all()


def _store_now(
    conn: sqlite3.Connection,
    prepared: Sequence[Prepared],
    sealed: SealedBatch,
    source_name: str,
    checkpoint: str | None,
    schedule: Callable[[sqlite3.Connection, Sequence[tuple[StoredCase, NewCase]]], None],
) -> list[IngestOutcome]:
    """Inside the write transaction: recognise repeats, insert the rest, record receipts,
    and schedule the new cases' clocks and escalation timers."""
    keys = [p.key for p in prepared if p.key]
    known_keys: dict[str, tuple[str, str, str, str]] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        for key, case_id, ref, source, flags in conn.execute(
            "SELECT r.idempotency_key, c.id, c.ref, c.source, c.flags FROM mailbox_receipts r"
            f" JOIN cases c ON c.id = r.case_id WHERE r.idempotency_key IN"
            f" ({','.join('?' * len(chunk))})",
            chunk,
        ):
            known_keys[key] = (case_id, ref, source, flags)
    hashes = [p.case.content_sha256 for p in prepared if p.case.content_sha256]
    known_bytes: dict[str, tuple[str, str, str, str]] = {}
    for start in range(0, len(hashes), 500):
        chunk = [h for h in hashes[start : start + 500] if h]
        for digest, case_id, ref, source, flags in conn.execute(
            "SELECT content_sha256, id, ref, source, flags FROM cases WHERE content_sha256 IN"
            f" ({','.join('?' * len(chunk))})",
            chunk,
        ):
            known_bytes[digest] = (case_id, ref, source, flags)

    outcomes: list[IngestOutcome | None] = [None] * len(prepared)
    to_insert: list[tuple[int, SealedCase]] = []
    receipts: list[tuple[str, int]] = []
    repeats: list[audit.AuditEvent] = []
    batch_hashes: dict[str, int] = {}
    batch_keys: dict[str, int] = {}
    repeat_of: dict[int, int] = {}  # index -> index of the first copy in this batch
    batch_message_ids: dict[str, str] = {}
    for index, (item, sealed_case) in enumerate(zip(prepared, sealed.cases, strict=True)):
        earlier = known_keys.get(item.key) if item.key else None
        earlier = earlier or known_bytes.get(item.case.content_sha256 or "")
        if earlier is not None:
            case_id, ref, source, flags = earlier
            outcomes[index] = IngestOutcome(
                case_id, ref, Source(source), tuple(json.loads(flags)), False, ref
            )
            if item.key and item.key not in known_keys:
                receipts.append((item.key, index))
            repeats.append(
                audit.AuditEvent(
                    audit.ENGINE, "duplicate-received", case_id, {"source": source_name}
                )
            )
            continue
        digest = item.case.content_sha256 or ""
        if item.key and item.key in batch_keys:  # the same message twice in one batch
            repeat_of[index] = batch_keys[item.key]
            continue
        if digest in batch_hashes:  # the same bytes twice in one batch: filled in below
            repeat_of[index] = batch_hashes[digest]
            if item.key:
                receipts.append((item.key, index))
                batch_keys[item.key] = batch_hashes[digest]
            continue
        batch_hashes[digest] = index
        if item.key:
            batch_keys[item.key] = index
        if item.message_id_sha256:
            row = conn.execute(
                "SELECT id FROM cases WHERE message_id_sha256 = ? ORDER BY created_at LIMIT 1",
                (item.message_id_sha256,),
            ).fetchone()
            earlier_id = row[0] if row else batch_message_ids.get(item.message_id_sha256)
            if earlier_id is not None:
                item.case.flags = item.case.flags | {Flag.POSSIBLE_DUPLICATE}
                item.case.duplicate_of = earlier_id
            else:
                batch_message_ids[item.message_id_sha256] = item.case.id
        item.case.message_id_sha256 = item.message_id_sha256
        to_insert.append((index, sealed_case))
        if item.key:
            receipts.append((item.key, index))

    used_batches = {w[3] for _, s in to_insert for w in s.wraps}
    batch = SealedBatch(
        cases=tuple(s for _, s in to_insert),
        batch_keys=tuple(b for b in sealed.batch_keys if b[0] in used_batches),
    )
    stored = insert_now(conn, batch, audit.ENGINE) if to_insert else []
    schedule(conn, [(s, c.case) for s, c in zip(stored, batch.cases, strict=True)])
    refs = {s.id: s.ref for s in stored}
    for (index, sealed_case), stored_case in zip(to_insert, stored, strict=True):
        case = sealed_case.case
        duplicate_ref = None
        if case.duplicate_of:
            found = conn.execute("SELECT ref FROM cases WHERE id = ?", (case.duplicate_of,))
            row = found.fetchone()
            duplicate_ref = row[0] if row else refs.get(case.duplicate_of)
        outcomes[index] = IngestOutcome(
            stored_case.id,
            stored_case.ref,
            case.source,
            tuple(sorted(case.flags)),
            True,
            duplicate_ref,
        )
    final: list[IngestOutcome] = []
    for index in range(len(prepared)):
        outcome = outcomes[index]
        if outcome is None:
            first = outcomes[repeat_of[index]]
            assert first is not None
            outcome = IngestOutcome(
                first.case_id, first.ref, first.source, first.flags, False, first.ref
            )
        final.append(outcome)
    now = iso(utcnow())
    conn.executemany(
        "INSERT OR IGNORE INTO mailbox_receipts (idempotency_key, case_id, source_name,"
        " received_at) VALUES (?, ?, ?, ?)",
        [(key, final[i].case_id, source_name, now) for key, i in receipts],
    )
    if repeats:
        audit.append_now(conn, repeats)
    if checkpoint is not None:
        conn.execute(
            "INSERT INTO inbox_checkpoints (source_name, state, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT(source_name) DO UPDATE SET state = excluded.state,"
            " updated_at = excluded.updated_at",
            (source_name, checkpoint, now),
        )
    return final


async def load_checkpoint(service: CaseService, source_name: str) -> str | None:
    rows = await service.store.fetchall(
        "SELECT state FROM inbox_checkpoints WHERE source_name = ?", (source_name,)
    )
    return str(rows[0][0]) if rows else None
