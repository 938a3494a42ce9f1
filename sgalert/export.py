"""Writing a decrypted copy out of the sealed store: a safe name, a private file, no half-files.

A copy leaves the encryption that protects everything else, so it is written only where the
person asked, readable by them alone (mode 0600 from its first byte), and atomically: a temporary
file in the same folder, flushed and synced, then moved into place, so a crash leaves either no
copy or the whole one. An existing file is replaced only when the caller says so; otherwise the
move is a hard link, which fails rather than replace a file that appeared in the meantime.

Errors never name the path: it may hold an attachment's filename, which may name a child.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
import unicodedata
from pathlib import Path

from sgalert.errors import AlreadyExists, ExportError, InvalidInput

# Characters no proposed name keeps: path separators and what Windows and macOS refuse.
_FORBIDDEN = re.compile(r'[/\\:<>"|?*]')
_SPACES = re.compile(r"\s+")
# Control, format (bidi, zero-width), surrogate, private-use and unassigned code points, and the
# line and paragraph separators.
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL"}
    | {f"COM{n}" for n in range(1, 10)}
    | {f"LPT{n}" for n in range(1, 10)}
)
MAX_NAME_BYTES = 150


def safe_filename(name: str, *, fallback: str) -> str:
    """A filename made from an untrusted one: no path separators, no control or bidi characters,
    no leading dot (so never hidden, never ``..``), at most ``MAX_NAME_BYTES`` bytes of UTF-8
    with the extension kept. ``fallback`` (which must itself be safe) stands in for a name
    with nothing usable left."""
    text = unicodedata.normalize("NFC", name)
    text = "".join(c for c in text if unicodedata.category(c) not in _DROPPED_CATEGORIES)
    text = _FORBIDDEN.sub("_", text)
    text = _SPACES.sub(" ", text).strip(" .")
    stem, dot, extension = text.rpartition(".")
    if not dot or not stem or len(extension) > 12 or not extension.isalnum():
        stem, extension = text, ""
    room = MAX_NAME_BYTES - len(extension.encode()) - (1 if extension else 0)
    stem = stem.encode()[:room].decode("utf-8", "ignore").rstrip(" .")
    if not stem:
        return fallback
    if stem.split(".")[0].upper() in _WINDOWS_RESERVED:
        stem = "_" + stem
    return f"{stem}.{extension}" if extension else stem


def default_directory(home: Path | None = None) -> Path:
    """Where a copy is proposed: the person's Downloads folder if there is one, else the
    current folder."""
    configured = os.environ.get("XDG_DOWNLOAD_DIR")
    if configured and Path(configured).expanduser().is_dir():
        return Path(configured).expanduser()
    downloads = (home or Path.home()) / "Downloads"
    return downloads if downloads.is_dir() else Path.cwd()


def proposed_name(ref: str, index: int, filename: str) -> str:
    """The case reference, then the attachment's own name made safe: ``SG-2026-0042-notice.pdf``."""
    return f"{ref}-{safe_filename(filename, fallback=f'attachment-{index + 1}')}"


def write_private_file(path: Path, data: bytes, *, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically, readable by its owner only (mode 0600).

    Raises :class:`AlreadyExists` if something is at ``path`` and ``overwrite`` is false, and
    :class:`ExportError` if the folder is missing or the write fails; nothing is left behind.
    """
    target = path.expanduser()
    if not target.name or target.name in (".", ".."):
        raise InvalidInput("the copy needs a file name, not a folder")
    folder = target.parent
    if not folder.is_dir():
        raise ExportError("the folder chosen for the copy does not exist")
    with contextlib.suppress(FileNotFoundError):
        found = target.lstat()
        if stat.S_ISDIR(found.st_mode):
            raise InvalidInput("the path chosen for the copy is a folder; add a file name")
        if not overwrite:
            raise AlreadyExists("a file already exists where the copy would go; nothing written")
    temporary = folder / f".sgalert-{secrets.token_hex(8)}.part"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        descriptor = os.open(temporary, flags, 0o600)
    except OSError as exc:
        raise ExportError(f"could not write the copy ({type(exc).__name__})") from None
    try:
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(descriptor, 0o600)  # the umask may only take bits away; be explicit
            view = memoryview(data)
            while view:
                written = os.write(descriptor, view)
                view = view[written:]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        _move_into_place(temporary, target, overwrite=overwrite)
    except OSError as exc:
        raise ExportError(f"could not write the copy ({type(exc).__name__})") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    _sync_folder(folder)
    return target


def _move_into_place(temporary: Path, target: Path, *, overwrite: bool) -> None:
    if overwrite:
        os.replace(temporary, target)
        return
    try:
        os.link(temporary, target)  # fails if a file appeared since the check: never clobbers
    except FileExistsError:
        raise AlreadyExists(
            "a file already exists where the copy would go; nothing written"
        ) from None
    except OSError:
        # A file system without hard links (FAT, some network shares): check, then rename.
        if os.path.lexists(target):
            raise AlreadyExists(
                "a file already exists where the copy would go; nothing written"
            ) from None
        os.replace(temporary, target)


def _sync_folder(folder: Path) -> None:
    """Make the new name durable too (best effort: not every platform can open a folder)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
