"""Running the ``sgalert`` command as a person at a terminal would: a subprocess, no stdin.

One runner for every test that drives the command line, so they all see the same thing: no
``SGALERT_*`` variable leaks in from the environment of whoever runs the tests, this checkout's
code is the one imported, and a command that would wait for a terminal fails instead of hanging.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sgalert_cli(
    workspace: Path,
    *args: str,
    passphrase: str | None = None,
    new_passphrase: str | None = None,
    stdin: str | None = None,
    stdin_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
    wrapper: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """``sgalert ARGS`` on ``workspace``; ``passphrase`` as ``SGALERT_PASSPHRASE`` (the person
    acting), ``new_passphrase`` as ``SGALERT_NEW_PASSPHRASE`` (the person ``user add`` adds);
    ``stdin_file``: a file whose bytes are standard input, as ``< FILE`` gives them;
    ``wrapper``: a command that runs the rest (``unshare ...``), if any."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SGALERT_")}
    environ["SGALERT_WORKSPACE"] = str(workspace)
    environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    if passphrase is not None:
        environ["SGALERT_PASSPHRASE"] = passphrase
    if new_passphrase is not None:
        environ["SGALERT_NEW_PASSPHRASE"] = new_passphrase
    environ.update(env or {})
    if stdin_file is not None:
        with stdin_file.open("rb") as given:
            return subprocess.run(
                [*wrapper, sys.executable, "-m", "sgalert", *args],
                capture_output=True,
                text=True,
                env=environ,
                stdin=given,
                timeout=timeout,
                check=False,
            )
    return subprocess.run(
        [*wrapper, sys.executable, "-m", "sgalert", *args],
        capture_output=True,
        text=True,
        env=environ,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """A refusal as a person sees it: not a success, no traceback, exactly one line on stderr
    and nothing on stdout; returns that line."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stdout == "", result.stdout
    return lines[0]
