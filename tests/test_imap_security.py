"""The IMAP inbox over TLS and STARTTLS against a real Dovecot, and without IDLE.

The TLS server (``Dovecot(tls=True)``) has a certificate from a throwaway CA: the inbox must
trust it through ``ca_file`` and nothing else, must really encrypt (the server's own login log
says "TLS", not "secured" as it does for plaintext on loopback), and must refuse to log in at
all when the certificate is not trusted or STARTTLS is not offered. A server that does not
advertise IDLE is polled.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from imapclient import IMAPClient

from integrations.imap import ImapInbox, _closed, create
from sgalert.config import SourceConfig
from sgalert.desk.service import CaseService
from sgalert.engine.watch import SourceMonitor, make_deliver
from sgalert.errors import ConfigError
from sgalert.intake.ingest import Ingestor, load_checkpoint
from sgalert.intake.prepare import SourceRules
from sgalert.model import Source

from .conftest import Team
from .dovecot import CAPABILITY_WITHOUT_IDLE, Dovecot, Login, group_members, require_dovecot
from .imap_helpers import imap_inbox, notice, notices_arriving_at, wait_for

pytestmark = pytest.mark.slow

PASSWORD_ENV = "SGALERT_TEST_IMAP_PASSWORD"
#: Where the tests put the CA, relative to the workspace root (as an operator's config would).
CA_RELATIVE = "certs/school-ca.pem"


def serve(monkeypatch: pytest.MonkeyPatch, **options: object) -> Iterator[Dovecot]:
    require_dovecot()
    server = Dovecot(**options)  # type: ignore[arg-type]
    try:
        server.start()
        monkeypatch.setenv(PASSWORD_ENV, server.password)
        yield server
    finally:
        server.close()
    assert not server.base_dir.exists()


@pytest.fixture
def tls_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Dovecot]:
    """STARTTLS on ``port``, imaps on ``tls_port``, certificate from the test CA."""
    yield from serve(monkeypatch, tls=True)


@pytest.fixture
def polled_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Dovecot]:
    """A server whose CAPABILITY list has no IDLE."""
    yield from serve(monkeypatch, imap_capability=CAPABILITY_WITHOUT_IDLE)


@pytest.fixture
def plain_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Dovecot]:
    """The default server: no TLS at all, so no STARTTLS either."""
    yield from serve(monkeypatch)


class RecordingHealth:
    """A Health that remembers what it was told, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    async def ok(self) -> None:
        self.events.append(("ok", ""))

    async def failing(self, reason: str) -> None:
        self.events.append(("failing", reason))

    @property
    def failures(self) -> list[str]:
        return [reason for kind, reason in self.events if kind == "failing"]


@asynccontextmanager
async def watching(
    service: CaseService, inbox: ImapInbox, health: SourceMonitor | RecordingHealth | None = None
) -> AsyncIterator[SourceMonitor | RecordingHealth]:
    assert service.config is not None
    source = SourceConfig(name=inbox.name, type=Source.ENCOMPASS, kind="imap")
    health = health or SourceMonitor(service.store, source)
    deliver = make_deliver(
        Ingestor(service.new_cases, service.config), SourceRules.from_config(source)
    )
    checkpoint = await load_checkpoint(service.store, source.name)
    task = asyncio.create_task(inbox.run(deliver, checkpoint, health))
    try:
        yield health
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def school_ca(server: Dovecot, root: Path) -> str:
    """Copy the test CA into the workspace root; return the relative path a config would hold."""
    assert server.ca_file is not None
    target = root / CA_RELATIVE
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(server.ca_file, target)
    return CA_RELATIVE


def port_for(server: Dovecot, security: str) -> int:
    return server.tls_port if security == "tls" else server.port


async def count_cases(service: CaseService) -> int:
    return len(await service.list_cases())


def seen(server: Dovecot, uid: int) -> bool:
    with server.connect() as imap:
        imap.select_folder("INBOX", readonly=True)
        return b"\\Seen" in imap.get_flags([uid]).get(uid, ())


async def logged_in(server: Dovecot, count: int = 1) -> list[Login]:
    """Wait until the server has logged ``count`` logins; return them all."""
    await wait_for(
        lambda: asyncio.sleep(0, len(server.logins()) >= count), what=f"{count} login(s)"
    )
    return server.logins()


# ----- the harness itself -----------------------------------------------------------------


def test_tls_harness_offers_starttls_and_imaps_for_loopback(tls_server: Dovecot) -> None:
    assert tls_server.ca_file is not None and tls_server.ca_file.is_relative_to(tls_server.base_dir)
    assert 0 < tls_server.tls_port != tls_server.port
    plain = IMAPClient(tls_server.host, tls_server.port, ssl=False, timeout=10)
    try:
        assert b"STARTTLS" in plain.capabilities()
    finally:
        plain.shutdown()
    # The certificate names both 127.0.0.1 and localhost, and verifies only with the test CA.
    for name in ("127.0.0.1", "localhost"):
        with IMAPClient(
            name, tls_server.tls_port, ssl=True, ssl_context=tls_server.ssl_context(), timeout=10
        ) as imap:
            assert imap.welcome.startswith(b"* OK")
    with pytest.raises(ssl.SSLCertVerificationError):
        IMAPClient(
            tls_server.host, tls_server.tls_port, ssl=True, ssl_context=ssl.create_default_context()
        )
    for security in ("none", "starttls", "tls"):
        with tls_server.connect(security=security) as imap:
            assert imap.select_folder("INBOX")[b"EXISTS"] == 0
    plaintext, starttls, imaps = tls_server.logins()
    assert (plaintext.local_port, plaintext.connection) == (tls_server.port, "secured")
    assert (starttls.local_port, starttls.encrypted) == (tls_server.port, True)
    assert (imaps.local_port, imaps.encrypted) == (tls_server.tls_port, True)


def test_default_harness_has_no_tls_and_advertises_idle(plain_server: Dovecot) -> None:
    assert (plain_server.tls_port, plain_server.ca_file) == (0, None)
    with plain_server.connect() as imap:
        assert b"IDLE" in imap.capabilities()
        assert b"STARTTLS" not in imap.capabilities()


def test_hidden_idle_is_not_advertised_before_or_after_login(polled_server: Dovecot) -> None:
    raw = IMAPClient(polled_server.host, polled_server.port, ssl=False, timeout=10)
    try:
        assert b"IDLE" not in raw.capabilities()
        raw.login(polled_server.user, polled_server.password)
        after_login = raw.capabilities()
        assert b"IDLE" not in after_login
        assert {b"UIDPLUS", b"MOVE", b"CONDSTORE"} <= set(after_login)
    finally:
        raw.logout()


def test_tls_server_leaves_no_processes_or_files() -> None:
    require_dovecot()
    with Dovecot(tls=True) as server:
        group, base_dir = server.pid, server.base_dir
        assert group is not None and server.certificates is not None
        assert server.certificates.key_file.stat().st_mode & 0o077 == 0
        server.restart()  # keeps both ports
        with server.connect(security="tls") as imap:
            imap.noop()
        group = server.pid
    assert group is not None and group_members(group) == []
    assert not base_dir.exists()
    still_running = subprocess.run(
        ["pgrep", "-f", f"dovecot-{server.instance_name}/"], capture_output=True, check=False
    )
    assert still_running.stdout == b""


# ----- the inbox over TLS -------------------------------------------------------------------


@pytest.mark.parametrize("security", ["tls", "starttls"])
async def test_encrypted_inbox_turns_new_mail_into_a_case_and_marks_it_seen(
    tls_server: Dovecot, team: Team, tmp_path: Path, security: str
) -> None:
    service = team.service
    port = port_for(tls_server, security)
    inbox = imap_inbox(
        tls_server, tmp_path, security=security, port=port, ca_file=school_ca(tls_server, tmp_path)
    )
    async with watching(service, inbox) as monitor:
        # Before anything else logs in: the only login is the inbox's, and it was encrypted.
        (login,) = await logged_in(tls_server)
        assert (login.user, login.local_port) == (tls_server.user, port)
        assert login.encrypted, login.line  # plaintext on loopback would say "secured"
        await asyncio.sleep(0.3)  # let it reach IDLE on the empty folder
        uid = tls_server.append("INBOX", notice(1))

        async def one_case() -> bool:
            return await count_cases(service) == 1

        await wait_for(one_case, what="the case")
        await wait_for(lambda: asyncio.sleep(0, seen(tls_server, uid)), what="\\Seen")
        assert isinstance(monitor, SourceMonitor) and monitor.failing_since is None
    (summary,) = await service.list_cases()
    view = await service.open_case(team["dsl@example.org"], summary.ref)
    assert view.facts["child_name"] == "Ada Invented"


async def test_tls_connection_dropped_mid_idle_is_reported_and_resumed(
    tls_server: Dovecot, team: Team, tmp_path: Path
) -> None:
    service = team.service
    inbox = imap_inbox(
        tls_server,
        tmp_path,
        security="tls",
        port=tls_server.tls_port,
        ca_file=school_ca(tls_server, tmp_path),
    )

    async def cases(n: int) -> bool:
        return await count_cases(service) == n

    async with watching(service, inbox) as monitor:
        assert isinstance(monitor, SourceMonitor)
        tls_server.append("INBOX", notice(1))
        await wait_for(lambda: cases(1), what="first case")
        await asyncio.sleep(0.5)  # back in IDLE, on the TLS socket
        tls_server.kill()
        await wait_for(
            lambda: asyncio.sleep(0, monitor.failing_since is not None),
            what="the dropped TLS connection to be noticed",
        )
        assert "certificate" not in monitor.last_reason
        tls_server.start()
        tls_server.append("INBOX", notice(2, "Bea Invented"))
        await wait_for(lambda: cases(2), within=30, what="the case after the restart")
        await wait_for(lambda: asyncio.sleep(0, monitor.failing_since is None), what="recovery")
    assert all(
        login.encrypted for login in tls_server.logins() if login.local_port != tls_server.port
    )


@pytest.mark.parametrize("security", ["tls", "starttls"])
async def test_mail_announced_with_the_idle_continuation_over_tls_is_not_left_waiting(
    tls_server: Dovecot,
    team: Team,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    security: str,
) -> None:
    """Mail that arrives just before IDLE is announced with "+ idling", inside the same TLS
    record: the TLS layer hands both to imaplib at once, and the socket stays quiet after."""
    uids = notices_arriving_at(monkeypatch, tls_server, "idle", "before", count=2)
    service = team.service
    inbox = imap_inbox(
        tls_server,
        tmp_path,
        security=security,
        port=port_for(tls_server, security),
        ca_file=school_ca(tls_server, tmp_path),
        idle_seconds=60,
    )
    async with watching(service, inbox):

        async def two() -> bool:
            return await count_cases(service) == 2

        await wait_for(two, within=8, what="a case for each notice")
        await wait_for(
            lambda: asyncio.sleep(0, all(seen(tls_server, u) for u in uids)), what="\\Seen"
        )
    assert len(uids) == 2


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_a_dropped_connection_is_detected_on_a_tls_socket(
    tls_server: Dovecot, security: str
) -> None:
    """IMAPClient swallows the EOF in IDLE; the inbox then peeks at the socket, under TLS too."""
    client = tls_server.connect(security=security)
    try:
        client.select_folder("INBOX")
        client.idle()
        assert client.idle_check(timeout=0.2) == []
        assert not _closed(client)  # an open TLS connection with nothing to read
        tls_server.kill()
        assert client.idle_check(timeout=2) == []  # the EOF, swallowed
        assert _closed(client)
    finally:
        client.shutdown()


@pytest.mark.parametrize("security", ["tls", "starttls"])
async def test_untrusted_certificate_is_refused_and_reported_without_the_password(
    tls_server: Dovecot,
    team: Team,
    tmp_path: Path,
    security: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    uid = tls_server.append("INBOX", notice(1))
    logins_before = len(tls_server.logins())
    # No ca_file: the system's trust store, which has never heard of the test CA.
    inbox = imap_inbox(tls_server, tmp_path, security=security, port=port_for(tls_server, security))
    async with watching(team.service, inbox, RecordingHealth()) as health:
        assert isinstance(health, RecordingHealth)
        await wait_for(lambda: asyncio.sleep(0, bool(health.failures)), what="the failure")
    assert ("ok", "") not in health.events
    for reason in health.failures:
        assert tls_server.password not in reason
        assert "certificate" in reason and tls_server.host in reason, reason
        assert "ca_file" in reason, reason  # says what to fix
    assert tls_server.password not in caplog.text
    assert len(tls_server.logins()) == logins_before  # never logged in
    assert await count_cases(team.service) == 0
    assert not seen(tls_server, uid)


async def test_starttls_never_falls_back_to_plaintext(
    plain_server: Dovecot, team: Team, tmp_path: Path
) -> None:
    uid = plain_server.append("INBOX", notice(1))
    logins_before = len(plain_server.logins())
    inbox = imap_inbox(plain_server, tmp_path, security="starttls")  # no STARTTLS offered
    async with watching(team.service, inbox, RecordingHealth()) as health:
        assert isinstance(health, RecordingHealth)
        await wait_for(lambda: asyncio.sleep(0, bool(health.failures)), what="the failure")
    assert ("ok", "") not in health.events
    assert all(plain_server.password not in reason for reason in health.failures)
    assert len(plain_server.logins()) == logins_before  # the password was never sent
    assert await count_cases(team.service) == 0
    assert not seen(plain_server, uid)


# ----- no IDLE: polling ---------------------------------------------------------------------


async def test_without_idle_the_inbox_polls_and_delivers_new_mail(
    polled_server: Dovecot, team: Team, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = team.service
    idles: list[IMAPClient] = []
    original_idle = IMAPClient.idle

    def recording_idle(client: IMAPClient) -> object:
        idles.append(client)
        return original_idle(client)

    monkeypatch.setattr(IMAPClient, "idle", recording_idle)
    inbox = imap_inbox(polled_server, tmp_path, poll_seconds=0.5)
    async with watching(service, inbox) as monitor:
        await logged_in(polled_server)
        await asyncio.sleep(1.2)  # two empty polls, so the message below arrives between polls
        uid = polled_server.append("INBOX", notice(1))

        async def one_case() -> bool:
            return await count_cases(service) == 1

        # Well inside the default 30 s poll: poll_seconds is honoured.
        await wait_for(one_case, within=5, what="the polled case")
        await wait_for(lambda: asyncio.sleep(0, seen(polled_server, uid)), what="\\Seen")
        polled_server.append("INBOX", notice(2, "Bea Invented"))

        async def two_cases() -> bool:
            return await count_cases(service) == 2

        await wait_for(two_cases, within=5, what="the second polled case")
        assert isinstance(monitor, SourceMonitor) and monitor.failing_since is None
    assert idles == []  # it never tried IDLE on a server that does not offer it


# ----- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["imap.example.org", "192.0.2.10", "127.0.0.1.example.org"])
def test_security_none_is_refused_off_loopback(host: str, tmp_path: Path) -> None:
    source = SourceConfig(
        name="encompass-imap",
        type=Source.ENCOMPASS,
        kind="imap",
        options={
            "host": host,
            "security": "none",
            "username": "alice",
            "password_env": PASSWORD_ENV,
        },
    )
    with pytest.raises(ConfigError, match=r'security: "none" .*loopback'):
        create(source, tmp_path)


def test_security_none_is_allowed_on_loopback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "loopback-only")
    source = imap_source_for("127.0.0.1", security="none")
    assert create(source, tmp_path).settings.security == "none"


def test_ca_file_is_relative_to_the_workspace_and_must_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "secret")
    with pytest.raises(ConfigError, match=r"ca_file: .*school-ca\.pem"):
        create(imap_source_for("imap.example.org", ca_file=CA_RELATIVE), tmp_path)
    ca = tmp_path / CA_RELATIVE
    ca.parent.mkdir()
    ca.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"ca_file: "):
        create(imap_source_for("imap.example.org", ca_file=CA_RELATIVE), tmp_path)


def test_ca_file_with_security_none_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "secret")
    with pytest.raises(ConfigError, match=r"ca_file: .*tls"):
        create(imap_source_for("127.0.0.1", security="none", ca_file="ca.pem"), tmp_path)


def imap_source_for(host: str, **extra: object) -> SourceConfig:
    options: dict[str, object] = {"host": host, "username": "alice", "password_env": PASSWORD_ENV}
    options.update(extra)
    return SourceConfig(name="encompass-imap", type=Source.ENCOMPASS, kind="imap", options=options)
