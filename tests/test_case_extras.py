"""The case view's extras in the core: exporting an attachment, the notification history.

An attachment leaves the sealed store only for an entitled person, only where asked, as a 0600
file written atomically, and every export is audited without the filename. The notification
history is read from the real outbox and timers after the escalation and outbox code ran.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import stat
import subprocess
import threading
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from sgalert.desk import export
from sgalert.desk.export import MAX_NAME_BYTES, proposed_name, safe_filename, write_private_file
from sgalert.desk.service import delivery_error_class
from sgalert.errors import (
    AlreadyExists,
    ExportError,
    InvalidInput,
    NotEntitled,
    NotFound,
    StoreError,
)
from sgalert.ports import DeliveryError, Notification, Receipt, Recipient
from sgalert.records import audit
from sgalert.records.cases import FIELD_ATTACHMENTS, NewCase
from sgalert.routing.escalation import Duty, Plan, fire_due
from sgalert.routing.outbox import OutboxSender

from .cli_helpers import sgalert_cli
from .conftest import Team, encompass_case, whistle_case
from .engine_helpers import RecordingNotifier, VirtualClock

PDF = b"%PDF-1.7 invented"


async def _case_entries(team: Team, case_id: str) -> list[audit.AuditEntry]:
    async with team.service.store.read() as db:
        return await audit.entries(db, case_id=case_id)


# ----- exporting an attachment ------------------------------------------------------------


async def test_an_entitled_person_gets_the_bytes_and_the_export_is_audited(team: Team) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    content = await team.service.attachment(team["deputy@example.org"], stored.ref, 0)
    assert (content.filename, content.content_type, content.data) == (
        "notice.pdf",
        "application/pdf",
        PDF,
    )
    assert "notice" not in repr(content) and "PDF" not in repr(content)
    (entry,) = [e for e in await _case_entries(team, stored.id) if e.action.startswith("attach")]
    assert entry.action == "attachment-exported" and entry.actor == "deputy@example.org"
    assert entry.detail == {"ref": stored.ref, "index": 0, "bytes": len(PDF), "to": "caller"}


async def test_save_writes_a_private_copy_and_audits_it(team: Team, tmp_path: Path) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "copy.pdf"
    saved = await team.service.save_attachment(team["dsl@example.org"], stored.ref, 0, target)
    assert saved.path == target and saved.size == len(PDF) and not saved.replaced
    assert target.read_bytes() == PDF
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in folder.iterdir()] == ["copy.pdf"]  # no temporary left behind
    exports = [e for e in await _case_entries(team, stored.id) if e.action == "attachment-exported"]
    assert [e.detail["to"] for e in exports] == ["file"]
    assert "copy" not in json.dumps(exports[0].detail) and "notice" not in json.dumps(
        exports[0].detail
    )


async def test_an_existing_file_is_kept_unless_overwrite_is_asked(
    team: Team, tmp_path: Path
) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    target = tmp_path / "copy.pdf"
    target.write_bytes(b"somebody else's file")
    dsl = team["dsl@example.org"]
    with pytest.raises(AlreadyExists) as raised:
        await team.service.save_attachment(dsl, stored.ref, 0, target)
    assert str(target) not in str(raised.value)
    assert target.read_bytes() == b"somebody else's file"
    assert not [e for e in await _case_entries(team, stored.id) if e.action.startswith("attach")]
    saved = await team.service.save_attachment(dsl, stored.ref, 0, target, overwrite=True)
    assert saved.replaced and target.read_bytes() == PDF
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


async def test_a_person_not_entitled_is_refused_and_the_refusal_audited(
    team: Team, tmp_path: Path
) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    target = tmp_path / "copy.pdf"
    for call in (
        team.service.attachment(team["mo@example.org"], stored.ref, 0),
        team.service.save_attachment(team["staff@example.org"], stored.ref, 0, target),
    ):
        with pytest.raises(NotEntitled, match="^no such case, or you are not entitled to it$"):
            await call
    assert not target.exists()
    refusals = [e for e in await _case_entries(team, stored.id) if e.action == "refused"]
    assert {(e.actor, e.detail["action"]) for e in refusals} == {
        ("mo@example.org", "export-attachment"),
        ("staff@example.org", "export-attachment"),
    }


async def test_an_attachment_that_is_not_there_is_named_by_number(team: Team) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    for index in (1, -1):
        with pytest.raises(NotFound, match="no attachment number") as raised:
            await team.service.attachment(team["dsl@example.org"], stored.ref, index)
        assert "notice" not in str(raised.value)


def _signed_statement_case() -> NewCase:
    """A whistleblowing case as ingest seals one with an attachment: the list (its filename
    redacted) under the content key, the bytes, which name the reporter, under the identity
    key."""
    case = whistle_case()
    listed = [{"filename": "[redacted].pdf", "content_type": "application/pdf", "size": 40}]
    return replace(
        case,
        content={**case.content, FIELD_ATTACHMENTS: json.dumps(listed).encode()},
        identity={**case.identity, "attachment/0": b"%PDF-1.7 signed by Riley Reporter"},
    )


async def test_a_whistle_attachment_sealed_with_the_identity_is_refused_to_an_investigator(
    team: Team, out: Path
) -> None:
    service = team.service
    (stored,) = await service.create_cases([_signed_statement_case()])
    mo, investigator = team["mo@example.org"], team["deputy@example.org"]
    await service.grant(mo, stored.ref, investigator.email)
    view = await service.open_case(investigator, stored.ref)
    assert view.reporter is None and [a.filename for a in view.attachments] == ["[redacted].pdf"]
    target = out / "statement.pdf"
    for call in (
        service.attachment(investigator, stored.ref, 0),
        service.save_attachment(investigator, stored.ref, 0, target),
    ):
        with pytest.raises(NotEntitled, match="attachment 1 of case .*reporter's identity"):
            await call
    assert list(out.iterdir()) == []
    trail = await _case_entries(team, stored.id)
    refusals = [e for e in trail if e.action == "refused"]
    assert [(e.actor, e.detail) for e in refusals] == [
        ("deputy@example.org", {"action": "export-attachment", "index": 0, "key": "identity"})
    ] * 2
    assert not [e for e in trail if e.action == "attachment-exported"]
    content = await service.attachment(mo, stored.ref, 0)
    assert content.data == b"%PDF-1.7 signed by Riley Reporter"
    saved = await service.save_attachment(mo, stored.ref, 0, target)
    assert saved.path.read_bytes() == content.data
    exports = [e for e in await _case_entries(team, stored.id) if e.action.startswith("attach")]
    assert [(e.actor, e.detail["to"]) for e in exports] == [
        ("mo@example.org", "file"),  # newest first
        ("mo@example.org", "caller"),
    ]


async def test_an_attachment_whose_bytes_were_not_kept_is_not_found_not_refused(
    team: Team,
) -> None:
    case = encompass_case()
    case = replace(case, content={k: v for k, v in case.content.items() if k != "attachment/0"})
    (stored,) = await team.service.create_cases([case])
    with pytest.raises(NotFound, match="was not kept"):
        await team.service.attachment(team["dsl@example.org"], stored.ref, 0)
    assert not [e for e in await _case_entries(team, stored.id) if e.action == "refused"]


# ----- writing the copy: no lock held, nothing left behind -----------------------------------


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """An empty folder for copies (``tmp_path`` also holds the workspace)."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


@pytest.fixture(params=["unnamed", "named"])
def temporary_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a copy is written before it is placed: Linux's unnamed file, and the hidden
    temporary file used where there is none."""
    if request.param == "named":
        monkeypatch.setattr(export, "_open_anonymous", lambda folder: None)
    elif export._open_anonymous(Path.cwd()) is None:
        pytest.skip("no O_TMPFILE here")
    return str(request.param)


def test_an_unnamed_copy_leaves_nothing_on_disk_until_it_is_placed(out: Path) -> None:
    copy = export.StagedCopy(out / "copy.pdf")
    try:
        copy.write(PDF)
        if copy._anonymous is None:
            pytest.skip("no O_TMPFILE here")
        assert list(out.iterdir()) == []  # a crash now leaves no plaintext behind
        copy.place()
        assert (out / "copy.pdf").read_bytes() == PDF
    finally:
        copy.discard()
    assert [p.name for p in out.iterdir()] == ["copy.pdf"]
    assert stat.S_IMODE((out / "copy.pdf").stat().st_mode) == 0o600


async def test_no_lock_is_held_while_the_copy_is_written(
    team: Team, out: Path, monkeypatch: pytest.MonkeyPatch, temporary_kind: str
) -> None:
    """A slow disk (a network share, a USB stick) must not stop the engine or the desk."""
    (stored,) = await team.service.create_cases([encompass_case()])
    started, release = threading.Event(), threading.Event()
    write = export.StagedCopy.write

    def slow_write(self: export.StagedCopy, data: bytes) -> None:
        started.set()
        release.wait(10)
        write(self, data)

    monkeypatch.setattr(export.StagedCopy, "write", slow_write)
    dsl = team["dsl@example.org"]
    saving = asyncio.create_task(team.service.save_attachment(dsl, stored.ref, 0, out / "copy.pdf"))
    try:
        await asyncio.to_thread(started.wait, 10)
        await asyncio.wait_for(team.service.add_note(dsl, stored.ref, "Meanwhile."), 5)
    finally:
        release.set()
    saved = await saving
    assert saved.path.read_bytes() == PDF
    assert [p.name for p in out.iterdir()] == ["copy.pdf"]


async def test_cancelling_while_the_copy_is_written_leaves_nothing(
    team: Team, out: Path, monkeypatch: pytest.MonkeyPatch, temporary_kind: str
) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    started, release = threading.Event(), threading.Event()
    write = export.StagedCopy.write

    def slow_write(self: export.StagedCopy, data: bytes) -> None:
        started.set()
        release.wait(10)
        write(self, data)

    monkeypatch.setattr(export.StagedCopy, "write", slow_write)
    saving = asyncio.create_task(
        team.service.save_attachment(team["dsl@example.org"], stored.ref, 0, out / "c.pdf")
    )
    await asyncio.to_thread(started.wait, 10)
    saving.cancel()
    await asyncio.sleep(0.05)
    assert not saving.done()  # it waits for the thread it started
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await saving
    assert list(out.iterdir()) == []
    assert not [e for e in await _case_entries(team, stored.id) if e.action.startswith("attach")]


@pytest.mark.parametrize("existing", [None, b"the file that was there"])
async def test_a_copy_whose_audit_does_not_commit_is_taken_back(
    team: Team,
    out: Path,
    monkeypatch: pytest.MonkeyPatch,
    temporary_kind: str,
    existing: bytes | None,
) -> None:
    """The copy is placed inside the transaction that audits it; if the commit fails it is
    removed, and a file it replaced is put back."""
    (stored,) = await team.service.create_cases([encompass_case()])
    target = out / "copy.pdf"
    if existing is not None:
        target.write_bytes(existing)
    store = team.service.store
    statement = store._statement
    placed: list[bool] = []

    async def failing_commit(sql: str) -> None:
        if sql == "COMMIT" and (target.exists() and target.read_bytes() == PDF):
            placed.append(True)
            await statement("ROLLBACK")
            raise sqlite3.OperationalError("disk I/O error")
        await statement(sql)

    monkeypatch.setattr(store, "_statement", failing_commit)
    with pytest.raises(StoreError, match="nothing was saved"):
        await team.service.save_attachment(
            team["dsl@example.org"], stored.ref, 0, target, overwrite=existing is not None
        )
    monkeypatch.undo()
    assert placed == [True]
    if existing is None:
        assert list(out.iterdir()) == []
    else:
        assert [p.name for p in out.iterdir()] == ["copy.pdf"]
        assert target.read_bytes() == existing
    assert not [e for e in await _case_entries(team, stored.id) if e.action.startswith("attach")]


async def test_replacing_a_file_keeps_nothing_aside_once_recorded(
    team: Team, out: Path, temporary_kind: str
) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    target = out / "copy.pdf"
    target.write_bytes(b"old")
    saved = await team.service.save_attachment(
        team["dsl@example.org"], stored.ref, 0, target, overwrite=True
    )
    assert saved.replaced and target.read_bytes() == PDF
    assert [p.name for p in out.iterdir()] == ["copy.pdf"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_an_os_error_never_carries_the_path(tmp_path: Path) -> None:
    """A 300-byte name (one a child's name can make) fails in the file system; the error says
    what went wrong, never where."""
    name = "Ada-Invented-" * 23 + ".pdf"
    assert len(name.encode()) > 255
    with pytest.raises(ExportError, match=r"\(file name too long\)$") as raised:
        write_private_file(tmp_path / name, b"x")
    assert "Ada" not in str(raised.value) and "Invented" not in str(raised.value)
    assert raised.value.__suppress_context__ and raised.value.__cause__ is None
    assert list(tmp_path.iterdir()) == []


async def test_saving_to_an_impossible_name_is_an_export_error_and_not_audited(
    team: Team, tmp_path: Path
) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    target = tmp_path / ("Ada-Invented-" * 23 + ".pdf")
    with pytest.raises(ExportError) as raised:
        await team.service.save_attachment(team["dsl@example.org"], stored.ref, 0, target)
    assert "Ada" not in str(raised.value)
    assert not [e for e in await _case_entries(team, stored.id) if e.action.startswith("attach")]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("notice.pdf", "notice.pdf"),
        ("../../etc/passwd", "_.._etc_passwd"),
        ("..\\..\\boot.ini", "_.._boot.ini"),
        (".bashrc", "bashrc"),
        ("...", "fallback"),
        ("", "fallback"),
        ("evil\u202efdp.exe", "evilfdp.exe"),
        ("line\nbreak\x1b[31m.txt", "linebreak[31m.txt"),
        ("  spaced   out  .doc ", "spaced out.doc"),
        ("con.txt", "_con.txt"),
        ("a:b*c?.pdf", "a_b_c_.pdf"),
    ],
)
def test_safe_filename(name: str, expected: str) -> None:
    assert safe_filename(name, fallback="fallback") == expected


def test_a_long_name_keeps_its_extension_and_a_proposal_starts_with_the_ref() -> None:
    long = safe_filename("é" * 400 + ".pdf", fallback="x")
    assert long.endswith(".pdf") and len(long.encode()) <= MAX_NAME_BYTES
    assert proposed_name("SG-2026-0001", 2, "/") == "SG-2026-0001-_"
    assert proposed_name("SG-2026-0001", 2, "\x00") == "SG-2026-0001-attachment-3"


def test_write_private_file_refuses_a_missing_folder_or_a_folder_target(tmp_path: Path) -> None:
    with pytest.raises(ExportError) as raised:
        write_private_file(tmp_path / "no-such-folder" / "Ada notice.pdf", b"x")
    assert "Ada" not in str(raised.value)
    with pytest.raises(InvalidInput):
        write_private_file(tmp_path, b"x", overwrite=True)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    for overwrite in (False, True):  # a link, even a dangling one, is neither written through
        with pytest.raises(InvalidInput, match="a symbolic link, not a regular file"):
            write_private_file(link, b"x", overwrite=overwrite)  # nor replaced
    assert link.is_symlink()
    assert not (tmp_path / "elsewhere").exists()


# ----- the notification history -----------------------------------------------------------


class RefusingNotifier:
    """A channel whose server refuses the recipient, quoting the address as servers do."""

    name = "email"
    per_person = True

    async def send(self, notification: Notification, recipient: Recipient) -> Receipt:
        raise DeliveryError(
            f"recipient refused: 550 <{recipient.address}> unknown", retryable=False
        )

    async def close(self) -> None:
        return None


def _plan(team: Team) -> Plan:
    """Email to each person and a shared Teams channel; the service's clock stands still on a
    Sunday night, so only the first escalation step is due."""
    team.service._clock = VirtualClock()
    assert team.service.plan is not None
    return Plan(
        school="Test School",
        calendar=team.service.plan.calendar,
        policies=team.service.plan.policies,
        channels=("email", "teams"),
        per_person_channels=frozenset({"email"}),
    )


async def test_history_lists_each_page_its_delivery_and_the_timers(team: Team) -> None:
    service = team.service
    plan = _plan(team)
    (stored,) = await service.create_cases([encompass_case()])
    now = service._clock() + timedelta(seconds=1)
    queued = await service.store.transact(
        lambda conn: fire_due(conn, plan, Duty("dsl@example.org"), now)
    )
    assert queued == 2  # the on-duty DSL by email, and the shared teams channel
    dsl = team["dsl@example.org"]
    history = await service.notification_history(dsl, stored.ref)
    assert history.ref == stored.ref
    assert [(n.channel, n.recipient, n.state) for n in history.notifications] == [
        ("email", "dsl@example.org", "pending"),
        ("teams", "teams", "pending"),
    ]
    assert {n.raised_by for n in history.notifications} == {"step"}
    assert all(n.urgency == "urgent" and n.reason == "new case" for n in history.notifications)
    kinds = {(t.kind, t.step, t.state) for t in history.timers}
    assert ("step", 0, "fired") in kinds and ("step", 1, "pending") in kinds

    email = RecordingNotifier("email")
    teams = RecordingNotifier("teams", per_person=False)
    sender = OutboxSender(service.store, {"email": email, "teams": teams}, clock=lambda: now)
    assert await sender.send_due() == 2
    history = await service.notification_history(dsl, stored.ref)
    for page in history.notifications:
        assert page.state == "delivered" and page.attempts == 1 and page.delivered_at == now
        assert page.error is None


async def test_history_names_a_failure_by_its_class_never_its_text(team: Team) -> None:
    service = team.service
    plan = _plan(team)
    (stored,) = await service.create_cases([encompass_case()])
    now = service._clock() + timedelta(seconds=1)
    await service.store.transact(lambda conn: fire_due(conn, plan, Duty("dsl@example.org"), now))
    teams = RecordingNotifier("teams", per_person=False)
    notifiers = {"email": RefusingNotifier(), "teams": teams}
    sender = OutboxSender(service.store, notifiers, clock=lambda: now)
    await sender.send_due()
    history = await service.notification_history(team["deputy@example.org"], stored.ref)
    failed = [n for n in history.notifications if n.state == "failed"]
    assert len(failed) == 1 and failed[0].error == "recipient refused"
    assert "550" not in repr(history)
    fallback = [n for n in history.notifications if n.raised_by == "fallback"]
    assert fallback and fallback[0].fallback_of == failed[0].id and fallback[0].channel == "teams"


async def test_history_is_refused_to_a_person_not_entitled(team: Team) -> None:
    (stored,) = await team.service.create_cases([encompass_case()])
    with pytest.raises(NotEntitled):
        await team.service.notification_history(team["chair@example.org"], stored.ref)
    refusals = [e for e in await _case_entries(team, stored.id) if e.action == "refused"]
    assert [e.detail for e in refusals] == [{"action": "notification-history"}]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (None, None),
        ("the mail server did not answer in time", "timeout"),
        ("recipient refused: 550 <dsl@example.org> no such user", "recipient refused"),
        ("could not connect to the mail server (ConnectionRefusedError)", "unreachable"),
        ("sign-in refused (invalid_client)", "sign-in refused"),
        ("Microsoft Graph is throttling or busy (HTTP 429)", "throttled"),
        ("unexpected ValueError", "unexpected error"),
        ("something new", "delivery error"),
    ],
)
def test_delivery_error_classes(message: str | None, expected: str | None) -> None:
    assert delivery_error_class(message) == expected


# ----- the command line -------------------------------------------------------------------


@pytest.mark.slow
def test_cli_writes_an_attachment_only_where_asked(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"

    def run(*args: str, passphrase: str | None = None) -> subprocess.CompletedProcess[str]:
        return sgalert_cli(workspace, *args, passphrase=passphrase)

    assert run("init").returncode == 0
    added = run(
        *(
            "user",
            "add",
            "--first",
            "--name",
            "Dana Example",
            "--email",
            "dsl@example.org",
            "--role",
            "dsl",
        ),
        passphrase="dsl-passphrase",
    )
    assert added.returncode == 0, added.stderr
    message = Path(__file__).parent / "messages" / "encompass_pdf_only.eml"
    made = run("ingest", str(message), "--source", "encompass", "--json")
    assert made.returncode == 0, made.stderr
    ref = json.loads(made.stdout)["ref"]
    out = tmp_path / "out"
    out.mkdir()
    as_dsl = ("--as", "dsl@example.org")
    saved = run(
        "case", "attachment", ref, "1", "--out", str(out), *as_dsl, passphrase="dsl-passphrase"
    )
    assert saved.returncode == 0, saved.stderr
    (written,) = out.iterdir()
    assert written.name == f"{ref}-Encompass 44-777777-26.pdf"
    assert written.read_bytes().startswith(b"%PDF-1.7")
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert "WARNING" in saved.stderr and "dsl@example.org is responsible" in saved.stderr
    again = run(
        "case", "attachment", ref, "1", "--out", str(written), *as_dsl, passphrase="dsl-passphrase"
    )
    assert again.returncode != 0 and "already exists" in again.stderr
    missing = run(
        "case",
        "attachment",
        ref,
        "2",
        "--out",
        str(out / "x"),
        *as_dsl,
        passphrase="dsl-passphrase",
    )
    assert missing.returncode != 0 and "no attachment number 2" in missing.stderr
