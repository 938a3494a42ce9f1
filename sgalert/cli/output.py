"""Standard output that fails in one line: a full disk, an I/O error, or closed altogether.

``sgalert cases list > list.txt`` on a full disk was an ``OSError`` traceback from ``print``,
and with standard output closed (``sgalert status >&-``, as some schedulers start commands)
Python has no ``sys.stdout`` at all, so the first ``isatty()`` was an ``AttributeError``.
:func:`guard` puts a writer in its place that raises :class:`OutputFailed` (one line, exit 1)
at the first write that fails, then drops the rest so the exit's own flush is quiet. A reader
that has gone (``| head``) is still a ``BrokenPipeError``, which the command ends on quietly.
"""

from __future__ import annotations

import io
import os
import sys
from typing import TYPE_CHECKING

from sgalert.errors import OutputFailed

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

STDOUT = 1


class _Descriptor(io.RawIOBase):
    """File descriptor 1, whose write errors become :class:`OutputFailed`, said once."""

    def __init__(self, *, closed: bool) -> None:
        super().__init__()
        self._closed_at_start = closed
        self._failed = False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return STDOUT

    def isatty(self) -> bool:
        return not self._closed_at_start and os.isatty(STDOUT)

    def write(self, data: ReadableBuffer, /) -> int:
        size = memoryview(data).nbytes
        if self._failed:
            return size  # already said in one line; the rest goes nowhere
        if self._closed_at_start:
            self._failed = True
            raise OutputFailed("standard output is closed, so nothing could be shown")
        try:
            return os.write(STDOUT, data)
        except (BrokenPipeError, BlockingIOError):
            raise
        except OSError as exc:
            self._failed = True
            why = exc.strerror or type(exc).__name__
            raise OutputFailed(
                f"standard output could not be written ({why}), so what it shows is incomplete"
            ) from None


def guard() -> None:
    """Put the failing-in-one-line writer in place of the process's own standard output.

    Output someone else has redirected (a test's capture) is left alone. A closed descriptor 1
    is first pointed at /dev/null, so no file the command opens can take its number and
    receive what was meant for the screen.
    """
    real = sys.stdout
    if real is not None and real is not sys.__stdout__:
        return
    closed = real is None
    if real is None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        if devnull != STDOUT:
            os.dup2(devnull, STDOUT)
            os.close(devnull)
    else:
        real.flush()
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(_Descriptor(closed=closed)),
        encoding=real.encoding if real is not None else "utf-8",
        errors=real.errors if real is not None else "strict",
        line_buffering=real.line_buffering if real is not None else False,
    )
