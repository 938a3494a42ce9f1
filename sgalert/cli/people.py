"""Setting up: ``sgalert init`` makes a workspace; ``sgalert user ...`` adds the people who hold
its keys, lets a current member seal group keys to a newcomer, and removes a leaver."""

from __future__ import annotations

import json
from pathlib import Path

from sgalert.cli.context import Context, one_line, read_passphrase
from sgalert.cli.files import cannot_make, make_folder, refuse_leftovers, remove_made
from sgalert.cli.spec import AS_EMAIL, JSON, Argument, Command, Entry, Group
from sgalert.config import load_config, render_template
from sgalert.errors import InvalidInput, WorkspaceError
from sgalert.model import Role
from sgalert.records import audit
from sgalert.records.keyring import (
    add_first_person,
    add_person,
    approve_member,
    remove_person,
)
from sgalert.records.store import Store
from sgalert.text import printable
from sgalert.workspace import Workspace, make_private, unreachable

# The newcomer's passphrase, apart from $SGALERT_PASSPHRASE which unlocks whoever adds them.
ENV_NEW_PASSPHRASE = "SGALERT_NEW_PASSPHRASE"  # noqa: S105 (a variable name, not a secret)
# What SQLite keeps beside a store while it is open, taken back with it if init fails.
_STORE_FILES = ("-wal", "-shm", "-journal")


async def init(ctx: Context) -> int:
    """Make a workspace: all of it, or (failing part-way) nothing left behind to block the next
    try as 'already holds a workspace'."""
    ws = ctx.workspace
    try:
        taken = ws.config_path.exists() or ws.store_path.exists()
    except OSError as exc:
        raise WorkspaceError(unreachable(exc)) from None
    if taken:
        raise WorkspaceError(f"{ws.root} already holds an sgalert workspace; nothing changed")
    refuse_leftovers(ws)
    made: list[Path] = []
    try:
        await _make_workspace(ws, ctx.args.school_name, made)
    except OSError as exc:
        remove_made(made)
        raise WorkspaceError(
            f"cannot make a workspace at {ws.root}: {cannot_make(ws.root, exc)}; nothing was left"
            " behind"
        ) from None
    except BaseException:
        remove_made(made)
        raise
    print(f"Created workspace: config {ws.config_path}, store {ws.store_path}")
    print(
        "Next: add yourself, the first person, with"
        " `sgalert user add --first --name NAME --email EMAIL --role dsl`"
    )
    return 0


async def _make_workspace(ws: Workspace, school_name: str, made: list[Path]) -> None:
    """The folders, the config, the Maildir inbox and the store, each noted in ``made`` before
    it is made, so that a failure can take back exactly what this made."""
    made += make_folder(ws.config_path.parent)
    made += make_folder(ws.store_path.parent)
    made.append(ws.config_path)
    ws.config_path.write_text(render_template(school_name), encoding="utf-8")
    load_config(ws.config_path)  # the template must always be valid
    inbox = ws.root / "inbox"
    for sub in ("cur", "new", "tmp"):
        made += make_folder(inbox / "encompass" / sub)
    made += [ws.store_path.with_name(ws.store_path.name + end) for end in ("", *_STORE_FILES)]
    store = await Store.open(ws.store_path, create=True)
    async with store, store.write() as db:
        await audit.append(db, [audit.AuditEvent(audit.SYSTEM, "store-created")])
    make_private(ws)


async def user_add(ctx: Context) -> int:
    role = Role(ctx.args.role)
    if ctx.args.first == bool(ctx.args.by):
        raise InvalidInput(
            "say who is adding this person with `--by YOUR_EMAIL` (a DSL, the headteacher or a"
            " monitoring officer, who is asked for their passphrase), or `--first` for the"
            " first person in a new workspace"
        )
    async with await ctx.service() as service:
        if ctx.args.first:
            passphrase = read_passphrase(f"New passphrase for {ctx.args.email}: ", confirm=True)
            person, groups = await add_first_person(
                service.store,
                name=ctx.args.name,
                email=ctx.args.email,
                role=role,
                passphrase=passphrase,
            )
        else:
            adder = await service.unlock(
                ctx.args.by, read_passphrase(f"Passphrase for {ctx.args.by}: ")
            )
            person, groups = await add_person(
                service.store,
                by=adder,
                name=ctx.args.name,
                email=ctx.args.email,
                role=role,
                passphrase=read_passphrase(
                    f"New passphrase for {ctx.args.email}: ",
                    confirm=True,
                    env=ENV_NEW_PASSPHRASE,
                ),
            )
    print(f"Added {printable(person.name)} <{person.email}> as {role.value}")
    pending = [group for group, state in groups.items() if state == "pending"]
    if pending:
        print(
            f"Access to {', '.join(pending)} is pending: a current member must run "
            f"`sgalert user approve {person.email} --as THEIR_EMAIL`"
        )
    return 0


async def user_list(ctx: Context) -> int:
    async with await ctx.service() as service:
        people = await service.people()
    if ctx.args.json:
        print(
            json.dumps(
                [
                    {
                        "id": p.id,
                        "name": p.name,
                        "email": p.email,
                        "role": p.role.value,
                        "groups": groups,
                        "removed": p.removed,
                    }
                    for p, groups in people
                ],
                indent=2,
            )
        )
        return 0
    if not people:
        print("No people yet: add one with `sgalert user add`.")
    for p, groups in people:
        access = ", ".join(
            f"{g}" + ("" if s == "active" else " (pending)") for g, s in sorted(groups.items())
        )
        gone = "  [removed]" if p.removed else ""
        print(printable(f"{p.email:32}  {p.role.value:18}  {p.name}  [{access}]{gone}"))
    return 0


async def user_approve(ctx: Context) -> int:
    async with await ctx.service() as service:
        approver = await ctx.unlocked(service)
        groups = await approve_member(service.store, approver, ctx.args.email)
    print(f"{ctx.args.email} now holds the keys of {', '.join(groups)}")
    return 0


async def user_remove(ctx: Context) -> int:
    async with await ctx.service() as service:
        remover = await ctx.unlocked(service)
        rotated = await remove_person(service.store, remover, ctx.args.email)
    print(f"Removed {ctx.args.email}; rotated keys of {', '.join(rotated) or 'no group'}")
    return 0


COMMANDS: tuple[Entry, ...] = (
    Command(
        "init",
        "create a workspace: config and store",
        init,
        (
            Argument(
                "--school-name", default="Example School", type=one_line, help="the school's name"
            ),
        ),
    ),
    Group(
        "user",
        "people and their keys",
        (
            Command(
                "add",
                "add a person with new keys (the first with --first, the rest --by someone)",
                user_add,
                (
                    Argument(
                        "--by",
                        metavar="EMAIL",
                        help="who is adding them: a DSL, the headteacher or a monitoring officer,"
                        " unlocked with $SGALERT_PASSPHRASE or the terminal; the newcomer's own"
                        f" passphrase then comes from ${ENV_NEW_PASSPHRASE} or the terminal",
                    ),
                    Argument(
                        "--first",
                        flag=True,
                        help="the first person in a new workspace (refused once it has anyone)",
                    ),
                    Argument("--name", required=True, help="their name as colleagues know it"),
                    Argument("--email", required=True, help="their email address: their login"),
                    Argument(
                        "--role",
                        required=True,
                        choices=tuple(r.value for r in Role),
                        help="their role, which decides the cases they may read",
                    ),
                ),
            ),
            Command("list", "list people and their access", user_list, (JSON,)),
            Command(
                "approve",
                "seal your group keys to a person whose access is pending",
                user_approve,
                (Argument("email", help="the email of the person to approve"), AS_EMAIL),
            ),
            Command(
                "remove",
                "remove a person and rotate their groups' keys",
                user_remove,
                (Argument("email", help="the email of the person who is leaving"), AS_EMAIL),
            ),
        ),
    ),
)
