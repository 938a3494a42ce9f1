"""``?``: what each key does, in words, screen by screen; and what the flags mean.

Written for the people at the desk, not for programmers: each key is said as an action in the
school's words ("Acknowledge the highlighted case: …"), grouped by the screen it works on, with
the screen you came from first. A key this table has no words for shows its short label, so a
new binding is never missing from help.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from ..formatting import FLAG_MEANING, FLAG_SHORT
from . import DeskModal

# What each binding does, by its id, for someone who has never seen a terminal program.
WORDS: dict[str, str] = {
    "app.lock": "Lock the desk: your key is forgotten until you type your passphrase again",
    "app.help": "Show this help",
    "app.theme": "Switch between light and dark colours",
    "app.quit": "Leave sgalert",
    "app.next_case": "Open the next case needing attention: the most urgent still waiting first",
    "queue.open": "Open the highlighted case (asks for your passphrase first if locked)",
    "queue.filter": "Show only the cases whose reference, source, state or flags contain a word",
    "queue.clear_filter": "Clear the filter and show every case again",
    "queue.sort": "Change the order of the list (most urgent, deadline, newest…)",
    "queue.reverse": "Turn the order of the list round",
    "queue.acknowledge": "Acknowledge the highlighted case: it is yours and the paging stops",
    "queue.new_case": "Record a notification that came by phone",
    "queue.rota": "See who is on duty, this week's cover and any gaps",
    "queue.audit": "See the audit log: who did what to which case, and when",
    "queue.unlock": "Unlock the desk with your passphrase",
    "queue.search": "Find cases by a child's name, date of birth, police reference or words",
    "queue.tab.needs": "Show the cases that still need action",
    "queue.tab.encompass": "Show the Operation Encompass notices",
    "queue.tab.whistle": "Show the whistleblowing cases",
    "queue.tab.lesson": "Show the lessons ended over a concern",
    "queue.tab.all": "Show every case, closed ones too",
    "queue.tab.mine": "Show your cases: given to you, paged to you, or a deadline you started",
    "queue.next": "Show the next page of cases",
    "queue.prev": "Show the previous page of cases",
    "case.back": "Go back to the list of cases",
    "case.acknowledge": "Acknowledge the case: it is yours and the paging stops",
    "case.note": "Add a note to the case's record, signed in your name",
    "case.decision": "Record a decision and the reason for it",
    "case.assign": "Give the case to a colleague who can read it",
    "case.close": "Close the case, with its outcome and the reason",
    "case.refer": "Record a referral: LADO, children's social care, police…",
    "case.meet_clock": "Record that a deadline was met, so its reminders stop",
    "case.start_clock": "Start a deadline: LADO, a suspension letter, a file transfer",
    "case.save_attachment": "Save one of the case's attachments to a file",
    "case.history": "See who read the case and who was paged about it",
    "case.reload": "Read the case again",
    "case.child_file": "Open the child's file: every case about the same child",
    "child.back": "Go back to the case",
    "child.open": "Open the highlighted case",
    "child.reload": "Look for the child's cases again",
    "child.confirm": "Say a “name only?” case is about the same child, to see it in the file",
    "rota.back": "Go back to the list of cases",
    "rota.add_cover": "Put someone on duty for a stretch of time, instead of the usual rota",
    "rota.edit_slot": "Put someone on duty for the highlighted slot of the week",
    "rota.reload": "Read the rota again",
    "rota.next_week": "Show the next week",
    "rota.previous_week": "Show the previous week",
    "rota.this_week": "Go back to this week",
    "search.back": "Go back to the list of cases",
    "audit.back": "Go back to the list of cases",
    "audit.filter": "Show only the entries that contain a name, a case or a word",
    "audit.verify": "Check that no entry of the log was changed or removed",
    "audit.reload": "Read the log again",
    "audit.entry": "See everything recorded in the highlighted entry",
}
# Keys every list answers to, which are not bindings of their own.
MOVING = (
    ("↑ ↓", "Move up and down the list"),
    ("pgup pgdn", "Move a screenful; past the end of a page, the next page loads"),
    ("tab", "Go to the next field or area"),
    ("ctrl+p", "Find any action by typing its name"),
)


Section = tuple[str, type[Screen[Any]], list[BindingType]]


def _sections() -> list[Section]:
    """Each screen with its heading and its keys, in the order people meet them."""
    from ..case_list import CaseList
    from .audit import AuditScreen
    from .case import CaseScreen
    from .child import ChildFileScreen
    from .queue import QueueScreen
    from .rota import RotaScreen
    from .search import SearchScreen

    return [
        ("The list of cases", QueueScreen, [*CaseList.BINDINGS, *QueueScreen.BINDINGS]),
        ("A case", CaseScreen, CaseScreen.BINDINGS),
        ("A child's file", ChildFileScreen, ChildFileScreen.BINDINGS),
        ("The rota", RotaScreen, RotaScreen.BINDINGS),
        ("Finding a case", SearchScreen, SearchScreen.BINDINGS),
        ("The audit log", AuditScreen, AuditScreen.BINDINGS),
    ]


def _bindings(bindings: list[BindingType]) -> list[Binding]:
    return [b for b in Binding.make_bindings(bindings) if b.id and not b.system]


class HelpScreen(DeskModal[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "close", "Close help", id="help.close"),
    ]

    def __init__(self, under: Screen[object]) -> None:
        super().__init__()
        self.under = under

    def words(self, binding: Binding) -> str:
        """The binding in words: from :data:`WORDS`, else its label (and tooltip)."""
        if binding.id in WORDS:
            return WORDS[binding.id]
        return (
            f"{binding.description}: {binding.tooltip}" if binding.tooltip else binding.description
        )

    def _table(self, bindings: list[Binding], extra: tuple[tuple[str, str], ...] = ()) -> Table:
        table = Table(box=None, show_header=False, expand=True)
        table.add_column(no_wrap=True, style="bold", min_width=10)
        table.add_column(ratio=1)
        rows: dict[str, list[str]] = {}  # words -> keys, so "esc, q" share a line
        for binding in bindings:
            rows.setdefault(self.words(binding), []).append(self.app.get_key_display(binding))
        for words, keys in rows.items():
            table.add_row(Text(" ".join(dict.fromkeys(keys))), Text(words))
        for key_names, said in extra:
            table.add_row(Text(key_names), Text(said))
        return table

    def _here(self) -> tuple[str, list[BindingType]]:
        """The screen you came from: its heading and keys (none for, say, the unlock box)."""
        for title, screen, bindings in _sections():
            if isinstance(self.under, screen):
                return title, bindings
        return "Here", []

    def _binding_table(self) -> Table:
        """The keys of the screen you came from, those that work everywhere, and moving."""
        from tui.app import SgalertApp

        _, bindings = self._here()
        return self._table(_bindings([*bindings, *SgalertApp.BINDINGS]), MOVING)

    def _flag_table(self) -> Table:
        table = Table(box=None, show_header=False, expand=True)
        table.add_column(no_wrap=True, style="bold", min_width=10)
        table.add_column(ratio=1)
        for flag, meaning in FLAG_MEANING.items():
            table.add_row(Text(FLAG_SHORT[flag]), Text(meaning))
        return table

    def compose(self) -> ComposeResult:
        title, _ = self._here()
        with VerticalScroll(classes="dialog wide", id="help"):
            yield Static(Text("What the keys do"), classes="dialog-title", markup=False)
            yield Static(Text(f"{title} (where you are)"), classes="section-title")
            yield Static(self._binding_table(), markup=False)
            for title, screen, bindings in _sections():
                if isinstance(self.under, screen):
                    continue
                yield Static(Text(title), classes="section-title", markup=False)
                yield Static(self._table(_bindings(bindings)), markup=False)
            yield Static(Text("Flags in the list of cases"), classes="section-title")
            yield Static(self._flag_table(), markup=False)

    def action_close(self) -> None:
        self.dismiss(None)
