"""Start worker processes, print their ids, then wait to be killed.

Arguments: the workspace, and ``pool`` (an ingestor's prepare workers, as ``serve`` warms them)
or ``watch`` (a spawned process running only the portable parent watch, without Linux's
``PR_SET_PDEATHSIG``). For the tests that a SIGKILLed parent leaves no worker behind.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys

from sgalert.desk.service import CaseService
from sgalert.intake.ingest import Ingestor
from sgalert.intake.workers import _wait_for_parent
from sgalert.workspace import resolve_workspace


async def main(root: str, mode: str) -> None:
    service = await CaseService.open(resolve_workspace(root))
    assert service.config is not None
    if mode == "pool":
        ingestor = Ingestor(service.new_cases, service.config, workers=2)
        await ingestor.warm()
        assert ingestor.pool._pool is not None
        pids = sorted(ingestor.pool._pool._processes)  # type: ignore[attr-defined]
    else:
        watcher = multiprocessing.get_context("spawn").Process(
            target=_wait_for_parent, args=(os.getpid(),)
        )
        watcher.start()
        assert watcher.pid is not None
        pids = [watcher.pid]
    print(" ".join(str(pid) for pid in pids), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
