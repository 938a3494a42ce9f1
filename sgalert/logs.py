"""Structured logs: one JSON object per line, never personal data or secrets.

Log calls pass case references, source names and counts; this formatter adds nothing else. Any
text that could have come from outside is escaped so a log line cannot be split or forged.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from sgalert.text import printable


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event = {
            "at": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": printable(record.getMessage(), keep_newlines=False),
        }
        if record.exc_info and record.exc_info[0] is not None:
            event["error"] = record.exc_info[0].__name__
        return json.dumps(event, ensure_ascii=False)


def configure(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    root = logging.getLogger("sgalert")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
