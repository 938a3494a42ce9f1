"""Seal, store and schedule new cases: what ingest and manual entry call.

A new case is sealed with public keys only (no one need be unlocked), outside any transaction
where it can be, so sealing the next batch overlaps storing this one. It is stored in one write
transaction that first checks no group key rotated since it was sealed (else it is sealed again,
so a person removed a moment ago cannot read it), and that also starts its statutory clocks and
first escalation timers: a case is never stored without the pages that follow it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Mapping, Sequence

import aiosqlite

from sgalert.clock import Clock, utcnow
from sgalert.config import Config
from sgalert.model import Readers, Source
from sgalert.records import audit, keyring, keytrust
from sgalert.records.cases import NewCase, SealedBatch, StoredCase, insert_now, seal_cases
from sgalert.records.store import Store, on_connection
from sgalert.routing.calendar_check import flag_guessed_deadlines
from sgalert.routing.escalation import Plan, schedule_new_cases


class _Rotated(Exception):
    """A group key rotated between sealing and storing: seal again inside the transaction."""


class NewCases:
    """The new-case path over one store.

    ``config`` (calendar and readers) and ``plan`` (what to schedule) may be ``None`` for a
    store used without a workspace's config: cases are then sealed to their default readers and
    nothing is scheduled. They and ``clock`` are read at each call, so whoever owns this (the
    service façade) may change them.
    """

    def __init__(
        self, store: Store, config: Config | None, plan: Plan | None, clock: Clock = utcnow
    ) -> None:
        self.store = store
        self.config = config
        self.plan = plan
        self.clock = clock
        # Public keys only; checked against the store inside every write that uses them.
        self._keyring: keyring.PublicKeyring | None = None

    @property
    def readers(self) -> Mapping[Source, Readers] | None:
        return self.config.readers if self.config else None

    def schedule_now(
        self, conn: sqlite3.Connection, pairs: Sequence[tuple[StoredCase, NewCase]]
    ) -> None:
        """Clocks and first escalation timers, in the transaction that stores the cases."""
        if self.plan is not None and pairs:
            schedule_new_cases(conn, self.plan, pairs, self.clock())

    async def insert(
        self, db: aiosqlite.Connection, batch: SealedBatch, actor: str
    ) -> list[StoredCase]:
        """Inside a write transaction: store sealed cases and schedule them."""

        def work(conn: sqlite3.Connection) -> list[StoredCase]:
            stored = insert_now(conn, batch, actor)
            self.schedule_now(conn, [(s, c.case) for s, c in zip(stored, batch.cases, strict=True)])
            return stored

        return await on_connection(db, work)

    async def create_cases(
        self, cases: Sequence[NewCase], actor: str = audit.ENGINE
    ) -> list[StoredCase]:
        """Seal and store cases in one transaction using public keys only (the engine's path)."""
        return await self.store_sealed(await self.seal(cases), actor)

    async def store_sealed(
        self, sealed: SealedBatch, actor: str = audit.ENGINE
    ) -> list[StoredCase]:
        """Store cases sealed by :meth:`seal`, resealing first if a group key rotated since."""

        def work(conn: sqlite3.Connection) -> list[StoredCase]:
            current = {
                (str(r[0]), int(r[1]))
                for r in conn.execute("SELECT name, current_version FROM groups")
            }
            if not sealed.group_versions() <= current:
                raise _Rotated
            stored = insert_now(conn, sealed, actor)
            self.schedule_now(
                conn, [(s, c.case) for s, c in zip(stored, sealed.cases, strict=True)]
            )
            return stored

        try:
            return await self.store.transact(work)  # one thread hop: the usual case
        except _Rotated:
            async with self.store.write() as db:
                current = await self.reseal_if_rotated(db, sealed)
                return await self.insert(db, current, actor)

    async def create_cases_in_batches(
        self, cases: Sequence[NewCase], batch_size: int = 100, actor: str = audit.ENGINE
    ) -> list[StoredCase]:
        """Store a backlog: each batch in one transaction, sealing the next while one commits.

        Sealing is CPU work in a worker thread and SQLite releases the GIL while it writes and
        syncs, so the two overlap; a catch-up after an outage runs close to twice as fast.
        """
        chunks = [cases[i : i + batch_size] for i in range(0, len(cases), batch_size)]
        stored: list[StoredCase] = []
        if not chunks:
            return stored
        sealing = asyncio.create_task(self.seal(chunks[0]))
        for index in range(len(chunks)):
            sealed = await sealing
            if index + 1 < len(chunks):
                sealing = asyncio.create_task(self.seal(chunks[index + 1]))
            try:
                stored += await self.store_sealed(sealed, actor)
            except BaseException:
                sealing.cancel()
                raise
        return stored

    async def seal(self, cases: Sequence[NewCase]) -> SealedBatch:
        """Seal outside any transaction (in a worker thread for batches), so storing can overlap
        sealing. The public keys may be cached: :meth:`store_sealed` checks them again."""
        if self.config is not None:
            flag_guessed_deadlines(self.config.calendar, cases)
        ring = self._keyring
        if ring is None:
            async with self.store.read() as db:
                ring = self._keyring = await keytrust.load_public_keyring(db)
        if ring.untrusted:  # sealed to the trusted groups only: never quietly
            async with self.store.write() as db:
                await keytrust.alert_untrusted(db, ring)
        readers = self.readers
        if len(cases) <= 4:  # a thread hop costs more than sealing a handful
            return seal_cases(cases, ring, readers)
        return await asyncio.to_thread(seal_cases, cases, ring, readers)

    async def reseal_if_rotated(self, db: aiosqlite.Connection, sealed: SealedBatch) -> SealedBatch:
        """Inside the write transaction: if a group key rotated since sealing, seal again.

        Otherwise a person removed a moment ago could read a case sealed to the old key.
        """
        current = {
            (str(row[0]), int(row[1]))
            for row in await db.execute_fetchall("SELECT name, current_version FROM groups")
        }
        if sealed.group_versions() <= current:
            return sealed
        ring = self._keyring = await keytrust.load_public_keyring(db)
        await keytrust.alert_untrusted(db, ring)
        return seal_cases([s.case for s in sealed.cases], ring, self.readers)
