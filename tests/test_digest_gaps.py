"""The digest off its happy path: a digest nobody received, a role with nobody in it. Silence
must never look like safety: a head who got no digest hears of it, and the next digest names the
day that reached nobody instead of taking it as sent."""

from __future__ import annotations

import dataclasses

from sgalert.config import DigestSettings
from sgalert.engine.serve import Engine

from .conftest import Team
from .digest_support import at
from .engine_helpers import RecordingNotifier, VirtualClock
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
