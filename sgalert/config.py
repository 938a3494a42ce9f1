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

# Mailboxes to watch. Repeat the [[sources]] table once per mailbox.
#   name  a short unique label used in logs and alerts, e.g. "encompass"
#   type  what arrives there: encompass, whistle or lesson
#   kind  how to reach it: maildir (a local folder), imap, graph or ews
#   path  for kind = "maildir": the Maildir folder, relative to this file or absolute
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


@dataclass(frozen=True, slots=True)
class Config:
    """The validated configuration."""

    path: Path
    school_name: str
    timezone: ZoneInfo
    idle_lock_minutes: int
    readers: Mapping[Source, Readers]
    sources: tuple[SourceConfig, ...]


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

    top = ("school", "security", "readers", "sources")
    for key in data:
        if key not in top:
            hint = difflib.get_close_matches(key, top, n=1)
            raise check.fail(
                key,
                "unknown section",
                f"did you mean {hint[0]!r}?" if hint else f"sections are {', '.join(top)}",
            )

    school = check.table(data, "school", ("name", "timezone"))
    school_name = check.string(school, "name", "school", None)
    tz_name = check.string(school, "timezone", "school", "Europe/London")
    try:
        timezone = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise check.fail(
            "school.timezone", f"{tz_name!r} is not a known time zone", 'use e.g. "Europe/London"'
        ) from None

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
        options = {k: v for k, v in entry.items() if k not in ("name", "type", "kind")}
        result.append(SourceConfig(name=name, type=source_type, kind=kind, options=options))
    return tuple(result)
