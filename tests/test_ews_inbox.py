"""The EWS inbox against a loopback Exchange: real exchangelib, real store, real cases.

Each test runs :class:`integrations.ews.EwsInbox` against :class:`tests.ews_server.EwsServer`,
stores through ``Ingestor`` and ``make_deliver`` into the workspace's store, and checks what a
DSL or the school's IT lead would notice: one case per notice with the right facts, messages
marked read (or filed) only once their case is stored, nothing fetched twice, a server that cannot
be reached reported as such, and Exchange Online refused with a pointer to ``kind = "graph"``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, closing, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from integrations.ews import EwsInbox, create
from sgalert.config import Config, SourceConfig
from sgalert.desk.service import CaseService
from sgalert.engine.watch import make_deliver
from sgalert.errors import ConfigError
from sgalert.intake.ingest import Ingestor, load_checkpoint
from sgalert.model import Source
from sgalert.ports import Inbound, IngestOutcome, inbox_factory
from sgalert.workspace import Workspace

from .conftest import Team
from .ews_server import INBOX_ID, EwsServer

SOURCE = "encompass-ews"
PASSWORD_ENV = "SGALERT_TEST_EWS_PASSWORD"


def notice(child: str, dob: str, occurrence: str, number: int) -> bytes:
    """An invented Operation Encompass notice, as a police force emails it."""
    sent = format_datetime(datetime(2026, 11, 22, 22, number % 60, tzinfo=UTC))
    return (
        f'From: "Operation Encompass" <encompass@police.example.org>\r\n'
        f"To: safeguarding@school.example.org\r\n"
        f"Subject: OPERATION ENCOMPASS NOTIFICATION - Occurrence {occurrence}\r\n"
        f"Date: {sent}\r\n"
        f"Message-ID: <enc-{number:04d}@police.example.org>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "OPERATION ENCOMPASS - NOTIFICATION TO SCHOOL\r\n"
        "\r\n"
        f"Child's Name: {child}\r\n"
        f"DOB: {dob}\r\n"
        "School: Example First School\r\n"
        "Date/Time of Incident: 22/11/2026 21:40\r\n"
        f"Occurrence Number: {occurrence}\r\n"
        "Child present: Yes - in the house at the time\r\n"
        "\r\n"
        "Please treat this information as confidential.\r\n"
    ).encode()


ADA = notice("Ada Invented", "14/03/2017", "44/123456/26", 1)
BEN = notice("Ben Madeup", "02/09/2018", "44/123457/26", 2)
CLEO = notice("Cleo Fictional", "30/01/2016", "44/123458/26", 3)
DEV = notice("Dev Placeholder", "11/07/2019", "44/123459/26", 4)


# ----- harness ------------------------------------------------------------------------------


class RecordingHealth:
    """What the inbox told the supervisor, in order."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def ok(self) -> None:
        self.events.append("ok")

    async def failing(self, reason: str) -> None:
        self.events.append(f"failing: {reason}")

    @property
    def oks(self) -> int:
        return self.events.count("ok")

    @property
    def failures(self) -> list[str]:
        return [e.removeprefix("failing: ") for e in self.events if e.startswith("failing: ")]


@dataclass
class RecordingDeliver:
    """The real deliver (store), noting on the server's timeline when each message is stored."""

    ingestor: Ingestor
    server: EwsServer
    fail_with: Exception | None = None
    outcomes: list[IngestOutcome] = field(default_factory=list)
    checkpoints: list[str | None] = field(default_factory=list)
    delivered: list[str] = field(default_factory=list)

    async def __call__(
        self, messages: Sequence[Inbound], *, checkpoint: str | None = None
    ) -> list[IngestOutcome]:
        self.delivered += [m.key or "" for m in messages]
        if self.fail_with is not None:
            raise self.fail_with
        real = make_deliver(self.ingestor, self.ingestor.rules(SOURCE))
        outcomes = await real(messages, checkpoint=checkpoint)
        for message in messages:
            self.server.note("stored", (message.key or "").rsplit(":", 1)[-1])
        self.outcomes += outcomes
        self.checkpoints.append(checkpoint)
        return outcomes

    @property
    def created(self) -> list[IngestOutcome]:
        return [o for o in self.outcomes if o.created]


def ews_source(endpoint: str, **options: Any) -> SourceConfig:
    base: dict[str, Any] = {
        "service_endpoint": endpoint,
        "username": "SCHOOL\\svc-sgalert",
        "password_env": PASSWORD_ENV,
        "auth_type": "basic",
        "mailbox": "safeguarding@school.example.org",
    }
    base.update(options)
    return SourceConfig(name=SOURCE, type=Source.ENCOMPASS, kind="ews", options=base)


def fast(inbox: EwsInbox) -> EwsInbox:
    """The same inbox with test-sized waits and batches of two."""
    return EwsInbox(
        replace(
            inbox.settings, poll_seconds=0.05, backoff_first=0.02, backoff_cap=0.1, batch_messages=2
        )
    )


def ingestor_for(service: CaseService, endpoint: str, **options: Any) -> Ingestor:
    assert service.config is not None
    config: Config = replace(service.config, sources=(ews_source(endpoint, **options),))
    return Ingestor(service.new_cases, config)


@dataclass
class Harness:
    server: EwsServer
    service: CaseService
    root: Path
    health: RecordingHealth = field(default_factory=RecordingHealth)

    def inbox(self, **options: Any) -> EwsInbox:
        return fast(create(ews_source(self.server.url, **options), self.root))

    def recording(self, **options: Any) -> RecordingDeliver:
        return RecordingDeliver(ingestor_for(self.service, self.server.url, **options), self.server)


@asynccontextmanager
async def running(
    inbox: EwsInbox, deliver: RecordingDeliver, health: RecordingHealth, checkpoint: str | None
) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(inbox.run(deliver, checkpoint, health))
    try:
        yield task
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def until(condition: Callable[[], bool], what: str, within: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
def server() -> Iterator[EwsServer]:
    before = {t.ident for t in threading.enumerate()}
    with EwsServer() as ews:
        yield ews
    assert not [
        t for t in threading.enumerate() if t.ident not in before and t.name.startswith("ews-")
    ], "the test server left a thread running"


@pytest.fixture
def harness(
    server: EwsServer,
    team: Team,
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
) -> Harness:
    """The loopback Exchange, and a store whose safeguarding team has keys to seal cases to."""
    monkeypatch.setenv(PASSWORD_ENV, server.password)
    return Harness(server, team.service, workspace.config_path.parent)


def ids_of(server: EwsServer, event: str) -> list[str]:
    return [detail.split(" ")[0] for detail in server.events_of(event)]


# ----- what the DSL sees --------------------------------------------------------------------


async def test_each_message_becomes_one_case_with_its_facts(harness: Harness, team: Team) -> None:
    server = harness.server
    ada_id = server.add_message(ADA)
    ben_id = server.add_message(BEN)
    deliver = harness.recording()
    async with running(harness.inbox(), deliver, harness.health, None):
        await until(lambda: len(server.events_of("UpdateItem")) == 2, "both marked read")
        rounds = harness.health.oks
        await until(lambda: harness.health.oks >= rounds + 3, "three more quiet rounds")

    cases = await harness.service.list_cases()
    assert len(cases) == 2, "each message is exactly one case, however many rounds run"
    assert sorted(ids_of(server, "GetItem")) == sorted([ada_id, ben_id]), "each fetched once"
    views = {
        view.facts["child_name"]: view
        for view in [
            await harness.service.open_case(team["dsl@example.org"], case.ref) for case in cases
        ]
    }
    assert set(views) == {"Ada Invented", "Ben Madeup"}
    ada = views["Ada Invented"]
    assert ada.summary.source is Source.ENCOMPASS
    assert ada.facts["child_dob"] == "2017-03-14"
    assert ada.facts["police_reference"] == "44/123456/26"
    assert ada.facts["school"] == "Example First School"
    assert views["Ben Madeup"].facts["child_dob"] == "2018-09-02"
    # The case is timed from when Exchange received the notice, not from when it was fetched.
    received = server.items[ada_id].received.replace(microsecond=0)
    assert abs(ada.summary.received_at - received) < timedelta(seconds=1)
    assert all(item.is_read for item in server.items.values())
    assert harness.health.failures == []


async def test_messages_are_marked_read_only_after_their_cases_are_stored(
    harness: Harness,
) -> None:
    server = harness.server
    item_ids = [server.add_message(m) for m in (ADA, BEN, CLEO)]  # two batches of at most two
    async with running(harness.inbox(), harness.recording(), harness.health, None):
        await until(lambda: len(server.events_of("UpdateItem")) == 3, "all marked read")

    timeline = server.events
    for item_id in item_ids:
        stored = timeline.index(("stored", item_id))
        marked = next(
            i
            for i, (event, detail) in enumerate(timeline)
            if event == "UpdateItem" and item_id in detail
        )
        assert stored < marked, "a message is marked read only once its case is stored"
        assert timeline.index(("GetItem", item_id)) < stored


async def test_a_failing_store_leaves_every_message_unread(harness: Harness) -> None:
    server = harness.server
    server.add_message(ADA)
    server.add_message(BEN)
    deliver = harness.recording()
    deliver.fail_with = RuntimeError("disk full")
    with pytest.raises(RuntimeError, match="disk full"):
        await asyncio.wait_for(harness.inbox().run(deliver, None, harness.health), 15)

    assert deliver.delivered, "the messages were handed over"
    assert server.events_of("UpdateItem") == [], "nothing marked read"
    assert not any(item.is_read for item in server.items.values())
    assert await harness.service.list_cases() == []
    assert await load_checkpoint(harness.service.store, SOURCE) is None

    # The supervisor restarts the inbox from the stored checkpoint (none): nothing was lost.
    deliver.fail_with = None
    async with running(harness.inbox(), deliver, harness.health, None):
        await until(lambda: len(server.events_of("UpdateItem")) == 2, "both marked read")
    assert len(await harness.service.list_cases()) == 2


async def test_the_next_round_fetches_only_new_messages(harness: Harness) -> None:
    server = harness.server
    first = [server.add_message(ADA), server.add_message(BEN)]
    deliver = harness.recording()
    async with running(harness.inbox(), deliver, harness.health, None):
        await until(lambda: len(server.events_of("UpdateItem")) == 2, "first round marked")
        states_before = len(server.sync_states_seen)
        late = server.add_message(CLEO)
        await until(lambda: len(server.events_of("UpdateItem")) == 3, "the new one marked")

    assert ids_of(server, "GetItem") == [*first, late], "only the new message was fetched again"
    later_states = server.sync_states_seen[states_before:]
    assert later_states and all(later_states), "every later round sent the saved sync state"
    assert len(await harness.service.list_cases()) == 3


async def test_a_restart_resumes_from_the_saved_sync_state(harness: Harness) -> None:
    server = harness.server
    server.add_message(ADA)
    server.add_message(BEN)
    deliver = harness.recording()
    async with running(harness.inbox(), deliver, harness.health, None):
        await until(lambda: len(server.events_of("UpdateItem")) == 2, "first run marked")
        await until(lambda: harness.health.oks >= 2, "a quiet round after")

    saved = await load_checkpoint(harness.service.store, SOURCE)
    assert saved is not None
    point = json.loads(saved)
    assert point["sync_state"] and point["mailbox"] == "safeguarding@school.example.org"

    late = server.add_message(CLEO)
    server.events.clear()
    seen_before = len(server.sync_states_seen)
    async with running(harness.inbox(), deliver, harness.health, saved):
        await until(lambda: ("stored", late) in server.events, "the new message stored")
        await until(lambda: len(server.events_of("UpdateItem")) >= 1, "and marked")

    assert server.sync_states_seen[seen_before] == point["sync_state"]
    assert ids_of(server, "GetItem") == [late], "only the new message was fetched"
    assert len(await harness.service.list_cases()) == 3


async def test_the_first_run_leaves_messages_read_before_sgalert_alone(harness: Harness) -> None:
    server = harness.server
    old = server.add_message(ADA, is_read=True)
    new = server.add_message(BEN)
    async with running(harness.inbox(), harness.recording(), harness.health, None):
        await until(lambda: len(server.events_of("UpdateItem")) == 1, "the unread one marked")
        await until(lambda: harness.health.oks >= 2, "another round")
    assert ids_of(server, "GetItem") == [new]
    assert old not in ids_of(server, "UpdateItem")
    assert len(await harness.service.list_cases()) == 1


async def test_a_refused_sync_state_resyncs_without_a_second_case(harness: Harness) -> None:
    server = harness.server
    server.add_message(ADA)
    server.add_message(BEN)
    deliver = harness.recording()
    async with running(harness.inbox(), deliver, harness.health, None):
        await until(lambda: len(server.events_of("UpdateItem")) == 2, "first round marked")
        server.invalidate_sync_states()  # as after the mailbox moved database
        late = server.add_message(CLEO)
        await until(lambda: ("stored", late) in server.events, "the new message stored")
        await until(lambda: len(server.events_of("UpdateItem")) >= 3, "and marked")

    assert "ErrorInvalidSyncStateData" not in " ".join(harness.health.events)
    assert harness.health.failures == [], "a refused sync state is handled, not an outage"
    assert len(await harness.service.list_cases()) == 3, "what was stored made no second case"
    assert len(deliver.created) == 3


async def test_move_files_each_message_once_its_case_is_stored(harness: Harness) -> None:
    server = harness.server
    stored_folder = server.add_folder("Stored by sgalert")
    ada_id = server.add_message(ADA)
    options = {"after_commit": "move", "move_to": "Inbox/Stored by sgalert"}
    async with running(
        harness.inbox(**options), harness.recording(**options), harness.health, None
    ):
        await until(lambda: len(server.events_of("MoveItem")) == 1, "moved")
        await until(lambda: harness.health.oks >= 2, "another round")

    timeline = server.events
    assert timeline.index(("stored", ada_id)) < timeline.index(("MoveItem", ada_id))
    (item,) = server.items.values()
    assert item.folder == stored_folder
    assert [i for i in server.items.values() if i.folder == INBOX_ID] == []
    assert len(await harness.service.list_cases()) == 1
    assert server.events_of("UpdateItem") == []


async def test_stored_messages_are_marked_once_exchange_lets_us(harness: Harness) -> None:
    server = harness.server
    server.add_message(ADA)
    server.refuse["UpdateItem"] = "ErrorServerBusy"  # Exchange throttling the account
    deliver = harness.recording()
    async with running(harness.inbox(), deliver, harness.health, None):
        await until(lambda: harness.health.failures != [], "throttling reported")
        assert "throttling" in harness.health.failures[0]
        checkpoint = json.loads(deliver.checkpoints[-1] or "{}")
        assert len(checkpoint["unmarked"]) == 1, "the checkpoint remembers what is unmarked"
        del server.refuse["UpdateItem"]
        await until(lambda: len(server.events_of("UpdateItem")) == 1, "marked in the end")
        await until(lambda: harness.health.events[-1] == "ok", "healthy again")

    assert len(await harness.service.list_cases()) == 1
    assert ids_of(server, "GetItem").count(next(iter(server.items))) == 1


async def test_a_restart_marks_what_was_stored_but_not_marked(harness: Harness) -> None:
    server = harness.server
    ada_id = server.add_message(ADA)
    server.refuse["UpdateItem"] = "ErrorServerBusy"
    deliver = harness.recording()
    async with running(harness.inbox(), deliver, harness.health, None):
        await until(lambda: ("stored", ada_id) in server.events, "stored")
        await until(lambda: harness.health.failures != [], "the refused mark reported")
    # The process stops here, with the case stored and the message still unread.
    assert not server.items[ada_id].is_read
    saved = await load_checkpoint(harness.service.store, SOURCE)
    assert saved is not None and json.loads(saved)["unmarked"] == [ada_id]

    del server.refuse["UpdateItem"]
    server.events.clear()
    async with running(harness.inbox(), deliver, harness.health, saved):
        await until(lambda: server.items[ada_id].is_read, "marked after the restart")
    assert ids_of(server, "GetItem") == [], "nothing fetched again"
    assert len(await harness.service.list_cases()) == 1


# ----- what the IT lead sees ----------------------------------------------------------------


def free_port() -> int:
    with closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_a_server_that_cannot_be_reached_is_reported_until_it_answers(
    team: Team, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = team.service
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}/EWS/Exchange.asmx"
    server = EwsServer(port=port)  # not listening yet: Exchange is down
    monkeypatch.setenv(PASSWORD_ENV, server.password)
    inbox = fast(create(ews_source(endpoint), workspace.config_path.parent))
    health = RecordingHealth()
    deliver = RecordingDeliver(ingestor_for(service, endpoint), server)
    async with running(inbox, deliver, health, None):
        await until(lambda: len(health.failures) >= 2, "repeated failures")
        assert set(health.failures) == {"cannot reach 127.0.0.1"}
        with server:
            server.add_message(ADA)
            await until(lambda: len(server.events_of("UpdateItem")) == 1, "stored once it answers")
            await until(lambda: health.events[-1] == "ok", "healthy")
    assert len(await service.list_cases()) == 1


async def test_a_wrong_password_is_reported_without_the_password(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "hunter2-not-it")
    async with running(harness.inbox(), harness.recording(), harness.health, None):
        await until(lambda: len(harness.health.failures) >= 1, "the refusal reported")
    (reason, *_) = harness.health.failures
    assert reason == "127.0.0.1 refused the login; check username, password and auth_type"
    assert harness.server.operations == [], "nothing past the login"


@pytest.mark.parametrize(
    "where",
    [
        {"server": "outlook.office365.com"},
        {"service_endpoint": "https://outlook.office365.com/EWS/Exchange.asmx"},
        {"service_endpoint": "https://OUTLOOK.OFFICE365.COM./ews/exchange.asmx"},
    ],
)
def test_exchange_online_is_refused_with_a_pointer_to_graph(
    where: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "x")
    source = ews_source("unused", **where)
    options = dict(source.options)
    if "server" in where:
        del options["service_endpoint"]
    with pytest.raises(ConfigError) as refused:
        create(replace(source, options=options), tmp_path)
    message = str(refused.value)
    assert message.startswith(f"sources[{SOURCE}].{next(iter(where))}: ")
    assert 'kind = "graph"' in message
    assert "April 2027" in message


@pytest.mark.parametrize(
    ("change", "key", "fix"),
    [
        ({"mailbox": None}, "mailbox", 'mailbox = "'),
        ({"mailbox": "safeguarding"}, "mailbox", "primary SMTP address"),
        ({"server": "mail.school.example.org"}, "server", "exactly one of"),
        (
            {"service_endpoint": "http://mail.school.example.org/EWS/Exchange.asmx"},
            "service_endpoint",
            "https",
        ),
        ({"auth_type": "kerberos"}, "auth_type", '"ntlm" or "basic"'),
        ({"after_commit": "move"}, "move_to", 'move_to = "'),
        ({"move_to": "Archive"}, "move_to", 'after_commit = "move"'),
        ({"after_commit": "delete"}, "after_commit", '"mark-read" or "move"'),
        ({"poll_seconds": 1}, "poll_seconds", "from 5 to 3600"),
        ({"folder": "Inbox//Encompass"}, "folder", "Inbox/Encompass"),
        ({"mailbx": "x@school.example.org"}, "mailbx", "did you mean 'mailbox'?"),
        ({"password_env": "SGALERT_TEST_UNSET"}, "password_env", "SGALERT_TEST_UNSET is not set"),
        ({"ca_file": "no-such-ca.pem"}, "ca_file", "PEM file"),
    ],
)
def test_config_errors_name_the_key_and_the_fix(
    change: dict[str, Any], key: str, fix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "x")
    monkeypatch.delenv("SGALERT_TEST_UNSET", raising=False)
    options = dict(ews_source("http://127.0.0.1:1/EWS/Exchange.asmx").options)
    for name, value in change.items():
        if value is None:
            options.pop(name)
        else:
            options[name] = value
    source = SourceConfig(name=SOURCE, type=Source.ENCOMPASS, kind="ews", options=options)
    with pytest.raises(ConfigError) as refused:
        create(source, tmp_path)
    message = str(refused.value)
    assert message.startswith(f"sources[{SOURCE}].{key}"), message
    assert fix in message, message


def test_the_password_never_shows_in_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "correct horse battery staple")
    inbox = create(ews_source("http://127.0.0.1:1/EWS/Exchange.asmx"), tmp_path)
    assert "horse" not in repr(inbox.settings)
    assert inbox.settings.auth_type == "basic" and inbox.name == SOURCE


def test_a_server_name_means_its_standard_ews_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "x")
    options = dict(ews_source("unused").options)
    del options["service_endpoint"]
    options["server"] = "mail.school.example.org"
    inbox = create(replace(ews_source("unused"), options=options), tmp_path)
    assert inbox.settings.service_endpoint == "https://mail.school.example.org/EWS/Exchange.asmx"


def test_the_ews_kind_finds_this_adapter() -> None:
    assert inbox_factory("ews") is create


# ----- a school's own certificate authority --------------------------------------------------


@dataclass
class Pki:
    ca_file: Path
    server_context: ssl.SSLContext


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """An invented school CA and a certificate for 127.0.0.1 signed by it."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Example School Test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.school.test")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = tmp_path / "school-ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file = tmp_path / "server.pem"
    cert_file.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file)
    return Pki(ca_file, context)


async def test_a_private_ca_is_trusted_only_through_ca_file(
    pki: Pki, team: Team, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = team.service
    with EwsServer(tls=pki.server_context) as server:
        monkeypatch.setenv(PASSWORD_ENV, server.password)
        root = workspace.config_path.parent
        harness = Harness(server, service, root)
        server.add_message(ADA)

        untrusted = RecordingHealth()
        async with running(harness.inbox(), harness.recording(), untrusted, None):
            await until(lambda: untrusted.failures != [], "the untrusted certificate reported")
        assert untrusted.failures[0] == (
            "the TLS certificate of 127.0.0.1 is not trusted; set ca_file to the school's CA"
        )
        assert server.operations == []

        inbox = harness.inbox(ca_file=str(pki.ca_file))
        async with running(inbox, harness.recording(), harness.health, None):
            await until(lambda: len(server.events_of("UpdateItem")) == 1, "stored over TLS")
    assert len(await service.list_cases()) == 1
