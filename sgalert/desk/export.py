"""Writing a decrypted copy out of the sealed store: a safe name, a private file, no half-files.

A copy leaves the encryption that protects everything else, so it is written only where the
person asked, readable by them alone (mode 0600 from its first byte), and atomically: written
in full, flushed and synced into a file with no name yet (Linux's ``O_TMPFILE``; elsewhere a
hidden temporary file in the same folder), then given its name, so a crash leaves either no copy
or the whole one. An existing file is replaced only when the caller says so; otherwise the name
is given by a hard link, which fails rather than replace a file that appeared in the meantime.
:class:`StagedCopy` splits writing from placing, so a caller can place the copy inside the
transaction that records it and take it back if that does not commit.

Errors never name the path: it may hold an attachment's filename, which may name a child. Every
OSError becomes :class:`ExportError` naming only its class ("file name too long").
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from sgalert.errors import AlreadyExists, ExportError, InvalidInput
from sgalert.records.store import is_store_file

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
    current folder. It looks at the file system: call it from a worker thread in a UI."""
    configured = os.environ.get("XDG_DOWNLOAD_DIR")
    if configured and os.path.isdir(Path(configured).expanduser()):
        return Path(configured).expanduser()
    downloads = (home or Path.home()) / "Downloads"
    return downloads if os.path.isdir(downloads) else Path.cwd()


def proposed_name(ref: str, index: int, filename: str) -> str:
    """The case reference, then the attachment's own name made safe: ``SG-2026-0042-notice.pdf``."""
    return f"{ref}-{safe_filename(filename, fallback=f'attachment-{index + 1}')}"


class StagedCopy:
    """One private copy, written first and put in place after: a caller that must record the
    copy (the service audits every export) places it inside the transaction that records it,
    and takes it back if that transaction does not commit.

    Use it in this order, each step a blocking call for a worker thread:

    - :meth:`write` checks the target and writes the bytes, flushed and synced, into a file no
      one can open by name yet;
    - :meth:`place` puts that file at the target: a hard link (or, to replace a file, a rename),
      so quick enough to run inside a write transaction. A file it replaces is kept aside;
    - :meth:`unplace`, only if the record failed: removes the placed copy and restores the file
      it replaced;
    - :meth:`discard`, always: releases what is left (the unplaced file, the replaced file).

    Where Linux offers it (``O_TMPFILE`` and ``/proc``), the written file has no name at all
    until it is placed, so a crash before then leaves nothing on disk. Elsewhere it is a hidden
    ``.sgalert-<random>.part`` file (mode 0600) in the target's folder, which a crash at the
    wrong moment can leave behind; so can one in the instant a replacing copy is renamed into
    place. A file being replaced is kept aside as ``.sgalert-<random>.old`` until
    :meth:`discard`.
    """

    def __init__(self, path: Path, *, overwrite: bool = False, store: Path | None = None) -> None:
        self.target = path.expanduser()
        self.overwrite = overwrite
        self.store = store  # sgalert's store: never written over, even with ``overwrite``
        self.placed = False
        self.replaced = False  # whether placing it replaced a file that was there
        self._anonymous: int | None = None  # the O_TMPFILE descriptor, held until discarded
        self._temporary: Path | None = None
        self._aside: Path | None = None
        self._file_id: tuple[int, int] | None = None  # (device, inode) of the copy

    @property
    def folder(self) -> Path:
        return self.target.parent

    def write(self, data: bytes) -> None:
        """Check the target, then write ``data`` where nobody can see it yet (mode 0600).

        Raises :class:`InvalidInput` for a folder, a path without a file name, or one where
        something other than a regular file is (a device, a pipe, a link, or sgalert's store:
        even with ``overwrite``), :class:`AlreadyExists` for a taken name unless ``overwrite``,
        :class:`ExportError` for a missing folder, one that takes no new file, or a failed
        write.
        """
        target = self.target
        if not target.name or target.name in (".", ".."):
            raise InvalidInput("the copy needs a file name, not a folder")
        with _os_errors("could not write the copy"):
            if not self.folder.is_dir():
                raise ExportError("the folder chosen for the copy does not exist")
            taken = self._check_target()
            try:
                descriptor = self._anonymous = _open_anonymous(self.folder)
                if descriptor is None:
                    temporary = self.folder / f".sgalert-{secrets.token_hex(8)}.part"
                    descriptor = os.open(temporary, _CREATE_FLAGS, 0o600)
                    self._temporary = temporary
            except OSError as exc:
                raise _cannot_create(exc) from None  # before 'already exists': see /proc
            try:
                if taken and not self.overwrite:
                    raise _taken()  # discard() removes the temporary file
                if hasattr(os, "fchmod"):
                    os.fchmod(descriptor, 0o600)  # the umask may only take bits away; be explicit
                view = memoryview(data)
                while view:
                    written = os.write(descriptor, view)
                    view = view[written:]
                os.fsync(descriptor)
                found = os.fstat(descriptor)
                self._file_id = (found.st_dev, found.st_ino)
            finally:
                if descriptor != self._anonymous:
                    os.close(descriptor)

    def place(self) -> None:
        """Put the written copy at the target; the folder is synced so the name is durable.

        Never replaces a file unless ``overwrite``: then the replaced file is kept aside until
        :meth:`discard` (or restored by :meth:`unplace`).
        """
        if self._file_id is None or self.placed:
            raise RuntimeError("place() needs a written, unplaced copy")
        try:
            with _os_errors("could not write the copy"):
                if self.overwrite:
                    self._set_aside()
                    if self._anonymous is not None:
                        named = self.folder / f".sgalert-{secrets.token_hex(8)}.part"
                        _name_anonymous(self._anonymous, named)
                        self._temporary = named
                    assert self._temporary is not None
                    os.replace(self._temporary, self.target)
                    self._temporary = None
                elif self._anonymous is not None:
                    _name_anonymous(self._anonymous, self.target)
                else:
                    assert self._temporary is not None
                    _link_or_rename(self._temporary, self.target)  # discard() removes it
                self.placed = True
        except BaseException:
            with contextlib.suppress(OSError):  # if it fails, discard() keeps the file aside
                self._restore_aside()
            raise
        _sync_folder(self.folder)

    def unplace(self) -> None:
        """Take a placed copy back and restore the file it replaced (a failed record must leave
        no unrecorded copy). Safe to call when nothing was placed."""
        with _os_errors("the copy was written but could not be removed again; delete it"):
            if self.placed and self._aside is None and self._is_ours(self.target):
                os.unlink(self.target)
            self.placed = False
            self._restore_aside()
        _sync_folder(self.folder)

    def discard(self) -> None:
        """Release what is left: the unnamed or temporary file, and once the copy is in place
        the replaced file kept aside. Never raises: after a placed copy was recorded, nothing
        here may undo it. A replaced file that could not be restored is left, hidden, rather
        than lost."""
        descriptor, self._anonymous = self._anonymous, None
        if descriptor is not None:
            with contextlib.suppress(OSError):
                os.close(descriptor)
        leftovers = [self._temporary, self._aside if self.placed else None]
        for leftover in leftovers:
            if leftover is not None:
                with contextlib.suppress(OSError):
                    leftover.unlink(missing_ok=True)
        self._temporary = None
        if self.placed:
            self._aside = None

    def _check_target(self) -> bool:
        """Whether a regular file is at the target; anything else that is there is refused, and
        so is the store (or a file SQLite keeps beside it), even where nothing is yet."""
        if self.store is not None and is_store_file(self.store, self.target):
            raise InvalidInput(
                "the path chosen for the copy is sgalert's own store, which the copy would"
                " replace; nothing written: choose another file name"
            )
        try:
            found = self.target.lstat()
        except FileNotFoundError:
            return False
        _refuse_unless_regular(found)
        return True

    def _set_aside(self) -> None:
        """Keep the file at the target under a hidden name until the copy is recorded."""
        if not self._check_target():  # it may have changed since write() looked
            return
        aside = self.folder / f".sgalert-{secrets.token_hex(8)}.old"
        try:
            os.link(self.target, aside, follow_symlinks=False)  # a link itself, not its target
        except (OSError, NotImplementedError):
            os.rename(self.target, aside)  # no hard links here: move it aside instead
        self._aside = aside
        self.replaced = True

    def _restore_aside(self) -> None:
        """Put the replaced file back at the target (over the copy, if it was placed)."""
        if self._aside is not None:
            os.replace(self._aside, self.target)
            self._aside = None

    def _is_ours(self, path: Path) -> bool:
        try:
            found = path.lstat()
        except FileNotFoundError:
            return False
        return (found.st_dev, found.st_ino) == self._file_id


def write_private_file(
    path: Path, data: bytes, *, overwrite: bool = False, store: Path | None = None
) -> Path:
    """Write ``data`` to ``path`` atomically, readable by its owner only (mode 0600).

    Raises :class:`AlreadyExists` if something is at ``path`` and ``overwrite`` is false, and
    :class:`ExportError` if the folder is missing or the write fails; nothing is left behind.
    Never over ``store`` or its companion files. A caller that records the copy uses
    :class:`StagedCopy` to place it inside its transaction.
    """
    copy = StagedCopy(path, overwrite=overwrite, store=store)
    try:
        copy.write(data)
        copy.place()
    finally:
        copy.discard()
    return copy.target


_CREATE_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
_PROC_FD = Path("/proc/self/fd")
# What open(O_TMPFILE) answers where the kernel or the file system has no unnamed files.
_NO_ANONYMOUS_FILES = frozenset({errno.EISDIR, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL})


def _open_anonymous(folder: Path) -> int | None:
    """An unnamed file in ``folder`` (Linux's ``O_TMPFILE``), or None where there is none.

    Without ``O_EXCL``, so that it can be given a name later through ``/proc/self/fd``.
    """
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or not _PROC_FD.is_dir():
        return None
    try:
        return os.open(folder, flag | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as exc:
        if exc.errno in _NO_ANONYMOUS_FILES:
            return None
        raise


def _name_anonymous(descriptor: int, target: Path) -> None:
    """Give the unnamed file open as ``descriptor`` the name ``target``; fails rather than
    replace a file that appeared since the check.

    ``/proc/self/fd/N`` is a symbolic link that must be followed, which only ``linkat`` with
    ``AT_SYMLINK_FOLLOW`` does; Python calls that (rather than ``link``) only when given a
    folder descriptor.
    """
    folder = os.open(target.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.link(_PROC_FD / str(descriptor), target.name, dst_dir_fd=folder, follow_symlinks=True)
    except FileExistsError:
        raise _taken() from None
    finally:
        os.close(folder)


def _link_new(source: Path, target: Path) -> None:
    """A new name for ``source``; fails rather than replace a file that appeared since the
    check."""
    try:
        os.link(source, target)
    except FileExistsError:
        raise _taken() from None


def _link_or_rename(temporary: Path, target: Path) -> None:
    """Give a named temporary file the target's name, never over a file that appeared since
    the check; a file system without hard links (FAT, some network shares) gets a check, then
    a rename."""
    try:
        _link_new(temporary, target)
    except AlreadyExists:
        raise
    except OSError:
        if os.path.lexists(target):
            raise _taken() from None
        os.replace(temporary, target)


# What is at a path that is neither a folder nor a regular file, in words.
_KINDS = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
    (stat.S_ISFIFO, "a pipe"),
    (stat.S_ISSOCK, "a socket"),
)


def _refuse_unless_regular(found: os.stat_result) -> None:
    """Only a regular file is ever replaced: a copy put in place of a device (``/dev/full``),
    a pipe or a link would replace that node itself, even with ``overwrite``."""
    if stat.S_ISDIR(found.st_mode):
        raise InvalidInput("the path chosen for the copy is a folder; add a file name")
    if not stat.S_ISREG(found.st_mode):
        kind = next((word for test, word in _KINDS if test(found.st_mode)), "not a file")
        raise InvalidInput(
            f"the path chosen for the copy is {kind}, not a regular file; nothing written:"
            " choose a file name"
        )


def _cannot_create(exc: OSError) -> ExportError:
    """No new file could be made in the folder: say so, not the bare reason (``/proc`` answers
    'no such file or directory' about a folder that is plainly there)."""
    if exc.errno in (errno.EACCES, errno.EPERM):
        why = "no permission to create files in that folder"
    elif exc.errno == errno.EROFS:
        why = "that folder is on a read-only file system"
    elif exc.errno == errno.ENOSPC:
        why = "the disk is full"
    elif exc.errno == errno.ENOENT:
        why = "that folder does not take new files (a system folder, like /proc?)"
    else:
        why = f"no file could be made in that folder ({os_error_reason(exc)})"
    return ExportError(f"cannot write the copy there: {why}; nothing written")


def _taken() -> AlreadyExists:
    return AlreadyExists("a file already exists where the copy would go; nothing written")


def os_error_reason(exc: OSError) -> str:
    """What went wrong, in words that hold no path: ``file name too long``, ``permission
    denied``. An OSError's own text and attributes carry the path, which may name a child."""
    if exc.errno is not None:
        with contextlib.suppress(ValueError):
            return os.strerror(exc.errno).lower()
    return type(exc).__name__


@contextlib.contextmanager
def _os_errors(doing: str) -> Iterator[None]:
    """Turn any OSError into :class:`ExportError` that names the class of failure, never the
    path (the original is suppressed from tracebacks too)."""
    try:
        yield
    except OSError as exc:
        raise ExportError(f"{doing} ({os_error_reason(exc)})") from None


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
