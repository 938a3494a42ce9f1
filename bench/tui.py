"""Benchmark the desk on a store of 100,000 cases.

- ``first_paint_s``: from building the app to the first page of the queue on screen (opening the
  store, counting the tabs, fetching and drawing one page).
- ``keypress_p95_ms``: 95th percentile of key-press latency (the press handled and the screen
  idle again, workers included): moving down the list (crossing page boundaries, which fetch a
  page), switching tabs, sorting.
- ``unlocked_ready_s``: from the DSL's unlock to the desk settled as them (their counts, the
  page, the preview of the highlighted case, and search over every case they can read indexed
  in memory); ``unlocked_keypress_p95_ms``: the same keys pressed afterwards, unlocked, with the
  preview pane following the highlight.
- ``rss_mb``: peak resident set size of the process (the unlocked search index included).

Cases are invented metadata-heavy Encompass, whistleblowing and lesson notices; 5% new, 10%
acknowledged, 85% closed (closed directly in SQL: the benchmark measures the desk, not closing).
The last line is one JSON object.

Run from the repository root: ``.venv/bin/python bench/tui.py [--cases N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

# This file is bench/tui.py: keep its folder off sys.path so "tui" means the package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from textual.worker import WorkerState  # noqa: E402

from sgalert.config import load_config, render_template  # noqa: E402
from sgalert.desk.service import CaseService  # noqa: E402
from sgalert.desk.views import SortKey  # noqa: E402
from sgalert.model import Role, Source  # noqa: E402
from sgalert.records.cases import FIELD_ATTACHMENTS, FIELD_BODY, FIELD_FACTS, NewCase  # noqa: E402
from sgalert.records.crypto import TEST_KDF  # noqa: E402
from sgalert.records.keyring import add_first_person, add_person, unlock  # noqa: E402
from sgalert.records.store import Store  # noqa: E402
from sgalert.workspace import CONFIG_NAME, STORE_NAME, Workspace  # noqa: E402
from tui.app import make_app  # noqa: E402
from tui.case_list import CaseList as QueueTable  # noqa: E402

NOW = datetime(2026, 11, 22, 22, 0, tzinfo=UTC)


def invented(number: int, rng: random.Random) -> NewCase:
    source = rng.choices([Source.ENCOMPASS, Source.WHISTLE, Source.LESSON], [80, 5, 15])[0]
    facts = {"child_name": f"Child {number} Invented", "child_dob": "2017-03-14"}
    return NewCase(
        source=source,
        received_at=NOW - timedelta(minutes=number),
        origin="mailbox",
        content={
            FIELD_FACTS: json.dumps(facts).encode(),
            FIELD_BODY: b"An invented notice.",
            FIELD_ATTACHMENTS: b"[]",
        },
    )


PASSPHRASE = "bench-lantern-orbit-shelf"


async def build(root: Path, cases: int) -> Workspace:
    root.mkdir(parents=True, exist_ok=True)
    (root / CONFIG_NAME).write_text(render_template("Bench School"), encoding="utf-8")
    workspace = Workspace(root / CONFIG_NAME, root / STORE_NAME)
    store = await Store.open(workspace.store_path, create=True)
    service = CaseService(store, load_config(workspace.config_path), lambda: NOW)
    try:
        passphrase = PASSPHRASE
        await add_first_person(
            store, name="Bench Example", email="dsl@example.org", role=Role.DSL,
            passphrase=passphrase, kdf=TEST_KDF,
        )  # fmt: skip
        await add_person(
            store, by=await unlock(store, "dsl@example.org", passphrase), name="Bench Example",
            email="mo@example.org", role=Role.MONITORING_OFFICER, passphrase=passphrase,
            kdf=TEST_KDF,
        )  # fmt: skip
        rng = random.Random(7)
        await service.create_cases_in_batches(
            [invented(n, rng) for n in range(cases)], batch_size=2000
        )
    finally:
        await service.close()
    with sqlite3.connect(workspace.store_path) as conn:
        conn.execute(
            "UPDATE cases SET state = 'closed', closed_at = received_at"
            " WHERE abs(random()) % 100 < 85"
        )
        conn.execute(
            "UPDATE cases SET state = 'acknowledged', acknowledged_at = received_at"
            " WHERE state = 'new' AND abs(random()) % 3 < 2"
        )
        # As acknowledging and closing do: the intake clock is met, the others run on.
        conn.execute(
            "UPDATE clocks SET met_at = due_at WHERE kind = 'encompass-before-school-day'"
            " AND case_id IN (SELECT id FROM cases WHERE state != 'new')"
        )
        conn.execute(
            "UPDATE clocks SET met_at = due_at"
            " WHERE case_id IN (SELECT id FROM cases WHERE state = 'closed')"
        )
    return workspace


async def run(workspace: Workspace, moves: int) -> dict[str, float]:
    """Key-to-paint latency: from sending the key to the first frame written to the terminal
    that shows the state the key led to (workers included). ``App._display`` is where Textual
    writes a frame; the benchmark records the queue's state with each one."""
    busy = (WorkerState.PENDING, WorkerState.RUNNING)
    frames: list[tuple[float, object]] = []
    started = time.perf_counter()
    app = make_app(workspace, clock=lambda: NOW)

    def state() -> object:
        queue = app._queue
        if queue is None or not queue.is_mounted:
            return None
        table = queue.query_one(QueueTable)
        return (queue.page.query if queue.page else None, table.cursor_row, table.row_count)

    original = app._display

    def display(screen: object, renderable: object) -> None:
        original(screen, renderable)  # type: ignore[arg-type]
        if renderable is not None:
            frames.append((time.perf_counter(), state()))

    app._display = display  # type: ignore[method-assign]
    async with app.run_test(size=(80, 24)) as pilot:
        while not (
            app._queue is not None
            and app._queue.is_mounted
            and app._queue.query_one(QueueTable).row_count
        ):
            await asyncio.sleep(0.001)
        painted = len(frames)
        while len(frames) == painted:
            await asyncio.sleep(0.001)
        first_paint = frames[-1][0] - started

        async def press(key: str) -> float:
            frames.clear()
            begin = time.perf_counter()
            await pilot.press(key)
            while any(w.group != "watch" and w.state in busy for w in app.workers):
                await asyncio.sleep(0.0005)
            final = state()
            deadline = time.perf_counter() + 2
            while not any(s == final for _, s in frames) and time.perf_counter() < deadline:
                await asyncio.sleep(0.0005)
            shown = next(t for t, s in frames if s == final)
            return (shown - begin) * 1000

        await press("escape")  # no unlock: the queue is metadata
        latencies = [await press("down") for _ in range(moves)]
        tabs = [await press(key) for key in "23451" * 2]
        sorts = [await press("s") for _ in range(4)]
        print(
            "tabs",
            [round(t) for t in tabs],
            "sorts",
            [round(t) for t in sorts],
            "slow moves",
            sorted(round(t) for t in latencies)[-8:],
            file=sys.stderr,
        )
        everything = latencies + tabs + sorts

        # Unlocked, as the DSL at 22:00 is: their scope, the preview pane, search prepared; in
        # the desk's own order again (the sorts above left the list by another column).
        queue = app.queue_screen
        queue.query_state = replace(queue.query_state, sort=SortKey.PRIORITY)
        identity = await app.service.unlock("dsl@example.org", PASSPHRASE)
        begin = time.perf_counter()
        app._unlocked(identity)
        while app.search_index is None or any(
            w.group != "watch" and w.state in busy for w in app.workers
        ):
            await asyncio.sleep(0.001)
        unlocked_ready = time.perf_counter() - begin
        # The same keys as above, so the two p95s compare: moves, tabs twice round, four sorts
        # (each a re-sort of every case the DSL can read).
        unlocked = [await press("down") for _ in range(moves)]
        unlocked_tabs = [await press(key) for key in "23451" * 2]
        unlocked_sorts = [await press("s") for _ in range(4)]
        print(
            "unlocked: tabs",
            [round(t) for t in unlocked_tabs],
            "sorts",
            [round(t) for t in unlocked_sorts],
            "slow moves",
            sorted(round(t) for t in unlocked)[-8:],
            file=sys.stderr,
        )
        unlocked += unlocked_tabs + unlocked_sorts
        return {
            "first_paint_s": round(first_paint, 3),
            "keypress_p95_ms": round(statistics.quantiles(everything, n=20)[18], 1),
            "move_p50_ms": round(statistics.median(latencies), 1),
            "move_p95_ms": round(statistics.quantiles(latencies, n=20)[18], 1),
            "page_turn_max_ms": round(max(latencies), 1),
            "tab_switch_max_ms": round(max(tabs), 1),
            "sort_max_ms": round(max(sorts), 1),
            "unlocked_ready_s": round(unlocked_ready, 3),
            "unlocked_keypress_p95_ms": round(statistics.quantiles(unlocked, n=20)[18], 1),
            "unlocked_tab_switch_max_ms": round(max(unlocked_tabs), 1),
            "unlocked_sort_max_ms": round(max(unlocked_sorts), 1),
        }


def peak_rss_mb() -> float:
    """This process's peak RSS. Linux keeps ru_maxrss across exec (the parent's 100,000 built
    cases would count), so VmHWM, which starts afresh with the new program, is read first."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def measure(root: Path, moves: int) -> None:
    """The desk's half, in its own process so its peak RSS is the desk's alone."""
    figures = await run(Workspace(root / CONFIG_NAME, root / STORE_NAME), moves)
    print(json.dumps({**figures, "rss_mb": round(peak_rss_mb(), 1)}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--moves", type=int, default=250)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        asyncio.run(measure(args.measure, args.moves))
        return
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        workspace = asyncio.run(build(Path(tmp) / "ws", args.cases))
        print(f"built {args.cases:,} cases in {time.perf_counter() - began:.1f}s", file=sys.stderr)
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--measure",
                str(workspace.root),
                "--moves",
                str(args.moves),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"the desk's measurement failed (exit {done.returncode})")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps({**figures, "cases": args.cases}))


if __name__ == "__main__":
    main()
