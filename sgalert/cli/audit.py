"""``sgalert audit head`` and ``sgalert audit verify [--anchor SEQ:HASH]``: where the audit
log's hash chain stands, and whether it still holds a state anchored earlier (the handlers live
with the digest, which emails the anchor every morning)."""

from __future__ import annotations

from sgalert.cli.digest import AUDIT_COMMANDS
from sgalert.cli.spec import Entry, Group

COMMANDS: tuple[Entry, ...] = (Group("audit", "the audit log", AUDIT_COMMANDS),)
