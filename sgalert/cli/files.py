"""Files and folders a person names on the command line (``digest --html FILE``, ``backup DEST``,
``--workspace DIR`` for ``init``): written whole or not at all, and when the file system says no,
one line that names what is in the way instead of a traceback.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from sgalert.errors import ExportError, InvalidInput, WorkspaceError
from sgalert.records.store import leftover_companions
from sgalert.workspace import Workspace


def write_output(path: Path, data: bytes, *, option: str, store: Path) -> Path:
    """``data`` at ``path``, replacing a regular file there: atomically, mode 0600, and never
    over a folder, a device, a pipe, a link or the ``store`` (see
    :func:`sgalert.desk.export.write_private_file`). Refusals name ``option`` and the path."""
    from sgalert.desk.export import write_private_file

    try:
        return write_private_file(path, data, overwrite=True, store=store)
    except (InvalidInput, ExportError) as exc:
        raise type(exc)(f"{option} {path}: {exc}") from None


def cannot_make(path: Path, exc: OSError) -> str:
    """Why a file or folder at or under ``path`` could not be made, in words that name what is
    in the way: a file where a folder must be, a read-only disk, no permission, or a system
    folder (``/proc`` answers 'no such file or directory' about a folder that is there)."""
    where = Path(os.fsdecode(exc.filename)) if exc.filename else path
    for place in (where, *where.parents):
        if os.path.lexists(place) and not place.is_dir():
            return f"{place} is a file, not a folder"
    if exc.errno == errno.ENOENT and where.parent.is_dir():
        return f"{where.parent} does not take new files or folders"
    reason = os.strerror(exc.errno).lower() if exc.errno else type(exc).__name__
    return reason if where == path else f"{where}: {reason}"


def make_folder(folder: Path, mode: int = 0o700) -> list[Path]:
    """Make ``folder`` and any missing parents; returns the folders it made, outermost first,
    for :func:`remove_made` should a later step fail."""
    missing = []
    place = folder
    while not os.path.lexists(place) and place != place.parent:
        missing.append(place)
        place = place.parent
    folder.mkdir(mode=mode, parents=True, exist_ok=True)
    return missing[::-1]


def remove_made(made: Iterable[Path]) -> None:
    """Take back what a failed step made (files, and folders with all in them), newest first;
    best effort, as the step's own error is the one to report."""
    for path in reversed(list(made)):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass


def refuse_leftovers(workspace: Workspace) -> None:
    """A write-ahead log (or shared memory, or journal) left by a store that is no longer
    there: a new store made beside it would read that other store's pages, and say nothing."""
    leftovers = leftover_companions(workspace.store_path)
    if leftovers:
        raise WorkspaceError(
            f"{leftovers[0]} is left from a store that is no longer there; SQLite would read it"
            " into the new one: move it away (keep it with that store if it matters), nothing"
            " was changed"
        )
