"""Retention: ``sgalert retention run [--dry-run]``, ``retention shred REF`` after a review, and
the legal holds that stop both (``sgalert case hold`` / ``case release``, listed in the ``case``
group). See :mod:`sgalert.rules.retention`, :mod:`sgalert.records.shredding` and
docs/retention.md.

``run`` lists each case past its period (the school's ``[retention]`` periods) with its verdict
and, without ``--dry-run``, crypto-shreds those whose rule says destroy: closed, not held. Review
rules (Encompass, whistleblowing) only list; a person decides, then ``retention shred`` does it.

The lines carry references, sources, states and dates derived from when a case arrived: never
a child's date of birth (an Encompass expiry counted from it would reveal it, so it is not
printed). Reading those dates of birth needs an unlocked reader (``--as``); each case read is
audited. Without ``--as`` an Encompass case counts 25 years from its arrival, which is never
before the child's 25th birthday.
"""

from __future__ import annotations

import argparse
import enum
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from sgalert.cli.context import case_ref
from sgalert.cli.sensitive import ARGV_OK_ARGUMENT, case_text
from sgalert.cli.spec import AS_EMAIL, Argument, Command, Entry, Group, who_you_are
from sgalert.clock import utcnow
from sgalert.desk.service import CaseService
from sgalert.desk.views import UPKEEP
from sgalert.errors import IllegalTransition, InvalidInput, NotFound, WorkspaceError
from sgalert.intake.dates import find_date
from sgalert.model import CaseState, CaseSummary
from sgalert.records import audit, shredding
from sgalert.records.keyring import Identity
from sgalert.records.store import on_connection
from sgalert.rules.retention import AtExpiry, CountFrom, RetentionRule, RetentionRules
from sgalert.workspace import Workspace


class Verdict(enum.StrEnum):
    SHRED = "would be shredded"
    REVIEW = "due for review"
    OPEN = "expired but still open"
    HELD = "kept (legal hold)"
    KEPT = "kept"
    DESTROYED = "already destroyed"


@dataclass(frozen=True, slots=True)
class Assessment:
    summary: CaseSummary
    verdict: Verdict
    note: str
    rule: RetentionRule
    expires: date

    def line(self, verdict: str | None = None) -> str:
        s = self.summary
        said = verdict or self.verdict.value
        return f"{s.ref:14} {s.source.value:10} {s.state.value:13} {said}: {self.note}"

    def audit_rule(self) -> dict[str, object]:
        """The rule, for the ``case-destroyed`` audit entry: metadata only."""
        return {"years": self.rule.years, "then": self.rule.then.value}


def assess(
    cases: Sequence[CaseSummary],
    today: date,
    births: Mapping[str, date | None] | None,
    rules: RetentionRules,
    held: Collection[str] = (),
) -> list[Assessment]:
    """Each case's verdict on ``today``. ``births`` holds the child's date of birth of each
    Encompass case the asker could read (None: none recorded); None when nobody unlocked.
    ``held``: the ids of cases under a legal hold."""
    found: list[Assessment] = []
    for case in cases:
        rule = rules.get(case.source)
        if rule is None:
            continue
        dob = (births or {}).get(case.id)
        expires = rule.expires(case.received_at, dob)
        by_birth = rule.count_from is CountFrom.CHILD_BIRTH and dob is not None
        # An expiry counted from the child's birth is their birthday: say whether, never when.
        when = "" if by_birth else f" {expires.isoformat()}"
        why = rule.why
        if rule.count_from is CountFrom.CHILD_BIRTH and not by_birth:
            why += " (counted from arrival: the date of birth is sealed)"

        if case.destroyed_at is not None:
            verdict, note = (
                Verdict.DESTROYED,
                shredding.destroyed_line(case.ref, case.destroyed_at),
            )
        elif expires > today:
            verdict, note = Verdict.KEPT, f"until{when or ' its review date'}"
        elif case.id in held:
            verdict, note = Verdict.HELD, f"{why} (expired{when}); release the hold first"
        elif case.state is not CaseState.CLOSED:
            verdict, note = Verdict.OPEN, f"{why}; close it first"
        elif rule.then is AtExpiry.DESTROY:
            verdict, note = Verdict.SHRED, f"{why} (expired{when})"
        else:
            verdict, note = Verdict.REVIEW, f"{why} (expired{when})"
        found.append(Assessment(case, verdict, note, rule, expires))
    return found


async def _births(
    service: CaseService, identity: Identity, rules: RetentionRules, refs: Sequence[str] | None
) -> dict[str, date | None]:
    """The child's date of birth of every Encompass case ``identity`` may read (each read is
    audited as any other); ``refs`` narrows it to those cases."""
    wanted = [
        c.ref
        for c in await service.list_cases(viewer=UPKEEP)
        if c.destroyed_at is None
        and (rule := rules.get(c.source)) is not None
        and rule.count_from is CountFrom.CHILD_BIRTH
        and (refs is None or c.ref in refs)
    ]
    views = await service.open_cases(identity, wanted) if wanted else []
    births: dict[str, date | None] = {}
    for view in views:
        raw = view.facts.get("child_dob")
        births[view.summary.id] = find_date(str(raw)) if raw else None
    return births


class _Runner(Protocol):
    args: argparse.Namespace
    workspace: Workspace

    async def unlocked(self, service: CaseService) -> Identity: ...


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"--on {text!r} is not a date; write it as 2027-09-01") from None


async def _held(service: CaseService) -> set[str]:
    async with service.store.read() as db:
        return await on_connection(db, shredding.held_case_ids_now)


async def _shred(service: CaseService, found: Assessment, actor: str) -> shredding.Shredded:
    rule = found.audit_rule()
    return await service.store.transact(
        lambda conn: shredding.shred_now(
            conn, found.summary.id, actor=actor, now=utcnow(), rule=rule
        )
    )


def _service_ready(runner: _Runner) -> None:
    problem = runner.workspace.not_ready()
    if problem is not None:
        raise WorkspaceError(problem)


async def run(runner: _Runner) -> int:
    """List (``--dry-run``) or carry out what retention asks of each case on the day."""
    args = runner.args
    dry = bool(args.dry_run)
    if args.on and not dry:
        raise InvalidInput("--on is for --dry-run only: cases are destroyed as of today")
    _service_ready(runner)
    shredded: list[Assessment] = []
    skipped: list[tuple[Assessment, str]] = []
    checkpointed = True
    async with await CaseService.open(runner.workspace) as service:
        assert service.config is not None
        rules = service.config.retention
        today = _day(args.on) if args.on else utcnow().astimezone(service.config.timezone).date()
        births = (
            await _births(service, await runner.unlocked(service), rules, None)
            if args.as_email
            else None
        )
        found = assess(
            await service.list_cases(viewer=UPKEEP), today, births, rules, await _held(service)
        )
        actor = args.as_email or audit.SYSTEM
        if not dry:
            for item in found:
                if item.verdict is not Verdict.SHRED:
                    continue
                try:
                    await _shred(service, item, actor)
                    shredded.append(item)
                except (IllegalTransition, NotFound) as exc:  # held or reopened since
                    skipped.append((item, str(exc)))
            if shredded:
                checkpointed = await shredding.checkpoint(service.store)
        counts = Counter(a.verdict for a in found)
        async with service.store.write() as db:
            detail: dict[str, object] = {v.name.lower(): counts[v] for v in Verdict}
            if not dry:
                detail.update(shredded=len(shredded), skipped=len(skipped))
            action = "retention-dry-run" if dry else "retention-run"
            await audit.append(db, [audit.AuditEvent(actor, action, None, detail)])
    _report(found, shredded, skipped, today, counts, dry=dry)
    if not checkpointed:
        print(
            "Another process held the store open, so pages from before the shredding remain in"
            " its write-ahead log until the next checkpoint (the data keys are already gone)."
        )
    return 0


def _report(
    found: Sequence[Assessment],
    shredded: Sequence[Assessment],
    skipped: Sequence[tuple[Assessment, str]],
    today: date,
    counts: Counter[Verdict],
    *,
    dry: bool,
) -> None:
    done = {a.summary.id for a in shredded}
    why_skipped = {a.summary.id: why for a, why in skipped}
    for item in found:
        if item.verdict in (Verdict.KEPT, Verdict.DESTROYED):
            continue
        if item.summary.id in done:
            print(item.line("shredded"))
        elif item.summary.id in why_skipped:
            print(item.line("not shredded") + f"; {why_skipped[item.summary.id]}")
        else:
            print(item.line())
    if dry:
        tally = ", ".join(f"{counts[v]} {v.value}" for v in Verdict)
        print(f"dry run for {today.isoformat()}: {tally}; nothing was changed")
        return
    rest = ", ".join(f"{counts[v]} {v.value}" for v in Verdict if v is not Verdict.SHRED)
    print(f"retention run for {today.isoformat()}: {len(shredded)} shredded, {rest}")


async def shred(runner: _Runner) -> int:
    """Destroy one case a person has reviewed: they must be entitled to it, it must be closed,
    past its period and not held. Audited under their name."""
    args = runner.args
    _service_ready(runner)
    async with await CaseService.open(runner.workspace) as service:
        assert service.config is not None
        rules = service.config.retention
        identity = await runner.unlocked(service)
        summary = await service.summary(args.ref, viewer=identity)  # none they may not see
        if summary.destroyed_at is not None:
            raise IllegalTransition(shredding.destroyed_line(summary.ref, summary.destroyed_at))
        await service.open_case(identity, summary.ref)  # entitled? (audited as a read)
        births = await _births(service, identity, rules, [summary.ref])
        today = utcnow().astimezone(service.config.timezone).date()
        (item,) = assess([summary], today, births, rules, await _held(service))
        if item.verdict not in (Verdict.SHRED, Verdict.REVIEW):
            raise IllegalTransition(f"case {summary.ref} is {item.verdict.value}: {item.note}")
        await _shred(service, item, identity.email)
        await shredding.checkpoint(service.store)
    print(f"{summary.ref} shredded: only its metadata is kept")
    return 0


async def hold(runner: _Runner) -> int:
    args = runner.args
    reason = case_text(args.reason, "--reason", "the reason", argv_ok=args.argv_visible_ok)
    assert reason is not None  # required
    _service_ready(runner)
    async with await CaseService.open(runner.workspace) as service:
        identity = await runner.unlocked(service)
        await service.hold(identity, args.ref, reason)
    print(f"{args.ref} is under a legal hold: retention will not destroy it")
    return 0


async def release(runner: _Runner) -> int:
    args = runner.args
    _service_ready(runner)
    async with await CaseService.open(runner.workspace) as service:
        identity = await runner.unlocked(service)
        await service.release_hold(identity, args.ref)
    print(f"{args.ref}: legal hold released; retention applies to it again")
    return 0


REF = Argument("ref", help="case id or reference such as SG-2026-0042", type=case_ref)

HOLD_COMMANDS: tuple[Command, ...] = (
    Command(
        "hold",
        "put a case under a legal hold: retention never destroys it (the reason is sealed)",
        hold,
        (
            REF,
            Argument(
                "--reason",
                required=True,
                help="why (litigation, a police request, an inquiry), as it should stand in the"
                " record; - to read it from standard input",
            ),
            ARGV_OK_ARGUMENT,
            AS_EMAIL,
        ),
    ),
    Command(
        "release",
        "lift a case's legal hold, so retention applies to it again",
        release,
        (REF, AS_EMAIL),
    ),
)
"""``sgalert case hold`` and ``case release``: listed in the ``case`` group."""

COMMANDS: tuple[Entry, ...] = (
    Group(
        "retention",
        "retention periods and crypto-shredding",
        (
            Command(
                "run",
                "crypto-shred the closed cases past a destroy period; list those due for review",
                run,
                (
                    Argument("--dry-run", flag=True, help="list only, change nothing"),
                    Argument(
                        "--as",
                        dest="as_email",
                        type=who_you_are,
                        metavar="EMAIL",
                        help="unlock as this reader to count Encompass cases from the child's"
                        " date of birth (sealed); the passphrase comes from $SGALERT_PASSPHRASE"
                        " or the terminal",
                    ),
                    Argument(
                        "--on",
                        metavar="YYYY-MM-DD",
                        help="assess as of this day (default: today in the school's time zone)",
                    ),
                ),
            ),
            Command(
                "shred",
                "crypto-shred one reviewed case that is past its period (closed, not held)",
                shred,
                (REF, AS_EMAIL),
            ),
        ),
    ),
)
