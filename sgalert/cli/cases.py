"""Working a case: list them, show one, record a phone call, and every step a DSL takes on one
(acknowledge, note, decide, assign, grant, close, refer, statutory clocks), plus the desk itself
(``sgalert tui``). Each step is one call on the service façade, which checks and audits it."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sgalert.cli.context import Context, case_ref
from sgalert.cli.render import print_view, summary_json, view_json
from sgalert.cli.retention import HOLD_COMMANDS
from sgalert.cli.sensitive import (
    ARGV_OK_ARGUMENT,
    CALLER_LINE,
    REPORTER_LINES,
    case_text,
    fact,
    label_and_reason,
    personal_option,
    read_stdin,
    split_facts,
)
from sgalert.cli.spec import AS_EMAIL, JSON, Argument, Command, Entry, Group, Handler, who_you_are
from sgalert.clock import iso, utcnow
from sgalert.desk.original import ORIGINAL_CAP, capped, render_original
from sgalert.desk.service import OUTCOMES, REFERRALS
from sgalert.errors import InvalidInput, WorkspaceError
from sgalert.model import CaseState, Flag, Source
from sgalert.routing.escalation import ACTION_CLOCKS
from sgalert.text import printable
from sgalert.workspace import Workspace

SOURCES = tuple(s.value for s in Source)


async def cases_list(ctx: Context) -> int:
    """Metadata of the cases the person may see: without ``--as``, nobody is identified and no
    whistleblowing case or allegation about the head is listed (the core decides)."""
    state = CaseState(ctx.args.state) if ctx.args.state else None
    source = Source(ctx.args.source) if ctx.args.source else None
    async with await ctx.service() as service:
        viewer = await ctx.unlocked(service) if ctx.args.as_email else None
        cases = await service.list_cases(state=state, source=source, viewer=viewer)
    if viewer is None and not ctx.args.json and sys.stdout.isatty():
        print(
            "Whistleblowing cases and allegations about the headteacher are listed only to"
            " those who may read them: add --as EMAIL.",
            file=sys.stderr,
        )
    if ctx.args.json:
        print(json.dumps([summary_json(c) for c in cases], indent=2))
        return 0
    if not cases:
        print("No cases.")
    for c in cases:
        flags = ",".join(c.flags) or "-"
        destroyed = (
            f"  destroyed under retention on {c.destroyed_at.date().isoformat()}"
            if c.destroyed_at
            else ""
        )
        print(
            f"{c.ref:14} {c.source.value:10} {c.state.value:13} {iso(c.received_at)}  "
            f"{c.assignee or '-':24} {flags}{destroyed}"
        )
    return 0


async def case_show(ctx: Context) -> int:
    if ctx.args.original:
        return await _show_original(ctx)
    if ctx.args.full:
        raise InvalidInput("--full lifts the size cap of --original; use them together")
    async with await ctx.service() as service:
        identity = await ctx.unlocked(service)
        view = await service.open_case(identity, ctx.args.ref)
        zone = service.config.timezone if service.config else ZoneInfo("Europe/London")
    if ctx.args.json:
        print(json.dumps(view_json(view), indent=2, ensure_ascii=False))
    else:
        print_view(view, utcnow(), zone)
    return 0


async def _show_original(ctx: Context) -> int:
    """The sealed original as safe text: a tree of MIME parts, cut at a size unless --full."""
    if ctx.args.json:
        raise InvalidInput("--original prints text only; leave out --json")
    async with await ctx.service() as service:
        identity = await ctx.unlocked(service)
        original = await service.open_original(identity, ctx.args.ref)
        limits = service.config.limits if service.config else None
    rendered = render_original(original.raw, limits)
    shown, cut = capped(rendered, None if ctx.args.full else ORIGINAL_CAP)
    print(shown)
    if cut:
        print(
            f"... cut at {ORIGINAL_CAP:,} of {len(rendered):,} characters; add --full to see all"
            " of it"
        )
    return 0


async def case_attachment(ctx: Context) -> int:
    """Write a decrypted copy of one attachment: only where asked, mode 0600, audited."""
    from sgalert.desk.export import proposed_name

    number = ctx.args.number
    if number < 1:
        raise InvalidInput("attachments are numbered from 1, as `sgalert case show` lists them")
    out = Path(ctx.args.out).expanduser()
    async with await ctx.service() as service:
        identity = await ctx.unlocked(service)
        if os.path.isdir(out):  # False, not an OSError naming the path, for a bad one
            view = await service.open_case(identity, ctx.args.ref)
            if number > len(view.attachments):
                raise InvalidInput(f"case {view.summary.ref} has no attachment {number}")
            name = view.attachments[number - 1].filename
            out = out / proposed_name(view.summary.ref, number - 1, name)
        saved = await service.save_attachment(
            identity, ctx.args.ref, number - 1, out, overwrite=ctx.args.overwrite
        )
    print(
        printable(
            f"Wrote a decrypted copy ({saved.size} bytes) to {saved.path}", keep_newlines=False
        )
    )
    print(
        f"WARNING: this copy of confidential safeguarding material is outside the encrypted"
        f" store. {identity.email} is responsible for it: keep it on an encrypted device,"
        " share it only with those who need to know, and delete it when done. The export is"
        " recorded in the audit log.",
        file=sys.stderr,
    )
    return 0


def _identity_on_argv(ctx: Context) -> dict[str, str]:
    """Refuse, before anything is read or asked, what would put a whistleblower's identity on
    the command line: the reporter's name or contact, or a whistleblowing caller other than
    "anonymous" (who phones that line is, as likely as not, the reporter)."""
    argv_ok = ctx.args.argv_visible_ok
    caller = ctx.args.caller
    if (
        Source(ctx.args.source) is Source.WHISTLE
        and caller is not None
        and caller.strip().casefold() != "anonymous"
    ):
        personal_option(caller, "--caller", CALLER_LINE, argv_ok=argv_ok)
    given = {}
    for option, line, value in (
        ("--reporter-name", "reporter_name", ctx.args.reporter_name),
        ("--reporter-contact", "reporter_contact", ctx.args.reporter_contact),
    ):
        if personal_option(value, option, line, argv_ok=argv_ok):
            given[REPORTER_LINES[line]] = value
    return given


def _who_called(
    ctx: Context, facts: dict[str, str], on_argv: dict[str, str]
) -> tuple[str, dict[str, str] | None]:
    """Who phoned and, for whistleblowing, the reporter: ``caller:``, ``reporter_name:`` and
    ``reporter_contact:`` lines on standard input are taken out of the facts (so they are
    sealed apart, never among the case's facts) and win over the options."""
    caller = facts.pop(CALLER_LINE, "").strip() or (ctx.args.caller or "").strip()
    if not caller:
        raise InvalidInput(
            "say who phoned: --caller, or a 'caller: ...' line on standard input with --text -"
        )
    reporter = dict(on_argv)
    for line, part in REPORTER_LINES.items():
        if value := facts.pop(line, "").strip():
            reporter[part] = value
    if not reporter:
        return caller, None
    if Source(ctx.args.source) is not Source.WHISTLE:
        raise InvalidInput("a reporter's identity is kept only for whistleblowing cases")
    return caller, {"name": reporter.get("name", ""), "contact": reporter.get("contact", "")}


async def case_new(ctx: Context) -> int:
    # Everything is read (or refused) before the passphrase is asked for or anything is written.
    argv_ok = ctx.args.argv_visible_ok
    facts = dict(fact(item, argv_ok=argv_ok) for item in ctx.args.field or [])
    on_argv = _identity_on_argv(ctx)
    text = ""
    if ctx.args.text == "-":
        given, text = split_facts(read_stdin("what was said (facts first as NAME: VALUE lines)"))
        facts.update(given)
    else:
        text = case_text(ctx.args.text, "--text", "what was said", argv_ok=argv_ok) or ""
    caller, reporter = _who_called(ctx, facts, on_argv)
    received = (
        ctx.school_time(ctx.args.received_at, "--received-at") if ctx.args.received_at else None
    )
    if received is not None and received > utcnow() + timedelta(minutes=5):
        # A typo (16 for 06) was a record of a call not yet made, numbered in its year.
        raise InvalidInput(
            f"--received-at {ctx.args.received_at} is in the future; give when the call came"
        )
    async with await ctx.service() as service:
        identity = await ctx.unlocked(service)
        stored = await service.record_manual_case(
            identity,
            Source(ctx.args.source),
            facts=facts,
            body_text=text,
            caller=caller,
            received_at=received,
            reporter=reporter,
            flags=frozenset({Flag.ABOUT_HEAD}) if ctx.args.about_head else frozenset(),
        )
    print(f"Recorded {stored.ref}")
    return 0


async def ack(ctx: Context) -> int:
    async with await ctx.service() as service:
        identity = await ctx.unlocked(service)
        summary = await service.acknowledge(identity, ctx.args.ref)
    print(f"{summary.ref} acknowledged by {identity.email}")
    return 0


async def note(ctx: Context) -> int:
    # The text is read (or refused) before the passphrase is asked for or anything is written.
    text = case_text(ctx.args.text, "--text", "the note", argv_ok=ctx.args.argv_visible_ok)
    assert text is not None  # required
    async with await ctx.service() as service:
        identity = await ctx.unlocked(service)
        entry = await service.add_note(identity, ctx.args.ref, text, corrects=ctx.args.corrects)
    print(f"Note {entry} added to {ctx.args.ref}")
    return 0


async def decide(ctx: Context) -> int:
    decision, reason = label_and_reason(
        ctx.args.decision,
        ctx.args.reason,
        ("--decision", "the decision"),
        OUTCOMES,
        argv_ok=ctx.args.argv_visible_ok,
    )
    entry = await ctx.acting(
        lambda service, who: service.record_decision(who, ctx.args.ref, decision, reason)
    )
    print(f"Decision {entry} recorded on {ctx.args.ref}")
    return 0


async def assign(ctx: Context) -> int:
    summary = await ctx.acting(lambda service, who: service.assign(who, ctx.args.ref, ctx.args.to))
    print(f"{summary.ref} assigned to {summary.assignee}")
    return 0


async def grant(ctx: Context) -> int:
    await ctx.acting(
        lambda service, who: service.grant(
            who, ctx.args.ref, ctx.args.to, with_identity=ctx.args.with_identity
        )
    )
    also = " and the reporter's identity" if ctx.args.with_identity else ""
    print(f"{ctx.args.to} may now read {ctx.args.ref}{also}")
    return 0


async def revoke(ctx: Context) -> int:
    version = await ctx.acting(
        lambda service, who: service.revoke(who, ctx.args.ref, ctx.args.from_email)
    )
    print(
        f"{ctx.args.from_email} may no longer read {ctx.args.ref}; its key was rotated"
        f" (version {version}) for everything written from now on"
    )
    return 0


async def close(ctx: Context) -> int:
    outcome, reason = label_and_reason(
        ctx.args.outcome,
        ctx.args.reason,
        ("--outcome", "the outcome"),
        OUTCOMES,
        argv_ok=ctx.args.argv_visible_ok,
    )
    summary = await ctx.acting(
        lambda service, who: service.close_case(who, ctx.args.ref, outcome, reason)
    )
    print(f"{summary.ref} closed")
    return 0


def tui(ctx: Context) -> int:
    """The terminal UI, found through an entry point so the core never imports it.

    Not a coroutine: Textual runs its own event loop in the main thread.
    """
    from importlib.metadata import entry_points

    problem = ctx.workspace.not_ready()
    if problem is not None:
        raise WorkspaceError(problem)
    found = [e for e in entry_points(group="sgalert.apps") if e.name == "tui"]
    if not found:
        raise WorkspaceError("the terminal UI is not installed; reinstall sgalert")
    run: Callable[[Workspace, str | None], int] = found[0].load()
    return run(ctx.workspace, ctx.args.as_email)


async def refer(ctx: Context) -> int:
    text = case_text(ctx.args.text, "--text", "the referral", argv_ok=ctx.args.argv_visible_ok)
    await ctx.acting(lambda service, who: service.refer(who, ctx.args.ref, ctx.args.to, text or ""))
    print(f"{ctx.args.ref} referred to {ctx.args.to}")
    return 0


async def clock_start(ctx: Context) -> int:
    due = await ctx.acting(
        lambda service, who: service.start_clock(who, ctx.args.ref, ctx.args.kind)
    )
    print(f"{ctx.args.ref}: {ctx.args.kind} due {iso(due)}")
    return 0


async def clock_met(ctx: Context) -> int:
    await ctx.acting(lambda service, who: service.meet_clock(who, ctx.args.ref, ctx.args.kind))
    print(f"{ctx.args.ref}: {ctx.args.kind} met")
    return 0


REF = Argument("ref", help="case id or reference such as SG-2026-0042", type=case_ref)


def _step(name: str, help_text: str, handler: Handler, *extra: Argument) -> Command:
    """A step on one case: ``sgalert NAME REF ... --as EMAIL``."""
    return Command(name, help_text, handler, (REF, *extra, AS_EMAIL))


COMMANDS: tuple[Entry, ...] = (
    Group(
        "cases",
        "list cases (metadata only)",
        (
            Command(
                "list",
                "list cases, newest first",
                cases_list,
                (
                    JSON,
                    Argument(
                        "--state",
                        choices=tuple(s.value for s in CaseState),
                        help="only cases in this state",
                    ),
                    Argument("--source", choices=SOURCES, help="only cases from this source"),
                    Argument(
                        "--as",
                        dest="as_email",
                        type=who_you_are,
                        metavar="EMAIL",
                        help="who you are (unlocked with your passphrase): lists the"
                        " confidential cases you may read too",
                    ),
                ),
            ),
        ),
    ),
    Group(
        "case",
        "one case",
        (
            Command(
                "show",
                "decrypt and show a case, its statutory clocks counting down",
                case_show,
                (
                    REF,
                    JSON,
                    Argument(
                        "--original",
                        flag=True,
                        help="show the message as it arrived instead: its MIME parts with their"
                        " headers and decoded text, control characters shown as escapes"
                        " (audited; a whistleblowing case's only to those who may see the"
                        " reporter's identity)",
                    ),
                    Argument(
                        "--full",
                        flag=True,
                        help=f"with --original, show all of it, not just the first"
                        f" {ORIGINAL_CAP // 1024} KiB",
                    ),
                    AS_EMAIL,
                ),
            ),
            Command(
                "attachment",
                "write a decrypted copy of one attachment (mode 0600; the export is audited)",
                case_attachment,
                (
                    Argument("ref", help="case id or reference", type=case_ref),
                    Argument(
                        "number",
                        type=int,
                        help="the attachment's number, from 1, as `case show` lists them",
                    ),
                    Argument(
                        "--out",
                        required=True,
                        metavar="PATH",
                        help="the file to write, or a folder to write it into under a safe name",
                    ),
                    Argument("--overwrite", flag=True, help="replace a file already at PATH"),
                    AS_EMAIL,
                ),
            ),
            Command(
                "new",
                "record a notification received by phone",
                case_new,
                (
                    Argument(
                        "--source", required=True, choices=SOURCES, help="what kind of notice it is"
                    ),
                    Argument(
                        "--caller",
                        help="who phoned, e.g. 'PC 1234, Example Police'; for whistleblowing"
                        " give it as a 'caller:' line on standard input (it is sealed with the"
                        " reporter)",
                    ),
                    Argument(
                        "--field",
                        repeat=True,
                        metavar="NAME=VALUE",
                        help="a fact that is not personal, e.g. school=Example Primary"
                        " (repeatable); personal facts go on standard input with --text -",
                    ),
                    Argument(
                        "--text",
                        help="- to read what was said from standard input (NAME: VALUE fact"
                        " lines, a blank line, then the text, verbatim where possible)",
                    ),
                    Argument(
                        "--received-at",
                        help="when the call came, ISO 8601, the school's local time unless it"
                        " has an offset (default: now)",
                    ),
                    Argument(
                        "--reporter-name",
                        help="whistleblowing: the reporter, sealed apart; needs"
                        " --i-know-argv-is-visible (else a 'reporter_name:' line on stdin)",
                    ),
                    Argument(
                        "--reporter-contact",
                        help="whistleblowing: their preferred contact; needs"
                        " --i-know-argv-is-visible (else a 'reporter_contact:' line on stdin)",
                    ),
                    Argument(
                        "--about-head",
                        flag=True,
                        help="it concerns the headteacher: it never reaches them (sgalert also"
                        " flags it when the text names [school] head_names)",
                    ),
                    ARGV_OK_ARGUMENT,
                    AS_EMAIL,
                ),
            ),
            *HOLD_COMMANDS,
        ),
    ),
    _step("ack", "acknowledge a case", ack),
    _step(
        "note",
        "add a signed note to a case's record",
        note,
        Argument(
            "--text",
            required=True,
            help="- to read the note from standard input, as it should stand in the record",
        ),
        Argument("--corrects", metavar="ENTRY", help="the id of the entry this corrects"),
        ARGV_OK_ARGUMENT,
    ),
    _step(
        "decide",
        "record a decision and its reason",
        decide,
        Argument(
            "--decision",
            required=True,
            help="what was decided: one of the usual outcomes, or - for stdin (with --reason -"
            " too: the decision's line, a blank line, the reason)",
        ),
        Argument(
            "--reason", required=True, help="why, as it should stand in the record (- for stdin)"
        ),
        ARGV_OK_ARGUMENT,
    ),
    _step(
        "assign",
        "assign a case to an entitled person",
        assign,
        Argument("--to", required=True, metavar="EMAIL", help="who takes the case on"),
    ),
    _step(
        "grant",
        "let one more person read a case",
        grant,
        Argument("--to", required=True, metavar="EMAIL", help="who may now read it"),
        Argument(
            "--with-identity",
            flag=True,
            help="whistleblowing, monitoring officer only: the reporter's identity goes too",
        ),
    ),
    _step(
        "revoke",
        "stop one person reading a case they were granted (its key is rotated)",
        revoke,
        Argument(
            "--from",
            dest="from_email",
            required=True,
            metavar="EMAIL",
            help="whose grant is taken back",
        ),
    ),
    _step(
        "close",
        "close a case with its outcome",
        close,
        Argument(
            "--outcome",
            required=True,
            help="how the case ended: e.g. 'No further action', or - for stdin (with --reason -"
            " too: the outcome's line, a blank line, the reason)",
        ),
        Argument(
            "--reason", required=True, help="why, as it should stand in the record (- for stdin)"
        ),
        ARGV_OK_ARGUMENT,
    ),
    Command(
        "tui",
        "the on-call DSL's desk in the terminal",
        tui,
        (
            Argument(
                "--as",
                dest="as_email",
                type=who_you_are,
                metavar="EMAIL",
                help="who you are (asked if not)",
            ),
        ),
    ),
    _step(
        "refer",
        "record a referral (a LADO referral starts its 1-working-day clock)",
        refer,
        Argument("--to", required=True, choices=tuple(REFERRALS), help="where it was referred"),
        Argument("--text", help="what was referred and how (- to read it from standard input)"),
        ARGV_OK_ARGUMENT,
    ),
    Group(
        "clock",
        "statutory clocks",
        tuple(
            Command(
                name,
                text,
                handler,
                (
                    REF,
                    Argument(
                        "--kind",
                        required=True,
                        choices=tuple(ACTION_CLOCKS),
                        help="which statutory clock",
                    ),
                    AS_EMAIL,
                ),
            )
            for name, handler, text in (
                ("start", clock_start, "start a statutory clock"),
                ("met", clock_met, "record a deadline as met"),
            )
        ),
    ),
)
