"""A page offers "reply to acknowledge" only when a replies mailbox is watched (issue 15, item 7).

Without one, a reply goes unread: the page must say only what works (the terminal), carry no
acknowledgement code in its subject, and leave no unusable code in the store. The plan comes from
the configuration, as ``serve`` builds it.
"""

from __future__ import annotations

from pathlib import Path

from sgalert.config import load_config
from sgalert.desk.service import make_plan
from sgalert.engine.serve import Engine
from sgalert.ports import Notification

from .conftest import Team, encompass_case
from .engine_helpers import RecordingNotifier, VirtualClock

REPLIES_SOURCE = """
[[sources]]
name = "replies"
type = "replies"
kind = "maildir"
path = "inbox/replies"
"""


async def first_page(team: Team, config_path: Path) -> Notification:
    """The DSL's first page about a new case, with the plan ``serve`` would make."""
    config = load_config(config_path)
    team.service.config = config
    team.service.plan = make_plan(config)
    clock = VirtualClock()
    team.service._clock = clock
    email = RecordingNotifier("email")
    engine = Engine(
        team.service, config_path.parent, notifiers={"email": email}, clock=clock, watch=False
    )
    await team.service.create_cases([encompass_case()])
    await engine.tick_timers()
    await engine.sender.send_due()
    pages = [n for n, r in email.sent if r.address == "dsl@example.org"]
    assert pages, email.sent
    return pages[0]


async def test_without_a_replies_mailbox_the_page_offers_no_reply(team: Team) -> None:
    config_path = team.service.store.path.parent / "sgalert.toml"
    page = await first_page(team, config_path)
    assert "reply to this email" not in page.body()
    assert "sgalert ack " in page.body()  # the way that works is still there
    assert page.ack_token is None and "[ACK-" not in page.subject()
    assert await team.service.store.fetchall("SELECT * FROM ack_tokens") == []


async def test_with_a_replies_mailbox_the_page_offers_a_reply(team: Team) -> None:
    config_path = team.service.store.path.parent / "sgalert.toml"
    with config_path.open("a", encoding="utf-8") as config:
        config.write(REPLIES_SOURCE)
    page = await first_page(team, config_path)
    assert page.ack_token is not None
    assert f"  - or reply to this email keeping {page.ack_token} in the subject" in page.lines()
    assert page.subject().endswith(f"[{page.ack_token}]")
    assert len(await team.service.store.fetchall("SELECT * FROM ack_tokens")) >= 1
