"""`sgalert --help` explains everything: every command and every option says what it is for."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Iterator

import sgalert.cli
from sgalert.cli.main import GROUPS, _parser


def parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, (*path, name))


def test_every_command_and_option_has_a_description() -> None:
    undescribed = []
    for path, parser in parsers(_parser()):
        where = " ".join(("sgalert", *path))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help for choice in action._choices_actions}
                undescribed += [f"{where} {n}" for n in action.choices if not helps.get(n)]
            elif not (action.help or "").strip():
                name = "/".join(action.option_strings) or action.dest
                undescribed.append(f"{where} {name}")
    assert undescribed == [], "say what each is for:\n" + "\n".join(undescribed)


def test_the_walk_sees_nested_commands_and_their_options() -> None:
    seen = {path: parser for path, parser in parsers(_parser())}
    assert ("case", "show") in seen and ("rota", "cover") in seen and ("ack",) in seen
    options = {o for a in seen[("rota", "cover")]._actions for o in a.option_strings}
    assert {"--who", "--from", "--to", "--as"} <= options


def test_every_command_module_is_registered() -> None:
    """A module under sgalert/cli that declares COMMANDS but is not listed in GROUPS would be a
    command nobody can run."""
    registered = {id(group) for group in GROUPS}
    declared = []
    for info in pkgutil.iter_modules(sgalert.cli.__path__, "sgalert.cli."):
        commands = getattr(importlib.import_module(info.name), "COMMANDS", None)
        if commands is not None:
            declared.append(info.name)
            assert id(commands) in registered, f"{info.name}.COMMANDS is not in main.GROUPS"
    assert len(declared) == len(GROUPS)
