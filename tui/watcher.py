"""Noticing, cheaply, that another process changed the store.

A thread (run as a Textual thread worker) polls a :class:`~sgalert.desk.changes.ChangeProbe`
from the service once a poll: the probe answers from its own connection with ``PRAGMA
data_version``, so an idle store costs one tiny query a second. When the store moved, the probe
returns its marks: the audit log's last sequence number, the last one that changed something a
desk shows (every state change, from any process, appends to the log; someone reading a case
does not count), and the engine's heartbeat. The watcher posts a :class:`StoreChanged` message
only when a mark differs, so the engine's heartbeat alone never reloads the queue.
``post_message`` is thread-safe (Toolong's pattern).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from textual.message import Message

from sgalert.desk.views import ChangeMarks, ChangeProbe
from sgalert.errors import StoreError

log = logging.getLogger("sgalert.tui")


class StoreChanged(Message):
    """The store's marks moved: reload what depends on them."""

    def __init__(self, marks: ChangeMarks, previous: ChangeMarks | None) -> None:
        super().__init__()
        self.marks = marks
        self.previous = previous

    @property
    def cases_changed(self) -> bool:
        """Something a desk shows changed: not merely someone looking (see ``LOOKS``)."""
        return self.previous is None or self.marks.state_seq != self.previous.state_seq


class WatcherTrouble(Message):
    """The watcher cannot read the store; live updates are paused until it can."""

    def __init__(self, reason: str | None) -> None:
        super().__init__()
        self.reason = reason


class StoreWatcher:
    """Polls one probe from its own thread. Call :meth:`stop` to end :meth:`run`.

    The probe's connection belongs to the thread running :meth:`run`, which closes it on the way
    out.
    """

    def __init__(
        self, probe: ChangeProbe, post: Callable[[Message], object], interval: float = 1.0
    ) -> None:
        self.interval = interval
        self._probe = probe
        self._post = post
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        marks: ChangeMarks | None = None
        troubled = False
        try:
            while not self._stop.is_set():
                try:
                    fresh = self._probe.poll()
                    if fresh is not None and fresh != marks:
                        self._post(StoreChanged(fresh, marks))
                        marks = fresh
                    if troubled:
                        troubled = False
                        self._post(WatcherTrouble(None))
                except StoreError as exc:
                    log.warning("store watcher: %s", exc)
                    if not troubled:
                        troubled = True
                        self._post(WatcherTrouble(str(exc)))
                self._stop.wait(self.interval)
        finally:
            self._probe.close()
