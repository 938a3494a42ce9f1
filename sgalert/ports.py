"""The ports: what adapters implement and the values that cross them. The core defines them;
``integrations`` fills them in.

**Inboxes.** An inbox adapter is found by its config ``kind`` through the ``sgalert.inboxes``
entry-point group, so the core never imports an adapter module until ``serve`` asks for one.
The commit protocol every inbox follows: fetch new messages, hand a batch to ``deliver`` (which
stores the cases and the inbox's checkpoint in one transaction and returns), and only then mark
the messages read or move them. A crash anywhere leaves the message unmarked, and delivering it
again yields the same case, never a second one.

**Notifiers.** A notification carries **no personal data**: the case reference, its source, when
it arrived, how urgent it is, which escalation step this is, and how to acknowledge. Everything a
DSL needs to act is in sgalert itself, behind their passphrase. The email text is built here so
every email channel (SMTP, Graph sendMail) says the same thing; chat cards are built by their
adapters from the same :class:`Notification`. Notifiers are found by their config ``kind``
through the ``sgalert.notifiers`` entry points.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sgalert.clock import in_words
from sgalert.config import SourceConfig
from sgalert.errors import ConfigError, SgalertError
from sgalert.model import Source

INBOX_ENTRY_POINTS = "sgalert.inboxes"


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message as a mailbox gave it: its bytes and the mailbox's own key for it."""

    raw: bytes
    key: str | None = None
    received_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    """What became of one message. Metadata only: safe to log and print.

    ``held`` means the message is not a case (it could be neither read nor quarantined; a
    system alert names it): its mailbox must leave it unread. ``key`` is the message's own.
    """

    case_id: str
    ref: str
    source: Source
    flags: tuple[str, ...]
    created: bool
    duplicate_of: str | None = None
    held: bool = False
    key: str | None = None


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


# ----- probes: trying a mailbox or channel for real, for ``sgalert doctor`` ----------------


@dataclass(frozen=True, slots=True)
class ProbeReport:
    """What a probe found working (``detail``) and, when it works with less than expected (a
    server without IDLE), ``warning``: what is missing and what to do. No secrets, no mail."""

    detail: str
    warning: str | None = None


class ProbeFailed(SgalertError):
    """A probe could not reach or use its mailbox or channel. The message reads "what is
    wrong; what to do" and names hosts, folders and option keys, never a secret."""


class Probe(Protocol):
    """An inbox or notifier that ``sgalert doctor`` can try without changing anything: log in,
    look, log out. Neither reads nor marks a message, nor sends a page. Optional: an adapter
    without ``probe`` is reported as not tried."""

    async def probe(self) -> ProbeReport: ...


NOTIFIER_ENTRY_POINTS = "sgalert.notifiers"


class PageSource(enum.StrEnum):
    """What a page is about: a case from one of the watched sources, a system alert, or the
    daily digest. Its value is stored in the outbox's payload, so it is checked on the way in."""

    ENCOMPASS = "encompass"
    WHISTLE = "whistle"
    LESSON = "lesson"
    SYSTEM = "system"
    DIGEST = "digest"

    @property
    def heading(self) -> str:
        """How a page names what it is about (``str.title`` is taken)."""
        return _PAGE_TITLES[self]


_PAGE_TITLES = {
    PageSource.ENCOMPASS: "Operation Encompass notice",
    PageSource.WHISTLE: "Whistleblowing report",
    PageSource.LESSON: "Lesson ended over a safeguarding concern",
    PageSource.SYSTEM: "sgalert system alert",
    PageSource.DIGEST: "sgalert daily digest",
}


class Urgency(enum.StrEnum):
    """How a page presents itself: the word in its subject and the colour of its card."""

    URGENT = "urgent"
    REMINDER = "reminder"
    OVERDUE = "overdue"
    ALERT = "alert"
    DIGEST = "digest"


@dataclass(frozen=True, slots=True)
class Document:
    """A notification that is a whole document (the daily digest) rather than a page: its own
    subject, a text body and an HTML twin. Email channels send both as multipart/alternative;
    it never goes to a shared channel. Still no personal data: references, counts and times."""

    subject: str
    text: str
    html: str


@dataclass(frozen=True, slots=True)
class Notification:
    """One page about one case (or a system alert). Safe to log: no personal data."""

    idempotency_key: str
    school: str
    case_ref: str
    source: PageSource
    received_at: datetime
    urgency: Urgency
    step: int
    reason: str  # why this page, e.g. "not acknowledged after 10 minutes"
    ack_token: str | None = None
    reply_address: str | None = None
    due_at: datetime | None = None
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Europe/London"))
    document: Document | None = None

    def title(self) -> str:
        return self.source.heading

    def subject(self) -> str:
        """Email subject. Only sgalert's own words: no header injection from outside text."""
        if self.document is not None:
            return self.document.subject
        if self.source is PageSource.SYSTEM:
            return f"[sgalert] ALERT: {self.case_ref}"
        token = f" [{self.ack_token}]" if self.ack_token else ""
        return f"[sgalert] {self.urgency.upper()}: {self.title()} {self.case_ref}{token}"

    def lines(self) -> list[str]:
        if self.document is not None:
            return self.document.text.splitlines()
        if self.source is PageSource.SYSTEM:
            # received_at is when the alert was raised; for a rota gap that is not when the
            # gap begins (usually later), and the mail is not at risk, the cover is.
            if self.case_ref.startswith("rota-gap "):
                consequence = [
                    "In a gap only the fallback (or nobody) is on duty: add a cover or a shift.",
                    "Each gap's exact start and end: sgalert rota check",
                ]
            else:
                consequence = [
                    "Until this is fixed, notifications may not reach sgalert or you.",
                    "Check with: sgalert status",
                ]
            return [
                f"{self.school}: sgalert needs attention: {self.case_ref}.",
                "",
                f"Raised: {in_words(self.received_at, self.zone, year=True, zone_name=True)}",
                f"What: {self.reason}",
                "",
                *consequence,
            ]
        lines = [
            f"{self.school}: {self.title()} {self.case_ref} needs acknowledging.",
            "",
            f"Received: {in_words(self.received_at, self.zone, year=True, zone_name=True)}",
            f"Why you are getting this: {self.reason}",
        ]
        if self.due_at is not None:
            lines.append(f"Deadline: {in_words(self.due_at, self.zone, year=True, zone_name=True)}")
        lines += [
            "",
            "To acknowledge:",
            f"  - in the terminal: sgalert ack {self.case_ref} --as YOUR-EMAIL",
        ]
        if self.ack_token:
            where = f" to {self.reply_address}" if self.reply_address else ""
            lines.append(
                f"  - or reply to this email{where} keeping {self.ack_token} in the subject"
            )
        lines += [
            "",
            "The details are in sgalert, readable only by the people entitled to them.",
            "This message deliberately contains no personal information.",
        ]
        return lines

    def body(self) -> str:
        return "\n".join(self.lines()) + "\n"

    def html(self) -> str | None:
        """The HTML twin of :meth:`body`, for a document; pages are plain text only."""
        return self.document.html if self.document is not None else None


@dataclass(frozen=True, slots=True)
class Recipient:
    """Who a page goes to: a person (email channels) or a shared destination (a chat channel)."""

    address: str
    person_id: str | None = None
    role: str | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the channel said: an id and whether it only queued the message (Graph's 202)."""

    channel: str
    detail: str
    queued_only: bool = False


class DeliveryError(SgalertError):
    """A channel could not deliver. ``retry_after`` is the server's own wait, when it gave one."""

    def __init__(self, message: str, *, retryable: bool = True, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class Notifier(Protocol):
    """Delivers one notification to one recipient, or raises DeliveryError."""

    name: str
    per_person: bool  # True for email-like channels, False for a shared chat channel

    async def send(self, notification: Notification, recipient: Recipient) -> Receipt: ...

    async def close(self) -> None: ...


class NotifierFactory(Protocol):
    def __call__(self, name: str, options: Mapping[str, Any], root: Path) -> Notifier: ...


def notifier_factory(kind: str) -> NotifierFactory:
    for entry in entry_points(group=NOTIFIER_ENTRY_POINTS):
        if entry.name == kind:
            factory: NotifierFactory = entry.load()
            return factory
    raise ConfigError(f"no notifier for kind {kind!r} is installed")
