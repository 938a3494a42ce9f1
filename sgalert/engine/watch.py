"""Running the inbox watchers, and raising an alert when a mailbox goes quiet for a bad reason.

Each configured source runs its adapter under a supervisor: an adapter that crashes is restarted
with capped backoff, and every failure is reported to a :class:`SourceMonitor`. A mailbox that
cannot be reached for longer than its ``down_after_minutes`` opens a ``source-down`` system alert,
dated from when the failure began (the engine notifies the DSL team of open alerts, and the
monitoring officer too for the whistleblowing mailbox), because silence must never look like
safety.
The alert is cleared, and audited, as soon as the mailbox answers again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from sgalert.clock import Clock, iso, utcnow
from sgalert.config import Config, SourceConfig
from sgalert.engine.workplace import Workplace
from sgalert.errors import StoreError
from sgalert.intake.ingest import Ingestor, load_checkpoint
from sgalert.intake.prepare import SourceRules
from sgalert.ports import Deliver, Inbound, Inbox, IngestOutcome, inbox_factory
from sgalert.records import audit
from sgalert.records.store import Store
from sgalert.routing.backoff import backoff_seconds

log = logging.getLogger("sgalert.engine.watch")

SOURCE_DOWN = "source-down"


class SourceMonitor:
    """Tracks one source's reachability and opens or clears its ``source-down`` alert."""

    def __init__(self, store: Store, source: SourceConfig, clock: Clock = utcnow) -> None:
        self.store = store
        self.source = source
        self.down_after = timedelta(minutes=source.down_after_minutes)
        self._clock = clock
        self.failing_since: datetime | None = None
        self.last_reason = ""
        self.alerted = False

    async def ok(self) -> None:
        if self.failing_since is None and not self.alerted:
            return
        self.failing_since = None
        if self.alerted:
            async with self.store.write() as db:
                await db.execute(
                    "UPDATE system_alerts SET cleared_at = ? WHERE kind = ? AND source_name = ?"
                    " AND cleared_at IS NULL",
                    (iso(self._clock()), SOURCE_DOWN, self.source.name),
                )
                await audit.append(
                    db,
                    [
                        audit.AuditEvent(
                            audit.ENGINE, "source-recovered", detail={"source": self.source.name}
                        )
                    ],
                )
            self.alerted = False
            log.info("source %s reachable again", self.source.name)

    async def failing(self, reason: str) -> None:
        if self.failing_since is None:
            self.failing_since = self._clock()
            log.warning("source %s unreachable: %s", self.source.name, reason)
        self.last_reason = reason
        await self.check()

    async def check(self) -> None:
        """Open the alert once the source has been failing for longer than allowed."""
        if self.failing_since is None or self.alerted:
            return
        if self._clock() - self.failing_since < self.down_after:
            return
        async with self.store.write() as db:
            # Dated from when the failure began: that is the "since" every page, banner and
            # status line shows (mail may have been missed from then). The audit entry below
            # records when the alert itself was opened.
            await db.execute(
                "INSERT OR IGNORE INTO system_alerts (kind, source_name, raised_at, detail)"
                " VALUES (?, ?, ?, ?)",
                (
                    SOURCE_DOWN,
                    self.source.name,
                    iso(self.failing_since),
                    json.dumps({"since": iso(self.failing_since), "reason": self.last_reason}),
                ),
            )
            await audit.append(
                db,
                [audit.AuditEvent(audit.ENGINE, SOURCE_DOWN, detail={"source": self.source.name})],
            )
        self.alerted = True
        log.error("source %s down since %s", self.source.name, iso(self.failing_since))


def make_deliver(
    ingestor: Ingestor,
    rules: SourceRules,
    on_stored: Callable[[], None] | None = None,
    *,
    store: Store | None = None,
) -> Deliver:
    """``store``: checked after each batch is stored and before its messages are marked done,
    so a store file deleted or replaced under the engine never costs the mailbox's copy."""

    async def deliver(
        messages: Sequence[Inbound], *, checkpoint: str | None = None
    ) -> list[IngestOutcome]:
        outcomes = await ingestor.ingest(messages, rules, checkpoint=checkpoint)
        if store is not None:
            store.check_file()
        if on_stored is not None and any(o.created for o in outcomes):
            on_stored()
        for outcome in outcomes:
            if outcome.held:  # logged, with its key and error class, where it was held
                continue
            log.info(
                "case %s %s from %s flags=%s",
                outcome.ref,
                "created" if outcome.created else "already stored",
                rules.name,
                ",".join(outcome.flags) or "-",
            )
        return outcomes

    return deliver


async def supervise(
    workplace: Workplace,
    inbox: Inbox,
    ingestor: Ingestor,
    source: SourceConfig,
    monitor: SourceMonitor,
    *,
    max_backoff: float = 60.0,
    on_stored: Callable[[], None] | None = None,
) -> None:
    """Run one inbox for ever, restarting it after unexpected errors."""
    if source.purpose == "replies":
        from sgalert.engine.replies import make_reply_deliver

        deliver = make_reply_deliver(workplace, source)
    else:
        deliver = make_deliver(
            ingestor, SourceRules.from_config(source), on_stored, store=workplace.store
        )
    restarts = 0
    while True:
        checkpoint = await load_checkpoint(workplace.store, source.name)
        try:
            await inbox.run(deliver, checkpoint, monitor)
            return
        except (asyncio.CancelledError, StoreError):
            # The store failing (full, gone, busy past its timeout) is no fault of the mailbox:
            # it stops the engine (serve exits 1 for systemd to restart it), the mail kept.
            raise
        except Exception as exc:  # an adapter bug must not stop the watching
            log.exception("inbox %s stopped unexpectedly; restarting", source.name)
            await monitor.failing(f"adapter error: {type(exc).__name__}")
        restarts += 1
        await asyncio.sleep(backoff_seconds(restarts, first=1.0, cap=max_backoff))


async def watch_sources(
    workplace: Workplace,
    config: Config,
    root: Path,
    *,
    check_every: float = 15.0,
    on_stored: Callable[[], None] | None = None,
) -> None:
    """Run every configured source until cancelled."""
    ingestor = workplace.ingestor()
    try:
        await _watch_all(workplace, config, root, ingestor, check_every, on_stored)
    finally:
        ingestor.close()


async def _watch_all(
    workplace: Workplace,
    config: Config,
    root: Path,
    ingestor: Ingestor,
    check_every: float,
    on_stored: Callable[[], None] | None,
) -> None:
    monitors: list[SourceMonitor] = []
    async with asyncio.TaskGroup() as group:
        group.create_task(_start_workers(ingestor), name="ingest-workers")
        for source in config.sources:
            inbox = inbox_factory(source.kind)(source, root)
            monitor = SourceMonitor(workplace.store, source)
            monitors.append(monitor)
            group.create_task(
                supervise(workplace, inbox, ingestor, source, monitor, on_stored=on_stored),
                name=source.name,
            )

        async def keep_checking() -> None:
            while True:
                await asyncio.sleep(check_every)
                for monitor in monitors:
                    await monitor.check()

        group.create_task(keep_checking(), name="source-monitor")


async def _start_workers(ingestor: Ingestor) -> None:
    """Warm the ingest worker processes; if they cannot start, batches are retried later."""
    try:
        await ingestor.warm()
    except Exception as exc:  # a pool that cannot start must not stop the watchers
        log.warning("ingest worker processes did not start (%s)", type(exc).__name__)
