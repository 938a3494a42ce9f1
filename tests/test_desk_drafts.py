"""Drafts across the idle lock, the core's half: a dialog's fields sealed to the public key of
the person who typed them (no unlock needed), opened by that person's key and no one else's."""

from __future__ import annotations

from sgalert.desk.service import CaseService

from .conftest import Team

DSL, DEPUTY = "dsl@example.org", "deputy@example.org"


async def test_a_draft_opens_for_its_writer_only(team: Team) -> None:
    writer = team[DSL]
    values = {"note": 'Ada said: "it was loud" (invented)', "urgent": True, "count": 2}
    sealed = CaseService.seal_draft(writer.person, values, "note")
    assert b"Ada" not in sealed and b"loud" not in sealed
    assert CaseService.open_draft(writer, sealed) == (values, "note")
    assert CaseService.open_draft(team[DEPUTY], sealed) is None  # someone else's key: nothing
