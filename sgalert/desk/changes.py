"""Noticing that someone committed to the store, for a desk's live updates: from any process,
at the cost of one tiny query a poll when nothing changed."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sgalert.clock import parse_iso
from sgalert.errors import StoreError

# Audit actions that record someone looking (and a store's own upkeep), not a change to what a
# desk shows: a desk does not reload (re-count every case it may read) because someone read one.
LOOKS = (
    "unlock", "unlock-failed", "unlock-refused", "unlock-throttled", "case-read",
    "case-previewed", "original-read", "refused", "attachment-exported", "search-indexed",
    "child-file-viewed", "rota-checked", "retention-dry-run", "backup-made",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ChangeMarks:
    """What a desk reloads on. Every state change, from any process, appends to the audit log,
    so the last entry that is not a look (``state_seq``) moves exactly when cases do, while
    ``audit_seq`` moves on every entry; the heartbeat moves on its own."""

    audit_seq: int
    heartbeat_at: datetime | None
    lease_expires_at: datetime | None = None
    state_seq: int = 0


class ChangeProbe:
    """Notices that someone committed to the store, for a desk's live updates.

    It holds its own read-only connection because ``PRAGMA data_version`` moves only for commits
    made through *other* connections: this way it also sees writes the desk's own process made
    through the service. An idle store costs one tiny query a poll. A connection belongs to the
    thread that opened it, so call :meth:`poll` and :meth:`close` from one thread only.
    """

    def __init__(self, path: Path, *, timeout: float = 2.0) -> None:
        self.path = path
        self._timeout = timeout
        self._conn: sqlite3.Connection | None = None
        self._version: int | None = None

    def poll(self) -> ChangeMarks | None:
        """The marks when something was committed since the last poll (always on the first);
        None when nothing was. Raises :class:`StoreError` when the store cannot be read; the
        next poll opens a fresh connection and reads the marks again."""
        try:
            if self._conn is None:
                self._conn = sqlite3.connect(
                    _read_only_uri(self.path), uri=True, timeout=self._timeout
                )
                self._conn.execute("PRAGMA query_only = ON")
            (version,) = self._conn.execute("PRAGMA data_version").fetchone()
            if version == self._version:
                return None
            seq, heartbeat, expires, state = self._conn.execute(
                "SELECT (SELECT COALESCE(MAX(seq), 0) FROM audit),"
                " (SELECT heartbeat_at FROM engine_lease WHERE id = 1),"
                " (SELECT expires_at FROM engine_lease WHERE id = 1),"
                # Backwards from the newest entry (the table's key): a few steps past the looks.
                " (SELECT COALESCE(MAX(seq), 0) FROM (SELECT seq FROM audit"
                f" WHERE action NOT IN ({','.join('?' * len(LOOKS))}) ORDER BY seq DESC LIMIT 1))",
                LOOKS,
            ).fetchone()
            self._version = int(version)
            return ChangeMarks(
                int(seq),
                parse_iso(heartbeat) if heartbeat else None,
                parse_iso(expires) if expires else None,
                int(state),
            )
        except sqlite3.Error as exc:
            self.close()
            raise StoreError(f"cannot read the store ({exc})") from None

    def close(self) -> None:
        """Close the connection (the next poll would open another)."""
        conn, self._conn, self._version = self._conn, None, None
        if conn is not None:
            conn.close()


def _read_only_uri(path: Path) -> str:
    """An SQLite URI that opens ``path`` read-only and never creates it: a probe pointed at a
    missing store must fail, not leave an empty database where the store should be. The path
    is percent-encoded, so a ``?`` or ``#`` in a folder name stays part of the path."""
    return f"{path.absolute().as_uri()}?mode=ro"
