"""SMTP down: retries, the Teams fallback, then SMTP back and the email delivered after all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sgalert.engine.serve import Engine
from sgalert.model import Source
from sgalert.routing.escalation import Plan
from sgalert.rules.policy import DEFAULT_POLICIES, Policy, Step

from .conftest import Team, encompass_case
from .engine_helpers import VirtualClock
from .http_sink import HttpSink, Tls
from .test_notifiers import (
    LoopbackController,
    Mailroom,
    assert_no_personal_data,
    free_port,
    smtp_channel,
    teams_channel,
    webhook,
)
from .test_notifiers import sink as sink
from .test_notifiers import tls as tls


async def test_smtp_down_retries_then_teams_fallback_then_smtp_back(
    team: Team, sink: HttpSink, tls: Tls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = VirtualClock()
    assert team.service.plan is not None
    team.service._clock = clock
    email_only = Policy(
        steps=(Step("on-duty", ("email",), 0),),
        repeat_target="team",
        repeat_channels=("email",),
        repeat_minutes=600,
    )
    team.service.plan = Plan(
        school="Example First School",
        calendar=team.service.plan.calendar,
        policies={**DEFAULT_POLICIES, Source.ENCOMPASS: email_only},
        channels=("email", "teams"),
        per_person_channels=frozenset({"email"}),
    )
    port = free_port()  # nothing listens there yet: SMTP is down
    notifiers = {
        "email": smtp_channel(port, tmp_path, timeout=2),
        "teams": teams_channel(webhook(sink), tls, tmp_path, monkeypatch),
    }
    engine = Engine(team.service, tmp_path, notifiers=notifiers, clock=clock, watch=False)
    (stored,) = await team.service.create_cases([encompass_case("Ada Invented")])
    await engine.tick_timers()

    await engine.sender.send_due()  # attempt 1 fails
    clock.advance(minutes=1)
    await engine.sender.send_due()  # attempt 2 fails: the Teams fallback is queued
    await engine.sender.send_due()  # the fallback goes out
    (card,) = sink.wait_for(1)
    text = json.dumps(card.json())
    assert stored.ref in text and "email channel is failing" in text
    assert_no_personal_data(text)
    assert "Ada Invented" not in text and "Invented" not in text

    room = Mailroom()
    controller = LoopbackController(room, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        clock.advance(minutes=10)
        await engine.sender.send_due()
    finally:
        controller.stop()
    (mail,) = room.received
    assert mail.rcpt_tos == ["dsl@example.org"]
    assert stored.ref in mail.message()["Subject"]
    assert_no_personal_data(mail.content)
    assert b"Ada Invented" not in mail.content and b"Invented" not in mail.content

    actions = [
        (row[0], json.loads(row[1]).get("channel"))
        for row in await team.service.store.fetchall(
            "SELECT action, detail FROM audit WHERE action LIKE 'notification-%' ORDER BY seq"
        )
    ]
    assert actions == [
        ("notification-failed", "email"),
        ("notification-failed", "email"),
        ("notification-fallback", None),
        ("notification-delivered", "teams"),
        ("notification-delivered", "email"),
    ]
    # In words, the card reached the shared channel (a channel is nobody; it said "someone no
    # longer known"), and the email reached the DSL by name.
    said = [
        line.what
        for line in await team.service.audit_lines(team["dsl@example.org"])
        if line.entry.action == "notification-delivered"
    ]
    assert sorted(said) == [
        f"A page about {stored.ref} reached Dsl Example by email",
        f"A page about {stored.ref} reached the shared channel teams",
    ]
    for notifier in notifiers.values():
        await notifier.close()
