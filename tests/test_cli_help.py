"""`sgalert --help` explains everything: every command and every option says what it is for."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path

import sgalert.cli
from sgalert.cli.main import GROUPS, _parser
from sgalert.cli.spec import Command


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


DOCS = Path(__file__).resolve().parent.parent / "docs"


def command_paths() -> list[str]:
    """Every command a person can type, as `sgalert --help` lists it: `ack`, `case show`, ..."""
    paths = []
    for entries in GROUPS:
        for entry in entries:
            if isinstance(entry, Command):
                paths.append(entry.name)
            else:
                paths += [f"{entry.name} {command.name}" for command in entry.commands]
    return paths


def test_the_command_reference_lists_every_command() -> None:
    """docs/commands.md has a row for each command, written as it is typed (`case show REF`)."""
    reference = (DOCS / "commands.md").read_text(encoding="utf-8")
    rows = {m.group(1) for m in re.finditer(r"^\| `([^`]+)`", reference, re.MULTILINE)}
    listed = {
        " ".join(word for word in row.split() if re.fullmatch(r"[a-z-]+", word)) for row in rows
    }
    missing = [path for path in command_paths() if not any(row.startswith(path) for row in listed)]
    assert missing == [], "add a row to docs/commands.md for: " + ", ".join(missing)
    assert len(command_paths()) > 30  # the walk sees the groups, not just the top level


def test_no_paragraph_is_repeated_across_the_docs() -> None:
    """Each fact is written once, on the page for its topic; other pages link to it."""
    seen: dict[str, str] = {}
    repeated = []
    for page in sorted(DOCS.glob("*.md")):
        for paragraph in re.split(r"\n\s*\n", page.read_text(encoding="utf-8")):
            words = " ".join(paragraph.split())
            if len(words) < 80 or words.startswith(("|", "```", "#")):
                continue
            if words in seen:
                repeated.append(f"{page.name} repeats {seen[words]}: {words[:60]}...")
            seen.setdefault(words, page.name)
    assert repeated == []
