"""When the configured terms run out, intake never stops and the team is told (issue 12).

Past the last term the calendar guesses school days from working days, each Operation Encompass
case due on a guessed day is flagged ``calendar-ended``, and the engine's daily job raises a
``calendar-ending`` system alert from 60 days before the last term ends.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sgalert.clock import iso
from sgalert.desk.service import make_plan
from sgalert.desk.views import UPKEEP, open_alerts
from sgalert.intake.ingest import Ingestor
from sgalert.model import Flag, Source
from sgalert.ports import Inbound
from sgalert.routing.calendar_check import CoverageStatus, coverage
from sgalert.routing.escalation import SYSTEM_ALERT_TEXT
from sgalert.rules.school_calendar import SchoolCalendar, Term

from .conftest import Team, whistle_case
from .engine_helpers import VirtualClock
from .test_cli import Cli
from .test_escalation import make_engine
from .test_ingest_dedupe import RULES, notice

LONDON = ZoneInfo("Europe/London")

# The last configured term ended on Thursday 27 May 2027; Monday 31 May is a bank holiday.
LAST_TERM = Term("Summer 2027", date(2027, 4, 12), date(2027, 5, 27))
FRIDAY_EVENING = datetime(2027, 5, 28, 18, 0, tzinfo=LONDON)
TUESDAY_MORNING = datetime(2027, 6, 1, 8, 30, tzinfo=LONDON)


def ran_out(team: Team, *terms: Term) -> SchoolCalendar:
    """Give the team's service a calendar whose terms are ``terms``."""
    assert team.service.config is not None
    calendar = SchoolCalendar(terms=terms)
    team.service.config = dataclasses.replace(team.service.config, calendar=calendar)
    team.service.plan = make_plan(team.service.config)
    return calendar


def test_after_the_last_term_the_next_school_day_is_the_next_working_day() -> None:
    calendar = SchoolCalendar(terms=(LAST_TERM,))
    assert calendar.bank_holiday(date(2027, 5, 31)) is not None
    assert calendar.next_school_day_start(FRIDAY_EVENING) == TUESDAY_MORNING
    assert calendar.next_school_day_guessed(FRIDAY_EVENING)
    # Five school days from that Friday: 1, 2, 3, 4 and 7 June.
    seventh = datetime(2027, 6, 7, 15, 30, tzinfo=LONDON)
    assert calendar.add_school_days(FRIDAY_EVENING, 5) == seventh
    # Inside the term nothing is guessed: Wednesday evening is due Thursday, the last day.
    wednesday = datetime(2027, 5, 26, 18, 0, tzinfo=LONDON)
    assert calendar.next_school_day_start(wednesday) == datetime(2027, 5, 27, 8, 30, tzinfo=LONDON)
    assert not calendar.next_school_day_guessed(wednesday)
    # The last day of term after school: the next one is guessed (Friday 28 May).
    thursday = datetime(2027, 5, 27, 16, 0, tzinfo=LONDON)
    assert calendar.next_school_day_start(thursday) == datetime(2027, 5, 28, 8, 30, tzinfo=LONDON)
    assert calendar.next_school_day_guessed(thursday)


def test_a_calendar_with_no_terms_still_answers() -> None:
    calendar = SchoolCalendar()
    assert calendar.next_school_day_start(FRIDAY_EVENING) == TUESDAY_MORNING
    assert calendar.next_school_day_guessed(FRIDAY_EVENING)
    assert coverage(calendar, FRIDAY_EVENING).status is CoverageStatus.EXHAUSTED


async def test_ingest_after_the_last_term_stores_a_flagged_encompass_case(team: Team) -> None:
    ran_out(team, LAST_TERM)
    assert team.service.config is not None
    ingestor = Ingestor(team.service.new_cases, team.service.config)
    try:
        (outcome,) = await ingestor.ingest(
            [Inbound(notice(), key="imap:1:1", received_at=FRIDAY_EVENING.astimezone(UTC))], RULES
        )
    finally:
        ingestor.close()
    assert outcome.created
    assert Flag.CALENDAR_ENDED in outcome.flags
    summary = await team.service.summary(outcome.ref)
    assert Flag.CALENDAR_ENDED in summary.flags
    assert summary.next_deadline == TUESDAY_MORNING
    # The mailbox's receipt is stored too: the message is not delivered again for ever.
    receipts = await team.service.store.fetchall("SELECT case_id FROM mailbox_receipts")
    assert [r[0] for r in receipts] == [outcome.case_id]
    # A whistleblowing case counts working days, not school days: nothing was guessed for it.
    (whistle,) = await team.service.create_cases([whistle_case()])
    assert Flag.CALENDAR_ENDED not in (await team.service.summary(whistle.ref, viewer=UPKEEP)).flags


async def test_a_phoned_notice_after_the_last_term_is_recorded_and_flagged(team: Team) -> None:
    ran_out(team, LAST_TERM)
    stored = await team.service.record_manual_case(
        team["dsl@example.org"],
        Source.ENCOMPASS,
        facts={"child_name": "Ada Invented"},
        body_text="Present at an incident.",
        caller="PC 0000, Example Constabulary",
        received_at=FRIDAY_EVENING.astimezone(UTC),
    )
    summary = await team.service.summary(stored.ref)
    assert {Flag.CALENDAR_ENDED, Flag.MANUAL_ENTRY} <= set(summary.flags)
    assert summary.next_deadline == TUESDAY_MORNING


async def test_inside_the_terms_no_case_is_flagged(team: Team) -> None:
    ran_out(team, LAST_TERM)
    stored = await team.service.record_manual_case(
        team["dsl@example.org"],
        Source.ENCOMPASS,
        facts={"child_name": "Ada Invented"},
        body_text="Present at an incident.",
        caller="PC 0000, Example Constabulary",
        received_at=datetime(2027, 5, 26, 17, 0, tzinfo=UTC),
    )
    assert Flag.CALENDAR_ENDED not in (await team.service.summary(stored.ref)).flags


def test_coverage_warns_from_sixty_days_before_the_last_term_ends() -> None:
    calendar = SchoolCalendar(terms=(LAST_TERM,))
    at = datetime.combine(LAST_TERM.end, datetime.min.time(), tzinfo=LONDON) + timedelta(hours=9)
    assert coverage(calendar, at - timedelta(days=61)).status is CoverageStatus.OK
    assert coverage(calendar, at - timedelta(days=60)).status is CoverageStatus.ENDING
    assert coverage(calendar, at).status is CoverageStatus.ENDING
    assert coverage(calendar, at + timedelta(days=1)).status is CoverageStatus.EXHAUSTED


async def calendar_alerts(team: Team) -> list[dict[str, str]]:
    return [a for a in await open_alerts(team.service.store) if a["kind"] == "calendar-ending"]


async def test_daily_job_raises_the_calendar_alert_at_59_days_not_at_61(team: Team) -> None:
    start = datetime(2027, 1, 10, 8, 0, tzinfo=UTC)  # after the daily jobs' 07:00
    ran_out(team, Term("Spring 2027", date(2027, 1, 5), start.date() + timedelta(days=61)))
    clock = VirtualClock(start=start)
    engine, email = make_engine(team, clock)
    await engine.run_daily_jobs()
    assert await calendar_alerts(team) == []

    clock.advance(days=2)  # 59 days left
    await engine.run_daily_jobs()
    (alert,) = await calendar_alerts(team)
    assert alert["status"] == "ending" and alert["last_term"] == "2027-03-12"
    await engine.tick_alerts()
    await engine.sender.send_due()
    paged = [(n, r.address) for n, r in email.sent if n.case_ref == "calendar-ending (calendar)"]
    assert sorted(address for _, address in paged) == [
        "deputy@example.org",
        "dsl@example.org",
        "head@example.org",
    ]
    assert "add next year's" in paged[0][0].body()
    assert SYSTEM_ALERT_TEXT["calendar-ending"] in paged[0][0].body()

    # The terms end: the alert is raised again, so the team is paged again.
    clock.advance(days=60)
    await engine.run_daily_jobs()
    (alert,) = await calendar_alerts(team)
    assert alert["status"] == "exhausted"
    before = len(email.sent)
    await engine.tick_alerts()
    await engine.sender.send_due()
    assert len(email.sent) - before == 3

    # Next year's dates are added: the alert clears at the next daily run, and that is audited.
    engine.config = dataclasses.replace(
        engine.config,
        calendar=SchoolCalendar(terms=(Term("Summer 2027", date(2027, 4, 12), date(2027, 7, 21)),)),
    )
    clock.advance(days=1)
    await engine.run_daily_jobs()
    assert await calendar_alerts(team) == []
    actions = await team.service.store.fetchall(
        "SELECT action FROM audit WHERE action IN ('alert-raised', 'alert-cleared')"
        " AND detail LIKE '%calendar-ending%' ORDER BY seq"
    )
    # Raised while ending; when the terms had ended, cleared and raised again (paged again);
    # cleared once later terms were added.
    assert [a[0] for a in actions] == [
        "alert-raised",
        "alert-cleared",
        "alert-raised",
        "alert-cleared",
    ]


def _past_terms_only(config: Path) -> None:
    """Replace the template's terms with one that ended before today, whatever today is."""
    text = config.read_text()
    text = re.sub(
        r"\[\[calendar\.terms\]\].*?(?=\[rota\])",
        '[[calendar.terms]]\nname = "Summer 2025"\nstart = 2025-04-22\nend = 2025-07-22\n\n',
        text,
        flags=re.DOTALL,
    )
    config.write_text(text)


@pytest.mark.slow
def test_case_new_and_ingest_after_the_terms_print_no_traceback(tmp_path: Path) -> None:
    tool = Cli(tmp_path / "ws")
    tool.run("init", "--school-name", "Example First School")
    _past_terms_only(tmp_path / "ws" / "sgalert.toml")
    tool.run(
        "user",
        "add",
        "--first",
        "--name",
        "Dana Example",
        "--email",
        "dsl@example.org",
        "--role",
        "dsl",
        passphrase="dsl-passphrase",
    )
    phoned = tool.run(
        "case",
        "new",
        "--source",
        "encompass",
        "--as",
        "dsl@example.org",
        "--caller",
        "PC 0000, Example Constabulary",
        "--text",
        "-",
        passphrase="dsl-passphrase",
        check=False,
        stdin="child_name: Ada Invented\n\nPresent at an incident.\n",
    )
    assert (phoned.returncode, phoned.stderr) == (0, "")
    assert phoned.stdout.startswith("Recorded SG-")
    saved = tmp_path / "notice.eml"
    saved.write_bytes(notice())
    ingested = tool.run("ingest", str(saved), "--source", "encompass", check=False)
    assert (ingested.returncode, ingested.stderr) == (0, "")
    assert "calendar-ended" in ingested.stdout
    listed = tool.json("cases", "list")
    assert isinstance(listed, list) and len(listed) == 2
    for case in listed:
        assert "calendar-ended" in case["flags"], case["flags"]
        assert case["next_deadline"] > iso(datetime.now(UTC))
