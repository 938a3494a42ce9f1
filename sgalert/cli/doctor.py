"""``sgalert doctor``: is this installation ready to page someone tonight?

``config check`` reads the configuration; the doctor also tries everything for real: it logs in
to each mailbox and connects to each channel (through the adapters' optional ``probe``, which
changes nothing: no message is read or marked, no page is sent), looks for gaps in the next 14
days of the rota, checks the calendar, the clock, the store's integrity and audit chain, free
disk space, who may read the workspace and the secret files, and the engine's heartbeat.

One line per check, ``ok``, ``warn`` or ``FAIL``, each saying what to do when it is not ok, and
never any personal data: hosts, folders, option keys, counts and times only (staff addresses
appear only where the configuration itself names them). Any ``FAIL`` exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import math
import os
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sgalert.cli import config_check
from sgalert.cli.keys import trust_line
from sgalert.cli.spec import Argument, Command, Entry
from sgalert.clock import in_words, utcnow
from sgalert.config import Config, load_config
from sgalert.errors import AuditChainBroken, InvalidInput, SgalertError, StoreUnwritable
from sgalert.ports import ProbeReport, inbox_factory, notifier_factory
from sgalert.records import audit
from sgalert.records.keytrust import KeyTrust, group_key_statuses
from sgalert.records.store import Store
from sgalert.text import printable
from sgalert.workspace import PRIVATE_DIR, PRIVATE_FILE, Workspace, wider_than

ROTA_DAYS = 14
PROBE_TIMEOUT = 20.0
LONGEST_TIMEOUT = 600.0
DISK_FAIL_BYTES = 200 * 1024 * 1024
DISK_WARN_BYTES = 1024 * 1024 * 1024
# Option keys that name a file holding a secret (a CA bundle is public, so not ca_file).
SECRET_FILE_KEYS = (
    "password_file",
    "url_file",
    "client_secret_file",
    "certificate_file",
    "certificate_passphrase_file",
)


class Outcome(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's verdict. ``text`` says what was found and, unless ok, what to do."""

    outcome: Outcome
    check: str
    text: str

    def line(self) -> str:
        return printable(f"{self.outcome.value:<4} {self.check}: {self.text}", keep_newlines=False)


def ok(check: str, text: str) -> Finding:
    return Finding(Outcome.OK, check, text)


def warn(check: str, text: str) -> Finding:
    return Finding(Outcome.WARN, check, text)


def fail(check: str, text: str) -> Finding:
    return Finding(Outcome.FAIL, check, text)


# ----- the configuration ---------------------------------------------------------------------


def config_findings(problems: list[config_check.Problem], config: Config) -> list[Finding]:
    """``config check``'s findings, calendar aside (it has its own line)."""
    found = [
        (fail if p.severity is config_check.Severity.ERROR else warn)(
            "config", f"{p.key}: {p.text}"
        )
        for p in problems
        if not p.key.startswith("calendar")
    ]
    if not any(f.outcome is Outcome.FAIL for f in found):
        found.insert(
            0,
            ok(
                "config",
                f"{config.path} valid ({len(config.sources)} source(s),"
                f" {len(config.channels)} channel(s))",
            ),
        )
    return found


def calendar_findings(config: Config, now: datetime) -> list[Finding]:
    problems = config_check.check_calendar(config, now)
    if not problems:
        last = max((term.end for term in config.calendar.terms), default=None)
        return [ok("calendar", f"terms configured until {last}")]
    return [
        (fail if p.severity is config_check.Severity.ERROR else warn)("calendar", p.text)
        for p in problems
    ]


# ----- mailboxes and channels, tried for real ------------------------------------------------


async def _probe(check: str, adapter: object, seconds: float) -> Finding:
    probe: Callable[[], Awaitable[ProbeReport]] | None = getattr(adapter, "probe", None)
    if probe is None:
        return warn(check, "not tried: this kind of adapter cannot be tried by the doctor yet")
    try:
        async with asyncio.timeout(seconds):
            report = await probe()
    except TimeoutError:
        return fail(check, f"no answer within {seconds:g}s; check the host, port and firewall")
    except SgalertError as exc:
        return fail(check, str(exc))
    except Exception as exc:  # an adapter's own bug is still one line
        return fail(check, f"the adapter failed ({type(exc).__name__}); run with --debug")
    if report.warning:
        return warn(check, f"{report.detail}, but {report.warning}")
    return ok(check, report.detail)


async def source_findings(config: Config, root: Path, seconds: float) -> list[Finding]:
    async def one(source: Any) -> Finding:
        check = f"source {source.name} ({source.kind})"
        try:
            inbox = inbox_factory(source.kind)(source, root)
        except Exception:
            return fail(check, "not tried: its options are wrong (see the config lines)")
        return await _probe(check, inbox, seconds)

    return list(await asyncio.gather(*(one(s) for s in config.sources)))


async def channel_findings(config: Config, root: Path, seconds: float) -> list[Finding]:
    async def one(channel: Any) -> Finding:
        check = f"channel {channel.name} ({channel.kind})"
        try:
            notifier = notifier_factory(channel.kind)(channel.name, channel.options, root)
        except Exception:
            return fail(check, "not tried: its options are wrong (see the config lines)")
        try:
            return await _probe(check, notifier, seconds)
        finally:
            await notifier.close()

    return list(await asyncio.gather(*(one(c) for c in config.channels)))


# ----- cover -----------------------------------------------------------------------------------


async def rota_findings(store: Store, config: Config, now: datetime) -> list[Finding]:
    from sgalert.desk.service import CaseService
    from sgalert.routing.duty import load_rota

    view = await load_rota(CaseService(store, config), since=now)
    gaps = view.gaps(now, ROTA_DAYS)
    found: list[Finding] = []
    unknown = view.unknown_people()
    if unknown:
        found.append(
            fail(
                "rota",
                f"the rota names {len(unknown)} address(es) that are not current people; run"
                " `sgalert rota check`, then fix [rota] or `sgalert user add`",
            )
        )
    nobody = [g for g in gaps if g.covered_by is None]
    zone = config.timezone
    if nobody:
        found.append(
            fail(
                "rota",
                f"{len(nobody)} stretch(es) in the next {ROTA_DAYS} days with nobody on duty,"
                f" the first {nobody[0].describe(zone)}; add shifts or covers"
                " (`sgalert rota cover`), or a [rota] fallback",
            )
        )
    elif gaps:
        found.append(
            warn(
                "rota",
                f"{len(gaps)} gap(s) in the next {ROTA_DAYS} days covered only by the fallback,"
                f" the first {gaps[0].describe(zone)}; `sgalert rota check` lists them",
            )
        )
    if not found:
        found.append(ok("rota", f"someone is on duty every minute of the next {ROTA_DAYS} days"))
    return found


# ----- the host --------------------------------------------------------------------------------


def _ntp_synchronised() -> bool | None:
    """systemd's view of clock synchronisation, or None where it cannot be asked."""
    if shutil.which("timedatectl") is None:
        return None
    try:
        answer = subprocess.run(
            ["timedatectl", "show", "--property=NTPSynchronized", "--value"],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = answer.stdout.strip()
    return {"yes": True, "no": False}.get(value) if answer.returncode == 0 else None


def clock_findings(config: Config, now: datetime, heartbeat: datetime | None) -> list[Finding]:
    found: list[Finding] = []
    if heartbeat is not None and heartbeat - now > timedelta(minutes=1):
        found.append(
            fail(
                "clock",
                f"the engine's last heartbeat is {int((heartbeat - now).total_seconds())}s in"
                " the future: this host's clock went back; fix its time (NTP) before trusting"
                " deadlines",
            )
        )
    synced = _ntp_synchronised()
    what = f"{in_words(now, config.timezone, year=True, zone_name=True)} in {config.timezone.key}"
    if synced is False:
        found.append(
            warn(
                "clock",
                f"{what}, not synchronised; turn NTP on (`timedatectl set-ntp true`): deadlines"
                " and escalations follow this clock",
            )
        )
    elif not found:
        state = "synchronised" if synced else "synchronisation not known (no timedatectl)"
        found.append(ok("clock", f"{what}, {state}"))
    return found


def disk_findings(path: Path) -> list[Finding]:
    usage = shutil.disk_usage(path)
    free_mib = usage.free // (1024 * 1024)
    what = f"{free_mib} MiB free where the store is ({path})"
    if usage.free < DISK_FAIL_BYTES:
        return [fail("disk", f"{what}; free space now: a full disk stops cases being stored")]
    if usage.free < DISK_WARN_BYTES or usage.free < usage.total // 20:
        return [warn("disk", f"{what}; free some space soon")]
    return [ok("disk", what)]


# The SQLite releases that carry the fix for the WAL-reset bug: 3.51.3 and later, and the
# backports 3.50.7 and 3.44.6 (https://sqlite.org/wal.html#walresetbug). Every release with WAL
# (3.7.0) before them has the bug.
SQLITE_FIXED = ((3, 51, 3), (3, 50, 7), (3, 44, 6))


def sqlite_findings(version: tuple[int, int, int] = sqlite3.sqlite_version_info) -> list[Finding]:
    """Whether the SQLite library this Python uses has the WAL-reset bug: a rare race between
    connections writing and checkpointing one WAL store (the engine, desks and commands all do)
    that can lose committed writes or corrupt the store. Only a newer library fixes it."""
    shown = ".".join(str(part) for part in version)
    newest, *backports = SQLITE_FIXED
    if version >= newest or any(version[:2] == b[:2] and version >= b for b in backports):
        return [ok("sqlite", f"SQLite {shown}, which has the fix for the WAL-reset bug")]
    return [
        warn(
            "sqlite",
            f"SQLite {shown} has the WAL-reset bug (https://sqlite.org/wal.html#walresetbug): a"
            " rare race between processes writing and checkpointing the store can corrupt it;"
            " upgrade the SQLite library Python uses to 3.51.3 or later (or 3.50.7, 3.44.6), or"
            " check that your distribution's build carries the fix",
        )
    ]


def _mode(path: Path) -> int | None:
    try:
        return path.lstat().st_mode
    except OSError:
        return None


def permission_findings(workspace: Workspace, config: Config | None) -> list[Finding]:
    """The workspace folders 0700, the store and config 0600, every secret file 0600 (FAIL
    when wider); anything else under the workspace wider than that is a warning."""
    found: list[Finding] = []
    tops = sorted({workspace.config_path.parent, workspace.store_path.parent})
    must: list[tuple[Path, int]] = [(top, PRIVATE_DIR) for top in tops]
    store = workspace.store_path
    for path in (workspace.config_path, store, Path(f"{store}-wal"), Path(f"{store}-shm")):
        must.append((path, PRIVATE_FILE))
    secrets: list[Path] = []
    if config is not None:
        for options in [s.options for s in config.sources] + [c.options for c in config.channels]:
            for key in SECRET_FILE_KEYS:
                if isinstance(options.get(key), str):
                    secret = Path(options[key]).expanduser()
                    secrets.append(secret if secret.is_absolute() else workspace.root / secret)
    must += [(secret, PRIVATE_FILE) for secret in secrets]
    checked: set[Path] = set()
    for path, allowed in must:
        mode = _mode(path)
        checked.add(path)
        if mode is None:
            continue
        if wider_than(mode, allowed):
            fix = "chmod 700" if allowed == PRIVATE_DIR else "chmod 600"
            found.append(
                fail(
                    "permissions",
                    f"{path} is mode {stat.S_IMODE(mode):04o}, readable by others; run"
                    f" `{fix} {path}`",
                )
            )
        elif path.exists() and path.stat().st_uid != os.getuid():
            found.append(
                warn("permissions", f"{path} is owned by another user; chown it to this one")
            )
    wider = 0
    example: Path | None = None
    for top in tops:
        for folder, dirs, files in os.walk(top):
            for name in [*dirs, *files]:
                path = Path(folder, name)
                mode = _mode(path)
                if path in checked or mode is None or stat.S_ISLNK(mode):
                    continue
                if wider_than(mode, PRIVATE_DIR if stat.S_ISDIR(mode) else PRIVATE_FILE):
                    wider += 1
                    example = example or path
    if example is not None:
        found.append(
            warn(
                "permissions",
                f"{wider} file(s) or folder(s) in the workspace are open to other users, e.g."
                f" {example}; run `chmod -R go= {' '.join(str(t) for t in tops)}`",
            )
        )
    if not found:
        what = f" and {len(secrets)} secret file(s)" if secrets else ""
        found.append(ok("permissions", f"workspace{what} readable by this user only"))
    return found


# ----- the store --------------------------------------------------------------------------------


async def store_findings(store: Store) -> list[Finding]:
    rows = await store.fetchall("PRAGMA integrity_check")
    said = [str(row[0]) for row in rows]
    if said != ["ok"]:
        return [
            fail(
                "store",
                f"integrity check found {len(said)} problem(s); stop the engine, copy the store"
                " aside and restore the latest backup (`sgalert restore`)",
            )
        ]
    return [ok("store", f"{store.path} passes SQLite's integrity check")]


async def audit_findings(store: Store) -> list[Finding]:
    try:
        async with store.read() as db:
            count = await audit.verify(db)
        keys = await group_key_statuses(db)
    except AuditChainBroken as exc:
        return [fail("audit", f"{exc}; keep the store as evidence and tell the head")]
    found = [ok("audit", f"chain intact ({count} entries), every case matches its manifest")]
    for status in keys:
        if status.trust is KeyTrust.LEGACY:
            found.append(warn("keys", trust_line(status)))
        elif status.trust is KeyTrust.UNTRUSTED:
            found.append(fail("keys", f"{trust_line(status)}; keep the store and tell the head"))
    return found


async def engine_findings(store: Store, now: datetime) -> tuple[list[Finding], datetime | None]:
    from sgalert.desk.views import engine_lease

    lease = await engine_lease(store)
    if lease is None:
        return [
            fail(
                "engine",
                "not running (no heartbeat): start it (`systemctl start sgalert`, or"
                " `sgalert serve`)",
            )
        ], None
    age = int((now - lease.heartbeat_at).total_seconds())
    if lease.lapsed(now):
        return [
            fail(
                "engine",
                f"last heartbeat {age}s ago: stopped or hung; check `journalctl -u sgalert`"
                " and restart it",
            )
        ], lease.heartbeat_at
    return [ok("engine", f"running, heartbeat {max(age, 0)}s ago")], lease.heartbeat_at


# ----- all of it --------------------------------------------------------------------------------


async def examine(
    workspace: Workspace, *, now: datetime | None = None, seconds: float = PROBE_TIMEOUT
) -> list[Finding]:
    """Every check, in the order an IT person would fix them."""
    moment = now or utcnow()
    problem = workspace.not_ready()
    if problem is not None:
        return [fail("workspace", problem)]
    config: Config | None = None
    found: list[Finding] = []
    try:
        config = load_config(workspace.config_path)
    except SgalertError as exc:
        found.append(fail("config", str(exc)))
    try:
        store = await Store.open(workspace.store_path)
    except StoreUnwritable as exc:
        return [*found, fail("store", str(exc)), *permission_findings(workspace, config)]
    except SgalertError as exc:
        found.append(fail("store", f"{exc}; restore the latest backup (`sgalert restore`)"))
        return found + permission_findings(workspace, config)
    async with store:
        engine, heartbeat = await engine_findings(store, moment)
        if config is not None:
            problems = await config_check.check_workspace(config, workspace.root, store, moment)
            found += config_findings(problems, config)
            sources, channels = await asyncio.gather(
                source_findings(config, workspace.root, seconds),
                channel_findings(config, workspace.root, seconds),
            )
            found += sources + channels
            found += await rota_findings(store, config, moment)
            found += calendar_findings(config, moment)
            found += clock_findings(config, moment, heartbeat)
        found += await store_findings(store)
        found += await audit_findings(store)
    found += disk_findings(workspace.store_path.parent)
    found += sqlite_findings()
    found += permission_findings(workspace, config)
    return found + engine


# ----- the command ----------------------------------------------------------------------------


class _Runner(Protocol):
    args: argparse.Namespace
    workspace: Workspace


async def run(runner: _Runner) -> int:
    seconds = runner.args.timeout
    if not (math.isfinite(seconds) and 0 < seconds <= LONGEST_TIMEOUT):
        # 0, a negative or nan failed every probe as 'no answer; check the firewall'.
        raise InvalidInput(
            f"--timeout {runner.args.timeout:g}: give the seconds each mailbox or channel may"
            f" take, more than 0 and at most {LONGEST_TIMEOUT:g}, e.g. --timeout {PROBE_TIMEOUT:g}"
        )
    found = await examine(runner.workspace, seconds=seconds)
    for finding in found:
        print(finding.line())
    failures = sum(f.outcome is Outcome.FAIL for f in found)
    warnings = sum(f.outcome is Outcome.WARN for f in found)
    if failures:
        print(f"{failures} check(s) failed, {warnings} warning(s): fix the FAIL lines above")
        return 1
    print(f"all {len(found)} checks passed" + (f", {warnings} warning(s)" if warnings else ""))
    return 0


COMMANDS: tuple[Entry, ...] = (
    Command(
        "doctor",
        "try every mailbox, channel and safeguard for real; one line each (exit 1 on a FAIL)",
        run,
        (
            Argument(
                "--timeout",
                type=float,
                default=PROBE_TIMEOUT,
                metavar="SECONDS",
                help=f"how long each mailbox or channel may take to answer"
                f" (default {PROBE_TIMEOUT:g})",
            ),
        ),
    ),
)
