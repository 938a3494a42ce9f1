"""A case's sealed original message, opened for an entitled person and shown as safe text.

The original bytes are sealed with the case: under the content key, or, for whistleblowing,
under the identity key (the headers name the reporter). Opening them is audited
(``original-read``); a person who reads the case but not the reporter's identity is refused the
original in one line, and the refusal is audited like any other (see :mod:`sgalert.desk.access`).

:func:`render_original` shows the bytes as a tree of MIME parts, each with its headers and, for
text parts, the decoded text. It never raises on hostile bytes: the structure is parsed only when
intake's own limits allow it (:func:`sgalert.intake.mime.structure_refusal`), otherwise the raw
text is shown. Every string passes through :func:`sgalert.text.printable`, and the message's own
lines are prefixed with ``|`` so a line in a hostile body cannot pass for one of ours.
"""

from __future__ import annotations

import email
import email.errors
import email.policy
import re
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.message import Message

from sgalert.config import ParseLimits
from sgalert.desk.access import Refused, refusals
from sgalert.desk.views import find_summary
from sgalert.errors import NotFound
from sgalert.intake.mime import structure_refusal
from sgalert.model import KeyName
from sgalert.records import audit
from sgalert.records.cases import FIELD_RAW, open_field, sealed_with, unwrap_data_keys
from sgalert.records.keyring import Identity
from sgalert.records.store import Store
from sgalert.text import printable

ORIGINAL_CAP = 64 * 1024
"""How many characters of a rendered original a command shows unless asked for all of it."""

_FOLD = re.compile(r"\r?\n[ \t]+")
_TEXT = "text/"


@dataclass(frozen=True, slots=True)
class Original:
    """The sealed original of one case, decrypted. Its bytes stay out of its repr (and so out of
    logs and tracebacks): the headers can name a child or a reporter."""

    ref: str
    raw: bytes = field(repr=False)


async def open_original(store: Store, identity: Identity, ref: str) -> Original:
    """Decrypt a case's original message for someone entitled to it. Audited, refusals too."""
    async with refusals(store, identity, "read-original"), store.write() as db:
        summary = await find_summary(db, ref)
        keys = await unwrap_data_keys(db, identity, [summary.id])
        if (summary.id, KeyName.CONTENT.value) not in keys:
            raise Refused(summary.id, summary.ref)
        key_name = await sealed_with(db, summary.id, FIELD_RAW)
        if key_name is None:
            raise NotFound(f"case {summary.ref} has no original message (it was recorded by hand)")
        if (summary.id, key_name) not in keys:
            raise Refused(
                summary.id,
                summary.ref,
                f"the original message of case {summary.ref} (it is sealed with the reporter's"
                " identity)",
                {"key": key_name},
            )
        raw = await open_field(db, keys, summary.id, FIELD_RAW)
        if raw is None:  # sealed_with saw it in this same transaction
            raise NotFound(f"case {summary.ref} has no original message")
        detail = {"ref": summary.ref, "bytes": len(raw), "key": key_name}
        await audit.append(
            db, [audit.AuditEvent(identity.email, "original-read", summary.id, detail)]
        )
        return Original(summary.ref, raw)


def _one_line(value: str) -> str:
    return printable(_FOLD.sub(" ", value), keep_newlines=False)


def _header_text(value: object) -> str:
    """A header value decoded (RFC 2047 words) where it can be, else as written."""
    text = str(value)
    try:
        text = str(make_header(decode_header(text)))
    except (ValueError, LookupError, UnicodeError, AssertionError, email.errors.MessageError):
        pass
    return _one_line(text)


def _quoted(text: str, indent: str) -> list[str]:
    """The message's own text, each line marked as the message's, control characters shown."""
    body = printable(text.replace("\r\n", "\n"))
    return [f"{indent}| {line}" for line in body.split("\n")]


def _decoded(part: Message) -> bytes:
    try:
        payload = part.get_payload(decode=True)
    except (ValueError, TypeError, AssertionError, LookupError, UnicodeError):
        return b""
    return payload if isinstance(payload, bytes) else b""


def _charset(part: Message) -> str:
    try:
        charset = str(part.get_content_charset() or "utf-8")
        b"".decode(charset)
    except (LookupError, UnicodeError, ValueError, TypeError):
        return "utf-8"
    return charset


class _Tree:
    """Walks a parsed message within the limits, writing one line per header and text line."""

    def __init__(self, limits: ParseLimits) -> None:
        self.limits = limits
        self.lines: list[str] = []
        self.parts = 0

    def part(self, part: Message, number: str, depth: int) -> None:
        indent = "  " * depth
        self.parts += 1
        try:
            content_type = part.get_content_type()
        except Exception:  # a hostile Content-Type: keep walking, say so
            content_type = "(unreadable content type)"
        self.lines.append(f"{indent}[{number}] {_one_line(content_type)}")
        for index, (name, value) in enumerate(part.items()):
            if index >= self.limits.max_headers:
                self.lines.append(f"{indent}    (more headers not shown)")
                break
            self.lines.append(f"{indent}    {_one_line(str(name))}: {_header_text(value)}")
        if part.is_multipart():
            children = part.get_payload()
            if depth + 1 >= self.limits.max_depth:
                self.lines.append(f"{indent}  (nested deeper than {self.limits.max_depth})")
                return
            for index, child in enumerate(children if isinstance(children, list) else []):
                if self.parts >= self.limits.max_parts:
                    self.lines.append(f"{indent}  (more parts not shown)")
                    return
                if isinstance(child, Message):
                    self.part(child, f"{number}.{index + 1}", depth + 1)
            return
        payload = _decoded(part)
        if content_type.startswith(_TEXT):
            self.lines.append(f"{indent}  {len(payload):,} bytes of text:")
            text = payload.decode(_charset(part), errors="replace")
            self.lines += _quoted(text, indent + "  ")
        else:
            self.lines.append(
                f"{indent}  {len(payload):,} bytes, not text: not shown (an attachment is saved"
                " with `sgalert case attachment`)"
            )


def render_original(raw: bytes, limits: ParseLimits | None = None) -> str:
    """The original as a tree of parts with headers and decoded text, safe for a terminal."""
    limits = limits or ParseLimits()
    lines = [f"Original message: {len(raw):,} bytes, as received (shown as text, nothing run)", ""]
    refusal = structure_refusal(raw, limits)
    message: Message | None = None
    if refusal is None:
        try:
            message = email.message_from_bytes(raw, policy=email.policy.compat32)
        except Exception as exc:  # RecursionError, MemoryError, or a parser bug: show raw
            refusal = f"the message could not be parsed ({type(exc).__name__})"
    if message is None:
        lines.append(f"Its MIME structure is not shown: {_one_line(refusal or '')}")
        lines.append("Raw text:")
        lines += _quoted(raw.decode("utf-8", errors="replace"), "")
        return "\n".join(lines)
    tree = _Tree(limits)
    try:
        tree.part(message, "1", 0)
    except RecursionError:
        tree.lines.append("(the structure is too deep to show further)")
    return "\n".join(lines + tree.lines)


def capped(text: str, cap: int | None) -> tuple[str, bool]:
    """``text`` cut to ``cap`` characters (None: all of it), and whether it was cut."""
    if cap is None or len(text) <= cap:
        return text, False
    return text[:cap], True
