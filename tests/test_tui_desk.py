"""The desk's behaviour, driven headless through Textual's Pilot.

Unlocking (right, wrong, retry), acknowledging, notes, decisions, closing, manual entry, a rota
cover, locking (ctrl+l and idle), live updates from another connection and another process,
untrusted text shown literally, paging, filtering, the palette and the bindings' ids.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from textual.content import Content
from textual.widgets import Checkbox, DataTable, Input, Select, Static, TextArea

from sgalert.config import load_config
from sgalert.desk.service import CaseService
from sgalert.desk.views import PAGE_SIZE
from sgalert.model import CaseState, Source
from sgalert.records.audit import entries
from sgalert.records.store import Store
from sgalert.routing.duty import load_rota
from sgalert.text import printable
from sgalert.workspace import Workspace
from tui.app import SgalertApp, make_app
from tui.case_list import CaseList
from tui.screens.case import CaseScreen
from tui.screens.dialogs import CloseScreen, ConfirmScreen, DecisionScreen, NoteScreen
from tui.screens.manual import NewCaseScreen
from tui.screens.queue import AcknowledgeScreen, QueueScreen
from tui.screens.rota import CoverScreen, RotaScreen
from tui.screens.unlock import UnlockScreen

from .conftest import PASSPHRASES, Team, encompass_case
from .test_tui_support import (
    HOSTILE_BODY,
    NOW,
    FakeClock,
    make_workspace,
    seed_desk,
    settle,
    unlock,
    wait_for,
)

SIZE = (80, 24)


@dataclass
class Desk:
    workspace: Workspace
    refs: dict[str, str]


@pytest.fixture
async def desk(tmp_path: Path) -> Desk:
    workspace = make_workspace(tmp_path / "ws")
    return Desk(workspace, await seed_desk(workspace))


def app_for(desk: Desk, clock: FakeClock | None = None, **options: object) -> SgalertApp:
    return make_app(
        desk.workspace,
        as_email="dsl@example.org",
        clock=clock or FakeClock(),
        **options,  # type: ignore[arg-type]
    )


def plain(widget: Static) -> str:
    visual = widget.visual
    return visual.plain if isinstance(visual, Content) else str(widget.content)


def queue_states(app: SgalertApp) -> dict[str, str]:
    table = app.queue_screen.query_one(CaseList)
    return {key: table.cell(key, "state") for key in table.keys}


async def open_case(pilot: object, app: SgalertApp, ref: str) -> CaseScreen:
    table = app.screen.query_one(CaseList)
    table.move_cursor(row=table.get_row_index(ref))
    await pilot.press("enter")  # type: ignore[attr-defined]
    await settle(pilot)  # type: ignore[arg-type]
    assert isinstance(app.screen, CaseScreen)
    assert app.screen.ref == ref
    return app.screen


# ----- unlocking --------------------------------------------------------------------------


async def test_unlock_with_the_right_passphrase(desk: Desk) -> None:
    app = app_for(desk)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, UnlockScreen)
        await pilot.press(*PASSPHRASES["dsl@example.org"], "enter")
        await settle(pilot)
        assert app.identity is not None and app.identity.email == "dsl@example.org"
        assert isinstance(app.screen, QueueScreen)
        assert "dsl@example.org · unlocked" in plain(app.screen.query_one("#whoami", Static))


async def test_wrong_passphrase_says_so_and_lets_you_retry(desk: Desk) -> None:
    app = app_for(desk)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press(*"not-the-passphrase", "enter")
        await settle(pilot)
        assert isinstance(app.screen, UnlockScreen)
        assert app.identity is None
        assert "Wrong passphrase" in plain(app.screen.query_one("#unlock-status", Static))
        assert app.screen.query_one("#passphrase", Input).value == ""  # not kept around
        await unlock(pilot)
        assert isinstance(app.screen, QueueScreen)
        async with app.service.store.read() as db:
            # (the preview pane's glance at the highlighted case is audited too; after the
            # unlock the desk prepares search, audited on its own)
            skip = {"case-previewed", "search-indexed"}
            actions = [e.action for e in await entries(db, limit=6) if e.action not in skip]
        assert actions[:2] == ["unlock", "unlock-failed"]


async def test_unknown_email_is_named_as_the_problem(desk: Desk) -> None:
    app = make_app(desk.workspace, clock=FakeClock())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press(*"nobody@example.org", "tab", *"whatever", "enter")
        await settle(pilot)
        assert isinstance(app.screen, UnlockScreen)
        assert "Nobody with that email" in plain(app.screen.query_one("#unlock-status", Static))


async def test_before_unlock_the_queue_shows_metadata_and_a_case_asks_for_the_key(
    desk: Desk,
) -> None:
    app = app_for(desk)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("escape")  # metadata only
        await settle(pilot)
        assert isinstance(app.screen, QueueScreen)
        assert "locked: metadata only" in plain(app.screen.query_one("#whoami", Static))
        states = queue_states(app)
        assert states[desk.refs["new"]] == "NEW"
        assert desk.refs["closed"] not in states  # needs action: open cases only
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, UnlockScreen)  # reading a case needs the key
        await unlock(pilot)
        assert isinstance(app.screen, CaseScreen)


# ----- acting on a case -------------------------------------------------------------------


async def test_acknowledge_asks_first_then_records_it(desk: Desk) -> None:
    app = app_for(desk)
    ref = desk.refs["new"]
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        screen = await open_case(pilot, app, ref)
        await pilot.press("a")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # changed their mind: nothing happens
        await settle(pilot)
        assert (await app.service.summary(ref)).state is CaseState.NEW
        await pilot.press("a", "y")
        await settle(pilot)
        summary = await app.service.summary(ref)
        assert summary.state is CaseState.ACKNOWLEDGED
        assert summary.acknowledged_by == "dsl@example.org"
        assert app.screen is screen
        assert "ACKNOWLEDGED" in plain(screen.query_one("#case-header", Static))
        await pilot.press("h")
        await settle(pilot)
        history = plain(screen.query_one("#history", Static))
        assert "acknowledged" in history and "case-read" in history
        await pilot.press("escape")
        await settle(pilot)
        assert queue_states(app)[ref] == "acked"


async def test_acknowledge_from_the_queue(desk: Desk) -> None:
    app = app_for(desk)
    ref = desk.refs["new"]
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        table = app.screen.query_one(CaseList)
        table.move_cursor(row=table.get_row_index(ref))
        await pilot.press("a")
        await settle(pilot)
        assert isinstance(app.screen, AcknowledgeScreen)  # have you read it? (test_desk_tui.py)
        await pilot.press("y")
        await settle(pilot)
        assert queue_states(app)[ref] == "acked"


async def test_add_note_keeps_the_words_verbatim_and_signed(desk: Desk) -> None:
    app = app_for(desk)
    ref = desk.refs["new"]
    words = 'Ada said: "he shouted [loud] at mum" \\n and hid.\nSecond line  with  spaces.'
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        screen = await open_case(pilot, app, ref)
        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, NoteScreen)
        app.screen.query_one("#note", TextArea).text = words
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is screen
        assert app.identity is not None
        view = await app.service.open_case(app.identity, ref)
        (note,) = view.chronology
        assert note.text == words and note.signature_valid
        assert note.author.email == "dsl@example.org"
        assert note.at == NOW  # timed by the desk's clock
        shown = plain(screen.query_one("#chronology", Static))
        assert '"he shouted [loud] at mum"' in shown and "✓ signed" in shown


async def test_record_decision_needs_a_reason(desk: Desk) -> None:
    app = app_for(desk)
    ref = desk.refs["new"]
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        await open_case(pilot, app, ref)
        await pilot.press("d")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, DecisionScreen)
        dialog.query_one("#decision", Input).value = "Speak to Ada first thing"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is dialog  # no reason: refused in the form
        assert "reason" in plain(dialog.query_one(".form-problem", Static))
        dialog.query_one("#reason", TextArea).text = "Invented: she trusts her class teacher."
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.identity is not None
        view = await app.service.open_case(app.identity, ref)
        (decision,) = view.chronology
        assert decision.text == "Speak to Ada first thing"
        assert decision.reason == "Invented: she trusts her class teacher."


async def test_close_with_outcome_and_reason_after_confirmation(desk: Desk) -> None:
    app = app_for(desk)
    ref = desk.refs["new"]
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        screen = await open_case(pilot, app, ref)
        await pilot.press("c")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, CloseScreen)
        dialog.query_one("#outcome", Select).value = "Early help offered"
        dialog.query_one("#reason", TextArea).text = "Invented: family accepted support."
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        summary = await app.service.summary(ref)
        assert summary.state is CaseState.CLOSED
        assert app.screen is screen
        assert "CLOSED" in plain(screen.query_one("#case-header", Static))
        chronology = plain(screen.query_one("#chronology", Static))
        assert "Early help offered" in chronology and "family accepted support" in chronology
        await pilot.press("escape")
        await settle(pilot)
        assert ref not in queue_states(app)  # closed: no longer needs action


async def test_assign_to_an_entitled_person(desk: Desk) -> None:
    app = app_for(desk)
    ref = desk.refs["new"]
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        await open_case(pilot, app, ref)
        await pilot.press("s")
        await settle(pilot)
        app.screen.query_one("#person", Select).value = "deputy@example.org"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert (await app.service.summary(ref)).assignee == "deputy@example.org"
        # The toast names the person as the case header does, not by their address.
        messages = [n.message for n in app._notifications]
        assert f"{ref} assigned to Deputy Example." in messages, messages
        header = plain(app.screen.query_one("#case-header", Static))
        assert "assigned to Deputy Example" in header


async def test_a_refused_action_is_reported_not_crashed(desk: Desk) -> None:
    """The Assign list offers only those the core says may read the case (never the monitoring
    officer for an Encompass case); an assignment the core then refuses (the case was closed
    meanwhile at another desk) is shown by the one error handler and the desk carries on."""
    app = app_for(desk)
    ref = desk.refs["new"]
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        screen = await open_case(pilot, app, ref)
        await pilot.press("s")
        await settle(pilot)
        person = app.screen.query_one("#person", Select)
        assert "mo@example.org" not in person._legal_values
        person.value = "deputy@example.org"
        assert app.identity is not None
        await app.service.close_case(app.identity, ref, "Invented outcome", "Invented reason")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is screen
        messages = [n.message for n in app._notifications]
        assert any("is closed" in m for m in messages)
        assert (await app.service.summary(ref)).assignee is None


# ----- manual entry -----------------------------------------------------------------------


async def test_manual_entry_records_a_phoned_notification(desk: Desk) -> None:
    app = app_for(desk)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        await pilot.press("n")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, NewCaseScreen)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "who called" in plain(form.query_one(".form-problem", Static)).lower()
        form.query_one("#caller", Input).value = "PC Invented, Example Constabulary"
        form.query_one("#received", Input).value = "2026-11-22 21:50"
        form.query_one("#fact-child_name", Input).value = "Dee Invented"
        form.query_one("#fact-child_dob", Input).value = "2018-05-01"
        form.query_one("#fact-police_reference", Input).value = "EX/99/2026"
        form.query_one("#body", TextArea).text = "Police phoned: incident at home, Dee present."
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, QueueScreen)
        await wait_for(pilot, lambda: "SG-2026-0007" in queue_states(app))
        assert app.identity is not None
        view = await app.service.open_case(app.identity, "SG-2026-0007")
        assert view.summary.source is Source.ENCOMPASS
        assert "manual-entry" in view.summary.flags
        assert view.summary.received_at == datetime(2026, 11, 22, 21, 50, tzinfo=UTC)
        assert view.facts == {
            "child_name": "Dee Invented",
            "child_dob": "2018-05-01",
            "police_reference": "EX/99/2026",
        }
        (first,) = view.chronology
        assert "PC Invented, Example Constabulary" in first.text and first.signature_valid
        assert view.clocks  # routed like any other: the before-school-day clock runs


async def test_manual_entry_refuses_a_call_received_in_the_future(desk: Desk) -> None:
    """A typo in the time (2036 for 2026) recorded a call not yet made, as SG-2036-0001."""
    app = app_for(desk)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        await pilot.press("n")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, NewCaseScreen)
        form.query_one("#caller", Input).value = "PC Invented, Example Constabulary"
        form.query_one("#received", Input).value = "2036-11-22 21:50"
        form.query_one("#body", TextArea).text = "Police phoned: incident at home."
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is form
        assert "in the future" in plain(form.query_one(".form-problem", Static))
        assert not [c for c in await app.service.list_cases() if c.ref.startswith("SG-2036")]


async def test_manual_entry_for_whistleblowing_seals_the_reporter(desk: Desk) -> None:
    app = app_for(desk)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        await pilot.press("n")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, NewCaseScreen)
        form.query_one("#source", Select).value = Source.WHISTLE.value
        await settle(pilot)
        form.query_one("#caller", Input).value = "A member of staff"
        form.query_one("#fact-summary", Input).value = "Invented concern about a colleague"
        form.query_one("#reporter-name", Input).value = "Robin Reporter"
        form.query_one("#about-head", Checkbox).value = True
        await pilot.press("ctrl+s")
        await settle(pilot)
    mo_service = await CaseService.open(desk.workspace)
    try:
        mo = await mo_service.unlock("mo@example.org", PASSPHRASES["mo@example.org"])
        view = await mo_service.open_case(mo, "SG-2026-0007")
        # Who called goes with the reporter, sealed apart (trust model item 5).
        assert view.reporter == {"name": "Robin Reporter", "caller": "A member of staff"}
        assert "A member of staff" not in view.chronology[0].text
        assert "about-head" in view.summary.flags
    finally:
        await mo_service.close()


# ----- rota -------------------------------------------------------------------------------


async def test_cover_override_fills_a_gap(desk: Desk) -> None:
    app = app_for(desk)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        await pilot.press("r")
        await settle(pilot)
        rota = app.screen
        assert isinstance(rota, RotaScreen)
        gaps = rota.query_one("#gaps", DataTable)
        assert "Sat 28 Nov 07:00" in str(gaps.get_row_at(0)[0])
        await pilot.press("a")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, CoverScreen)
        form.query_one("#who", Select).value = "head@example.org"
        form.query_one("#starts", Input).value = "2026-11-28 07:00"
        form.query_one("#ends", Input).value = "2026-11-28 19:00"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        assert app.screen is rota
        assert "Sun 29 Nov 07:00" in str(gaps.get_row_at(0)[0])
        covers = rota.query_one("#covers", DataTable)
        assert str(covers.get_row_at(0)[0]) == "Head Example"
        view = await load_rota(app.service, since=NOW)
        assert view.who(datetime(2026, 11, 28, 12, 0, tzinfo=UTC)).who == "head@example.org"


# ----- locking ----------------------------------------------------------------------------


async def test_ctrl_l_locks_and_closes_the_case(desk: Desk) -> None:
    app = app_for(desk)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        identity = app.identity
        await open_case(pilot, app, desk.refs["new"])
        await pilot.press("ctrl+l")
        await settle(pilot)
        assert app.identity is None
        assert identity is not None and identity.locked  # the private key is forgotten
        assert isinstance(app.screen, UnlockScreen)
        assert not any(isinstance(s, CaseScreen) for s in app.screen_stack)


async def test_locks_after_idle_minutes_and_a_key_press_keeps_it_open(desk: Desk) -> None:
    clock = FakeClock()
    app = app_for(desk, clock, idle_lock_minutes=2, poll_seconds=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        await open_case(pilot, app, desk.refs["new"])
        clock.advance(timedelta(seconds=100))
        await pilot.press("down")  # activity resets the idle time
        clock.advance(timedelta(seconds=100))
        await pilot.pause(0.2)
        assert app.identity is not None
        clock.advance(timedelta(seconds=21))
        await wait_for(pilot, lambda: app.identity is None)
        await settle(pilot)
        assert isinstance(app.screen, UnlockScreen)
        assert "2 minutes" in plain(app.screen.query_one("#unlock-reason", Static))
        assert not any(isinstance(s, CaseScreen) for s in app.screen_stack)


async def test_a_case_opened_while_locking_never_shows(desk: Desk) -> None:
    app = app_for(desk)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        assert app.identity is not None
        app.open_case(desk.refs["new"])
        app.lock("test")  # before the open job reports back
        await settle(pilot)
        assert not any(isinstance(s, CaseScreen) for s in app.screen_stack)


# ----- live updates -----------------------------------------------------------------------


async def test_queue_updates_when_another_connection_acknowledges(team: Team) -> None:
    service = team.service
    (first,) = await service.create_cases([encompass_case()])
    app = make_app(
        Workspace(service.store.path.parent / "sgalert.toml", service.store.path),
        clock=FakeClock(),
        poll_seconds=0.05,
    )
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("escape")  # metadata only: nobody unlocked here
        await wait_for(pilot, lambda: queue_states(app).get(first.ref) == "NEW")
        await service.acknowledge(team["deputy@example.org"], first.ref)
        await wait_for(pilot, lambda: queue_states(app).get(first.ref) == "acked")
        (second,) = await service.create_cases([encompass_case("Eve Invented")])
        await wait_for(pilot, lambda: queue_states(app).get(second.ref) == "NEW")


ACK_SCRIPT = """
import asyncio, os, sys
from pathlib import Path
from sgalert.desk.service import CaseService
from sgalert.workspace import Workspace

async def main() -> None:
    root = Path(sys.argv[1])
    service = await CaseService.open(Workspace(root / "sgalert.toml", root / "sgalert.db"))
    try:
        who = await service.unlock("deputy@example.org", os.environ["SGALERT_PASSPHRASE"])
        await service.acknowledge(who, sys.argv[2])
    finally:
        await service.close()

asyncio.run(main())
"""


async def test_queue_updates_when_another_process_acknowledges(desk: Desk) -> None:
    app = app_for(desk, poll_seconds=0.1)
    ref = desk.refs["new"]
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        assert queue_states(app)[ref] == "NEW"
        env = {**os.environ, "SGALERT_PASSPHRASE": PASSPHRASES["deputy@example.org"]}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            ACK_SCRIPT,
            str(desk.workspace.root),
            ref,
            env=env,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, stderr.decode()
        await wait_for(pilot, lambda: queue_states(app)[ref] == "acked")
        await settle(pilot)
        banners = [plain(s) for s in app.screen.query(".banner").results(Static)]
        # The whistleblowing case is not counted for the DSL, who cannot read it.
        assert "1 unacknowledged case." in banners


async def test_an_open_case_says_when_someone_else_changed_it(desk: Desk) -> None:
    app = app_for(desk, poll_seconds=0.05)
    ref = desk.refs["new"]
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        screen = await open_case(pilot, app, ref)
        other = await CaseService.open(desk.workspace)
        try:
            deputy = await other.unlock("deputy@example.org", PASSPHRASES["deputy@example.org"])
            await other.add_note(deputy, ref, "Invented note from the deputy.")
        finally:
            await other.close()
        await wait_for(pilot, lambda: screen.stale)
        await pilot.press("r")
        await settle(pilot)
        assert "Invented note from the deputy." in plain(screen.query_one("#chronology", Static))


# ----- untrusted text ---------------------------------------------------------------------


async def test_hostile_text_is_shown_literally(desk: Desk) -> None:
    app = app_for(desk)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        screen = await open_case(pilot, app, desk.refs["hostile"])
        message = plain(screen.query_one("#message", Static))
        assert "\\x1b[31mRED\\x1b[0m [/b][bold]not bold[/bold] \\u202eevil\\u202c" in message
        assert "[link=https://attacker.example.org]click[/link]" in message
        assert "[@click=app.quit]quit[/]" in message
        assert "\\x1b[2J\\x1b[H" in message and "\\x07 bell" in message
        assert "\x1b" not in message and "\u202e" not in message
        facts = plain(screen.query_one("#facts", Static))
        assert "[b]EX/1234[/b]\\x1b[5m" in facts
        body_start = message.index("Ignore this:")
        assert message[body_start:].rstrip("\n") == printable(HOSTILE_BODY).rstrip("\n")


# ----- the queue at scale -----------------------------------------------------------------


async def test_pages_filter_and_sort_many_cases(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path / "ws")
    await seed_desk(workspace, hostile=False)
    store = await Store.open(workspace.store_path)
    service = CaseService(store, load_config(workspace.config_path), FakeClock())
    try:
        many = []
        for number in range(PAGE_SIZE + 30):
            case = encompass_case(f"Child {number} Invented")
            case.received_at = datetime(2026, 10, 1, tzinfo=UTC) + timedelta(minutes=number)
            many.append(case)
        await service.create_cases_in_batches(many)
    finally:
        await service.close()
    app = make_app(workspace, clock=FakeClock())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("escape", "5")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, QueueScreen)
        table = screen.query_one(CaseList)
        assert table.row_count == PAGE_SIZE
        # Nobody unlocked: the seeded whistleblowing case is not shown (PAGE_SIZE + 34 others).
        assert screen.page is not None and screen.page.total == PAGE_SIZE + 34
        await pilot.press("end", "down")  # past the last row: the next page
        await settle(pilot)
        assert screen.query_state.offset == PAGE_SIZE
        assert table.row_count == 34 and table.cursor_row == 0
        await pilot.press("up")
        await settle(pilot)
        assert screen.query_state.offset == 0 and table.cursor_row == PAGE_SIZE - 1
        await pilot.press("slash", *"SG-2026-012", "enter")
        await settle(pilot)
        assert sorted(queue_states(app)) == [f"SG-2026-012{n}" for n in range(10)]
        await pilot.press("escape")  # clears the filter
        await settle(pilot)
        await pilot.press("s")  # received -> deadline
        await settle(pilot)
        assert "by deadline" in plain(screen.query_one("#queue-status", Static))
        await pilot.press("2")
        await settle(pilot)
        assert screen.query_state.view.value == "encompass"
        status = plain(screen.query_one("#queue-status", Static))
        assert f"of {PAGE_SIZE + 33}" in status


# ----- keys, palette, help ----------------------------------------------------------------


def test_every_binding_has_an_id_and_a_description() -> None:
    from tui.screens import audit, case, child, dialogs, help, manual, queue, rota, unlock

    classes: list[type] = [SgalertApp, CaseList]
    for module in (audit, case, child, dialogs, help, manual, queue, rota, unlock):
        classes += [
            value
            for value in vars(module).values()
            if isinstance(value, type)
            and value.__module__.startswith("tui.")
            and "BINDINGS" in vars(value)
        ]
    seen: dict[str, str] = {}
    for cls in classes:
        for binding in vars(cls)["BINDINGS"]:
            assert binding.id, f"{cls.__name__} {binding.key} has no id"
            assert binding.description, f"{cls.__name__} {binding.key} has no description"
            assert seen.setdefault(binding.id, cls.__name__) == cls.__name__, binding.id
    assert len(seen) > 30


async def test_palette_offers_every_action_and_help_lists_keys(desk: Desk) -> None:
    from tui.commands import DeskCommands
    from tui.screens.help import HelpScreen

    app = app_for(desk)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        provider = DeskCommands(app.screen)
        labels = [label for label, _, _ in provider._commands()]
        for wanted in ("Filter", "Sort", "Ack", "New", "Rota", "Audit", "Lock", "Help"):
            assert any(label.startswith(wanted) for label in labels), wanted
        assert not any(label.startswith("Unlock") for label in labels)  # already unlocked
        await open_case(pilot, app, desk.refs["new"])
        labels = [label for label, _, _ in DeskCommands(app.screen)._commands()]
        for wanted in ("Ack", "Note", "Decision", "Assign", "Close", "Back"):
            assert any(label.startswith(wanted) for label in labels), wanted
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, CaseScreen)


async def test_audit_view_verifies_the_chain(desk: Desk) -> None:
    app = app_for(desk)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        await pilot.press("l")
        await settle(pilot)
        chain = plain(app.screen.query_one("#chain", Static))
        assert chain.startswith("✓ Chain intact")
        table = app.screen.query_one("#audit", DataTable)
        assert table.row_count > 10
        await pilot.press("slash", *"closed")
        await settle(pilot)
        assert table.row_count == 1


def test_banners_cover_engine_source_rota_and_unacknowledged() -> None:
    from sgalert.rules.rota import Gap, OnDuty
    from tui.status import DeskStatus, banners

    status = DeskStatus(
        heartbeat_at=NOW - timedelta(minutes=5),
        alerts=({"kind": "source-down", "source": "encompass", "since": "2026-11-22T21:30:00Z"},),
        on_duty=OnDuty("dsl@example.org", "shift", False),
        gaps=(Gap(NOW + timedelta(days=5), NOW + timedelta(days=5, hours=12), None),),
        unacknowledged=2,
        assigned_to_me=0,
    )
    shown = {b.key: b.text for b in banners(status, NOW, UTC, "dsl@example.org")}
    assert shown["engine"].startswith("ENGINE SILENT: last heartbeat 5m 00s ago")
    assert shown["source:encompass"].startswith("SOURCE DOWN: encompass since Sun 22 Nov 21:30")
    assert shown["unacknowledged"] == "2 unacknowledged cases (you are on duty)."
    assert shown["rota"].startswith("ROTA GAP Fri 27 Nov 22:00 to Sat 28 Nov 10:00: NOBODY")
    fresh = DeskStatus(NOW - timedelta(seconds=10), (), None, (), 0, 0)
    assert banners(fresh, NOW, UTC, None) == []


async def test_store_is_closed_on_exit_and_a_missing_store_is_one_clear_line(
    desk: Desk, tmp_path: Path
) -> None:
    app = app_for(desk)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        identity = app.identity
        await pilot.press("ctrl+q")
    assert app.return_code == 0
    assert app._service is None and identity is not None and identity.locked
    missing = make_workspace(tmp_path / "empty")
    app = make_app(missing, clock=FakeClock())
    async with app.run_test(size=SIZE):
        pass
    assert app.return_code == 1


async def test_rapid_keys_show_the_last_request_and_leave_the_store_usable(desk: Desk) -> None:
    """Superseded loads finish unseen rather than being cancelled mid-transaction."""
    app = app_for(desk)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        await pilot.press(*"2345123452", "s", "S", "5")
        await settle(pilot)
        screen = app.queue_screen
        assert screen.page is not None and screen.page.query.view.value == "all"
        # Every case but the whistleblowing one, which the DSL cannot read.
        assert sorted(queue_states(app)) == sorted(
            ref for name, ref in desk.refs.items() if name != "whistle"
        )
        assert app.identity is not None
        summary = await app.service.acknowledge(app.identity, desk.refs["new"])
        assert summary.state is CaseState.ACKNOWLEDGED


async def test_refer_to_the_lado_starts_its_clock_and_it_can_be_met(desk: Desk) -> None:
    app = app_for(desk)
    ref = desk.refs["new"]
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        screen = await open_case(pilot, app, ref)
        await pilot.press("f")
        await settle(pilot)
        app.screen.query_one("#to", Select).value = "lado"
        app.screen.query_one("#details", TextArea).text = "Invented: LADO phoned, ref L/1."
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        assert app.screen is screen
        kinds = {clock.kind: clock.met_at for clock in screen.view.clocks}
        assert "lado-1-working-day" in kinds and kinds["lado-1-working-day"] is None
        assert "LADO within 1 working day" in plain(screen.query_one("#clocks", Static))
        assert "Referred to the LADO" in plain(screen.query_one("#chronology", Static))
        await pilot.press("m")
        await settle(pilot)
        app.screen.query_one("#clock", Select).value = "lado-1-working-day"
        await pilot.press("ctrl+s", "y")
        await settle(pilot)
        met = {clock.kind: clock.met_at for clock in screen.view.clocks}
        assert met["lado-1-working-day"] == NOW
