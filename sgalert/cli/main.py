"""The ``sgalert`` command: argparse built from the command groups' tables, and one line per error.

Every error the core raises on purpose prints as one line on stderr and exits non-zero (2 when
the person is not entitled); ``--debug`` adds the traceback. Output shown to a terminal passes
through :func:`sgalert.text.printable`, so hostile text in a case cannot drive the terminal.

A command group is a module ``sgalert/cli/<topic>.py`` exporting ``COMMANDS`` (see
:mod:`sgalert.cli.spec`); listing it in :data:`GROUPS` is all it takes to add it.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import sys
import traceback
from collections.abc import Iterable, Sequence
from typing import NoReturn, TypeAlias

from sgalert import __version__
from sgalert.cli import (
    audit,
    backup,
    cases,
    config_cmd,
    demo,
    digest,
    doctor,
    keys,
    output,
    people,
    retention,
    rota,
    serve,
)
from sgalert.cli.context import Context
from sgalert.cli.entry import INTERRUPTED
from sgalert.cli.spec import Command, Entry, Handler
from sgalert.errors import InvalidInput, SgalertError
from sgalert.text import printable

# Every command group, in the order `sgalert --help` lists them. Add a new group here.
GROUPS: tuple[tuple[Entry, ...], ...] = (
    people.COMMANDS,
    config_cmd.COMMANDS,
    cases.COMMANDS,
    serve.COMMANDS,
    rota.COMMANDS,
    audit.COMMANDS,
    digest.COMMANDS,
    doctor.COMMANDS,
    backup.COMMANDS,
    retention.COMMANDS,
    keys.COMMANDS,
    demo.COMMANDS,
)

SUPPRESS = argparse.SUPPRESS

Subparsers: TypeAlias = "argparse._SubParsersAction[_Parser]"


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line: what is wrong and where the help is.

    argparse's own usage block before the error buries the one line that matters and breaks
    the one-line rule that every other error keeps; ``--help`` still prints the usage in full.
    What the person typed can appear in the message, so it passes through :func:`printable`.
    """

    def error(self, message: str) -> NoReturn:
        line = printable(message, keep_newlines=False)
        self.exit(2, f"{self.prog}: error: {line} (see {self.prog} --help)\n")


def _add_command(under: Subparsers, command: Command) -> None:
    sub = under.add_parser(command.name, help=command.help, description=command.help)
    sub.set_defaults(handler=command.handler)
    for argument in command.arguments:
        sub.add_argument(argument.name, **argument.options())
    # The global options after the command too (`sgalert restore BACKUP --workspace NEW`, as its
    # help puts it), unless the command has its own; absent, they leave the global value be.
    if all(argument.name != "--workspace" for argument in command.arguments):
        sub.add_argument("--workspace", metavar="DIR", default=argparse.SUPPRESS, help=SUPPRESS)
    sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=SUPPRESS)


def _add_entries(under: Subparsers, entries: Iterable[Entry]) -> None:
    for entry in entries:
        if isinstance(entry, Command):
            _add_command(under, entry)
            continue
        group = under.add_parser(entry.name, help=entry.help, description=entry.help)
        inner = group.add_subparsers(dest=f"{entry.name}_command", required=True, metavar="COMMAND")
        for command in entry.commands:
            _add_command(inner, command)


def _parser(groups: Iterable[Iterable[Entry]] = GROUPS) -> argparse.ArgumentParser:
    """The whole command line: the global options, then every group's commands."""
    parser = _Parser(prog="sgalert", description="Safeguarding alert router for schools.")
    parser.add_argument("--version", action="version", version=f"sgalert {__version__}")
    parser.add_argument(
        "--workspace",
        metavar="DIR",
        help="workspace directory (default: $SGALERT_WORKSPACE, "
        "else the platform's config and data directories)",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")

    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for entries in groups:
        _add_entries(commands, entries)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    output.guard()
    try:
        _refuse_undecodable(args)
        handler: Handler = args.handler
        outcome = handler(Context(args))
        if inspect.iscoroutine(outcome):
            outcome = int(asyncio.run(outcome))
        assert isinstance(outcome, int)
        sys.stdout.flush()  # a reader that has gone shows here, not as an error at exit
        return outcome
    except BrokenPipeError:
        if not _stdout_gone():
            raise
        return 128 + 13  # as if SIGPIPE had ended us, like `yes | head`
    except SgalertError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"sgalert: {printable(str(exc), keep_newlines=False)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("sgalert: interrupted", file=sys.stderr)
        return INTERRUPTED


# Paths may be any bytes the file system takes; everything else on the command line is text.
_PATHS = frozenset({"workspace", "demo_workspace", "file", "dest", "source", "out", "html"})


def _refuse_undecodable(args: argparse.Namespace) -> None:
    """Refuse a value that is not UTF-8 (a Latin-1 terminal's 'café'): Python hands it over
    with lone surrogates, which were signed into a record as they were (a note, a reason, a
    caller) or failed later as a UnicodeEncodeError traceback (a --field, a cover's --who)."""
    for name, value in vars(args).items():
        for text in value if isinstance(value, list) else [value]:
            if name in _PATHS or not isinstance(text, str):
                continue
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidInput(
                    f"what was given for {name.replace('_', '-')} is not UTF-8 text; set the"
                    " terminal to UTF-8 and try again (nothing was done)"
                ) from None


def _stdout_gone() -> bool:
    """True when standard output is a pipe whose reader has left (`sgalert cases list | head`).

    Then say nothing, as well-behaved tools do, and point stdout at /dev/null so Python's own
    flush at exit meets no broken pipe either. A broken pipe anywhere else is a real error.
    """
    import select
    import stat

    try:
        fd = sys.stdout.fileno()
        if not stat.S_ISFIFO(os.fstat(fd).st_mode) or not hasattr(select, "poll"):
            return False
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        if not any(events & select.POLLERR for _, events in poller.poll(0)):
            return False  # the pipe still has a reader: the broken pipe was elsewhere
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except (OSError, ValueError):
        return False
    return True
