"""One engine drives a store at a time: a second waits as standby and takes over."""

from __future__ import annotations

from datetime import timedelta

from sgalert.engine.serve import LEASE_SECONDS, Engine

from .conftest import Team
from .engine_helpers import RecordingNotifier, VirtualClock


def engine(team: Team, clock: VirtualClock, holder: str) -> Engine:
    return Engine(
        team.service,
        team.service.store.path.parent,
        notifiers={"email": RecordingNotifier("email")},
        clock=clock,
        holder=holder,
        watch=False,
    )


async def test_second_engine_waits_then_takes_over_when_the_lease_lapses(team: Team) -> None:
    clock = VirtualClock()
    first, second = engine(team, clock, "host-a:1"), engine(team, clock, "host-b:2")
    assert await first.try_lease()
    assert not await second.try_lease()  # standby while the first renews
    clock.advance(seconds=LEASE_SECONDS / 2)
    assert await first.try_lease()  # renewal
    clock.advance(seconds=LEASE_SECONDS / 2 + 1)
    assert not await second.try_lease()  # the renewal moved the expiry on
    clock.advance(seconds=LEASE_SECONDS + 1)  # the first engine stopped renewing
    assert await second.try_lease()
    assert not await first.try_lease()  # the old engine must now stand down
    rows = await team.service.store.fetchall("SELECT holder, heartbeat_at FROM engine_lease")
    assert rows[0][0] == "host-b:2"
    starts = await team.service.store.fetchall(
        "SELECT count(*) FROM audit WHERE action = 'engine-started'"
    )
    assert starts[0][0] == 2


async def test_released_lease_is_taken_at_once(team: Team) -> None:
    clock = VirtualClock()
    first, second = engine(team, clock, "host-a:1"), engine(team, clock, "host-b:2")
    assert await first.try_lease()
    await first.release_lease()
    assert await second.try_lease()
    assert clock() - clock.start < timedelta(seconds=1)
