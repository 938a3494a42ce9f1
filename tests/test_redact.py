"""A whistleblower's own name and address struck out of what an investigator reads."""

from __future__ import annotations

import json
import unicodedata
from zoneinfo import ZoneInfo

import pytest

from sgalert.intake.prepare import SourceRules, prepare
from sgalert.intake.redact import MARK, ReporterRedactor
from sgalert.intake.sender import Sender
from sgalert.model import Flag, Source
from sgalert.ports import Inbound

from .corpus import AUTHSERV, container, envelope, leaf, message, plain_message

WHISTLE = SourceRules("whistle", Source.WHISTLE, AUTHSERV)


def sender(display_name: str, address: str | None = "jane.smith@example.org") -> Sender:
    return Sender(display_name, address, address.partition("@")[2] if address else None)


@pytest.mark.parametrize(
    ("display_name", "written"),
    [
        ("Jane Smith", "Regards, JANE  SMITH"),
        ("Smith, Jane (Example Primary)", "I am Jane Smith, a TA."),
        ("Jane Smith", "as Smith, Jane wrote"),
        ("Jane A. Smith", "signed Jane A. Smith"),
        ("Jane A. Smith", "signed Jane Smith"),
        ("Dr Jane Smith", "from Jane Smith"),
        ("Siobhan O'Brien", "Siobhan O\u2019Brien"),
        ("Mary-Jane Smith", "Mary Jane Smith"),
        ("José Núñez", unicodedata.normalize("NFD", "José Núñez")),
        ("Jane Smith", "Jane_Smith_statement.pdf"),
        ("Jane Smith", "write to jane.smith@example.org"),
        ("Office", "my address jane.smith is on file"),
    ],
)
def test_the_reporters_name_is_struck_out_however_it_is_written(
    display_name: str, written: str
) -> None:
    redactor = ReporterRedactor(sender(display_name))
    shown = redactor(written)
    assert MARK in shown, shown
    assert redactor.hits >= 1
    for word in ("jane", "smith", "siobhan", "brien", "mary", "josé", "núñez"):
        assert word not in unicodedata.normalize("NFC", shown).casefold(), shown


@pytest.mark.parametrize(
    ("display_name", "address", "text"),
    [
        ("Deputy Head", "deputy@example.org", "I am worried about the deputy head."),
        ("Headteacher Office", "office@example.org", "The headteacher office was locked."),
        ("Smith", "js@example.org", "Smith gave a pupil a lift home."),
        ("Pat", "concerns@example.org", "Pat gave a pupil a lift home."),
    ],
)
def test_names_that_could_be_anyone_are_left_alone(
    display_name: str, address: str, text: str
) -> None:
    redactor = ReporterRedactor(sender(display_name, address))
    assert redactor(text) == text
    assert redactor.hits == 0


def test_a_display_name_longer_than_any_name_is_not_matched_at_all() -> None:
    """Seven thousand words of display name would make a pattern as costly as it is long, run
    over every body: a "name" of more than a few words is not one, and is not looked for."""
    redactor = ReporterRedactor(sender("Ada " * 7000 + "Smith", None))
    body = "Ada " * 10 + "Smith"
    assert redactor(body) == body
    assert redactor.hits == 0


def run(raw: bytes) -> tuple[dict[str, object], dict[str, object], frozenset[str]]:
    prepared = prepare(Inbound(raw), WHISTLE, zone=ZoneInfo("Europe/London"), head_names=())
    content, identity = prepared.case.content, prepared.case.identity
    return json.loads(content["fields"]), json.loads(identity["reporter"]), prepared.case.flags


def test_facts_are_read_from_the_original_and_struck_out_only_where_shown() -> None:
    raw = plain_message(
        "Concern from Jane Smith",
        "Staff member: Mr Pat Example\nPreferred contact: phone only, not Jane Smith's work"
        " email (jane.smith@example.org)\n\nJane Smith\n",
        sender="Jane Smith <jane.smith@example.org>",
        auth=(),
    )
    facts, reporter, _ = run(raw)
    # The reporter's own record keeps how they asked to be contacted, as they wrote it.
    assert reporter["preferred_contact"] == (
        "phone only, not Jane Smith's work email (jane.smith@example.org)"
    )
    assert facts["summary"] == f"Concern from {MARK}"
    assert facts["subject_of_allegation"] == "Mr Pat Example"


def test_a_reporter_whose_name_has_a_role_word_does_not_hide_the_head() -> None:
    raw = plain_message(
        "Concern about the headteacher",
        "The headteacher has been shouting at pupils.\n",
        sender="Headteacher Office <office@example.org>",
        auth=(),
    )
    _, _, flags = run(raw)
    assert Flag.ABOUT_HEAD in flags


def test_an_archive_named_after_the_reporter_is_not_named_in_the_triage_notes() -> None:
    raw = message(
        envelope("Concern", sender="Jane Smith <jane.smith@example.org>", auth=()),
        container(
            "mixed",
            [
                leaf("text/plain", "Please see the attached.\r\n"),
                leaf(
                    "application/zip",
                    b"PK\x03\x04not really a zip",
                    encoding="base64",
                    headers=[
                        ("Content-Disposition", 'attachment; filename="Jane Smith statement.zip"')
                    ],
                ),
            ],
            "z1",
        ),
    )
    prepared = prepare(Inbound(raw), WHISTLE, zone=ZoneInfo("Europe/London"))
    shown = b"".join(prepared.case.content.values()).decode("utf-8", "replace").casefold()
    assert "jane" not in shown and "smith" not in shown
    assert "statement.zip" in shown
