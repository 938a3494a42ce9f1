"""Run the IMAP inbox in a child process that SIGKILLs itself right after a case commits.

Used by the crash test: the case is durably stored, the message is not yet marked ``\\Seen``.
Arguments: workspace directory, IMAP host, port, user (password in SGALERT_TEST_IMAP_PASSWORD).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from sgalert.config import SourceConfig
from sgalert.desk.service import CaseService
from sgalert.engine.watch import SourceMonitor, make_deliver
from sgalert.intake.ingest import Ingestor
from sgalert.intake.prepare import SourceRules
from sgalert.model import Source
from sgalert.ports import Inbound, IngestOutcome
from sgalert.workspace import resolve_workspace


async def main(root: str, host: str, port: str, user: str) -> None:
    from integrations.imap import create

    workspace = resolve_workspace(root)
    service = await CaseService.open(workspace)
    assert service.config is not None
    source = SourceConfig(
        name="encompass-imap",
        type=Source.ENCOMPASS,
        kind="imap",
        options={
            "host": host,
            "port": int(port),
            "security": "none",
            "username": user,
            "password_env": "SGALERT_TEST_IMAP_PASSWORD",
        },
    )
    real_deliver = make_deliver(
        Ingestor(service.new_cases, service.config), SourceRules.from_config(source)
    )

    async def deliver_then_die(
        messages: Sequence[Inbound], *, checkpoint: str | None = None
    ) -> list[IngestOutcome]:
        outcomes = await real_deliver(messages, checkpoint=checkpoint)
        print("committed", ",".join(o.ref for o in outcomes), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # after the commit, before \Seen
        return outcomes

    inbox = create(source, Path(root))
    await inbox.run(deliver_then_die, None, SourceMonitor(service.store, source))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
