"""Parsing untrusted RFC 822 bytes with hard limits, never raising.

The standard library's parser is used with the modern policy, but guarded: oversized messages are
not parsed at all, multipart bombs are refused before parsing (the parser recurses per nesting
level), every header access is wrapped, bodies decode with replacement, and every problem is
recorded in ``ParsedMessage.problems`` so the case is flagged ``malformed`` instead of being lost.
"""

from __future__ import annotations

import codecs
import email
import email.policy
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import Message
from email.utils import parsedate_to_datetime

from sgalert.htmltext import html_to_text


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Ceilings on what a single message may cost. Over any of them: a ``malformed`` case."""

    max_message_bytes: int = 25 * 1024 * 1024
    max_headers: int = 500
    max_header_bytes: int = 16 * 1024
    max_depth: int = 16
    max_parts: int = 200
    max_body_chars: int = 2_000_000


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


_MULTIPART_HEADER = re.compile(rb"(?im)^content-type:[ \t]*multipart/")
_FORWARDED_SEPARATOR = "\n\n---------- attached message ----------\n"


def _decode_header_value(raw: str, problems: list[str], name: str) -> str:
    """Decode RFC 2047 encoded words; a failure keeps the raw text and is noted."""
    try:
        value = str(make_header(decode_header(raw)))
    except (ValueError, LookupError, UnicodeError, AssertionError):
        problems.append(f"{name} header has undecodable encoded words")
        value = raw
    unfolded = re.sub(r"\r?\n[ \t]+", " ", raw)
    if ("\r" in value or "\n" in value) and "\n" not in unfolded and "\r" not in unfolded:
        problems.append(f"{name} header decodes to a line break (header injection attempt)")
    return value


def _charset_of(part: Message, problems: list[str]) -> str:
    charset = part.get_content_charset() or "us-ascii"
    try:
        codecs.lookup(charset)
    except LookupError:
        problems.append(f"unknown charset {charset[:40]!r}; decoded as UTF-8 with replacement")
        return "utf-8"
    return charset


def _payload_bytes(part: Message, problems: list[str]) -> bytes:
    try:
        payload = part.get_payload(decode=True)
    except (ValueError, TypeError, AssertionError):
        problems.append("a part's transfer encoding could not be decoded")
        return b""
    return payload if isinstance(payload, bytes) else b""


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except (ValueError, LookupError, UnicodeError, TypeError, AssertionError):
        return "(undecodable name)"
    return str(name) if name else None


def parse_message(raw: bytes, limits: ParseLimits | None = None) -> ParsedMessage:
    """Parse as much as is safe; anything odd goes into ``problems``, nothing raises."""
    limits = limits or ParseLimits()
    parsed = ParsedMessage()
    if len(raw) > limits.max_message_bytes:
        parsed.problems.append(
            f"message is {len(raw):,} bytes, over the {limits.max_message_bytes:,}-byte limit;"
            " not parsed, kept whole"
        )
        return parsed
    multiparts = len(_MULTIPART_HEADER.findall(raw))
    if multiparts > limits.max_parts:
        parsed.problems.append(
            f"message declares {multiparts} multipart containers, over the limit of "
            f"{limits.max_parts}; not parsed, kept whole"
        )
        return parsed
    try:
        message = email.message_from_bytes(raw, policy=email.policy.default)
    except (RecursionError, MemoryError):
        parsed.problems.append("message structure is too deep to parse; kept whole")
        return parsed
    except Exception as exc:  # the parser promises not to raise, but guard anyway
        parsed.problems.append(f"message could not be parsed ({type(exc).__name__}); kept whole")
        return parsed
    _read_headers(message, parsed, limits)
    _read_parts(message, parsed, limits)
    return parsed


def _read_headers(message: Message, parsed: ParsedMessage, limits: ParseLimits) -> None:
    # raw_items: the header text as received, so no policy-specific parsing can raise here.
    items = list(message.raw_items())
    if len(items) > limits.max_headers:
        parsed.problems.append(f"{len(items)} headers, over the limit of {limits.max_headers}")
        items = items[: limits.max_headers]
    for name, value in items:
        if len(str(value)) > limits.max_header_bytes:
            parsed.problems.append(f"a {name[:40]} header is over {limits.max_header_bytes} bytes")
    seen: dict[str, list[str]] = {}
    for name, value in items:
        text = str(value)[: limits.max_header_bytes]
        seen.setdefault(name.lower(), []).append(text)
    if "subject" in seen:
        parsed.subject = _decode_header_value(seen["subject"][0], parsed.problems, "Subject")
    if "from" in seen:
        if len(seen["from"]) > 1:
            parsed.problems.append("message has more than one From header")
        parsed.from_header = seen["from"][0]
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


def _read_parts(root: Message, parsed: ParsedMessage, limits: ParseLimits) -> None:
    """Walk the MIME tree iteratively (no recursion), honouring depth and part limits."""
    plain: list[str] = []
    html: list[str] = []
    stack: list[tuple[Message, int]] = [(root, 0)]
    parts = 0
    while stack:
        part, depth = stack.pop()
        parts += 1
        if parts > limits.max_parts:
            parsed.problems.append(f"more than {limits.max_parts} MIME parts; the rest not read")
            break
        try:
            _read_one_part(part, root, depth, stack, plain, html, parsed, limits)
        except Exception as exc:  # a hostile header inside one part must not sink the rest
            parsed.problems.append(f"a MIME part could not be read ({type(exc).__name__})")
        # Read after the part: decoding its payload is what records transfer-encoding defects.
        parsed.problems.extend(f"MIME defect: {type(d).__name__}" for d in part.defects)
    body = "\n".join(p for p in plain if p.strip()) if any(p.strip() for p in plain) else ""
    if not body.strip() and html:
        body = "\n".join(html_to_text(h) for h in html)
    body = body.replace("\r\n", "\n")
    if len(body) > limits.max_body_chars:
        parsed.problems.append(f"body text over {limits.max_body_chars:,} characters; truncated")
        body = body[: limits.max_body_chars]
    parsed.body_text = body


def _read_one_part(
    part: Message,
    root: Message,
    depth: int,
    stack: list[tuple[Message, int]],
    plain: list[str],
    html: list[str],
    parsed: ParsedMessage,
    limits: ParseLimits,
) -> None:
    content_type = part.get_content_type()
    if part.is_multipart():
        if depth >= limits.max_depth:
            too_deep = f"MIME parts nested deeper than {limits.max_depth}"
            if too_deep not in parsed.problems:
                parsed.problems.append(too_deep)
            return
        children = part.get_payload()
        if isinstance(children, list):
            if content_type == "message/rfc822" and part is not root:
                plain.append(_FORWARDED_SEPARATOR)
            stack.extend((child, depth + 1) for child in reversed(children))
        return
    filename = _filename(part)
    disposition = (part.get("Content-Disposition") or "").split(";")[0].strip().lower()
    if filename or disposition == "attachment" or not content_type.startswith("text/"):
        payload = _payload_bytes(part, parsed.problems)
        parsed.attachments.append(
            AttachmentPart(filename or "(unnamed)", content_type[:100], payload)
        )
        return
    text = _payload_bytes(part, parsed.problems).decode(
        _charset_of(part, parsed.problems), errors="replace"
    )
    if content_type == "text/html":
        html.append(text)
    else:
        plain.append(text)
