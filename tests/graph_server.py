"""A loopback stand-in for Microsoft Entra ID and Microsoft Graph mail, over real TLS.

It follows the documented wire shapes closely enough for the real msal library and the real
adapter to talk to it:

- Entra ID: ``GET /{tenant}/v2.0/.well-known/openid-configuration`` (msal's tenant discovery)
  and ``POST /{tenant}/oauth2/v2.0/token`` (client credentials, with a client secret or a signed
  client assertion, verified against the registered certificate).
- Graph: ``GET .../mailFolders/{folder}/messages/delta`` with ``@odata.nextLink`` paging and an
  ``@odata.deltaLink`` at the end of each round (honouring ``changeType`` and
  ``Prefer: odata.maxpagesize``), ``@removed`` entries for messages that left the folder,
  ``GET .../messages/{id}/$value`` (the MIME), ``PATCH .../messages/{id}`` (``isRead``),
  ``POST .../messages/{id}/move``; 401 for unknown tokens, 410 Gone for forgotten delta tokens.
- Graph ``POST /users/{sender}/sendMail``: the documented JSON body is checked (subject, a Text
  or HTML body, recipients as ``emailAddress`` objects, only ``X-`` custom headers), each request
  is kept in ``sent``, and the answer is ``202 Accepted`` with no body; 403 ``ErrorAccessDenied``
  without the Mail.Send permission (``mail_send``), 404 ``ErrorInvalidUser`` for a sender that is
  not in ``senders``.

msal insists on https for the authority and its token endpoint, so the server speaks TLS with a
throwaway CA made by :func:`make_tls`; the adapter trusts it through its ``ca_file`` option.
Faults (429 with Retry-After, 5xx, 403, slow replies, and for the token endpoint a body that is
not JSON) are queued per kind of request, and every request and every mailbox change is
appended to ``events`` so tests can check their order. :meth:`GraphServer.stop` and a later
:meth:`GraphServer.start` keep the port, so a test can take the sign-in authority away and
bring it back. ``scopes`` holds further app-only scopes the token endpoint grants (Exchange
Online's ``https://outlook.office365.com/.default`` for IMAP), and :meth:`GraphServer.active`
says whether a token is one it issued and has not revoked, for an introspection endpoint.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

# The loopback servers share one throwaway CA recipe; re-exported for the Graph tests.
from .http_sink import Tls as Tls
from .http_sink import make_tls as make_tls

TENANT = "5b3c2e8a-1d4f-4c6b-9e21-000000000001"
CLIENT_ID = "8f0d6a4e-7b2c-4e5a-a1d3-000000000002"
CLIENT_SECRET = "invented-client-secret-value"
MAILBOX = "encompass@school.example.org"
SENDER = "safeguarding@school.example.org"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_client_certificate(directory: Path) -> tuple[Path, x509.Certificate]:
    """An app registration's certificate: one 0600 PEM with the RSA key and the certificate."""
    now = datetime.now(UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("sgalert graph reader"))
        .issuer_name(_name("sgalert graph reader"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    path = directory / "graph-app.pem"
    path.touch(mode=0o600)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + cert.public_bytes(serialization.Encoding.PEM)
    )
    return path, cert


@dataclass
class Mail:
    id: str
    raw: bytes
    folder: str
    is_read: bool
    received: datetime
    created_seq: int
    updated_seq: int


@dataclass(frozen=True)
class Departure:
    """A message that left a folder: later delta rounds report it as ``@removed``."""

    id: str
    folder: str
    arrived_seq: int
    left_seq: int


@dataclass
class Fault:
    """The next ``times`` requests of ``kind`` get this answer (or are only delayed)."""

    kind: str
    status: int | None
    times: int = 1
    retry_after: str | None = None
    code: str = ""
    delay: float = 0.0
    body: bytes | None = None  # instead of the JSON error (only for "token")


@dataclass
class SentMail:
    """One ``sendMail`` request as Graph received it, and what it answered."""

    sender: str
    payload: Any
    headers: dict[str, str]
    status: int
    request_id: str
    answer: Any = None


@dataclass
class Event:
    at: float
    kind: str
    detail: str = ""
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Round:
    entries: list[dict[str, Any]]
    baseline: int
    change_type: str | None


class GraphServer:
    """Entra ID and Graph mail for one mailbox, on 127.0.0.1 over TLS."""

    def __init__(self, tls: Tls, *, page_size: int = 2) -> None:
        self.tls = tls
        self.page_size = page_size
        self.client_secret = CLIENT_SECRET
        self.client_certificate: x509.Certificate | None = None
        self.mails: dict[str, Mail] = {}
        self.departures: list[Departure] = []
        self.events: list[Event] = []
        self.faults: list[Fault] = []
        self.tokens: set[str] = set()
        self.issued: list[str] = []
        self.assertion_headers: list[dict[str, Any]] = []
        self.senders: set[str] = {MAILBOX, SENDER}
        self.scopes: set[str] = set()  # granted besides this server's own Graph scope
        self.mail_send = True  # whether the app holds the Mail.Send application permission
        self.sent: list[SentMail] = []
        self._request_ids = itertools.count(1)
        self._lock = threading.RLock()
        self._seq = itertools.count(1)
        self._ids = itertools.count(1)
        self._seq_now = 0
        self._rounds: dict[str, _Round] = {}
        self._delta_tokens: dict[str, tuple[int, str | None]] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0  # kept across stop() and start()

    # ----- lifecycle ----------------------------------------------------------------------

    def start(self) -> GraphServer:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.tls.cert_file, self.tls.key_file)
        handler = type("Handler", (_Handler,), {"graph": self})
        httpd = _Server(("127.0.0.1", self._port), handler)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        self._port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="graph-server"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()  # joins the request threads
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._httpd = self._thread = None

    @property
    def base(self) -> str:
        assert self._port, "the server was never started"
        return f"https://127.0.0.1:{self._port}"

    @property
    def graph_url(self) -> str:
        return f"{self.base}/v1.0"

    @property
    def authority_url(self) -> str:
        return self.base

    # ----- the mailbox ----------------------------------------------------------------------

    def _tick(self) -> int:
        self._seq_now = next(self._seq)
        return self._seq_now

    def add(
        self,
        raw: bytes,
        *,
        folder: str = "inbox",
        is_read: bool = False,
        received: datetime | None = None,
    ) -> str:
        """A message arrives (or was there long ago): returns its Graph id."""
        with self._lock:
            seq = self._tick()
            message_id = f"AAMkADexample{next(self._ids):04d}-Mzk_AAA="
            self.mails[message_id] = Mail(
                message_id,
                raw,
                folder.lower(),
                is_read,
                received or datetime.now(UTC),
                created_seq=seq,
                updated_seq=seq,
            )
            return message_id

    def forget_delta_tokens(self) -> None:
        """What Exchange does when its delta token cache evicts old tokens."""
        with self._lock:
            self._delta_tokens.clear()
            self._rounds.clear()

    def revoke_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()

    def active(self, token: str) -> bool:
        """Whether ``token`` was issued here and not revoked since."""
        with self._lock:
            return token in self.tokens

    def fail(self, kind: str, status: int | None, **options: Any) -> None:
        with self._lock:
            self.faults.append(Fault(kind, status, **options))

    def record(self, kind: str, detail: str = "", status: int = 0) -> None:
        with self._lock:
            self.events.append(Event(time.monotonic(), kind, detail, status))

    def kinds(self, *kinds: str) -> list[Event]:
        with self._lock:
            return [e for e in self.events if e.kind in kinds]

    def position(self, kind: str, detail: str) -> int:
        with self._lock:
            for index, event in enumerate(self.events):
                if event.kind == kind and event.detail == detail and event.status < 300:
                    return index
        raise AssertionError(f"no {kind} event for {detail}")

    # ----- request handling (server threads) ------------------------------------------------

    def _fault(self, kind: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.kind == kind and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def _changes(self, folder: str, baseline: int, change_type: str | None) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        for mail in self.mails.values():
            here = mail.folder == folder
            if here and mail.created_seq > baseline:
                entries.append(
                    {
                        "@odata.type": "#microsoft.graph.message",
                        "@odata.etag": f'W/"{mail.updated_seq}"',
                        "id": mail.id,
                        "isRead": mail.is_read,
                        "receivedDateTime": mail.received.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    }
                )
            elif here and mail.updated_seq > baseline and change_type != "created":
                entries.append({"id": mail.id, "isRead": mail.is_read})
        for gone in self.departures:
            if gone.folder == folder and gone.left_seq > baseline >= gone.arrived_seq:
                entries.append({"id": gone.id, "@removed": {"reason": "deleted"}})
        return entries

    def delta(self, folder: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        """One delta page: start a round (initial or from a delta token) or continue one."""
        with self._lock:
            if "$skiptoken" in query:
                token = query["$skiptoken"][0]
                current = self._rounds.pop(token, None)
                if current is None:
                    return 410, _error("syncStateNotFound", "The sync state is not found.")
            else:
                if "$deltatoken" in query:
                    state = self._delta_tokens.get(query["$deltatoken"][0])
                    if state is None:
                        return 410, _error("syncStateNotFound", "The sync state is not found.")
                    baseline, change_type = state
                else:
                    baseline, change_type = 0, (query.get("changeType") or [None])[0]
                current = _Round(
                    self._changes(folder, baseline, change_type), self._seq_now, change_type
                )
            page, rest = current.entries[: self.page_size], current.entries[self.page_size :]
            link = f"{self.graph_url}/users/{quote(MAILBOX)}/mailFolders/{folder}/messages/delta"
            body: dict[str, Any] = {"@odata.context": f"{self.graph_url}/$metadata", "value": page}
            if rest:
                token = f"skip{len(self._rounds)}x{time.monotonic_ns()}"
                self._rounds[token] = _Round(rest, current.baseline, current.change_type)
                body["@odata.nextLink"] = f"{link}?$skiptoken={token}"
            else:
                token = f"delta{time.monotonic_ns()}"
                self._delta_tokens[token] = (current.baseline, current.change_type)
                body["@odata.deltaLink"] = f"{link}?$deltatoken={token}"
            return 200, body

    def accepted(self) -> list[SentMail]:
        """The sendMail requests Graph queued (202)."""
        with self._lock:
            return [mail for mail in self.sent if mail.status == 202]

    def send_mail(self, sender: str, raw: bytes, headers: dict[str, str]) -> SentMail:
        """``POST /users/{sender}/sendMail``, checked as Graph checks it; the body to answer
        with is ``None`` for 202 Accepted."""
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = None
        with self._lock:
            status, body = self._check_send(sender, payload, headers)
            request_id = f"{next(self._request_ids):08d}-0000-4000-8000-000000000000"
            self.sent.append(SentMail(sender, payload, headers, status, request_id, body))
            return self.sent[-1]

    def _check_send(self, sender: str, payload: Any, headers: dict[str, str]) -> tuple[int, Any]:
        if sender.lower() not in {s.lower() for s in self.senders}:
            return 404, _error("ErrorInvalidUser", "The requested user is invalid.")
        if not self.mail_send:
            return 403, _error("ErrorAccessDenied", "Access is denied. Check credentials.")
        if not headers.get("Content-Type", "").startswith("application/json"):
            return 415, _error("UnsupportedMediaType", "Content-Type must be JSON.")
        message = payload.get("message") if isinstance(payload, dict) else None
        if not isinstance(message, dict):
            return 400, _error("ErrorInvalidRequest", "The message is missing.")
        body = message.get("body")
        if not isinstance(body, dict) or body.get("contentType") not in ("Text", "HTML"):
            return 400, _error("ErrorInvalidRequest", "The body is not valid.")
        if not isinstance(message.get("subject", ""), str):
            return 400, _error("ErrorInvalidRequest", "The subject is not valid.")

        def addresses(value: Any) -> bool:
            return isinstance(value, list) and all(
                isinstance(r, dict)
                and isinstance(r.get("emailAddress"), dict)
                and "@" in str(r["emailAddress"].get("address", ""))
                for r in value
            )

        recipients = message.get("toRecipients")
        if not recipients or not addresses(recipients) or not addresses(message.get("replyTo", [])):
            return 400, _error("ErrorInvalidRecipients", "At least one recipient is not valid.")
        for header in message.get("internetMessageHeaders", []):
            name = header.get("name", "") if isinstance(header, dict) else ""
            if not str(name).lower().startswith("x-"):
                return 400, _error("InvalidInternetMessageHeader", "Only x- headers are allowed.")
        if not isinstance(payload.get("saveToSentItems", True), bool):
            return 400, _error("ErrorInvalidRequest", "saveToSentItems is not a boolean.")
        return 202, None

    def token(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        def value(name: str) -> str:
            return (form.get(name) or [""])[0]

        if value("grant_type") != "client_credentials" or value("client_id") != CLIENT_ID:
            return 400, {"error": "unauthorized_client", "error_description": "AADSTS700016"}
        if value("scope") not in {f"{self.base}/.default", *self.scopes}:
            return 400, {"error": "invalid_scope", "error_description": "AADSTS70011"}
        if value("client_assertion"):
            if not self._assertion_ok(value("client_assertion")):
                return 401, {"error": "invalid_client", "error_description": "AADSTS700027"}
        elif value("client_secret") != self.client_secret:
            return 401, {
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret provided.",
            }
        with self._lock:
            token = f"invented-access-token-{len(self.issued) + 1}"
            self.tokens.add(token)
            self.issued.append(token)
        return 200, {"token_type": "Bearer", "expires_in": 3599, "access_token": token}

    def _assertion_ok(self, assertion: str) -> bool:
        certificate = self.client_certificate
        if certificate is None:
            return False
        header = jwt.get_unverified_header(assertion)
        self.assertion_headers.append(header)
        der = certificate.public_bytes(serialization.Encoding.DER)
        sha1 = jwt.utils.base64url_encode(hashlib.sha1(der).digest()).decode()  # noqa: S324
        sha256 = jwt.utils.base64url_encode(hashlib.sha256(der).digest()).decode()
        # msal keeps the base64 padding; RFC 7515 does not, so compare without it.
        x5t = str(header.get("x5t", "")).rstrip("=")
        x5t_s256 = str(header.get("x5t#S256", "")).rstrip("=")
        if x5t != sha1 and x5t_s256 != sha256:
            return False
        try:
            claims = jwt.decode(
                assertion,
                certificate.public_key(),  # type: ignore[arg-type]
                algorithms=["RS256", "PS256"],
                audience=f"{self.base}/{TENANT}/oauth2/v2.0/token",
            )
        except jwt.InvalidTokenError:
            return False
        return bool(claims.get("iss") == claims.get("sub") == CLIENT_ID)


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # so server_close() waits for every request thread
    block_on_close = True


class _Handler(BaseHTTPRequestHandler):
    graph: GraphServer
    server_version = "graph-test"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(
        self,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
        *,
        content_type: str | None = None,
    ) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        ctype = "message/rfc822" if isinstance(body, bytes) else "application/json"
        self.send_header("Content-Type", content_type or ctype)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        graph = self.graph
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        query = parse_qs(url.query)
        if parts[:1] == [TENANT]:
            self._identity(method, parts[1:])
            return
        kind, detail = _classify(method, parts, query)
        fault = graph._fault(kind)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is not None and fault.status is not None:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            graph.record(kind, detail, fault.status)
            self._send(fault.status, _error(fault.code or "TooManyRequests", "fault"), headers)
            return
        authorization = self.headers.get("Authorization", "")
        with graph._lock:
            known = authorization.removeprefix("Bearer ") in graph.tokens
        if not known:
            graph.record(kind, detail, 401)
            self._send(401, _error("InvalidAuthenticationToken", "Access token has expired."))
            return
        if kind == "send-mail":
            self._send_mail(detail)
            return
        status, body = self._graph(method, kind, detail, parts, query)
        graph.record(kind, detail, status)
        with graph._lock:
            graph.events[-1].headers = {"Prefer": self.headers.get("Prefer", "")}
        self._send(status, body)

    def _send_mail(self, sender: str) -> None:
        graph = self.graph
        headers = {name: self.headers.get(name, "") for name in ("Content-Type", "Authorization")}
        sent = graph.send_mail(sender, self._body(), headers)
        graph.record("send-mail", sender, sent.status)
        reply = {"request-id": sent.request_id, "client-request-id": sent.request_id}
        if sent.answer is not None:
            self._send(sent.status, sent.answer, reply)
            return
        # 202 Accepted: no body at all, as Graph answers sendMail.
        self.send_response(sent.status)
        self.send_header("Content-Length", "0")
        for name, value in reply.items():
            self.send_header(name, value)
        self.end_headers()

    def _identity(self, method: str, rest: list[str]) -> None:
        graph = self.graph
        if method == "GET" and rest == ["v2.0", ".well-known", "openid-configuration"]:
            graph.record("discovery")
            base = f"{graph.base}/{TENANT}"
            self._send(
                200,
                {
                    "issuer": f"{base}/v2.0",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                },
            )
            return
        if method == "POST" and rest == ["oauth2", "v2.0", "token"]:
            fault = graph._fault("token")
            if fault is not None and fault.delay:
                time.sleep(fault.delay)
            if fault is not None and fault.status is not None:
                graph.record("token", "", fault.status)
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                if fault.body is not None:
                    self._send(fault.status, fault.body, headers, content_type="text/html")
                else:
                    self._send(fault.status, {"error": "temporarily_unavailable"}, headers)
                return
            status, body = graph.token(parse_qs(self._body().decode()))
            graph.record("token", "", status)
            self._send(status, body)
            return
        self._send(404, {"error": "not_found"})

    def _graph(
        self, method: str, kind: str, detail: str, parts: list[str], query: dict[str, list[str]]
    ) -> tuple[int, Any]:
        graph = self.graph
        if parts[:3] != ["v1.0", "users", MAILBOX]:
            return 404, _error("ErrorInvalidUser", "The requested user is invalid.")
        if kind == "delta":
            return graph.delta(parts[4].lower(), query)
        with graph._lock:
            mail = graph.mails.get(detail)
            if mail is None:
                return 404, _error("ErrorItemNotFound", "The specified object was not found.")
            if kind == "value":
                return 200, mail.raw
            payload = json.loads(self._body() or b"{}")
            if kind == "mark-read":
                mail.is_read = bool(payload.get("isRead"))
                mail.updated_seq = graph._tick()
                return 200, {"id": mail.id, "isRead": mail.is_read}
            if kind == "move":
                destination = str(payload.get("destinationId", "")).lower()
                seq = graph._tick()
                graph.departures.append(Departure(mail.id, mail.folder, mail.created_seq, seq))
                # Immutable ids: the id survives the move, and the message is new to its folder.
                mail.folder, mail.created_seq, mail.updated_seq = destination, seq, seq
                return 201, {"id": mail.id, "parentFolderId": destination}
        return 400, _error("BadRequest", "Unsupported request.")


def _classify(method: str, parts: list[str], query: dict[str, list[str]]) -> tuple[str, str]:
    """The kind of a Graph request (for faults and events) and the message id it names."""
    if method == "POST" and len(parts) == 4 and parts[1] == "users" and parts[3] == "sendMail":
        return "send-mail", parts[2]
    if parts[-2:] == ["messages", "delta"]:
        if "$deltatoken" in query:
            return "delta", "from-delta-link"
        return "delta", "next-page" if "$skiptoken" in query else "initial"
    if len(parts) >= 5 and parts[3] == "messages":
        message_id = parts[4]
        if parts[5:] == ["$value"] and method == "GET":
            return "value", message_id
        if parts[5:] == ["move"] and method == "POST":
            return "move", message_id
        if not parts[5:] and method == "PATCH":
            return "mark-read", message_id
    return "other", "/".join(parts)


def notice(child: str, occurrence: str, *, witnessed: str = "Yes - in the house") -> bytes:
    """An invented Operation Encompass notice, like the police send."""
    return (
        'From: "Operation Encompass" <encompass@police.example.org>\r\n'
        "To: dsl@school.example.org\r\n"
        f"Subject: OPERATION ENCOMPASS NOTIFICATION - Occurrence {occurrence}\r\n"
        "Date: Sun, 22 Nov 2026 22:05:00 +0000\r\n"
        f"Message-ID: <enc-{occurrence.replace('/', '-')}@police.example.org>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "OPERATION ENCOMPASS - NOTIFICATION TO SCHOOL\r\n"
        "\r\n"
        f"Child's Name: {child}\r\n"
        "DOB: 14/03/2017\r\n"
        "School: Example First School\r\n"
        "Date/Time of Incident: 22/11/2026 21:40\r\n"
        f"Occurrence Number: {occurrence}\r\n"
        f"Child present: {witnessed}\r\n"
        "Please treat this information as confidential.\r\n"
    ).encode()
