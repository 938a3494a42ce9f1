"""``sgalert config check``: the configuration checked as ``serve`` would read it, and against
the workspace it describes (people, mailboxes, calendar), one line per problem."""

from __future__ import annotations

from sgalert.cli.context import Context
from sgalert.cli.spec import Command, Entry, Group
from sgalert.config import load_config
from sgalert.errors import WorkspaceError
from sgalert.records.store import Store
from sgalert.text import printable


async def check(ctx: Context) -> int:
    from sgalert.cli import config_check  # reaches the adapters' option lists: only when asked
    from sgalert.clock import utcnow

    config = load_config(ctx.workspace.config_path)
    problem = ctx.workspace.not_ready()
    if problem is not None:
        raise WorkspaceError(problem)
    async with await Store.open(ctx.workspace.store_path) as store:
        found = await config_check.check_workspace(config, ctx.workspace.root, store, utcnow())
    for line in [p.line(config.path) for p in found]:
        print(printable(line, keep_newlines=False))
    print(config_check.summary(found, config.path, len(config.sources)))
    return 1 if any(p.severity is config_check.Severity.ERROR for p in found) else 0


COMMANDS: tuple[Entry, ...] = (
    Group(
        "config",
        "check the configuration",
        (Command("check", "validate sgalert.toml", check),),
    ),
)
