"""What to do now: every case's next step in the school's words, from its source and state.

The desk shows it beside the case and the CLI can print it: "Encompass: read the notice and
tell the class teacher before Mon 23 Nov 08:30". It is worded from metadata only (source,
state, flags, the next deadline and which clock that is), so it is safe before
unlock and says nothing about the child. Times are the school's local time in the UK's order
(``Mon 7 Dec 08:30``), with the year only when it is not this year.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

from sgalert.clock import in_words
from sgalert.model import CaseState, CaseSummary, Flag, Source
from sgalert.rules.statutory import CLOCK_RULES, StatutoryClock


def uk_time(moment: datetime, zone: tzinfo, now: datetime | None = None) -> str:
    """``Mon 7 Dec 08:30`` in the school's zone; ``Mon 4 Jan 2027 08:30`` in another year."""
    other_year = now is not None and now.astimezone(zone).year != moment.astimezone(zone).year
    return in_words(moment, zone, year=other_year)


@dataclass(frozen=True, slots=True)
class NextStep:
    """The next thing to do on a case, and by when (None when no clock asks for a time)."""

    text: str
    due: datetime | None

    def said(self, zone: tzinfo, now: datetime) -> str:
        """The step with its deadline as a local time: "…before Mon 23 Nov 08:30"."""
        if self.due is None:
            return self.text
        word = "was due" if self.due < now else "before"
        return f"{self.text} {word} {uk_time(self.due, zone, now)}"


SOURCE_WORDS = {
    Source.ENCOMPASS: "Encompass",
    Source.WHISTLE: "Whistleblowing",
    Source.LESSON: "Lesson ended",
}

# A clock's own ask, for a case already acknowledged, by the clock that comes next.
_CLOCK_ASKS: dict[StatutoryClock, str] = {
    StatutoryClock.ENCOMPASS_BEFORE_SCHOOL_DAY: "read the notice and tell the class teacher",
    StatutoryClock.WHISTLE_MONITORING_OFFICER: "inform the Monitoring Officer in writing",
    StatutoryClock.LADO: "refer to the LADO",
    StatutoryClock.SUSPENSION_CONFIRMATION: "confirm the suspension in writing",
    StatutoryClock.FILE_TRANSFER: "send the child protection file",
}


def _clock_ask(kind: str | None) -> str | None:
    if kind is None or kind not in set(StatutoryClock):
        return None
    clock = StatutoryClock(kind)
    return _CLOCK_ASKS.get(clock, CLOCK_RULES[clock].wording)


def next_step(summary: CaseSummary) -> NextStep:
    """The case's next step, from its metadata alone."""
    source = SOURCE_WORDS[summary.source]
    due = summary.next_deadline
    if summary.state is CaseState.CLOSED:
        return NextStep(f"{source}: closed, nothing to do", None)
    flags = set(summary.flags)
    if summary.state is CaseState.NEW:
        if summary.source is Source.ENCOMPASS:
            return NextStep(f"{source}: read the notice and tell the class teacher", due)
        if summary.source is Source.WHISTLE:
            ask = "open it and inform the Monitoring Officer in writing"
            if Flag.ABOUT_HEAD in flags:
                ask = "open it: it is about the headteacher, for the chair and Monitoring Officer"
            return NextStep(f"{source}: {ask}", due)
        if Flag.DISCLOSURE in flags:
            return NextStep(
                f"{source} over a disclosure or risk: read it now and decide on a referral",
                due or summary.received_at,
            )
        return NextStep(f"{source}: read the report and decide what the concern needs", due)
    # Acknowledged: the clock that comes next says what is asked, else record and close.
    clock_ask = _clock_ask(summary.next_clock)
    if clock_ask is not None and due is not None:
        return NextStep(f"{source}: {clock_ask}", due)
    if due is not None:
        return NextStep(f"{source}: meet the deadline that comes next", due)
    if Flag.NEEDS_TRIAGE in flags:
        return NextStep(f"{source}: open it and record the facts that were not extracted", None)
    return NextStep(f"{source}: record your decision and its reason, then close the case", None)
