"""The headteacher's daily digest: known answers from a seeded store (``digest_support``), each
copy cut to what its reader may know, no personal data in any byte, and an anchor that catches
a rewritten log."""

from __future__ import annotations

import dataclasses
import html.parser
import sqlite3
from datetime import date, time
from pathlib import Path

import pytest

from sgalert.config import Config, DigestSettings, load_config
from sgalert.desk.service import CaseService
from sgalert.errors import AuditChainBroken, ConfigError
from sgalert.records import audit
from sgalert.records.store import on_connection
from sgalert.routing.digest import (
    Digest,
    Viewer,
    build_digest,
    clock_horizon,
    digest_recipients,
    is_digest_day,
    previous_digest_day,
    queue_digest,
    slot,
)
from sgalert.routing.digest_render import render_html, render_text

from .conftest import Team
from .digest_support import PERSONAL, at, seed

MONDAY = date(2026, 12, 7)


def config_of(service: CaseService) -> Config:
    assert service.config is not None
    return service.config


async def build(service: CaseService, day: date = MONDAY) -> Digest:
    config = config_of(service)
    now = at(day.day, 7, 31)
    async with service.store.read() as db:
        return await on_connection(db, lambda conn: build_digest(conn, config, day, now))


async def queue(service: CaseService, digest: Digest) -> int:
    config = config_of(service)
    return await service.store.transact(
        lambda conn: queue_digest(conn, config, digest, digest.until)
    )


async def test_the_heads_copy_gives_the_hand_computed_figures(team: Team) -> None:
    service, refs = await seed(team)
    text = render_text(await build(service), Viewer("head"), width=None)
    lines = text.splitlines()
    assert lines[0] == "Test School: safeguarding digest for Monday 7 December 2026"
    assert "Covering Fri 4 Dec 07:30 to Mon 7 Dec 07:30 (Europe/London)." in lines
    assert "At a glance: 4 new, 3 still unacknowledged, 1 statutory deadline overdue." in lines
    # New in the period: C1, E1, E2 (encompass), L1 (lesson); H1 is about the head.
    assert "4 new cases in this period." in lines
    new_at = lines.index("4 new cases in this period.")
    assert lines[new_at + 1 : new_at + 4] == ["  - encompass: 3", "  - whistle: 0", "  - lesson: 1"]
    # Acknowledged C1 (30 min), E1 (4 min), E2 (25 min); closed C1; open E0 W1 E1 E2 L1.
    assert "  - Acknowledged in this period: 3" in lines
    assert "  - Closed in this period: 1" in lines
    assert "  - Open at Mon 7 Dec 07:30: 5 (of which not yet acknowledged: 3)" in lines
    assert (
        "  - encompass: 3 acknowledged, median 25 min, worst 30 min; the first step allows"
        " 10 min: 2 beyond it"
    ) in lines
    assert "2 cases went past the first step:" in lines
    assert (
        f"  - {refs['E2']} (encompass): reached step 3 (head); answered after step 3 (head)"
        in lines
    )
    assert f"  - {refs['L1']} (lesson): reached step 2 (deputy); not answered yet" in lines
    assert "Statutory deadline warnings sent: 1." in lines
    # W1's 5-working-day clock is due Tue 8 Dec 09:00; E0's Encompass clock ran out Fri 08:30.
    assert "Due by the end of Tue 8 Dec (the next 2 school days): 1" in lines
    assert "  - 1 whistle clock (reference withheld)" in lines
    assert "Overdue: 1" in lines
    assert f"  - {refs['E0']}: encompass-before-school-day, was due Fri 4 Dec 08:30" in lines
    assert "Met late in this period: none" in lines
    assert f"  - {refs['E0']} (encompass), received Thu 3 Dec 20:00" in lines
    assert f"  - {refs['L1']} (lesson), received Mon 7 Dec 07:00" in lines
    assert "  - 1 whistle case (reference withheld: not yours to read)" in lines
    assert "Allegations about the headteacher: 1 in this period, 1 open." in text
    assert "  - encompass: down from Sat 5 Dec 10:00, until Sat 5 Dec 10:30" in lines
    assert "Engine starts (restarts and takeovers): 1 (Sun 6 Dec 08:00)" in lines
    assert (
        "Gaps in cover: 2 in the next 14 days, the first from Wed 9 Dec 19:00 to Thu 10 Dec"
        " 07:00; see sgalert rota check."
    ) in lines
    assert "  - System alerts raised: 2 (rota-gap 1, source-down 1)" in lines
    assert "  - System alerts cleared: 1 (source-down 1)" in lines
    assert "  - Still open at Mon 7 Dec 07:30: 1 (rota-gap 1)" in lines
    assert "No earlier digest to check against." in lines
    # The head never learns the reference of an allegation about them, nor of a case they
    # may not read, nor of a case that arrived after the slot.
    for hidden in ("H1", "W1", "C1", "E1", "LATER"):
        assert refs[hidden] not in text, hidden


async def test_the_chairs_copy_lists_the_allegation_about_the_head(team: Team) -> None:
    service, refs = await seed(team)
    digest = await build(service)
    chair = render_text(digest, Viewer("chair"), width=None).splitlines()
    assert "5 new cases in this period." in chair
    assert "  - whistle: 1" in chair
    assert "  - Open at Mon 7 Dec 07:30: 6 (of which not yet acknowledged: 4)" in chair
    assert f"  - {refs['H1']} (whistle), received Sat 5 Dec 12:00, not yet acknowledged" in chair
    # Not the chair's to read: counted, not named.
    assert refs["E0"] not in "\n".join(chair) and refs["W1"] not in "\n".join(chair)
    # A governor's address that is no person in sgalert: counts only, no reference at all.
    governor = render_text(digest, Viewer(None), width=None)
    assert "SG-" not in governor.replace("SG-ALERT", "")
    assert "Allegations about the headteacher: 1 in this period, 1 open." in governor


class _Text(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag not in ("meta", "br"):
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, (tag, self.open)
        self.open.pop()

    def handle_data(self, data: str) -> None:
        if data.strip() and (not self.open or self.open[-1] not in ("style", "title")):
            self.parts.append(data.strip())


@pytest.mark.parametrize("role", ["head", "chair", "monitoring-officer", "dsl", None])
async def test_every_copy_is_free_of_personal_data_and_its_html_is_its_text_twin(
    team: Team, role: str | None
) -> None:
    service, _ = await seed(team)
    digest = await build(service)
    text = render_text(digest, Viewer(role), width=None)
    page = render_html(digest, Viewer(role))
    for rendered in (text, page):
        for datum in PERSONAL:
            assert datum.lower() not in rendered.lower(), datum
    parser = _Text()
    parser.feed(page)
    parser.close()
    assert parser.open == []
    # Every paragraph and list item of the text version is in the HTML, in the same order.
    text_lines = [
        line.strip().removeprefix("- ")
        for line in text.splitlines()
        if line and not set(line) <= {"=", "-"}
    ]
    assert parser.parts == text_lines
    # And the mailed text, wrapped at 78 columns, says the same words.
    wrapped = render_text(digest, Viewer(role))
    assert all(len(line) <= 78 or "--anchor" in line for line in wrapped.splitlines())
    assert wrapped.split() == text.split()


async def test_each_figure_is_the_same_for_a_past_date_built_later(team: Team) -> None:
    """Figures come from times, not from today's states: a preview of Monday built after more
    activity says what Monday's digest said."""
    service, refs = await seed(team)
    first = render_text(await build(service), Viewer("head"), width=None)
    # Later that morning L1 is acknowledged: Monday's digest must not change.
    clock_service = CaseService(service.store, service.config, lambda: at(7, 9))
    await clock_service.acknowledge(team["dsl@example.org"], refs["L1"])
    again = render_text(await build(service), Viewer("head"), width=None)

    def figures(text: str) -> list[str]:
        return [line for line in text.splitlines() if "anchor" not in line]

    assert figures(again) == figures(first)
    assert f"{refs['L1']} (lesson): reached step 2 (deputy); not answered yet" in again


async def test_the_anchor_verifies_until_the_tail_is_deleted(team: Team) -> None:
    service, _ = await seed(team)
    monday = await build(service)
    assert await queue(service, monday) == 1  # the head
    anchor = monday.anchor
    shown = f"sgalert audit verify --anchor {anchor.seq}:{anchor.hash}"
    assert shown in render_text(monday, Viewer("head"))  # on a line of its own, unwrapped
    async with service.store.read() as db:
        assert await audit.verify(db, anchors=[anchor]) >= anchor.seq
    # Tuesday's digest re-verifies Monday's anchor.
    tuesday = await build(service, date(2026, 12, 8))
    assert tuesday.since == at(7, 7, 30)
    assert tuesday.previous is not None and tuesday.previous.holds
    assert (
        f"The previous digest's anchor (Mon 7 Dec: entry {anchor.seq}, {anchor.hash[:16]}...)"
        " still holds" in render_text(tuesday, Viewer("head"), width=None)
    )
    db = sqlite3.connect(service.store.path, isolation_level=None)
    db.execute("DROP TRIGGER audit_no_delete")
    db.execute("DELETE FROM audit WHERE seq >= ?", (anchor.seq - 1,))
    db.close()
    async with service.store.read() as conn:
        with pytest.raises(AuditChainBroken, match=f"audit entry {anchor.seq} .*is missing"):
            await audit.verify(conn, anchors=[anchor])


async def test_a_rebuilt_chain_is_shouted_in_the_next_digest(team: Team) -> None:
    service, _ = await seed(team)
    monday = await build(service)
    await queue(service, monday)
    db = sqlite3.connect(service.store.path, isolation_level=None)
    db.execute("DROP TRIGGER audit_no_update")
    rows = db.execute("SELECT seq, at, actor, action, case_id, detail FROM audit ORDER BY seq")
    prev = audit.GENESIS_HASH
    for seq, when, actor, action, case_id, detail in rows.fetchall():
        actor = "forger@example.org" if seq == 2 else actor
        digest = audit.entry_hash(prev, seq, when, actor, action, case_id, detail)
        db.execute(
            "UPDATE audit SET actor = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            (actor, prev, digest, seq),
        )
        prev = digest
    db.close()
    # A valid chain again, but the entry that recorded Monday's digest still names Monday's
    # real head hash. (A forger who edits that too is caught by the emailed copy's anchor:
    # `audit verify --anchor`, tested in test_audit_anchor.py.)
    tuesday = await build(service, date(2026, 12, 8))
    assert tuesday.previous is not None and not tuesday.previous.holds
    text = render_text(tuesday, Viewer("head"), width=None)
    assert text.splitlines()[2].startswith("WARNING: the audit log no longer holds the state")
    assert "DOES NOT HOLD" in text


def test_digest_days_skip_weekends_holidays_and_inset_days(workspace_config: Config) -> None:
    calendar = workspace_config.calendar
    school_days = DigestSettings(enabled=True)
    every_day = DigestSettings(enabled=True, also_non_school_days=True)
    assert is_digest_day(calendar, school_days, date(2026, 12, 7))  # Monday in term
    assert not is_digest_day(calendar, school_days, date(2026, 12, 12))  # Saturday
    assert not is_digest_day(calendar, school_days, date(2026, 12, 28))  # bank holiday
    assert not is_digest_day(calendar, school_days, date(2027, 1, 4))  # INSET day
    assert not is_digest_day(calendar, school_days, date(2026, 10, 27))  # half term
    assert is_digest_day(calendar, every_day, date(2026, 12, 12))
    # Monday's digest covers the weekend; the first of the spring term the whole holiday.
    assert previous_digest_day(calendar, school_days, date(2026, 12, 7)) == date(2026, 12, 4)
    assert previous_digest_day(calendar, school_days, date(2027, 1, 5)) == date(2026, 12, 18)
    assert previous_digest_day(calendar, every_day, date(2026, 12, 7)) == date(2026, 12, 6)
    # 07:30 London is 07:30 UTC in winter and 06:30 UTC in summer.
    assert slot(calendar, school_days, date(2026, 12, 7)) == at(7, 7, 30)
    summer = slot(calendar, school_days, date(2027, 6, 7))
    assert (summer.hour, summer.minute) == (6, 30)
    # "The next 2 school days" from a Friday are Friday and Monday.
    assert clock_horizon(calendar, date(2026, 12, 4)) == at(8, 0)


@pytest.fixture
def workspace_config(service: CaseService) -> Config:
    return config_of(service)


@pytest.mark.parametrize(
    "section,error",
    [
        ('[digest]\nrecipients = ["headteacher"]\n', "neither a role nor an email"),
        ('[digest]\ntime = "7.30"\n', "digest.time"),
        ('[digest]\nchannel = "teams"\n', "is not a configured channel"),
        ('[digest]\nalso_non_school_days = "yes"\n', "must be true or false"),
        ('[digest]\nsend_at = "07:30"\n', "unknown key"),
    ],
)
def test_a_bad_digest_section_is_one_clear_line(tmp_path: Path, section: str, error: str) -> None:
    from sgalert.config import render_template

    text = render_template("Test School")
    start = text.index("[digest]")
    end = text.index("# Mailboxes to watch")
    path = tmp_path / "sgalert.toml"
    path.write_text(text[:start] + section + text[end:], encoding="utf-8")
    with pytest.raises(ConfigError, match=error):
        load_config(path)


def test_the_template_sends_the_digest_to_the_head_at_half_past_seven(
    workspace_config: Config,
) -> None:
    assert workspace_config.digest == DigestSettings(
        enabled=True, at=time(7, 30), recipients=("head",), also_non_school_days=False
    )


async def test_recipients_are_roles_and_addresses_each_once(team: Team) -> None:
    settings = DigestSettings(
        enabled=True, recipients=("head", "head@example.org", "chair", "governor@example.org")
    )
    async with team.service.store.read() as db:
        found = await on_connection(db, lambda conn: digest_recipients(conn, settings))
    assert [(r.address, r.role) for r in found] == [
        ("head@example.org", "head"),
        ("chair@example.org", "chair"),
        ("governor@example.org", None),
    ]


async def test_queueing_twice_for_one_date_queues_once(team: Team) -> None:
    service, _ = await seed(team)
    digest = await build(service)
    assert await queue(service, digest) == 1
    assert await queue(service, dataclasses.replace(digest, generated_at=at(7, 9))) == 0
    rows = await service.store.fetchall(
        "SELECT idempotency_key, recipient, payload FROM outbox WHERE idempotency_key LIKE"
        " 'digest-%'"
    )
    assert [(r[0].split(":")[0], r[1]) for r in rows] == [("digest-2026-12-07", "head@example.org")]
    for datum in PERSONAL:
        assert datum.lower() not in rows[0][2].lower()


async def test_a_digest_day_without_a_digest_is_covered_and_named_by_the_next(team: Team) -> None:
    service, _ = await seed(team)
    friday = await build(service, date(2026, 12, 4))
    await queue(service, friday)
    # No digest on Monday (the engine was down all day): Tuesday's reaches back to Friday's.
    tuesday = await build(service, date(2026, 12, 8))
    assert (tuesday.since, tuesday.until) == (at(4, 7, 30), at(8, 7, 30))
    assert tuesday.missed_days == (MONDAY,)
    lines = render_text(tuesday, Viewer("head"), width=None).splitlines()
    assert (
        "No digest went out on Mon 7 Dec: this one covers everything since the last one sent."
        in lines
    )
    assert "Covering Fri 4 Dec 07:30 to Tue 8 Dec 07:30 (Europe/London)." in lines
    # C1 E1 E2 L1 LATER (and H1, counted apart) arrived since Friday's slot.
    assert "5 new cases in this period." in lines
