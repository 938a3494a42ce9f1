"""The IMAP inbox signing in with XOAUTH2 to a real Dovecot, with a token from the real msal.

Exchange Online is stood in for by two loopback servers: :class:`GraphServer` plays Entra ID
(tenant discovery and the client-credentials token endpoint, over TLS with the same test CA as
Dovecot), and an :class:`HttpSink` plays the token introspection endpoint (RFC 7662) that
Dovecot's ``oauth2`` passdb asks about every bearer token. The introspection endpoint calls a
token active only if the loopback Entra issued it and has not revoked it, so Dovecot accepts
exactly the tokens msal got from the authority the inbox is configured with.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from integrations.entra import OUTLOOK_SCOPE
from integrations.imap import ImapInbox, create
from sgalert.config import SourceConfig
from sgalert.errors import ConfigError
from sgalert.model import Source

from .conftest import Team
from .dovecot import Dovecot, require_dovecot
from .graph_server import CLIENT_ID, CLIENT_SECRET, TENANT, GraphServer, Tls
from .http_sink import HttpSink, Reply, Request
from .imap_helpers import notice, wait_for
from .test_imap_security import RecordingHealth, count_cases, logged_in, seen, watching

pytestmark = pytest.mark.slow

SECRET_ENV = "SGALERT_TEST_IMAP_CLIENT_SECRET"
LOGIN_REFUSED = "login refused: check the username and secret"


@dataclass
class Introspection:
    """RFC 7662 token introspection, as Dovecot's oauth2 passdb calls it (``POST token=...``)."""

    entra: GraphServer
    username: str
    refuse_all: bool = False  # every token is inactive, as if expired or revoked
    asked: list[str] = field(default_factory=list)

    def __call__(self, request: Request) -> Reply:
        form = parse_qs(request.body.decode())
        token = (form.get("token") or [""])[0]
        self.asked.append(token)
        if self.refuse_all or not self.entra.active(token):
            return Reply(200, body={"active": False})
        return Reply(200, body={"active": True, "username": self.username, "scope": "IMAP"})


@dataclass
class Exchange:
    """Dovecot with XOAUTH2, the loopback Entra ID and the introspection endpoint."""

    dovecot: Dovecot
    entra: GraphServer
    introspection: Introspection


@pytest.fixture
def exchange(monkeypatch: pytest.MonkeyPatch) -> Iterator[Exchange]:
    require_dovecot()
    with HttpSink() as sink:
        server = Dovecot(tls=True, oauth2_introspection_url=sink.url("/introspect"))
        try:
            assert server.certificates is not None
            certificates = server.certificates
            entra = GraphServer(
                Tls(certificates.ca_file, certificates.cert_file, certificates.key_file)
            )
            entra.scopes.add(OUTLOOK_SCOPE)
            introspection = Introspection(entra, server.user)
            sink.route("POST", "/introspect", introspection)
            server.start()
            entra.start()
            monkeypatch.setenv(SECRET_ENV, CLIENT_SECRET)
            try:
                yield Exchange(server, entra, introspection)
            finally:
                entra.stop()
        finally:
            server.close()


def xoauth2_inbox(exchange: Exchange, root: Path) -> ImapInbox:
    server = exchange.dovecot
    assert server.ca_file is not None
    options: dict[str, object] = {
        "host": server.host,
        "port": server.tls_port,
        "security": "tls",
        "username": server.user,
        "auth": "xoauth2",
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "client_secret_env": SECRET_ENV,
        "authority_url": exchange.entra.authority_url,
        # One CA signed Dovecot's and the authority's certificates, as a TLS-inspecting proxy
        # would: ca_file is trusted for both.
        "ca_file": str(server.ca_file),
        "idle_seconds": 30,
        "timeout": 10,
    }
    source = SourceConfig(
        name="encompass-imap", type=Source.ENCOMPASS, kind="imap", options=options
    )
    return create(source, root)


def never_shown(exchange: Exchange, caplog: pytest.LogCaptureFixture, health: object) -> None:
    """Neither the client secret nor any token reached a log line, a health reason or
    Dovecot's own log."""
    said = caplog.text + repr(health) + exchange.dovecot.log_path.read_text(errors="replace")
    assert CLIENT_SECRET not in said
    assert exchange.entra.issued and all(token not in said for token in exchange.entra.issued)


async def test_xoauth2_login_delivers_a_message_as_a_case(
    exchange: Exchange, team: Team, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = exchange.dovecot
    uid = server.append("INBOX", notice(1))
    health = RecordingHealth()
    async with watching(team.service, xoauth2_inbox(exchange, tmp_path), health):
        await wait_for(lambda: _async(seen(server, uid)), what="the message marked seen")
        assert await count_cases(team.service) == 1
        logins = await logged_in(server, 2)  # the inbox's, then the seen() check's
    xoauth2 = [login for login in logins if login.method == "XOAUTH2"]
    assert len(xoauth2) == 1 and xoauth2[0].user == server.user and xoauth2[0].encrypted
    # msal asked the loopback authority once; Dovecot asked about exactly that token.
    assert [e.status for e in exchange.entra.kinds("token")] == [200]
    assert exchange.introspection.asked == exchange.entra.issued
    assert health.failures == []
    never_shown(exchange, caplog, health)


async def test_a_refused_token_is_reported_and_retried_with_a_fresh_one(
    exchange: Exchange, team: Team, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = exchange.dovecot
    exchange.introspection.refuse_all = True  # every token is expired, as far as Dovecot knows
    uid = server.append("INBOX", notice(1))
    health = RecordingHealth()
    async with watching(team.service, xoauth2_inbox(exchange, tmp_path), health):
        await wait_for(
            lambda: _async(len(health.failures) >= 2), within=20, what="two refused logins"
        )
        assert set(health.failures) == {LOGIN_REFUSED}
        assert await count_cases(team.service) == 0
        exchange.introspection.refuse_all = False
        await wait_for(lambda: _async(seen(server, uid)), within=20, what="the message seen")
        assert await count_cases(team.service) == 1
    # Every reconnect asked for a fresh token instead of offering the refused one again.
    issued = exchange.entra.issued
    assert len(issued) >= 3 and len(set(issued)) == len(issued)
    assert exchange.introspection.asked == issued
    assert health.events[-1] == ("ok", "")
    never_shown(exchange, caplog, health)


async def test_a_token_revoked_while_connected_is_replaced_on_reconnect(
    exchange: Exchange, team: Team, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = exchange.dovecot
    first = server.append("INBOX", notice(1))
    health = RecordingHealth()
    async with watching(team.service, xoauth2_inbox(exchange, tmp_path), health):
        await wait_for(lambda: _async(seen(server, first)), what="the first message seen")
        exchange.entra.revoke_tokens()  # msal still holds the token, valid for an hour
        server.restart()  # the connection drops; the inbox must sign in again
        second = server.append("INBOX", notice(2, child="Ben Invented"))
        await wait_for(lambda: _async(seen(server, second)), within=20, what="the second seen")
        assert await count_cases(team.service) == 2
    assert len(exchange.entra.issued) == 2
    assert LOGIN_REFUSED not in health.failures
    never_shown(exchange, caplog, health)


async def test_a_reconnect_while_the_authority_is_down_uses_the_token_held(
    exchange: Exchange, team: Team, tmp_path: Path
) -> None:
    server = exchange.dovecot
    first = server.append("INBOX", notice(1))
    health = RecordingHealth()
    async with watching(team.service, xoauth2_inbox(exchange, tmp_path), health):
        await wait_for(lambda: _async(seen(server, first)), what="the first message seen")
        exchange.entra.stop()  # Entra is out of reach; the token msal got is still valid
        server.restart()
        second = server.append("INBOX", notice(2, child="Ben Invented"))
        await wait_for(lambda: _async(seen(server, second)), within=20, what="the second seen")
        assert await count_cases(team.service) == 2
    assert len(exchange.entra.issued) == 1
    assert exchange.introspection.asked == exchange.entra.issued * 2
    # The restart itself is a connection problem; signing in again was not.
    assert not any("SignIn" in reason or reason == LOGIN_REFUSED for reason in health.failures)


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 500, "retry_after": "0"},
        {"status": 200, "body": b"<html>An invented proxy page</html>"},
    ],
    ids=["500", "not-json"],
)
async def test_a_failing_authority_is_a_connection_problem_retried_with_backoff(
    exchange: Exchange,
    team: Team,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    fault: dict[str, Any],
) -> None:
    caplog.set_level(logging.DEBUG)
    server = exchange.dovecot
    exchange.entra.fail("token", times=2, **fault)
    uid = server.append("INBOX", notice(1))
    health = RecordingHealth()
    async with watching(team.service, xoauth2_inbox(exchange, tmp_path), health):
        await wait_for(lambda: _async(seen(server, uid)), within=20, what="the message seen")
        assert await count_cases(team.service) == 1
    assert health.failures == ["connection problem: SignInUnavailable"] * 2
    assert [e.status for e in exchange.entra.kinds("token")] == [fault["status"]] * 2 + [200]
    never_shown(exchange, caplog, health)


def test_xoauth2_options_are_checked_at_config_time_without_any_call(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(SECRET_ENV, CLIENT_SECRET)
    base: dict[str, object] = {
        "host": "outlook.office365.com",
        "username": "encompass@school.example.org",
        "auth": "xoauth2",
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "client_secret_env": SECRET_ENV,
        # Nothing listens here: create() must not sign in (msal's app fetches metadata).
        "authority_url": "https://127.0.0.1:9",
    }

    def source(**changes: object) -> SourceConfig:
        options = {k: v for k, v in {**base, **changes}.items() if v is not None}
        return SourceConfig(
            name="encompass-imap", type=Source.ENCOMPASS, kind="imap", options=options
        )

    assert isinstance(create(source(), tmp_path), ImapInbox)
    for changes, key in [
        ({"tenant_id": None}, "tenant_id"),
        ({"tenant_id": "organizations"}, "tenant_id"),
        ({"client_id": ""}, "client_id"),
        ({"client_secret_env": None}, "client_secret_env"),
        ({"authority_url": "http://login.example.org"}, "authority_url"),
    ]:
        with pytest.raises(ConfigError) as raised:
            create(source(**changes), tmp_path)
        message = str(raised.value)
        assert message.startswith(f"sources[encompass-imap].{key}:"), message
        assert CLIENT_SECRET not in message


async def _async(value: bool) -> bool:
    return value
