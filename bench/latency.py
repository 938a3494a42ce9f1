"""Benchmark how fast sgalert pages someone: from a notice landing in a mailbox to the page.

Everything runs for real on loopback: a private Dovecot (``tests/dovecot.py``: needs root and
Debian's ``dovecot-imapd``) holds the watched mailbox, an aiosmtpd server receives the email
pages (plain SMTP, ``security = "none"``, allowed on loopback only) and an HTTP sink plays the
Teams Workflows webhook. The engine is the real one, :class:`~sgalert.engine.serve.Engine`, built
from a real ``sgalert.toml`` with the default Operation Encompass policy (the person on duty at
once, by email and Teams), logging JSON lines at INFO to a file as ``sgalert serve`` does.

What it measures:

- ``p50_ms`` / ``p95_ms`` / ``p99_ms``: invented Operation Encompass notices are APPENDed one at a
  time (each with its own Message-ID), each once the previous one's pages have arrived. Timed from
  the APPEND's tagged OK to the first page of the new case received: the aiosmtpd handler's DATA,
  or the webhook's POST, whichever comes first (both stamp ``time.monotonic()`` in their thread).
- ``floor_p99_ms``: in the same run, a bare IMAPClient IDLEs on the same mailbox and stamps the
  ``EXISTS`` of each of those appends. Dovecot holds back IDLE notifications for about 500 ms,
  so no IDLE watcher can page faster than this; ``overhead_p99_ms = p99_ms - floor_p99_ms`` is
  what sgalert adds (target: at most 50 ms). Each notice is appended 0.6 s after the previous
  case's pages, as notices minutes apart are in life: Dovecot starts its 500 ms delay at the first
  change a session has not yet been told about, and sgalert marking the previous notice ``\\Seen``
  is such a change for the bare client (not for sgalert's own session), so an append sooner after
  it would reach the bare client early and make the floor look up to 500 ms lower than it is.
- ``timer_lateness_p99_ms``: 1,000 cases are stored with the engine stopped, their first
  escalation steps are moved to fall due one after another over a short window, and the engine
  (no watchers; outbox sending as usual) fires them. Lateness is measured to the commit of the
  transaction that fired the step (when its pages are durably queued), which is stricter than the
  ``late_ms`` the engine audits (``fired_at - due_at``, stamped when the tick starts); both are
  printed (target: at most 250 ms).
- ``restart_overdue_s``: an engine process (``tests/engine_child.py``) holding those 1,000 cases,
  each with its next step pending, is killed with SIGKILL; the steps fall due while no engine
  runs; a new process is started, and this is the time from starting it until every step that
  was overdue at that moment has fired (polled every 10 ms; target: at most 2 s).

Diagnostic lines split the page latency into stages (IDLE wake-up, case stored, timer tick,
pages received) from the rows the engine wrote. The last line printed is one JSON object, so CI
or a script can compare runs. All servers, processes and temporary directories are removed at the
end, also on failure.

Run from the repository root, as root: ``.venv/bin/python bench/latency.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import logging
import os
import platform
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # for tests.* and integrations when run as a script

from aiosmtpd.smtp import SMTP as SMTPServer  # noqa: E402
from aiosmtpd.smtp import Envelope, Session  # noqa: E402
from imapclient import IMAPClient  # noqa: E402
from invented import PASSPHRASE, PEOPLE  # noqa: E402

from sgalert.clock import iso, parse_iso, utcnow  # noqa: E402
from sgalert.config import Config, load_config, render_template  # noqa: E402
from sgalert.desk.service import CaseService  # noqa: E402
from sgalert.engine.serve import Engine  # noqa: E402
from sgalert.logs import JsonLines  # noqa: E402
from sgalert.model import Source  # noqa: E402
from sgalert.records.cases import (  # noqa: E402
    FIELD_ATTACHMENTS,
    FIELD_BODY,
    FIELD_FACTS,
    FIELD_RAW,
    NewCase,
)
from sgalert.records.crypto import TEST_KDF  # noqa: E402
from sgalert.records.keyring import add_first_person, add_person, unlock  # noqa: E402
from sgalert.records.store import Store  # noqa: E402
from sgalert.workspace import CONFIG_NAME, STORE_NAME  # noqa: E402
from tests.dovecot import Dovecot, DovecotError  # noqa: E402
from tests.faults import drop_tables  # noqa: E402
from tests.http_sink import HttpSink, Reply, Request  # noqa: E402
from tests.imap_helpers import notice  # noqa: E402
from tests.test_notifiers import LoopbackController, Mailroom  # noqa: E402

PAGES = 200
WARMUP = 3  # appends not measured: first connections, first imports, caches
TIMERS = 1_000
WINDOW_S = 20.0  # the first steps of the TIMERS cases fall due evenly over this window
LEAD_S = 2.0  # from starting the timer engine to the first step falling due
GAP_S = 0.6  # after each case's pages: see the module docstring
PAGE_TIMEOUT_S = 15.0
DRAIN_TIMEOUT_S = 180.0
POLL_S = 0.01
DOWNTIME_S = 1.0  # the overdue steps fall due over the second before the restart

IMAP_PASSWORD_ENV = "SGALERT_BENCH_IMAP_PASSWORD"
TEAMS_URL_ENV = "SGALERT_BENCH_TEAMS_URL"
WEBHOOK_PATH = "/workflows/bench/triggers/manual/paths/invoke"
REF = re.compile(r"\bSG-\d{4}-\d{4,}\b")
ACCEPTED = Reply(202, {"x-ms-workflow-run-id": "08584000000000"})


def report(label: str, value: str) -> None:
    print(f"  {label:<44} {value}", flush=True)


def percentile(values: Sequence[float], q: int) -> float:
    """The q-th percentile (inclusive method: p99 of 200 samples sits by the second largest)."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def spread(values: Sequence[float]) -> str:
    return (
        f"p50 {percentile(values, 50):7.1f}  p95 {percentile(values, 95):7.1f}"
        f"  p99 {percentile(values, 99):7.1f}  max {max(values):7.1f} ms"
    )


# ----- where the pages and the IDLE wake-ups arrive -------------------------------------------


class Recorder:
    """When each page and each IDLE ``EXISTS`` first arrived (monotonic seconds), from any thread.

    Server threads stamp the time themselves; the event loop is only poked to re-check what it
    waits for, so waiting costs the engine nothing (no polling).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._changed = asyncio.Event()
        self._pages: dict[str, dict[str, float]] = {}  # case ref -> channel -> first arrival
        self._exists: dict[int, float] = {}  # message count announced in IDLE -> first arrival

    def page(self, channel: str, text: str, at: float) -> None:
        match = REF.search(text)
        if match is None:
            return
        with self._lock:
            self._pages.setdefault(match.group(), {}).setdefault(channel, at)
        self.poke()

    def wake(self, count: int, at: float) -> None:
        with self._lock:
            self._exists.setdefault(count, at)
        self.poke()

    def poke(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
            self._loop.call_soon_threadsafe(self._changed.set)

    def refs(self) -> set[str]:
        with self._lock:
            return set(self._pages)

    def arrivals(self, ref: str) -> dict[str, float]:
        with self._lock:
            return dict(self._pages.get(ref, {}))

    def exists(self, count: int) -> float | None:
        with self._lock:
            return self._exists.get(count)

    def clear(self) -> None:
        with self._lock:
            self._pages.clear()
            self._exists.clear()

    async def until(
        self, done: Callable[[], bool], what: str, engine: asyncio.Task[None] | None = None
    ) -> None:
        try:
            async with asyncio.timeout(PAGE_TIMEOUT_S):
                while True:
                    self._changed.clear()
                    if done():
                        return
                    if engine is not None and engine.done():
                        raise SystemExit(f"the engine stopped while waiting for {what}")
                    await self._changed.wait()
        except TimeoutError:
            raise SystemExit(f"no {what} within {PAGE_TIMEOUT_S:.0f} s") from None


@dataclass
class TimedMailroom(Mailroom):
    """The tests' aiosmtpd handler, also noting when each page's DATA has arrived."""

    recorder: Recorder | None = None

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        at = time.monotonic()
        reply = await super().handle_DATA(server, session, envelope)
        self.received.clear()  # the content is not needed here: keep memory flat
        if self.recorder is not None:
            content = envelope.original_content or b""
            self.recorder.page("email", content.decode("ascii", "replace"), at)
        return reply


def card_catcher(recorder: Recorder) -> Callable[[Request], Reply]:
    """The webhook's answer, noting when each Adaptive Card arrived (body read in full)."""

    def answer(request: Request) -> Reply:
        recorder.page("teams", request.body.decode("utf-8", "replace"), time.monotonic())
        return ACCEPTED

    return answer


class IdleFloor(threading.Thread):
    """A bare IMAPClient in IDLE on the watched mailbox: when does Dovecot tell an IDLE client?"""

    def __init__(self, server: Dovecot, recorder: Recorder) -> None:
        super().__init__(name="idle-floor", daemon=True)
        self.server = server
        self.recorder = recorder
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.count = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            client = self.server.connect()
        except BaseException as exc:
            self.error = exc
            self.ready.set()
            return
        try:
            selected = client.select_folder("INBOX", readonly=True)
            self.count = int(selected[b"EXISTS"])
            client.idle()
            self.ready.set()
            while not self.stopping.is_set():
                responses = client.idle_check(timeout=0.25)
                at = time.monotonic()
                for response in responses:
                    if isinstance(response, tuple) and response[1:2] == (b"EXISTS",):
                        self.recorder.wake(int(response[0]), at)
            client.idle_done()
        except BaseException as exc:
            self.error = exc
        finally:
            self.ready.set()
            with contextlib.suppress(Exception):
                client.logout()


# ----- workspaces -------------------------------------------------------------------------------


def bench_config(dovecot: Dovecot, smtp_port: int) -> str:
    """The ``sgalert init`` template with the IMAP source, SMTP and Teams channels, and a rota."""
    text = drop_tables(render_template("Latency Bench School"), {"[channels.email]", "[[sources]]"})
    return f"""{text}
[channels.email]
kind = "smtp"
host = "127.0.0.1"
port = {smtp_port}
security = "none"
from = "sgalert@school.example.org"
reply_to = "sgalert-ack@school.example.org"
timeout = 10

[channels.teams]
kind = "teams-workflow"
url_env = "{TEAMS_URL_ENV}"
timeout = 10

[[sources]]
name = "encompass-imap"
type = "encompass"
kind = "imap"
host = "{dovecot.host}"
port = {dovecot.port}
security = "none"
username = "{dovecot.user}"
password_env = "{IMAP_PASSWORD_ENV}"

# The DSL is on duty around the clock: no rota gap (whose alert would page the team too).
[[rota.shifts]]
who = "{PEOPLE[0][1]}"
from = "00:00"
to = "00:00"
when = "always"
"""


def check_config(config: Config) -> None:
    channels = {c.name: c.kind for c in config.channels}
    sources = [(s.name, s.kind) for s in config.sources]
    shifts = [(s.who, s.start, s.end) for s in config.shifts]
    if (
        channels != {"email": "smtp", "teams": "teams-workflow"}
        or sources != [("encompass-imap", "imap")]
        or len(shifts) != 1
    ):
        raise SystemExit(f"unexpected bench config: {channels}, {sources}, {shifts}")


async def make_workspace(root: Path, config_text: str) -> CaseService:
    """A workspace with the bench config and the DSL, the deputy and the head (test KDF)."""
    root.mkdir()
    (root / CONFIG_NAME).write_text(config_text, encoding="utf-8")
    config = load_config(root / CONFIG_NAME)
    check_config(config)
    store = await Store.open(root / STORE_NAME, create=True)
    (name, email, role), *others = PEOPLE  # the first bootstraps the store, adds the others
    await add_first_person(
        store, name=name, email=email, role=role, passphrase=PASSPHRASE, kdf=TEST_KDF
    )
    adder = await unlock(store, email, PASSPHRASE)
    for name, email, role in others:
        await add_person(
            store, by=adder, name=name, email=email, role=role, passphrase=PASSPHRASE,
            kdf=TEST_KDF,
        )  # fmt: skip
    return CaseService(store, config)


def configure_logs(path: Path) -> None:
    """As ``sgalert serve`` does (JSON lines at INFO), but to a file."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonLines())
    logger = logging.getLogger("sgalert")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False


class Reader:
    """A second connection to a store, for watching it without taking the engine's lock."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()

    def _rows(self, sql: str, params: Sequence[object]) -> list[tuple[object, ...]]:
        with self._lock:
            return list(self._db.execute(sql, tuple(params)).fetchall())

    async def rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        return await asyncio.to_thread(self._rows, sql, params)

    async def number(self, sql: str, params: Sequence[object] = ()) -> int:
        (row,) = await self.rows(sql, params)
        return int(str(row[0] or 0))

    def close(self) -> None:
        self._db.close()


async def stop_task(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# ----- 1. and 2.: append to page, and the IDLE floor ---------------------------------------------


@dataclass
class Sample:
    ref: str
    appended: float  # monotonic, at the APPEND's tagged OK
    appended_wall: float  # time.time() at the same moment
    page: float  # first page received, ms after the append
    floor: float  # the bare IDLE client's EXISTS, ms after the append


def append_now(client: IMAPClient, raw: bytes) -> tuple[float, float]:
    client.append("INBOX", raw)
    return time.monotonic(), time.time()


async def measure_pages(
    service: CaseService,
    root: Path,
    dovecot: Dovecot,
    recorder: Recorder,
    pages: int,
) -> list[Sample]:
    floor = IdleFloor(dovecot, recorder)
    floor.start()
    appender: IMAPClient | None = None
    engine: asyncio.Task[None] | None = None
    samples: list[Sample] = []
    try:
        await asyncio.to_thread(floor.ready.wait)
        if floor.error is not None:
            raise SystemExit(f"the bare IDLE client failed: {floor.error!r}")
        appender = await asyncio.to_thread(dovecot.connect)
        engine = asyncio.create_task(Engine(service, root).run(), name="engine")
        engine.add_done_callback(lambda _: recorder.poke())
        for number in range(WARMUP + pages):
            known = recorder.refs()
            count = floor.count + number + 1
            appended, appended_wall = await asyncio.to_thread(
                append_now, appender, notice(number + 1)
            )
            fresh: list[str] = []

            def arrived(
                known: set[str] = known, fresh: list[str] = fresh, count: int = count
            ) -> bool:
                if floor.error is not None:
                    raise SystemExit(f"the bare IDLE client failed: {floor.error!r}")
                if not fresh:
                    fresh.extend(sorted(recorder.refs() - known))
                return (
                    bool(fresh)
                    and len(recorder.arrivals(fresh[0])) == 2
                    and recorder.exists(count) is not None
                )

            await recorder.until(arrived, f"pages for notice {number + 1}", engine)
            if len(fresh) != 1:
                raise SystemExit(f"one append made pages for {len(fresh)} new cases: {fresh}")
            woke = recorder.exists(count)
            assert woke is not None
            if number >= WARMUP:
                first = min(recorder.arrivals(fresh[0]).values())
                samples.append(
                    Sample(
                        fresh[0],
                        appended,
                        appended_wall,
                        (first - appended) * 1000,
                        (woke - appended) * 1000,
                    )
                )
            await asyncio.sleep(GAP_S)
    finally:
        if engine is not None:
            await stop_task(engine)
        floor.stopping.set()
        await asyncio.to_thread(floor.join, 5)
        if appender is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(appender.logout)
    return samples


async def page_stages(service: CaseService, recorder: Recorder, samples: Sequence[Sample]) -> None:
    """Where the time goes, from the rows the engine wrote (wall clock, same machine)."""
    rows = await service.store.fetchall(
        "SELECT c.ref, t.created_at, t.fired_at FROM timers t JOIN cases c ON c.id = t.case_id"
        " WHERE t.kind = 'step' AND t.step = 0"
    )
    stored = {str(r[0]): parse_iso(r[1]).timestamp() for r in rows}
    fired = {str(r[0]): parse_iso(r[2]).timestamp() for r in rows if r[2]}
    stages: dict[str, list[float]] = {
        "IDLE wake-up (bare client)": [],
        "wake-up -> stored (fetch, parse, seal)": [],
        "stored -> timer tick (commit, wake-up)": [],
        "tick -> first page (rota, 2 commits, send)": [],
        "first page -> second page received": [],
    }
    for s in samples:
        if s.ref not in fired:
            continue
        arrivals = sorted(recorder.arrivals(s.ref).values())
        stored_ms = (stored[s.ref] - s.appended_wall) * 1000
        fired_ms = (fired[s.ref] - s.appended_wall) * 1000
        values = [
            s.floor,
            stored_ms - s.floor,
            fired_ms - stored_ms,
            s.page - fired_ms,
            (arrivals[-1] - arrivals[0]) * 1000,
        ]
        for name, value in zip(stages, values, strict=True):
            stages[name].append(value)
    for name, values in stages.items():
        report(f"  {name}", spread(values))


# ----- 4.: timer lateness with 1,000 open timers --------------------------------------------------


class TimedEngine(Engine):
    """The real engine, also noting when each timer tick's transaction has committed."""

    def __init__(self, service: CaseService, root: Path) -> None:
        super().__init__(service, root, watch=False)
        self.committed: list[datetime] = []

    async def tick_timers(self) -> int:
        queued = await super().tick_timers()
        self.committed.append(utcnow())
        return queued


def invented_case(number: int) -> NewCase:
    facts = {"child_name": "Ada Invented", "occurrence": f"44/{300000 + number}/26"}
    return NewCase(
        source=Source.ENCOMPASS,
        received_at=utcnow(),
        origin="mailbox",
        content={
            FIELD_RAW: notice(300000 + number),
            FIELD_FACTS: json.dumps(facts).encode(),
            FIELD_BODY: b"Child present at an incident (invented).",
            FIELD_ATTACHMENTS: b"[]",
        },
    )


async def wait_rows(
    reader: Reader, sql: str, params: Sequence[object], limit: float, every: float = POLL_S
) -> float:
    """Poll until ``sql`` counts nothing; returns the seconds it took."""
    start = time.monotonic()
    while await reader.number(sql, params):
        if time.monotonic() - start > limit:
            raise SystemExit(f"still waiting after {limit:.0f} s for: {sql}")
        await asyncio.sleep(every)
    return time.monotonic() - start


FIRST_STEPS = "FROM timers WHERE kind = 'step' AND step = 0"


async def measure_timers(
    service: CaseService, root: Path, reader: Reader, count: int, window: float
) -> tuple[list[float], list[float]]:
    """Fire ``count`` first steps due over ``window`` s: lateness at commit, and as audited."""
    start = time.perf_counter()
    await service.create_cases_in_batches([invented_case(n) for n in range(count)], 100)
    report(f"cases stored ({count:,}, engine stopped)", f"{time.perf_counter() - start:.1f} s")
    first = utcnow() + timedelta(seconds=LEAD_S)
    async with service.store.write() as db:
        ids = [int(r[0]) for r in await db.execute_fetchall(f"SELECT id {FIRST_STEPS} ORDER BY id")]
        await db.executemany(
            "UPDATE timers SET due_at = ? WHERE id = ?",
            [(iso(first + timedelta(seconds=window * i / count)), t) for i, t in enumerate(ids)],
        )
    open_timers = await reader.number(
        "SELECT count(*) FROM timers WHERE fired_at IS NULL AND cancelled_at IS NULL"
    )
    report(
        "open timers",
        f"{open_timers:,} ({count:,} first steps due over {window:.0f} s, the rest later)",
    )
    engine = TimedEngine(service, root)
    task = asyncio.create_task(engine.run(), name="timer-engine")
    try:
        # Polled seldom: this process also runs the engine, and nothing here is timed by polling.
        await wait_rows(reader, f"SELECT count(*) {FIRST_STEPS} AND fired_at IS NULL", (), 600, 0.1)
        pages = await reader.number("SELECT count(*) FROM outbox")
        drained = await wait_rows(
            reader,
            "SELECT count(*) FROM outbox WHERE state IN ('pending', 'sending')",
            (),
            DRAIN_TIMEOUT_S,
            0.1,
        )
        report("outbox drained after the last step", f"{drained:.1f} s ({pages:,} pages in all)")
    finally:
        await stop_task(task)
    rows = await reader.rows(f"SELECT due_at, fired_at {FIRST_STEPS}")
    committed = sorted(engine.committed)
    at_commit: list[float] = []
    audited: list[float] = []
    for due_text, fired_text in rows:
        due, fired = parse_iso(str(due_text)), parse_iso(str(fired_text))
        commit = committed[bisect.bisect_left(committed, fired)]
        at_commit.append((commit - due).total_seconds() * 1000)
        audited.append((fired - due).total_seconds() * 1000)
    return at_commit, audited


# ----- 5.: kill -9, restart, overdue steps ------------------------------------------------------


def start_engine(root: Path, log: Path) -> subprocess.Popen[bytes]:
    """``tests/engine_child.py`` on the wall clock (speed 1): ``sgalert serve`` without watchers."""
    with log.open("ab") as err:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.engine_child",
                str(root),
                iso(utcnow()),
                str(time.time()),
                "1",
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def kill_all(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        stop_process(process, signal.SIGKILL)


async def wait_for_lease(reader: Reader, process: subprocess.Popen[bytes]) -> float:
    holder = f"{socket.gethostname()}:{process.pid}"
    start = time.monotonic()
    while not await reader.number("SELECT count(*) FROM engine_lease WHERE holder = ?", (holder,)):
        if process.poll() is not None:
            raise SystemExit(f"the engine process exited with {process.returncode}")
        if time.monotonic() - start > 30:
            raise SystemExit("the engine process took no lease within 30 s")
        await asyncio.sleep(POLL_S)
    return time.monotonic() - start


PENDING_STEPS = (
    "FROM timers WHERE kind IN ('step', 'repeat') AND fired_at IS NULL AND cancelled_at IS NULL"
)


async def measure_restart(
    service: CaseService, root: Path, reader: Reader, processes: list[subprocess.Popen[bytes]]
) -> tuple[float, int, float]:
    """Seconds from starting a new engine after a kill -9 until every overdue step has fired."""
    log = root / "engine.log"
    first = start_engine(root, log)
    processes.append(first)
    await wait_for_lease(reader, first)
    await asyncio.sleep(0.5)
    first.send_signal(signal.SIGKILL)
    await asyncio.to_thread(first.wait, 10)
    pending = await reader.number("SELECT count(*) " + PENDING_STEPS)
    due = await reader.number(f"SELECT count(*) {PENDING_STEPS} AND due_at <= ?", (iso(utcnow()),))
    if not pending or due:
        raise SystemExit(f"at the kill {pending} steps were pending, {due} of them already due")
    report("engine killed -9 with steps pending", f"{pending:,} steps, none due yet")

    # While no engine runs, the pending steps fall due: over the second before the restart.
    restart_at = utcnow() + timedelta(seconds=DOWNTIME_S)
    async with service.store.write() as db:
        ids = [int(r[0]) for r in await db.execute_fetchall("SELECT id " + PENDING_STEPS)]
        await db.executemany(
            "UPDATE timers SET due_at = ? WHERE id = ?",
            [
                (iso(restart_at - timedelta(seconds=DOWNTIME_S * (1 - i / len(ids)))), t)
                for i, t in enumerate(ids)
            ],
        )
    await asyncio.sleep(max(0.0, (restart_at - utcnow()).total_seconds()))

    cutoff = iso(utcnow())
    overdue = await reader.number(f"SELECT count(*) {PENDING_STEPS} AND due_at <= ?", (cutoff,))
    started = time.monotonic()
    second = start_engine(root, log)
    processes.append(second)
    leased = asyncio.create_task(wait_for_lease(reader, second))
    try:
        await wait_rows(reader, f"SELECT count(*) {PENDING_STEPS} AND due_at <= ?", (cutoff,), 60)
        elapsed = time.monotonic() - started
        lease_s = await leased
    finally:
        leased.cancel()
    await asyncio.to_thread(stop_process, second)
    twice = await reader.number(
        "SELECT count(*) FROM (SELECT case_id, kind, step FROM timers WHERE fired_at IS NOT NULL"
        " GROUP BY case_id, kind, step HAVING count(*) > 1)"
    )
    if twice:
        raise SystemExit(f"{twice} escalation steps fired more than once")
    return elapsed, overdue, lease_s


# ----- all together -----------------------------------------------------------------------------


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--pages", type=int, default=PAGES, help="notices appended and timed")
    parser.add_argument("--timers", type=int, default=TIMERS, help="cases with a first step due")
    parser.add_argument(
        "--window", type=float, default=WINDOW_S, help="seconds over which those steps fall due"
    )
    args = parser.parse_args()
    if args.pages < 2 or args.timers < 2 or args.window <= 0:
        parser.error("--pages and --timers must be at least 2, --window positive")

    print("sgalert paging latency benchmark", flush=True)
    report("python", f"{platform.python_version()} ({sys.executable})")
    report("platform", f"{platform.platform()}, {os.cpu_count()} CPUs")
    report("load average at start (1, 5, 15 min)", " ".join(f"{x:.2f}" for x in os.getloadavg()))

    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None
    for signum in (signal.SIGTERM, signal.SIGINT):  # stop cleanly: Dovecot runs as root
        loop.add_signal_handler(signum, main_task.cancel)
    recorder = Recorder(loop)
    processes: list[subprocess.Popen[bytes]] = []
    async with contextlib.AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sgalert-latency-")))
        try:
            dovecot = Dovecot()
        except DovecotError as exc:
            raise SystemExit(f"cannot run Dovecot here: {exc}") from None
        stack.callback(dovecot.close)
        dovecot.start()
        report("dovecot", f"{'.'.join(map(str, dovecot.version))} on port {dovecot.port}")
        os.environ[IMAP_PASSWORD_ENV] = dovecot.password

        room = TimedMailroom(recorder=recorder)
        controller = LoopbackController(room, hostname="127.0.0.1", port=0)
        controller.start()
        stack.callback(controller.stop)
        sink = HttpSink(default=ACCEPTED)
        sink.route("POST", WEBHOOK_PATH, card_catcher(recorder))
        sink.start()
        stack.callback(sink.stop)
        os.environ[TEAMS_URL_ENV] = sink.url(WEBHOOK_PATH + "?api-version=1&sig=invented-sig")
        report("aiosmtpd / webhook sink", f"port {controller.port} / port {sink.port}")
        config_text = bench_config(dovecot, controller.port)

        stack.callback(kill_all, processes)

        # 1-3. Append -> page, with the IDLE floor on the same appends.
        pages_root = tmp / "pages"
        service = await make_workspace(pages_root, config_text)
        stack.push_async_callback(service.close)
        configure_logs(pages_root / "serve.log")
        print(f"append -> first page ({args.pages} notices, one at a time)", flush=True)
        start = time.monotonic()
        samples = await measure_pages(service, pages_root, dovecot, recorder, args.pages)
        latencies = [s.page for s in samples]
        floors = [s.floor for s in samples]
        report("append -> first page", spread(latencies))
        report("append -> bare IDLE wake-up (floor)", spread(floors))
        report("per append: page - wake-up", spread([s.page - s.floor for s in samples]))
        report("took", f"{time.monotonic() - start:.0f} s")
        print("stages (ms)", flush=True)
        await page_stages(service, recorder, samples)
        recorder.clear()

        # 4. Timer lateness with 1,000 open timers.
        timers_root = tmp / "timers"
        timers = await make_workspace(timers_root, config_text)
        stack.push_async_callback(timers.close)
        configure_logs(timers_root / "serve.log")
        reader = Reader(timers_root / STORE_NAME)
        stack.callback(reader.close)
        print(f"timer lateness ({args.timers:,} cases, engine without watchers)", flush=True)
        at_commit, audited = await measure_timers(
            timers, timers_root, reader, args.timers, args.window
        )
        report("lateness at commit (page durably queued)", spread(at_commit))
        report("lateness as audited (late_ms, tick start)", spread(audited))

        # 5. kill -9, steps fall due meanwhile, restart.
        print("restart after kill -9 (engine process, wall clock)", flush=True)
        restart_s, overdue, lease_s = await measure_restart(timers, timers_root, reader, processes)
        report("overdue steps at the restart", f"{overdue:,}")
        report("restart -> lease taken (process start-up)", f"{lease_s:.2f} s")
        report("restart -> every overdue step fired", f"{restart_s:.2f} s")

    report("load average at end (1, 5, 15 min)", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    p99 = percentile(latencies, 99)
    floor_p99 = percentile(floors, 99)
    print(
        json.dumps(
            {
                "p50_ms": round(percentile(latencies, 50), 1),
                "p95_ms": round(percentile(latencies, 95), 1),
                "p99_ms": round(p99, 1),
                "floor_p99_ms": round(floor_p99, 1),
                "overhead_p99_ms": round(p99 - floor_p99, 1),
                "timer_lateness_p99_ms": round(percentile(at_commit, 99), 1),
                "restart_overdue_s": round(restart_s, 2),
            }
        )
    )


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except asyncio.CancelledError:
        raise SystemExit("interrupted: servers, processes and temporary files removed") from None
