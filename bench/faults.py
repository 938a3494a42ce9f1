"""Fault injection at bench size: what each fault does to notices, cases and pages.

Runs the scenarios of ``tests/faults.py`` (the same code as ``tests/test_faults.py``, bigger)
one after another, each with its own private Dovecot, aiosmtpd server, loopback HTTPS Teams
sink and ``sgalert serve`` subprocess on a real workspace:

- ``smtp-refused``: the mail server's port is closed throughout;
- ``smtp-blackholed``: the mail server accepts connections and never answers, then recovers;
- ``teams-429-then-500``: the webhook answers 429 with Retry-After, then 500, then 202;
- ``both-down-then-back``: the mail server answers 421 and the webhook's port is closed until
  every page has failed on every channel, then both come back;
- ``dovecot-restarted`` / ``dovecot-killed``: Dovecot is stopped (or SIGKILLed) while the
  engine IDLEs, notices are filed into the Maildir meanwhile, more are appended after;
- ``engine-sigkill``: the engine is killed with SIGKILL at each step of ingest and escalation
  and at random moments, and restarted at once each time.

For each it prints one line (notices appended, cases, pages delivered of pages queued per
channel, duplicate deliveries, the alert that must or must not be raised) and the evidence
behind it; the last line printed is one JSON object of per-fault figures. Needs root and
Debian's ``dovecot-imapd`` (see ``tests/dovecot.py``).

Run from the repository root: ``.venv/bin/python bench/faults.py [--notices 50 --kills 10]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # for tests.* when run as a script

from tests import faults  # noqa: E402
from tests.dovecot import Dovecot, DovecotError  # noqa: E402

NOTICES = 50
KILLS = 10


def report(label: str, value: str) -> None:
    print(f"  {label:<44} {value}", flush=True)


def load() -> str:
    return Path("/proc/loadavg").read_text().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--notices", type=int, default=NOTICES, help="notices per scenario")
    parser.add_argument("--kills", type=int, default=KILLS, help="random SIGKILLs of the engine")
    parser.add_argument("--seed", type=int, default=None, help="the random kill moments")
    parser.add_argument("--only", nargs="*", default=None, help="run only these faults")
    args = parser.parse_args()
    if args.notices < 1 or args.kills < 0:
        parser.error("--notices must be at least 1 and --kills not negative")
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    try:
        Dovecot().close()
    except DovecotError as exc:
        raise SystemExit(f"cannot run Dovecot here: {exc}") from None

    n = args.notices
    scenarios: dict[str, Callable[[Path], faults.Figures]] = {
        "smtp-refused": lambda p: faults.smtp_refused(p, n),
        "smtp-blackholed": lambda p: faults.smtp_blackholed(p, n, gap=0.2),
        "teams-429-then-500": lambda p: faults.teams_throttled_then_failing(p, n),
        "both-down-then-back": lambda p: faults.both_down_then_back(p, n),
        "dovecot-restarted": lambda p: faults.dovecot_restarted(p, n),
        "dovecot-killed": lambda p: faults.dovecot_restarted(p, n, crash=True),
        "engine-sigkill": lambda p: faults.engine_killed(p, n, args.kills, seed=seed),
    }
    unknown = set(args.only or ()) - set(scenarios)
    if unknown:
        parser.error(f"unknown fault(s) {sorted(unknown)}; choose from {sorted(scenarios)}")

    print("sgalert fault injection benchmark", flush=True)
    report("python", f"{platform.python_version()} ({sys.executable})")
    report("platform", f"{platform.platform()}, {os.cpu_count()} CPUs")
    report("notices per fault / random kills / seed", f"{n} / {args.kills} / {seed}")
    report("load average at start (/proc/loadavg)", load())
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="sgalert-faults-", dir="/var/tmp") as tmp:
        for name, scenario in scenarios.items():
            if args.only and name not in args.only:
                continue
            start = time.monotonic()
            try:
                figures = scenario(Path(tmp) / name)
            except AssertionError as failure:
                print(f"{name:<20} FAILED: {str(failure).splitlines()[0]}", flush=True)
                results[name] = {"error": str(failure).splitlines()[0]}
                continue
            print(figures.line(), flush=True)
            detail = {k: v for k, v in figures.detail.items() if k != "seed"}
            report("  took", f"{time.monotonic() - start:.0f} s; load {load()}")
            report(
                "  rows per page (max) / per channel (max)",
                f"{figures.max_rows_per_page} / {figures.max_rows_per_channel}",
            )
            report(
                "  pages about alerts delivered",
                f"{figures.alert_pages_delivered}/{figures.alert_pages}",
            )
            report("  evidence", json.dumps(detail))
            results[figures.fault] = figures.summary()
    report("load average at end (/proc/loadavg)", load())
    print(json.dumps(results))


if __name__ == "__main__":
    main()
