"""What every command handler is given: the parsed arguments, the workspace, and the few steps
most commands share (open the service, ask for the passphrase, read a time in the school's zone).
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import TypeVar

from sgalert.config import load_config
from sgalert.desk.service import CaseService
from sgalert.errors import InvalidInput, WorkspaceError
from sgalert.records.keyring import Identity
from sgalert.text import has_unsafe
from sgalert.workspace import Workspace, resolve_workspace

T = TypeVar("T")

ENV_PASSPHRASE = "SGALERT_PASSPHRASE"  # noqa: S105 (a variable name, not a secret)


def read_passphrase(prompt: str, *, confirm: bool = False, env: str = ENV_PASSPHRASE) -> str:
    """The passphrase from SGALERT_PASSPHRASE (or ``env``), else from the terminal (never from
    a pipe).

    Passphrases are UTF-8 text: bytes that are not (a Latin-1 terminal, a mangled variable) are
    refused in one line that never echoes them.
    """
    from_env = os.environ.get(env)
    if from_env is not None:
        try:
            from_env.encode("utf-8")  # undecodable bytes arrive as lone surrogates
        except UnicodeEncodeError:
            raise InvalidInput(
                f"the passphrase in {env} is not UTF-8 text; set it again as UTF-8"
            ) from None
        return from_env
    if not sys.stdin.isatty():
        raise InvalidInput(f"no terminal to ask for the passphrase; set {env}")
    try:
        first = getpass.getpass(prompt)
        if confirm and getpass.getpass("Repeat the passphrase: ") != first:
            raise InvalidInput("the two passphrases differ; nothing was changed")
    except UnicodeDecodeError:
        raise InvalidInput(
            "the passphrase typed is not UTF-8 text; set the terminal to UTF-8 and try again"
        ) from None
    return first


TIME_FORMAT = "2026-11-23T08:30 (the school's local time) or 2026-11-23T08:30+00:00"
FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(2999, 12, 31)
"""The days the command line takes: wider than any school record, and far enough inside
Python's years 1 to 9999 that what is counted from a day (a week either side, the next
midnight, an offset) never runs off the calendar."""


def within_range(day: date, text: str, option: str) -> date:
    """``day`` (given as ``text`` to ``option``), or one clear line when it is out of range."""
    if not FIRST_DAY <= day <= LAST_DAY:
        raise InvalidInput(
            f"{option} {text!r} is out of range: sgalert takes dates from {FIRST_DAY} to {LAST_DAY}"
        )
    return day


def parse_school_time(text: str, zone: tzinfo, option: str) -> datetime:
    """A time given on the command line, in UTC. One without an offset is the school's local
    time whatever the host's zone: a server often runs in UTC, a laptop abroad in another.

    A local time the clocks skip (01:30 on the night they go forward) is refused, and so is one
    they pass twice (01:30 on the night they go back) unless an offset says which is meant: a
    cover or a call must not start an hour away from where the person meant it."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            f"{option} {text!r} is not an ISO 8601 date and time; write it as {TIME_FORMAT}"
        ) from None
    within_range(moment.date(), text, option)
    if moment.tzinfo is None:
        moment = _wall_clock(moment, zone, text, option)
    return moment.astimezone(UTC)


def _wall_clock(moment: datetime, zone: tzinfo, text: str, option: str) -> datetime:
    """``moment`` read on the school's wall clock, if that names exactly one instant."""
    first, second = moment.replace(tzinfo=zone, fold=0), moment.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return first
    change = _clock_change(first.astimezone(UTC), second.astimezone(UTC), zone)
    before = (change - timedelta(seconds=1)).astimezone(zone)
    after = change.astimezone(zone)
    day = f"{after:%a} {after.day} {after:%b %Y}"
    place = getattr(zone, "key", str(zone))
    old = f"{change + (before.utcoffset() or timedelta()):%H:%M} {before:%Z}"
    new = f"{after:%H:%M %Z}"
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != moment:
        raise InvalidInput(
            f"{option} {text!r} never happens in {place}: on {day} the clocks go forward from"
            f" {old} to {new}; give a time before {old[:5]} or from {new[:5]}"
        )
    spec = "minutes" if not (moment.second or moment.microsecond) else "auto"
    raise InvalidInput(
        f"{option} {text!r} happens twice in {place}: on {day} the clocks go back from {old}"
        f" to {new}; say which with its offset: {first.isoformat(timespec=spec)} ({first:%Z},"
        f" the first) or {second.isoformat(timespec=spec)} ({second:%Z}, the second)"
    )


def _clock_change(one: datetime, other: datetime, zone: tzinfo) -> datetime:
    """The instant (UTC, to the second) between ``one`` and ``other`` at which ``zone``'s
    offset changes."""
    low, high = min(one, other), max(one, other)
    offset = low.astimezone(zone).utcoffset()
    # the offset is ``offset`` at low + lo seconds and another at low + hi seconds
    lo, hi = 0, int((high - low).total_seconds())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if (low + timedelta(seconds=mid)).astimezone(zone).utcoffset() == offset:
            lo = mid
        else:
            hi = mid
    return low + timedelta(seconds=hi)


CASE_REF = re.compile(
    r"SG-\d{4}-\d{4,}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE
)
"""A case's reference (``SG-2026-0042``, any letter case) or its id."""


def case_ref(text: str) -> str:
    """``REF`` on the command line (an argparse ``type``): a reference or a case id, spaces
    either side allowed, and nothing else. Commands echo the reference they acted on, so a
    carriage return or an escape in it would reach the terminal (and a log, a script's
    output); a reference never holds one, so anything else is refused before any lookup."""
    ref = text.strip(" ")
    if not CASE_REF.fullmatch(ref):
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise argparse.ArgumentTypeError(
            f"{shown!r} is not a case reference; write it as SG-2026-0042, or give the case's id"
        )
    return ref


def one_line(text: str) -> str:
    """An argparse ``type`` for a value that becomes a one-line setting (the school's name): no
    newline, tab, control or bidi character, which would end or disguise the line it goes in."""
    if has_unsafe(text) or "\n" in text or "\t" in text:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise argparse.ArgumentTypeError(
            f"{shown!r} holds a control character; give it as plain text on one line"
        )
    return text


class Context:
    """The parsed arguments and the workspace for one command."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workspace: Workspace = resolve_workspace(args.workspace)

    async def service(self) -> CaseService:
        """The façade on this workspace; a missing workspace is one line saying how to make it."""
        problem = self.workspace.not_ready()
        if problem is not None:
            raise WorkspaceError(problem)
        return await CaseService.open(self.workspace)

    def school_time(self, text: str, option: str) -> datetime:
        """``--at`` and the like: see :func:`parse_school_time`; the zone is the config's."""
        return parse_school_time(text, load_config(self.workspace.config_path).timezone, option)

    async def unlocked(self, service: CaseService) -> Identity:
        """The keys of the person named by ``--as``, unlocked with their passphrase."""
        passphrase = read_passphrase(f"Passphrase for {self.args.as_email}: ")
        return await service.unlock(self.args.as_email, passphrase)

    async def acting(self, act: Callable[[CaseService, Identity], Awaitable[T]]) -> T:
        """One step on a case by the person named by ``--as``: open the workspace, unlock them,
        and ``act`` (the façade's check and audit are the step's own)."""
        async with await self.service() as service:
            return await act(service, await self.unlocked(service))
