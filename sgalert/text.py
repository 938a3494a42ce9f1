"""Making untrusted text safe to show: no terminal control, no bidi tricks.

Subjects, bodies and names come from strangers. Before they reach a terminal, every control
character except newline and tab, every C1 control, and every bidi control becomes a visible
escape such as ``\\x1b`` or ``\\u202e``, so a hostile subject shows as what it is; so do the
Unicode line separators and lone surrogates. (Rich/Textual markup is a separate matter: the TUI
renders this text with markup off.)
"""

from __future__ import annotations

import re

BIDI_CONTROLS = "\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"

# Also the Unicode line and paragraph separators (a line break a one-line field must not hide)
# and lone surrogates, which are undecoded bytes rather than text and cannot even be encoded.
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f\x80-\x9f\u2028\u2029\ud800-\udfff" + BIDI_CONTROLS + "]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, keep_newlines: bool = True) -> str:
    """Replace control and bidi characters with visible escapes."""
    escaped = _UNSAFE.sub(_escape, text)
    if not keep_newlines:
        escaped = escaped.replace("\n", "\\n").replace("\t", "\\t")
    return escaped


def has_unsafe(text: str) -> bool:
    return _UNSAFE.search(text) is not None


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string that reads back as exactly ``text``: the quote and the
    backslash escaped, and every control character as ``\\uXXXX`` (TOML allows none raw)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\u{ord(m.group()):04x}", escaped) + '"'


#: A person's name fills one line of every view that shows it (the queue, the rota, the audit).
LONGEST_NAME = 200


def person_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a member of staff's name, in one line; None if it can. One line
    of text: a newline or tab split every view naming the person, as an escape would drive it."""
    if not name.strip():
        return "a person needs a name"
    if has_unsafe(name) or "\n" in name or "\t" in name:
        return "a name cannot hold control characters or terminal escapes"
    if len(name) > LONGEST_NAME:
        return f"a name is at most {LONGEST_NAME} characters (this one has {len(name)})"
    return None
