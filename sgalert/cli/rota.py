"""Who is on duty: ``rota who`` names them and the rule that chose them, ``rota check`` finds
gaps in cover ahead, ``rota cover`` adds a dated cover."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from sgalert.cli.context import Context
from sgalert.cli.spec import AS_EMAIL, JSON, Argument, Command, Entry, Group
from sgalert.clock import in_words, iso
from sgalert.errors import InvalidInput
from sgalert.rules.rota import Rota
from sgalert.text import printable

LONGEST_CHECK = 3660  # days; a day past the calendar's end (year 9999) was an OverflowError


async def who(ctx: Context) -> int:
    from sgalert.clock import utcnow
    from sgalert.routing.duty import load_rota

    at = ctx.school_time(ctx.args.at, "--at") if ctx.args.at else utcnow()
    async with await ctx.service() as service:
        view = await load_rota(service, since=at)
    duty = view.who(at)
    person = view.people.get(duty.who or "")
    if ctx.args.json:
        print(
            json.dumps(
                {
                    "at": iso(at),
                    "who": duty.who,
                    "name": person.name if person else None,
                    "role": person.role.value if person else None,
                    "rule": duty.rule,
                    "fallback": duty.fallback,
                },
                indent=2,
            )
        )
        return 0
    when = in_words(at, view.rota.calendar.zone, year=True, zone_name=True)
    name = f"{printable(person.name)} <{duty.who}>" if person else "nobody"
    print(f"{when}: {name} ({duty.rule})")
    return 0


async def check(ctx: Context) -> int:
    from sgalert.clock import utcnow
    from sgalert.routing.duty import load_rota

    if not 1 <= ctx.args.days <= LONGEST_CHECK:
        raise InvalidInput(
            f"--days {ctx.args.days}: check from 1 to {LONGEST_CHECK} days ahead (ten years)"
        )
    now = utcnow()
    async with await ctx.service() as service:
        view = await load_rota(service, since=now)
    gaps = view.gaps(now, ctx.args.days)
    unknown = view.unknown_people()
    zone = view.rota.calendar.zone
    if ctx.args.json:
        print(
            json.dumps(
                {
                    "gaps": [
                        {"from": iso(g.start), "to": iso(g.end), "fallback": g.covered_by}
                        for g in gaps
                    ],
                    "unknown_people": unknown,
                },
                indent=2,
            )
        )
    else:
        for email in unknown:
            print(f"warning: the rota names {email}, who is not a current person")
        for gap in gaps:
            print(
                f"warning: gap {in_words(gap.start, zone)} to "
                f"{in_words(gap.end, zone)}: no shift or cover; "
                f"fallback {gap.covered_by or 'NOBODY'}"
            )
        if not gaps and not unknown:
            print(f"rota covers every minute of the next {ctx.args.days} days")
        print(*_beyond_the_calendar(view.rota, now, ctx.args.days), sep="\n", end="")
    return 1 if gaps or unknown else 0


def _beyond_the_calendar(rota: Rota, now: datetime, days: int) -> list[str]:
    """A note when the check reaches past the last configured term and a shift keeps to term or
    holiday: there every day counts as a holiday, so the check answers for a guessed pattern."""
    last = rota.calendar.last_term_day
    until = rota.calendar.local(now + timedelta(days=days)).date()
    if last is None or until <= last or all(shift.when == "always" for shift in rota.shifts):
        return []
    return [
        f"note: the terms in sgalert.toml end {last:%a} {last.day} {last:%b %Y}; after that"
        " every day counts as a holiday for the rota's term and holiday shifts: add the next"
        " year's terms\n"
    ]


async def cover(ctx: Context) -> int:
    starts = ctx.school_time(ctx.args.start, "--from")
    ends = ctx.school_time(ctx.args.end, "--to")
    async with await ctx.service() as service:
        identity = await ctx.unlocked(service)
        cover = await service.add_cover(identity, ctx.args.who, starts, ends)
    print(f"cover {cover.id}: {cover.who} from {iso(cover.starts_at)} to {iso(cover.ends_at)}")
    return 0


COMMANDS: tuple[Entry, ...] = (
    Group(
        "rota",
        "who is on duty",
        (
            Command(
                "who",
                "who is on duty, and the rule that chose them",
                who,
                (
                    Argument(
                        "--at",
                        help="an ISO 8601 time, the school's local time unless it has an offset"
                        " (default: now)",
                    ),
                    JSON,
                ),
            ),
            Command(
                "check",
                "report gaps in cover (exit 1 if any)",
                check,
                (
                    Argument(
                        "--days", type=int, default=14, help="how many days ahead (default: 14)"
                    ),
                    JSON,
                ),
            ),
            Command(
                "cover",
                "add a dated cover",
                cover,
                (
                    Argument("--who", required=True, metavar="EMAIL", help="who covers"),
                    Argument(
                        "--from",
                        dest="start",
                        required=True,
                        metavar="ISO",
                        help="when the cover starts, the school's local time unless it has an"
                        " offset",
                    ),
                    Argument(
                        "--to",
                        dest="end",
                        required=True,
                        metavar="ISO",
                        help="when the cover ends, the school's local time unless it has an offset",
                    ),
                    AS_EMAIL,
                ),
            ),
        ),
    ),
)
