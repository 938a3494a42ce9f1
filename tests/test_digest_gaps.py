"""The digest off its happy path: a digest nobody received, a role with nobody in it. Silence
must never look like safety: a head who got no digest hears of it, and the next digest names the
day that reached nobody instead of taking it as sent."""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import date, timedelta

import pytest

from sgalert.config import DigestSettings
from sgalert.desk.service import CaseService
from sgalert.engine.serve import Engine
from sgalert.model import Role
from sgalert.ports import DeliveryError, Notification, Receipt, Recipient
from sgalert.records.alerts import AlertKind, clear_alert, raise_alert
from sgalert.records.keyring import remove_person
from sgalert.routing.digest import Viewer, queue_digest
from sgalert.routing.digest_render import render_text
from sgalert.workspace import Workspace

from .cli_helpers import sgalert_cli
from .conftest import PASSPHRASES, ROLES, Team, add_member, add_people
from .digest_support import at
from .engine_helpers import RecordingNotifier, VirtualClock
from .test_digest import build, queue
from .test_digest_engine import Refusing, engine_at, mails, words


def head_only(team: Team) -> None:
    assert team.service.config is not None
    team.service.config = dataclasses.replace(
        team.service.config, digest=DigestSettings(enabled=True, recipients=("head",))
    )


async def refused_everywhere(team: Team, day: int) -> Engine:
    """That day's digest queued at 07:31 and refused on every email channel until given up."""
    clock = VirtualClock(at(day, 7, 31))
    team.service._clock = clock
    engine = Engine(
        team.service,
        team.service.store.path.parent,
        notifiers={
            "email": Refusing(),
            "other-mail": Refusing("other-mail"),
            "teams": RecordingNotifier("teams", per_person=False),
        },
        clock=clock,
        watch=False,
    )
    assert await engine.run_digest() == 1
    for _ in range(4):
        await engine.sender.send_due()
        clock.advance(minutes=10)
    return engine


async def test_a_digest_that_reached_nobody_is_named_by_the_next_one(team: Team) -> None:
    head_only(team)
    friday, _ = engine_at(team, at(4, 7, 31))
    assert await friday.run_digest() == 1
    await friday.sender.send_due()
    await refused_everywhere(team, 7)  # Monday's: the mail server refused it all day
    tuesday, _ = engine_at(team, at(8, 7, 31))
    assert await tuesday.run_digest() == 1
    await tuesday.sender.send_due()
    (sent,) = [m for m in mails(team) if "Tue 8 Dec" in m["Subject"]]
    body = sent.get_body(("plain",))
    assert body is not None
    text = words(body.get_content())
    assert "No digest went out on Mon 7 Dec" in text
    assert "Covering Fri 4 Dec 07:30 to Tue 8 Dec 07:30" in text
    assert "The previous digest's anchor (Fri 4 Dec" in text


async def test_the_team_hears_that_the_heads_digest_was_not_delivered(team: Team) -> None:
    head_only(team)
    engine = await refused_everywhere(team, 7)
    await engine.tick_alerts()
    rows = await team.service.store.fetchall(
        "SELECT recipient, payload FROM outbox WHERE idempotency_key NOT LIKE 'digest-%'"
        " AND channel = 'email'"
    )
    told = sorted(str(r["recipient"]) for r in rows if "daily digest" in str(r["payload"]))
    assert told == ["deputy@example.org", "dsl@example.org", "head@example.org"]


async def open_alerts(team: Team) -> list[tuple[str, str]]:
    rows = await team.service.store.fetchall(
        "SELECT kind, source_name FROM system_alerts WHERE cleared_at IS NULL ORDER BY id"
    )
    return [(str(r["kind"]), str(r["source_name"])) for r in rows]


async def test_a_recipient_role_with_nobody_in_it_is_an_alert(service: CaseService) -> None:
    """No head added yet: the chair still gets a copy, but nobody may take the head's silence
    for nothing missed."""
    await add_people(
        service.store,
        [(e, ROLES[e], PASSPHRASES[e]) for e in ("dsl@example.org", "chair@example.org")],
    )
    team = Team(service, {})
    assert service.config is not None
    service.config = dataclasses.replace(
        service.config, digest=DigestSettings(enabled=True, recipients=("head", "chair"))
    )
    engine, _ = engine_at(team, at(7, 7, 31))
    assert await engine.run_digest() == 1  # the chair's
    assert await open_alerts(team) == [("no-recipient", "daily digest: nobody is head")]
    await engine.tick_alerts()  # the DSL is paged, told what to look at (not a policy)
    (page,) = await service.store.fetchall(
        "SELECT recipient, payload FROM outbox WHERE idempotency_key LIKE 'alert-%'"
    )
    assert page["recipient"] == "dsl@example.org"
    assert "check [digest] in sgalert.toml and `sgalert user list`" in page["payload"]
    assert "escalation step" not in page["payload"]
    # Once a head is added, the next digest reaches them and the alert is cleared.
    dsl = await service.unlock("dsl@example.org", PASSPHRASES["dsl@example.org"])
    head = "head@example.org"
    await add_people(service.store, [(head, ROLES[head], PASSPHRASES[head])], by=dsl)
    tuesday, _ = engine_at(team, at(8, 7, 31))
    assert await tuesday.run_digest() == 2
    assert await open_alerts(team) == []


async def test_a_removed_person_named_by_address_gets_no_digest(team: Team) -> None:
    """A leaver named in [digest] recipients by address got every day's digest as a governor
    would; now they get none and the team hears the recipient is gone (naming no one)."""
    assert team.service.config is not None
    team.service.config = dataclasses.replace(
        team.service.config,
        digest=DigestSettings(enabled=True, recipients=("head@example.org", "chair")),
    )
    await add_member(team, "head2@example.org", Role.HEAD, "head@example.org")
    await remove_person(team.service.store, team["head2@example.org"], "head@example.org")
    engine, _ = engine_at(team, at(7, 7, 31))
    assert await engine.run_digest() == 1
    rows = await team.service.store.fetchall(
        "SELECT recipient FROM outbox WHERE idempotency_key LIKE 'digest-%'"
    )
    assert [r["recipient"] for r in rows] == ["chair@example.org"]
    assert await open_alerts(team) == [
        ("no-recipient", "daily digest: a recipient has been removed from sgalert")
    ]


@pytest.mark.parametrize(
    ("section", "value"),
    [
        ('name = "Test School"', 'name = "Evil \\u001b]0;owned\\u0007\\u001b[2J School"'),
        ('name = "Test School"', 'name = "Test School\\nBcc: someone@example.org"'),
    ],
)
def test_a_school_name_with_escapes_is_refused_not_printed(
    workspace: Workspace, service: CaseService, section: str, value: str
) -> None:
    """A hand-edited [school] name reached the terminal raw in `digest --preview` (an escape
    that retitles the window and clears the screen) and every digest's first line."""
    config = workspace.config_path
    config.write_text(config.read_text(encoding="utf-8").replace(section, value, 1))
    done = sgalert_cli(config.parent, "digest", "--preview", "--date", "2026-12-07")
    assert done.returncode != 0
    assert "\x1b" not in done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        f"sgalert: {config}: school.name: holds a control character or escape;"
        " write it as plain text"
    ]


async def test_a_digest_that_cannot_be_built_for_a_quarter_hour_is_an_alert(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure that persists (a bug, a store it cannot read) was only logged every 5 minutes
    all day: the head got nothing and nobody was told. After three tries the team hears it."""
    import sgalert.engine.serve as serve

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk trouble")

    engine, clock = engine_at(team, at(7, 7, 31))
    with monkeypatch.context() as patch:
        patch.setattr(serve, "build_digest", broken)
        for _ in range(3):
            assert await engine.digest_tick() == 0
            assert await open_alerts(team) == []  # not for a moment's trouble
            clock.advance(minutes=6)
        assert await engine.digest_tick() == 0
    assert await open_alerts(team) == [("page-undeliverable", "daily digest 2026-12-07")]
    clock.advance(minutes=6)
    assert await engine.digest_tick() == 1  # put right: sent, and its delivery clears the alert
    await engine.sender.send_due()
    assert await open_alerts(team) == []


class TimingOut(RecordingNotifier):
    """A mail server that times out until it is back."""

    down: bool = True

    async def send(self, notification: Notification, recipient: Recipient) -> Receipt:
        if self.down:
            raise DeliveryError("timed out", retryable=True)
        return await super().send(notification, recipient)


async def test_a_digest_held_up_by_a_timing_out_server_is_retried_and_clears(team: Team) -> None:
    head_only(team)
    clock = VirtualClock(at(7, 7, 31))
    team.service._clock = clock
    mail, other = TimingOut("email"), TimingOut("other-mail")
    engine = Engine(
        team.service,
        team.service.store.path.parent,
        notifiers={"email": mail, "other-mail": other},
        clock=clock,
        watch=False,
    )
    assert await engine.run_digest() == 1
    for _ in range(6):
        await engine.sender.send_due()
        clock.advance(minutes=30)
    assert await open_alerts(team) == [("page-undeliverable", "daily digest 2026-12-07")]
    mail.down = other.down = False
    clock.advance(hours=6)
    await engine.sender.send_due()
    assert {r.address for _, r in mail.sent + other.sent} == {"head@example.org"}
    assert await open_alerts(team) == []  # the head has it now


async def test_a_flapping_mailbox_does_not_bury_the_digest(team: Team) -> None:
    """A mailbox that dropped 400 times over the weekend was 400 lines in the head's digest;
    the list is cut at 50 like every other and the rest counted."""
    config = team.service.config
    assert config is not None
    name = config.sources[0].name

    def flap(conn: sqlite3.Connection) -> None:
        for n in range(400):
            raise_alert(conn, AlertKind.SOURCE_DOWN, name, at(5, 8) + timedelta(minutes=5 * n))
            clear_alert(conn, AlertKind.SOURCE_DOWN, name, at(5, 8, 2) + timedelta(minutes=5 * n))

    await team.service.store.transact(flap)
    lines = render_text(await build(team.service), Viewer("head"), width=None).splitlines()
    assert "Mailboxes down in this period: 400" in lines
    assert sum(1 for line in lines if line.startswith(f"  - {name}: down from")) == 50
    assert "  - ... and 350 more" in lines


async def test_digest_send_by_hand_says_when_it_reached_nobody(
    workspace: Workspace, service: CaseService
) -> None:
    """`digest --send` with nobody to send to, or the mail server refusing connections, said
    'queued ...' and exited 0: a script (or a tired DSL) read that as sent."""
    config = workspace.config_path
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text.replace(
            '[channels.email]\nkind = "maildrop"\npath = "outbox/email"\n',
            '[channels.email]\nkind = "smtp"\nhost = "127.0.0.1"\nport = 1\nsecurity = "none"\n'
            'from = "sgalert@school.example.org"\n',
        )
    )
    nobody = sgalert_cli(config.parent, "digest", "--send", "--date", "2026-12-07")
    assert nobody.returncode == 1
    assert nobody.stderr.splitlines()[-1] == (
        "sgalert: the digest for 2026-12-07 went to nobody: nobody is head;"
        " the team is alerted (see sgalert status)"
    )
    head = "head@example.org"
    await add_people(service.store, [(head, ROLES[head], PASSPHRASES[head])])
    refused = sgalert_cli(config.parent, "digest", "--send", "--date", "2026-12-07")
    assert refused.returncode == 1
    assert "  head@example.org: pending (could not connect to the mail server" in refused.stdout
    assert refused.stderr.splitlines()[-1] == (
        "sgalert: the digest for 2026-12-07 was not delivered to 1 of 1 recipient(s); it stays"
        " queued and a running engine (sgalert serve) keeps trying"
    )


async def test_an_old_date_sent_by_hand_does_not_unmake_the_days_after_it(team: Team) -> None:
    """`digest --send --date` of last Friday, sent on Monday after Monday's own digest, made
    Tuesday's reach back to Friday and say Monday had none."""
    service = team.service
    for day in (4, 7):
        await queue(service, await build(service, date(2026, 12, day)))
    friday_again = await build(service, date(2026, 12, 4))
    config = service.config
    assert config is not None
    await service.store.transact(
        lambda conn: queue_digest(conn, config, friday_again, at(7, 9), manual=True)
    )
    tuesday = await build(service, date(2026, 12, 8))
    assert tuesday.missed_days == ()
    assert (tuesday.since, tuesday.until) == (at(7, 7, 30), at(8, 7, 30))
    assert tuesday.previous is not None and tuesday.previous.day == date(2026, 12, 7)


@dataclasses.dataclass
class RefusingTheHead(RecordingNotifier):
    """A mail server that refuses one mailbox for good (the head's is full) and times out on
    the rest until ``slow`` tries have passed."""

    slow: int = 0

    async def send(self, notification: Notification, recipient: Recipient) -> Receipt:
        if recipient.address == "head@example.org":
            raise DeliveryError("552 mailbox full", retryable=False)
        self.slow -= 1
        if self.slow >= 0:
            raise DeliveryError("timed out", retryable=True)
        return await super().send(notification, recipient)


async def test_the_governors_copy_arriving_does_not_clear_the_heads_alert(team: Team) -> None:
    assert team.service.config is not None
    team.service.config = dataclasses.replace(
        team.service.config,
        digest=DigestSettings(enabled=True, recipients=("head", "governor@example.org")),
    )
    clock = VirtualClock(at(7, 7, 31))
    team.service._clock = clock
    mail = RefusingTheHead("email", slow=2)
    engine = Engine(
        team.service,
        team.service.store.path.parent,
        notifiers={"email": mail, "other-mail": RefusingTheHead("other-mail", slow=9)},
        clock=clock,
        watch=False,
    )
    assert await engine.run_digest() == 2
    for _ in range(3):
        await engine.sender.send_due()
        clock.advance(minutes=10)
    # The head's copy was refused on both channels (the alert), then the governor's got through.
    assert [r.address for _, r in mail.sent] == ["governor@example.org"]
    assert await open_alerts(team) == [("page-undeliverable", "daily digest 2026-12-07")]


async def test_a_governors_address_is_not_written_to_the_logs(
    workspace: Workspace, service: CaseService
) -> None:
    """A governor's copy (an address, no person in sgalert) was keyed by the address, and every
    channel logs the key: 'page digest-DATE:email:governor@example.org not sent'."""
    config = workspace.config_path
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text.replace(
            '[channels.email]\nkind = "maildrop"\npath = "outbox/email"\n',
            '[channels.email]\nkind = "smtp"\nhost = "127.0.0.1"\nport = 1\nsecurity = "none"\n'
            'from = "sgalert@school.example.org"\n',
        ).replace('recipients = ["head"]', 'recipients = ["Governor@example.org"]')
    )
    sent = sgalert_cli(config.parent, "digest", "--send", "--date", "2026-12-07")
    assert "  governor@example.org: pending (could not connect" in sent.stdout
    assert "not sent: could not connect" in sent.stderr  # the channel's own log line
    assert "governor" not in sent.stderr.lower()
    rows = await service.store.fetchall("SELECT idempotency_key FROM outbox")
    assert len(rows) == 1 and "governor" not in rows[0][0]
