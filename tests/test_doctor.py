"""``sgalert doctor`` against real servers (issue 15): a live Dovecot and aiosmtpd pass; a stopped
one fails with the line that says what to do; no line carries personal data or a secret."""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sgalert.cli import doctor
from sgalert.cli.doctor import Outcome, examine
from sgalert.clock import iso
from sgalert.config import render_template
from sgalert.engine.serve import LEASE_SECONDS
from sgalert.workspace import Workspace, make_private

from .conftest import Team, encompass_case
from .dovecot import Dovecot
from .test_notifiers import LoopbackController, Mailroom

pytestmark = pytest.mark.slow

IMAP_PASSWORD_ENV = "SGALERT_TEST_DOCTOR_IMAP_PASSWORD"
CHILD = "Florence Testchild-Invented"


@pytest.fixture
def smtp() -> Iterator[LoopbackController]:
    """aiosmtpd on loopback; a test may stop it."""
    controller = LoopbackController(Mailroom(), hostname="127.0.0.1", port=0)
    controller.start()
    yield controller
    with contextlib.suppress(AssertionError):  # "SMTP daemon not running": a test stopped it
        controller.stop()


def configure(
    workspace: Workspace, imap_port: int, smtp_port: int, *, user: str, folder: str = "INBOX"
) -> None:
    """The template with an IMAP source, an SMTP channel, the DSL on duty always."""
    text = render_template("Test School")
    text = text.replace(
        '[channels.email]\nkind = "maildrop"\npath = "outbox/email"\n',
        f'[channels.email]\nkind = "smtp"\nhost = "127.0.0.1"\nport = {smtp_port}\n'
        'security = "none"\nfrom = "sgalert@school.example.org"\n',
    )
    text = text.replace(
        '[[sources]]\nname = "encompass"\ntype = "encompass"\nkind = "maildir"\n'
        'path = "inbox/encompass"\n',
        '[[sources]]\nname = "encompass"\ntype = "encompass"\nkind = "imap"\n'
        f'host = "127.0.0.1"\nport = {imap_port}\nsecurity = "none"\nusername = "{user}"\n'
        f'folder = "{folder}"\npassword_env = "{IMAP_PASSWORD_ENV}"\n',
    )
    text = text.replace(
        "fallback = []\n",
        'fallback = []\n[[rota.shifts]]\nwho = "dsl@example.org"\n'
        'days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]\n'
        'from = "00:00"\nto = "00:00"\nwhen = "always"\n',
    )
    assert 'kind = "imap"' in text and 'kind = "smtp"' in text
    workspace.config_path.write_text(text, encoding="utf-8")


def engine_beats(workspace: Workspace, at: datetime) -> None:
    """What the engine's lease keeper writes, from its own connection."""
    with sqlite3.connect(workspace.store_path) as db:
        db.execute(
            "INSERT INTO engine_lease (id, holder, expires_at, heartbeat_at) VALUES (1, ?, ?, ?)"
            " ON CONFLICT(id) DO UPDATE SET expires_at = excluded.expires_at,"
            " heartbeat_at = excluded.heartbeat_at",
            ("engine.test:4242", iso(at + timedelta(seconds=LEASE_SECONDS)), iso(at)),
        )
    db.close()


@pytest.fixture
async def school(
    team: Team,
    workspace: Workspace,
    dovecot: Dovecot,
    smtp: LoopbackController,
    monkeypatch: pytest.MonkeyPatch,
) -> Workspace:
    """A school with everyone added, a case about an invented child, and the engine beating."""
    monkeypatch.setenv(IMAP_PASSWORD_ENV, dovecot.password)
    configure(workspace, dovecot.port, smtp.port, user=dovecot.user)
    await team.service.create_cases([encompass_case(CHILD)])
    make_private(workspace)
    engine_beats(workspace, datetime.now(UTC))
    return workspace


async def run_doctor(workspace: Workspace, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    runner = argparse.Namespace(args=argparse.Namespace(timeout=10.0), workspace=workspace)
    code = await doctor.run(runner)
    out = capsys.readouterr().out
    assert CHILD not in out and "Florence" not in out  # no personal data, ever
    return code, out


def line(out: str, start: str) -> str:
    found = [text for text in out.splitlines() if text.startswith(start)]
    assert len(found) == 1, out
    return found[0]


async def test_a_working_school_passes_with_a_line_per_check(
    school: Workspace,
    dovecot: Dovecot,
    smtp: LoopbackController,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = await run_doctor(school, capsys)
    assert code == 0, out
    assert dovecot.password not in out
    assert line(out, "ok   source encompass (imap)") == (
        f"ok   source encompass (imap): logged in to 127.0.0.1:{dovecot.port},"
        " folder 'INBOX' exists, IDLE offered"
    )
    assert line(out, "ok   channel email (smtp)") == (
        f"ok   channel email (smtp): connected to 127.0.0.1:{smtp.port} (none)"
    )
    for check in ("config", "rota", "calendar", "clock", "store", "audit", "disk"):
        assert line(out, f"ok   {check}:")
    assert (
        line(out, "ok   permissions:") == "ok   permissions: workspace readable by this user only"
    )
    assert line(out, "ok   engine:").startswith("ok   engine: running, heartbeat ")
    assert out.splitlines()[-1].startswith("all ")


async def test_stopped_servers_fail_with_what_to_do(
    school: Workspace,
    dovecot: Dovecot,
    smtp: LoopbackController,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dovecot.stop()
    smtp.stop()
    code, out = await run_doctor(school, capsys)
    assert code == 1
    assert line(out, "FAIL source encompass (imap)") == (
        f"FAIL source encompass (imap): cannot reach 127.0.0.1:{dovecot.port}: connection"
        " problem: ConnectionRefusedError; check host, port and security, and that the server"
        " is running"
    )
    assert line(out, "FAIL channel email (smtp)") == (
        f"FAIL channel email (smtp): 127.0.0.1:{smtp.port}: could not connect to the mail server"
        " (ConnectionRefusedError); check host, port, security and the credentials, and that"
        " the server is running"
    )
    assert out.splitlines()[-1].startswith("2 check(s) failed, ")


async def test_a_wrong_password_and_a_missing_folder_each_say_so(
    school: Workspace,
    dovecot: Dovecot,
    smtp: LoopbackController,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(IMAP_PASSWORD_ENV, "not-the-password")
    code, out = await run_doctor(school, capsys)
    assert code == 1
    assert line(out, "FAIL source encompass (imap)").endswith(
        "refused the login; check username and the password (or the app's IMAP.AccessAsApp"
        " permission for xoauth2)"
    )
    assert "not-the-password" not in out

    monkeypatch.setenv(IMAP_PASSWORD_ENV, dovecot.password)
    configure(school, dovecot.port, smtp.port, user=dovecot.user, folder="Encompass")
    code, out = await run_doctor(school, capsys)
    assert code == 1
    assert line(out, "FAIL source encompass (imap)") == (
        f"FAIL source encompass (imap): 127.0.0.1:{dovecot.port} has no folder 'Encompass';"
        " create it, or fix folder/move_to"
    )


async def test_bad_adapter_options_fail_the_config_and_are_not_tried(
    school: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    text = school.config_path.read_text(encoding="utf-8")
    school.config_path.write_text(
        text.replace('security = "none"\nusername', 'security = "tsl"\nusername')
    )
    code, out = await run_doctor(school, capsys)
    assert code == 1
    assert line(out, "FAIL config: sources[encompass].security") == (
        'FAIL config: sources[encompass].security: use "tls", "starttls" or "none"'
    )
    assert line(out, "FAIL source encompass (imap)") == (
        "FAIL source encompass (imap): not tried: its options are wrong (see the config lines)"
    )


async def test_an_engine_that_stopped_or_went_quiet_fails(
    school: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    engine_beats(school, datetime.now(UTC) - timedelta(minutes=5))
    code, out = await run_doctor(school, capsys)
    assert code == 1
    assert line(out, "FAIL engine:").startswith("FAIL engine: last heartbeat 30")
    with sqlite3.connect(school.store_path) as db:
        db.execute("DELETE FROM engine_lease")
    db.close()
    code, out = await run_doctor(school, capsys)
    assert line(out, "FAIL engine:") == (
        "FAIL engine: not running (no heartbeat): start it (`systemctl start sgalert`, or"
        " `sgalert serve`)"
    )


async def test_workspace_and_secrets_open_to_others_fail(
    school: Workspace, dovecot: Dovecot, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = school.root / "imap-password"
    secret.write_text(dovecot.password + "\n")
    secret.chmod(0o600)
    text = school.config_path.read_text(encoding="utf-8")
    text = text.replace(f'password_env = "{IMAP_PASSWORD_ENV}"', 'password_file = "imap-password"')
    school.config_path.write_text(text)
    code, out = await run_doctor(school, capsys)
    assert code == 0, out
    assert line(out, "ok   permissions:") == (
        "ok   permissions: workspace and 1 secret file(s) readable by this user only"
    )

    os.chmod(school.root, 0o755)  # noqa: S103 (the mistake under test)
    os.chmod(school.store_path, 0o644)
    (school.root / "inbox").mkdir()
    os.chmod(school.root / "inbox", 0o755)  # noqa: S103
    secret.chmod(0o640)
    code, out = await run_doctor(school, capsys)
    assert code == 1
    fails = [text for text in out.splitlines() if text.startswith("FAIL permissions:")]
    assert fails == [
        f"FAIL permissions: {school.root} is mode 0755, readable by others; run"
        f" `chmod 700 {school.root}`",
        f"FAIL permissions: {school.store_path} is mode 0644, readable by others; run"
        f" `chmod 600 {school.store_path}`",
        f"FAIL permissions: {secret} is mode 0640, readable by others; run `chmod 600 {secret}`",
    ]
    assert line(out, "warn permissions:") == (
        f"warn permissions: 1 file(s) or folder(s) in the workspace are open to other users,"
        f" e.g. {school.root / 'inbox'}; run `chmod -R go= {school.root}`"
    )
    # The secret's own check also fails the source: it refuses to read it.
    assert "imap-password is readable by others; run chmod 600" in line(
        out, "FAIL config: sources[encompass].password_file"
    )

    make_private(school)
    secret.chmod(0o600)
    code, out = await run_doctor(school, capsys)
    assert code == 0, out


async def test_a_broken_audit_chain_fails(
    school: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    with sqlite3.connect(school.store_path) as db:
        db.execute("DROP TRIGGER audit_no_update")
        db.execute("UPDATE audit SET actor = 'someone-else' WHERE seq = 2")
    db.close()
    code, out = await run_doctor(school, capsys)
    assert code == 1
    assert line(out, "FAIL audit:") == (
        "FAIL audit: audit entry 2 does not match its hash; keep the store as evidence and"
        " tell the head"
    )


async def test_no_workspace_is_one_line(tmp_path: Path) -> None:
    found = await examine(
        Workspace(config_path=tmp_path / "sgalert.toml", store_path=tmp_path / "sgalert.db")
    )
    assert [(f.outcome, f.line()) for f in found] == [
        (
            Outcome.FAIL,
            f"FAIL workspace: no workspace at {tmp_path}; run `sgalert init`"
            " (or pass --workspace / set SGALERT_WORKSPACE)",
        )
    ]


@pytest.mark.parametrize(
    ("version", "outcome"),
    [
        ((3, 40, 1), Outcome.WARN),  # Debian 12's, and this machine's when this was written
        ((3, 44, 5), Outcome.WARN),
        ((3, 44, 6), Outcome.OK),  # a backport of the fix
        ((3, 45, 0), Outcome.WARN),
        ((3, 50, 6), Outcome.WARN),
        ((3, 50, 7), Outcome.OK),  # a backport of the fix
        ((3, 51, 2), Outcome.WARN),
        ((3, 51, 3), Outcome.OK),  # the fix
        ((3, 52, 0), Outcome.OK),
    ],
)
def test_an_sqlite_with_the_wal_reset_bug_is_a_warning(
    version: tuple[int, int, int], outcome: Outcome
) -> None:
    (found,) = doctor.sqlite_findings(version)
    assert found.outcome is outcome and found.check == "sqlite"
    assert found.text.startswith(f"SQLite {'.'.join(map(str, version))}")
    assert ("wal.html#walresetbug" in found.text) is (outcome is Outcome.WARN)


async def test_doctor_names_the_sqlite_it_runs_on(
    team: Team, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """The engine, desks and commands share one WAL store; an SQLite with the WAL-reset bug
    can corrupt it in a rare race, and only the person who installs sgalert can upgrade it."""
    _, out = await run_doctor(workspace, capsys)
    (expected,) = doctor.sqlite_findings(sqlite3.sqlite_version_info)
    assert line(out, f"{expected.outcome.value:<4} sqlite: SQLite {sqlite3.sqlite_version}")
    if sqlite3.sqlite_version_info < (3, 44, 6):
        assert expected.outcome is Outcome.WARN


# ----- the other adapters' probes ---------------------------------------------------------------


async def test_a_maildir_source_without_its_folders_fails(
    team: Team, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """The template's Maildir inbox, before anyone made it."""
    code, out = await run_doctor(workspace, capsys)
    assert code == 1
    folder = workspace.root / "inbox" / "encompass"
    assert line(out, "FAIL source encompass (maildir)") == (
        f"FAIL source encompass (maildir): {folder / 'new'} is not a folder; make new, cur and"
        f" tmp in {folder} (mkdir -p)"
    )
    for sub in ("new", "cur", "tmp"):
        (folder / sub).mkdir(parents=True)
    _, out = await run_doctor(workspace, capsys)
    assert line(out, "ok   source encompass (maildir)") == (
        f"ok   source encompass (maildir): maildir {folder} usable (0 unread)"
    )


async def test_the_teams_probe_shakes_hands_and_posts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from integrations import teams
    from sgalert.ports import ProbeFailed

    from .http_sink import HttpSink, make_tls

    tls = make_tls(tmp_path / "tls")
    with HttpSink(tls=tls) as sink:
        monkeypatch.setenv("SGALERT_TEST_WEBHOOK", sink.url("/workflows/run?sig=invented"))
        options = {"url_env": "SGALERT_TEST_WEBHOOK", "ca_file": str(tls.ca_file)}
        channel = teams.create("teams", options, tmp_path)
        report = await channel.probe()
        assert report.detail == (
            f"TLS handshake with 127.0.0.1:{sink.port} (nothing posted; a real page proves the"
            " workflow is on)"
        )
        assert sink.requests == []  # a request would have run the workflow
        untrusting = teams.create("teams", {"url_env": "SGALERT_TEST_WEBHOOK"}, tmp_path)
        with pytest.raises(ProbeFailed, match="the TLS certificate of 127.0.0.1 is not trusted"):
            await untrusting.probe()
        port = sink.port
    with pytest.raises(ProbeFailed) as failed:
        await channel.probe()
    assert str(failed.value) == (
        f"cannot reach the webhook's host 127.0.0.1:{port} (ConnectionRefusedError); check the"
        " network, a proxy, or copy the URL again"
    )
    assert "invented" not in str(failed.value)


async def test_an_imap_server_without_idle_is_a_warning(tmp_path: Path) -> None:
    from integrations import imap
    from sgalert.config import SourceConfig
    from sgalert.model import Source

    from .dovecot import CAPABILITY_WITHOUT_IDLE, require_dovecot

    require_dovecot()
    server = Dovecot(imap_capability=CAPABILITY_WITHOUT_IDLE)
    try:
        server.start()
        secret = tmp_path / "password"
        secret.write_text(server.password)
        secret.chmod(0o600)
        options = {
            "host": "127.0.0.1",
            "port": server.port,
            "security": "none",
            "username": server.user,
            "password_file": str(secret),
        }
        source = SourceConfig("encompass", Source.ENCOMPASS, "imap", options=options)
        report = await imap.create(source, tmp_path).probe()
    finally:
        server.close()
    assert report.warning == (
        "the server does not offer IDLE, so it is polled every 30s; lower poll_seconds if that"
        " is too slow"
    )


async def test_the_first_page_on_the_maildrop_channel_keeps_the_workspace_private(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by running the README: `serve`'s first page made outbox/ 0755 and doctor warned."""
    from integrations import maildrop
    from sgalert.ports import Recipient

    from .test_notifiers import page

    make_private(workspace)
    channel = maildrop.create("email", {"path": "outbox/email"}, workspace.root)
    await channel.send(page(), Recipient("dsl@example.org"))
    modes = {
        path.relative_to(workspace.root).as_posix(): oct(path.stat().st_mode & 0o777)
        for path in [workspace.root / "outbox", *(workspace.root / "outbox").rglob("*")]
        if path.is_dir()
    }
    assert modes == {
        "outbox": "0o700",
        "outbox/email": "0o700",
        "outbox/email/cur": "0o700",
        "outbox/email/new": "0o700",
        "outbox/email/tmp": "0o700",
    }


async def test_the_graph_probes_sign_in_and_read_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from integrations import graph as graph_inbox
    from integrations import graph_mail
    from sgalert.config import SourceConfig
    from sgalert.model import Source
    from sgalert.ports import ProbeFailed

    from .graph_server import CLIENT_ID, CLIENT_SECRET, MAILBOX, SENDER, TENANT, GraphServer
    from .http_sink import make_tls

    tls = make_tls(tmp_path / "tls")
    server = GraphServer(tls).start()
    try:
        app = {
            "tenant_id": TENANT,
            "client_id": CLIENT_ID,
            "client_secret_env": "SGALERT_TEST_DOCTOR_GRAPH_SECRET",
            "graph_url": server.graph_url,
            "authority_url": server.authority_url,
            "ca_file": str(tls.ca_file),
        }
        source = SourceConfig("encompass", Source.ENCOMPASS, "graph", {**app, "mailbox": MAILBOX})
        channel = {**app, "sender": SENDER}
        monkeypatch.setenv("SGALERT_TEST_DOCTOR_GRAPH_SECRET", CLIENT_SECRET)
        report = await graph_inbox.create(source, tmp_path).probe()
        assert report.detail == f"signed in; folder 'Inbox' of {MAILBOX} readable"
        sender = graph_mail.create("graph", channel, tmp_path)
        assert (await sender.probe()).detail == "Graph token issued (nothing sent)"
        await sender.close()
        assert server.accepted() == []  # nothing was sent

        monkeypatch.setenv("SGALERT_TEST_DOCTOR_GRAPH_SECRET", "not-the-secret")
        with pytest.raises(ProbeFailed) as refused:
            await graph_inbox.create(source, tmp_path).probe()
        assert "check the app registration" in str(refused.value)
        sender = graph_mail.create("graph", channel, tmp_path)
        with pytest.raises(ProbeFailed, match=r"^no Graph token: .*check the app registration$"):
            await sender.probe()
        await sender.close()
        assert "not-the-secret" not in str(refused.value)
    finally:
        server.stop()


async def test_the_ews_probe_logs_in_and_finds_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from integrations import ews
    from sgalert.config import SourceConfig
    from sgalert.model import Source
    from sgalert.ports import ProbeFailed

    from .ews_server import EwsServer

    with EwsServer() as server:
        options = {
            "service_endpoint": server.url,
            "username": server.username,
            "password_env": "SGALERT_TEST_DOCTOR_EWS_PASSWORD",
            "auth_type": "basic",
            "mailbox": "safeguarding@school.example.org",
        }
        source = SourceConfig("encompass", Source.ENCOMPASS, "ews", options)
        monkeypatch.setenv("SGALERT_TEST_DOCTOR_EWS_PASSWORD", server.password)
        report = await ews.create(source, tmp_path).probe()
        assert report.detail.endswith(", folder 'Inbox' found")
        missing = SourceConfig(
            "encompass", Source.ENCOMPASS, "ews", {**options, "folder": "Inbox/Encompass"}
        )
        with pytest.raises(ProbeFailed, match="folder Inbox/Encompass not found in the mailbox"):
            await ews.create(missing, tmp_path).probe()
        monkeypatch.setenv("SGALERT_TEST_DOCTOR_EWS_PASSWORD", "not-the-password")
        with pytest.raises(ProbeFailed, match="refused the login; check username, password"):
            await ews.create(source, tmp_path).probe()
