"""A loopback HTTP(S) server for tests: records every request, answers as it is told.

Webhooks (Teams Workflows), sign-in authorities and other HTTP peers are stood in for by one
:class:`HttpSink` on 127.0.0.1, run by a ``ThreadingHTTPServer`` in its own thread:

- every request is appended to :attr:`HttpSink.requests` (method, target, headers, body);
- :meth:`HttpSink.script` queues replies answered in order, e.g. ``429 with Retry-After: 1``,
  then ``500``, then ``200``; once the queue is empty the ``default`` reply is given;
- :meth:`HttpSink.route` answers one method and path with a function of the request, for fixed
  endpoints such as an OpenID configuration or a token endpoint (routes win over the script);
- with a :class:`Tls` from :func:`make_tls` it speaks HTTPS with a throwaway CA that clients
  trust through their ``ca_file`` option; the certificates satisfy Python 3.13's strict X.509
  checks.

Every reply closes its connection, so :meth:`HttpSink.stop` never waits on an idle keep-alive.
A stopped sink started again listens on the same port, so a client configured with its URL sees
a webhook that was down (connection refused) come back.

    with HttpSink(tls=make_tls(tmp_path)) as sink:
        sink.script(Reply(429, {"Retry-After": "1"}), Reply(500), Reply(202))
        ...
        assert sink.requests[0].json()["type"] == "message"
"""

from __future__ import annotations

import ipaddress
import json
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["HttpSink", "Reply", "Request", "Tls", "make_tls", "server_context"]


@dataclass(frozen=True)
class Tls:
    """Files of a throwaway CA and a server certificate for 127.0.0.1 and localhost."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not cert_sign,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def make_tls(directory: Path, *, name: str = "sgalert test CA") -> Tls:
    """A private CA and a server certificate for 127.0.0.1, written under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    tls = Tls(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    tls.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    tls.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tls.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return tls


def server_context(tls: Tls) -> ssl.SSLContext:
    """A server-side TLS context for ``tls`` (also usable for an SMTP server's STARTTLS)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert_file, tls.key_file)
    return context


@dataclass(frozen=True)
class Reply:
    """What the sink answers: a status, headers, a body, and an optional delay before it."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | str | Mapping[str, Any] | list[Any] = b""
    delay: float = 0.0

    def payload(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, "application/octet-stream"
        if isinstance(self.body, str):
            return self.body.encode(), "text/plain; charset=utf-8"
        return json.dumps(self.body).encode(), "application/json"


@dataclass(frozen=True)
class Request:
    """One request as the sink received it. ``target`` is the path with its query string."""

    method: str
    target: str
    headers: Mapping[str, str]
    body: bytes
    status: int  # what the sink answered

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body)


Responder = Callable[[Request], Reply]


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # so server_close() waits for every request thread
    block_on_close = True
    sink: HttpSink

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request (killed, timed out) is no error of the sink's;
        anything else is printed as usual."""
        if isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "sgalert-http-sink"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {key: value for key, value in self.headers.items()}
        self.server.sink._answer(self, self.command, self.path, headers, body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def write_reply(self, reply: Reply) -> None:
        data, content_type = reply.payload()
        self.send_response(reply.status)
        names = {name.lower() for name in reply.headers}
        if "content-type" not in names:
            self.send_header("Content-Type", content_type)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.close_connection = True


class HttpSink:
    """A recording, scriptable HTTP(S) server on 127.0.0.1 and an ephemeral port."""

    def __init__(self, *, tls: Tls | None = None, default: Reply | None = None) -> None:
        self.tls = tls
        self.default = default if default is not None else Reply(200)
        self.requests: list[Request] = []
        self._script: deque[Reply] = deque()
        self._routes: dict[tuple[str, str], Responder] = {}
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._bind_port = 0  # the first start picks a free port; a restart keeps it

    # ----- lifecycle ----------------------------------------------------------------------

    def start(self) -> HttpSink:
        httpd = _Server(("127.0.0.1", self._bind_port), _Handler)
        self._bind_port = int(httpd.server_address[1])
        httpd.sink = self
        if self.tls is not None:
            httpd.socket = server_context(self.tls).wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="http-sink"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()  # joins the request threads
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> HttpSink:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "the sink is not started"
        return int(self._httpd.server_address[1])

    @property
    def base(self) -> str:
        """``http(s)://127.0.0.1:<port>``, without a trailing slash."""
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def url(self, target: str = "/") -> str:
        return self.base + (target if target.startswith("/") else "/" + target)

    # ----- what to answer -------------------------------------------------------------------

    def script(self, *replies: Reply | int) -> None:
        """Queue replies answered in order (a bare int is a status with an empty body)."""
        with self._lock:
            self._script.extend(Reply(r) if isinstance(r, int) else r for r in replies)

    def route(self, method: str, path: str, responder: Responder | Reply) -> None:
        """Answer ``method path`` (the path without its query) with a reply or a function."""
        with self._lock:
            if isinstance(responder, Reply):
                fixed = responder
                self._routes[(method.upper(), path)] = lambda _request: fixed
            else:
                self._routes[(method.upper(), path)] = responder

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Request]:
        """Block until at least ``count`` requests have arrived; returns them all."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.requests) >= count, timeout):
                raise TimeoutError(f"{len(self.requests)} of {count} requests arrived")
            return list(self.requests)

    # ----- in request threads -------------------------------------------------------------

    def _answer(
        self,
        handler: _Handler,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
    ) -> None:
        path = urlsplit(target).path
        unanswered = Request(method, target, headers, body, status=0)
        with self._lock:
            responder = self._routes.get((method, path))
            scripted = self._script.popleft() if responder is None and self._script else None
        if responder is not None:
            reply = responder(unanswered)
        else:
            reply = scripted if scripted is not None else self.default
        with self._arrived:
            self.requests.append(Request(method, target, headers, body, status=reply.status))
            self._arrived.notify_all()
        if reply.delay:
            time.sleep(reply.delay)
        try:
            handler.write_reply(reply)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # the client gave up waiting (a timeout test)
