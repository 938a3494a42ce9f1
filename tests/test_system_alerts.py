"""Silence must not look like safety: system alerts page the DSL team once, and clear."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, time

from sgalert.config import SourceConfig
from sgalert.desk.views import open_alerts
from sgalert.engine.watch import SourceMonitor
from sgalert.model import Source
from sgalert.rules.rota import Shift

from .conftest import Team
from .engine_helpers import VirtualClock
from .test_escalation import make_engine


async def test_source_down_pages_the_team_once_with_no_personal_data(team: Team) -> None:
    clock = VirtualClock()
    engine, email = make_engine(team, clock)
    source = SourceConfig(name="encompass-imap", type=Source.ENCOMPASS, kind="imap")
    monitor = SourceMonitor(team.service.store, source, clock=clock)
    await monitor.failing("connection problem: ConnectionRefusedError")
    clock.advance(minutes=11)
    await monitor.check()
    await engine.tick_alerts()
    await engine.tick_alerts()  # paged once, not again
    await engine.sender.send_due()
    recipients = sorted(r.address for _, r in email.sent)
    assert recipients == ["deputy@example.org", "dsl@example.org", "head@example.org"]
    notification = email.sent[0][0]
    assert notification.subject() == "[sgalert] ALERT: source-down (encompass-imap)"
    assert "cannot be reached" in notification.body()
    assert notification.ack_token is None


async def test_daily_rota_check_raises_and_clears_a_gap_alert(team: Team) -> None:
    clock = VirtualClock(start=datetime(2026, 11, 23, 7, 5, tzinfo=UTC))
    engine, email = make_engine(team, clock)
    await engine.run_daily_jobs()
    (alert,) = await open_alerts(team.service.store)
    assert alert["kind"] == "rota-gap"
    await engine.tick_alerts()
    await engine.sender.send_due()
    assert {n.case_ref for n, _ in email.sent} == {"rota-gap (rota)"}

    # Someone fixes the rota: a shift that covers every minute.
    assert team.service.config is not None
    always = Shift("dsl@example.org", frozenset(range(7)), time(0, 0), time(0, 0), "always")
    team.service.config = dataclasses.replace(team.service.config, shifts=(always,))
    await engine.run_daily_jobs()  # already ran today: nothing changes
    assert len(await open_alerts(team.service.store)) == 1
    clock.advance(days=1)
    await engine.run_daily_jobs()
    assert await open_alerts(team.service.store) == []
    runs = await team.service.store.fetchall(
        "SELECT detail FROM audit WHERE action = 'rota-checked' ORDER BY seq"
    )
    assert [json.loads(r[0])["gaps"] for r in runs][-1] == 0
