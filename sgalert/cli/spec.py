"""Commands as data: what each one is called, what it takes, what it says in ``--help`` and which
function runs it.

Each command-group module (``people``, ``cases``, ``rota``, ...) exports ``COMMANDS``, a tuple
of :class:`Command` and :class:`Group`; :mod:`sgalert.cli.main` turns them into one argparse
parser. Keeping the table apart from the code that runs it lets a test walk every option (each
must say what it does) and lets a new group be added without touching the others.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sgalert.cli.context import Context

Handler = Callable[["Context"], Coroutine[Any, Any, int] | int]
"""Runs one command and returns its exit status; a coroutine unless it runs its own loop."""


@dataclass(frozen=True, slots=True)
class Argument:
    """One positional argument (``"ref"``) or option (``"--to"``) and its ``--help`` line.

    ``flag`` is an on/off switch (``--json``); ``repeat`` collects every use into a list.
    """

    name: str
    help: str
    required: bool = False
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    type: Callable[[str], Any] | None = None
    default: Any = None
    dest: str | None = None
    flag: bool = False
    repeat: bool = False

    def options(self) -> dict[str, Any]:
        """The keyword arguments of ``ArgumentParser.add_argument`` for this argument."""
        out: dict[str, Any] = {"help": self.help}
        if self.flag:
            out["action"] = "store_true"
        elif self.repeat:
            out["action"] = "append"
        if self.choices is not None:
            out["choices"] = list(self.choices)
        for key, value in (
            ("metavar", self.metavar),
            ("type", self.type),
            ("default", self.default),
            ("dest", self.dest),
        ):
            if value is not None:
                out[key] = value
        if self.required and self.name.startswith("-"):
            out["required"] = True
        return out


@dataclass(frozen=True, slots=True)
class Command:
    """A command a person runs: ``sgalert ack REF --as EMAIL`` or, inside a group, ``show``."""

    name: str
    help: str
    handler: Handler
    arguments: tuple[Argument, ...] = ()


@dataclass(frozen=True, slots=True)
class Group:
    """A noun whose commands share it: ``sgalert rota who``, ``sgalert rota check``."""

    name: str
    help: str
    commands: tuple[Command, ...]


Entry = Command | Group


def who_you_are(value: str) -> str:
    """``--as``'s value: an empty one read as no ``--as`` at all, which for listings quietly
    meant "show only what anyone may see" instead of the person's own cases."""
    if not value.strip():
        raise argparse.ArgumentTypeError("give your email address (it is empty)")
    return value


AS_EMAIL = Argument(
    "--as",
    dest="as_email",
    type=who_you_are,
    required=True,
    metavar="EMAIL",
    help="who you are; the passphrase comes from $SGALERT_PASSPHRASE or the terminal",
)
"""``--as EMAIL``: who is running the command, whose keys unlock the cases."""
JSON = Argument("--json", flag=True, help="print JSON instead of text, for scripts")
