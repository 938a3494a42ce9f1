"""The queue's preview pane: the highlighted case at a glance, Enter for the whole of it.

What it shows depends on who is at the desk. Locked, nothing is decrypted: the case's next step
(metadata, as the queue's own columns are) and one line, "Locked: unlock to preview". Unlocked,
for a case the person may read: the next step with its deadline as a local time and countdown,
the extracted facts, the statutory clocks and the last three chronology entries; never the
message itself. A case the person may not read shows its metadata only.

The pane is fed by the queue (:mod:`tui.screens.queue`), which waits for the highlight to rest
~150 ms and loads the preview in a worker, so moving down the list never waits for it.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from rich.text import Text
from textual.widgets import Static

from sgalert.desk.service import CasePreview, next_step, uk_time
from sgalert.model import CaseState, CaseSummary

from .formatting import (
    CLOCK_LABELS,
    FACT_LABELS,
    countdown,
    fact_text,
    flags_text,
    untrusted,
)

LOCKED = "Locked: unlock to preview."
LOADING = "Opening the preview…"
NOT_YOURS = "Not shared with you: metadata only."
FACTS_SHOWN = 6


def step_text(summary: CaseSummary, zone: tzinfo, now: datetime) -> Text:
    """``Next: Encompass: read the notice … before Mon 23 Nov 08:30 (10h 30m)``."""
    step = next_step(summary)
    text = Text("Next: ", style="bold")
    text.append(step.said(zone, now))
    if step.due is not None and summary.state is not CaseState.CLOSED:
        text.append(" (")
        text.append_text(countdown(step.due, now))
        text.append(")")
    return text


def _header(summary: CaseSummary, zone: tzinfo, now: datetime) -> Text:
    text = Text(summary.ref, style="bold")
    text.append(f" · received {uk_time(summary.received_at, zone, now)}")
    if summary.flags:
        text.append(f" · {flags_text(summary.flags)}", style="dim")
    text.append("\n")
    text.append_text(step_text(summary, zone, now))
    return text


def preview_text(
    summary: CaseSummary,
    preview: CasePreview | None,
    zone: tzinfo,
    now: datetime,
    *,
    locked: bool,
    loading: bool = False,
) -> Text:
    """Everything the pane shows for one case, as one :class:`Text` (markup never parsed)."""
    text = _header(summary, zone, now)
    if locked:
        text.append(f"\n{LOCKED}", style="italic")
        return text
    if loading:
        text.append(f"\n{LOADING}", style="dim")
        return text
    if preview is None:
        text.append(f"\n{NOT_YOURS}", style="dim")
        return text
    facts = [
        (FACT_LABELS.get(key, key), fact_text(key, str(value), zone, now))
        for key, value in sorted(
            preview.facts.items(),
            key=lambda item: list(FACT_LABELS).index(item[0]) if item[0] in FACT_LABELS else 99,
        )
        if value not in (None, "", [], {})
    ][:FACTS_SHOWN]
    if facts:
        text.append("\n")
        for number, (label, value) in enumerate(facts):
            if number:
                text.append(" · ", style="dim")
            text.append(f"{label}: ", style="bold")
            text.append_text(untrusted(value, one_line=True))
    for clock in preview.clocks:
        text.append("\n")
        text.append(f"{CLOCK_LABELS.get(clock.kind, clock.kind)}: ", style="bold")
        if clock.met_at is not None:
            text.append(f"met {uk_time(clock.met_at, zone, now)}")
        else:
            text.append(f"due {uk_time(clock.due_at, zone, now)} (")
            text.append_text(countdown(clock.due_at, now))
            text.append(")")
    if not preview.latest:
        text.append("\nNo chronology entries yet.", style="dim")
    for entry in preview.latest:
        text.append(f"\n{uk_time(entry.at, zone, now)} ", style="dim")
        text.append(f"{entry.kind.value} ", style="bold")
        text.append_text(untrusted(f"{entry.author.name}: {entry.text}", one_line=True))
    return text


class PreviewPane(Static):
    """The highlighted case, as :func:`preview_text` words it."""

    DEFAULT_CSS = """
    PreviewPane {
        height: 9;
        padding: 0 1;
        border-top: solid $primary;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, markup=False)
        self.summary: CaseSummary | None = None
        self.preview: CasePreview | None = None
        self.locked = True
        self.loading = False
        self._shown = ""

    def show(
        self,
        summary: CaseSummary | None,
        preview: CasePreview | None,
        zone: tzinfo,
        now: datetime,
        *,
        locked: bool,
        loading: bool = False,
    ) -> None:
        self.summary, self.preview, self.locked, self.loading = summary, preview, locked, loading
        self.redraw(zone, now)

    def clear(self) -> None:
        """Drop anything decrypted at once (the desk is locking)."""
        self.preview = None
        self.locked = True
        self._shown = ""
        self.update("")

    def redraw(self, zone: tzinfo, now: datetime) -> None:
        """Draw again if anything changed (countdowns move once a second)."""
        if self.summary is None:
            text = Text("No case highlighted.", style="dim")
        else:
            text = preview_text(
                self.summary, self.preview, zone, now, locked=self.locked, loading=self.loading
            )
        if text.plain != self._shown:
            self._shown = text.plain
            self.update(text, layout=False)
