"""Reading and checking ``sgalert.toml``.

Every error names the file, the dotted key and what to write instead, because the person reading
it is usually the school's IT lead at the end of a long day, not an sgalert developer.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, time
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sgalert.errors import ConfigError
from sgalert.model import DEFAULT_READERS, WHISTLE_IDENTITY, Readers, Role, Source
from sgalert.rules.policy import DEFAULT_POLICIES, TARGETS, Policy, Step
from sgalert.rules.retention import DEFAULT_RETENTION, AtExpiry, RetentionRule
from sgalert.rules.rota import WEEKDAYS, Shift
from sgalert.rules.school_calendar import NATIONS, SchoolCalendar, Term
from sgalert.text import has_unsafe, toml_string

INBOX_KINDS = ("maildir", "imap", "graph", "ews")
CHANNEL_KINDS = ("maildrop", "smtp", "teams-workflow", "graph-mail")
PER_PERSON_KINDS = frozenset({"maildrop", "smtp", "graph-mail"})
GROUP_NAMES = (*(role.value for role in Role), WHISTLE_IDENTITY)


TEMPLATE_RESOURCE = "config_template.toml"
"""The commented starting config that ``sgalert init`` writes, shipped inside the package; its
``{school_name}`` is filled in by :func:`render_template`."""


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Ceilings on what a single message may cost. Over any of them: a ``malformed`` case."""

    max_message_bytes: int = 25 * 1024 * 1024
    max_headers: int = 500
    max_header_bytes: int = 16 * 1024
    max_depth: int = 16
    max_parts: int = 200
    max_body_chars: int = 2_000_000


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """One watched mailbox; adapter-specific settings stay in ``options`` for the adapter."""

    name: str
    type: Source
    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)
    authserv_id: str | None = None
    sender_domains: tuple[str, ...] = ()
    down_after_minutes: int = 10
    # "cases" for notification mailboxes; "replies" for the mailbox that receives replies to
    # sgalert's own notification emails (acknowledgements). ``type`` is unused for replies.
    purpose: str = "cases"


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """One notification channel; adapter-specific settings stay in ``options``."""

    name: str
    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def per_person(self) -> bool:
        return self.kind in PER_PERSON_KINDS


@dataclass(frozen=True, slots=True)
class DigestSettings:
    """The daily digest: when, to whom and by which email channel. Off unless ``[digest]`` is
    in the config (``sgalert init`` writes it), so an existing school is not surprised."""

    enabled: bool = False
    at: time = time(7, 30)
    recipients: tuple[str, ...] = ("head",)  # roles and/or email addresses
    also_non_school_days: bool = False
    channel: str | None = None  # a per-person channel; None: the first one configured


@dataclass(frozen=True, slots=True)
class Config:
    """The validated configuration."""

    path: Path
    school_name: str
    timezone: ZoneInfo
    idle_lock_minutes: int
    readers: Mapping[Source, Readers]
    sources: tuple[SourceConfig, ...]
    head_names: tuple[str, ...] = ()
    limits: ParseLimits = field(default_factory=ParseLimits)
    calendar: SchoolCalendar = field(default_factory=SchoolCalendar)
    shifts: tuple[Shift, ...] = ()
    fallback: tuple[str, ...] = ()
    channels: tuple[ChannelConfig, ...] = ()
    policies: Mapping[Source, Policy] = field(default_factory=lambda: dict(DEFAULT_POLICIES))
    digest: DigestSettings = field(default_factory=DigestSettings)
    retention: Mapping[Source, RetentionRule] = field(
        default_factory=lambda: dict(DEFAULT_RETENTION)
    )

    def source(self, name: str) -> SourceConfig:
        for source in self.sources:
            if source.name == name:
                return source
        known = ", ".join(s.name for s in self.sources) or "none configured"
        raise ConfigError(f"{self.path}: sources: no source named {name!r} (known: {known})")


def refuse_unknown_options(
    options: Mapping[str, Any], known: tuple[str, ...], where: str, kind: str
) -> None:
    """An adapter's options checked against the keys it reads: a misspelt key is a config
    error naming the nearest known one (a silently ignored key is a setting that never applies)."""
    for key in options:
        if key not in known:
            hint = difflib.get_close_matches(str(key), known, n=1)
            fix = f"did you mean {hint[0]!r}?" if hint else f"{kind} options: {', '.join(known)}"
            raise ConfigError(f'{where}.{key}: unknown option for kind = "{kind}"; {fix}')


def config_template() -> str:
    """The starting config as shipped, with its ``{school_name}`` placeholder."""
    return (resources.files("sgalert") / TEMPLATE_RESOURCE).read_text(encoding="utf-8")


def render_template(school_name: str) -> str:
    """The commented starting config that ``sgalert init`` writes."""
    return config_template().replace('"{school_name}"', toml_string(school_name))


class _Checker:
    """Walks the parsed TOML, raising ConfigError that name file, key and fix."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, problem: str, fix: str) -> ConfigError:
        return ConfigError(f"{self.path}: {key}: {problem}; {fix}")

    def table(self, data: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, "must be a table", f"write it as [{key}]")
        for name in value:
            if name not in allowed:
                hint = difflib.get_close_matches(name, allowed, n=1)
                fix = (
                    f"did you mean {hint[0]!r}?" if hint else f"allowed keys: {', '.join(allowed)}"
                )
                raise self.fail(f"{key}.{name}", "unknown key", fix)
        return value

    def string(self, data: Mapping[str, Any], key: str, where: str, default: str | None) -> str:
        value = data.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{where}.{key}", "must be a non-empty string", f'write {key} = "..."')
        if has_unsafe(value) or "\n" in value or "\t" in value:  # shown in digests and pages
            raise self.fail(
                f"{where}.{key}", "holds a control character or escape", "write it as plain text"
            )
        return value

    def strings(self, data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(f"{where}.{key}", "must be a list of strings", f'e.g. {key} = ["..."]')
        return tuple(value)

    def whole(
        self, data: Mapping[str, Any], key: str, where: str, default: int, low: int, high: int
    ) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(
                f"{where}.{key}",
                f"must be a whole number from {low} to {high}",
                f"e.g. {key} = {default}",
            )
        return value

    def groups(
        self, data: Mapping[str, Any], key: str, default: tuple[str, ...]
    ) -> tuple[str, ...]:
        value = data.get(key, list(default))
        where = f"readers.{key}"
        if not isinstance(value, list) or not value:
            raise self.fail(where, "must be a non-empty list of groups", 'e.g. ["dsl", "deputy"]')
        for group in value:
            if group not in GROUP_NAMES:
                hint = difflib.get_close_matches(str(group), GROUP_NAMES, n=1)
                fix = (
                    f"did you mean {hint[0]!r}?" if hint else f"use one of {', '.join(GROUP_NAMES)}"
                )
                raise self.fail(where, f"unknown group {group!r}", fix)
        return tuple(value)


# The file's sections in the order the template writes them (and `config check` reports them).
SECTIONS = (
    "school",
    "security",
    "calendar",
    "rota",
    "channels",
    "policies",
    "readers",
    "ingest",
    "digest",
    "retention",
    "sources",
)


def load_config(path: Path) -> Config:
    """Read and validate the config file, or raise ConfigError naming the file, key and fix."""
    check = _Checker(path)
    try:
        if path.exists() and not path.is_file():  # a pipe or /dev/zero was read for ever
            raise ConfigError(f"{path}: is not a file; sgalert.toml must be a regular file")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: not found; run `sgalert init` or point --workspace at an existing workspace"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot be read ({exc.strerror}); check its permissions"
        ) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: is not UTF-8 text; save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: is not valid TOML ({exc}); fix the syntax there") from None

    top = SECTIONS
    for key in data:
        if key not in top:
            hint = difflib.get_close_matches(key, top, n=1)
            raise check.fail(
                key,
                "unknown section",
                f"did you mean {hint[0]!r}?" if hint else f"sections are {', '.join(top)}",
            )

    school = check.table(data, "school", ("name", "timezone", "head_names"))
    school_name = check.string(school, "name", "school", None)
    tz_name = check.string(school, "timezone", "school", "Europe/London")
    try:
        timezone = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise check.fail(
            "school.timezone", f"{tz_name!r} is not a known time zone", 'use e.g. "Europe/London"'
        ) from None

    head_names = check.strings(school, "head_names", "school")

    ingest = check.table(
        data, "ingest", ("max_message_mb", "max_headers", "max_mime_depth", "max_mime_parts")
    )
    limits = ParseLimits(
        max_message_bytes=check.whole(ingest, "max_message_mb", "ingest", 25, 1, 1024) << 20,
        max_headers=check.whole(ingest, "max_headers", "ingest", 500, 20, 100_000),
        max_depth=check.whole(ingest, "max_mime_depth", "ingest", 16, 2, 100),
        max_parts=check.whole(ingest, "max_mime_parts", "ingest", 200, 2, 10_000),
    )

    security = check.table(data, "security", ("idle_lock_minutes",))
    idle = security.get("idle_lock_minutes", 10)
    if isinstance(idle, bool) or not isinstance(idle, int) or not 1 <= idle <= 240:
        raise check.fail(
            "security.idle_lock_minutes",
            "must be a whole number of minutes from 1 to 240",
            "e.g. idle_lock_minutes = 10",
        )

    reader_keys = ("encompass", "lesson", "whistle", "whistle_identity")
    readers_table = check.table(data, "readers", reader_keys)
    readers: dict[Source, Readers] = {}
    for source in Source:
        default = DEFAULT_READERS[source]
        content = check.groups(readers_table, source.value, default.content)
        identity: tuple[str, ...] = ()
        if source is Source.WHISTLE:
            identity = check.groups(readers_table, "whistle_identity", default.identity)
        readers[source] = Readers(content=content, identity=identity)

    calendar = _check_calendar(check, data, timezone)
    shifts, fallback = _check_rota(check, data)
    channels = _check_channels(check, data)
    policies = _check_policies(check, data, {c.name for c in channels})
    sources = _check_sources(check, data.get("sources", []))
    digest = _check_digest(check, data, channels)
    retention = _check_retention(check, data)
    return Config(
        path=path,
        school_name=school_name,
        timezone=timezone,
        idle_lock_minutes=idle,
        readers=readers,
        sources=sources,
        head_names=head_names,
        limits=limits,
        calendar=calendar,
        shifts=shifts,
        fallback=fallback,
        channels=channels,
        policies=policies,
        digest=digest,
        retention=retention,
    )


MAX_RETENTION_YEARS = 100


def _check_retention(check: _Checker, data: Mapping[str, Any]) -> dict[Source, RetentionRule]:
    """``[retention]``: per source, ``years`` and ``then`` ("destroy" or "review").

    A period shorter than the policy's is refused unless ``below_policy = true`` records that
    the school chose it on advice: a slip of the finger must not shred records early.
    """
    table = check.table(data, "retention", tuple(s.value for s in Source))
    rules = dict(DEFAULT_RETENTION)
    for source_name in table:
        where = f"retention.{source_name}"
        source = Source(source_name)
        body = check.table(table, source_name, ("years", "then", "below_policy"))
        policy = DEFAULT_RETENTION[source]
        years = check.whole(body, "years", where, policy.years, 1, MAX_RETENTION_YEARS)
        then_name = body.get("then", policy.then.value)
        if then_name not in tuple(a.value for a in AtExpiry):
            raise check.fail(
                f"{where}.then",
                f"unknown {then_name!r}",
                'use "destroy" (shredded unattended) or "review" (listed for a person to decide)',
            )
        below = body.get("below_policy", False)
        if not isinstance(below, bool):
            raise check.fail(f"{where}.below_policy", "must be true or false", "e.g. false")
        if years < policy.years and not below:
            raise check.fail(
                f"{where}.years",
                f"{years} years is shorter than the policy's {policy.years} ({policy.why})",
                f"write years = {policy.years} or more, or add below_policy = true if the"
                " school decided this on advice",
            )
        why = policy.why if years == policy.years else f"the school keeps these {years} years"
        rules[source] = RetentionRule(years, policy.count_from, AtExpiry(then_name), why)
    return rules


def _check_digest(
    check: _Checker, data: Mapping[str, Any], channels: tuple[ChannelConfig, ...]
) -> DigestSettings:
    if "digest" not in data:
        return DigestSettings()
    table = check.table(
        data, "digest", ("enabled", "time", "recipients", "also_non_school_days", "channel")
    )
    flags = {}
    for key, default in (("enabled", True), ("also_non_school_days", False)):
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise check.fail(
                f"digest.{key}",
                "must be true or false",
                f"e.g. {key} = {'true' if default else 'false'}",
            )
        flags[key] = value
    recipients = (
        check.strings(table, "recipients", "digest") if "recipients" in table else ("head",)
    )
    roles = tuple(r.value for r in Role)
    for who in recipients:
        if who not in roles and "@" not in who:
            hint = difflib.get_close_matches(who, roles, n=1)
            fix = (
                f"did you mean {hint[0]!r}?"
                if hint
                else f"use a role ({', '.join(roles)}) or an email"
            )
            raise check.fail("digest.recipients", f"{who!r} is neither a role nor an email", fix)
    if flags["enabled"] and not recipients:
        raise check.fail(
            "digest.recipients", "is empty", 'e.g. recipients = ["head"], or enabled = false'
        )
    channel = table.get("channel")
    if channel is not None:
        known = {c.name: c for c in channels}
        if not isinstance(channel, str) or channel not in known:
            names = ", ".join(c.name for c in channels if c.per_person) or "none configured"
            raise check.fail(
                "digest.channel", f"{channel!r} is not a configured channel", f"use one of {names}"
            )
        if not known[channel].per_person:
            raise check.fail(
                "digest.channel",
                f"{channel!r} is a shared channel",
                "the digest goes to each person: name a maildrop, smtp or graph-mail channel",
            )
    return DigestSettings(
        enabled=flags["enabled"],
        at=_clock(check, table, "time", "digest", "07:30"),
        recipients=tuple(r.lower() for r in recipients),
        also_non_school_days=flags["also_non_school_days"],
        channel=channel,
    )


def _check_sources(check: _Checker, value: object) -> tuple[SourceConfig, ...]:
    if not isinstance(value, list):
        raise check.fail("sources", "must be a list of tables", "write each as [[sources]]")
    seen: set[str] = set()
    result: list[SourceConfig] = []
    for index, entry in enumerate(value):
        where = f"sources[{index}]"
        if not isinstance(entry, dict):
            raise check.fail(where, "must be a table", "write each as [[sources]]")
        name = check.string(entry, "name", where, None)
        if name in seen:
            raise check.fail(
                f"{where}.name", f"{name!r} is used twice", "give each source its own name"
            )
        seen.add(name)
        type_name = check.string(entry, "type", where, None)
        purpose = "replies" if type_name == "replies" else "cases"
        try:
            source_type = Source.ENCOMPASS if purpose == "replies" else Source(type_name)
        except ValueError:
            raise check.fail(
                f"{where}.type",
                f"unknown type {type_name!r}",
                f"use one of {', '.join(s.value for s in Source)} or replies",
            ) from None
        kind = check.string(entry, "kind", where, None)
        if kind not in INBOX_KINDS:
            raise check.fail(
                f"{where}.kind", f"unknown kind {kind!r}", f"use one of {', '.join(INBOX_KINDS)}"
            )
        authserv = entry.get("authserv_id")
        if authserv is not None and (not isinstance(authserv, str) or not authserv.strip()):
            raise check.fail(
                f"{where}.authserv_id",
                "must be a non-empty string",
                'e.g. authserv_id = "mx.school.example.org" or "exchange-online"',
            )
        domains = check.strings(entry, "sender_domains", where)
        down_after = check.whole(entry, "down_after_minutes", where, 10, 1, 1440)
        core_keys = ("name", "type", "kind", "authserv_id", "sender_domains", "down_after_minutes")
        options = {k: v for k, v in entry.items() if k not in core_keys}
        result.append(
            SourceConfig(
                name=name,
                type=source_type,
                kind=kind,
                options=options,
                authserv_id=authserv.strip() if authserv else None,
                sender_domains=tuple(d.lower() for d in domains),
                down_after_minutes=down_after,
                purpose=purpose,
            )
        )
    return tuple(result)


def _clock(check: _Checker, data: Mapping[str, Any], key: str, where: str, default: str) -> time:
    value = data.get(key, default)
    if isinstance(value, time):  # written unquoted, 07:00:00: TOML's own time
        return value.replace(second=0, microsecond=0)
    try:
        hours, minutes = str(value).split(":")
        return time(int(hours), int(minutes))
    except (ValueError, TypeError):
        raise check.fail(
            f"{where}.{key}", f"{value!r} is not a time", 'write it as "HH:MM"'
        ) from None


def _date(check: _Checker, value: object, where: str) -> date:
    if isinstance(value, date) and not hasattr(value, "hour"):
        return value
    shown = value.isoformat() if isinstance(value, date) else repr(value)
    raise check.fail(where, f"{shown} is not a date", "write it unquoted, e.g. 2026-09-02")


def _check_calendar(check: _Checker, data: Mapping[str, Any], zone: ZoneInfo) -> SchoolCalendar:
    table = check.table(
        data, "calendar", ("nation", "school_day_starts", "school_day_ends", "inset_days", "terms")
    )
    nation = table.get("nation", "england")
    if nation not in NATIONS:
        raise check.fail(
            "calendar.nation", f"unknown nation {nation!r}", f"use one of {', '.join(NATIONS)}"
        )
    starts = _clock(check, table, "school_day_starts", "calendar", "08:30")
    ends = _clock(check, table, "school_day_ends", "calendar", "15:30")
    if ends <= starts:
        raise check.fail(
            "calendar.school_day_ends",
            "is not after school_day_starts",
            "the school day must end after it starts",
        )
    inset_raw = table.get("inset_days", [])
    if not isinstance(inset_raw, list):
        raise check.fail("calendar.inset_days", "must be a list of dates", "e.g. [2026-09-01]")
    inset = frozenset(_date(check, d, "calendar.inset_days") for d in inset_raw)
    terms: list[Term] = []
    raw_terms = table.get("terms", [])
    if not isinstance(raw_terms, list):
        raise check.fail("calendar.terms", "must be a list of tables", "write [[calendar.terms]]")
    for index, term in enumerate(raw_terms):
        where = f"calendar.terms[{index}]"
        if not isinstance(term, dict):
            raise check.fail(where, "must be a table", "write [[calendar.terms]]")
        start = _date(check, term.get("start"), f"{where}.start")
        end = _date(check, term.get("end"), f"{where}.end")
        if end < start:
            raise check.fail(f"{where}.end", "is before start", "swap the dates")
        half = term.get("half_term")
        half_term = None
        if half is not None:
            if not isinstance(half, list) or len(half) != 2:
                raise check.fail(
                    f"{where}.half_term",
                    "must be two dates",
                    "e.g. half_term = [2026-10-26, 2026-10-30]",
                )
            half_term = (
                _date(check, half[0], f"{where}.half_term"),
                _date(check, half[1], f"{where}.half_term"),
            )
        terms.append(Term(str(term.get("name", f"term {index + 1}")), start, end, half_term))
    return SchoolCalendar(
        zone=zone,
        terms=tuple(terms),
        inset_days=inset,
        nation=nation,
        day_starts=starts,
        day_ends=ends,
    )


def _check_rota(
    check: _Checker, data: Mapping[str, Any]
) -> tuple[tuple[Shift, ...], tuple[str, ...]]:
    table = check.table(data, "rota", ("fallback", "shifts"))
    fallback = tuple(e.lower() for e in check.strings(table, "fallback", "rota"))
    raw = table.get("shifts", [])
    if not isinstance(raw, list):
        raise check.fail("rota.shifts", "must be a list of tables", "write [[rota.shifts]]")
    shifts: list[Shift] = []
    for index, entry in enumerate(raw):
        where = f"rota.shifts[{index}]"
        if not isinstance(entry, dict):
            raise check.fail(where, "must be a table", "write [[rota.shifts]]")
        who = check.string(entry, "who", where, None).lower()
        days = entry.get("days", list(WEEKDAYS))
        if not isinstance(days, list) or not days or any(d not in WEEKDAYS for d in days):
            raise check.fail(f"{where}.days", "must list days", f"use {', '.join(WEEKDAYS)}")
        when = entry.get("when", "always")
        if when not in ("term", "holiday", "always"):
            raise check.fail(
                f"{where}.when", f"unknown {when!r}", 'use "term", "holiday" or "always"'
            )
        shifts.append(
            Shift(
                who=who,
                days=frozenset(WEEKDAYS.index(d) for d in days),
                start=_clock(check, entry, "from", where, "00:00"),
                end=_clock(check, entry, "to", where, "00:00"),
                when=when,
            )
        )
    return tuple(shifts), fallback


def _check_channels(check: _Checker, data: Mapping[str, Any]) -> tuple[ChannelConfig, ...]:
    table = data.get("channels", {})
    if not isinstance(table, dict):
        raise check.fail("channels", "must be tables", "write [channels.email]")
    result = []
    for name, entry in table.items():
        where = f"channels.{name}"
        if not isinstance(entry, dict):
            raise check.fail(where, "must be a table", f"write [{where}]")
        kind = check.string(entry, "kind", where, None)
        if kind not in CHANNEL_KINDS:
            raise check.fail(
                f"{where}.kind", f"unknown kind {kind!r}", f"use one of {', '.join(CHANNEL_KINDS)}"
            )
        options = {k: v for k, v in entry.items() if k != "kind"}
        result.append(ChannelConfig(name=name, kind=kind, options=options))
    return tuple(result)


def _check_policies(
    check: _Checker, data: Mapping[str, Any], channel_names: set[str]
) -> dict[Source, Policy]:
    table = check.table(data, "policies", tuple(s.value for s in Source))
    policies = dict(DEFAULT_POLICIES)
    keys = ("steps", "repeat_target", "repeat_channels", "repeat_minutes", "warn_minutes_before")
    for source_name in table:
        where = f"policies.{source_name}"
        source = Source(source_name)
        body = check.table(table, source_name, keys)
        raw_steps = body.get("steps")
        if not isinstance(raw_steps, list) or not raw_steps:
            raise check.fail(
                f"{where}.steps",
                "must be a non-empty list",
                'e.g. [{ target = "on-duty", channels = ["email"], delay_minutes = 0 }]',
            )
        steps = []
        for index, raw in enumerate(raw_steps):
            at = f"{where}.steps[{index}]"
            if not isinstance(raw, dict):
                raise check.fail(at, "must be a table", "{ target = ..., channels = [...] }")
            for name in raw:
                if name not in STEP_KEYS:
                    hint = difflib.get_close_matches(str(name), STEP_KEYS, n=1)
                    fix = f"did you mean {hint[0]!r}?" if hint else f"use {', '.join(STEP_KEYS)}"
                    raise check.fail(f"{at}.{name}", "unknown key in a step", fix)
            target = _target(check, raw, "target", at)
            channels = check.strings(raw, "channels", at) or ("email",)
            delay = _minutes(check, raw, "delay_minutes", at, 0, 0, "e.g. delay_minutes = 10")
            steps.append(Step(target, channels, delay))
        default = DEFAULT_POLICIES[source]
        policies[source] = Policy(
            steps=tuple(steps),
            repeat_target=_target(check, body, "repeat_target", where, "team"),
            repeat_channels=check.strings(body, "repeat_channels", where) or ("email",),
            repeat_minutes=_minutes(check, body, "repeat_minutes", where, 30, 1, "e.g. 30"),
            clock=default.clock,
            warn_minutes_before=_minutes(
                check,
                body,
                "warn_minutes_before",
                where,
                default.warn_minutes_before,
                0,
                f"e.g. warn_minutes_before = {default.warn_minutes_before:g}",
            ),
        )
    # A channel named here but not configured is skipped at send time, so the engine still pages
    # by the others; `sgalert config check` (sgalert.cli.config_check) reports it as an error.
    del channel_names
    return policies


STEP_KEYS = ("target", "channels", "delay_minutes")


def _minutes(
    check: _Checker,
    data: Mapping[str, Any],
    key: str,
    where: str,
    default: float,
    low: float,
    example: str,
) -> float:
    """A number of minutes, at least ``low``: anything else (a list, a string, nan, inf) would
    break the escalation clock when the first case arrives, not now."""
    value = data.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < low
    ):
        at_least = "0 or more" if low == 0 else f"at least {low:g}"
        raise check.fail(f"{where}.{key}", f"must be a number of minutes, {at_least}", example)
    return float(value)


def _target(
    check: _Checker, data: Mapping[str, Any], key: str, where: str, default: str | None = None
) -> str:
    value = check.string(data, key, where, default)
    if value not in TARGETS and "@" not in value:
        raise check.fail(
            f"{where}.{key}",
            f"unknown target {value!r}",
            f"use one of {', '.join(TARGETS)} or a person's email",
        )
    return value
