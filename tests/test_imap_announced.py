"""How the IMAP watcher reads the server's EXISTS replies to tell whether a drain must go round
again. Dovecot never repeats an unchanged count, so servers that do are played by a stand-in
for imaplib's ``untagged_responses`` (the only part of the client this reads)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from integrations.imap import _Announced


def client_told(**untagged: list[bytes]) -> Any:
    return SimpleNamespace(_imap=SimpleNamespace(untagged_responses=dict(untagged)))


def test_a_higher_count_is_new_mail_and_is_taken_only_once() -> None:
    announced = _Announced(exists=3)
    client = client_told(EXISTS=[b"4", b"5"], RECENT=[b"1", b"2"])
    assert announced.grew(client) is True
    assert announced.exists == 5
    assert client._imap.untagged_responses == {}  # read once; nothing piles up
    assert announced.grew(client) is False


def test_a_server_that_repeats_an_unchanged_count_does_not_keep_the_drain_going() -> None:
    announced = _Announced(exists=5)
    assert announced.grew(client_told(EXISTS=[b"5"])) is False
    assert announced.grew(client_told()) is False


def test_after_expunges_any_count_means_one_more_look() -> None:
    """Moving two messages away as two arrive leaves the count where it was."""
    announced = _Announced(exists=2)
    assert announced.grew(client_told(EXPUNGE=[b"1", b"1"], EXISTS=[b"2"])) is True
    assert announced.grew(client_told(EXISTS=[b"2"])) is False  # the next round: settled
    assert announced.grew(client_told(EXPUNGE=[b"1"])) is False  # a shrink alone is no mail
