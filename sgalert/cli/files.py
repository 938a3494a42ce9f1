"""Files and folders a person names on the command line (``digest --html FILE``, ``backup DEST``,
``--workspace DIR`` for ``init``): written whole or not at all, and when the file system says no,
one line that names what is in the way instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path

from sgalert.errors import ExportError, InvalidInput


def write_output(path: Path, data: bytes, *, option: str) -> Path:
    """``data`` at ``path``, replacing a regular file there: atomically, mode 0600, and never
    over a folder, a device, a pipe or a link (see
    :func:`sgalert.desk.export.write_private_file`). Refusals name ``option`` and the path."""
    from sgalert.desk.export import write_private_file

    try:
        return write_private_file(path, data, overwrite=True)
    except (InvalidInput, ExportError) as exc:
        raise type(exc)(f"{option} {path}: {exc}") from None
