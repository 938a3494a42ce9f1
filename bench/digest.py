"""Benchmark the headteacher's daily digest on a store of 100,000 cases.

- ``digest_s``: building Monday's digest from the store's metadata (every figure, the audit head,
  and re-verifying Friday's anchor, which checks the whole hash chain) and rendering the head's
  copy as text and HTML: what the engine does at 07:30.
- ``digest_without_reverify_s``: the same without re-verifying the previous anchor, to show what
  the chain check costs.
- ``report_s``: the governors' termly report over the whole 100 days (every case), rendered as
  text, HTML with its SVG charts, and CSV.

The store holds only what the digest reads: case metadata (100 days of invented cases, about
1,000 a day across the three sources; 1% never acknowledged, 0.5% about the head, 15% escalated
to a second step, 80% closed), their timers and statutory clocks, a few system alerts, and an
audit chain of three entries per case. Cases are inserted as metadata in SQL, not sealed: the
digest never decrypts, so sealing would only slow the setup (``bench/store.py`` measures that).

Run from the repository root: ``.venv/bin/python bench/digest.py [--cases N]``. The last line is
one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from invented import PASSPHRASE  # bench/invented.py: the benchmarks' invented people

from sgalert.clock import iso
from sgalert.config import load_config, render_template
from sgalert.model import Role
from sgalert.records import audit
from sgalert.records.crypto import TEST_KDF
from sgalert.records.keyring import add_first_person
from sgalert.records.store import Store, on_connection
from sgalert.routing.digest import Viewer, build_digest, queue_digest
from sgalert.routing.digest_render import render_html, render_text
from sgalert.routing.report import build_report
from sgalert.routing.report_render import render_csv as render_report_csv
from sgalert.routing.report_render import render_html as render_report_html
from sgalert.routing.report_render import render_text as render_report_text

SEED = 14
TARGET = date(2026, 12, 14)  # a Monday in the autumn term
END = datetime(2026, 12, 14, 7, 0, tzinfo=UTC)
DAYS = 100
SOURCES = ("encompass",) * 6 + ("lesson",) * 3 + ("whistle",)


def seed(conn: sqlite3.Connection, count: int, rng: random.Random) -> None:
    """``count`` cases over ``DAYS`` days, with their timers, clocks and audit entries."""
    start = END - timedelta(days=DAYS)
    step = (END - start) / count
    batch: list[audit.AuditEvent] = []
    day_of_batch: datetime | None = None
    for number in range(count):
        received = start + step * number
        source = rng.choice(SOURCES)
        about_head = source == "whistle" and rng.random() < 0.05
        case_id = uuid.UUID(int=rng.getrandbits(128)).hex
        ack = None if rng.random() < 0.01 else received + timedelta(minutes=rng.expovariate(1 / 8))
        closed = ack + timedelta(days=rng.uniform(0.5, 20)) if ack and rng.random() < 0.8 else None
        if closed and closed > END:
            closed = None
        state = "closed" if closed else ("acknowledged" if ack else "new")
        conn.execute(
            "INSERT INTO cases (id, ref, source, origin, received_at, created_at, updated_at,"
            " state, flags, acknowledged_at, closed_at) VALUES (?, ?, ?, 'mailbox', ?, ?, ?, ?,"
            " ?, ?, ?)",
            (
                case_id,
                f"SG-2026-{number + 1:06d}",
                source,
                iso(received),
                iso(received),
                iso(closed or ack or received),
                state,
                json.dumps(["about-head"] if about_head else []),
                iso(ack) if ack else None,
                iso(closed) if closed else None,
            ),
        )
        timers = [("step", 0, received)]
        if ack is None or ack - received > timedelta(minutes=10):
            timers.append(("step", 1, received + timedelta(minutes=10)))
        conn.executemany(
            "INSERT INTO timers (case_id, kind, step, due_at, created_at, fired_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(case_id, k, s, iso(t), iso(received), iso(t)) for k, s, t in timers],
        )
        if source != "lesson":
            due = received + timedelta(days=1 if source == "encompass" else 7)
            met = ack if ack and ack <= due + timedelta(days=1) else None
            conn.execute(
                "INSERT INTO clocks (case_id, kind, due_at, met_at) VALUES (?, ?, ?, ?)",
                (
                    case_id,
                    "encompass-before-school-day"
                    if source == "encompass"
                    else "whistle-monitoring-officer-5-working-days",
                    iso(due),
                    iso(met) if met else None,
                ),
            )
        batch.append(audit.AuditEvent(audit.ENGINE, "case-created", case_id, {"source": source}))
        if ack:
            batch.append(audit.AuditEvent("dsl", "acknowledged", case_id))
        if closed:
            batch.append(audit.AuditEvent("dsl", "closed", case_id))
        today = received.replace(hour=0, minute=0, second=0, microsecond=0)
        if day_of_batch != today or len(batch) > 5000:
            audit.append_now(conn, batch, received)
            batch, day_of_batch = [], today
    audit.append_now(conn, batch, END)
    for days_ago, kind, name in ((3, "source-down", "encompass"), (1, "rota-gap", "rota")):
        raised = END - timedelta(days=days_ago)
        conn.execute(
            "INSERT INTO system_alerts (kind, source_name, raised_at, detail, cleared_at)"
            " VALUES (?, ?, ?, '{}', ?)",
            (kind, name, iso(raised), iso(raised + timedelta(hours=2))),
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temporary store")
    args = parser.parse_args()
    print("sgalert daily digest benchmark", flush=True)
    print(f"  load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory(prefix="sgalert-bench-digest-", dir=args.dir) as tmp:
        root = Path(tmp)
        config_path = root / "sgalert.toml"
        config_path.write_text(render_template("Bench School"), encoding="utf-8")
        config = load_config(config_path)
        store = await Store.open(root / "sgalert.db", create=True)
        started = time.perf_counter()
        await add_first_person(
            store,
            name="Hal Madeup",
            email="head@example.org",
            role=Role.HEAD,
            passphrase=PASSPHRASE,
            kdf=TEST_KDF,
        )
        await store.transact(lambda conn: seed(conn, args.cases, random.Random(SEED)))
        entries = (await store.fetchall("SELECT MAX(seq) FROM audit"))[0][0]
        print(
            f"  seeded {args.cases:,} cases, {entries:,} audit entries in"
            f" {time.perf_counter() - started:.1f} s",
            flush=True,
        )

        friday = TARGET - timedelta(days=3)
        friday_at = datetime(2026, 12, 11, 7, 30, tzinfo=UTC)
        async with store.read() as db:
            previous = await on_connection(
                db, lambda conn: build_digest(conn, config, friday, friday_at)
            )
        await store.transact(lambda conn: queue_digest(conn, config, previous, friday_at))

        now = datetime(2026, 12, 14, 7, 30, tzinfo=UTC)
        # The engine's calendar has long been warm at 07:30 (every new case asks it): load the
        # bank holidays now so they are not timed.
        config.calendar.is_school_day(TARGET)
        timings: dict[str, float] = {}
        sizes: dict[str, int] = {}
        for label, verify in (("digest_s", True), ("digest_without_reverify_s", False)):
            begin = time.perf_counter()
            async with store.read() as db:
                digest = await on_connection(
                    db,
                    lambda conn, v=verify: build_digest(  # type: ignore[misc]
                        conn, config, TARGET, now, verify_previous=v
                    ),
                )
            text = render_text(digest, Viewer("head"))
            page = render_html(digest, Viewer("head"))
            timings[label] = round(time.perf_counter() - begin, 3)
            sizes = {"text_bytes": len(text.encode()), "html_bytes": len(page.encode())}
        first_day = (END - timedelta(days=DAYS)).date()
        begin = time.perf_counter()
        async with store.read() as db:
            term = await on_connection(
                db, lambda conn: build_report(conn, config, first_day, TARGET, now)
            )
        term_html, term_csv = render_report_html(term), render_report_csv(term)
        report_text = render_report_text(term)
        timings["report_s"] = round(time.perf_counter() - begin, 3)
        await store.close()
        for line in text.splitlines()[:4]:
            print(f"  | {line}")
        print(f"  digest (with Friday's anchor re-verified): {timings['digest_s']:.3f} s")
        print(f"  digest without the re-verification: {timings['digest_without_reverify_s']:.3f} s")
        print(f"  head's copy: {sizes['text_bytes']:,} bytes text, {sizes['html_bytes']:,} HTML")
        print(
            f"  term report {first_day} to {TARGET} ({term.total:,} cases, {len(term.weeks)}"
            f" weeks): {timings['report_s']:.3f} s; {len(report_text):,} bytes text,"
            f" {len(term_html):,} HTML, {len(term_csv):,} CSV"
        )
        print(
            json.dumps(
                {
                    "digest_s": timings["digest_s"],
                    "digest_without_reverify_s": timings["digest_without_reverify_s"],
                    "report_s": timings["report_s"],
                    "audit_entries": entries,
                    "load_average": round(os.getloadavg()[0], 1),
                    "cases": args.cases,
                }
            )
        )


if __name__ == "__main__":
    asyncio.run(main())
