"""The notifier adapters against real servers: aiosmtpd for SMTP, a loopback HTTPS sink for Teams.

A page is built from an invented case that also holds personal data (a child's name, date of
birth, a police reference, an address); every test that looks at what left sgalert checks that
none of it did.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import logging
import os
import socket
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from integrations import maildrop, smtp, teams
from sgalert.errors import ConfigError
from sgalert.ports import (
    NOTIFIER_ENTRY_POINTS,
    DeliveryError,
    Notification,
    Notifier,
    PageSource,
    Recipient,
    Urgency,
    notifier_factory,
)

from .http_sink import HttpSink, Reply, Tls, make_tls, server_context
from .test_backoff import ODD_RETRY_AFTER

# ----- an invented case and the page about it -------------------------------------------------

CASE: dict[str, Any] = {
    "ref": "ENC-2026-0042",
    "source": "encompass",
    "received_at": datetime(2026, 11, 22, 21, 55, tzinfo=UTC),
    "facts": {
        "child_name": "Florence Testchild-Invented",
        "child_dob": "2017-03-14",
        "police_reference": "HC/99871/26",
        "address": "7 Imaginary Row, Nowhere Vale",
        "parent": "Morwenna Testparent",
    },
}
PERSONAL = [
    "Florence",
    "Testchild",
    "2017-03-14",
    "14/03/2017",
    "HC/99871/26",
    "Imaginary Row",
    "Morwenna",
]
TOKEN = "ACK-7F3K-Q9ZD"
REPLY = "sgalert-ack@school.example.org"
FROM = "safeguarding@school.example.org"
DSL = "dsl@school.example.org"


def page(**changes: Any) -> Notification:
    """The page about :data:`CASE`, from its metadata only, as the engine will build it."""
    notification = Notification(
        idempotency_key=f"page:{CASE['ref']}:step-0",
        school="Invented First School",
        case_ref=CASE["ref"],
        source=PageSource(CASE["source"]),
        received_at=CASE["received_at"],
        urgency=Urgency.URGENT,
        step=0,  # the engine's first step: pages, the desk and the digest say "step 1"
        reason="new notice, not acknowledged after 10 minutes",
        ack_token=TOKEN,
        reply_address=REPLY,
        due_at=datetime(2026, 11, 23, 8, 0, tzinfo=UTC),
    )
    return replace(notification, **changes)


def assert_no_personal_data(text: str | bytes) -> None:
    shown = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    for value in PERSONAL:
        assert value not in shown, f"{value!r} left sgalert"


# ----- a real SMTP server -----------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Mailroom:
    """An aiosmtpd handler that records what it accepts and refuses what it is told to."""

    received: list[Received] = field(default_factory=list)
    ehlos: int = 0
    refuse: dict[str, str] = field(default_factory=dict)
    data_reply: str = "250 2.0.0 Ok: queued as INV123"
    data_delay: float = 0.0
    logins: list[tuple[str, str]] = field(default_factory=list)

    async def handle_EHLO(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        self.ehlos += 1
        session.host_name = hostname  # what aiosmtpd does itself when there is no hook
        return responses

    async def handle_RCPT(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        content = envelope.original_content or b""
        self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), content))
        return self.data_reply

    def authenticate(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login = auth_data.login.decode()
        if (login, auth_data.password.decode()) != (FROM, "invented-smtp-password"):
            return AuthResult(success=False, handled=False)
        self.logins.append((mechanism, login))
        return AuthResult(success=True)


@dataclass
class OAuthMailroom(Mailroom):
    """Also offers ``AUTH XOAUTH2``, accepting the tokens in ``tokens``."""

    tokens: set[str] = field(default_factory=set)
    bearers: list[tuple[str, str]] = field(default_factory=list)

    async def auth_XOAUTH2(self, server: SMTPServer, args: list[str]) -> AuthResult:
        raw = base64.b64decode(args[1]).decode()
        fields = dict(part.split("=", 1) for part in raw.split("\x01") if part)
        user, bearer = fields.get("user", ""), fields.get("auth", "")
        self.bearers.append((user, bearer))
        ok = bearer.startswith("Bearer ") and bearer.removeprefix("Bearer ") in self.tokens
        return AuthResult(success=ok, handled=False)


class LoopbackController(Controller):
    """aiosmtpd's Controller on an ephemeral port (it wants the port before it binds)."""

    def _trigger_server(self) -> None:
        server = self.server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    return make_tls(tmp_path / "tls")


@pytest.fixture
def smtp_server() -> Iterator[tuple[Mailroom, int]]:
    """A plain SMTP relay on 127.0.0.1 (``security = "none"`` is allowed on loopback only)."""
    room = Mailroom()
    controller = LoopbackController(room, hostname="127.0.0.1", port=0)
    controller.start()
    yield room, controller.port
    controller.stop()


@pytest.fixture
def submission_server(tls: Tls) -> Iterator[tuple[Mailroom, int, LoopbackController]]:
    """A submission server like Exchange Online's: STARTTLS required, then AUTH required."""
    room = Mailroom()
    controller = LoopbackController(
        room,
        hostname="127.0.0.1",
        port=0,
        tls_context=server_context(tls),
        require_starttls=True,
        auth_required=True,
        authenticator=room.authenticate,
    )
    controller.start()
    yield room, controller.port, controller
    controller.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def submission_channel(port: int, tmp_path: Path, tls: Tls) -> smtp.SmtpNotifier:
    """STARTTLS, trusting the test CA, signing in as FROM with the password in
    ``SGALERT_TEST_SMTP_PASSWORD`` (each test sets it)."""
    return smtp_channel(
        port,
        tmp_path,
        security="starttls",
        username=FROM,
        password_env="SGALERT_TEST_SMTP_PASSWORD",
        ca_file=str(tls.ca_file),
    )


def smtp_channel(port: int, tmp_path: Path, **options: Any) -> smtp.SmtpNotifier:
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from": FROM,
        "reply_to": REPLY,
    }
    return smtp.create("mail", {**base, **options}, tmp_path)


async def test_email_arrives_with_its_headers_and_no_personal_data(
    smtp_server: tuple[Mailroom, int], tmp_path: Path
) -> None:
    room, port = smtp_server
    channel = smtp_channel(port, tmp_path)
    receipt = await channel.send(page(), Recipient(DSL, person_id="p1", role="dsl"))
    await channel.close()

    assert receipt.channel == "mail" and not receipt.queued_only
    assert receipt.detail == "2.0.0 Ok: queued as INV123"
    [arrived] = room.received
    assert arrived.mail_from == FROM and arrived.rcpt_tos == [DSL]
    message = arrived.message()
    assert message["From"] == FROM
    assert message["To"] == DSL
    assert message["Reply-To"] == REPLY
    assert message["Subject"] == page().subject()
    assert CASE["ref"] in message["Subject"] and TOKEN in message["Subject"]
    assert abs(parsedate_to_datetime(message["Date"]) - datetime.now(UTC)) < timedelta(minutes=1)
    assert message["Message-ID"].startswith("<sgalert.")
    assert message["Message-ID"].endswith("@school.example.org>")
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Sgalert-Idempotency-Key"] == page().idempotency_key
    assert message.get_content_type() == "text/plain"
    body = message.get_content()
    assert CASE["ref"] in body and TOKEN in body and REPLY in body
    assert_no_personal_data(arrived.content)


async def test_a_retried_page_keeps_its_message_id(
    smtp_server: tuple[Mailroom, int], tmp_path: Path
) -> None:
    room, port = smtp_server
    channel = smtp_channel(port, tmp_path)
    await channel.send(page(), Recipient(DSL))
    await channel.send(page(), Recipient(DSL))
    await channel.send(page(), Recipient("deputy@school.example.org"))
    await channel.send(page(idempotency_key="page:ENC-2026-0042:step-2"), Recipient(DSL))
    ids = [r.message()["Message-ID"] for r in room.received]
    assert ids[0] == ids[1]
    assert len({ids[0], ids[2], ids[3]}) == 3


async def test_a_school_name_outside_ascii_is_sent_7bit_clean(
    smtp_server: tuple[Mailroom, int], tmp_path: Path
) -> None:
    room, port = smtp_server
    channel = smtp_channel(port, tmp_path)
    await channel.send(page(school="Ysgol Gynradd Dyffryn Ŵy"), Recipient(DSL))
    [arrived] = room.received
    assert arrived.content.isascii()
    assert "Ysgol Gynradd Dyffryn Ŵy" in arrived.message().get_content()


@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN"])
async def test_starttls_then_auth(
    submission_server: tuple[Mailroom, int, LoopbackController],
    tls: Tls,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mechanism: str,
) -> None:
    room, port, controller = submission_server
    other = "PLAIN" if mechanism == "LOGIN" else "LOGIN"
    controller.SMTP_kwargs["auth_exclude_mechanism"] = [other]
    monkeypatch.setenv("SGALERT_TEST_SMTP_PASSWORD", "invented-smtp-password")
    channel = submission_channel(port, tmp_path, tls)
    assert "invented-smtp-password" not in repr(channel.settings)
    await channel.send(page(), Recipient(DSL))
    assert room.logins == [(mechanism, FROM)]
    [arrived] = room.received
    assert TOKEN in arrived.message()["Subject"]


async def test_a_wrong_password_is_not_retried(
    submission_server: tuple[Mailroom, int, LoopbackController],
    tls: Tls,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    room, port, _ = submission_server
    monkeypatch.setenv("SGALERT_TEST_SMTP_PASSWORD", "not-the-password")
    channel = submission_channel(port, tmp_path, tls)
    with pytest.raises(DeliveryError, match="authentication refused: 535") as caught:
        await channel.send(page(), Recipient(DSL))
    assert caught.value.retryable is False
    assert "not-the-password" not in str(caught.value)
    assert room.received == []


async def test_an_untrusted_certificate_is_not_retried(
    submission_server: tuple[Mailroom, int, LoopbackController], tmp_path: Path
) -> None:
    room, port, _ = submission_server
    channel = smtp_channel(port, tmp_path, security="starttls")  # no ca_file: the CA is unknown
    with pytest.raises(DeliveryError, match="certificate is not trusted") as caught:
        await channel.send(page(), Recipient(DSL))
    assert caught.value.retryable is False
    assert room.received == []


def sockets_held_to(port: int) -> int:
    """How many sockets this process holds open to 127.0.0.1:``port`` (what lsof would show:
    the kernel's TCP table joined to this process's file descriptors)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[2].split(":")[1], 16) == port:
            inodes.add(f"socket:[{fields[9]}]")
    held = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            held += os.readlink(fd) in inodes
        except OSError:
            continue  # closed meanwhile
    return held


@pytest.mark.parametrize("password", ["invented-smtp-password", "not-the-password"])
async def test_the_connection_is_closed_when_the_send_returns(
    submission_server: tuple[Mailroom, int, LoopbackController],
    tls: Tls,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    password: str,
) -> None:
    """Over TLS, sent or refused, no socket outlives the send waiting on the server's TLS
    goodbye (a slow server would keep one per page; CI on 3.11 saw one left unclosed)."""
    room, port, _ = submission_server
    monkeypatch.setenv("SGALERT_TEST_SMTP_PASSWORD", password)
    channel = submission_channel(port, tmp_path, tls)
    try:
        await channel.send(page(), Recipient(DSL))
    except DeliveryError:
        assert password != "invented-smtp-password"
    assert sockets_held_to(port) == 0  # closed by the time the send returned
    assert len(room.received) == (password == "invented-smtp-password")


async def test_starttls_is_required_when_asked_for(
    smtp_server: tuple[Mailroom, int], tls: Tls, tmp_path: Path
) -> None:
    room, port = smtp_server  # offers no STARTTLS: sending in clear would be a downgrade
    channel = smtp_channel(port, tmp_path, security="starttls", ca_file=str(tls.ca_file))
    with pytest.raises(DeliveryError, match="STARTTLS") as caught:
        await channel.send(page(), Recipient(DSL))
    assert caught.value.retryable is False
    assert room.received == []


async def test_implicit_tls(tls: Tls, tmp_path: Path) -> None:
    room = Mailroom()
    controller = LoopbackController(
        room, hostname="127.0.0.1", port=0, ssl_context=server_context(tls)
    )
    controller.start()
    try:
        channel = smtp_channel(controller.port, tmp_path, security="tls", ca_file=str(tls.ca_file))
        await channel.send(page(), Recipient(DSL))
    finally:
        controller.stop()
    [arrived] = room.received
    assert arrived.rcpt_tos == [DSL]


@pytest.mark.parametrize(
    "address",
    [
        "dsl@school.example.org\r\nBcc: everyone@example.org",
        "dsl@school.example.org\nX-Injected: yes",
        "dsl@school.example.org\r",
        "Dee Example <dsl@school.example.org>",
        "dsl@school.example.org, head@school.example.org",
        "dsl@localhost",
        "",
        "dsl@school.example.org\x00",
        "dsl@schööl.example.org",
    ],
)
async def test_an_unsafe_recipient_is_refused_without_sending(
    smtp_server: tuple[Mailroom, int], tmp_path: Path, address: str
) -> None:
    room, port = smtp_server
    channel = smtp_channel(port, tmp_path)
    with pytest.raises(DeliveryError, match="not a plain address") as caught:
        await channel.send(page(), Recipient(address))
    assert caught.value.retryable is False
    assert "\r" not in str(caught.value) and "\n" not in str(caught.value)
    assert room.ehlos == 0 and room.received == []


async def test_a_server_that_is_down_is_retried(tmp_path: Path) -> None:
    channel = smtp_channel(free_port(), tmp_path)
    with pytest.raises(DeliveryError, match="could not connect") as caught:
        await channel.send(page(), Recipient(DSL))
    assert caught.value.retryable is True


async def test_a_permanent_refusal_is_not_retried_and_a_temporary_one_is(
    smtp_server: tuple[Mailroom, int], tmp_path: Path
) -> None:
    room, port = smtp_server
    room.refuse = {
        "gone@school.example.org": "550 5.1.1 <gone@school.example.org>: mailbox unavailable",
        "full@school.example.org": "452 4.2.2 mailbox full, try later",
    }
    channel = smtp_channel(port, tmp_path)
    with pytest.raises(DeliveryError, match="recipient refused: 550") as permanent:
        await channel.send(page(), Recipient("gone@school.example.org"))
    assert permanent.value.retryable is False
    with pytest.raises(DeliveryError, match="recipient refused: 452") as temporary:
        await channel.send(page(), Recipient("full@school.example.org"))
    assert temporary.value.retryable is True
    room.data_reply = "554 5.7.1 message refused by policy"
    with pytest.raises(DeliveryError, match="message refused: 554") as refused:
        await channel.send(page(), Recipient(DSL))
    assert refused.value.retryable is False
    room.data_reply = "451 4.3.0 try again later"
    with pytest.raises(DeliveryError, match="message refused: 451") as later:
        await channel.send(page(), Recipient(DSL))
    assert later.value.retryable is True
    assert room.received[-1].rcpt_tos == [DSL]  # recorded, but answered 451


async def test_a_server_that_stalls_is_retried(
    smtp_server: tuple[Mailroom, int], tmp_path: Path
) -> None:
    room, port = smtp_server
    room.data_delay = 2.5
    channel = smtp_channel(port, tmp_path, timeout=1)
    with pytest.raises(DeliveryError, match="in time") as caught:
        await channel.send(page(), Recipient(DSL))
    assert caught.value.retryable is True


# ----- XOAUTH2 with a real msal against a loopback sign-in authority -------------------------

TENANT = "5b3c2e8a-1d4f-4c6b-9e21-00000000aaaa"
CLIENT_ID = "8f0d6a4e-7b2c-4e5a-a1d3-00000000bbbb"
CLIENT_SECRET = "invented-client-secret-for-smtp"


def entra(sink: HttpSink, *failures: Reply) -> None:
    """Teach the sink the two endpoints msal's client-credentials flow uses; the token endpoint
    answers ``failures`` first, one per request."""
    pending = list(failures)
    base = f"{sink.base}/{TENANT}"
    sink.route(
        "GET",
        f"/{TENANT}/v2.0/.well-known/openid-configuration",
        Reply(
            200,
            body={
                "issuer": f"{base}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
            },
        ),
    )

    def token(request: Any) -> Reply:
        if pending:
            return pending.pop(0)
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if form.get("client_secret") != CLIENT_SECRET or form.get("client_id") != CLIENT_ID:
            return Reply(
                401, body={"error": "invalid_client", "error_description": "AADSTS7000215"}
            )
        return Reply(
            200,
            body={"token_type": "Bearer", "expires_in": 3599, "access_token": "invented-token-1"},
        )

    sink.route("POST", f"/{TENANT}/oauth2/v2.0/token", token)


async def test_xoauth2_with_an_app_only_token(
    tls: Tls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    room = OAuthMailroom(tokens={"invented-token-1"})
    controller = LoopbackController(
        room,
        hostname="127.0.0.1",
        port=0,
        tls_context=server_context(tls),
        require_starttls=True,
        auth_required=True,
    )
    controller.start()
    monkeypatch.setenv("SGALERT_TEST_CLIENT_SECRET", CLIENT_SECRET)
    try:
        with HttpSink(tls=tls) as sink:
            entra(sink)
            channel = smtp_channel(
                controller.port,
                tmp_path,
                security="starttls",
                auth="xoauth2",
                tenant_id=TENANT,
                client_id=CLIENT_ID,
                client_secret_env="SGALERT_TEST_CLIENT_SECRET",
                authority_url=sink.base,
                ca_file=str(tls.ca_file),
            )
            await channel.send(page(), Recipient(DSL))
            await channel.send(page(step=2), Recipient(DSL))
            await channel.close()
            token_requests = [r for r in sink.requests if r.path.endswith("/token")]
    finally:
        controller.stop()
    assert len(room.received) == 2
    assert room.bearers == [(FROM, "Bearer invented-token-1")] * 2
    assert len(token_requests) == 1, "msal should reuse its cached token"
    form = parse_qs(token_requests[0].body.decode())
    assert form["scope"] == ["https://outlook.office365.com/.default"]
    assert form["grant_type"] == ["client_credentials"]


async def test_xoauth2_with_a_wrong_secret_is_not_retried(
    tls: Tls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SGALERT_TEST_CLIENT_SECRET", "wrong-secret")
    room = OAuthMailroom(tokens={"invented-token-1"})
    controller = LoopbackController(
        room, hostname="127.0.0.1", port=0, tls_context=server_context(tls), auth_required=True
    )
    controller.start()
    try:
        with HttpSink(tls=tls) as sink:
            entra(sink)
            channel = smtp_channel(
                controller.port,
                tmp_path,
                security="starttls",
                auth="xoauth2",
                tenant_id=TENANT,
                client_id=CLIENT_ID,
                client_secret_env="SGALERT_TEST_CLIENT_SECRET",
                authority_url=sink.base,
                ca_file=str(tls.ca_file),
            )
            with pytest.raises(DeliveryError, match="invalid_client") as caught:
                await channel.send(page(), Recipient(DSL))
            await channel.close()
    finally:
        controller.stop()
    assert caught.value.retryable is False
    assert "wrong-secret" not in str(caught.value)
    assert room.received == []


def xoauth2_channel(port: int, tmp_path: Path, authority_url: str, tls: Tls) -> smtp.SmtpNotifier:
    return smtp_channel(
        port,
        tmp_path,
        security="starttls",
        auth="xoauth2",
        tenant_id=TENANT,
        client_id=CLIENT_ID,
        client_secret_env="SGALERT_TEST_CLIENT_SECRET",
        authority_url=authority_url,
        ca_file=str(tls.ca_file),
    )


@pytest.mark.parametrize(
    ("failure", "said"),
    [
        # msal raises MsalServiceError for a 5xx (Retry-After: 0, or it would answer the retry
        # from its memory of the failure for 5 s) and ValueError for an answer not JSON.
        (Reply(500, {"Retry-After": "0"}, body={"error": "server_error"}), "failed (HTTP 500)"),
        (Reply(200, body="<html>An invented proxy page</html>"), "answer was not JSON"),
    ],
    ids=["500", "not-json"],
)
async def test_xoauth2_with_a_failing_authority_is_retried(
    tls: Tls,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    failure: Reply,
    said: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("SGALERT_TEST_CLIENT_SECRET", CLIENT_SECRET)
    room = OAuthMailroom(tokens={"invented-token-1"})
    controller = LoopbackController(
        room, hostname="127.0.0.1", port=0, tls_context=server_context(tls), auth_required=True
    )
    controller.start()
    try:
        with HttpSink(tls=tls) as sink:
            entra(sink, failure)
            channel = xoauth2_channel(controller.port, tmp_path, sink.base, tls)
            with pytest.raises(DeliveryError) as caught:
                await channel.send(page(), Recipient(DSL))
            await channel.send(page(), Recipient(DSL))  # the outbox's retry
            await channel.close()
    finally:
        controller.stop()
    error = caught.value
    assert error.retryable is True
    assert said in str(error)
    assert error.__context__ is None and error.__cause__ is None
    assert len(room.received) == 1
    everything = "\n".join([str(error), *traceback.format_exception(error), caplog.text])
    assert CLIENT_SECRET not in everything and "invented-token-1" not in everything


async def test_xoauth2_with_an_authority_that_is_down_is_retryable(
    tls: Tls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("SGALERT_TEST_CLIENT_SECRET", CLIENT_SECRET)
    channel = xoauth2_channel(free_port(), tmp_path, f"https://127.0.0.1:{free_port()}", tls)
    with pytest.raises(DeliveryError, match="sign-in authority unreachable") as caught:
        await channel.send(page(), Recipient(DSL))
    await channel.close()
    assert caught.value.retryable is True
    assert caught.value.__context__ is None
    assert CLIENT_SECRET not in "\n".join([*traceback.format_exception(caught.value), caplog.text])


# ----- SMTP configuration ---------------------------------------------------------------------


def test_smtp_config_errors_name_the_key_and_the_fix(tmp_path: Path) -> None:
    def error(**options: Any) -> str:
        base = {"host": "smtp.example.org", "from": FROM}
        with pytest.raises(ConfigError) as caught:
            smtp.create("mail", {**base, **options}, tmp_path)
        return str(caught.value)

    assert error(security="none").startswith("channels.mail.security:")
    assert "127.0.0.1" in error(security="none")
    assert "did you mean 'reply_to'" in error(replyto=REPLY)
    assert error(**{"from": "Safeguarding <x@example.org>"}).startswith("channels.mail.from:")
    assert "password_env" in error(username=FROM)
    assert error(port=0).startswith("channels.mail.port:")
    assert error(auth="xoauth2", tenant_id="common", client_id="x").startswith(
        "channels.mail.tenant_id:"
    )
    assert error(ca_file="missing.pem").startswith("channels.mail.ca_file:")


def test_smtp_xoauth2_takes_a_certificate_and_checks_the_app_registration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .graph_server import make_client_certificate

    pem, _ = make_client_certificate(tmp_path)
    base = {"host": "smtp.office365.com", "from": FROM, "auth": "xoauth2"}
    app = {"tenant_id": TENANT, "client_id": CLIENT_ID}
    channel = smtp.create("mail", {**base, **app, "certificate_file": pem.name}, tmp_path)
    assert channel.settings.oauth is not None
    credential = channel.settings.oauth.app.credential
    assert isinstance(credential, dict) and "BEGIN CERTIFICATE" in credential["public_certificate"]
    assert "PRIVATE KEY" not in repr(channel.settings)

    monkeypatch.setenv("SGALERT_TEST_CLIENT_SECRET", CLIENT_SECRET)
    secret = {"client_secret_env": "SGALERT_TEST_CLIENT_SECRET"}

    def error(**options: Any) -> str:
        with pytest.raises(ConfigError) as caught:
            smtp.create("mail", {**base, **app, **secret, **options}, tmp_path)
        return str(caught.value)

    assert error(certificate_file=pem.name).startswith("channels.mail.certificate_file:")
    assert error(certificate_thumbprint="AB" * 20).startswith(
        "channels.mail.certificate_thumbprint:"
    )
    assert error(authority_url="http://login.example.org").startswith(
        "channels.mail.authority_url:"
    )
    assert error(client_id="").startswith("channels.mail.client_id:")
    assert CLIENT_SECRET not in error(tenant_id="common")


def test_smtp_defaults(tmp_path: Path) -> None:
    settings = smtp.create("mail", {"host": "smtp.example.org", "from": FROM}, tmp_path).settings
    assert settings.security is smtp.Security.STARTTLS and settings.port == 587
    assert settings.timeout == 15.0 and settings.username is None


# ----- Teams Workflows webhook -------------------------------------------------------------------

SIG = "sig=InventedSecretSignature0123456789abcdef"


@pytest.fixture
def sink(tls: Tls) -> Iterator[HttpSink]:
    with HttpSink(tls=tls, default=Reply(202, {"x-ms-workflow-run-id": "08584123456789"})) as s:
        yield s


def webhook(sink: HttpSink) -> str:
    return sink.url(f"/workflows/abc123/triggers/manual/paths/invoke?api-version=1&{SIG}")


def teams_channel(
    url: str, tls: Tls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **options: Any
) -> teams.TeamsNotifier:
    monkeypatch.setenv("SGALERT_TEST_TEAMS_URL", url)
    base = {"url_env": "SGALERT_TEST_TEAMS_URL", "ca_file": str(tls.ca_file)}
    return teams.create("dsl-team", {**base, **options}, tmp_path)


async def test_the_card_is_a_valid_adaptive_card_without_personal_data(
    sink: HttpSink, tls: Tls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = teams_channel(webhook(sink), tls, tmp_path, monkeypatch)
    assert channel.per_person is False
    receipt = await channel.send(page(), Recipient("dsl-team"))
    await channel.close()

    assert receipt.queued_only is True
    assert receipt.detail == "HTTP 202 run 08584123456789"
    [request] = sink.requests
    assert request.method == "POST"
    assert request.header("Content-Type") == "application/json; charset=utf-8"
    assert len(request.body) < 28 * 1024
    assert_no_personal_data(request.body)
    payload = request.json()
    assert payload["type"] == "message"
    [attachment] = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["contentUrl"] is None
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    assert card["version"] in ("1.4", "1.5")
    title = card["body"][0]
    assert title["type"] == "TextBlock" and title["text"] == f"URGENT: {CASE['ref']}"
    [facts] = [block for block in card["body"] if block["type"] == "FactSet"]
    shown = {fact["title"]: fact["value"] for fact in facts["facts"]}
    assert shown == {
        "School": "Invented First School",
        "Source": "Operation Encompass notice",
        "Received": "Sun 22 Nov 2026 21:55 GMT",
        "Step": "1",
        "Reason": "new notice, not acknowledged after 10 minutes",
        "Deadline": "Mon 23 Nov 2026 08:00 GMT",
    }
    [action] = card["actions"]
    assert action["type"] == "Action.OpenUrl"
    url = action["url"]
    assert url.startswith(f"mailto:{REPLY}?subject=")
    assert " " not in url and "[" not in url and "]" not in url
    query = urlsplit(url).query
    assert query.startswith("subject=Re%3A%20%5Bsgalert%5D%20URGENT%3A%20")
    assert unquote(query.removeprefix("subject=")) == f"Re: {page().subject()}"
    assert TOKEN in unquote(url)


async def test_a_200_is_a_delivery_and_no_token_means_no_button(
    sink: HttpSink, tls: Tls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink.script(Reply(200))
    channel = teams_channel(webhook(sink), tls, tmp_path, monkeypatch)
    receipt = await channel.send(page(ack_token=None), Recipient("dsl-team"))
    assert receipt.queued_only is False and receipt.detail == "HTTP 200"
    card = sink.requests[0].json()["attachments"][0]["content"]
    assert "actions" not in card


async def test_throttling_and_server_errors_are_retried(
    sink: HttpSink, tls: Tls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink.script(Reply(429, {"Retry-After": "1"}), Reply(500), Reply(503, {"Retry-After": "7"}))
    channel = teams_channel(webhook(sink), tls, tmp_path, monkeypatch)
    outcomes: list[DeliveryError] = []
    for _ in range(3):
        with pytest.raises(DeliveryError) as caught:
            await channel.send(page(), Recipient("dsl-team"))
        outcomes.append(caught.value)
    receipt = await channel.send(page(), Recipient("dsl-team"))  # the sink's default: 202
    assert [(e.retryable, e.retry_after) for e in outcomes] == [
        (True, 1.0),
        (True, None),
        (True, 7.0),
    ]
    assert "HTTP 429" in str(outcomes[0])
    assert receipt.queued_only is True
    assert [r.status for r in sink.requests] == [429, 500, 503, 202]
    assert len({r.body for r in sink.requests}) == 1  # the same card every time


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 302])
async def test_client_errors_and_redirects_are_not_retried(
    sink: HttpSink, tls: Tls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    sink.script(Reply(status, {"Location": sink.url("/elsewhere"), "Retry-After": "5"}))
    channel = teams_channel(webhook(sink), tls, tmp_path, monkeypatch)
    with pytest.raises(DeliveryError, match=f"HTTP {status}") as caught:
        await channel.send(page(), Recipient("dsl-team"))
    assert caught.value.retryable is False and caught.value.retry_after is None
    assert len(sink.requests) == 1  # a redirect is not followed


async def test_a_card_over_28_kb_is_refused_before_sending(
    sink: HttpSink, tls: Tls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = teams_channel(webhook(sink), tls, tmp_path, monkeypatch)
    with pytest.raises(DeliveryError, match="over Teams' limit") as caught:
        await channel.send(page(reason="x" * 29_000), Recipient("dsl-team"))
    assert caught.value.retryable is False
    assert sink.requests == []


async def test_a_webhook_that_stalls_is_retried(
    sink: HttpSink, tls: Tls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink.script(Reply(202, delay=2.0))
    channel = teams_channel(webhook(sink), tls, tmp_path, monkeypatch, timeout=1)
    with pytest.raises(DeliveryError, match="in time") as caught:
        await channel.send(page(), Recipient("dsl-team"))
    assert caught.value.retryable is True


# The one reading of Retry-After (sgalert.routing.backoff), as Teams' answers carry it.
@pytest.mark.parametrize(("header", "wait"), ODD_RETRY_AFTER)
async def test_an_odd_retry_after_from_teams_is_read_the_one_way(
    sink: HttpSink,
    tls: Tls,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    header: str,
    wait: float | None,
) -> None:
    sink.script(Reply(429, {"Retry-After": header}))
    channel = teams_channel(webhook(sink), tls, tmp_path, monkeypatch)
    with pytest.raises(DeliveryError) as caught:
        await channel.send(page(), Recipient("dsl-team"))
    assert (caught.value.retryable, caught.value.retry_after) == (True, wait)


async def test_the_webhook_url_never_appears_in_errors_or_logs(
    tls: Tls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    failures: list[BaseException] = []
    with HttpSink(tls=tls) as sink:
        url = webhook(sink)
        channel = teams_channel(url, tls, tmp_path, monkeypatch)
        for status in (400, 404, 500, 429, 301):
            sink.script(Reply(status, {"Location": url}, body={"error": {"message": url}}))
            with pytest.raises(DeliveryError) as caught:
                await channel.send(page(), Recipient("dsl-team"))
            failures.append(caught.value)
        await channel.send(page(), Recipient("dsl-team"))
        repr_text = repr(channel) + repr(channel.settings)
    # the sink is gone: the address now refuses connections
    with pytest.raises(DeliveryError, match="could not be reached") as down:
        await channel.send(page(), Recipient("dsl-team"))
    failures.append(down.value)
    # a certificate nobody trusts
    with HttpSink(tls=make_tls(tmp_path / "other-ca", name="untrusted CA")) as stranger:
        untrusted = teams_channel(webhook(stranger), tls, tmp_path, monkeypatch)
        with pytest.raises(DeliveryError, match="not trusted") as refused:
            await untrusted.send(page(), Recipient("dsl-team"))
        failures.append(refused.value)
    # a URL that config refuses
    monkeypatch.setenv("SGALERT_TEST_TEAMS_URL", url.replace("https://", "ftp://"))
    with pytest.raises(ConfigError) as config:
        teams.create("dsl-team", {"url_env": "SGALERT_TEST_TEAMS_URL"}, tmp_path)
    failures.append(config.value)

    assert all(exc.__cause__ is None and exc.__context__ is None for exc in failures[:-1])
    texts = [repr_text, caplog.text]
    for exc in failures:
        texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    for text in texts:
        assert "InventedSecretSignature" not in text
        assert "/workflows/" not in text


def test_teams_config_needs_a_secret_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"^channels\.dsl-team: no url given"):
        teams.create("dsl-team", {}, tmp_path)
    secret = tmp_path / "teams-url"
    secret.write_text("https://prod-01.uksouth.logic.azure.com/workflows/x?sig=abc\n")
    secret.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        teams.create("dsl-team", {"url_file": str(secret)}, tmp_path)
    secret.chmod(0o600)
    channel = teams.create("dsl-team", {"url_file": "teams-url"}, tmp_path)
    assert channel.settings.url.endswith("sig=abc")
    monkeypatch.setenv("SGALERT_TEST_TEAMS_URL", "http://prod-01.uksouth.logic.azure.com/x")
    with pytest.raises(ConfigError, match=r"^channels\.dsl-team\.url_env: .* https"):
        teams.create("dsl-team", {"url_env": "SGALERT_TEST_TEAMS_URL"}, tmp_path)


def test_a_teams_ca_file_without_certificates_is_refused_at_config_time(tmp_path: Path) -> None:
    """Found at ``config check``, not at the first page the channel fails to send."""
    secret = tmp_path / "teams-url"
    secret.write_text("https://prod-01.uksouth.logic.azure.com/workflows/x?sig=abc\n")
    secret.chmod(0o600)
    (tmp_path / "empty.pem").write_text("no certificate here\n")
    refused = r"^channels\.dsl-team\.ca_file: .* no usable certificate"
    with pytest.raises(ConfigError, match=refused):
        teams.create("dsl-team", {"url_file": "teams-url", "ca_file": "empty.pem"}, tmp_path)


# ----- Maildrop ----------------------------------------------------------------------------------


def files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.exists() else []


async def test_maildrop_writes_one_rfc822_file_per_page(tmp_path: Path) -> None:
    channel = maildrop.create("demo", {"path": "outbox", "reply_to": REPLY}, tmp_path)
    notifier: Notifier = channel
    assert notifier.per_person is True
    receipt = await channel.send(page(), Recipient(DSL))
    await channel.close()

    [written] = files(tmp_path / "outbox" / "new")
    assert receipt.detail == f"written {written.name}"
    assert files(tmp_path / "outbox" / "tmp") == []
    assert written.stat().st_mode & 0o777 == 0o600
    raw = written.read_bytes()
    assert b"\r\n" not in raw
    assert_no_personal_data(raw)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["To"] == DSL and message["Reply-To"] == REPLY
    assert message["X-Sgalert-Idempotency-Key"] == page().idempotency_key
    assert TOKEN in message["Subject"]
    assert isinstance(message, EmailMessage)
    body = message.get_content()
    assert CASE["ref"] in body and TOKEN in body


async def test_maildrop_is_idempotent_on_the_key(tmp_path: Path) -> None:
    channel = maildrop.create("demo", {"path": str(tmp_path / "drop")}, tmp_path)
    new, cur = tmp_path / "drop" / "new", tmp_path / "drop" / "cur"
    first = await channel.send(page(), Recipient(DSL))
    again = await channel.send(page(), Recipient(DSL))
    assert len(files(new)) == 1
    assert again.detail == first.detail.replace("written", "already written")

    # a mail client read it: it moved to cur/ with flags, and still counts as delivered
    [only] = files(new)
    os.rename(only, cur / f"{only.name}:2,S")
    await channel.send(page(), Recipient(DSL))
    assert files(new) == [] and len(files(cur)) == 1

    await channel.send(page(), Recipient("deputy@school.example.org"))  # another person
    await channel.send(page(idempotency_key="page:ENC-2026-0042:step-2"), Recipient(DSL))
    assert len(files(new)) == 2


async def test_maildrop_racing_attempts_leave_one_file(tmp_path: Path) -> None:
    channel = maildrop.create("demo", {"path": "outbox"}, tmp_path)
    receipts = await asyncio.gather(*(channel.send(page(), Recipient(DSL)) for _ in range(12)))
    assert len(files(tmp_path / "outbox" / "new")) == 1
    assert files(tmp_path / "outbox" / "tmp") == []
    assert sum(r.detail.startswith("written") for r in receipts) == 1


async def test_maildrop_refuses_an_unsafe_recipient(tmp_path: Path) -> None:
    channel = maildrop.create("demo", {"path": "outbox"}, tmp_path)
    with pytest.raises(DeliveryError) as caught:
        await channel.send(page(), Recipient("dsl@school.example.org\r\nBcc: x@example.org"))
    assert caught.value.retryable is False
    assert files(tmp_path / "outbox" / "new") == []


def test_maildrop_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^channels\.demo\.path:"):
        maildrop.create("demo", {}, tmp_path)
    with pytest.raises(ConfigError, match=r"^channels\.demo\.from:"):
        maildrop.create("demo", {"path": "x", "from": "not an address"}, tmp_path)
    with pytest.raises(ConfigError, match=r"^channels\.demo\.folder:"):
        maildrop.create("demo", {"folder": "x"}, tmp_path)


def test_every_adapter_is_a_notifier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SGALERT_TEST_TEAMS_URL", "https://example.org/hook?sig=x")
    notifiers: list[Notifier] = [
        smtp.create("mail", {"host": "smtp.example.org", "from": FROM}, tmp_path),
        teams.create("chat", {"url_env": "SGALERT_TEST_TEAMS_URL"}, tmp_path),
        maildrop.create("demo", {"path": "outbox"}, tmp_path),
    ]
    assert [(n.name, n.per_person) for n in notifiers] == [
        ("mail", True),
        ("chat", False),
        ("demo", True),
    ]


@pytest.mark.parametrize(
    ("kind", "factory"),
    [("smtp", smtp.create), ("teams-workflow", teams.create), ("maildrop", maildrop.create)],
)
def test_the_core_finds_each_adapter_by_its_kind(kind: str, factory: object) -> None:
    if kind not in {entry.name for entry in entry_points(group=NOTIFIER_ENTRY_POINTS)}:
        pytest.skip(f"{kind!r} is not registered yet: add it to pyproject.toml and reinstall")
    assert notifier_factory(kind) is factory
