"""One poison message never blocks its mailbox (issue 12: never silent).

A message whose preparing or storing raises is tried alone a bounded number of times (counted in
the store before each try, so a crash counts too), then quarantined: its bytes sealed whole as a
``needs-triage`` case that pages like any other. If even that fails, it is held: left unread,
skipped, raised as a ``message-quarantined`` alert naming its mailbox key and error class. The
rest of its batch becomes cases and is marked done either way, and nothing is ever stored twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from integrations.maildir import MaildirInbox, create
from sgalert.config import SourceConfig
from sgalert.desk.service import CaseService
from sgalert.desk.views import open_alerts
from sgalert.engine.watch import make_deliver
from sgalert.errors import NoEntitledReaders
from sgalert.intake.extract import Extraction, extract
from sgalert.intake.ingest import Ingestor, load_checkpoint
from sgalert.intake.mime import AttachmentPart
from sgalert.intake.new_cases import NewCases
from sgalert.intake.poison import MAX_TRIES, MESSAGE_QUARANTINED, held_messages, release_held
from sgalert.intake.prepare import SourceRules
from sgalert.model import Flag, Source
from sgalert.ports import Inbound
from sgalert.records import audit
from sgalert.records.cases import FIELD_FACTS, FIELD_RAW, SealedBatch, StoredCase, insert_now
from sgalert.workspace import Workspace

from .conftest import PASSPHRASES, Team
from .dovecot import Dovecot
from .engine_helpers import VirtualClock
from .graph_server import MAILBOX as GRAPH_MAILBOX
from .graph_server import GraphServer, Tls
from .graph_server import notice as graph_notice
from .imap_helpers import imap_inbox, notice, wait_for
from .test_escalation import make_engine
from .test_ews_inbox import ADA, CLEO, Harness, harness, running, server, until  # noqa: F401
from .test_ews_inbox import notice as ews_notice
from .test_graph_inbox import client_secret, graph, tls  # noqa: F401  (fixtures)
from .test_graph_inbox import watch as graph_watch
from .test_imap_inbox import seen_flags, watching

POISON = "Poppy Poison"  # an invented child whose notice sets off the injected bug
NAMES = ("Ada Invented", "Bea Invented", POISON, "Cal Invented", "Dee Invented")


def five_notices() -> list[bytes]:
    return [notice(number, child) for number, child in enumerate(NAMES, start=1)]


def maildir_source() -> SourceConfig:
    return SourceConfig(
        name="drop",
        type=Source.ENCOMPASS,
        kind="maildir",
        options={"path": "inbox", "after_commit": "mark-read"},
    )


def fill_maildir(root: Path, messages: list[bytes]) -> Path:
    folder = root / "inbox"
    for sub in ("new", "cur", "tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for number, raw in enumerate(messages, start=1):
        path = folder / "new" / f"{number}.poison.host"
        path.write_bytes(raw)
        os.utime(path, (1_800_000_000 + number, 1_800_000_000 + number))  # delivery order
    return folder


def maildir_inbox(root: Path) -> MaildirInbox:
    inbox = create(maildir_source(), root)
    assert isinstance(inbox, MaildirInbox)
    return inbox


class Bug:
    """An injected bug: raises for the poison notice, and counts how often it was reached."""

    def __init__(self) -> None:
        self.reached = 0

    def hit(self, text: str | bytes) -> None:
        if (POISON if isinstance(text, str) else POISON.encode()) in text:
            self.reached += 1
            raise ValueError("an invented bug set off by this message")


def break_prepare(monkeypatch: pytest.MonkeyPatch) -> Bug:
    bug = Bug()

    def poisoned(
        source: Source, subject: str, body: str, attachments: list[AttachmentPart], **kw: Any
    ) -> Extraction:
        bug.hit(body)
        return extract(source, subject, body, attachments, **kw)

    monkeypatch.setattr("sgalert.intake.prepare.extract", poisoned)
    return bug


def break_store(
    monkeypatch: pytest.MonkeyPatch, when: Callable[[SealedBatch], bytes] | None = None
) -> Bug:
    """Storing raises for a batch holding the poison: by its extracted facts (so its
    quarantined case, which has none, stores), or by ``when`` (e.g. its bytes: nothing stores)."""
    bug = Bug()

    def poisoned(conn: Any, batch: SealedBatch, actor: str) -> list[StoredCase]:
        for sealed in batch.cases:
            bug.hit(when(batch) if when else sealed.case.content.get(FIELD_FACTS, b""))
        return insert_now(conn, batch, actor)

    monkeypatch.setattr("sgalert.intake.ingest.insert_now", poisoned)
    return bug


def by_bytes(batch: SealedBatch) -> bytes:
    return b"".join(
        s.case.content.get(FIELD_RAW, b"") + s.case.identity.get(FIELD_RAW, b"")
        for s in batch.cases
    )


async def tries_left(service: CaseService) -> list[tuple[str, int, str | None]]:
    rows = await service.store.fetchall(
        "SELECT idempotency_key, tries, held_at FROM ingest_tries ORDER BY idempotency_key"
    )
    return [(r[0], r[1], r[2]) for r in rows]


async def created_once(service: CaseService) -> list[str]:
    """Every case's id, checking each was created exactly once and from distinct bytes."""
    rows = await service.store.fetchall("SELECT id, content_sha256 FROM cases")
    assert len({r[1] for r in rows}) == len(rows), "the same bytes became two cases"
    async with service.store.read() as db:
        created = [e.case_id for e in await audit.entries(db) if e.action == "case-created"]
    assert sorted(created) == sorted(r[0] for r in rows)
    return [str(r[0]) for r in rows]


@pytest.mark.parametrize("where", ["prepare", "store"])
async def test_a_poison_message_is_quarantined_and_the_other_four_go_on(
    team: Team, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    clock = VirtualClock()
    engine, _ = make_engine(team, clock)
    raws = five_notices()
    folder = fill_maildir(tmp_path, raws)
    bug = break_prepare(monkeypatch) if where == "prepare" else break_store(monkeypatch)
    config = team.service.config
    assert config is not None
    deliver = make_deliver(
        Ingestor(team.service.new_cases, config), SourceRules.from_config(maildir_source())
    )

    assert await maildir_inbox(tmp_path).poll_once(deliver) == 5

    assert bug.reached == MAX_TRIES  # once in the batch, then alone until it was quarantined
    assert len(await created_once(team.service)) == 5
    assert sorted(os.listdir(folder / "new")) == []
    assert sorted(os.listdir(folder / "cur")) == [f"{n}.poison.host:2,S" for n in range(1, 6)]
    assert await tries_left(team.service) == []
    dsl = team["dsl@example.org"]
    cases = sorted(await team.service.list_cases(), key=lambda c: c.received_at)
    views = [await team.service.open_case(dsl, c.ref) for c in cases]
    assert [v.facts.get("child_name") for v in views] == [*NAMES[:2], None, *NAMES[3:]]
    quarantined = views[2]
    assert set(quarantined.summary.flags) == {Flag.NEEDS_TRIAGE, Flag.MALFORMED}
    assert quarantined.notes["triage"][0].startswith("could not be read: quarantined")
    assert "ValueError" in quarantined.notes["problems"][0]
    assert POISON in quarantined.body_text  # the DSL can read it; it is sealed like the rest
    async with team.service.store.read() as db:
        from sgalert.records.cases import open_fields, unwrap_data_keys

        keys = await unwrap_data_keys(db, dsl, [quarantined.summary.id])
        sealed = (await open_fields(db, keys, [quarantined.summary.id]))[quarantined.summary.id]
    assert sealed[FIELD_RAW] == raws[2]  # the original bytes, whole
    # Nothing of the message in plaintext metadata, the audit log or any alert.
    row = await team.service.store.fetchall(
        "SELECT * FROM cases WHERE id = ?", (quarantined.summary.id,)
    )
    plaintext = json.dumps([list(row[0])]) + json.dumps(await open_alerts(team.service.store))
    async with team.service.store.read() as db:
        plaintext += json.dumps([e.detail for e in await audit.entries(db)])
    assert "Poppy" not in plaintext and "100003" not in plaintext

    # The quarantined case pages the person on duty like any other case of its source.
    await engine.tick_timers()
    pages = await team.service.store.fetchall(
        "SELECT recipient, case_id FROM outbox WHERE case_id = ?", (quarantined.summary.id,)
    )
    assert [p[0] for p in pages] == ["dsl@example.org"]

    # Delivered again (a crash before marking, a second mailbox): the same cases, none new.
    again = await Ingestor(team.service.new_cases, config).ingest(
        [Inbound(raw, key=f"maildir:drop:{n}.poison.host") for n, raw in enumerate(raws, 1)],
        SourceRules.from_config(maildir_source()),
    )
    assert [o.created for o in again] == [False] * 5
    assert again[2].case_id == quarantined.summary.id
    assert len(await created_once(team.service)) == 5


async def test_a_message_that_cannot_even_be_quarantined_is_held_unread_with_an_alert(
    team: Team, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = VirtualClock()
    engine, _ = make_engine(team, clock)
    raws = five_notices()
    folder = fill_maildir(tmp_path, raws)
    bug = break_store(monkeypatch, when=by_bytes)  # its quarantined case fails to store too
    config = team.service.config
    assert config is not None
    deliver = make_deliver(
        Ingestor(team.service.new_cases, config), SourceRules.from_config(maildir_source())
    )
    inbox = maildir_inbox(tmp_path)

    await inbox.poll_once(deliver)

    assert len(await created_once(team.service)) == 4
    assert os.listdir(folder / "new") == ["3.poison.host"]  # not marked read
    assert len(os.listdir(folder / "cur")) == 4
    (held,) = await held_messages(team.service.store)
    assert (held.key, held.source_name, held.error) == (
        "maildir:drop:3.poison.host",
        "drop",
        "ValueError",
    )
    (alert,) = await open_alerts(team.service.store)
    assert alert["kind"] == MESSAGE_QUARANTINED and alert["source"] == "drop"
    assert alert["messages"] == [
        {"key": "maildir:drop:3.poison.host", "error": "ValueError", "at": alert["since"]}
    ]
    text = json.dumps(alert)
    assert "Poppy" not in text and "100003" not in text and "invented bug" not in text
    await engine.tick_alerts()
    pages = await team.service.store.fetchall("SELECT recipient, payload FROM outbox")
    assert {p[0] for p in pages} == {"dsl@example.org", "deputy@example.org", "head@example.org"}
    assert all("Poppy" not in p[1] for p in pages)

    # Not retried for ever: later polls skip it, and leave it unread.
    reached = bug.reached
    for _ in range(3):
        await inbox.poll_once(deliver)
    assert bug.reached == reached
    assert os.listdir(folder / "new") == ["3.poison.host"]
    assert len(await created_once(team.service)) == 4

    # Someone deals with it (here: the bug is fixed) and releases it: it becomes a case.
    monkeypatch.undo()
    await release_held(team.service.store, "maildir:drop:3.poison.host")
    assert await open_alerts(team.service.store) == []
    await inbox.poll_once(deliver)
    assert os.listdir(folder / "new") == []
    assert len(await created_once(team.service)) == 5
    assert await tries_left(team.service) == []


async def test_a_second_held_message_pages_again_and_is_listed_with_the_first(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = VirtualClock()
    engine, _ = make_engine(team, clock)
    break_store(monkeypatch, when=by_bytes)
    config = team.service.config
    assert config is not None
    ingestor = Ingestor(team.service.new_cases, config)
    rules = SourceRules.from_config(maildir_source())
    (first,) = await ingestor.ingest([Inbound(notice(1, POISON), key="k:1")], rules)
    await engine.tick_alerts()
    (second,) = await ingestor.ingest([Inbound(notice(2, POISON), key="k:2")], rules)
    await engine.tick_alerts()
    assert first.held and second.held and first.key == "k:1"
    (alert,) = await open_alerts(team.service.store)
    assert [m["key"] for m in alert["messages"]] == ["k:1", "k:2"] and alert["held"] == 2
    dsl_pages = await team.service.store.fetchall(
        "SELECT count(*) FROM outbox WHERE recipient = 'dsl@example.org'"
    )
    assert dsl_pages[0][0] == 2  # paged for each held message
    await release_held(team.service.store, "k:1")
    (alert,) = await open_alerts(team.service.store)
    assert [m["key"] for m in alert["messages"]] == ["k:2"]


async def test_a_store_wide_failure_is_retried_as_before_and_counts_no_try(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nobody can read new cases yet (or the disk is full): every message alike, so the batch
    fails as before, to be retried, and no message is tried alone, counted or quarantined."""

    async def nobody(self: NewCases, cases: object) -> SealedBatch:
        raise NoEntitledReaders("no member of dsl has keys yet")

    monkeypatch.setattr(NewCases, "seal", nobody)
    config = team.service.config
    assert config is not None
    ingestor = Ingestor(team.service.new_cases, config)
    rules = SourceRules.from_config(maildir_source())
    messages = [Inbound(raw, key=f"k:{n}") for n, raw in enumerate(five_notices())]
    for _ in range(MAX_TRIES + 1):
        with pytest.raises(NoEntitledReaders):
            await ingestor.ingest(messages, rules)
    assert await tries_left(team.service) == []
    monkeypatch.undo()
    outcomes = await Ingestor(team.service.new_cases, config).ingest(messages, rules)
    assert all(o.created and Flag.NEEDS_TRIAGE not in o.flags for o in outcomes)


async def test_a_poison_whistle_is_sealed_apart_with_the_identity(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whistle's original names its reporter: quarantined, it stays under the identity key
    and is not shown as the allegation's text."""
    break_prepare(monkeypatch)
    config = team.service.config
    assert config is not None
    raw = notice(7, POISON)
    rules = SourceRules("whistle", Source.WHISTLE)
    (outcome,) = await Ingestor(team.service.new_cases, config).ingest(
        [Inbound(raw, key="w:7")], rules
    )
    assert outcome.created and Flag.NEEDS_TRIAGE in outcome.flags
    view = await team.service.open_case(team["mo@example.org"], outcome.ref)
    assert view.body_text == "" and view.notes["triage"]
    from .test_ingest_extraction import sealed_fields

    assert (await sealed_fields(team.service, team["mo@example.org"], outcome.case_id))[
        FIELD_RAW
    ] == raw


CHILD = Path(__file__).with_name("ingest_crash_child.py")


async def test_a_message_that_kills_the_process_is_quarantined_after_bounded_restarts(
    team: Team, workspace: Workspace, tmp_path: Path
) -> None:
    """A crash loop is not infinite: each try is counted before it begins, so after a few
    restarts the message that kills the process is quarantined unread, and the restarts in
    the middle of the batch neither lose nor duplicate a case."""
    raws = five_notices()
    folder = fill_maildir(workspace.root, raws)
    runs: list[int] = []
    for _ in range(MAX_TRIES + 2):
        child = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "tests.ingest_crash_child", str(workspace.root), POISON],
            cwd=Path(__file__).parent.parent,
            capture_output=True,
            timeout=120,
            check=False,
        )
        runs.append(child.returncode)
        if child.returncode == 0:
            break
    assert runs[-1] == 0, (runs, child.stderr.decode()[-2000:])
    assert runs[:-1] == [-9] * MAX_TRIES  # each crash counted a try: at most MAX_TRIES
    assert len(await created_once(team.service)) == 5
    assert sorted(os.listdir(folder / "cur")) == [f"{n}.poison.host:2,S" for n in range(1, 6)]
    assert await tries_left(team.service) == []
    dsl = team["dsl@example.org"]
    views = {}
    for case in await team.service.list_cases():
        view = await team.service.open_case(dsl, case.ref)
        views[view.facts.get("child_name")] = view
    assert set(views) == {*NAMES[:2], None, *NAMES[3:]}
    assert "process stopped" in views[None].notes["problems"][0]


# ----- a real IMAP server -------------------------------------------------------------------


@pytest.mark.slow
async def test_imap_marks_all_five_seen_with_the_poison_quarantined(
    dovecot: Dovecot, team: Team, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SGALERT_TEST_IMAP_PASSWORD", dovecot.password)
    bug = break_prepare(monkeypatch)
    uids = [dovecot.append("INBOX", raw) for raw in five_notices()]
    async with watching(team.service, imap_inbox(dovecot, tmp_path)):

        async def all_seen() -> bool:
            return all(seen_flags(dovecot).get(uid) for uid in uids)

        await wait_for(all_seen, what="all five \\Seen")
    assert bug.reached == MAX_TRIES
    cases = await team.service.list_cases()
    assert len(await created_once(team.service)) == 5
    assert sorted(Flag.NEEDS_TRIAGE in c.flags for c in cases) == [False] * 4 + [True]
    assert await tries_left(team.service) == []
    checkpoint = json.loads(await load_checkpoint(team.service.store, "encompass-imap") or "{}")
    assert checkpoint["last_uid"] == uids[-1]


@pytest.mark.slow
async def test_imap_leaves_a_held_message_unseen_and_does_not_retry_it_after_a_restart(
    dovecot: Dovecot, team: Team, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SGALERT_TEST_IMAP_PASSWORD", dovecot.password)
    bug = break_store(monkeypatch, when=by_bytes)
    uids = [dovecot.append("INBOX", raw) for raw in five_notices()]
    others = [uid for uid in uids if uid != uids[2]]
    async with watching(team.service, imap_inbox(dovecot, tmp_path)):

        async def others_seen() -> bool:
            return all(seen_flags(dovecot).get(uid) for uid in others)

        await wait_for(others_seen, what="the other four \\Seen")
        await asyncio.sleep(0.3)
    assert seen_flags(dovecot)[uids[2]] is False
    assert len(await created_once(team.service)) == 4
    (held,) = await held_messages(team.service.store)
    assert held.key.endswith(f":{dovecot.uidvalidity()}:{uids[2]}") and held.error == "ValueError"
    reached = bug.reached
    # A restart looks again at unseen messages under the checkpoint: the held one is skipped.
    async with watching(team.service, imap_inbox(dovecot, tmp_path)):
        await asyncio.sleep(1.0)
    assert bug.reached == reached
    assert seen_flags(dovecot)[uids[2]] is False
    assert len(await created_once(team.service)) == 4
    (alert,) = await open_alerts(team.service.store)
    assert alert["messages"][0]["key"] == held.key


def sgalert_cli(
    workspace: Workspace, *args: str, passphrase: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGALERT_")}
    env["SGALERT_WORKSPACE"] = str(workspace.root)
    if passphrase is not None:
        env["SGALERT_PASSPHRASE"] = passphrase
    return subprocess.run(
        [sys.executable, "-m", "sgalert", *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
        cwd=Path(__file__).parent.parent,
    )


@pytest.mark.slow
async def test_status_lists_a_held_message_until_someone_releases_it(
    team: Team, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    break_store(monkeypatch, when=by_bytes)
    config = team.service.config
    assert config is not None
    rules = SourceRules.from_config(maildir_source())
    (outcome,) = await Ingestor(team.service.new_cases, config).ingest(
        [Inbound(notice(3, POISON), key="maildir:drop:3.poison.host")], rules
    )
    assert outcome.held

    status = await asyncio.to_thread(sgalert_cli, workspace, "status")
    assert status.returncode == 1
    assert "ALERT message-quarantined: drop since" in status.stdout
    assert "HELD unread in drop" in status.stdout and "maildir:drop:3.poison.host" in status.stdout
    assert "Poppy" not in status.stdout
    report = json.loads(
        (await asyncio.to_thread(sgalert_cli, workspace, "status", "--json")).stdout
    )
    assert [h["key"] for h in report["held_messages"]] == ["maildir:drop:3.poison.host"]

    released = await asyncio.to_thread(
        sgalert_cli,
        workspace,
        "held",
        "release",
        "maildir:drop:3.poison.host",
        "--as",
        "dsl@example.org",
        passphrase=PASSPHRASES["dsl@example.org"],
    )
    assert released.returncode == 0, released.stderr
    assert await held_messages(team.service.store) == []
    assert await open_alerts(team.service.store) == []
    again = await asyncio.to_thread(
        sgalert_cli,
        workspace,
        "held",
        "release",
        "maildir:drop:3.poison.host",
        "--as",
        "dsl@example.org",
        passphrase=PASSPHRASES["dsl@example.org"],
    )
    assert again.returncode == 1 and "no held message" in again.stderr
    rows = await team.service.store.fetchall(
        "SELECT actor FROM audit WHERE action = 'message-released'"
    )
    assert [r[0] for r in rows] == ["dsl@example.org"]


# ----- Graph and EWS: a held message is never marked read, even after a restart -------------


async def test_graph_leaves_a_held_message_unread_even_after_a_restart(
    team: Team,
    graph: GraphServer,  # noqa: F811 (the fixture of that name)
    tls: Tls,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    break_store(monkeypatch, when=by_bytes)
    ids = [
        graph.add(graph_notice("Ada Invented", "44/100001/26")),
        graph.add(graph_notice(POISON, "44/100003/26")),
        graph.add(graph_notice("Cal Invented", "44/100004/26")),
    ]
    watcher = await graph_watch(team.service, graph, tls)
    await watcher.until(lambda: len(graph.kinds("mark-read")) == 2)
    await watcher.rounds(2)
    await watcher.stop()
    assert [graph.mails[i].is_read for i in ids] == [True, False, True]
    (held,) = await held_messages(team.service.store)
    assert held.key == f"graph:{GRAPH_MAILBOX}:{ids[1]}"
    stored = json.loads(await load_checkpoint(team.service.store, "encompass-graph") or "{}")
    assert ids[1] not in stored["unmarked"]
    # A restart marks what the checkpoint says is stored but unmarked: never the held one.
    watcher = await graph_watch(team.service, graph, tls)
    await watcher.rounds(2)
    await watcher.stop()
    assert [graph.mails[i].is_read for i in ids] == [True, False, True]
    assert len(await created_once(team.service)) == 2


async def test_ews_leaves_a_held_message_unread_even_after_a_restart(
    harness: Harness,  # noqa: F811 (the fixture of that name)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    break_store(monkeypatch, when=by_bytes)
    ews = harness.server
    poison = ews_notice(POISON, "14/03/2017", "44/100003/26", 3)
    ids = [ews.add_message(m) for m in (ADA, poison, CLEO)]  # batches of two
    deliver = harness.recording()
    async with running(harness.inbox(), deliver, harness.health, None):
        await until(lambda: len(ews.events_of("UpdateItem")) == 2, "the other two read")
        rounds = harness.health.oks
        await until(lambda: harness.health.oks >= rounds + 2, "two more rounds")
    assert [ews.items[i].is_read for i in ids] == [True, False, True]
    checkpoint = await load_checkpoint(harness.service.store, "encompass-ews")
    assert checkpoint is not None and ids[1] not in json.loads(checkpoint)["unmarked"]
    async with running(harness.inbox(), harness.recording(), harness.health, checkpoint):
        rounds = harness.health.oks
        await until(lambda: harness.health.oks >= rounds + 2, "two rounds after a restart")
    assert [ews.items[i].is_read for i in ids] == [True, False, True]
    assert len(await created_once(harness.service)) == 2


async def test_a_saved_file_is_tried_in_one_run_and_never_raises_an_unclearable_alert(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sgalert ingest FILE`` has no mailbox key: its tries are counted in memory, its
    quarantine works the same, and if it is held the person at the terminal is told."""
    config = team.service.config
    assert config is not None
    rules = SourceRules("file", Source.ENCOMPASS)
    bug = break_prepare(monkeypatch)
    (quarantined,) = await Ingestor(team.service.new_cases, config).ingest(
        [Inbound(notice(3, POISON))], rules
    )
    assert quarantined.created and Flag.NEEDS_TRIAGE in quarantined.flags
    assert bug.reached == MAX_TRIES
    monkeypatch.undo()
    break_store(monkeypatch, when=by_bytes)
    (held,) = await Ingestor(team.service.new_cases, config).ingest(
        [Inbound(notice(4, POISON))], rules
    )
    assert held.held and held.key is None
    assert await open_alerts(team.service.store) == []
    assert await tries_left(team.service) == []
    rows = await team.service.store.fetchall(
        "SELECT detail FROM audit WHERE action = 'message-held'"
    )
    assert [json.loads(r[0])["error"] for r in rows] == ["ValueError"]
