"""The ports adapters implement. The core defines them; ``integrations`` fills them in.

An inbox adapter is found by its config ``kind`` through the ``sgalert.inboxes`` entry-point
group, so the core never imports an adapter module until ``serve`` asks for one.

The commit protocol every inbox follows: fetch new messages, hand a batch to ``deliver`` (which
stores the cases and the inbox's checkpoint in one transaction and returns), and only then mark
the messages read or move them. A crash anywhere leaves the message unmarked, and delivering it
again yields the same case, never a second one.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol

from sgalert.config import SourceConfig
from sgalert.errors import ConfigError
from sgalert.ingest import Inbound, IngestOutcome

INBOX_ENTRY_POINTS = "sgalert.inboxes"


class Deliver(Protocol):
    """Store a batch (and the inbox's new checkpoint) durably; return what became of each."""

    async def __call__(
        self, messages: Sequence[Inbound], *, checkpoint: str | None = None
    ) -> list[IngestOutcome]: ...


class Health(Protocol):
    """How an inbox says whether it can reach its mailbox. ``failing`` texts hold no secrets."""

    async def ok(self) -> None: ...

    async def failing(self, reason: str) -> None: ...


class Inbox(Protocol):
    """A watched mailbox."""

    name: str

    async def run(self, deliver: Deliver, checkpoint: str | None, health: Health) -> None:
        """Watch until cancelled; reconnect on failures, reporting them through ``health``."""
        ...


class InboxFactory(Protocol):
    def __call__(self, source: SourceConfig, root: Path) -> Inbox: ...


def inbox_factory(kind: str) -> InboxFactory:
    """The adapter registered for a config ``kind``, loaded only now."""
    for entry in entry_points(group=INBOX_ENTRY_POINTS):
        if entry.name == kind:
            factory: InboxFactory = entry.load()
            return factory
    raise ConfigError(
        f"no inbox adapter for kind {kind!r} is installed; reinstall sgalert with its integrations"
    )
