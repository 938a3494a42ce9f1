"""Untrusted text shown in a terminal: controls and bidi overrides become visible escapes."""

from __future__ import annotations

from sgalert.text import has_unsafe, printable


def test_escapes_terminal_controls_and_bidi() -> None:
    hostile = "Subject \x1b]0;pwned\x07 \x1b[2J \u202eevil\u202c \x9b31m \r"
    shown = printable(hostile)
    assert "\x1b" not in shown and "\u202e" not in shown and "\x9b" not in shown
    assert "\\x1b]0;pwned\\x07" in shown
    assert "\\u202e" in shown and "\\x9b" in shown and "\\x0d" in shown
    assert has_unsafe(hostile) and not has_unsafe(shown)


def test_keeps_ordinary_text_and_layout() -> None:
    text = "Ada said: “I was scared.”\n\tLine two — café [b]not markup[/b]"
    assert printable(text) == text
    assert printable("a\nb", keep_newlines=False) == "a\\nb"
