"""Manual entry: a notification taken by phone becomes a case like any other.

Some forces and councils phone instead of emailing. The form asks for the same facts the email
parsers extract, who called and when; the core seals the case, signs its first entry in the
person's name, sets its clocks and routes it like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Checkbox, Input, Label, Select, TextArea

from sgalert.desk.service import Identity, StoredCase
from sgalert.model import Flag, Source

from ..drafts import FieldValue
from ..formatting import SOURCE_LONG
from .dialogs import FormScreen

if TYPE_CHECKING:
    from tui.app import SgalertApp

TIME_FORMAT = "%Y-%m-%d %H:%M"

MANUAL_FIELDS: dict[Source, tuple[tuple[str, str], ...]] = {
    Source.ENCOMPASS: (
        ("child_name", "Child's name"),
        ("child_dob", "Date of birth (YYYY-MM-DD)"),
        ("school", "School or setting"),
        ("incident_at", "Incident date and time"),
        ("police_reference", "Police reference"),
        ("child_present", "Was the child present / did they witness it?"),
        ("incident_location", "Where"),
        ("voice_of_child", "The child's words, exactly as reported"),
        ("welfare_check", "Welfare check done?"),
    ),
    Source.LESSON: (
        ("teacher", "Teacher"),
        ("pupil", "Pupil"),
        ("lesson", "Lesson"),
        ("ended_at", "When the lesson was ended"),
        ("reason", "Reason: chat message, dress, behaviour or other"),
        ("reason_detail", "What happened"),
        ("responsible_adult_present", "Responsible adult present?"),
    ),
    Source.WHISTLE: (
        ("summary", "Summary of the allegation"),
        ("subject_of_allegation", "Who the allegation is about"),
        ("preferred_contact", "How the whistleblower wants to be contacted"),
    ),
}


@dataclass(frozen=True, slots=True)
class ManualCase:
    source: Source
    caller: str
    received_at: datetime
    facts: dict[str, str]
    body_text: str
    reporter: dict[str, str] | None
    flags: frozenset[str]


def parse_local(value: str, zone: tzinfo) -> datetime | None:
    """``YYYY-MM-DD HH:MM`` in the school's zone, as an aware UTC time; None if malformed."""
    try:
        moment = datetime.strptime(value.strip(), TIME_FORMAT)
    except ValueError:
        return None
    return moment.replace(tzinfo=zone).astimezone(UTC)


class NewCaseScreen(FormScreen[ManualCase]):
    """The phoned notification's form. The fields follow the chosen source."""

    REOPEN = "app.new_case"

    def __init__(self, now: datetime, zone: tzinfo) -> None:
        super().__init__()
        self.now = now
        self.zone = zone
        self.source = Source.ENCOMPASS

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog wide", id="new-case"):
            yield Label("New case: a notification taken by phone", classes="dialog-title")
            yield Select(
                [(SOURCE_LONG[source], source.value) for source in Source],
                value=self.source.value,
                allow_blank=False,
                id="source",
            )
            yield Input(placeholder="Who called: name, force or council, number", id="caller")
            yield Label("When the call came (YYYY-MM-DD HH:MM, local time)")
            yield Input(value=self.now.astimezone(self.zone).strftime(TIME_FORMAT), id="received")
            yield Vertical(*self._fact_inputs(self.source), id="facts")
            yield Label("What was said (kept verbatim)")
            yield TextArea(id="body", soft_wrap=True)
            yield from self.buttons()

    def _fact_inputs(self, source: Source) -> list[Input | Checkbox | Label]:
        widgets: list[Input | Checkbox | Label] = [
            Input(placeholder=label, id=f"fact-{key}") for key, label in MANUAL_FIELDS[source]
        ]
        if source is Source.WHISTLE:
            widgets += [
                Label("The whistleblower (sealed apart; Monitoring Officer only)"),
                Input(placeholder="Whistleblower's name", id="reporter-name"),
                Input(placeholder="Whistleblower's contact details", id="reporter-contact"),
            ]
        # Any source may concern the head (their household in a police notice, their conduct in
        # a lesson): then it is kept from them, whoever the rota names.
        widgets.append(Checkbox("It concerns the headteacher", id="about-head"))
        return widgets

    def on_mount(self) -> None:
        self.query_one("#caller", Input).focus()

    @on(Select.Changed, "#source")
    async def _source_changed(self, event: Select.Changed) -> None:
        # A change posted before a draft set the source (the Select's first value) is stale.
        if isinstance(event.value, str) and event.value == event.select.value:
            await self._show_source(Source(event.value))

    async def _show_source(self, source: Source) -> None:
        if source is self.source:
            return
        self.source = source
        box = self.query_one("#facts", Vertical)
        await box.remove_children()
        await box.mount_all(self._fact_inputs(self.source))

    async def prepare_restore(self, values: dict[str, FieldValue]) -> None:
        """A draft for another source needs that source's fact fields before they are filled."""
        chosen = values.get("source")
        if isinstance(chosen, str) and chosen in {source.value for source in Source}:
            await self._show_source(Source(chosen))

    def action_save(self) -> None:
        caller = self.query_one("#caller", Input).value.strip()
        received = parse_local(self.query_one("#received", Input).value, self.zone)
        body = self.query_one("#body", TextArea).text
        facts = {
            key: value
            for key, _ in MANUAL_FIELDS[self.source]
            if (value := self.query_one(f"#fact-{key}", Input).value.strip())
        }
        if not caller:
            self.show_problem("Say who called: the record must show where it came from.")
            return
        if received is None:
            self.show_problem("When the call came: write it as YYYY-MM-DD HH:MM.")
            return
        if received > max(self.now, datetime.now(UTC)) + timedelta(minutes=5):
            # A typo (2036 for 2026) was a call not yet made, numbered in its year.
            self.show_problem("When the call came is in the future: check the date and time.")
            return
        if not facts and not body.strip():
            self.show_problem("Record at least one fact or what was said.")
            return
        reporter: dict[str, str] | None = None
        flags: set[str] = set()
        if self.source is Source.WHISTLE:
            name = self.query_one("#reporter-name", Input).value.strip()
            contact = self.query_one("#reporter-contact", Input).value.strip()
            reporter = {k: v for k, v in (("name", name), ("contact", contact)) if v} or None
        if self.query_one("#about-head", Checkbox).value:
            flags.add(Flag.ABOUT_HEAD)
        self.dismiss(
            ManualCase(self.source, caller, received, facts, body, reporter, frozenset(flags))
        )


def start_manual_entry(desk: SgalertApp, identity: Identity) -> None:
    """Ask for the phoned notification, then record it in ``identity``'s name."""

    def record(case: ManualCase | None) -> None:
        if case is None:
            return

        def stored(result: StoredCase) -> None:
            desk.notify(f"Recorded {result.ref}: routed like any other case.", markup=False)
            desk.reload_queue()

        desk.submit(
            desk.service.record_manual_case(
                identity,
                case.source,
                facts=case.facts,
                body_text=case.body_text,
                caller=case.caller,
                received_at=case.received_at,
                reporter=case.reporter,
                flags=case.flags,
            ),
            description="Recording the phoned notification",
            done=stored,
        )

    desk.push_screen(NewCaseScreen(desk.now(), desk.zone), record)
