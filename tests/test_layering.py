"""The core must not pull in the UI, the adapters or the Microsoft clients."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import sgalert

FORBIDDEN = ("textual", "msal", "exchangelib", "httpx", "integrations", "tui")


def test_importing_every_core_module_keeps_the_core_clean() -> None:
    modules = [
        f"sgalert.{m.name}" for m in pkgutil.iter_modules(sgalert.__path__) if m.name != "__main__"
    ]
    assert "sgalert.service" in modules and "sgalert.cli" in modules
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
