"""The core must not pull in the UI, the adapters or the Microsoft clients."""

from __future__ import annotations

import ast
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import sgalert

FORBIDDEN = ("textual", "msal", "exchangelib", "httpx", "integrations", "tui")


def test_importing_every_core_module_keeps_the_core_clean() -> None:
    modules = [
        m.name
        for m in pkgutil.walk_packages(sgalert.__path__, "sgalert.")
        if not m.name.endswith("__main__")
    ]
    assert "sgalert.desk.service" in modules and "sgalert.cli.main" in modules
    program = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", f"core imported {result.stdout.strip()}"


# ----- the desk talks to the core only through the service ---------------------------------

TUI = Path(__file__).resolve().parent.parent / "tui"
STORE_MODULES = ("aiosqlite", "sqlite3", "sgalert.records.store")
STORE_ATTRIBUTES = frozenset({"store", "_db", "_conn"})
SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|PRAGMA|CREATE|DROP|ALTER)\b")


def _store_module(name: str) -> bool:
    return any(name == m or name.startswith(f"{m}.") for m in STORE_MODULES)


def store_access(source: str, filename: str = "<tui>") -> list[str]:
    """Every way ``source`` reaches the store itself: importing a database module or the store,
    touching a ``.store`` (or a connection) attribute, or holding SQL in a string. Bare string
    statements (docstrings) are prose, not queries, and are left out."""
    tree = ast.parse(source, filename=filename)
    prose = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    found: list[str] = []
    for node in ast.walk(tree):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where} imports {a.name}" for a in node.names if _store_module(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            found += [f"{where} imports {name}" for name in names if _store_module(name)][:1]
        elif isinstance(node, ast.Attribute) and node.attr in STORE_ATTRIBUTES:
            found.append(f"{where} uses .{node.attr}")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in prose
            and (SQL.search(node.value) or _store_module(node.value))
        ):
            found.append(f"{where} holds {node.value[:40]!r}")
    return found


def test_the_tui_reaches_the_store_only_through_the_service() -> None:
    files = sorted(TUI.rglob("*.py"))
    assert TUI / "app.py" in files and TUI / "screens" / "queue.py" in files
    found = [
        problem
        for path in files
        for problem in store_access(path.read_text(encoding="utf-8"), str(path.relative_to(TUI)))
    ]
    assert found == [], "the TUI must use sgalert.desk.service:\n" + "\n".join(found)


def test_the_store_access_check_catches_what_it_claims_to() -> None:
    breaches = """
import sqlite3
from aiosqlite import Connection
from sgalert.records import store
from sgalert.records.store import Store
import importlib
'''A docstring may say SELECT.'''
rows = service.store.fetchall("SELECT 1")
conn = app._db
importlib.import_module("aiosqlite")
"""
    lines = sorted(int(problem.split(":")[1].split()[0]) for problem in store_access(breaches))
    assert lines == [2, 3, 4, 5, 8, 8, 9, 10], lines  # 8: the .store and the SQL
    assert (
        store_access("from sgalert.desk.service import CaseService\nservice.queue_counts()\n") == []
    )
