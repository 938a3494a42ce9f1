"""Adding people after the first needs someone entitled and unlocked (trust model item 16).

Before this, anyone who could write to the workspace could run `sgalert user add` and give
themselves a role: a first DSL, say, who is then sealed into every new case of a group nobody
held yet. Now the first person is an explicit bootstrap and every later one is added by a DSL,
the headteacher or a monitoring officer, whose keys are unlocked first; the audit says who.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

import pytest

from sgalert.desk.service import CaseService
from sgalert.errors import InvalidInput, NotEntitled
from sgalert.model import Role
from sgalert.records import audit
from sgalert.records.crypto import TEST_KDF
from sgalert.records.keyring import add_first_person, add_person, list_people, remove_person

from .conftest import Team, add_member
from .test_cli import Cli

DSL = "dsl@example.org"
NEWCOMER = "newcomer@example.org"
PASSPHRASE = "lantern-orbit-shelf-meadow"


async def _emails(team: Team) -> set[str]:
    return {person.email for person, _ in await list_people(team.service.store)}


async def _add(team: Team, by: str, role: Role = Role.DSL) -> None:
    await add_person(
        team.service.store,
        by=team[by],
        name="Newcomer Example",
        email=NEWCOMER,
        role=role,
        passphrase=PASSPHRASE,
        kdf=TEST_KDF,
    )


@pytest.mark.parametrize("by", ["deputy@example.org", "chair@example.org", "staff@example.org"])
async def test_only_a_dsl_the_head_or_a_monitoring_officer_may_add_a_person(
    team: Team, by: str
) -> None:
    with pytest.raises(NotEntitled, match="may not add people"):
        await _add(team, by)
    assert NEWCOMER not in await _emails(team)


@pytest.mark.parametrize("by", [DSL, "head@example.org", "mo@example.org"])
async def test_an_entitled_unlocked_person_adds_and_the_audit_says_who(team: Team, by: str) -> None:
    await _add(team, by, Role.STAFF)
    assert NEWCOMER in await _emails(team)
    async with team.service.store.read() as db:
        latest = (await audit.entries(db, limit=1))[0]
    assert (latest.actor, latest.action) == (by, "person-added")
    assert latest.detail["by"] == team[by].id


async def test_a_locked_removed_or_borrowed_identity_cannot_add(team: Team) -> None:
    second = await add_member(team, "dsl2@example.org", Role.DSL, DSL)
    # Keys that are not the adder's own (a person record with someone else's keys) are refused.
    from dataclasses import replace

    borrowed = replace(team["staff@example.org"], person=team[DSL].person)
    with pytest.raises(NotEntitled, match="not theirs"):
        await add_person(
            team.service.store, by=borrowed, name="Newcomer Example", email=NEWCOMER,
            role=Role.DSL, passphrase=PASSPHRASE, kdf=TEST_KDF,
        )  # fmt: skip
    await remove_person(team.service.store, team[DSL], "dsl2@example.org")
    with pytest.raises(NotEntitled, match="removed"):
        await _add(team, "dsl2@example.org")
    team[DSL].forget()
    with pytest.raises(NotEntitled, match="locked"):
        await _add(team, DSL)
    assert NEWCOMER not in await _emails(team)
    assert second.locked is False


async def test_the_first_person_is_only_added_to_an_empty_workspace(team: Team) -> None:
    with pytest.raises(NotEntitled, match="--by"):
        await add_first_person(
            team.service.store, name="Newcomer Example", email=NEWCOMER, role=Role.DSL,
            passphrase=PASSPHRASE, kdf=TEST_KDF,
        )  # fmt: skip
    assert NEWCOMER not in await _emails(team)


async def test_the_first_person_must_be_able_to_add_the_others(service: CaseService) -> None:
    with pytest.raises(InvalidInput, match="first person must be"):
        await add_first_person(
            service.store, name="Newcomer Example", email=NEWCOMER, role=Role.STAFF,
            passphrase=PASSPHRASE, kdf=TEST_KDF,
        )  # fmt: skip
    assert await list_people(service.store) == []


@pytest.mark.slow
def test_user_add_on_the_command_line_needs_someone_entitled(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    cli = Cli(tmp_path_factory.mktemp("people") / "ws")
    cli.run("init")
    add = ("user", "add", "--name", "Eve Example", "--email", "eve@example.org", "--role", "dsl")
    cli.run(*add[:2], "--first", "--name", "Dana Example", "--email", DSL, "--role", "dsl",
            passphrase="dsl-passphrase-1")  # fmt: skip
    # The attack: anyone who can write to the workspace adds themselves as a DSL.
    refused = cli.run(*add, passphrase="eve-passphrase-1", check=False)
    assert refused.returncode != 0
    assert "--by YOUR_EMAIL" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    again = cli.run(*add, "--first", passphrase="eve-passphrase-1", check=False)
    assert again.returncode != 0 and "already has people" in again.stderr
    wrong = cli.run(*add, "--by", DSL, passphrase="not-it", new_passphrase="eve-passphrase-1",
                    check=False)  # fmt: skip
    assert wrong.returncode != 0 and "Traceback" not in wrong.stderr
    people = json.loads(cli.run("user", "list", "--json").stdout)
    assert [p["email"] for p in people] == [DSL]

    added = cli.run(
        *add[:-1], "staff", "--by", DSL, passphrase="dsl-passphrase-1",
        new_passphrase="eve-passphrase-1",
    )  # fmt: skip
    assert "Added Eve Example <eve@example.org> as staff" in added.stdout
    with closing(sqlite3.connect(cli.workspace / "sgalert.db")) as db:
        rows = db.execute(
            "SELECT actor, detail FROM audit WHERE action = 'person-added' ORDER BY seq"
        ).fetchall()
    assert [actor for actor, _ in rows] == [audit.SYSTEM, DSL]
    assert json.loads(rows[0][1])["by"] == "first-run"
    # The newcomer's passphrase is their own: it unlocks them, the adder's does not.
    shown = cli.run("cases", "list", "--json")
    assert shown.returncode == 0
    as_eve = cli.run("user", "approve", DSL, "--as", "eve@example.org",
                     passphrase="dsl-passphrase-1", check=False)  # fmt: skip
    assert "wrong passphrase" in as_eve.stderr.lower()
