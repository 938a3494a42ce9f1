"""Getting the DSL's attention when a new case arrives: a bell, a toast, a highlighted row.

A DSL at 22:00 may be looking at another window or another case: the queue quietly gaining a
row is not enough. When the store watcher sees the audit log move, the desk reads the entries
after the last one it saw and picks out ``case-created`` (whoever created it: the engine, a
colleague's phoned entry, the CLI; not this person's own phoned entry, which they know about).
The toast names the source and the reference only: both are metadata, shown in the queue before
unlock; nothing from inside the case ever reaches a notification. The row stays highlighted
until the case is opened at this desk.

On by default. ``SGALERT_DESK_ATTENTION`` turns parts off for this terminal: ``off`` (or
``none``) for none of them, or a comma-separated choice of ``bell``, ``toast``, ``highlight``.
(``sgalert.toml`` has no section for the desk yet; see :func:`Attention.parse`.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sgalert.desk.views import AuditRow
from sgalert.errors import ConfigError
from sgalert.model import Source

from .formatting import SOURCE_LONG

ENV_ATTENTION = "SGALERT_DESK_ATTENTION"
PARTS = ("bell", "toast", "highlight")
# The most new cases one toast names; the rest are counted.
NAMED_IN_TOAST = 3
CREATED = "case-created"


@dataclass(frozen=True, slots=True)
class Attention:
    """Which signals a new case gives at this desk."""

    bell: bool = True
    toast: bool = True
    highlight: bool = True

    @property
    def any(self) -> bool:
        return self.bell or self.toast or self.highlight

    @classmethod
    def parse(cls, setting: str | None) -> Attention:
        """From ``SGALERT_DESK_ATTENTION``: unset or empty means every signal."""
        if setting is None or not setting.strip():
            return cls()
        words = {word.strip().lower() for word in setting.split(",") if word.strip()}
        if words <= {"off", "none"}:
            return cls(bell=False, toast=False, highlight=False)
        if words <= {"on", "all"}:
            return cls()
        unknown = sorted(words - set(PARTS))
        if unknown:
            raise ConfigError(
                f"{ENV_ATTENTION}={setting!r}: unknown {', '.join(unknown)};"
                f" use off, or any of {', '.join(PARTS)} separated by commas"
            )
        return cls(bell="bell" in words, toast="toast" in words, highlight="highlight" in words)


@dataclass(frozen=True, slots=True)
class NewCase:
    """A case that arrived: its reference and source, never anything from inside it."""

    seq: int
    ref: str
    source: Source | None


def new_cases(rows: Iterable[AuditRow], *, after: int, me: str | None) -> list[NewCase]:
    """The cases created after audit entry ``after``, oldest first, except ``me``'s own."""
    found: list[NewCase] = []
    for row in rows:
        entry = row.entry
        if entry.seq <= after or entry.action != CREATED:
            continue
        if me is not None and entry.actor.lower() == me.lower():
            continue
        ref = row.ref or str(entry.detail.get("ref") or "")
        if not ref:
            continue
        try:
            source: Source | None = Source(str(entry.detail.get("source")))
        except ValueError:
            source = None
        found.append(NewCase(entry.seq, ref, source))
    return sorted(found, key=lambda case: case.seq)


def toast_text(cases: list[NewCase]) -> str:
    """``Operation Encompass SG-2026-0007``: the source and the reference, one per case."""
    named = [
        f"{SOURCE_LONG[case.source] if case.source else 'Unknown source'} {case.ref}"
        for case in cases[:NAMED_IN_TOAST]
    ]
    more = len(cases) - len(named)
    if more:
        named.append(f"and {more:,} more")
    return "\n".join(named)
