"""The command line and the file system: what it writes where a person asks, what it reads, and
the workspace it opens, when any of them is not what it should be.

Run as a person runs it: a real subprocess on a real workspace. A copy or a digest never
replaces a device, a pipe or a link, and is private (0600) when written; ``ingest`` reads no
further than the config's message size; a read-only workspace says so; ``init``, ``backup`` and
``digest --html`` refused by the file system say what is in the way in one line, and leave
nothing half-made behind.
"""

from __future__ import annotations

import os
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sgalert.workspace import CONFIG_NAME, STORE_NAME

from .cli_helpers import sgalert_cli
from .conftest import PASSPHRASES, Team, encompass_case

pytestmark = pytest.mark.slow

MESSAGES = Path(__file__).parent / "messages"
PROC_FILE = Path("/proc/version")  # a regular file in a folder that takes no new file
needs_proc = pytest.mark.skipif(not PROC_FILE.is_file(), reason="no /proc on this system")
ReadOnly = Callable[[Path], tuple[str, ...]]


def one_clear_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode not in (0, 120), result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sgalert: ")
    return lines[0]


def _special(kind: str, path: Path) -> Callable[[int], bool]:
    """Make a ``kind`` of thing that is not a regular file at ``path``; its test on st_mode."""
    if kind == "pipe":
        os.mkfifo(path)
        return stat.S_ISFIFO
    if kind == "link":
        path.symlink_to(path.with_name("elsewhere"))
        return stat.S_ISLNK
    if os.geteuid() != 0:
        pytest.skip("only root may make a device node (the case of `--out /dev/full`)")
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 7))  # a /dev/full of our own
    return stat.S_ISCHR


@pytest.fixture
def initialised(tmp_path: Path) -> Path:
    """A workspace made by `sgalert init`, with nobody in it yet."""
    root = tmp_path / "ws"
    made = sgalert_cli(root, "init")
    assert made.returncode == 0, made.stderr
    return root


@pytest.fixture
def read_only() -> Iterator[ReadOnly]:
    """Make a folder or file read-only to the sgalert command: by its mode for a normal user,
    and for root (whom modes do not stop) by a read-only bind mount in a mount namespace of
    its own, given as the command's wrapper; skipped where neither can be had."""
    modes: list[tuple[Path, int]] = []

    def make(path: Path) -> tuple[str, ...]:
        if os.geteuid() != 0:
            for place in [path, *(path.rglob("*") if path.is_dir() else [])]:
                mode = stat.S_IMODE(place.stat().st_mode)
                modes.append((place, mode))
                place.chmod(0o500 if place.is_dir() else 0o400)
            return ()
        script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
        wrapper = ("unshare", "--map-root-user", "--mount", "sh", "-c", script, str(path))
        try:
            probe = subprocess.run([*wrapper, "true"], capture_output=True, timeout=30)
        except FileNotFoundError:
            probe = None
        if probe is None or probe.returncode != 0:
            pytest.skip("running as root, and no mount namespace for a read-only bind mount")
        return wrapper

    yield make
    for place, mode in reversed(modes):
        place.chmod(mode)


# ----- a decrypted copy goes only into a regular file ---------------------------------------


@pytest.mark.parametrize("kind", ["pipe", "link", "device"])
@pytest.mark.parametrize("overwrite", [False, True])
async def test_a_copy_never_replaces_a_device_a_pipe_or_a_link(
    team: Team, tmp_path: Path, kind: str, overwrite: bool
) -> None:
    """`case attachment --out /dev/full --overwrite` replaced the device with the copy."""
    (stored,) = await team.service.create_cases([encompass_case()])
    node = tmp_path / "node"
    still = _special(kind, node)
    result = sgalert_cli(
        team.service.store.path.parent,
        *("case", "attachment", stored.ref, "1", "--out", str(node)),
        *(("--overwrite",) if overwrite else ()),
        *("--as", "dsl@example.org"),
        passphrase=PASSPHRASES["dsl@example.org"],
    )
    assert "not a regular file" in one_clear_line(result)
    assert still(node.lstat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node", "ws"]


@needs_proc
@pytest.mark.parametrize("overwrite", [False, True])
async def test_a_copy_into_a_folder_that_takes_no_file_says_so(team: Team, overwrite: bool) -> None:
    """`--out /proc/version` said 'already exists', then with --overwrite 'no such file'."""
    (stored,) = await team.service.create_cases([encompass_case()])
    result = sgalert_cli(
        team.service.store.path.parent,
        *("case", "attachment", stored.ref, "1", "--out", str(PROC_FILE)),
        *(("--overwrite",) if overwrite else ()),
        *("--as", "dsl@example.org"),
        passphrase=PASSPHRASES["dsl@example.org"],
    )
    line = one_clear_line(result)
    assert "cannot write the copy there" in line and "does not take new files" in line


async def test_a_copy_over_a_file_is_private(team: Team, tmp_path: Path) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    out = tmp_path / "notice.pdf"
    out.write_bytes(b"older")
    out.chmod(0o644)
    result = sgalert_cli(
        team.service.store.path.parent,
        *("case", "attachment", stored.ref, "1", "--out", str(out), "--overwrite"),
        *("--as", "dsl@example.org"),
        passphrase=PASSPHRASES["dsl@example.org"],
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == b"%PDF-1.7 invented"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


# ----- digest --html ------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["folder", "missing folder", "pipe", "system folder"])
def test_digest_html_where_it_cannot_go(initialised: Path, tmp_path: Path, where: str) -> None:
    """A folder or a missing folder was a traceback; a pipe was written into, /dev/full failed
    with a traceback."""
    if where == "system folder" and not PROC_FILE.parent.is_dir():
        pytest.skip("no /proc on this system")
    target = {
        "folder": tmp_path,
        "missing folder": tmp_path / "no-such-folder" / "digest.html",
        "pipe": tmp_path / "pipe",
        "system folder": PROC_FILE.parent / "digest.html",
    }[where]
    if where == "pipe":
        os.mkfifo(target)
    line = one_clear_line(sgalert_cli(initialised, "digest", "--html", str(target)))
    assert f"--html {target}:" in line


def test_digest_html_replaces_a_file_with_a_private_one(initialised: Path, tmp_path: Path) -> None:
    """Writing over an existing 0644 file kept it readable by everyone."""
    out = tmp_path / "digest.html"
    out.write_text("an older digest")
    out.chmod(0o644)
    result = sgalert_cli(initialised, "digest", "--html", str(out))
    assert result.returncode == 0, result.stderr
    assert "<html" in out.read_text().lower()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


# ----- never over the store itself ----------------------------------------------------------


def _store_named(root: Path, how: str) -> Path:
    """The workspace's store as a person might name it: itself, another name for the same file
    (a hard link), or the write-ahead log beside it."""
    store = root / STORE_NAME
    if how == "hard link":
        os.link(store, root.parent / "same-file.db")
        return root.parent / "same-file.db"
    return store.with_name(STORE_NAME + "-wal") if how == "write-ahead log" else store


@pytest.mark.parametrize("how", ["store", "hard link", "write-ahead log"])
def test_digest_html_never_replaces_the_store(initialised: Path, how: str) -> None:
    """`digest --html sgalert.db` replaced the store with the digest and said it had written
    it: every case was gone, and the store read as 'not an sgalert store'."""
    target = _store_named(initialised, how)
    line = one_clear_line(sgalert_cli(initialised, "digest", "--html", str(target)))
    assert f"--html {target}:" in line and "sgalert's own store" in line
    listed = sgalert_cli(initialised, "cases", "list")
    assert listed.returncode == 0 and "No cases." in listed.stdout, listed.stderr


async def test_a_copy_never_replaces_the_store_in_use(team: Team) -> None:
    """`case attachment REF 1 --out sgalert.db --overwrite` replaced the store that this
    process (as an engine would) had open: a new process found no store, and what this one
    wrote after went to a file no longer there."""
    (stored,) = await team.service.create_cases([encompass_case()])
    store = team.service.store.path
    result = sgalert_cli(
        store.parent,
        *("case", "attachment", stored.ref, "1", "--out", str(store), "--overwrite"),
        *("--as", "dsl@example.org"),
        passphrase=PASSPHRASES["dsl@example.org"],
    )
    assert "sgalert's own store" in one_clear_line(result)
    (later,) = await team.service.create_cases([encompass_case()])
    listed = sgalert_cli(store.parent, "cases", "list")
    assert listed.returncode == 0, listed.stderr
    assert stored.ref in listed.stdout and later.ref in listed.stdout


# ----- ingest reads no further than a message may be ---------------------------------------


def _limit_one_megabyte(root: Path) -> None:
    config = root / CONFIG_NAME
    text = config.read_text(encoding="utf-8")
    assert "max_message_mb = 25" in text
    config.write_text(text.replace("max_message_mb = 25", "max_message_mb = 1"), encoding="utf-8")


def test_ingest_refuses_a_device_without_reading_it(initialised: Path) -> None:
    """`ingest /dev/zero` read until the machine ran out of memory (21 GB)."""
    line = one_clear_line(
        sgalert_cli(initialised, "ingest", "/dev/zero", "--source", "encompass", timeout=30)
    )
    assert "/dev/zero: not a message file" in line


@pytest.mark.parametrize("content", [b"", b"\r\n \n"])
def test_ingest_refuses_an_empty_file(initialised: Path, tmp_path: Path, content: bytes) -> None:
    """An empty file (a save that failed, the wrong file) became a case with nothing in it."""
    empty = tmp_path / "notice.eml"
    empty.write_bytes(content)
    line = one_clear_line(sgalert_cli(initialised, "ingest", str(empty), "--source", "encompass"))
    assert line.endswith(f"{empty}: empty, not a message (give a file saved as .eml)")
    assert "No cases." in sgalert_cli(initialised, "cases", "list").stdout


def test_ingest_refuses_a_file_over_the_message_limit(initialised: Path, tmp_path: Path) -> None:
    _limit_one_megabyte(initialised)
    big = tmp_path / "big.eml"
    message = (MESSAGES / "encompass_pdf_only.eml").read_bytes()
    big.write_bytes(message + b"x" * (1 << 20))
    line = one_clear_line(sgalert_cli(initialised, "ingest", str(big), "--source", "encompass"))
    assert "over the 1 MB limit" in line and "max_message_mb" in line
    assert "No cases." in sgalert_cli(initialised, "cases", "list").stdout


def test_ingest_stops_reading_a_pipe_at_the_limit(initialised: Path, tmp_path: Path) -> None:
    """A pipe that never ends (`ingest <(yes)`) is read to one byte past the limit, then
    refused; the writer is told the reader has gone."""
    _limit_one_megabyte(initialised)
    pipe = tmp_path / "message"
    os.mkfifo(pipe)
    offered = 64 << 20
    written = 0

    def write() -> None:
        nonlocal written
        block = b"x" * (64 << 10)
        try:
            with pipe.open("wb") as handle:
                while written < offered:
                    handle.write(block)
                    written += len(block)
        except BrokenPipeError:
            pass

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        result = sgalert_cli(initialised, "ingest", str(pipe), "--source", "encompass")
    finally:
        if writer.is_alive():  # sgalert never opened it: let the writer go
            os.close(os.open(pipe, os.O_RDONLY | os.O_NONBLOCK))
        writer.join(timeout=30)
    line = one_clear_line(result)
    assert "over the 1 MB limit" in line
    assert written < 4 << 20  # it stopped reading at the limit, not at the end


@pytest.mark.parametrize("how", ["store", "hard link", "write-ahead log"])
def test_ingest_never_reads_the_store(initialised: Path, how: str) -> None:
    """`ingest sgalert.db` read the store as a message while it had the store open: closing
    that file dropped the command's own SQLite locks, so another process closing could delete
    the write-ahead log the command was about to commit to."""
    target = _store_named(initialised, how)
    if how == "write-ahead log":
        target.write_bytes(b"")  # as SQLite leaves it between checkpoints
    line = one_clear_line(sgalert_cli(initialised, "ingest", str(target), "--source", "encompass"))
    assert f"{target}: sgalert's own store, not a message" in line


# ----- a workspace that cannot be written ------------------------------------------------------


@pytest.mark.parametrize("what", ["folder", "store"])
@pytest.mark.parametrize("command", [("cases", "list"), ("status",)])
def test_a_read_only_workspace_says_so(
    initialised: Path, read_only: ReadOnly, what: str, command: tuple[str, ...]
) -> None:
    """A read-only folder was 'not an sgalert store'; a read-only store file was opened
    read-only and failed at the first write with a traceback."""
    wrapper = read_only(initialised if what == "folder" else initialised / STORE_NAME)
    line = one_clear_line(sgalert_cli(initialised, *command, wrapper=wrapper))
    assert "the workspace cannot be written" in line and str(initialised) in line
    assert "not an sgalert store" not in line


@pytest.mark.parametrize("what", ["folder", "store"])
def test_doctor_on_a_read_only_workspace_names_the_disk_not_a_backup(
    initialised: Path, read_only: ReadOnly, what: str
) -> None:
    """Doctor said to restore the latest backup, as if the store were damaged."""
    wrapper = read_only(initialised if what == "folder" else initialised / STORE_NAME)
    result = sgalert_cli(initialised, "doctor", wrapper=wrapper)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result
    (store_line,) = [line for line in result.stdout.splitlines() if line.startswith("FAIL store")]
    assert "the workspace cannot be written" in store_line
    assert "restore" not in store_line


def test_a_read_only_store_is_refused_before_a_write(
    initialised: Path, read_only: ReadOnly
) -> None:
    wrapper = read_only(initialised / STORE_NAME)
    message = str(MESSAGES / "encompass_pdf_only.eml")
    result = sgalert_cli(initialised, "ingest", message, "--source", "encompass", wrapper=wrapper)
    assert "the workspace cannot be written" in one_clear_line(result)


# ----- init and backup where the file system says no ----------------------------------------


def test_init_where_the_workspace_is_a_file(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    for root in (afile, afile / "ws"):
        line = one_clear_line(sgalert_cli(root, "init"))
        assert f"cannot make a workspace at {root}: {afile} is a file, not a folder" in line
    assert afile.read_text() == "not a folder"


def test_init_in_a_read_only_folder(tmp_path: Path, read_only: ReadOnly) -> None:
    parent = tmp_path / "parent"
    parent.mkdir()
    wrapper = read_only(parent)
    line = one_clear_line(sgalert_cli(parent / "ws", "init", wrapper=wrapper))
    assert f"cannot make a workspace at {parent / 'ws'}" in line
    assert list(parent.iterdir()) == []


@needs_proc
def test_init_in_a_system_folder(tmp_path: Path) -> None:
    line = one_clear_line(sgalert_cli(PROC_FILE.parent / "sgalert-ws", "init"))
    assert f"{PROC_FILE.parent} does not take new files or folders" in line


def test_init_failing_part_way_leaves_nothing_behind(tmp_path: Path) -> None:
    """A file where the inbox folder goes failed after the config was written: a traceback,
    and every later `init` said the folder already holds a workspace."""
    root = tmp_path / "ws"
    root.mkdir()
    (root / "inbox").write_text("in the way")
    line = one_clear_line(sgalert_cli(root, "init"))
    assert f"{root / 'inbox'} is a file, not a folder" in line
    assert [p.name for p in root.iterdir()] == ["inbox"]
    (root / "inbox").unlink()
    again = sgalert_cli(root, "init")
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize("where", ["under a file", "read-only folder", "system folder"])
def test_backup_where_it_cannot_go(
    initialised: Path, tmp_path: Path, read_only: ReadOnly, where: str
) -> None:
    wrapper: tuple[str, ...] = ()
    if where == "under a file":
        (tmp_path / "afile").write_text("not a folder")
        dest = tmp_path / "afile" / "backup"
    elif where == "read-only folder":
        (tmp_path / "usb").mkdir()
        wrapper = read_only(tmp_path / "usb")
        dest = tmp_path / "usb" / "sgalert" / "backup"
    else:
        if not PROC_FILE.parent.is_dir():
            pytest.skip("no /proc on this system")
        dest = PROC_FILE.parent / "sgalert-backup"
    line = one_clear_line(sgalert_cli(initialised, "backup", str(dest), wrapper=wrapper))
    assert f"cannot write the backup to {dest}:" in line
    assert [p for p in tmp_path.rglob("*") if "backup" in p.name or p.name == "sgalert"] == []


@pytest.mark.parametrize("where", ["under a file", "read-only folder", "system folder"])
def test_restore_where_it_cannot_go(
    initialised: Path, tmp_path: Path, read_only: ReadOnly, where: str
) -> None:
    """Restoring into a folder the file system refuses was a traceback."""
    backup = tmp_path / "backup"
    made = sgalert_cli(initialised, "backup", str(backup))
    assert made.returncode == 0, made.stderr
    wrapper: tuple[str, ...] = ()
    if where == "under a file":
        (tmp_path / "afile").write_text("not a folder")
        root = tmp_path / "afile" / "ws"
    elif where == "read-only folder":
        (tmp_path / "usb").mkdir()
        wrapper = read_only(tmp_path / "usb")
        root = tmp_path / "usb" / "ws"
    else:
        if not PROC_FILE.parent.is_dir():
            pytest.skip("no /proc on this system")
        root = PROC_FILE.parent / "sgalert-ws"
    line = one_clear_line(sgalert_cli(root, "restore", str(backup), wrapper=wrapper))
    assert f"cannot restore into {root}:" in line and "nothing was restored" in line
    if where != "system folder":
        assert not root.exists()


def test_restore_from_a_file_says_it_is_not_a_backup_folder(tmp_path: Path) -> None:
    """A file given as the backup (the store itself, a zip of the folder) said 'the backup is
    damaged', sending people to look for another."""
    afile = tmp_path / "sgalert-backup.zip"
    afile.write_bytes(b"PK\x03\x04")
    line = one_clear_line(sgalert_cli(tmp_path / "ws", "restore", str(afile)))
    assert line.endswith(f"{afile} is a file, not a backup (give the folder `backup` made)")
    assert not (tmp_path / "ws").exists()
