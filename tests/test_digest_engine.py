"""The engine sends the digest once per school date at its slot, through the real maildrop
channel as multipart text + HTML; late (and saying why) when the engine was down at the slot."""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import os
import sqlite3
import subprocess
import sys
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from sgalert.config import DigestSettings
from sgalert.engine.serve import Engine
from sgalert.ports import DeliveryError, Notification, Receipt, Recipient

from .conftest import Team
from .digest_support import PERSONAL, at, seed
from .engine_helpers import RecordingNotifier, VirtualClock
from .test_digest import _Text


def words(text: str) -> str:
    """Text with its wrapping undone, to find a sentence in the 78-column mail."""
    return " ".join(text.split())


def engine_at(team: Team, moment: datetime) -> tuple[Engine, VirtualClock]:
    clock = VirtualClock(moment)
    team.service._clock = clock
    engine = Engine(team.service, team.service.store.path.parent, clock=clock, watch=False)
    return engine, clock


def mails(team: Team) -> list[EmailMessage]:
    folder = team.service.store.path.parent / "outbox" / "email" / "new"
    found = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        if message["Subject"].startswith("[sgalert] Daily digest"):
            found.append(message)
    return found


async def digest_rows(team: Team) -> list[str]:
    rows = await team.service.store.fetchall(
        "SELECT idempotency_key FROM outbox WHERE idempotency_key LIKE 'digest-%' ORDER BY id"
    )
    return [str(r[0]) for r in rows]


async def test_the_half_past_seven_slot_fires_once_across_a_restart(team: Team) -> None:
    engine, clock = engine_at(team, at(7, 7, 29))
    assert await engine.run_digest() == 0  # not yet
    clock.advance(minutes=2)
    assert await engine.run_digest() == 1  # the head
    assert await engine.run_digest() == 0
    await engine.sender.send_due()
    # A restart (a new engine on the same store), then two engines racing for the same slot.
    again, _ = engine_at(team, at(7, 7, 45))
    assert await again.run_digest() == 0
    first, _ = engine_at(team, at(7, 8))
    second, _ = engine_at(team, at(7, 8))
    assert await asyncio.gather(first.run_digest(), second.run_digest()) == [0, 0]
    assert await digest_rows(team) == [
        "digest-2026-12-07:email:" + team["head@example.org"].person.id
    ]
    (sent,) = mails(team)
    assert sent["To"] == "head@example.org"
    assert sent["Subject"] == "[sgalert] Daily digest Mon 7 Dec 2026: 0 new, 0 unacknowledged"
    # The next school day has its own digest.
    tuesday, _ = engine_at(team, at(8, 7, 30))
    assert await tuesday.run_digest() == 1


async def test_two_fresh_engines_at_the_slot_queue_one_digest(team: Team) -> None:
    first, _ = engine_at(team, at(7, 7, 31))
    second, _ = engine_at(team, at(7, 7, 31))
    results = await asyncio.gather(first.run_digest(), second.run_digest())
    assert sorted(results) == [0, 1]
    assert len(await digest_rows(team)) == 1


@pytest.mark.parametrize(
    "moment",
    [
        at(12, 8),  # Saturday
        at(13, 12),  # Sunday
        datetime(2026, 12, 28, 9, 0, tzinfo=at(1, 0).tzinfo),  # bank holiday, Christmas holiday
        datetime(2027, 1, 4, 9, 0, tzinfo=at(1, 0).tzinfo),  # INSET day
        datetime(2026, 10, 27, 9, 0, tzinfo=at(1, 0).tzinfo),  # half term
    ],
)
async def test_no_digest_on_days_that_are_not_school_days(team: Team, moment: datetime) -> None:
    engine, _ = engine_at(team, moment)
    assert await engine.run_digest() == 0
    assert await digest_rows(team) == []


async def test_a_slot_missed_while_down_is_sent_at_start_and_says_late(team: Team) -> None:
    await seed(team)
    engine, _ = engine_at(team, at(7, 9, 10))
    try:
        async with asyncio.timeout(3):
            await engine.run()
    except TimeoutError:
        pass
    assert engine.started_at == at(7, 9, 10)
    (sent,) = mails(team)
    assert sent["Subject"].endswith("(late)")
    text = sent.get_body(("plain",))
    assert text is not None
    assert (
        "LATE: it was due at 07:30 but sgalert's engine was not running then (it started at"
        " 09:10 on Mon 7 Dec)." in words(text.get_content())
    )
    rows = await team.service.store.fetchall(
        "SELECT detail FROM audit WHERE action = 'digest-queued'"
    )
    assert '"late":true' in rows[0][0]


async def test_the_email_is_multipart_text_and_html_with_no_personal_data(team: Team) -> None:
    await seed(team)
    engine, _ = engine_at(team, at(7, 7, 30))
    assert await engine.run_digest() == 1
    await engine.sender.send_due()
    folder = team.service.store.path.parent / "outbox" / "email" / "new"
    (raw,) = [p.read_bytes() for p in folder.iterdir()]
    for datum in PERSONAL:
        assert datum.lower().encode() not in raw.lower(), datum
    (sent,) = mails(team)
    assert sent.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in sent.iter_parts()] == ["text/plain", "text/html"]
    text, page = (p.get_content() for p in sent.iter_parts())
    for datum in PERSONAL:  # and decoded, in case an encoding hid one
        assert datum.lower() not in text.lower() and datum.lower() not in page.lower()
    parser = _Text()
    parser.feed(page)
    parser.close()
    assert "At a glance: 4 new, 3 still unacknowledged, 1 statutory deadline overdue." in words(
        text
    )
    assert "At a glance: 4 new, 3 still unacknowledged, 1 statutory deadline overdue." in (
        parser.parts
    )


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGALERT_")}
    env["SGALERT_WORKSPACE"] = str(root)
    return subprocess.run(
        [sys.executable, "-m", "sgalert", *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


@pytest.mark.slow
async def test_the_emailed_anchor_verifies_until_the_logs_tail_is_deleted(team: Team) -> None:
    await seed(team)
    engine, _ = engine_at(team, at(7, 7, 30))
    await engine.run_digest()
    await engine.sender.send_due()
    (sent,) = mails(team)
    body = sent.get_body(("plain",))
    assert body is not None
    command = next(
        line for line in body.get_content().splitlines() if "audit verify --anchor" in line
    )
    anchor = command.rsplit(" ", 1)[1]
    root = team.service.store.path.parent
    held = _cli(root, "audit", "verify", "--anchor", anchor)
    assert held.returncode == 0, held.stderr
    seq = int(anchor.split(":")[0])
    db = sqlite3.connect(team.service.store.path, isolation_level=None)
    db.execute("DROP TRIGGER audit_no_delete")
    db.execute("DELETE FROM audit WHERE seq >= ?", (seq,))
    db.close()
    assert _cli(root, "audit", "verify").returncode == 0  # the chain alone cannot tell
    cut = _cli(root, "audit", "verify", "--anchor", anchor)
    assert cut.returncode == 1
    assert cut.stderr == (
        f"sgalert: audit entry {seq} (anchored as {anchor[: len(str(seq)) + 17]}) is missing:"
        f" the log ends at entry {seq - 1}, so entries were deleted since that anchor was taken\n"
    )


@pytest.mark.slow
async def test_digest_preview_html_and_send_on_the_command_line(team: Team, tmp_path: Path) -> None:
    _, refs = await seed(team)
    root = team.service.store.path.parent
    preview = _cli(root, "digest", "--preview", "--date", "2026-12-07")
    assert preview.returncode == 0, preview.stderr
    lines = preview.stdout.splitlines()
    assert lines[0] == "Test School: safeguarding digest for Monday 7 December 2026"
    assert "At a glance: 4 new, 3 still unacknowledged, 1 statutory deadline overdue." in words(
        preview.stdout
    )
    assert refs["H1"] not in preview.stdout
    chair = _cli(root, "digest", "--date", "2026-12-07", "--for", "chair")
    assert f"- {refs['H1']} (whistle), received Sat 5 Dec 12:00, not yet acknowledged" in words(
        chair.stdout
    )

    page = tmp_path / "digest.html"
    written = _cli(root, "digest", "--date", "2026-12-07", "--html", str(page))
    assert written.returncode == 0, written.stderr
    assert written.stdout == f"wrote the HTML digest for 2026-12-07 (head's copy) to {page}\n"
    assert page.stat().st_mode & 0o777 == 0o600
    parser = _Text()
    parser.feed(page.read_text(encoding="utf-8"))
    parser.close()
    assert "At a glance: 4 new, 3 still unacknowledged, 1 statutory deadline overdue." in (
        parser.parts
    )

    bad = _cli(root, "digest", "--date", "7/12/2026")
    assert (bad.returncode, bad.stdout) == (1, "")
    assert bad.stderr == "sgalert: --date '7/12/2026' is not a date; write it as 2026-12-07\n"

    sent = _cli(root, "digest", "--send", "--date", "2026-12-07")
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.splitlines() == [
        "queued the digest for 2026-12-07 to 1 recipient(s)",
        "  head@example.org: delivered",
    ]
    (mail,) = mails(team)
    assert mail.get_content_type() == "multipart/alternative"
    # Sending by hand does not stand in for the engine's own slot that day.
    engine, _ = engine_at(team, at(7, 7, 31))
    assert await engine.run_digest() == 1


class Refusing:
    """An email channel that refuses every message for good."""

    per_person = True

    def __init__(self, name: str = "email") -> None:
        self.name = name

    async def send(self, notification: Notification, recipient: Recipient) -> Receipt:
        raise DeliveryError("550 refused", retryable=False)

    async def close(self) -> None:
        return None


async def test_a_failing_channel_falls_back_to_the_same_person_never_a_shared_one(
    team: Team,
) -> None:
    assert team.service.config is not None
    team.service.config = dataclasses.replace(
        team.service.config,
        digest=DigestSettings(enabled=True, recipients=("head", "governor@example.org")),
    )
    clock = VirtualClock(at(7, 7, 31))
    team.service._clock = clock
    other, teams = RecordingNotifier("other-mail"), RecordingNotifier("teams", per_person=False)
    engine = Engine(
        team.service,
        team.service.store.path.parent,
        notifiers={"email": Refusing(), "other-mail": other, "teams": teams},
        clock=clock,
        watch=False,
    )
    assert await engine.run_digest() == 2
    await engine.sender.send_due()  # refused on email: each falls back
    await engine.sender.send_due()
    assert teams.sent == []
    assert sorted(r.address for _, r in other.sent) == ["governor@example.org", "head@example.org"]
    for notification, _ in other.sent:
        assert notification.document is not None
        assert notification.subject().startswith("[sgalert] Daily digest")
        assert "(the email channel is failing)" not in notification.body()


async def test_a_failing_digest_never_stops_the_engine_and_is_tried_again(
    team: Team, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import sgalert.engine.serve as serve

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk trouble")

    engine, clock = engine_at(team, at(7, 7, 31))
    with monkeypatch.context() as patch:
        patch.setattr(serve, "build_digest", broken)
        assert await engine.digest_tick() == 0  # logged, not raised
        assert "the daily digest could not be queued" in caplog.text
    clock.advance(minutes=1)
    assert await engine.digest_tick() == 0  # waits before trying again
    clock.advance(minutes=5)
    assert await engine.digest_tick() == 1


async def test_a_digest_that_fails_on_every_channel_raises_an_alert(team: Team) -> None:
    """Silence must not look like safety: a head who gets no digest is not told nothing was
    missed; the team is told the digest could not be delivered (no content in the alert)."""
    assert team.service.config is not None
    team.service.config = dataclasses.replace(
        team.service.config, digest=DigestSettings(enabled=True, recipients=("head",))
    )
    clock = VirtualClock(at(7, 7, 31))
    team.service._clock = clock
    engine = Engine(
        team.service,
        team.service.store.path.parent,
        notifiers={"email": Refusing(), "other-mail": Refusing("other-mail")},
        clock=clock,
        watch=False,
    )
    assert await engine.run_digest() == 1
    for _ in range(4):
        await engine.sender.send_due()
        clock.advance(minutes=10)
    rows = await team.service.store.fetchall(
        "SELECT kind, source_name FROM system_alerts WHERE cleared_at IS NULL"
    )
    assert [(r["kind"], r["source_name"]) for r in rows] == [
        ("page-undeliverable", "daily digest 2026-12-07")
    ]
