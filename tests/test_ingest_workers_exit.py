"""Ingest worker processes end with the process that started them (issue 12, item 10).

``sgalert serve`` killed with SIGKILL runs no cleanup; its spawned prepare workers (about
100 MB each) must not go on waiting for work that will never come.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sgalert.config import load_config
from sgalert.desk.service import CaseService
from sgalert.intake.workers import PreparePool
from sgalert.workspace import Workspace

from .cli_helpers import ROOT as REPO
from .cli_helpers import sgalert_cli
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


def spawned_workers(pid: int) -> list[int]:
    """The processes ``pid`` spawned through multiprocessing (the prepare workers), from /proc."""
    found = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in children.read_text().split():
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in cmdline:
                found.append(int(child))
    return found


def start_serve(root: Path) -> subprocess.Popen[str]:
    """``sgalert serve`` on ``root`` in a process group of its own, as a terminal's foreground
    job is."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGALERT_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return subprocess.Popen(
        [sys.executable, "-m", "sgalert", "--workspace", str(root), "serve"],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.mark.skipif(sys.platform != "linux", reason="finds the workers through /proc")
async def test_ctrl_c_stops_serve_in_one_line_and_no_worker_shows_a_traceback(
    tmp_path: Path,
) -> None:
    """Ctrl+C at a terminal signals the whole foreground process group, the workers as well as
    ``sgalert serve``. The engine stops as asked; each worker used to die of it as well, with a
    ``KeyboardInterrupt`` traceback, while the parent was shutting them down anyway."""
    root = tmp_path / "ws"
    made = await asyncio.to_thread(sgalert_cli, root, "init")
    assert made.returncode == 0, made.stderr
    serve = start_serve(root)
    workers: list[int] = []
    try:
        if PreparePool(load_config(root / "sgalert.toml")).workers >= 2:

            async def started() -> bool:
                workers[:] = spawned_workers(serve.pid)
                return bool(workers)

            await wait_for(started, within=30, what="serve to start its ingest workers")
            await asyncio.sleep(2)  # and for them to wait for work, where Ctrl+C found them
        else:
            await asyncio.sleep(3)  # one core: no workers, the engine alone
        os.killpg(serve.pid, signal.SIGINT)
        out, err = await asyncio.to_thread(serve.communicate, timeout=30)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
    assert serve.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert json.loads(err.splitlines()[-1])["event"] == "stopping: signal received"
    assert out == ""

    async def all_gone() -> bool:
        return not any(running(pid) for pid in workers)

    await wait_for(all_gone, within=10, what="the workers to end with serve")
