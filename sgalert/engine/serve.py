"""The always-on engine behind ``sgalert serve``.

One asyncio task group runs: the mailbox watchers, the timer loop (fires due escalation steps),
the outbox sender (delivers pages), and the lease keeper (one engine per store; its heartbeat
tells the TUI the engine is alive). A second ``serve`` on the same store waits as a standby and
takes over when the lease lapses. The engine holds public keys only: it can create cases and page
people about them, but cannot read one.

Timing is driven by an injectable clock; ``speed`` lets tests run minutes in milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Mapping
from datetime import datetime, time, timedelta
from pathlib import Path

from sgalert.clock import Clock, iso, parse_iso, utcnow
from sgalert.config import Config
from sgalert.engine.watch import watch_sources
from sgalert.engine.workplace import Workplace
from sgalert.ports import Notifier, notifier_factory
from sgalert.records import audit
from sgalert.records.alerts import AlertKind, raise_alert
from sgalert.records.store import on_connection
from sgalert.routing.calendar_check import note_calendar_coverage
from sgalert.routing.digest import build_digest, is_digest_day, late_reason, queue_digest, slot
from sgalert.routing.duty import load_rota
from sgalert.routing.escalation import Duty, fire_due, next_due, page_system_alerts
from sgalert.routing.outbox import OutboxSender, release_claims

log = logging.getLogger("sgalert.engine.serve")

LEASE_SECONDS = 15.0
RENEW_SECONDS = 5.0
MAX_IDLE_SECONDS = 1.0
DAILY_AT = time(7, 0)  # local time of the daily jobs
DIGEST_ALERT_AFTER = timedelta(minutes=15)  # a digest failing this long is a system alert


def build_notifiers(config: Config, root: Path) -> dict[str, Notifier]:
    """One notifier per configured channel, in the config's order (the fallback order)."""
    return {c.name: notifier_factory(c.kind)(c.name, c.options, root) for c in config.channels}


def _dead_local_holder(holder: str) -> bool:
    """A lease left by a process on this host that no longer exists (killed, crashed).

    Without this, an engine restarted after ``kill -9`` would wait out the whole lease before
    firing overdue steps.
    """
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class LeaseLost(Exception):
    """Another engine holds the store now; this one must stop."""


class Engine:
    def __init__(
        self,
        service: Workplace,
        root: Path,
        *,
        notifiers: Mapping[str, Notifier] | None = None,
        clock: Clock = utcnow,
        speed: float = 1.0,
        holder: str | None = None,
        watch: bool = True,
    ) -> None:
        assert service.config is not None and service.plan is not None
        self.service = service
        self.config: Config = service.config
        self.root = root
        self.notifiers = (
            dict(notifiers) if notifiers is not None else build_notifiers(self.config, root)
        )
        self.sender = OutboxSender(
            service.store, self.notifiers, clock, zone=self.config.calendar.zone
        )
        self._clock = clock
        self.speed = speed
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self.watch = watch
        self._wake_timers = asyncio.Event()
        self.started_at: datetime | None = None  # when this engine took the store
        self._digest_day: str | None = None  # the last day whose digest is known to be queued
        self._digest_retry_at: datetime | None = None  # after a failure, not before this
        self._digest_failing_since: datetime | None = None  # the first of consecutive failures

    def _seconds(self, until: datetime | None) -> float:
        if until is None:
            return MAX_IDLE_SECONDS
        real = (until - self._clock()).total_seconds() / self.speed
        return max(0.0, min(real, MAX_IDLE_SECONDS))

    async def _sleep(self, event: asyncio.Event, seconds: float) -> None:
        if seconds <= 0:
            return
        try:
            async with asyncio.timeout(seconds):
                await event.wait()
        except TimeoutError:
            pass
        event.clear()

    def wake(self) -> None:
        """New cases were stored in this process: look at the timers now."""
        self._wake_timers.set()

    # ----- the lease ----------------------------------------------------------------------

    async def try_lease(self) -> bool:
        now = self._clock()
        async with self.service.store.write() as db:
            rows = list(await db.execute_fetchall("SELECT holder, expires_at FROM engine_lease"))
            if (
                rows
                and rows[0][0] != self.holder
                and parse_iso(rows[0][1]) > now
                and not _dead_local_holder(str(rows[0][0]))
            ):
                return False
            expires = iso(now + timedelta(seconds=LEASE_SECONDS * self.speed))
            await db.execute(
                "INSERT INTO engine_lease (id, holder, expires_at, heartbeat_at)"
                " VALUES (1, ?, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET holder = excluded.holder,"
                " expires_at = excluded.expires_at, heartbeat_at = excluded.heartbeat_at",
                (self.holder, expires, iso(now)),
            )
            if not rows or rows[0][0] != self.holder:
                # Whatever the last holder had claimed it will never record: send it now
                # rather than after the claim's lease runs out.
                released = await on_connection(db, release_claims)
                await audit.append(
                    db,
                    [
                        audit.AuditEvent(
                            audit.ENGINE,
                            "engine-started",
                            detail={"holder": self.holder, "released_claims": released},
                        )
                    ],
                )
        return True

    async def acquire_lease(self) -> None:
        """Wait as a standby until no other engine holds the store."""
        announced = False
        while not await self.try_lease():
            if not announced:
                log.info("another engine holds the store; waiting as standby")
                announced = True
            await asyncio.sleep(RENEW_SECONDS / 2)
        log.info("engine %s holds the store", self.holder)

    async def keep_lease(self) -> None:
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            self.service.store.check_file()  # deleted or replaced: stop, do not write to a ghost
            if not await self.try_lease():
                raise LeaseLost(f"engine {self.holder} lost the store to another engine")

    async def release_lease(self) -> None:
        async with self.service.store.write() as db:
            await db.execute("DELETE FROM engine_lease WHERE holder = ?", (self.holder,))

    # ----- timers and outbox --------------------------------------------------------------

    async def tick_alerts(self) -> int:
        """Page the team about system alerts (a mailbox down, a rota gap) once each."""
        plan = self.service.plan
        assert plan is not None
        waiting = await self.service.store.fetchall(
            "SELECT 1 FROM system_alerts WHERE cleared_at IS NULL AND paged_at IS NULL LIMIT 1"
        )
        if not waiting:  # the usual case: no write transaction at all
            return 0
        now = self._clock()
        async with self.service.store.write() as db:
            queued = await on_connection(db, lambda conn: page_system_alerts(conn, plan, now))
        if queued:
            self.sender.wake()
        return queued

    async def run_daily_jobs(self) -> None:
        """Once per local day, after ``DAILY_AT``: the rota check (the digest: ``run_digest``)."""
        now = self._clock()
        calendar = self.config.calendar
        local = calendar.local(now)
        if local.time() < DAILY_AT:
            return
        today = local.date().isoformat()
        rows = await self.service.store.fetchall(
            "SELECT last_day FROM daily_jobs WHERE name = 'rota-check'"
        )
        if rows and rows[0][0] == today:
            return
        view = await load_rota(self.service, since=now)
        gaps = view.gaps(now, 14)
        async with self.service.store.write() as db:
            if gaps:
                # Raised now; the first gap is when cover runs out (not a "since": it may be
                # days ahead). An alert already open keeps its raised_at but not a stale gap.
                detail = json.dumps(
                    {
                        "first_gap_from": iso(gaps[0].start),
                        "first_gap_to": iso(gaps[0].end),
                        "gaps": len(gaps),
                    }
                )
                await db.execute(
                    "INSERT OR IGNORE INTO system_alerts (kind, source_name, raised_at, detail)"
                    " VALUES ('rota-gap', 'rota', ?, ?)",
                    (iso(now), detail),
                )
                await db.execute(
                    "UPDATE system_alerts SET detail = ? WHERE kind = 'rota-gap'"
                    " AND cleared_at IS NULL",
                    (detail,),
                )
            else:
                await db.execute(
                    "UPDATE system_alerts SET cleared_at = ? WHERE kind = 'rota-gap'"
                    " AND cleared_at IS NULL",
                    (iso(now),),
                )
            await on_connection(db, lambda conn: note_calendar_coverage(conn, calendar, now))
            await db.execute(
                "INSERT INTO daily_jobs (name, last_day, last_run_at) VALUES ('rota-check', ?, ?)"
                " ON CONFLICT(name) DO UPDATE SET last_day = excluded.last_day,"
                " last_run_at = excluded.last_run_at",
                (today, iso(now)),
            )
            await audit.append(
                db, [audit.AuditEvent(audit.ENGINE, "rota-checked", detail={"gaps": len(gaps)})]
            )

    async def run_digest(self) -> int:
        """Queue today's digest once its slot has passed (late, saying why, if the engine was
        not running then). Exactly once per date: the outbox key and the ``daily_jobs`` row are
        written together, so a restart or a standby engine that takes over sends no second."""
        settings = self.config.digest
        if not settings.enabled:
            return 0
        now = self._clock()
        calendar = self.config.calendar
        day = calendar.local(now).date()
        due = slot(calendar, settings, day)
        if self._digest_day == day.isoformat() or now < due:
            return 0
        if not is_digest_day(calendar, settings, day):
            self._digest_day = day.isoformat()
            return 0
        rows = await self.service.store.fetchall(
            "SELECT last_day FROM daily_jobs WHERE name = 'digest'"
        )
        if rows and str(rows[0][0]) >= day.isoformat():
            self._digest_day = day.isoformat()
            return 0
        late = late_reason(due, now, self.started_at, calendar.zone)
        config = self.config
        # Built in a read (it may verify the whole audit chain), queued in a short write.
        async with self.service.store.read() as db:
            digest = await on_connection(
                db, lambda conn: build_digest(conn, config, day, now, late=late)
            )
        queued = await self.service.store.transact(
            lambda conn: queue_digest(conn, config, digest, now)
        )
        self._digest_day = day.isoformat()
        log.info("daily digest for %s queued for %d recipient(s)", day, queued)
        if queued:
            self.sender.wake()
        return queued

    async def digest_tick(self) -> int:
        """:meth:`run_digest`, but a digest that fails never stops the engine paging: it is
        logged (no personal data: the digest holds none) and tried again in a few minutes."""
        now = self._clock()
        if self._digest_retry_at is not None and now < self._digest_retry_at:
            return 0
        try:
            queued = await self.run_digest()
        except Exception:
            log.exception("the daily digest could not be queued; trying again in 5 minutes")
            self._digest_retry_at = now + timedelta(minutes=5)
            self._digest_failing_since = self._digest_failing_since or now
            if now - self._digest_failing_since >= DIGEST_ALERT_AFTER:
                await self._digest_not_sent(now)
            return 0
        self._digest_failing_since = None
        return queued

    async def _digest_not_sent(self, now: datetime) -> None:
        """Tell the team (the head among them) that today's digest is not going out, as a
        digest refused by every channel is: the head must not read its absence as all well.
        Cleared when the day's digest is delivered."""
        day = self.config.calendar.local(now).date().isoformat()
        try:
            await self.service.store.transact(
                lambda conn: raise_alert(
                    conn,
                    AlertKind.PAGE_UNDELIVERABLE,
                    f"daily digest {day}",
                    now,
                    {
                        "audience": "team",
                        "text": "today's daily digest could not be built:"
                        " the head has none; see the engine's log",
                    },
                )
            )
        except Exception:
            log.exception("the alert that the daily digest is not going out could not be raised")

    async def tick_timers(self) -> int:
        now = self._clock()
        due = await self.service.store.fetchall(
            "SELECT 1 FROM timers WHERE fired_at IS NULL AND cancelled_at IS NULL AND due_at <= ?"
            " LIMIT 1",
            (iso(now),),
        )
        if not due:  # nothing to decide: no rota load, no write transaction
            return 0
        view = await load_rota(self.service, since=now)
        duty = Duty(view.who(now).who)
        plan = self.service.plan
        assert plan is not None
        async with self.service.store.write() as db:
            queued = await on_connection(db, lambda conn: fire_due(conn, plan, duty, now))
        if queued:
            self.sender.wake()
        return queued

    async def timer_loop(self) -> None:
        while True:
            await self.tick_timers()
            await self.run_daily_jobs()
            await self.digest_tick()
            await self.tick_alerts()
            rows = await self.service.store.fetchall(
                "SELECT MIN(due_at) FROM timers WHERE fired_at IS NULL AND cancelled_at IS NULL"
            )
            upcoming = parse_iso(rows[0][0]) if rows and rows[0][0] else None
            await self._sleep(self._wake_timers, self._seconds(upcoming))

    async def _pause(self, event: asyncio.Event, until: datetime | None) -> None:
        await self._sleep(event, self._seconds(until))

    async def outbox_loop(self) -> None:
        await self.sender.run(self._pause)

    # ----- all together -------------------------------------------------------------------

    async def run(self) -> None:
        await self.acquire_lease()
        self.started_at = self._clock()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.keep_lease(), name="lease")
                group.create_task(self.timer_loop(), name="timers")
                group.create_task(self.outbox_loop(), name="outbox")
                if self.watch and self.config.sources:
                    group.create_task(
                        watch_sources(self.service, self.config, self.root, on_stored=self.wake),
                        name="watchers",
                    )
        finally:
            await asyncio.shield(self._shutdown())

    async def _shutdown(self) -> None:
        for notifier in self.notifiers.values():
            try:
                await notifier.close()
            except Exception:  # closing is best effort
                log.warning("closing a notifier failed")
        try:
            await self.release_lease()
        except Exception:
            log.warning("could not release the engine lease; it will lapse by itself")


__all__ = ["Engine", "LeaseLost", "build_notifiers", "next_due"]
