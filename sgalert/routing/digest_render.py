"""How a digest reads: one recipient's copy, as text and as its HTML twin.

Both are rendered from the same sections, so they always say the same thing. A copy names a
case (by reference only) only to someone who may read it; an allegation about the headteacher
appears only as a count under "Referred to the chair" except in the copies of the chair and the
monitoring officer, who see its reference. The whistleblowing mailbox is named, when down, only
to the monitoring officer. No copy holds a name, case text or a date of birth.
"""

from __future__ import annotations

import html
import statistics
import textwrap
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sgalert.clock import in_words, parse_iso
from sgalert.model import Role, Source
from sgalert.ports import Document
from sgalert.routing.digest import ABOUT_HEAD, CaseFact, ClockFact, Digest, Viewer

MAX_LISTED = 50  # references listed per section; the rest are counted
FOOTER = (
    "This digest deliberately contains no names, case text or dates of birth: references,"
    " counts and times only. The details are in sgalert, readable only by the people entitled"
    " to them."
)


WIDTH = 78  # plain-text lines are wrapped here, as mail clients expect


class Command(str):
    """A line to copy as it is (the ``audit verify --anchor`` command)."""


def _wrap(text: str, width: int | None, first: str = "", rest: str = "") -> list[str]:
    if width is None:
        return [first + text]
    return textwrap.wrap(
        text,
        width,
        initial_indent=first,
        subsequent_indent=rest,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [first.rstrip()]


@dataclass
class Section:
    """A heading, then paragraphs (a string) and lists (a list of strings), in order."""

    title: str
    blocks: list[str | list[str]] = field(default_factory=list)

    def say(self, text: str) -> None:
        self.blocks.append(text)

    def command(self, text: str) -> None:
        """A command to copy whole: never wrapped, set in code."""
        self.blocks.append(Command(text))

    def items(self, lines: Sequence[str], *, more: int = 0) -> None:
        listed = list(lines)
        if more:
            listed.append(f"... and {more} more")
        if listed:
            self.blocks.append(listed)


def _day(day: date) -> str:
    return f"{day:%a} {day.day} {day:%b}"


def duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 1:
        return "under 1 min"
    if minutes < 120:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {rest:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


class _Copy:
    """One recipient's view of a digest: what it may show, and the words for it."""

    def __init__(self, digest: Digest, viewer: Viewer) -> None:
        self.d = digest
        self.v = viewer
        self.zone = digest.calendar.zone

    def at(self, moment: datetime) -> str:
        return in_words(moment, self.zone)

    def visible(self, cases: Iterable[CaseFact]) -> list[CaseFact]:
        return [c for c in cases if self.v.sees(c)]

    def case_lines(
        self, cases: Sequence[CaseFact], describe: Callable[[CaseFact], str] | None = None
    ) -> tuple[list[str], int]:
        """References of the cases this copy may name (with ``describe``'s words), a line for
        those it may not, and how many were left off the list."""
        named = [c for c in cases if self.v.names(c)]
        withheld = Counter(c.source.value for c in cases if not self.v.names(c))
        lines = [
            f"{c.ref} ({c.source.value})" + (describe(c) if describe else "")
            for c in named[:MAX_LISTED]
        ]
        lines += [
            f"{n} {source} case{'s' if n != 1 else ''} (reference withheld: not yours to read)"
            for source, n in sorted(withheld.items())
        ]
        return lines, max(0, len(named) - MAX_LISTED)

    def clock_lines(self, clocks: Sequence[ClockFact], what: str) -> tuple[list[str], int]:
        shown = [c for c in clocks if self.v.sees(c.case)]
        named = [c for c in shown if self.v.names(c.case)]
        lines = []
        for c in named[:MAX_LISTED]:
            moment = c.met_at if what == "met" and c.met_at else c.due_at
            lines.append(f"{c.case.ref}: {c.kind}, {what} {self.at(moment)}")
        withheld = Counter(c.case.source.value for c in shown if not self.v.names(c.case))
        lines += [
            f"{n} {source} clock{'s' if n != 1 else ''} (reference withheld)"
            for source, n in sorted(withheld.items())
        ]
        return lines, max(0, len(named) - MAX_LISTED)

    # ----- the sections -------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        d = self.d
        return {
            "new": len(self.visible(d.new)),
            "unacknowledged": len(self.visible(d.unacknowledged)),
            "overdue": len([c for c in d.clocks_overdue if self.v.sees(c.case)]),
        }

    def intro(self) -> list[str]:
        d = self.d
        lines = [
            f"Covering {self.at(d.since)} to {self.at(d.until)} ({self.zone.key}).",
        ]
        if d.previous is not None and not d.previous.holds:
            lines.insert(
                0,
                "WARNING: the audit log no longer holds the state the previous digest recorded"
                f" ({d.previous.detail}). Tell the monitoring officer and keep this email.",
            )
        if d.late:
            lines.append(f"LATE: {d.late}.")
        if d.missed_days:
            days = ", ".join(f"{day:%a} {day.day} {day:%b}" for day in d.missed_days)
            lines.append(
                f"No digest went out on {days}: this one covers everything since the last one sent."
            )
        n = self.counts()
        lines.append(
            f"At a glance: {n['new']} new, {n['unacknowledged']} still unacknowledged,"
            f" {n['overdue']} statutory deadline{'s' if n['overdue'] != 1 else ''} overdue."
        )
        return lines

    def new_cases(self) -> Section:
        section = Section("New cases")
        new = self.visible(self.d.new)
        section.say(f"{len(new)} new case{'s' if len(new) != 1 else ''} in this period.")
        by_source = Counter(c.source.value for c in new)
        section.items([f"{s.value}: {by_source.get(s.value, 0)}" for s in Source])
        return section

    def states(self) -> Section:
        d = self.d
        section = Section("Acknowledged, open and closed")
        open_now = d.open_count - (0 if self.v.sees_about_head else d.open_about_head)
        unacknowledged = len(self.visible(d.unacknowledged))
        section.items(
            [
                f"Acknowledged in this period: {len(self.visible(d.acknowledged))}",
                f"Closed in this period: {len(self.visible(d.closed))}",
                f"Open at {self.at(d.until)}: {open_now}"
                f" (of which not yet acknowledged: {unacknowledged})",
            ]
        )
        return section

    def ack_times(self) -> Section:
        section = Section("Time to acknowledge (from arrival), against each policy's first step")
        groups: dict[str, list[float]] = {}
        for case in self.visible(self.d.acknowledged):
            assert case.acknowledged_at is not None
            key = ABOUT_HEAD if case.about_head else case.source.value
            groups.setdefault(key, []).append(
                (case.acknowledged_at - case.received_at).total_seconds()
            )
        if not groups:
            section.say("No case was acknowledged in this period.")
            return section
        lines = []
        for key in [*(s.value for s in Source), ABOUT_HEAD]:
            times = groups.get(key)
            if not times:
                continue
            allowed = self.d.allowances.get(key, 0.0)
            beyond = sum(1 for t in times if t > allowed * 60)
            label = "about the head" if key == ABOUT_HEAD else key
            lines.append(
                f"{label}: {len(times)} acknowledged, median {duration(statistics.median(times))},"
                f" worst {duration(max(times))}; the first step allows"
                f" {duration(allowed * 60)}: "
                + ("all within it" if not beyond else f"{beyond} beyond it")
            )
        section.items(lines)
        return section

    def escalations(self) -> Section:
        section = Section("Escalations")
        shown = [e for e in self.d.escalations if self.v.sees(e.case)]
        if not shown:
            section.say("No case needed an escalation step in this period.")
        else:
            section.say(
                f"{len(shown)} case{'s' if len(shown) != 1 else ''} went past the first step:"
            )
            named = [e for e in shown if self.v.names(e.case)]
            lines = []
            for e in named[:MAX_LISTED]:
                answered = (
                    f"answered after step {e.answered_after} ({e.answered_target})"
                    if e.answered_after is not None
                    else "not answered yet"
                )
                lines.append(
                    f"{e.case.ref} ({e.case.source.value}): reached step {e.highest_step}"
                    f" ({e.highest_target}); {answered}"
                )
            withheld = Counter(e.case.source.value for e in shown if not self.v.names(e.case))
            lines += [f"{n} {s} case(s) (reference withheld)" for s, n in sorted(withheld.items())]
            section.items(lines, more=max(0, len(named) - MAX_LISTED))
        section.say(f"Statutory deadline warnings sent: {self.d.deadline_warnings}.")
        return section

    def clocks(self) -> Section:
        d = self.d
        section = Section("Statutory clocks")
        assert d.clock_horizon is not None
        last_day = (d.clock_horizon - timedelta(minutes=1)).astimezone(self.zone)
        for title, clocks, what in (
            (
                f"Due by the end of {_day(last_day.date())} (the next 2 school days)",
                d.clocks_due,
                "due",
            ),
            ("Overdue", d.clocks_overdue, "was due"),
            ("Met late in this period", d.clocks_met_late, "met"),
        ):
            lines, more = self.clock_lines(clocks, what)
            count = len([c for c in clocks if self.v.sees(c.case)])
            section.say(f"{title}: {count if count else 'none'}")
            section.items(lines, more=more)
        return section

    def unacknowledged(self) -> Section:
        section = Section("Still unacknowledged")
        cases = self.visible(self.d.unacknowledged)
        if not cases:
            section.say("None: every case has been acknowledged.")
            return section
        lines, more = self.case_lines(cases, lambda c: f", received {self.at(c.received_at)}")
        section.items(lines, more=more)
        return section

    def referred(self) -> Section:
        d = self.d
        section = Section("Referred to the chair")
        about = [c for c in d.new if c.about_head]
        if not self.v.sees_about_head:
            section.say(
                f"Allegations about the headteacher: {len(about)} in this period,"
                f" {d.open_about_head} open. They go to the chair of governors and the"
                " monitoring officer only, and are counted here without any reference."
            )
            return section
        section.say(
            f"Allegations about the headteacher: {len(about)} in this period,"
            f" {d.open_about_head} open. This copy lists them; the headteacher's does not."
        )
        open_ones = [c for c in d.unacknowledged if c.about_head]
        lines, more = self.case_lines(
            sorted({*about, *open_ones}, key=lambda c: c.ref),
            lambda c: (
                f", received {self.at(c.received_at)}"
                + ("" if c.acknowledged_at else ", not yet acknowledged")
            ),
        )
        section.items(lines, more=more)
        return section

    def system(self) -> Section:
        d = self.d
        section = Section("sgalert itself")
        down = []
        for s in d.sources_down:
            name = (
                "a watched mailbox"
                if s.whistle and self.v.role != Role.MONITORING_OFFICER
                else s.name
            )
            until = f"until {self.at(s.cleared_at)}" if s.cleared_at else "still down"
            down.append(f"{name}: down from {self.at(s.raised_at)}, {until}")
        section.say(f"Mailboxes down in this period: {len(down) if down else 'none'}")
        section.items(down[:MAX_LISTED], more=max(0, len(down) - MAX_LISTED))
        starts = ", ".join(self.at(t) for t in d.engine_starts[:10])
        section.say(
            f"Engine starts (restarts and takeovers): {len(d.engine_starts)}"
            + (f" ({starts})" if starts else "")
        )
        if d.rota_gap:
            gaps = d.rota_gap.get("gaps", 1)
            first_from = d.rota_gap.get("first_gap_from")
            first_to = d.rota_gap.get("first_gap_to")
            when = ""
            if isinstance(first_from, str) and isinstance(first_to, str):
                when = (
                    f", the first from {self.at(parse_iso(first_from))}"
                    f" to {self.at(parse_iso(first_to))}"
                )
            section.say(f"Gaps in cover: {gaps} in the next 14 days{when}; see sgalert rota check.")
        else:
            section.say("Gaps in cover: none in the next 14 days.")

        def tally(counts: Mapping[str, int]) -> str:
            total = sum(counts.values())
            parts = ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))
            return f"{total}" + (f" ({parts})" if parts else "")

        section.items(
            [
                f"System alerts raised: {tally(d.alerts_raised)}",
                f"System alerts cleared: {tally(d.alerts_cleared)}",
                f"Still open at {self.at(d.until)}: {tally(d.alerts_open)}",
            ]
        )
        return section

    def anchor(self) -> Section:
        d = self.d
        section = Section("Audit log anchor")
        section.say(
            f"This digest anchors the audit log at entry {d.anchor.seq}, hash {d.anchor.hash}."
        )
        previous = d.previous
        if previous is None:
            section.say("No earlier digest to check against.")
        elif previous.holds:
            section.say(
                f"The previous digest's anchor ({_day(previous.day)}: entry"
                f" {previous.anchor.seq}, {previous.anchor.hash[:16]}...) still holds: the log"
                f" still contains that state ({previous.detail})."
            )
        else:
            section.say(
                f"The previous digest's anchor ({_day(previous.day)}: entry"
                f" {previous.anchor.seq}, {previous.anchor.hash[:16]}...) DOES NOT HOLD:"
                f" {previous.detail}"
            )
        section.say("To check the log later:")
        section.command(f"sgalert audit verify --anchor {d.anchor.seq}:{d.anchor.hash}")
        return section

    def sections(self) -> list[Section]:
        return [
            self.new_cases(),
            self.states(),
            self.ack_times(),
            self.escalations(),
            self.clocks(),
            self.unacknowledged(),
            self.referred(),
            self.system(),
            self.anchor(),
        ]

    def title(self) -> str:
        day = self.d.day
        return f"{self.d.school}: safeguarding digest for {day:%A} {day.day} {day:%B %Y}"

    def subject(self) -> str:
        n = self.counts()
        subject = (
            f"[sgalert] Daily digest {self.d.day:%a} {self.d.day.day} {self.d.day:%b %Y}:"
            f" {n['new']} new,"
            f" {n['unacknowledged']} unacknowledged"
        )
        if self.d.previous is not None and not self.d.previous.holds:
            subject += ", AUDIT LOG CHECK FAILED"
        if self.d.late:
            subject += " (late)"
        return subject


def render_text(digest: Digest, viewer: Viewer, *, width: int | None = WIDTH) -> str:
    """The text copy, wrapped at ``width`` (None: one line per paragraph or item)."""
    copy = _Copy(digest, viewer)
    title = copy.title()
    out = [title, "=" * len(title)]
    for line in copy.intro():
        out += _wrap(line, width)
    for section in copy.sections():
        out += ["", section.title, "-" * len(section.title)]
        for block in section.blocks:
            if isinstance(block, Command):
                out.append(f"    {block}")
            elif isinstance(block, str):
                out += _wrap(block, width)
            else:
                for line in block:
                    out += _wrap(line, width, "  - ", "    ")
    out += ["", *_wrap(FOOTER, width)]
    return "\n".join(out) + "\n"


def render_html(digest: Digest, viewer: Viewer) -> str:
    copy = _Copy(digest, viewer)
    e = html.escape
    title = copy.title()
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8">',
        f"<title>{e(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:46em}h2{margin-top:1.4em}"
        "code{font-size:90%}</style>",
        "</head>",
        "<body>",
        f"<h1>{e(title)}</h1>",
    ]
    out += [f"<p>{e(line)}</p>" for line in copy.intro()]
    for section in copy.sections():
        out.append(f"<h2>{e(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Command):
                out.append(f"<p><code>{e(block)}</code></p>")
            elif isinstance(block, str):
                out.append(f"<p>{e(block)}</p>")
            else:
                out.append("<ul>")
                out += [f"<li>{e(line)}</li>" for line in block]
                out.append("</ul>")
    out += [f"<p><small>{e(FOOTER)}</small></p>", "</body>", "</html>"]
    return "\n".join(out) + "\n"


def render_document(digest: Digest, viewer: Viewer) -> Document:
    """One recipient's copy: subject, text and its HTML twin."""
    return Document(
        subject=_Copy(digest, viewer).subject(),
        text=render_text(digest, viewer),
        html=render_html(digest, viewer),
    )
