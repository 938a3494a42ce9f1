"""Unlocking: who you are and your passphrase.

The key derivation (Argon2id or scrypt) runs off the event loop inside
:func:`sgalert.records.keyring.unlock` (``asyncio.to_thread``), driven by an async worker, so the
screen keeps drawing while it works. The passphrase leaves the input as soon as it is submitted; the
unlocked :class:`~sgalert.records.keyring.Identity` is handed to the app and lives only in memory.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Input, Label, Static

from sgalert.desk.service import Identity
from sgalert.errors import NotEntitled, NotFound, SgalertError, WrongPassphrase

from . import DeskModal


class UnlockScreen(DeskModal[Identity | None]):
    """Email and passphrase. Escape goes back to the queue, which shows metadata only."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Metadata only", id="unlock.cancel"),
    ]

    def __init__(self, *, email: str | None = None, reason: str | None = None) -> None:
        super().__init__()
        self._email = email or ""
        self._reason = reason
        self.busy = False

    def compose(self) -> ComposeResult:
        # The button is docked at the foot of a dialog that scrolls: however much it has to
        # say (why it locked, a draft kept, a problem), Unlock stays on screen at 80x24.
        with VerticalScroll(classes="dialog", id="unlock", can_focus=False):
            with Horizontal(classes="dialog-buttons"):
                yield Button("Unlock", variant="primary", id="unlock-button")
            yield Static("Unlock", classes="dialog-title", markup=False)
            if self._reason:
                yield Static(Text(self._reason), id="unlock-reason", markup=False)
            yield Label("Email", markup=False)
            yield Input(value=self._email, placeholder="you@school.example.org", id="email")
            yield Label("Passphrase", markup=False)
            yield Input(password=True, id="passphrase")
            yield Static(
                "Esc: queue without unlocking (metadata only).",
                id="unlock-status",
                markup=False,
            )

    def on_mount(self) -> None:
        target = "#passphrase" if self._email else "#email"
        self.query_one(target, Input).focus()

    def _say(self, text: str, *, problem: bool = False) -> None:
        status = self.query_one("#unlock-status", Static)
        status.update(Text(text))
        status.set_class(problem, "-problem")
        status.scroll_visible(animate=False)  # the body may scroll at 80x24: keep it in view

    @on(Input.Submitted, "#email")
    def _email_done(self) -> None:
        self.query_one("#passphrase", Input).focus()

    @on(Input.Submitted, "#passphrase")
    @on(Button.Pressed, "#unlock-button")
    def _submit(self) -> None:
        if self.busy:
            return
        email = self.query_one("#email", Input).value.strip()
        box = self.query_one("#passphrase", Input)
        passphrase = box.value
        box.value = ""
        if not email:
            self._say("Type your email address.", problem=True)
            self.query_one("#email", Input).focus()
            return
        if not passphrase:
            self._say("Type your passphrase.", problem=True)
            box.focus()
            return
        self.busy = True
        self._say("Unlocking… deriving your key.")
        self.query_one("#unlock", VerticalScroll).disabled = True
        self.desk.submit(
            self.desk.service.unlock(email, passphrase),
            description="Unlocking",
            done=self._unlocked,
            failed=self._failed,
            latest="unlock",
        )

    def _unlocked(self, identity: Identity) -> None:
        self.busy = False
        self.dismiss(identity)

    def _failed(self, error: SgalertError) -> bool:
        """Wrong passphrase and unknown people are answered here; the rest go to the app."""
        self.busy = False
        self.query_one("#unlock", VerticalScroll).disabled = False
        if isinstance(error, WrongPassphrase):
            self._say("Wrong passphrase. Try again.", problem=True)
            self.query_one("#passphrase", Input).focus()
            return True
        if isinstance(error, NotFound):
            self._say("Nobody with that email is set up here. Check it.", problem=True)
            self.query_one("#email", Input).focus()
            return True
        if isinstance(error, NotEntitled):
            self._say(str(error), problem=True)
            return True
        self._say("Could not unlock; see the message.", problem=True)
        return False

    def action_cancel(self) -> None:
        if not self.busy:
            self.dismiss(None)
