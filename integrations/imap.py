"""IMAP inbox: IMAPClient in a worker thread, IDLE with polling fallback, exactly-once cases.

The worker thread owns the connection. It fetches messages above the checkpointed UID, hands
each batch to the event loop's ``deliver`` (which stores the cases and the new checkpoint in one
transaction) and waits for it; only then does it set ``\\Seen`` or move the messages. A crash
before that leaves them unmarked, and the key ``imap:<user>@<host>/<folder>:<UIDVALIDITY>:<UID>``
makes their redelivery the same cases. A UIDVALIDITY change restarts from UID 1; identical bytes
are recognised by the core, so nothing is duplicated. A message the core reports as held (it could
be neither read nor quarantined) is left unmarked; the checkpoint passes it, so it is offered again
only after a reconnect, and the core skips it until an operator releases it.

A server tells of new mail once, in whatever reply comes next: to one of our commands (kept by
imaplib, never read by IMAPClient), or with IDLE's "+ idling" (read along with it, so the socket
never turns readable for it). Both are looked for (:class:`_Announced`, :func:`_read_ahead`),
so mail that arrives at any moment is fetched at once. As a guard against an announcement lost
some other way, IDLE is ended and the folder searched every ``idle_seconds`` (a minute by
default, well inside the server's 30-minute limit); servers without IDLE are polled. Lost
connections reconnect with capped exponential backoff and jitter, and every failure is
reported to the source monitor, which raises ``source-down`` if it lasts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from integrations.entra import APP_OPTIONS
from sgalert.config import SourceConfig, refuse_unknown_options
from sgalert.errors import ConfigError
from sgalert.ports import Deliver, Health, Inbound, IngestOutcome, ProbeFailed, ProbeReport
from sgalert.routing.backoff import backoff_seconds
from sgalert.secrets import read_secret

log = logging.getLogger("sgalert.inbox.imap")

SEEN = b"\\Seen"
LOOPBACK = ("127.0.0.1", "::1", "localhost")
# Messages stored to one transaction when a backlog drains (bounded in bytes as well).
DEFAULT_BATCH_SIZE = 250


@dataclass(frozen=True, slots=True)
class ImapSettings:
    host: str
    port: int
    security: str  # "tls", "starttls" or "none" (loopback only)
    username: str
    folder: str = "INBOX"
    after_commit: str = "mark-read"  # or "move"
    move_to: str | None = None
    idle_seconds: float = 60.0
    poll_seconds: float = 30.0
    batch_size: int = DEFAULT_BATCH_SIZE
    batch_bytes: int = 64 * 1024 * 1024
    timeout: float = 30.0
    ca_file: str | None = None
    max_backoff: float = 60.0


class Stopped(Exception):
    """The watcher was asked to stop."""


@dataclass(slots=True)
class _Announced:
    """How many messages the server last said the folder holds, from its EXISTS replies.

    Mail that arrives during a round is announced once, in the reply to whichever command comes
    next (Dovecot puts it after a SEARCH whose result cannot include it yet), and IDLE will not
    announce it again. IMAPClient leaves those replies in imaplib's ``untagged_responses``, so
    they are read from there. (STATUS is no substitute: on the selected mailbox Dovecot answers
    from the session's last view, flagged ``[CLIENTBUG]``, and RFC 3501 forbids using it so.)
    """

    exists: int

    def grew(self, client: IMAPClient) -> bool:
        """True if the folder may hold mail the last SEARCH could not see.

        A repeated, unchanged count is not growth (some servers repeat EXISTS), so a round
        that only confirms it ends the drain. After expunges (``move``) the count alone cannot
        tell, so any EXISTS then means one more look.
        """
        untagged: dict[str, list[Any]] = client._imap.untagged_responses
        counts = untagged.pop("EXISTS", [])
        expunged = untagged.pop("EXPUNGE", [])
        untagged.pop("RECENT", None)  # never read; it would pile up for the connection's life
        if not counts:
            return False
        before, self.exists = self.exists, int(counts[-1])
        return bool(expunged) or self.exists != before


class ImapInbox:
    """One IMAP folder, watched from a worker thread."""

    def __init__(
        self,
        name: str,
        settings: ImapSettings,
        credential: Callable[[], tuple[str, str]],
    ) -> None:
        """``credential`` returns ("password", secret) or ("xoauth2", access token)."""
        self.name = name
        self.settings = settings
        self._credential = credential
        self._stop = threading.Event()

    # ----- the asyncio side -------------------------------------------------------------

    async def run(self, deliver: Deliver, checkpoint: str | None, health: Health) -> None:
        loop = asyncio.get_running_loop()
        self._stop.clear()
        worker = asyncio.to_thread(self._work, loop, deliver, checkpoint, health)
        try:
            await worker
        finally:
            self._stop.set()

    async def probe(self) -> ProbeReport:
        """For ``sgalert doctor``: log in, check the folder (and the move target) exist and
        whether IDLE is offered, log out. Selects nothing, so no message is touched."""
        return await asyncio.to_thread(self._probe)

    def _probe(self) -> ProbeReport:
        s = self.settings
        where = f"{s.host}:{s.port}"
        failure: ProbeFailed | None = None
        client: IMAPClient | None = None
        try:
            client = self._connect()
            missing = [f for f in (s.folder, s.move_to) if f and not client.folder_exists(f)]
            can_idle = b"IDLE" in client.capabilities()
        except LoginError:
            failure = ProbeFailed(
                f"{where} refused the login; check username and the password (or the app's"
                " IMAP.AccessAsApp permission for xoauth2)"
            )
        except SignInUnavailable as exc:
            failure = ProbeFailed(f"no sign-in token ({exc}); check the app registration")
        except (OSError, IMAPClientError, ssl.SSLError) as exc:
            failure = ProbeFailed(
                f"cannot reach {where}: {self._reason(exc)}; check host, port and security,"
                " and that the server is running"
            )
        finally:
            if client is not None:
                _close_quietly(client)
        if failure is not None:
            raise failure
        if missing:
            raise ProbeFailed(
                f"{where} has no folder {missing[0]!r}; create it, or fix folder/move_to"
            )
        detail = f"logged in to {where}, folder {s.folder!r} exists"
        if not can_idle:
            return ProbeReport(
                detail,
                warning="the server does not offer IDLE, so it is polled every"
                f" {s.poll_seconds:g}s; lower poll_seconds if that is too slow",
            )
        return ProbeReport(detail + ", IDLE offered")

    # ----- the worker thread ------------------------------------------------------------

    def _call(self, loop: asyncio.AbstractEventLoop, coroutine: Any) -> Any:
        """Run a coroutine on the event loop and wait for it, giving up if asked to stop."""
        return self._wait(asyncio.run_coroutine_threadsafe(coroutine, loop))

    def _wait(self, future: Future[Any]) -> Any:
        while True:
            try:
                return future.result(timeout=0.5)
            except TimeoutError:
                if self._stop.is_set():
                    future.cancel()
                    raise Stopped from None

    def _work(
        self,
        loop: asyncio.AbstractEventLoop,
        deliver: Deliver,
        checkpoint: str | None,
        health: Health,
    ) -> None:
        state = _parse_checkpoint(checkpoint)
        failures = 0
        while not self._stop.is_set():
            client: IMAPClient | None = None
            try:
                client = self._connect()
                failures = 0
                self._watch(client, loop, deliver, health, state)
            except Stopped:
                return
            except LoginError:
                self._call(loop, health.failing("login refused: check the username and secret"))
            except (OSError, IMAPClientError, ssl.SSLError) as exc:
                self._call(loop, health.failing(self._reason(exc)))
            finally:
                if client is not None:
                    _close_quietly(client)
            failures += 1
            delay = backoff_seconds(failures, first=1.0, cap=self.settings.max_backoff)
            if self._stop.wait(delay):
                return

    def _reason(self, exc: BaseException) -> str:
        """What ``health.failing`` is told: the kind of problem and what to check, no secrets."""
        if isinstance(exc, ssl.SSLCertVerificationError):
            return (
                f"the TLS certificate of {self.settings.host} is not trusted"
                f" ({exc.verify_message}); set ca_file to the CA that signed it"
            )
        return f"connection problem: {type(exc).__name__}"

    def _connect(self) -> IMAPClient:
        s = self.settings
        context = ssl.create_default_context(cafile=s.ca_file) if s.security != "none" else None
        client = IMAPClient(
            s.host, port=s.port, ssl=s.security == "tls", ssl_context=context, timeout=s.timeout
        )
        try:
            if s.security == "starttls":
                client.starttls(context)
            kind, secret = self._credential()
            if kind == "xoauth2":
                client.oauth2_login(s.username, secret)
            else:
                client.login(s.username, secret)
        except BaseException:
            _close_quietly(client)
            raise
        return client

    def _watch(
        self,
        client: IMAPClient,
        loop: asyncio.AbstractEventLoop,
        deliver: Deliver,
        health: Health,
        state: dict[str, int],
    ) -> None:
        s = self.settings
        selected = client.select_folder(s.folder)
        uidvalidity = int(selected[b"UIDVALIDITY"])
        if state.get("uidvalidity") != uidvalidity:
            if "uidvalidity" in state:
                log.warning("source %s: UIDVALIDITY changed; rescanning the folder", self.name)
            state.clear()
            state.update(uidvalidity=uidvalidity, last_uid=0)
        can_idle = b"IDLE" in client.capabilities()
        announced = _Announced(int(selected.get(b"EXISTS", 0)))
        self._call(loop, health.ok())
        self._finish_interrupted(client, loop, deliver, state)
        while not self._stop.is_set():
            while self._drain(client, loop, deliver, state, announced):
                pass
            self._call(loop, health.ok())
            if can_idle:
                self._idle(client, state)
            elif self._stop.wait(s.poll_seconds):
                return

    def _finish_interrupted(
        self,
        client: IMAPClient,
        loop: asyncio.AbstractEventLoop,
        deliver: Deliver,
        state: dict[str, int],
    ) -> None:
        """Mark (or move) messages whose cases were stored before a crash stopped the marking.

        They sit at or below the checkpoint but are still unseen (or still here, when moving).
        Delivering them again costs a fetch and yields their existing cases, never new ones.
        """
        s = self.settings
        last = state["last_uid"]
        if last == 0:
            return
        criteria: list[str] = ["UID", f"1:{last}"]
        if s.after_commit == "mark-read":
            criteria.append("UNSEEN")
        uids = sorted(uid for uid in client.search(criteria) if uid <= last)
        for chunk in self._batches(client, uids, [*criteria, *self._large()]):
            messages = self._fetch(client, chunk, state)
            outcomes = self._call(loop, deliver(messages))
            self._after_commit(client, self._done(chunk, outcomes, state))
        if uids:
            log.info(
                "source %s: finished marking %d message(s) after a restart", self.name, len(uids)
            )

    def _fetch(
        self, client: IMAPClient, uids: Sequence[int], state: dict[str, int]
    ) -> list[Inbound]:
        fetched = client.fetch(list(uids), [b"BODY.PEEK[]", b"INTERNALDATE"])
        messages = []
        for uid in uids:
            data = fetched.get(uid)
            if data is None or b"BODY[]" not in data:
                continue  # expunged between SEARCH and FETCH
            messages.append(
                Inbound(
                    raw=bytes(data[b"BODY[]"]),
                    key=self._key(state, uid),
                    received_at=_utc(data.get(b"INTERNALDATE")),
                )
            )
        return messages

    def _drain(
        self,
        client: IMAPClient,
        loop: asyncio.AbstractEventLoop,
        deliver: Deliver,
        state: dict[str, int],
        announced: _Announced,
    ) -> bool:
        """Deliver every message above the checkpoint; True if the folder grew meanwhile."""
        announced.grew(client)  # what IDLE or the last round announced: this SEARCH sees it
        last = state["last_uid"]
        criteria = ["UID", f"{last + 1}:*"]
        uids = sorted(uid for uid in client.search(criteria) if uid > last)
        # Up to two batches are handed over before the first is stored: the core prepares one
        # while it stores the other, and stores them strictly in order. Each batch is marked
        # only once its cases are stored.
        in_flight: deque[tuple[Future[Any], list[int]]] = deque()
        for chunk in self._batches(client, uids, [*criteria, *self._large()]):
            if self._stop.is_set():
                raise Stopped
            messages = self._fetch(client, chunk, state)
            checkpoint = json.dumps({"uidvalidity": state["uidvalidity"], "last_uid": chunk[-1]})
            future = asyncio.run_coroutine_threadsafe(
                deliver(messages, checkpoint=checkpoint), loop
            )
            in_flight.append((future, chunk))
            if len(in_flight) > 1:
                self._settle(client, in_flight.popleft(), state)
        while in_flight:
            self._settle(client, in_flight.popleft(), state)
        # Mail that arrived during the round was announced in replies to our own commands, so
        # IDLE would not announce it again: look once more if the folder grew.
        return announced.grew(client)

    def _large(self) -> list[str]:
        """SEARCH criteria for a message too big to share a batch of ``batch_size``."""
        s = self.settings
        return ["LARGER", str(max(1, s.batch_bytes // s.batch_size))]

    def _batches(
        self, client: IMAPClient, uids: list[int], large_criteria: list[str]
    ) -> list[list[int]]:
        """``uids`` in order, in batches that hold at most ``batch_size`` messages and, since
        the server says which are large, about ``batch_bytes`` at most: a mailbox of 25 MB
        messages must not be fetched a hundred at a time."""
        if not uids:
            return []
        wanted = set(uids)
        large = {uid for uid in client.search(large_criteria) if uid in wanted}
        return plan_batches(uids, large, self.settings.batch_size)

    def _settle(
        self, client: IMAPClient, in_flight: tuple[Future[Any], list[int]], state: dict[str, int]
    ) -> None:
        """Wait for a batch's cases to be stored, then (only then) mark its messages."""
        future, chunk = in_flight
        outcomes = self._wait(future)
        state["last_uid"] = chunk[-1]
        self._after_commit(client, self._done(chunk, outcomes, state))

    def _key(self, state: dict[str, int], uid: int) -> str:
        s = self.settings
        return f"imap:{s.username}@{s.host}/{s.folder}:{state['uidvalidity']}:{uid}"

    def _done(
        self, uids: Sequence[int], outcomes: Sequence[IngestOutcome], state: dict[str, int]
    ) -> list[int]:
        """The UIDs to mark: all of the batch but any message the core holds unread."""
        held = {outcome.key for outcome in outcomes if outcome.held}
        return [uid for uid in uids if self._key(state, uid) not in held]

    def _after_commit(self, client: IMAPClient, uids: Sequence[int]) -> None:
        s = self.settings
        if not uids:
            return
        if s.after_commit == "move" and s.move_to:
            if b"MOVE" in client.capabilities():
                client.move(uids, s.move_to)
            else:
                client.copy(uids, s.move_to)
                client.delete_messages(uids)
                client.uid_expunge(
                    uids
                ) if b"UIDPLUS" in client.capabilities() else client.expunge()
        else:
            client.add_flags(uids, [SEEN], silent=True)

    def _idle(self, client: IMAPClient, state: dict[str, int]) -> None:
        """Wait in IDLE until the folder changes, the re-issue time comes, or we must stop.

        Whatever the server sent with "+ idling" (Dovecot's news of mail that came after our
        last command) counts as a change: ``idle_check`` watches the socket and would miss it.
        """
        client.idle()
        deadline = time.monotonic() + self.settings.idle_seconds
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                if _read_ahead(client):
                    return
                started = time.monotonic()
                responses = client.idle_check(timeout=1.0)
                if any(_is_exists(response) for response in responses):
                    return
                if not responses and time.monotonic() - started < 0.5 and _closed(client):
                    # IMAPClient swallows EOF during IDLE and returns nothing, at once.
                    raise ConnectionResetError("the server closed the IDLE connection")
        finally:
            client.idle_done()


def plan_batches(uids: Sequence[int], large: set[int], size: int) -> list[list[int]]:
    """Consecutive batches of at most ``size`` UIDs, each large message in a batch of its own.

    Order is kept, so a checkpoint at the end of each batch never passes an unstored message.
    """
    batches: list[list[int]] = []
    current: list[int] = []
    for uid in uids:
        if uid in large:
            if current:
                batches.append(current)
                current = []
            batches.append([uid])
        else:
            current.append(uid)
            if len(current) >= size:
                batches.append(current)
                current = []
    if current:
        batches.append(current)
    return batches


def _closed(client: IMAPClient) -> bool:
    """True when the server has closed the socket (a zero-byte peek).

    An ``SSLSocket`` (imaps, or after STARTTLS) refuses ``recv`` flags with a ValueError, so
    this peeks at the TCP stream under the TLS layer: once that layer has met the end of the
    stream (IMAPClient swallowed the EOF), the stream reads as empty.
    """
    sock = client.socket()
    timeout = sock.gettimeout()
    try:
        sock.setblocking(False)
        peeked: bytes = socket.socket.recv(sock, 1, socket.MSG_PEEK)
        return peeked == b""
    except (BlockingIOError, ssl.SSLWantReadError):
        return False
    except OSError:
        return True
    finally:
        sock.settimeout(timeout)


def _read_ahead(client: IMAPClient) -> bool:
    """True when imaplib holds bytes from the server that nobody has parsed yet.

    imaplib reads the socket in chunks, so the line it wants can bring the next ones along:
    IMAPClient's ``idle()`` reads "+ idling" and with it any news sent in the same packet.
    Those bytes never make the socket readable again, so ``idle_check``, which polls the
    socket, would leave them until the server next spoke (a keepalive, minutes later).
    """
    imap = client._imap
    sock = client.socket()
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True  # decrypted by the TLS layer but not yet taken by imaplib
    chunks = getattr(imap, "_readbuf", None)  # Python 3.14+: imaplib buffers reads itself
    if chunks is not None:
        return any(chunks)
    timeout = sock.gettimeout()
    try:
        sock.setblocking(False)
        # The reader's buffer if it holds anything; else one read that cannot block.
        return bool(imap.file.peek(1))
    except (BlockingIOError, ssl.SSLWantReadError):
        return False
    finally:
        sock.settimeout(timeout)


def _is_exists(response: object) -> bool:
    return isinstance(response, tuple) and len(response) > 1 and response[1] == b"EXISTS"


def _parse_checkpoint(checkpoint: str | None) -> dict[str, int]:
    if not checkpoint:
        return {}
    try:
        data = json.loads(checkpoint)
        return {"uidvalidity": int(data["uidvalidity"]), "last_uid": int(data["last_uid"])}
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring an unreadable IMAP checkpoint; rescanning the folder")
        return {}


def _utc(value: object) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _close_quietly(client: IMAPClient) -> None:
    try:
        client.logout()
    except (TimeoutError, OSError, IMAPClientError, ssl.SSLError):
        try:
            client.shutdown()
        except (OSError, IMAPClientError):
            pass


class SignInUnavailable(ConnectionError):
    """No token from the sign-in authority this time (out of reach, 5xx, an answer that is not
    JSON): reported as a connection problem and retried with the reconnect backoff."""


def _xoauth2_token(
    options: dict[str, Any], where: str, root: Path, *, ca_file: str | None, timeout: float
) -> Callable[[], str]:
    """App-only tokens for Exchange Online IMAP (``IMAP.AccessAsApp``) from msal.

    The app registration is checked now; the sign-in authority is asked only when connecting
    (``ca_file`` is trusted for it too). Every connection after the first asks for a fresh
    token, because a reconnect may follow the server refusing the cached one (revoked, or the
    app's permission changed) and msal would offer it again until it expires; while the
    authority cannot answer, the last token is used until it expires. A refusal by the
    authority becomes LoginError, anything worth retrying SignInUnavailable; neither carries
    the token, the secret or msal's own exception.
    """
    from integrations.entra import OUTLOOK_SCOPE, AppToken, SignInError, read_app

    tokens = AppToken(
        read_app(options, where, root),
        OUTLOOK_SCOPE,
        ca_file=ca_file,
        timeout=timeout,
    )
    handed_out = False

    def token() -> str:
        nonlocal handed_out
        failure: Exception
        try:
            value = tokens.get(fresh=handed_out)
        except SignInError as error:
            failure = (
                SignInUnavailable(error.reason)
                if error.retryable
                else LoginError(f"token refused: {error.reason}")
            )
        else:
            handed_out = True
            return value
        raise failure

    return token


_KEYS = {
    "host",
    "port",
    "security",
    "username",
    "folder",
    "after_commit",
    "move_to",
    "idle_seconds",
    "batch_megabytes",
    "poll_seconds",
    "batch_size",
    "timeout",
    "ca_file",
    "auth",
    "password_env",
    "password_file",
    *APP_OPTIONS,
}


def _ca_file(options: dict[str, Any], security: str, where: str, root: Path) -> str | None:
    """The CA bundle to trust instead of the system's: relative to the workspace root, and
    checked now, so a wrong path is a config error rather than a mailbox that looks down."""
    if "ca_file" not in options:
        return None
    if security == "none":
        raise ConfigError(f'{where}.ca_file: only used with security "tls" or "starttls"')
    value = options["ca_file"]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f'{where}.ca_file: give a PEM file, e.g. ca_file = "certs/school-ca.pem"')
    path = Path(value.strip()).expanduser()
    path = path if path.is_absolute() else root / path
    try:
        ssl.create_default_context(cafile=str(path))
    except ssl.SSLError:
        raise ConfigError(f"{where}.ca_file: {path} holds no PEM certificate") from None
    except OSError:
        raise ConfigError(f"{where}.ca_file: {path} cannot be read") from None
    return str(path)


def create(source: SourceConfig, root: Path) -> ImapInbox:
    options = dict(source.options)
    where = f"sources[{source.name}]"
    refuse_unknown_options(options, tuple(sorted(_KEYS)), where, "imap")

    def need(key: str) -> str:
        value = options.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f'{where}.{key}: an imap source needs it; e.g. {key} = "..."')
        return value.strip()

    def text(key: str, default: str) -> str:
        value = options.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f'{where}.{key}: must be a folder name; e.g. {key} = "{default}"')
        return value.strip()

    def number(key: str, default: float, low: float, high: float) -> float:
        value = options.get(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise ConfigError(
                f"{where}.{key}: must be a number from {low:g} to {high:g};"
                f" e.g. {key} = {default:g}"
            )
        return float(value)

    host = need("host")
    for key in ("security", "after_commit", "auth"):
        if not isinstance(options.get(key, ""), str):
            raise ConfigError(f'{where}.{key}: must be a string; e.g. {key} = "..."')
    security = str(options.get("security", "tls"))
    if security not in ("tls", "starttls", "none"):
        raise ConfigError(f'{where}.security: use "tls", "starttls" or "none"')
    if security == "none" and host not in LOOPBACK:
        raise ConfigError(
            f'{where}.security: "none" sends the password in clear; allowed on loopback only'
        )
    after = str(options.get("after_commit", "mark-read"))
    if after not in ("mark-read", "move"):
        raise ConfigError(f'{where}.after_commit: use "mark-read" or "move"')
    if after == "move":
        need("move_to")
    idle = number("idle_seconds", 60, 5, 1500)  # RFC 2177: servers may drop at 30 minutes
    settings = ImapSettings(
        host=host,
        port=int(number("port", 993 if security == "tls" else 143, 1, 65535)),
        security=security,
        username=need("username"),
        folder=text("folder", "INBOX"),
        after_commit=after,
        move_to=text("move_to", "Processed") if after == "move" else None,
        idle_seconds=idle,
        poll_seconds=number("poll_seconds", 30, 0.2, 3600),
        batch_size=int(number("batch_size", DEFAULT_BATCH_SIZE, 1, 1000)),
        batch_bytes=int(number("batch_megabytes", 64, 1, 1024) * 1024 * 1024),
        timeout=number("timeout", 30, 1, 600),
        ca_file=_ca_file(options, security, where, root),
    )
    auth = str(options.get("auth", "password"))
    if auth == "xoauth2":
        token = _xoauth2_token(
            options, where, root, ca_file=settings.ca_file, timeout=settings.timeout
        )

        def credential() -> tuple[str, str]:
            return ("xoauth2", token())
    elif auth == "password":
        secret = read_secret(options, "password", where, root)

        def credential() -> tuple[str, str]:
            return ("password", secret)
    else:
        raise ConfigError(f'{where}.auth: use "password" or "xoauth2"')
    return ImapInbox(source.name, settings, credential)
