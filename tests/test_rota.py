"""Who is on duty: shifts in and out of term, overnight shifts, dated covers, gaps."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time as host_time
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sgalert.cli.main import main
from sgalert.clock import parse_iso
from sgalert.config import load_config
from sgalert.model import Role
from sgalert.records.store import Store
from sgalert.routing.duty import RotaView, add_cover, load_rota
from sgalert.rules.rota import Cover, Gap, Rota, Shift
from sgalert.rules.school_calendar import SchoolCalendar, Term
from sgalert.workspace import Workspace

from .cli_helpers import sgalert_cli
from .conftest import Team, add_people

LONDON = ZoneInfo("Europe/London")
WEEKDAYS = frozenset(range(5))
EVERY_DAY = frozenset(range(7))
MINUTE = timedelta(minutes=1)
PEOPLE = ("dsl@example.org", "deputy@example.org", "head@example.org")
CALENDAR = SchoolCalendar(
    terms=(
        Term(
            "Autumn", date(2026, 9, 2), date(2026, 12, 18), (date(2026, 10, 26), date(2026, 10, 30))
        ),
    )
)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=LONDON)


def make_rota() -> Rota:
    return Rota(
        CALENDAR,
        [
            Shift("dsl@example.org", WEEKDAYS, time(7, 0), time(19, 0), "term"),
            Shift("deputy@example.org", frozenset(range(7)), time(19, 0), time(7, 0), "always"),
            Shift("head@example.org", WEEKDAYS, time(7, 0), time(19, 0), "holiday"),
        ],
        fallback=["dsl@example.org"],
    )


def test_shift_rules_in_term_out_of_term_and_overnight() -> None:
    rota = make_rota()
    assert rota.who(at(2026, 11, 24, 10, 0)).who == "dsl@example.org"
    assert rota.who(at(2026, 10, 27, 10, 0)).who == "head@example.org"  # half term
    night = rota.who(at(2026, 11, 25, 2, 0))
    assert night.who == "deputy@example.org" and "19:00-07:00" in night.rule
    weekend = rota.who(at(2026, 11, 28, 12, 0))
    assert weekend.fallback and weekend.who == "dsl@example.org"


def test_cover_overrides_the_pattern() -> None:
    rota = make_rota()
    cover = Cover(1, "head@example.org", at(2026, 11, 24, 0, 0), at(2026, 11, 27, 0, 0))
    duty = rota.who(at(2026, 11, 25, 2, 0), [cover])
    assert duty.who == "head@example.org" and duty.rule.startswith("cover ")
    assert rota.who(at(2026, 11, 27, 2, 0), [cover]).who == "deputy@example.org"


def test_removed_people_are_skipped() -> None:
    rota = make_rota()
    available = {"dsl@example.org": False, "deputy@example.org": True, "head@example.org": True}
    duty = rota.who(at(2026, 11, 24, 10, 0), available=available)
    assert duty.who is None and duty.fallback


def test_gaps_are_the_weekend_days() -> None:
    gaps = make_rota().gaps(at(2026, 11, 23, 12, 0), days=7)
    assert [(g.start, g.end) for g in gaps] == [
        (at(2026, 11, 28, 7, 0), at(2026, 11, 28, 19, 0)),
        (at(2026, 11, 29, 7, 0), at(2026, 11, 29, 19, 0)),
    ]
    covered = Cover(2, "head@example.org", at(2026, 11, 28, 7, 0), at(2026, 11, 29, 19, 0))
    assert make_rota().gaps(at(2026, 11, 23, 12, 0), days=7, covers=[covered]) == []


def gap_edges(gaps: list[Gap]) -> list[tuple[datetime, datetime]]:
    return [(g.start, g.end) for g in gaps]


def rota_of(*shifts: Shift, calendar: SchoolCalendar = CALENDAR) -> Rota:
    return Rota(calendar, shifts, fallback=["head@example.org"])


def test_a_one_minute_hole_between_shifts_is_a_one_minute_gap() -> None:
    rota = rota_of(
        Shift("dsl@example.org", EVERY_DAY, time(7, 0), time(17, 3)),
        Shift("deputy@example.org", EVERY_DAY, time(17, 4), time(7, 0)),
    )
    (gap,) = rota.gaps(at(2026, 12, 7, 12, 0), days=1)
    assert (gap.start, gap.end) == (at(2026, 12, 7, 17, 3), at(2026, 12, 7, 17, 4))
    assert gap.end - gap.start == MINUTE and gap.covered_by == "head@example.org"
    assert gap.describe(LONDON) == "Mon 7 Dec 17:03-17:04"
    assert rota.who(at(2026, 12, 7, 17, 3)).fallback
    assert not rota.who(at(2026, 12, 7, 17, 4)).fallback


def test_a_gap_starting_at_17_03_is_reported_at_17_03() -> None:
    rota = rota_of(Shift("dsl@example.org", WEEKDAYS, time(7, 0), time(17, 3)))
    gaps = rota.gaps(at(2026, 12, 7, 12, 0), days=1)
    assert gap_edges(gaps) == [(at(2026, 12, 7, 17, 3), at(2026, 12, 8, 7, 0))]
    assert gaps[0].describe(LONDON) == "Mon 7 Dec 17:03 to Tue 8 Dec 07:00"


def test_an_overnight_shift_covers_across_midnight_without_a_break() -> None:
    rota = rota_of(Shift("deputy@example.org", EVERY_DAY, time(22, 1), time(6, 59)))
    start = at(2026, 12, 7, 12, 0)
    assert gap_edges(rota.gaps(start, days=1)) == [
        (at(2026, 12, 7, 12, 0), at(2026, 12, 7, 22, 1)),
        (at(2026, 12, 8, 6, 59), at(2026, 12, 8, 12, 0)),
    ]
    assert rota.covered(start, start + timedelta(days=1)) == [
        (at(2026, 12, 7, 22, 1), at(2026, 12, 8, 6, 59))
    ]
    for moment in (at(2026, 12, 7, 23, 59), at(2026, 12, 8, 0, 0), at(2026, 12, 8, 0, 1)):
        assert rota.who(moment).who == "deputy@example.org"


def test_a_night_shift_when_the_clocks_go_forward_lasts_8_hours() -> None:
    # Sunday 29 March 2026, 01:00 GMT: the clocks jump to 02:00 BST.
    rota = rota_of(Shift("deputy@example.org", EVERY_DAY, time(22, 0), time(7, 0)))
    start = datetime(2026, 3, 28, 12, 3, tzinfo=UTC)
    gaps = rota.gaps(start, days=1)
    assert gap_edges(gaps) == [
        (start, datetime(2026, 3, 28, 22, 0, tzinfo=UTC)),  # 22:00 GMT
        (datetime(2026, 3, 29, 6, 0, tzinfo=UTC), start + timedelta(days=1)),  # 07:00 BST
    ]
    assert gaps[1].start - gaps[0].end == timedelta(hours=8)
    # A shift boundary in the hour that never happens falls when the clocks jump.
    split = rota_of(
        Shift("deputy@example.org", EVERY_DAY, time(20, 0), time(1, 30)),
        Shift("dsl@example.org", EVERY_DAY, time(1, 30), time(7, 0)),
    )
    assert split.gaps(start, days=1)[0].end == datetime(2026, 3, 28, 20, 0, tzinfo=UTC)
    assert len(split.gaps(start, days=1)) == 2  # none in the night
    jump = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert split.who(jump - MINUTE).who == "deputy@example.org"
    assert split.who(jump).who == "dsl@example.org"


def test_a_night_shift_when_the_clocks_go_back_lasts_10_hours() -> None:
    # Sunday 25 October 2026, 02:00 BST: the clocks go back to 01:00 GMT.
    rota = rota_of(Shift("deputy@example.org", EVERY_DAY, time(22, 0), time(7, 0)))
    start = datetime(2026, 10, 24, 12, 3, tzinfo=UTC)
    gaps = rota.gaps(start, days=1)
    assert gap_edges(gaps) == [
        (start, datetime(2026, 10, 24, 21, 0, tzinfo=UTC)),  # 22:00 BST
        (datetime(2026, 10, 25, 7, 0, tzinfo=UTC), start + timedelta(days=1)),  # 07:00 GMT
    ]
    assert gaps[1].start - gaps[0].end == timedelta(hours=10)
    # A shift ending at 01:30 ends at the first 01:30 (BST): the second time the clocks read
    # 01:15 it is over, and the gap until 02:00 GMT is one stretch of 90 minutes.
    split = rota_of(
        Shift("deputy@example.org", EVERY_DAY, time(20, 0), time(1, 30)),
        Shift("dsl@example.org", EVERY_DAY, time(2, 0), time(7, 0)),
    )
    assert gap_edges(split.gaps(start, days=1)) == [
        (start, datetime(2026, 10, 24, 19, 0, tzinfo=UTC)),  # 20:00 BST
        (datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 25, 2, 0, tzinfo=UTC)),
        (datetime(2026, 10, 25, 7, 0, tzinfo=UTC), start + timedelta(days=1)),
    ]
    assert split.who(datetime(2026, 10, 25, 1, 15, tzinfo=UTC)).fallback  # 01:15 GMT


SPRING = Term("Spring", date(2027, 1, 4), date(2027, 3, 26), (date(2027, 2, 15), date(2027, 2, 19)))
SUMMER = Term("Summer", date(2027, 4, 12), date(2027, 7, 21), (date(2027, 5, 31), date(2027, 6, 4)))
YEAR = SchoolCalendar(
    terms=(*CALENDAR.terms, SPRING, SUMMER), inset_days=frozenset({date(2027, 1, 4)})
)


def term_and_holiday_rota() -> Rota:
    return rota_of(
        Shift("dsl@example.org", EVERY_DAY, time(7, 0), time(19, 0), "term"),
        Shift("deputy@example.org", EVERY_DAY, time(19, 0), time(7, 0), "term"),
        Shift("head@example.org", EVERY_DAY, time(0, 0), time(0, 0), "holiday"),
        calendar=YEAR,
    )


def test_the_pattern_switches_from_holiday_to_term_at_midnight() -> None:
    rota = term_and_holiday_rota()
    # The last night of term runs on into the holiday's first morning: no gap.
    assert rota.gaps(at(2026, 12, 18, 12, 2), days=1) == []
    assert rota.who(at(2026, 12, 19, 6, 59)).who == "deputy@example.org"
    assert rota.who(at(2026, 12, 19, 7, 0)).who == "head@example.org"
    # The holiday pattern ends at midnight before the first day of term (an INSET day: term
    # arrangements run), whose night shift only starts that evening.
    gaps = rota.gaps(at(2027, 1, 3, 12, 2), days=1)
    assert gap_edges(gaps) == [(at(2027, 1, 4, 0, 0), at(2027, 1, 4, 7, 0))]
    assert rota.who(at(2027, 1, 4, 7, 0)).who == "dsl@example.org"


def test_a_bank_holiday_in_term_runs_the_holiday_pattern() -> None:
    rota = term_and_holiday_rota()
    may_day = at(2027, 5, 3, 12, 0)  # the early May bank holiday, inside the summer term
    assert rota.who(may_day).who == "head@example.org"
    assert rota.who(at(2027, 5, 4, 12, 0)).who == "dsl@example.org"
    # Holiday cover ends at midnight; the term's night shift did not start on the bank holiday.
    gaps = rota.gaps(at(2027, 5, 2, 12, 0), days=3)
    assert gap_edges(gaps) == [(at(2027, 5, 4, 0, 0), at(2027, 5, 4, 7, 0))]


def test_a_dated_cover_filling_a_gap_exactly_removes_it() -> None:
    rota = rota_of(Shift("dsl@example.org", WEEKDAYS, time(7, 0), time(17, 3)))
    start = at(2026, 12, 7, 12, 0)
    ((gap_start, gap_end),) = gap_edges(rota.gaps(start, days=1))
    exact = Cover(1, "deputy@example.org", gap_start, gap_end)
    assert rota.gaps(start, days=1, covers=[exact]) == []
    short = Cover(2, "deputy@example.org", gap_start, gap_end - MINUTE)
    assert gap_edges(rota.gaps(start, days=1, covers=[short])) == [(gap_end - MINUTE, gap_end)]
    leaver = {"deputy@example.org": False, "dsl@example.org": True, "head@example.org": True}
    assert gap_edges(rota.gaps(start, days=1, covers=[exact], available=leaver)) == [
        (gap_start, gap_end)
    ]


def test_the_next_change_of_duty_is_exact() -> None:
    rota = rota_of(
        Shift("dsl@example.org", EVERY_DAY, time(7, 0), time(17, 3)),
        Shift("deputy@example.org", EVERY_DAY, time(17, 4), time(7, 0)),
    )
    view = RotaView(rota, (), dict.fromkeys(PEOPLE, True), {})
    change = view.next_change(at(2026, 12, 7, 12, 0), days=1)
    assert change is not None and change[0] == at(2026, 12, 7, 17, 3)
    assert change[1].fallback and change[1].who == "head@example.org"
    later = view.next_change(at(2026, 12, 7, 17, 3, 30), days=1)
    assert later is not None and later[0] == at(2026, 12, 7, 17, 4)
    assert later[1].who == "deputy@example.org"


# ----- the property: interval arithmetic agrees with who() asked at every minute ----------

# Windows that cross the awkward nights: both DST changes, the end and start of a term, a
# half term, a bank holiday in term, and an ordinary week.
STARTS = (
    at(2026, 3, 28, 0, 0),
    at(2026, 10, 24, 0, 0),
    at(2026, 10, 23, 0, 0),
    at(2026, 12, 18, 0, 0),
    at(2027, 1, 2, 0, 0),
    at(2027, 5, 2, 0, 0),
    at(2026, 12, 7, 0, 0),
)
clocks = st.builds(time, st.integers(0, 23), st.integers(0, 59))
shifts = st.builds(
    Shift,
    who=st.sampled_from(PEOPLE),
    days=st.frozensets(st.integers(0, 6), min_size=1),
    start=clocks,
    end=clocks,
    when=st.sampled_from(("term", "holiday", "always")),
)


@st.composite
def rota_views(draw: st.DrawFn) -> tuple[RotaView, datetime]:
    # In UTC: a London time plus a timedelta moves the wall clock, not the instant.
    start = draw(st.sampled_from(STARTS)).astimezone(UTC)
    start += timedelta(minutes=draw(st.integers(0, 24 * 60)))
    covers = []
    for index in range(draw(st.integers(0, 3))):
        begins = start + timedelta(minutes=draw(st.integers(-600, 3 * 24 * 60)))
        length = timedelta(minutes=draw(st.integers(1, 24 * 60)))
        covers.append(Cover(index, draw(st.sampled_from(PEOPLE)), begins, begins + length))
    rota = Rota(
        YEAR,
        draw(st.lists(shifts, max_size=4)),
        draw(st.lists(st.sampled_from(PEOPLE), max_size=2, unique=True)),
    )
    available = {email: draw(st.booleans()) for email in PEOPLE}
    return RotaView(rota, tuple(covers), available, {}), start


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rota_views())
def test_gaps_match_who_asked_at_every_minute(case: tuple[RotaView, datetime]) -> None:
    view, start = case
    days = 2
    expected: list[tuple[datetime, datetime]] = []
    moment, end = start, start + timedelta(days=days)
    while moment < end:
        if view.who(moment).fallback:
            if expected and expected[-1][1] == moment:
                expected[-1] = (expected[-1][0], moment + MINUTE)
            else:
                expected.append((moment, moment + MINUTE))
        moment += MINUTE
    gaps = view.gaps(start, days)
    assert gap_edges(gaps) == expected
    assert all(g.covered_by == view.who(g.start).who for g in gaps)


async def test_default_fallback_is_dsl_then_deputy_then_head(team: Team) -> None:
    view = await load_rota(team.service)
    assert view.rota.fallback == ("dsl@example.org", "deputy@example.org", "head@example.org")
    duty = view.who(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
    assert duty.fallback and duty.who == "dsl@example.org"


async def test_cover_is_stored_audited_and_used(team: Team) -> None:
    starts = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
    await add_cover(
        team.service,
        team["dsl@example.org"],
        "deputy@example.org",
        starts,
        starts + timedelta(days=3),
        now=starts,
    )
    view = await load_rota(team.service, since=starts)
    duty = view.who(starts + timedelta(hours=30))
    assert duty.who == "deputy@example.org" and not duty.fallback
    actions = [r[0] for r in await team.service.store.fetchall("SELECT action FROM audit")]
    assert "rota-cover-added" in actions


@pytest.mark.slow
def test_rota_cli(tmp_path: Path) -> None:
    def run(
        *args: str, passphrase: str | None = None, new_passphrase: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return sgalert_cli(
            tmp_path / "ws", *args, passphrase=passphrase, new_passphrase=new_passphrase
        )

    run("init")
    run(
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
    run(
        "user",
        "add",
        "--name",
        "Dev Example",
        "--email",
        "deputy@example.org",
        "--role",
        "deputy",
        "--by",
        "dsl@example.org",
        passphrase="dsl-passphrase",
        new_passphrase="deputy-passphrase",
    )
    config = tmp_path / "ws" / "sgalert.toml"
    config.write_text(
        config.read_text()
        + (
            '\n[[rota.shifts]]\nwho = "dsl@example.org"\ndays = ["mon","tue","wed","thu","fri"]\n'
            'from = "07:00"\nto = "19:00"\nwhen = "always"\n'
        ).replace("[rota]\n", "[rota]\n", 1)
    )
    shown = run("rota", "who", "--at", "2036-11-25T10:00:00Z", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["who"] == "dsl@example.org"
    weekend = json.loads(run("rota", "who", "--at", "2036-11-29T10:00:00Z", "--json").stdout)
    assert weekend["fallback"] is True
    check = run("rota", "check")
    assert check.returncode == 1 and "warning: gap" in check.stdout
    added = run(
        "rota",
        "cover",
        "--who",
        "deputy@example.org",
        "--from",
        "2036-11-29T00:00:00Z",
        "--to",
        "2036-12-01T00:00:00Z",
        "--as",
        "dsl@example.org",
        passphrase="dsl-passphrase",
    )
    assert added.returncode == 0, added.stderr
    covered = json.loads(run("rota", "who", "--at", "2036-11-29T10:00:00Z", "--json").stdout)
    assert covered["who"] == "deputy@example.org" and covered["rule"].startswith("cover")


async def _add_people(workspace: Workspace) -> None:
    store = await Store.open(workspace.store_path, create=True)
    try:
        passphrase = "rota-test-lantern-orbit"
        await add_people(
            store,
            [
                ("dsl@example.org", Role.DSL, passphrase),
                ("deputy@example.org", Role.DEPUTY, passphrase),
            ],
        )
    finally:
        await store.close()


def test_rota_check_and_who_on_the_command_line_are_exact(
    workspace: Workspace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with workspace.config_path.open("a", encoding="utf-8") as config:
        config.write(
            '\n[[rota.shifts]]\nwho = "dsl@example.org"\nfrom = "07:00"\nto = "17:03"\n'
            '\n[[rota.shifts]]\nwho = "deputy@example.org"\nfrom = "17:04"\nto = "07:00"\n'
        )
    asyncio.run(_add_people(workspace))
    root = str(workspace.config_path.parent)

    # Every day has a one-minute hole at 17:03 London time: a day ahead holds exactly one.
    assert main(["--workspace", root, "rota", "check", "--days", "1"]) == 1
    shown = capsys.readouterr().out
    assert re.fullmatch(
        r"warning: gap \w{3} \d{1,2} \w{3} 17:03 to \w{3} \d{1,2} \w{3} 17:04: no shift or cover;"
        r" fallback dsl@example.org\n",
        shown,
    ), shown
    assert main(["--workspace", root, "rota", "check", "--days", "1", "--json"]) == 1
    (gap,) = json.loads(capsys.readouterr().out)["gaps"]
    assert parse_iso(gap["to"]) - parse_iso(gap["from"]) == MINUTE

    # A time without an offset is the school's wall clock, wherever the host thinks it is.
    monkeypatch.setenv("TZ", "UTC")
    host_time.tzset()
    try:
        assert main(["--workspace", root, "rota", "who", "--at", "2026-07-01T17:03", "--json"]) == 0
    finally:
        monkeypatch.undo()
        host_time.tzset()
    shown_who = json.loads(capsys.readouterr().out)
    assert shown_who["at"] == "2026-07-01T16:03:00.000000Z"  # 17:03 BST
    assert shown_who["fallback"] is True

    # Bad input is one clear line, not a traceback.
    assert main(["--workspace", root, "rota", "who", "--at", "teatime"]) == 1
    error = capsys.readouterr().err
    assert error == (
        "sgalert: --at 'teatime' is not an ISO 8601 date and time; write it as"
        " 2026-11-23T08:30 (the school's local time) or 2026-11-23T08:30+00:00\n"
    )
    assert main(["--workspace", root, "rota", "check", "--days", "0"]) == 1
    assert (
        capsys.readouterr().err
        == "sgalert: --days 0: check from 1 to 3660 days ahead (ten years)\n"
    )


def test_rota_check_past_the_last_term_says_the_pattern_there_is_a_guess(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rota check --days 3650` said the rota 'covers every minute of the next 3650 days' when
    the terms end next July: past them every day counts as a holiday, which nobody said."""
    with workspace.config_path.open("a", encoding="utf-8") as config:
        config.write(
            '\n[[rota.shifts]]\nwho = "dsl@example.org"\nwhen = "term"\n'
            '\n[[rota.shifts]]\nwho = "deputy@example.org"\nwhen = "holiday"\n'
        )
    asyncio.run(_add_people(workspace))
    root = str(workspace.config_path.parent)
    assert main(["--workspace", root, "rota", "check", "--days", "3650"]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[0] == "rota covers every minute of the next 3650 days"
    assert re.fullmatch(
        r"note: the terms in sgalert.toml end \w{3} \d{1,2} \w{3} \d{4}; after that every day"
        r" counts as a holiday for the rota's term and holiday shifts: add the next year's terms",
        shown[1],
    ), shown
    last = load_config(workspace.config_path).calendar.last_term_day
    if last is not None and last > date.today() + timedelta(days=8):
        assert main(["--workspace", root, "rota", "check", "--days", "7"]) == 0
        assert capsys.readouterr().out == "rota covers every minute of the next 7 days\n"
