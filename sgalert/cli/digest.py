"""``sgalert audit head``, ``sgalert audit verify --anchor`` and ``sgalert digest``.

The audit anchor and the daily digest belong together: the digest emails the anchor every morning
so that the log can later be proved to still hold that state. Declared as data in
:data:`COMMANDS` (and the audit group's in :data:`AUDIT_COMMANDS`).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from sgalert.cli.context import Context, within_range
from sgalert.cli.files import write_output
from sgalert.cli.keys import trust_line
from sgalert.cli.spec import Argument, Command, Entry
from sgalert.clock import iso, parse_iso, utcnow
from sgalert.config import Config
from sgalert.desk.service import CaseService
from sgalert.errors import AuditChainBroken, DigestNotSent, InvalidInput
from sgalert.model import Role
from sgalert.records import audit
from sgalert.records.keytrust import KeyTrust, group_key_statuses
from sgalert.records.store import on_connection


async def audit_head(runner: Context) -> int:
    """The log's newest entry as an anchor, to keep somewhere the machine cannot change."""
    async with await runner.service() as service, service.store.read() as db:
        seq, digest = await audit.head(db)
    print(f"audit head: entry {seq}, hash {digest}")
    print(f"anchor: {seq}:{digest}")
    print("Keep the anchor outside this machine; `sgalert audit verify --anchor` checks it later.")
    return 0


async def audit_verify(runner: Context) -> int:
    # Parsed here, not by argparse, so a bad one is the command's one clear line.
    anchors = [audit.Anchor.parse(text) for text in runner.args.anchor or []]
    async with await runner.service() as service, service.store.read() as db:
        count = await audit.verify(db, anchors=anchors)
        seq, digest = await audit.head(db)
        keys = [s for s in await group_key_statuses(db) if s.trust is not KeyTrust.SIGNED]
    if count == 0:
        # `init` writes the first entry as it creates the store: an empty log was emptied.
        raise AuditChainBroken(
            1, "the audit log is empty: every store starts with an entry, so it was deleted"
        )
    print(f"audit chain intact: {count} entries checked; head {seq} {digest}")
    for anchor in anchors:
        print(f"anchor {anchor.seq}:{anchor.hash[:16]} holds: the log still contains that state")
    if not anchors:
        print("(no --anchor given: a log cut short or rebuilt would also pass; give one)")
    print("case records: every case's sealed fields and chronology match their manifest")
    for status in keys:
        print(f"warning: {trust_line(status)}")
    return 1 if any(s.trust is KeyTrust.UNTRUSTED for s in keys) else 0


GOVERNOR = "governor"  # a configured address that is not a person in sgalert


def _day(text: str | None, today: date, option: str = "--date") -> date:
    if text is None:
        return today
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"{option} {text!r} is not a date; write it as 2026-12-07") from None
    return within_range(day, text, option)


async def digest(runner: Context) -> int:
    """Preview (text), write the HTML, or send a digest now. Metadata only: no unlock needed."""
    from sgalert.routing.digest import (
        Viewer,
        build_digest,
        digest_channel,
        queue_digest,
        recipient_gaps,
    )
    from sgalert.routing.digest_render import render_html, render_text

    args = runner.args
    async with await runner.service() as service:
        config = service.config
        assert config is not None
        now = utcnow()
        day = _day(args.date, config.calendar.local(now).date())
        async with service.store.read() as db:
            built = await on_connection(db, lambda conn: build_digest(conn, config, day, now))
        viewer = Viewer(None if args.for_role == GOVERNOR else args.for_role)
        if args.html:
            html = render_html(built, viewer).encode("utf-8")
            out = write_output(
                Path(args.html), html, option="--html", store=runner.workspace.store_path
            )
            print(f"wrote the HTML digest for {day} ({args.for_role}'s copy) to {out}")
        if args.preview or not (args.html or args.send):
            print(render_text(built, viewer), end="")
        if args.send:
            queued = await service.store.transact(
                lambda conn: queue_digest(conn, config, built, now, manual=True)
            )
            print(f"queued the digest for {day} to {queued} recipient(s)")
            if not queued:
                async with service.store.read() as db:
                    gaps = await on_connection(db, lambda conn: recipient_gaps(conn, config.digest))
                why = "; ".join(gaps) if digest_channel(config) else "no email channel"
                raise DigestNotSent(
                    f"the digest for {day} went to nobody: {why};"
                    " the team is alerted (see sgalert status)"
                )
            prefix = f"digest-{day}-sent-{iso(now)}:"
            failed = await _send_now(service, config, runner.workspace.root, prefix)
            if failed:
                raise DigestNotSent(
                    f"the digest for {day} was not delivered to {failed} of {queued}"
                    " recipient(s); it stays queued and a running engine (sgalert serve)"
                    " keeps trying"
                )
    return 0


async def _send_now(service: CaseService, config: Config, root: Path, prefix: str) -> int:
    """Send what is due now unless a running engine will (it holds the store's lease); how
    many of the copies were not delivered (none when the engine sends them)."""
    from sgalert.engine.serve import build_notifiers
    from sgalert.routing.outbox import OutboxSender

    lease = await service.store.fetchall("SELECT expires_at FROM engine_lease")
    if lease and parse_iso(str(lease[0][0])) > utcnow():
        print("the running engine sends it")
        return 0
    notifiers = build_notifiers(config, root)
    try:
        sender = OutboxSender(service.store, notifiers, zone=config.calendar.zone)
        await sender.send_due()
    finally:
        for notifier in notifiers.values():
            await notifier.close()
    rows = await service.store.fetchall(
        "SELECT recipient, state, last_error FROM outbox WHERE substr(idempotency_key, 1, ?) = ?"
        " ORDER BY id",
        (len(prefix), prefix),
    )
    for recipient, state, error in rows:
        print(f"  {recipient}: {state}" + (f" ({error})" if error else ""))
    return sum(1 for row in rows if row[1] != "delivered")


async def report(runner: Context) -> int:
    """The governors' termly report over --from..--to, as text, HTML or CSV."""
    from sgalert.routing import report_render
    from sgalert.routing.report import build_report

    args = runner.args
    first = _day(args.start, date.today(), "--from")
    last = _day(args.end, date.today(), "--to")
    async with await runner.service() as service:
        config = service.config
        assert config is not None
        now = utcnow()
        async with service.store.read() as db:
            built = await on_connection(
                db, lambda conn: build_report(conn, config, first, last, now)
            )
    render = {
        "text": report_render.render_text,
        "html": report_render.render_html,
        "csv": report_render.render_csv,
    }[args.format]
    print(render(built), end="")
    return 0


COMMANDS: tuple[Entry, ...] = (
    Command(
        "digest",
        "the headteacher's daily digest (references, counts, times)",
        digest,
        (
            Argument("--preview", flag=True, help="print the text version (default)"),
            Argument(
                "--date", metavar="YYYY-MM-DD", help="the digest of that day (default: today)"
            ),
            Argument("--html", metavar="FILE", help="write the HTML version to FILE (mode 0600)"),
            Argument("--send", flag=True, help="send it now to its recipients"),
            Argument(
                "--for",
                dest="for_role",
                default=Role.HEAD.value,
                choices=(*(r.value for r in Role if r is not Role.STAFF), GOVERNOR),
                help="whose copy to show (default: the headteacher's); governor: an address that"
                " is not a person in sgalert",
            ),
        ),
    ),
    Command(
        "report",
        "the governors' termly report: counts and times over a period, no personal data",
        report,
        (
            Argument(
                "--from", dest="start", required=True, metavar="YYYY-MM-DD", help="the first day"
            ),
            Argument(
                "--to",
                dest="end",
                required=True,
                metavar="YYYY-MM-DD",
                help="the last day (inclusive)",
            ),
            Argument(
                "--format",
                choices=("text", "html", "csv"),
                default="text",
                help="text (default), HTML with a chart per figure, or CSV by week",
            ),
        ),
    ),
)

AUDIT_COMMANDS = (
    Command("head", "print the audit log's newest entry as an anchor", audit_head),
    Command(
        "verify",
        "check the audit log's hash chain (and that it still holds each anchored state)",
        audit_verify,
        (
            Argument(
                "--anchor",
                repeat=True,
                metavar="SEQ:HASH",
                help="a state of the log kept elsewhere (from `audit head` or a daily digest);"
                " repeatable",
            ),
        ),
    ),
)
"""The audit group's commands, which :mod:`sgalert.cli.audit` declares."""
