"""Email pages over SMTP (aiosmtplib): one connection per page, nothing held open between pages.

The message is built only from sgalert's own words (:meth:`Notification.subject` and
:meth:`Notification.body`), so no text from a safeguarding email ever reaches a header; the
addresses are checked against a strict ASCII addr-spec before anything is sent, because Python's
email generator only learnt to refuse folded-header injection (CVE-2024-6923) in 3.13.

Connection security is ``security = "tls"`` (implicit TLS, port 465), ``"starttls"`` (the
default, port 587; the server must offer STARTTLS, so a downgrade is refused rather than sent
in clear) or ``"none"``, allowed only to a loopback relay. Authentication is a username and a
password (``password_env`` / ``password_file``), or ``auth = "xoauth2"``: an app-only token from
msal's client-credentials flow for Exchange Online (``SMTP.SendAsApp``), presented with
``AUTH XOAUTH2``. The app registration (``tenant_id``, ``client_id``, a client secret or a
certificate, ``authority_url``) is read and signed in with by :mod:`integrations.entra`; ``ca_file``
is trusted for the sign-in authority too. A sign-in the authority refuses is not retryable; one
that fails because the authority is out of reach, answers 5xx or answers nonsense is.

Errors are translated at this edge into :class:`DeliveryError`: no answer, timeouts, dropped
connections and 4xx replies are worth retrying; 5xx replies (a refused recipient, a refused
sender, failed authentication), a certificate that is not trusted and a server that lacks
STARTTLS or AUTH are not, so the engine falls back to another channel at once.

The Message-ID is derived from the notification's idempotency key and the recipient, so a
retry after a lost ``250`` reply carries the same Message-ID and mail systems that de-duplicate
on it show one page, and a reply to the page can be matched to the page it answers.
"""

from __future__ import annotations

import asyncio
import email.policy
import enum
import hashlib
import ipaddress
import logging
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiosmtplib

from integrations.channel_options import ChannelOptions, is_addr_spec
from integrations.entra import (
    APP_OPTIONS,
    OUTLOOK_SCOPE,
    AppRegistration,
    AppToken,
    SignInError,
    read_app,
    untrusted_certificate,
)
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
from sgalert.secrets import read_secret
from sgalert.text import printable

log = logging.getLogger("sgalert.notify.smtp")

DEFAULT_TIMEOUT = 15.0

_PORTS = {"tls": 465, "starttls": 587, "none": 25}
_OPTIONS = (
    "host",
    "port",
    "security",
    "username",
    "password_env",
    "password_file",
    "auth",
    *APP_OPTIONS,
    "scope",
    "from",
    "reply_to",
    "timeout",
    "ca_file",
)
_OAUTH_OPTIONS = (*APP_OPTIONS, "scope")

_HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")

# Messages are flattened with headers on one line up to RFC 5322's hard limit of 998: at 78,
# Python folds a long Subject straight after the colon, and a reply then carries
# "Re:  [sgalert]...". (The body is encoded when it is set, under the 78-column policy.)
WIRE_POLICY = email.policy.SMTP.clone(max_line_length=998)


def check_address(address: str, what: str) -> str:
    """Return ``address`` if it is a strict addr-spec, else raise a non-retryable DeliveryError."""
    if not isinstance(address, str) or not is_addr_spec(address):
        shown = printable(str(address)[:80], keep_newlines=False)
        raise DeliveryError(f"{what} address {shown!r} is not a plain address", retryable=False)
    return address


def check_header_text(value: str, what: str) -> str:
    """Return ``value`` if it may go in a header as it is, else raise a non-retryable error."""
    if _HEADER_UNSAFE.search(value) or len(value) > 900:
        raise DeliveryError(f"{what} holds control characters or is too long", retryable=False)
    return value


def message_id(notification: Notification, recipient: str, domain: str) -> str:
    """The same Message-ID for every attempt at one page to one person."""
    digest = hashlib.sha256(
        f"{notification.idempotency_key}\x00{recipient.lower()}".encode()
    ).hexdigest()
    return f"<sgalert.{digest[:40]}@{domain}>"


def build_message(
    notification: Notification,
    recipient: str,
    from_address: str,
    reply_to: str | None = None,
    now: datetime | None = None,
) -> EmailMessage:
    """The page as an email: sgalert's own subject and body, checked addresses, fixed headers.

    ``Auto-Submitted`` (RFC 3834) and ``X-Auto-Response-Suppress`` keep out-of-office replies
    away from the reply mailbox, where an automatic answer must never count as a human's
    acknowledgement. Raises DeliveryError (not retryable) for an address or text it will not send.
    """
    to = check_address(recipient, "recipient")
    sender = check_address(from_address, "from")
    answer = check_address(reply_to, "reply-to") if reply_to else None
    subject = check_header_text(notification.subject(), "the subject")
    key = check_header_text(notification.idempotency_key, "the idempotency key")
    if not key.isascii() or not key.strip():
        raise DeliveryError("the idempotency key must be printable ASCII", retryable=False)
    body = notification.body()

    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(now or datetime.now(UTC))
    message["Message-ID"] = message_id(notification, to, sender.rpartition("@")[2])
    if answer:
        message["Reply-To"] = answer
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message["X-Sgalert-Idempotency-Key"] = key
    # ASCII stays 7bit and readable; anything else (a school's name in Welsh) goes
    # quoted-printable, so the message is 7-bit clean for servers without 8BITMIME.
    plain = body.isascii() and all(len(line) <= 900 for line in body.splitlines())
    message.set_content(body, cte="7bit" if plain else "quoted-printable")
    html = notification.html()
    if html is not None:
        # A document (the daily digest): its HTML twin, the text part staying first for
        # clients that show only text. Quoted-printable keeps long lines under the limit.
        message.add_alternative(html, subtype="html", cte="quoted-printable")
    return message


class Security(enum.Enum):
    """How the connection to the server is protected."""

    TLS = "tls"
    STARTTLS = "starttls"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class OAuth:
    """App-only sign-in for ``AUTH XOAUTH2`` (Exchange Online). The credential is never shown."""

    app: AppRegistration
    scope: str = OUTLOOK_SCOPE


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """A validated ``kind = "smtp"`` channel. The password is never shown in a repr."""

    name: str
    host: str
    port: int
    security: Security
    from_address: str
    reply_to: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    oauth: OAuth | None = None
    timeout: float = DEFAULT_TIMEOUT
    ca_file: Path | None = None


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def create(name: str, options: Mapping[str, Any], root: Path) -> SmtpNotifier:
    """The entry point for ``kind = "smtp"``: check the options now, connect only to send."""
    return SmtpNotifier(parse_settings(name, options, root))


def parse_settings(name: str, options: Mapping[str, Any], root: Path) -> SmtpSettings:
    """Validate a channel's options, raising ConfigError that names the key and the fix."""
    read = ChannelOptions(name, "smtp", options, _OPTIONS, root)
    where, fail, text, address = read.where, read.fail, read.text, read.address

    host = text("host", "smtp.office365.com")
    if any(c.isspace() for c in host) or "/" in host:
        raise fail("host", f"{host!r} is not a host name", 'e.g. host = "smtp.office365.com"')

    raw_security = text("security", "starttls", "starttls").lower()
    try:
        security = Security(raw_security)
    except ValueError:
        raise fail(
            "security", f"{raw_security!r} is not known", 'use "tls", "starttls" or "none"'
        ) from None
    if security is Security.NONE and not _is_loopback(host):
        raise fail(
            "security",
            f'"none" sends in clear, and {host} is not this machine',
            'use "starttls" or "tls"; "none" is only for a relay on 127.0.0.1',
        )

    port = options.get("port", _PORTS[security.value])
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise fail("port", "must be a whole number from 1 to 65535", "e.g. port = 587")

    from_address = address("from", "safeguarding@school.example.org")
    reply_to = read.optional_address("reply_to", "sgalert-ack@school.example.org")
    timeout = read.timeout(DEFAULT_TIMEOUT)
    ca_file = read.ca_file("certs/school-ca.pem")

    has_password = "password_env" in options or "password_file" in options
    auth = text("auth", "password", "password" if has_password or "username" in options else "none")
    auth = auth.lower()
    username = (
        text("username", "safeguarding@school.example.org") if "username" in options else None
    )
    password: str | None = None
    oauth: OAuth | None = None
    if auth == "none":
        if username or has_password:
            raise fail(
                "auth", '"none" but a username or password is given', 'use auth = "password"'
            )
    elif auth == "password":
        extra = [key for key in _OAUTH_OPTIONS if key in options]
        if extra:
            raise fail(extra[0], 'is only for auth = "xoauth2"', f"remove {extra[0]} or set auth")
        if username is None:
            raise fail("username", "password sign-in needs a username", 'e.g. username = "..."')
        password = read_secret(options, "password", where, root)
    elif auth == "xoauth2":
        if has_password:
            raise fail(
                "auth", '"xoauth2" signs in with a token, not a password', "remove password_*"
            )
        app = read_app(options, where, root)
        scope = text("scope", OUTLOOK_SCOPE, OUTLOOK_SCOPE)
        parts = urlsplit(scope)
        if parts.scheme != "https" or not parts.hostname:
            raise fail("scope", f"{scope!r} is not an https URL", "leave scope out for the default")
        oauth = OAuth(app=app, scope=scope)
        username = username or from_address  # the mailbox the app sends as
    else:
        raise fail("auth", f"{auth!r} is not known", 'use "password" or "xoauth2"')

    return SmtpSettings(
        name=name,
        host=host,
        port=port,
        security=security,
        from_address=from_address,
        reply_to=reply_to,
        username=username,
        password=password,
        oauth=oauth,
        timeout=float(timeout),
        ca_file=ca_file,
    )


def _short(text: str, limit: int = 120) -> str:
    return printable(" ".join(text.split())[:limit], keep_newlines=False)


def _by_code(what: str, code: int, message: str) -> DeliveryError:
    """RFC 5321: a 4yz reply is transient, a 5yz reply is permanent."""
    return DeliveryError(f"{what}: {code} {_short(message)}", retryable=400 <= code < 500)


def translate(exc: BaseException) -> DeliveryError:
    """aiosmtplib's and the network's errors, as the engine needs them: retry or fall back."""
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refusals = exc.recipients
        permanent = bool(refusals) and all(r.code >= 500 for r in refusals)
        first = refusals[0] if refusals else None
        said = f"{first.code} {_short(first.message)}" if first else "refused"
        return DeliveryError(f"recipient refused: {said}", retryable=not permanent)
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return _by_code("authentication refused", exc.code, exc.message)
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return _by_code("sender refused", exc.code, exc.message)
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return _by_code("message refused", exc.code, exc.message)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _by_code("server refused", exc.code, exc.message)
    if untrusted_certificate(exc):
        return DeliveryError(
            "the server's TLS certificate is not trusted (check host and ca_file)",
            retryable=False,
        )
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return DeliveryError("the mail server did not answer in time", retryable=True)
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return DeliveryError("the mail server closed the connection", retryable=True)
    if isinstance(exc, aiosmtplib.SMTPConnectError | OSError):
        reason = type(exc.__cause__ or exc).__name__
        return DeliveryError(f"could not connect to the mail server ({reason})", retryable=True)
    if isinstance(exc, aiosmtplib.SMTPException):
        # STARTTLS or AUTH not offered, or XOAUTH2 missing: the server's setup, not a blip.
        return DeliveryError(f"mail server unsuitable: {_short(str(exc))}", retryable=False)
    return DeliveryError(f"sending failed ({type(exc).__name__})", retryable=True)


class XOAuth2Token:
    """App-only access tokens for ``AUTH XOAUTH2``, cached by msal until they near expiry."""

    def __init__(self, oauth: OAuth, ca_file: Path | None, timeout: float) -> None:
        self._tokens = AppToken(oauth.app, oauth.scope, ca_file=ca_file, timeout=timeout)

    async def get(self) -> str:
        """A token, or a DeliveryError saying whether to retry (never chained to msal's)."""
        failure: DeliveryError
        try:
            return await asyncio.to_thread(self._tokens.get)
        except SignInError as error:
            failure = DeliveryError(
                error.reason, retryable=error.retryable, retry_after=error.retry_after
            )
        raise failure

    async def forget(self) -> None:
        """Drop cached tokens, so the next page signs in afresh (after a refused token)."""
        await asyncio.to_thread(self._tokens.forget)

    def close(self) -> None:
        self._tokens.close()


class SmtpNotifier:
    """Sends each page as its own SMTP session."""

    per_person = True

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self.name = settings.name
        self._tls_context = ssl.create_default_context(
            cafile=str(settings.ca_file) if settings.ca_file else None
        )
        self._tls_context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._token = (
            XOAuth2Token(settings.oauth, settings.ca_file, settings.timeout)
            if settings.oauth
            else None
        )

    def _client(self) -> aiosmtplib.SMTP:
        settings = self.settings
        return aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            timeout=settings.timeout,
            use_tls=settings.security is Security.TLS,
            start_tls=settings.security is Security.STARTTLS,
            tls_context=None if settings.security is Security.NONE else self._tls_context,
        )

    async def _sign_in(self, client: aiosmtplib.SMTP, token: str | None) -> None:
        settings = self.settings
        if token is not None:
            assert settings.username is not None and self._token is not None
            if "xoauth2" not in client.server_auth_methods:
                raise DeliveryError("the mail server does not offer AUTH XOAUTH2", retryable=False)
            try:
                await client.auth_xoauth2(settings.username, token)
            except aiosmtplib.SMTPAuthenticationError:
                await self._token.forget()  # so the next attempt asks for a fresh token
                raise
        elif settings.username is not None and settings.password is not None:
            await client.login(settings.username, settings.password)

    async def send(self, notification: Notification, recipient: Recipient) -> Receipt:
        settings = self.settings
        message = build_message(
            notification,
            recipient.address,
            settings.from_address,
            notification.reply_address or settings.reply_to,
        )
        client = self._client()
        try:
            # aiosmtplib's timeout bounds each command; this bounds a server that drips replies.
            async with asyncio.timeout(settings.timeout * 4):
                # The token first, so a slow sign-in never holds an idle SMTP session open.
                token = await self._token.get() if self._token is not None else None
                await client.connect()
                if client.is_ehlo_or_helo_needed:
                    await client.ehlo()
                await self._sign_in(client, token)
                # Flattened here, not by send_message, whose own policy would fold at 78.
                _, reply = await client.sendmail(
                    settings.from_address,
                    [recipient.address],
                    message.as_bytes(policy=WIRE_POLICY),
                )
        except Exception as exc:
            # After a failure the session's state is unknown: no polite QUIT.
            await _hang_up(client)
            error = translate(exc)
            log.warning(
                "channel %s: page %s not sent: %s", self.name, notification.idempotency_key, error
            )
            raise error from None
        await self._quit(client)
        log.info("channel %s: page %s accepted", self.name, notification.idempotency_key)
        return Receipt(channel=self.name, detail=_short(reply) or "accepted")

    async def probe(self) -> ProbeReport:
        """For ``sgalert doctor``: connect, EHLO, STARTTLS or TLS as configured, sign in if
        configured, QUIT. Sends no message."""
        settings = self.settings
        where = f"{settings.host}:{settings.port}"
        client = self._client()
        failure: ProbeFailed | None = None
        try:
            async with asyncio.timeout(settings.timeout * 4):
                token = await self._token.get() if self._token is not None else None
                await client.connect()
                if client.is_ehlo_or_helo_needed:
                    await client.ehlo()
                await self._sign_in(client, token)
        except Exception as exc:
            await _hang_up(client)
            error = translate(exc)
            failure = ProbeFailed(
                f"{where}: {error}; check host, port, security and the credentials, and that"
                " the server is running"
            )
        if failure is not None:
            raise failure
        signed_in = " and signed in" if settings.username else ""
        await self._quit(client)
        return ProbeReport(f"connected to {where} ({settings.security.value}){signed_in}")

    @staticmethod
    async def _quit(client: aiosmtplib.SMTP) -> None:
        """Say goodbye; the message is already accepted, so a failure here changes nothing."""
        try:
            async with asyncio.timeout(5):
                await client.execute_command(b"QUIT")
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass
        await _hang_up(client)

    async def close(self) -> None:
        if self._token is not None:
            self._token.close()


async def _hang_up(client: aiosmtplib.SMTP) -> None:
    """Drop the connection now. A TLS close would wait for the server's close_notify, and a
    socket left waiting on it outlives the send; SMTP needs none (QUIT ends the session, and
    after a failure the session's state is unknown), so the socket closes with the send."""
    if isinstance(client.transport, asyncio.WriteTransport):
        client.transport.abort()
    client.close()  # aiosmtplib's own state: disconnected, its connect lock released
    await asyncio.sleep(0)  # one turn of the loop: the transport's scheduled close runs now


if TYPE_CHECKING:
    _factory: NotifierFactory = create  # mypy checks the entry point's signature
