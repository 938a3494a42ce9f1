"""What an investigator is shown of an allegation names no reporter, and nothing on the desk
leaves it unaudited (trust model items 5 and 13)."""

from __future__ import annotations

import asyncio
import json
import re
import unicodedata
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from textual.command import CommandList, CommandPalette

from sgalert.cli.render import print_view, view_json
from sgalert.desk.case_view import CaseView
from sgalert.desk.export import proposed_name
from sgalert.intake.prepare import SourceRules, prepare
from sgalert.intake.redact import EMAIL_MARK, MARK, PHONE_MARK, ReporterRedactor, fold
from sgalert.intake.sender import Sender
from sgalert.model import Source
from sgalert.ports import Inbound

from .conftest import Team
from .corpus import AUTHSERV, container, envelope, leaf, message
from .test_tui_support import make_workspace, seed_desk, settle, unlock

WHISTLE = SourceRules("whistle", Source.WHISTLE, AUTHSERV)
MO = "mo@example.org"
INVESTIGATOR = "staff@example.org"

# ----- item 13: no screenshot of a decrypted case --------------------------------------------


def _files_under(*roots: Path) -> list[Path]:
    return [p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()]


async def test_the_palette_offers_no_screenshot_and_the_action_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Textual's own palette offered "Screenshot": an SVG of the decrypted case on screen,
    written to ~/Downloads, readable by anyone, in no audit log."""
    from tui.app import make_app
    from tui.screens.case import CaseScreen

    from .test_tui_support import FakeClock

    home, downloads, cwd = tmp_path / "home", tmp_path / "downloads", tmp_path / "cwd"
    for folder in (home, downloads, cwd):
        folder.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DOWNLOAD_DIR", str(downloads))
    monkeypatch.chdir(cwd)
    workspace = make_workspace(tmp_path / "ws")
    refs = await seed_desk(workspace)
    app = make_app(workspace, as_email="dsl@example.org", clock=FakeClock())
    async with app.run_test(size=(100, 30)) as pilot:
        await unlock(pilot)
        app.open_case(refs["new"])
        await settle(pilot)
        assert isinstance(app.screen, CaseScreen)

        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert "Screenshot" not in titles and "Quit" in titles

        await pilot.press("ctrl+p")
        await settle(pilot)
        assert isinstance(app.screen, CommandPalette)
        await pilot.press("t")  # matches "Theme" and "Quit" and, before, "Screenshot"
        options = app.screen.query_one(CommandList)

        def shown() -> list[str]:
            return [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]

        for _ in range(200):
            if any("Theme" in s for s in shown()) and any("Quit" in s for s in shown()):
                break
            await pilot.pause(0.05)
        await pilot.pause(0.3)  # the system commands arrive together; let the last one land
        assert any("Quit" in s for s in shown()), shown()
        assert not any("Screenshot" in s for s in shown()), shown()
        await pilot.press("escape")
        await settle(pilot)

        # No key on the case screen is bound to it, and the action and its helpers write nothing.
        bound = [b.binding.action for b in app.screen.active_bindings.values()]
        assert not any("screenshot" in action for action in bound)
        await app.run_action("screenshot")
        app.deliver_screenshot()
        app.save_screenshot(path=str(cwd))
        await asyncio.sleep(0.5)  # a delivery is written from a thread
        await settle(pilot)
        assert _files_under(home, downloads, cwd) == []


# ----- item 5: what an investigator is shown names no reporter ------------------------------

GIVEN, SURNAME = "Rowan", "Hartley"
PHONE_DIGITS = "7700900123"

_FULL_WIDTH = {chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)}


def wide(text: str) -> str:
    """``text`` in full-width letters and digits (NFKC makes them plain again)."""
    return "".join(_FULL_WIDTH.get(c, c) for c in text)


def _redactor(display_name: str = f"{GIVEN} {SURNAME}") -> ReporterRedactor:
    return ReporterRedactor(Sender(display_name, "rowan.hartley@example.org", "example.org"))


def _folded(text: str) -> str:
    return fold(text)[0]


def _leaks(text: str) -> list[str]:
    """The reporter's names and number, wherever they still show in ``text``."""
    folded = _folded(text)
    digits = re.sub(r"\D", "", folded)
    found = [word for word in ("rowan", "hartley") if word in folded]
    return found + (["phone"] if PHONE_DIGITS in digits else [])


@pytest.mark.parametrize(
    "written",
    [
        "Mrs Hartley",
        "MRS. HARTLEY",
        "Dr Hartley",
        "Mx hartley",
        "R. Hartley",
        "R Hartley",
        "R.Hartley",
        "Mrs R. A. Hartley",
        "Hartley, R.",
        wide("Rowan") + " " + wide("Hartley"),  # full-width letters
        wide("Mrs") + "\u3000" + wide("Hartley"),  # and an ideographic space
        "Mrs Hart\u00adley",  # a soft hyphen
        "Mrs Hart\u200bley",  # a zero-width space
        "Mrs Hart\u202eley",  # a bidi control
        "Rowan Hartley",
        "rowan.hartley@example.org",
    ],
)
def test_every_way_of_writing_the_reporter_is_struck(written: str) -> None:
    redactor = _redactor()
    shown = redactor(f"Regards, {written} (TA).")
    assert _leaks(shown) == [], shown
    assert shown.startswith("Regards, ") and shown.endswith(" (TA).")
    assert redactor.hits == 1


@pytest.mark.parametrize(
    "number",
    [
        "07700 900123",
        "07700900123",
        "07700-900-123",
        "07700 900 123",
        "+44 7700 900123",
        "+447700900123",
        "+44 (0)7700 900123",
        "0044 7700 900123",
        wide("07700") + " " + wide("900123"),  # full-width digits
    ],
)
def test_phone_numbers_are_struck_however_written(number: str) -> None:
    shown = _redactor()(f"Call me on {number} after school.")
    assert shown == f"Call me on {PHONE_MARK} after school.", shown


@pytest.mark.parametrize(
    "number",
    ["(01632) 960123", "01632 960 123", "020 7946 0018", "(020) 7946-0018", "0117 496 0123"],
)
def test_landlines_and_other_addresses_are_struck_too(number: str) -> None:
    shown = _redactor()(f"Home {number}; or rh1979@example.net.")
    assert shown == f"Home {PHONE_MARK}; or {EMAIL_MARK}.", shown


@pytest.mark.parametrize(
    "text",
    [
        "Mr Pat Example shouted at a pupil.",
        "The Hartley family moved away.",  # a surname alone could be anyone's
        "Rowan trees line the drive.",
        "Case SG-2026-0042, police reference EX/1234/26, on 2026-11-22 at 08:30.",
        "Room 0123 and 12,000 pounds.",
    ],
)
def test_what_could_be_anyone_stays(text: str) -> None:
    redactor = _redactor()
    assert redactor(text) == text
    assert redactor.hits == 0


@pytest.mark.parametrize(
    ("filename", "shown"),
    [
        ("Hartley_statement.pdf", f"{MARK}_statement.pdf"),
        ("HartleyStatement.pdf", f"{MARK}Statement.pdf"),
        ("rowan notes.docx", f"{MARK} notes.docx"),
        ("R_Hartley.pdf", f"{MARK}.pdf"),
        (wide("Hartley") + ".pdf", f"{MARK}.pdf"),
        ("minutes.pdf", "minutes.pdf"),
    ],
)
def test_attachment_names_lose_the_surname_and_first_name_alone(filename: str, shown: str) -> None:
    assert _redactor().filename(filename) == shown


_GIVEN = ["Rowan", "Siobhan", "José", "Mary-Jane", "Ade"]
_SURNAMES = ["Hartley", "O'Brien", "Núñez", "Smith-Jones", "Okafor"]


@st.composite
def _written(draw: st.DrawFn) -> tuple[str, str, str]:
    given, surname = draw(st.sampled_from(_GIVEN)), draw(st.sampled_from(_SURNAMES))
    title = draw(st.sampled_from(["Mr", "Mrs", "Ms", "Miss", "Dr", "Mx"]))
    dot = draw(st.sampled_from(["", "."]))
    initial = given[0] + draw(st.sampled_from(["", ".", ". "])).rstrip()
    form = draw(
        st.sampled_from(
            [
                f"{title}{dot} {surname}",
                f"{initial} {surname}",
                f"{title} {initial} {surname}",
                f"{surname}, {initial}",
                f"{given} {surname}",
                f"{surname}, {given}",
            ]
        )
    )
    case = draw(st.sampled_from([str, str.upper, str.lower, str.title]))
    written = case(form)
    if draw(st.booleans()):
        written = wide(written)
    if draw(st.booleans()):
        written = unicodedata.normalize("NFD", written)
    if draw(st.booleans()):  # something invisible inside the surname
        at = written.casefold().find(surname[-3:].casefold()) + 1
        written = (
            written[:at] + draw(st.sampled_from(["\u00ad", "\u200b", "\u2060"])) + written[at:]
        )
    return f"{given} {surname}", surname, written


@given(_written())
def test_no_variant_of_the_reporters_name_survives(case: tuple[str, str, str]) -> None:
    display_name, surname, written = case
    redactor = ReporterRedactor(Sender(display_name, None, None))
    shown = redactor(f"I am {written}, and I saw it happen.")
    last = _folded(re.split(r"[-' ]", surname)[-1])
    assert last not in _folded(shown), (written, shown)
    assert _folded(shown).startswith("i am ") and _folded(shown).endswith(", and i saw it happen.")


def _whistle_message() -> bytes:
    body = (
        f"I am R. Hartley ({wide('ROWAN')} {wide('HARTLEY')}), a teaching assistant.\r\n"
        "Mr Pat Example shouted at a pupil in the music room on Tuesday.\r\n"
        "Please call me on 07700 900123, or +44 (0)7700-900-123 in the evening,\r\n"
        "or write to rowan.h1979@example.net.\r\n\r\nThanks,\r\nMrs Hartley\r\n"
    )
    statement = leaf(
        "application/pdf",
        b"%PDF-1.7 invented statement",
        encoding="base64",
        headers=[("Content-Disposition", 'attachment; filename="Hartley_statement.pdf"')],
    )
    notes = leaf(
        "text/plain",
        b"invented notes",
        encoding="base64",
        headers=[("Content-Disposition", 'attachment; filename="R Hartley notes.txt"')],
    )
    return message(
        envelope(
            "Concern from Mrs Hartley",
            sender=f"{GIVEN} {SURNAME} <rowan.hartley@example.org>",
            message_id="<concern-1@example.org>",
            auth=(),
        ),
        container(
            "mixed",
            [leaf("text/plain; charset=utf-8", body, encoding="base64"), statement, notes],
            "w1",
        ),
    )


def _as_shown(view: CaseView, capsys: pytest.CaptureFixture[str]) -> str:
    """What `case show --json`, `case show` and a proposed export name show of the case."""
    capsys.readouterr()
    print_view(view)
    printed = capsys.readouterr().out
    exports = [
        proposed_name(view.summary.ref, i, a.filename) for i, a in enumerate(view.attachments)
    ]
    return "\n".join([json.dumps(view_json(view), ensure_ascii=False), printed, *exports])


async def test_an_investigator_granted_an_emailed_allegation_cannot_tell_who_made_it(
    team: Team, capsys: pytest.CaptureFixture[str]
) -> None:
    prepared = prepare(Inbound(_whistle_message()), WHISTLE, zone=ZoneInfo("Europe/London"))
    (stored,) = await team.service.create_cases([prepared.case])
    await team.service.grant(team[MO], stored.ref, INVESTIGATOR)

    view = await team.service.open_case(team[INVESTIGATOR], stored.ref)
    assert view.reporter is None
    shown = _as_shown(view, capsys)
    assert _leaks(shown) == [], shown
    assert "rowan.h1979" not in shown
    assert "Mr Pat Example shouted at a pupil" in shown  # the allegation itself is all there
    assert [a.filename for a in view.attachments] == [
        f"{MARK}_statement.pdf",
        f"{MARK} notes.txt",
    ]
    # The monitoring officer still has the reporter and the original.
    full = await team.service.open_case(team[MO], stored.ref)
    assert full.reporter is not None and full.reporter["address"] == "rowan.hartley@example.org"


async def test_an_allegation_taken_by_phone_is_struck_as_an_email_is(
    team: Team, capsys: pytest.CaptureFixture[str]
) -> None:
    """Manual whistleblowing entries (`case new --source whistle`, the TUI form) were sealed
    with the facts and text as typed: the caller and their number in the investigator's view."""
    stored = await team.service.record_manual_case(
        team[MO],
        Source.WHISTLE,
        facts={
            "allegation": "Mr Pat Example shouted at a pupil; Mrs Hartley saw it",
            "preferred_contact": "R Hartley on 07700 900 123",
        },
        body_text="Ms Hartley rang from 07700900123. She is Rowan Hartley, a TA.",
        caller="Rowan Hartley (07700 900123)",
        reporter={"name": "Rowan Hartley", "contact": "07700 900123"},
    )
    await team.service.grant(team[MO], stored.ref, INVESTIGATOR)

    view = await team.service.open_case(team[INVESTIGATOR], stored.ref)
    assert view.reporter is None
    shown = _as_shown(view, capsys)
    assert _leaks(shown) == [], shown
    assert "Mr Pat Example shouted at a pupil" in shown
    full = await team.service.open_case(team[MO], stored.ref)
    assert full.reporter == {
        "name": "Rowan Hartley",
        "contact": "07700 900123",
        "preferred_contact": "R Hartley on 07700 900 123",
        "caller": "Rowan Hartley (07700 900123)",
    }
    assert "preferred_contact" not in view.facts
