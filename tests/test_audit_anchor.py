"""An anchor kept outside the machine catches what the chain alone cannot: a log cut short,
emptied, or rebuilt with every hash recomputed (issue 13, item 8)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sgalert.errors import AuditChainBroken, InvalidInput
from sgalert.records import audit

from .conftest import Team, encompass_case


async def _busy_log(team: Team) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    await team.service.acknowledge(team["dsl@example.org"], stored.ref)
    await team.service.add_note(team["dsl@example.org"], stored.ref, "Spoke to class teacher.")


async def _anchor(team: Team) -> audit.Anchor:
    async with team.service.store.read() as db:
        seq, digest = await audit.head(db)
    return audit.Anchor(seq, digest)


async def _verify(team: Team, *anchors: audit.Anchor) -> int:
    # The chain alone: a cut tail also drops the newest case manifests, which the records
    # check would report (tests/test_trust_keys.py); these tests are about the anchor.
    async with team.service.store.read() as db:
        return await audit.verify(db, anchors=anchors, records=False)


def _untriggered(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("DROP TRIGGER audit_no_update")
    db.execute("DROP TRIGGER audit_no_delete")
    return db


def _rebuild_chain(db: sqlite3.Connection, from_seq: int) -> None:
    """What a forger with write access does: recompute every hash from ``from_seq`` on."""
    rows = db.execute(
        "SELECT seq, at, actor, action, case_id, detail FROM audit WHERE seq >= ? ORDER BY seq",
        (from_seq,),
    ).fetchall()
    prev_row = db.execute("SELECT hash FROM audit WHERE seq = ?", (from_seq - 1,)).fetchone()
    prev = prev_row[0] if prev_row else audit.GENESIS_HASH
    for seq, at, actor, action, case_id, detail in rows:
        digest = audit.entry_hash(prev, seq, at, actor, action, case_id, detail)
        db.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, seq))
        prev = digest


async def test_an_untouched_log_holds_every_anchor_taken_along_the_way(team: Team) -> None:
    first = await _anchor(team)
    await _busy_log(team)
    second = await _anchor(team)
    assert second.seq > first.seq
    short = audit.Anchor(first.seq, first.hash[:16])
    assert await _verify(team, first, second, short) == second.seq


async def test_a_deleted_tail_is_found_against_an_earlier_anchor(team: Team) -> None:
    await _busy_log(team)
    anchor = await _anchor(team)
    db = _untriggered(team.service.store.path)
    db.execute("DELETE FROM audit WHERE seq > ?", (anchor.seq - 2,))
    db.close()
    assert await _verify(team) == anchor.seq - 2  # the chain alone still looks intact
    with pytest.raises(AuditChainBroken, match=f"audit entry {anchor.seq} .* is missing") as err:
        await _verify(team, anchor)
    assert f"the log ends at entry {anchor.seq - 2}" in str(err.value)


async def test_a_deleted_log_is_found_against_an_earlier_anchor(team: Team) -> None:
    await _busy_log(team)
    anchor = await _anchor(team)
    db = _untriggered(team.service.store.path)
    db.execute("DELETE FROM audit")
    db.close()
    assert await _verify(team) == 0
    with pytest.raises(AuditChainBroken, match="the log is empty"):
        await _verify(team, anchor)


async def test_a_rebuilt_chain_is_found_against_an_earlier_anchor(team: Team) -> None:
    await _busy_log(team)
    anchor = await _anchor(team)
    db = _untriggered(team.service.store.path)
    db.execute("UPDATE audit SET actor = 'forger@example.org' WHERE seq = 3")
    _rebuild_chain(db, 3)
    db.close()
    assert await _verify(team) == anchor.seq  # a valid chain: only the anchor can tell
    with pytest.raises(AuditChainBroken, match=f"audit entry {anchor.seq} is not the one"):
        await _verify(team, anchor)


async def test_a_rebuilt_tail_after_the_anchor_does_not_disturb_it(team: Team) -> None:
    """The anchor proves entries 1..SEQ; what came later is the next anchor's business."""
    anchor = await _anchor(team)
    await _busy_log(team)
    db = _untriggered(team.service.store.path)
    db.execute("UPDATE audit SET actor = 'forger@example.org' WHERE seq = ?", (anchor.seq + 1,))
    _rebuild_chain(db, anchor.seq + 1)
    db.close()
    assert await _verify(team, anchor) > anchor.seq


@pytest.mark.parametrize(
    "text", ["", "12", "12:", "x:" + "a" * 64, "12:abc", "12:" + "g" * 64, "-1:" + "a" * 64]
)
def test_a_malformed_anchor_is_one_clear_line(text: str) -> None:
    with pytest.raises(InvalidInput, match="is not SEQ:HASH"):
        audit.Anchor.parse(text)


@given(
    seq=st.integers(min_value=0, max_value=2**62),
    at=st.text(),
    actor=st.text(),
    action=st.text(),
    case_id=st.none() | st.text(),
    detail=st.text(),
)
def test_the_fast_entry_hash_is_the_canonical_json_hash(
    seq: int, at: str, actor: str, action: str, case_id: str | None, detail: str
) -> None:
    """Quotes, backslashes, controls, non-ASCII and lone surrogates hash as canonical_json."""
    prev = "ab" * 32
    slow = hashlib.sha256(
        prev.encode() + audit.canonical_entry(seq, at, actor, action, case_id, detail)
    ).hexdigest()
    assert audit.entry_hash(prev, seq, at, actor, action, case_id, detail) == slow


def _cli(workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGALERT_")}
    env["SGALERT_WORKSPACE"] = str(workspace)
    return subprocess.run(
        [sys.executable, "-m", "sgalert", *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


@pytest.mark.slow
def test_audit_head_and_verify_anchor_on_the_command_line(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    assert _cli(ws, "init").returncode == 0
    head = _cli(ws, "audit", "head")
    assert head.returncode == 0, head.stderr
    anchor = next(
        line.split(" ", 1)[1] for line in head.stdout.splitlines() if line.startswith("anchor: ")
    )
    assert anchor.startswith("1:") and len(anchor) == 2 + 64

    held = _cli(ws, "audit", "verify", "--anchor", anchor, "--anchor", anchor[:20])
    assert held.returncode == 0, held.stderr
    assert "anchor 1:" in held.stdout and "holds" in held.stdout

    bad = _cli(ws, "audit", "verify", "--anchor", "yesterday")
    assert bad.returncode == 1
    assert bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "is not SEQ:HASH" in bad.stderr

    db = _untriggered(ws / "sgalert.db")
    db.execute("DELETE FROM audit")
    db.close()
    emptied = _cli(ws, "audit", "verify")  # even without an anchor: init wrote entry 1
    assert (emptied.returncode, emptied.stdout) == (1, "")
    assert emptied.stderr == (
        "sgalert: the audit log is empty: every store starts with an entry, so it was deleted\n"
    )
    gone = _cli(ws, "audit", "verify", "--anchor", anchor)
    assert gone.returncode == 1
    assert gone.stderr == (
        f"sgalert: audit entry 1 (anchored as {anchor[:18]}) is missing: the log is empty,"
        " so entries were deleted since that anchor was taken\n"
    )
