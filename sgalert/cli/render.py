"""How a case reads on the terminal and in ``--json``: the same facts the desk shows.

Text bound for a terminal passes through :func:`sgalert.text.printable`, so hostile text in a
case cannot drive the terminal.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from sgalert.clock import iso
from sgalert.desk.service import CaseView, next_step
from sgalert.desk.views import ClockStanding, clock_lines
from sgalert.model import CaseSummary
from sgalert.text import printable


def when(moment: datetime | None) -> str | None:
    """An optional moment as ISO 8601, or None (JSON null) when it has not happened."""
    return iso(moment) if moment else None


def summary_json(summary: CaseSummary) -> dict[str, Any]:
    """A case's metadata, as `cases list --json` prints it: nothing sealed."""
    return {
        "id": summary.id,
        "ref": summary.ref,
        "source": summary.source.value,
        "state": summary.state.value,
        "received_at": iso(summary.received_at),
        "updated_at": iso(summary.updated_at),
        "flags": list(summary.flags),
        "assignee": summary.assignee,
        "acknowledged_at": when(summary.acknowledged_at),
        "acknowledged_by": summary.acknowledged_by,
        "closed_at": when(summary.closed_at),
        "next_deadline": when(summary.next_deadline),
        "destroyed_at": when(summary.destroyed_at),
    }


def view_json(view: CaseView) -> dict[str, Any]:
    """An opened case, as `case show --json` prints it."""
    data = summary_json(view.summary)
    step = next_step(view.summary)
    data.update(
        {
            "tampered": view.tampered,
            "fields": view.facts,
            "subject": view.subject,
            "sender": view.sender,
            "notes": view.notes,
            "body_text": view.body_text,
            "attachments": [
                {"filename": a.filename, "content_type": a.content_type, "size": a.size}
                for a in view.attachments
            ],
            "chronology": [
                {
                    "id": entry.id,
                    "at": iso(entry.at),
                    "author": entry.author.email,
                    "kind": entry.kind.value,
                    "text": entry.text,
                    "reason": entry.reason,
                    "corrects": entry.corrects,
                    "signature_valid": entry.signature_valid,
                }
                for entry in view.chronology
            ],
            # What the desk shows as "what to do now": the words, and the deadline they name.
            "next_step": {"text": step.text, "due_at": when(step.due)},
            "clocks": [
                {"kind": c.kind, "due_at": iso(c.due_at), "met_at": when(c.met_at)}
                for c in view.clocks
            ],
        }
    )
    if view.reporter is not None:
        data["reporter"] = view.reporter
    return data


CLOCK_WORDS: dict[ClockStanding, str] = {
    ClockStanding.MET: "{detail}",
    ClockStanding.CASE_CLOSED: "{detail}",
    ClockStanding.RUNNING: "{detail} left",
    ClockStanding.SOON: "SOON: {detail} left",
    ClockStanding.OVERDUE: "OVERDUE: {detail}",
}


def clock_text(view: CaseView, now: datetime, zone: tzinfo) -> list[str]:
    """The case's clocks as the desk shows them: label, local due time, met or a countdown."""
    if not view.clocks:
        return ["Clocks: no statutory clock runs on this case."]
    lines = [f"Clocks (times in {zone}):"]
    for line in clock_lines(view.clocks, view.summary.state, now, zone):
        status = CLOCK_WORDS[line.standing].format(detail=line.detail)
        lines += [f"  {line.label}", f"    due {line.due}  {status}"]
    return lines


def print_view(view: CaseView, now: datetime, zone: tzinfo) -> None:
    """An opened case as text for a person at a terminal, made printable as a whole."""
    s = view.summary
    lines = [f"WARNING: {view.tampered}"] if view.tampered else []
    lines += [
        f"{s.ref}  {s.source.value}  {s.state.value}  received {iso(s.received_at)}",
        f"flags: {', '.join(s.flags) or '-'}   assignee: {s.assignee or '-'}",
        f"next step: {next_step(s).said(zone, now)}",
    ]
    if view.subject:
        lines.append(f"subject: {view.subject}")
    if view.sender:
        lines.append(f"from: {view.sender.get('display_name', '')} <{view.sender.get('address')}>")
    for heading, key in (
        ("Why it needs triage", "triage"),
        ("Sender checks", "sender"),
        ("Problems reading the message", "problems"),
    ):
        if view.notes.get(key):
            lines += ["", f"{heading}:"] + [f"  - {item}" for item in view.notes[key]]
    lines += ["", "Facts:"]
    lines += [f"  {key}: {value}" for key, value in view.facts.items()] or ["  (none extracted)"]
    if view.reporter is not None:
        lines += ["", "Reporter (confidential):"]
        lines += [f"  {key}: {value}" for key, value in view.reporter.items()]
    lines += ["", *clock_text(view, now, zone)]
    lines += ["", "Message:", view.body_text or "(empty)", ""]
    if view.attachments:
        lines.append("Attachments:")
        lines += [
            f"  {number}. {a.filename} ({a.content_type}, {a.size} bytes)"
            for number, a in enumerate(view.attachments, start=1)
        ]
        lines.append("  (save one with `sgalert case attachment REF NUMBER --out PATH`)")
        lines.append("")
    lines.append("Chronology:")
    for entry in view.chronology:
        mark = "signed" if entry.signature_valid else "SIGNATURE INVALID"
        lines.append(f"  {iso(entry.at)}  {entry.author.email}  {entry.kind.value}  [{mark}]")
        lines.append(f"    {entry.text}")
        if entry.reason:
            lines.append(f"    reason: {entry.reason}")
    if not view.chronology:
        lines.append("  (no entries)")
    print(printable("\n".join(lines)))
