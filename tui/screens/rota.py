"""The rota: who is on duty now and next, gaps in the next 14 days, and dated covers.

A gap is a stretch only the fallback (or nobody) covers: a safety net, not a plan, so each one
is shown in red. Adding a cover needs an unlocked person (it is audited in their name).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Footer, Input, Label, Select, Static

from sgalert.desk.service import CaseService, Cover, Gap, Identity, OnDuty, Person
from sgalert.model import Role

from ..formatting import OVERDUE, local_time, untrusted
from ..status import GAP_DAYS
from . import DeskScreen
from .dialogs import ConfirmScreen, FormScreen
from .manual import TIME_FORMAT, parse_local

COVER_ROLES = (Role.DSL, Role.DEPUTY, Role.HEAD)


@dataclass(frozen=True, slots=True)
class RotaSummary:
    now: OnDuty
    next: tuple[datetime, OnDuty] | None
    gaps: tuple[Gap, ...]
    covers: tuple[Cover, ...]
    people: tuple[Person, ...]


async def summarise(service: CaseService, now: datetime) -> RotaSummary:
    view = await service.rota(since=now)

    def work() -> RotaSummary:
        return RotaSummary(
            now=view.who(now),
            next=view.next_change(now, GAP_DAYS),
            gaps=tuple(view.gaps(now, GAP_DAYS)),
            covers=view.covers,
            people=tuple(p for p in view.people.values() if p.role in COVER_ROLES),
        )

    return await asyncio.to_thread(work)


def _duty_text(summary: RotaSummary, zone: tzinfo) -> Text:
    text = Text()
    text.append("On duty now  ", "bold")
    text.append_text(untrusted(summary.now.who or "NOBODY", one_line=True))
    text.append(f"  ({summary.now.rule})", OVERDUE if summary.now.fallback else "dim")
    text.append("\nNext         ", "bold")
    if summary.next is None:
        text.append(f"no change in the next {GAP_DAYS} days", "dim")
    else:
        at, duty = summary.next
        text.append_text(untrusted(duty.who or "NOBODY", one_line=True))
        text.append(f" from {local_time(at, zone)}")
        text.append(f"  ({duty.rule})", OVERDUE if duty.fallback else "dim")
    return text


@dataclass(frozen=True, slots=True)
class CoverRequest:
    who: str
    starts: datetime
    ends: datetime


class CoverScreen(FormScreen[CoverRequest]):
    """Who covers, from when, until when (local time); opened on the first gap, exactly."""

    REOPEN = "add_cover"

    def __init__(
        self, people: tuple[Person, ...], start: datetime, end: datetime, zone: tzinfo
    ) -> None:
        super().__init__()
        self.people = people
        self.start = start
        self.end = end
        self.zone = zone

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog"):
            yield Label("Add a cover", classes="dialog-title")
            yield Select(
                [
                    (Text(f"{p.name} <{p.email}> ({p.role.value})"), p.email)
                    for p in sorted(self.people, key=lambda p: p.email)
                    if not p.removed
                ],
                prompt="Who covers",
                id="who",
            )
            yield Label("From (YYYY-MM-DD HH:MM, local time)")
            yield Input(value=self.start.astimezone(self.zone).strftime(TIME_FORMAT), id="starts")
            yield Label("Until")
            yield Input(value=self.end.astimezone(self.zone).strftime(TIME_FORMAT), id="ends")
            yield from self.buttons()

    def action_save(self) -> None:
        who = self.query_one("#who", Select).value
        starts = parse_local(self.query_one("#starts", Input).value, self.zone)
        ends = parse_local(self.query_one("#ends", Input).value, self.zone)
        if not isinstance(who, str):
            self.show_problem("Choose who covers.")
        elif starts is None or ends is None:
            self.show_problem("Write the times as YYYY-MM-DD HH:MM.")
        elif ends <= starts:
            self.show_problem("The cover must end after it starts.")
        else:
            self.dismiss(CoverRequest(who, starts, ends))


class RotaScreen(DeskScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="rota.back", tooltip="Back to the queue"),
        Binding("a", "add_cover", "Add cover", id="rota.add_cover", tooltip="A dated override"),
        Binding("r", "reload", "Reload", id="rota.reload", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.summary: RotaSummary | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text("Rota"), id="rota-title", classes="screen-title", markup=False)
        with VerticalScroll(id="rota-body"):
            yield Static(Text("Loading…", style="dim"), id="duty", markup=False)
            with Vertical(classes="rota-block"):
                yield Static(
                    Text(f"Gaps in the next {GAP_DAYS} days"), classes="section-title", markup=False
                )
                yield DataTable(id="gaps", cursor_type="row", show_cursor=False)
            with Vertical(classes="rota-block"):
                yield Static(Text("Dated covers"), classes="section-title", markup=False)
                yield DataTable(id="covers", cursor_type="row", show_cursor=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        gaps = self.query_one("#gaps", DataTable)
        gaps.add_columns("From", "Until", "Covered by")
        covers = self.query_one("#covers", DataTable)
        covers.add_columns("Who", "From", "Until")
        self.action_reload()

    def action_reload(self) -> None:
        self.desk.submit(
            summarise(self.desk.service, self.desk.now()),
            description="Reading the rota",
            done=self._show,
            latest="rota",
        )

    def store_changed(self) -> None:
        self.action_reload()

    def _show(self, summary: RotaSummary) -> None:
        zone = self.desk.zone
        self.summary = summary
        self.query_one("#duty", Static).update(_duty_text(summary, zone))
        gaps = self.query_one("#gaps", DataTable)
        gaps.clear()
        for gap in summary.gaps:
            gaps.add_row(
                Text(local_time(gap.start, zone), style=OVERDUE),
                Text(local_time(gap.end, zone), style=OVERDUE),
                Text(f"fallback {gap.covered_by}" if gap.covered_by else "NOBODY", style=OVERDUE),
            )
        if not summary.gaps:
            gaps.add_row(Text(f"Every minute of the next {GAP_DAYS} days is covered."), "", "")
        covers = self.query_one("#covers", DataTable)
        covers.clear()
        for cover in summary.covers:
            covers.add_row(
                untrusted(cover.who, one_line=True),
                local_time(cover.starts_at, zone),
                local_time(cover.ends_at, zone),
            )
        if not summary.covers:
            covers.add_row(Text("None.", style="dim"), "", "")

    def action_back(self) -> None:
        self.dismiss(None)

    def action_add_cover(self) -> None:
        desk = self.desk

        def add(identity: Identity, request: CoverRequest, yes: bool | None) -> None:
            if not yes:
                return

            def added(cover: Cover) -> None:
                desk.notify(f"Cover added for {cover.who}.", markup=False)
                self.action_reload()
                desk.refresh_status()

            desk.submit(
                desk.service.add_cover(identity, request.who, request.starts, request.ends),
                description="Adding the cover",
                done=added,
            )

        def confirm(identity: Identity, request: CoverRequest | None) -> None:
            if request is None:
                return
            zone = desk.zone
            desk.push_screen(
                ConfirmScreen(
                    "Add this cover?",
                    f"{request.who} will be on duty from {local_time(request.starts, zone)}"
                    f" until {local_time(request.ends, zone)}, overriding the weekly rota."
                    " It is recorded in the audit log in your name.",
                    confirm="Add cover",
                ),
                lambda yes: add(identity, request, yes),
            )

        def ask(identity: Identity) -> None:
            people = self.summary.people if self.summary else ()
            if self.summary and self.summary.gaps:  # the first gap, to the minute
                start, end = self.summary.gaps[0].start, self.summary.gaps[0].end
            else:
                start = desk.now()
                end = start + timedelta(hours=12)
            desk.push_screen(
                CoverScreen(people, start, end, desk.zone), lambda req: confirm(identity, req)
            )

        desk.require_identity(ask)
