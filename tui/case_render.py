"""What the case screen shows, built as plain values: one function per section.

Pure functions from the core's view types to :class:`rich.text.Text` (or one ``Static``), with
no screen and no I/O, so the case screen, the snapshots and any later preview pane build the
same text. Every string that came from outside goes through :func:`~tui.formatting.untrusted`
(a ``Text``, never markup, control and bidi characters shown as escapes).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from rich.text import Text
from textual.widgets import Static

from sgalert.clock import parse_iso
from sgalert.desk.service import CLOCK_TIMER, AuditEntry, CaseView, NotificationHistory
from sgalert.desk.views import ClockStanding, clock_lines
from sgalert.model import CaseState, CaseSummary, Source

from .formatting import (
    CLOCK_LABELS,
    FACT_LABELS,
    FLAG_SHORT,
    OVERDUE,
    SOON,
    SOURCE_LONG,
    countdown,
    fact_text,
    local_time,
    person_name,
    short_time,
    untrusted,
)
from .preview import step_text

LABEL = "bold"


def section(title: str) -> Static:
    return Static(Text(title), classes="section-title", markup=False)


def facts(view: CaseView, zone: Any, now: datetime) -> Text:
    text = Text()
    if not view.facts:
        text.append("No facts were extracted. Read the message and record them in a note.", "bold")
        return text
    width = max(len(FACT_LABELS.get(key, key)) for key in view.facts)
    for key, value in view.facts.items():
        label = FACT_LABELS.get(key, key.replace("_", " "))
        if isinstance(value, str):
            shown = fact_text(key, value, zone, now)
        else:
            shown = json.dumps(value, ensure_ascii=False)
        text.append(f"{label:<{width}}  ", LABEL)
        lines = untrusted(shown).split("\n")
        for index, line in enumerate(lines):
            if index:
                text.append("\n" + " " * (width + 2))
            text.append_text(line)
        text.append("\n")
    text.rstrip()
    return text


def message(view: CaseView) -> Text:
    text = Text()
    if view.subject:
        text.append("Subject  ", LABEL)
        text.append_text(untrusted(view.subject, one_line=True))
        text.append("\n")
    if view.sender:
        text.append("From     ", LABEL)
        name = str(view.sender.get("display_name") or "")
        address = str(view.sender.get("address") or "")
        text.append_text(untrusted(f"{name} <{address}>" if name else address, one_line=True))
        text.append("\n")
    for kind in ("sender", "problems", "triage"):
        for note in view.notes.get(kind, []) or []:
            text.append("Note     ", "bold yellow")
            text.append_text(untrusted(str(note), one_line=True))
            text.append("\n")
    if text.plain:
        text.append("\n")
    text.append_text(untrusted(view.body_text or "(no text)"))
    return text


def attachments(view: CaseView) -> Text:
    if not view.attachments:
        return Text("None.", style="dim")
    text = Text()
    for index, item in enumerate(view.attachments):
        if index:
            text.append("\n")
        text.append(f"{index + 1}. ", LABEL)
        text.append_text(untrusted(item.filename, one_line=True))
        text.append("  ")
        text.append_text(untrusted(item.content_type, one_line=True, style="dim"))
        text.append(f"  {item.size:,} bytes", "dim")
    text.append("\nPress e to save a decrypted copy (it asks first; the export is audited).", "dim")
    return text


CLOCK_STYLES: dict[ClockStanding, str] = {
    ClockStanding.MET: "green",
    ClockStanding.CASE_CLOSED: "dim",
    ClockStanding.RUNNING: "",
    ClockStanding.SOON: SOON,
    ClockStanding.OVERDUE: OVERDUE,
}


def clocks(view: CaseView, now: datetime, zone: Any) -> Text:
    text = step_text(view.summary, zone, now)  # what to do now, in the school's words
    if not view.clocks:
        text.append("\nNo statutory clock runs on this case.", style="dim")
        return text
    for line in clock_lines(view.clocks, view.summary.state, now, zone):
        text.append("\n")
        text.append(line.label, LABEL)
        text.append(f"\n  due {line.due}  ")
        text.append(line.detail, CLOCK_STYLES[line.standing])
    return text


def chronology(view: CaseView, zone: Any) -> Text:
    text = Text()
    if view.tampered:  # the core found the record is not what the audit chain says
        text.append_text(untrusted(f"WARNING: {view.tampered}", one_line=True, style=OVERDUE))
        text.append("\n\n")
    if not view.chronology:
        return text.append("Nothing recorded yet.", style="dim")
    for index, entry in enumerate(view.chronology):
        if index:
            text.append("\n\n")
        text.append(local_time(entry.at, zone), LABEL)
        text.append("  ")
        text.append_text(untrusted(f"{entry.author.name} <{entry.author.email}>", one_line=True))
        text.append(f"  {entry.kind.value.upper()}  ", LABEL)
        if entry.signature_valid:
            text.append("✓ signed", "green")
        else:
            text.append("✗ SIGNATURE INVALID: altered after it was written", OVERDUE)
        if entry.corrects:
            text.append(f"\n  corrects entry {entry.corrects[:8]}", "italic")
        for line in untrusted(entry.text).split("\n"):
            text.append("\n  ")
            text.append_text(line)
        if entry.reason:
            text.append("\n  Reason: ", LABEL)
            text.append_text(untrusted(entry.reason, one_line=True))
    return text


def reporter(view: CaseView) -> Text | None:
    if view.summary.source is not Source.WHISTLE:
        return None
    if view.reporter is None:
        return Text("Sealed: only the Monitoring Officer group can see who reported this.")
    text = Text()
    for key, value in view.reporter.items():
        text.append(f"{key.replace('_', ' ')}  ", LABEL)
        text.append_text(untrusted(str(value), one_line=True))
        text.append("\n")
    text.rstrip()
    return text


def history(entries: list[AuditEntry], zone: Any) -> Text:
    if not entries:
        return Text("Nothing yet.", style="dim")
    text = Text()
    for index, entry in enumerate(reversed(entries)):
        if index:
            text.append("\n")
        text.append(local_time(parse_iso(entry.at), zone), "dim")
        text.append(f"  {entry.action:<22} ")
        text.append_text(untrusted(entry.actor, one_line=True))
    return text


DELIVERY_STATES: dict[str, tuple[str, str]] = {
    "pending": ("queued", "yellow"),
    "sending": ("sending", "yellow"),
    "delivered": ("delivered", "green"),
    "failed": ("FAILED", OVERDUE),
    "superseded": ("not sent: no longer needed (acknowledged, met or closed)", "dim"),
}


def timer_label(kind: str, step: int) -> str:
    if kind == "step":
        return f"escalation step {step + 1}"
    if kind == "repeat":
        return "repeat reminder"
    if kind == "clock-warning":
        return "deadline warning"
    if kind.startswith(CLOCK_TIMER):
        clock = kind.removeprefix(CLOCK_TIMER)
        label = CLOCK_LABELS.get(clock, clock)
        return f"{label}: {'deadline passed' if step else 'warning'}"
    if kind == "fallback":
        return "fallback channel"
    return kind or "page"


def notifications(history: NotificationHistory | None, now: datetime, zone: Any) -> Text:
    """Who was paged, on which channel, and how it went; then the timers still to fire."""
    if history is None:
        return Text("Loading…", style="dim")
    text = Text()
    if not history.notifications:
        text.append("Nobody has been paged about this case.", "dim")
    for index, page in enumerate(history.notifications):
        if index:
            text.append("\n")
        text.append(local_time(page.queued_at, zone), LABEL)
        text.append(f"  {page.channel}  ")
        text.append_text(untrusted(page.recipient, one_line=True))
        text.append("  ")
        text.append_text(untrusted(timer_label(page.raised_by, page.step), one_line=True))
        label, style = DELIVERY_STATES.get(page.state, (page.state, ""))
        text.append("\n  ")
        text.append(label, style)
        if page.delivered_at is not None:
            text.append(f" {short_time(page.delivered_at, zone)}")
        tries = "attempt" if page.attempts == 1 else "attempts"
        if page.attempts:
            text.append(f" · {page.attempts} {tries}", "dim")
        if page.error:
            text.append(" · last error: ", "dim")
            text.append_text(untrusted(page.error, one_line=True))
        if page.state == "pending" and page.next_attempt_at is not None and page.attempts:
            text.append(f" · next try {short_time(page.next_attempt_at, zone)}", "dim")
        if page.acknowledged_at is not None:
            text.append(f" · acknowledged {short_time(page.acknowledged_at, zone)}", "green")
        if page.reason:
            text.append("\n  reason: ", "dim")
            text.append_text(untrusted(page.reason, one_line=True, style="dim"))
    pending = [t for t in history.timers if t.state == "pending"]
    done = [t for t in history.timers if t.state != "pending"]
    text.append("\n\nEscalation timers", LABEL)
    if not history.timers:
        text.append("\n  none", "dim")
    for timer in pending + done:
        text.append(
            f"\n  {local_time(timer.due_at, zone)}  {timer_label(timer.kind, timer.step)}  "
        )
        if timer.fired_at is not None:
            text.append(f"fired {short_time(timer.fired_at, zone)}", "dim")
        elif timer.cancelled_at is not None:
            text.append(f"cancelled {short_time(timer.cancelled_at, zone)}", "dim")
        else:
            text.append("pending (")
            text.append_text(countdown(timer.due_at, now))
            text.append(")")
    return text


def header(summary: CaseSummary, zone: Any, names: Mapping[str, str] | None = None) -> Text:
    """The case's first lines; people by name (``names``: lower-cased email to name)."""
    text = Text()
    text.append(summary.ref, "bold")
    text.append(f" · {SOURCE_LONG[summary.source]} · ")
    text.append(summary.state.value.upper(), "bold red" if summary.state is CaseState.NEW else "")
    text.append(f" · received {local_time(summary.received_at, zone)}")
    details = []
    if summary.assignee:
        details.append(f"assigned to {person_name(summary.assignee, names)}")
    if summary.acknowledged_by and summary.acknowledged_at:
        details.append(
            f"acknowledged by {person_name(summary.acknowledged_by, names)}"
            f" {local_time(summary.acknowledged_at, zone)}"
        )
    if summary.flags:
        details.append("flags " + ", ".join(FLAG_SHORT.get(f, f) for f in summary.flags))
    if details:
        text.append("\n")
        text.append_text(untrusted(" · ".join(details), one_line=True))
    return text
