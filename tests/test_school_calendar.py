"""School days, working days and the start of the next school day, in Europe/London."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sgalert.config import load_config, render_template
from sgalert.rules.school_calendar import SchoolCalendar, Term

LONDON = ZoneInfo("Europe/London")


@pytest.fixture
def calendar(tmp_path: Path) -> SchoolCalendar:
    """The calendar of the shipped template (terms 2026-27, INSET days, England)."""
    path = tmp_path / "sgalert.toml"
    path.write_text(render_template("Test School"))
    return load_config(path).calendar


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=LONDON)


def test_friday_night_notice_is_due_monday_morning(calendar: SchoolCalendar) -> None:
    assert calendar.next_school_day_start(local(2026, 11, 27, 22, 5)) == local(2026, 11, 30, 8, 30)


def test_before_the_bell_is_due_the_same_morning(calendar: SchoolCalendar) -> None:
    assert calendar.next_school_day_start(local(2026, 11, 24, 6, 0)) == local(2026, 11, 24, 8, 30)
    assert calendar.next_school_day_start(local(2026, 11, 24, 9, 0)) == local(2026, 11, 25, 8, 30)


def test_half_term_moves_the_next_school_day(calendar: SchoolCalendar) -> None:
    # Friday before October half term (26-30 Oct): back on Monday 2 November.
    assert calendar.next_school_day_start(local(2026, 10, 23, 20, 0)) == local(2026, 11, 2, 8, 30)


def test_bank_holiday_moves_the_next_school_day(calendar: SchoolCalendar) -> None:
    # May Day, Monday 3 May 2027, falls in the summer term.
    assert calendar.bank_holiday(date(2027, 5, 3)) is not None
    assert calendar.next_school_day_start(local(2027, 4, 30, 19, 0)) == local(2027, 5, 4, 8, 30)


def test_christmas_and_inset_day_move_it_to_the_fifth_of_january(
    calendar: SchoolCalendar,
) -> None:
    # Term ends 18 Dec; 4 Jan 2027 is an INSET day; pupils return on Tuesday 5 January.
    assert calendar.next_school_day_start(local(2026, 12, 18, 16, 0)) == local(2027, 1, 5, 8, 30)
    assert not calendar.is_school_day(date(2027, 1, 4))
    assert calendar.is_working_day(date(2027, 1, 4))


def test_working_days_skip_weekends_and_bank_holidays(calendar: SchoolCalendar) -> None:
    # Thursday 24 Dec + 5 working days: 25 Dec, 28 Dec (Boxing Day observed) and 1 Jan are off,
    # so they are 29, 30, 31 Dec, 4 and 5 Jan.
    assert calendar.add_working_days(local(2026, 12, 24, 10, 0), 5) == local(2027, 1, 5, 10, 0)
    assert calendar.add_working_days(local(2026, 11, 27, 10, 0), 1) == local(2026, 11, 30, 10, 0)


def test_school_days_for_file_transfers(calendar: SchoolCalendar) -> None:
    # From Wed 16 Dec 2026: 17, 18 Dec, then 5, 6, 7 Jan 2027.
    assert calendar.add_school_days(local(2026, 12, 16, 12, 0), 5) == local(2027, 1, 7, 15, 30)


def test_scotland_has_its_own_bank_holidays() -> None:
    st_andrews = date(2026, 11, 30)
    england = SchoolCalendar(nation="england")
    scotland = SchoolCalendar(nation="scotland")
    assert england.is_working_day(st_andrews)
    assert not scotland.is_working_day(st_andrews)


def test_clock_change_keeps_local_start_time() -> None:
    term = Term("Spring", date(2026, 3, 23), date(2026, 4, 2))
    calendar = SchoolCalendar(terms=(term,), day_starts=time(8, 30))
    start = calendar.next_school_day_start(datetime(2026, 3, 27, 20, 0, tzinfo=UTC))
    assert start == local(2026, 3, 30, 8, 30)  # after the clocks go forward on 29 March
    assert start.astimezone(UTC) == datetime(2026, 3, 30, 7, 30, tzinfo=UTC)
