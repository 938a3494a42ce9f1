"""The Microsoft Graph inbox: Exchange Online mailboxes, read with an app-only token.

Exchange Online is reached through Graph because EWS is switched off there (from October 2026,
gone in April 2027). One source watches one folder of one mailbox:

- A token comes from msal's client-credentials flow (a client secret or a certificate) through
  :mod:`integrations.entra`; msal caches it, so asking before every request costs nothing until
  it nears expiry. A sign-in that fails (a refused secret, an authority answering 5xx or
  nonsense, or out of reach) fails the round like any other outage: reported, then retried
  with backoff.
- New messages are found with a delta query on the folder (``changeType=created``, so marking a
  message read does not bring it back). Each round follows ``@odata.nextLink`` pages to the
  ``@odata.deltaLink``, fetches each new message's MIME (``/$value``) and hands the bytes to
  ``deliver`` in batches; the checkpoint, which holds the deltaLink, goes with the last batch,
  so the store records "seen up to here" in the same transaction as the last cases.
- Only after ``deliver`` returns is a message marked read (or moved). Ids stored but not yet
  marked are kept in the checkpoint too, so a failed or interrupted mark is retried, even after
  a restart. Graph's message id is the idempotency key, and the core recognises identical bytes,
  so delivering a message twice never makes a second case. A message the core holds (it could
  be neither read nor quarantined) is left unread and kept out of the ids to mark; the delta has
  passed it, so the core's alert, not a redelivery, brings it to a person.
- A delta link Graph no longer knows (410 Gone, ``syncStateNotFound``, ``resyncRequired``) starts
  a fresh delta of the whole folder. In a full pass (the first ever, or after a resync) with
  ``after_commit = "mark-read"``, a message that is already read and arrived before sgalert began
  watching is treated as done: otherwise connecting an old mailbox, or a resync, would turn years
  of handled mail into new cases. Every message that arrives while sgalert watches is delivered.
- Every retry backs off with jitter (:mod:`sgalert.routing.backoff`); throttling (429, 503,
  504) waits at least the ``Retry-After`` asked for, up to five minutes at a time; a 401 drops
  the cached token and asks again once. Blocking HTTP runs in worker threads and every wait is
  an ``asyncio.sleep``, so cancelling a watcher takes effect at once.

Every request asks for immutable ids (``Prefer: IdType="ImmutableId"``), so a moved message
keeps its id.

Options (``[[sources]]`` with ``kind = "graph"``): ``tenant_id``, ``client_id``, ``mailbox``,
``folder`` (default ``"Inbox"``; a well-known name or a folder id), one credential: a client secret
(``client_secret_env`` or ``client_secret_file``) or ``certificate_file`` (a 0600 PEM holding the
private key and the certificate; ``certificate_thumbprint`` and
``certificate_passphrase_env``/``_file`` when needed), ``after_commit`` (``"mark-read"`` or
``"move"`` with ``move_to``), ``poll_seconds`` (default 15), and for sovereign clouds, proxies
and tests ``graph_url``, ``authority_url`` and ``ca_file`` (a PEM bundle to trust instead of the
system's, e.g. for a TLS-inspecting proxy). The app needs the Mail.ReadWrite application
permission, best confined to this mailbox by an Exchange application access policy.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from integrations.entra import (
    APP_OPTIONS,
    AUTHORITY_URL,
    AppRegistration,
    AppToken,
    SignInError,
    local_path,
    read_app,
)
from sgalert.clock import iso, parse_iso, utcnow
from sgalert.config import SourceConfig, refuse_unknown_options
from sgalert.errors import ConfigError, SgalertError
from sgalert.ports import Deliver, Health, Inbound, Inbox, ProbeFailed, ProbeReport
from sgalert.routing.backoff import backoff_seconds, retry_after_seconds

log = logging.getLogger("sgalert.graph")

GRAPH_URL = "https://graph.microsoft.com/v1.0"

BATCH = 50  # messages per deliver call, and the page size asked of the delta query
_TIMEOUT = (10.0, 120.0)  # connect, read (a message's MIME may be tens of megabytes)
_SIGN_IN_TIMEOUT = (10.0, 30.0)
_MAX_TRIES = 6  # per request, for throttling, 5xx and network errors together
_MAX_WAIT = 300.0  # seconds: the most one Retry-After or backoff is honoured in one go
_BACKOFF_BASE = 0.5
_MAX_UNMARKED = 1000  # ids kept for another try at marking; past this the oldest are dropped
_REFRESH_CHECKPOINT = 600.0  # seconds: how stale the stored deltaLink may get on a quiet mailbox
_FULL_PASS_MARGIN = timedelta(minutes=10)  # clock skew allowed between this host and Exchange
_RESYNC_CODES = frozenset({"syncstatenotfound", "resyncrequired", "syncstateinvalid"})

_OPTIONS = (
    *APP_OPTIONS,
    "mailbox",
    "folder",
    "after_commit",
    "move_to",
    "poll_seconds",
    "graph_url",
    "ca_file",
)


class GraphUnavailable(SgalertError):
    """Graph or the sign-in authority could not be used this round.

    Raised inside a round only: :meth:`GraphInbox.run` reports ``reason`` through ``health``
    and tries again later. The reason is short and holds no secret, token or message content.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _SyncLost(Exception):
    """Graph no longer knows the delta link: the folder must be read again from the start."""


class AfterCommit(enum.Enum):
    """What marks a message done once its case is stored."""

    MARK_READ = "mark-read"
    MOVE = "move"


@dataclass(frozen=True, slots=True)
class GraphSettings:
    """A validated ``kind = "graph"`` source. ``credential`` is never shown in a repr."""

    name: str
    tenant_id: str
    client_id: str
    mailbox: str
    folder: str
    credential: str | dict[str, str] = field(repr=False)
    after_commit: AfterCommit = AfterCommit.MARK_READ
    move_to: str | None = None
    poll_seconds: float = 15.0
    graph_url: str = GRAPH_URL
    authority_url: str = AUTHORITY_URL
    ca_file: Path | None = None

    @property
    def scope(self) -> str:
        """The app-only scope of the Graph instance in use (sovereign clouds have their own)."""
        parts = urlsplit(self.graph_url)
        return f"{parts.scheme}://{parts.netloc}/.default"

    @property
    def app(self) -> AppRegistration:
        return AppRegistration(self.tenant_id, self.client_id, self.credential, self.authority_url)


def create(source: SourceConfig, root: Path) -> Inbox:
    """The entry point for ``kind = "graph"``: check the options now, connect only in ``run``."""
    return GraphInbox(parse_settings(source, root))


def parse_settings(source: SourceConfig, root: Path) -> GraphSettings:
    """Validate a source's options, raising ConfigError that names the key and the fix."""
    where = f"sources[{source.name}]"
    options = source.options

    def fail(key: str, problem: str, fix: str) -> ConfigError:
        return ConfigError(f"{where}.{key}: {problem}; {fix}")

    refuse_unknown_options(options, _OPTIONS, where, "graph")

    def text(key: str, example: str, default: str | None = None) -> str:
        value = options.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise fail(key, "must be a non-empty string", f'e.g. {key} = "{example}"')
        return value.strip()

    def https_url(key: str, default: str) -> str:
        value = text(key, default, default).rstrip("/")
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname:
            raise fail(key, f"{value!r} is not an https URL", f'e.g. {key} = "{default}"')
        return value

    app = read_app(options, where, root)
    mailbox = text("mailbox", "encompass@school.example.org").lower()  # keys must not vary
    folder = text("folder", "Inbox", "Inbox")

    after_name = text("after_commit", "mark-read", AfterCommit.MARK_READ.value)
    try:
        after_commit = AfterCommit(after_name)
    except ValueError:
        raise fail(
            "after_commit", f"unknown value {after_name!r}", 'use "mark-read" or "move"'
        ) from None
    move_to: str | None = None
    if after_commit is AfterCommit.MOVE:
        move_to = text("move_to", "archive")
    elif "move_to" in options:
        raise fail("move_to", 'only used with after_commit = "move"', "remove it or set that")

    poll = options.get("poll_seconds", 15)
    if isinstance(poll, bool) or not isinstance(poll, int | float) or not 0.05 <= poll <= 3600:
        raise fail("poll_seconds", "must be from 0.05 to 3600 seconds", "e.g. poll_seconds = 15")

    ca_file: Path | None = None
    if "ca_file" in options:
        ca_file = local_path(text("ca_file", "proxy-ca.pem"), root)
        if not ca_file.is_file():
            raise fail("ca_file", f"{ca_file} is not a readable file", "give a PEM bundle")

    return GraphSettings(
        name=source.name,
        tenant_id=app.tenant_id,
        client_id=app.client_id,
        mailbox=mailbox,
        folder=folder,
        credential=app.credential,
        after_commit=after_commit,
        move_to=move_to,
        poll_seconds=float(poll),
        graph_url=https_url("graph_url", GRAPH_URL),
        authority_url=app.authority_url,
        ca_file=ca_file,
    )


@dataclass(slots=True)
class _Message:
    id: str
    is_read: bool
    received: datetime | None


@dataclass(slots=True)
class _SyncState:
    """What the checkpoint holds: where the delta stands, since when we watch, what to mark."""

    delta_link: str | None
    since: datetime
    unmarked: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, checkpoint: str | None, source_name: str) -> _SyncState:
        if checkpoint:
            try:
                data = json.loads(checkpoint)
                link = data.get("deltaLink")
                return cls(
                    delta_link=link if isinstance(link, str) and link else None,
                    since=parse_iso(str(data["since"])),
                    unmarked=[str(i) for i in data.get("unmarked", [])],
                )
            except (ValueError, TypeError, KeyError, AttributeError):
                log.warning(
                    "source %s: checkpoint unreadable; reading the folder again", source_name
                )
        return cls(delta_link=None, since=utcnow())

    def dump(self) -> str:
        return json.dumps(
            {"deltaLink": self.delta_link, "since": iso(self.since), "unmarked": self.unmarked}
        )


def _merged(first: Sequence[str], more: Sequence[str]) -> list[str]:
    """Ids still to mark, oldest first, without repeats, and bounded so the checkpoint is."""
    ids = list(dict.fromkeys([*first, *more]))
    if len(ids) > _MAX_UNMARKED:
        log.warning(
            "%d stored messages could not be marked done; giving up on the oldest", len(ids)
        )
    return ids[-_MAX_UNMARKED:]


def graph_error_code(response: requests.Response) -> str:
    """Graph's error code (``{"error": {"code": ...}}``); never its message, which may hold data."""
    try:
        body = response.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return str(code)[:80] if code else ""


def _failure(what: str, response: requests.Response) -> GraphUnavailable:
    code = graph_error_code(response)
    return GraphUnavailable(f"{what}: HTTP {response.status_code}{' ' + code if code else ''}")


class _GraphClient:
    """Blocking Graph calls run in worker threads; retries and waits happen on the event loop."""

    def __init__(self, settings: GraphSettings) -> None:
        self.settings = settings
        self._session = requests.Session()
        self._verify: str | bool = str(settings.ca_file) if settings.ca_file else True
        self._tokens = AppToken(
            settings.app, settings.scope, ca_file=settings.ca_file, timeout=_SIGN_IN_TIMEOUT
        )
        graph = urlsplit(settings.graph_url)
        self._origin = f"{graph.scheme}://{graph.netloc}"
        self._user = f"{settings.graph_url}/users/{quote(settings.mailbox, safe='@')}"

    def close(self) -> None:
        self._session.close()
        self._tokens.close()

    # ----- in worker threads ------------------------------------------------------------

    def _token(self) -> str:
        try:
            return self._tokens.get()
        except SignInError as exc:
            raise GraphUnavailable(exc.reason) from None

    def _forget_token(self) -> None:
        self._tokens.forget()

    def _send(self, method: str, url: str, body: Mapping[str, Any] | None) -> requests.Response:
        headers = {
            "Authorization": f"Bearer {self._token()}",
            "Prefer": f'IdType="ImmutableId", odata.maxpagesize={BATCH}',
        }
        return self._session.request(
            method,
            url,
            headers=headers,
            json=body,
            timeout=_TIMEOUT,
            verify=self._verify,
            allow_redirects=False,
        )

    # ----- on the event loop --------------------------------------------------------------

    async def call(
        self, method: str, url: str, body: Mapping[str, Any] | None = None
    ) -> requests.Response:
        """One Graph request, retried through throttling, 5xx, network errors and one 401."""
        if not url.startswith(self._origin + "/"):
            # A link from a reply that points elsewhere would carry our token there.
            raise GraphUnavailable("Graph returned a link to another host; refusing to follow")
        attempt = 0
        renewed = False
        while True:
            try:
                response = await asyncio.to_thread(self._send, method, url, body)
            except requests.RequestException as exc:
                attempt += 1
                if attempt >= _MAX_TRIES:
                    raise GraphUnavailable(
                        f"Microsoft Graph unreachable ({type(exc).__name__})"
                    ) from None
                await asyncio.sleep(backoff_seconds(attempt, first=_BACKOFF_BASE, cap=_MAX_WAIT))
                continue
            status = response.status_code
            if status == 401 and not renewed:
                renewed = True
                await asyncio.to_thread(self._forget_token)
                continue
            if status == 429 or status >= 500:
                attempt += 1
                if attempt >= _MAX_TRIES:
                    raise _failure(f"Graph still failing after {attempt} tries", response)
                told = response.headers.get("Retry-After") if status in (429, 503, 504) else None
                wait = backoff_seconds(
                    attempt,
                    first=_BACKOFF_BASE,
                    cap=_MAX_WAIT,
                    retry_after=retry_after_seconds(told),
                )
                log.info("source %s: Graph answered %d; waiting %.1fs", self.name, status, wait)
                await asyncio.sleep(min(wait, _MAX_WAIT))
                continue
            return response

    @property
    def name(self) -> str:
        return self.settings.name

    def _initial_delta_url(self) -> str:
        folder = quote(self.settings.folder, safe="")
        return (
            f"{self._user}/mailFolders/{folder}/messages/delta"
            "?changeType=created&$select=id,isRead,receivedDateTime"
        )

    async def changes(self, delta_link: str | None) -> tuple[list[_Message], str]:
        """New messages since ``delta_link`` (or all in the folder), and the next delta link."""
        url = delta_link or self._initial_delta_url()
        found: dict[str, _Message] = {}
        while True:
            response = await self.call("GET", url)
            if response.status_code == 410 or (
                response.status_code in (400, 404)
                and graph_error_code(response).lower() in _RESYNC_CODES
            ):
                raise _SyncLost
            if response.status_code != 200:
                raise _failure("Graph delta query failed", response)
            try:
                page = response.json()
                entries = page.get("value", [])
            except (ValueError, AttributeError):
                raise GraphUnavailable("Graph delta query returned something not JSON") from None
            for entry in entries:
                if not isinstance(entry, dict) or "@removed" in entry or not entry.get("id"):
                    continue
                received = entry.get("receivedDateTime")
                try:
                    when = parse_iso(received) if isinstance(received, str) else None
                except ValueError:
                    when = None
                message_id = str(entry["id"])
                found[message_id] = _Message(message_id, bool(entry.get("isRead")), when)
            if isinstance(page.get("@odata.nextLink"), str):
                url = page["@odata.nextLink"]
                continue
            if isinstance(page.get("@odata.deltaLink"), str):
                return list(found.values()), page["@odata.deltaLink"]
            raise GraphUnavailable("Graph delta page had neither nextLink nor deltaLink")

    def _message_url(self, message_id: str) -> str:
        return f"{self._user}/messages/{quote(message_id, safe='=')}"

    async def mime(self, message_id: str) -> bytes | None:
        """The message as RFC 822 bytes, or None if it was deleted since it was listed."""
        response = await self.call("GET", self._message_url(message_id) + "/$value")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _failure("Graph message download failed", response)
        return response.content

    async def mark_done(self, message_id: str) -> None:
        """Mark read or move; a message already gone counts as done."""
        settings = self.settings
        if settings.after_commit is AfterCommit.MOVE:
            url, method = self._message_url(message_id) + "/move", "POST"
            body: dict[str, Any] = {"destinationId": settings.move_to}
        else:
            url, method, body = self._message_url(message_id), "PATCH", {"isRead": True}
        response = await self.call(method, url, body)
        if response.status_code == 404 or 200 <= response.status_code < 300:
            return
        raise _failure(f"Graph {'move' if method == 'POST' else 'mark read'} failed", response)


class GraphInbox:
    """One Exchange Online folder, watched through Graph delta queries."""

    def __init__(self, settings: GraphSettings) -> None:
        self.settings = settings
        self.name = settings.name

    async def probe(self) -> ProbeReport:
        """For ``sgalert doctor``: sign in, then ask for the first page of the folder's delta
        query, as the watcher does (message ids only, nothing read or marked). 403 and 404 are
        the usual misconfigurations: the app's access is not scoped to this mailbox, or the
        mailbox or folder name is wrong."""
        client = _GraphClient(self.settings)
        failure: ProbeFailed | None = None
        status = 0
        try:
            response = await client.call("GET", client._initial_delta_url())
            status = response.status_code
            response.close()
        except GraphUnavailable as exc:
            failure = ProbeFailed(f"{exc.reason}; check the app registration and the network")
        finally:
            client.close()
        if failure is not None:
            raise failure
        folder = self.settings.folder
        if status == 200:
            return ProbeReport(f"signed in; folder {folder!r} of {self.settings.mailbox} readable")
        if status in (401, 403):
            raise ProbeFailed(
                f"signed in, but Graph refused to read the mailbox (HTTP {status}); give the"
                " app Mail.ReadWrite and scope its access to this mailbox"
            )
        if status == 404:
            raise ProbeFailed(
                f"Graph found no mailbox {self.settings.mailbox} or folder {folder!r}"
                " (HTTP 404); check mailbox and folder"
            )
        raise ProbeFailed(f"Graph answered HTTP {status} reading the folder; try again later")

    async def run(self, deliver: Deliver, checkpoint: str | None, health: Health) -> None:
        """Poll until cancelled; failures are reported through ``health`` and retried."""
        state = _SyncState.load(checkpoint, self.name)
        saved = _Saved(state if checkpoint else None)
        client = _GraphClient(self.settings)
        failures = 0
        try:
            while True:
                try:
                    await self._round(client, state, deliver, saved)
                except GraphUnavailable as exc:
                    failures += 1
                    log.warning("source %s: round failed: %s", self.name, exc.reason)
                    await health.failing(exc.reason)
                    delay = backoff_seconds(
                        failures, first=self.settings.poll_seconds, cap=_MAX_WAIT
                    )
                else:
                    failures = 0
                    await health.ok()
                    delay = self.settings.poll_seconds
                await asyncio.sleep(delay)
        finally:
            client.close()

    async def _round(
        self, client: _GraphClient, state: _SyncState, deliver: Deliver, saved: _Saved
    ) -> None:
        if state.unmarked:
            await self._mark(client, state, list(state.unmarked))
        full = state.delta_link is None
        try:
            messages, delta_link = await client.changes(state.delta_link)
        except _SyncLost:
            log.warning("source %s: Graph asked for a full resync of the folder", self.name)
            full = True
            try:
                messages, delta_link = await client.changes(None)
            except _SyncLost:
                raise GraphUnavailable("Graph refused a fresh delta query") from None
        if full:
            messages = [m for m in messages if self._not_done(m, state.since)]
        if messages:
            log.info("source %s: %d new message(s)", self.name, len(messages))
        batches = [messages[i : i + BATCH] for i in range(0, len(messages), BATCH)]
        for index, batch in enumerate(batches):
            inbound: list[Inbound] = []
            fetched: list[str] = []
            for message in batch:
                raw = await client.mime(message.id)
                if raw is None:
                    log.info("source %s: a listed message was deleted before download", self.name)
                    continue
                key = f"graph:{self.settings.mailbox}:{message.id}"
                inbound.append(Inbound(raw=raw, key=key, received_at=message.received))
                fetched.append(message.id)
            after: _SyncState | None = None
            if index == len(batches) - 1:
                after = _SyncState(delta_link, state.since, _merged(state.unmarked, fetched))
            outcomes = []
            if inbound or after is not None:
                outcomes = await deliver(inbound, checkpoint=after.dump() if after else None)
            held = {outcome.key for outcome in outcomes if outcome.held}
            if held:  # not cases: left unread, and out of the ids to mark, even after a restart
                prefix = f"graph:{self.settings.mailbox}:"
                fetched = [i for i in fetched if prefix + i not in held]
                if after is not None:
                    after = _SyncState(delta_link, state.since, _merged(state.unmarked, fetched))
                    await deliver([], checkpoint=after.dump())
            # Stored: from here on these ids only need marking, never delivering again.
            if after is not None:
                state.delta_link = delta_link
                saved.record(after)
            state.unmarked = _merged(state.unmarked, fetched)
            await self._mark(client, state, fetched)
        if not batches:
            state.delta_link = delta_link
        if saved.due(state):
            await deliver([], checkpoint=state.dump())
            saved.record(state)

    def _not_done(self, message: _Message, since: datetime) -> bool:
        """In a full pass, whether a message still needs a case (see the module docstring)."""
        if self.settings.after_commit is AfterCommit.MOVE or not message.is_read:
            return True
        return message.received is None or message.received >= since - _FULL_PASS_MARGIN

    async def _mark(self, client: _GraphClient, state: _SyncState, ids: Sequence[str]) -> None:
        """Mark stored messages done; on the first failure leave the rest for the next round."""
        for message_id in ids:
            try:
                await client.mark_done(message_id)
            except GraphUnavailable as exc:
                log.warning(
                    "source %s: %d stored message(s) not yet marked done: %s",
                    self.name,
                    len(state.unmarked),
                    exc.reason,
                )
                return
            if message_id in state.unmarked:
                state.unmarked.remove(message_id)


class _Saved:
    """What the store holds of the checkpoint, so it is written again only when that matters:
    ids left to mark changed, or the stored deltaLink is going stale on a quiet mailbox."""

    def __init__(self, state: _SyncState | None) -> None:
        self.delta_link = state.delta_link if state else None
        self.unmarked = list(state.unmarked) if state else []
        self.at = time.monotonic()

    def record(self, state: _SyncState) -> None:
        self.delta_link, self.unmarked = state.delta_link, list(state.unmarked)
        self.at = time.monotonic()

    def due(self, state: _SyncState) -> bool:
        if self.delta_link is None or self.unmarked != state.unmarked:
            return True
        if self.delta_link == state.delta_link:
            return False
        return time.monotonic() - self.at >= _REFRESH_CHECKPOINT
