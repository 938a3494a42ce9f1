"""``sgalert audit head``, ``sgalert audit verify --anchor`` and ``sgalert digest``.

The audit anchor and the daily digest belong together: the digest emails the anchor every morning
so that the log can later be proved to still hold that state. Registered on the parser by
:func:`add_commands` (one hook in :mod:`sgalert.cli.main`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from sgalert.records import audit

if TYPE_CHECKING:
    from sgalert.cli.main import Runner

    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]


async def audit_head(runner: Runner) -> int:
    """The log's newest entry as an anchor, to keep somewhere the machine cannot change."""
    async with await runner.service() as service, service.store.read() as db:
        seq, digest = await audit.head(db)
    print(f"audit head: entry {seq}, hash {digest}")
    print(f"anchor: {seq}:{digest}")
    print("Keep the anchor outside this machine; `sgalert audit verify --anchor` checks it later.")
    return 0


async def audit_verify(runner: Runner) -> int:
    # Parsed here, not by argparse, so a bad one is the command's one clear line.
    anchors = [audit.Anchor.parse(text) for text in runner.args.anchor or []]
    async with await runner.service() as service, service.store.read() as db:
        count = await audit.verify(db, anchors=anchors)
        seq, digest = await audit.head(db)
    print(f"audit chain intact: {count} entries checked; head {seq} {digest}")
    for anchor in anchors:
        print(f"anchor {anchor.seq}:{anchor.hash[:16]} holds: the log still contains that state")
    if not anchors:
        print("(no --anchor given: a log cut short or rebuilt would also pass; give one)")
    return 0


def add_commands(
    commands: SubParsers,
    audit_cmds: SubParsers,
    command: Callable[..., argparse.ArgumentParser],
) -> None:
    """Add ``audit head``, ``audit verify [--anchor SEQ:HASH]...`` and ``digest``."""
    command(audit_cmds, "head", audit_head, "print the audit log's newest entry as an anchor")
    verify = command(
        audit_cmds,
        "verify",
        audit_verify,
        "check the audit log's hash chain (and that it still holds each anchored state)",
    )
    verify.add_argument(
        "--anchor",
        action="append",
        metavar="SEQ:HASH",
        help="a state of the log kept elsewhere (from `audit head` or a daily digest); repeatable",
    )
