"""How the termly report reads: text, CSV (one row per week, then the totals) and HTML with a small
inline SVG chart per figure (weekly new cases, the time-to-acknowledge distribution, weekly
escalations, weekly clock compliance). Counts and times only: no reference, name or text."""

from __future__ import annotations

import csv
import html
import io
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from sgalert.model import Source
from sgalert.routing.digest import ABOUT_HEAD
from sgalert.routing.digest_render import duration
from sgalert.routing.report import TermReport, ack_histogram

FOOTER = "Counts and times only: this report names no case, child, reporter or member of staff."


@dataclass
class Part:
    """A heading, its lines, and (in HTML) a chart of (label, value) bars."""

    title: str
    lines: list[str] = field(default_factory=list)
    chart: list[tuple[str, float]] = field(default_factory=list)
    chart_title: str = ""


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "n/a"


def _trend(first: float, second: float) -> str:
    if first == 0:
        return "no change" if second == 0 else "up from none"
    change = 100 * (second - first) / first
    return (
        "no change" if abs(change) < 0.5 else f"{'up' if change > 0 else 'down'} {abs(change):.0f}%"
    )


def _halves(values: Sequence[float]) -> tuple[float, float]:
    middle = len(values) // 2
    first, second = values[:middle] or values, values[middle:] or values
    return sum(first) / len(first), sum(second) / len(second)


def parts(report: TermReport) -> list[Part]:
    weeks = report.weeks
    found: list[Part] = []

    new = Part("New cases", chart_title="New cases per week")
    new.lines.append(
        f"{report.total} cases in {len(weeks)} week(s): "
        + ", ".join(f"{source} {n}" for source, n in report.by_source.items())
        + "."
    )
    if report.about_head:
        new.lines.append(
            f"Of the whistleblowing reports, {report.about_head} were allegations about the"
            " headteacher, referred to the chair of governors."
        )
    early, late = _halves([float(w.total) for w in weeks])
    new.lines.append(
        f"Trend: {early:.1f} a week in the first half of the period, {late:.1f} in the second"
        f" ({_trend(early, late)})."
    )
    for week in weeks:
        new.lines.append(
            f"Week of {week.start:%a} {week.start.day} {week.start:%b}: {week.total} ("
            + ", ".join(f"{s.value} {week.new.get(s.value, 0)}" for s in Source)
            + ")"
        )
        new.chart.append((f"{week.start.day} {week.start:%b}", week.total))
    found.append(new)

    ack = Part("Time to acknowledge", chart_title="Time from arrival to acknowledgement")
    every = [s for group in report.ack_seconds.values() for s in group]
    for key in [*(s.value for s in Source), ABOUT_HEAD]:
        times = report.ack_seconds.get(key)
        if not times:
            continue
        allowed = report.allowances.get(key, 0.0)
        within = sum(1 for t in times if t <= allowed * 60)
        label = "about the head" if key == ABOUT_HEAD else key
        ack.lines.append(
            f"{label}: {len(times)} acknowledged, median {duration(statistics.median(times))},"
            f" worst {duration(max(times))}; within the first step's {duration(allowed * 60)}:"
            f" {within} ({_pct(within, len(times))})"
        )
    ack.lines.append(f"Not yet acknowledged: {report.unacknowledged}.")
    medians = [statistics.median(w.acknowledged) for w in weeks if w.acknowledged]
    if medians:
        early, late = _halves(medians)
        ack.lines.append(
            f"Trend: weekly median {duration(early)} in the first half,"
            f" {duration(late)} in the second ({_trend(early, late)})."
        )
    ack.chart = [(label, float(n)) for label, n in ack_histogram(every)]
    found.append(ack)

    clocks = Part("Statutory clocks", chart_title="Clocks met on time per week (%)")
    if not report.clocks:
        clocks.lines.append("No statutory deadline fell in the period.")
    for clock in report.clocks:
        clocks.lines.append(
            f"{clock.kind}: {clock.due} due, {clock.on_time} met on time"
            f" ({_pct(clock.on_time, clock.due)}), {clock.late} met late, {clock.unmet} not met"
        )
    clocks.chart = [
        (
            f"{w.start.day} {w.start:%b}",
            100 * w.clocks_on_time / w.clocks_due if w.clocks_due else 0,
        )
        for w in weeks
    ]
    found.append(clocks)

    escalations = Part("Escalations", chart_title="Cases escalated per week")
    escalations.lines.append(f"{report.escalated} case(s) went past the first step.")
    if report.highest_steps:
        escalations.lines.append(
            "Highest step reached: "
            + ", ".join(f"step {k}: {n}" for k, n in sorted(report.highest_steps.items()))
        )
    if report.answered_after:
        escalations.lines.append(
            "Answered after: "
            + ", ".join(f"step {k}: {n}" for k, n in sorted(report.answered_after.items()))
        )
    escalations.chart = [(f"{w.start.day} {w.start:%b}", float(w.escalated)) for w in weeks]
    found.append(escalations)

    system = Part("Cover and sgalert itself")
    system.lines += [
        f"Rota gap alerts (gaps in cover found ahead): {report.cover_gap_alerts}",
        f"Mailbox outages: {report.sources_down}, {report.hours_down:.1f} hours in all",
        f"Engine starts (restarts and takeovers): {report.engine_starts}",
        "System alerts raised: "
        + (", ".join(f"{k} {n}" for k, n in sorted(report.alerts_raised.items())) or "none"),
    ]
    found.append(system)
    return found


def title(report: TermReport) -> str:
    return (
        f"{report.school}: safeguarding report, {report.first:%a} {report.first.day}"
        f" {report.first:%b %Y} to {report.last:%a} {report.last.day} {report.last:%b %Y}"
    )


def render_text(report: TermReport) -> str:
    head = title(report)
    out = [head, "=" * len(head), f"Times are {report.zone_name}."]
    for part in parts(report):
        out += ["", part.title, "-" * len(part.title), *part.lines]
    out += ["", FOOTER]
    return "\n".join(out) + "\n"


def render_csv(report: TermReport) -> str:
    """One row per week, then a totals row: spreadsheets for the governors' own charts."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    sources = [s.value for s in Source]
    writer.writerow(
        [
            "week_starting",
            *sources,
            "total",
            "acknowledged",
            "median_ack_minutes",
            "escalated",
            "clocks_due",
            "clocks_met_on_time",
        ]
    )
    for week in report.weeks:
        median = statistics.median(week.acknowledged) / 60 if week.acknowledged else ""
        writer.writerow(
            [
                week.start.isoformat(),
                *(week.new.get(s, 0) for s in sources),
                week.total,
                len(week.acknowledged),
                f"{median:.1f}" if median != "" else "",
                week.escalated,
                week.clocks_due,
                week.clocks_on_time,
            ]
        )
    every = [s for w in report.weeks for s in w.acknowledged]
    writer.writerow(
        [
            "total",
            *(report.by_source.get(s, 0) for s in sources),
            report.total,
            len(every),
            f"{statistics.median(every) / 60:.1f}" if every else "",
            report.escalated,
            sum(w.clocks_due for w in report.weeks),
            sum(w.clocks_on_time for w in report.weeks),
        ]
    )
    return buffer.getvalue()


def svg_bars(caption: str, bars: Sequence[tuple[str, float]]) -> str:
    """A small bar chart as inline SVG: one bar per (label, value), the value above it."""
    e = html.escape
    width, height, gap, top, bottom = 36, 120, 6, 16, 34
    peak = max((v for _, v in bars), default=0) or 1
    total_width = max(len(bars), 1) * (width + gap) + gap
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{total_width}"'
        f' height="{height + top + bottom}" viewBox="0 0 {total_width} {height + top + bottom}">',
        f"<title>{e(caption)}</title>",
    ]
    for index, (label, value) in enumerate(bars):
        x = gap + index * (width + gap)
        bar = height * value / peak
        y = top + height - bar
        shown = f"{value:.0f}"
        out += [
            f'<rect x="{x}" y="{y:.1f}" width="{width}" height="{bar:.1f}" fill="#4a6fa5">'
            f"<title>{e(label)}: {e(shown)}</title></rect>",
            f'<text x="{x + width / 2:.1f}" y="{y - 3:.1f}" font-size="10"'
            f' text-anchor="middle">{e(shown)}</text>',
            f'<text x="{x + width / 2:.1f}" y="{top + height + 12}" font-size="9"'
            f' text-anchor="middle">{e(label)}</text>',
        ]
    out.append("</svg>")
    return "".join(out)


def render_html(report: TermReport) -> str:
    e = html.escape
    head = title(report)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8">',
        f"<title>{e(head)}</title>",
        "<style>body{font-family:sans-serif;max-width:60em}svg{display:block;margin:.5em 0}"
        "</style>",
        "</head>",
        "<body>",
        f"<h1>{e(head)}</h1>",
        f"<p>Times are {e(report.zone_name)}.</p>",
    ]
    for part in parts(report):
        out.append(f"<h2>{e(part.title)}</h2>")
        if part.chart:
            out.append(f"<figure>{svg_bars(part.chart_title, part.chart)}")
            out.append(f"<figcaption>{e(part.chart_title)}</figcaption></figure>")
        out.append("<ul>")
        out += [f"<li>{e(line)}</li>" for line in part.lines]
        out.append("</ul>")
    out += [f"<p><small>{e(FOOTER)}</small></p>", "</body>", "</html>"]
    return "\n".join(out) + "\n"
