"""What every command handler is given: the parsed arguments, the workspace, and the few steps
most commands share (open the service, ask for the passphrase, read a time in the school's zone).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from datetime import UTC, datetime, tzinfo

from sgalert.config import load_config
from sgalert.desk.service import CaseService
from sgalert.errors import InvalidInput, WorkspaceError
from sgalert.records.keyring import Identity
from sgalert.workspace import Workspace, resolve_workspace

ENV_PASSPHRASE = "SGALERT_PASSPHRASE"  # noqa: S105 (a variable name, not a secret)


def read_passphrase(prompt: str, *, confirm: bool = False, env: str = ENV_PASSPHRASE) -> str:
    """The passphrase from SGALERT_PASSPHRASE (or ``env``), else from the terminal (never from
    a pipe).

    Passphrases are UTF-8 text: bytes that are not (a Latin-1 terminal, a mangled variable) are
    refused in one line that never echoes them.
    """
    from_env = os.environ.get(env)
    if from_env is not None:
        try:
            from_env.encode("utf-8")  # undecodable bytes arrive as lone surrogates
        except UnicodeEncodeError:
            raise InvalidInput(
                f"the passphrase in {env} is not UTF-8 text; set it again as UTF-8"
            ) from None
        return from_env
    if not sys.stdin.isatty():
        raise InvalidInput(f"no terminal to ask for the passphrase; set {env}")
    try:
        first = getpass.getpass(prompt)
        if confirm and getpass.getpass("Repeat the passphrase: ") != first:
            raise InvalidInput("the two passphrases differ; nothing was changed")
    except UnicodeDecodeError:
        raise InvalidInput(
            "the passphrase typed is not UTF-8 text; set the terminal to UTF-8 and try again"
        ) from None
    return first


TIME_FORMAT = "2026-11-23T08:30 (the school's local time) or 2026-11-23T08:30+00:00"


def parse_school_time(text: str, zone: tzinfo, option: str) -> datetime:
    """A time given on the command line, in UTC. One without an offset is the school's local
    time whatever the host's zone: a server often runs in UTC, a laptop abroad in another."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            f"{option} {text!r} is not an ISO 8601 date and time; write it as {TIME_FORMAT}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


class Context:
    """The parsed arguments and the workspace for one command."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workspace: Workspace = resolve_workspace(args.workspace)

    async def service(self) -> CaseService:
        """The façade on this workspace; a missing workspace is one line saying how to make it."""
        if not self.workspace.config_path.is_file():
            raise WorkspaceError(
                f"no workspace at {self.workspace.root}; run `sgalert init` "
                "(or pass --workspace / set SGALERT_WORKSPACE)"
            )
        return await CaseService.open(self.workspace)

    def school_time(self, text: str, option: str) -> datetime:
        """``--at`` and the like: see :func:`parse_school_time`; the zone is the config's."""
        return parse_school_time(text, load_config(self.workspace.config_path).timezone, option)

    async def unlocked(self, service: CaseService) -> Identity:
        """The keys of the person named by ``--as``, unlocked with their passphrase."""
        passphrase = read_passphrase(f"Passphrase for {self.args.as_email}: ")
        return await service.unlock(self.args.as_email, passphrase)
