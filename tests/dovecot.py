"""A real Dovecot IMAP server for tests, started and stopped by the tests themselves.

Each :class:`Dovecot` is a private instance: its own temp directory (config, passwd-file, maildirs,
``base_dir`` sockets, ``state_dir``, log), its own ``instance_name`` and its own loopback port, so
it never touches ``/etc/dovecot`` or a system instance, and two can run at once. The master runs
as root in the foreground (``dovecot -F -c <conf>``) in a new session of its own, so the whole
server is one process group that :meth:`Dovecot.kill` can take down at once; the login processes
run as ``dovenull``, the internal ones as ``dovecot``, the mail processes as ``nobody``.

``Dovecot(tls=True)`` also makes a throwaway CA and a server certificate for ``127.0.0.1`` and
``localhost`` (with ``cryptography``, into the base directory): the plain port then offers
STARTTLS, and an ``imaps`` listener runs on :attr:`Dovecot.tls_port`; clients trust
:attr:`Dovecot.ca_file` (or :meth:`Dovecot.ssl_context`). ``imap_capability`` replaces the
advertised CAPABILITY list, e.g. :data:`CAPABILITY_WITHOUT_IDLE` for a server that does not
offer IDLE. By default neither is on: no TLS, the stock capabilities.

``Dovecot(oauth2_introspection_url=...)`` also offers ``AUTH=XOAUTH2`` and ``AUTH=OAUTHBEARER``
(``auth_mechanisms = plain login xoauth2 oauthbearer``) and checks those bearer tokens with the
``oauth2`` passdb: the auth process POSTs ``token=<token>`` to the URL (RFC 7662 token
introspection, ``introspection_mode = post``) and accepts the login only if the JSON answer
says ``"active": true`` and names the account in ``"username"``. The test runs that endpoint
on loopback (plain HTTP: the auth process, which runs as ``dovecot``, makes the call). Plain and
LOGIN still go to the passwd-file, so :meth:`Dovecot.connect` and :meth:`Dovecot.append` work
as before. Dovecot 2.3 only (2.4 renamed these settings).

The :func:`dovecot` fixture yields a started server with one account (``user``/``password``).
Outside CI it skips when the ``dovecot`` binary (Debian: ``dovecot-imapd``) is missing; under CI
(``CI=true``) that is a failure: ``.ci/install-system-packages`` installs it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

import pytest
from imapclient import IMAPClient

LOOPBACK = "127.0.0.1"
#: Where the base directory goes: not /tmp/pytest-of-root, whose 0700 dirs the mail user (and
#: the chrooted login processes) could not traverse.
TEMP_PARENT = "/var/tmp"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]", re.IGNORECASE)
_LOGIN_LINE = re.compile(r"imap-login: Info: Login: (?P<fields>.*)$")
_LOGIN_FIELD = re.compile(r"(?P<key>[a-z_]+)=(?:<(?P<bracketed>[^>]*)>|(?P<plain>[^,\s]*))")
#: Dovecot 2.3.19's own post-login CAPABILITY list without IDLE: for ``imap_capability``, to
#: play a server that must be polled. (An explicit ``imap_capability`` replaces the whole list,
#: before and after login; Dovecot still adds STARTTLS and AUTH= before login itself.)
CAPABILITY_WITHOUT_IDLE: tuple[str, ...] = (
    "IMAP4rev1",
    "SASL-IR",
    "LOGIN-REFERRALS",
    "ID",
    "ENABLE",
    "SORT",
    "SORT=DISPLAY",
    "THREAD=REFERENCES",
    "THREAD=REFS",
    "THREAD=ORDEREDSUBJECT",
    "MULTIAPPEND",
    "URL-PARTIAL",
    "CATENATE",
    "UNSELECT",
    "CHILDREN",
    "NAMESPACE",
    "UIDPLUS",
    "LIST-EXTENDED",
    "I18NLEVEL=1",
    "CONDSTORE",
    "QRESYNC",
    "ESEARCH",
    "ESORT",
    "SEARCHRES",
    "WITHIN",
    "CONTEXT=SEARCH",
    "LIST-STATUS",
    "BINARY",
    "MOVE",
    "SNIPPET=FUZZY",
    "PREVIEW=FUZZY",
    "PREVIEW",
    "STATUS=SIZE",
    "SAVEDATE",
    "LITERAL+",
    "NOTIFY",
)


class DovecotError(RuntimeError):
    """The server could not be started, stopped or driven; the message carries the log tail."""


def find_binary(name: str = "dovecot") -> str | None:
    """The path of a Dovecot program, looking in the sbin dirs too (they may not be on PATH)."""
    path = os.environ.get("PATH", os.defpath) + os.pathsep + os.pathsep.join(_SBIN_DIRS)
    return shutil.which(name, path=path)


def dovecot_version(binary: str) -> tuple[int, ...]:
    """``dovecot --version`` as numbers, e.g. ``(2, 3, 19, 1)`` for "2.3.19.1 (9b53102964)"."""
    out = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    match = re.match(r"\s*(\d+(?:\.\d+)*)", out)
    if match is None:
        raise DovecotError(f"cannot parse `{binary} --version` output: {out!r}")
    return tuple(int(part) for part in match.group(1).split("."))


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def free_port() -> int:
    """A port the kernel just handed out on loopback (from the ephemeral, high range)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Account:
    name: str
    password: str


@dataclass(frozen=True)
class TestCertificates:
    """A throwaway CA and the server certificate it signed, as PEM files."""

    __test__ = False  # not a pytest test class, whatever its name

    ca_file: Path
    cert_file: Path
    key_file: Path


def write_test_certificates(
    directory: Path, hosts: Sequence[str] = (LOOPBACK, "localhost")
) -> TestCertificates:
    """Make a CA and a server certificate for ``hosts`` (IPs or DNS names) in ``directory``.

    P-256 keys (fast to make), valid from an hour ago for a day, with the extensions Python's
    default context checks under ``VERIFY_X509_STRICT`` (key identifiers, key usage, basic
    constraints). The CA's private key is never written: nothing else can be signed with it.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def usage(*, cert_sign: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=not cert_sign,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=cert_sign,
            crl_sign=cert_sign,
            encipher_only=False,
            decipher_only=False,
        )

    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"sgalert test CA {secrets.token_hex(4)}")]
    )
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    found = TestCertificates(
        ca_file=directory / "ca.pem",
        cert_file=directory / "server.pem",
        key_file=directory / "server.key",
    )
    found.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    found.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    # Read by Dovecot's config process, which runs as root: owner-only is enough.
    found.key_file.touch(mode=0o600)
    found.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return found


@dataclass(frozen=True)
class Login:
    """One successful login, from the server's log (``imap-login: Info: Login: ...``)."""

    user: str
    method: str
    #: The port the client connected to; None unless the server logs it (``tls=True`` does).
    local_port: int | None
    #: Dovecot's own word: "TLS" (imaps or after STARTTLS), "secured" (loopback plaintext) or "".
    connection: str
    line: str

    @property
    def encrypted(self) -> bool:
        return self.connection.startswith("TLS")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"({path.name}: missing)"
    return "\n".join(text.splitlines()[-lines:]) or f"({path.name}: empty)"


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group and session are both ``pgid``."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp session ...; comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid and int(fields[3]) == pgid:
            found.append(int(entry.name))
    return found


class Dovecot:
    """One private Dovecot IMAP server on ``host``:``port``, living in ``base_dir``.

    Accounts added with :meth:`add_user` (before or after :meth:`start`) share one unprivileged
    mail uid. :meth:`stop` is graceful, :meth:`kill` SIGKILLs the master and every process of its
    group (a crash: clients see their connections drop), :meth:`restart` keeps the port and the
    mail. Usable as a context manager: started on entry, killed and removed on exit.
    """

    host = LOOPBACK

    def __init__(
        self,
        *,
        user: str = "alice",
        password: str | None = None,
        mail_user: str = "nobody",
        port: int | None = None,
        debug: bool = False,
        tls: bool = False,
        tls_port: int | None = None,
        imap_capability: Iterable[str] | None = None,
        oauth2_introspection_url: str | None = None,
    ) -> None:
        """``tls``: STARTTLS on ``port`` and imaps on ``tls_port`` (see the module docstring).

        ``imap_capability`` replaces the CAPABILITY list (Dovecot's ``imap_capability``), e.g.
        :data:`CAPABILITY_WITHOUT_IDLE`; None keeps Dovecot's own.
        ``oauth2_introspection_url`` turns on XOAUTH2 and OAUTHBEARER, checked by posting each
        token to that URL (see the module docstring).
        """
        binary = find_binary("dovecot")
        if binary is None:
            raise DovecotError("dovecot is not installed (Debian package: dovecot-imapd)")
        if os.geteuid() != 0:
            raise DovecotError("the Dovecot harness runs the master as root; we are not root")
        self.binary = binary
        self.version = dovecot_version(binary)
        mail = pwd.getpwnam(mail_user)
        if mail.pw_uid == 0:
            raise DovecotError("mail must not be owned by root")
        self.mail_uid, self.mail_gid = mail.pw_uid, mail.pw_gid
        self.debug = debug
        self._fixed_port = port is not None
        self.port = port if port is not None else 0
        if tls_port is not None and not tls:
            raise ValueError("tls_port needs tls=True")
        self.tls = tls
        self._fixed_tls_port = tls_port is not None
        #: The imaps port: 0 until started, and always 0 without ``tls``.
        self.tls_port = tls_port if tls_port is not None else 0
        self.certificates: TestCertificates | None = None
        self.imap_capability = tuple(imap_capability) if imap_capability is not None else None
        if self.imap_capability is not None and (
            not self.imap_capability
            or any(not re.fullmatch(r"[!-~]+", word) for word in self.imap_capability)
        ):
            raise ValueError(f"unusable imap_capability: {self.imap_capability!r}")
        if oauth2_introspection_url is not None and not re.fullmatch(
            r"https?://[!-~]+", oauth2_introspection_url
        ):
            raise ValueError(f"unusable introspection URL: {oauth2_introspection_url!r}")
        self.oauth2_introspection_url = oauth2_introspection_url
        self._proc: subprocess.Popen[bytes] | None = None
        self._passwd_mtime = 0
        self._delivered = 0  # files dropped into Maildirs by deliver(), for unique names
        self.accounts: dict[str, Account] = {}
        self.user = user
        self.base_dir = Path(tempfile.mkdtemp(prefix="sgalert-dovecot-", dir=TEMP_PARENT))
        self._stderr = self.base_dir / "dovecot.stderr"
        self.instance_name = f"sgalert-test-{self.base_dir.name.rsplit('-', 1)[-1]}"
        try:
            self.base_dir.chmod(0o755)  # the mail user must traverse it to its home
            self.add_user(user, password if password is not None else secrets.token_urlsafe(12))
            if tls:
                self.certificates = write_test_certificates(self.base_dir / "tls")
        except BaseException:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            raise

    @property
    def password(self) -> str:
        """The password of the main account, ``user``."""
        return self.accounts[self.user].password

    @property
    def ca_file(self) -> Path | None:
        """The PEM file of the CA that signed the server certificate (None without ``tls``)."""
        return self.certificates.ca_file if self.certificates is not None else None

    def ssl_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts this server's test CA (and nothing else)."""
        if self.ca_file is None:
            raise DovecotError("this server was made without tls=True")
        return ssl.create_default_context(cafile=str(self.ca_file))

    # -- paths -------------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.base_dir / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "dovecot.log"

    @property
    def passwd_path(self) -> Path:
        return self.base_dir / "users"

    @property
    def oauth2_config_path(self) -> Path:
        """The oauth2 passdb's settings (``dovecot-oauth2.conf.ext``), with ``oauth2=...``."""
        return self.base_dir / "dovecot-oauth2.conf.ext"

    @property
    def run_dir(self) -> Path:
        """Dovecot's own ``base_dir``: sockets and master.pid."""
        return self.base_dir / "run"

    def home(self, user: str | None = None) -> Path:
        return self.base_dir / "home" / (user or self.user)

    def maildir(self, user: str | None = None) -> Path:
        return self.home(user) / "Maildir"

    # -- accounts ----------------------------------------------------------------------------

    def add_user(self, name: str, password: str) -> Account:
        """Add an IMAP account (or change its password), before or after :meth:`start`.

        A running Dovecot rereads the passwd-file when its whole-second mtime or its size
        changed, but stats it at most once per wall-clock second: so this waits for the next
        second (under 1 s), then until the server's userdb knows ``name``.
        """
        if not re.fullmatch(r"[A-Za-z0-9._@+-]+", name) or re.search(r"[:\s]", password):
            raise ValueError(f"unusable account for a passwd-file: {name!r}")
        account = Account(name, password)
        self.accounts[name] = account
        home = self.home(name)
        home.mkdir(parents=True, exist_ok=True)
        for path in (home.parent, home):
            os.chown(path, self.mail_uid, self.mail_gid)
        self._write_passwd()
        written_at = time.time()
        if self.running:
            time.sleep(int(written_at) + 1.02 - written_at)
            deadline = time.monotonic() + 5
            while self._doveadm_run("user", name).returncode != 0:
                if time.monotonic() > deadline:
                    raise self._failure(f"dovecot does not know the new account {name!r}")
                time.sleep(0.1)
        return account

    def _write_passwd(self) -> None:
        """Rewrite the passwd-file, moving its whole-second mtime forward."""
        lines = [
            f"{a.name}:{{PLAIN}}{a.password}:{self.mail_uid}:{self.mail_gid}::{self.home(a.name)}::"
            for a in self.accounts.values()
        ]
        tmp = self.passwd_path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tmp.chmod(0o644)
        # Dovecot compares whole-second mtimes (and sizes): a rewrite within the same second
        # must still look new to it, so the mtime steps at least one second each time.
        mtime = max(int(time.time()), self._passwd_mtime + 1)
        os.utime(tmp, (mtime, mtime))
        tmp.replace(self.passwd_path)
        self._passwd_mtime = mtime

    # -- config ------------------------------------------------------------------------------

    def _config(self) -> str:
        common = f"""\
base_dir = {self.run_dir}
state_dir = {self.base_dir / "state"}
instance_name = {self.instance_name}
protocols = imap
listen = {LOOPBACK}
{self._ssl_settings()}
auth_mechanisms = {self._auth_mechanisms()}
log_path = {self.log_path}
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = {self.mail_uid}
last_valid_uid = {self.mail_uid}
first_valid_gid = {self.mail_gid}
last_valid_gid = {self.mail_gid}
shutdown_clients = yes
auth_failure_delay = 0
service imap-login {{
  inet_listener imap {{
    port = {self.port}
  }}
  inet_listener imaps {{
    port = {self.tls_port}
    ssl = {"yes" if self.tls else "no"}
  }}
}}
"""
        if self.imap_capability is not None:
            if self.version >= (2, 4):
                raise DovecotError("imap_capability is only written for Dovecot 2.3 here")
            common += f"imap_capability = {' '.join(self.imap_capability)}\n"
        if self.tls and self.version < (2, 4):
            # The default plus the port (%a), so a test can tell imaps from STARTTLS logins.
            common += (
                "login_log_format_elements = user=<%u> method=%m rip=%r lip=%l lport=%a"
                " mpid=%e %c session=<%{session}>\n"
            )
        debug = "auth_verbose = yes\nmail_debug = yes\n" if self.debug else ""
        if self.version >= (2, 4):
            debug = "auth_verbose = yes\n" if self.debug else ""  # 2.4 moved mail_debug away
            # 2.4 rewrote the settings: the version lines must come first. Untested here (Debian
            # 12 ships 2.3); written from the 2.3-to-2.4 upgrade notes.
            return f"""\
dovecot_config_version = 2.4.0
dovecot_storage_version = 2.4.0
{common}{debug}auth_allow_cleartext = yes
mail_driver = maildir
mail_path = ~/Maildir
namespace inbox {{
  inbox = yes
}}
passdb passwd-file {{
  passwd_file_path = {self.passwd_path}
}}
userdb passwd-file {{
  passwd_file_path = {self.passwd_path}
}}
"""
        # 2.3 (Debian 12: 2.3.19.1) still calls auth_allow_cleartext by its old inverted name.
        return f"""\
{common}{debug}disable_plaintext_auth = no
mail_location = maildir:~/Maildir
{self._oauth2_passdb()}passdb {{
  driver = passwd-file
{"  mechanisms = plain login" + chr(10) if self.oauth2_introspection_url else ""}\
  args = scheme=PLAIN username_format=%u {self.passwd_path}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {self.passwd_path}
}}
"""

    def _auth_mechanisms(self) -> str:
        if self.oauth2_introspection_url is None:
            return "plain login"
        return "plain login xoauth2 oauthbearer"

    def _oauth2_passdb(self) -> str:
        """The oauth2 passdb for bearer tokens (2.3 syntax), written beside the config.

        ``mechanisms`` keeps the passwd-file out of token logins and the oauth2 passdb out of
        password logins. The introspection answer must hold ``"active": true`` and the
        account's name in ``"username"`` (compared with the SASL user, lower-cased).
        """
        url = self.oauth2_introspection_url
        if url is None:
            return ""
        if self.version >= (2, 4):
            raise DovecotError("the oauth2 passdb is only written for Dovecot 2.3 here")
        self.oauth2_config_path.write_text(
            f"""\
introspection_mode = post
introspection_url = {url}
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
timeout_msecs = 5000
debug = {"yes" if self.debug else "no"}
""",
            encoding="utf-8",
        )
        self.oauth2_config_path.chmod(0o644)
        # No anvil auth penalty (2, 4, 8, 15 s for repeated failures from one IP): a refused
        # token is answered at once, so the delays a test sees are the client's own backoff.
        return f"""\
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {self.oauth2_config_path}
}}
"""

    def _ssl_settings(self) -> str:
        if self.certificates is None:
            return "ssl = no"
        cert, key = self.certificates.cert_file, self.certificates.key_file
        if self.version >= (2, 4):  # untested, like the rest of the 2.4 config
            return f"ssl = yes\nssl_server_cert_file = {cert}\nssl_server_key_file = {key}"
        # 2.3: "<path" makes the config process (root) read the file in.
        return f"ssl = yes\nssl_cert = <{cert}\nssl_key = <{key}"

    # -- lifecycle ---------------------------------------------------------------------------

    def processes(self) -> list[tuple[int, str, int]]:
        """``(pid, name, effective uid)`` of every live process of this server (its group)."""
        if self._proc is None:
            return []
        found = []
        for pid in group_members(self._proc.pid):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            effective_uid = int(fields["Uid"].split()[1])  # real, effective, saved, filesystem
            found.append((pid, fields["Name"].strip(), effective_uid))
        return found

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the server and wait until it greets on its port; raise with the log tail."""
        if self._proc is not None:
            raise DovecotError("already started")
        (self.base_dir / "state").mkdir(exist_ok=True)
        attempts = 1 if self._fixed_port or self.port else 3
        if self.tls and (self._fixed_tls_port or self.tls_port):
            attempts = 1  # a restart keeps both ports
        for attempt in range(attempts):
            if not self._fixed_port and (self.port == 0 or attempt > 0):
                self.port = free_port()
            if self.tls and not self._fixed_tls_port and (self.tls_port == 0 or attempt > 0):
                self.tls_port = free_port()
            log_mark = self.log_path.stat().st_size if self.log_path.exists() else 0
            self.config_path.write_text(self._config(), encoding="utf-8")
            with self._stderr.open("ab") as err:
                self._proc = subprocess.Popen(
                    [self.binary, "-F", "-c", str(self.config_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=err,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                )
            try:
                self._wait_ready(timeout)
                return
            except DovecotError:
                self._reap(signal.SIGKILL)
                new_log = self.log_path.read_bytes()[log_mark:] if self.log_path.exists() else b""
                if b"Address already in use" in new_log and attempt + 1 < attempts:
                    continue  # someone took the port between free_port() and the bind: retry
                raise

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise self._failure(f"dovecot exited with status {self._proc.returncode}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                    sock.settimeout(1.0)  # short: another listener may hold the port
                    greeting = sock.makefile("rb").readline()
                if greeting.startswith(b"* OK") and self.tls:
                    greeting = self._tls_greeting()
                if greeting.startswith(b"* OK"):
                    return
                last_error = DovecotError(f"unexpected greeting {greeting!r}")
            except OSError as exc:
                last_error = exc
            time.sleep(0.05)
        raise self._failure(
            f"no IMAP greeting on port {self.port} after {timeout:.0f}s: {last_error}"
        )

    def _tls_greeting(self) -> bytes:
        """The greeting on the imaps port, after a verifying handshake (so the cert is good)."""
        with (
            socket.create_connection((self.host, self.tls_port), timeout=1.0) as raw,
            self.ssl_context().wrap_socket(raw, server_hostname=self.host) as sock,
        ):
            return sock.makefile("rb").readline()

    def _failure(self, what: str) -> DovecotError:
        return DovecotError(
            f"{what}\n--- {self.config_path} ---\n{_tail(self.config_path, 80)}"
            f"\n--- {self._stderr} ---\n{_tail(self._stderr)}"
            f"\n--- {self.log_path} ---\n{_tail(self.log_path)}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Graceful shutdown: SIGTERM to the master, which ends its children and clients.

        Takes about 1.1 s: Dovecot's master always sleeps 1 s for its log process to flush.
        """
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._reap(signal.SIGKILL)
                raise self._failure(f"dovecot did not stop within {timeout:.0f}s") from None
        self._reap(signal.SIGKILL)

    def kill(self) -> None:
        """Crash the server: SIGKILL the master and every other process of its group at once.

        Only the master would leave the already logged-in ``imap`` processes serving their
        clients (they outlive it), so the whole group goes, as in a machine or container crash.
        """
        if self._proc is None:
            return
        self._reap(signal.SIGKILL)

    def _reap(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the whole group until none of it is left; forget the master."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        pgid = proc.pid  # start_new_session: the master leads its own session and group
        deadline = time.monotonic() + STOP_TIMEOUT
        while True:
            # Once the master is reaped, its pid is only safe to signal as a group while members
            # of that group live (they keep the id from being handed to a new process).
            if proc.poll() is None or group_members(pgid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(0.05)
            if proc.poll() is not None and not group_members(pgid):
                return
            if time.monotonic() > deadline:
                raise DovecotError(f"processes of dovecot group {pgid} survive {sig.name}")

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        """Graceful stop, then start on the same port with the same mail."""
        self.stop()
        self.start(timeout)

    def close(self, *, graceful: bool = False) -> None:
        """Take the server down and remove the base directory.

        By default with :meth:`kill`: a graceful stop costs over a second (the master gives its
        log process a fixed 1 s to flush), and the mail is thrown away here anyway.
        """
        try:
            if graceful:
                self.stop()
        finally:
            self.kill()  # after a graceful stop, a no-op
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> Dovecot:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- IMAP --------------------------------------------------------------------------------

    def connect(
        self, user: str | None = None, *, timeout: float = 10.0, security: str = "none"
    ) -> IMAPClient:
        """A logged-in IMAPClient; use it as ``with server.connect() as imap:`` to log out.

        ``security``: "none" (plain port, no TLS), or with ``tls=True`` "starttls" (plain
        port) or "tls" (imaps port), trusting only the test CA.
        """
        account = self.accounts[user or self.user]
        if security not in ("none", "starttls", "tls"):
            raise ValueError(f"security must be none, starttls or tls, not {security!r}")
        context = self.ssl_context() if security != "none" else None
        if security == "tls":
            client = IMAPClient(
                self.host, self.tls_port, ssl=True, ssl_context=context, timeout=timeout
            )
        else:
            client = IMAPClient(self.host, self.port, ssl=False, timeout=timeout)
        try:
            if security == "starttls":
                client.starttls(context)
            client.login(account.name, account.password)
        except BaseException:
            client.shutdown()
            raise
        return client

    def create_folder(self, folder: str, user: str | None = None) -> None:
        with self.connect(user) as imap:
            imap.create_folder(folder)

    def append(
        self,
        folder: str,
        raw: bytes,
        flags: Iterable[str | bytes] = (),
        *,
        user: str | None = None,
    ) -> int:
        """APPEND ``raw`` to ``folder`` and return its UID (from UIDPLUS's APPENDUID)."""
        with self.connect(user) as imap:
            response = imap.append(folder, raw, flags=tuple(flags))
            match = _APPENDUID.search(response if isinstance(response, bytes) else b"")
            if match is not None:
                return int(match.group(2))
            # No UIDPLUS: the newest UID (races with concurrent appenders; Dovecot has UIDPLUS).
            status = imap.folder_status(folder, [b"UIDNEXT"])
            return int(status[b"UIDNEXT"]) - 1

    def deliver(self, raw: bytes, *, user: str | None = None) -> Path:
        """Drop ``raw`` into the account's INBOX as a local delivery agent does, without IMAP.

        The mail server's delivery agent keeps filing mail while the IMAP service is down: the
        file goes to ``tmp/`` and is renamed into ``new/`` (owned by the mail user), and Dovecot
        gives it a UID when it next looks at the folder. Works whether or not the server runs.
        """
        maildir = self.maildir(user)
        for part in ("", "tmp", "new", "cur"):
            folder = maildir / part
            if not folder.is_dir():
                folder.mkdir(mode=0o700)
                os.chown(folder, self.mail_uid, self.mail_gid)
        now = time.time()
        self._delivered += 1
        name = f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{self._delivered}.sgalert-test"
        staged = maildir / "tmp" / name
        staged.write_bytes(raw.replace(b"\r\n", b"\n"))  # Maildir files use bare LF
        os.chown(staged, self.mail_uid, self.mail_gid)
        staged.chmod(0o600)
        return staged.rename(maildir / "new" / name)

    def logins(self) -> list[Login]:
        """Every successful login so far, oldest first, as the server logged it."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        found = []
        for line in text.splitlines():
            match = _LOGIN_LINE.search(line)
            if match is None:
                continue
            fields: dict[str, str] = {}
            words: list[str] = []
            for part in match.group("fields").split(", "):
                field = _LOGIN_FIELD.fullmatch(part)
                if field is None:
                    words.append(part)
                else:
                    fields[field["key"]] = field["bracketed"] or field["plain"] or ""
            port = fields.get("lport", "")
            found.append(
                Login(
                    user=fields.get("user", ""),
                    method=fields.get("method", ""),
                    local_port=int(port) if port.isdigit() else None,
                    connection=" ".join(words),
                    line=line,
                )
            )
        return found

    def uidvalidity(self, folder: str = "INBOX", user: str | None = None) -> int:
        with self.connect(user) as imap:
            return int(imap.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"])

    # -- UIDVALIDITY changes -----------------------------------------------------------------

    def _doveadm_run(self, *args: str) -> subprocess.CompletedProcess[str]:
        binary = find_binary("doveadm")
        if binary is None:
            raise DovecotError("doveadm is not installed (Debian package: dovecot-core)")
        return subprocess.run(
            [binary, "-c", str(self.config_path), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def doveadm(self, *args: str) -> str:
        """Run ``doveadm`` against this instance (as root; it switches to the mail user)."""
        result = self._doveadm_run(*args)
        if result.returncode != 0:
            raise self._failure(
                f"doveadm {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"
            )
        return result.stdout

    def change_uidvalidity(
        self, folder: str = "INBOX", user: str | None = None, *, new: int | None = None
    ) -> int:
        """Give ``folder`` a new UIDVALIDITY while the server runs; return it.

        ``doveadm mailbox update --uid-validity``: messages and their UID numbers stay, only the
        UIDVALIDITY moves, which is what a client holding cached UIDs must notice. A session
        that has the folder selected is told "IMAP session state is inconsistent, please
        relogin" and disconnected at its next command (not while it IDLEs).
        """
        old = self.uidvalidity(folder, user)
        value = new if new is not None else old + 1
        if value == old or not 0 < value < 2**32:
            raise ValueError(f"UIDVALIDITY {value} is no change from {old} or out of range")
        self.doveadm(
            "mailbox", "update", "-u", user or self.user, "--uid-validity", str(value), folder
        )
        now = self.uidvalidity(folder, user)
        if now != value:
            raise DovecotError(f"UIDVALIDITY of {folder} is {now}, not the {value} asked for")
        return now

    def rebuild_index(self, folder: str = "INBOX", user: str | None = None) -> int:
        """Stop, delete the folder's index and dovecot-uidlist, start; return the new UIDVALIDITY.

        Like a server restored without its index files: the messages stay, Dovecot picks a new
        UIDVALIDITY and numbers the messages again from 1 (in maildir filename order).
        """
        who = user or self.user
        index_dir = Path(self.doveadm("mailbox", "path", "-u", who, "-t", "index", folder).strip())
        control_dir = Path(
            self.doveadm("mailbox", "path", "-u", who, "-t", "control", folder).strip()
        )
        old = self.uidvalidity(folder, user)
        self.stop()
        for path in [*index_dir.glob("dovecot.index*"), control_dir / "dovecot-uidlist"]:
            path.unlink(missing_ok=True)
        self.start()
        now = self.uidvalidity(folder, user)
        if now == old:
            raise DovecotError(f"UIDVALIDITY of {folder} stayed {old} after the index rebuild")
        return now


def require_dovecot() -> None:
    """Skip the test when Dovecot cannot run here; under CI, fail it instead."""
    if find_binary("dovecot") is None:
        message = (
            "dovecot is not installed (apt-get install dovecot-imapd; "
            ".ci/install-system-packages does it)"
        )
    elif os.geteuid() != 0:
        message = "the Dovecot harness needs root (the master switches to dovenull and nobody)"
    else:
        return
    if in_ci():
        pytest.fail(f"CI must run the real IMAP server tests: {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    """A started private Dovecot with one account; always taken down and removed afterwards."""
    require_dovecot()
    server = Dovecot()
    try:
        server.start()
        yield server
    finally:
        server.close()
