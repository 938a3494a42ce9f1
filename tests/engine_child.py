"""Run the engine (no mailbox watchers) on a shared virtual timeline, for crash tests.

Arguments: workspace, the virtual start (ISO), the real epoch it corresponds to (time.time()),
and the speed. Two runs given the same start and epoch share one timeline, as a restarted
``sgalert serve`` shares the wall clock.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from sgalert.clock import parse_iso
from sgalert.desk.service import CaseService
from sgalert.engine.serve import Engine
from sgalert.workspace import resolve_workspace


async def main(root: str, start: str, epoch: str, speed: str) -> None:
    base, real, factor = parse_iso(start), float(epoch), float(speed)

    def clock() -> datetime:
        return base + timedelta(seconds=(time.time() - real) * factor)

    service = await CaseService.open(resolve_workspace(root), clock)
    print("engine ready", flush=True)
    await Engine(service, Path(root), clock=clock, speed=factor, watch=False).run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
