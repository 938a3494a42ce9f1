"""A new case gets the DSL's attention (issue 16): the bell rings, a toast names the source and the
reference (never anything from inside the case), and the row stays highlighted until the case is
opened here. Configurable for a terminal through ``SGALERT_DESK_ATTENTION``; on by default."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from sgalert.desk.views import AuditRow
from sgalert.errors import ConfigError
from sgalert.model import Source
from sgalert.records.audit import AuditEntry
from sgalert.workspace import Workspace
from tui.app import SgalertApp, make_app
from tui.attention import (
    Attention,
    DesktopTerminal,
    NewCase,
    NoticeSequence,
    escalations_to,
    new_cases,
)
from tui.case_list import CaseList
from tui.screens.case import CaseScreen

from .conftest import PASSPHRASES
from .test_tui_support import FakeClock, make_workspace, seed_desk, settle, unlock, wait_for

SIZE = (80, 24)

# Another process records a case, as the engine does when a notice arrives.
CREATE_SCRIPT = """
import asyncio, json, sys
from datetime import UTC, datetime
from pathlib import Path
from sgalert.desk.service import CaseService
from sgalert.model import Source
from sgalert.records.cases import FIELD_ATTACHMENTS, FIELD_BODY, FIELD_FACTS, NewCase
from sgalert.workspace import Workspace

async def main() -> None:
    root = Path(sys.argv[1])
    service = await CaseService.open(Workspace(root / "sgalert.toml", root / "sgalert.db"))
    facts = {"child_name": "Zed Invented", "child_dob": "2016-01-02"}
    case = NewCase(
        source=Source.ENCOMPASS,
        received_at=datetime(2026, 11, 22, 21, 59, tzinfo=UTC),
        origin="mailbox",
        content={
            FIELD_FACTS: json.dumps(facts).encode(),
            FIELD_BODY: b"Zed was present at an invented incident.",
            FIELD_ATTACHMENTS: b"[]",
        },
    )
    try:
        (stored,) = await service.create_cases([case])
        print(stored.ref)
    finally:
        await service.close()

asyncio.run(main())
"""

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


# The engine, in another process, runs the escalation timers that fall due over two hours from
# the desk's Sunday 22:00: the seeded Encompass notices nobody acknowledged go to the next people.
ESCALATE_SCRIPT = """
import asyncio, sys
from pathlib import Path
from sgalert.desk.service import CaseService
from sgalert.engine.serve import Engine
from sgalert.workspace import Workspace
from tests.engine_helpers import RecordingNotifier, VirtualClock
from tests.test_tui_support import NOW

async def main() -> None:
    root = Path(sys.argv[1])
    service = await CaseService.open(Workspace(root / "sgalert.toml", root / "sgalert.db"))
    clock = VirtualClock(NOW)
    service._clock = clock
    channels = service.plan.channels if service.plan else ()
    engine = Engine(
        service, root, notifiers={c: RecordingNotifier(c) for c in channels}, clock=clock,
        watch=False,
    )
    try:
        for _ in range(8):
            await engine.tick_timers()
            clock.advance(minutes=15)
    finally:
        await service.close()

asyncio.run(main())
"""


async def run_script(script: str, *args: str) -> str:
    env = {**os.environ, "SGALERT_PASSPHRASE": PASSPHRASES["deputy@example.org"]}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode().strip()


def counting_bell(app: SgalertApp) -> list[int]:
    rings: list[int] = []
    app.bell = lambda: rings.append(1)  # type: ignore[method-assign]
    return rings


def toasts(app: SgalertApp) -> list[tuple[str, str]]:
    return [(n.title, n.message) for n in app._notifications]


# A desktop notification as the driver receives it: OSC 9 or OSC 777, ended by BEL.
NOTICE = re.compile(r"\x1b\](?:9|777;notify);[^\x07\x1b]*\x07")


def driver_output(app: SgalertApp) -> list[str]:
    """Everything written through Textual's driver from now on (the headless driver drops it)."""
    written: list[str] = []
    driver = app._driver
    assert driver is not None
    driver.write = written.append  # type: ignore[method-assign]
    return written


def notices(written: list[str]) -> list[str]:
    return [n for chunk in written for n in NOTICE.findall(chunk) if "]9;" in n or "777" in n]


def highlighted(app: SgalertApp) -> set[str]:
    table = app.queue_screen.query_one(CaseList)
    return {row.key for row in table._rows if row.highlight}


@pytest.fixture
async def workspace(tmp_path: Path) -> Workspace:
    workspace = make_workspace(tmp_path / "ws")
    await seed_desk(workspace)
    return workspace


async def test_a_new_case_from_another_process_rings_toasts_and_is_highlighted(
    workspace: Workspace,
) -> None:
    app = make_app(
        workspace,
        as_email="dsl@example.org",
        clock=FakeClock(),
        poll_seconds=0.1,
        terminal=DesktopTerminal(NoticeSequence.OSC9),
    )
    rings = counting_bell(app)
    async with app.run_test(size=SIZE) as pilot:
        written = driver_output(app)
        await unlock(pilot)
        existing = set(app.queue_screen.query_one(CaseList).keys)
        assert rings == [] and highlighted(app) == set()  # what was there at start is not new
        ref = await run_script(CREATE_SCRIPT, str(workspace.root))
        await wait_for(pilot, lambda: ref in highlighted(app))
        await settle(pilot)
        assert ref not in existing
        assert rings == [1]
        assert ("New case", f"Operation Encompass {ref}") in toasts(app)
        shown = " ".join(f"{title} {message}" for title, message in toasts(app))
        assert "Zed" not in shown and "Invented" not in shown and "incident" not in shown
        assert highlighted(app) == {ref}
        # One desktop notification, well formed, with the source and the reference only.
        assert notices(written) == [f"\x1b]9;sgalert: New case: Operation Encompass {ref}\x07"]
        # A colleague acknowledging another case is a change, not a new case: no more noise.
        table = app.queue_screen.query_one(CaseList)
        waiting = sorted(
            r
            for r in existing
            if table.cell(r, "state") == "NEW" and table.cell(r, "source") == "Encompass"
        )
        await run_script(ACK_SCRIPT, str(workspace.root), waiting[0])
        await wait_for(pilot, lambda: table.cell(waiting[0], "state") == "acked")
        await pilot.pause(0.5)
        await settle(pilot)
        assert rings == [1] and len(notices(written)) == 1
        # Opening it here is what clears the highlight.
        table.move_cursor(row=table.get_row_index(ref))
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, CaseScreen) and app.screen.ref == ref
        await pilot.press("escape")
        await settle(pilot)
        assert highlighted(app) == set()


async def test_an_escalation_that_reaches_the_person_at_the_desk_rings_even_locked(
    workspace: Workspace,
) -> None:
    """Unacknowledged notices escalate to the DSL while their desk sits locked (the idle lock
    is the usual state at 22:00): the bell, a toast naming the references only, the rows
    highlighted and a desktop notification. (Before: nothing at all.)"""
    dsl = make_app(
        workspace,
        as_email="dsl@example.org",
        clock=FakeClock(),
        poll_seconds=0.1,
        terminal=DesktopTerminal(NoticeSequence.OSC9),
    )
    rings = counting_bell(dsl)
    async with dsl.run_test(size=SIZE) as pilot:
        written = driver_output(dsl)
        await settle(pilot)
        waiting = {
            ref
            for ref in dsl.queue_screen.query_one(CaseList).keys
            if dsl.queue_screen.query_one(CaseList).cell(ref, "state") == "NEW"
        }
        await run_script(ESCALATE_SCRIPT, str(workspace.root))
        await wait_for(pilot, lambda: any(t == "Escalated to you" for t, _ in toasts(dsl)))
        await settle(pilot)
        # The script runs two hours of timers in a blink, so the desk may see them over more than
        # one poll: each poll that finds escalations says so once, naming only references.
        messages = [m for t, m in toasts(dsl) if t == "Escalated to you"]
        named = {ref for m in messages for ref in re.findall(r"SG-\d{4}-\d{4}", m)}
        assert named and named <= waiting
        assert not [m for m in messages if "Invented" in m or "incident" in m]
        assert rings  # the bell rang
        assert named <= highlighted(dsl)
        desktop = [n for n in notices(written) if "Escalated to you" in n]
        assert desktop and len(desktop) == len(messages)
        assert all(n.startswith("\x1b]9;sgalert: Escalated to you: SG-") for n in desktop)


async def test_attention_can_be_turned_off_for_a_terminal(workspace: Workspace) -> None:
    app = make_app(
        workspace,
        as_email="dsl@example.org",
        clock=FakeClock(),
        poll_seconds=0.1,
        attention=Attention.parse("off"),
        terminal=DesktopTerminal(NoticeSequence.OSC777),
    )
    rings = counting_bell(app)
    async with app.run_test(size=SIZE) as pilot:
        written = driver_output(app)
        await unlock(pilot)
        ref = await run_script(CREATE_SCRIPT, str(workspace.root))
        await wait_for(pilot, lambda: ref in app.queue_screen.query_one(CaseList).keys)
        await pilot.pause(0.3)
        await settle(pilot)
        assert rings == [] and highlighted(app) == set() and notices(written) == []
        assert not [title for title, _ in toasts(app) if "new case" in title.lower()]


def test_the_setting_reads_like_the_docs_say() -> None:
    assert Attention.parse(None) == Attention() == Attention(True, True, True, True)
    assert Attention.parse("") == Attention()
    assert Attention.parse("off") == Attention(False, False, False, False)
    assert Attention.parse("toast, highlight") == Attention(bell=False, desktop=False)
    assert Attention.parse("bell,desktop") == Attention(toast=False, highlight=False)
    with pytest.raises(ConfigError, match="SGALERT_DESK_ATTENTION.*unknown sound"):
        Attention.parse("bell,sound")


def entry(seq: int, action: str, actor: str, **detail: object) -> AuditRow:
    found = AuditEntry(seq, "2026-11-22T22:00:00Z", actor, action, "case-id", detail, "", "")
    return AuditRow(found, str(detail.get("ref")) if "ref" in detail else None)


def test_only_cases_created_after_the_last_look_and_not_by_me_are_new() -> None:
    rows = [
        entry(12, "case-created", "engine", ref="SG-2026-0012", source="whistle"),
        entry(11, "case-created", "dsl@example.org", ref="SG-2026-0011", source="encompass"),
        entry(10, "acknowledged", "deputy@example.org", ref="SG-2026-0009"),
        entry(9, "case-created", "engine", ref="SG-2026-0009", source="lesson"),
        entry(8, "case-created", "engine", ref="SG-2026-0008", source="lesson"),
    ]
    found = new_cases(rows, after=8, me="DSL@example.org")
    assert [(c.ref, c.source) for c in found] == [
        ("SG-2026-0009", Source.LESSON),
        ("SG-2026-0012", Source.WHISTLE),
    ]


async def test_the_desktop_part_alone_can_be_turned_off(workspace: Workspace) -> None:
    app = make_app(
        workspace,
        as_email="dsl@example.org",
        clock=FakeClock(),
        poll_seconds=0.1,
        attention=Attention.parse("bell,toast,highlight"),
        terminal=DesktopTerminal(NoticeSequence.OSC9),
    )
    rings = counting_bell(app)
    async with app.run_test(size=SIZE) as pilot:
        written = driver_output(app)
        await unlock(pilot)
        ref = await run_script(CREATE_SCRIPT, str(workspace.root))
        await wait_for(pilot, lambda: ref in highlighted(app))
        await settle(pilot)
        assert rings == [1] and notices(written) == []


HOSTILE = "SG-2026-0007\x07\x1b]2;pwned\x1b\\;notify;x\r\n\u009b31m\u202e"


@pytest.mark.parametrize("sequence", list(NoticeSequence))
@pytest.mark.parametrize("tmux", [False, True])
def test_a_hostile_reference_cannot_put_control_characters_in_the_notice(
    sequence: NoticeSequence, tmux: bool
) -> None:
    notice = DesktopTerminal(sequence, tmux).notice([NewCase(7, HOSTILE, Source.WHISTLE)])
    if tmux:  # the passthrough wrapper, with each ESC inside doubled
        assert notice.startswith("\x1bPtmux;\x1b\x1b]") and notice.endswith("\x1b\\")
        notice = notice[len("\x1bPtmux;") : -2].replace("\x1b\x1b", "\x1b")
    assert NOTICE.fullmatch(notice), repr(notice)
    body = notice[2:-1]  # between ESC ] and the closing BEL
    assert all(" " <= ch <= "~" for ch in body), repr(body)
    assert "pwned" in body  # letters are kept, as text: ESC, BEL, ";" and the rest are gone
    expected = "Whistleblowing SG-2026-00072pwnednotifyx31m"
    if sequence is NoticeSequence.OSC777:
        assert body == f"777;notify;sgalert;New case: {expected}"
    else:
        assert body == f"9;sgalert: New case: {expected}"


def test_a_notice_names_at_most_three_cases_and_counts_the_rest() -> None:
    cases = [NewCase(seq, f"SG-2026-{seq:04d}", Source.ENCOMPASS) for seq in range(1, 6)]
    assert DesktopTerminal().notice(cases) == (
        "\x1b]9;sgalert: 5 new cases: Operation Encompass SG-2026-0001, Operation Encompass"
        " SG-2026-0002, Operation Encompass SG-2026-0003, and 2 more\x07"
    )
    assert DesktopTerminal().notice([NewCase(1, "\x1b\x07;", None)]) == ""


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TERM_PROGRAM": "iTerm.app", "TERM": "xterm-256color"}, DesktopTerminal()),
        ({"TERM": "xterm-kitty"}, DesktopTerminal()),
        ({"TERM": "xterm-256color", "WT_SESSION": "1"}, DesktopTerminal()),
        ({"TERM": "foot"}, DesktopTerminal(NoticeSequence.OSC777)),
        ({"TERM": "rxvt-unicode-256color"}, DesktopTerminal(NoticeSequence.OSC777)),
        (
            {"TERM": "xterm-256color", "KONSOLE_VERSION": "230800"},
            DesktopTerminal(NoticeSequence.OSC777),
        ),
        ({"TERM": "xterm-256color"}, DesktopTerminal()),  # unknown: OSC 9
        ({}, DesktopTerminal()),
        ({"TERM": "tmux-256color", "TMUX": "/tmp/tmux-1/default,1,0"}, DesktopTerminal(tmux=True)),
        ({"TERM": "screen"}, None),  # GNU screen
        ({"TERM": "linux"}, None),
        ({"TERM": "dumb"}, None),
    ],
)
def test_the_sequence_is_chosen_by_the_terminal(
    env: dict[str, str], expected: DesktopTerminal | None
) -> None:
    assert DesktopTerminal.detect(env) == expected


def test_only_later_steps_that_paged_this_person_are_escalations_to_them() -> None:
    def step(seq: int, step: int, recipients: list[str], ref: str = "SG-2026-0001") -> AuditRow:
        entry = AuditEntry(
            seq,
            "2026-11-22T22:00:00.000000Z",
            "engine",
            "escalation-step",
            "case-id",
            {"step": step, "recipients": recipients},
            "",
            "",
        )
        return AuditRow(entry, ref)

    rows = [
        step(1, 0, ["me"]),  # the first page: the case's arrival, announced as a new case
        step(2, 1, ["someone-else"]),
        step(3, 1, ["me", "someone-else"], "SG-2026-0002"),
        step(4, 2, ["me"], "SG-2026-0003"),
        step(5, 3, ["me"], ""),  # a case this desk may not see: no reference, not told
    ]
    found = escalations_to(rows, after=2, person_id="me")
    assert [(e.ref, e.step) for e in found] == [("SG-2026-0002", 1), ("SG-2026-0003", 2)]
    assert escalations_to(rows, after=0, person_id=None) == []
