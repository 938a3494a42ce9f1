"""The IMAP inbox against a real Dovecot: IDLE, restarts, crashes, UIDVALIDITY, source-down."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from integrations.imap import ImapInbox
from sgalert.config import SourceConfig
from sgalert.desk.service import CaseService
from sgalert.desk.views import open_alerts
from sgalert.engine.watch import SOURCE_DOWN, SourceMonitor, make_deliver
from sgalert.intake.ingest import Ingestor, load_checkpoint
from sgalert.intake.prepare import SourceRules
from sgalert.model import Source
from sgalert.ports import Inbound
from sgalert.workspace import Workspace

from .conftest import Team
from .dovecot import Dovecot
from .imap_helpers import imap_inbox, imap_source, notice, notices_arriving_at, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _imap_password(dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SGALERT_TEST_IMAP_PASSWORD", dovecot.password)


class FastClock:
    """A clock the test moves forward by hand, for minutes-long thresholds."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@asynccontextmanager
async def watching(
    service: CaseService, inbox: ImapInbox, monitor: SourceMonitor | None = None
) -> AsyncIterator[SourceMonitor]:
    assert service.config is not None
    source = imap_source_for(inbox)
    monitor = monitor or SourceMonitor(service.store, source)
    deliver = make_deliver(
        Ingestor(service.new_cases, service.config), SourceRules.from_config(source)
    )
    checkpoint = await load_checkpoint(service.store, source.name)
    task = asyncio.create_task(inbox.run(deliver, checkpoint, monitor))
    try:
        yield monitor
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def imap_source_for(inbox: ImapInbox) -> SourceConfig:
    return SourceConfig(name=inbox.name, type=Source.ENCOMPASS, kind="imap")


def seen_flags(server: Dovecot) -> dict[int, bool]:
    with server.connect() as imap:
        imap.select_folder("INBOX", readonly=True)
        flags = imap.get_flags(imap.search("ALL"))
    return {uid: b"\\Seen" in f for uid, f in flags.items()}


async def count_cases(service: CaseService) -> int:
    return len(await service.list_cases())


async def test_idle_turns_new_mail_into_a_case_then_marks_it_seen(
    dovecot: Dovecot, team: Team, tmp_path: Path
) -> None:
    service = team.service
    async with watching(service, imap_inbox(dovecot, tmp_path)):
        await asyncio.sleep(0.5)  # let it reach IDLE on an empty folder
        uid = dovecot.append("INBOX", notice(1))

        async def one_case() -> bool:
            return await count_cases(service) == 1

        await wait_for(one_case, what="the case")
        await wait_for(lambda: asyncio.sleep(0, seen_flags(dovecot).get(uid, False)), what="\\Seen")
    (summary,) = await service.list_cases()
    view = await service.open_case(team["dsl@example.org"], summary.ref)
    assert view.facts["child_name"] == "Ada Invented"
    assert view.facts["police_reference"] == "44/100001/26"
    checkpoint = json.loads(await load_checkpoint(service.store, "encompass-imap") or "{}")
    assert checkpoint == {"uidvalidity": dovecot.uidvalidity(), "last_uid": uid}


@pytest.mark.parametrize(
    ("method", "when"),
    [
        # Between a round's last command and IDLE: Dovecot announces the mail with IDLE's
        # "+ idling", in the same packet, so the socket never turns readable for it.
        ("idle", "before"),
        ("add_flags", "after"),
        ("search", "after"),
        ("idle", "after"),
        ("search", "before"),
        ("fetch", "after"),
        ("add_flags", "before"),
    ],
)
async def test_mail_arriving_at_any_point_of_the_conversation_becomes_a_case_at_once(
    dovecot: Dovecot,
    team: Team,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    when: str,
) -> None:
    """A notice waits in the folder; three more each arrive at the same point of the watcher's
    IMAP conversation. Every one must be a case within seconds, not when IDLE is next re-issued
    (a minute here); each exactly once, each marked read."""
    first = dovecot.append("INBOX", notice(10, "Bea Invented"))
    uids = notices_arriving_at(monkeypatch, dovecot, method, when, count=3)
    service = team.service
    async with watching(service, imap_inbox(dovecot, tmp_path, idle_seconds=60)):

        async def four() -> bool:
            return await count_cases(service) == 4

        try:
            await wait_for(four, within=8)
        except AssertionError:
            cases = await count_cases(service)
            pytest.fail(f"{cases} case(s) from {1 + len(uids)} notice(s) in 8 s", pytrace=False)
        await wait_for(lambda: asyncio.sleep(0, all(seen_flags(dovecot).values())), what="\\Seen")
        await asyncio.sleep(0.3)
    assert sorted(seen_flags(dovecot)) == [first, *uids]
    assert await count_cases(service) == 4


@pytest.mark.parametrize(("method", "when"), [("idle", "before"), ("move", "after")])
async def test_moving_handled_mail_away_misses_nothing_that_arrives_meanwhile(
    dovecot: Dovecot,
    team: Team,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    when: str,
) -> None:
    """With ``after_commit = "move"`` the folder shrinks as it grows (EXPUNGE, then EXISTS with
    a count it had before): mail arriving then is still a case at once, and every notice ends
    up in the processed folder."""
    dovecot.create_folder("Processed")
    dovecot.append("INBOX", notice(10, "Bea Invented"))
    uids = notices_arriving_at(monkeypatch, dovecot, method, when, count=3)
    service = team.service
    inbox = imap_inbox(dovecot, tmp_path, idle_seconds=60, after_commit="move", move_to="Processed")
    async with watching(service, inbox):

        async def four() -> bool:
            return await count_cases(service) == 4

        await wait_for(four, within=8, what="four cases")
        await asyncio.sleep(0.3)
    assert len(uids) == 3
    assert seen_flags(dovecot) == {}
    with dovecot.connect() as imap:
        assert imap.select_folder("Processed", readonly=True)[b"EXISTS"] == 4
    assert await count_cases(service) == 4


async def test_backlog_already_in_the_folder_is_drained(
    dovecot: Dovecot, team: Team, tmp_path: Path
) -> None:
    for number in range(1, 8):
        dovecot.append("INBOX", notice(number))
    async with watching(team.service, imap_inbox(dovecot, tmp_path, batch_size=3)):

        async def seven() -> bool:
            return await count_cases(team.service) == 7

        await wait_for(seven, what="seven cases")
    await asyncio.sleep(0.2)
    assert all(seen_flags(dovecot).values())


async def test_large_messages_are_fetched_in_batches_of_their_own(
    dovecot: Dovecot, team: Team, tmp_path: Path
) -> None:
    """A backlog holding big messages is not fetched ``batch_size`` at a time: each message the
    server reports LARGER than its share of ``batch_megabytes`` comes in a batch of its own, in
    mailbox order, and every one still becomes exactly one case."""
    padding = (b"\r\n" + b"X" * 76) * (700 * 1024 // 78)  # about 700 KiB more
    uids = [
        dovecot.append("INBOX", notice(number) + (padding if number in (2, 5, 6) else b""))
        for number in range(1, 10)
    ]
    service = team.service
    assert service.config is not None
    inbox = imap_inbox(dovecot, tmp_path, batch_size=4, batch_megabytes=1)  # large: > 256 KiB
    source = imap_source_for(inbox)
    deliver = make_deliver(
        Ingestor(service.new_cases, service.config), SourceRules.from_config(source)
    )
    batches: list[int] = []

    async def recording(messages: Sequence[Inbound], *, checkpoint: str | None = None) -> object:
        batches.append(len(messages))
        return await deliver(messages, checkpoint=checkpoint)

    task = asyncio.create_task(inbox.run(recording, None, SourceMonitor(service.store, source)))
    try:

        async def all_nine() -> bool:
            return await count_cases(service) == 9

        await wait_for(all_nine, what="nine cases")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert batches == [1, 1, 2, 1, 1, 3], "UIDs 1 | 2 big | 3 4 | 5 big | 6 big | 7 8 9"
    assert sorted(seen_flags(dovecot)) == uids
    assert all(seen_flags(dovecot).values())


async def test_dovecot_restarted_mid_idle_reconnects_and_misses_nothing(
    dovecot: Dovecot, team: Team, tmp_path: Path
) -> None:
    service = team.service
    async with watching(service, imap_inbox(dovecot, tmp_path)) as monitor:
        dovecot.append("INBOX", notice(1))

        async def cases(n: int) -> bool:
            return await count_cases(service) == n

        await wait_for(lambda: cases(1), what="first case")
        dovecot.kill()  # a crash: the IDLE connection drops
        await wait_for(
            lambda: asyncio.sleep(0, monitor.failing_since is not None),
            what="the failure to be noticed",
        )
        dovecot.start()
        dovecot.append("INBOX", notice(2, "Bea Invented"))
        dovecot.append("INBOX", notice(3, "Cal Invented"))
        await wait_for(lambda: cases(3), within=30, what="cases after the restart")
        await wait_for(lambda: asyncio.sleep(0, monitor.failing_since is None), what="recovery")
    assert all(seen_flags(dovecot).values())


async def test_crash_between_commit_and_seen_yields_exactly_one_case(
    dovecot: Dovecot, team: Team, workspace: Workspace, tmp_path: Path
) -> None:
    uid = dovecot.append("INBOX", notice(1))
    child = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "tests.imap_crash_child",
            str(workspace.root),
            dovecot.host,
            str(dovecot.port),
            dovecot.user,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SGALERT_TEST_IMAP_PASSWORD": dovecot.password},
        cwd=Path(__file__).parent.parent,
    )
    assert child.returncode == -9, child.stderr
    assert child.stdout.startswith("committed SG-")
    assert await count_cases(team.service) == 1
    assert seen_flags(dovecot)[uid] is False  # killed before it could mark it

    async with watching(team.service, imap_inbox(dovecot, tmp_path)):
        await wait_for(lambda: asyncio.sleep(0, seen_flags(dovecot)[uid]), what="\\Seen")
    assert await count_cases(team.service) == 1


async def test_uidvalidity_change_rescans_without_duplicates(
    dovecot: Dovecot, team: Team, tmp_path: Path
) -> None:
    service = team.service
    dovecot.append("INBOX", notice(1))
    async with watching(service, imap_inbox(dovecot, tmp_path)):

        async def cases(n: int) -> bool:
            return await count_cases(service) == n

        await wait_for(lambda: cases(1), what="first case")
    new_validity = dovecot.change_uidvalidity("INBOX")
    dovecot.append("INBOX", notice(2, "Bea Invented"))
    async with watching(service, imap_inbox(dovecot, tmp_path)):
        await wait_for(lambda: cases(2), what="the new message")
        await asyncio.sleep(0.5)
    assert await count_cases(service) == 2  # the first message was not made a second case
    checkpoint = json.loads(await load_checkpoint(service.store, "encompass-imap") or "{}")
    assert checkpoint["uidvalidity"] == new_validity


async def test_unreachable_mailbox_raises_source_down_then_clears(
    dovecot: Dovecot, team: Team, tmp_path: Path
) -> None:
    service = team.service
    clock = FastClock()
    source = imap_source(dovecot)
    monitor = SourceMonitor(service.store, source, clock=clock)
    dovecot.stop()
    async with watching(service, imap_inbox(dovecot, tmp_path), monitor):
        await wait_for(
            lambda: asyncio.sleep(0, monitor.failing_since is not None), what="the failure"
        )
        assert await open_alerts(service.store) == []  # not yet: under 10 minutes
        clock.now += timedelta(minutes=11)
        await monitor.check()
        (alert,) = await open_alerts(service.store)
        assert alert["kind"] == SOURCE_DOWN and alert["source"] == "encompass-imap"
        assert dovecot.password not in json.dumps(alert)
        dovecot.start()
        await wait_for(
            lambda: asyncio.sleep(0, not monitor.alerted), within=30, what="the alert to clear"
        )
    assert await open_alerts(service.store) == []
    actions = [row[0] for row in await service.store.fetchall("SELECT action FROM audit")]
    assert SOURCE_DOWN in actions and "source-recovered" in actions
