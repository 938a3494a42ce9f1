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
from pathlib import Path

from .cli_helpers import sgalert_cli
from .conftest import PASSPHRASES, Team, encompass_case

DSL, HEAD, MO = "dsl@example.org", "head@example.org", "mo@example.org"


def _raw(path: Path) -> sqlite3.Connection:
    """The store as a tool that ignores sgalert would open it: autocommit, triggers droppable."""
    return sqlite3.connect(path, isolation_level=None)


async def _cli(team: Team, *argv: str, who: str | None = None) -> tuple[int, str, str]:
    """``sgalert ARGV [--as WHO]`` on the team's workspace, as a person at a terminal runs it."""
    args = (*argv, "--as", who) if who else argv
    passphrase = PASSPHRASES[who] if who else None
    done = await asyncio.to_thread(
        sgalert_cli, team.service.store.path.parent, *args, passphrase=passphrase
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
