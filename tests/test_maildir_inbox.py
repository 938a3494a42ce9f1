"""The Maildir inbox (the embedded default): store first, then mark seen; repeats recognised."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from integrations.maildir import MaildirInbox, create
from sgalert.config import SourceConfig
from sgalert.engine.watch import make_deliver
from sgalert.errors import ConfigError
from sgalert.intake.ingest import Ingestor
from sgalert.intake.prepare import SourceRules
from sgalert.model import Source
from sgalert.ports import Inbound, IngestOutcome

from .conftest import Team
from .imap_helpers import notice


def maildir(root: Path) -> Path:
    for sub in ("new", "cur", "tmp"):
        (root / "inbox" / sub).mkdir(parents=True, exist_ok=True)
    return root / "inbox"


def drop(folder: Path, name: str, raw: bytes, sub: str = "new") -> Path:
    path = folder / sub / name
    path.write_bytes(raw)
    return path


def source(after_commit: str = "mark-read") -> SourceConfig:
    return SourceConfig(
        name="drop",
        type=Source.ENCOMPASS,
        kind="maildir",
        options={"path": "inbox", "after_commit": after_commit},
    )


async def test_by_default_no_plain_copy_is_left_once_the_case_is_sealed(
    team: Team, tmp_path: Path
) -> None:
    folder = maildir(tmp_path)
    drop(folder, "1.a.host", notice(1, "Ada Invented"))
    drop(folder, "2.b.host:2,F", notice(2, "Bea Invented"), sub="cur")  # unread, flagged
    plain = SourceConfig(
        name="drop", type=Source.ENCOMPASS, kind="maildir", options={"path": "inbox"}
    )
    inbox = create(plain, tmp_path)
    assert team.service.config is not None
    deliver = make_deliver(
        Ingestor(team.service.new_cases, team.service.config), SourceRules.from_config(plain)
    )
    assert await inbox.poll_once(deliver) == 2
    assert len(await team.service.list_cases()) == 2
    assert os.listdir(folder / "new") == [] and os.listdir(folder / "cur") == []
    # Nothing under the workspace holds a child's name in plain text: not the inbox, not the
    # database or its WAL.
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"Invented" not in data, f"plain personal data left in {path.name}"
    # The sealed case is the record.
    names = set()
    for case in await team.service.list_cases():
        opened = await team.service.open_case(team["dsl@example.org"], case.ref)
        names.add(opened.facts["child_name"])
    assert names == {"Ada Invented", "Bea Invented"}


async def test_mark_read_moves_messages_to_cur_as_seen(team: Team, tmp_path: Path) -> None:
    folder = maildir(tmp_path)
    drop(folder, "1.a.host", notice(1))
    drop(folder, "2.b.host:2,F", notice(2, "Bea Invented"), sub="cur")  # unread, flagged
    drop(folder, "3.c.host:2,S", notice(3, "Cal Invented"), sub="cur")  # already read: left
    inbox = create(source(), tmp_path)
    assert isinstance(inbox, MaildirInbox)
    assert team.service.config is not None
    deliver = make_deliver(
        Ingestor(team.service.new_cases, team.service.config), SourceRules.from_config(source())
    )
    assert await inbox.poll_once(deliver) == 2
    assert len(await team.service.list_cases()) == 2
    assert sorted(os.listdir(folder / "new")) == []
    assert sorted(os.listdir(folder / "cur")) == ["1.a.host:2,S", "2.b.host:2,FS", "3.c.host:2,S"]


async def test_crash_before_marking_redelivers_the_same_case(team: Team, tmp_path: Path) -> None:
    folder = maildir(tmp_path)
    drop(folder, "1.a.host", notice(1))
    assert team.service.config is not None
    real = make_deliver(
        Ingestor(team.service.new_cases, team.service.config), SourceRules.from_config(source())
    )

    async def crash_after_commit(
        messages: Sequence[Inbound], *, checkpoint: str | None = None
    ) -> list[IngestOutcome]:
        await real(messages, checkpoint=checkpoint)
        raise RuntimeError("power cut after the commit")

    inbox = create(source(), tmp_path)
    with pytest.raises(RuntimeError):
        await inbox.poll_once(crash_after_commit)
    assert os.listdir(folder / "new") == ["1.a.host"]  # not marked: the crash came first
    await inbox.poll_once(real)
    assert len(await team.service.list_cases()) == 1
    assert os.listdir(folder / "cur") == ["1.a.host:2,S"]


async def test_crash_before_deleting_redelivers_the_same_case(team: Team, tmp_path: Path) -> None:
    folder = maildir(tmp_path)
    drop(folder, "1.a.host", notice(1))
    assert team.service.config is not None
    real = make_deliver(
        Ingestor(team.service.new_cases, team.service.config),
        SourceRules.from_config(source("delete")),
    )

    async def crash_after_commit(
        messages: Sequence[Inbound], *, checkpoint: str | None = None
    ) -> list[IngestOutcome]:
        await real(messages, checkpoint=checkpoint)
        raise RuntimeError("power cut after the commit")

    inbox = create(source("delete"), tmp_path)
    with pytest.raises(RuntimeError):
        await inbox.poll_once(crash_after_commit)
    assert os.listdir(folder / "new") == ["1.a.host"]  # not deleted: the crash came first
    await inbox.poll_once(real)
    assert len(await team.service.list_cases()) == 1
    assert os.listdir(folder / "new") == [] and os.listdir(folder / "cur") == []


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match='after_commit: must be "delete"'):
        create(source("move"), tmp_path)
    with pytest.raises(ConfigError, match="needs a path"):
        create(SourceConfig(name="d", type=Source.ENCOMPASS, kind="maildir"), tmp_path)
    with pytest.raises(ConfigError, match="pth: unknown option .*did you mean .path."):
        create(
            SourceConfig(
                name="d", type=Source.ENCOMPASS, kind="maildir", options={"path": "x", "pth": "y"}
            ),
            tmp_path,
        )
