"""Never lose a keystroke (issue 16): every dialog opens with its first field focused, and the idle
lock keeps a half-typed note or dialog text, sealed in memory, for the same person after unlock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from textual.widget import Widget
from textual.widgets import Input, Select, TextArea

from sgalert.config import load_config
from sgalert.desk.service import CaseService
from sgalert.model import Source
from sgalert.records.store import Store
from sgalert.workspace import Workspace
from tui.app import SgalertApp, make_app
from tui.case_list import CaseList
from tui.screens.case import CaseScreen
from tui.screens.dialogs import DecisionScreen, FormScreen, NoteScreen
from tui.screens.manual import NewCaseScreen
from tui.screens.queue import QueueScreen
from tui.screens.rota import CoverScreen, RotaScreen
from tui.screens.unlock import UnlockScreen

from .conftest import PASSPHRASES
from .test_tui_support import FakeClock, make_workspace, seed_desk, settle, unlock, wait_for

SIZE = (80, 24)


@dataclass
class Desk:
    workspace: Workspace
    refs: dict[str, str]


@pytest.fixture
async def desk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Desk:
    monkeypatch.setenv("XDG_DOWNLOAD_DIR", str(tmp_path))
    workspace = make_workspace(tmp_path / "ws")
    return Desk(workspace, await seed_desk(workspace))


async def open_case(pilot: object, app: SgalertApp, ref: str) -> CaseScreen:
    table = app.screen.query_one(CaseList)
    table.move_cursor(row=table.get_row_index(ref))
    await pilot.press("enter")  # type: ignore[attr-defined]
    await settle(pilot)  # type: ignore[arg-type]
    assert isinstance(app.screen, CaseScreen)
    return app.screen


def focused_id(app: SgalertApp) -> str | None:
    focused: Widget | None = app.screen.focused
    return focused.id if focused is not None else None


# ----- focus on open ------------------------------------------------------------------------

# Key on the case screen, the field that must have the focus when its dialog opens.
CASE_DIALOGS = (
    ("n", "note"),  # Note
    ("d", "decision"),  # Decision
    ("c", "outcome"),  # Close
    ("f", "to"),  # Refer
    ("s", "person"),  # Assign
    ("t", "clock"),  # Start a clock
    ("m", "clock"),  # Deadline met
    ("e", "path"),  # Save an attachment: the attachment is chosen already, the path is next
)


async def test_every_dialog_focuses_its_first_field_on_open(desk: Desk) -> None:
    # Opening the case reads it, which meets its Encompass clock: an action clock keeps "m"
    # (deadline met) with a clock to offer.
    store = await Store.open(desk.workspace.store_path)
    service = CaseService(store, load_config(desk.workspace.config_path), FakeClock())
    try:
        dsl = await service.unlock("dsl@example.org", PASSPHRASES["dsl@example.org"])
        await service.start_clock(dsl, desk.refs["new"], "suspension-confirmation-1-working-day")
    finally:
        await service.close()
    app = make_app(desk.workspace, as_email="dsl@example.org", clock=FakeClock())
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        screen = await open_case(pilot, app, desk.refs["new"])
        for key, field in CASE_DIALOGS:
            await pilot.press(key)
            await settle(pilot)
            assert isinstance(app.screen, FormScreen), key
            assert focused_id(app) == field, (key, focused_id(app))
            await pilot.press("escape")
            await settle(pilot)
            assert app.screen is screen
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("n")  # a phoned notification
        await settle(pilot)
        assert focused_id(app) == "caller"
        await pilot.press("escape", "r")
        await settle(pilot)
        await pilot.press("a")  # Add cover on the rota
        await settle(pilot)
        assert isinstance(app.screen, FormScreen)
        assert focused_id(app) == "who"


async def test_the_first_words_typed_into_a_decision_land_in_it(desk: Desk) -> None:
    app = make_app(desk.workspace, as_email="dsl@example.org", clock=FakeClock())
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        await open_case(pilot, app, desk.refs["new"])
        await pilot.press("d", *"Speak to Ada", "tab", *"She trusts her teacher")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, DecisionScreen)
        assert dialog.query_one("#decision", Input).value == "Speak to Ada"
        assert dialog.query_one("#reason", TextArea).text == "She trusts her teacher"


# ----- drafts across the idle lock -----------------------------------------------------------


async def idle_lock(pilot: object, app: SgalertApp, clock: FakeClock) -> None:
    clock.advance(timedelta(minutes=3))
    await wait_for(pilot, lambda: app.identity is None)  # type: ignore[arg-type]
    await settle(pilot)  # type: ignore[arg-type]
    assert isinstance(app.screen, UnlockScreen)


async def test_a_half_typed_note_survives_the_idle_lock(desk: Desk) -> None:
    clock = FakeClock()
    app = make_app(
        desk.workspace,
        as_email="dsl@example.org",
        clock=clock,
        idle_lock_minutes=2,
        poll_seconds=0.05,
    )
    ref = desk.refs["new"]
    words = 'Ada said: "he shouted at mum" and'
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        await open_case(pilot, app, ref)
        await pilot.press("n", *words)
        await settle(pilot)
        assert isinstance(app.screen, NoteScreen)
        await idle_lock(pilot, app, clock)
        # Locked: nothing decrypted and no draft is on any screen.
        assert not any(isinstance(s, CaseScreen | FormScreen) for s in app.screen_stack)
        assert "Ada said" not in str(app.export_screenshot())
        assert "draft" in str(app.screen.query_one("#unlock-reason").render()).lower()
        await pilot.press(*PASSPHRASES["dsl@example.org"], "enter")
        await settle(pilot)
        note = app.screen
        assert isinstance(note, NoteScreen) and note.ref == ref
        assert isinstance(app.screen_stack[-2], CaseScreen)
        assert note.query_one("#note", TextArea).text == words
        assert focused_id(app) == "note"
        await pilot.press(*" hid.", "ctrl+s")
        await settle(pilot)
        assert app.identity is not None
        view = await app.service.open_case(app.identity, ref)
        assert [entry.text for entry in view.chronology] == [words + " hid."]


async def test_a_decision_draft_survives_the_lock_with_every_field(desk: Desk) -> None:
    clock = FakeClock()
    app = make_app(
        desk.workspace,
        as_email="dsl@example.org",
        clock=clock,
        idle_lock_minutes=2,
        poll_seconds=0.05,
    )
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        await open_case(pilot, app, desk.refs["new"])
        await pilot.press("d", *"Speak to Ada", "tab", *"Because")
        await settle(pilot)
        await idle_lock(pilot, app, clock)
        await pilot.press(*PASSPHRASES["dsl@example.org"], "enter")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, DecisionScreen)
        assert dialog.query_one("#decision", Input).value == "Speak to Ada"
        assert dialog.query_one("#reason", TextArea).text == "Because"


async def test_a_draft_waits_sealed_for_its_writer_and_an_empty_form_is_no_draft(
    desk: Desk,
) -> None:
    clock = FakeClock()
    app = make_app(
        desk.workspace,
        as_email="dsl@example.org",
        clock=clock,
        idle_lock_minutes=2,
        poll_seconds=0.05,
    )
    ref = desk.refs["new"]
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        await open_case(pilot, app, ref)
        await pilot.press("n", *"Invented draft")
        await settle(pilot)
        await idle_lock(pilot, app, clock)
        sealed = app.drafts.sealed_for("dsl@example.org")
        assert sealed is not None and b"Invented draft" not in sealed.sealed
        # The deputy sits down instead: their desk works as usual, the draft is not theirs.
        app.screen.query_one("#email", Input).value = "deputy@example.org"
        app.screen.query_one("#passphrase", Input).value = PASSPHRASES["deputy@example.org"]
        await pilot.press("enter")
        await settle(pilot)
        assert app.identity is not None and app.identity.email == "deputy@example.org"
        assert isinstance(app.screen, QueueScreen)
        assert app.drafts.sealed_for("dsl@example.org") is sealed
        # An untouched dialog is not a draft: after the lock, the queue, not an empty form.
        await open_case(pilot, app, ref)
        await pilot.press("c")
        await settle(pilot)
        assert app.screen.query_one("#outcome", Select).is_blank()
        await idle_lock(pilot, app, clock)
        assert app.drafts.sealed_for("deputy@example.org") is None
        await pilot.press(*PASSPHRASES["deputy@example.org"], "enter")
        await settle(pilot)
        assert isinstance(app.screen, QueueScreen)
        # The DSL comes back: the note is where it was.
        await pilot.press("ctrl+l")
        await settle(pilot)
        app.screen.query_one("#email", Input).value = "dsl@example.org"
        app.screen.query_one("#passphrase", Input).value = PASSPHRASES["dsl@example.org"]
        await pilot.press("enter")
        await settle(pilot)
        note = app.screen
        assert isinstance(note, NoteScreen) and note.ref == ref
        assert note.query_one("#note", TextArea).text == "Invented draft"


async def test_a_phoned_whistleblowing_entry_survives_the_lock_with_its_own_fields(
    desk: Desk,
) -> None:
    """The form's fields follow the source chosen: the draft brings the source back first."""
    clock = FakeClock()
    app = make_app(
        desk.workspace,
        as_email="dsl@example.org",
        clock=clock,
        idle_lock_minutes=2,
        poll_seconds=0.05,
    )
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        await pilot.press("n")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, NewCaseScreen)
        form.query_one("#source", Select).value = Source.WHISTLE.value
        await settle(pilot)
        await pilot.press(*"A member of staff")
        form.query_one("#reporter-name", Input).value = "Robin Reporter"
        await settle(pilot)
        await idle_lock(pilot, app, clock)
        await pilot.press(*PASSPHRASES["dsl@example.org"], "enter")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, NewCaseScreen)
        assert form.source is Source.WHISTLE
        assert form.query_one("#caller", Input).value == "A member of staff"
        assert form.query_one("#reporter-name", Input).value == "Robin Reporter"


async def test_a_rota_cover_draft_reopens_on_the_rota(desk: Desk) -> None:
    clock = FakeClock()
    app = make_app(
        desk.workspace,
        as_email="dsl@example.org",
        clock=clock,
        idle_lock_minutes=2,
        poll_seconds=0.05,
    )
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        await pilot.press("r")
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, CoverScreen)
        form.query_one("#who", Select).value = "head@example.org"
        form.query_one("#ends", Input).value = "2026-11-28 13:00"
        await idle_lock(pilot, app, clock)
        await pilot.press(*PASSPHRASES["dsl@example.org"], "enter")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, CoverScreen)
        assert isinstance(app.screen_stack[-2], RotaScreen)
        assert form.query_one("#who", Select).value == "head@example.org"
        assert form.query_one("#ends", Input).value == "2026-11-28 13:00"
