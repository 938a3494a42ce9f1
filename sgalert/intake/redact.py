"""Striking a whistleblower's name and contact details out of what an investigator is shown.

A monitoring officer may grant an allegation to an investigator without who made it [HMS]. The
original message is sealed with the reporter's identity, but the text the investigator reads (the
subject, the body, the facts and notes drawn from them, the attachments' names) is the reporter's
own writing, often signed. :class:`ReporterRedactor` replaces, in that text:

- the reporter's address, and its local part when it reads as a name (``jane.smith``);
- their name (from the display name, or from such a local part when there is none): in either
  order (``Smith, Jane``), with any punctuation between its words (``O'Brien`` and
  ``O\u2019Brien``, ``Mary-Jane`` and ``Mary Jane``, ``Jane_Smith``), its first and last names
  alone (``Jane A. Smith`` also as ``Jane Smith``), the surname after a title (``Mrs Smith``,
  ``Dr. Smith``) or after initials (``J. Smith``, ``J A Smith``, ``Smith, J.``), a title in
  front going with it;
- every phone number written the UK's ways (``07700 900123``, ``+44 (0)7700-900-123``,
  ``(01632) 960123``, ``020 7946 0018``) and every email address, the reporter's or not: in a
  whistleblower's message these are how to reach them;
- in an attachment's name (:meth:`ReporterRedactor.filename`) also the surname or first name
  alone (``Smith_statement.pdf``), the surname even inside a word (``SmithStatement.pdf``).

Text is compared as NFKC and casefolded, with invisible format characters (a zero-width space,
a soft hyphen, a bidi control) ignored, so full-width letters, ligatures, composed or decomposed
accents and letter case do not matter; what is struck is the original span.

It leaves names alone when striking them would strike out the people the allegation is about: a
one-word name without a title ("Office", "Pat"), a name made only of role words ("Deputy Head"),
and, outside filenames, a surname or first name standing alone ("the Smith family"). Nothing
recognises a reporter who describes themselves in other words: the monitoring officer reads the
text before granting it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence

from sgalert.intake.sender import Sender

MARK = "[reporter]"
PHONE_MARK = "[phone]"
EMAIL_MARK = "[email]"

_TITLES = frozenset(
    {"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "dame", "rev", "revd", "master"}
)
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
# Between a name's words (in folded text): spaces, tabs and the punctuation names are written
# with, the typographic apostrophe and hyphens included.
_BETWEEN = r"[ \t.,'\u2019_\u2010-\u2015-]+"
_TITLE = "(?:" + "|".join(sorted(_TITLES, key=len, reverse=True)) + ")"
_NOT_LETTER_BEFORE, _NOT_LETTER_AFTER = r"(?<![^\W_])", r"(?![^\W_])"
_MAX_NAME_CHARS = 120
_MIN_LITERAL = 5
_MAX_NAME_WORDS = 6
# A UK number: +44 or 0044 (perhaps with "(0)"), or a trunk 0 (perhaps in brackets), then the
# 9 or 10 digits of the national number with spaces, dots, dashes or brackets between them.
_PHONE = (
    r"(?<![\w+])(?:(?:\+|00)[ \t.-]*44[ \t.-]*(?:\(0\)[ \t.-]*)?\(?|\(?0)"
    r"[1-9](?:[ \t.()-]{0,2}\d){8,9}(?!\w)"
)
_EMAIL = r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+(?![\w-])"
_ASCII_RUN = re.compile(r"[\x00-\x7f]+")
_CONTACTS = f"(?P<phone>{_PHONE})|(?P<email>{_EMAIL})"


def fold(text: str) -> tuple[str, list[int] | None]:
    """``text`` casefolded in NFKC with format characters dropped, and where each of its
    characters came from: ``None`` when one to one (ASCII), else a list with, for each folded
    character, the index in ``text`` of the combining sequence it came from, and the length
    of ``text`` at the end."""
    if text.isascii():
        return text.lower(), None
    out: list[str] = []
    origin: list[int] = []
    i, n = 0, len(text)
    while i < n:
        run = _ASCII_RUN.match(text, i)
        if run is not None:  # in bulk, bar a last letter that combining marks may follow
            bulk = run.end() if run.end() == n else run.end() - 1
            if bulk > i:
                out.append(text[i:bulk].lower())
                origin.extend(range(i, bulk))
                i = bulk
                continue
        j = i + 1
        while j < n and unicodedata.combining(text[j]):
            j += 1
        piece = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text[i:j]).casefold())
        for char in piece:
            if unicodedata.category(char) != "Cf":
                out.append(char)
                origin.append(i)
        i = j
    origin.append(n)
    return "".join(out), origin


def _fold_plain(text: str) -> str:
    return fold(text)[0]


class ReporterRedactor:
    """Replaces one reporter's name and address, and every phone number and email address,
    with marks; counts what it replaced (:attr:`hits`)."""

    def __init__(
        self,
        sender: Sender | None = None,
        *,
        names: Iterable[str] = (),
        addresses: Iterable[str] = (),
    ) -> None:
        """The reporter is the ``sender`` of a message, or ``names`` and ``addresses`` (any
        contact details, each struck as written; an email address also reads as a name)."""
        self.hits = 0
        all_names = [sender.display_name] if sender is not None else []
        all_names += names
        all_addresses = [sender.address] if sender is not None and sender.address else []
        all_addresses += [a for a in addresses if a]
        whole: list[str] = []  # addresses: matched as written, no title in front
        named: list[str] = []
        alone: list[str] = []  # in filenames only
        inside: list[str] = []  # in filenames only, even within a word
        for address in all_addresses:
            folded = _fold_plain(address.strip())
            if len(folded) < _MIN_LITERAL:  # "-" or "x" would strike half the text
                continue
            whole.append(re.escape(folded))
            local, at, _ = folded.partition("@")
            pieces = re.split(r"[._-]+", local)
            if at and len(pieces) >= 2 and all(len(p) >= 2 and p.isalpha() for p in pieces):
                whole.append(re.escape(local))
                all_names.append(" ".join(pieces))
        for name in all_names:
            patterns = _NamePatterns(name)
            named += patterns.written
            alone += patterns.alone
            inside += patterns.inside
        if named:
            whole.append(f"(?:{_TITLE}{_BETWEEN})?(?:{'|'.join(named)})")
        reporter = "|".join(whole)
        text = f"{_NOT_LETTER_BEFORE}(?:{reporter}){_NOT_LETTER_AFTER}" if reporter else ""
        in_files = "|".join([*whole, *alone])
        files = f"{_NOT_LETTER_BEFORE}(?:{in_files}){_NOT_LETTER_AFTER}" if in_files else ""
        if inside:
            files = "|".join(filter(None, [files, *inside]))
        self._text = _compile(text)
        self._files = _compile(files)

    def __call__(self, text: str) -> str:
        """``text`` (a subject, a body, a fact, a note) as an investigator may read it."""
        return self._strike(text, self._text)

    def filename(self, name: str) -> str:
        """An attachment's name as an investigator may read it (and an export would use it)."""
        return self._strike(name, self._files)

    def _strike(self, text: str, pattern: re.Pattern[str]) -> str:
        if not text:
            return text
        folded, origin = fold(text)
        pieces: list[str] = []
        last = 0
        for match in pattern.finditer(folded):
            start, end = match.span()
            if start == end:
                continue
            if origin is not None:
                start, end = origin[start], origin[end]
            if start < last:
                continue
            pieces += [text[last:start], _MARKS[match.lastgroup or "reporter"]]
            last = end
            self.hits += 1
        if not pieces:
            return text
        pieces.append(text[last:])
        return "".join(pieces)


_MARKS = {"reporter": MARK, "phone": PHONE_MARK, "email": EMAIL_MARK}


def _compile(reporter: str) -> re.Pattern[str]:
    """The reporter's pattern first (their own address reads as them), then any contact."""
    alternatives = ([f"(?P<reporter>{reporter})"] if reporter else []) + [_CONTACTS]
    return re.compile("|".join(alternatives))


class _NamePatterns:
    """The ways one name may be written, as regular expressions over folded text."""

    def __init__(self, display_name: str) -> None:
        self.written: list[str] = []
        self.alone: list[str] = []
        self.inside: list[str] = []
        name = _BRACKETED.sub(" ", _fold_plain(display_name[:_MAX_NAME_CHARS]))
        before_comma, comma, after_comma = name.partition(",")
        every = _LETTERS.findall(name)
        words = [w for w in every if w not in _TITLES]
        titled = len(words) < len(every)
        if (
            not words
            or len(words) > _MAX_NAME_WORDS
            or all(w in _ROLE_WORDS for w in words)
            or (len(words) == 1 and not titled)  # one word could be anyone: "Pat", "Office"
        ):
            return
        named = [w for w in words if len(w) >= 2]
        first_part = [w for w in _LETTERS.findall(before_comma) if w not in _TITLES]
        if comma and first_part and _LETTERS.search(after_comma):
            surname = first_part  # "Smith, Jane"
            given = next((w for w in words if w not in first_part), None)
        else:
            surname = words[1:] or words
            given = words[0] if len(words) >= 2 else None
        if len(named) >= 2:
            orders = [words, [words[-1], *words[:-1]]]
            if len(named) > 2 or len(named) < len(words):  # middle names or initials left out
                orders += [[named[0], named[-1]], [named[-1], named[0]]]
            self.written += [_BETWEEN.join(re.escape(w) for w in order) for order in orders]
        if len(surname[-1]) < 2 or surname[-1] in _ROLE_WORDS:
            return
        # The surname whole or its last words: "O'Brien" and "Brien", "Smith-Jones" and "Jones".
        tails = [surname[k:] for k in range(len(surname)) if len(surname[k]) >= 2 or k == 0]
        tails = [t for t in tails if not (len(t) == 1 and len(t[0]) < 2)]
        last = "(?:" + "|".join(_BETWEEN.join(re.escape(w) for w in t) for t in tails) + ")"
        self.written.append(f"{_TITLE}{_BETWEEN}{last}")  # "Mrs Smith", "Dr. O'Brien"
        if given:
            # Any initials: a reporter signs with a middle name's, or as colleagues know them.
            initial = r"[^\W\d_]"
            more = rf"(?:{_BETWEEN}[^\W\d_]){{0,2}}"  # "J. A. Smith"
            self.written += [  # "O'Brien, S." before "O'Brien" read as initial and surname
                f"{last}{_BETWEEN}{initial}{_NOT_LETTER_AFTER}",
                f"{initial}{more}{_BETWEEN}{last}",
            ]
            if len(given) >= 2 and given not in _ROLE_WORDS and len(named) >= 2:
                self.alone.append(re.escape(given))
        self.alone.append(last)
        if len(surname[-1]) >= 4:
            self.inside.append(re.escape(surname[-1]))


def redact_manual_whistle(
    facts: dict[str, str], body_text: str, *, names: Sequence[str], contacts: Sequence[str]
) -> tuple[dict[str, str], str, int]:
    """A whistleblowing entry typed by hand (a call taken by phone) as an investigator may read
    it: the reporter's and the caller's names and contact details struck from the facts and the
    text, as from a message. Returns the facts, the text and how many were struck."""
    redactor = ReporterRedactor(names=[n for n in names if n], addresses=contacts)
    shown = {key: redactor(value) for key, value in facts.items()}
    return shown, redactor(body_text), redactor.hits


def phoned_whistle(
    facts: Mapping[str, str], body_text: str, caller: str, reporter: Mapping[str, str] | None
) -> tuple[dict[str, str], str, dict[str, str]]:
    """A whistleblowing call made ready to seal: who called goes with the reporter's identity
    (sealed apart), and their names and contact details are struck from the facts and text an
    investigator may be granted. How they asked to be contacted is theirs, as ingest keeps it.
    Returns the facts, the text and the reporter's identity."""
    given = dict(reporter or {})
    kept = dict(facts)
    if contact := kept.pop("preferred_contact", None):
        given["preferred_contact"] = contact
    kept, body_text, _ = redact_manual_whistle(
        kept,
        body_text,
        names=[caller, given.get("name", "")],
        contacts=[given.get("contact", ""), given.get("preferred_contact", "")],
    )
    return kept, body_text, {**given, "caller": caller}
