"""Running the engine and watching it: ``serve`` turns mail into cases, ``status`` says in one
glance whether anything is wrong, ``held release`` lets a held message be tried again, and
``ingest`` turns one saved message file into a case by hand."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

from sgalert.cli.context import Context
from sgalert.cli.spec import AS_EMAIL, JSON, Argument, Command, Entry, Group, who_you_are
from sgalert.clock import iso, parse_iso
from sgalert.config import ParseLimits
from sgalert.errors import InvalidInput, StoreError
from sgalert.model import CaseState, Source

_READ_CHUNK = 1 << 20


async def status(ctx: Context) -> int:
    """The engine, open system alerts, failing channels and unacknowledged cases: one glance.

    The engine is judged against its lease (as the desk's banner is); a channel is failing
    as :func:`sgalert.desk.views.failing_channels` says. Either, or an open alert, exits 1.
    Cases, and alerts about them, are those the runner may see, as ``cases list`` lists them:
    without ``--as``, no whistleblowing case or allegation about the head (the core decides).
    """
    from sgalert.clock import utcnow
    from sgalert.intake.poison import held_messages

    async with await ctx.service() as service:
        viewer = await ctx.unlocked(service) if ctx.args.as_email else None
        lease = await service.engine_lease()
        alerts = await service.open_alerts(viewer)
        channels = await service.failing_channels(viewer)
        waiting = await service.list_cases(state=CaseState.NEW, viewer=viewer)
        held = await held_messages(service.store)
    now = utcnow()
    report: dict[str, Any] = {
        "engine": None,
        "alerts": alerts,
        "failing_channels": [
            {"channel": c.channel, "undelivered": c.undelivered, "since": iso(c.since)}
            for c in channels
        ],
        "unacknowledged": [c.ref for c in waiting],
        "held_messages": [
            {"key": h.key, "source": h.source_name, "error": h.error, "held_at": iso(h.held_at)}
            for h in held
        ],
    }
    if lease is not None:
        report["engine"] = {
            "holder": lease.holder,
            "heartbeat_at": iso(lease.heartbeat_at),
            "lease_expires_at": iso(lease.expires_at),
            "stale": lease.lapsed(now),
        }
    if ctx.args.json:
        print(json.dumps(report, indent=2))
    else:
        engine = report["engine"]
        if engine is None:
            print("engine: NOT RUNNING (start `sgalert serve`)")
        else:
            age = int((now - parse_iso(engine["heartbeat_at"])).total_seconds())
            state = "STALE" if engine["stale"] else "running"
            print(f"engine: {state} ({engine['holder']}, heartbeat {age}s ago)")
        for alert in alerts:
            if alert["kind"] == "rota-gap":  # raised now; its first gap is usually ahead
                first = alert.get("first_gap_from")
                gap = f"; first gap {first} to {alert['first_gap_to']}" if first else ""
                print(f"ALERT rota-gap: raised {alert['raised_at']}{gap}")
                continue
            since = alert.get("since") or alert["raised_at"]
            print(f"ALERT {alert['kind']}: {alert['source']} since {since}")
        for message in held:
            print(
                f"HELD unread in {message.source_name} since {iso(message.held_at)}"
                f" ({message.error}): {message.key}"
            )
        if held:
            print("  (deal with each in the mailbox, then `sgalert held release KEY --as EMAIL`)")
        print(
            f"unacknowledged cases: {len(waiting)}"
            + (f" ({', '.join(c.ref for c in waiting[:10])})" if waiting else "")
        )
        if viewer is None:
            print(
                "  (confidential cases, and alerts and pages about them, are shown only to those"
                " who may read them: add --as EMAIL)"
            )
        for channel in channels:
            print(
                f"CHANNEL FAILING {channel.channel}: {channel.undelivered} page(s) not"
                f" delivered, the oldest queued {iso(channel.since)}"
            )
    healthy = lease is not None and not lease.lapsed(now) and not alerts and not channels
    return 0 if healthy and not held else 1


async def held_release(ctx: Context) -> int:
    """Forget a held message once someone has dealt with it, so its mailbox may offer it
    again (it is then tried afresh); the source's alert is cleared when none is left."""
    from sgalert.intake.poison import release_held

    async with await ctx.service() as service:
        identity = await ctx.unlocked(service)
        released = await release_held(service.store, ctx.args.key, identity.email)
    print(f"released {released.key} ({released.source_name}); it will be tried again")
    return 0


def read_message_file(path: Path, limits: ParseLimits) -> bytes:
    """A message file's bytes, read no further than the config's size limit allows: a file or
    a pipe (``<(…)``); a device such as ``/dev/zero`` is refused before a byte is read, and
    anything longer than ``[ingest] max_message_mb`` is refused once a byte past it arrives."""
    cap = limits.max_message_bytes
    try:
        with path.open("rb", buffering=0) as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
                raise InvalidInput(f"{path}: not a message file (give a file saved as .eml)")
            chunks: list[bytes] = []
            size = 0
            while size <= cap and (chunk := handle.read(min(_READ_CHUNK, cap + 1 - size))):
                chunks.append(chunk)
                size += len(chunk)
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot be read ({exc.strerror})") from None
    if size > cap:
        raise InvalidInput(
            f"{path}: over the {cap >> 20} MB limit for a message ([ingest] max_message_mb in"
            " sgalert.toml); nothing was stored"
        )
    raw = b"".join(chunks)
    if not raw.strip():
        raise InvalidInput(f"{path}: empty, not a message (give a file saved as .eml)")
    return raw


async def ingest(ctx: Context) -> int:

    from sgalert.intake.ingest import Ingestor, SourceRules
    from sgalert.ports import Inbound
    from sgalert.records.store import is_store_file

    path = Path(ctx.args.file)
    source = Source(ctx.args.source)
    if is_store_file(ctx.workspace.store_path, path):
        # Reading it here would also drop this process's locks on the store (they are per
        # process, and closing any descriptor on the file drops them): never open it.
        raise InvalidInput(
            f"{path}: sgalert's own store, not a message (give a file saved as .eml)"
        )
    async with await ctx.service() as service:
        assert service.config is not None
        raw = await asyncio.to_thread(read_message_file, path, service.config.limits)
        ingestor = Ingestor(service.new_cases, service.config, workers=0)  # one file: in-process
        configured = [s for s in service.config.sources if s.type is source]
        rules = (
            SourceRules.from_config(configured[0])
            if len(configured) == 1
            else SourceRules(name="file", type=source)
        )
        (outcome,) = await ingestor.ingest([Inbound(raw=raw)], rules)
    if outcome.held:
        raise StoreError(
            f"{path.name} could be neither read nor quarantined, so nothing was stored;"
            " record it by hand with `sgalert case new`"
        )
    if ctx.args.json:
        print(
            json.dumps(
                {
                    "id": outcome.case_id,
                    "ref": outcome.ref,
                    "source": outcome.source.value,
                    "flags": list(outcome.flags),
                    "created": outcome.created,
                    "duplicate_of": outcome.duplicate_of,
                },
                indent=2,
            )
        )
        return 0
    flags = ", ".join(outcome.flags) or "none"
    if outcome.created:
        print(f"{outcome.ref} created from {path.name} (flags: {flags})")
        if outcome.duplicate_of:
            print(f"  same Message-ID as {outcome.duplicate_of}: flagged possible-duplicate")
    else:
        print(f"{path.name} is already case {outcome.ref}; nothing new created")
    return 0


async def serve(ctx: Context) -> int:
    import signal

    from sgalert import logs
    from sgalert.cli import config_check
    from sgalert.engine.serve import Engine

    logs.configure()
    log = logging.getLogger("sgalert.serve")
    async with await ctx.service() as service:
        assert service.config is not None
        # Options an adapter refuses are one line now, not a traceback from inside serving.
        config_check.refuse_to_serve(
            await config_check.adapter_problems(service.config, ctx.workspace.root),
            service.config.path,
        )
        engine = Engine(service, ctx.workspace.root)
        main = asyncio.current_task()
        assert main is not None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, main.cancel)
        log.info(
            "serving %d source(s) and %d channel(s) from %s",
            len(service.config.sources),
            len(engine.notifiers),
            ctx.workspace.root,
        )
        try:
            await engine.run()
        except asyncio.CancelledError:
            log.info("stopping: signal received")
        except ExceptionGroup as group:
            failed = _store_failure(group)
            if failed is None:
                raise
            # One line in the log, one on stderr, exit 1: systemd restarts the engine, and
            # `doctor` and the desk's banner show it stopped, where a traceback told nobody.
            log.error("stopping: %s", failed)
            raise failed from None
    return 0


def _store_failure(group: BaseExceptionGroup[Exception]) -> StoreError | None:
    """The first store failure that ended the engine's tasks, if one did."""
    found: BaseException | None = group.subgroup(StoreError)
    while isinstance(found, BaseExceptionGroup):
        found = found.exceptions[0]
    return found if isinstance(found, StoreError) else None


COMMANDS: tuple[Entry, ...] = (
    Command(
        "status",
        "engine, open alerts, failing channels, unacknowledged cases (exit 1 if unhealthy)",
        status,
        (
            JSON,
            Argument(
                "--as",
                dest="as_email",
                type=who_you_are,
                metavar="EMAIL",
                help="who you are (unlocked with your passphrase): counts and lists the"
                " confidential cases you may read too",
            ),
        ),
    ),
    Command(
        "serve", "watch the configured mailboxes and turn each notification into a case", serve
    ),
    Group(
        "held",
        "messages left unread because they could not even be quarantined",
        (
            Command(
                "release",
                "forget a held message (listed by `sgalert status`) so it is tried again",
                held_release,
                (
                    Argument("key", help="the message's mailbox key, as `sgalert status` shows it"),
                    AS_EMAIL,
                ),
            ),
        ),
    ),
    Command(
        "ingest",
        "turn one message file into a case",
        ingest,
        (
            Argument("file", help="an RFC 822 message, e.g. saved from a mail client as .eml"),
            Argument(
                "--source",
                required=True,
                choices=tuple(s.value for s in Source),
                help="what kind of notice the message is",
            ),
            JSON,
        ),
    ),
)
