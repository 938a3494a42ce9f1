"""Exchange Web Services inbox, for on-premises Exchange Server only.

Microsoft is retiring EWS in Exchange Online: it is phased off from October 2026 and gone in April
2027. A Microsoft 365 mailbox must use ``kind = "graph"``; this adapter refuses the Exchange Online
endpoint (``outlook.office365.com``) so that nobody builds on a path about to close. On-premises
Exchange Server (2013 to Subscription Edition) keeps EWS, and that is what this adapter is for.

How it watches, without the server having to reach us (no push URL, no open port):

- one :class:`exchangelib.Account` with ``autodiscover=False`` and the configured EWS endpoint,
  used from a worker thread (``asyncio.to_thread``), one call at a time;
- each round asks the folder for its changes since the saved sync state (``SyncFolderItems``,
  item ids plus three cheap fields), then fetches the raw MIME of the new items in small batches
  (``GetItem`` with ``MimeContent`` only) and hands each batch to ``deliver``; the last batch of a
  round carries the checkpoint, a JSON object holding the new sync state;
- only after ``deliver`` has returned (the cases are committed) is a batch marked read
  (``UpdateItem`` setting ``IsRead``) or moved (``MoveItem``), per ``after_commit``.

What a caller must know:

- The idempotency key is ``ews:<mailbox>:<item id>``. A message moved out and back gets a new
  item id; the core then recognises it by its bytes when Exchange renders the same MIME (it
  normally does), and otherwise flags the new case ``possible-duplicate`` by its Message-ID.
- The first run (no checkpoint) in ``mark-read`` mode takes only unread messages: messages already
  read were dealt with before sgalert. In ``move`` mode everything in the folder is taken, since
  sgalert moves what it has stored. After the first run, read state is ignored: a message a
  person read in Outlook before the next round is still taken.
- Exchange may refuse a saved sync state (a mailbox move, a restore): the folder is then synced
  from scratch, taking unread messages and anything received since the last good round; what was
  stored already is recognised by the core and makes no second case.
- Items delivered but not yet marked (a crash, or the server going away between the commit and
  the mark) are listed in the checkpoint and marked first on the next round. A message the core
  holds (it could be neither read nor quarantined) is left unread and kept out of that list.
- Failures reaching or using the server are reported through ``health.failing`` with a short
  reason (never a secret, never message content) and retried with capped exponential backoff
  plus jitter; ``health.ok`` follows every good round. Errors that are not the server's (a store
  failure inside ``deliver``) propagate to the supervisor.
- exchangelib logs whole SOAP bodies (message content) at DEBUG; unless someone configured its
  logger on purpose, this module sets it to WARNING.

Options, in the source's ``[[sources]]`` table::

    kind = "ews"
    server = "mail.school.example.org"      # or service_endpoint = "https://.../EWS/Exchange.asmx"
    username = "SCHOOL\\\\svc-sgalert"        # or a UPN
    password_env = "SGALERT_EWS_PASSWORD"   # or password_file = "secrets/ews-password" (chmod 600)
    auth_type = "ntlm"                      # or "basic"
    mailbox = "safeguarding@school.example.org"
    folder = "Inbox"                        # or a path such as "Inbox/Encompass"
    after_commit = "mark-read"              # or "move", with move_to = "Inbox/Stored by sgalert"
    poll_seconds = 15
    access = "delegate"                     # or "impersonation" for a service account
    ca_file = "certs/school-ca.pem"         # when the server's certificate is from a private CA
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import exchangelib
import exchangelib.errors as ews_errors
import requests
import requests.adapters
import requests.exceptions
from exchangelib.protocol import BaseProtocol, FailFast, Protocol

from sgalert.config import SourceConfig, refuse_unknown_options
from sgalert.errors import ConfigError
from sgalert.ports import Deliver, Health, Inbound, ProbeFailed, ProbeReport
from sgalert.routing.backoff import backoff_seconds
from sgalert.secrets import read_secret

log = logging.getLogger(__name__)

EXCHANGE_ONLINE_HOSTS = frozenset({"outlook.office365.com", "outlook.office.com"})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
CHECKPOINT_VERSION = 1

_OPTIONS = (
    "server",
    "service_endpoint",
    "username",
    "password_env",
    "password_file",
    "auth_type",
    "mailbox",
    "folder",
    "after_commit",
    "move_to",
    "poll_seconds",
    "access",
    "ca_file",
)
# Fields the sync asks for: enough to choose what to fetch and to batch it, nothing personal.
_SYNC_FIELDS = ("is_read", "datetime_received", "size")
# How far before the last good round a from-scratch resync still takes read messages.
_RESYNC_MARGIN = timedelta(hours=1)


class AfterCommit(StrEnum):
    """What happens to a message once its case is committed."""

    MARK_READ = "mark-read"
    MOVE = "move"


@dataclass(frozen=True, slots=True)
class EwsSettings:
    """One EWS source's validated settings. Build with :func:`settings_from_source`."""

    source_name: str
    service_endpoint: str
    username: str
    password: str = field(repr=False)
    auth_type: str  # "ntlm" or "basic"
    mailbox: str
    folder: tuple[str, ...]
    after_commit: AfterCommit = AfterCommit.MARK_READ
    move_to: tuple[str, ...] = ()
    poll_seconds: float = 15.0
    access: str = "delegate"
    ca_file: Path | None = None
    batch_messages: int = 10
    batch_bytes: int = 40 << 20
    sync_page: int = 100
    backoff_first: float = 5.0
    backoff_cap: float = 120.0

    @property
    def host(self) -> str:
        return urlsplit(self.service_endpoint).hostname or self.service_endpoint

    @property
    def folder_path(self) -> str:
        return "/".join(self.folder)


def create(source: SourceConfig, root: Path) -> EwsInbox:
    """The ``ews`` entry point: validate the source's options and build its inbox."""
    settings = settings_from_source(source, root)
    if settings.ca_file is not None:
        _install_trust_adapter(settings.source_name)
    return EwsInbox(settings)


# ----- configuration ------------------------------------------------------------------------


def settings_from_source(source: SourceConfig, root: Path) -> EwsSettings:
    """Check ``source.options``; raise ConfigError naming ``sources[<name>].<key>`` and the fix."""
    where = f"sources[{source.name}]"
    options = source.options

    def fail(key: str, problem: str, fix: str) -> ConfigError:
        return ConfigError(f"{where}.{key}: {problem}; {fix}")

    def text(key: str, default: str | None = None, example: str = "...") -> str:
        value = options.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise fail(key, "must be a non-empty string", f'write {key} = "{example}"')
        return value.strip()

    refuse_unknown_options(options, _OPTIONS, where, "ews")

    endpoint = _endpoint(options, fail)
    username = text("username", example="SCHOOL\\\\svc-sgalert")
    password = read_secret(options, "password", where, root)
    auth_type = text("auth_type", "ntlm").lower()
    if auth_type not in ("ntlm", "basic"):
        raise fail("auth_type", f"unknown value {auth_type!r}", 'use "ntlm" or "basic"')
    mailbox = text("mailbox", example="safeguarding@school.example.org")
    if "@" not in mailbox or mailbox.startswith("@") or mailbox.endswith("@"):
        raise fail(
            "mailbox", f"{mailbox!r} is not an email address", "give its primary SMTP address"
        )
    folder = _folder_path(text("folder", "Inbox"), "folder", fail)
    try:
        after_commit = AfterCommit(text("after_commit", AfterCommit.MARK_READ.value))
    except ValueError:
        raise fail("after_commit", "unknown value", 'use "mark-read" or "move"') from None
    move_to: tuple[str, ...] = ()
    if after_commit is AfterCommit.MOVE:
        move_to = _folder_path(text("move_to", example="Inbox/Stored by sgalert"), "move_to", fail)
        if [p.lower() for p in move_to] == [p.lower() for p in folder]:
            raise fail("move_to", "is the watched folder itself", "name another folder")
    elif "move_to" in options:
        raise fail("move_to", 'is only used with after_commit = "move"', "remove it, or set that")
    poll = options.get("poll_seconds", 15)
    if isinstance(poll, bool) or not isinstance(poll, int | float) or not 5 <= poll <= 3600:
        raise fail("poll_seconds", "must be a number of seconds from 5 to 3600", "e.g. 15")
    access = text("access", "delegate").lower()
    if access not in ("delegate", "impersonation"):
        raise fail("access", f"unknown value {access!r}", 'use "delegate" or "impersonation"')
    ca_file: Path | None = None
    if "ca_file" in options:
        ca_file = Path(text("ca_file", example="certs/school-ca.pem")).expanduser()
        ca_file = ca_file if ca_file.is_absolute() else root / ca_file
        if not ca_file.is_file():
            raise fail("ca_file", f"{ca_file} is not a readable file", "give the CA's PEM file")
        if not endpoint.startswith("https://"):
            raise fail("ca_file", "is only used with https", "use an https service_endpoint")
    return EwsSettings(
        source_name=source.name,
        service_endpoint=endpoint,
        username=username,
        password=password,
        auth_type=auth_type,
        mailbox=mailbox.lower(),
        folder=folder,
        after_commit=after_commit,
        move_to=move_to,
        poll_seconds=float(poll),
        access=access,
        ca_file=ca_file,
    )


def _endpoint(options: Mapping[str, Any], fail: Any) -> str:
    has_server, has_endpoint = "server" in options, "service_endpoint" in options
    if has_server == has_endpoint:
        raise fail(
            "server",
            "give exactly one of server and service_endpoint",
            'e.g. server = "mail.school.example.org"',
        )
    key = "server" if has_server else "service_endpoint"
    value = options[key]
    if not isinstance(value, str) or not value.strip():
        raise fail(key, "must be a non-empty string", f'write {key} = "..."')
    value = value.strip()
    if has_server:
        if "/" in value or "@" in value:
            raise fail(
                "server",
                f"{value!r} is not a host name",
                "give the host only, or the full URL as service_endpoint",
            )
        endpoint = f"https://{value}/EWS/Exchange.asmx"
    else:
        endpoint = value
    parts = urlsplit(endpoint)
    try:
        _ = parts.port  # raises on a malformed port
    except ValueError:
        raise fail(
            key, f"{value!r} has an invalid port", "e.g. mail.school.example.org:443"
        ) from None
    host = (parts.hostname or "").rstrip(".").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise fail(
            key,
            f"{value!r} is not an http(s) URL",
            'e.g. "https://mail.school.example.org/EWS/Exchange.asmx"',
        )
    if host in EXCHANGE_ONLINE_HOSTS or host.endswith(".outlook.office365.com"):
        raise fail(
            key,
            f"{host} is Exchange Online, where Microsoft is retiring EWS (phased off from"
            " October 2026, gone in April 2027)",
            'use kind = "graph" for a Microsoft 365 mailbox; kind = "ews" is for on-premises'
            " Exchange Server only",
        )
    if parts.scheme == "http" and host not in LOOPBACK_HOSTS:
        raise fail(key, "plain http would send the password in the clear", "use https")
    if parts.username or parts.password:
        raise fail(key, "must not hold credentials", "use username and password_env instead")
    return endpoint


def _folder_path(value: str, key: str, fail: Any) -> tuple[str, ...]:
    parts = tuple(part.strip() for part in value.strip("/").split("/"))
    if not all(parts):
        raise fail(key, f"{value!r} has an empty folder name", 'write it as e.g. "Inbox/Encompass"')
    return parts


# ----- the checkpoint -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SyncPoint:
    """What the checkpoint holds: where the folder's sync stands, and what still needs marking."""

    mailbox: str
    folder: str
    sync_state: str | None = None
    synced_at: datetime | None = None
    unmarked: tuple[str, ...] = ()

    def dump(self, unmarked: Iterable[str] = ()) -> str:
        return json.dumps(
            {
                "v": CHECKPOINT_VERSION,
                "mailbox": self.mailbox,
                "folder": self.folder,
                "sync_state": self.sync_state,
                "synced_at": self.synced_at.isoformat() if self.synced_at else None,
                "unmarked": list(dict.fromkeys(unmarked)),
            },
            separators=(",", ":"),
        )

    @classmethod
    def load(cls, checkpoint: str | None, settings: EwsSettings) -> SyncPoint:
        """The saved point, or a fresh one when there is none or it is for another folder."""
        fresh = cls(settings.mailbox, settings.folder_path.lower())
        if not checkpoint:
            return fresh
        try:
            data = json.loads(checkpoint)
            point = cls(
                mailbox=str(data["mailbox"]),
                folder=str(data["folder"]),
                sync_state=str(data["sync_state"]) if data.get("sync_state") else None,
                synced_at=datetime.fromisoformat(data["synced_at"])
                if data.get("synced_at")
                else None,
                unmarked=tuple(str(i) for i in data.get("unmarked", ())),
            )
        except (ValueError, TypeError, KeyError):
            log.warning(
                "source %s: unreadable EWS checkpoint; syncing from scratch", settings.source_name
            )
            return fresh
        if (point.mailbox, point.folder) != (fresh.mailbox, fresh.folder):
            log.info(
                "source %s: mailbox or folder changed; syncing from scratch", settings.source_name
            )
            return replace(fresh, unmarked=())
        return point


# ----- the blocking side --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Seen:
    """A new item as the sync reported it: ids and the fields used to choose and batch."""

    id: str
    changekey: str | None
    is_read: bool
    received: datetime | None
    size: int


@dataclass(frozen=True, slots=True)
class _Fetched:
    id: str
    changekey: str | None
    mime: bytes
    received: datetime | None


class _Unreachable(Exception):
    """The mailbox could not be read or updated; ``reason`` is safe to show and to log."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _SyncStateRefused(Exception):
    """Exchange no longer accepts the saved sync state."""


class _Mailbox:
    """The exchangelib side: an Account, the watched folder and the move target.

    Every method blocks and runs in a worker thread; the inbox calls one at a time. exchangelib
    errors are translated here, at the edge, into :class:`_Unreachable` with a safe reason.
    """

    def __init__(self, settings: EwsSettings) -> None:
        self.settings = settings
        self._config: Any = None
        self._account: Any = None
        self._folder: Any = None
        self._target: Any = None

    def _connect(self) -> Any:
        s = self.settings
        if self._account is None:
            self._config = exchangelib.Configuration(
                service_endpoint=s.service_endpoint,
                credentials=exchangelib.Credentials(s.username, s.password),
                auth_type=exchangelib.NTLM if s.auth_type == "ntlm" else exchangelib.BASIC,
                # Fail at once and let the inbox back off: exchangelib's own retry loop can
                # sleep for up to an hour inside a worker thread, where nobody sees it.
                retry_policy=FailFast(),
            )
            self._account = exchangelib.Account(
                primary_smtp_address=s.mailbox,
                config=self._config,
                autodiscover=False,
                # Without this exchangelib assumes impersonation whenever the credentials come in
                # the Configuration rather than the Account.
                access_type=exchangelib.DELEGATE
                if s.access == "delegate"
                else exchangelib.IMPERSONATION,
                default_timezone=exchangelib.UTC,
            )
        if self._folder is None:
            self._folder = self._resolve(s.folder)
        if s.after_commit is AfterCommit.MOVE and self._target is None:
            self._target = self._resolve(s.move_to)
        return self._account

    def _resolve(self, path: tuple[str, ...]) -> Any:
        account = self._account
        if path[0].lower() == "inbox":
            folder, rest = account.inbox, path[1:]  # the distinguished Inbox, whatever its language
        else:
            folder, rest = account.msg_folder_root, path
        for name in rest:
            try:
                folder = folder // name
            except ews_errors.ErrorFolderNotFound:
                raise _Unreachable(f"folder {'/'.join(path)} not found in the mailbox") from None
            except ews_errors.MultipleObjectsReturned:
                raise _Unreachable(f"folder name {name!r} is ambiguous in the mailbox") from None
        return folder

    def changes(self, sync_state: str | None) -> tuple[list[_Seen], str | None]:
        """New items in the folder since ``sync_state`` (all of them when it is None)."""
        with _translated(self.settings):
            self._connect()
            folder = self._folder
            # sync_items() falls back to the folder's remembered state when given None, so set it.
            folder.item_sync_state = sync_state
            seen: list[_Seen] = []
            try:
                for change, item in folder.sync_items(
                    sync_state=sync_state,
                    only_fields=list(_SYNC_FIELDS),
                    max_changes_returned=self.settings.sync_page,
                ):
                    if change != "create":
                        continue  # updates, deletions, read flags (ours among them)
                    seen.append(
                        _Seen(
                            id=item.id,
                            changekey=item.changekey,
                            is_read=bool(item.is_read),
                            received=_plain(item.datetime_received),
                            size=int(item.size or 0),
                        )
                    )
            except ews_errors.ErrorInvalidSyncStateData:
                raise _SyncStateRefused from None
            return seen, folder.item_sync_state

    def fetch(self, wanted: Sequence[_Seen]) -> list[_Fetched]:
        """The raw MIME of each item still there; an item deleted meanwhile is left out."""
        with _translated(self.settings):
            account = self._connect()
            fetched: list[_Fetched] = []
            results = account.fetch(
                ids=[(w.id, w.changekey) for w in wanted], only_fields=["mime_content"]
            )
            for want, result in zip(wanted, results, strict=True):
                if isinstance(result, ews_errors.ErrorItemNotFound):
                    log.info(
                        "source %s: a message went before it was fetched", self.settings.source_name
                    )
                    continue
                if isinstance(result, Exception):
                    raise result
                if not result.mime_content:
                    raise _Unreachable("Exchange returned a message without its MIME content")
                fetched.append(
                    _Fetched(
                        id=result.id or want.id,
                        changekey=result.changekey,
                        mime=bytes(result.mime_content),
                        received=want.received,
                    )
                )
            return fetched

    def mark_done(self, refs: Sequence[tuple[str, str | None]]) -> None:
        """Mark read or move stored items. An item no longer there is taken as done."""
        if not refs:
            return
        with _translated(self.settings):
            account = self._connect()
            if self.settings.after_commit is AfterCommit.MOVE:
                results = account.bulk_move(ids=list(refs), to_folder=self._target)
            else:
                updates = []
                for item_id, changekey in refs:
                    message = exchangelib.Message(account=account, id=item_id, changekey=changekey)
                    message.is_read = True
                    updates.append((message, ["is_read"]))
                results = account.bulk_update(items=updates)
            missing = 0
            for result in results:
                if isinstance(result, ews_errors.ErrorItemNotFound):
                    missing += 1
                elif isinstance(result, Exception):
                    raise result
            if missing:
                log.info(
                    "source %s: %d stored message(s) were gone before they could be marked",
                    self.settings.source_name,
                    missing,
                )

    def close(self) -> None:
        """Close the HTTP sessions and drop exchangelib's cached protocol for this endpoint."""
        account, config = self._account, self._config
        self._account = self._config = self._folder = self._target = None
        if account is None:
            return
        account.protocol.close()
        with suppress(KeyError):
            del Protocol[config]  # exchangelib caches one protocol per endpoint + credentials


@contextmanager
def _translated(settings: EwsSettings) -> Iterator[None]:
    """Turn exchangelib's and requests' errors into :class:`_Unreachable` with a safe reason."""
    try:
        yield
    except (_Unreachable, _SyncStateRefused):
        raise
    except (ews_errors.EWSError, requests.exceptions.RequestException, OSError) as exc:
        retry_after = exc.back_off if isinstance(exc, ews_errors.ErrorServerBusy) else None
        raise _Unreachable(reason_for(exc, settings), retry_after) from None


def reason_for(exc: BaseException, settings: EwsSettings) -> str:
    """A short reason for ``health.failing``: no secrets, no content, what to check."""
    host, mailbox = settings.host, settings.mailbox
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and len(chain) < 10:
        chain.append(link)
        link = link.__cause__ or link.__context__
    if any(
        isinstance(e, requests.exceptions.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(e)
        for e in chain
    ):
        return f"the TLS certificate of {host} is not trusted; set ca_file to the school's CA"
    if isinstance(exc, ews_errors.UnauthorizedError):
        return f"{host} refused the login; check username, password and auth_type"
    if isinstance(exc, ews_errors.ErrorNonExistentMailbox | ews_errors.ErrorMailRecipientNotFound):
        return f"mailbox {mailbox} does not exist on {host}"
    if isinstance(
        exc,
        ews_errors.ErrorAccessDenied
        | ews_errors.ErrorImpersonateUserDenied
        | ews_errors.ErrorImpersonationDenied
        | ews_errors.ErrorItemSave,
    ):
        return f"the account may not use mailbox {mailbox} ({type(exc).__name__})"
    if isinstance(exc, ews_errors.ErrorFolderNotFound | ews_errors.ErrorToFolderNotFound):
        return f"a configured folder was not found in mailbox {mailbox}"
    if isinstance(exc, ews_errors.ErrorServerBusy | ews_errors.RateLimitError):
        return f"{host} is throttling requests"
    if isinstance(exc, ews_errors.RedirectError | ews_errors.RelativeRedirect):
        return f"{host} redirected the request; check service_endpoint is the EWS URL"
    connection = (
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
        ConnectionError,
        TimeoutError,
    )
    if isinstance(exc, ews_errors.ErrorTimeoutExpired) or any(
        isinstance(e, connection) for e in chain
    ):
        return f"cannot reach {host}"
    if isinstance(exc, ews_errors.MalformedResponseError | ews_errors.SOAPError):
        return f"{host} did not answer as an EWS server; check service_endpoint"
    if isinstance(exc, ews_errors.TransportError) and "version" in str(exc).lower():
        return f"{host} did not answer as an EWS server; check service_endpoint"
    return f"Exchange error {type(exc).__name__} from {host}"


def _plain(moment: Any) -> datetime | None:
    """exchangelib's EWSDateTime as a plain aware datetime in UTC."""
    if moment is None:
        return None
    return datetime.fromtimestamp(moment.timestamp(), UTC)


# ----- TLS trust per endpoint ---------------------------------------------------------------

_TRUST: dict[tuple[str, int], str] = {}
_TRUST_LOCK = threading.Lock()


class _SchoolTrustAdapter(requests.adapters.HTTPAdapter):
    """Verifies an EWS host against the CA file configured for it, others as usual.

    exchangelib takes its HTTP adapter class from one class attribute for the whole process,
    so per-source trust is looked up by host and port at send time.
    """

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        parts = urlsplit(request.url or "")
        key = ((parts.hostname or "").lower(), parts.port or 443)
        with _TRUST_LOCK:
            ca_file = _TRUST.get(key)
        if ca_file is not None and verify is not False:
            verify = ca_file
        return super().send(request, stream, timeout, verify, cert, proxies)


def _install_trust_adapter(source_name: str) -> None:
    if BaseProtocol.HTTP_ADAPTER_CLS is _SchoolTrustAdapter:
        return
    if BaseProtocol.HTTP_ADAPTER_CLS is not requests.adapters.HTTPAdapter:
        raise ConfigError(
            f"sources[{source_name}].ca_file: exchangelib's HTTP adapter was replaced by other"
            " code, so ca_file cannot be honoured; remove ca_file and install the CA system-wide"
        )
    BaseProtocol.HTTP_ADAPTER_CLS = _SchoolTrustAdapter


def _trust(settings: EwsSettings) -> tuple[str, int] | None:
    """Verify this source's endpoint against its ca_file from now on."""
    if settings.ca_file is None:
        return None
    _install_trust_adapter(settings.source_name)
    parts = urlsplit(settings.service_endpoint)
    key = ((parts.hostname or "").lower(), parts.port or 443)
    with _TRUST_LOCK:
        _TRUST[key] = str(settings.ca_file)
    return key


def _untrust(key: tuple[str, int] | None) -> None:
    if key is not None:
        with _TRUST_LOCK:
            _TRUST.pop(key, None)


# ----- the inbox ----------------------------------------------------------------------------


def _quiet_exchangelib() -> None:
    library = logging.getLogger("exchangelib")
    if library.level == logging.NOTSET:
        library.setLevel(logging.WARNING)


class EwsInbox:
    """An on-premises Exchange folder watched through EWS (see the module docstring)."""

    def __init__(self, settings: EwsSettings) -> None:
        self.settings = settings
        self.name = settings.source_name

    async def run(self, deliver: Deliver, checkpoint: str | None, health: Health) -> None:
        """Watch until cancelled. Mailbox failures go to ``health``; an error from ``deliver``
        (the store) propagates to the supervisor, leaving the batch unmarked."""
        _quiet_exchangelib()
        settings = self.settings
        point = SyncPoint.load(checkpoint, settings)
        unmarked: list[tuple[str, str | None]] = [(i, None) for i in point.unmarked]
        mailbox = _Mailbox(settings)
        trusted = _trust(settings)
        failures = 0
        try:
            while True:
                try:
                    point = await self._round(mailbox, deliver, point, unmarked)
                except _Unreachable as problem:
                    failures += 1
                    await health.failing(problem.reason)
                    await asyncio.sleep(
                        backoff_seconds(
                            failures,
                            first=settings.backoff_first,
                            cap=settings.backoff_cap,
                            retry_after=problem.retry_after,
                        )
                    )
                    continue
                failures = 0
                await health.ok()
                await asyncio.sleep(settings.poll_seconds)
        finally:
            mailbox.close()
            _untrust(trusted)

    async def probe(self) -> ProbeReport:
        """For ``sgalert doctor``: log in and find the watched folder (and the move target),
        reading no item and marking nothing."""
        _quiet_exchangelib()
        mailbox = _Mailbox(self.settings)
        trusted = _trust(self.settings)
        failure: ProbeFailed | None = None
        try:
            await asyncio.to_thread(self._find_folders, mailbox)
        except _Unreachable as problem:
            failure = ProbeFailed(problem.reason)
        finally:
            await asyncio.to_thread(mailbox.close)
            _untrust(trusted)
        if failure is not None:
            raise failure
        folder = "/".join(self.settings.folder)
        return ProbeReport(f"logged in to {self.settings.host}, folder {folder!r} found")

    @staticmethod
    def _find_folders(mailbox: _Mailbox) -> None:
        with _translated(mailbox.settings):
            mailbox._connect()

    async def _round(
        self,
        mailbox: _Mailbox,
        deliver: Deliver,
        point: SyncPoint,
        unmarked: list[tuple[str, str | None]],
    ) -> SyncPoint:
        """One sync: store what is new, then mark it. Returns the new sync point."""
        settings = self.settings
        if unmarked:
            await self._mark(mailbox, unmarked)
        started = datetime.now(UTC)
        refused = False
        try:
            seen, state = await asyncio.to_thread(mailbox.changes, point.sync_state)
        except _SyncStateRefused:
            log.warning("source %s: Exchange refused the saved sync state; resyncing", self.name)
            refused = True
            seen, state = await asyncio.to_thread(mailbox.changes, None)
        wanted = self._choose(seen, point, refused)
        after = replace(point, sync_state=state, synced_at=started, unmarked=())
        batches = _batches(wanted, settings.batch_messages, settings.batch_bytes)
        if not batches:
            if state != point.sync_state:
                await deliver([], checkpoint=after.dump(i for i, _ in unmarked))
            return after
        for index, batch in enumerate(batches):
            fetched = await asyncio.to_thread(mailbox.fetch, batch)
            messages = [
                Inbound(raw=f.mime, key=f"ews:{settings.mailbox}:{f.id}", received_at=f.received)
                for f in fetched
            ]
            refs = [(f.id, f.changekey) for f in fetched]
            last = index == len(batches) - 1
            checkpoint = (
                after.dump([i for i, _ in unmarked] + [i for i, _ in refs]) if last else None
            )
            outcomes = []
            if messages or checkpoint is not None:
                outcomes = await deliver(messages, checkpoint=checkpoint)
            held = {outcome.key for outcome in outcomes if outcome.held}
            if held:  # not cases: left unread, and out of the ids to mark, even after a restart
                refs = [(i, c) for i, c in refs if f"ews:{settings.mailbox}:{i}" not in held]
                if checkpoint is not None:
                    ids = [i for i, _ in unmarked] + [i for i, _ in refs]
                    await deliver([], checkpoint=after.dump(ids))
            # Stored: from here on, these may be marked.
            unmarked.extend(refs)
            await self._mark(mailbox, unmarked)
        if wanted:
            log.info("source %s: %d new message(s) stored", self.name, len(wanted))
        return after

    def _choose(self, seen: list[_Seen], point: SyncPoint, refused: bool) -> list[_Seen]:
        """Which new items to take: all, except on a from-scratch sync in mark-read mode."""
        if point.sync_state is not None and not refused:
            return seen
        if self.settings.after_commit is AfterCommit.MOVE:
            return seen
        if refused and point.synced_at is not None:
            since = point.synced_at - _RESYNC_MARGIN
            return [s for s in seen if not s.is_read or s.received is None or s.received >= since]
        if refused:
            return seen
        return [s for s in seen if not s.is_read]

    async def _mark(self, mailbox: _Mailbox, unmarked: list[tuple[str, str | None]]) -> None:
        refs = list(unmarked)
        await asyncio.to_thread(mailbox.mark_done, refs)
        del unmarked[: len(refs)]


def _batches(items: Sequence[_Seen], most: int, most_bytes: int) -> list[list[_Seen]]:
    """Consecutive batches of at most ``most`` items and (where sizes are known) ``most_bytes``."""
    batches: list[list[_Seen]] = []
    current: list[_Seen] = []
    size = 0
    for item in items:
        if current and (len(current) >= most or size + item.size > most_bytes):
            batches.append(current)
            current, size = [], 0
        current.append(item)
        size += item.size
    if current:
        batches.append(current)
    return batches
