"""The case view's extras at the desk, driven through Pilot: saving an attachment (only after the
warning is confirmed, never over a file without a second yes), the notification history as the
engine's escalation and outbox code leave it, and starting a statutory clock."""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
from textual.widgets import Input, Select, Static

from sgalert.desk.service import CaseService
from sgalert.records.audit import entries
from sgalert.routing.escalation import Duty, Plan, fire_due
from sgalert.routing.outbox import OutboxSender
from sgalert.workspace import Workspace
from tui.app import SgalertApp, make_app
from tui.case_list import CaseList
from tui.screens.case import CaseScreen
from tui.screens.dialogs import ClockScreen, ConfirmScreen, SaveAttachmentScreen

from .conftest import PASSPHRASES
from .engine_helpers import RecordingNotifier
from .test_tui_support import NOW, FakeClock, make_workspace, seed_desk, settle, unlock, wait_for

SIZE = (80, 24)
PDF = b"%PDF-1.7 invented"


@dataclass
class Desk:
    workspace: Workspace
    refs: dict[str, str]
    downloads: Path


@pytest.fixture
async def desk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Desk:
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    monkeypatch.setenv("XDG_DOWNLOAD_DIR", str(downloads))
    workspace = make_workspace(tmp_path / "ws")
    return Desk(workspace, await seed_desk(workspace), downloads)


def app_for(desk: Desk, **options: object) -> SgalertApp:
    return make_app(
        desk.workspace,
        as_email="dsl@example.org",
        clock=FakeClock(),
        **options,  # type: ignore[arg-type]
    )


def plain(widget: Static) -> str:
    return widget.visual.plain  # type: ignore[union-attr]


async def open_case(pilot: object, app: SgalertApp, ref: str) -> CaseScreen:
    table = app.screen.query_one(CaseList)
    table.move_cursor(row=table.get_row_index(ref))
    await pilot.press("enter")  # type: ignore[attr-defined]
    await settle(pilot)  # type: ignore[arg-type]
    assert isinstance(app.screen, CaseScreen) and app.screen.ref == ref
    return app.screen


async def exports(app: SgalertApp) -> list[dict[str, object]]:
    async with app.service.store.read() as db:
        return [e.detail for e in await entries(db, limit=50) if e.action == "attachment-exported"]


# ----- saving an attachment -----------------------------------------------------------------


async def test_saving_an_attachment_warns_then_writes_a_private_copy(desk: Desk) -> None:
    app = app_for(desk)
    ref = desk.refs["new"]
    target = desk.downloads / f"{ref}-notice.pdf"
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        screen = await open_case(pilot, app, ref)
        assert "1. notice.pdf" in plain(screen.query_one("#attachments", Static))
        await pilot.press("e")
        await settle(pilot)
        assert isinstance(app.screen, SaveAttachmentScreen)
        assert app.screen.query_one("#path", Input).value == str(target)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        warning = " ".join(plain(s) for s in app.screen.query(Static).results(Static))
        assert "decrypted copy of confidential safeguarding material" in warning
        assert "dsl@example.org is responsible" in warning
        assert not target.exists() and await exports(app) == []  # nothing before the yes
        await pilot.press("y")
        await settle(pilot)
        assert app.screen is screen
        assert target.read_bytes() == PDF
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        assert [p.name for p in desk.downloads.iterdir()] == [target.name]
        assert await exports(app) == [{"ref": ref, "index": 0, "bytes": len(PDF), "to": "file"}]
        assert any("Decrypted copy written" in n.message for n in app._notifications)


async def test_cancelling_at_either_step_writes_nothing(desk: Desk) -> None:
    app = app_for(desk)
    ref = desk.refs["new"]
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        screen = await open_case(pilot, app, ref)
        await pilot.press("e")
        await settle(pilot)
        await pilot.press("escape")  # the path form
        await settle(pilot)
        assert app.screen is screen
        await pilot.press("e")
        await settle(pilot)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # the warning
        await settle(pilot)
        assert app.screen is screen
        assert list(desk.downloads.iterdir()) == []
        assert await exports(app) == []


async def test_an_existing_file_is_replaced_only_after_a_second_yes(desk: Desk) -> None:
    app = app_for(desk)
    ref = desk.refs["new"]
    target = desk.downloads / "kept.pdf"
    target.write_bytes(b"a file that was already there")
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        screen = await open_case(pilot, app, ref)
        for answer in ("n", "y"):
            await pilot.press("e")
            await settle(pilot)
            app.screen.query_one("#path", Input).value = str(target)
            await pilot.press("ctrl+s")
            await settle(pilot)
            await pilot.press("y")  # the warning
            await settle(pilot)
            assert isinstance(app.screen, ConfirmScreen)
            title = plain(app.screen.query_one(".dialog-title", Static))
            assert title == "Replace the existing file?"
            await pilot.press(answer)
            await settle(pilot)
            assert app.screen is screen
            if answer == "n":
                assert target.read_bytes() == b"a file that was already there"
                assert await exports(app) == []
        assert target.read_bytes() == PDF
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        assert len(await exports(app)) == 1


async def test_a_path_the_file_system_refuses_is_a_problem_in_the_form(desk: Desk) -> None:
    """The path is checked in a worker thread; a name too long for the file system is named
    as such in the form, and nothing is written."""
    app = app_for(desk)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        await open_case(pilot, app, desk.refs["new"])
        await pilot.press("e")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, SaveAttachmentScreen)
        form.query_one("#path", Input).value = str(desk.downloads / ("x" * 300) / "copy.pdf")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is form
        problem = plain(form.query_one(".form-problem", Static))
        assert problem == "That path cannot be used (file name too long)."
        assert list(desk.downloads.iterdir()) == []


async def test_a_person_not_entitled_is_refused_by_the_core_and_it_is_audited(
    desk: Desk,
) -> None:
    """The core, not the screen, decides: with the monitoring officer's key in hand (who may
    not read Encompass cases) the save is refused, shown, audited, and nothing is written."""
    app = app_for(desk)
    ref = desk.refs["new"]
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        screen = await open_case(pilot, app, ref)
        app.identity = await app.service.unlock("mo@example.org", PASSPHRASES["mo@example.org"])
        await pilot.press("e")
        await settle(pilot)
        await pilot.press("ctrl+s")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert app.screen is screen
        assert any("not entitled" in n.message for n in app._notifications)
        assert list(desk.downloads.iterdir()) == []
        async with app.service.store.read() as db:
            refusals = [e for e in await entries(db, limit=20) if e.action == "refused"]
        # (Reloading the notifications with that key is refused and audited too.)
        assert ("mo@example.org", {"action": "export-attachment"}) in [
            (e.actor, e.detail) for e in refusals
        ]
        assert await exports(app) == []


# ----- the notification history -------------------------------------------------------------


async def _escalate(workspace: Workspace) -> CaseService:
    """Fire the due escalation timers on another connection, as the engine would."""
    service = await CaseService.open(workspace)
    assert service.plan is not None
    plan = Plan(
        school="Test School",
        calendar=service.plan.calendar,
        policies=service.plan.policies,
        channels=("email",),
        per_person_channels=frozenset({"email"}),
    )
    await service.store.transact(lambda conn: fire_due(conn, plan, Duty("deputy@example.org"), NOW))
    return service


async def test_the_history_shows_a_page_queued_then_delivered(desk: Desk) -> None:
    app = app_for(desk, poll_seconds=0.05)
    ref = desk.refs["new"]
    other = await _escalate(desk.workspace)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await unlock(pilot)
            screen = await open_case(pilot, app, ref)
            shown = plain(screen.query_one("#notifications", Static))
            assert "email  deputy@example.org  escalation step 1" in shown
            assert "queued" in shown and "new case" in shown
            assert "escalation step 2  pending" in shown
            email = RecordingNotifier("email")
            await OutboxSender(other.store, {"email": email}, clock=lambda: NOW).send_due()
            assert email.sent
            await wait_for(
                pilot, lambda: "delivered" in plain(screen.query_one("#notifications", Static))
            )
            shown = plain(screen.query_one("#notifications", Static))
            assert "delivered 22 Nov 22:00 · 1 attempt" in shown
    finally:
        await other.close()


async def test_a_case_nobody_was_paged_about_says_so(desk: Desk) -> None:
    app = app_for(desk)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        screen = await open_case(pilot, app, desk.refs["new"])
        shown = plain(screen.query_one("#notifications", Static))
        assert shown.startswith("Nobody has been paged about this case.")


async def _refusals(app: SgalertApp, action: str) -> int:
    async with app.service.store.read() as db:
        found = await entries(db, limit=200)
    return sum(1 for e in found if e.action == "refused" and e.detail.get("action") == action)


async def test_a_refused_notification_history_is_not_asked_for_again(desk: Desk) -> None:
    """A person who loses access while the case is open is refused once: the refusal is audited,
    the audit entry moves the store, and that must not ask (and be refused, and audit) again."""
    app = app_for(desk, poll_seconds=0.05)
    ref = desk.refs["new"]
    other = await CaseService.open(desk.workspace)
    deputy = await other.unlock("deputy@example.org", PASSPHRASES["deputy@example.org"])
    try:
        async with app.run_test(size=SIZE) as pilot:
            await unlock(pilot)
            screen = await open_case(pilot, app, ref)
            # From now on the desk holds a key that does not reach the case.
            app.identity = await app.service.unlock("mo@example.org", PASSPHRASES["mo@example.org"])
            await other.add_note(deputy, ref, "Invented note that moves the case.")
            await wait_for(pilot, lambda: screen.notifications_stopped)
            for number in range(4):
                await other.add_note(deputy, ref, f"Invented note {number}.")
                await pilot.pause(0.3)  # several polls of the watcher
                await settle(pilot)
            assert await _refusals(app, "notification-history") == 1
            warnings = [n for n in app._notifications if "no longer updated" in n.message]
            assert len(warnings) == 1
            assert "Not shown" in plain(screen.query_one("#notifications", Static))
    finally:
        await other.close()


async def test_the_history_is_reloaded_only_when_its_case_moves(desk: Desk) -> None:
    app = app_for(desk, poll_seconds=0.05)
    ref = desk.refs["new"]
    other = await CaseService.open(desk.workspace)
    deputy = await other.unlock("deputy@example.org", PASSPHRASES["deputy@example.org"])
    try:
        async with app.run_test(size=SIZE) as pilot:
            await unlock(pilot)
            await open_case(pilot, app, ref)
            loads: list[str] = []
            history = app.service.notification_history

            async def counted(identity: object, wanted: str) -> object:
                loads.append(wanted)
                return await history(identity, wanted)  # type: ignore[arg-type]

            app.service.notification_history = counted  # type: ignore[assignment,method-assign]
            await other.add_note(deputy, desk.refs["acknowledged"], "Invented, another case.")
            await pilot.pause(0.3)
            await settle(pilot)
            assert loads == []
            await other.add_note(deputy, ref, "Invented, this case.")
            await wait_for(pilot, lambda: len(loads) == 1)
            await pilot.pause(0.3)
            await settle(pilot)
            assert len(loads) == 1
    finally:
        await other.close()


# ----- starting a clock -----------------------------------------------------------------------


async def test_starting_a_clock_asks_then_records_and_counts_it_down(desk: Desk) -> None:
    app = app_for(desk)
    ref = desk.refs["new"]
    kind = "suspension-confirmation-1-working-day"
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        screen = await open_case(pilot, app, ref)
        await pilot.press("t")
        await settle(pilot)
        assert isinstance(app.screen, ClockScreen)
        app.screen.query_one("#clock", Select).value = kind
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        body = plain(app.screen.query_one(".dialog-body", Static))
        assert body.startswith("It will be due Mon 23 Nov 22:00.")
        await pilot.press("n")
        await settle(pilot)
        assert kind not in {c.kind for c in screen.view.clocks}
        await pilot.press("t")
        await settle(pilot)
        app.screen.query_one("#clock", Select).value = kind
        await pilot.press("ctrl+s", "y")
        await settle(pilot)
        assert app.screen is screen
        started = {c.kind: c for c in screen.view.clocks}[kind]
        assert started.met_at is None and started.due_at > NOW
        clocks = plain(screen.query_one("#clocks", Static))
        assert "Suspension confirmed in writing, 1 working day" in clocks
        assert "due Mon 23 Nov 22:00  1d 00h" in clocks
        rows = await app.service.store.fetchall(
            "SELECT kind FROM clocks c JOIN cases k ON k.id = c.case_id WHERE k.ref = ?", (ref,)
        )
        assert kind in {row[0] for row in rows}
        async with app.service.store.read() as db:
            started_by = [
                e.actor for e in await entries(db, limit=10) if e.action == "clock-started"
            ]
        assert started_by == ["dsl@example.org"]


async def test_the_palette_offers_saving_and_starting_a_clock(desk: Desk) -> None:
    from tui.commands import DeskCommands

    app = app_for(desk)
    async with app.run_test(size=SIZE) as pilot:
        await unlock(pilot)
        await open_case(pilot, app, desk.refs["new"])
        labels = [label for label, _, _ in DeskCommands(app.screen)._commands()]
        assert any(label.startswith("Save attachment") for label in labels)
        assert any(label.startswith("Start clock") for label in labels)
        await pilot.press("escape")
        await settle(pilot)
        await open_case(pilot, app, desk.refs["lesson"])  # no attachments: nothing to save
        labels = [label for label, _, _ in DeskCommands(app.screen)._commands()]
        assert not any(label.startswith("Save attachment") for label in labels)
