"""The real-Dovecot harness: login, APPEND UIDs, IDLE, restarts, crashes, UIDVALIDITY changes."""

from __future__ import annotations

import socket
import time

import pytest
from imapclient import IMAPClient

from tests import dovecot as harness
from tests.dovecot import Dovecot, DovecotError


def message(subject: str) -> bytes:
    return (
        f"From: notices@police.example.org\r\nTo: dsl@example.org\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@example.org>\r\n\r\nInvented body.\r\n"
    ).encode()


def inbox_uids(server: Dovecot, folder: str = "INBOX") -> list[int]:
    with server.connect() as imap:
        imap.select_folder(folder, readonly=True)
        return sorted(imap.search(["ALL"]))


def test_login_and_list_folders(dovecot: Dovecot) -> None:
    assert dovecot.host == "127.0.0.1"
    assert dovecot.port > 1024
    with dovecot.connect() as imap:
        capabilities = set(imap.capabilities())
        assert {b"IDLE", b"UIDPLUS", b"CONDSTORE"} <= capabilities
        assert [name for _flags, _sep, name in imap.list_folders()] == ["INBOX"]
        imap.create_folder("Alerts")
        assert {name for _flags, _sep, name in imap.list_folders()} == {"INBOX", "Alerts"}
        # While a session is open, its imap process runs as the mail user, never as root.
        processes = dovecot.processes()
        imap_uids = {uid for _pid, name, uid in processes if name == "imap"}
        assert imap_uids == {dovecot.mail_uid}
        assert all(uid != 0 for _pid, name, uid in processes if name.startswith("imap"))


def test_wrong_password_is_refused(dovecot: Dovecot) -> None:
    imap = IMAPClient(dovecot.host, dovecot.port, ssl=False, timeout=10)
    try:
        with pytest.raises(IMAPClient.Error, match="AUTHENTICATIONFAILED|Authentication failed"):
            imap.login(dovecot.user, dovecot.password + "x")
    finally:
        imap.shutdown()


def test_append_returns_increasing_uids(dovecot: Dovecot) -> None:
    uids = [dovecot.append("INBOX", message(f"notice {i}")) for i in range(3)]
    assert uids == sorted(set(uids))
    assert inbox_uids(dovecot) == uids
    dovecot.create_folder("Alerts")
    flagged = dovecot.append("Alerts", message("flagged"), flags=[b"\\Flagged", b"\\Seen"])
    with dovecot.connect() as imap:
        imap.select_folder("Alerts", readonly=True)
        flags = imap.get_flags([flagged])[flagged]
    assert {b"\\Flagged", b"\\Seen"} <= set(flags)


def test_second_user_added_while_running(dovecot: Dovecot) -> None:
    dovecot.append("INBOX", message("for alice"))
    dovecot.add_user("bob", "bob-password")
    uid = dovecot.append("INBOX", message("for bob"), user="bob")
    assert uid == 1
    with dovecot.connect("bob") as imap:
        imap.select_folder("INBOX", readonly=True)
        fetched = imap.fetch([uid], [b"BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])[uid]
    assert b"for bob" in fetched[b"BODY[HEADER.FIELDS (SUBJECT)]"]
    assert len(inbox_uids(dovecot)) == 1


def test_idle_client_sees_exists_after_append(dovecot: Dovecot) -> None:
    with dovecot.connect() as watcher:
        watcher.select_folder("INBOX")
        watcher.idle()
        appended_at = time.monotonic()
        uid = dovecot.append("INBOX", message("wake up"))
        appended_at = (appended_at + time.monotonic()) / 2
        responses: list[tuple[int, bytes]] = []
        deadline = appended_at + 10
        while not any(kind == b"EXISTS" for _n, kind in responses):
            assert time.monotonic() < deadline, f"no EXISTS within 10 s: {responses}"
            responses += watcher.idle_check(timeout=0.05)
        delay = time.monotonic() - appended_at
        watcher.idle_done()
        print(f"\nIDLE EXISTS arrived {delay * 1000:.0f} ms after the APPEND")
        assert (1, b"EXISTS") in responses
        assert delay < 5
        assert watcher.search(["ALL"]) == [uid]


def test_restart_keeps_messages_uids_and_port(dovecot: Dovecot) -> None:
    uids = [dovecot.append("INBOX", message(f"kept {i}")) for i in range(2)]
    validity, port = dovecot.uidvalidity(), dovecot.port
    dovecot.restart()
    assert dovecot.port == port
    assert inbox_uids(dovecot) == uids
    assert dovecot.uidvalidity() == validity
    assert dovecot.append("INBOX", message("after restart")) == uids[-1] + 1


def test_mail_delivered_while_the_server_is_down_is_there_after_the_restart(
    dovecot: Dovecot,
) -> None:
    first = dovecot.append("INBOX", message("before"))
    dovecot.stop()
    dovecot.deliver(message("while down"))
    dovecot.start()
    with dovecot.connect() as imap:
        imap.select_folder("INBOX", readonly=True)
        uids = sorted(imap.search(["ALL"]))
        assert uids[0] == first and len(uids) == 2
        fetched = imap.fetch(uids[1:], [b"BODY.PEEK[HEADER.FIELDS (SUBJECT)]", b"FLAGS"])
    (data,) = fetched.values()
    assert b"while down" in data[b"BODY[HEADER.FIELDS (SUBJECT)]"]
    assert b"\\Seen" not in data[b"FLAGS"]


def test_change_uidvalidity_keeps_messages_and_drops_selected_sessions(dovecot: Dovecot) -> None:
    uids = [dovecot.append("INBOX", message(f"cached {i}")) for i in range(2)]
    old = dovecot.uidvalidity()
    with dovecot.connect() as selected:
        assert selected.select_folder("INBOX")[b"UIDVALIDITY"] == old
        new = dovecot.change_uidvalidity("INBOX")
        with pytest.raises(IMAPClient.AbortError):
            selected.noop()
    assert new != old
    assert dovecot.uidvalidity() == new
    with dovecot.connect() as imap:
        assert imap.select_folder("INBOX")[b"UIDVALIDITY"] == new
        assert sorted(imap.search(["ALL"])) == uids


def test_change_uidvalidity_of_another_folder(dovecot: Dovecot) -> None:
    dovecot.create_folder("Alerts")
    inbox = dovecot.uidvalidity("INBOX")
    old = dovecot.uidvalidity("Alerts")
    assert dovecot.change_uidvalidity("Alerts", new=old + 1000) == old + 1000
    assert dovecot.uidvalidity("INBOX") == inbox


def test_rebuild_index_gives_new_uidvalidity_and_renumbers(dovecot: Dovecot) -> None:
    dovecot.create_folder("Alerts")
    for i in range(3):
        dovecot.append("Alerts", message(f"renumbered {i}"))
    with dovecot.connect() as imap:
        imap.select_folder("Alerts")
        imap.delete_messages([1])
        imap.expunge()
    assert inbox_uids(dovecot, "Alerts") == [2, 3]
    old = dovecot.uidvalidity("Alerts")
    new = dovecot.rebuild_index("Alerts")
    assert new != old
    assert dovecot.uidvalidity("Alerts") == new
    assert inbox_uids(dovecot, "Alerts") == [1, 2]


def test_kill_then_start(dovecot: Dovecot) -> None:
    uid = dovecot.append("INBOX", message("survives a crash"))
    group = dovecot.pid
    assert group is not None
    with dovecot.connect() as watcher:
        watcher.select_folder("INBOX")
        watcher.idle()
        dovecot.kill()
        assert not dovecot.running
        assert harness.group_members(group) == []
        with pytest.raises((IMAPClient.AbortError, OSError)):
            watcher.idle_check(timeout=2)
            watcher.idle_done()
    with pytest.raises(OSError), socket.create_connection((dovecot.host, dovecot.port), 1):
        pass
    dovecot.start()
    assert inbox_uids(dovecot) == [uid]
    assert dovecot.append("INBOX", message("after the crash")) == uid + 1


def test_two_servers_run_at_once(dovecot: Dovecot) -> None:
    with Dovecot(user="carol") as other:
        assert other.port != dovecot.port
        assert other.base_dir != dovecot.base_dir
        assert other.append("INBOX", message("other")) == 1
        assert dovecot.append("INBOX", message("first")) == 1
        assert inbox_uids(other) == [1]
        base_dir = other.base_dir
    assert not base_dir.exists()
    assert inbox_uids(dovecot) == [1]


def test_start_failure_raises_with_log_tail() -> None:
    harness.require_dovecot()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = Dovecot(port=busy.getsockname()[1])
        try:
            with pytest.raises(DovecotError, match="Address already in use"):
                server.start(timeout=5)
            assert not server.running
        finally:
            server.close()
    assert not server.base_dir.exists()


def test_missing_binary_skips_locally_but_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "find_binary", lambda name="dovecot": None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="dovecot is not installed"):
        harness.require_dovecot()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="dovecot is not installed"):
        harness.require_dovecot()


def test_password_change_while_running(dovecot: Dovecot) -> None:
    old = dovecot.password
    dovecot.add_user(dovecot.user, "changed-password")
    assert dovecot.password == "changed-password"
    with dovecot.connect() as imap:
        assert imap.list_folders()
    stale = IMAPClient(dovecot.host, dovecot.port, ssl=False, timeout=10)
    try:
        with pytest.raises(IMAPClient.Error):
            stale.login(dovecot.user, old)
    finally:
        stale.shutdown()
