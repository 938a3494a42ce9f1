"""``sgalert config check``: everything the engine will rely on, checked before it has to.

:func:`~sgalert.config.load_config` refuses a file that cannot be read as a configuration. A file
that loads can still page nobody: a policy naming a channel that is not configured, a target
with no current person who may read the case, an adapter's options that only fail when
``serve`` starts it, term dates that have run out. Each becomes one :class:`Problem` that names
the file, the key and the fix, in a stable order (calendar, rota, channels, policies, sources).

Errors mean something will not work as written; warnings mean it works, with less than the
configuration suggests (a school without Teams, terms ending within 60 days).

The adapters are checked through the factories their entry points name, the same call
``serve`` makes: a factory checks every option and reads every secret, and connects only when
run. So the core never imports :mod:`integrations`.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sgalert.config import SECTIONS, Config
from sgalert.errors import ConfigError, SgalertError
from sgalert.model import ABOUT_HEAD_READERS, Role, Source
from sgalert.ports import notifier_factory
from sgalert.records.store import Store
from sgalert.routing.calendar_check import WARN_DAYS, CoverageStatus, coverage
from sgalert.rules.policy import ABOUT_HEAD_POLICY, DEFAULT_POLICIES, Policy


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding; ``text`` reads "what is wrong; what to do"."""

    severity: Severity
    key: str
    text: str

    def line(self, path: Path) -> str:
        return f"{self.severity}: {path}: {self.key}: {self.text}"


def _error(key: str, problem: str, fix: str) -> Problem:
    return Problem(Severity.ERROR, key, f"{problem}; {fix}")


def _warning(key: str, problem: str, fix: str) -> Problem:
    return Problem(Severity.WARNING, key, f"{problem}; {fix}")


def _from_config_error(exc: SgalertError, fallback_key: str) -> Problem:
    """An adapter's ConfigError ("sources[x].key: problem; fix") as a Problem."""
    message = str(exc)
    key, sep, text = message.partition(": ")
    if not sep or " " in key:
        key, text = fallback_key, message
    return Problem(Severity.ERROR, key, text)


@dataclass(frozen=True, slots=True)
class CurrentPerson:
    """Someone not removed, with the groups whose keys they hold (active memberships)."""

    email: str
    role: str
    groups: frozenset[str]


async def current_people(store: Store) -> list[CurrentPerson]:
    rows = await store.fetchall(
        "SELECT p.email, p.role, m.group_name FROM people p LEFT JOIN group_members m"
        " ON m.person_id = p.id AND m.state = 'active' WHERE p.removed_at IS NULL"
        " ORDER BY p.email"
    )
    found: dict[str, tuple[str, set[str]]] = {}
    for email, role, group in rows:
        _, groups = found.setdefault(str(email).lower(), (str(role), set()))
        if group is not None:
            groups.add(str(group))
    return [CurrentPerson(e, role, frozenset(g)) for e, (role, g) in found.items()]


# ----- the calendar ------------------------------------------------------------------------


def check_calendar(config: Config, now: datetime) -> list[Problem]:
    found = coverage(config.calendar, now)
    fix = "add next year's [[calendar.terms]] (start, end, half_term)"
    if found.status is CoverageStatus.EXHAUSTED:
        what = (
            f"the last term ended on {found.last_term_day.isoformat()}"
            if found.last_term_day
            else "no term is configured"
        )
        return [
            _error(
                "calendar.terms",
                f"{what}, so Operation Encompass deadlines are guessed from working days"
                " (cases are flagged calendar-ended)",
                fix,
            )
        ]
    if found.status is CoverageStatus.ENDING:
        assert found.last_term_day is not None
        return [
            _warning(
                "calendar.terms",
                f"the last term ends on {found.last_term_day.isoformat()}, within {WARN_DAYS} days",
                fix,
            )
        ]
    return []


# ----- the rota --------------------------------------------------------------------------


def check_rota_people(config: Config, people: Sequence[CurrentPerson]) -> list[Problem]:
    """Every address the rota names must be a current person: a misspelt fallback is never the
    fallback (with no other, cover out of hours falls to nobody), a misspelt shift is never on
    duty. The nearest current address is offered, as for a misspelt key."""
    current = [p.email for p in people]
    named = [("rota.fallback", email, "so is never the fallback") for email in config.fallback]
    named += [
        (f"rota.shifts[{index}].who", shift.who, "so this shift falls to the fallback")
        for index, shift in enumerate(config.shifts)
    ]
    problems = []
    for key, email, so in named:
        if email in current:
            continue
        hint = difflib.get_close_matches(email, current, n=1)
        problems.append(
            _error(
                key,
                f"{email} is not a current person (never added, or removed), {so}",
                f"did you mean {hint[0]!r}?"
                if hint
                else "run `sgalert user add` for them, or name a current person",
            )
        )
    return problems


# ----- policies: channels and targets ------------------------------------------------------


def _is_default(config: Config, source: Source) -> bool:
    return config.policies[source] is DEFAULT_POLICIES[source]


def _routes(policy: Policy) -> list[tuple[str, str, tuple[str, ...]]]:
    """(where, target, channels) for each step and the repeat, in the policy's order."""
    routes = [
        (f"steps[{index}]", step.target, step.channels) for index, step in enumerate(policy.steps)
    ]
    routes.append(("repeat", policy.repeat_target, policy.repeat_channels))
    return routes


def _route_key(source: Source, where: str, name: str) -> str:
    """The file's key for a step's (or the repeat's) ``target`` or ``channels``."""
    if where == "repeat":
        return f"policies.{source}.repeat_{name}"
    return f"policies.{source}.{where}.{name}"


def check_policy_channels(config: Config) -> list[Problem]:
    """Every channel a policy pages by must be configured, or that page goes nowhere.

    A policy written in the file naming an unknown channel is an error. The built-in default
    policies page by "email" and "teams": a step none of whose channels is configured is an
    error; a missing "teams" alongside a configured "email" is a warning (a school without
    Teams is fine, but should know that the defaults would use it).
    """
    configured = {channel.name for channel in config.channels}
    known = ", ".join(sorted(configured)) or "none"
    problems: list[Problem] = []
    unused: dict[str, list[str]] = {}
    for source in Source:
        policy = config.policies[source]
        if not _is_default(config, source):
            for where, _, channels in _routes(policy):
                for channel in channels:
                    if channel not in configured:
                        problems.append(
                            _error(
                                _route_key(source, where, "channels"),
                                f"channel {channel!r} is not configured, so these pages go nowhere",
                                f"add [channels.{channel}] or name a configured channel"
                                f" (configured: {known})",
                            )
                        )
            continue
        for where, _, channels in _routes(policy):
            if not configured.intersection(channels):
                names = " or ".join(repr(c) for c in channels)
                which = "which is not" if len(channels) == 1 else "neither of which is"
                problems.append(
                    _error(
                        f"policies.{source}",
                        f"the default {source} policy ({where}) pages by {names}, {which}"
                        " configured",
                        f"name a channel [channels.email], or write [policies.{source}] naming"
                        f" yours (configured: {known})",
                    )
                )
                break
            for channel in channels:
                if channel not in configured and source.value not in unused.get(channel, []):
                    unused.setdefault(channel, []).append(source.value)
    for channel, sources in sorted(unused.items()):
        problems.append(
            _warning(
                f"channels.{channel}",
                f"the default policies for {', '.join(sources)} also page by {channel!r},"
                " which is not configured, so they page by the other channels only",
                f"add [channels.{channel}] to use it, or write [policies.SOURCE] without it",
            )
        )
    return problems


def _readers(config: Config, source: Source, about_head: bool) -> tuple[str, ...]:
    if about_head:
        return tuple(ABOUT_HEAD_READERS.content)
    return tuple(config.readers[source].content)


def _target_problem(
    target: str,
    readers: Sequence[str],
    people: Sequence[CurrentPerson],
    source_label: str,
    readers_key: str,
) -> tuple[str, str] | None:
    """Why ``target`` would page nobody for a case only ``readers`` may read, and the fix."""
    entitled = [p for p in people if p.groups.intersection(readers)]
    reader_roles = [r for r in readers if r in {role.value for role in Role}]
    add_role = reader_roles[0] if reader_roles else Role.DSL.value
    if target in ("on-duty", "team"):
        if entitled:
            return None
        return (
            f"{target!r} pages nobody: no current person may read {source_label} cases",
            f"run `sgalert user add --name NAME --email EMAIL --role {add_role} --by YOUR_EMAIL`",
        )
    if "@" in target:
        person = next((p for p in people if p.email == target.lower()), None)
        if person is None:
            return (
                f"{target} is not a current person (never added, or removed)",
                "run `sgalert user add` for them, or name a current person or a role",
            )
        if person not in entitled:
            return (
                f"{target} may not read {source_label} cases, so is never paged",
                f"name someone who may, or add their role to {readers_key}",
            )
        return None
    if any(p.role == target for p in entitled):
        return None
    if target not in readers and any(p.role == target for p in people):
        return (
            f"no {target} may read {source_label} cases, so none is paged",
            f'add "{target}" to {readers_key}, or target a role that may read them',
        )
    return (
        f"no current person with the role {target} may read {source_label} cases, so this"
        " pages nobody",
        f"run `sgalert user add --name NAME --email EMAIL --role {target} --by YOUR_EMAIL`",
    )


def check_policy_targets(config: Config, people: Sequence[CurrentPerson]) -> list[Problem]:
    """Every step and repeat of every policy must reach at least one current person who may
    read the case, including the fixed route of allegations about the headteacher. One line
    per policy and target, naming the steps it is used in."""
    if not people:
        return [
            _error(
                "policies",
                "nobody has been added yet, so every page goes to nobody",
                "run `sgalert user add --first --name NAME --email EMAIL --role dsl`, then"
                " `sgalert user add ... --by YOUR_EMAIL` for each other person"
                " (deputy, head, monitoring-officer, chair)",
            )
        ]
    policies: list[tuple[Source, Policy, bool]] = [(s, config.policies[s], False) for s in Source]
    policies.append((Source.WHISTLE, ABOUT_HEAD_POLICY, True))
    found: dict[tuple[str, str], tuple[list[str], str, str]] = {}
    for source, policy, about_head in policies:
        readers = _readers(config, source, about_head)
        label = "about-head whistleblowing" if about_head else source.value
        for where, target, _ in _routes(policy):
            why = _target_problem(target, readers, people, label, f"readers.{source}")
            if why is None:
                continue
            if about_head:
                key = f"policies.{source}"
                intro = "allegations about the headteacher"
            elif _is_default(config, source):
                key = f"policies.{source}"
                intro = f"the default {source} policy"
            else:
                key, intro = _route_key(source, where, "target"), ""
            wheres, _, _ = found.setdefault(
                (key, intro + target), ([], intro, why[0] + "; " + why[1])
            )
            wheres.append(where)
    return [
        Problem(Severity.ERROR, key, f"{intro} ({', '.join(wheres)}): {text}" if intro else text)
        for (key, _), (wheres, intro, text) in found.items()
    ]


# ----- adapters ----------------------------------------------------------------------------


async def check_channel_adapters(config: Config, root: Path) -> list[Problem]:
    """Each channel's options, through its adapter's factory (connects to nothing)."""
    problems: list[Problem] = []
    for channel in config.channels:
        where = f"channels.{channel.name}"
        try:
            notifier = notifier_factory(channel.kind)(channel.name, channel.options, root)
        except SgalertError as exc:
            problems.append(_from_config_error(exc, where))
            continue
        except Exception as exc:  # an adapter's own bug must still be one line
            problems.append(_adapter_failed(where, channel.kind, exc))
            continue
        await notifier.close()
    return problems


def check_source_adapters(config: Config, root: Path) -> list[Problem]:
    """Each mailbox's options, through its adapter's factory (connects to nothing)."""
    from sgalert.ports import inbox_factory  # the ingest machinery: only when asked

    problems: list[Problem] = []
    for source in config.sources:
        where = f"sources[{source.name}]"
        try:
            inbox_factory(source.kind)(source, root)
        except SgalertError as exc:
            problems.append(_from_config_error(exc, where))
        except Exception as exc:  # an adapter's own bug must still be one line
            problems.append(_adapter_failed(where, source.kind, exc))
    return problems


def _adapter_failed(where: str, kind: str, exc: Exception) -> Problem:
    if isinstance(exc, OSError):  # a file option the adapter could not even look at
        return _error(
            where,
            f'the "{kind}" adapter could not open a file these options name'
            f" ({exc.strerror or type(exc).__name__})",
            "check that each *_file option names a readable file by a short path",
        )
    return _error(
        where,
        f'the "{kind}" adapter could not read these options ({type(exc).__name__})',
        "check each option's type against docs/operators.md",
    )


async def adapter_problems(config: Config, root: Path) -> list[Problem]:
    """What would stop ``serve`` from starting: every channel's and source's options."""
    return [
        *await check_channel_adapters(config, root),
        *check_source_adapters(config, root),
    ]


# ----- all together ------------------------------------------------------------------------


async def check(
    config: Config, root: Path, people: Sequence[CurrentPerson], now: datetime
) -> list[Problem]:
    """Every problem, errors and warnings, in the file's order of sections (and, within one,
    the order they were found in)."""
    found = [
        *check_head_names(config),
        *check_calendar(config, now),
        *check_rota_people(config, people),
        *await check_channel_adapters(config, root),
        *check_policy_channels(config),
        *check_policy_targets(config, people),
        *check_source_adapters(config, root),
    ]
    return sorted(found, key=_section_rank)


def check_head_names(config: Config) -> list[Problem]:
    """Without the head's names, a notice or a phoned-in concern about the head is kept from
    them only if someone says so (allegations are still read for the title)."""
    if config.head_names:
        return []
    return [
        _warning(
            "school.head_names",
            "empty, so a police notice, lesson report or phoned-in concern that names the"
            " headteacher is not recognised as about them (allegations still are, by title)",
            'add the names the head is known by, e.g. head_names = ["Morgan Invented",'
            ' "Mrs Invented"]',
        )
    ]


def _section_rank(problem: Problem) -> int:
    section = problem.key.split(".", 1)[0].split("[", 1)[0]
    return SECTIONS.index(section) if section in SECTIONS else len(SECTIONS)


async def check_workspace(config: Config, root: Path, store: Store, now: datetime) -> list[Problem]:
    return await check(config, root, await current_people(store), now)


def refuse_to_serve(problems: Sequence[Problem], path: Path) -> None:
    """Raise one ConfigError line for adapter errors that would otherwise crash ``serve``."""
    errors = [p for p in problems if p.severity is Severity.ERROR]
    if not errors:
        return
    more = f" (and {len(errors) - 1} more: run `sgalert config check`)" if len(errors) > 1 else ""
    raise ConfigError(f"{path}: {errors[0].key}: {errors[0].text}{more}")


def summary(problems: Sequence[Problem], path: Path, sources: int) -> str:
    errors = sum(p.severity is Severity.ERROR for p in problems)
    warnings = len(problems) - errors
    if errors:
        return f"{path}: {errors} error(s), {warnings} warning(s)"
    if warnings:
        return f"{path}: valid ({sources} source(s)), {warnings} warning(s)"
    return f"{path}: valid ({sources} source(s))"
