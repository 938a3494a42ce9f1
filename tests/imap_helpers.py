"""Shared pieces for the IMAP inbox tests: building the source, waiting for cases."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from imapclient import IMAPClient

from integrations.imap import ImapInbox, create
from sgalert.config import SourceConfig
from sgalert.model import Source

from .dovecot import Dovecot

MESSAGES = Path(__file__).parent / "messages"


def imap_source(server: Dovecot, **extra: object) -> SourceConfig:
    options: dict[str, object] = {
        "host": server.host,
        "port": server.port,
        "security": "none",
        "username": server.user,
        "password_env": "SGALERT_TEST_IMAP_PASSWORD",
        "idle_seconds": 30,
        "timeout": 10,
    }
    options.update(extra)
    return SourceConfig(name="encompass-imap", type=Source.ENCOMPASS, kind="imap", options=options)


def imap_inbox(server: Dovecot, root: Path, **extra: object) -> ImapInbox:
    return create(imap_source(server, **extra), root)


def notice(number: int, child: str = "Ada Invented") -> bytes:
    """A distinct Encompass notice (its own Message-ID and occurrence number)."""
    text = (MESSAGES / "encompass_plain.eml").read_bytes()
    text = text.replace(b"enc-0001", f"enc-{number:04d}".encode())
    text = text.replace(b"44/123456/26", f"44/{100000 + number}/26".encode())
    return text.replace(b"Ada Invented", child.encode())


def notices_arriving_at(
    monkeypatch: pytest.MonkeyPatch, server: Dovecot, method: str, when: str, count: int
) -> list[int]:
    """Mail that arrives at one exact point of the watcher's IMAP conversation.

    Patches ``IMAPClient.<method>`` so that each of its first ``count`` calls appends a new
    notice (through a second connection, :meth:`Dovecot.append`) just ``"before"`` or just
    ``"after"`` the command. Returns the UIDs appended so far (the list fills as they come).
    """
    if when not in ("before", "after"):
        raise ValueError(f"when must be 'before' or 'after', not {when!r}")
    real = getattr(IMAPClient, method)
    uids: list[int] = []
    busy = threading.local()

    def arrive() -> None:
        if len(uids) < count and not getattr(busy, "appending", False):
            busy.appending = True
            try:
                uids.append(server.append("INBOX", notice(len(uids) + 1)))
            finally:
                busy.appending = False

    def arriving(client: IMAPClient, *args: Any, **kwargs: Any) -> Any:
        if when == "before":
            arrive()
        result = real(client, *args, **kwargs)
        if when == "after":
            arrive()
        return result

    monkeypatch.setattr(IMAPClient, method, arriving)
    return uids


async def wait_for(
    condition: Callable[[], Awaitable[bool]], within: float = 15.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {within}s waiting for {what}")
