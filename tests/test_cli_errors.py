"""The command line on a host that is not in the school's zone, and given bad input.

Run as a user runs it: a real subprocess against a real store (the people made with the cheap
test KDF, so these are quick). A time without an offset is the school's local time whatever the
host's ``TZ``; a date that is not ISO 8601, a passphrase that is not UTF-8 and a reader that stops
early (``sgalert cases list | head``) each end in at most one clear line, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sgalert.clock import parse_iso

from .conftest import PASSPHRASES, Team, encompass_case

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
NEW_YORK = "America/New_York"


def _env(team: Team, extra: Mapping[str, str | bytes] | None = None) -> dict[str, str | bytes]:
    env: dict[str, str | bytes] = {
        k: v for k, v in os.environ.items() if not k.startswith("SGALERT_") and k != "TZ"
    }
    env["SGALERT_WORKSPACE"] = str(team.service.store.path.parent)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env["TZ"] = NEW_YORK  # the host is not in the school's zone
    env.update(extra or {})
    return env


def sgalert(
    team: Team, *args: str, env: Mapping[str, str | bytes] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sgalert", *args],
        capture_output=True,
        text=True,
        env=_env(team, env),  # type: ignore[arg-type]  (bytes values are fine on POSIX)
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def one_clear_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode not in (0, 120), result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sgalert: ")
    return lines[0]


# ----- times without an offset are the school's ----------------------------------------------


async def test_rota_who_reads_a_bare_time_in_the_schools_zone(team: Team) -> None:
    summer = sgalert(team, "rota", "who", "--at", "2026-06-01T09:00", "--json")
    assert summer.returncode == 0, summer.stderr
    assert json.loads(summer.stdout)["at"] == "2026-06-01T08:00:00.000000Z"  # BST, not EDT
    explicit = sgalert(team, "rota", "who", "--at", "2026-06-01T09:00-04:00", "--json")
    assert json.loads(explicit.stdout)["at"] == "2026-06-01T13:00:00.000000Z"  # an offset wins


async def test_a_phoned_notice_is_stored_at_the_schools_time(team: Team) -> None:
    result = sgalert(
        team,
        "case",
        "new",
        "--source",
        "encompass",
        "--as",
        "dsl@example.org",
        "--caller",
        "PC 0000, Example Constabulary",
        "--text",
        "Invented notice.",
        "--received-at",
        "2026-11-23T07:45",
        env={"SGALERT_PASSPHRASE": PASSPHRASES["dsl@example.org"]},
    )
    assert result.returncode == 0, result.stderr
    rows = await team.service.store.fetchall("SELECT received_at FROM cases")
    assert [parse_iso(r[0]) for r in rows] == [datetime(2026, 11, 23, 7, 45, tzinfo=UTC)]


async def test_a_cover_given_in_local_times_is_stored_in_utc(team: Team) -> None:
    result = sgalert(
        team,
        "rota",
        "cover",
        "--who",
        "deputy@example.org",
        "--from",
        "2036-06-02T08:00",
        "--to",
        "2036-06-02T18:00",
        "--as",
        "dsl@example.org",
        env={"SGALERT_PASSPHRASE": PASSPHRASES["dsl@example.org"]},
    )
    assert result.returncode == 0, result.stderr
    rows = await team.service.store.fetchall("SELECT starts_at, ends_at FROM rota_covers")
    assert [(parse_iso(a), parse_iso(b)) for a, b in rows] == [
        (datetime(2036, 6, 2, 7, 0, tzinfo=UTC), datetime(2036, 6, 2, 17, 0, tzinfo=UTC))
    ]


# ----- one clear line ---------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["next tuesday", "23/11/2026 08:30", "2026-13-01T08:00"])
async def test_a_date_that_is_not_iso_says_the_format(team: Team, given: str) -> None:
    line = one_clear_line(sgalert(team, "rota", "who", "--at", given))
    assert "--at" in line and "ISO 8601" in line and "2026-11-23T08:30" in line


async def test_a_cover_that_has_already_ended_is_refused_in_one_line(team: Team) -> None:
    """Found walking the desk: a cover wholly in the past was stored, put nobody on duty and
    showed in the week's grid as if it had been the plan."""
    result = sgalert(
        team,
        "rota",
        "cover",
        "--who",
        "deputy@example.org",
        "--from",
        "2026-06-01T08:00",
        "--to",
        "2026-06-01T18:00",
        "--as",
        "dsl@example.org",
        env={"SGALERT_PASSPHRASE": PASSPHRASES["dsl@example.org"]},
    )
    line = one_clear_line(result)
    assert line.endswith("a cover must end in the future: this one ended Mon 1 Jun 2026 18:00")
    assert await team.service.store.fetchall("SELECT id FROM rota_covers") == []


async def test_a_cover_of_a_century_is_refused_naming_its_end(team: Team) -> None:
    """A mistyped year (2126 for 2026) was stored: one person on duty for a hundred years."""
    result = sgalert(
        team,
        "rota",
        "cover",
        "--who",
        "deputy@example.org",
        "--from",
        "2026-12-07T08:00",
        "--to",
        "2126-12-07T18:00",
        "--as",
        "dsl@example.org",
        env={"SGALERT_PASSPHRASE": PASSPHRASES["dsl@example.org"]},
    )
    line = one_clear_line(result)
    assert "a cover lasts at most 366 days, and this one ends" in line and "2126" in line
    assert await team.service.store.fetchall("SELECT id FROM rota_covers") == []


async def test_a_passphrase_in_the_environment_that_is_not_utf8(team: Team) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    result = sgalert(
        team,
        "ack",
        stored.ref,
        "--as",
        "dsl@example.org",
        env={"SGALERT_PASSPHRASE": b"dsl-passphrase-\xff\xfe"},
    )
    line = one_clear_line(result)
    assert "SGALERT_PASSPHRASE" in line and "UTF-8" in line
    assert "\\xff" not in line and "passphrase-" not in line  # never echoes any of it


def _ack_at_a_terminal(team: Team, ref: str, typed: bytes) -> subprocess.CompletedProcess[str]:
    """`sgalert ack` with a real pseudo-terminal as its controlling terminal, so getpass reads
    from /dev/tty; ``typed`` is what the person types at the prompt."""
    import pty

    master, slave = pty.openpty()
    # A session leader that opens a terminal without O_NOCTTY makes it its controlling one.
    claim_tty = (
        "import os, sys; fd = os.open(sys.argv[1], os.O_RDWR); os.dup2(fd, 0); os.dup2(fd, 1);"
        " os.execv(sys.executable, [sys.executable, '-m', 'sgalert', *sys.argv[2:]])"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", claim_tty, os.ttyname(slave), "ack", ref, "--as", "dsl@example.org"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_env(team),  # type: ignore[arg-type]
        start_new_session=True,
    )
    try:
        seen = b""  # the slave stays open here meanwhile: reading a pty nobody holds is EIO
        deadline = time.monotonic() + 30
        while b"Passphrase" not in seen and time.monotonic() < deadline:
            seen += os.read(master, 1024)
        assert b"Passphrase" in seen
        os.write(master, typed)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
        os.close(slave)
    return subprocess.CompletedProcess(process.args, process.returncode, "", stderr.decode())


async def test_a_passphrase_typed_at_the_terminal_that_is_not_utf8(team: Team) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    result = await asyncio.to_thread(
        _ack_at_a_terminal, team, stored.ref, b"dsl-passphrase-\xff\xfe\n"
    )
    line = one_clear_line(result)
    assert "UTF-8" in line
    assert (await team.service.summary(stored.ref)).acknowledged_at is None


def _list_into_a_reader_that_left(team: Team) -> tuple[int, str]:
    read_end, write_end = os.pipe()
    process = subprocess.Popen(
        [sys.executable, "-m", "sgalert", "cases", "list"],
        stdin=subprocess.DEVNULL,
        stdout=write_end,
        stderr=subprocess.PIPE,
        env=_env(team),  # type: ignore[arg-type]
    )
    os.close(write_end)
    os.close(read_end)  # `head` read nothing and left, before sgalert wrote a line
    _, stderr = process.communicate(timeout=60)
    return process.returncode, stderr.decode()


async def test_cases_list_into_a_reader_that_stops_early(team: Team) -> None:
    """`sgalert cases list | head`: the reader has gone; no traceback, a pipe's exit code."""
    await team.service.create_cases([encompass_case(f"Child {n} Invented") for n in range(40)])
    returncode, stderr = await asyncio.to_thread(_list_into_a_reader_that_left, team)
    assert returncode in (0, 141), stderr
    assert stderr == ""
