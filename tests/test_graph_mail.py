"""The Graph sendMail notifier against a loopback Entra ID and Graph, with the real msal.

A page is built from an invented case that also holds personal data; every test that looks at
what left sgalert checks that none of it did, and that neither the client secret nor an access
token ever shows in an error or a log line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import threading
import traceback
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import certifi
import pytest
from cryptography.hazmat.primitives import serialization

from integrations import graph_mail
from integrations.graph_mail import GraphMailNotifier, build_payload, parse_settings
from sgalert.engine.serve import Engine
from sgalert.errors import ConfigError
from sgalert.model import Source
from sgalert.ports import (
    NOTIFIER_ENTRY_POINTS,
    DeliveryError,
    Notification,
    Notifier,
    PageSource,
    Receipt,
    Recipient,
    Urgency,
    notifier_factory,
)
from sgalert.routing.escalation import Plan
from sgalert.rules.policy import DEFAULT_POLICIES, Policy, Step

from .conftest import Team, encompass_case
from .engine_helpers import VirtualClock
from .graph_server import (
    CLIENT_ID,
    CLIENT_SECRET,
    SENDER,
    TENANT,
    GraphServer,
    SentMail,
    Tls,
    make_client_certificate,
    make_tls,
)
from .test_backoff import ODD_RETRY_AFTER

CHANNEL = "graph-email"
SECRET_ENV = "SGALERT_TEST_GRAPH_MAIL_SECRET"
DSL = "dsl@school.example.org"
REPLY = "sgalert-ack@school.example.org"
TOKEN = "ACK-7F3A9C0D00A1B2C3"
CASE_REF = "ENC-2026-0042"
# What sgalert holds about the case, sealed: none of it may leave in a page.
PERSONAL = [
    "Florence",
    "Testchild",
    "2017-03-14",
    "14/03/2017",
    "HC/99871/26",
    "Imaginary Row",
    "Morwenna",
]


def page(**changes: Any) -> Notification:
    """The page about the invented case, from its metadata only, as the engine builds it."""
    notification = Notification(
        idempotency_key=f"page:{CASE_REF}:step-1",
        school="Invented First School",
        case_ref=CASE_REF,
        source=PageSource.ENCOMPASS,
        received_at=datetime(2026, 11, 22, 21, 55, tzinfo=UTC),
        urgency=Urgency.URGENT,
        step=1,
        reason="new notice, not acknowledged after 10 minutes",
        ack_token=TOKEN,
        reply_address=REPLY,
        due_at=datetime(2026, 11, 23, 8, 0, tzinfo=UTC),
    )
    return replace(notification, **changes)


def assert_no_personal_data(text: str) -> None:
    for value in PERSONAL:
        assert value not in text, f"{value!r} left sgalert"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("graph-mail-tls"))


@pytest.fixture
def graph(tls: Tls) -> Iterator[GraphServer]:
    server = GraphServer(tls).start()
    try:
        yield server
    finally:
        server.stop()
    left = [
        t.name for t in threading.enumerate() if t.name == "graph-server" or "request" in t.name
    ]
    assert left == [], f"server threads still running: {left}"


@pytest.fixture(autouse=True)
def client_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, CLIENT_SECRET)


def options(
    graph: GraphServer | None = None, tls: Tls | None = None, **changes: Any
) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "sender": SENDER,
        "client_secret_env": SECRET_ENV,
    }
    if graph is not None:
        settings["graph_url"] = graph.graph_url
        settings["authority_url"] = graph.authority_url
    if tls is not None:
        settings["ca_file"] = str(tls.ca_file)
    settings.update(changes)
    return {k: v for k, v in settings.items() if v is not None}


def notifier(
    graph: GraphServer, tls: Tls, root: Path | None = None, **changes: Any
) -> GraphMailNotifier:
    return graph_mail.create(CHANNEL, options(graph, tls, **changes), root or Path("."))


async def send(
    graph: GraphServer, tls: Tls, notification: Notification | None = None, **changes: Any
) -> Receipt:
    channel = notifier(graph, tls, **changes)
    try:
        return await channel.send(notification or page(), Recipient(DSL, person_id="p-1"))
    finally:
        await channel.close()


async def refused(
    graph: GraphServer, tls: Tls, notification: Notification | None = None, **changes: Any
) -> DeliveryError:
    with pytest.raises(DeliveryError) as raised:
        await send(graph, tls, notification, **changes)
    return raised.value


def only(graph: GraphServer) -> SentMail:
    (mail,) = graph.sent
    return mail


def everything_said(error: BaseException, caplog: pytest.LogCaptureFixture) -> str:
    """All an operator could ever see of a failure: the message, the repr, the whole chain
    as a traceback prints it, and every log line at DEBUG."""
    return "\n".join([str(error), repr(error), *traceback.format_exception(error), caplog.text])


# ----- the page on the wire -------------------------------------------------------------------


async def test_a_page_arrives_in_the_documented_shape_without_personal_data(
    graph: GraphServer, tls: Tls
) -> None:
    receipt = await send(graph, tls)

    mail = only(graph)
    assert mail.sender == SENDER
    assert mail.status == 202
    assert mail.headers["Content-Type"].startswith("application/json")
    assert mail.headers["Authorization"] == f"Bearer {graph.issued[0]}"
    notification = page()
    assert mail.payload == {
        "message": {
            "subject": notification.subject(),
            "body": {"contentType": "Text", "content": notification.body()},
            "toRecipients": [{"emailAddress": {"address": DSL}}],
            "replyTo": [{"emailAddress": {"address": REPLY}}],
            "internetMessageHeaders": [
                {"name": "X-Sgalert-Idempotency-Key", "value": f"page:{CASE_REF}:step-1"},
                {"name": "X-Auto-Response-Suppress", "value": "All"},
            ],
        },
        "saveToSentItems": False,
    }
    message = mail.payload["message"]
    assert CASE_REF in message["subject"] and TOKEN in message["subject"]
    assert CASE_REF in message["body"]["content"] and TOKEN in message["body"]["content"]
    assert_no_personal_data(repr(mail.payload))
    assert [(e.kind, e.status) for e in graph.kinds("discovery", "token", "send-mail")] == [
        ("discovery", 0),
        ("token", 200),
        ("send-mail", 202),
    ]

    # 202 Accepted means Exchange queued it, not that anyone has it yet.
    assert receipt.queued_only is True
    assert receipt.channel == CHANNEL
    assert receipt.detail == f"HTTP 202 queued by Exchange Online, request-id {mail.request_id}"


async def test_the_token_is_cached_between_pages(graph: GraphServer, tls: Tls) -> None:
    channel = notifier(graph, tls)
    try:
        for step in (1, 2, 3):
            await channel.send(page(idempotency_key=f"page:{CASE_REF}:step-{step}"), Recipient(DSL))
    finally:
        await channel.close()
    assert len(graph.accepted()) == 3
    assert len(graph.issued) == 1
    keys = [m.payload["message"]["internetMessageHeaders"][0]["value"] for m in graph.sent]
    assert keys == [f"page:{CASE_REF}:step-{n}" for n in (1, 2, 3)]


async def test_reply_to_comes_from_the_page_then_the_channel(graph: GraphServer, tls: Tls) -> None:
    await send(graph, tls, reply_to="channel-ack@school.example.org")
    await send(graph, tls, page(reply_address=None), reply_to="channel-ack@school.example.org")
    await send(graph, tls, page(reply_address=None, ack_token=None))
    first, second, third = (m.payload["message"] for m in graph.accepted())
    assert first["replyTo"] == [{"emailAddress": {"address": REPLY}}]
    assert second["replyTo"] == [{"emailAddress": {"address": "channel-ack@school.example.org"}}]
    assert "replyTo" not in third


async def test_save_to_sent_items_when_asked(graph: GraphServer, tls: Tls) -> None:
    await send(graph, tls, save_to_sent_items=True)
    assert only(graph).payload["saveToSentItems"] is True


async def test_a_school_name_outside_ascii_arrives_intact(graph: GraphServer, tls: Tls) -> None:
    await send(graph, tls, page(school="Ysgol Gynradd Llanfair Pwllgwyngyll ŵ ŷ"))
    assert (
        "Ysgol Gynradd Llanfair Pwllgwyngyll ŵ ŷ"
        in (only(graph).payload["message"]["body"]["content"])
    )


# ----- what Graph answers ---------------------------------------------------------------------


async def test_throttling_is_retryable_with_retry_after(graph: GraphServer, tls: Tls) -> None:
    graph.fail("send-mail", 429, retry_after="7", code="ApplicationThrottled")
    error = await refused(graph, tls)
    assert error.retryable is True
    assert error.retry_after == 7.0
    assert "429 ApplicationThrottled" in str(error)
    assert graph.accepted() == []


@pytest.mark.parametrize("status", [503, 504])
async def test_busy_answers_are_retryable_with_retry_after(
    graph: GraphServer, tls: Tls, status: int
) -> None:
    graph.fail("send-mail", status, retry_after="12", code="ServiceNotAvailable")
    error = await refused(graph, tls)
    assert (error.retryable, error.retry_after) == (True, 12.0)


async def test_a_server_error_is_retryable_without_a_wait(graph: GraphServer, tls: Tls) -> None:
    graph.fail("send-mail", 500, code="InternalServerError")
    error = await refused(graph, tls)
    assert (error.retryable, error.retry_after) == (True, None)


async def test_missing_mail_send_permission_is_not_retried_and_says_so(
    graph: GraphServer, tls: Tls
) -> None:
    graph.mail_send = False
    error = await refused(graph, tls)
    assert error.retryable is False
    assert "HTTP 403 ErrorAccessDenied" in str(error)
    assert "Mail.Send" in str(error)
    assert SENDER in str(error)
    assert "request-id" in str(error)


async def test_an_unknown_sender_is_not_retried(graph: GraphServer, tls: Tls) -> None:
    error = await refused(graph, tls, sender="nobody@school.example.org")
    assert error.retryable is False
    assert "HTTP 404 ErrorInvalidUser" in str(error)
    assert "nobody@school.example.org" in str(error)


async def test_a_bad_request_is_not_retried(graph: GraphServer, tls: Tls) -> None:
    graph.fail("send-mail", 400, code="ErrorInvalidRecipients")
    error = await refused(graph, tls)
    assert error.retryable is False
    assert "HTTP 400 ErrorInvalidRecipients" in str(error)


async def test_an_expired_token_is_renewed_once(graph: GraphServer, tls: Tls) -> None:
    channel = notifier(graph, tls)
    try:
        await channel.send(page(), Recipient(DSL))
        graph.revoke_tokens()
        receipt = await channel.send(page(idempotency_key="page:x:step-2"), Recipient(DSL))
    finally:
        await channel.close()
    assert receipt.queued_only
    assert [e.status for e in graph.kinds("send-mail")] == [202, 401, 202]
    assert len(graph.issued) == 2
    assert len(graph.accepted()) == 2


async def test_a_token_refused_twice_is_retryable(
    graph: GraphServer, tls: Tls, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    graph.fail("send-mail", 401, times=2, code="InvalidAuthenticationToken")
    error = await refused(graph, tls)
    assert error.retryable is True
    assert "401 InvalidAuthenticationToken" in str(error)
    assert [e.status for e in graph.kinds("send-mail")] == [401, 401]
    assert len(graph.issued) == 2  # one fresh sign-in, not a loop
    said = everything_said(error, caplog)
    assert all(token not in said for token in graph.issued)
    assert CLIENT_SECRET not in said


async def test_a_graph_that_stalls_is_retryable(graph: GraphServer, tls: Tls) -> None:
    graph.fail("send-mail", None, delay=1.6)
    error = await refused(graph, tls, timeout=1)
    assert error.retryable is True
    assert "did not answer in time" in str(error)
    # sendMail has no idempotency: Graph may still take the page after we gave up, so the
    # outbox's retry can deliver a second copy (with the same idempotency header).
    graph.stop()
    assert len(graph.accepted()) == 1


async def test_a_graph_that_is_down_is_retryable(graph: GraphServer, tls: Tls) -> None:
    channel = notifier(graph, tls)
    await channel.send(page(), Recipient(DSL))  # signed in; now Graph goes away
    graph.stop()
    try:
        with pytest.raises(DeliveryError) as raised:
            await channel.send(page(), Recipient(DSL))
    finally:
        await channel.close()
    assert raised.value.retryable is True
    assert "unreachable" in str(raised.value)


async def test_a_failing_authority_is_retryable(graph: GraphServer, tls: Tls) -> None:
    # msal raises MsalServiceError (not an error dict) when the token endpoint answers 5xx.
    graph.fail("token", 503, times=5)
    error = await refused(graph, tls)
    assert error.retryable is True
    assert "sign-in authority failed" in str(error)
    assert graph.kinds("send-mail") == []


async def test_an_authority_answering_something_not_json_is_retryable(
    graph: GraphServer, tls: Tls, caplog: pytest.LogCaptureFixture
) -> None:
    # msal raises ValueError (json.JSONDecodeError) for a token answer that is not JSON.
    caplog.set_level(logging.DEBUG)
    graph.fail("token", 200, body=NOT_JSON)
    error = await refused(graph, tls)
    assert error.retryable is True
    assert "answer was not JSON" in str(error)
    assert error.__context__ is None and error.__cause__ is None
    assert CLIENT_SECRET not in everything_said(error, caplog)
    assert graph.kinds("send-mail") == []


async def test_an_authority_busy_with_retry_after_passes_it_on(
    graph: GraphServer, tls: Tls
) -> None:
    graph.fail("token", 503, retry_after="120")
    error = await refused(graph, tls)
    assert error.retryable is True
    assert "sign-in authority failed (HTTP 503)" in str(error)
    assert error.retry_after == 120


# The one reading of Retry-After (sgalert.routing.backoff) from Graph and from the sign-in
# authority alike: before, both read "nan" as "retry at once" and Entra ignored a date.
@pytest.mark.parametrize(("header", "wait"), ODD_RETRY_AFTER)
async def test_an_odd_retry_after_from_graph_is_read_the_one_way(
    graph: GraphServer, tls: Tls, header: str, wait: float | None
) -> None:
    graph.fail("send-mail", 429, retry_after=header, code="ApplicationThrottled")
    error = await refused(graph, tls)
    assert (error.retryable, error.retry_after) == (True, wait)


@pytest.mark.parametrize(("header", "wait"), ODD_RETRY_AFTER)
async def test_an_odd_retry_after_from_the_authority_is_read_the_one_way(
    graph: GraphServer, tls: Tls, header: str, wait: float | None
) -> None:
    graph.fail("token", 503, retry_after=header)
    error = await refused(graph, tls)
    assert (error.retryable, error.retry_after) == (True, wait)


async def test_the_authority_may_give_its_retry_after_as_a_date(
    graph: GraphServer, tls: Tls
) -> None:
    graph.fail(
        "token",
        503,
        retry_after=format_datetime(datetime.now(UTC) + timedelta(minutes=2), usegmt=True),
    )
    error = await refused(graph, tls)
    assert error.retry_after is not None and 100 < error.retry_after <= 120


async def test_an_unreachable_authority_is_retryable(graph: GraphServer, tls: Tls) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"https://127.0.0.1:{probe.getsockname()[1]}"
    error = await refused(graph, tls, authority_url=closed)
    assert error.retryable is True
    assert "sign-in authority unreachable" in str(error)
    assert graph.events == []


async def test_an_untrusted_certificate_is_not_retried(graph: GraphServer, tls: Tls) -> None:
    error = await refused(graph, tls, ca_file=certifi.where())
    assert error.retryable is False
    assert "TLS certificate is not trusted" in str(error)


async def test_ca_file_holds_despite_requests_ca_bundle(
    graph: GraphServer, tls: Tls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    monkeypatch.setenv("CURL_CA_BUNDLE", certifi.where())
    receipt = await send(graph, tls)
    assert receipt.queued_only


# ----- the sign-in authority failing, through the outbox ----------------------------------------

NOT_JSON = b"<html><body>Service Unavailable (an invented proxy page)</body></html>"


def email_only(team: Team) -> VirtualClock:
    """Page the on-duty DSL by email only (no fallback channel), on a clock moved by hand."""
    clock = VirtualClock()
    assert team.service.plan is not None
    team.service._clock = clock
    policy = Policy(
        steps=(Step("on-duty", ("email",), 0),),
        repeat_target="team",
        repeat_channels=("email",),
        repeat_minutes=600,
    )
    team.service.plan = Plan(
        school="Example First School",
        calendar=team.service.plan.calendar,
        policies={**DEFAULT_POLICIES, Source.ENCOMPASS: policy},
        channels=("email",),
        per_person_channels=frozenset({"email"}),
    )
    return clock


@pytest.mark.parametrize("failure", ["500", "not-json", "down"])
async def test_a_failed_sign_in_is_retried_by_the_outbox_not_lost(
    team: Team,
    graph: GraphServer,
    tls: Tls,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    failure: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    clock = email_only(team)
    channel = graph_mail.create("email", options(graph, tls), tmp_path)
    engine = Engine(team.service, tmp_path, notifiers={"email": channel}, clock=clock, watch=False)
    (stored,) = await team.service.create_cases([encompass_case("Ada Invented")])
    await engine.tick_timers()
    if failure == "500":
        graph.fail("token", 500, retry_after="0")
    elif failure == "not-json":
        graph.fail("token", 200, body=NOT_JSON)
    else:
        graph.stop()

    await engine.sender.send_due()
    rows = await team.service.store.fetchall("SELECT state, attempts, last_error FROM outbox")
    ((state, attempts, last_error),) = rows
    assert (state, attempts) == ("pending", 1), last_error
    assert "sign-in" in last_error
    assert graph.accepted() == []

    if failure == "down":
        graph.start()  # the authority is back, on the same port
    clock.advance(minutes=1)
    await engine.sender.send_due()
    await channel.close()

    (mail,) = graph.accepted()
    assert stored.ref in mail.payload["message"]["subject"]
    rows = await team.service.store.fetchall("SELECT state, attempts FROM outbox")
    assert [tuple(row) for row in rows] == [("delivered", 2)]
    actions = [
        (row[0], json.loads(row[1]).get("channel"))
        for row in await team.service.store.fetchall(
            "SELECT action, detail FROM audit WHERE action LIKE 'notification-%' ORDER BY seq"
        )
    ]
    assert actions == [("notification-failed", "email"), ("notification-delivered", "email")]
    said = caplog.text + last_error
    assert CLIENT_SECRET not in said
    assert all(token not in said for token in graph.issued)


# ----- refused before any call ----------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "dsl@school.example.org\r\nBcc: everyone@example.org",
        "dsl@school.example.org\n",
        "Florence <dsl@school.example.org>",
        "dsl@localhost",
        "",
        "dsl@school.example.org,other@example.org",
        "dsl@schööl.example.org",
    ],
)
async def test_a_bad_recipient_is_refused_without_any_http_call(
    graph: GraphServer, tls: Tls, address: str
) -> None:
    channel = notifier(graph, tls)
    try:
        with pytest.raises(DeliveryError) as raised:
            await channel.send(page(), Recipient(address))
    finally:
        await channel.close()
    assert raised.value.retryable is False
    assert "not a plain address" in str(raised.value)
    assert "\r" not in str(raised.value) and "\n" not in str(raised.value)
    assert graph.events == []  # not even a sign-in


async def test_a_bad_reply_address_on_the_page_is_refused_without_any_call(
    graph: GraphServer, tls: Tls
) -> None:
    error = await refused(graph, tls, page(reply_address="ack@school.example.org\r\nX-Evil: 1"))
    assert error.retryable is False
    assert graph.events == []


def test_build_payload_refuses_unsafe_text() -> None:
    with pytest.raises(DeliveryError, match="idempotency key"):
        build_payload(page(idempotency_key="page:1\r\nX-Evil: yes"), DSL)
    with pytest.raises(DeliveryError, match="subject"):
        build_payload(page(case_ref="ENC-1\nBcc: x@example.org"), DSL)
    with pytest.raises(DeliveryError, match="printable ASCII"):
        build_payload(page(idempotency_key="page:ünïcode"), DSL)


# ----- secrets ----------------------------------------------------------------------------------


async def test_a_wrong_secret_is_not_retried_and_never_shown(
    graph: GraphServer,
    tls: Tls,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(SECRET_ENV, "an-invented-wrong-secret")
    error = await refused(graph, tls)
    assert error.retryable is False
    assert "invalid_client" in str(error)
    assert graph.kinds("send-mail") == []
    said = everything_said(error, caplog)
    assert "an-invented-wrong-secret" not in said and CLIENT_SECRET not in said
    assert "AADSTS" not in said  # the authority's own words stay out too


async def test_the_secret_and_token_never_appear_in_errors_or_logs(
    graph: GraphServer, tls: Tls, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    graph.fail("send-mail", 403, code="ErrorAccessDenied")
    graph.fail("send-mail", 500)
    channel = notifier(graph, tls)
    errors: list[DeliveryError] = []
    try:
        for _ in range(2):
            with pytest.raises(DeliveryError) as raised:
                await channel.send(page(), Recipient(DSL))
            errors.append(raised.value)
        graph.stop()
        with pytest.raises(DeliveryError) as raised:
            await channel.send(page(), Recipient(DSL))
        errors.append(raised.value)
    finally:
        await channel.close()
    assert graph.issued
    for error in errors:
        assert error.__context__ is None and error.__cause__ is None
        said = everything_said(error, caplog)
        assert CLIENT_SECRET not in said
        assert all(token not in said for token in graph.issued)
        assert_no_personal_data(said)
    assert CLIENT_SECRET not in repr(channel) and CLIENT_SECRET not in repr(channel.settings)


# ----- certificate credential -------------------------------------------------------------------


@pytest.mark.parametrize("with_thumbprint", [False, True], ids=["sha256-from-cert", "sha1"])
async def test_certificate_credential(
    graph: GraphServer, tls: Tls, tmp_path: Path, with_thumbprint: bool
) -> None:
    pem, certificate = make_client_certificate(tmp_path)
    graph.client_certificate = certificate
    der = certificate.public_bytes(serialization.Encoding.DER)
    thumbprint = hashlib.sha1(der).hexdigest().upper() if with_thumbprint else None  # noqa: S324
    channel = notifier(
        graph,
        tls,
        root=tmp_path,
        client_secret_env=None,
        certificate_file=pem.name,
        certificate_thumbprint=thumbprint,
    )
    try:
        receipt = await channel.send(page(), Recipient(DSL))
    finally:
        await channel.close()
    assert receipt.queued_only
    (header,) = graph.assertion_headers
    assert ("x5t" in header) is with_thumbprint and ("x5t#S256" in header) is not with_thumbprint
    assert len(graph.accepted()) == 1


# ----- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "key", "fix"),
    [
        ({"tenant_id": None}, "tenant_id", "tenant_id ="),
        ({"tenant_id": "organizations"}, "tenant_id", "directory (tenant) id"),
        ({"sender": None}, "sender", "sender ="),
        ({"sender": "Safeguarding <s@school.example.org>"}, "sender", "not a plain email"),
        ({"reply_to": "ack@school.example.org\r\nBcc: x@y.org"}, "reply_to", "one line"),
        ({"reply_to": "not-an-address"}, "reply_to", "not a plain email"),
        ({"client_secret_env": None}, "client_secret_env", "certificate_file"),
        ({"client_secret_env": "SGALERT_TEST_UNSET"}, "client_secret_env", "is not set"),
        ({"certificate_file": "app.pem"}, "certificate_file", "keep one"),
        ({"certificate_thumbprint": "AB" * 20}, "certificate_thumbprint", "certificate_file"),
        ({"save_to_sent_items": "no"}, "save_to_sent_items", "true or false"),
        ({"timeout": 0}, "timeout", "timeout = 15"),
        ({"timeout": True}, "timeout", "timeout = 15"),
        ({"graph_url": "http://graph.example.org/v1.0"}, "graph_url", "https"),
        ({"authority_url": "login.example.org"}, "authority_url", "https"),
        ({"ca_file": "missing.pem"}, "ca_file", "PEM bundle"),
        ({"from": "x@example.org"}, "from", "graph-mail options"),
        ({"save_to_sent": True}, "save_to_sent", "did you mean 'save_to_sent_items'?"),
    ],
)
def test_bad_options_name_the_key_and_the_fix(
    tmp_path: Path, changes: dict[str, Any], key: str, fix: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_settings(CHANNEL, options(**changes), tmp_path)
    message = str(raised.value)
    assert message.startswith(f"channels.{CHANNEL}.{key}:"), message
    assert fix in message
    assert CLIENT_SECRET not in message


def test_a_ca_file_without_certificates_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"ca_file: .* holds no usable certificate"):
        parse_settings(CHANNEL, options(ca_file="empty.pem"), tmp_path)


def test_defaults_and_no_secret_in_repr(tmp_path: Path) -> None:
    settings = parse_settings(CHANNEL, options(), tmp_path)
    assert settings.sender == SENDER
    assert settings.reply_to is None
    assert settings.save_to_sent_items is False
    assert settings.timeout == 15.0
    assert settings.graph_url == "https://graph.microsoft.com/v1.0"
    assert settings.scope == "https://graph.microsoft.com/.default"
    assert settings.authority_url == "https://login.microsoftonline.com"
    assert settings.send_url == f"https://graph.microsoft.com/v1.0/users/{SENDER}/sendMail"
    assert settings.credential == CLIENT_SECRET
    assert CLIENT_SECRET not in repr(settings)


def test_a_sovereign_cloud_gets_its_own_scope(tmp_path: Path) -> None:
    settings = parse_settings(
        CHANNEL, options(graph_url="https://graph.microsoft.us/v1.0/"), tmp_path
    )
    assert settings.graph_url == "https://graph.microsoft.us/v1.0"
    assert settings.scope == "https://graph.microsoft.us/.default"


def test_it_is_a_per_person_notifier(tmp_path: Path) -> None:
    channel: Notifier = graph_mail.create(CHANNEL, options(), tmp_path)
    assert (channel.name, channel.per_person) == (CHANNEL, True)


def test_the_core_finds_it_by_its_kind() -> None:
    if "graph-mail" not in {entry.name for entry in entry_points(group=NOTIFIER_ENTRY_POINTS)}:
        pytest.skip(
            'the "graph-mail" entry point is not registered: add graph-mail ='
            ' "integrations.graph_mail:create" to [project.entry-points."sgalert.notifiers"]'
            " in pyproject.toml and reinstall (uv pip install -e .)"
        )
    assert notifier_factory("graph-mail") is graph_mail.create


async def test_a_page_through_the_core_factory(graph: GraphServer, tls: Tls) -> None:
    if "graph-mail" not in {entry.name for entry in entry_points(group=NOTIFIER_ENTRY_POINTS)}:
        pytest.skip('the "graph-mail" entry point is not registered yet')
    channel = notifier_factory("graph-mail")(CHANNEL, options(graph, tls), Path("."))
    try:
        receipt = await channel.send(page(), Recipient(DSL))
    finally:
        await channel.close()
    assert receipt.queued_only
    assert only(graph).payload["message"]["toRecipients"] == [{"emailAddress": {"address": DSL}}]
