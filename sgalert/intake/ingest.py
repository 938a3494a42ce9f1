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

A message that cannot be prepared or stored (a bug its bytes set off, or one that kills the
process) must not hold up its mailbox. Tries are counted in the store *before* each try, so a
crash counts too, and a batch that fails is split: each message is tried alone, and one that
fails :data:`MAX_TRIES` times is **quarantined**: sealed whole, unread, as a ``needs-triage``
case that pages like any other of its source. Should even that fail, the message is **held**:
left unread in its mailbox, skipped from then on, listed by ``sgalert status`` and raised as a
``message-quarantined`` system alert (its mailbox key and error class, no content) until an
operator releases it. The rest of the batch goes on either way.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import multiprocessing
import os
import re
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from zoneinfo import ZoneInfo

from sgalert.clock import iso, utcnow
from sgalert.config import Config, ParseLimits, SourceConfig
from sgalert.desk.service import CaseService
from sgalert.errors import SgalertError, StoreError
from sgalert.intake.extract import extract
from sgalert.intake.mime import parse_message
from sgalert.intake.redact import MARK as REPORTER_MARK
from sgalert.intake.redact import ReporterRedactor
from sgalert.intake.sender import check_sender
from sgalert.model import Flag, Source
from sgalert.ports import Inbound, IngestOutcome
from sgalert.records import audit
from sgalert.records.alerts import AlertKind
from sgalert.records.cases import (
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
from sgalert.records.store import Store, on_connection
from sgalert.text import has_unsafe, printable

log = logging.getLogger("sgalert.intake.ingest")

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


# A message is tried this many times at most, a crash mid-try included, then quarantined.
MAX_TRIES = 3
MESSAGE_QUARANTINED = (
    AlertKind.MESSAGE_QUARANTINED.value
)  # the system alert for a message held unread
QUARANTINED = "could not be read: quarantined"
# How much of a quarantined message is shown as its text (the original is kept whole).
_QUARANTINE_SHOWN = 256 * 1024


def _shown_raw(raw: bytes) -> str:
    """The bytes as text for a person to read, escaped; nothing if even that fails."""
    try:
        return printable(raw[:_QUARANTINE_SHOWN].decode("utf-8", "replace"))
    except Exception:  # reading the message is what failed: show nothing rather than fail
        return ""


def quarantined_case(
    message: Inbound, rules: SourceRules, *, failed: int, error: str | None, now: datetime
) -> NewCase:
    """A message that could not be prepared or stored, as a case all the same.

    Nothing is parsed (parsing may be what failed): the original bytes are sealed whole, as a
    malformed message's are, with the escaped text for reading and a triage reason. A whistle's
    original names its reporter, so it is sealed apart with the identity and not shown.
    """
    raw = message.raw
    why = (
        f"preparing or storing it failed {failed} time(s) ({error})"
        if error
        else "the process stopped while reading it, each time it tried"
    )
    notes = {
        "problems": [f"sgalert could not read this message: {why}"],
        "sender": [],
        "triage": [
            f"{QUARANTINED}; the original message is kept whole: read it and record the facts"
        ],
    }
    whistle = rules.type is Source.WHISTLE
    content: dict[str, bytes] = {
        FIELD_SUBJECT: b"",
        FIELD_FACTS: b"{}",
        FIELD_BODY: b"" if whistle else _shown_raw(raw).encode(),
        FIELD_ATTACHMENTS: b"[]",
        FIELD_NOTES: json.dumps(notes, ensure_ascii=False).encode(),
    }
    identity: dict[str, bytes] = {}
    (identity if whistle else content)[FIELD_RAW] = raw
    return NewCase(
        source=rules.type,
        received_at=message.received_at or now,
        origin="mailbox" if message.key else "file",
        content=content,
        identity=identity,
        flags=frozenset({Flag.NEEDS_TRIAGE, Flag.MALFORMED}),
        source_name=rules.name,
        content_sha256=_sha256(raw),
    )


def _message_fault(exc: BaseException) -> bool:
    """Whether a failure may be the message's own doing, so trying it alone may get past it.

    sgalert's own errors (nobody holds a key yet, the store is busy, an earlier batch failed)
    and SQLite's operational ones (disk full, I/O error, locked) hold up every message alike:
    they are retried as before, and no message is counted or quarantined for them.
    """
    return isinstance(exc, Exception) and not isinstance(
        exc, SgalertError | sqlite3.OperationalError
    )


def _ready() -> bool:
    """Nothing: a worker that ran it has started and imported this module."""
    return True


_PR_SET_PDEATHSIG = 1


def _exit_with_parent(parent_pid: int) -> None:
    """In each worker: end when the process that started it ends, however it ends.

    A SIGKILLed ``sgalert serve`` runs no cleanup, and a worker waiting for work would wait for
    ever (about 100 MB each). On Linux the kernel kills the worker with its parent
    (``PR_SET_PDEATHSIG``; strictly, with the parent's thread that spawned it, which is the
    event loop's, alive as long as the ingestor). Everywhere, a daemon thread waits on the
    parent's sentinel (a pipe the parent holds open until it dies) and watches the parent id.
    """
    if sys.platform == "linux":
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the thread below still ends the worker
    if os.getppid() != parent_pid:  # the parent died before the watch began
        os._exit(0)
    threading.Thread(
        target=_wait_for_parent, args=(parent_pid,), name="sgalert-parent-watch", daemon=True
    ).start()


def _wait_for_parent(parent_pid: int) -> None:
    parent = multiprocessing.parent_process()
    while True:
        if parent is not None:
            parent.join(timeout=1.0)
            if not parent.is_alive():
                os._exit(0)
        else:
            threading.Event().wait(1.0)
        if os.getppid() != parent_pid:
            os._exit(0)


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
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_exit_with_parent,
                initargs=(os.getpid(),),
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

        A failure that may be a message's own doing does not fail the batch: its messages are
        tried one at a time, each alone in its own transaction, and one that fails
        :data:`MAX_TRIES` tries is quarantined (or, failing that, held: see the module
        docstring). Every outcome then says what became of its message; the checkpoint is
        stored once all of them are cases or held.
        """
        if not messages and checkpoint is None:
            return []
        turn = self._turns.setdefault(rules.name, _Turns())
        ticket = turn.take()
        tries = [_Try() for _ in messages]
        try:
            outcomes = await self._ingest(messages, rules, checkpoint, turn, ticket, tries)
        except BaseException:
            turn.poison()
            await self._uncount(messages, tries)
            raise
        finally:
            await asyncio.shield(turn.finish(ticket))
        return [replace(o, key=m.key) for o, m in zip(outcomes, messages, strict=True)]

    async def _ingest(
        self,
        messages: Sequence[Inbound],
        rules: SourceRules,
        checkpoint: str | None,
        turn: _Turns,
        ticket: int,
        tries: list[_Try],
    ) -> list[IngestOutcome]:
        held, as_a_batch = await self._count_tries(messages, rules.name, tries)
        todo = [i for i in range(len(messages)) if i not in held]
        outcomes: dict[int, IngestOutcome] = {
            i: IngestOutcome("", "", rules.type, (), False, held=True) for i in held
        }
        if as_a_batch:
            batch = [messages[i] for i in todo]
            try:
                prepared = await self._prepare(batch, rules)
                sealed = await self.service.seal([p.case for p in prepared])
                await turn.wait_for(ticket)
                async with self.service.store.write() as db:
                    current = await self.service.reseal_if_rotated(db, sealed)
                    stored = await on_connection(
                        db,
                        lambda conn: _store_now(
                            conn,
                            prepared,
                            current,
                            rules.name,
                            checkpoint,
                            self.service.schedule_now,
                        ),
                    )
            except Exception as exc:
                if not _message_fault(exc) or not await self._checkpoint_storable(
                    rules.name, checkpoint
                ):
                    raise
                for i in todo:
                    tries[i].failed(type(exc).__name__)
                log.warning(
                    "source %s: a batch of %d failed (%s); trying its messages one at a time",
                    rules.name,
                    len(batch),
                    type(exc).__name__,
                )
            else:
                for i, outcome in zip(todo, stored, strict=True):
                    tries[i].open = False
                    outcomes[i] = outcome
                return [outcomes[i] for i in range(len(messages))]
        await turn.wait_for(ticket)
        for i in todo:
            outcomes[i] = await self._one_at_a_time(messages[i], rules, tries[i])
        if checkpoint is not None:
            async with self.service.store.write() as db:
                await on_connection(
                    db, lambda conn: _save_checkpoint(conn, rules.name, checkpoint, iso(utcnow()))
                )
        return [outcomes[i] for i in range(len(messages))]

    async def _checkpoint_storable(self, source_name: str, checkpoint: str | None) -> bool:
        """Whether the checkpoint alone can be stored (tried, then rolled back): if it cannot,
        that, not a message, failed the batch, and trying the messages alone would store them
        without it."""
        if checkpoint is None:
            return True
        try:
            async with self.service.store.write() as db:
                await on_connection(
                    db, lambda conn: _save_checkpoint(conn, source_name, checkpoint, "")
                )
                raise _RolledBack
        except _RolledBack:
            return True
        except Exception:
            return False

    async def _count_tries(
        self, messages: Sequence[Inbound], source_name: str, tries: list[_Try]
    ) -> tuple[set[int], bool]:
        """Which messages are held, and whether to try the rest as one batch.

        If none of them has been tried before, a try is counted for each (before it begins)
        and they are tried together. If one has (a crash cut its batch short, say), they are
        tried one at a time, each try counted just before it, so only the message that was
        being read when the process died is counted for that.
        """
        keys = list(dict.fromkeys(m.key for m in messages if m.key))
        known: dict[str, tuple[int, bool]] = {}
        if keys:
            now = iso(utcnow())
            async with self.service.store.write() as db:
                known = await on_connection(
                    db, lambda conn: _count_tries_now(conn, keys, source_name, now, batch=True)
                )
        held: set[int] = set()
        as_a_batch = not any(before for before, is_held in known.values() if not is_held)
        for index, message in enumerate(messages):
            before, is_held = known.get(message.key, (0, False)) if message.key else (0, False)
            if is_held:
                held.add(index)
            elif as_a_batch:
                tries[index].tries, tries[index].open = 1, True
            else:
                tries[index].tries = before
        return held, as_a_batch

    async def _count_one_more(self, message: Inbound, source_name: str, tried: _Try) -> None:
        if message.key:
            now = iso(utcnow())
            key = message.key
            async with self.service.store.write() as db:
                await on_connection(
                    db,
                    lambda conn: _count_tries_now(conn, [key], source_name, now, tried.error),
                )
        tried.tries, tried.open = tried.tries + 1, True

    async def _one_at_a_time(
        self, message: Inbound, rules: SourceRules, tried: _Try
    ) -> IngestOutcome:
        """Try one message alone until it is stored or has had its tries; then quarantine it."""
        while True:
            if not tried.open:
                if tried.tries >= MAX_TRIES:
                    break
                await self._count_one_more(message, rules.name, tried)
            try:
                outcome = await self._store_alone(message, rules)
            except Exception as exc:
                if not _message_fault(exc):
                    raise
                tried.failed(type(exc).__name__)
                log.warning(
                    "source %s: a message failed alone (%s), try %d of %d",
                    rules.name,
                    tried.error,
                    tried.tries,
                    MAX_TRIES,
                )
            else:
                tried.open = False
                return outcome
        return await self._quarantine(message, rules, tried)

    async def _store_alone(self, message: Inbound, rules: SourceRules) -> IngestOutcome:
        (prepared,) = self._prepare_all([message], rules)
        sealed = await self.service.seal([prepared.case])
        async with self.service.store.write() as db:
            current = await self.service.reseal_if_rotated(db, sealed)
            (outcome,) = await on_connection(
                db,
                lambda conn: _store_now(
                    conn, [prepared], current, rules.name, None, self.service.schedule_now
                ),
            )
        return outcome

    async def _quarantine(self, message: Inbound, rules: SourceRules, tried: _Try) -> IngestOutcome:
        item = Prepared(
            quarantined_case(message, rules, failed=tried.tries, error=tried.error, now=utcnow()),
            message.key,
        )
        error = tried.error or "interrupted"
        try:
            sealed = await self.service.seal([item.case])
            async with self.service.store.write() as db:
                current = await self.service.reseal_if_rotated(db, sealed)
                outcome = await on_connection(
                    db,
                    lambda conn: _quarantine_now(
                        conn, item, current, rules.name, self.service.schedule_now, error
                    ),
                )
        except Exception as exc:
            if not _message_fault(exc):
                raise
            return await self._hold(message, rules, tried, type(exc).__name__)
        tried.open = False
        log.warning(
            "source %s: message %s quarantined as %s after %d tries (%s)",
            rules.name,
            message.key or "(a file)",
            outcome.ref,
            tried.tries,
            error,
        )
        return outcome

    async def _hold(
        self, message: Inbound, rules: SourceRules, tried: _Try, quarantine_error: str
    ) -> IngestOutcome:
        """Neither a case nor a quarantined one: leave it unread, skip it, and say so."""
        now = utcnow()
        error = tried.error or "interrupted"
        async with self.service.store.write() as db:
            await on_connection(
                db,
                lambda conn: _hold_now(conn, message.key, rules.name, error, quarantine_error, now),
            )
        tried.open = False
        log.error(
            "source %s: message %s could not be quarantined (%s, then %s); it stays unread"
            " in its mailbox and is skipped until released: see `sgalert status`",
            rules.name,
            message.key or "(a file)",
            error,
            quarantine_error,
        )
        return IngestOutcome("", "", rules.type, (), False, held=True)

    async def _uncount(self, messages: Sequence[Inbound], tries: list[_Try]) -> None:
        """Tries cut short by the store or a shutdown, not by a message, are not counted.

        Best effort: if the store cannot take it now, the tries stay counted, and the messages
        are only tried one at a time next time (and quarantined a try sooner).
        """
        keys = list(
            dict.fromkeys(m.key for m, t in zip(messages, tries, strict=True) if t.open and m.key)
        )
        if not keys:
            return

        async def uncount() -> None:
            async with self.service.store.write() as db:
                await on_connection(db, lambda conn: _uncount_now(conn, keys))

        task = asyncio.ensure_future(uncount())
        task.add_done_callback(_ignore_failure)
        try:
            await asyncio.shield(task)
        except BaseException:  # noqa: S110 (the caller re-raises what stopped the batch)
            pass


class _RolledBack(Exception):
    """Ends a transaction that only checked something could be written."""


@dataclass(slots=True)
class _Try:
    """One message's tries, as the store counts them, and whether the last is still going."""

    tries: int = 0
    open: bool = False
    error: str | None = None

    def failed(self, error: str) -> None:
        self.open, self.error = False, error


def _ignore_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so it is not reported as never retrieved


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
    # Each message is a case now: its tries end with the transaction that made it one.
    conn.executemany(
        "DELETE FROM ingest_tries WHERE idempotency_key = ? AND held_at IS NULL",
        [(key,) for key in dict.fromkeys(keys)],
    )
    if repeats:
        audit.append_now(conn, repeats)
    if checkpoint is not None:
        _save_checkpoint(conn, source_name, checkpoint, now)
    return final


def _save_checkpoint(conn: sqlite3.Connection, source_name: str, checkpoint: str, now: str) -> None:
    conn.execute(
        "INSERT INTO inbox_checkpoints (source_name, state, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT(source_name) DO UPDATE SET state = excluded.state,"
        " updated_at = excluded.updated_at",
        (source_name, checkpoint, now),
    )


def _count_tries_now(
    conn: sqlite3.Connection,
    keys: Sequence[str],
    source_name: str,
    now: str,
    error: str | None = None,
    *,
    batch: bool = False,
) -> dict[str, tuple[int, bool]]:
    """Count one more try for each key, in its own committed transaction, before the try: so a
    try that crashes the process is counted too. Returns each key's count before, and whether
    it is held (held keys are not counted: they are not tried). For a ``batch``, nothing is
    counted if any key was tried before: its messages will be tried (and counted) alone."""
    known: dict[str, tuple[int, bool]] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        for key, tries, held in conn.execute(
            "SELECT idempotency_key, tries, held_at IS NOT NULL FROM ingest_tries"
            f" WHERE idempotency_key IN ({','.join('?' * len(chunk))})",
            chunk,
        ):
            known[key] = (int(tries), bool(held))
    if batch and any(tries for tries, held in known.values() if not held):
        return known
    conn.executemany(
        "INSERT INTO ingest_tries (idempotency_key, source_name, tries, error, first_tried_at,"
        " last_tried_at) VALUES (?, ?, 1, ?, ?, ?) ON CONFLICT(idempotency_key) DO UPDATE SET"
        " tries = tries + 1, error = coalesce(excluded.error, error),"
        " last_tried_at = excluded.last_tried_at WHERE held_at IS NULL",
        [(key, source_name, error, now, now) for key in keys],
    )
    return known


def _uncount_now(conn: sqlite3.Connection, keys: Sequence[str]) -> None:
    rows = [(key,) for key in keys]
    conn.executemany(
        "UPDATE ingest_tries SET tries = tries - 1 WHERE idempotency_key = ? AND held_at IS NULL",
        rows,
    )
    conn.executemany(
        "DELETE FROM ingest_tries WHERE idempotency_key = ? AND tries <= 0 AND held_at IS NULL",
        rows,
    )


def _quarantine_now(
    conn: sqlite3.Connection,
    item: Prepared,
    sealed: SealedBatch,
    source_name: str,
    schedule: Callable[[sqlite3.Connection, Sequence[tuple[StoredCase, NewCase]]], None],
    error: str,
) -> IngestOutcome:
    """Store a quarantined case like any other (the same repeat rules, clocks and pages)."""
    (outcome,) = _store_now(conn, [item], sealed, source_name, None, schedule)
    if outcome.created:
        audit.append_now(
            conn,
            [
                audit.AuditEvent(
                    audit.ENGINE,
                    MESSAGE_QUARANTINED,
                    outcome.case_id,
                    {"source": source_name, "error": error},
                )
            ],
        )
    return outcome


def _hold_now(
    conn: sqlite3.Connection,
    key: str | None,
    source_name: str,
    error: str,
    quarantine_error: str,
    now: datetime,
) -> None:
    """Remember a message that is not a case (so it is skipped, not retried for ever) and
    page the team about it: a new ``message-quarantined`` alert for its source, listing
    every message held there by its mailbox key and error class. A file has no mailbox to
    hold it in: the person who ran ``sgalert ingest`` is told, and the audit log records it."""
    at = iso(now)
    if key is not None:
        conn.execute(
            "INSERT INTO ingest_tries (idempotency_key, source_name, tries, error, first_tried_at,"
            " last_tried_at, held_at) VALUES (?, ?, 0, ?, ?, ?, ?)"
            " ON CONFLICT(idempotency_key) DO UPDATE SET error = excluded.error,"
            " last_tried_at = excluded.last_tried_at, held_at = excluded.held_at",
            (key, source_name, error, at, at, at),
        )
        _refresh_held_alert(conn, source_name, at, page_again=True)
    audit.append_now(
        conn,
        [
            audit.AuditEvent(
                audit.ENGINE,
                "message-held",
                detail={
                    "source": source_name,
                    "key": key or "(a file)",
                    "error": error,
                    "quarantine_error": quarantine_error,
                },
            )
        ],
    )


_ALERT_LISTS = 20  # held messages named in an alert's detail; `sgalert status` lists them all


def _refresh_held_alert(
    conn: sqlite3.Connection, source_name: str, at: str, *, page_again: bool
) -> None:
    """Raise the source's ``message-quarantined`` alert again (paged anew) for a newly held
    message; after a release, update it quietly, or clear it once none is held."""
    rows = conn.execute(
        "SELECT idempotency_key, error, held_at FROM ingest_tries"
        " WHERE source_name = ? AND held_at IS NOT NULL ORDER BY held_at, idempotency_key",
        (source_name,),
    ).fetchall()
    held = [{"key": str(r[0]), "error": str(r[1]), "at": str(r[2])} for r in rows]
    open_alert = conn.execute(
        "SELECT id FROM system_alerts WHERE kind = ? AND source_name = ? AND cleared_at IS NULL",
        (MESSAGE_QUARANTINED, source_name),
    ).fetchone()
    if not held or page_again:
        conn.execute(
            "UPDATE system_alerts SET cleared_at = ? WHERE kind = ? AND source_name = ?"
            " AND cleared_at IS NULL",
            (at, MESSAGE_QUARANTINED, source_name),
        )
    if not held:
        return
    detail = json.dumps(
        {"since": held[0]["at"], "held": len(held), "messages": held[:_ALERT_LISTS]}
    )
    if not page_again and open_alert is not None:
        conn.execute("UPDATE system_alerts SET detail = ? WHERE id = ?", (detail, open_alert[0]))
    else:
        conn.execute(
            "INSERT INTO system_alerts (kind, source_name, raised_at, detail) VALUES (?, ?, ?, ?)",
            (MESSAGE_QUARANTINED, source_name, at, detail),
        )


@dataclass(frozen=True, slots=True)
class HeldMessage:
    """A message left unread in its mailbox because it could be neither read nor quarantined."""

    key: str
    source_name: str
    error: str
    held_at: datetime


async def held_messages(store: Store) -> list[HeldMessage]:
    """Every held message, oldest first: metadata only (mailbox key and error class)."""
    from sgalert.clock import parse_iso

    rows = await store.fetchall(
        "SELECT idempotency_key, source_name, error, held_at FROM ingest_tries"
        " WHERE held_at IS NOT NULL ORDER BY held_at, idempotency_key"
    )
    return [HeldMessage(str(r[0]), str(r[1]), str(r[2]), parse_iso(r[3])) for r in rows]


async def release_held(store: Store, key: str, actor: str = audit.ENGINE) -> HeldMessage:
    """Forget a held message (someone has dealt with it), so its mailbox is free to offer it
    again, with fresh tries; the source's alert is updated, or cleared if none is left."""
    from sgalert.errors import NotFound

    found = [h for h in await held_messages(store) if h.key == key]
    if not found:
        raise NotFound(f"no held message has the key {key!r}; `sgalert status` lists them")
    now = iso(utcnow())
    async with store.write() as db:
        await db.execute(
            "DELETE FROM ingest_tries WHERE idempotency_key = ? AND held_at IS NOT NULL", (key,)
        )
        await on_connection(
            db, lambda conn: _refresh_held_alert(conn, found[0].source_name, now, page_again=False)
        )
        await audit.append(
            db,
            [
                audit.AuditEvent(
                    actor, "message-released", detail={"source": found[0].source_name, "key": key}
                )
            ],
        )
    return found[0]


async def load_checkpoint(service: CaseService, source_name: str) -> str | None:
    rows = await service.store.fetchall(
        "SELECT state FROM inbox_checkpoints WHERE source_name = ?", (source_name,)
    )
    return str(rows[0][0]) if rows else None
