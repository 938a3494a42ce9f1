"""The ingest worker processes: preparing a backlog on every core, and their life.

Parsing and extraction are pure Python and hold the GIL, so a backlog is spread over worker
processes (spawned, not forked: the engine has threads). A worker ends with the process that
started it, however that ends; a pool whose worker died is replaced, and the batch it held is
prepared in-process rather than held up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor

from sgalert.clock import utcnow
from sgalert.config import Config
from sgalert.intake.prepare import Prepared, SourceRules, prepare, prepare_chunk
from sgalert.ports import Inbound

log = logging.getLogger("sgalert.intake.ingest")

# A batch smaller than this is prepared in-process: shipping it to a worker costs more.
POOL_MIN_BATCH = 24


def _ready() -> bool:
    """Nothing: a worker that ran it has started and imported this module."""
    return True


_PR_SET_PDEATHSIG = 1


def _start_worker(parent_pid: int) -> None:
    """In each worker, first: ignore Ctrl+C, then end with the parent (:func:`_exit_with_parent`).

    Ctrl+C at a terminal signals the whole process group, the workers too; the parent is the
    one that decides, and shuts its pool down. A worker that took it would die mid-wait with a
    ``KeyboardInterrupt`` traceback each. SIGINT arrives blocked (:func:`_sigint_held`), so one
    sent while the worker was still starting is dropped here too, not raised.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _exit_with_parent(parent_pid)


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """SIGINT blocked in this thread while it may start a worker, which inherits the mask: a
    Ctrl+C in the half second before the worker's initializer runs then waits, in the worker
    until it ignores it, here until the block ends (and the engine stops as asked)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


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


class PreparePool:
    """Prepares batches of messages, in worker processes once a batch is big enough."""

    def __init__(self, config: Config, workers: int | None = None) -> None:
        self.config = config
        self.workers = workers if workers is not None else min(4, os.cpu_count() or 1)
        self._pool: ProcessPoolExecutor | None = None

    async def warm(self) -> None:
        """Start the worker processes now, so the first backlog does not wait for them.

        Spawning a worker and importing the parser into it takes about half a second; a
        service pays that at start-up rather than when the first notices arrive.
        """
        if self.workers < 2:
            return
        loop = asyncio.get_running_loop()
        pool = self._worker_pool()
        with _sigint_held():  # submitting starts the workers
            jobs = [loop.run_in_executor(pool, _ready) for _ in range(self.workers)]
        await asyncio.gather(*jobs)

    def _worker_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(os.getpid(),),
            )
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def prepare(self, messages: Sequence[Inbound], rules: SourceRules) -> list[Prepared]:
        if len(messages) < POOL_MIN_BATCH or self.workers < 2:
            if len(messages) > 4:
                return await asyncio.to_thread(self.prepare_here, messages, rules)
            return self.prepare_here(messages, rules)
        try:
            return await self._prepare_in_workers(messages, rules)
        except BrokenExecutor:
            # A worker died (killed, or out of memory): a broken pool stays broken, so the next
            # backlog gets a fresh one, and this batch is prepared here rather than held up.
            log.warning("an ingest worker process died; preparing this batch in-process")
            self.close()
            return await asyncio.to_thread(self.prepare_here, messages, rules)

    async def _prepare_in_workers(
        self, messages: Sequence[Inbound], rules: SourceRules
    ) -> list[Prepared]:
        pool = self._worker_pool()
        loop = asyncio.get_running_loop()
        size = -(-len(messages) // self.workers)
        zone = self.config.timezone.key
        with _sigint_held():  # submitting may start a worker
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

    def prepare_here(self, messages: Sequence[Inbound], rules: SourceRules) -> list[Prepared]:
        """In this process (and thread): a small batch, a message tried alone, or a fallback."""
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
