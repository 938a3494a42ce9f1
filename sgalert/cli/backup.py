"""``sgalert backup DEST`` and ``sgalert restore SRC``: a copy that can become a workspace again.

A backup is a new folder (0700) holding a consistent copy of the store (see
:mod:`sgalert.records.backup`: safe while the engine runs, and still sealed), the configuration,
and ``MANIFEST.json`` (format, sgalert and schema versions, when, the audit chain's length and
head, each file's SHA-256, and the secrets the configuration reads, by name only). Never the
secrets themselves: mailbox passwords, client secrets and webhook URLs live in the environment
or in 0600 files outside the backup, and are put back by hand after a restore. Nor the Maildir
folders (they are mailboxes, not records).

``restore`` makes a new workspace from a backup and refuses any folder that already holds one:
a restore never overwrites. It checks every file against the manifest, the copy's integrity and
its audit chain against the recorded head, migrates the schema if this sgalert is newer, and
drops the old engine's lease so the first ``serve`` starts cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from sgalert import __version__
from sgalert.cli.files import cannot_make, make_folder, refuse_leftovers, remove_made
from sgalert.cli.spec import Argument, Command, Entry
from sgalert.clock import iso, utcnow
from sgalert.config import load_config
from sgalert.errors import AlreadyExists, InvalidInput, StoreError, WorkspaceError
from sgalert.records import audit as audit_log
from sgalert.records.backup import check_copy, copy_store, sha256_of
from sgalert.records.store import Store
from sgalert.workspace import CONFIG_NAME, STORE_NAME, Workspace, make_private

MANIFEST = "MANIFEST.json"
FORMAT = 1
# Options that name where a secret comes from (the value is never read here).
_SECRET_SUFFIXES = ("_env", "_file")
_NOT_SECRET = ("ca_file",)


def secrets_named(config_text: str) -> list[str]:
    """``sources[x].password_env = "VAR"`` and the like: where each secret comes from."""
    data = tomllib.loads(config_text)
    found: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = [
        (f"sources[{s.get('name', index)}]", s) for index, s in enumerate(data.get("sources", []))
    ]
    tables += [(f"channels.{name}", c) for name, c in data.get("channels", {}).items()]
    for where, table in tables:
        for key, value in table.items():
            if key.endswith(_SECRET_SUFFIXES) and key not in _NOT_SECRET:
                found.append(f"{where}.{key} = {json.dumps(value)}")
    return found


class _Runner(Protocol):
    args: argparse.Namespace
    workspace: Workspace


def make_backup(workspace: Workspace, dest: Path) -> dict[str, Any]:
    """Blocking: write the backup folder ``dest``; returns its manifest. A destination the file
    system refuses is one line naming what is in the way, and leaves nothing behind."""
    problem = workspace.not_ready()
    if problem is not None:
        raise WorkspaceError(problem)
    made: list[Path] = []
    try:
        return _write_backup(workspace, dest, made)
    except OSError as exc:
        remove_made(made)
        raise InvalidInput(
            f"cannot write the backup to {dest}: {cannot_make(dest, exc)}; nothing was written"
        ) from None
    except BaseException:
        remove_made(made)
        raise


def _write_backup(workspace: Workspace, dest: Path, made: list[Path]) -> dict[str, Any]:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise AlreadyExists(f"{dest} already exists; give a new folder for the backup")
    partial = dest.with_name(dest.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    made += make_folder(partial)
    try:
        copy = copy_store(workspace.store_path, partial / STORE_NAME)
        config = workspace.config_path.read_bytes()
        fd = os.open(partial / CONFIG_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(config)
        manifest = {
            "format": FORMAT,
            "sgalert": __version__,
            "schema": copy.schema,
            "created_at": iso(utcnow()),
            "audit": {"entries": copy.audit_entries, "head": copy.audit_head},
            "files": {name: sha256_of(partial / name) for name in (STORE_NAME, CONFIG_NAME)},
            "secrets_not_included": secrets_named(config.decode("utf-8")),
        }
        fd = os.open(partial / MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as text:
            json.dump(manifest, text, indent=2)
        if dest.exists():
            dest.rmdir()  # empty, checked above
        partial.rename(dest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return manifest


def read_manifest(source: Path) -> dict[str, Any]:
    if source.exists() and not source.is_dir():
        raise InvalidInput(f"{source} is a file, not a backup (give the folder `backup` made)")
    try:
        manifest = json.loads((source / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"{source} is not an sgalert backup (no {MANIFEST})") from None
    except (OSError, ValueError):
        raise InvalidInput(f"{source}/{MANIFEST} cannot be read; the backup is damaged") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InvalidInput(f"{source}: a backup format this sgalert does not know; upgrade it")
    for name in (STORE_NAME, CONFIG_NAME):
        path = source / name
        if not path.is_file() or sha256_of(path) != manifest["files"].get(name):
            raise InvalidInput(
                f"{source}/{name} is missing or differs from the manifest; the backup is"
                " damaged: use another"
            )
    return manifest


def restore_files(source: Path, workspace: Workspace) -> dict[str, Any]:
    """Blocking: check the backup and copy it into the new ``workspace``. A folder the file
    system refuses is one line naming what is in the way, and leaves nothing behind."""
    for path in (workspace.config_path, workspace.store_path):
        if path.exists():
            raise WorkspaceError(
                f"{workspace.root} already holds a workspace ({path.name}); restore into a new"
                " folder (--workspace NEW), nothing was changed"
            )
    refuse_leftovers(workspace)
    manifest = read_manifest(source)
    copy = check_copy(source / STORE_NAME)
    if (copy.audit_entries, copy.audit_head) != (
        manifest["audit"]["entries"],
        manifest["audit"]["head"],
    ):
        raise InvalidInput(f"{source}: the store's audit chain differs from the manifest's")
    made: list[Path] = []
    try:
        for folder in sorted({workspace.config_path.parent, workspace.store_path.parent}):
            made += make_folder(folder)
        for name, target in (
            (STORE_NAME, workspace.store_path),
            (CONFIG_NAME, workspace.config_path),
        ):
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            made.append(target)
            with os.fdopen(fd, "wb") as handle, (source / name).open("rb") as original:
                shutil.copyfileobj(original, handle)
                handle.flush()
                os.fsync(handle.fileno())
    except FileExistsError:
        remove_made(made)
        raise WorkspaceError(f"{workspace.root} was created meanwhile; nothing restored") from None
    except OSError as exc:
        remove_made(made)
        raise InvalidInput(
            f"cannot restore into {workspace.root}: {cannot_make(workspace.root, exc)};"
            " nothing was restored"
        ) from None
    except BaseException:
        remove_made(made)
        raise
    return manifest


def _make_maildirs(workspace: Workspace) -> list[str]:
    """The config's Maildir sources inside the workspace, made empty (they are not backed up)."""
    made = []
    for source in load_config(workspace.config_path).sources:
        raw = source.options.get("path")
        if source.kind != "maildir" or not isinstance(raw, str) or Path(raw).is_absolute():
            continue
        for sub in ("new", "cur", "tmp"):
            (workspace.root / raw / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        made.append(raw)
    return made


async def backup(runner: _Runner) -> int:
    dest = Path(runner.args.dest).expanduser().absolute()
    manifest = await asyncio.to_thread(make_backup, runner.workspace, dest)
    audit = manifest["audit"]
    async with await Store.open(runner.workspace.store_path) as store, store.write() as db:
        event = {"entries": audit["entries"], "head": audit["head"], "schema": manifest["schema"]}
        await audit_log.append(
            db, [audit_log.AuditEvent(audit_log.SYSTEM, "backup-made", None, event)]
        )
    print(
        f"Backed up to {dest}: store (schema {manifest['schema']}, still encrypted), config,"
        f" {MANIFEST}; audit chain intact, {audit['entries']} entries, head {audit['head']}"
    )
    if manifest["secrets_not_included"]:
        print("Not included (keep them apart, e.g. in a password manager):")
        for line in manifest["secrets_not_included"]:
            print(f"  {line}")
    return 0


async def restore(runner: _Runner) -> int:
    source = Path(runner.args.source).expanduser().absolute()
    workspace = runner.workspace
    manifest = await asyncio.to_thread(restore_files, source, workspace)
    try:
        async with await Store.open(workspace.store_path) as store, store.write() as db:
            # The engine that held the backed-up store is not this one.
            await db.execute("DELETE FROM engine_lease")
            schema = await store.schema_version()
    except StoreError:
        workspace.store_path.unlink(missing_ok=True)
        workspace.config_path.unlink(missing_ok=True)
        raise
    made = await asyncio.to_thread(_make_maildirs, workspace)
    await asyncio.to_thread(make_private, workspace)
    migrated = f", migrated to schema {schema}" if schema != manifest["schema"] else ""
    print(
        f"Restored the backup of {manifest['created_at']} into {workspace.root}{migrated};"
        f" audit chain intact, {manifest['audit']['entries']} entries"
    )
    if manifest["secrets_not_included"]:
        print("Put back the secrets the config reads (they are never in a backup):")
        for line in manifest["secrets_not_included"]:
            print(f"  {line}")
    if made:
        print(f"Made the empty Maildir folder(s) it reads: {', '.join(made)}")
    print("Then run `sgalert doctor`.")
    return 0


COMMANDS: tuple[Entry, ...] = (
    Command(
        "backup",
        "copy the store (consistent while the engine runs; still encrypted) and the config",
        backup,
        (Argument("dest", help="a new folder for the backup (it must not exist, or be empty)"),),
    ),
    Command(
        "restore",
        "make a new workspace (--workspace NEW) from a backup; never overwrites one",
        restore,
        (Argument("source", metavar="SRC", help="a folder made by `sgalert backup`"),),
    ),
)
