"""Passphrases, unlock throttling and the addresses people are added with (trust model)."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest

from sgalert.clock import iso, utcnow
from sgalert.errors import InvalidInput, NotEntitled, UnlockThrottled, WrongPassphrase
from sgalert.model import Role
from sgalert.records import audit
from sgalert.records.crypto import TEST_KDF
from sgalert.records.keyring import add_person, remove_person
from sgalert.records.passphrase import FREE_FAILURES, wait_after

from .conftest import PASSPHRASES, Team, add_member

DSL = "dsl@example.org"


async def _actions(team: Team, actor: str) -> list[str]:
    async with team.service.store.read() as db:
        entries = await audit.entries(db, limit=50)
    return [e.action for e in entries if e.actor == actor]


@pytest.mark.parametrize("weak", ["password", "Password1!", "qwertyuiop", "Grace Example 1"])
async def test_a_guessable_passphrase_is_refused_with_the_reason(team: Team, weak: str) -> None:
    with pytest.raises(InvalidInput, match="too easy to guess") as refused:
        await add_person(
            team.service.store,
            by=team[DSL],
            name="Grace Example",
            email="grace@example.org",
            role=Role.DEPUTY,
            passphrase=weak,
            kdf=TEST_KDF,
        )
    assert "four or more uncommon words" in str(refused.value)
    if weak != "password":  # the reason may say "password"; it never repeats the passphrase
        assert weak not in str(refused.value)


async def test_repeated_wrong_passphrases_slow_the_next_try_and_are_audited(team: Team) -> None:
    for _ in range(FREE_FAILURES):
        with pytest.raises(WrongPassphrase):
            await team.service.unlock(DSL, "not-the-passphrase")
    # Now even the right passphrase must wait: a guesser cannot keep going at full speed.
    with pytest.raises(UnlockThrottled, match=r"5 wrong passphrases in a row: try again in \d+ s"):
        await team.service.unlock(DSL, PASSPHRASES[DSL])
    assert (await _actions(team, DSL))[:2] == ["unlock-throttled", "unlock-failed"]
    # Once the wait has passed the right passphrase works, and the count starts again.
    past = utcnow() - wait_after(FREE_FAILURES) - timedelta(seconds=1)
    async with team.service.store.write() as db:
        await db.execute("UPDATE unlock_failures SET last_failed_at = ?", (iso(past),))
    identity = await team.service.unlock(DSL, PASSPHRASES[DSL])
    assert identity.email == DSL
    rows = await team.service.store.fetchall("SELECT * FROM unlock_failures")
    assert rows == []


def test_the_wait_grows_but_never_locks_a_dsl_out_for_long() -> None:
    waits = [wait_after(n) for n in range(30)]
    assert waits[:FREE_FAILURES] == [timedelta(0)] * FREE_FAILURES
    assert waits == sorted(waits)
    assert waits[FREE_FAILURES] == timedelta(seconds=30)
    assert max(waits) == timedelta(minutes=10)


async def test_a_removed_person_trying_to_unlock_is_audited(team: Team) -> None:
    await add_member(team, "second@example.org", Role.DSL, approver=DSL)
    await remove_person(team.service.store, team[DSL], "second@example.org")
    with pytest.raises(NotEntitled, match="removed"):
        await team.service.unlock("second@example.org", "second@example.org-passphrase")
    assert (await _actions(team, "second@example.org"))[0] == "unlock-refused"


async def test_a_passphrase_with_undecodable_bytes_unlocks_and_never_raises(team: Team) -> None:
    odd = "caf\udce9-shelf-lantern-orbit"  # what a Latin-1 terminal's é becomes in Python
    await add_person(
        team.service.store,
        by=team[DSL],
        name="Odd Bytes",
        email="odd@example.org",
        role=Role.STAFF,
        passphrase=odd,
        kdf=TEST_KDF,
    )
    assert (await team.service.unlock("odd@example.org", odd)).email == "odd@example.org"
    with pytest.raises(WrongPassphrase):
        await team.service.unlock("odd@example.org", "caf\udce8-shelf-lantern-orbit")


@pytest.mark.parametrize(
    "email",
    [
        "evil\x1b]52;c;aGVsbG8=\x07@example.org",  # OSC 52: writes the clipboard
        "evil\x1b[2J@example.org",  # clears the screen
        "ad\u202emin@example.org",  # bidi override
        "a\x85b@example.org",  # C1 control
        "two words@example.org",
        '"quoted"@example.org',
        "dsl@exa mple.org",
        "dsl@localhost",
    ],
)
async def test_an_address_with_escapes_or_oddities_is_refused(team: Team, email: str) -> None:
    with pytest.raises(InvalidInput, match="not a plain email address") as refused:
        await add_person(
            team.service.store,
            by=team[DSL],
            name="Someone Example",
            email=email,
            role=Role.STAFF,
            passphrase="lantern-orbit-shelf-meadow",
            kdf=TEST_KDF,
        )
    message = str(refused.value)
    assert "\x1b" not in message and "\u202e" not in message and "\x85" not in message


async def test_a_name_with_terminal_escapes_is_refused(team: Team) -> None:
    with pytest.raises(InvalidInput, match="control characters"):
        await add_person(
            team.service.store,
            by=team[DSL],
            name="Evil\x1b[2J Example",
            email="evil@example.org",
            role=Role.STAFF,
            passphrase="lantern-orbit-shelf-meadow",
            kdf=TEST_KDF,
        )


async def test_a_decision_or_a_sealed_field_cannot_be_deleted_or_changed(team: Team) -> None:
    """Trust model item 9: the record of a case is only ever added to."""
    from sgalert.errors import StoreError

    from .conftest import encompass_case

    (created,) = await team.service.create_cases([encompass_case()])
    await team.service.record_decision(
        team[DSL], created.ref, "No further action; class teacher told", "nfa"
    )
    for statement in (
        "DELETE FROM chronology",
        "DELETE FROM sealed_fields",
        "UPDATE sealed_fields SET blob = blob",
    ):
        with pytest.raises((StoreError, sqlite3.IntegrityError, sqlite3.DatabaseError)) as err:
            async with team.service.store.write() as db:
                await db.execute(statement)
        assert "never" in str(err.value)
    entries = await team.service.store.fetchall("SELECT COUNT(*) FROM chronology")
    assert entries[0][0] >= 1
