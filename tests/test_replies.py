"""Acknowledging by replying to the notification email: only the right person, only once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from integrations.imap import create as imap_create
from sgalert.config import SourceConfig
from sgalert.engine.replies import make_reply_deliver, process_reply
from sgalert.errors import StoreGone
from sgalert.model import CaseState, Source
from sgalert.ports import Inbound
from sgalert.rules.statutory import StatutoryClock, TimerKind

from .conftest import Team, encompass_case
from .dovecot import Dovecot
from .engine_helpers import VirtualClock
from .imap_helpers import wait_for
from .test_escalation import make_engine

REPLIES = SourceConfig(
    name="replies",
    type=Source.ENCOMPASS,
    kind="maildir",
    purpose="replies",
    authserv_id="mx.school.example.org",
    sender_domains=("example.org",),
)


def reply(sender: str, token: str, *, dmarc: str = "pass", subject: str | None = None) -> bytes:
    subject = subject or f"Re: [sgalert] URGENT: Operation Encompass notice [{token}]"
    return (
        f"From: {sender}\r\nTo: sgalert-replies@school.example.org\r\nSubject: {subject}\r\n"
        f"Authentication-Results: mx.school.example.org; dmarc={dmarc} header.from=example.org\r\n"
        "Message-ID: <reply@example.org>\r\nContent-Type: text/plain\r\n\r\nSeen, on it.\r\n"
    ).encode()


async def paged(team: Team) -> tuple[str, str, VirtualClock]:
    """A new case, paged to the DSL on duty: returns its ref and the DSL's token."""
    clock = VirtualClock()
    engine, _ = make_engine(team, clock)
    (stored,) = await team.service.create_cases([encompass_case()])
    await engine.tick_timers()
    rows = await team.service.store.fetchall("SELECT recipient, payload FROM outbox")
    ((recipient, payload),) = [(r[0], json.loads(r[1])) for r in rows]
    assert recipient == "dsl@example.org"
    return stored.ref, payload["ack_token"], clock


async def state(team: Team, ref: str) -> CaseState:
    return (await team.service.summary(ref)).state


async def refusals(team: Team) -> list[str]:
    rows = await team.service.store.fetchall(
        "SELECT detail FROM audit WHERE action = 'ack-reply-refused' ORDER BY seq"
    )
    return [json.loads(r[0])["reason"] for r in rows]


async def test_reply_from_the_paged_address_acknowledges_and_stops_escalation(
    team: Team,
) -> None:
    ref, token, clock = await paged(team)
    outcome = await process_reply(
        team.service, reply("Dana <dsl@example.org>", token), REPLIES, clock
    )
    assert outcome.accepted and outcome.case_ref == ref
    summary = await team.service.summary(ref)
    assert summary.state is CaseState.ACKNOWLEDGED and summary.acknowledged_by == "dsl@example.org"
    pending = await team.service.store.fetchall(
        "SELECT kind FROM timers WHERE fired_at IS NULL AND cancelled_at IS NULL"
    )
    assert {kind for (kind,) in pending} <= {TimerKind.INTAKE_CLOCK}
    # The page said nothing of the case, so a reply is not reading it: the Encompass clock
    # ("read before the next school day") stays open until someone opens the case.
    open_clocks = await team.service.store.fetchall("SELECT kind FROM clocks WHERE met_at IS NULL")
    assert [kind for (kind,) in open_clocks] == [StatutoryClock.ENCOMPASS_BEFORE_SCHOOL_DAY]
    again = await process_reply(team.service, reply("dsl@example.org", token), REPLIES, clock)
    assert not again.accepted and again.reason == "token already used"


@pytest.mark.parametrize(
    "sender,token_kind,dmarc,reason",
    [
        ("deputy@example.org", "real", "pass", "not from the address"),
        ("dsl@example.org", "forged", "pass", "unknown token"),
        ("dsl@example.org", "real", "fail", "not authenticated"),
        ('"dsl@example.org" <attacker@evil.test>', "real", "pass", "not from the address"),
        ("dsl@example.org)<attacker@evil.test>", "real", "pass", "not from the address"),
        ("dsl@example.org", "none", "pass", "no acknowledgement token"),
    ],
)
async def test_refused_replies_change_nothing_and_are_audited(
    team: Team, sender: str, token_kind: str, dmarc: str, reason: str
) -> None:
    ref, token, clock = await paged(team)
    used = {"real": token, "forged": "ACK-0123456789ABCDEF", "none": "no token here"}[token_kind]
    outcome = await process_reply(team.service, reply(sender, used, dmarc=dmarc), REPLIES, clock)
    assert not outcome.accepted
    assert reason in outcome.reason
    assert await state(team, ref) is CaseState.NEW
    assert reason in (await refusals(team))[-1]


async def test_expired_token_is_refused(team: Team) -> None:
    ref, token, clock = await paged(team)
    clock.advance(days=8)
    outcome = await process_reply(team.service, reply("dsl@example.org", token), REPLIES, clock)
    assert not outcome.accepted and outcome.reason == "token expired"
    assert await state(team, ref) is CaseState.NEW


@pytest.mark.slow
async def test_reply_arriving_in_a_real_imap_reply_mailbox(
    team: Team, dovecot: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SGALERT_TEST_IMAP_PASSWORD", dovecot.password)
    ref, token, clock = await paged(team)
    source = SourceConfig(
        name="replies",
        type=Source.ENCOMPASS,
        kind="imap",
        purpose="replies",
        authserv_id="mx.school.example.org",
        sender_domains=("example.org",),
        options={
            "host": dovecot.host,
            "port": dovecot.port,
            "security": "none",
            "username": dovecot.user,
            "password_env": "SGALERT_TEST_IMAP_PASSWORD",
        },
    )
    inbox = imap_create(source, tmp_path)
    from sgalert.engine.watch import SourceMonitor

    task = asyncio.create_task(
        inbox.run(
            make_reply_deliver(team.service, source, clock),
            None,
            SourceMonitor(team.service.store, source),
        )
    )
    try:
        dovecot.append("INBOX", reply("deputy@example.org", token))  # wrong person first

        async def refused() -> bool:
            return bool(await refusals(team))

        await wait_for(refused, what="the wrong reply to be refused")
        dovecot.append("INBOX", reply("Dana Example <dsl@example.org>", token))

        async def acknowledged() -> bool:
            return await state(team, ref) is CaseState.ACKNOWLEDGED

        await wait_for(acknowledged, what="the acknowledgement")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await team.service.list_cases() and len(await team.service.list_cases()) == 1


async def test_replies_are_never_done_while_the_store_file_is_gone(team: Team) -> None:
    """With the store file deleted under the engine, an acknowledgement went into the deleted
    file and its reply was marked done: both lost when the engine stopped."""
    _, token, clock = await paged(team)
    deliver = make_reply_deliver(team.service, REPLIES, clock)
    team.service.store.path.unlink()
    with pytest.raises(StoreGone, match="deleted while in use"):
        await deliver([Inbound(reply("dsl@example.org", token))])
