"""Benchmark the encrypted case store: unlocking, sealing and storing cases, and opening them.

What it measures, on a fresh store in a temporary directory (WAL, ``synchronous=FULL``, so every
commit is an fsync, as in production):

- ``unlock_s``: the median time for a DSL to unlock (Argon2id with the real default
  :class:`~sgalert.records.crypto.KdfParams`, not the cheap test parameters), since that is what a
  DSL waits for at 22:00 before they can read a notice.
- ``stored_per_s_single``: cases sealed and stored one per durable transaction, the way the
  engine stores a message as it arrives (store first, then mark the message done).
- ``stored_per_s_batch100``: cases sealed and stored 100 per transaction, the way the engine
  catches up on a backlog after an outage
  (:meth:`~sgalert.desk.service.CaseService.create_cases_in_batches`: the next batch is sealed in a
  worker thread while the current one commits).
- ``opens_per_s``: cases decrypted by an unlocked DSL 100 at a time with
  :meth:`~sgalert.desk.service.CaseService.open_cases` (bulk review, child-file matching), every
  read audited in the batch's transaction.
- ``opens_per_s_single``: cases decrypted one at a time with
  :meth:`~sgalert.desk.service.CaseService.open_case`, each its own durable audited transaction, the
  way the TUI opens a case.

Each case is an Operation Encompass notice of about 10 KB of invented RFC 822 text plus its
extracted facts and body, all fictional (``example.org`` addresses only). The figures tell us
whether the store keeps up with a realistic school's mail, and with a multi-academy trust's
backlog, on the project's 2-core reference machine. The last line printed is one JSON object, so
CI or a script can compare runs.

Run from the repository root: ``.venv/bin/python bench/store.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import cryptography
from invented import FIRST_NAMES, LAST_NAMES, PASSPHRASE, PEOPLE, STREETS

from sgalert.config import load_config, render_template
from sgalert.desk.service import CaseService
from sgalert.model import Source
from sgalert.records.cases import (
    FIELD_ATTACHMENTS,
    FIELD_BODY,
    FIELD_FACTS,
    FIELD_RAW,
    NewCase,
    StoredCase,
)
from sgalert.records.crypto import KdfParams
from sgalert.records.keyring import add_first_person, add_person, unlock
from sgalert.records.store import Store

CASES = 10_000
SINGLE_CASES = 2_000
SINGLE_OPENS = 1_000
BATCH = 100
UNLOCK_RUNS = 5
RAW_TARGET_BYTES = 10 * 1024
SEED = 20_261_122

T = TypeVar("T")


_INCIDENTS = (
    "a domestic incident",
    "a report of a verbal argument",
    "a call about shouting heard by a neighbour",
    "a breach of a non-molestation order",
    "a report of a welfare concern",
)
_SENTENCES = (
    "Officers attended the address and spoke with both adults present.",
    "The child was present in the property at the time of the incident but was not injured.",
    "No arrests were made; advice was given and a safeguarding referral has been submitted.",
    "The child appeared settled when officers left and was being cared for by a relative.",
    "The information is shared under Operation Encompass so that the school can offer support.",
    "Please do not contact the family about this notification without first consulting the DSL.",
    "This notice is confidential and must be stored securely in line with the school's policy.",
    "A follow-up visit by the neighbourhood team is planned within the next seven days.",
    "Children's social care have been informed and will decide whether further action is needed.",
    "If the school holds information relevant to this incident, please reply to this address.",
)


def _name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"


def _paragraphs(rng: random.Random, count: int) -> list[str]:
    return [" ".join(rng.sample(_SENTENCES, rng.randint(3, 5))) for _ in range(count)]


def _wrap(text: str, width: int = 76) -> str:
    lines: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    return "\r\n".join(lines)


def make_case(rng: random.Random, number: int, received: datetime) -> NewCase:
    """One invented Encompass notice: raw RFC 822 message, extracted facts and body text."""
    child = _name(rng)
    officer = _name(rng)
    incident = rng.choice(_INCIDENTS)
    incident_at = received - timedelta(hours=rng.randint(2, 30))
    notice_id = f"OE-{received.year}-{number:06d}"
    address = f"{rng.randint(1, 120)} {rng.choice(STREETS)}, Exampletown"
    facts = {
        "notification_id": notice_id,
        "child_name": child,
        "child_dob": f"{rng.randint(2011, 2020)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "year_group": f"Year {rng.randint(1, 9)}",
        "incident_at": incident_at.isoformat(),
        "incident_type": incident,
        "address": address,
        "child_present": rng.random() < 0.8,
        "officer": officer,
        "force": "Exampleshire Police",
        "reference": f"EXP/{rng.randint(100000, 999999)}/{received.year % 100}",
    }
    body_paragraphs = [
        "OPERATION ENCOMPASS NOTIFICATION",
        f"Notification: {notice_id}",
        f"Child: {child} (DOB {facts['child_dob']}, {facts['year_group']})",
        f"Incident: {incident} at {address} on {incident_at:%d %B %Y at %H:%M}.",
        *_paragraphs(rng, 4),
        f"Officer in case: {officer}, Exampleshire Police Safeguarding Hub.",
    ]
    body = "\r\n\r\n".join(_wrap(p) for p in body_paragraphs)
    boundary = f"=_enc_{rng.getrandbits(64):016x}"
    hops = "".join(
        f"Received: from relay{hop}.example.org (relay{hop}.example.org [192.0.2.{hop + 10}])\r\n"
        f"\tby mx{hop}.example.org with ESMTPS id {rng.getrandbits(48):012x}\r\n"
        f"\tfor <dsl@school.example.org>; {received:%a, %d %b %Y %H:%M:%S} +0000\r\n"
        for hop in range(1, 4)
    )
    headers = (
        f"Return-Path: <encompass@police.example.org>\r\n{hops}"
        "DKIM-Signature: v=1; a=rsa-sha256; d=police.example.org; s=sel1;\r\n"
        f"\tbh={rng.randbytes(32).hex()};\r\n\tb={rng.randbytes(96).hex()}\r\n"
        "From: Exampleshire Police Encompass <encompass@police.example.org>\r\n"
        "To: Designated Safeguarding Lead <dsl@school.example.org>\r\n"
        f"Subject: Operation Encompass notification {notice_id}\r\n"
        f"Date: {received:%a, %d %b %Y %H:%M:%S} +0000\r\n"
        f"Message-ID: <{rng.getrandbits(96):024x}@police.example.org>\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
    )
    html_body = "".join(f"<p>{p}</p>\r\n" for p in body_paragraphs)
    raw = (
        f"{headers}--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
        f"--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        f"<html><body>\r\n{html_body}"
    )
    # Pad with the force's standard confidentiality footer until the message is about 10 KB.
    footer = _paragraphs(rng, 12)
    index = 0
    while len(raw) < RAW_TARGET_BYTES - 200:
        raw += f"<p><small>{footer[index % len(footer)]}</small></p>\r\n"
        index += 1
    raw += f"</body></html>\r\n--{boundary}--\r\n"
    return NewCase(
        source=Source.ENCOMPASS,
        received_at=received,
        origin="mailbox",
        content={
            FIELD_RAW: raw.encode(),
            FIELD_FACTS: json.dumps(facts, ensure_ascii=False).encode(),
            FIELD_BODY: body.encode(),
            FIELD_ATTACHMENTS: b"[]",
        },
    )


def make_cases(rng: random.Random, count: int, start: int) -> list[NewCase]:
    base = datetime(2026, 11, 22, 21, 55, tzinfo=UTC)
    return [
        make_case(rng, start + i, base - timedelta(minutes=7 * (start + i))) for i in range(count)
    ]


def batches(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def report(label: str, value: str) -> None:
    print(f"  {label:<44} {value}", flush=True)


async def measure_unlock(service: CaseService, email: str) -> float:
    times: list[float] = []
    for _ in range(UNLOCK_RUNS):
        start = time.perf_counter()
        await service.unlock(email, PASSPHRASE)
        times.append(time.perf_counter() - start)
    report(
        f"unlock ({UNLOCK_RUNS} runs)",
        f"median {statistics.median(times):.3f} s (min {min(times):.3f}, max {max(times):.3f})",
    )
    return statistics.median(times)


async def measure_store_single(service: CaseService, cases: Sequence[NewCase]) -> float:
    start = time.perf_counter()
    for case in cases:
        await service.create_cases([case])
    rate = len(cases) / (time.perf_counter() - start)
    report(f"stored, 1 per transaction ({len(cases):,} cases)", f"{rate:,.0f} cases/s")
    return rate


async def measure_store_batch(
    service: CaseService, cases: Sequence[NewCase]
) -> tuple[float, list[StoredCase]]:
    start = time.perf_counter()
    stored = await service.create_cases_in_batches(cases, BATCH)
    rate = len(cases) / (time.perf_counter() - start)
    report(
        f"stored, {BATCH} per transaction ({len(cases):,} cases, next batch sealed meanwhile)",
        f"{rate:,.0f} cases/s",
    )
    return rate, stored


async def measure_open_batch(
    service: CaseService, email: str, stored: Sequence[StoredCase], expected: NewCase
) -> float:
    identity = await service.unlock(email, PASSPHRASE)
    refs = [item.ref for item in stored]
    opened = 0
    start = time.perf_counter()
    for batch in batches(refs, BATCH):
        views = await service.open_cases(identity, batch)
        if len(views) != len(batch):
            raise SystemExit(f"open_cases returned {len(views)} of {len(batch)} cases")
        opened += len(views)
    rate = opened / (time.perf_counter() - start)
    report(f"opened, {BATCH} per open_cases ({opened:,} cases)", f"{rate:,.0f} cases/s")
    # Check one round trip, outside the timing, so a fast but wrong store cannot pass.
    (view,) = await service.open_cases(identity, [stored[0].ref])
    if view.facts != json.loads(expected.content[FIELD_FACTS]):
        raise SystemExit("a decrypted case does not match what was sealed")
    return rate


async def measure_open_single(
    service: CaseService, email: str, stored: Sequence[StoredCase]
) -> float:
    identity = await service.unlock(email, PASSPHRASE)
    start = time.perf_counter()
    for item in stored:
        await service.open_case(identity, item.ref)
    rate = len(stored) / (time.perf_counter() - start)
    report(f"opened, 1 per open_case ({len(stored):,} cases)", f"{rate:,.0f} cases/s")
    return rate


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--dir", type=Path, default=None, help="parent of the temporary store (default: system)"
    )
    args = parser.parse_args()

    kdf = KdfParams()
    print("sgalert case-store benchmark", flush=True)
    report("python", f"{platform.python_version()} ({sys.executable})")
    report("platform", f"{platform.platform()}, {platform.machine()}")
    report("sqlite / cryptography", f"{sqlite3.sqlite_version} / {cryptography.__version__}")
    report("store", "WAL, synchronous=FULL, one fsync per commit")
    report("kdf", f"argon2id m={kdf.memory_kib} KiB t={kdf.iterations} p={kdf.lanes} (default)")

    with tempfile.TemporaryDirectory(prefix="sgalert-bench-", dir=args.dir) as tmp:
        root = Path(tmp)
        report("workspace", str(root))
        config_path = root / "sgalert.toml"
        config_path.write_text(render_template("Bench School"), encoding="utf-8")
        store = await Store.open(root / "sgalert.db", create=True)
        service = CaseService(store, load_config(config_path))
        try:
            start = time.perf_counter()
            adder = None  # the first person bootstraps the store and adds the others
            for name, email, role in PEOPLE:
                if adder is None:
                    _, groups = await add_first_person(
                        store, name=name, email=email, role=role, passphrase=PASSPHRASE, kdf=kdf
                    )
                    adder = await unlock(store, email, PASSPHRASE)
                else:
                    _, groups = await add_person(
                        store, by=adder, name=name, email=email, role=role,
                        passphrase=PASSPHRASE, kdf=kdf,
                    )  # fmt: skip
                if groups.get(role.value) != "active":
                    raise SystemExit(f"{email} did not get the {role.value} key: {groups}")
            report("people added (dsl, deputy, head)", f"{time.perf_counter() - start:.2f} s")

            rng = random.Random(SEED)
            start = time.perf_counter()
            single_cases = make_cases(rng, SINGLE_CASES, start=CASES)
            cases = make_cases(rng, CASES, start=0)
            raw_kb = statistics.mean(len(c.content[FIELD_RAW]) for c in cases) / 1024
            report(
                "cases built (not timed below)",
                f"{CASES:,} + {SINGLE_CASES:,}, raw {raw_kb:.1f} KB average, "
                f"{time.perf_counter() - start:.1f} s",
            )

            print("results", flush=True)
            dsl_email = PEOPLE[0][1]
            unlock_s = await measure_unlock(service, dsl_email)
            single = await measure_store_single(service, single_cases)
            batch, stored = await measure_store_batch(service, cases)
            opens = await measure_open_batch(service, dsl_email, stored, cases[0])
            opens_single = await measure_open_single(service, dsl_email, stored[:SINGLE_OPENS])

            audited = await service.verify_audit()
            size_mb = sum(p.stat().st_size for p in root.glob("sgalert.db*")) / 2**20
            report("audit chain verified", f"{audited:,} entries")
            report("store size (db + wal)", f"{size_mb:,.0f} MB")
        finally:
            await service.close()

    print(
        json.dumps(
            {
                "unlock_s": round(unlock_s, 3),
                "stored_per_s_single": round(single),
                "stored_per_s_batch100": round(batch),
                "opens_per_s": round(opens),
                "opens_per_s_single": round(opens_single),
                "cases": CASES,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
