"""Benchmark ingesting a mailbox backlog over real IMAP: from unread notices to sealed cases.

What it measures, against a private Dovecot (``tests/dovecot.py``: needs root and Debian's
``dovecot-imapd``) on loopback, holding a backlog of invented Operation Encompass notices:

- ``floor_per_s``: a bare IMAPClient connects, selects INBOX, searches and FETCHes
  ``BODY.PEEK[]`` and ``INTERNALDATE`` of every message in chunks of the adapter's default
  ``batch_size`` (250), exactly the fetches the IMAP adapter makes, with nothing done to the
  bytes (best of two runs). No ingest pipeline can beat this; it is how fast this machine's
  Dovecot and IMAPClient hand the mail over.
- ``cases_per_s``: the real IMAP inbox (:mod:`integrations.imap`, through
  :func:`~sgalert.engine.watch.make_deliver` and :class:`~sgalert.intake.ingest.Ingestor`) drains
  the same backlog with its default settings: each batch of 250 is fetched, parsed, sender-checked,
  extracted, sealed and stored in one durable transaction with its checkpoint (WAL,
  ``synchronous=FULL``), and only then marked ``\\Seen``. Timed from starting the watcher
  (its prepare workers already started, as ``sgalert serve`` starts them) until every message
  is a case and every message is ``\\Seen`` (both polled every 50 ms), so it is what a school
  waits after an outage.
- ``ratio``: ``cases_per_s / floor_per_s``, the share of the raw fetch rate that survives the
  pipeline.

The backlog is ≈10 KB messages with fictional names and ``example.org`` /
``police.example.org`` addresses only, each with its own Message-ID: the label variants of
:mod:`sgalert.intake.extract` (``Child's Name``, Surname/Forename rows, ``D.O.B.``, label on one
line and value on the next, ``Occurrence Number``, ``Incident ref`` …) in plain text,
multipart/alternative (some HTML quoted-printable) and HTML-only tables, ~10% with a small
PDF-like attachment, and the receiving server's ``Authentication-Results``, checked against the
source's ``authserv_id`` and ``sender_domains``. The engine logs each case as ``sgalert serve``
does (JSON lines, here to a file; ``--no-logs`` turns that off). People are created with the
cheap test KDF parameters: unlocking speed is ``bench/store.py``'s business, not this one's.

Afterwards it checks that there are exactly as many cases as messages, that a sample decrypts
to the facts the notices carried, and that the audit chain verifies; it shows any flags raised
(none are expected: every notice carries its facts and passes the sender check). The
APPEND time that fills the mailbox is shown but is not a figure of merit. The pipeline is
CPU-bound, so the load average is printed at the start and the end: a busy machine (tests or
another benchmark running) lowers ``cases_per_s`` far more than ``floor_per_s``. The last line
printed is one JSON object, so CI or a script can compare runs.

Run from the repository root, as root: ``.venv/bin/python bench/ingest.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import platform
import quopri
import random
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # for tests.dovecot and integrations when run as a script

import imapclient  # noqa: E402
from imapclient import IMAPClient  # noqa: E402
from invented import FIRST_NAMES, LAST_NAMES, PASSPHRASE, PEOPLE, STREETS  # noqa: E402

from integrations.imap import DEFAULT_BATCH_SIZE, create  # noqa: E402
from sgalert.config import SourceConfig, load_config, render_template  # noqa: E402
from sgalert.desk.service import CaseService  # noqa: E402
from sgalert.engine.watch import SourceMonitor, make_deliver  # noqa: E402
from sgalert.intake.ingest import Ingestor  # noqa: E402
from sgalert.intake.prepare import SourceRules  # noqa: E402
from sgalert.logs import JsonLines  # noqa: E402
from sgalert.model import Source  # noqa: E402
from sgalert.records.crypto import TEST_KDF  # noqa: E402
from sgalert.records.keyring import add_first_person, add_person, unlock  # noqa: E402
from sgalert.records.store import Store  # noqa: E402
from tests.dovecot import Dovecot  # noqa: E402

MESSAGES = 5_000
BATCH = DEFAULT_BATCH_SIZE  # the adapter's default, which the run below leaves as it is
APPEND_CHUNK = 250
RAW_TARGET_BYTES = 10 * 1024
POLL_SECONDS = 0.05
DEADLINE_SECONDS = 600.0
SAMPLE_OPENS = 25
SEED = 20_261_123

PASSWORD_ENV = "SGALERT_BENCH_IMAP_PASSWORD"
SOURCE_NAME = "encompass-imap"
AUTHSERV_ID = "mx.school.example.org"
POLICE_DOMAIN = "police.example.org"


_SCHOOLS = (
    "Example First School", "Exampletown Primary Academy", "St Invented's CE Primary",
    "Madeup Lane Infants", "Fictional Park Junior School",
)  # fmt: skip
_FORCES = (
    ("Exampleshire Police", "encompass"),
    ("Exampleshire Police MASH", "mash.encompass"),
    ("Invented Valley Constabulary", "oe.notifications"),
)
_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
_VOICES = (
    '"I went to my room and hid."',
    '"I put my headphones on so I could not hear."',
    '"Mum was crying and I looked after my sister."',
    "The child did not want to speak to officers.",
    '"I was scared but I am OK now."',
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
_FOOTER = (
    "This email and any attachments are intended solely for the addressee and may contain "
    "information that is sensitive or subject to legal privilege.",
    "If you have received this email in error please notify the sender immediately and delete "
    "it from your system; any unauthorised use, disclosure or copying is prohibited.",
    "Exampleshire Police monitors email traffic for the purposes of security and the prevention "
    "and detection of crime.",
    "Opinions expressed in this email are those of the individual and not necessarily those of "
    "the force, unless stated otherwise.",
    "Information shared under Operation Encompass is provided for safeguarding purposes only and "
    "must not be forwarded outside the school's designated safeguarding team.",
    "Please consider the environment before printing this email.",
)


@dataclass(frozen=True, slots=True)
class Notice:
    """One invented message and what extraction should find in it."""

    raw: bytes
    received_at: datetime
    child_name: str
    police_reference: str


def _name(rng: random.Random) -> tuple[str, str]:
    return rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)


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
    return "\n".join(lines)


def _dob(rng: random.Random) -> str:
    day, month, year = rng.randint(1, 28), rng.randint(1, 12), rng.randint(2011, 2021)
    return rng.choice(
        (
            f"{day:02d}/{month:02d}/{year}",
            f"{day:02d}-{month:02d}-{year}",
            f"{day:02d}.{month:02d}.{year}",
            f"{day} {_MONTHS[month - 1]} {year}",
            f"{year}-{month:02d}-{day:02d}",
        )
    )


def _incident_time(rng: random.Random, at: datetime) -> str:
    hour12 = at.hour % 12 or 12
    meridiem = "pm" if at.hour >= 12 else "am"
    return rng.choice(
        (
            f"{at:%d/%m/%Y %H:%M}",
            f"{at.day} {_MONTHS[at.month - 1]} {at.year} at {at:%H%M} hrs",
            f"{at:%d.%m.%Y} {hour12}.{at:%M}{meridiem}",
            f"{at:%d-%b-%Y} {at:%H:%M}",
        )
    )


def _fields(
    rng: random.Random, number: int, at: datetime, first: str, last: str
) -> tuple[list[tuple[str, str]], str]:
    """The notice's labelled rows, in one of the forms forces use, and its police reference."""
    reference = rng.choice(
        (
            f"44/{100000 + number}/{at.year % 100}",
            f"EXP/{200000 + number}/{at.year % 100}",
            f"IVC-{at.year % 100}-{300000 + number}",
        )
    )
    present = rng.choice(("Yes - in the house at the time", "Yes", "No - at a relative's"))
    location = f"{rng.randint(1, 120)} {rng.choice(STREETS)}, Exampletown"
    welfare = rng.choice(("Yes, officers spoke with the child", "Yes", "No - child asleep"))
    school = rng.choice(_SCHOOLS)
    when = _incident_time(rng, at)
    if rng.random() < 0.5:
        rows = [
            ("Child's Name", f"{first} {last}"),
            ("DOB", _dob(rng)),
            ("School", school),
            ("Date/Time of Incident", when),
            ("Occurrence Number", reference),
        ]
    else:
        rows = [
            ("Surname", last.upper()),
            ("Forename", first),
            ("D.O.B.", _dob(rng)),
            ("Name of school", school),
            ("Date of incident", when),
            ("Incident ref", reference),
        ]
    rows += [
        ("Child present", present),
        ("Incident location", location),
        ("Voice of the child", rng.choice(_VOICES)),
        ("Welfare check", welfare),
    ]
    return rows, reference


def _pdf_like(rng: random.Random, reference: str) -> bytes:
    stream = rng.randbytes(rng.randint(1_200, 2_400))
    return (
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
        b"2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n"
        b"3 0 obj\n<< /Type /Page /Parent 2 0 R /Contents 4 0 R >>\nendobj\n"
        + f"4 0 obj\n<< /Length {len(stream)} /Title ({reference}) >>\nstream\n".encode()
        + stream
        + b"\nendstream\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
    )


def make_notice(rng: random.Random, number: int, received: datetime) -> Notice:
    """One invented Encompass notice as RFC 822 bytes (CRLF), about 10 KB."""
    first, last = _name(rng)
    incident_at = received - timedelta(minutes=rng.randint(20, 600))
    rows, reference = _fields(rng, number, incident_at, first, last)
    force, local = rng.choice(_FORCES)
    sender = f"{local}@{POLICE_DOMAIN}"
    narrative = [" ".join(rng.sample(_SENTENCES, rng.randint(3, 5))) for _ in range(3)]
    next_line = rng.random() < 0.25  # the label alone on its line, the value on the next

    plain_rows = "\n".join(
        f"{label}\n{value}\n" if next_line else f"{label}: {value}" for label, value in rows
    )
    plain = (
        "OPERATION ENCOMPASS - NOTIFICATION TO SCHOOL\n\n"
        f"{plain_rows}\n\n" + "\n\n".join(_wrap(p) for p in narrative) + "\n\n"
        f"Officer in case: PC {rng.randint(1000, 9999)} {' '.join(_name(rng))}, {force}\n"
    )
    table = "".join(f"<tr><td>{label}</td><td>{value}</td></tr>\n" for label, value in rows)
    html = (
        "<html><head><style>td { padding: 2px 8px; }</style></head><body>\n"
        "<h2>Operation Encompass - notification to school</h2>\n"
        f"<table>\n{table}</table>\n" + "".join(f"<p>{p}</p>\n" for p in narrative)
    )
    shape = rng.choices(("plain", "alternative", "html"), weights=(40, 50, 10))[0]
    attachment = _pdf_like(rng, reference) if rng.random() < 0.10 else None

    # Pad with the force's confidentiality footer until the message is about 10 KB.
    size = 2_000 + len(plain) * (shape != "html") + len(html) * (shape != "plain")
    size += len(attachment) * 4 // 3 if attachment else 0
    plain_footer: list[str] = []
    html_footer: list[str] = []
    while size < RAW_TARGET_BYTES:
        text = rng.choice(_FOOTER)
        if shape != "html":
            plain_footer.append(_wrap(text))
            size += len(text) + 2
        if shape != "plain":
            html_footer.append(f'<p style="font-size:8pt;color:#666666">{text}</p>')
            size += len(text) + 44
    plain += "\n" + "\n\n".join(plain_footer) + "\n"
    html += "\n".join(html_footer) + "\n</body></html>\n"

    def text_part(subtype: str, body: str) -> str:
        if subtype == "html" and rng.random() < 0.4:
            encoded = quopri.encodestring(body.encode()).decode("ascii")
            return (
                "Content-Type: text/html; charset=utf-8\n"
                f"Content-Transfer-Encoding: quoted-printable\n\n{encoded}"
            )
        return (
            f"Content-Type: text/{subtype}; charset=utf-8\n"
            f"Content-Transfer-Encoding: 8bit\n\n{body}"
        )

    if shape == "plain":
        body_part = text_part("plain", plain)
    elif shape == "html":
        body_part = text_part("html", html)
    else:
        inner = f"=_alt_{rng.getrandbits(64):016x}"
        body_part = (
            f'Content-Type: multipart/alternative; boundary="{inner}"\n\n'
            f"--{inner}\n{text_part('plain', plain)}\n"
            f"--{inner}\n{text_part('html', html)}\n--{inner}--\n"
        )
    if attachment is not None:
        outer = f"=_mix_{rng.getrandbits(64):016x}"
        name = f"Encompass_{reference.replace('/', '-')}.pdf"
        body_part = (
            f'Content-Type: multipart/mixed; boundary="{outer}"\n\n'
            f"This is a multi-part message in MIME format.\n\n--{outer}\n{body_part}\n"
            f'--{outer}\nContent-Type: application/pdf; name="{name}"\n'
            f'Content-Disposition: attachment; filename="{name}"\n'
            "Content-Transfer-Encoding: base64\n\n"
            f"{base64.encodebytes(attachment).decode('ascii')}--{outer}--\n"
        )

    hops = "".join(
        f"Received: from relay{hop}.{POLICE_DOMAIN} (relay{hop}.{POLICE_DOMAIN} "
        f"[192.0.2.{hop + 10}])\n\tby mx{hop}.example.org with ESMTPS id "
        f"{rng.getrandbits(48):012x}\n\tfor <dsl@school.example.org>; "
        f"{received:%a, %d %b %Y %H:%M:%S} +0000\n"
        for hop in range(1, 4)
    )
    subject = rng.choice(
        (
            f"OPERATION ENCOMPASS NOTIFICATION - Occurrence {reference}",
            f"OFFICIAL-SENSITIVE: Operation Encompass notification ref {reference}",
            "Operation Encompass notification for your school",
        )
    )
    raw = (
        f"Return-Path: <{sender}>\n{hops}"
        f"Authentication-Results: {AUTHSERV_ID}; spf=pass smtp.mailfrom={POLICE_DOMAIN};\n"
        f"\tdkim=pass header.d={POLICE_DOMAIN}; dmarc=pass header.from={POLICE_DOMAIN}\n"
        f"DKIM-Signature: v=1; a=rsa-sha256; d={POLICE_DOMAIN}; s=sel1;\n"
        f"\tbh={base64.b64encode(rng.randbytes(32)).decode()};\n"
        f"\tb={base64.b64encode(rng.randbytes(128)).decode()}\n"
        f'From: "{force} Encompass" <{sender}>\n'
        "To: Designated Safeguarding Lead <dsl@school.example.org>\n"
        f"Subject: {subject}\n"
        f"Date: {received:%a, %d %b %Y %H:%M:%S} +0000\n"
        f"Message-ID: <enc-{number:06d}.{rng.getrandbits(64):016x}@{POLICE_DOMAIN}>\n"
        "MIME-Version: 1.0\n"
        f"{body_part}"
    )
    return Notice(raw.replace("\n", "\r\n").encode(), received, f"{first} {last}", reference)


def make_notices(count: int) -> list[Notice]:
    rng = random.Random(SEED)
    base = datetime(2026, 11, 22, 21, 55, tzinfo=UTC)
    return [make_notice(rng, n, base - timedelta(minutes=3 * (count - n))) for n in range(count)]


def _load() -> str:
    """Other work on the box skews every figure here: say how busy it was."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def report(label: str, value: str) -> None:
    print(f"  {label:<48} {value}", flush=True)


# ----- the IMAP side (blocking; run before the event loop or in a thread) -------------------


def fill_inbox(server: Dovecot, notices: Sequence[Notice]) -> float:
    """APPEND every notice to INBOX over one connection (MULTIAPPEND when offered)."""
    start = time.perf_counter()
    with server.connect(timeout=60) as imap:
        if b"MULTIAPPEND" in imap.capabilities():
            for first in range(0, len(notices), APPEND_CHUNK):
                chunk = notices[first : first + APPEND_CHUNK]
                imap.multiappend("INBOX", [{"msg": n.raw, "date": n.received_at} for n in chunk])
        else:
            for notice in notices:
                imap.append("INBOX", notice.raw, msg_time=notice.received_at)
        status = imap.folder_status("INBOX", [b"MESSAGES", b"UNSEEN"])
    if status[b"MESSAGES"] != len(notices) or status[b"UNSEEN"] != len(notices):
        raise SystemExit(f"INBOX holds {status} after appending {len(notices)} messages")
    return time.perf_counter() - start


def fetch_floor(server: Dovecot, expected: int) -> float:
    """Messages/s for a bare IMAPClient fetching the folder the way the adapter does."""
    start = time.perf_counter()
    with server.connect(timeout=60) as imap:
        imap.select_folder("INBOX", readonly=True)
        uids = sorted(imap.search(["UID", "1:*"]))
        fetched = 0
        for first in range(0, len(uids), BATCH):
            chunk = uids[first : first + BATCH]
            data = imap.fetch(chunk, [b"BODY.PEEK[]", b"INTERNALDATE"])
            fetched += sum(1 for item in data.values() if b"BODY[]" in item)
    elapsed = time.perf_counter() - start
    if fetched != expected:
        raise SystemExit(f"the floor fetch got {fetched} of {expected} messages")
    return fetched / elapsed


def unseen(imap: IMAPClient) -> int:
    return len(imap.search(["UNSEEN"]))


# ----- the sgalert side ---------------------------------------------------------------------


def configure_logs(path: Path | None) -> None:
    """As ``sgalert serve`` does (JSON lines at INFO), but to a file; or nothing at all."""
    logger = logging.getLogger("sgalert")
    if path is None:
        logger.handlers[:] = [logging.NullHandler()]
        logger.setLevel(logging.WARNING)
    else:
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(JsonLines())
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
    logger.propagate = False


async def stop_watching(task: asyncio.Task[None], pool: ThreadPoolExecutor) -> None:
    """Cancel the watcher, then wait for its worker thread to leave IDLE and log out.

    Cancelling ``inbox.run`` only tells the adapter's thread to stop; it notices within about a
    second (its IDLE check interval). The thread lives in ``pool``, the loop's default executor
    while watching: swap in a fresh one, then wait for ``pool`` to wind down.
    """
    task.cancel()
    # A watcher that already failed has had its error raised by the caller: don't raise it twice.
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor())
    await asyncio.wait_for(asyncio.to_thread(pool.shutdown, wait=True), 30)


async def run_sgalert(
    server: Dovecot, notices: Sequence[Notice], parent: Path | None, logs: bool
) -> tuple[float, dict[str, str]]:
    expected = len(notices)
    with tempfile.TemporaryDirectory(prefix="sgalert-bench-ingest-", dir=parent) as tmp:
        root = Path(tmp)
        config_path = root / "sgalert.toml"
        config_path.write_text(render_template("Bench School"), encoding="utf-8")
        log_path = root / "serve.log" if logs else None
        configure_logs(log_path)
        store = await Store.open(root / "sgalert.db", create=True)
        service = CaseService(store, load_config(config_path))
        checker: IMAPClient | None = None
        task: asyncio.Task[None] | None = None
        ingestor: Ingestor | None = None
        pool = ThreadPoolExecutor()  # the watcher's thread, and ingest's prepare and seal
        asyncio.get_running_loop().set_default_executor(pool)
        try:
            adder = None  # the first person bootstraps the store and adds the others
            for name, email, role in PEOPLE:
                if adder is None:
                    _, groups = await add_first_person(
                        store,
                        name=name,
                        email=email,
                        role=role,
                        passphrase=PASSPHRASE,
                        kdf=TEST_KDF,
                    )
                    adder = await unlock(store, email, PASSPHRASE)
                else:
                    _, groups = await add_person(
                        store, by=adder, name=name, email=email, role=role,
                        passphrase=PASSPHRASE, kdf=TEST_KDF,
                    )  # fmt: skip
                if groups.get(role.value) != "active":
                    raise SystemExit(f"{email} did not get the {role.value} key: {groups}")
            report("people added (dsl, deputy, head)", "test KDF: unlocking is not measured")

            source = SourceConfig(
                name=SOURCE_NAME,
                type=Source.ENCOMPASS,
                kind="imap",
                options={
                    "host": server.host,
                    "port": server.port,
                    "security": "none",
                    "username": server.user,
                    "password_env": PASSWORD_ENV,
                },
                authserv_id=AUTHSERV_ID,
                sender_domains=(POLICE_DOMAIN,),
            )
            assert service.config is not None
            ingestor = Ingestor(service.new_cases, service.config)
            await ingestor.warm()  # as `sgalert serve` does when it starts watching
            deliver = make_deliver(ingestor, SourceRules.from_config(source))
            monitor = SourceMonitor(service.store, source)
            inbox = create(source, root)
            checker = watching = await asyncio.to_thread(server.connect, timeout=60)
            await asyncio.to_thread(watching.select_folder, "INBOX", readonly=True)

            start = time.perf_counter()
            task = asyncio.create_task(inbox.run(deliver, None, monitor), name=SOURCE_NAME)
            cases = 0
            while True:
                await asyncio.sleep(POLL_SECONDS)
                if task.done():
                    task.result()  # raises what stopped the watcher
                    raise SystemExit("the IMAP watcher stopped before the backlog was drained")
                if time.perf_counter() - start > DEADLINE_SECONDS:
                    raise SystemExit(f"only {cases} of {expected} cases after {DEADLINE_SECONDS}s")
                if cases < expected:
                    rows = await service.store.fetchall("SELECT count(*) FROM cases")
                    cases = int(rows[0][0])
                if cases >= expected and await asyncio.to_thread(unseen, watching) == 0:
                    break
            elapsed = time.perf_counter() - start
            rate = expected / elapsed
            report(
                f"cases stored and marked \\Seen ({expected:,})",
                f"{elapsed:.2f} s, {rate:,.0f} cases/s",
            )
            if monitor.failing_since is not None or monitor.alerted:
                raise SystemExit(f"the source reported trouble: {monitor.last_reason}")
            _close_quietly(watching)
            checker = None
            await stop_watching(task, pool)
            task = None

            checks = await verify(service, notices)
            if log_path is not None:
                with log_path.open(encoding="utf-8") as lines:
                    checks["log lines (JSON, INFO)"] = f"{sum(1 for _ in lines):,}"
            size_mb = sum(p.stat().st_size for p in root.glob("sgalert.db*")) / 2**20
            checks["store size (db + wal)"] = f"{size_mb:,.0f} MB"
            return rate, checks
        finally:
            try:
                if checker is not None:
                    _close_quietly(checker)
                if task is not None:
                    await stop_watching(task, pool)
            finally:
                if ingestor is not None:
                    ingestor.close()
                await service.close()  # its SQLite thread would keep the process alive
                configure_logs(None)


def _close_quietly(imap: IMAPClient) -> None:
    with contextlib.suppress(Exception):
        imap.logout()


async def verify(service: CaseService, notices: Sequence[Notice]) -> dict[str, str]:
    """Exactly one case per message, a sample with the right facts, a sound audit chain."""
    checks: dict[str, str] = {}
    (row,) = await service.store.fetchall("SELECT count(*) FROM cases")
    if int(row[0]) != len(notices):
        raise SystemExit(f"{row[0]} cases for {len(notices)} messages")
    checks["cases"] = f"{int(row[0]):,} (one per message)"
    flags = Counter(
        str(flag)
        for (text,) in await service.store.fetchall("SELECT flags FROM cases")
        for flag in json.loads(text)
    )
    # Reported, not fatal: extraction rules evolve, and the sample below checks the facts.
    checks["flags (expected: none)"] = (
        ", ".join(f"{flag} {n:,}" for flag, n in flags.most_common()) if flags else "none"
    )
    by_reference = {notice.police_reference: notice for notice in notices}
    rows = await service.store.fetchall("SELECT ref FROM cases")
    refs = random.Random(SEED).sample([str(r[0]) for r in rows], min(SAMPLE_OPENS, len(rows)))
    identity = await service.unlock(PEOPLE[0][1], PASSPHRASE)
    views = await service.open_cases(identity, refs)
    for view in views:
        notice = by_reference.get(str(view.facts.get("police_reference")))
        if notice is None or view.facts.get("child_name", "").lower() != notice.child_name.lower():
            raise SystemExit(f"case {view.summary.ref} does not hold its notice's facts")
    if len(views) != len(refs):
        raise SystemExit(f"the DSL could open {len(views)} of {len(refs)} sampled cases")
    checks["sample decrypted by the DSL"] = f"{len(views)} cases, facts match their notices"
    checks["audit chain verified"] = f"{await service.verify_audit():,} entries"
    return checks


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=MESSAGES, help="backlog size")
    parser.add_argument(
        "--dir", type=Path, default=None, help="parent of the temporary store (default: system)"
    )
    parser.add_argument("--no-logs", action="store_true", help="do not log each case")
    args = parser.parse_args()
    count: int = args.messages
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # so a killed run still cleans up

    print("sgalert IMAP ingest benchmark", flush=True)
    report("python", f"{platform.python_version()} ({sys.executable})")
    report("platform", f"{platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs")
    report("sqlite / imapclient", f"{sqlite3.sqlite_version} / {imapclient.__version__}")
    report("store", f"WAL, synchronous=FULL, one fsync per batch of {BATCH}")
    report("load average (1, 5, 15 min) at start", _load())

    start = time.perf_counter()
    notices = make_notices(count)
    sizes = [len(n.raw) for n in notices]
    report(
        "messages built (not timed below)",
        f"{count:,}, {statistics.mean(sizes) / 1024:.1f} KB average "
        f"({min(sizes) / 1024:.1f}-{max(sizes) / 1024:.1f}), {time.perf_counter() - start:.1f} s",
    )

    server = Dovecot(user="dsl-inbox")
    os.environ[PASSWORD_ENV] = server.password
    try:
        server.start()
        report("dovecot", f"{'.'.join(map(str, server.version))} on {server.host}:{server.port}")
        append_s = fill_inbox(server, notices)
        report("appended to INBOX (setup, not a figure)", f"{append_s:.1f} s")

        print("results", flush=True)
        floors = [fetch_floor(server, count) for _ in range(2)]
        floor = max(floors)
        report(
            f"floor: bare FETCH BODY.PEEK[] by {BATCH}",
            f"{floor:,.0f} messages/s (best of {', '.join(f'{f:,.0f}' for f in floors)})",
        )
        rate, checks = asyncio.run(run_sgalert(server, notices, args.dir, not args.no_logs))
        report("ratio (cases/s over floor)", f"{rate / floor:.2f}")
        for label, value in checks.items():
            report(label, value)
        report("load average (1, 5, 15 min) at end", _load())
    finally:
        os.environ.pop(PASSWORD_ENV, None)
        server.close()

    print(
        json.dumps(
            {
                "cases_per_s": round(rate),
                "floor_per_s": round(floor),
                "ratio": round(rate / floor, 3),
                "messages": count,
            }
        )
    )


if __name__ == "__main__":
    main()
