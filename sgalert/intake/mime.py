"""Parsing untrusted RFC 822 bytes with hard limits, never raising.

The standard library's parser is used, but guarded:

- It runs with the ``compat32`` policy. The modern policy parses structured headers with a
  recursive-descent parser that is quadratic, and recursive, on hostile input (a 500 KB
  ``Content-Type`` took 27 s; nested parentheses exhaust the stack), and the parser consults
  ``Content-Type`` while it reads every part. ``compat32`` hands header values over as strings;
  sgalert decodes the few it needs itself.
- Before parsing, the bytes are scanned: an oversized message, more nested containers
  (``multipart/*``, ``message/*``) than allowed, or an over-long ``Content-*`` header in any part
  means the MIME structure is not parsed at all; only the top-level header block is read.
- Every header access is wrapped, raw 8-bit header bytes are decoded as UTF-8 or else Latin-1
  (never left as surrogates that would break encoding later), bodies decode with replacement,
  and every problem is recorded in ``ParsedMessage.problems`` so the case is flagged
  ``malformed`` instead of being lost.

The body text keeps the parts in document order: one rendering of each ``multipart/alternative``
(the plain text, unless it is a stub of the HTML), inline text and HTML parts, and each attached
message (``message/rfc822``, e.g. a notice forwarded as an attachment) after a separator that
names its subject, sender and date.
"""

from __future__ import annotations

import binascii
import codecs
import email
import email.errors
import email.parser
import email.policy
import itertools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import Message
from email.utils import parsedate_to_datetime

from sgalert.config import ParseLimits
from sgalert.intake.htmltext import MAX_TOKENS, render_html


@dataclass(frozen=True, slots=True)
class AttachmentPart:
    filename: str
    content_type: str
    payload: bytes


@dataclass(slots=True)
class ParsedMessage:
    """What sgalert needs of a message; every string is decoded but not yet escaped."""

    subject: str = ""
    from_header: str = ""
    message_id: str | None = None
    date: datetime | None = None
    authentication_results: list[str] = field(default_factory=list)
    body_text: str = ""
    attachments: list[AttachmentPart] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def malformed(self) -> bool:
        return bool(self.problems)


# Every Content-Type or Content-Disposition header line, with its folded continuation lines,
# matched in the lower-cased bytes: a case-sensitive pattern with a literal start is scanned for
# quickly, where a case-insensitive one tried at every position took over a second on 50 MB.
_MIME_HEADER = re.compile(rb"\ncontent-(type|disposition)[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)")
_FIRST_MIME_HEADER = re.compile(rb"content-(type|disposition)[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)")
# A Content-Type that makes the parser descend: multipart/* and message/*, folded or not.
_CONTAINER_TYPE = re.compile(rb"[ \t\r\n]*(?:multipart|message)[ \t]*/")
_BOUNDARY = re.compile(rb'(?i)boundary[ \t]*=[ \t]*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))')
# Up to this many times max_parts parts are parsed (and the first max_parts read); beyond, none.
_PART_FLOOD_FACTOR = 10
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_ENCODED_WORD = re.compile(r"=\?[^?\s]{1,80}\?[bBqQ]\?[^?\s]*\?=")
_SURROGATE = re.compile("[\ud800-\udfff]")
_FORWARDED_SEPARATOR = "---------- attached message ----------"
# A plain-text alternative this much shorter than the HTML one is a stub ("view in a browser").
_STUB_RATIO = 2
# The top-level header block read when the structure is not parsed.
_MAX_HEADER_BLOCK = 4 * 1024 * 1024
_POLICY = email.policy.compat32
# Base64-encoded attached messages decoded in one message (a forwarded notice needs one).
_MAX_UNWRAPPED = 8


def _clean(text: str) -> str:
    """Undo the parser's surrogate escapes: raw 8-bit bytes as UTF-8, else as Latin-1."""
    if text.isascii() or not _SURROGATE.search(text):
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that did not come from a byte: replace it
        return _SURROGATE.sub("\ufffd", text)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _is_utf8(text: str) -> bool:
    if text.isascii() or not _SURROGATE.search(text):
        return True
    try:
        text.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeError:
        return False
    return True


def _decode_words(raw: str) -> tuple[str, bool]:
    """RFC 2047 encoded words decoded; a word that cannot be decoded is kept as written.

    Returns the text and whether every word decoded.
    """
    try:
        return str(make_header(decode_header(raw))), True
    except (ValueError, LookupError, UnicodeError, AssertionError, email.errors.MessageError):
        pass
    ok = True

    def one(match: re.Match[str]) -> str:
        nonlocal ok
        try:
            return str(make_header(decode_header(match.group())))
        except (ValueError, LookupError, UnicodeError, AssertionError, email.errors.MessageError):
            ok = False
            return match.group()

    return _ENCODED_WORD.sub(one, raw), ok


def _decode_header_value(raw: str, problems: list[str], name: str) -> str:
    """Decode RFC 2047 encoded words; a failure keeps the raw text and is noted."""
    raw = _clean(raw)
    value, ok = _decode_words(raw)
    if not ok:
        problems.append(f"{name} header has undecodable encoded words")
    unfolded = re.sub(r"\r?\n[ \t]+", " ", raw)
    if ("\r" in value or "\n" in value) and "\n" not in unfolded and "\r" not in unfolded:
        problems.append(f"{name} header decodes to a line break (header injection attempt)")
    return value


def _charset_of(part: Message, problems: list[str]) -> str:
    try:
        named = part.get_content_charset()
        # compat32 gives None for a charset it cannot even spell in ASCII: say so, not us-ascii.
        charset = _clean(str(named or ("" if part.get_param("charset") else "us-ascii")))
    except Exception:  # a hostile Content-Type must not sink the part's text
        charset = ""
    try:
        known = codecs.lookup(charset)._is_text_encoding
    except (LookupError, UnicodeError, ValueError):
        known = False
    if not known:
        problems.append(
            f"unknown charset {charset[:40] or '(unreadable)'!r}; decoded as UTF-8 with replacement"
        )
        return "utf-8"
    return charset


def _decode_text(payload: bytes, charset: str, problems: list[str]) -> str:
    try:
        return payload.decode(charset, errors="replace")
    except (LookupError, UnicodeError, ValueError):  # codecs such as idna refuse "replace"
        problems.append(f"text in charset {charset[:40]!r} could not be decoded; read as UTF-8")
        return payload.decode("utf-8", errors="replace")


def _payload_bytes(part: Message, problems: list[str]) -> bytes:
    try:
        payload = part.get_payload(decode=True)
    except (ValueError, TypeError, AssertionError, LookupError, UnicodeError):
        problems.append("a part's transfer encoding could not be decoded")
        return b""
    return payload if isinstance(payload, bytes) else b""


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:  # any failure to read a hostile parameter: keep the part, not its name
        return "(undecodable name)"
    if not name:
        return None
    text, _ = _decode_words(_clean(str(name)))
    return " ".join(text.split()) or None


def _content_type(part: Message) -> str:
    try:
        return _clean(part.get_content_type())[:100]
    except Exception:
        return "application/octet-stream"


@dataclass(slots=True)
class _Shape:
    """What a cheap scan of the bytes says about the MIME structure, before any parsing."""

    containers: int = 0
    longest_header: int = 0
    boundaries: set[bytes] = field(default_factory=set)


def _scan_mime_headers(raw: bytes) -> _Shape:
    """Count nested containers, measure the longest MIME header and collect the boundaries."""
    lowered = raw.lower()
    shape = _Shape()
    for match in itertools.chain(
        [_FIRST_MIME_HEADER.match(lowered)], _MIME_HEADER.finditer(lowered)
    ):
        if match is None:
            continue
        shape.longest_header = max(shape.longest_header, match.end() - match.start())
        if match[1] == b"type" and _CONTAINER_TYPE.match(match[2]):
            shape.containers += 1
            # Boundaries are case-sensitive: read them from the original bytes (same offsets).
            declared = _BOUNDARY.search(raw, match.start(2), match.end(2))
            if declared:
                shape.boundaries.add(declared[1] or declared[2])
    return shape


def _delimiters_over(raw: bytes, boundaries: set[bytes], ceiling: int) -> bool:
    """Does the message hold more boundary delimiter lines (one per part) than ``ceiling``?"""
    if raw.count(b"\n--") <= ceiling:  # one fast pass settles almost every message
        return False
    seen = 0
    for boundary in boundaries:
        seen += raw.count(b"\n--" + boundary)
        if seen > ceiling:
            return True
    return False


def parse_message(raw: bytes, limits: ParseLimits | None = None) -> ParsedMessage:
    """Parse as much as is safe; anything odd goes into ``problems``, nothing raises."""
    limits = limits or ParseLimits()
    parsed = ParsedMessage()
    refusal = _refusal(raw, limits)
    if refusal is not None:
        parsed.problems.append(refusal)
        _read_header_block(raw, parsed, limits)
        return parsed
    try:
        message = email.message_from_bytes(raw, policy=_POLICY)
    except (RecursionError, MemoryError):
        parsed.problems.append("message structure is too deep to parse; headers read, kept whole")
        _read_header_block(raw, parsed, limits)
        return parsed
    except Exception as exc:  # the parser promises not to raise, but guard anyway
        parsed.problems.append(
            f"message could not be parsed ({type(exc).__name__}); headers read, kept whole"
        )
        _read_header_block(raw, parsed, limits)
        return parsed
    _read_headers(message, parsed, limits)
    _BodyReader(parsed, limits).read(message)
    return parsed


def structure_refusal(raw: bytes, limits: ParseLimits) -> str | None:
    """Why the MIME structure must not be parsed at all, or None: what intake and the desk's
    view of a sealed original both ask before handing bytes to the parser."""
    return _refusal(raw, limits)


def _refusal(raw: bytes, limits: ParseLimits) -> str | None:
    """Why the MIME structure must not be parsed at all, or None."""
    if len(raw) > limits.max_message_bytes:
        return (
            f"message is {len(raw):,} bytes, over the {limits.max_message_bytes:,}-byte limit;"
            " only its headers were read, kept whole"
        )
    shape = _scan_mime_headers(raw)
    if shape.containers > limits.max_parts:
        return (
            f"message declares {shape.containers} nested containers (multipart or message"
            f" parts), over the limit of {limits.max_parts}; only its headers were read, kept whole"
        )
    if shape.longest_header > limits.max_header_bytes:
        return (
            f"a Content-Type or Content-Disposition header is {shape.longest_header:,} bytes, over"
            f" the {limits.max_header_bytes:,}-byte limit; only the headers were read, kept whole"
        )
    # Only max_parts parts are ever read, but the parser would build every one of them first
    # (100,000 tiny parts took it seconds): far more than that and the structure is not parsed.
    ceiling = limits.max_parts * _PART_FLOOD_FACTOR
    if _delimiters_over(raw, shape.boundaries, ceiling):
        return (
            f"message has more than {ceiling:,} MIME parts, far over the limit of"
            f" {limits.max_parts}; only its headers were read, kept whole"
        )
    return None


def _read_header_block(raw: bytes, parsed: ParsedMessage, limits: ParseLimits) -> None:
    """Read just the top-level headers (sender, subject, Message-ID) of an unparsed message."""
    end = _HEADER_END.search(raw, 0, _MAX_HEADER_BLOCK)
    block = raw[: end.end()] if end else raw[:_MAX_HEADER_BLOCK]
    try:
        headers = email.parser.BytesParser(policy=_POLICY).parsebytes(block, headersonly=True)
        _read_headers(headers, parsed, limits)
    except Exception as exc:
        parsed.problems.append(f"the message's headers could not be read ({type(exc).__name__})")


def _read_headers(message: Message, parsed: ParsedMessage, limits: ParseLimits) -> None:
    # raw_items: the header text as received, so no policy-specific parsing can raise here.
    items = list(message.raw_items())
    if len(items) > limits.max_headers:
        parsed.problems.append(f"{len(items)} headers, over the limit of {limits.max_headers}")
        items = items[: limits.max_headers]
    eight_bit: list[str] = []
    seen: dict[str, list[str]] = {}
    for name, value in items:
        name, text = _clean(str(name))[:80], str(value)
        if len(text) > limits.max_header_bytes:
            parsed.problems.append(f"a {name[:40]} header is over {limits.max_header_bytes} bytes")
            text = text[: limits.max_header_bytes]
        if not _is_utf8(text) and name.lower() not in eight_bit:
            eight_bit.append(name.lower())
        seen.setdefault(name.lower(), []).append(_clean(text))
    if eight_bit:
        parsed.problems.append(
            "raw 8-bit bytes that are not UTF-8 in the "
            + ", ".join(eight_bit[:5])
            + " header(s); read as Latin-1"
        )
    if "subject" in seen:
        if len(seen["subject"]) > 1:
            parsed.problems.append("message has more than one Subject header")
        parsed.subject = _decode_header_value(seen["subject"][0], parsed.problems, "Subject")
    if "from" in seen:
        if len(seen["from"]) > 1:
            parsed.problems.append("message has more than one From header")
        parsed.from_header = seen["from"][0]
        # Only checked here; the sender module parses the address strictly from the raw value.
        _decode_header_value(parsed.from_header, parsed.problems, "From")
    if "message-id" in seen:
        parsed.message_id = " ".join(seen["message-id"][0].split())[:998] or None
    if "date" in seen:
        try:
            date = parsedate_to_datetime(seen["date"][0])
            parsed.date = date if date.tzinfo else date.replace(tzinfo=UTC)
        except (TypeError, ValueError, IndexError, OverflowError):
            parsed.problems.append("Date header is not a valid date")
    parsed.authentication_results = [
        " ".join(v.split()) for v in seen.get("authentication-results", [])
    ]


class _BodyReader:
    """Walks the MIME tree iteratively (no recursion), honouring depth and part limits."""

    def __init__(self, parsed: ParsedMessage, limits: ParseLimits) -> None:
        self.parsed = parsed
        self.limits = limits
        self.problems = parsed.problems
        self.segments: list[str] = []
        self.size = 0
        self.parts = 0
        # One budget of HTML tokens for the whole message, however many HTML parts it has.
        self.html_tokens = MAX_TOKENS
        # And one for base64 attached messages decoded and parsed (see _unwrapped).
        self.unwrapped = 0
        self.unwrapped_bytes = 0

    def read(self, root: Message) -> None:
        # The stack holds parts still to read, and text already rendered, in reverse order.
        stack: list[tuple[Message, int] | str] = [(root, 0)]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                self._add(item)
                continue
            part, depth = item
            if not self._count():
                break
            try:
                self._read_part(part, part is root, depth, stack)
            except Exception as exc:  # a hostile header inside one part must not sink the rest
                self.problems.append(f"a MIME part could not be read ({type(exc).__name__})")
            self._defects(part)
        body = "\n".join(self.segments).replace("\r\n", "\n")
        if len(body) > self.limits.max_body_chars:
            self.problems.append(
                f"body text over {self.limits.max_body_chars:,} characters; truncated"
            )
            body = body[: self.limits.max_body_chars]
        self.parsed.body_text = body

    def _count(self) -> bool:
        self.parts += 1
        if self.parts > self.limits.max_parts:
            self._note(f"more than {self.limits.max_parts} MIME parts; the rest not read")
            return False
        return True

    def _note(self, problem: str) -> None:
        if problem not in self.problems:
            self.problems.append(problem)

    def _defects(self, part: Message) -> None:
        # Read after the part: decoding its payload is what records transfer-encoding defects.
        self.problems.extend(f"MIME defect: {type(d).__name__}" for d in part.defects)

    def _add(self, text: str) -> None:
        if text.strip() and self.size <= self.limits.max_body_chars:
            self.segments.append(text)
            self.size += len(text) + 1

    def _read_part(
        self, part: Message, is_root: bool, depth: int, stack: list[tuple[Message, int] | str]
    ) -> None:
        content_type = _content_type(part)
        children = part.get_payload() if part.is_multipart() else None
        if not isinstance(children, list):
            self._read_leaf(part, content_type)
            return
        if depth >= self.limits.max_depth:
            self._note(f"MIME parts nested deeper than {self.limits.max_depth}")
            return
        messages = [c for c in children if isinstance(c, Message)]
        if content_type == "multipart/alternative":
            chosen = self._choose_alternative(messages)
            if chosen is not None:
                stack.append(chosen if isinstance(chosen, str) else (chosen, depth + 1))
            return
        if (
            content_type.startswith("message/")
            and len(messages) == 1
            and depth + 1 < (self.limits.max_depth)
        ):
            messages = [self._unwrapped(part, messages[0])]
        stack.extend((child, depth + 1) for child in reversed(messages))
        if content_type.startswith("message/") and not is_root and messages:
            stack.append(_separator(messages[0]))

    def _unwrapped(self, part: Message, inner: Message) -> Message:
        """An attached message sent base64 encoded, decoded and parsed.

        RFC 2046 allows only 7bit, 8bit and binary here, but some mail clients base64 encode a
        message forwarded as an attachment anyway. No base64 line can look like a header, so
        the standard parser keeps the whole encoded text as the body of a headerless message;
        decoded, it is read under the same limits as any message.
        """
        try:
            encoding = _clean(str(part.get("Content-Transfer-Encoding") or "")).strip().lower()
        except Exception:
            return inner
        text = inner.get_payload()
        if encoding != "base64" or inner.keys() or not isinstance(text, str):
            return inner
        try:
            decoded = binascii.a2b_base64(text.encode("ascii", "surrogateescape"))
        except (binascii.Error, ValueError):
            self._note("an attached message's base64 could not be decoded; kept as sent")
            return inner
        self.unwrapped += 1
        self.unwrapped_bytes += len(decoded)
        if self.unwrapped > _MAX_UNWRAPPED or self.unwrapped_bytes > self.limits.max_message_bytes:
            # Each decoded message is parsed whole: one budget for the message, however many.
            self._note("too many encoded attached messages; the rest kept as sent")
            return inner
        refusal = _refusal(decoded, self.limits)
        if refusal is not None:
            self._note(f"an attached message was not read: {refusal}")
            return inner
        return email.message_from_bytes(decoded, policy=_POLICY)

    def _is_attachment(self, part: Message, content_type: str) -> str | None:
        """The part's filename (or "(unnamed)") if it is an attachment, else None."""
        filename = _filename(part)
        try:
            disposition = _clean(str(part.get("Content-Disposition") or ""))
        except Exception:
            disposition = ""
        disposition = disposition.split(";")[0].strip().lower()
        textual = content_type.startswith("text/") or content_type.startswith("multipart/")
        if filename or disposition == "attachment" or not textual:
            return filename or "(unnamed)"
        return None

    def _text_of(self, part: Message) -> str:
        payload = _payload_bytes(part, self.problems)
        return _decode_text(payload, _charset_of(part, self.problems), self.problems)

    def _render(self, part: Message, content_type: str) -> str:
        text = self._text_of(part)
        if content_type != "text/html":
            return text
        if self.html_tokens <= 0:
            self._note("too much HTML markup in the message; some HTML parts not read")
            return ""
        rendered, used = render_html(text, self.limits.max_body_chars, self.html_tokens)
        self.html_tokens -= used
        return rendered

    def _read_leaf(self, part: Message, content_type: str) -> None:
        filename = self._is_attachment(part, content_type)
        if filename is not None:
            payload = _payload_bytes(part, self.problems)
            self.parsed.attachments.append(AttachmentPart(filename, content_type, payload))
            return
        # multipart/* without a usable boundary arrives as one text blob: read it as text.
        self._add(self._render(part, content_type))

    def _choose_alternative(self, children: list[Message]) -> Message | str | None:
        """One rendering of an alternative: the plain text, unless it is a stub of the HTML."""
        typed = [(c, _content_type(c)) for c in children]
        plain = [c for c, t in typed if t == "text/plain" and self._is_attachment(c, t) is None]
        rich = [c for c, t in typed if t == "text/html" or t.startswith("multipart/")]
        if not plain:
            return rich[-1] if rich else (children[-1] if children else None)
        plain_text = self._read_counted(plain[-1], "text/plain")
        if not rich:
            return plain_text
        if _content_type(rich[-1]) == "text/html":
            source = _payload_bytes(rich[-1], [])
            if len(plain_text.strip()) * _STUB_RATIO >= len(source):
                # Rendered text is never longer than its markup: the plain part is no stub,
                # so the HTML need not be rendered at all.
                return plain_text
            html_text = self._read_counted(rich[-1], "text/html")
            stub = len(plain_text.strip()) * _STUB_RATIO < len(html_text.strip())
            return html_text if stub else plain_text
        return plain_text if plain_text.strip() else rich[-1]

    def _read_counted(self, part: Message, content_type: str) -> str:
        """Render a leaf read outside the main walk, still counting it and its defects."""
        if not self._count():
            return ""
        text = self._render(part, content_type)
        self._defects(part)
        return text


def _separator(inner: Message) -> str:
    """The line before an attached message's text, naming what it is."""
    lines = [_FORWARDED_SEPARATOR]
    for name in ("From", "Date", "Subject"):
        try:
            value = inner.get(name)
        except Exception:
            value = None
        if value:
            text = _decode_header_value(str(value)[:1000], [], name)
            lines.append(f"{name}: {' '.join(text.split())}")
    return "\n".join(lines)
