"""Who is on duty: shifts in and out of term, overnight shifts, dated covers, gaps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sgalert.duty import add_cover, load_rota
from sgalert.rota import Cover, Rota, Shift
from sgalert.school_calendar import SchoolCalendar, Term

from .conftest import Team

LONDON = ZoneInfo("Europe/London")
WEEKDAYS = frozenset(range(5))
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
    )
    view = await load_rota(team.service, since=starts)
    duty = view.who(starts + timedelta(hours=30))
    assert duty.who == "deputy@example.org" and not duty.fallback
    actions = [r[0] for r in await team.service.store.fetchall("SELECT action FROM audit")]
    assert "rota-cover-added" in actions


@pytest.mark.slow
def test_rota_cli(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGALERT_")}
    env["SGALERT_WORKSPACE"] = str(tmp_path / "ws")

    def run(*args: str, passphrase: str | None = None) -> subprocess.CompletedProcess[str]:
        extra = {"SGALERT_PASSPHRASE": passphrase} if passphrase else {}
        return subprocess.run(
            [sys.executable, "-m", "sgalert", *args],
            capture_output=True,
            text=True,
            env={**env, **extra},
            timeout=60,
        )

    run("init")
    run(
        "user",
        "add",
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
        passphrase="deputy-passphrase",
    )
    config = tmp_path / "ws" / "sgalert.toml"
    config.write_text(
        config.read_text()
        + (
            '\n[[rota.shifts]]\nwho = "dsl@example.org"\ndays = ["mon","tue","wed","thu","fri"]\n'
            'from = "07:00"\nto = "19:00"\nwhen = "always"\n'
        ).replace("[rota]\n", "[rota]\n", 1)
    )
    shown = run("rota", "who", "--at", "2026-11-24T10:00:00Z", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["who"] == "dsl@example.org"
    weekend = json.loads(run("rota", "who", "--at", "2026-11-28T10:00:00Z", "--json").stdout)
    assert weekend["fallback"] is True
    check = run("rota", "check")
    assert check.returncode == 1 and "warning: gap" in check.stdout
    added = run(
        "rota",
        "cover",
        "--who",
        "deputy@example.org",
        "--from",
        "2026-11-28T00:00:00Z",
        "--to",
        "2026-11-30T00:00:00Z",
        "--as",
        "dsl@example.org",
        passphrase="dsl-passphrase",
    )
    assert added.returncode == 0, added.stderr
    covered = json.loads(run("rota", "who", "--at", "2026-11-28T10:00:00Z", "--json").stdout)
    assert covered["who"] == "deputy@example.org" and covered["rule"].startswith("cover")
