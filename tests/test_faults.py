"""Never silent, end to end: faults injected into the real servers while the real engine runs.

Each scenario of :mod:`tests.faults` runs once (a module fixture) with Dovecot, aiosmtpd, the
loopback HTTPS Teams sink and ``sgalert serve`` as a subprocess, and the tests assert on what
it counted. Sizes are small for CI; ``SGALERT_FAULTS_NOTICES`` and ``SGALERT_FAULTS_KILLS``
make them bigger (``bench/faults.py`` runs the same scenarios at bench size and prints the
figures). ``SGALERT_FAULTS_SEED`` replays the random kill moments of a failed run. Scenarios
mostly wait out the outbox's backoff, so ``SGALERT_FAULTS_PARALLEL`` (default 3) of them run
side by side.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import ssl
import struct
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from . import faults
from .dovecot import group_members, require_dovecot
from .faults import BACKOFF_JITTER, FIRST_BACKOFF_S, SMTP_TIMEOUT_S, Figures
from .http_sink import HttpSink, Reply, make_tls

pytestmark = pytest.mark.slow

NOTICES = int(os.environ.get("SGALERT_FAULTS_NOTICES", "3"))
KILLS = int(os.environ.get("SGALERT_FAULTS_KILLS", "2"))
SEED = int(os.environ.get("SGALERT_FAULTS_SEED", str(random.randrange(2**32))))
PARALLEL = int(os.environ.get("SGALERT_FAULTS_PARALLEL", "3"))


# The scenarios by name, the slowest first: they mostly wait out the outbox's backoff, so a few
# run side by side (each with its own servers, workspace and engine).
SCENARIOS: dict[str, Callable[[Path], Figures]] = {
    "both_down": lambda p: faults.both_down_then_back(p, NOTICES),
    "teams_failing": lambda p: faults.teams_throttled_then_failing(p, NOTICES),
    "smtp_blackholed": lambda p: faults.smtp_blackholed(p, NOTICES),
    "engine_killed": lambda p: faults.engine_killed(p, NOTICES, KILLS, seed=SEED),
    "smtp_refused": lambda p: faults.smtp_refused(p, NOTICES),
    "dovecot_restarted": lambda p: faults.dovecot_restarted(p, NOTICES),
}


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[Figures]]]:
    """Start every scenario the selected tests need, ``PARALLEL`` at a time."""
    require_dovecot()
    here = [
        item
        for item in request.session.items
        if isinstance(item, pytest.Function) and item.module is request.module
    ]
    wanted = [name for name in SCENARIOS if any(name in item.fixturenames for item in here)]
    with ThreadPoolExecutor(PARALLEL, thread_name_prefix="fault") as pool:
        yield {name: pool.submit(SCENARIOS[name], tmp_path_factory.mktemp(name)) for name in wanted}


@pytest.fixture(scope="module")
def smtp_refused(runs: dict[str, Future[Figures]]) -> Figures:
    return runs["smtp_refused"].result()


@pytest.fixture(scope="module")
def smtp_blackholed(runs: dict[str, Future[Figures]]) -> Figures:
    return runs["smtp_blackholed"].result()


@pytest.fixture(scope="module")
def teams_failing(runs: dict[str, Future[Figures]]) -> Figures:
    return runs["teams_failing"].result()


@pytest.fixture(scope="module")
def both_down(runs: dict[str, Future[Figures]]) -> Figures:
    return runs["both_down"].result()


@pytest.fixture(scope="module")
def dovecot_restarted(runs: dict[str, Future[Figures]]) -> Figures:
    return runs["dovecot_restarted"].result()


@pytest.fixture(scope="module")
def engine_killed(runs: dict[str, Future[Figures]]) -> Figures:
    return runs["engine_killed"].result()


def assert_every_notice_one_case(f: Figures) -> None:
    assert f.appended >= NOTICES
    assert f.cases == f.appended, f"{f.appended} notices made {f.cases} cases"
    assert f.notices_with_case == f.appended, "a notice has no case"
    assert f.detail["steps_fired_twice"] == 0
    assert f.unknown_deliveries == 0, "a server took a page the outbox never held"


def assert_bounded(f: Figures) -> None:
    """One page is at most one row per channel, and a fallback never falls back again."""
    assert f.max_rows_per_channel == 1
    assert f.max_rows_per_page <= 2  # two channels
    assert f.detail["fallbacks_of_fallbacks"] == 0


def test_smtp_refused_teams_carries_every_case_and_no_alert_is_raised(
    smtp_refused: Figures,
) -> None:
    f = smtp_refused
    assert_every_notice_one_case(f)
    assert_bounded(f)
    assert f.detail["cases_paged_on_teams"] == f.cases
    assert f.by_channel["teams"][0] == f.by_channel["teams"][1], "a card was not delivered"
    # Each email page: its card on Teams, plus a card saying the email channel is failing.
    assert f.by_channel["teams"][0] == 2 * f.cases
    assert f.by_channel["email"][1] == 0 and f.detail["email_delivered"] == 0
    assert f.duplicates == 0
    # Retried with backoff: the second try no sooner than the first backoff allows. The gap is
    # read from the audit log, stamped when each failure's transaction gets the write lock (up
    # to a few hundred ms late on a busy machine); a retry without backoff would come within 1 s.
    assert f.detail["email_attempts_min"] >= 2
    assert f.detail["first_retry_gap_min_s"] >= FIRST_BACKOFF_S * (1 - BACKOFF_JITTER) - 0.5
    assert not f.alert_raised, "page-undeliverable raised although Teams had every page"


def test_smtp_blackholed_holds_back_no_card(smtp_blackholed: Figures) -> None:
    f = smtp_blackholed
    assert_every_notice_one_case(f)
    assert f.detail["email_sends_hanging_max"] >= 1, "the black hole held no send"
    assert f.detail["cards_timed"] == f.cases
    # A card waiting behind a hanging email would come a whole SMTP timeout late.
    assert f.detail["card_delay_max_s"] < SMTP_TIMEOUT_S
    assert f.pages_delivered == f.pages and f.duplicates == 0
    assert not f.alert_raised


def test_teams_429_retry_after_is_honoured_and_a_500_is_retried(teams_failing: Figures) -> None:
    f = teams_failing
    assert_every_notice_one_case(f)
    assert_bounded(f)
    assert f.detail["retried_after_429"] == f.cases
    assert f.detail["retry_after_margin_min_s"] >= 0, "a card came back before Retry-After"
    # The server's time is longer than the engine's own first backoff: it decided the wait.
    assert f.detail["retry_after_s"] > FIRST_BACKOFF_S * (1 + BACKOFF_JITTER)
    assert f.detail["retried_after_500"] == f.cases
    assert f.pages_delivered == f.pages and f.duplicates == 0
    assert f.detail["card_attempts_max"] == 3


def test_teams_failing_alone_raises_no_page_undeliverable(teams_failing: Figures) -> None:
    f = teams_failing
    assert f.by_channel["email"][0] == f.by_channel["email"][1] == f.cases
    assert not f.alert_raised, f"{f.detail['alerts']} page-undeliverable alerts"


def test_both_down_raises_an_alert_then_delivers_each_row_once(both_down: Figures) -> None:
    f = both_down
    assert_every_notice_one_case(f)
    assert_bounded(f)
    assert f.alert_raised and f.detail["alerts_open_while_down"] == f.cases
    assert f.alert_cleared, "page-undeliverable still open after every page was delivered"
    assert f.pages_delivered == f.pages, "a page was lost"
    assert f.duplicates == 0
    # The team is told about each alert once the channels are back.
    assert f.alert_pages_delivered == f.alert_pages > 0


def test_dovecot_restarted_mid_idle_every_notice_becomes_one_case(
    dovecot_restarted: Figures,
) -> None:
    f = dovecot_restarted
    assert f.appended == 3 * NOTICES
    assert_every_notice_one_case(f)
    assert f.detail["messages_in_mailbox"] == f.appended and f.detail["unseen_left"] == 0
    assert f.detail["source_failures_logged"] >= 1, "the engine never noticed the outage"
    assert f.pages_delivered == f.pages and f.duplicates == 0


def test_engine_killed_at_each_step_loses_nothing(engine_killed: Figures) -> None:
    f = engine_killed
    assert_every_notice_one_case(f)
    assert_bounded(f)
    for point in faults.KILL_POINTS:
        assert f.detail.get(f"kill_{point}") == 1, f"never killed at {point}: {f.detail}"
    assert f.detail["kills"] == len(faults.KILL_POINTS) + KILLS
    assert f.pages_delivered == f.pages, f"a page was lost (seed {SEED})"
    # Every notice, plus one for each time a loaded machine lost the race to a due step and
    # the rig aimed again with a fresh case (each of those is a case too: checked above).
    assert f.appended == NOTICES + f.detail.get("kill_step_due_missed", 0)
    # At least once: a page whose 250 or 202 the engine never saw goes again. Counted, and
    # each duplicate is a delivery that was under way when the engine was killed.
    assert f.detail["duplicates_unexplained"] == 0, f"seed {SEED}: {f.detail}"
    assert not f.alert_raised


@pytest.fixture
def bare_rig(tmp_path: Path) -> Iterator[faults.Rig]:
    require_dovecot()
    with faults.rig(tmp_path) as r:
        yield r


def test_a_killed_engine_leaves_no_process_behind(bare_rig: faults.Rig) -> None:
    if (os.cpu_count() or 1) < 2:
        pytest.skip("on one CPU the engine starts no ingest worker processes")
    r = bare_rig
    r.start_engine()
    process = r.engine.process
    assert process is not None

    def workers() -> int:
        found = 0
        for pid in group_members(process.pid):
            with contextlib.suppress(OSError):
                found += b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        return found

    # Killed before its workers exist, the engine leaves nothing: wait for them.
    r.until(lambda: workers() == min(4, os.cpu_count() or 1), "the ingest workers", 30)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    deadline = time.monotonic() + 5
    while group_members(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert group_members(process.pid) == []


def test_the_webhook_sink_comes_back_on_its_port_and_ignores_vanished_clients(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """What the Teams scenarios rest on: a webhook that was down is back at the same URL, and a
    client killed mid-request (as the engine is) is no error of the sink's."""
    tls = make_tls(tmp_path)
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    sink = HttpSink(tls=tls, default=Reply(202)).start()
    try:
        port = sink.port
        with urllib.request.urlopen(sink.url("/a"), data=b"{}", context=context) as answer:  # noqa: S310
            assert answer.status == 202
        sink.stop()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        sink.start()
        assert sink.port == port
        raw = socket.create_connection(("127.0.0.1", port), timeout=2)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as client:
            time.sleep(0.2)  # the sink's thread waits for the request line, as when the engine
            # is killed; then the client goes, with a reset
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with urllib.request.urlopen(sink.url("/c"), data=b"{}", context=context) as answer:  # noqa: S310
            assert answer.status == 202
    finally:
        sink.stop()
    assert [r.path for r in sink.requests] == ["/a", "/c"]  # the reset one sent nothing
    assert "Traceback" not in capfd.readouterr().err
