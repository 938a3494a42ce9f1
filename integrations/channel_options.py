"""A channel's options read key by key, each failure naming the key and how to fix it.

The email channels (``smtp``, ``graph-mail``) share their rules for text, addresses, timeouts and
CA files; reading them here keeps one wording and one set of checks, so a config that ``config
check`` accepts for one channel is accepted for the other on the same terms.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from integrations.entra import local_path
from sgalert.config import refuse_unknown_options
from sgalert.errors import ConfigError

# One line, nothing a header or a log line could be split on.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")

# RFC 5322 dot-atom local part and an LDH domain of two or more labels; ASCII only, so every
# address is safe on an SMTP command line without SMTPUTF8 and in a header without encoding.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDR_SPEC = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@{_LABEL}(?:\.{_LABEL})+")


def is_addr_spec(address: str) -> bool:
    """True for a plain ``local@domain.tld`` address sgalert is willing to put on the wire."""
    if len(address) > 254 or _ADDR_SPEC.fullmatch(address) is None:
        return False
    local, _, domain = address.rpartition("@")
    return len(local) <= 64 and len(domain) <= 253


class ChannelOptions:
    """The options of ``[channels.NAME]`` of one kind, checked against the keys it reads."""

    def __init__(
        self, name: str, kind: str, options: Mapping[str, Any], known: tuple[str, ...], root: Path
    ) -> None:
        self.where = f"channels.{name}"
        self.options = options
        self.root = root
        refuse_unknown_options(options, known, self.where, kind)

    def __contains__(self, key: str) -> bool:
        return key in self.options

    def fail(self, key: str, problem: str, fix: str) -> ConfigError:
        return ConfigError(f"{self.where}.{key}: {problem}; {fix}")

    def text(self, key: str, example: str, default: str | None = None) -> str:
        value = self.options.get(key, default)
        if not isinstance(value, str) or not value.strip() or _UNSAFE.search(value):
            raise self.fail(
                key, "must be a non-empty string on one line", f'e.g. {key} = "{example}"'
            )
        return value.strip()

    def address(self, key: str, example: str) -> str:
        value = self.text(key, example)
        if not is_addr_spec(value):
            raise self.fail(
                key, f"{value!r} is not a plain email address", f'e.g. {key} = "{example}"'
            )
        return value

    def optional_address(self, key: str, example: str) -> str | None:
        return self.address(key, example) if key in self.options else None

    def https_url(self, key: str, default: str) -> str:
        value = self.text(key, default, default).rstrip("/")
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
            raise self.fail(key, f"{value!r} is not an https URL", f'e.g. {key} = "{default}"')
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.options.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, "must be true or false", f"e.g. {key} = {str(default).lower()}")
        return value

    def timeout(self, default: float) -> float:
        value = self.options.get("timeout", default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= 300:
            raise self.fail("timeout", "must be between 1 and 300 seconds", "e.g. timeout = 15")
        return float(value)

    def ca_file(self, example: str) -> Path | None:
        """A PEM bundle to trust (a school's own CA, a TLS-inspecting proxy's), or None."""
        if "ca_file" not in self.options:
            return None
        path = local_path(self.text("ca_file", example), self.root)
        if not path.is_file():
            raise self.fail("ca_file", f"{path} is not a readable file", "give a PEM bundle")
        try:
            ssl.create_default_context(cafile=str(path))
        except (ssl.SSLError, OSError):
            raise self.fail(
                "ca_file", f"{path} holds no usable certificate", "give a PEM bundle"
            ) from None
        return path
