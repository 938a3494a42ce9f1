"""Noticing, cheaply, that another process changed the store.

A thread (run as a Textual thread worker) keeps its own read-only SQLite connection and asks
``PRAGMA data_version`` once a poll: the number changes only when *another* connection commits,
so an idle store costs one tiny query a second. When it moves, the watcher reads two marks: the
audit log's last sequence number (every state change, from any process, appends to the log) and
the engine's heartbeat. It posts a :class:`StoreChanged` message only when a mark differs, so the
engine's heartbeat alone never reloads the queue. ``post_message`` is thread-safe (Toolong's
pattern).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from textual.message import Message

log = logging.getLogger("sgalert.tui")


@dataclass(frozen=True, slots=True)
class StoreMarks:
    audit_seq: int
    heartbeat_at: str | None


class StoreChanged(Message):
    """The store's marks moved: reload what depends on them."""

    def __init__(self, marks: StoreMarks, previous: StoreMarks | None) -> None:
        super().__init__()
        self.marks = marks
        self.previous = previous

    @property
    def cases_changed(self) -> bool:
        return self.previous is None or self.marks.audit_seq != self.previous.audit_seq


class WatcherTrouble(Message):
    """The watcher cannot read the store; live updates are paused until it can."""

    def __init__(self, reason: str | None) -> None:
        super().__init__()
        self.reason = reason


class StoreWatcher:
    """Polls one store file from its own thread. Call :meth:`stop` to end :meth:`run`."""

    def __init__(self, path: Path, post: Callable[[Message], object], interval: float = 1.0):
        self.path = path
        self.interval = interval
        self._post = post
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        version: int | None = None
        marks: StoreMarks | None = None
        troubled = False
        conn: sqlite3.Connection | None = None
        try:
            while not self._stop.is_set():
                try:
                    if conn is None:
                        conn = sqlite3.connect(self.path, timeout=2.0)
                        conn.execute("PRAGMA query_only = ON")
                    (current,) = conn.execute("PRAGMA data_version").fetchone()
                    if current != version or marks is None:
                        version = current
                        seq, heartbeat = conn.execute(
                            "SELECT (SELECT COALESCE(MAX(seq), 0) FROM audit),"
                            " (SELECT heartbeat_at FROM engine_lease WHERE id = 1)"
                        ).fetchone()
                        fresh = StoreMarks(int(seq), heartbeat)
                        if fresh != marks:
                            self._post(StoreChanged(fresh, marks))
                            marks = fresh
                    if troubled:
                        troubled = False
                        self._post(WatcherTrouble(None))
                except sqlite3.Error as exc:
                    log.warning("store watcher: %s", exc)
                    if conn is not None:
                        conn.close()
                        conn = None
                    if not troubled:
                        troubled = True
                        self._post(WatcherTrouble(f"cannot read the store ({exc})"))
                self._stop.wait(self.interval)
        finally:
            if conn is not None:
                conn.close()
