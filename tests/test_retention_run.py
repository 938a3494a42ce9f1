"""``sgalert retention run`` really destroys (issue 15, item 4): crypto-shredding, legal holds,
the periods in the config, and what a destroyed case still counts for.

A case past a destroy period, closed and not held, loses its data keys and every sealed row (no
byte of its ciphertext or wrapped keys is left in the store's files); its metadata stays, so
the digest and the termly report count it as before, and the audit chain records the
destruction and still verifies. A held case, or one within its period, is untouched.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from sgalert.cli import retention
from sgalert.config import load_config, render_template
from sgalert.desk.service import CaseService
from sgalert.desk.views import UPKEEP
from sgalert.errors import (
    CaseDestroyed,
    ConfigError,
    IllegalTransition,
    NoSuchCase,
    NotEntitled,
)
from sgalert.model import Source
from sgalert.records import audit, shredding
from sgalert.records.cases import FIELD_ATTACHMENTS, FIELD_BODY, FIELD_FACTS, FIELD_RAW, NewCase
from sgalert.records.keyring import Identity
from sgalert.records.manifest import EMPTY as EMPTY_MANIFEST
from sgalert.records.store import on_connection
from sgalert.routing.digest import build_digest
from sgalert.routing.report import build_report
from sgalert.routing.report_render import render_text as report_text
from sgalert.workspace import Workspace

from .conftest import PASSPHRASES, Team, store_file_bytes, whistle_case
from .digest_support import at, seed

LONG_AGO = datetime(2020, 1, 6, 9, 0, tzinfo=UTC)  # every destroy period has run out
PUPIL = "Zebedee Invented-Pupil"
CHAT = "an invented chat line that must not outlive its period"
HOLD_REASON = "Invented solicitors' letter about Zebedee: preserve everything"


def lesson(received: datetime = LONG_AGO) -> NewCase:
    return NewCase(
        source=Source.LESSON,
        received_at=received,
        origin="mailbox",
        content={
            FIELD_RAW: f"From: teacher@school.example.org\r\n\r\n{PUPIL}: {CHAT}".encode(),
            FIELD_FACTS: json.dumps({"pupil": PUPIL}).encode(),
            FIELD_BODY: f"Lesson ended. {PUPIL} wrote: {CHAT}".encode(),
            FIELD_ATTACHMENTS: json.dumps(
                [{"filename": "chat.txt", "content_type": "text/plain", "size": 60}]
            ).encode(),
            "attachment/0": f"{PUPIL}: {CHAT}".encode(),
        },
    )


class Runner:
    def __init__(self, workspace: Workspace, **args: object) -> None:
        self.workspace = workspace
        defaults: dict[str, object] = {
            "dry_run": False,
            "as_email": None,
            "on": None,
            "argv_visible_ok": False,
        }
        self.args = argparse.Namespace(**{**defaults, **args})

    async def unlocked(self, service: CaseService) -> Identity:
        return await service.unlock(self.args.as_email, PASSPHRASES[self.args.as_email])


async def rows_of(team: Team, case_id: str) -> dict[str, int]:
    store = team.service.store
    return {
        table: (
            await store.fetchall(f"SELECT COUNT(*) FROM {table} WHERE case_id = ?", (case_id,))
        )[0][0]
        for table in ("sealed_fields", "key_wraps", "chronology")
    }


async def secrets_of(team: Team, case_id: str) -> list[bytes]:
    """Every ciphertext and wrapped key of a case, as stored."""
    store = team.service.store
    found = []
    for sql in (
        "SELECT blob FROM sealed_fields WHERE case_id = ?",
        "SELECT blob FROM chronology WHERE case_id = ?",
        "SELECT wrapped FROM key_wraps WHERE case_id = ?",
    ):
        found += [bytes(row[0]) for row in await store.fetchall(sql, (case_id,))]
    return found


def store_bytes(workspace: Workspace) -> bytes:
    """The database file and whatever WAL is beside it."""
    path = workspace.store_path
    return store_file_bytes(path, path.with_name(path.name + "-wal"))


async def close(team: Team, ref: str, who: str = "dsl@example.org") -> None:
    await team.service.close_case(team[who], ref, "no further action", "invented reason")


async def test_a_case_past_its_period_is_shredded_and_the_others_are_kept(
    team: Team, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    service, dsl = team.service, team["dsl@example.org"]
    old, held, recent = await service.create_cases([lesson(), lesson(), lesson(datetime.now(UTC))])
    for stored in (old, held, recent):
        await service.add_note(dsl, stored.ref, f"Spoke to {PUPIL}'s parent (invented).")
        await close(team, stored.ref)
    await service.hold(dsl, held.ref, HOLD_REASON)
    ids = {ref: (await service.summary(ref)).id for ref in (old.ref, held.ref, recent.ref)}
    secrets = await secrets_of(team, ids[old.ref])
    kept_before = {ref: await rows_of(team, ids[ref]) for ref in (held.ref, recent.ref)}
    assert len(secrets) == 8  # 5 sealed fields, 2 entries (the note, the outcome), 1 wrap

    assert await retention.run(Runner(workspace)) == 0
    out = capsys.readouterr().out.splitlines()
    assert (
        f"{old.ref:14} lesson     closed        shredded: lesson chat evidence is kept 2 years"
        " (expired 2022-01-06)" in out
    )
    assert (
        f"{held.ref:14} lesson     closed        kept (legal hold): lesson chat evidence is"
        " kept 2 years (expired 2022-01-06); release the hold first" in out
    )
    assert out[-1].startswith(f"retention run for {datetime.now(UTC).date()}: 1 shredded,")

    assert await rows_of(team, ids[old.ref]) == {
        "sealed_fields": 0,
        "key_wraps": 0,
        "chronology": 0,
    }
    for ref, before in kept_before.items():
        assert await rows_of(team, ids[ref]) == before
        assert (await service.open_case(dsl, ref)).summary.destroyed_at is None
    # No byte of its ciphertext or wrapped keys is left in the files (nor, a fortiori, any
    # plaintext: the pupil's name was only ever sealed).
    on_disk = store_bytes(workspace)
    for secret in secrets:
        assert secret[:32] not in on_disk
    assert PUPIL.encode() not in on_disk and CHAT.encode() not in on_disk
    assert HOLD_REASON.encode() not in on_disk
    # The case is shown as destroyed, and refuses to open in one line.
    summary = await service.summary(old.ref)
    assert summary.destroyed_at is not None
    assert summary.state.value == "closed" and summary.source is Source.LESSON
    line = (
        f"case {old.ref} was destroyed under retention on {summary.destroyed_at.date()};"
        " only its metadata (source, dates, state) is kept"
    )
    with pytest.raises(CaseDestroyed) as refused:
        await service.open_case(dsl, old.ref)
    assert str(refused.value) == line
    for act in (
        service.add_note(dsl, old.ref, "too late"),
        service.hold(dsl, old.ref, "too late"),
        service.attachment(dsl, old.ref, 0),
    ):
        with pytest.raises(CaseDestroyed):
            await act
    # The audit log names the destruction (reference and reason, never content) and verifies.
    entries = await service.store.fetchall(
        "SELECT actor, detail FROM audit WHERE action = 'case-destroyed'"
    )
    assert [(a, json.loads(d)) for a, d in entries] == [
        (
            "system",
            {
                "ref": old.ref,
                "reason": "retention",
                "source": "lesson",
                "rule": {"years": 2, "then": "destroy"},
                "sealed_fields": 5,
                "chronology": 2,
                "key_wraps": 1,
                "manifest": EMPTY_MANIFEST,  # nothing left, which audit verify then checks
            },
        )
    ]
    assert await service.verify_audit() > 0
    async with service.store.read() as db:
        assert await on_connection(db, shredding.destruction_problems) == []

    # Released, the held case goes at the next run; a second run finds nothing more to do.
    await service.release_hold(dsl, held.ref)
    await retention.run(Runner(workspace))
    assert (await service.summary(held.ref)).destroyed_at is not None
    assert (await service.summary(recent.ref)).destroyed_at is None
    await retention.run(Runner(workspace))
    assert "0 shredded" in capsys.readouterr().out.splitlines()[-1]
    assert await service.verify_audit() > 0


async def test_the_dry_run_changes_nothing(team: Team, workspace: Workspace) -> None:
    (old,) = await team.service.create_cases([lesson()])
    await close(team, old.ref)
    case_id = (await team.service.summary(old.ref)).id
    before = await rows_of(team, case_id)
    await retention.run(Runner(workspace, dry_run=True))
    assert await rows_of(team, case_id) == before
    assert (await team.service.summary(old.ref)).destroyed_at is None


async def test_nothing_deletes_a_record_around_retention(team: Team) -> None:
    """The triggers: sealed rows go only once the case is marked destroyed, a held case cannot
    be marked, and a mark is never taken back."""
    service, dsl = team.service, team["dsl@example.org"]
    (case,) = await service.create_cases([lesson()])
    await close(team, case.ref)
    case_id = (await service.summary(case.ref)).id
    for sql in (
        "DELETE FROM sealed_fields WHERE case_id = ?",
        "DELETE FROM chronology WHERE case_id = ?",
    ):
        with pytest.raises(sqlite3.DatabaseError, match="never deleted"):
            async with service.store.write() as db:
                await db.execute(sql, (case_id,))
    await service.hold(dsl, case.ref, HOLD_REASON)
    with pytest.raises(sqlite3.DatabaseError, match="legal hold"):
        async with service.store.write() as db:
            await db.execute(
                "UPDATE cases SET destroyed_at = '2030-01-01' WHERE id = ?", (case_id,)
            )
    with pytest.raises(IllegalTransition, match="under a legal hold"):
        await service.store.transact(
            lambda conn: shredding.shred_now(
                conn, case_id, actor="system", now=datetime.now(UTC), rule={}
            )
        )
    await service.release_hold(dsl, case.ref)
    await service.store.transact(
        lambda conn: shredding.shred_now(
            conn, case_id, actor="system", now=datetime.now(UTC), rule={}
        )
    )
    with pytest.raises(sqlite3.DatabaseError, match="stays destroyed"):
        async with service.store.write() as db:
            await db.execute("UPDATE cases SET destroyed_at = NULL WHERE id = ?", (case_id,))
    # A destruction the audit log does not know of is found by the check a verifier runs.
    (other,) = await service.create_cases([lesson()])
    await close(team, other.ref)
    async with service.store.write() as db:
        await db.execute("UPDATE cases SET destroyed_at = '2030-01-01' WHERE ref = ?", (other.ref,))
    async with service.store.read() as db:
        problems = await on_connection(db, shredding.destruction_problems)
    assert problems == [
        f"case {other.ref} is marked destroyed but the audit log has no case-destroyed entry",
        f"case {other.ref} is marked destroyed but still has key_wraps rows",
        f"case {other.ref} is marked destroyed but still has sealed_fields rows",
        f"case {other.ref} is marked destroyed but still has chronology rows",
    ]


async def test_holds_are_for_entitled_readers_and_audited_without_their_reason(
    team: Team,
) -> None:
    service, dsl, mo = team.service, team["dsl@example.org"], team["mo@example.org"]
    (case,) = await service.create_cases([lesson()])
    with pytest.raises(NotEntitled):
        await service.hold(mo, case.ref, HOLD_REASON)  # lessons are the DSLs' and the head's
    entry = await service.hold(dsl, case.ref, HOLD_REASON)
    with pytest.raises(IllegalTransition, match=r"already under a legal hold \(since "):
        await service.hold(dsl, case.ref, "again")
    view = await service.open_case(dsl, case.ref)
    (hold_entry,) = [e for e in view.chronology if e.id == entry]
    assert hold_entry.reason == HOLD_REASON and hold_entry.signature_valid
    await service.release_hold(dsl, case.ref)
    with pytest.raises(IllegalTransition, match="is not under a legal hold"):
        await service.release_hold(dsl, case.ref)
    rows = await service.store.fetchall(
        "SELECT actor, action, detail FROM audit WHERE action LIKE 'legal-hold%' OR"
        " (action = 'refused' AND detail LIKE '%legal-hold%') ORDER BY seq"
    )
    assert [(r[0], r[1]) for r in rows] == [
        ("mo@example.org", "refused"),
        ("dsl@example.org", "legal-hold-placed"),
        ("dsl@example.org", "legal-hold-released"),
    ]
    assert all("solicitor" not in r[2] for r in rows)


async def test_a_reviewed_case_is_shredded_by_an_entitled_reader(
    team: Team, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """Review rules list, never destroy unattended; ``retention shred`` does it after review."""
    service = team.service
    (case,) = await service.create_cases(
        [dataclasses.replace(whistle_case(), received_at=datetime(2014, 5, 1, tzinfo=UTC))]
    )
    await close(team, case.ref, "mo@example.org")
    await retention.run(Runner(workspace))
    assert "due for review" in capsys.readouterr().out
    assert (await service.summary(case.ref, viewer=UPKEEP)).destroyed_at is None
    with pytest.raises(NotEntitled):
        await retention.shred(Runner(workspace, ref=case.ref, as_email="dsl@example.org"))
    await retention.shred(Runner(workspace, ref=case.ref, as_email="mo@example.org"))
    assert (await service.summary(case.ref, viewer=UPKEEP)).destroyed_at is not None
    (actor,) = await service.store.fetchall(
        "SELECT actor FROM audit WHERE action = 'case-destroyed'"
    )
    assert actor[0] == "mo@example.org"
    # Only the monitoring officer is told it was destroyed; to anyone else the reference is
    # answered as a missing case's would be (before: "destroyed under retention" to anyone).
    with pytest.raises(CaseDestroyed):
        await service.open_case(team["mo@example.org"], case.ref)
    for who in ("dsl@example.org", "head@example.org"):
        with pytest.raises(NoSuchCase) as answer:
            await service.open_case(team[who], case.ref)
        with pytest.raises(NoSuchCase) as missing:
            await service.open_case(team[who], "WB-2099-0001")
        assert str(answer.value) == str(missing.value)
    refused = await service.store.fetchall(
        "SELECT actor FROM audit WHERE action = 'refused' AND case_id = ?",
        ((await service.summary(case.ref, viewer=UPKEEP)).id,),
    )
    assert {row[0] for row in refused} >= {"dsl@example.org", "head@example.org"}
    (recent,) = await service.create_cases([whistle_case()])
    await close(team, recent.ref, "mo@example.org")
    with pytest.raises(IllegalTransition, match=r"is kept: until 20\d\d-"):
        await retention.shred(Runner(workspace, ref=recent.ref, as_email="mo@example.org"))


async def test_the_counts_still_include_a_destroyed_case(team: Team) -> None:
    service, refs = await seed(team)
    config = service.config
    assert config is not None
    first, last, monday = date(2026, 11, 30), date(2026, 12, 13), date(2026, 12, 7)

    async def figures() -> tuple[str, object]:
        async with service.store.read() as db:
            report = await on_connection(
                db, lambda conn: build_report(conn, config, first, last, at(14, 9))
            )
            digest = await on_connection(
                db, lambda conn: build_digest(conn, config, monday, at(7, 7, 31))
            )
        return report_text(report), dataclasses.replace(digest, anchor=audit.Anchor(0, "0" * 64))

    before = await figures()
    c1 = (await service.summary(refs["C1"])).id  # closed on 4 December
    await service.store.transact(
        lambda conn: shredding.shred_now(
            conn, c1, actor="system", now=at(8, 9), rule={"years": 25, "then": "review"}
        )
    )
    assert (await service.summary(refs["C1"])).destroyed_at == at(8, 9)
    assert await figures() == before


def test_a_bad_period_in_the_config_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "sgalert.toml"
    template = render_template("Test School")
    assert load_config(path_with(path, template)).retention[Source.LESSON].years == 2
    for old, new, message in (
        (
            'lesson = { years = 2, then = "destroy" }',
            'lesson = { years = 1, then = "destroy" }',
            "retention.lesson.years: 1 years is shorter than the policy's 2 (lesson chat evidence"
            " is kept 2 years); write years = 2 or more, or add below_policy = true if the school"
            " decided this on advice",
        ),
        (
            'whistle = { years = 10, then = "review" }',
            'whistle = { years = 10, then = "keep" }',
            "retention.whistle.then: unknown 'keep'; use \"destroy\" (shredded unattended) or"
            ' "review" (listed for a person to decide)',
        ),
        (
            'lesson = { years = 2, then = "destroy" }',
            'lesson = { years = "two" }',
            "retention.lesson.years: must be a whole number from 1 to 100; e.g. years = 2",
        ),
        (
            'lesson = { years = 2, then = "destroy" }',
            "lessons = { years = 2 }",
            "retention.lessons: unknown key; did you mean 'lesson'?",
        ),
    ):
        assert old in template
        with pytest.raises(ConfigError) as bad:
            load_config(path_with(path, template.replace(old, new)))
        assert str(bad.value) == f"{path}: {message}"
        assert "\n" not in str(bad.value)
    chosen = template.replace(
        'lesson = { years = 2, then = "destroy" }',
        'lesson = { years = 1, then = "review", below_policy = true }',
    )
    rule = load_config(path_with(path, chosen)).retention[Source.LESSON]
    assert (rule.years, rule.then.value) == (1, "review")


def path_with(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.slow
async def test_from_the_command_line(team: Team) -> None:
    """As a user runs it: hold, run, release, run; the destroyed case lists as such and refuses
    ``case show`` in one line."""
    from .test_cli_errors import one_clear_line, sgalert

    (case,) = await team.service.create_cases([lesson()])
    await close(team, case.ref)
    dsl = {"SGALERT_PASSPHRASE": PASSPHRASES["dsl@example.org"]}
    held = sgalert(
        team, "case", "hold", case.ref, "--as", "dsl@example.org", "--reason", "litigation", env=dsl
    )
    assert held.returncode == 0, held.stderr
    kept = sgalert(team, "retention", "run")
    assert "kept (legal hold)" in kept.stdout and "0 shredded" in kept.stdout, kept
    released = sgalert(team, "case", "release", case.ref, "--as", "dsl@example.org", env=dsl)
    assert released.returncode == 0, released.stderr
    assert "1 shredded" in sgalert(team, "retention", "run").stdout
    today = datetime.now(UTC).date()
    listed = sgalert(team, "cases", "list").stdout
    assert f"destroyed under retention on {today}" in listed
    shown = sgalert(team, "case", "show", case.ref, "--as", "dsl@example.org", env=dsl)
    assert one_clear_line(shown) == (
        f"sgalert: case {case.ref} was destroyed under retention on {today}; only its metadata"
        " (source, dates, state) is kept"
    )
    assert sgalert(team, "audit", "verify").returncode == 0
