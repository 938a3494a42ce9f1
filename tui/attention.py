"""Getting the DSL's attention when a new case arrives: a bell, a toast, a highlighted row.

A DSL at 22:00 may be looking at another window or another case: the queue quietly gaining a
row is not enough. When the store watcher sees the audit log move, the desk reads the entries
after the last one it saw and picks out ``case-created`` (whoever created it: the engine, a
colleague's phoned entry, the CLI; not this person's own phoned entry, which they know about).
The toast names the source and the reference only: both are metadata, shown in the queue before
unlock; nothing from inside the case ever reaches a notification. The row stays highlighted
until the case is opened at this desk.

The fourth part is a **desktop notification**, for a DSL whose terminal is behind another
window: an OSC 9 or OSC 777 escape sequence (see :class:`DesktopTerminal`) that terminals which
know it turn into a system notification and others ignore. Its words are built only from a fixed
source name and a reference reduced to letters, digits and hyphens, so nothing from inside a
case, and no control character, can reach the escape sequence.

On by default. ``SGALERT_DESK_ATTENTION`` turns parts off for this terminal: ``off`` (or
``none``) for none of them, or a comma-separated choice of ``bell``, ``toast``, ``highlight``,
``desktop``. (``sgalert.toml`` has no section for the desk yet; see :func:`Attention.parse`.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from sgalert.desk.views import AuditRow
from sgalert.errors import ConfigError
from sgalert.model import Source

from .formatting import SOURCE_LONG

ENV_ATTENTION = "SGALERT_DESK_ATTENTION"
PARTS = ("bell", "toast", "highlight", "desktop")
# The most new cases one toast names; the rest are counted.
NAMED_IN_TOAST = 3
CREATED = "case-created"


@dataclass(frozen=True, slots=True)
class Attention:
    """Which signals a new case gives at this desk."""

    bell: bool = True
    toast: bool = True
    highlight: bool = True
    desktop: bool = True

    @property
    def any(self) -> bool:
        return self.bell or self.toast or self.highlight or self.desktop

    @classmethod
    def parse(cls, setting: str | None) -> Attention:
        """From ``SGALERT_DESK_ATTENTION``: unset or empty means every signal."""
        if setting is None or not setting.strip():
            return cls()
        words = {word.strip().lower() for word in setting.split(",") if word.strip()}
        if words <= {"off", "none"}:
            return cls(bell=False, toast=False, highlight=False, desktop=False)
        if words <= {"on", "all"}:
            return cls()
        unknown = sorted(words - set(PARTS))
        if unknown:
            raise ConfigError(
                f"{ENV_ATTENTION}={setting!r}: unknown {', '.join(unknown)};"
                f" use off, or any of {', '.join(PARTS)} separated by commas"
            )
        return cls(*(part in words for part in PARTS))


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


ESCALATED = "escalation-step"


@dataclass(frozen=True, slots=True)
class Escalation:
    """An escalation step that paged the person at this desk: the case's reference and the
    step, nothing from inside the case."""

    seq: int
    ref: str
    step: int


def escalations_to(
    rows: Iterable[AuditRow], *, after: int, person_id: str | None
) -> list[Escalation]:
    """The escalation steps after audit entry ``after`` that paged ``person_id``, oldest first.
    Step 0 is the case's arrival, announced as a new case; from step 1 on, a case nobody
    acknowledged has reached this person, who may not have been paged about it before."""
    if person_id is None:
        return []
    found: list[Escalation] = []
    for row in rows:
        entry = row.entry
        if entry.seq <= after or entry.action != ESCALATED or not row.ref:
            continue
        step = entry.detail.get("step")
        recipients = entry.detail.get("recipients")
        if not isinstance(step, int) or step < 1 or not isinstance(recipients, list):
            continue
        if person_id in recipients:
            found.append(Escalation(entry.seq, row.ref, step))
    return sorted(found, key=lambda escalation: escalation.seq)


def escalation_text(escalations: list[Escalation]) -> str:
    """``SG-2026-0007: nobody has acknowledged it yet``, one per case (a case that went up two
    steps since the last look is named once)."""
    refs = escalated_refs(escalations)
    named = [f"{ref}: nobody has acknowledged it yet" for ref in refs[:NAMED_IN_TOAST]]
    return "\n".join(_and_more(named, len(refs)))


def escalated_refs(escalations: list[Escalation]) -> list[str]:
    """Each escalated case's reference once, in the order they first went up."""
    return list(dict.fromkeys(e.ref for e in escalations))


def toast_text(cases: list[NewCase]) -> str:
    """``Operation Encompass SG-2026-0007``: the source and the reference, one per case."""
    named = [
        f"{SOURCE_LONG[case.source] if case.source else 'Unknown source'} {case.ref}"
        for case in cases[:NAMED_IN_TOAST]
    ]
    return "\n".join(_and_more(named, len(cases)))


def _and_more(named: list[str], total: int) -> list[str]:
    """The first few named, then how many more there were (``and 4 more``)."""
    more = total - len(named)
    return [*named, f"and {more:,} more"] if more else named


# ----- the desktop notification --------------------------------------------------------------

ESC, BEL = "\x1b", "\x07"
NOTICE_TITLE = "sgalert"
# A reference as the notification may carry it: what the core issues (SG-2026-0007) is letters,
# digits and hyphens; anything else is dropped, and a long one is cut.
_NOT_IN_REF = re.compile(r"[^A-Za-z0-9-]")
REF_LIMIT = 32
# Defence in depth: the notice as a whole keeps only these, so no ESC, BEL, ``;`` (OSC 777's
# separator) or any other control character can end or extend the sequence.
_NOT_IN_NOTICE = re.compile(r"[^A-Za-z0-9 ,:()-]")
# Terminals known to show OSC 777 (``notify;title;body``); every other one is sent OSC 9.
OSC777_TERMS = ("rxvt", "foot", "xterm-ghostty")
# A console that would print or misread an unknown OSC: no desktop notification there.
NO_NOTICE_TERMS = ("linux", "dumb")


class NoticeSequence(Enum):
    """The two escape sequences terminals turn into a desktop notification."""

    OSC9 = "osc9"  # ESC ] 9 ; text BEL: iTerm2, Windows Terminal, WezTerm, kitty
    OSC777 = "osc777"  # ESC ] 777 ; notify ; title ; body BEL: urxvt, foot, Ghostty, Konsole, VTE


@dataclass(frozen=True, slots=True)
class DesktopTerminal:
    """How this terminal is asked for a desktop notification.

    Under tmux the sequence is wrapped in tmux's passthrough (``ESC P tmux; ... ESC \\``, each
    ESC inside doubled): the terminal outside tmux shows it when tmux has ``allow-passthrough``
    on, and tmux drops it quietly otherwise. GNU screen and the Linux console get none.
    """

    sequence: NoticeSequence = NoticeSequence.OSC9
    tmux: bool = False

    @classmethod
    def detect(cls, env: Mapping[str, str]) -> DesktopTerminal | None:
        """From the environment: ``TERM_PROGRAM``/``TERM`` (and ``KONSOLE_VERSION``,
        ``VTE_VERSION``) where they name a terminal, OSC 9 where they do not."""
        term = env.get("TERM", "").lower()
        program = env.get("TERM_PROGRAM", "").lower()
        tmux = bool(env.get("TMUX")) or program == "tmux"
        if not tmux and (term in NO_NOTICE_TERMS or term.startswith("screen")):
            return None
        if program in {"iterm.app", "wezterm"} or "kitty" in term or env.get("WT_SESSION"):
            return cls(NoticeSequence.OSC9, tmux)
        if (
            term.startswith(OSC777_TERMS)
            or program == "ghostty"
            or env.get("KONSOLE_VERSION")
            or env.get("VTE_VERSION")
        ):
            return cls(NoticeSequence.OSC777, tmux)
        return cls(NoticeSequence.OSC9, tmux)

    def notice(self, cases: list[NewCase]) -> str:
        """The escape sequence for these new cases ("" for none)."""
        return self._sequence(notice_text(cases))

    def escalation_notice(self, escalations: list[Escalation]) -> str:
        """The escape sequence for escalations that reached this person ("" for none)."""
        refs = escalated_refs(escalations)
        named = [safe for ref in refs[:NAMED_IN_TOAST] if (safe := safe_ref(ref))]
        if not named:
            return ""
        body = f"Escalated to you: {', '.join(_and_more(named, len(refs)))}"
        return self._sequence(_NOT_IN_NOTICE.sub("", body))

    def _sequence(self, body: str) -> str:
        if not body:
            return ""
        if self.sequence is NoticeSequence.OSC777:
            sequence = f"{ESC}]777;notify;{NOTICE_TITLE};{body}{BEL}"
        else:
            sequence = f"{ESC}]9;{NOTICE_TITLE}: {body}{BEL}"
        if self.tmux:
            sequence = f"{ESC}Ptmux;{sequence.replace(ESC, ESC + ESC)}{ESC}\\"
        return sequence


def safe_ref(ref: str) -> str:
    """A reference reduced to letters, digits and hyphens, at most :data:`REF_LIMIT` long."""
    return _NOT_IN_REF.sub("", ref)[:REF_LIMIT]


def notice_text(cases: list[NewCase]) -> str:
    """``New case: Operation Encompass SG-2026-0007``, one line, from fixed words and safe
    references only."""
    named = [
        f"{SOURCE_LONG[case.source] if case.source else 'Unknown source'} {ref}"
        for case in cases[:NAMED_IN_TOAST]
        if (ref := safe_ref(case.ref))
    ]
    if not named:
        return ""
    title = "New case" if len(cases) == 1 else f"{len(cases):,} new cases"
    return _NOT_IN_NOTICE.sub("", f"{title}: {', '.join(_and_more(named, len(cases)))}")
