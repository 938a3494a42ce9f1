"""The store failing under a running ``sgalert serve``: deleted, or held busy by another process.

Each test runs the real engine as its own process on a real workspace, watching a Maildir and
paging through the maildrop channel. What must hold: no notice leaves its mailbox unless its
case is in the store, and an engine that can no longer use its store stops with one clear line
and a non-zero exit (systemd restarts it; ``doctor`` and the desk show it stopped), never a
traceback, and never carrying on as if all were well.
"""

from __future__ import annotations

import contextlib
import re
import resource
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sgalert.config import render_template
from sgalert.workspace import STORE_NAME

from .cli_helpers import ROOT as REPO
from .cli_helpers import sgalert_cli
from .faults import PEOPLE, drop_tables, make_workspace

pytestmark = pytest.mark.slow

NOTICE = Path(__file__).parent / "messages" / "encompass_attached.eml"


def workspace(tmp_path: Path) -> tuple[Path, Path]:
    """A workspace whose mailbox (a Maildir) and pages (a maildrop) live beside it."""
    root, inbox = tmp_path / "ws", tmp_path / "inbox"
    text = drop_tables(
        render_template("Store Faults Test School"),
        {"[channels.email]", "[[sources]]", "[digest]"},
    )
    text += f"""
[channels.email]
kind = "maildrop"
path = "{tmp_path / "pages"}"

[[sources]]
name = "encompass"
type = "encompass"
kind = "maildir"
path = "{inbox}"

[[rota.shifts]]
who = "{PEOPLE[0]}"
from = "00:00"
to = "00:00"
when = "always"
"""
    for sub in ("new", "cur", "tmp"):
        (inbox / sub).mkdir(parents=True)
    make_workspace(root, text)
    return root, inbox


def start_serve(root: Path, file_size_limit: int | None = None) -> subprocess.Popen[str]:
    """``sgalert serve``; with ``file_size_limit``, it may write no byte past that offset in
    any file (``RLIMIT_FSIZE``: such a write fails with EFBIG, as on a full disk)."""

    def limit() -> None:
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.Popen(
        [sys.executable, "-m", "sgalert", "--workspace", str(root), "serve"],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit,  # a limit set before exec, nothing else
    )


def wait_until_serving(root: Path, serve: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert serve.poll() is None, serve.communicate()[1]
        with contextlib.closing(sqlite3.connect(root / STORE_NAME, timeout=5)) as db:
            if db.execute("SELECT count(*) FROM engine_lease").fetchone()[0]:
                return
        time.sleep(0.1)
    raise AssertionError("the engine never took its lease")


def stopped(serve: subprocess.Popen[str], within: float) -> tuple[int | None, str]:
    """The engine's exit code (None: still running, then stopped by the test) and stderr."""
    try:
        _, err = serve.communicate(timeout=within)
        return serve.returncode, err
    except subprocess.TimeoutExpired:
        serve.terminate()
        _, err = serve.communicate(timeout=30)
        return None, err


def assert_one_clear_line(code: int | None, err: str, says: str) -> None:
    assert code == 1, f"serve did not stop with exit 1 (got {code}):\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("sgalert: ") and says in last, err[-3000:]
    assert '"level": "error", "logger": "sgalert.serve", "event": "stopping: ' in err


def test_a_store_deleted_under_the_engine_stops_it_and_the_notice_stays_in_its_mailbox(
    tmp_path: Path,
) -> None:
    """An admin's ``rm`` of the store: SQLite goes on writing to the unlinked file, so the
    engine stored the next notice there, deleted it from the Maildir, and paged about a case
    that vanished when it stopped. Now it stops within seconds, the notice left in place."""
    root, inbox = workspace(tmp_path)
    serve = start_serve(root)
    try:
        wait_until_serving(root, serve)
        (root / STORE_NAME).unlink()
        (inbox / "new" / "notice-1").write_bytes(NOTICE.read_bytes())
        code, err = stopped(serve, within=20)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
    assert [p.name for p in (inbox / "new").iterdir()] == ["notice-1"], "the notice was lost"
    assert_one_clear_line(code, err, "the store file was deleted while in use")


def test_a_full_disk_under_the_store_stops_the_engine_in_one_line_and_the_notice_stays(
    tmp_path: Path,
) -> None:
    """No write may reach past 48 KiB into a file (``RLIMIT_FSIZE``): the store's write-ahead
    log is full at the first case, and SQLite fails the commit, as on a full disk. The engine
    used to end with a 40-line exception-group traceback and no log event; now one error
    event, one ``sgalert:`` line and exit 1, for systemd to restart it once there is room."""
    root, inbox = workspace(tmp_path)
    serve = start_serve(root, file_size_limit=48 * 1024)
    try:
        (inbox / "new" / "notice-1").write_bytes(NOTICE.read_bytes())
        code, err = stopped(serve, within=30)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
    assert [p.name for p in (inbox / "new").iterdir()] == ["notice-1"], "the notice was lost"
    assert_one_clear_line(code, err, "the store could not save the change")
    # The store failed, not the mailbox: nothing may send anyone to check the mailbox.
    assert "unreachable" not in err and "stopped unexpectedly" not in err, err[-3000:]


def test_status_and_doctor_answer_while_another_process_holds_the_store_busy(
    tmp_path: Path,
) -> None:
    """A write transaction held open by another process (a stuck ``sqlite3`` shell, a long
    job). Opening the store took the write lock once per migration, even those long applied,
    so ``status`` waited 15 s and said only 'the store is busy', and ``doctor`` said the same
    with 'restore the latest backup', which would throw away every case since. Reading needs
    no write lock in WAL mode: both now answer, and show the engine as it is."""
    root, _ = workspace(tmp_path)
    holder = sqlite3.connect(root / STORE_NAME, isolation_level=None, timeout=5)
    try:
        holder.execute("BEGIN IMMEDIATE")
        status = sgalert_cli(root, "status", timeout=60)
        doctor = sgalert_cli(root, "doctor", "--timeout", "5", timeout=90)
    finally:
        holder.close()
    assert status.returncode == 1  # no engine runs: unhealthy, said as such
    assert status.stdout.startswith("engine: NOT RUNNING"), status.stderr
    assert "busy" not in status.stderr + doctor.stdout
    assert "restore the latest backup" not in doctor.stdout, doctor.stdout
    assert re.search(r"^ok   store: .* passes SQLite's integrity check$", doctor.stdout, re.M)
    assert "FAIL engine: not running" in doctor.stdout
