"""From raw message bytes to exactly one sealed case.

:func:`~sgalert.intake.prepare.prepare` is pure CPU: parse, check the sender, extract the
facts, escape what will be displayed, and lay out the fields to seal (the original bytes are
kept whole, as evidence). ``Ingestor.ingest`` seals a batch and stores it in one transaction
that also recognises repeats:

- the mailbox's own key (mailbox, UIDVALIDITY, UID; or Graph's message id) seen before: the same
  case, nothing new;
- identical bytes seen before (from any mailbox, or a file): the same case, nothing new;
- the same Message-ID with different bytes: a **new** case flagged ``possible-duplicate``,
  because a sender controls Message-ID and a forged earlier copy must not suppress a real alert.

The caller marks the message read or moves it only after ``ingest`` returns: store first.

A message that cannot be prepared or stored (a bug its bytes set off, or one that kills the
process) must not hold up its mailbox. Tries are counted in the store *before* each try, so a
crash counts too, and a batch that fails is split: each message is tried alone, and one that
fails :data:`~sgalert.intake.poison.MAX_TRIES` times is **quarantined**, or failing that
**held** (:mod:`sgalert.intake.poison`). The rest of the batch goes on either way.

Preparing is :mod:`sgalert.intake.prepare` (in the worker processes of
:mod:`sgalert.intake.workers` for a backlog); sealing, storing and scheduling the new cases is
:mod:`sgalert.intake.new_cases`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import replace

from sgalert.clock import iso, utcnow
from sgalert.config import Config
from sgalert.errors import StoreError
from sgalert.intake.new_cases import NewCases
from sgalert.intake.poison import (
    MAX_TRIES,
    MESSAGE_QUARANTINED,
    Try,
    count_tries_now,
    hold_now,
    message_fault,
    quarantined_case,
    uncount_now,
)
from sgalert.intake.prepare import Prepared, SourceRules
from sgalert.intake.workers import PreparePool
from sgalert.model import Flag, Source
from sgalert.ports import Inbound, IngestOutcome
from sgalert.records import audit
from sgalert.records.cases import NewCase, SealedBatch, SealedCase, StoredCase, insert_now
from sgalert.records.store import Store, in_statements, on_connection

# SourceRules too: every caller of ``Ingestor.ingest`` passes one.
__all__ = ["Ingestor", "SourceRules", "load_checkpoint"]

log = logging.getLogger("sgalert.intake.ingest")


class Ingestor:
    """Turns batches of inbound messages into cases, each stored exactly once."""

    def __init__(self, cases: NewCases, config: Config, *, workers: int | None = None) -> None:
        self.cases = cases
        self.store = cases.store
        self.config = config
        self.pool = PreparePool(config, workers)
        self._turns: dict[str, _Turns] = {}

    async def warm(self) -> None:
        """Start the worker processes now, so the first backlog does not wait for them."""
        await self.pool.warm()

    def close(self) -> None:
        self.pool.close()

    def rules(self, source_name: str) -> SourceRules:
        return SourceRules.from_config(self.config.source(source_name))

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
        tries = [Try() for _ in messages]
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
        tries: list[Try],
    ) -> list[IngestOutcome]:
        held, as_a_batch = await self._count_tries(messages, rules.name, tries)
        todo = [i for i in range(len(messages)) if i not in held]
        outcomes: dict[int, IngestOutcome] = {
            i: IngestOutcome("", "", rules.type, (), False, held=True) for i in held
        }
        if as_a_batch:
            batch = [messages[i] for i in todo]
            try:
                prepared = await self.pool.prepare(batch, rules)
                sealed = await self.cases.seal([p.case for p in prepared])
                await turn.wait_for(ticket)
                async with self.store.write() as db:
                    current = await self.cases.reseal_if_rotated(db, sealed)
                    stored = await on_connection(
                        db,
                        lambda conn: _store_now(
                            conn,
                            prepared,
                            current,
                            rules.name,
                            checkpoint,
                            self.cases.schedule_now,
                        ),
                    )
            except Exception as exc:
                if not message_fault(exc) or not await self._checkpoint_storable(
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
            async with self.store.write() as db:
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
            async with self.store.write() as db:
                await on_connection(
                    db, lambda conn: _save_checkpoint(conn, source_name, checkpoint, "")
                )
                raise _RolledBack
        except _RolledBack:
            return True
        except Exception:
            return False

    async def _count_tries(
        self, messages: Sequence[Inbound], source_name: str, tries: list[Try]
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
            async with self.store.write() as db:
                known = await on_connection(
                    db, lambda conn: count_tries_now(conn, keys, source_name, now, batch=True)
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

    async def _count_one_more(self, message: Inbound, source_name: str, tried: Try) -> None:
        if message.key:
            now = iso(utcnow())
            key = message.key
            async with self.store.write() as db:
                await on_connection(
                    db,
                    lambda conn: count_tries_now(conn, [key], source_name, now, tried.error),
                )
        tried.tries, tried.open = tried.tries + 1, True

    async def _one_at_a_time(
        self, message: Inbound, rules: SourceRules, tried: Try
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
                if not message_fault(exc):
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
        (prepared,) = self.pool.prepare_here([message], rules)
        sealed = await self.cases.seal([prepared.case])
        async with self.store.write() as db:
            current = await self.cases.reseal_if_rotated(db, sealed)
            (outcome,) = await on_connection(
                db,
                lambda conn: _store_now(
                    conn, [prepared], current, rules.name, None, self.cases.schedule_now
                ),
            )
        return outcome

    async def _quarantine(self, message: Inbound, rules: SourceRules, tried: Try) -> IngestOutcome:
        item = Prepared(
            quarantined_case(message, rules, failed=tried.tries, error=tried.error, now=utcnow()),
            message.key,
        )
        error = tried.error or "interrupted"
        try:
            sealed = await self.cases.seal([item.case])
            async with self.store.write() as db:
                current = await self.cases.reseal_if_rotated(db, sealed)
                outcome = await on_connection(
                    db,
                    lambda conn: _quarantine_now(
                        conn, item, current, rules.name, self.cases.schedule_now, error
                    ),
                )
        except Exception as exc:
            if not message_fault(exc):
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
        self, message: Inbound, rules: SourceRules, tried: Try, quarantine_error: str
    ) -> IngestOutcome:
        """Neither a case nor a quarantined one: leave it unread, skip it, and say so."""
        now = utcnow()
        error = tried.error or "interrupted"
        async with self.store.write() as db:
            await on_connection(
                db,
                lambda conn: hold_now(conn, message.key, rules.name, error, quarantine_error, now),
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

    async def _uncount(self, messages: Sequence[Inbound], tries: list[Try]) -> None:
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
            async with self.store.write() as db:
                await on_connection(db, lambda conn: uncount_now(conn, keys))

        task = asyncio.ensure_future(uncount())
        task.add_done_callback(_ignore_failure)
        try:
            await asyncio.shield(task)
        except BaseException:  # noqa: S110 (the caller re-raises what stopped the batch)
            pass


class _RolledBack(Exception):
    """Ends a transaction that only checked something could be written."""


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
    for statement, chunk in in_statements(
        "SELECT r.idempotency_key, c.id, c.ref, c.source, c.flags FROM mailbox_receipts r"
        " JOIN cases c ON c.id = r.case_id WHERE r.idempotency_key IN ({ids})",
        keys,
    ):
        for key, case_id, ref, source, flags in conn.execute(statement, chunk):
            known_keys[key] = (case_id, ref, source, flags)
    hashes = [p.case.content_sha256 for p in prepared if p.case.content_sha256]
    known_bytes: dict[str, tuple[str, str, str, str]] = {}
    for statement, chunk in in_statements(
        "SELECT content_sha256, id, ref, source, flags FROM cases WHERE content_sha256 IN ({ids})",
        hashes,
    ):
        for digest, case_id, ref, source, flags in conn.execute(statement, chunk):
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


async def load_checkpoint(store: Store, source_name: str) -> str | None:
    """Where a watcher left off in a mailbox (its own format), or None the first time."""
    rows = await store.fetchall(
        "SELECT state FROM inbox_checkpoints WHERE source_name = ?", (source_name,)
    )
    return str(rows[0][0]) if rows else None
