"""What the banners say: silence must never look like safety.

:func:`gather_status` asks the service (metadata only) and the rota; :func:`banners` turns that
into lines for the queue. The engine is judged against its lease on every tick (as `sgalert status`
judges it), so a dead engine shows up even when nothing in the store moves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Literal

from sgalert.clock import parse_iso
from sgalert.desk.service import SYSTEM_ALERT_TEXT, CaseService, Gap, Identity, OnDuty
from sgalert.desk.views import engine_silent

from .formatting import ago, local_time, person_name, plural

GAP_DAYS = 14

Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True, slots=True)
class Banner:
    key: str
    severity: Severity
    text: str


@dataclass(frozen=True, slots=True)
class DeskStatus:
    heartbeat_at: datetime | None
    alerts: tuple[dict[str, str], ...]
    on_duty: OnDuty | None
    gaps: tuple[Gap, ...]
    unacknowledged: int
    assigned_to_me: int
    lease_expires_at: datetime | None = None  # the engine's lease: silent once it has run out
    overdue: int = 0  # open cases with a clock past due (of those the person can read)


async def gather_status(
    service: CaseService, email: str | None, now: datetime, viewer: Identity | None = None
) -> DeskStatus:
    lease = await service.engine_lease()
    alerts = tuple(await service.open_alerts(viewer))
    on_duty: OnDuty | None = None
    gaps: tuple[Gap, ...] = ()
    if service.config is not None:
        view = await service.rota(since=now)
        on_duty = view.who(now)
        gaps = tuple(await asyncio.to_thread(view.gaps, now, GAP_DAYS))
    waiting = await service.unacknowledged(email, viewer)
    return DeskStatus(
        lease.heartbeat_at if lease else None,
        alerts,
        on_duty,
        gaps,
        waiting.total,
        waiting.assigned,
        lease.expires_at if lease else None,
        waiting.overdue,
    )


def _rota_gap_alert(alert: dict[str, str], zone: tzinfo) -> Banner:
    """The engine's daily rota check found a gap: when it said so, and when the gap begins.

    The first gap is usually ahead, so it is never shown as a "since"."""
    raised = local_time(parse_iso(alert["raised_at"]), zone)
    begins, ends = alert.get("first_gap_from"), alert.get("first_gap_to")
    if begins and ends:
        first = f"; first gap {Gap(parse_iso(begins), parse_iso(ends), None).describe(zone)}"
    elif alert.get("since"):  # raised before the alert recorded the first gap's end
        first = f"; first gap from {local_time(parse_iso(alert['since']), zone)}"
    else:
        first = ""
    return Banner("alert:rota-gap", "warning", f"ROTA GAP ALERT raised {raised}{first}. Press r.")


def banners(
    status: DeskStatus | None,
    now: datetime,
    zone: tzinfo,
    email: str | None,
    names: Mapping[str, str] | None = None,
) -> list[Banner]:
    if status is None:
        return []
    found: list[Banner] = []
    if status.heartbeat_at is None:
        found.append(
            Banner(
                "engine",
                "error",
                "ENGINE NOT RUNNING: nobody is being paged. Start `sgalert serve`.",
            )
        )
    elif engine_silent(status.heartbeat_at, status.lease_expires_at, now):
        found.append(
            Banner(
                "engine",
                "error",
                f"ENGINE SILENT: last heartbeat {ago(status.heartbeat_at, now)};"
                " alerts are not being routed.",
            )
        )
    for alert in status.alerts:
        if alert.get("kind") == "rota-gap":
            found.append(_rota_gap_alert(alert, zone))
            continue
        if alert.get("kind") not in (None, "source-down"):
            raised = alert.get("raised_at")
            when = f" (raised {local_time(parse_iso(raised), zone)})" if raised else ""
            reason = SYSTEM_ALERT_TEXT.get(alert["kind"], alert["kind"])
            found.append(Banner(f"alert:{alert['kind']}", "error", f"ALERT: {reason}{when}."))
            continue
        since = alert.get("since") or alert.get("raised_at")
        when = f" since {local_time(parse_iso(since), zone)}" if since else ""
        found.append(
            Banner(
                f"source:{alert.get('source')}",
                "error",
                f"SOURCE DOWN: {alert.get('source')}{when}; its mail may not be arriving.",
            )
        )
    if status.unacknowledged:
        on_duty = bool(email and status.on_duty and status.on_duty.who == email.lower())
        mine = (
            " (you are on duty)"
            if on_duty
            else (f", {status.assigned_to_me} assigned to you" if status.assigned_to_me else "")
        )
        found.append(
            Banner(
                "unacknowledged",
                "warning",
                f"{plural(status.unacknowledged, 'unacknowledged case')}{mine}.",
            )
        )
    if status.overdue:
        found.append(
            Banner(
                "overdue",
                "error",
                f"OVERDUE: {plural(status.overdue, 'case')} with a clock past due.",
            )
        )
    if status.gaps:
        gap = status.gaps[0]
        cover = f"fallback {person_name(gap.covered_by, names)}" if gap.covered_by else "NOBODY"
        more = f" (+{len(status.gaps) - 1} more)" if len(status.gaps) > 1 else ""
        found.append(
            Banner(
                "rota",
                "warning",
                f"ROTA GAP {local_time(gap.start, zone)} to {local_time(gap.end, zone)}:"
                f" {cover}{more}. Press r.",
            )
        )
    return found
