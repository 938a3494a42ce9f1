"""Reading and checking ``sgalert.toml``.

Every error names the file, the dotted key and what to write instead, because the person reading
it is usually the school's IT lead at the end of a long day, not an sgalert developer.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sgalert.errors import ConfigError
from sgalert.mime import ParseLimits
from sgalert.model import DEFAULT_READERS, WHISTLE_IDENTITY, Readers, Role, Source

INBOX_KINDS = ("maildir", "imap", "graph", "ews")
GROUP_NAMES = (*(role.value for role in Role), WHISTLE_IDENTITY)

CONFIG_TEMPLATE = """\
# sgalert configuration.
#
# People are not listed here: add them with `sgalert user add`, which creates their keys.
# Secrets (mailbox passwords, client secrets, webhook URLs) never go in this file: they come from
# environment variables or a 0600 secrets file, named where each adapter needs one.
# After editing, `sgalert config check` tells you whether the file is valid.

[school]
# The school's or service's name, shown in notifications and the daily digest.
name = "{school_name}"
# The IANA time zone the school calendar works in. Times are stored in UTC.
timezone = "Europe/London"
# Names the headteacher is known by, so a whistleblowing allegation that names them is
# routed to the chair of governors. The words "headteacher" and "principal" always count.
head_names = []

[security]
# Minutes without a keypress after which the terminal UI locks and forgets the unlocked keys.
idle_lock_minutes = 10

# Who may read each source's cases. Each value lists groups: the roles dsl, deputy, head,
# monitoring-officer, chair, staff, or the compartment whistle-identity. Whatever you set here,
# an allegation about the headteacher is readable only by the chair and the monitoring officer.
[readers]
# Operation Encompass notices from the police.
encompass = ["dsl", "deputy", "head"]
# Reports of online lessons ended over a safeguarding concern.
lesson = ["dsl", "deputy", "head"]
# Whistleblowing allegations about staff.
whistle = ["monitoring-officer"]
# The whistleblower's identity, sealed apart from the allegation; only the monitoring officer
# and the deputies they nominate belong to the whistle-identity compartment.
whistle_identity = ["whistle-identity"]

[ingest]
# Hard limits on one incoming message. A message over any of them still becomes a case,
# flagged malformed, with the whole message sealed as evidence: nothing is dropped.
max_message_mb = 25
# Most headers one message may have.
max_headers = 500
# Deepest nesting of MIME parts that is read.
max_mime_depth = 16
# Most MIME parts that are read.
max_mime_parts = 200

# Mailboxes to watch. Repeat the [[sources]] table once per mailbox.
#   name            a short unique label used in logs and alerts, e.g. "encompass"
#   type            what arrives there: encompass, whistle or lesson
#   kind            how to reach it: maildir (a local folder), imap, graph or ews
#   path            for kind = "maildir": the Maildir folder, relative to this file or absolute
#   authserv_id     optional: the name your receiving mail server puts first in its
#                   Authentication-Results header (e.g. "mx.school.example.org"), or
#                   "exchange-online" for Microsoft 365. When unset, SPF/DKIM/DMARC results
#                   are not checked (display-name spoofing still is).
#   sender_domains  optional: the only domains this mailbox's notices may come from,
#                   e.g. ["police.example.org"]; mail from elsewhere is flagged.
#   down_after_minutes  optional (default 10): how long the mailbox may be unreachable before
#                   the DSL team is alerted that it is down.
[[sources]]
name = "encompass"
type = "encompass"
kind = "maildir"
path = "inbox/encompass"
"""


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

    def source(self, name: str) -> SourceConfig:
        for source in self.sources:
            if source.name == name:
                return source
        known = ", ".join(s.name for s in self.sources) or "none configured"
        raise ConfigError(f"{self.path}: sources: no source named {name!r} (known: {known})")


def render_template(school_name: str) -> str:
    """The commented starting config that ``sgalert init`` writes."""
    safe_name = school_name.replace("\\", "\\\\").replace('"', '\\"')
    return CONFIG_TEMPLATE.format(school_name=safe_name)


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


def load_config(path: Path) -> Config:
    """Read and validate the config file, or raise ConfigError naming the file, key and fix."""
    check = _Checker(path)
    try:
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

    top = ("school", "security", "readers", "ingest", "sources")
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

    sources = _check_sources(check, data.get("sources", []))
    return Config(
        path=path,
        school_name=school_name,
        timezone=timezone,
        idle_lock_minutes=idle,
        readers=readers,
        sources=sources,
        head_names=head_names,
        limits=limits,
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
        try:
            source_type = Source(type_name)
        except ValueError:
            raise check.fail(
                f"{where}.type",
                f"unknown type {type_name!r}",
                f"use one of {', '.join(s.value for s in Source)}",
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
            )
        )
    return tuple(result)
