"""Case text never has to go on the command line.

Anything on a command line is visible to every local user (``ps``) and stays in shell history,
so the text of a phoned-in notice, a note, a decision's reason or a referral is read from
standard input when the option is ``-`` (``sgalert note SG-2026-0001 --as me --text - < note``,
or typed, ending with Ctrl-D). A value given on the command line that looks like personal data
(a name, a date, a phone number, an address, or simply free text) is refused unless
``--i-know-argv-is-visible`` says the person accepts the risk. A whistleblower's identity is
personal whatever it looks like: it goes in as ``reporter_name:`` and ``reporter_contact:``
lines on standard input, as does the caller of a whistleblowing line (``caller:``).
"""

from __future__ import annotations

import re
import sys

from sgalert.cli.spec import Argument
from sgalert.errors import InvalidInput

ARGV_OK = "--i-know-argv-is-visible"
ARGV_OK_ARGUMENT = Argument(
    ARGV_OK,
    dest="argv_visible_ok",
    flag=True,
    help="accept case text given on the command line, where other users can see it in ps",
)
FREE_TEXT_CHARS = 40
FREE_TEXT_WORDS = 3
# A fact whose name says it is about a person is personal whatever its value looks like.
PERSONAL_FACTS = re.compile(r"name|dob|birth|address|phone|reporter|child|pupil|teacher", re.I)
_NAME = re.compile(r"\b[A-Z][a-z'\u2019-]+\s+[A-Z][a-z'\u2019-]+")
_DATE = re.compile(r"\b\d{1,4}[/.-]\d{1,2}[/.-]\d{1,4}\b")
_DIGITS = re.compile(r"(?:\d[\s-]?){7,}")
_EMAIL = re.compile(r"\S+@\S+\.\S+")


def looks_personal(value: str) -> bool:
    """True for anything that may identify someone; deliberately errs towards True: free text of
    more than a few words, or a capitalised word after the first (a name), counts."""
    words = value.split()
    return bool(
        len(value) > FREE_TEXT_CHARS
        or len(words) > FREE_TEXT_WORDS
        or any(word[:1].isupper() for word in words[1:])
        or _NAME.search(value)
        or _DATE.search(value)
        or _DIGITS.search(value)
        or _EMAIL.search(value)
    )


STDIN_LIMIT = 1024 * 1024
"""The most case text standard input may hold: far more than anyone types or a call needs, and a
file bigger than this (a whole message) goes in with `sgalert ingest`."""


def read_stdin(what: str) -> str:
    """``what`` from standard input, as UTF-8 text of at most :data:`STDIN_LIMIT` bytes.

    A record's entries are signed and kept for years, so what is not text is refused before
    anything is stored: bytes that are not UTF-8 (a note saved as Windows-1252 became lone
    surrogates in the signed record) and binary files (a PDF piped by mistake). A byte-order mark
    (Notepad's) is dropped, and line endings read as the terminal's did (CRLF as one newline).
    """
    if sys.stdin is None:
        raise InvalidInput(f"standard input is closed: nothing to read {what} from")
    if sys.stdin.isatty():
        print(f"Type {what}; end with Ctrl-D on an empty line.", file=sys.stderr)
    data = sys.stdin.buffer.read(STDIN_LIMIT + 1)
    if len(data) > STDIN_LIMIT:
        raise InvalidInput(
            f"standard input holds more than {STDIN_LIMIT // (1024 * 1024)} MB for {what};"
            " nothing was recorded (a whole message goes in with `sgalert ingest FILE`)"
        )
    if b"\x00" in data:
        raise InvalidInput(
            f"standard input holds binary data (a NUL byte), not text for {what};"
            " nothing was recorded"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"standard input is not UTF-8 text (byte {exc.start + 1}) for {what}; nothing was"
            " recorded: save it as UTF-8 and try again"
        ) from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise InvalidInput(f"no text on standard input for {what}")
    return text.rstrip("\n")


def case_text(value: str | None, option: str, what: str, *, argv_ok: bool) -> str | None:
    """The text for ``option``: from standard input for ``-``, else the command line's value
    if it cannot be personal data (or the person accepted that it is visible)."""
    if value is None:
        return None
    if value == "-":
        return read_stdin(what)
    if looks_personal(value) and not argv_ok:
        raise InvalidInput(
            f"{option} puts {what} on the command line, where other users of this computer can"
            f" see it and shell history keeps it; give {option} - and pipe or type it instead"
            f" (or add {ARGV_OK})"
        )
    return value


def fact(item: str, *, argv_ok: bool) -> tuple[str, str]:
    """One ``--field NAME=VALUE``; a personal one only with ``--i-know-argv-is-visible``."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise InvalidInput("--field: write it as NAME=VALUE")
    if (PERSONAL_FACTS.search(key) or looks_personal(value)) and not argv_ok:
        raise InvalidInput(
            f"--field {key.strip()}=… puts personal data on the command line, where other users"
            " of this computer can see it; give the facts on standard input with --text -"
            f" (NAME: VALUE lines, a blank line, then the text), or add {ARGV_OK}"
        )
    return key.strip(), value


def labelled(value: str, option: str, what: str, known: tuple[str, ...], *, argv_ok: bool) -> str:
    """A short label such as a decision or an outcome: one of the ``known`` ones (they name
    nobody) as given, anything else as ``case_text`` judges it."""
    if value.strip().casefold() in {k.casefold() for k in known}:
        return value.strip()
    text = case_text(value, option, what, argv_ok=argv_ok)
    assert text is not None
    return text


def label_and_reason(
    label: str, reason: str, labels: tuple[str, str], known: tuple[str, ...], *, argv_ok: bool
) -> tuple[str, str]:
    """``decide``'s decision or ``close``'s outcome, and the reason. Either may be ``-``; when
    both are, standard input holds the label's line, a blank line, then the reason."""
    option, what = labels
    if label == "-" and reason == "-":
        given = read_stdin(f"{what} on its first line, a blank line, then the reason")
        first, sep, rest = given.partition("\n\n")
        if not sep or not first.strip() or not rest.strip():
            raise InvalidInput(
                f"standard input needs {what}, a blank line, then the reason (both {option} -"
                " and --reason - were given)"
            )
        return first.strip(), rest.strip("\n")
    chosen = labelled(label, option, what, known, argv_ok=argv_ok)
    because = case_text(reason, "--reason", "the reason", argv_ok=argv_ok)
    assert because is not None
    return chosen, because


# Fact lines on standard input that are not facts: who phoned, and a whistleblower's identity,
# which is sealed apart from the case (only the monitoring officer sees it).
CALLER_LINE = "caller"
REPORTER_LINES = {"reporter_name": "name", "reporter_contact": "contact"}


def personal_option(value: str | None, option: str, line: str, *, argv_ok: bool) -> str | None:
    """A whistleblower's name or contact, or who phoned a whistleblowing line: personal
    whatever it looks like, so only with ``--i-know-argv-is-visible``."""
    if value is None or argv_ok:
        return value
    raise InvalidInput(
        f"{option} puts a whistleblower's identity on the command line, where other users of"
        f" this computer can see it and shell history keeps it; give it on standard input with"
        f" --text - as a '{line}: ...' line before a blank line and the text (or add {ARGV_OK})"
    )


def split_facts(text: str) -> tuple[dict[str, str], str]:
    """Standard input for ``case new``: optional ``name: value`` lines, a blank line, the text.

    Without a leading block of ``name: value`` lines the whole input is the text."""
    head, sep, body = text.partition("\n\n")
    lines = [line for line in head.splitlines() if line.strip()]
    pairs = [line.partition(":") for line in lines]
    if (
        not sep
        or not lines
        or not all(colon and re.fullmatch(r"[a-z_]+", key.strip()) for key, colon, _ in pairs)
    ):
        return {}, text
    return {key.strip(): value.strip() for key, _, value in pairs}, body.strip("\n")
