"""The demo's stand-ins for the school's mail server and a Teams channel, on loopback only.

- :class:`MailServer`: a real SMTP server (aiosmtpd, 127.0.0.1, a free port) that keeps each
  page it is handed and says on screen who it was for and its subject (sgalert's own words:
  a page carries no personal data);
- :class:`TeamsSink`: an HTTP server on 127.0.0.1 that accepts what a Teams Workflows webhook
  accepts (a JSON ``message`` with one Adaptive Card attachment), answers ``202 Accepted`` as
  Workflows does, and says the card's heading.

Each keeps what it was handed in the workspace (``sent/email``, a Maildir; ``sent/teams``, one
JSON file a card), so the pages can be opened and read afterwards.

aiosmtpd comes with sgalert's ``demo`` extra (``pip install 'sgalert[demo]'``; ``make demo``
installs the dev extra, which includes it); without it the demo says so in one line.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sgalert.errors import WorkspaceError
from sgalert.text import printable

if TYPE_CHECKING:
    from aiosmtpd.smtp import SMTP, Envelope, Session

Say = Callable[[str], None]
MAX_CARD_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Page:
    """One email the SMTP server accepted."""

    recipients: tuple[str, ...]
    subject: str
    content: bytes


@dataclass
class MailServer:
    """A loopback SMTP server for the demo's email channel."""

    say: Say
    keep_in: Path | None = None  # a Maildir the server delivers each page into, once known
    pages: list[Page] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        try:
            from aiosmtpd.smtp import SMTP as SMTPProtocol
        except ImportError:
            raise WorkspaceError(
                "the demo's mail server needs aiosmtpd: run `make demo`, or "
                "`pip install 'sgalert[demo]'`"
            ) from None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTPProtocol(self, hostname="mail.school.example.org", loop=loop),
            "127.0.0.1",
            0,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """aiosmtpd's hook: keep the page, say who it was for and its subject."""
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8", "replace")
        parsed = message_from_bytes(content, policy=policy.default)
        subject = printable(str(parsed.get("Subject", "")), keep_newlines=False)
        page = Page(tuple(str(r) for r in envelope.rcpt_tos), subject, content)
        self.pages.append(page)
        if self.keep_in is not None:
            _keep(self.keep_in, f"{len(self.pages):04d}.demo", content, maildir=True)
        self.say(f"  email  -> {', '.join(page.recipients)}: {subject}")
        return "250 2.0.0 Ok: queued"

    def pages_to(self, address: str) -> list[Page]:
        return [p for p in self.pages if address.lower() in (r.lower() for r in p.recipients)]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def _keep(folder: Path, name: str, content: bytes, *, maildir: bool) -> None:
    """Write what a server was handed where the person running the demo can open it: into a
    Maildir's ``new/`` through its ``tmp/`` (as a mail server delivers), or a plain file."""
    if maildir:
        for sub in ("tmp", "new", "cur"):
            (folder / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        scratch, final = folder / "tmp" / name, folder / "new" / name
    else:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        scratch, final = folder / f".{name}", folder / name
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
    os.replace(scratch, final)


class _Webhook(BaseHTTPRequestHandler):
    """Answers one POST as a Teams Workflows trigger does; anything else is 405."""

    server: _SinkServer
    protocol_version = "HTTP/1.0"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_CARD_BYTES:
            self._answer(413)
            return
        try:
            body = self.rfile.read(length)
            message: Any = json.loads(body)
            card = message["attachments"][0]["content"]
            heading = str(card["body"][0]["text"])
            facts = {f["title"]: f["value"] for f in card["body"][1]["facts"]}
        except (ValueError, KeyError, IndexError, TypeError):
            self._answer(400)
            return
        self.server.sink.received(heading, facts, body)
        self._answer(202)

    def do_GET(self) -> None:
        self._answer(405)

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None  # the sink says what matters itself


class _SinkServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sink: TeamsSink) -> None:
        super().__init__(("127.0.0.1", 0), _Webhook)
        self.sink = sink


@dataclass
class TeamsSink:
    """A loopback Teams Workflows webhook; :attr:`url` goes in the demo's Teams channel."""

    say: Say
    keep_in: Path | None = None  # a folder each card is written to as JSON, once known
    cards: list[str] = field(default_factory=list)
    _server: _SinkServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self._server = _SinkServer(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="demo-teams-sink", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}/workflows/demo/triggers/manual/run?sig=demo"

    def received(self, heading: str, facts: dict[str, Any], body: bytes) -> None:
        shown = printable(f"{heading} ({facts.get('Source', '?')}, step {facts.get('Step', '?')})")
        with self._lock:
            self.cards.append(shown)
            if self.keep_in is not None:
                _keep(self.keep_in, f"{len(self.cards):04d}.json", body, maildir=False)
        self.say(f"  teams  <- card {shown}")

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
