"""The case view's extras at the desk, driven through Pilot: saving an attachment (only after the
warning is confirmed, never over a file without a second yes), the notification history as the
engine's escalation and outbox code leave it, and starting a statutory clock."""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
from textual.widgets import Input, Select, Static

from sgalert.audit import entries
from sgalert.escalation import Duty, Plan, fire_due
from sgalert.outbox import OutboxSender
from sgalert.service import CaseService
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
