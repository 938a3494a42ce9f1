"""The right people are told when a mailbox is down, and told since when.

The whistleblowing mailbox is the monitoring officer's [HMS]: when it is down they are paged, by
name of the mailbox. The DSL team is paged too (silence must not look like safety, and they keep
sgalert running) but only that "a watched mailbox" is down: a page leaves the machine (phones,
lock screens, shared inboxes), and an allegation may be about one of them. A shared channel gets
the same unnamed page. Every page says since when the mailbox has been failing, not when the alert
happened to be raised.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3

import pytest

from sgalert.clock import iso, parse_iso
from sgalert.config import SourceConfig
from sgalert.desk.views import open_alerts
from sgalert.engine.serve import Engine
from sgalert.engine.watch import SourceMonitor
from sgalert.model import Source
from sgalert.ports import Notification
from sgalert.records.alerts import AlertKind, raise_alert
from sgalert.records.store import on_connection
from sgalert.workspace import Workspace

from .conftest import Team, encompass_case
from .engine_helpers import RecordingNotifier, VirtualClock

WHISTLE_SOURCE = """
[[sources]]
name = "staff-concerns"
type = "whistle"
kind = "maildir"
path = "inbox/staff-concerns"
"""
TEAM = {"dsl@example.org", "deputy@example.org", "head@example.org"}


@pytest.fixture
def workspace(workspace: Workspace) -> Workspace:
    """The shared workspace plus a whistleblowing mailbox."""
    with workspace.config_path.open("a", encoding="utf-8") as config:
        config.write(WHISTLE_SOURCE)
    return workspace


def engine_for(
    team: Team, clock: VirtualClock, channels: tuple[str, ...] = ("email", "teams")
) -> tuple[Engine, RecordingNotifier, RecordingNotifier]:
    """The engine with the config's own plan, paging by email and to a shared chat channel
    (or by those of the two named in ``channels``)."""
    email, chat = RecordingNotifier("email"), RecordingNotifier("teams", per_person=False)
    team.service._clock = clock
    assert team.service.plan is not None
    team.service.plan = dataclasses.replace(
        team.service.plan,
        channels=channels,
        per_person_channels=frozenset({"email"}) & set(channels),
    )
    engine = Engine(
        team.service,
        team.service.store.path.parent,
        notifiers={"email": email, "teams": chat},
        clock=clock,
        watch=False,
    )
    return engine, email, chat


async def source_down(team: Team, clock: VirtualClock, name: str, kind: Source) -> None:
    """The mailbox fails, keeps failing past its allowance, and its alert is paged."""
    assert team.service.config is not None
    source = next(s for s in team.service.config.sources if s.name == name)
    assert source.type is kind
    monitor = SourceMonitor(team.service.store, source, clock=clock)
    await monitor.failing("connection problem: ConnectionRefusedError")
    clock.advance(minutes=25)
    await monitor.failing("connection problem: ConnectionRefusedError")
    await monitor.check()


def by_address(email: RecordingNotifier) -> dict[str, Notification]:
    return {recipient.address: notification for notification, recipient in email.sent}


async def test_whistle_mailbox_down_pages_the_monitoring_officer_by_name(team: Team) -> None:
    clock = VirtualClock()
    began = clock()
    engine, email, chat = engine_for(team, clock)
    await source_down(team, clock, "staff-concerns", Source.WHISTLE)
    await engine.tick_alerts()
    await engine.sender.send_due()

    pages = by_address(email)
    assert set(pages) == TEAM | {"mo@example.org"}
    assert pages["mo@example.org"].case_ref == "source-down (staff-concerns)"
    for address in TEAM:
        assert pages[address].case_ref == "source-down (a watched mailbox)"
        assert "staff-concerns" not in pages[address].body() + pages[address].subject()
        assert "whistle" not in pages[address].body().lower()
    ((shared, _),) = chat.sent
    assert shared.case_ref == "source-down (a watched mailbox)"
    for notification in (*pages.values(), shared):
        assert notification.received_at == began  # since the failure began, not +25 minutes


async def test_another_mailbox_down_pages_the_team_only(team: Team) -> None:
    clock = VirtualClock()
    engine, email, _ = engine_for(team, clock)
    await source_down(team, clock, "encompass", Source.ENCOMPASS)
    await engine.tick_alerts()
    await engine.sender.send_due()
    pages = by_address(email)
    assert set(pages) == TEAM
    assert {n.case_ref for n in pages.values()} == {"source-down (encompass)"}


async def test_a_source_down_alert_is_dated_from_when_the_failure_began(team: Team) -> None:
    clock = VirtualClock()
    began = clock()
    source = SourceConfig(name="encompass-imap", type=Source.ENCOMPASS, kind="imap")
    monitor = SourceMonitor(team.service.store, source, clock=clock)
    await monitor.failing("connection problem: ConnectionRefusedError")
    clock.advance(minutes=11)
    await monitor.check()
    (alert,) = await open_alerts(team.service.store)
    assert parse_iso(alert["raised_at"]) == began
    assert parse_iso(alert["since"]) == began


async def test_an_alert_page_is_queued_like_a_case_page(team: Team) -> None:
    """Alert pages and case pages go through the one page builder: the same stored fields, so
    a failing alert page falls back and reads back like any other (only one key per page)."""
    clock = VirtualClock()
    engine, _, _ = engine_for(team, clock)
    await team.service.create_cases([encompass_case()])
    await engine.tick_timers()
    await source_down(team, clock, "encompass", Source.ENCOMPASS)
    await engine.tick_alerts()
    rows = await team.service.store.fetchall("SELECT case_id, payload FROM outbox ORDER BY id")
    alerts = [json.loads(p) for c, p in rows if c is None]
    cases = [json.loads(p) for c, p in rows if c is not None]
    assert alerts and cases
    assert {frozenset(p) for p in alerts} == {frozenset(p) for p in cases}
    assert {(p["confidential"], p["ack_token"]) for p in alerts} == {(False, None)}
    assert all(p["root_key"] == p["idempotency_key"] for p in alerts)


async def confidential_page_failed(team: Team, clock: VirtualClock, ref: str) -> None:
    """As the outbox raises it when a whistleblowing (or about-head) case's page failed on every
    channel it may use: the case's reference as subject, its audience confidential."""

    def raise_it(conn: sqlite3.Connection) -> None:
        raise_alert(
            conn,
            AlertKind.PAGE_UNDELIVERABLE,
            ref,
            clock(),
            {"timer": 1, "channel": "email", "audience": "confidential"},
        )

    async with team.service.store.write() as db:
        await on_connection(db, raise_it)


async def test_a_confidential_case_s_failed_page_is_told_to_the_monitoring_officer_only(
    team: Team,
) -> None:
    """Before: the DSL, the deputy, the head and the shared channel were all paged
    "page-undeliverable (WB-…)", telling the head (perhaps its subject) that it exists."""
    clock = VirtualClock()
    engine, email, chat = engine_for(team, clock)
    await confidential_page_failed(team, clock, "WB-2026-0007")
    await engine.tick_alerts()
    await engine.sender.send_due()
    pages = by_address(email)
    assert set(pages) == {"mo@example.org"}
    assert pages["mo@example.org"].case_ref == "page-undeliverable (WB-2026-0007)"
    assert chat.sent == []


async def test_with_no_monitoring_officer_the_dsls_hear_of_a_confidential_case_unnamed(
    team: Team,
) -> None:
    """Not silence: with nobody in the role, the DSL and deputy are told a confidential case
    needs them, without its reference; the head is not told."""
    clock = VirtualClock()
    engine, email, chat = engine_for(team, clock)
    async with team.service.store.write() as db:
        await db.execute(
            "UPDATE people SET removed_at = ? WHERE role = 'monitoring-officer'", (iso(clock()),)
        )
    await confidential_page_failed(team, clock, "WB-2026-0007")
    await engine.tick_alerts()
    await engine.sender.send_due()
    pages = by_address(email)
    assert set(pages) == {"dsl@example.org", "deputy@example.org"}
    for notification in pages.values():
        assert notification.case_ref == "page-undeliverable (a confidential case)"
        assert "WB-2026-0007" not in notification.body() + notification.subject()
    assert chat.sent == []


async def test_with_only_a_shared_channel_a_confidential_alert_is_told_there_unnamed(
    team: Team,
) -> None:
    """A school paging by Teams alone: the alert reaches the channel without the case's
    reference, rather than nobody at all."""
    clock = VirtualClock()
    engine, email, chat = engine_for(team, clock, channels=("teams",))
    await confidential_page_failed(team, clock, "WB-2026-0007")
    await engine.tick_alerts()
    await engine.sender.send_due()
    assert email.sent == []
    ((shared, _),) = chat.sent
    assert shared.case_ref == "page-undeliverable (a confidential case)"
    assert "WB-2026-0007" not in shared.body() + shared.subject()
