"""The rota: a week's grid of duty slots, who is on duty now and next, gaps in the next 14
days, and dated covers.

The grid shows one week, days down and the day's duty slots across, each person by name; ``]``
and ``[`` turn the week, ``t`` comes back to this one. A gap is a stretch only the fallback (or
nobody) covers: a safety net, not a plan, so each one is shown in red. ``enter`` on a slot (or
``e``) puts someone on duty for it; ``a`` for the first gap. Adding a cover needs an unlocked
person (it is audited in their name).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Footer, Input, Label, Select, Static

from sgalert.desk.service import (
    CaseService,
    Cover,
    Gap,
    Identity,
    OnDuty,
    Person,
    RotaWeek,
    Slot,
    cover_problem,
)
from sgalert.model import Role

from ..formatting import OVERDUE, local_time, person_name, untrusted
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
    people: tuple[Person, ...]
    names: dict[str, str]  # lower-cased email to name


async def summarise(service: CaseService, now: datetime) -> RotaSummary:
    view = await service.rota(since=now)

    def work() -> RotaSummary:
        return RotaSummary(
            now=view.who(now),
            next=view.next_change(now, GAP_DAYS),
            gaps=tuple(view.gaps(now, GAP_DAYS)),
            people=tuple(p for p in view.people.values() if p.role in COVER_ROLES),
            names={email: p.name for email, p in view.people.items()},
        )

    return await asyncio.to_thread(work)


def _duty_text(summary: RotaSummary, zone: tzinfo) -> Text:
    text = Text()
    text.append("On duty now  ", "bold")
    names = summary.names
    now = person_name(summary.now.who, names) if summary.now.who else "NOBODY"
    text.append_text(untrusted(now, one_line=True))
    text.append(f"  ({summary.now.rule})", OVERDUE if summary.now.fallback else "dim")
    text.append("\nNext         ", "bold")
    if summary.next is None:
        text.append(f"no change in the next {GAP_DAYS} days", "dim")
    else:
        at, duty = summary.next
        shown = person_name(duty.who, names) if duty.who else "NOBODY"
        text.append_text(untrusted(shown, one_line=True))
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
        self,
        people: tuple[Person, ...],
        start: datetime,
        end: datetime,
        zone: tzinfo,
        now: datetime,
    ) -> None:
        super().__init__()
        self.people = people
        self.start = start
        self.end = end
        self.zone = zone
        self.now = now

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
        elif (problem := cover_problem(starts, ends, self.now, self.zone)) is not None:
            self.show_problem(f"{problem[0].upper()}{problem[1:]}.")
        else:
            self.dismiss(CoverRequest(who, starts, ends))


def slot_text(slot: Slot, names: dict[str, str], zone: tzinfo) -> Text:
    """Who covers a slot, by name; a cover marked, a gap in red ("GAP: fallback …")."""
    text = Text()
    last = len(slot.stretches) - 1
    for index, stretch in enumerate(slot.stretches):
        if index:
            text.append(" · ")
        who = person_name(stretch.who, names) if stretch.who else "NOBODY"
        if stretch.fallback:
            text.append_text(untrusted(f"GAP: fallback {who}", one_line=True, style=OVERDUE))
        else:
            text.append_text(untrusted(who, one_line=True))
            if stretch.cover:
                text.append(" (cover)", "italic")
        if index < last:
            text.append(f" to {stretch.end.astimezone(zone):%H:%M}", "dim")
    return text


class RotaScreen(DeskScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="rota.back", tooltip="Back to the queue"),
        Binding("a", "add_cover", "Add cover", id="rota.add_cover", tooltip="A dated override"),
        Binding("e", "edit_slot", "Cover slot", id="rota.edit_slot", tooltip="Cover this slot"),
        Binding("right_square_bracket", "week(1)", "Next week", id="rota.next_week"),
        Binding("left_square_bracket", "week(-1)", "Prev week", id="rota.previous_week"),
        Binding("t", "this_week", "This week", id="rota.this_week", show=False),
        Binding("r", "reload", "Reload", id="rota.reload", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.summary: RotaSummary | None = None
        self._when_loaded: Callable[[], None] | None = None  # an action asked before loading
        self.week: RotaWeek | None = None
        self.monday: date | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text("Rota"), id="rota-title", classes="screen-title", markup=False)
        with VerticalScroll(id="rota-body"):
            with Vertical(classes="rota-block"):
                yield Static(Text("This week"), id="week-title", classes="section-title")
                yield DataTable(id="week", cursor_type="cell", zebra_stripes=True)
            yield Static(Text("Loading…", style="dim"), id="duty", markup=False)
            with Vertical(classes="rota-block"):
                yield Static(
                    Text(f"Gaps in the next {GAP_DAYS} days"), classes="section-title", markup=False
                )
                yield DataTable(id="gaps", cursor_type="row", show_cursor=False)
            with Vertical(classes="rota-block"):
                yield Static(
                    Text("Dated covers"), id="covers-title", classes="section-title", markup=False
                )
                yield DataTable(id="covers", cursor_type="row", show_cursor=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        gaps = self.query_one("#gaps", DataTable)
        gaps.add_columns("From", "Until", "Covered by")
        covers = self.query_one("#covers", DataTable)
        covers.add_columns("Who", "From", "Until")
        self.monday = self._this_monday()
        self.query_one("#week", DataTable).focus()
        self.action_reload()

    def _this_monday(self) -> date:
        today = self.desk.now().astimezone(self.desk.zone).date()
        return today - timedelta(days=today.weekday())

    def action_reload(self) -> None:
        self.desk.submit(
            summarise(self.desk.service, self.desk.now()),
            description="Reading the rota",
            done=self._show,
            latest="rota",
        )
        self._load_week()

    def _load_week(self) -> None:
        monday = self.monday or self._this_monday()
        self.desk.submit(
            self.desk.service.rota_week(monday),
            description="Reading the week's rota",
            done=self._show_week,
            latest="rota-week",
        )

    def action_week(self, step: int) -> None:
        self.monday = (self.monday or self._this_monday()) + timedelta(days=7 * step)
        self._load_week()

    def action_this_week(self) -> None:
        self.monday = self._this_monday()
        self._load_week()

    def store_changed(self) -> None:
        self.action_reload()

    def _show_week(self, week: RotaWeek) -> None:
        self.week = week
        zone = self.desk.zone
        sunday = week.days[-1]
        which = "This week" if week.monday == self._this_monday() else "Week"
        gaps = len(week.gaps())
        said = f"{gaps} slot{'s' if gaps != 1 else ''} with a gap" if gaps else "no gaps"
        first, last = f"{week.monday.day} {week.monday:%b}", f"{sunday.day} {sunday:%b %Y}"
        title = Text(f"{which}: Mon {first} to Sun {last} · ")
        title.append(said, OVERDUE if gaps else "green")
        self.query_one("#week-title", Static).update(title)
        table = self.query_one("#week", DataTable)
        cursor = table.cursor_coordinate
        table.clear(columns=True)
        table.add_columns("Day", *week.labels)
        for day, slots in zip(week.days, week.slots, strict=True):
            table.add_row(
                Text(f"{day:%a} {day.day} {day:%b}", style="bold"),
                *(slot_text(slot, week.names, zone) for slot in slots),
                key=day.isoformat(),
            )
        table.cursor_coordinate = cursor
        self._show_covers(week, first)

    def _show_covers(self, week: RotaWeek, first: str) -> None:
        """The dated covers from the week the grid shows on: the ones it shows, and later."""
        self.query_one("#covers-title", Static).update(Text(f"Dated covers from Mon {first}"))
        covers = self.query_one("#covers", DataTable)
        covers.clear()
        for cover in week.covers:
            covers.add_row(
                untrusted(person_name(cover.who, week.names), one_line=True),
                local_time(cover.starts_at, self.desk.zone),
                local_time(cover.ends_at, self.desk.zone),
            )
        if not week.covers:
            covers.add_row(Text("None.", style="dim"), "", "")

    def _highlighted_slot(self) -> Slot | None:
        if self.week is None:
            return None
        table = self.query_one("#week", DataTable)
        row, column = table.cursor_coordinate.row, table.cursor_coordinate.column
        if not 0 <= row < len(self.week.slots):
            return None
        slots = self.week.slots[row]
        return slots[max(column - 1, 0)] if slots else None

    @on(DataTable.CellSelected, "#week")
    def _slot_chosen(self) -> None:
        self.action_edit_slot()

    def action_edit_slot(self) -> None:
        slot = self._highlighted_slot()
        if slot is None:
            return
        gap = next((stretch for stretch in slot.stretches if stretch.fallback), None)
        start, end = (gap.start, gap.end) if gap is not None else (slot.start, slot.end)
        self._ask_cover(start, end)

    def _show(self, summary: RotaSummary) -> None:
        zone = self.desk.zone
        self.summary = summary
        if self._when_loaded is not None:
            waiting, self._when_loaded = self._when_loaded, None
            self.call_after_refresh(waiting)
        self.query_one("#duty", Static).update(_duty_text(summary, zone))
        gaps = self.query_one("#gaps", DataTable)
        gaps.clear()
        for gap in summary.gaps:
            gaps.add_row(
                Text(local_time(gap.start, zone), style=OVERDUE),
                Text(local_time(gap.end, zone), style=OVERDUE),
                Text(
                    f"fallback {person_name(gap.covered_by, summary.names)}"
                    if gap.covered_by
                    else "NOBODY",
                    style=OVERDUE,
                ),
            )
        if not summary.gaps:
            gaps.add_row(Text(f"Every minute of the next {GAP_DAYS} days is covered."), "", "")

    def action_back(self) -> None:
        self.dismiss(None)

    def action_add_cover(self) -> None:
        """A cover for the first gap, to the minute; else twelve hours from now. Asked before
        the rota has loaded (a draft reopened after unlock), it waits for it: the form needs
        the people to offer, and the first gap."""
        if self.summary is None:
            self._when_loaded = self.action_add_cover
            return
        if self.summary.gaps:
            self._ask_cover(self.summary.gaps[0].start, self.summary.gaps[0].end)
        else:
            start = self.desk.now()
            self._ask_cover(start, start + timedelta(hours=12))

    def _ask_cover(self, start: datetime, end: datetime) -> None:
        """The cover form, opened on ``start`` to ``end``; confirmed, then recorded."""
        desk = self.desk
        names = self.summary.names if self.summary else {}

        def add(identity: Identity, request: CoverRequest, yes: bool | None) -> None:
            if not yes:
                return

            def added(cover: Cover) -> None:
                desk.notify(f"Cover added for {person_name(cover.who, names)}.", markup=False)
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
                    f"{person_name(request.who, names)} will be on duty from"
                    f" {local_time(request.starts, zone)} until {local_time(request.ends, zone)},"
                    " overriding the weekly rota. It is recorded in the audit log in your name.",
                    confirm="Add cover",
                ),
                lambda yes: add(identity, request, yes),
            )

        def ask(identity: Identity) -> None:
            people = self.summary.people if self.summary else ()
            desk.push_screen(
                CoverScreen(people, start, end, desk.zone, desk.now()),
                lambda req: confirm(identity, req),
            )

        desk.require_identity(ask)
