"""The README's "Using it" block works pasted in order on a fresh machine.

It is the first thing a new user types after the Quick start; a line that fails there (a
workspace flag missing, a command refused) is the project failing its first minute. The block
is read from README.md itself, so the test and the text cannot drift apart.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def using_it_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Using it", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None, "the Using it section has no sh block"
    return block.group(1)


@pytest.mark.slow
def test_the_using_it_block_runs_pasted_in_order(tmp_path: Path) -> None:
    lines = using_it_block().splitlines()
    assert lines[0] == "make"  # installs into .venv; here the test's own Python stands in
    sgalert = f"{shlex.quote(sys.executable)} -m sgalert"
    *steps, doctor = "\n".join(lines[1:]).replace(".venv/bin/sgalert", sgalert).splitlines()
    doctor = doctor.split("#", 1)[0].rstrip()  # its comment would swallow what follows
    assert doctor.endswith(" doctor")
    # Every line must succeed; doctor then says what is not ready yet, and exits 1 for it.
    script = "set -euo pipefail\n" + "\n".join(steps) + f"\n{doctor} && exit 9 || test $? -eq 1\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGALERT_")}
    env["HOME"] = str(tmp_path)
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "acknowledged by dsl@example.org" in result.stdout
    assert "FAIL engine" in result.stdout  # doctor ran, and names what is left to do
