"""Pages to a Microsoft Teams channel through a Workflows (Power Automate) webhook.

Office 365 connectors (incoming webhooks) are retired; a Teams Workflow "when a Teams webhook
request is received" posts what it is sent to a channel. It is sent an Adaptive Card (schema
1.4, which every Teams client renders) built from the same :class:`Notification` as the email,
so it carries no personal data: urgency, case reference, school, source, times, step, reason,
deadline, how to acknowledge, and, when the page has an ack token and a reply address, a
``mailto:`` button that opens a reply already addressed and titled with the token.

The webhook URL is a secret (its ``sig`` parameter is the only credential), so it comes from
``url_env`` or ``url_file`` and never appears in a log line, an error or an exception's
context. The channel is shared (``per_person = False``): one card per page, not one per person.

Workflows answers ``202 Accepted`` once it has queued the flow run, so such a receipt is
``queued_only``: Teams may still fail to post it. 429 and 5xx are retried (honouring
``Retry-After``); other 4xx and redirects are not, as no retry will cure them. Cards over
Teams' 28 KB message limit are refused before sending. The POST runs in a worker thread with
the standard library's ``urllib`` and follows no redirect.
"""

from __future__ import annotations

import asyncio
import http.client
import ipaddress
import json
import logging
import re
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from integrations.channel_options import ChannelOptions, is_addr_spec
from sgalert.errors import ConfigError
from sgalert.ports import (
    DeliveryError,
    Notification,
    ProbeFailed,
    ProbeReport,
    Receipt,
    Recipient,
)
from sgalert.routing.backoff import retry_after_seconds

if TYPE_CHECKING:
    from sgalert.ports import NotifierFactory
from sgalert.clock import in_words
from sgalert.secrets import read_secret

log = logging.getLogger("sgalert.notify.teams")

MAX_PAYLOAD_BYTES = 28 * 1024  # Teams refuses a message (card included) over 28 KB
CARD_VERSION = "1.4"
DEFAULT_TIMEOUT = 15.0

_OPTIONS = ("url_env", "url_file", "timeout", "ca_file")
_MAX_READ = 16 * 1024  # of a reply body, read only so the connection ends cleanly
_RUN_ID = re.compile(r"[A-Za-z0-9._-]{1,80}")
_COLOURS = {"urgent": "Attention", "overdue": "Attention", "alert": "Attention"}


@dataclass(frozen=True, slots=True)
class TeamsSettings:
    """A validated ``kind = "teams-workflow"`` channel. The URL is never shown in a repr."""

    name: str
    url: str = field(repr=False)
    timeout: float = DEFAULT_TIMEOUT
    ca_file: Path | None = None


def create(name: str, options: Mapping[str, Any], root: Path) -> TeamsNotifier:
    """The entry point for ``kind = "teams-workflow"``."""
    return TeamsNotifier(parse_settings(name, options, root))


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_settings(name: str, options: Mapping[str, Any], root: Path) -> TeamsSettings:
    """Validate a channel's options. Messages name where the URL comes from, never the URL."""
    read = ChannelOptions(name, "teams-workflow", options, _OPTIONS, root)
    where = read.where

    url = read_secret(options, "url", where, root).strip()
    source = f"{where}.{'url_env' if 'url_env' in options else 'url_file'}"
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        raise ConfigError(f"{source}: the webhook URL is not a URL; copy it again") from None
    secure = parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(host))
    if not secure or not host or any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise ConfigError(
            f"{source}: the webhook URL must be an https URL on one line; copy it from the "
            "workflow's 'When a Teams webhook request is received' trigger"
        )

    timeout = read.timeout(DEFAULT_TIMEOUT)
    ca_file = read.ca_file("certs/ca.pem")
    return TeamsSettings(name=name, url=url, timeout=timeout, ca_file=ca_file)


def mailto(notification: Notification) -> str | None:
    """A ``mailto:`` reply carrying the ack token, or None when the page has no way to reply."""
    address = notification.reply_address
    if not notification.ack_token or not address or not is_addr_spec(address):
        return None
    subject = quote(f"Re: {notification.subject()}", safe="")
    return f"mailto:{quote(address, safe='@')}?subject={subject}"


def build_card(notification: Notification) -> dict[str, Any]:
    """The Adaptive Card for one page: only sgalert's own words, as in the email."""
    zone = notification.zone
    received = notification.received_at.astimezone(zone)
    facts = [
        {"title": "School", "value": notification.school},
        {"title": "Source", "value": notification.title()},
        {"title": "Received", "value": in_words(received, zone, year=True, zone_name=True)},
        # Counted from 1, as the email's reason, the desk and the digest count escalation
        # steps; the engine numbers them from 0.
        {"title": "Step", "value": str(notification.step + 1)},
        {"title": "Reason", "value": notification.reason},
    ]
    if notification.due_at is not None:
        due = in_words(notification.due_at, zone, year=True, zone_name=True)
        facts.append({"title": "Deadline", "value": due})
    how = f"Acknowledge in the terminal: sgalert ack {notification.case_ref} --as YOUR-EMAIL"
    if notification.ack_token:
        how += f", or reply by email keeping {notification.ack_token} in the subject"
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "msteams": {"width": "Full"},
        "body": [
            {
                "type": "TextBlock",
                "text": f"{notification.urgency.upper()}: {notification.case_ref}",
                "size": "Large",
                "weight": "Bolder",
                "color": _COLOURS.get(notification.urgency, "Warning"),
                "wrap": True,
            },
            {"type": "FactSet", "facts": facts},
            {"type": "TextBlock", "text": how, "wrap": True},
            {
                "type": "TextBlock",
                "text": "The details are in sgalert, readable only by the people entitled to "
                "them. This card deliberately contains no personal information.",
                "wrap": True,
                "isSubtle": True,
                "size": "Small",
            },
        ],
    }
    link = mailto(notification)
    if link is not None:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Acknowledge by email", "url": link}]
    return card


def build_payload(notification: Notification) -> bytes:
    """The webhook's JSON body; DeliveryError (not retryable) if it would exceed 28 KB."""
    message = {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": build_card(notification),
            }
        ],
    }
    payload = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise DeliveryError(
            f"the card is {len(payload)} bytes, over Teams' limit of {MAX_PAYLOAD_BYTES}",
            retryable=False,
        )
    return payload


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    retry_after: float | None
    run_id: str | None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A webhook that redirects is misconfigured; following it would carry the card elsewhere."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


class TeamsNotifier:
    """Posts one Adaptive Card per page to a Teams channel's Workflows webhook."""

    per_person = False

    def __init__(self, settings: TeamsSettings) -> None:
        self.settings = settings
        self.name = settings.name
        context = ssl.create_default_context(
            cafile=str(settings.ca_file) if settings.ca_file else None
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._context = context
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=context), _NoRedirects()
        )

    def __repr__(self) -> str:
        return f"TeamsNotifier(name={self.name!r})"

    def _post(self, payload: bytes) -> _Answer:
        """In a worker thread. Raises only DeliveryErrors built outside any ``except``, so no
        exception that holds the URL (urllib keeps it on HTTPError) rides along as context."""
        request = urllib.request.Request(  # noqa: S310  (the scheme was checked at config time)
            self.settings.url,
            data=payload,
            method="POST",
            headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": "sgalert"},
        )
        failure: DeliveryError | None = None
        try:
            with self._opener.open(request, timeout=self.settings.timeout) as response:
                response.read(_MAX_READ)
                return self._answer(response.status, response.headers)
        except urllib.error.HTTPError as exc:
            try:
                exc.read(_MAX_READ)
            except (OSError, http.client.HTTPException):
                pass
            finally:
                exc.close()
            return self._answer(exc.code, exc.headers)
        except urllib.error.URLError as exc:
            failure = self._network_failure(exc.reason)
        except (OSError, http.client.HTTPException) as exc:
            failure = self._network_failure(exc)
        assert failure is not None
        raise failure

    @staticmethod
    def _answer(status: int, headers: Message) -> _Answer:
        run_id = headers.get("x-ms-workflow-run-id")
        return _Answer(
            status=status,
            retry_after=retry_after_seconds(headers.get("Retry-After")),
            run_id=run_id if run_id and _RUN_ID.fullmatch(run_id) else None,
        )

    @staticmethod
    def _network_failure(reason: object) -> DeliveryError:
        if isinstance(reason, ssl.SSLCertVerificationError):
            return DeliveryError(
                "the webhook's TLS certificate is not trusted (check ca_file)", retryable=False
            )
        if isinstance(reason, TimeoutError):
            return DeliveryError("the webhook did not answer in time", retryable=True)
        kind = type(reason).__name__ if isinstance(reason, BaseException) else "network error"
        return DeliveryError(f"the webhook could not be reached ({kind})", retryable=True)

    async def send(self, notification: Notification, recipient: Recipient) -> Receipt:
        """Post the card; ``recipient`` is ignored, as a channel has no per-person address."""
        key = notification.idempotency_key
        payload = build_payload(notification)
        try:
            answer = await asyncio.to_thread(self._post, payload)
        except DeliveryError as exc:
            log.warning("channel %s: card for page %s not posted: %s", self.name, key, exc)
            raise
        status = answer.status
        if 200 <= status < 300:
            log.info("channel %s: card for page %s accepted (HTTP %d)", self.name, key, status)
            detail = f"HTTP {status}" + (f" run {answer.run_id}" if answer.run_id else "")
            return Receipt(channel=self.name, detail=detail, queued_only=status == 202)
        retryable = status in (408, 429) or status >= 500
        if 300 <= status < 400:
            problem = f"the webhook redirected (HTTP {status}); check the workflow's URL"
        elif status in (401, 403, 404):
            problem = f"the webhook refused the card (HTTP {status}); is the workflow still on?"
        else:
            problem = f"the webhook answered HTTP {status}"
        log.warning("channel %s: card for page %s not posted: %s", self.name, key, problem)
        raise DeliveryError(
            problem,
            retryable=retryable,
            retry_after=answer.retry_after if retryable else None,
        )

    async def probe(self) -> ProbeReport:
        """For ``sgalert doctor``: a TLS handshake with the webhook's host, certificate
        checked. Nothing is posted: any request to the URL itself would run the workflow (a
        Workflows trigger has no harmless method), so only a real page proves the flow is on."""
        return await asyncio.to_thread(self._probe)

    def _probe(self) -> ProbeReport:
        parts = urlsplit(self.settings.url)
        host = parts.hostname or ""
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        failure: ProbeFailed | None = None
        try:
            with socket.create_connection((host, port), timeout=self.settings.timeout) as raw:
                if tls:
                    with self._context.wrap_socket(raw, server_hostname=host):
                        pass
        except ssl.SSLCertVerificationError:
            failure = ProbeFailed(
                f"the TLS certificate of {host} is not trusted; check the URL and ca_file"
            )
        except (OSError, ssl.SSLError) as exc:
            failure = ProbeFailed(
                f"cannot reach the webhook's host {host}:{port} ({type(exc).__name__}); check"
                " the network, a proxy, or copy the URL again"
            )
        if failure is not None:
            raise failure
        what = "TLS handshake with" if tls else "connected to"
        return ProbeReport(
            f"{what} {host}:{port} (nothing posted; a real page proves the workflow is on)"
        )

    async def close(self) -> None:
        self._opener.close()


if TYPE_CHECKING:
    _factory: NotifierFactory = create  # mypy checks the entry point's signature
