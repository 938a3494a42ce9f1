"""``sgalert retention run --dry-run``: which cases are past their retention period, and what
would become of each (see :mod:`sgalert.rules.retention` and docs/retention.md).

Only the listing is built. Shredding itself (destroying a case's data keys and sealed rows, under
``PRAGMA secure_delete``, keeping the metadata the counts need, audited) waits for legal holds
and for the review step; without ``--dry-run`` the command refuses and says so.

The lines carry references, sources, states and dates derived from when a case arrived: never
a child's date of birth (an Encompass case's expiry would reveal it, so it is not printed).
Reading those dates of birth needs an unlocked reader (``--as``); each case read is audited.
"""

from __future__ import annotations

import argparse
import enum
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from sgalert.cli.spec import Argument, Command, Entry, Group
from sgalert.clock import utcnow
from sgalert.desk.service import CaseService
from sgalert.errors import InvalidInput, WorkspaceError
from sgalert.intake.dates import find_date
from sgalert.model import CaseState, CaseSummary, Source
from sgalert.records import audit
from sgalert.records.keyring import Identity
from sgalert.rules.retention import DEFAULT_RETENTION, AtExpiry, CountFrom, RetentionRule
from sgalert.workspace import Workspace


class Verdict(enum.StrEnum):
    SHRED = "would be shredded"
    REVIEW = "due for review"
    OPEN = "expired but still open"
    UNKNOWN = "not assessed"
    KEPT = "kept"


@dataclass(frozen=True, slots=True)
class Assessment:
    summary: CaseSummary
    verdict: Verdict
    note: str

    def line(self) -> str:
        s = self.summary
        return f"{s.ref:14} {s.source.value:10} {s.state.value:13} {self.verdict}: {self.note}"


def assess(
    cases: Sequence[CaseSummary],
    today: date,
    births: Mapping[str, date | None] | None,
    rules: Mapping[Source, RetentionRule] = DEFAULT_RETENTION,
) -> list[Assessment]:
    """Each case's verdict on ``today``. ``births`` holds the child's date of birth of each
    Encompass case the asker could read (None: none recorded); None when nobody unlocked."""
    found: list[Assessment] = []
    for case in cases:
        rule = rules.get(case.source)
        if rule is None:
            continue
        dob: date | None = None
        if rule.count_from is CountFrom.CHILD_BIRTH:
            if births is None:
                found.append(
                    Assessment(
                        case,
                        Verdict.UNKNOWN,
                        "the child's date of birth is sealed; run with --as EMAIL (a reader)",
                    )
                )
                continue
            if case.id not in births:
                found.append(Assessment(case, Verdict.UNKNOWN, "you may not read this case"))
                continue
            dob = births[case.id]
            if dob is None:
                found.append(
                    Assessment(
                        case, Verdict.UNKNOWN, "no date of birth recorded; review it by hand"
                    )
                )
                continue
        expires = rule.expires(case.received_at, dob)
        assert expires is not None
        # An Encompass expiry is the child's birthday: say whether, never when.
        when = "" if rule.count_from is CountFrom.CHILD_BIRTH else f" {expires.isoformat()}"
        if expires > today:
            found.append(Assessment(case, Verdict.KEPT, f"until{when or ' its review date'}"))
        elif case.state is not CaseState.CLOSED:
            found.append(Assessment(case, Verdict.OPEN, f"{rule.why}; close it first"))
        elif rule.then is AtExpiry.DESTROY:
            found.append(Assessment(case, Verdict.SHRED, f"{rule.why} (expired{when})"))
        else:
            found.append(Assessment(case, Verdict.REVIEW, f"{rule.why} (expired{when})"))
    return found


async def _births(service: CaseService, identity: Identity) -> dict[str, date | None]:
    """The child's date of birth of every Encompass case ``identity`` may read (each read is
    audited as any other)."""
    wanted = [
        c.ref
        for c in await service.list_cases()
        if DEFAULT_RETENTION[c.source].count_from is CountFrom.CHILD_BIRTH
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


async def run(runner: _Runner) -> int:
    args = runner.args
    if not args.dry_run:
        raise InvalidInput(
            "only `sgalert retention run --dry-run` is built: shredding waits for legal holds"
            " and the review step (docs/retention.md); nothing was changed"
        )
    if not runner.workspace.is_initialised():
        raise WorkspaceError(f"no workspace at {runner.workspace.root}; run `sgalert init`")
    async with await CaseService.open(runner.workspace) as service:
        assert service.config is not None
        today = _day(args.on) if args.on else utcnow().astimezone(service.config.timezone).date()
        births = await _births(service, await runner.unlocked(service)) if args.as_email else None
        found = assess(await service.list_cases(), today, births)
        counts = Counter(a.verdict for a in found)
        async with service.store.write() as db:
            detail = {verdict.name.lower(): counts[verdict] for verdict in Verdict}
            actor = args.as_email or audit.SYSTEM
            await audit.append(db, [audit.AuditEvent(actor, "retention-dry-run", None, detail)])
    for assessment in found:
        if assessment.verdict is not Verdict.KEPT:
            print(assessment.line())
    print(
        f"dry run for {today.isoformat()}: "
        + ", ".join(f"{counts[v]} {v.value}" for v in Verdict)
        + "; nothing was changed"
    )
    print("Legal holds are not recorded yet: check none of these is under one before shredding.")
    return 0


COMMANDS: tuple[Entry, ...] = (
    Group(
        "retention",
        "retention periods and crypto-shredding",
        (
            Command(
                "run",
                "list the cases past their retention period and what would become of each",
                run,
                (
                    Argument(
                        "--dry-run",
                        flag=True,
                        help="list only, change nothing (required: shredding is not built yet)",
                    ),
                    Argument(
                        "--as",
                        dest="as_email",
                        metavar="EMAIL",
                        help="unlock as this reader to assess Encompass cases (their expiry is"
                        " the child's 25th birthday, which is sealed); the passphrase comes from"
                        " $SGALERT_PASSPHRASE or the terminal",
                    ),
                    Argument(
                        "--on",
                        metavar="YYYY-MM-DD",
                        help="assess as of this day (default: today in the school's time zone)",
                    ),
                ),
            ),
        ),
    ),
)
