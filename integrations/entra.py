"""Signing in to Microsoft Entra ID as an app: one registration, app-only tokens, msal's errors.

The Graph inbox (``kind = "graph"``), the Graph sendMail channel (``kind = "graph-mail"``) and
SMTP and IMAP with ``auth = "xoauth2"`` all sign in the same way: msal's client-credentials flow
for one app registration in one tenant, with a client secret or a certificate. This module is
that way, written once:

- :func:`read_app` reads ``tenant_id``, ``client_id``, one credential and ``authority_url`` from
  a source's or channel's options, and raises ConfigError naming the key and the fix. The
  credential is a client secret (``client_secret_env`` or ``client_secret_file``) or
  ``certificate_file``: a 0600 PEM file holding the private key and the certificate, with
  ``certificate_thumbprint`` and ``certificate_passphrase_env``/``_file`` when needed.
- :class:`AppToken` builds the msal app on first use, never at config time (building it fetches
  the tenant's OpenID metadata), keeps msal's token cache in memory, and hands out tokens.
- Every failure to get a token becomes a :class:`SignInError`: a short reason that never holds
  the secret, a token or the authority's own words, and whether a later try may succeed.

What msal does when sign-in fails (read from msal 1.39's source; the floor is 1.28), and what
becomes of it here:

- The token endpoint refuses with an OAuth error (a 4xx with a JSON body, e.g.
  ``invalid_client`` for a wrong secret): ``acquire_token_for_client`` *returns*
  ``{"error": ...}``. Not retryable for the errors no retry cures (:data:`PERMANENT_ERRORS`).
  msal answers the same request from its own memory for 60 s after a 400.
- The token endpoint answers 5xx: msal *raises* ``msal.exceptions.MsalServiceError`` ("HTTP
  Error: 500") without reading the body, and answers repeats from its memory for the reply's
  ``Retry-After`` (5 s without one). Retryable, with that ``Retry-After``.
- The answer is not JSON (a proxy's error page): msal logs the body and *raises*
  ``ValueError`` (``json.JSONDecodeError``). Retryable.
- The authority cannot be reached (refused, reset, timed out, TLS failed): msal lets the
  ``requests`` exception through. Retryable, unless the certificate is not trusted.
- Tenant discovery, when the app is built, fails the same ways: ``ValueError`` for a 4xx (an
  unknown tenant) or an answer that is not JSON, ``MsalServiceError`` for a 5xx, ``requests``
  exceptions for the network. The app is built again on the next try.

A ``requests`` exception holds the token request, whose body carries the client secret or the
signed assertion, so a SignInError is always raised outside the ``except`` block that caught
msal's exception: it has no ``__context__`` that a traceback or a log line could print.
"""

from __future__ import annotations

import re
import ssl
import stat
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msal
import requests
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from sgalert.errors import ConfigError, SgalertError
from sgalert.routing.backoff import retry_after_seconds
from sgalert.secrets import read_secret

AUTHORITY_URL = "https://login.microsoftonline.com"
#: The app-only scope of Exchange Online's IMAP, POP and SMTP (``IMAP.AccessAsApp``,
#: ``SMTP.SendAsApp``).
OUTLOOK_SCOPE = "https://outlook.office365.com/.default"
#: Every option :func:`read_app` reads, for the adapters' own lists of known keys.
APP_OPTIONS = (
    "tenant_id",
    "client_id",
    "client_secret_env",
    "client_secret_file",
    "certificate_file",
    "certificate_thumbprint",
    "certificate_passphrase_env",
    "certificate_passphrase_file",
    "authority_url",
)
#: Control characters, which no one-line option value may hold.
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: OAuth errors that no retry will cure: the app registration, its credential or the scope is
#: wrong. Anything else the authority refuses with may pass.
PERMANENT_ERRORS = frozenset(
    {"invalid_client", "unauthorized_client", "invalid_scope", "invalid_request", "invalid_grant"}
)
DEFAULT_TIMEOUT = 15.0

_PLACEHOLDER_TENANTS = frozenset({"common", "organizations", "consumers"})
_EXAMPLE_ID = "00000000-0000-0000-0000-000000000000"
_CERTIFICATE_ONLY = (
    "certificate_thumbprint",
    "certificate_passphrase_env",
    "certificate_passphrase_file",
)
_PRIVATE_KEY = re.compile(
    r"-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----.+?-----END \1-----", re.DOTALL
)
_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)
_HTTP_STATUS = re.compile(r"\b([45]\d\d)\b")
_EXPIRY_MARGIN = 300.0  # seconds: a held token is not handed out this close to expiry (as msal)


class SignInError(SgalertError):
    """No token this time.

    ``reason`` is short and safe to show or log: no secret, token or text of the authority's.
    ``retryable`` says whether a later try may succeed; ``retry_after`` is the authority's own
    wait in seconds, when it gave one.
    """

    def __init__(self, reason: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class AppRegistration:
    """Who signs in: an app registration in one tenant. The credential is never in a repr.

    ``credential`` is a client secret, or msal's certificate dict (``private_key`` and either
    ``thumbprint`` or ``public_certificate``, and ``passphrase`` when the key has one).
    """

    tenant_id: str
    client_id: str
    credential: str | dict[str, str] = field(repr=False)
    authority_url: str = AUTHORITY_URL

    @property
    def authority(self) -> str:
        return f"{self.authority_url}/{self.tenant_id}"


def local_path(value: str, root: Path) -> Path:
    """A path from the config: ``~`` expanded, relative to the workspace root."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


def read_app(options: Mapping[str, Any], where: str, root: Path) -> AppRegistration:
    """The app registration in ``options``, checked; ``where`` prefixes every error's key."""

    def fail(key: str, problem: str, fix: str) -> ConfigError:
        return ConfigError(f"{where}.{key}: {problem}; {fix}")

    def text(key: str, example: str, default: str | None = None) -> str:
        value = options.get(key, default)
        if not isinstance(value, str) or not value.strip() or CONTROL.search(value):
            raise fail(key, "must be a non-empty string on one line", f'e.g. {key} = "{example}"')
        return value.strip()

    tenant_id = text("tenant_id", _EXAMPLE_ID)
    if tenant_id.lower() in _PLACEHOLDER_TENANTS:
        raise fail(
            "tenant_id",
            f"{tenant_id!r} is not one tenant",
            "use the school's directory (tenant) id from the Entra admin centre",
        )
    client_id = text("client_id", _EXAMPLE_ID)

    has_secret = "client_secret_env" in options or "client_secret_file" in options
    has_certificate = "certificate_file" in options
    if has_secret and has_certificate:
        raise fail(
            "certificate_file",
            "both a client secret and a certificate are given",
            "keep one: the certificate is the safer choice",
        )
    if not has_secret and not has_certificate:
        raise fail(
            "client_secret_env",
            "no client credential given",
            'set client_secret_env = "VARIABLE", client_secret_file = "path" or'
            ' certificate_file = "path"',
        )
    for key in _CERTIFICATE_ONLY:
        if key in options and not has_certificate:
            raise fail(key, "is only for certificate_file", f"remove {key} or set certificate_file")
    credential: str | dict[str, str]
    if has_certificate:
        credential = _certificate_credential(options, where, root)
    else:
        credential = read_secret(options, "client_secret", where, root)

    authority_url = text("authority_url", AUTHORITY_URL, AUTHORITY_URL).rstrip("/")
    try:
        parts = urlsplit(authority_url)
        usable = parts.scheme == "https" and bool(parts.hostname)
    except ValueError:
        usable = False
    if not usable or parts.query or parts.fragment:
        raise fail(
            "authority_url",
            f"{authority_url!r} is not an https URL",
            f'e.g. authority_url = "{AUTHORITY_URL}", or leave it out',
        )
    return AppRegistration(tenant_id, client_id, credential, authority_url)


def _certificate_credential(options: Mapping[str, Any], where: str, root: Path) -> dict[str, str]:
    """msal's certificate credential from a PEM file holding the private key (and certificate).

    With ``certificate_thumbprint`` msal signs with the SHA-1 thumbprint Entra shows; without
    it, the certificate in the file gives msal a SHA-256 thumbprint, which Entra prefers.
    """
    key = "certificate_file"
    path = local_path(str(options[key]), root)
    try:
        info = path.stat()
        pem = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        raise ConfigError(f"{where}.{key}: {path} cannot be read as a PEM file") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{where}.{key}: {path} is readable by others; run chmod 600 {path}")
    found = _PRIVATE_KEY.search(pem)
    if found is None:
        raise ConfigError(
            f"{where}.{key}: {path} holds no private key; give one PEM file with the private key"
            " and the certificate uploaded to the app registration"
        )
    passphrase: str | None = None
    if "certificate_passphrase_env" in options or "certificate_passphrase_file" in options:
        passphrase = read_secret(options, "certificate_passphrase", where, root)
    try:
        load_pem_private_key(found.group(0).encode(), passphrase.encode() if passphrase else None)
    except (ValueError, TypeError):
        raise ConfigError(
            f"{where}.{key}: the private key in {path} cannot be loaded; check the file and"
            " certificate_passphrase_env"
        ) from None
    credential = {"private_key": found.group(0)}
    if passphrase:
        credential["passphrase"] = passphrase
    thumbprint = options.get("certificate_thumbprint")
    certificates = _CERTIFICATE.findall(pem)
    if thumbprint is not None:
        digits = re.sub(r"[\s:]", "", str(thumbprint))
        if not re.fullmatch(r"[0-9A-Fa-f]{40}", digits):
            raise ConfigError(
                f"{where}.certificate_thumbprint: must be the 40 hex digits Entra shows for"
                ' the certificate; e.g. certificate_thumbprint = "A1B2..."'
            )
        credential["thumbprint"] = digits.upper()
    elif certificates:
        credential["public_certificate"] = certificates[0]
    else:
        raise ConfigError(
            f"{where}.certificate_thumbprint: not given and {path} holds no certificate; add"
            " the certificate to the file or set certificate_thumbprint"
        )
    return credential


def untrusted_certificate(exc: BaseException) -> bool:
    """Whether a TLS certificate that is not trusted lies behind ``exc`` (requests wraps it)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


class _MsalHttp:
    """The HTTP client msal uses: our session, our trust anchors and a timeout on every call.

    ``verify`` goes on every call because requests lets ``REQUESTS_CA_BUNDLE`` override a
    session's own ``verify``, which would silently ignore ``ca_file``. The ``Retry-After`` of
    the last answer is kept for :class:`SignInError`, because msal's exception does not carry it.
    """

    def __init__(self, verify: str | bool, timeout: float | tuple[float, float]) -> None:
        self._session = requests.Session()
        self._verify = verify
        self._timeout = timeout
        self.retry_after: float | None = None

    def _seen(self, response: Any) -> Any:
        headers = getattr(response, "headers", None) or {}
        self.retry_after = retry_after_seconds(headers.get("Retry-After"))
        return response

    def get(self, url: str, params: Any = None, headers: Any = None, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self._timeout)
        kwargs.setdefault("verify", self._verify)
        return self._seen(self._session.get(url, params=params, headers=headers, **kwargs))

    def post(
        self, url: str, params: Any = None, data: Any = None, headers: Any = None, **kwargs: Any
    ) -> Any:
        kwargs.setdefault("timeout", self._timeout)
        kwargs.setdefault("verify", self._verify)
        return self._seen(
            self._session.post(url, params=params, data=data, headers=headers, **kwargs)
        )

    def close(self) -> None:
        self._session.close()


class AppToken:
    """App-only access tokens for one app registration and one scope, from msal.

    Blocking: call :meth:`get` and :meth:`forget` from a worker thread. msal keeps each token in
    its in-memory cache until five minutes before it expires, so asking before every request
    costs nothing. ``ca_file`` (a PEM bundle) is trusted instead of the system's CAs for the
    authority, as the adapters' own ``ca_file`` option promises.
    """

    def __init__(
        self,
        app: AppRegistration,
        scope: str,
        *,
        ca_file: Path | str | None = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        self.app = app
        self.scope = scope
        self._http = _MsalHttp(str(ca_file) if ca_file else True, timeout)
        self._lock = threading.Lock()
        self._msal: Any = None  # built on first use: building it fetches the tenant's metadata
        self._held: tuple[str, float] | None = None  # the last token, and when to stop using it

    def __repr__(self) -> str:
        return f"AppToken(client_id={self.app.client_id!r}, scope={self.scope!r})"

    def get(self, *, fresh: bool = False) -> str:
        """A token for the scope. Raises only :class:`SignInError`, never chained to msal's.

        ``fresh`` asks the authority for a new token even while msal holds one (a server may
        have refused that one). Should the authority fail to answer just then (a retryable
        failure), the token held is handed out again while it is valid: a reconnect during an
        Entra outage must not fail for want of a token that would have worked.
        """
        with self._lock:
            held = self._held if fresh else None
            if fresh:
                self._forget()
            try:
                return self._acquire()
            except SignInError as error:
                if held is None or not error.retryable or time.monotonic() >= held[1]:
                    raise
                return held[0]

    def _acquire(self) -> str:
        failure: SignInError | None = None
        result: Any = None
        building = False
        try:
            if self._msal is None:
                building = True
                self._msal = self._build()
                building = False
            result = self._msal.acquire_token_for_client(scopes=[self.scope])
        except requests.RequestException as exc:
            failure = _unreachable(exc)
        except msal.exceptions.MsalServiceError as exc:
            failure = self._server_error(str(exc))
        except ValueError:
            failure = SignInError(
                "the sign-in authority did not give the tenant's metadata (check tenant_id"
                " and authority_url)"
                if building
                else "the sign-in authority's answer was not JSON",
                retryable=True,
            )
        except Exception as exc:
            # msal is a third party: whatever else it raises is named by type only, since its
            # text or its context may quote the token request.
            failure = SignInError(f"sign-in failed ({type(exc).__name__})", retryable=True)
        if failure is not None:
            raise failure
        token = _token(result)
        lifetime = result.get("expires_in")
        if isinstance(lifetime, int | float) and not isinstance(lifetime, bool):
            self._held = (token, time.monotonic() + lifetime - _EXPIRY_MARGIN)
        return token

    def forget(self) -> None:
        """Drop cached tokens, so the next :meth:`get` signs in afresh (after a refusal)."""
        with self._lock:
            self._forget()

    def close(self) -> None:
        self._http.close()

    def _forget(self) -> None:
        self._held = None
        if self._msal is not None:
            self._msal.remove_tokens_for_client()

    def _build(self) -> Any:
        app = self.app
        # instance_discovery=False: the authority comes from the operator's config; checking it
        # against Microsoft's public list would only add a call to the public cloud (and fail
        # for a loopback or a sovereign-cloud authority).
        return msal.ConfidentialClientApplication(
            app.client_id,
            authority=app.authority,
            client_credential=app.credential,
            http_client=self._http,
            instance_discovery=False,
        )

    def _server_error(self, said: str) -> SignInError:
        status = _HTTP_STATUS.search(said)
        shown = f"HTTP {status.group(1)}" if status else "server error"
        return SignInError(
            f"the sign-in authority failed ({shown}); trying again later",
            retryable=True,
            retry_after=self._http.retry_after,
        )


def _unreachable(exc: requests.RequestException) -> SignInError:
    if untrusted_certificate(exc):
        return SignInError(
            "the sign-in authority's TLS certificate is not trusted (check authority_url and"
            " ca_file)",
            retryable=False,
        )
    return SignInError(f"sign-in authority unreachable ({type(exc).__name__})", retryable=True)


def _token(result: Any) -> str:
    token = result.get("access_token") if isinstance(result, dict) else None
    if isinstance(token, str) and token:
        return token
    error = str(result.get("error", "unknown")) if isinstance(result, dict) else "unknown"
    error = re.sub(r"[^A-Za-z0-9_.-]", "", error)[:60] or "unknown"
    permanent = error in PERMANENT_ERRORS
    hint = ": check tenant_id, client_id and the client secret or certificate" if permanent else ""
    raise SignInError(f"sign-in refused ({error}){hint}", retryable=not permanent)
