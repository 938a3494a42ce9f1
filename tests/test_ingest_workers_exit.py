"""Ingest worker processes end with the process that started them (issue 12, item 10).

``sgalert serve`` killed with SIGKILL runs no cleanup; its spawned prepare workers (about
100 MB each) must not go on waiting for work that will never come.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sgalert.desk.service import CaseService
from sgalert.workspace import Workspace

from .imap_helpers import wait_for

pytestmark = pytest.mark.slow


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for init to reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # the id was reused by someone else's process
        return False
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X")
    return True


def start_child(workspace: Workspace, mode: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.ingest_workers_child", str(workspace.root), mode],
        cwd=Path(__file__).parent.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize(("mode", "count"), [("pool", 2), ("watch", 1)])
async def test_workers_exit_when_their_parent_is_killed(
    service: CaseService, workspace: Workspace, mode: str, count: int
) -> None:
    """``pool``: the prepare workers as ``serve`` starts them; ``watch``: the portable watch
    alone (a parent pipe and the parent id), as on a system without ``PR_SET_PDEATHSIG``."""
    child = start_child(workspace, mode)
    workers: list[int] = []
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), timeout=60)
        workers = [int(pid) for pid in line.split()]
        assert len(workers) == count, child.stderr.read() if child.stderr else b""
        assert all(running(pid) for pid in workers)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)

        async def all_gone() -> bool:
            return not any(running(pid) for pid in workers)

        await wait_for(all_gone, within=5, what="the workers to exit with their parent")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for pid in workers:  # the test's own leftovers, should the assertion have failed
            if running(pid):
                os.kill(pid, signal.SIGKILL)
        if child.stdout:
            child.stdout.close()
        if child.stderr:
            child.stderr.close()
