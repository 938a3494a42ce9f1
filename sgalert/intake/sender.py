"""Is the sender who they say they are? A strict From parser and Authentication-Results.

sgalert never decides on an address parsed by ``email.utils``: Pythons without the fixes for
CVE-2023-27043 split some crafted headers into the wrong address. :func:`parse_from` accepts
only the plain forms a police or council mail system sends (``addr`` or ``Name <addr>``) and
reports anything else as a problem. The verdict then rests on the ``Authentication-Results``
header stamped by the school's own receiving server (RFC 8601) and an optional allow-list of
sender domains. Any problem flags the case ``unverified-sender``; nothing is dropped.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from sgalert.text import BIDI_CONTROLS

# Exchange Online stamps Authentication-Results without an authserv-id; configure this value.
EXCHANGE_ONLINE = "exchange-online"

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LOCAL = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = rf"(?:{_LABEL}\.)+[A-Za-z][A-Za-z0-9-]{{0,62}}"
_ADDR_SPEC = re.compile(rf"({_LOCAL})@({_DOMAIN})")
_QUOTED = re.compile(r'"((?:[^"\\\r\n]|\\.)*)"')
_PHRASE = re.compile(r"[^<>@,;:\"\[\]()\\]*")
_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
_ADDRESS_IN_NAME = re.compile(rf"@\s*({_DOMAIN})", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Sender:
    """The From header as sgalert understood it."""

    display_name: str
    address: str | None
    domain: str | None


@dataclass(slots=True)
class SenderVerdict:
    sender: Sender
    problems: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return not self.problems


def _decode_words(text: str) -> str:
    from email.errors import MessageError
    from email.header import decode_header, make_header

    try:
        return str(make_header(decode_header(text)))
    except (ValueError, LookupError, UnicodeError, AssertionError, MessageError):
        return text


def parse_from(raw: str) -> tuple[Sender, list[str]]:
    """Strictly parse one From value; unusual syntax is a problem, never a guess."""
    # Lone surrogates (undecoded 8-bit bytes) are not text: replace them, never pass them on.
    raw = re.sub("[\ud800-\udfff]", "\ufffd", raw)
    value = " ".join(raw.replace("\r", " ").replace("\n", " ").split())
    problems: list[str] = []
    if not value:
        return Sender("", None, None), ["message has no From address"]
    whole = _ADDR_SPEC.fullmatch(value)
    if whole:
        return Sender("", f"{whole[1]}@{whole[2].lower()}", whole[2].lower()), problems
    if not value.endswith(">") or value.count("<") != 1 or value.count(">") != 1:
        return Sender(value, None, None), ["From header is not a plain `Name <address>` form"]
    name_part, _, rest = value.partition("<")
    addr = _ADDR_SPEC.fullmatch(rest[:-1].strip())
    name_part = name_part.strip()
    quoted = _QUOTED.fullmatch(name_part)
    if quoted:
        display = re.sub(r"\\(.)", r"\1", quoted[1])
    elif _PHRASE.fullmatch(name_part):
        display = name_part
    else:
        return Sender(name_part, None, None), [
            "From display name has characters that hide the address"
        ]
    display = _decode_words(display)
    if addr is None:
        return Sender(display, None, None), ["From address is not a plain ASCII address"]
    return Sender(display, f"{addr[1]}@{addr[2].lower()}", addr[2].lower()), problems


def _scripts(text: str) -> set[str]:
    scripts: set[str] = set()
    for char in text:
        if char.isalpha():
            name = unicodedata.name(char, "")
            scripts.add(name.split(" ")[0] if name else "UNKNOWN")
    return scripts


def display_name_problems(sender: Sender) -> list[str]:
    """Signs that a display name is dressed up to pass as someone else."""
    problems: list[str] = []
    name = sender.display_name
    if not name.isascii() and any(c in BIDI_CONTROLS for c in name):
        problems.append("From display name contains bidi control characters")
    if (not name.isascii() and any(c in _ZERO_WIDTH for c in name)) or any(
        unicodedata.category(c) == "Cc" for c in name
    ):
        problems.append("From display name contains invisible characters")
    look_alikes = {"LATIN", "CYRILLIC", "GREEK", "ARMENIAN"}
    for word in name.split():  # an ASCII word is all Latin: nothing to mix
        if not word.isascii() and len(_scripts(word) & look_alikes) > 1:
            problems.append("From display name mixes look-alike alphabets")
            break
    # NFKC first, so a full-width or small commercial at and full-width dots count as well.
    shown = _ADDRESS_IN_NAME.search(unicodedata.normalize("NFKC", name))
    if shown and shown[1].lower() != sender.domain:
        problems.append("From display name shows a different address than the real sender")
    if sender.domain and any(label.startswith("xn--") for label in sender.domain.split(".")):
        problems.append("sender domain is internationalised (possible look-alike)")
    return problems


@dataclass(frozen=True, slots=True)
class AuthResults:
    authserv_id: str | None
    results: dict[str, list[dict[str, str]]]


def parse_authentication_results(value: str) -> AuthResults:
    """Parse an RFC 8601 header tolerantly; comments are removed, unknown parts ignored."""
    text = re.sub(r"\([^()]*\)", " ", value)
    pieces = [p.strip() for p in text.split(";")]
    authserv: str | None = None
    if pieces and pieces[0] and "=" not in pieces[0].split()[0]:
        authserv = pieces[0].split()[0].lower()
        pieces = pieces[1:]
    results: dict[str, list[dict[str, str]]] = {}
    for piece in pieces:
        tokens = piece.split()
        if not tokens or "=" not in tokens[0]:
            continue
        method, _, result = tokens[0].partition("=")
        entry = {"result": result.lower()}
        for token in tokens[1:]:
            key, sep, val = token.partition("=")
            if sep:
                entry[key.lower()] = val.strip('"').lower()
        results.setdefault(method.lower(), []).append(entry)
    return AuthResults(authserv, results)


_DMARC_FAILURES = {"fail", "permerror", "temperror", "quarantine", "reject"}


def _about_domain(domain: str, header_from: str | None) -> bool:
    """A DMARC result applies to this domain (a result that names no domain is taken as ours)."""
    return header_from is None or header_from.rsplit("@", 1)[-1] == domain


def _aligned(domain: str, other: str | None) -> bool:
    if not other:
        return False
    other = other.rsplit("@", 1)[-1]
    return domain == other or domain.endswith("." + other) or other.endswith("." + domain)


def check_sender(
    raw_from: str,
    authentication_results: list[str],
    *,
    authserv_id: str | None,
    allowed_domains: tuple[str, ...] = (),
) -> SenderVerdict:
    """The verdict on a message's sender, with every reason it is not trusted."""
    sender, problems = parse_from(raw_from)
    verdict = SenderVerdict(sender, problems)
    verdict.problems.extend(display_name_problems(sender))
    domain = sender.domain
    if (
        allowed_domains
        and domain is not None
        and not any(
            domain == d.lower() or domain.endswith("." + d.lower()) for d in allowed_domains
        )
    ):
        verdict.problems.append("sender domain is not on this source's allow-list")
    if authserv_id is None:
        return verdict
    stamps = [parse_authentication_results(v) for v in authentication_results]
    if authserv_id == EXCHANGE_ONLINE:
        ours = stamps[:1]
    else:
        ours = [s for s in stamps if s.authserv_id == authserv_id.lower()][:1]
    if not ours:
        verdict.problems.append(f"no Authentication-Results from {authserv_id}")
        return verdict
    if domain is None:
        return verdict
    results = ours[0].results
    # DMARC is the receiving server's verdict on this From domain: a pass about another domain
    # (a second From header the server judged instead) counts for nothing, and a failure is not
    # overruled by sgalert's own, looser, alignment of SPF or DKIM.
    all_dmarc = results.get("dmarc", [])
    dmarc_results = [r for r in all_dmarc if _about_domain(domain, r.get("header.from"))]
    failed = [r["result"] for r in dmarc_results if r["result"] in _DMARC_FAILURES]
    if failed:
        verdict.problems.append(f"sender not authenticated (dmarc={failed[0]} for {domain})")
        return verdict
    if all_dmarc and not dmarc_results:
        verdict.problems.append("DMARC was evaluated for a different From domain than this one")
        return verdict
    dmarc = any(r["result"] == "pass" for r in dmarc_results)
    dkim = any(
        r["result"] == "pass" and _aligned(domain, r.get("header.d") or r.get("header.i"))
        for r in results.get("dkim", [])
    )
    spf = any(
        r["result"] == "pass" and _aligned(domain, r.get("smtp.mailfrom"))
        for r in results.get("spf", [])
    )
    if not (dmarc or dkim or spf):
        summary = ", ".join(
            f"{method}={entries[0]['result']}" for method, entries in sorted(results.items())
        )
        verdict.problems.append(f"sender not authenticated ({summary or 'no results'})")
    return verdict
