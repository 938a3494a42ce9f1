"""``sgalert audit verify``: walk the audit log's hash chain and say where it stands."""

from __future__ import annotations

from sgalert.cli.context import Context
from sgalert.cli.spec import Command, Entry, Group
from sgalert.records import audit


async def verify(ctx: Context) -> int:
    async with await ctx.service() as service:
        count = await service.verify_audit()
        async with service.store.read() as db:
            seq, digest = await audit.head(db)
    print(f"audit chain intact: {count} entries checked; head {seq} {digest}")
    return 0


COMMANDS: tuple[Entry, ...] = (
    Group(
        "audit", "the audit log", (Command("verify", "check the audit log's hash chain", verify),)
    ),
)
