"""The governors' termly report over the seeded fortnight (``digest_support``), hand-computed:
counts and times only, in text, CSV and HTML with one inline SVG chart per figure."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from datetime import date

import pytest

from sgalert.desk.service import CaseService
from sgalert.errors import InvalidInput
from sgalert.records.store import on_connection
from sgalert.routing.report import TermReport, build_report
from sgalert.routing.report_render import render_csv, render_html, render_text

from .conftest import Team
from .digest_support import PERSONAL, at, seed
from .test_digest import _Text

FIRST, LAST = date(2026, 11, 30), date(2026, 12, 13)  # two whole weeks, Monday to Sunday


async def build(service: CaseService, first: date = FIRST, last: date = LAST) -> TermReport:
    config = service.config
    assert config is not None
    async with service.store.read() as db:
        return await on_connection(
            db, lambda conn: build_report(conn, config, first, last, at(14, 9))
        )


async def test_the_report_gives_the_hand_computed_figures(team: Team) -> None:
    service, refs = await seed(team)
    report = await build(service)
    lines = render_text(report).splitlines()
    assert lines[0] == ("Test School: safeguarding report, Mon 30 Nov 2026 to Sun 13 Dec 2026")
    # W1 H1 (whistle), E0 C1 E1 E2 (encompass) in the first week; L1, LATER in the second.
    assert "8 cases in 2 week(s): encompass 5, whistle 2, lesson 1." in lines
    assert (
        "Of the whistleblowing reports, 1 were allegations about the headteacher, referred to"
        " the chair of governors." in lines
    )
    assert (
        "Trend: 6.0 a week in the first half of the period, 2.0 in the second (down 67%)." in lines
    )
    assert "Week of Mon 30 Nov: 6 (encompass 4, whistle 2, lesson 0)" in lines
    assert "Week of Mon 7 Dec: 2 (encompass 1, whistle 0, lesson 1)" in lines
    # C1 30 min, E1 4 min, E2 25 min; the first step allows 10 min.
    assert (
        "encompass: 3 acknowledged, median 25 min, worst 30 min; within the first step's"
        " 10 min: 1 (33%)" in lines
    )
    assert "Not yet acknowledged: 5." in lines
    # Encompass clocks: C1 E1 E2 met on time, E0 and LATER not met; W1 and H1 not met.
    assert "encompass-before-school-day: 5 due, 3 met on time (60%), 0 met late, 2 not met" in lines
    assert (
        "whistle-monitoring-officer-5-working-days: 2 due, 0 met on time (0%), 0 met late,"
        " 2 not met" in lines
    )
    # E0 (step 2, before the digest period but inside this one), E2 (step 3), L1 (step 2).
    assert "3 case(s) went past the first step." in lines
    assert "Highest step reached: step 2: 2, step 3: 1" in lines
    assert "Answered after: step 3: 1" in lines
    assert "Rota gap alerts (gaps in cover found ahead): 1" in lines
    assert "Mailbox outages: 2, 24.5 hours in all" in lines
    assert "Engine starts (restarts and takeovers): 1" in lines
    assert "System alerts raised: rota-gap 1, source-down 2" in lines
    text = "\n".join(lines)
    for ref in refs.values():
        assert ref not in text


async def test_the_csv_has_a_row_per_week_and_the_totals(team: Team) -> None:
    service, _ = await seed(team)
    rows = list(csv.DictReader(io.StringIO(render_csv(await build(service)))))
    assert [r["week_starting"] for r in rows] == ["2026-11-30", "2026-12-07", "total"]
    first, second, total = rows
    assert (first["encompass"], first["whistle"], first["lesson"], first["total"]) == (
        "4",
        "2",
        "0",
        "6",
    )
    assert (first["acknowledged"], first["median_ack_minutes"], first["escalated"]) == (
        "3",
        "25.0",
        "2",
    )
    assert (second["total"], second["acknowledged"], second["median_ack_minutes"]) == ("2", "0", "")
    # Clocks by the week they fall due: E0 Fri 4 Dec; C1 E1 E2 LATER Mon 7 Dec, W1 Tue 8 Dec,
    # H1 Fri 11 Dec.
    assert (first["clocks_due"], first["clocks_met_on_time"]) == ("1", "0")
    assert (second["clocks_due"], second["clocks_met_on_time"]) == ("6", "3")
    assert (total["total"], total["escalated"], total["clocks_due"]) == ("8", "3", "7")


async def test_every_byte_is_free_of_personal_data_and_the_html_has_a_chart_per_figure(
    team: Team,
) -> None:
    service, _ = await seed(team)
    report = await build(service)
    page = render_html(report)
    for rendered in (render_text(report), render_csv(report), page):
        for datum in PERSONAL:
            assert datum.lower() not in rendered.lower(), datum
    parser = _Text()
    parser.feed(page)
    parser.close()
    assert parser.open == []
    assert page.count("<svg ") == 4
    assert "8 cases in 2 week(s): encompass 5, whistle 2, lesson 1." in parser.parts


async def test_a_backwards_or_overlong_period_is_one_clear_line(team: Team) -> None:
    with pytest.raises(InvalidInput, match="is before --from"):
        await build(team.service, date(2026, 12, 13), date(2026, 11, 30))
    with pytest.raises(InvalidInput, match="at most 400 days"):
        await build(team.service, date(2025, 1, 1), date(2026, 12, 31))


@pytest.mark.slow
async def test_report_on_the_command_line(team: Team) -> None:
    await seed(team)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGALERT_")}
    env["SGALERT_WORKSPACE"] = str(team.service.store.path.parent)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sgalert", "report", *args],
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )

    text = run("--from", "2026-11-30", "--to", "2026-12-13")
    assert text.returncode == 0, text.stderr
    assert "8 cases in 2 week(s): encompass 5, whistle 2, lesson 1." in text.stdout
    table = run("--from", "2026-11-30", "--to", "2026-12-13", "--format", "csv")
    assert table.stdout.splitlines()[-1].startswith("total,5,2,1,8,")
    bad = run("--from", "30/11/2026", "--to", "2026-12-13")
    assert (bad.returncode, bad.stdout) == (1, "")
    assert bad.stderr == "sgalert: --from '30/11/2026' is not a date; write it as 2026-12-07\n"
