"""A local Maildir as an inbox: the embedded default, the demo's inbox, and a drop folder.

New messages are files in ``new/`` (or in ``cur/`` without the ``S`` flag, if a mail client moved
them there unread). Each batch is delivered first; only then is each file dealt with, so a crash
leaves it to be delivered again, where its key (``maildir:<source>:<unique name>``) makes it the
same case. A message the core reports as held (it could be neither read nor quarantined) is left
unread in ``new/``; the core skips it until an operator releases it.

Dealt with means **deleted** by default (``after_commit = "delete"``): a notice holds a child's
name in plain text, and once its case is stored the sealed copy of the raw message is the record,
so no plain copy is left on disk. ``after_commit = "mark-read"`` instead renames the file into
``cur/`` with the Seen flag, for a Maildir that a mail client also reads; its files stay in plain
text, which ``config check`` points out.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sgalert.config import SourceConfig, refuse_unknown_options
from sgalert.errors import ConfigError
from sgalert.ports import Deliver, Health, Inbound, ProbeFailed, ProbeReport

log = logging.getLogger("sgalert.inbox.maildir")

MAX_BATCH = 100
AFTER_COMMIT = ("delete", "mark-read")


@dataclass(frozen=True, slots=True)
class Pending:
    path: Path
    unique: str
    flags: str


def _split(name: str) -> tuple[str, str]:
    unique, sep, info = name.partition(":2,")
    return unique, info if sep else ""


class MaildirInbox:
    """Polls one Maildir folder."""

    def __init__(
        self, name: str, path: Path, poll_seconds: float = 2.0, after_commit: str = "delete"
    ) -> None:
        self.name = name
        self.path = path
        self.poll_seconds = poll_seconds
        self.after_commit = after_commit

    def pending(self) -> list[Pending]:
        """Unread messages, oldest first (by file time, then name)."""
        found: list[tuple[float, Pending]] = []
        for sub in ("new", "cur"):
            folder = self.path / sub
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.startswith(".") or not entry.is_file():
                        continue
                    unique, flags = _split(entry.name)
                    if sub == "cur" and "S" in flags:
                        continue
                    pending = Pending(Path(entry.path), unique, flags)
                    found.append((entry.stat().st_mtime, pending))
        found.sort(key=lambda item: (item[0], item[1].unique))
        return [pending for _, pending in found]

    def mark_seen(self, item: Pending) -> None:
        flags = "".join(sorted(set(item.flags) | {"S"}))
        target = self.path / "cur" / f"{item.unique}:2,{flags}"
        try:
            os.replace(item.path, target)
        except FileNotFoundError:
            pass  # already moved by an earlier, interrupted round

    def remove(self, item: Pending) -> None:
        """Delete a message whose case is stored; its sealed raw copy is the record now."""
        try:
            os.unlink(item.path)
        except FileNotFoundError:
            pass  # already removed by an earlier, interrupted round
        else:
            _sync_folder(item.path.parent)

    def done(self, item: Pending) -> None:
        if self.after_commit == "delete":
            self.remove(item)
        else:
            self.mark_seen(item)

    def key(self, item: Pending) -> str:
        return f"maildir:{self.name}:{item.unique}"

    async def poll_once(self, deliver: Deliver) -> int:
        """Deliver everything pending; returns how many messages were handled."""
        items = await asyncio.to_thread(self.pending)
        for start in range(0, len(items), MAX_BATCH):
            chunk = items[start : start + MAX_BATCH]
            messages = []
            readable = []
            for item in chunk:
                try:
                    raw = await asyncio.to_thread(item.path.read_bytes)
                    stamp = item.path.stat().st_mtime
                except FileNotFoundError:
                    continue  # taken by another reader of the folder
                received = datetime.fromtimestamp(stamp, tz=UTC)
                messages.append(Inbound(raw=raw, key=self.key(item), received_at=received))
                readable.append(item)
            held: set[str | None] = set()
            if messages:
                outcomes = await deliver(messages)
                held = {outcome.key for outcome in outcomes if outcome.held}
            for item in readable:  # only after the cases are stored
                if self.key(item) not in held:
                    await asyncio.to_thread(self.done, item)
        return len(items)

    async def probe(self) -> ProbeReport:
        """For ``sgalert doctor``: ``new``, ``cur`` and ``tmp`` exist, and this process may
        read them and move files between them. Reads no message."""
        problem = maildir_problem(self.path)
        if problem:
            raise ProbeFailed(problem)
        pending = len(await asyncio.to_thread(self.pending))
        return ProbeReport(f"maildir {self.path} usable ({pending} unread)")

    async def run(self, deliver: Deliver, checkpoint: str | None, health: Health) -> None:
        while True:
            try:
                await self.poll_once(deliver)
            except (FileNotFoundError, NotADirectoryError, PermissionError) as exc:
                await health.failing(f"maildir folder unusable: {type(exc).__name__}")
            else:
                await health.ok()
            await asyncio.sleep(self.poll_seconds)


def maildir_problem(path: Path) -> str | None:
    """Why this process cannot use ``path`` as a Maildir ("what; what to do"), or None."""
    for sub in ("new", "cur", "tmp"):
        folder = path / sub
        if not folder.is_dir():
            return f"{folder} is not a folder; make new, cur and tmp in {path} (mkdir -p)"
        if not os.access(folder, os.R_OK | os.W_OK | os.X_OK):
            return (
                f"{folder} is not writable by this user; give the sgalert user its ownership"
                f" (chown -R) or fix the path"
            )
    return None


def create(source: SourceConfig, root: Path) -> MaildirInbox:
    where = f"sources[{source.name}]"
    refuse_unknown_options(
        source.options, ("path", "poll_seconds", "after_commit"), where, "maildir"
    )
    raw_path = source.options.get("path")
    if not isinstance(raw_path, str) or not raw_path.strip():
        raise ConfigError(f'{where}.path: a maildir source needs a path; e.g. path = "inbox"')
    poll = source.options.get("poll_seconds", 2)
    if isinstance(poll, bool) or not isinstance(poll, int | float) or not 0.1 <= poll <= 3600:
        raise ConfigError(
            f"{where}.poll_seconds: must be between 0.1 and 3600 seconds; e.g. poll_seconds = 2"
        )
    after = source.options.get("after_commit", "delete")
    if after not in AFTER_COMMIT:
        raise ConfigError(
            f'{where}.after_commit: must be "delete" (the default: no plain copy is left once the'
            ' case is sealed) or "mark-read"'
        )
    path = Path(raw_path).expanduser()
    return MaildirInbox(
        source.name, path if path.is_absolute() else root / path, float(poll), str(after)
    )


def _sync_folder(folder: Path) -> None:
    """Make a deletion durable, as a rename into cur/ would be after a crash."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
