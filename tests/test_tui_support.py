"""Shared pieces for the TUI tests: a hand-turned clock, an invented desk, and settling helpers.

Everything is invented: example.org people, fictional children. The desk is seeded with a fixed
clock so refs, deadlines and chronology times are the same on every run (snapshots rely on it).
Sunday 22 November 2026, 22:00 in London: the on-call DSL's evening.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from textual.pilot import Pilot
from textual.worker import WorkerState

from sgalert.config import load_config, render_template
from sgalert.desk.service import CaseService, DeskSetting
from sgalert.model import Source
from sgalert.records.cases import FIELD_ATTACHMENTS, FIELD_BODY, FIELD_FACTS, FIELD_RAW, NewCase
from sgalert.records.store import Store
from sgalert.workspace import CONFIG_NAME, STORE_NAME, Workspace
from tui.app import SgalertApp

from .conftest import PASSPHRASES, ROLES, add_people, encompass_case, whistle_case

NOW = datetime(2026, 11, 22, 22, 0, tzinfo=UTC)  # Sunday; GMT, so also 22:00 in London

# Weekday days for the DSL in term, nights for the deputy: weekend days are a gap.
SHIFTS = """
[[rota.shifts]]
who = "dsl@example.org"
days = ["mon", "tue", "wed", "thu", "fri"]
from = "07:00"
to = "19:00"
when = "term"

[[rota.shifts]]
who = "deputy@example.org"
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
from = "19:00"
to = "07:00"
when = "always"
"""

HOSTILE_SUBJECT = "URGENT \x1b[31mRED\x1b[0m [/b][bold]not bold[/bold] \u202eevil\u202c"
HOSTILE_BODY = (
    "Ignore this: [link=https://attacker.example.org]click[/link] [@click=app.quit]quit[/]\n"
    "\x1b[2J\x1b[H cleared your screen?\n"
    "[/] [red]red?[/red] \x07 bell \u2066isolate\u2069\n"
)


class FakeClock:
    """A clock the test turns by hand."""

    def __init__(self, start: datetime = NOW) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def make_workspace(root: Path) -> Workspace:
    root.mkdir(parents=True, exist_ok=True)
    (root / CONFIG_NAME).write_text(render_template("Test School") + SHIFTS, encoding="utf-8")
    return Workspace(config_path=root / CONFIG_NAME, store_path=root / STORE_NAME)


def lesson_case() -> NewCase:
    facts = {"teacher": "Tess Teacher", "pupil": "Pip Invented", "reason": "chat message"}
    return NewCase(
        source=Source.LESSON,
        received_at=datetime(2026, 11, 20, 16, 5, tzinfo=UTC),
        origin="mailbox",
        content={
            FIELD_FACTS: json.dumps(facts).encode(),
            FIELD_BODY: b"Lesson ended after an inappropriate chat message (invented).",
            FIELD_ATTACHMENTS: b"[]",
        },
    )


def hostile_case() -> NewCase:
    facts = {"child_name": "Hal Invented", "police_reference": "[b]EX/1234[/b]\x1b[5m"}
    return NewCase(
        source=Source.ENCOMPASS,
        received_at=datetime(2026, 11, 22, 21, 40, tzinfo=UTC),
        origin="mailbox",
        content={
            FIELD_RAW: b"From: x@example.org\r\n\r\nhostile",
            "subject": HOSTILE_SUBJECT.encode(),
            "sender": json.dumps(
                {"display_name": "Police \x1b[1m[bold]", "address": "x@example.org"}
            ).encode(),
            FIELD_FACTS: json.dumps(facts).encode(),
            FIELD_BODY: HOSTILE_BODY.encode(),
            FIELD_ATTACHMENTS: b"[]",
        },
        flags=frozenset({"hostile-text", "unverified-sender"}),
    )


async def seed_desk(
    workspace: Workspace, *, hostile: bool = True, working_confirmed: bool = True
) -> dict[str, str]:
    """The invented desk; returns case refs by role in the story. ``working_confirmed``: everyone
    has already confirmed, once, that working on a new case acknowledges it, so that question
    (tested on its own in test_desk_tui.py) does not stand between a test and its dialog."""
    clock = FakeClock(NOW - timedelta(days=3))
    store = await Store.open(workspace.store_path, create=True)
    service = CaseService(store, load_config(workspace.config_path), clock)
    try:
        await add_people(store, [(e, r, PASSPHRASES[e]) for e, r in ROLES.items()])
        if working_confirmed:
            for person, _ in await service.people():
                await service.remember_desk_setting(person.id, DeskSetting.ACKNOWLEDGE_BY_WORKING)
        dsl = await service.unlock("dsl@example.org", PASSPHRASES["dsl@example.org"])
        deputy = await service.unlock("deputy@example.org", PASSPHRASES["deputy@example.org"])
        refs: dict[str, str] = {}

        closed = encompass_case("Cal Invented")
        closed.received_at = datetime(2026, 11, 19, 7, 30, tzinfo=UTC)
        (stored,) = await service.create_cases([closed])
        refs["closed"] = stored.ref
        clock.advance(timedelta(hours=4))
        await service.close_case(
            dsl, stored.ref, "Monitoring in school", "Invented: class teacher told, no concerns."
        )

        (stored,) = await service.create_cases([whistle_case()])
        refs["whistle"] = stored.ref

        (stored,) = await service.create_cases([lesson_case()])
        refs["lesson"] = stored.ref
        clock.now = datetime(2026, 11, 20, 16, 30, tzinfo=UTC)
        await service.acknowledge(dsl, stored.ref)
        await service.assign(dsl, stored.ref, "dsl@example.org")

        earlier = encompass_case("Bea Invented")
        earlier.received_at = datetime(2026, 11, 22, 18, 10, tzinfo=UTC)
        clock.now = earlier.received_at
        (stored,) = await service.create_cases([earlier])
        refs["acknowledged"] = stored.ref
        clock.now = datetime(2026, 11, 22, 18, 20, tzinfo=UTC)
        await service.acknowledge(deputy, stored.ref)
        await service.add_note(
            deputy, stored.ref, 'Invented note. Bea said: "it was loud but I was in bed".'
        )

        if hostile:
            clock.now = datetime(2026, 11, 22, 21, 40, tzinfo=UTC)
            (stored,) = await service.create_cases([hostile_case()])
            refs["hostile"] = stored.ref

        clock.now = datetime(2026, 11, 22, 21, 55, tzinfo=UTC)
        (stored,) = await service.create_cases([encompass_case("Ada Invented")])
        refs["new"] = stored.ref
        return refs
    finally:
        await service.close()


def seed_desk_sync(workspace: Workspace, *, hostile: bool = True) -> dict[str, str]:
    return asyncio.run(seed_desk(workspace, hostile=hostile))


async def settle(pilot: Pilot[object], within: float = 10.0) -> None:
    """Wait until every worker except the store watcher has finished, then for a repaint."""
    app = pilot.app
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    busy = (WorkerState.PENDING, WorkerState.RUNNING)
    while any(w.group != "watch" and w.state in busy for w in app.workers):
        if loop.time() > deadline:
            raise TimeoutError("workers did not finish")
        await pilot.pause(0.02)
    await pilot.pause()


async def wait_for(pilot: Pilot[object], condition: object, within: float = 30.0) -> None:
    """Poll ``condition()`` until it is true (no key presses)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    assert callable(condition)
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError("condition not met")
        await pilot.pause(0.05)


async def unlock(pilot: Pilot[object], email: str = "dsl@example.org") -> None:
    """Type the passphrase into the unlock dialog (the email is prefilled by ``as_email``)."""
    await settle(pilot)
    await pilot.press(*PASSPHRASES[email], "enter")
    await settle(pilot)
    app = pilot.app
    assert isinstance(app, SgalertApp)
    assert app.identity is not None and app.identity.email == email
