"""Striking a whistleblower's own name and address out of what an investigator is shown.

A monitoring officer may grant an allegation to an investigator without who made it [HMS]. The
original message is sealed with the reporter's identity, but the text the investigator reads (the
subject, the body, the facts and notes drawn from them, the attachments' names) is the reporter's
own writing, often signed. :class:`ReporterRedactor` replaces, in that text:

- the sender's address, and its local part when it reads as a name (``jane.smith``);
- the display name, without titles (Dr, Mrs…) or bracketed parts (``(Example Primary)``), in
  either order (``Smith, Jane``), with any punctuation between its words (a straight or a
  typographic apostrophe, ``Mary-Jane`` and ``Mary Jane``, ``Jane_Smith_statement.pdf``), and
  its first and last names alone (``Jane A. Smith`` also as ``Jane Smith``); case and Unicode
  composition do not matter.

It leaves names alone when striking them would strike out the people the allegation is about: a
one-word name ("Office", "Jane"), a name with fewer than two words of two letters or more ("J
Smith" is also how a colleague would be written), or a name made only of role words ("Deputy
Head"). Nothing recognises a reporter who describes themselves in other words: the monitoring
officer reads the text before granting it.
"""

from __future__ import annotations

import re
import unicodedata

from sgalert.intake.sender import Sender

MARK = "[reporter]"

_TITLES = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "dame", "rev", "revd"})
_ROLE_WORDS = frozenset(
    {
        "head", "headteacher", "headmaster", "headmistress", "deputy", "assistant", "acting",
        "principal", "vice", "teacher", "staff", "office", "admin", "administrator", "school",
        "academy", "trust", "team", "safeguarding", "lead", "dsl", "clerk", "hr", "reception",
        "governor", "governors", "chair", "business", "manager", "bursar", "finance", "music",
        "service", "services", "support", "the", "of", "and", "for", "no", "reply", "noreply",
    }
)  # fmt: skip
_BRACKETED = re.compile(r"\([^)]*\)|\[[^\]]*\]|<[^>]*>")
_LETTERS = re.compile(r"[^\W\d_]+")
# Between a name's words: spaces, tabs and the punctuation names are written with. Never a
# control character, so striking a name out can never hide one from the hostile-text check.
_BETWEEN = r"[ \t\u00a0.,'\u2019_-]+"
_MAX_NAME_CHARS = 120
_MAX_NAME_WORDS = 6


class ReporterRedactor:
    """Replaces one reporter's name and address with :data:`MARK`; counts what it replaced."""

    def __init__(self, sender: Sender) -> None:
        self.hits = 0
        alternatives = []
        if sender.address:
            alternatives.append(re.escape(sender.address))
            local = sender.address.partition("@")[0]
            pieces = re.split(r"[._-]+", local)
            if len(pieces) >= 2 and all(len(p) >= 2 and p.isalpha() for p in pieces):
                alternatives.append(re.escape(local))
        alternatives.extend(_name_patterns(sender.display_name))
        self._pattern = (
            re.compile(r"(?<![^\W_])(?:" + "|".join(alternatives) + r")(?![^\W_])", re.IGNORECASE)
            if alternatives
            else None
        )

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        redacted, count = self._pattern.subn(MARK, unicodedata.normalize("NFC", text))
        self.hits += count
        return redacted


def _name_patterns(display_name: str) -> list[str]:
    name = unicodedata.normalize("NFC", display_name)[:_MAX_NAME_CHARS]
    words = [w for w in _LETTERS.findall(_BRACKETED.sub(" ", name)) if w.casefold() not in _TITLES]
    named = [w for w in words if len(w) >= 2]
    if (
        len(named) < 2
        or len(words) > _MAX_NAME_WORDS
        or all(w.casefold() in _ROLE_WORDS for w in words)
    ):
        return []
    orders = [words, [words[-1], *words[:-1]]]
    if len(named) > 2 or len(named) < len(words):  # middle names or initials may be left out
        orders += [[named[0], named[-1]], [named[-1], named[0]]]
    return [_BETWEEN.join(re.escape(w) for w in order) for order in orders]
