"""What the desk and the command line tell about a case (issue 13, the gaps left after the trust
model landed): a record changed behind sgalert's back is shown as such, not as if whole; a case
someone may not read answers exactly as a missing one; and ``sgalert status`` names no case its
runner may not see.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sgalert.desk.views import UPKEEP
from sgalert.errors import NoSuchCase
from sgalert.records.alerts import AlertKind, raise_alert
from sgalert.records.store import on_connection

from .cli_helpers import sgalert_cli
from .conftest import PASSPHRASES, Team, encompass_case, whistle_case
from .engine_helpers import VirtualClock
from .invariants_support import EMAIL, FakeChannel, Ledger
from .test_never_silent_findings import engine_with, send_until_quiet

DSL, HEAD, MO = "dsl@example.org", "head@example.org", "mo@example.org"
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _raw(path: Path) -> sqlite3.Connection:
    """The store as a tool that ignores sgalert would open it: autocommit, triggers droppable."""
    return sqlite3.connect(path, isolation_level=None)


async def _cli(
    team: Team, *argv: str, who: str | None = None, stdin: str | None = None
) -> tuple[int, str, str]:
    """``sgalert ARGV [--as WHO]`` on the team's workspace, as a person at a terminal runs it."""
    args = (*argv, "--as", who) if who else argv
    passphrase = PASSPHRASES[who] if who else None
    done = await asyncio.to_thread(
        sgalert_cli, team.service.store.path.parent, *args, passphrase=passphrase, stdin=stdin
    )
    return done.returncode, done.stdout, done.stderr


# ----- case show says when the record is not what the audit chain holds --------------------------


async def test_case_show_says_a_chronology_entry_was_deleted_behind_the_trigger(
    team: Team,
) -> None:
    dsl = team[DSL]
    (case, other) = await team.service.create_cases([encompass_case(), encompass_case("Bo")])
    kept = await team.service.add_note(dsl, case.ref, "Spoke to the class teacher.")
    gone = await team.service.add_note(dsl, case.ref, "Decided to refer.")
    code, out, _ = await _cli(team, "case", "show", case.ref, who=DSL)
    assert code == 0 and not out.startswith("WARNING")

    with closing(_raw(team.service.store.path)) as db:
        db.execute("DROP TRIGGER IF EXISTS chronology_no_delete")
        db.execute("DELETE FROM chronology WHERE id = ?", (gone,))

    code, out, err = await _cli(team, "case", "show", case.ref, who=DSL)
    assert code == 0, err
    first = out.splitlines()[0]
    assert first.startswith(f"WARNING: case {case.ref}: its sealed fields and chronology no")
    assert "removed, altered or added outside sgalert" in first
    assert "Spoke to the class teacher." in out and "Decided to refer." not in out
    code, out, _ = await _cli(team, "case", "show", case.ref, "--json", who=DSL)
    shown = json.loads(out)
    assert shown["tampered"].startswith(f"case {case.ref}: ") and len(shown["chronology"]) == 1
    assert kept == shown["chronology"][0]["id"]
    # The case next to it is whole, and says nothing.
    assert (await team.service.open_case(dsl, other.ref)).tampered is None


async def test_the_desk_view_says_a_sealed_field_was_deleted(team: Team) -> None:
    (case,) = await team.service.create_cases([encompass_case()])
    assert (await team.service.open_case(team[DSL], case.ref)).tampered is None
    with closing(_raw(team.service.store.path)) as db:
        db.execute("DROP TRIGGER IF EXISTS sealed_fields_no_delete")
        db.execute(
            "DELETE FROM sealed_fields WHERE case_id = ? AND field = 'attachment/0'", (case.id,)
        )
    view = await team.service.open_case(team[DSL], case.ref)
    assert view.tampered is not None and view.tampered.startswith(f"case {case.ref}: ")
    rows = await team.service.store.fetchall(
        "SELECT detail FROM audit WHERE action = 'case-read' AND case_id = ? ORDER BY seq",
        (case.id,),
    )
    assert [json.loads(r[0]).get("tampered", False) for r in rows] == [False, True]


# ----- a case someone may not read answers exactly as a missing one ------------------------------


async def test_a_case_you_may_not_read_answers_exactly_as_a_missing_one(team: Team) -> None:
    (whistle, about_head) = await team.service.create_cases(
        [whistle_case(), whistle_case(about_head=True)]
    )
    missing = whistle.ref[:-4] + "9999"
    for who, ref in ((DSL, whistle.ref), (HEAD, about_head.ref)):
        for argv in (("case", "show"), ("grant",), ("note",), ("ack",)):
            extra = {"grant": ("--to", MO), "note": ("--text", "-")}.get(argv[0], ())
            refused = await _cli(team, *argv, ref, *extra, who=who, stdin="A note.")
            absent = await _cli(team, *argv, missing, *extra, who=who, stdin="A note.")
            assert refused == absent, (who, argv)
            assert refused == (2, "", "sgalert: no such case, or you are not entitled to it\n")
    # Each refused attempt on a real case is still audited; a missing case has nothing to audit.
    rows = await team.service.store.fetchall(
        "SELECT actor, case_id, json_extract(detail, '$.action') FROM audit"
        " WHERE action = 'refused' ORDER BY seq"
    )
    assert [tuple(r) for r in rows] == [
        *((DSL, whistle.id, action) for action in ("read", "grant", "note-added", "acknowledge")),
        *(
            (HEAD, about_head.id, action)
            for action in ("read", "grant", "note-added", "acknowledge")
        ),
    ]


async def test_the_service_summary_hides_what_its_viewer_may_not_see(team: Team) -> None:
    (whistle, about_head, plain) = await team.service.create_cases(
        [whistle_case(), whistle_case(about_head=True), encompass_case()]
    )
    missing = "WB-2026-9999"
    for viewer, hidden in (
        (None, whistle.ref),
        (team[DSL], whistle.ref),
        (team[HEAD], about_head.ref),
    ):
        with pytest.raises(NoSuchCase) as refused:
            await team.service.summary(hidden, viewer=viewer)
        with pytest.raises(NoSuchCase) as absent:
            await team.service.summary(missing, viewer=viewer)
        assert str(refused.value) == str(absent.value)
        assert (await team.service.summary(plain.ref, viewer=viewer)).id == plain.id
    assert (await team.service.summary(whistle.ref, viewer=team[MO])).id == whistle.id


# ----- sgalert status names no case its runner may not see ---------------------------------------


async def test_the_head_running_status_sees_no_trace_of_an_allegation_about_them(
    team: Team,
) -> None:
    """An allegation about the head waits unacknowledged and its page could not be delivered
    (every channel down): ``status`` tells the monitoring officer, and shows the head, or
    anyone not identified, exactly what it would show if there were no such case."""
    (plain,) = await team.service.create_cases([encompass_case()])
    await team.service.acknowledge(team[DSL], plain.ref)
    code, before, _ = await _cli(team, "status", "--json", who=HEAD)
    clock = VirtualClock()
    email = FakeChannel(EMAIL, True, Ledger(clock))
    engine = engine_with(team, clock, email)
    email.up = False
    (about,) = await team.service.create_cases([whistle_case(about_head=True)])
    await engine.tick_timers()
    await send_until_quiet(engine, clock, minutes=5)
    await engine.tick_alerts()
    alerts = await team.service.open_alerts(UPKEEP)
    assert ("page-undeliverable", about.ref) in {(a["kind"], a["source"]) for a in alerts}

    for who in (HEAD, None):
        code, out, err = await _cli(team, "status", who=who)
        assert about.ref not in out + err and "whistle" not in out + err
        assert "unacknowledged cases: 0\n" in out and "ALERT" not in out
        code, shown, _ = await _cli(team, "status", "--json", who=who)
        report, earlier = json.loads(shown), json.loads(before)
        assert report["alerts"] == earlier["alerts"] == []
        assert report["failing_channels"] == earlier["failing_channels"] == []
        assert report["unacknowledged"] == earlier["unacknowledged"] == []
    code, out, _ = await _cli(team, "status", who=MO)
    assert f"ALERT page-undeliverable: {about.ref}" in out
    assert f"unacknowledged cases: 1 ({about.ref})" in out and code == 1


async def test_an_alert_raised_paging_a_confidential_case_is_listed_to_the_monitoring_officer(
    team: Team,
) -> None:
    """Its policy's name tells what kind of case it was (whistleblowing), so only the monitoring
    officer's status and banners list it; a team alert is everyone's."""
    async with team.service.store.write() as db:
        await on_connection(
            db,
            lambda conn: [
                raise_alert(conn, AlertKind.NO_RECIPIENT, subject, NOW, {"audience": audience})
                for subject, audience in (
                    ("whistle policy: chair", "confidential"),
                    ("encompass policy: dsl", "team"),
                )
            ],
        )
    for viewer, expected in (
        (None, ["encompass policy: dsl"]),
        (team[HEAD], ["encompass policy: dsl"]),
        (team[DSL], ["encompass policy: dsl"]),
        (team[MO], ["whistle policy: chair", "encompass policy: dsl"]),
        (UPKEEP, ["whistle policy: chair", "encompass policy: dsl"]),
    ):
        listed = [a["source"] for a in await team.service.open_alerts(viewer)]
        assert sorted(listed) == sorted(expected), viewer
    code, out, _ = await _cli(team, "status", who=HEAD)
    assert "ALERT no-recipient: encompass policy: dsl" in out and "whistle" not in out
    assert code == 1  # the alert it lists is open
