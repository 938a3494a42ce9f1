"""The Graph inbox against a loopback Entra ID and Graph, with the real msal and a real store.

Each message in the watched folder must become exactly one case, be marked done only after its
case is stored, and survive throttling, expired delta links, expired tokens and restarts
without a second case.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from integrations.graph import create, parse_settings
from sgalert.config import SourceConfig
from sgalert.desk.service import CaseService
from sgalert.engine.watch import SourceMonitor, make_deliver
from sgalert.errors import ConfigError
from sgalert.intake.ingest import Ingestor, load_checkpoint
from sgalert.intake.prepare import SourceRules
from sgalert.model import Source
from sgalert.ports import Deliver, Inbound, Inbox, IngestOutcome, inbox_factory

from .conftest import Team
from .graph_server import (
    CLIENT_ID,
    CLIENT_SECRET,
    MAILBOX,
    TENANT,
    GraphServer,
    Tls,
    make_client_certificate,
    make_tls,
    notice,
)

SOURCE = "encompass-graph"
SECRET_ENV = "SGALERT_TEST_GRAPH_SECRET"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("graph-tls"))


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


def graph_source(graph: GraphServer, tls: Tls, **options: Any) -> SourceConfig:
    settings: dict[str, Any] = {
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "mailbox": MAILBOX,
        "client_secret_env": SECRET_ENV,
        "graph_url": graph.graph_url,
        "authority_url": graph.authority_url,
        "ca_file": str(tls.ca_file),
        "poll_seconds": 0.05,
    }
    settings.update(options)
    for key in [k for k, v in settings.items() if v is None]:
        del settings[key]
    return SourceConfig(name=SOURCE, type=Source.ENCOMPASS, kind="graph", options=settings)


class Watch:
    """One inbox running as ``sgalert serve`` would run it, with what it did written down."""

    def __init__(
        self,
        inbox: Inbox,
        service: CaseService,
        source: SourceConfig,
        graph: GraphServer,
        *,
        fail_with: Exception | None = None,
    ) -> None:
        self.inbox = inbox
        self.service = service
        self.graph = graph
        self.monitor = SourceMonitor(service.store, source)
        self.real = make_deliver(
            Ingestor(service.new_cases, service.config), SourceRules.from_config(source)
        )
        self.fail_with = fail_with
        self.outcomes: list[tuple[str, IngestOutcome]] = []
        self.health: list[tuple[str, str]] = []
        self.task: asyncio.Task[None] | None = None
        self.stopping = False

    async def deliver(
        self, messages: Sequence[Inbound], *, checkpoint: str | None = None
    ) -> list[IngestOutcome]:
        if self.fail_with is not None and messages:
            raise self.fail_with
        outcomes = await self.real(messages, checkpoint=checkpoint)
        for message, outcome in zip(messages, outcomes, strict=True):
            assert message.key is not None
            message_id = message.key.rsplit(":", 1)[1]
            self.graph.record("stored", message_id)  # after the transaction committed
            self.outcomes.append((message_id, outcome))
        return outcomes

    async def ok(self) -> None:
        self.health.append(("ok", ""))
        await self.monitor.ok()
        self._stop_if_asked()

    async def failing(self, reason: str) -> None:
        self.health.append(("failing", reason))
        await self.monitor.failing(reason)
        self._stop_if_asked()

    def _stop_if_asked(self) -> None:
        # Between rounds, as `sgalert serve` is usually stopped: the inbox is about to sleep.
        if self.stopping and self.task is not None:
            self.task.cancel()

    def oks(self) -> int:
        return sum(1 for state, _ in self.health if state == "ok")

    async def start(self) -> Watch:
        checkpoint = await load_checkpoint(self.service.store, SOURCE)
        deliver: Deliver = self.deliver
        self.task = asyncio.create_task(self.inbox.run(deliver, checkpoint, self))
        return self

    async def until(self, condition: Callable[[], bool], within: float = 15.0) -> None:
        async with asyncio.timeout(within):
            while not condition():
                assert self.task is not None
                if self.task.done():
                    self.task.result()  # raises what stopped the inbox
                    raise AssertionError("the inbox stopped")
                await asyncio.sleep(0.01)

    async def rounds(self, count: int) -> None:
        """Wait for ``count`` more successful rounds."""
        target = self.oks() + count
        await self.until(lambda: self.oks() >= target)

    async def stop(self, *, at_once: bool = False) -> None:
        """Stop at the end of the current round, or ``at_once`` wherever the inbox is."""
        assert self.task is not None
        self.stopping = True
        if at_once:
            self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, 15)


async def watch(
    service: CaseService, graph: GraphServer, tls: Tls, *, root: Path | None = None, **options: Any
) -> Watch:
    source = graph_source(graph, tls, **options)
    inbox = create(source, root or Path("."))
    return await Watch(inbox, service, source, graph).start()


async def cases(service: CaseService) -> list[str]:
    return sorted(summary.ref for summary in await service.list_cases())


async def children(team: Team) -> list[str]:
    views = await team.service.open_cases(
        team["dsl@example.org"], [s.ref for s in await team.service.list_cases()]
    )
    return sorted(view.facts["child_name"] for view in views)


def values(graph: GraphServer) -> list[str]:
    return [e.detail for e in graph.kinds("value") if e.status == 200]


# ----- the happy path ----------------------------------------------------------------------


async def test_each_message_becomes_one_case_marked_read_only_after_it_is_stored(
    team: Team, graph: GraphServer, tls: Tls
) -> None:
    old = graph.add(
        notice("Old Handled", "44/000001/25"),
        is_read=True,
        received=datetime.now(UTC) - timedelta(days=40),
    )
    ids = [
        graph.add(notice("Ada Invented", "44/123456/26")),
        graph.add(notice("Ben Invented", "44/123457/26")),
        graph.add(notice("Cal Invented", "44/123458/26")),
    ]

    watcher = await watch(team.service, graph, tls)
    await watcher.until(lambda: len(graph.kinds("mark-read")) == 3)
    await watcher.rounds(3)
    await watcher.stop()

    assert await children(team) == ["Ada Invented", "Ben Invented", "Cal Invented"]
    view = (await team.service.open_cases(team["dsl@example.org"], await cases(team.service)))[0]
    assert view.facts["police_reference"].startswith("44/12345")
    assert all(graph.mails[i].is_read for i in ids)
    for message_id in ids:
        assert graph.position("stored", message_id) < graph.position("mark-read", message_id)
    # Paged: the first round needed a nextLink; later rounds resume from the deltaLink.
    deltas = [e.detail for e in graph.kinds("delta")]
    assert deltas[:3] == ["initial", "next-page", "from-delta-link"]
    assert set(deltas[3:]) == {"from-delta-link"}
    # Each message downloaded once: marking read does not bring it back in the delta.
    assert sorted(values(graph)) == sorted(ids)
    # Mail that was read before sgalert began watching is not turned into cases.
    assert old not in values(graph)
    assert all('IdType="ImmutableId"' in e.headers["Prefer"] for e in graph.kinds("delta"))
    assert ("failing" not in dict(watcher.health)) and len(graph.issued) == 1


async def test_cases_carry_the_time_exchange_received_them(
    team: Team, graph: GraphServer, tls: Tls
) -> None:
    arrived = datetime(2026, 11, 22, 22, 6, 1, tzinfo=UTC)
    graph.add(notice("Ada Invented", "44/123456/26"), received=arrived)
    watcher = await watch(team.service, graph, tls)
    await watcher.until(lambda: len(graph.kinds("mark-read")) == 1)
    await watcher.stop()
    (summary,) = await team.service.list_cases()
    assert summary.received_at == arrived


async def test_a_failed_store_marks_nothing_read(team: Team, graph: GraphServer, tls: Tls) -> None:
    ids = [graph.add(notice("Ada Invented", "44/123456/26")), graph.add(notice("Ben", "44/2/26"))]
    source = graph_source(graph, tls)
    watcher = Watch(
        create(source, Path(".")),
        team.service,
        source,
        graph,
        fail_with=RuntimeError("disk full"),
    )
    await watcher.start()
    assert watcher.task is not None
    with pytest.raises(RuntimeError, match="disk full"):
        await asyncio.wait_for(watcher.task, 15)

    assert graph.kinds("mark-read", "move") == []
    assert not any(graph.mails[i].is_read for i in ids)
    assert await cases(team.service) == []
    assert await load_checkpoint(team.service.store, SOURCE) is None


async def test_a_restart_resumes_from_the_saved_delta_link(
    team: Team, graph: GraphServer, tls: Tls
) -> None:
    first = [graph.add(notice("Ada Invented", "44/1/26")), graph.add(notice("Ben", "44/2/26"))]
    watcher = await watch(team.service, graph, tls)
    await watcher.until(lambda: len(graph.kinds("mark-read")) == 2)
    await watcher.stop()
    checkpoint = await load_checkpoint(team.service.store, SOURCE)
    assert checkpoint is not None
    saved = json.loads(checkpoint)
    assert "$deltatoken=" in saved["deltaLink"] and saved["unmarked"] == []

    newer = graph.add(notice("Cal Invented", "44/3/26"))
    before = len(graph.events)
    watcher = await watch(team.service, graph, tls)
    await watcher.until(lambda: len(graph.kinds("mark-read")) == 3)
    await watcher.stop()

    later = graph.events[before:]
    assert [e.detail for e in later if e.kind == "value"] == [newer]
    assert next(e.detail for e in later if e.kind == "delta") == "from-delta-link"
    assert sorted(values(graph)) == sorted([*first, newer])
    assert len(await cases(team.service)) == 3


# ----- throttling, resync, tokens ----------------------------------------------------------


async def test_throttling_waits_for_retry_after(team: Team, graph: GraphServer, tls: Tls) -> None:
    message_id = graph.add(notice("Ada Invented", "44/123456/26"))
    graph.fail("delta", 429, retry_after="1", code="TooManyRequests")
    graph.fail("value", 503, retry_after="1", code="ServiceUnavailable")

    watcher = await watch(team.service, graph, tls)
    await watcher.until(lambda: len(graph.kinds("mark-read")) == 1)
    await watcher.stop()

    for kind in ("delta", "value"):
        throttled, retried = graph.kinds(kind)[:2]
        assert throttled.status in (429, 503) and retried.status == 200
        assert retried.at - throttled.at >= 1.0
    assert values(graph) == [message_id]
    assert len(await cases(team.service)) == 1
    assert [state for state, _ in watcher.health if state == "failing"] == []


async def test_an_expired_delta_link_resyncs_without_duplicate_cases(
    team: Team, graph: GraphServer, tls: Tls
) -> None:
    first = [graph.add(notice("Ada Invented", "44/1/26")), graph.add(notice("Ben", "44/2/26"))]
    watcher = await watch(team.service, graph, tls)
    await watcher.until(lambda: len(graph.kinds("mark-read")) == 2)
    later = graph.add(notice("Cal Invented", "44/3/26"))
    await watcher.until(lambda: len(graph.kinds("mark-read")) == 3)
    await watcher.stop()

    graph.forget_delta_tokens()
    newest = graph.add(notice("Dee Invented", "44/4/26"))
    watcher = await watch(team.service, graph, tls)
    await watcher.until(lambda: len(graph.kinds("mark-read")) >= 4)
    await watcher.rounds(2)
    await watcher.stop()

    assert any(e.status == 410 for e in graph.kinds("delta"))
    # The resync read the folder again; what was stored already came back as the same case.
    repeated = [outcome for message_id, outcome in watcher.outcomes if message_id != newest]
    assert repeated and not any(outcome.created for outcome in repeated)
    assert values(graph).count(later) == 2
    assert len(await cases(team.service)) == 4
    assert await children(team) == ["Ada Invented", "Ben", "Cal Invented", "Dee Invented"]
    assert all(graph.mails[i].is_read for i in [*first, later, newest])
    assert [state for state, _ in watcher.health if state == "failing"] == []


async def test_a_refused_token_reports_the_source_failing_without_secrets(
    team: Team,
    graph: GraphServer,
    tls: Tls,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    graph.add(notice("Ada Invented", "44/123456/26"))
    monkeypatch.setenv(SECRET_ENV, "an-invented-wrong-secret")
    watcher = await watch(team.service, graph, tls)
    await watcher.until(lambda: any(state == "failing" for state, _ in watcher.health))
    await watcher.stop()

    reason = next(reason for state, reason in watcher.health if state == "failing")
    assert "invalid_client" in reason
    assert watcher.monitor.failing_since is not None
    assert graph.kinds("delta", "value") == []
    assert await cases(team.service) == []
    logged = caplog.text + reason
    assert "an-invented-wrong-secret" not in logged and CLIENT_SECRET not in logged


async def test_an_expired_token_is_renewed_once(team: Team, graph: GraphServer, tls: Tls) -> None:
    graph.add(notice("Ada Invented", "44/1/26"))
    watcher = await watch(team.service, graph, tls)
    await watcher.until(lambda: len(graph.kinds("mark-read")) == 1)
    graph.revoke_tokens()
    graph.add(notice("Ben Invented", "44/2/26"))
    await watcher.until(lambda: len(graph.kinds("mark-read")) == 2)
    await watcher.stop()

    assert any(e.status == 401 for e in graph.kinds("delta", "value", "mark-read"))
    assert len(graph.issued) == 2
    assert len(await cases(team.service)) == 2
    assert [state for state, _ in watcher.health if state == "failing"] == []


async def test_an_unreachable_graph_reports_failing_then_recovers(
    team: Team, graph: GraphServer, tls: Tls
) -> None:
    graph.add(notice("Ada Invented", "44/1/26"))
    graph.fail("delta", 403, code="ErrorAccessDenied")
    watcher = await watch(team.service, graph, tls)
    await watcher.until(lambda: len(graph.kinds("mark-read")) == 1)
    await watcher.stop()

    assert watcher.health[0] == ("failing", "Graph delta query failed: HTTP 403 ErrorAccessDenied")
    assert watcher.health[-1] == ("ok", "")
    assert watcher.monitor.failing_since is None


# ----- the sign-in authority failing ----------------------------------------------------------
#
# msal returns an error dict only for a 4xx with an OAuth error; for a 5xx, an answer that is
# not JSON or an authority out of reach it raises. Each must be one failing round (reported,
# backed off), never the end of the inbox, and must never show the secret.

NOT_JSON = b"<html><body>Service Unavailable (an invented proxy page)</body></html>"


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        ({"status": 500}, "sign-in authority failed (HTTP 500)"),
        ({"status": 502, "body": NOT_JSON}, "sign-in authority failed (HTTP 502)"),
        ({"status": 200, "body": NOT_JSON}, "answer was not JSON"),
    ],
    ids=["500", "502-html", "200-not-json"],
)
async def test_a_failing_token_endpoint_backs_off_and_recovers(
    team: Team,
    graph: GraphServer,
    tls: Tls,
    caplog: pytest.LogCaptureFixture,
    fault: dict[str, Any],
    said: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    message_id = graph.add(notice("Ada Invented", "44/1/26"))
    # Retry-After: 0, or msal would answer the next tries from its memory of the 5xx (5 s).
    graph.fail("token", times=2, retry_after="0", **fault)
    watcher = await watch(team.service, graph, tls)
    await watcher.until(lambda: graph.mails[message_id].is_read)
    await watcher.rounds(1)
    await watcher.stop()

    failures = [reason for state, reason in watcher.health if state == "failing"]
    assert len(failures) == 2 and all(said in reason for reason in failures), failures
    assert [e.status for e in graph.kinds("token")] == [fault["status"]] * 2 + [200]
    assert watcher.health[-1] == ("ok", "")
    assert watcher.monitor.failing_since is None
    assert len(await cases(team.service)) == 1
    logged = caplog.text + "\n".join(failures)
    assert CLIENT_SECRET not in logged
    assert all(token not in logged for token in graph.issued)


async def test_a_5xx_without_retry_after_is_remembered_by_msal_for_five_seconds(
    team: Team, graph: GraphServer, tls: Tls
) -> None:
    message_id = graph.add(notice("Ada Invented", "44/1/26"))
    graph.fail("token", 503)
    watcher = await watch(team.service, graph, tls)
    await watcher.until(lambda: graph.mails[message_id].is_read, within=20)
    await watcher.stop()

    # msal's throttling answered the rounds of the next 5 s itself: the authority saw one 503.
    assert [e.status for e in graph.kinds("token")] == [503, 200]
    tokens = graph.kinds("token")
    assert tokens[1].at - tokens[0].at >= 4.5
    failures = [reason for state, reason in watcher.health if state == "failing"]
    assert len(failures) >= 2
    assert all("sign-in authority failed (HTTP 503)" in reason for reason in failures)
    assert len(await cases(team.service)) == 1


async def test_an_authority_that_is_down_backs_off_and_recovers(
    team: Team, graph: GraphServer, tls: Tls, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    message_id = graph.add(notice("Ada Invented", "44/1/26"))
    graph.stop()  # the sign-in authority (and Graph with it) refuses connections
    watcher = await watch(team.service, graph, tls)
    await watcher.until(lambda: sum(state == "failing" for state, _ in watcher.health) >= 2)
    assert watcher.monitor.failing_since is not None
    graph.start()  # on the same port
    await watcher.until(lambda: graph.mails[message_id].is_read)
    await watcher.rounds(1)
    await watcher.stop()

    failures = [reason for state, reason in watcher.health if state == "failing"]
    assert all("sign-in authority unreachable (ConnectionError)" in r for r in failures), failures
    assert watcher.monitor.failing_since is None
    assert len(await cases(team.service)) == 1
    assert CLIENT_SECRET not in caplog.text + "\n".join(failures)


# ----- marking done ----------------------------------------------------------------------


async def test_move_after_commit(team: Team, graph: GraphServer, tls: Tls) -> None:
    ids = [graph.add(notice("Ada Invented", "44/1/26")), graph.add(notice("Ben", "44/2/26"))]
    watcher = await watch(team.service, graph, tls, after_commit="move", move_to="sgalert-done")
    await watcher.until(lambda: len(graph.kinds("move")) == 2)
    await watcher.rounds(2)
    await watcher.stop()

    for message_id in ids:
        assert graph.position("stored", message_id) < graph.position("move", message_id)
        assert graph.mails[message_id].folder == "sgalert-done"
        assert not graph.mails[message_id].is_read
    assert graph.kinds("mark-read") == []
    assert sorted(values(graph)) == sorted(ids)
    assert len(await cases(team.service)) == 2


async def test_a_failed_mark_is_kept_and_retried_after_a_restart(
    team: Team, graph: GraphServer, tls: Tls
) -> None:
    message_id = graph.add(notice("Ada Invented", "44/1/26"))
    graph.fail("mark-read", 403, times=1000, code="ErrorAccessDenied")
    watcher = await watch(team.service, graph, tls)
    await watcher.until(lambda: len(graph.kinds("mark-read")) >= 2)
    await watcher.stop()
    checkpoint = await load_checkpoint(team.service.store, SOURCE)
    assert checkpoint is not None and json.loads(checkpoint)["unmarked"] == [message_id]
    assert not graph.mails[message_id].is_read

    graph.faults.clear()
    watcher = await watch(team.service, graph, tls)
    await watcher.until(lambda: graph.mails[message_id].is_read)
    await watcher.stop()

    assert values(graph) == [message_id]  # marked without downloading it again
    assert len(await cases(team.service)) == 1
    checkpoint = await load_checkpoint(team.service.store, SOURCE)
    assert checkpoint is not None and json.loads(checkpoint)["unmarked"] == []


async def test_cancelling_while_marking_loses_nothing(
    team: Team, graph: GraphServer, tls: Tls
) -> None:
    ids = [graph.add(notice(f"Child {n} Invented", f"44/{n}/26")) for n in range(1, 4)]
    graph.fail("mark-read", None, delay=0.4)  # the first mark is slow; we cancel during it
    watcher = await watch(team.service, graph, tls)
    await watcher.until(lambda: len(graph.kinds("stored")) == 3)
    await watcher.stop(at_once=True)
    assert sum(graph.mails[i].is_read for i in ids) <= 1

    watcher = await watch(team.service, graph, tls)
    await watcher.until(lambda: all(graph.mails[i].is_read for i in ids))
    await watcher.stop()

    assert sorted(values(graph)) == sorted(ids)  # nothing downloaded twice
    assert len(await cases(team.service)) == 3


# ----- certificate credential ----------------------------------------------------------------


@pytest.mark.parametrize("with_thumbprint", [False, True], ids=["sha256-from-cert", "sha1"])
async def test_certificate_credential(
    team: Team, graph: GraphServer, tls: Tls, tmp_path: Path, with_thumbprint: bool
) -> None:
    pem, certificate = make_client_certificate(tmp_path)
    graph.client_certificate = certificate
    der = certificate.public_bytes(serialization.Encoding.DER)
    thumbprint = hashlib.sha1(der).hexdigest().upper() if with_thumbprint else None  # noqa: S324
    graph.add(notice("Ada Invented", "44/1/26"))
    watcher = await watch(
        team.service,
        graph,
        tls,
        root=tmp_path,
        client_secret_env=None,
        certificate_file=pem.name,
        certificate_thumbprint=thumbprint,
    )
    await watcher.until(lambda: len(graph.kinds("mark-read")) == 1)
    await watcher.stop()

    (header,) = graph.assertion_headers
    assert ("x5t" in header) is with_thumbprint and ("x5t#S256" in header) is not with_thumbprint
    assert len(await cases(team.service)) == 1


# ----- configuration -----------------------------------------------------------------------


def test_the_entry_point_finds_the_adapter() -> None:
    assert inbox_factory("graph") is create


def options(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "mailbox": MAILBOX,
        "client_secret_env": SECRET_ENV,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def parse(tmp_path: Path, **changes: Any) -> Any:
    source = SourceConfig(SOURCE, Source.ENCOMPASS, "graph", options(**changes))
    return parse_settings(source, tmp_path)


@pytest.mark.parametrize(
    ("changes", "key", "fix"),
    [
        ({"tenant_id": None}, "tenant_id", "tenant_id ="),
        ({"tenant_id": "common"}, "tenant_id", "directory (tenant) id"),
        ({"mailbox": ""}, "mailbox", "mailbox ="),
        ({"client_secret_env": None}, "client_secret_env", "certificate_file"),
        ({"client_secret_env": "SGALERT_TEST_UNSET"}, "client_secret_env", "is not set"),
        ({"certificate_file": "app.pem"}, "certificate_file", "keep one"),
        ({"after_commit": "delete"}, "after_commit", '"mark-read" or "move"'),
        ({"after_commit": "move"}, "move_to", "move_to ="),
        ({"move_to": "archive"}, "move_to", "after_commit"),
        ({"poll_seconds": 0}, "poll_seconds", "poll_seconds = 15"),
        ({"poll_seconds": True}, "poll_seconds", "poll_seconds = 15"),
        ({"graph_url": "http://graph.example.org/v1.0"}, "graph_url", "https"),
        ({"ca_file": "missing.pem"}, "ca_file", "PEM bundle"),
        ({"mail_box": "x@example.org"}, "mail_box", "did you mean 'mailbox'?"),
    ],
)
def test_bad_options_name_the_key_and_the_fix(
    tmp_path: Path, changes: dict[str, Any], key: str, fix: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse(tmp_path, **changes)
    message = str(raised.value)
    assert message.startswith(f"sources[{SOURCE}].{key}:"), message
    assert fix in message
    assert CLIENT_SECRET not in message


def test_certificate_file_must_be_private_and_hold_a_key(tmp_path: Path) -> None:
    pem, _ = make_client_certificate(tmp_path)
    pem.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        parse(tmp_path, client_secret_env=None, certificate_file=str(pem))
    only_cert = tmp_path / "cert-only.pem"
    only_cert.touch(mode=0o600)
    only_cert.write_text(pem.read_text().split("-----END PRIVATE KEY-----")[1])
    with pytest.raises(ConfigError, match="holds no private key"):
        parse(tmp_path, client_secret_env=None, certificate_file=str(only_cert))


def test_defaults_and_no_secret_in_repr(tmp_path: Path) -> None:
    settings = parse(tmp_path)
    assert settings.folder == "Inbox"
    assert settings.poll_seconds == 15.0
    assert settings.graph_url == "https://graph.microsoft.com/v1.0"
    assert settings.scope == "https://graph.microsoft.com/.default"
    assert settings.authority_url == "https://login.microsoftonline.com"
    assert settings.credential == CLIENT_SECRET
    assert CLIENT_SECRET not in repr(settings)
