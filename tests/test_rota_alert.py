"""The engine's rota-gap alert says what it is: when it was raised, and when the first gap is.

A gap is usually ahead of the daily check, so it is never shown as a "since", and a rota gap is
not a mailbox that is down.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, time, timedelta

import pytest

from sgalert.cli.main import main
from sgalert.clock import iso
from sgalert.desk.views import open_alerts
from sgalert.rules.rota import Shift
from tui.status import DeskStatus, banners

from .conftest import Team
from .engine_helpers import VirtualClock
from .test_escalation import make_engine

EVERY_DAY = frozenset(range(7))
MONDAY_MORNING = datetime(2026, 12, 7, 7, 5, tzinfo=UTC)  # GMT: London reads the same


def with_shifts(team: Team, *shifts: Shift) -> None:
    assert team.service.config is not None
    team.service.config = dataclasses.replace(team.service.config, shifts=shifts)


def alert_banner(alert: dict[str, str], now: datetime) -> str:
    status = DeskStatus(now, (alert,), None, (), 0, 0)
    (banner,) = banners(status, now, UTC, "dsl@example.org")
    return banner.text


async def test_the_rota_gap_alert_is_raised_now_and_names_the_exact_first_gap(
    team: Team, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = VirtualClock(start=MONDAY_MORNING)
    engine, email = make_engine(team, clock)
    with_shifts(
        team,
        Shift("dsl@example.org", EVERY_DAY, time(7, 0), time(17, 3)),
        Shift("deputy@example.org", EVERY_DAY, time(17, 4), time(7, 0)),
    )
    await engine.run_daily_jobs()
    (alert,) = await open_alerts(team.service.store)
    assert alert["raised_at"] == iso(MONDAY_MORNING)
    assert "since" not in alert  # nothing about a gap is a "since"
    assert alert["first_gap_from"] == iso(datetime(2026, 12, 7, 17, 3, tzinfo=UTC))
    assert alert["first_gap_to"] == iso(datetime(2026, 12, 7, 17, 4, tzinfo=UTC))

    root = str(team.service.store.path.parent)
    assert await asyncio.to_thread(main, ["--workspace", root, "status"]) == 1
    assert (
        "ALERT rota-gap: raised 2026-12-07T07:05:00.000000Z;"
        " first gap 2026-12-07T17:03:00.000000Z to 2026-12-07T17:04:00.000000Z\n"
    ) in capsys.readouterr().out

    text = alert_banner(alert, MONDAY_MORNING)
    assert (
        text == "ROTA GAP ALERT raised Mon 7 Dec 07:05; first gap Mon 7 Dec 17:03-17:04. Press r."
    )
    assert "SOURCE DOWN" not in text and "mail" not in text

    await engine.tick_alerts()
    await engine.sender.send_due()
    page = email.sent[0][0]
    assert page.subject() == "[sgalert] ALERT: rota-gap (rota)"
    body = page.body()
    assert "Raised: Mon 7 Dec 2026 07:05 GMT" in body
    assert "sgalert rota check" in body
    assert "may not reach" not in body and "Since" not in body

    # The next morning the hole has moved: the open alert follows it, and is not paged again.
    with_shifts(
        team,
        Shift("dsl@example.org", EVERY_DAY, time(7, 0), time(17, 33)),
        Shift("deputy@example.org", EVERY_DAY, time(17, 34), time(7, 0)),
    )
    clock.advance(days=1)
    await engine.run_daily_jobs()
    (alert,) = await open_alerts(team.service.store)
    assert alert["raised_at"] == iso(MONDAY_MORNING)
    assert alert["first_gap_from"] == iso(datetime(2026, 12, 8, 17, 33, tzinfo=UTC))
    sent = len(email.sent)
    await engine.tick_alerts()
    await engine.sender.send_due()
    assert len(email.sent) == sent


def test_an_older_rota_gap_alert_shows_its_gap_as_a_gap_not_a_since() -> None:
    raised = MONDAY_MORNING
    alert = {
        "kind": "rota-gap",
        "source": "rota",
        "raised_at": iso(raised),
        "since": iso(raised + timedelta(days=5)),  # what the engine used to record
    }
    assert alert_banner(alert, raised) == (
        "ROTA GAP ALERT raised Mon 7 Dec 07:05; first gap from Sat 12 Dec 07:05. Press r."
    )


def test_an_alert_of_another_kind_is_not_called_source_down() -> None:
    alert = {"kind": "something-new", "source": "engine", "raised_at": iso(MONDAY_MORNING)}
    text = alert_banner(alert, MONDAY_MORNING)
    assert text == "ALERT: something-new (raised Mon 7 Dec 07:05)."
