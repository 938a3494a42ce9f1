"""Dialogs that return a typed result with ``dismiss`` (Posting's pattern).

Anything irreversible (acknowledging, closing, a rota cover) goes through :class:`ConfirmScreen`.
Free text is taken verbatim: a note keeps the child's words exactly as typed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TypeVar

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Checkbox, Input, Label, Select, Static, TextArea
from textual.widgets.select import InvalidSelectValueError

from sgalert.desk.service import OUTCOMES, os_error_reason

from ..drafts import FieldValue
from . import DeskModal

FormResult = TypeVar("FormResult")


class ConfirmScreen(DeskModal[bool]):
    """Yes or no, with the consequence spelled out."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, title: str, body: str, *, confirm: str = "Yes") -> None:
        super().__init__()
        self._title = title
        self._body = body
        self._confirm = confirm

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(self._title), classes="dialog-title", markup=False)
            yield Static(Text(self._body), classes="dialog-body", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self._confirm} (y)", variant="error", id="yes")
                yield Button("Cancel (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


FIELDS = "Input, TextArea, Select, Checkbox"


class FormScreen(DeskModal[FormResult | None]):
    """Shared keys for the forms: ctrl+s saves, escape cancels.

    A form opens with its first field focused, so the first words typed land in it. (Textual
    otherwise focuses the first focusable widget, which in a scrolling dialog is the scroll
    container itself, and the keys pressed before a click went nowhere.) A form whose first
    field is not where typing starts focuses its own field in ``on_mount``.
    """

    AUTO_FOCUS = FIELDS
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save", id="form.save", priority=True),
        Binding("escape", "cancel", "Cancel", id="form.cancel"),
    ]
    # The action, on the screen underneath, that opens this form: run again to reopen a draft
    # after the lock (see tui.drafts).
    REOPEN: ClassVar[str | None] = None
    ref: str | None = None  # the case the form is about, if any

    def __init__(self) -> None:
        super().__init__()
        self._initial: dict[str, FieldValue] = {}

    @property
    def reopen(self) -> str | None:
        return self.REOPEN

    @property
    def draft_title(self) -> str:
        """What the lock screen calls the draft: the dialog's title (metadata, e.g. a ref)."""
        titles = self.query(".dialog-title")
        return str(titles.first().render()) if titles else type(self).__name__

    def draft_fields(self) -> dict[str, FieldValue]:
        """Every named field's value, in the order on screen."""
        values: dict[str, FieldValue] = {}
        for widget in self.query(FIELDS):
            if widget.id is None:
                continue
            if isinstance(widget, Input):
                values[widget.id] = widget.value
            elif isinstance(widget, TextArea):
                values[widget.id] = widget.text
            elif isinstance(widget, Checkbox):
                values[widget.id] = widget.value
            elif isinstance(widget, Select):
                value = widget.value
                values[widget.id] = value if isinstance(value, str | int) else None
        return values

    @property
    def has_draft(self) -> bool:
        """Something was typed or chosen since the form opened."""
        return self.is_mounted and self.draft_fields() != self._initial

    def focused_field(self) -> str | None:
        focused = self.focused
        return focused.id if focused is not None and focused.id in self._initial else None

    @on(events.Mount)
    async def _take_draft(self) -> None:
        """Note the fields as opened, then fill them from a draft given back after the lock.
        Runs after a subclass's own ``on_mount`` (Textual runs each class's handler)."""
        self._initial = self.draft_fields()
        draft = self.desk.drafts.take(type(self).__name__, self.ref)
        if draft is not None:
            await self.restore(draft.values, draft.focus)

    async def prepare_restore(self, values: dict[str, FieldValue]) -> None:
        """Make the fields the values need (a form whose fields follow a choice overrides it)."""

    async def restore(self, values: dict[str, FieldValue], focus: str | None) -> None:
        """Fill the fields from a draft, cursors at the end, and focus where the writer was."""
        await self.prepare_restore(values)
        for widget in self.query(FIELDS):
            if widget.id is None or widget.id not in values:
                continue
            value = values[widget.id]
            if isinstance(widget, Input) and isinstance(value, str):
                widget.value = value
                widget.cursor_position = len(value)
            elif isinstance(widget, TextArea) and isinstance(value, str):
                widget.text = value
                widget.move_cursor(widget.document.end)
            elif isinstance(widget, Checkbox) and isinstance(value, bool):
                widget.value = value
            elif isinstance(widget, Select) and value is not None:
                try:
                    widget.value = value
                except InvalidSelectValueError:
                    pass  # no longer offered (the person was removed, say): choose again
        if focus is not None:
            target = self.query(f"#{focus}")
            if target:
                target.first().focus()

    def action_cancel(self) -> None:
        """Close an empty form at once; with something typed, ask before throwing it away."""
        if not self.has_draft:
            self.dismiss(None)
            return

        def answered(discard: bool | None) -> None:
            if discard:
                self.dismiss(None)

        self.app.push_screen(
            ConfirmScreen(
                "Discard what you typed?",
                "What you typed in this dialog is thrown away; nothing is recorded.",
                confirm="Discard",
            ),
            answered,
        )

    def action_save(self) -> None:
        raise NotImplementedError

    def show_problem(self, text: str) -> None:
        self.query_one(".form-problem", Static).update(Text(text))

    @on(Button.Pressed, "#save")
    def _save_pressed(self) -> None:
        self.action_save()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    def buttons(self) -> ComposeResult:
        yield Static("", classes="form-problem", markup=False)
        with Horizontal(classes="dialog-buttons"):
            yield Button("Save (ctrl+s)", variant="primary", id="save")
            yield Button("Cancel (esc)", id="cancel")


class NoteScreen(FormScreen[str]):
    """A signed note. The words are kept verbatim, including a child's own words."""

    REOPEN = "note"

    def __init__(self, ref: str) -> None:
        super().__init__()
        self.ref = ref

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog"):
            yield Label(f"Note on {self.ref}", classes="dialog-title", markup=False)
            yield Static(
                "Write what happened; put a child's words exactly as said. Timed, signed, never"
                " edited: a mistake is fixed by a later correction.",
                classes="dialog-help",
                markup=False,
            )
            yield TextArea(id="note", soft_wrap=True, show_line_numbers=False)
            yield from self.buttons()

    def on_mount(self) -> None:
        self.query_one("#note", TextArea).focus()

    def action_save(self) -> None:
        text = self.query_one("#note", TextArea).text
        if not text.strip():
            self.show_problem("The note is empty.")
            return
        self.dismiss(text)


@dataclass(frozen=True, slots=True)
class Decision:
    decision: str
    reason: str


class DecisionScreen(FormScreen[Decision]):
    """A decision and the reason for it: the record needs both [school 1.13.0]."""

    REOPEN = "decision"

    def __init__(self, ref: str) -> None:
        super().__init__()
        self.ref = ref

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog"):
            yield Label(f"Decision on {self.ref}", classes="dialog-title", markup=False)
            yield Input(placeholder="The decision", id="decision")
            yield Label("Why", markup=False)
            yield TextArea(id="reason", soft_wrap=True)
            yield from self.buttons()

    def action_save(self) -> None:
        decision = self.query_one("#decision", Input).value
        reason = self.query_one("#reason", TextArea).text
        if not decision.strip() or not reason.strip():
            self.show_problem("A decision needs both the decision and its reason.")
            return
        self.dismiss(Decision(decision, reason))


@dataclass(frozen=True, slots=True)
class Closing:
    outcome: str
    reason: str


class CloseScreen(FormScreen[Closing]):
    """The outcome and its reason; closing is confirmed separately because it is final."""

    REOPEN = "close_case"

    def __init__(self, ref: str) -> None:
        super().__init__()
        self.ref = ref

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog"):
            yield Label(f"Close {self.ref}", classes="dialog-title", markup=False)
            yield Select(
                [(outcome, outcome) for outcome in OUTCOMES],
                prompt="Outcome",
                id="outcome",
            )
            yield Input(placeholder="…or write the outcome", id="outcome-text")
            yield Label("Reason", markup=False)
            yield TextArea(id="reason", soft_wrap=True)
            yield from self.buttons()

    def action_save(self) -> None:
        chosen = self.query_one("#outcome", Select).value
        written = self.query_one("#outcome-text", Input).value.strip()
        outcome = written or (chosen if isinstance(chosen, str) else "")
        reason = self.query_one("#reason", TextArea).text
        if not outcome or not reason.strip():
            self.show_problem("Closing needs an outcome and its reason.")
            return
        self.dismiss(Closing(outcome, reason))


class AssignScreen(FormScreen[str]):
    """Give the case to someone; the core refuses anyone not entitled to read it."""

    REOPEN = "assign"

    def __init__(self, ref: str, people: list[tuple[str, str]]) -> None:
        super().__init__()
        self.ref = ref
        self.people = people

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"Assign {self.ref}", classes="dialog-title", markup=False)
            yield Select(
                [(Text(label), email) for label, email in self.people],
                prompt="Person",
                id="person",
            )
            yield from self.buttons()

    def action_save(self) -> None:
        chosen = self.query_one("#person", Select).value
        if not isinstance(chosen, str):
            self.show_problem("Choose a person.")
            return
        self.dismiss(chosen)


@dataclass(frozen=True, slots=True)
class Referral:
    to: str
    text: str


class ReferScreen(FormScreen[Referral]):
    """Who the case is referred to and what was said; a LADO referral starts its clock."""

    REOPEN = "refer"

    def __init__(self, ref: str, agencies: list[tuple[str, str]]) -> None:
        super().__init__()
        self.ref = ref
        self.agencies = agencies

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog"):
            yield Label(f"Refer {self.ref}", classes="dialog-title", markup=False)
            yield Select([(Text(label), key) for label, key in self.agencies], prompt="To", id="to")
            yield Label("What was shared, with whom, reference numbers", markup=False)
            yield TextArea(id="details", soft_wrap=True)
            yield from self.buttons()

    def action_save(self) -> None:
        to = self.query_one("#to", Select).value
        if not isinstance(to, str):
            self.show_problem("Choose who the case is referred to.")
            return
        self.dismiss(Referral(to, self.query_one("#details", TextArea).text))


class ClockScreen(FormScreen[str]):
    """Which running deadline has been met, or (with ``starting``) which clock to start."""

    @property
    def reopen(self) -> str | None:
        return "start_clock" if self.starting else "meet_clock"

    def __init__(self, ref: str, clocks: list[tuple[str, str]], *, starting: bool = False) -> None:
        super().__init__()
        self.ref = ref
        self.clocks = clocks
        self.starting = starting

    def compose(self) -> ComposeResult:
        title = f"Start a clock on {self.ref}" if self.starting else f"Deadline met on {self.ref}"
        with Vertical(classes="dialog"):
            yield Label(title, classes="dialog-title", markup=False)
            if self.starting:
                yield Static(
                    "A statutory clock warns the team before its deadline and pages them when"
                    " it passes, until it is recorded as met.",
                    classes="dialog-help",
                    markup=False,
                )
            yield Select(
                [(Text(label), kind) for label, kind in self.clocks], prompt="Clock", id="clock"
            )
            yield from self.buttons()

    def action_save(self) -> None:
        kind = self.query_one("#clock", Select).value
        if not isinstance(kind, str):
            self.show_problem(
                "Choose the clock to start."
                if self.starting
                else "Choose the clock whose deadline was met."
            )
            return
        self.dismiss(kind)


@dataclass(frozen=True, slots=True)
class AttachmentSave:
    index: int
    path: Path


SAVE_WARNING = (
    "A decrypted copy of confidential safeguarding material will be written outside sgalert's"
    " encrypted store. Only save it if you need it, somewhere only you can reach."
)


class SaveAttachmentScreen(FormScreen[AttachmentSave]):
    """Which attachment, and where its decrypted copy goes (a safe name is proposed).

    Nothing is written here: the caller confirms the warning, and any overwrite, first.
    """

    REOPEN = "save_attachment"

    def __init__(
        self, ref: str, attachments: list[tuple[Text, int]], proposals: dict[int, str]
    ) -> None:
        super().__init__()
        self.ref = ref
        self.attachments = attachments
        self.proposals = proposals
        self._proposed = proposals.get(attachments[0][1], "") if attachments else ""

    def compose(self) -> ComposeResult:
        first = self.attachments[0][1] if self.attachments else Select.NULL
        with VerticalScroll(classes="dialog"):
            yield Label(f"Save an attachment of {self.ref}", classes="dialog-title", markup=False)
            yield Static(Text(SAVE_WARNING, style="bold"), classes="dialog-help", markup=False)
            yield Select(self.attachments, prompt="Attachment", id="attachment", value=first)
            yield Label("Save the decrypted copy as", markup=False)
            yield Input(value=self._proposed, id="path")
            yield from self.buttons()

    def on_mount(self) -> None:
        self.query_one("#path", Input).focus()

    @on(Select.Changed, "#attachment")
    def _chosen(self, event: Select.Changed) -> None:
        if not isinstance(event.value, int):
            return
        path = self.query_one("#path", Input)
        proposal = self.proposals.get(event.value, "")
        if path.value in ("", self._proposed):  # not edited by hand: follow the choice
            path.value = proposal
        self._proposed = proposal

    def action_save(self) -> None:
        index = self.query_one("#attachment", Select).value
        written = self.query_one("#path", Input).value.strip()
        if not isinstance(index, int):
            self.show_problem("Choose an attachment.")
            return
        if not written:
            self.show_problem("Say where to save the copy.")
            return

        def checked(found: tuple[Path, str | None]) -> None:
            path, problem = found
            if self.app.screen is not self:
                return  # cancelled while the path was checked
            if problem is not None:
                self.show_problem(problem)
                return
            self.dismiss(AttachmentSave(index, path))

        self.desk.submit(
            asyncio.to_thread(check_destination, written),  # it looks at the file system
            description="Checking the path",
            done=checked,
            latest="attachment-destination",
        )


def check_destination(written: str) -> tuple[Path, str | None]:
    """The absolute path typed for a copy, and what is wrong with it (None when nothing is).
    Blocking: it looks at the file system, so run it in a worker thread."""
    path = Path(written).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    try:
        if path.is_dir():
            return path, "That is a folder: add a file name."
        if not path.parent.is_dir():
            return path, "That folder does not exist."
    except OSError as error:
        return path, f"That path cannot be used ({os_error_reason(error)})."
    return path, None
