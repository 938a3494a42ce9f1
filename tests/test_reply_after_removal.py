"""A person who has been removed cannot acknowledge by replying with a token they still hold.

Removing someone takes away their keys; a page they were sent before that still carries a live
acknowledgement token. Accepting it would let a leaver (or whoever now reads their mailbox) stop
the escalation of a case they may no longer read.
"""

from __future__ import annotations

import json

from sgalert.engine.replies import process_reply
from sgalert.model import CaseState, Role
from sgalert.records.keyring import remove_person

from .conftest import Team, add_member
from .test_replies import REPLIES, paged, refusals, reply, state


async def test_a_removed_persons_token_no_longer_acknowledges(team: Team) -> None:
    ref, token, clock = await paged(team)
    second = await add_member(team, "dsl2@example.org", Role.DSL, "dsl@example.org")
    await remove_person(team.service.store, second, "dsl@example.org")

    outcome = await process_reply(
        team.service, reply("Dana <dsl@example.org>", token), REPLIES, clock
    )

    assert not outcome.accepted
    assert "removed" in outcome.reason
    assert await state(team, ref) is CaseState.NEW
    assert "removed" in (await refusals(team))[-1]
    timers = await team.service.store.fetchall(
        "SELECT count(*) FROM timers WHERE fired_at IS NULL AND cancelled_at IS NULL"
    )
    assert timers[0][0] > 0  # the escalation goes on
    used = await team.service.store.fetchall("SELECT used_at FROM ack_tokens")
    assert [row[0] for row in used] == [None]
    detail = await team.service.store.fetchall(
        "SELECT detail FROM audit WHERE action = 'ack-reply-refused'"
    )
    assert "dsl@example.org" not in json.loads(detail[-1][0])["reason"]
