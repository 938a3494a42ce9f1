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
  is not trusted are not retryable; an unreachable sign-in authority is.

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
import difflib
import logging
import re
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import msal
import requests

# Shared with the Graph inbox and the SMTP channel rather than copied; see each for details.
from integrations.graph import (
    _PLACEHOLDER_TENANTS,
    AUTHORITY_URL,
    GRAPH_URL,
    _certificate_credential,
    _error_code,
    _local_path,
    _retry_after,
)
from integrations.smtp import (
    _PERMANENT_SIGN_IN,
    _caused_by,
    _check_header_text,
    _MsalHttp,
    check_address,
    is_addr_spec,
)
from sgalert.errors import ConfigError
from sgalert.notify import DeliveryError, Notification, Receipt, Recipient
from sgalert.secrets import read_secret

if TYPE_CHECKING:
    from sgalert.notify import NotifierFactory

log = logging.getLogger("sgalert.notify.graph_mail")

DEFAULT_TIMEOUT = 15.0
IDEMPOTENCY_HEADER = "X-Sgalert-Idempotency-Key"
_MAX_RETRY_AFTER = 3600.0  # seconds: a Retry-After beyond this is treated as this
_REQUEST_ID = re.compile(r"[0-9A-Fa-f-]{36}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

_OPTIONS = (
    "tenant_id",
    "client_id",
    "sender",
    "reply_to",
    "save_to_sent_items",
    "client_secret_env",
    "client_secret_file",
    "certificate_file",
    "certificate_thumbprint",
    "certificate_passphrase_env",
    "certificate_passphrase_file",
    "graph_url",
    "authority_url",
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


def create(name: str, options: Mapping[str, Any], root: Path) -> GraphMailNotifier:
    """The entry point for ``kind = "graph-mail"``: check the options now, sign in only to send."""
    return GraphMailNotifier(parse_settings(name, options, root))


def parse_settings(name: str, options: Mapping[str, Any], root: Path) -> GraphMailSettings:
    """Validate a channel's options, raising ConfigError that names the key and the fix."""
    where = f"channels.{name}"

    def fail(key: str, problem: str, fix: str) -> ConfigError:
        return ConfigError(f"{where}.{key}: {problem}; {fix}")

    for key in options:
        if key not in _OPTIONS:
            hint = difflib.get_close_matches(str(key), _OPTIONS, n=1)
            fix = (
                f"did you mean {hint[0]!r}?"
                if hint
                else f"graph-mail options: {', '.join(_OPTIONS)}"
            )
            raise fail(str(key), 'unknown option for kind = "graph-mail"', fix)

    def text(key: str, example: str, default: str | None = None) -> str:
        value = options.get(key, default)
        if not isinstance(value, str) or not value.strip() or _CONTROL.search(value):
            raise fail(key, "must be a non-empty string on one line", f'e.g. {key} = "{example}"')
        return value.strip()

    def address(key: str, example: str) -> str:
        value = text(key, example)
        if not is_addr_spec(value):
            raise fail(key, f"{value!r} is not a plain email address", f'e.g. {key} = "{example}"')
        return value

    def https_url(key: str, default: str) -> str:
        value = text(key, default, default).rstrip("/")
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
            raise fail(key, f"{value!r} is not an https URL", f'e.g. {key} = "{default}"')
        return value

    tenant_id = text("tenant_id", "00000000-0000-0000-0000-000000000000")
    if tenant_id.lower() in _PLACEHOLDER_TENANTS:
        raise fail(
            "tenant_id",
            f"{tenant_id!r} is not one tenant",
            "use the school's directory (tenant) id from the Entra admin centre",
        )
    client_id = text("client_id", "00000000-0000-0000-0000-000000000000")
    sender = address("sender", "safeguarding@school.example.org")
    reply_to = (
        address("reply_to", "sgalert-ack@school.example.org") if "reply_to" in options else None
    )

    save = options.get("save_to_sent_items", False)
    if not isinstance(save, bool):
        raise fail("save_to_sent_items", "must be true or false", "e.g. save_to_sent_items = false")

    timeout = options.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 1 <= timeout <= 300:
        raise fail("timeout", "must be between 1 and 300 seconds", "e.g. timeout = 15")

    has_secret = "client_secret_env" in options or "client_secret_file" in options
    has_certificate = "certificate_file" in options
    if has_secret and has_certificate:
        raise fail(
            "certificate_file",
            "both a client secret and a certificate are given",
            "keep one: the certificate is the safer choice",
        )
    if not has_secret and not has_certificate:
        raise fail(
            "client_secret_env",
            "no client credential given",
            'set client_secret_env = "VARIABLE", client_secret_file = "path" or'
            ' certificate_file = "path"',
        )
    for key in (
        "certificate_thumbprint",
        "certificate_passphrase_env",
        "certificate_passphrase_file",
    ):
        if key in options and not has_certificate:
            raise fail(key, "is only for certificate_file", f"remove {key} or set certificate_file")
    credential: str | dict[str, str]
    if has_certificate:
        credential = _certificate_credential(options, where, root)
    else:
        credential = read_secret(options, "client_secret", where, root)

    ca_file: Path | None = None
    if "ca_file" in options:
        ca_file = _local_path(text("ca_file", "proxy-ca.pem"), root)
        if not ca_file.is_file():
            raise fail("ca_file", f"{ca_file} is not a readable file", "give a PEM bundle")
        try:
            ssl.create_default_context(cafile=str(ca_file))
        except (ssl.SSLError, OSError):
            raise fail(
                "ca_file", f"{ca_file} holds no usable certificate", "give a PEM bundle"
            ) from None

    return GraphMailSettings(
        name=name,
        tenant_id=tenant_id,
        client_id=client_id,
        sender=sender,
        credential=credential,
        reply_to=reply_to,
        save_to_sent_items=save,
        graph_url=https_url("graph_url", GRAPH_URL),
        authority_url=https_url("authority_url", AUTHORITY_URL),
        ca_file=ca_file,
        timeout=float(timeout),
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
    subject = _check_header_text(notification.subject(), "the subject")
    key = _check_header_text(notification.idempotency_key, "the idempotency key")
    if not key.isascii() or not key.strip():
        raise DeliveryError("the idempotency key must be printable ASCII", retryable=False)
    message: dict[str, Any] = {
        "subject": subject,
        "body": {"contentType": "Text", "content": notification.body()},
        "toRecipients": _addresses(to),
    }
    if answer:
        message["replyTo"] = _addresses(answer)
    message["internetMessageHeaders"] = [
        {"name": IDEMPOTENCY_HEADER, "value": key},
        {"name": "X-Auto-Response-Suppress", "value": "All"},
    ]
    return {"message": message, "saveToSentItems": save_to_sent_items}


def _untrusted(exc: BaseException) -> bool:
    return _caused_by(exc, ssl.SSLCertVerificationError)


class _AppToken:
    """App-only Graph tokens from msal, cached by msal until they near expiry.

    The msal app is built on first use, in a worker thread, because building it fetches the
    tenant's metadata. Its HTTP client passes ``verify`` on every call, so ``ca_file`` holds
    even when ``REQUESTS_CA_BUNDLE`` is set.
    """

    def __init__(self, settings: GraphMailSettings) -> None:
        self.settings = settings
        self._http = _MsalHttp(
            str(settings.ca_file) if settings.ca_file else True, settings.timeout
        )
        self._lock = threading.Lock()
        self._app: Any = None

    def acquire(self) -> str:
        """In a worker thread. Raises only DeliveryErrors made outside any ``except``, so no
        exception holding the token request (whose body carries the secret) rides along."""
        settings = self.settings
        failure: DeliveryError | None = None
        result: Any = None
        with self._lock:
            try:
                if self._app is None:
                    # instance_discovery=False: the authority comes from the operator's config;
                    # Microsoft's public list would only add a call (and refuse a loopback one).
                    self._app = msal.ConfidentialClientApplication(
                        settings.client_id,
                        authority=f"{settings.authority_url}/{settings.tenant_id}",
                        client_credential=settings.credential,
                        http_client=self._http,
                        instance_discovery=False,
                    )
                result = self._app.acquire_token_for_client(scopes=[settings.scope])
            except requests.RequestException as exc:
                if _untrusted(exc):
                    failure = DeliveryError(
                        "the sign-in authority's TLS certificate is not trusted (check"
                        " authority_url and ca_file)",
                        retryable=False,
                    )
                else:
                    failure = DeliveryError(
                        f"sign-in authority unreachable ({type(exc).__name__})", retryable=True
                    )
            except msal.exceptions.MsalServiceError:
                # msal raises this (not an error dict) when the token endpoint answers 5xx.
                failure = DeliveryError(
                    "the sign-in authority failed (server error); trying again later",
                    retryable=True,
                )
            except ValueError:
                # msal's text quotes the authority's reply; only the fact is passed on.
                self._app = None
                failure = DeliveryError(
                    "the sign-in authority's answer was unusable (check tenant_id and"
                    " authority_url)",
                    retryable=True,
                )
        if failure is not None:
            raise failure
        token = result.get("access_token") if isinstance(result, dict) else None
        if not token:
            error = str(result.get("error", "unknown")) if isinstance(result, dict) else "unknown"
            error = re.sub(r"[^A-Za-z0-9_.-]", "", error)[:60] or "unknown"
            permanent = error in _PERMANENT_SIGN_IN
            hint = (
                ": check tenant_id, client_id and the client secret or certificate"
                if permanent
                else ""
            )
            raise DeliveryError(f"sign-in refused ({error}){hint}", retryable=not permanent)
        return str(token)

    def forget(self) -> None:
        """Drop cached access tokens, so the next call signs in afresh (after a 401)."""
        with self._lock:
            app = self._app
            if app is None:
                return
            cache = app.token_cache
            for item in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                cache.remove_at(item)

    def close(self) -> None:
        self._http.close()


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
        self._token = _AppToken(settings)

    def __repr__(self) -> str:
        return f"GraphMailNotifier(name={self.name!r}, sender={self.settings.sender!r})"

    def _post(self, payload: Mapping[str, Any]) -> _Answer:
        """In a worker thread: sign in (msal caches) and POST once. Raises only DeliveryErrors
        made outside any ``except``, so no exception holding the bearer token rides along."""
        settings = self.settings
        token = self._token.acquire()
        failure: DeliveryError | None = None
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
            if _untrusted(exc):
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
                code="" if status < 300 else _error_code(response),
                retry_after=_retry_after(response),
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
            wait = answer.retry_after
            return DeliveryError(
                f"Microsoft Graph is throttling or busy ({said}){traced}",
                retryable=True,
                retry_after=min(wait, _MAX_RETRY_AFTER) if wait is not None else None,
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

    async def close(self) -> None:
        self._session.close()
        self._token.close()


if TYPE_CHECKING:
    _factory: NotifierFactory = create  # mypy checks the entry point's signature
