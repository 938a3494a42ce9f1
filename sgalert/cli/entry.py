"""Where the ``sgalert`` command starts: Ctrl+C while its modules load is one line too.

Loading the command's modules takes a moment (cryptography, aiosqlite, every command group),
and an interrupt in that moment came before :func:`sgalert.cli.main.main` could catch it, so a
person who pressed Ctrl+C at once saw a traceback. This module imports nothing heavy itself.
"""

from __future__ import annotations

import sys

INTERRUPTED = 130  # what a shell reports for a command stopped by Ctrl+C (128 + SIGINT)


def main() -> int:
    try:
        from sgalert.cli.main import main as run
    except KeyboardInterrupt:
        print("sgalert: interrupted", file=sys.stderr)
        return INTERRUPTED
    return run()
