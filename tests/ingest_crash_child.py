"""Poll a Maildir once, in a process that a message kills: for the crash-loop test.

Arguments: the workspace, and the text that makes reading a message kill this process with
SIGKILL (as a parser crash or the out-of-memory killer would). Exits 0 once the folder is polled.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import sgalert.intake.prepare
from integrations.maildir import MaildirInbox
from sgalert.desk.service import CaseService
from sgalert.engine.watch import make_deliver
from sgalert.intake.extract import Extraction, extract
from sgalert.intake.ingest import Ingestor
from sgalert.intake.prepare import SourceRules
from sgalert.model import Source
from sgalert.workspace import resolve_workspace


async def main(root: str, deadly: str) -> None:
    def killing(source: Source, subject: str, body: str, *args: Any, **kw: Any) -> Extraction:
        if deadly in body:
            os.kill(os.getpid(), signal.SIGKILL)
        return extract(source, subject, body, *args, **kw)

    sgalert.intake.prepare.extract = killing  # type: ignore[assignment]
    service = await CaseService.open(resolve_workspace(root))
    try:
        assert service.config is not None
        rules = SourceRules("drop", Source.ENCOMPASS)
        deliver = make_deliver(Ingestor(service.new_cases, service.config, workers=0), rules)
        await MaildirInbox("drop", Path(root) / "inbox", after_commit="mark-read").poll_once(
            deliver
        )
    finally:
        await service.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:3]))
