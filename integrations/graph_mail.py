"""Email pages through Microsoft Graph ``sendMail``: the Exchange Online path.

One page is one ``POST {graph_url}/users/{sender}/sendMail`` with an app-only token from msal's
client-credentials flow (a client secret or a certificate, as for the Graph inbox). The message
is built only from sgalert's own words (:meth:`Notification.subject` and
:meth:`Notification.body`) in Microsoft's documented shape::

    {"message": {"subject": ..., "body": {"contentType": "Text", "content": ...},
                 "toRecipients": [{"emailAddress": {"address": ...}}],
                 "replyTo": [{"emailAddress": {"address": ...}}],          (when there is one)
                 "internetMessageHeaders": [{"name": "X-Sgalert-Idempotency-Key", ...}, ...]},
     "saveToSentItems": false}

Graph allows only ``X-`` custom headers, so RFC 3834's ``Auto-Submitted`` cannot be set here as
the SMTP channel sets it; ``X-Auto-Response-Suppress: All`` still keeps Exchange's
out-of-office replies away from the reply mailbox. Every address is checked against the same
strict ASCII addr-spec as the SMTP channel before anything is sent, so a bad address never
costs a sign-in or a request.

**A success is only "queued".** Graph answers ``202 Accepted`` with no body once Exchange Online
has taken the message for its own transport: nothing has been delivered yet, and a later
non-delivery report goes to the sender's mailbox, not to sgalert. So :meth:`GraphMailNotifier.send`
returns ``Receipt(queued_only=True)``, with Graph's ``request-id`` in its detail for tracing.

Errors become :class:`DeliveryError` at this edge. Each ``send`` makes one attempt (the outbox
retries with backoff and falls back to the next channel):

- 429, 503 and 504 are retryable and carry the server's ``Retry-After`` as ``retry_after``;
  other 5xx, 408, timeouts and network errors are retryable.
- 401 drops msal's cached token and tries once more with a fresh one; a second 401 is a
  retryable error.
- 400, 403, 404, other 4xx and redirects are not retryable: no retry will cure a missing
  ``Mail.Send`` permission, a mailbox that does not exist or a message Graph will not take.
- A refused sign-in (a wrong secret or certificate, an unknown app) and a TLS certificate that
  is not trusted are not retryable; a sign-in authority that is out of reach, answers 5xx or
  answers something that is not JSON is (see :mod:`integrations.entra`).

``sendMail`` has no idempotency of its own: if the connection drops after Graph took the
request, the retry sends a second copy. Both carry the same ``X-Sgalert-Idempotency-Key``, so
mail rules or people can tell them apart from two different pages.

Options (``[channels.NAME]`` with ``kind = "graph-mail"``): ``tenant_id``, ``client_id``,
``sender`` (the mailbox to send as), one credential: a client secret (``client_secret_env`` or
``client_secret_file``) or ``certificate_file`` (a 0600 PEM with the private key and the
certificate; ``certificate_thumbprint`` and ``certificate_passphrase_env``/``_file`` when
needed), ``reply_to`` (used when the page names no reply address of its own),
``save_to_sent_items`` (default false: pages do not pile up in the sender's Sent Items),
``timeout`` (seconds, default 15) and, for sovereign clouds, proxies and tests, ``graph_url``,
``authority_url`` and ``ca_file``. The app registration needs the **Mail.Send** application
permission with admin consent, best confined to the sender mailbox by an Exchange application
access policy (or RBAC for Applications).

The client secret, the certificate and access tokens never appear in an error, a log line or a
repr; Graph's error *code* is passed on, never its message.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import requests

from integrations.channel_options import ChannelOptions

# Shared with the Graph inbox and the SMTP channel rather than copied; see each for details.
from integrations.entra import (
    APP_OPTIONS,
    AUTHORITY_URL,
    AppRegistration,
    AppToken,
    SignInError,
    read_app,
    untrusted_certificate,
)
from integrations.graph import GRAPH_URL, graph_error_code
from integrations.smtp import check_address, check_header_text
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

log = logging.getLogger("sgalert.notify.graph_mail")

DEFAULT_TIMEOUT = 15.0
IDEMPOTENCY_HEADER = "X-Sgalert-Idempotency-Key"
_REQUEST_ID = re.compile(r"[0-9A-Fa-f-]{36}")

_OPTIONS = (
    *APP_OPTIONS,
    "sender",
    "reply_to",
    "save_to_sent_items",
    "graph_url",
    "ca_file",
    "timeout",
)


@dataclass(frozen=True, slots=True)
class GraphMailSettings:
    """A validated ``kind = "graph-mail"`` channel. ``credential`` is never shown in a repr."""

    name: str
    tenant_id: str
    client_id: str
    sender: str
    credential: str | dict[str, str] = field(repr=False)
    reply_to: str | None = None
    save_to_sent_items: bool = False
    graph_url: str = GRAPH_URL
    authority_url: str = AUTHORITY_URL
    ca_file: Path | None = None
    timeout: float = DEFAULT_TIMEOUT

    @property
    def scope(self) -> str:
        """The app-only scope of the Graph instance in use (sovereign clouds have their own)."""
        parts = urlsplit(self.graph_url)
        return f"{parts.scheme}://{parts.netloc}/.default"

    @property
    def send_url(self) -> str:
        return f"{self.graph_url}/users/{quote(self.sender, safe='@')}/sendMail"

    @property
    def app(self) -> AppRegistration:
        return AppRegistration(self.tenant_id, self.client_id, self.credential, self.authority_url)


def create(name: str, options: Mapping[str, Any], root: Path) -> GraphMailNotifier:
    """The entry point for ``kind = "graph-mail"``: check the options now, sign in only to send."""
    return GraphMailNotifier(parse_settings(name, options, root))


def parse_settings(name: str, options: Mapping[str, Any], root: Path) -> GraphMailSettings:
    """Validate a channel's options, raising ConfigError that names the key and the fix."""
    read = ChannelOptions(name, "graph-mail", options, _OPTIONS, root)
    app = read_app(options, read.where, root)
    sender = read.address("sender", "safeguarding@school.example.org")
    reply_to = read.optional_address("reply_to", "sgalert-ack@school.example.org")
    save = read.flag("save_to_sent_items", False)
    timeout = read.timeout(DEFAULT_TIMEOUT)
    ca_file = read.ca_file("proxy-ca.pem")

    return GraphMailSettings(
        name=name,
        tenant_id=app.tenant_id,
        client_id=app.client_id,
        sender=sender,
        credential=app.credential,
        reply_to=reply_to,
        save_to_sent_items=save,
        graph_url=read.https_url("graph_url", GRAPH_URL),
        authority_url=app.authority_url,
        ca_file=ca_file,
        timeout=timeout,
    )


def _addresses(address: str) -> list[dict[str, dict[str, str]]]:
    return [{"emailAddress": {"address": address}}]


def build_payload(
    notification: Notification,
    recipient: str,
    reply_to: str | None = None,
    *,
    save_to_sent_items: bool = False,
) -> dict[str, Any]:
    """The ``sendMail`` request body: sgalert's own subject and body, checked addresses.

    Raises DeliveryError (not retryable) for an address or text it will not send.
    """
    to = check_address(recipient, "recipient")
    answer = check_address(reply_to, "reply-to") if reply_to else None
    subject = check_header_text(notification.subject(), "the subject")
    key = check_header_text(notification.idempotency_key, "the idempotency key")
    if not key.isascii() or not key.strip():
        raise DeliveryError("the idempotency key must be printable ASCII", retryable=False)
    # sendMail takes a single body, so a document (the digest) goes as its HTML (the text twin
    # is the same content; Exchange adds its own text part for text-only clients). Pages stay
    # plain text.
    html = notification.html()
    body = {"contentType": "HTML", "content": html} if html else None
    message: dict[str, Any] = {
        "subject": subject,
        "body": body or {"contentType": "Text", "content": notification.body()},
        "toRecipients": _addresses(to),
    }
    if answer:
        message["replyTo"] = _addresses(answer)
    message["internetMessageHeaders"] = [
        {"name": IDEMPOTENCY_HEADER, "value": key},
        {"name": "X-Auto-Response-Suppress", "value": "All"},
    ]
    return {"message": message, "saveToSentItems": save_to_sent_items}


def _undelivered(error: SignInError) -> DeliveryError:
    """A failed sign-in as the outbox needs it: the same safe reason, retry or fall back."""
    return DeliveryError(error.reason, retryable=error.retryable, retry_after=error.retry_after)


@dataclass(frozen=True, slots=True)
class _Answer:
    """What Graph said, without its body (which may quote the message)."""

    status: int
    code: str = ""
    retry_after: float | None = None
    request_id: str | None = None


class GraphMailNotifier:
    """Sends each page with one Graph ``sendMail`` call, as the configured sender mailbox."""

    per_person = True

    def __init__(self, settings: GraphMailSettings) -> None:
        self.settings = settings
        self.name = settings.name
        self._verify: str | bool = str(settings.ca_file) if settings.ca_file else True
        self._session = requests.Session()
        self._token = AppToken(
            settings.app, settings.scope, ca_file=settings.ca_file, timeout=settings.timeout
        )

    def __repr__(self) -> str:
        return f"GraphMailNotifier(name={self.name!r}, sender={self.settings.sender!r})"

    def _post(self, payload: Mapping[str, Any]) -> _Answer:
        """In a worker thread: sign in (msal caches) and POST once. Raises only DeliveryErrors
        made outside any ``except``, so no exception holding the bearer token rides along."""
        settings = self.settings
        failure: DeliveryError | None = None
        try:
            token = self._token.get()
        except SignInError as error:
            failure = _undelivered(error)
        if failure is not None:
            raise failure
        try:
            # verify on the call, not the session: REQUESTS_CA_BUNDLE overrides a session's.
            response = self._session.post(
                settings.send_url,
                json=payload,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                timeout=(settings.timeout, settings.timeout),
                verify=self._verify,
                allow_redirects=False,
            )
        except requests.Timeout:
            failure = DeliveryError("Microsoft Graph did not answer in time", retryable=True)
        except requests.RequestException as exc:
            if untrusted_certificate(exc):
                failure = DeliveryError(
                    "Microsoft Graph's TLS certificate is not trusted (check graph_url and"
                    " ca_file)",
                    retryable=False,
                )
            else:
                failure = DeliveryError(
                    f"Microsoft Graph unreachable ({type(exc).__name__})", retryable=True
                )
        if failure is not None:
            raise failure
        with response:
            status = response.status_code
            request_id = response.headers.get("request-id", "")
            return _Answer(
                status=status,
                code="" if status < 300 else graph_error_code(response),
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
                request_id=request_id if _REQUEST_ID.fullmatch(request_id) else None,
            )

    async def send(self, notification: Notification, recipient: Recipient) -> Receipt:
        """Hand the page to Exchange Online. The receipt is ``queued_only``: Graph's 202 means
        Exchange took the message, not that it reached the recipient's mailbox."""
        settings = self.settings
        key = notification.idempotency_key
        unexpected: DeliveryError | None = None
        try:
            payload = build_payload(
                notification,
                recipient.address,
                notification.reply_address or settings.reply_to,
                save_to_sent_items=settings.save_to_sent_items,
            )
            answer = await asyncio.to_thread(self._post, payload)
            if answer.status == 401:
                log.info("channel %s: Graph refused the token; signing in afresh", self.name)
                await asyncio.to_thread(self._token.forget)
                answer = await asyncio.to_thread(self._post, payload)
            if not 200 <= answer.status < 300:
                raise self._refusal(answer)
        except DeliveryError as error:
            log.warning("channel %s: page %s not sent: %s", self.name, key, error)
            raise
        except Exception as exc:
            # The outbox expects DeliveryError only; anything else (a change in msal, say) is
            # named by its type, never its text, which could quote a request.
            unexpected = DeliveryError(f"sending failed ({type(exc).__name__})", retryable=True)
        if unexpected is not None:
            log.warning("channel %s: page %s not sent: %s", self.name, key, unexpected)
            raise unexpected
        log.info(
            "channel %s: page %s queued by Exchange Online (HTTP %d)", self.name, key, answer.status
        )
        traced = f", request-id {answer.request_id}" if answer.request_id else ""
        return Receipt(
            channel=self.name,
            detail=f"HTTP {answer.status} queued by Exchange Online{traced}",
            queued_only=True,
        )

    def _refusal(self, answer: _Answer) -> DeliveryError:
        status, sender = answer.status, self.settings.sender
        said = f"HTTP {status}{' ' + answer.code if answer.code else ''}"
        traced = f" [request-id {answer.request_id}]" if answer.request_id else ""
        if status in (429, 503, 504):
            return DeliveryError(
                f"Microsoft Graph is throttling or busy ({said}){traced}",
                retryable=True,
                retry_after=answer.retry_after,
            )
        if status >= 500 or status == 408:
            return DeliveryError(f"Microsoft Graph failed ({said}){traced}", retryable=True)
        if status == 401:
            return DeliveryError(
                f"Microsoft Graph refused a fresh access token ({said}){traced}", retryable=True
            )
        if status == 403:
            problem = (
                f"Microsoft Graph refused to send as {sender} ({said}): the app registration"
                " needs the Mail.Send application permission with admin consent, and any"
                " application access policy must include this mailbox"
            )
        elif status == 404:
            problem = (
                f"Microsoft Graph does not know the sender mailbox {sender} ({said}): check"
                " sender (an Exchange Online mailbox in this tenant) and graph_url"
            )
        elif 300 <= status < 400:
            problem = f"Microsoft Graph redirected the request ({said}); check graph_url"
        elif status == 400:
            problem = f"Microsoft Graph refused the message ({said})"
        else:
            problem = f"Microsoft Graph answered {said}"
        return DeliveryError(problem + traced, retryable=False)

    async def probe(self) -> ProbeReport:
        """For ``sgalert doctor``: an app-only token for Graph. Nothing is sent: only a real
        page proves the sender mailbox may send (Mail.Send scoped to it)."""
        failure: ProbeFailed | None = None
        try:
            await asyncio.to_thread(self._token.get)
        except SignInError as error:
            failure = ProbeFailed(f"no Graph token: {error.reason}; check the app registration")
        if failure is not None:
            raise failure
        return ProbeReport("Graph token issued (nothing sent)")

    async def close(self) -> None:
        self._session.close()
        self._token.close()


if TYPE_CHECKING:
    _factory: NotifierFactory = create  # mypy checks the entry point's signature
