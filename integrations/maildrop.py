"""Pages written as email files into a local Maildir: the embedded default and the demo channel.

Each page to each person becomes one RFC 822 file (the same message the SMTP channel would
send) written the Maildir way: into ``tmp/``, flushed to disk, then linked into ``new/``. Any
mail client or IMAP server that reads Maildirs (Dovecot, mutt, Thunderbird's maildir store) shows
it as new mail.

Delivery is idempotent: the file's unique name is derived from the notification's idempotency
key and the recipient, and the link into ``new/`` fails if that name is already there, so a
retried page, or two engines racing, leave exactly one file. A page already moved to ``cur/``
by a mail client (``<name>:2,<flags>``) also counts as delivered. ``new/`` is checked before
``cur/`` because clients only ever move files that way, so a file moved mid-check is still seen.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from integrations.channel_options import is_addr_spec
from integrations.smtp import WIRE_POLICY, build_message, check_address
from sgalert.errors import ConfigError
from sgalert.ports import (
    DeliveryError,
    Notification,
    ProbeFailed,
    ProbeReport,
    Receipt,
    Recipient,
)

if TYPE_CHECKING:
    from sgalert.ports import NotifierFactory

log = logging.getLogger("sgalert.notify.maildrop")

DEFAULT_FROM = "sgalert@sgalert.invalid"
_OPTIONS = ("path", "from", "reply_to")
_FILE_POLICY = WIRE_POLICY.clone(linesep="\n")  # Maildir files use the local line ending


def unique_name(notification: Notification, recipient: str) -> str:
    """The file's Maildir unique name: one per page per person, the same on every attempt."""
    digest = hashlib.sha256(
        f"{notification.idempotency_key}\x00{recipient.lower()}".encode()
    ).hexdigest()
    return f"sgalert-{digest[:40]}"


def create(name: str, options: Mapping[str, Any], root: Path) -> MaildropNotifier:
    """The entry point for ``kind = "maildrop"``."""
    where = f"channels.{name}"
    unknown = sorted(str(key) for key in options if key not in _OPTIONS)
    if unknown:
        raise ConfigError(
            f'{where}.{unknown[0]}: unknown option for kind = "maildrop"; '
            f"maildrop options: {', '.join(_OPTIONS)}"
        )
    raw_path = options.get("path")
    if not isinstance(raw_path, str) or not raw_path.strip():
        raise ConfigError(f'{where}.path: a maildrop channel needs a folder; e.g. path = "outbox"')
    addresses: dict[str, str | None] = {}
    for key, default in (("from", DEFAULT_FROM), ("reply_to", None)):
        value = options.get(key, default)
        if value is not None and (not isinstance(value, str) or not is_addr_spec(value)):
            raise ConfigError(
                f'{where}.{key}: must be a plain email address; e.g. {key} = "sgalert@example.org"'
            )
        addresses[key] = value
    path = Path(raw_path).expanduser()
    return MaildropNotifier(
        name,
        path if path.is_absolute() else root / path,
        from_address=addresses["from"] or DEFAULT_FROM,
        reply_to=addresses["reply_to"],
    )


def _private_folders(path: Path) -> None:
    """``mkdir -p`` with every folder it makes 0700 (``mkdir(parents=True)`` gives the parents
    the umask's mode, usually 0755: the workspace must stay its owner's alone)."""
    missing: list[Path] = []
    wanted = path
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
    wanted.mkdir(mode=0o700, exist_ok=True)  # a file in the way raises, as mkdir -p would


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class MaildropNotifier:
    """Writes each page to each person as one file in a Maildir's ``new/``."""

    per_person = True

    def __init__(
        self,
        name: str,
        path: Path,
        *,
        from_address: str = DEFAULT_FROM,
        reply_to: str | None = None,
    ) -> None:
        self.name = name
        self.path = path
        self.from_address = from_address
        self.reply_to = reply_to

    def delivered(self, unique: str) -> bool:
        """Whether a file with this unique name is in ``new/`` or, with any flags, ``cur/``."""
        if (self.path / "new" / unique).exists():
            return True
        cur = self.path / "cur"
        return (cur / unique).exists() or any(cur.glob(f"{unique}:2,*"))

    def _write(self, unique: str, data: bytes) -> bool:
        """In a worker thread: True if the file was written, False if it was already there."""
        for sub in ("tmp", "new", "cur"):
            _private_folders(self.path / sub)
        if self.delivered(unique):
            return False
        tmp = self.path / "tmp" / f"{unique}.{os.getpid()}.{secrets.token_hex(6)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, self.path / "new" / unique)  # never replaces an existing file
            except FileExistsError:
                return False
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_directory(self.path / "new")
        return True

    async def send(self, notification: Notification, recipient: Recipient) -> Receipt:
        to = check_address(recipient.address, "recipient")
        message = build_message(
            notification, to, self.from_address, notification.reply_address or self.reply_to
        )
        unique = unique_name(notification, to)
        data = message.as_bytes(policy=_FILE_POLICY)
        try:
            written = await asyncio.to_thread(self._write, unique, data)
        except OSError as exc:
            # A full disk may clear; a missing permission or a read-only disk will not, so the
            # engine moves straight to its fallback channel.
            lasting = isinstance(exc, PermissionError | NotADirectoryError) or (
                exc.errno == errno.EROFS
            )
            raise DeliveryError(
                f"could not write to the maildir ({type(exc).__name__})", retryable=not lasting
            ) from None
        key = notification.idempotency_key
        if written:
            log.info("channel %s: page %s written as %s", self.name, key, unique)
        else:
            log.info("channel %s: page %s already written as %s", self.name, key, unique)
        return Receipt(
            channel=self.name, detail=f"{'written' if written else 'already written'} {unique}"
        )

    async def probe(self) -> ProbeReport:
        """For ``sgalert doctor``: the folder (or, before the first page, the nearest folder
        it will be made in) is writable by this process. Writes nothing."""
        existing = self.path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise ProbeFailed(
                f"{existing} is not a writable folder, so pages cannot be written to {self.path};"
                " give the sgalert user its ownership (chown -R) or fix path"
            )
        for sub in ("new", "cur", "tmp"):
            folder = self.path / sub
            if folder.exists() and not os.access(folder, os.W_OK | os.X_OK):
                raise ProbeFailed(f"{folder} is not writable; give the sgalert user its ownership")
        made = "" if self.path.exists() else " (made at the first page)"
        return ProbeReport(f"maildir {self.path} writable{made}")

    async def close(self) -> None:
        return None


if TYPE_CHECKING:
    _factory: NotifierFactory = create  # mypy checks the entry point's signature
