"""``sgalert backup`` while the engine runs, and ``sgalert restore`` into a new workspace, then a
person unlocks and opens a case there (issue 15). Real store files, the real CLI in a subprocess,
the real engine paging through the maildrop channel, cases being written during the backup."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sgalert.desk.service import CaseService
from sgalert.engine.serve import Engine
from sgalert.workspace import CONFIG_NAME, STORE_NAME, Workspace, resolve_workspace

from .conftest import PASSPHRASES, Team, encompass_case, store_file_bytes

pytestmark = pytest.mark.slow

CHILD = "Florence Testchild-Invented"
SMTP_SECRET = "invented-smtp-secret-7Q2"


async def sgalert(workspace: Path, *args: str) -> tuple[int, str, str]:
    """The command line, as a user runs it, in its own process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGALERT_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sgalert",
        "--workspace",
        str(workspace),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@contextlib.asynccontextmanager
async def engine_running(workspace: Workspace) -> AsyncIterator[None]:
    service = await CaseService.open(workspace)
    task = asyncio.create_task(Engine(service, workspace.root, watch=False).run())
    try:
        for _ in range(100):  # until its first heartbeat
            if await service.engine_lease() is not None:
                break
            await asyncio.sleep(0.05)
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await service.close()


async def test_a_backup_taken_while_the_engine_runs_restores_and_a_case_opens(
    team: Team, workspace: Workspace, tmp_path: Path
) -> None:
    (stored,) = await team.service.create_cases([encompass_case(CHILD)])
    backup = tmp_path / "backup"
    async with engine_running(workspace):
        writing = True

        async def keep_writing() -> int:
            written = 0
            while writing:
                await team.service.create_cases([encompass_case(f"Other Invented {written}")])
                written += 1
            return written

        writer = asyncio.create_task(keep_writing())
        await asyncio.sleep(0.3)
        code, out, err = await sgalert(workspace.root, "backup", str(backup))
        writing = False
        assert await writer > 0
    assert code == 0, err
    assert out.startswith(f"Backed up to {backup}: store (schema ")
    assert sorted(p.name for p in backup.iterdir()) == sorted(
        ["MANIFEST.json", CONFIG_NAME, STORE_NAME]
    )
    assert {oct(p.stat().st_mode & 0o777) for p in [backup, *backup.iterdir()]} == {
        "0o700",
        "0o600",
    }
    assert CHILD.encode() not in (backup / STORE_NAME).read_bytes()  # still sealed

    restored = tmp_path / "restored"
    code, out, err = await sgalert(restored, "restore", str(backup))
    assert code == 0, err
    assert "audit chain intact" in out
    assert "Made the empty Maildir folder(s) it reads: inbox/encompass" in out
    assert (restored / "inbox" / "encompass" / "new").is_dir()

    service = await CaseService.open(resolve_workspace(restored))
    try:
        dsl = await service.unlock("dsl@example.org", PASSPHRASES["dsl@example.org"])
        view = await service.open_case(dsl, stored.ref)
        assert view.facts["child_name"] == CHILD
        assert await service.engine_lease() is None  # the old engine's lease stays behind
        assert await service.verify_audit() > 0
    finally:
        await service.close()
    assert oct(restored.stat().st_mode & 0o777) == "0o700"


async def test_restore_never_overwrites_a_workspace(
    team: Team, workspace: Workspace, tmp_path: Path
) -> None:
    backup = tmp_path / "backup"
    assert (await sgalert(workspace.root, "backup", str(backup)))[0] == 0
    before = store_file_bytes(workspace.store_path)
    code, _, err = await sgalert(workspace.root, "restore", str(backup))
    assert code == 1
    assert err == (
        f"sgalert: {workspace.root} already holds a workspace ({CONFIG_NAME}); restore into a"
        " new folder (--workspace NEW), nothing was changed\n"
    )
    assert store_file_bytes(workspace.store_path) == before
    code, _, err = await sgalert(workspace.root, "backup", str(backup))
    assert (code, err) == (
        1,
        f"sgalert: {backup} already exists; give a new folder for the backup\n",
    )


async def test_a_damaged_backup_is_refused(
    team: Team, workspace: Workspace, tmp_path: Path
) -> None:
    backup = tmp_path / "backup"
    assert (await sgalert(workspace.root, "backup", str(backup)))[0] == 0
    with (backup / STORE_NAME).open("r+b") as handle:
        handle.seek(5000)
        byte = handle.read(1)
        handle.seek(5000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    code, _, err = await sgalert(tmp_path / "new", "restore", str(backup))
    assert code == 1
    assert err == (
        f"sgalert: {backup}/{STORE_NAME} is missing or differs from the manifest; the backup is"
        " damaged: use another\n"
    )
    assert not (tmp_path / "new" / STORE_NAME).exists()


_CRASH_WITH_A_WAL = """
import os, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode = WAL")
for n in range(30):
    db.execute(f"CREATE TABLE t{n} (x)")
    db.execute(f"INSERT INTO t{n} VALUES (randomblob(5000))")
os._exit(0)  # as a crash: the write-ahead log stays, full of committed pages
"""


def leave_a_foreign_wal(folder: Path) -> Path:
    """The write-ahead log of another store, in ``folder`` where sgalert's store would go: as
    after `rm sgalert.db sgalert.toml` on a workspace whose engine had crashed."""
    other = folder.parent / "other.db"
    subprocess.run([sys.executable, "-c", _CRASH_WITH_A_WAL, str(other)], check=True)
    folder.mkdir(mode=0o700, exist_ok=True)
    wal = folder / f"{STORE_NAME}-wal"
    os.replace(f"{other}-wal", wal)
    return wal


@pytest.mark.parametrize("command", ["restore", "init"])
async def test_a_write_ahead_log_left_by_another_store_is_refused(
    team: Team, workspace: Workspace, tmp_path: Path, command: str
) -> None:
    """A restore beside another store's write-ahead log said 'audit chain intact', then the
    store it made held that other store's pages: its audit log read as deleted, every record
    gone. `init` took the same pages into the new store."""
    backup = tmp_path / "backup"
    assert (await sgalert(workspace.root, "backup", str(backup)))[0] == 0
    target = tmp_path / "new"
    wal = leave_a_foreign_wal(target)
    args = ("restore", str(backup)) if command == "restore" else ("init",)
    code, out, err = await sgalert(target, *args)
    assert (code, out) == (1, ""), err
    assert err == (
        f"sgalert: {wal} is left from a store that is no longer there; SQLite would read it"
        " into the new one: move it away (keep it with that store if it matters), nothing"
        " was changed\n"
    )
    assert sorted(p.name for p in target.iterdir()) == [wal.name]
    wal.unlink()
    assert (await sgalert(target, *args))[0] == 0
    assert (await sgalert(target, "audit", "verify"))[0] == 0


async def test_the_config_is_backed_up_and_the_secrets_never_are(
    team: Team, workspace: Workspace, tmp_path: Path
) -> None:
    secret = workspace.root / "smtp-password"
    secret.write_text(SMTP_SECRET)
    secret.chmod(0o600)
    config = workspace.config_path.read_text(encoding="utf-8") + (
        '\n[channels.mail]\nkind = "smtp"\nhost = "127.0.0.1"\nport = 2525\nsecurity = "none"\n'
        'from = "sgalert@school.example.org"\nusername = "sgalert"\n'
        'password_file = "smtp-password"\n'
    )
    workspace.config_path.write_text(config, encoding="utf-8")
    backup = tmp_path / "backup"
    code, out, err = await sgalert(workspace.root, "backup", str(backup))
    assert code == 0, err
    assert out.splitlines()[1:] == [
        "Not included (keep them apart, e.g. in a password manager):",
        '  channels.mail.password_file = "smtp-password"',
    ]
    for path in backup.iterdir():
        assert SMTP_SECRET.encode() not in path.read_bytes()
    assert (backup / CONFIG_NAME).read_text(encoding="utf-8") == config
    manifest = json.loads((backup / "MANIFEST.json").read_text())
    assert manifest["secrets_not_included"] == ['channels.mail.password_file = "smtp-password"']
    with sqlite3.connect(workspace.store_path) as db:
        (action, detail) = db.execute(
            "SELECT action, detail FROM audit ORDER BY seq DESC LIMIT 1"
        ).fetchone()
    db.close()
    assert action == "backup-made"
    assert json.loads(detail)["head"] == manifest["audit"]["head"]

    restored = tmp_path / "restored"
    code, out, err = await sgalert(restored, "restore", str(backup))
    assert code == 0, err
    assert "Put back the secrets the config reads (they are never in a backup):" in out
    assert not (restored / "smtp-password").exists()
