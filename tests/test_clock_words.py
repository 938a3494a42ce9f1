"""How a moment and a clock read to people at the school: one writer for pages, cards, the
command line and the desk, in the UK's order without a leading zero."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sgalert.clock import in_words
from sgalert.desk.clock_view import CaseClock, ClockStanding, clock_lines
from sgalert.model import CaseState

LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # Monday 7 December, 09:00 GMT


def test_a_moment_has_no_leading_zero_and_carries_year_and_zone_when_asked() -> None:
    assert in_words(NOW, LONDON) == "Mon 7 Dec 09:00"
    assert in_words(NOW, LONDON, year=True, zone_name=True) == "Mon 7 Dec 2026 09:00 GMT"
    summer = datetime(2027, 6, 1, 7, 5, tzinfo=UTC)
    assert in_words(summer, LONDON, zone_name=True) == "Tue 1 Jun 08:05 BST"


def test_each_standing_of_a_clock_in_words() -> None:
    due = NOW - timedelta(days=2, hours=3)
    clocks = [
        CaseClock("encompass-before-school-day", due, None),
        CaseClock("lado-1-working-day", NOW + timedelta(minutes=20), None),
        CaseClock("whistle-monitoring-officer-5-working-days", NOW + timedelta(days=3), None),
        CaseClock("file-transfer-5-school-days", due, due + timedelta(hours=10, minutes=4)),
        CaseClock("suspension-confirmation-1-working-day", NOW, NOW - timedelta(hours=1)),
    ]
    overdue, soon, running, met_late, met = clock_lines(clocks, CaseState.NEW, NOW, LONDON)
    assert (overdue.standing, overdue.due, overdue.detail) == (
        ClockStanding.OVERDUE,
        "Sat 5 Dec 06:00",
        "over 2d 03h",
    )
    assert (soon.standing, soon.detail) == (ClockStanding.SOON, "20m 00s")
    assert (running.standing, running.detail) == (ClockStanding.RUNNING, "3d 00h")
    assert met_late.standing is ClockStanding.MET
    assert met_late.detail == "met Sat 5 Dec 16:04, 10h 04m late"
    assert met.detail == "met Mon 7 Dec 08:00"  # on time: no lateness to report


def test_a_closed_case_stops_every_unmet_countdown() -> None:
    clock = CaseClock("lado-1-working-day", NOW - timedelta(hours=1), None)
    (line,) = clock_lines([clock], CaseState.CLOSED, NOW, LONDON)
    assert (line.standing, line.detail) == (ClockStanding.CASE_CLOSED, "case closed")
