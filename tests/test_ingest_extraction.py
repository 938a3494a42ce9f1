"""What ingest pulls out of real-looking notices, per source, and who may then read it.

Operation Encompass notices differ by force and council: label wording, plain text or HTML
tables, forwarded copies, notices attached to another message, portal wrappers and PDF-only
notices. Lesson-termination reports and whistleblowing allegations have their own facts and
their own readers. Every notice here is invented.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sgalert.desk.service import CaseService
from sgalert.errors import NotEntitled
from sgalert.intake.ingest import Ingestor
from sgalert.intake.prepare import SourceRules, prepare
from sgalert.model import Flag, Source
from sgalert.ports import Inbound
from sgalert.records.cases import FIELD_RAW, FIELD_REPORTER, open_fields, unwrap_data_keys
from sgalert.records.keyring import Identity

from .conftest import Team
from .corpus import (
    AUTHSERV,
    POLICE,
    container,
    envelope,
    html_table,
    leaf,
    message,
    plain_message,
)

MESSAGES = Path(__file__).parent / "messages"
LONDON = ZoneInfo("Europe/London")
ENCOMPASS = SourceRules("encompass", Source.ENCOMPASS, AUTHSERV, (POLICE,))
LESSON = SourceRules("lesson", Source.LESSON, AUTHSERV)
WHISTLE = SourceRules("whistle", Source.WHISTLE, AUTHSERV)
TUTOR = "Sam Tutor <sam.tutor@example.org>"


@dataclasses.dataclass
class Outcome:
    facts: dict[str, str]
    flags: frozenset[str]
    notes: dict[str, list[str]]
    body: str
    subject: str


def run(raw: bytes, rules: SourceRules = ENCOMPASS, head_names: tuple[str, ...] = ()) -> Outcome:
    prepared = prepare(Inbound(raw), rules, zone=LONDON, head_names=head_names)
    content = prepared.case.content
    return Outcome(
        facts=json.loads(content["fields"]),
        flags=prepared.case.flags,
        notes=json.loads(content["ingest_notes"]),
        body=content["body_text"].decode(),
        subject=content["subject"].decode(),
    )


def fixture(name: str) -> bytes:
    return (MESSAGES / name).read_bytes()


def notice(body: str, subject: str = "Operation Encompass notification") -> Outcome:
    return run(plain_message(subject, body))


async def sealed_fields(service: CaseService, identity: Identity, case_id: str) -> dict[str, bytes]:
    """Every sealed field this person's keys open, read straight from the store."""
    async with service.store.read() as db:
        keys = await unwrap_data_keys(db, identity, [case_id])
        return (await open_fields(db, keys, [case_id]))[case_id]


def ingestor(team: Team, **config_changes: object) -> Ingestor:
    config = team.service.config
    assert config is not None
    return Ingestor(team.service.new_cases, dataclasses.replace(config, **config_changes))  # type: ignore[arg-type]


# ----- Operation Encompass: labels --------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Child's Name: Ada Invented", "Ada Invented"),
        ("Child\u2019s name - Ada Invented", "Ada Invented"),
        ("CHILD'S NAME:\tAda Invented", "Ada Invented"),
        ("Name of child: Ada Invented", "Ada Invented"),
        ("Name of Child/Young Person:\nAda Invented", "Ada Invented"),
        ("Name of child\n\nAda Invented", "Ada Invented"),
        ("* Child's full name: Ada Invented", "Ada Invented"),
        ("| Child's Name | Ada Invented |", "Ada Invented"),
        ("Surname: INVENTED\nForename: Ada", "Ada INVENTED"),
        ("Forenames: Ada Mae\nFamily name: Invented", "Ada Mae Invented"),
        ("Surname: INVENTED\nForename(s): Ada Mae", "Ada Mae INVENTED"),
        ("Surname\nINVENTED\nForename(s)\nAda", "Ada INVENTED"),
        ("First name(s): Ada\nLast name: Invented", "Ada Invented"),
        ("Given names: Ada Mae\nSurname: Invented", "Ada Mae Invented"),
        ("Child's first name: Ada\nChild's surname: Invented", "Ada Invented"),
        ("Forename: Ada\nMiddle name(s): Mae\nSurname: Invented", "Ada Mae Invented"),
    ],
)
def test_child_name_label_variants(line: str, expected: str) -> None:
    result = notice(f"OPERATION ENCOMPASS\n\n{line}\nDOB: 14/03/2017\n")
    assert result.facts["child_name"] == expected
    assert Flag.NEEDS_TRIAGE not in result.flags


@pytest.mark.parametrize(
    "body",
    [
        "Surname: INVENTED    Forename(s): Ada Mae\nDOB: 14/03/2017",
        "Forename(s) | Ada Mae | Surname | INVENTED\nD.O.B. | 14/03/2017 | School | Example",
        "<table><tr><td>Forename(s)</td><td>Ada Mae</td><td>Surname</td><td>INVENTED</td></tr>"
        "<tr><td>DOB</td><td>14/03/2017</td><td>School</td><td>Example</td></tr></table>",
    ],
    ids=["colons", "four-column-form", "four-column-html"],
)
def test_labels_and_values_side_by_side_in_one_row(body: str) -> None:
    kind = "text/html" if body.startswith("<") else "text/plain"
    result = run(message(envelope("Encompass"), leaf(kind, body)))
    assert result.facts["child_name"] == "Ada Mae INVENTED"
    assert result.facts["child_dob"] == "2017-03-14"


@pytest.mark.parametrize(
    "table",
    [
        "Surname | Forename(s) | DOB\nINVENTED | Ada Mae | 14/03/2017",
        "| Forename(s) | Surname | DOB |\n| Ada Mae | INVENTED | 14/03/2017 |",
        "Surname\tForename(s)\tDOB\nINVENTED\tAda Mae\t14/03/2017",
        "Last name    First name(s)    Date of birth\nINVENTED     Ada Mae          14/03/2017",
        "Surname | Forename(s) | Gender | DOB\n\nINVENTED | Ada Mae | F | 14/03/2017",
        "Forename | Middle name | Surname | DOB\nAda | Mae | INVENTED | 14/03/2017",
    ],
    ids=["pipes", "reversed", "tabs", "spaces", "unknown-column", "middle-name"],
)
def test_child_name_split_over_columns_in_plain_text(table: str) -> None:
    result = notice(f"OPERATION ENCOMPASS\n\n{table}\nOccurrence number: 44/100009/26\n")
    assert result.facts["child_name"] == "Ada Mae INVENTED"
    assert result.facts["child_dob"] == "2017-03-14"
    assert result.facts["police_reference"] == "44/100009/26"
    assert Flag.NEEDS_TRIAGE not in result.flags


@pytest.mark.parametrize(
    ("header", "values"),
    [
        ("<th>Surname</th><th>Forename(s)</th>", "<td>INVENTED</td><td>Ada Mae</td>"),
        ("<th>Forename(s)</th><th>Surname</th>", "<td>Ada Mae</td><td>INVENTED</td>"),
        ("<td><b>Surname</b></td><td><b>Forenames</b></td>", "<td>INVENTED</td><td>Ada Mae</td>"),
        (
            "<th>Forename(s)</th><th>Surname</th><th>D.O.B.</th>",
            "<td>Ada Mae</td><td>INVENTED</td><td>14/03/2017</td>",
        ),
    ],
    ids=["th-two-columns", "th-reversed", "td-bold-header", "th-three-columns"],
)
def test_child_name_split_over_columns_in_an_html_table(header: str, values: str) -> None:
    html = (
        f"<p>Operation Encompass</p><table><tr>{header}</tr><tr>{values}</tr></table>"
        "<p>DOB: 14/03/2017</p>"
    )
    result = run(message(envelope("Encompass"), leaf("text/html", html)))
    assert result.facts["child_name"] == "Ada Mae INVENTED"
    assert result.facts["child_dob"] == "2017-03-14"
    assert Flag.NEEDS_TRIAGE not in result.flags


@pytest.mark.parametrize(
    ("name", "facts"),
    [
        ("Ada Invented (age 13)", {"age_stated": "13"}),
        ("Ada Invented (aged 9)", {"age_stated": "9"}),
        ("Ada Invented (Year 4)", {"year_group": "Year 4"}),
        ("Ada Invented (Y4)", {"year_group": "Year 4"}),
        ("Ada Invented (Yr 4)", {"year_group": "Year 4"}),
        ("Ada Invented - Year 4", {"year_group": "Year 4"}),
        ("Ada Invented \u2013 Year 4", {"year_group": "Year 4"}),
        ("Ada Invented, aged 9", {"age_stated": "9"}),
        ("Ada Invented (Reception)", {"year_group": "Reception"}),
        ("Ada Invented (Year 4, aged 9)", {"year_group": "Year 4", "age_stated": "9"}),
        ("Ada Invented (Y4) (age 9)", {"year_group": "Year 4", "age_stated": "9"}),
    ],
)
def test_an_annotation_after_the_name_is_a_separate_fact(name: str, facts: dict[str, str]) -> None:
    result = notice(f"Child's Name: {name}\nDOB: 14/03/2017\n")
    assert result.facts["child_name"] == "Ada Invented"
    assert {k: result.facts[k] for k in facts} == facts
    assert "year_group" in facts or "year_group" not in result.facts


def test_an_annotation_on_a_split_name_is_stripped_too() -> None:
    result = notice("Surname: INVENTED\nForename(s): Ada (Year 4)\nDOB: 14/03/2017\n")
    assert result.facts["child_name"] == "Ada INVENTED"
    assert result.facts["year_group"] == "Year 4"


@pytest.mark.parametrize(
    "name",
    [
        "Ada O'Brien-Smith",  # a hyphenated surname is not an annotation
        "Ada Invented (known as Addie)",  # not a recognised annotation: kept as written
        "Ada Year",
    ],
)
def test_what_is_not_an_annotation_stays_in_the_name(name: str) -> None:
    result = notice(f"Child's Name: {name}\nDOB: 14/03/2017\n")
    assert result.facts["child_name"] == name
    assert "year_group" not in result.facts and "age_stated" not in result.facts


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "encompass_name_rows_plain.eml",
            {
                "child_name": "Ada Mae INVENTED",
                "child_dob": "2017-03-14",
                "school": "Example First School",
                "incident_at": "2026-11-22T21:40:00+00:00",
                "police_reference": "44/100001/26",
            },
        ),
        (
            "encompass_name_rows_html.eml",
            {
                "child_name": "Ada Mae INVENTED",
                "child_dob": "2017-03-14",
                "police_reference": "44/100002/26",
            },
        ),
        (
            "encompass_name_columns_plain.eml",
            {
                "child_name": "Ada Mae INVENTED",
                "child_dob": "2017-03-14",
                "incident_at": "2026-11-22T21:40:00+00:00",
                "police_reference": "44/100003/26",
            },
        ),
        (
            "encompass_name_columns_html.eml",
            {
                "child_name": "Ada Mae INVENTED",
                "child_dob": "2017-03-14",
                "school": "Example First School",
                "police_reference": "44/100004/26",
            },
        ),
        (
            "encompass_name_annotated_plain.eml",
            {
                "child_name": "Ada Invented",
                "year_group": "Year 4",
                "child_dob": "2017-03-14",
                "school": "Example First School",
                "police_reference": "44/100005/26",
            },
        ),
        (
            "encompass_name_annotated_html.eml",
            {
                "child_name": "Ada Invented",
                "age_stated": "9",
                "child_dob": "2017-03-14",
                "police_reference": "44/100006/26",
            },
        ),
        (
            "encompass_attribute_gt.eml",
            {
                "child_name": "Ada Invented",
                "child_dob": "2017-03-14",
                "school": "Example First School",
                "police_reference": "44/100007/26",
            },
        ),
    ],
)
def test_notices_from_other_forces_fixture_every_fact(name: str, expected: dict[str, str]) -> None:
    result = run(fixture(name))
    assert result.facts == expected
    assert result.flags == frozenset()
    assert ">" not in result.body.replace("> school", "")  # no attribute leaked into the text


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("DOB: 14/03/2017", "2017-03-14"),
        ("D.O.B.: 02-Sep-2015", "2015-09-02"),
        ("D.O.B 30.06.2019", "2019-06-30"),
        ("Date of Birth: 2 September 2015", "2015-09-02"),
        ("Date of birth - 2nd September 2015", "2015-09-02"),
        ("Child's DOB: 14-03-2017", "2017-03-14"),
        ("DOB: 2017-03-14", "2017-03-14"),
        # Impossible as a day-first date: kept as written, never turned into 2017-02-31 or
        # read month first.
        ("DOB: 31/02/2017", "31/02/2017"),
    ],
)
def test_date_of_birth_label_and_format_variants(line: str, expected: str) -> None:
    result = notice(f"Child's Name: Ada Invented\n{line}\n")
    assert result.facts["child_dob"] == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Occurrence number: 44/123456/26", "44/123456/26"),
        ("Occurrence No. 44/123456/26", "44/123456/26"),
        ("Incident ref: IR/2026/000417", "IR/2026/000417"),
        ("Incident Reference - IR/2026/000417", "IR/2026/000417"),
        ("Crime reference: 41/22222/26", "41/22222/26"),
        ("Crime Number:  41/22222/26", "41/22222/26"),
        ("Police ref: 44/123456/26", "44/123456/26"),
    ],
)
def test_police_reference_label_variants(line: str, expected: str) -> None:
    result = notice(f"Child's Name: Ada Invented\n{line}\n")
    assert result.facts["police_reference"] == expected


def test_prose_starting_with_a_label_word_is_not_a_fact() -> None:
    result = notice(
        "Child's Name: Ada Invented\n"
        "Reference is made to our call of 12 May, child present at the time.\n"
        "School will be informed by the MASH.\n"
    )
    assert set(result.facts) == {"child_name"}


def test_police_reference_from_the_subject_in_capitals_but_never_a_date() -> None:
    body = "Child's Name: Ada Invented\n"
    shouted = notice(body, subject="OPERATION ENCOMPASS - OCCURRENCE 44/777777/26")
    assert shouted.facts["police_reference"] == "44/777777/26"
    dated = notice(body, subject="Encompass incident 22/11/2026 - occurrence 44/777778/26")
    assert dated.facts["police_reference"] == "44/777778/26"
    only_date = notice(body, subject="Encompass incident 22/11/2026")
    assert "police_reference" not in only_date.facts


# ----- Operation Encompass: incident date-times in Europe/London ----------------------------------


@pytest.mark.parametrize(
    ("lines", "expected", "utc_offset_hours"),
    [
        # GMT: late November.
        ("Date/Time of Incident: 22/11/2026 21:40", "2026-11-22T21:40:00+00:00", 0),
        # BST: midsummer, 24-hour time written as police logs do.
        ("Date and time of incident: 30.06.2019 2140 hrs", "2019-06-30T21:40:00+01:00", 1),
        ("Incident date/time: 21/06/2026 2140hrs", "2026-06-21T21:40:00+01:00", 1),
        # GMT: two weeks before the clocks change in March 2026; 12-hour clock with a dot.
        ("Date of incident: 14/03/2026 9.40pm", "2026-03-14T21:40:00+00:00", 0),
        # BST: the day after the clocks went forward (29 March 2026).
        ("Date of incident: 30/03/2026 at 9.40 pm", "2026-03-30T21:40:00+01:00", 1),
        ("Date of occurrence: 2 September 2015 21:40", "2015-09-02T21:40:00+01:00", 1),
        ("Incident date: 02-Sep-2015 9:40pm", "2015-09-02T21:40:00+01:00", 1),
        # The date and the time on separate rows are joined.
        (
            "Date of incident: 21/06/2026\nTime of incident: 2140 hrs",
            "2026-06-21T21:40:00+01:00",
            1,
        ),
        ("Time of incident: 9.40pm\nDate of incident: 22/11/2026", "2026-11-22T21:40:00+00:00", 0),
        ("Date of incident 21/06/2026\nTime of incident 2140 hrs", "2026-06-21T21:40:00+01:00", 1),
        # A time ending a sentence is still in the evening, not 09:40.
        ("Date of incident: 22/11/2026, at 9.40pm.", "2026-11-22T21:40:00+00:00", 0),
        ("Date of incident: 22/11/2026 at 9.40 p.m. (approx)", "2026-11-22T21:40:00+00:00", 0),
        ("Date/time of incident: 22/11/2026 at 21:40.", "2026-11-22T21:40:00+00:00", 0),
    ],
)
def test_incident_time_is_local_iso_with_the_right_offset(
    lines: str, expected: str, utc_offset_hours: int
) -> None:
    result = notice(f"Child's Name: Ada Invented\n{lines}\n")
    assert result.facts["incident_at"] == expected
    moment = datetime.fromisoformat(result.facts["incident_at"])
    assert moment.utcoffset() == timedelta(hours=utc_offset_hours)


def test_incident_date_without_a_time_is_not_invented_as_midnight() -> None:
    result = notice("Child's Name: Ada Invented\nDate of incident: 21/06/2026\n")
    assert result.facts["incident_at"] == "2026-06-21"


def test_child_present_location_voice_and_welfare_check_as_stated() -> None:
    result = notice(
        "Child's Name: Ada Invented\n"
        "Was the child present: No - asleep upstairs, did not witness\n"
        "Location of incident: Flat 2, 1 Example Road\n"
        'Voice of the child: "I went to my room and hid."\n'
        "Welfare check made: Yes, officers spoke with the child at 22:15\n"
    )
    assert result.facts["child_present"] == "No - asleep upstairs, did not witness"
    assert result.facts["incident_location"] == "Flat 2, 1 Example Road"
    assert result.facts["voice_of_child"] == '"I went to my room and hid."'
    assert result.facts["welfare_check"] == "Yes, officers spoke with the child at 22:15"


def test_plain_notice_fixture_every_fact() -> None:
    result = run(fixture("encompass_plain.eml"))
    assert result.flags == frozenset()
    assert result.facts == {
        "child_name": "Ada Invented",
        "child_dob": "2017-03-14",
        "school": "Example First School",
        "incident_at": "2026-11-22T21:40:00+00:00",
        "police_reference": "44/123456/26",
        "child_present": "Yes - in the house at the time",
        "incident_location": "Home address",
        "voice_of_child": '"I went to my room and hid."',
        "welfare_check": "Yes, officers spoke with the child",
    }


# ----- Operation Encompass: HTML tables --------------------------------------------------------

ROWS = [
    ("Name of child", "Dee Invented"),
    ("D.O.B.", "30.06.2019"),
    ("Occurrence number", "44/654321/26"),
    ("Date/time of incident", "21/06/2026 21:40"),
    ("Child present", "Yes, in the room"),
    ("Incident location", "Home address"),
    ("Voice of the child", "&quot;Mummy was crying&quot; &amp; hid"),
    ("Welfare check", "Completed by PC 0000"),
]
ROW_FACTS = {
    "child_name": "Dee Invented",
    "child_dob": "2019-06-30",
    "police_reference": "44/654321/26",
    "incident_at": "2026-06-21T21:40:00+01:00",
    "child_present": "Yes, in the room",
    "incident_location": "Home address",
    "voice_of_child": '"Mummy was crying" & hid',
    "welfare_check": "Completed by PC 0000",
}


def test_multipart_alternative_fixture_with_plain_and_html() -> None:
    result = run(fixture("encompass_html_alternative.eml"))
    assert result.flags == frozenset()
    assert result.facts == {
        "child_name": "Dee Invented",
        "child_dob": "2019-06-30",
        "school": "Example Nursery School",
        "incident_at": "2026-06-21T21:40:00+01:00",
        "police_reference": "44/654321/26",
        "child_present": "Yes - in the same room when the incident took place",
        "incident_location": "Home address",
        "voice_of_child": '"Mummy was crying and I hid behind the sofa"',
        "welfare_check": "Completed by PC 0000 at 22:15, child asleep and unharmed",
    }
    # One rendering of the alternative, not both one after the other.
    assert result.body.count("Dee Invented") == 1


def test_html_only_notice_as_a_table() -> None:
    result = run(
        message(
            envelope("Operation Encompass"),
            leaf("text/html; charset=utf-8", html_table(ROWS), encoding="base64"),
        )
    )
    assert result.facts == ROW_FACTS
    assert "alert(" not in result.body and "td{border" not in result.body


def test_html_only_fixture_header_row_table_inside_a_layout_table() -> None:
    result = run(fixture("encompass_html_only.eml"))
    assert result.flags == frozenset()
    assert result.facts == {
        "child_name": "Cai INVENTED",
        "child_dob": "2015-09-02",
        "police_reference": "IR/2026/000417",
        "incident_at": "2026-03-14T21:40:00+00:00",
        "child_present": "Yes \u2013 witnessed the argument from the landing",
        "incident_location": "Flat 2, 1 Example Road",
    }
    # The layout cell's paragraphs stay separate lines, not one run-on line.
    assert "Dear Designated Safeguarding Lead,\n" in result.body
    assert "document.title" not in result.body


def test_html_with_an_unclosed_head_still_gives_the_notice() -> None:
    html = (
        "<html><head><meta charset='utf-8'><title>Notice</title><style>p{}</style>"
        "<p>Child's name: Ada Invented</p><p>DOB: 14/03/2017</p>"
    )
    result = run(message(envelope("Encompass"), leaf("text/html", html)))
    assert result.facts == {"child_name": "Ada Invented", "child_dob": "2017-03-14"}
    assert "Notice" not in result.body and "p{}" not in result.body


def test_alternative_whose_plain_part_is_a_stub_reads_the_html() -> None:
    raw = message(
        envelope("Operation Encompass"),
        container(
            "alternative",
            [
                leaf("text/plain; charset=utf-8", "Please view this message in HTML."),
                leaf("text/html; charset=utf-8", html_table(ROWS)),
            ],
            "alt-stub",
        ),
    )
    assert run(raw).facts == ROW_FACTS


def test_label_cells_with_colons_and_a_header_row() -> None:
    html = (
        "<table><tr><td>Name of child:</td><td>Dee Invented</td></tr></table>"
        "<table><tr><th>Surname</th><th>Forename</th><th>D.O.B.</th></tr>"
        "<tr><td>INVENTED</td><td>Dee</td><td>30/06/2019</td></tr></table>"
    )
    result = run(message(envelope("Encompass"), leaf("text/html", html)))
    assert result.facts["child_name"] == "Dee Invented"
    assert result.facts["child_dob"] == "2019-06-30"
    # A header row alone is never read as a label whose value is the other labels.
    header_only = run(
        message(envelope("Encompass"), leaf("text/html", html[html.index("</table>") + 8 :]))
    )
    assert header_only.facts["child_name"] == "Dee INVENTED"
    assert header_only.facts["child_dob"] == "2019-06-30"


# ----- Operation Encompass: forwarded and attached copies --------------------------------------


def test_forwarded_copy_with_quoted_lines() -> None:
    result = run(fixture("encompass_forwarded.eml"))
    assert result.subject.startswith("Fwd: OPERATION ENCOMPASS")
    assert result.facts == {
        "child_name": "Ada Invented",
        "child_dob": "2017-03-14",
        "incident_at": "2026-11-22T21:40:00+00:00",
        "police_reference": "44/123456/26",
        "child_present": "Yes - in the house at the time",
        "welfare_check": "Yes, officers spoke with the child",
        "forwarded": "yes",
    }
    # Forwarded by the school office: not from the police domain, so not a verified sender.
    assert Flag.UNVERIFIED_SENDER in result.flags
    assert any("allow-list" in p for p in result.notes["sender"])


def test_outlook_style_forward_is_recognised() -> None:
    body = (
        "See below.\n\n-----Original Message-----\nFrom: MASH <mash@police.example.org>\n"
        "Sent: 22 November 2026 22:05\nSubject: Encompass\n\n"
        "Child's Name: Ada Invented\nOccurrence Number: 44/123456/26\n"
    )
    result = notice(body, subject="FW: Encompass")
    assert result.facts["forwarded"] == "yes"
    assert result.facts["child_name"] == "Ada Invented"


def test_notice_attached_as_message_rfc822_with_an_html_body() -> None:
    result = run(fixture("encompass_attached.eml"))
    assert result.facts == {
        "child_name": "Eve Invented",
        "child_dob": "2015-09-02",
        "police_reference": "41/22222/26",
        "incident_at": "2026-11-22T21:40:00+00:00",
        "child_present": "No, staying with grandparents",
        "forwarded": "yes",
    }
    # The attached message says what it is: its own sender and subject lead its text.
    assert "Attached as it arrived." in result.body
    assert "Subject: OPERATION ENCOMPASS NOTIFICATION - Crime reference 41/22222/26" in result.body


def test_notice_attached_as_a_base64_message_is_decoded_and_read() -> None:
    """Some clients base64 encode a message forwarded as an attachment (RFC 2046 says not to):
    the notice inside is decoded and read like any attached message, not flagged malformed."""
    inner = plain_message(
        "OPERATION ENCOMPASS NOTIFICATION",
        "Child's Name: Fay Invented\nDOB: 30.06.2019\nOccurrence number: 44/555555/26\n",
    )
    wrapped = base64.encodebytes(inner).replace(b"\n", b"\r\n")
    attached = leaf("message/rfc822", wrapped, headers=[("Content-Transfer-Encoding", "base64")])
    forward = message(
        envelope("FW: Encompass", sender="Office <office@example.org>", auth=()),
        container("mixed", [leaf("text/plain", "Forwarding as received.\r\n"), attached], "m1"),
    )
    result = run(forward)
    assert result.facts["child_name"] == "Fay Invented"
    assert result.facts["child_dob"] == "2019-06-30"
    assert result.facts["police_reference"] == "44/555555/26"
    assert Flag.MALFORMED not in result.flags
    assert "Subject: OPERATION ENCOMPASS NOTIFICATION" in result.body


def test_an_attached_message_of_base64_garbage_is_flagged_for_a_person() -> None:
    attached = leaf(
        "message/rfc822",
        b"@@@not base64 at all@@@\r\n",
        headers=[("Content-Transfer-Encoding", "base64")],
    )
    forward = message(envelope("FW: Encompass"), container("mixed", [attached], "m2"))
    result = run(forward)
    assert Flag.MALFORMED in result.flags
    assert Flag.NEEDS_TRIAGE in result.flags


# ----- Operation Encompass: notices that need a person ----------------------------------------


def test_secure_portal_wrapper_needs_triage_saying_portal() -> None:
    result = run(fixture("encompass_portal.eml"))
    assert Flag.NEEDS_TRIAGE in result.flags
    assert result.facts == {}
    assert any("portal" in reason for reason in result.notes["triage"])


def test_attachment_only_notice_needs_triage_naming_the_attachment() -> None:
    result = run(fixture("encompass_pdf_only.eml"))
    # The reference is in the subject, but without the child the notice cannot be acted on.
    assert result.facts == {"police_reference": "44/777777/26"}
    assert Flag.NEEDS_TRIAGE in result.flags
    assert any("Encompass 44-777777-26.pdf" in reason for reason in result.notes["triage"])


def test_notice_with_no_facts_needs_triage() -> None:
    result = notice("Please call the MASH on 01632 960000 about a child at your school.")
    assert Flag.NEEDS_TRIAGE in result.flags
    assert Flag.FACTS_MISSING in result.flags
    assert result.notes["triage"] == [
        "no notification facts were found in the message; read it and record the facts"
    ]


def test_a_notice_naming_no_child_says_its_facts_are_missing_in_plaintext() -> None:
    """The reference and time were found, but not the child: the case's plaintext flags (what
    the page and the queue show before anyone unlocks it) say the facts were not extracted."""
    result = run(fixture("encompass_no_child_html.eml"))
    assert result.facts["police_reference"] == "44/100008/26"
    assert "child_name" not in result.facts
    assert {Flag.NEEDS_TRIAGE, Flag.FACTS_MISSING} <= result.flags
    assert result.notes["triage"]
    # A portal wrapper and an attachment-only notice are missing their facts too.
    for name in ("encompass_portal.eml", "encompass_pdf_only.eml"):
        assert Flag.FACTS_MISSING in run(fixture(name)).flags


def test_half_a_name_is_kept_but_needs_a_person() -> None:
    result = notice("Surname: INVENTED\nDOB: 14/03/2017\n")
    assert result.facts["child_name"] == "INVENTED"
    assert Flag.NEEDS_TRIAGE in result.flags
    assert Flag.FACTS_MISSING not in result.flags
    assert any("forename" in reason for reason in result.notes["triage"])


# ----- Operation Encompass: end to end -----------------------------------------------------------


async def test_encompass_case_opened_by_the_dsl_has_the_facts_and_the_raw_message(
    team: Team,
) -> None:
    raw = fixture("encompass_html_alternative.eml")
    (outcome,) = await ingestor(team).ingest([Inbound(raw)], ENCOMPASS)
    assert outcome.created and outcome.flags == ()
    view = await team.service.open_case(team["dsl@example.org"], outcome.ref)
    assert view.facts["child_name"] == "Dee Invented"
    assert view.facts["incident_at"] == "2026-06-21T21:40:00+01:00"
    assert view.sender == {"display_name": "Example Constabulary MASH", "address": f"mash@{POLICE}"}
    fields = await sealed_fields(team.service, team["dsl@example.org"], outcome.case_id)
    assert fields[FIELD_RAW] == raw
    with pytest.raises(NotEntitled):
        await team.service.open_case(team["staff@example.org"], outcome.ref)


# ----- Lesson termination ------------------------------------------------------------------------


def test_lesson_report_fixture() -> None:
    result = run(fixture("lesson_ended.eml"), LESSON)
    assert result.flags == frozenset()
    assert result.facts == {
        "teacher": "Sam Tutor",
        "pupil": "Eli Invented",
        "year_group": "Year 6",
        "lesson": "Violin, Grade 3 (online)",
        "ended_at": "2026-01-14T16:25:00+00:00",
        "reason": "chat message",
        "reason_detail": "Pupil typed an inappropriate message in the lesson chat",
        "responsible_adult_present": "No - parent was out of the room",
    }


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("Pupil sent an inappropriate message in the chat", "chat message"),
        ("Pupil typed personal contact details", "chat message"),
        ("Pupil was not appropriately dressed for the lesson", "dress"),
        ("Inappropriate clothing on camera", "dress"),
        ("Abusive language towards the teacher", "behaviour"),
        ("Rude gestures on camera", "behaviour"),
        ("An unknown adult appeared on camera and would not leave", "other"),
    ],
)
def test_lesson_reason_classified(reason: str, expected: str) -> None:
    body = (
        "Teacher: Sam Tutor\nStudent: Eli Invented\nInstrument: Cello\n"
        f"Lesson ended: 02/07/2026 17:05\nReason: {reason}\nAdult present: Yes - parent\n"
    )
    result = run(plain_message("Lesson ended", body, sender="Sam <sam.tutor@example.org>"), LESSON)
    assert result.facts["reason"] == expected
    assert result.facts["reason_detail"] == reason
    assert result.facts["ended_at"] == "2026-07-02T17:05:00+01:00"
    assert result.facts["responsible_adult_present"] == "Yes - parent"
    assert result.facts["pupil"] == "Eli Invented"
    assert result.facts["lesson"] == "Cello"


def test_lesson_reason_from_the_subject_and_a_report_naming_nobody() -> None:
    result = run(plain_message("Lesson ended: pupil's behaviour", "Please call me."), LESSON)
    assert result.facts["reason"] == "behaviour"
    assert Flag.NEEDS_TRIAGE in result.flags


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "lesson_running_text_plain.eml",
            {
                "pupil": "Ada Invented",
                "year_group": "Year 4",
                "lesson": "piano",
                "ended_at": "17:40",
                "reason": "chat message",
            },
        ),
        (
            "lesson_running_text_html.eml",
            {
                "pupil": "Bea Invented",
                "lesson": "cello",
                "ended_at": "16:10",
                "reason": "behaviour",
            },
        ),
    ],
)
def test_lesson_report_in_running_text(name: str, expected: dict[str, str]) -> None:
    result = run(fixture(name), LESSON)
    assert result.facts == expected
    assert Flag.NEEDS_TRIAGE not in result.flags


@pytest.mark.parametrize(
    ("sentence", "pupil", "lesson"),
    [
        ("Lesson ended with pupil Ada Invented, piano, at 17:40.", "Ada Invented", "piano"),
        ("I terminated the lesson with student ADA INVENTED at 17:40.", "ADA INVENTED", None),
        ("The lesson ended with pupil Ada Invented's camera off.", "Ada Invented", None),
        (
            "Session stopped early with pupil Ada O'Brien-Smith (violin).",
            "Ada O'Brien-Smith",
            "violin",
        ),
        (
            "The lesson was ended with pupil Ada Invented (Y4), Grade 3 flute, at 5.40pm",
            "Ada Invented",
            "Grade 3 flute",
        ),
    ],
)
def test_lesson_phrasing_gives_pupil_and_lesson(
    sentence: str, pupil: str, lesson: str | None
) -> None:
    result = run(plain_message("Lesson ended", f"Hello,\n{sentence}\nSam", sender=TUTOR), LESSON)
    assert result.facts["pupil"] == pupil
    assert result.facts.get("lesson") == lesson


@pytest.mark.parametrize(
    "sentence",
    [
        # Capitalised words that are not a pupil's name after the phrasing, or no phrasing.
        "Lesson ended with pupil absent, piano, at 17:40.",
        "Lesson ended with pupil Ada, piano, at 17:40.",
        "Please call Ada Invented's parent about the lesson.",
        "Pupil Ada Invented was doing well in the lesson.",
        "Lesson ended with Tuesday Example, piano, at 17:40.",
    ],
)
def test_lesson_running_text_never_takes_a_random_capitalised_word(sentence: str) -> None:
    result = run(plain_message("Lesson ended", f"{sentence}\nSam", sender=TUTOR), LESSON)
    assert "pupil" not in result.facts
    assert {Flag.NEEDS_TRIAGE, Flag.FACTS_MISSING} <= result.flags


def test_lesson_report_naming_no_pupil_says_its_facts_are_missing() -> None:
    result = run(fixture("lesson_no_pupil_plain.eml"), LESSON)
    assert result.facts["teacher"] == "Sam Tutor"
    assert "pupil" not in result.facts
    assert {Flag.NEEDS_TRIAGE, Flag.FACTS_MISSING} <= result.flags
    assert any("pupil" in reason for reason in result.notes["triage"])


# ----- Whistleblowing -------------------------------------------------------------------------


async def test_whistleblower_identity_sealed_apart_and_only_the_mo_sees_it(team: Team) -> None:
    raw = fixture("whistle_report.eml")
    (outcome,) = await ingestor(team).ingest([Inbound(raw)], WHISTLE)
    assert Flag.ABOUT_HEAD not in outcome.flags
    mo = team["mo@example.org"]
    view = await team.service.open_case(mo, outcome.ref)
    assert view.reporter == {
        "display_name": "Riley Reporter",
        "address": "riley.reporter@example.org",
        "preferred_contact": "personal mobile, evenings only",
    }
    assert view.facts["subject_of_allegation"] == "Mr Pat Example (Year 5 teacher)"
    # The reporter is not repeated in the allegation's own fields.
    assert view.sender is None and "preferred_contact" not in view.facts
    assert (await sealed_fields(team.service, mo, outcome.case_id))[FIELD_RAW] == raw

    # An investigator granted the allegation sees it, but not who made it, nor the raw message
    # that names them.
    await team.service.grant(mo, outcome.ref, "staff@example.org")
    investigator = team["staff@example.org"]
    granted = await team.service.open_case(investigator, outcome.ref)
    assert granted.facts["subject_of_allegation"] == "Mr Pat Example (Year 5 teacher)"
    assert granted.reporter is None
    fields = await sealed_fields(team.service, investigator, outcome.case_id)
    assert FIELD_RAW not in fields and FIELD_REPORTER not in fields
    assert b"riley" not in b"".join(fields.values()).lower()

    for email in ("dsl@example.org", "head@example.org", "chair@example.org"):
        with pytest.raises(NotEntitled):
            await team.service.open_case(team[email], outcome.ref)


async def test_a_reporter_who_signs_their_allegation_is_not_named_to_an_investigator(
    team: Team,
) -> None:
    """The reporter's name and address in the text (a signature, "Reporter, Riley") are
    replaced in what an investigator is granted; the monitoring officer still has the original
    under the identity key, and a note says the text was changed."""
    body = (
        "Staff member: Mr Pat Example (Year 5 teacher)\n\n"
        "I am worried about lifts home after orchestra. I am RILEY  REPORTER from the music\n"
        "team; my colleagues know me as Reporter, Riley.\n\n"
        "Thanks,\nRiley Reporter\nriley.reporter@example.org\n"
    )
    raw = plain_message(
        "Concern from Riley Reporter",
        body,
        sender="Riley Reporter <riley.reporter@example.org>",
        auth=(),
        message_id="<whistle-signed@example.org>",
    )
    (outcome,) = await ingestor(team).ingest([Inbound(raw)], WHISTLE)
    mo = team["mo@example.org"]
    await team.service.grant(mo, outcome.ref, "staff@example.org")
    investigator = team["staff@example.org"]
    granted = await team.service.open_case(investigator, outcome.ref)
    assert granted.body_text.count("[reporter]") == 4
    assert "Mr Pat Example" in granted.body_text and "orchestra" in granted.body_text
    assert granted.subject == "Concern from [reporter]"
    assert any("reporter" in note for note in granted.notes["identity"])
    fields = await sealed_fields(team.service, investigator, outcome.case_id)
    assert b"riley" not in b"".join(fields.values()).lower()
    assert (await sealed_fields(team.service, mo, outcome.case_id))[FIELD_RAW] == raw


async def test_a_whistleblowers_attachments_are_sealed_with_their_identity(team: Team) -> None:
    """A statement attached to an allegation may be signed: its bytes are sealed under the
    identity key and its listed name has the reporter struck out, so an investigator granted
    the allegation sees that there is an attachment but cannot open it."""
    statement = b"%PDF-1.7\n% statement signed by Riley Reporter\n"
    raw = message(
        envelope(
            "Confidential concern",
            sender="Riley Reporter <riley.reporter@example.org>",
            auth=(),
            message_id="<whistle-attached@example.org>",
        ),
        container(
            "mixed",
            [
                leaf("text/plain", "Staff member: Mr Pat Example\r\nPlease see my statement.\r\n"),
                leaf(
                    "application/pdf",
                    statement,
                    encoding="base64",
                    headers=[
                        (
                            "Content-Disposition",
                            'attachment; filename="Riley Reporter statement.pdf"',
                        )
                    ],
                ),
            ],
            "w1",
        ),
    )
    (outcome,) = await ingestor(team).ingest([Inbound(raw)], WHISTLE)
    mo = team["mo@example.org"]
    async with team.service.store.read() as db:
        keys = await unwrap_data_keys(db, mo, [outcome.case_id])
        by_mo = (await open_fields(db, keys, [outcome.case_id], skip_prefix=""))[outcome.case_id]
    assert by_mo["attachment/0"] == statement

    await team.service.grant(mo, outcome.ref, "staff@example.org")
    investigator = team["staff@example.org"]
    granted = await team.service.open_case(investigator, outcome.ref)
    assert [a.filename for a in granted.attachments] == ["[reporter] statement.pdf"]
    async with team.service.store.read() as db:
        keys = await unwrap_data_keys(db, investigator, [outcome.case_id])
        fields = (await open_fields(db, keys, [outcome.case_id], skip_prefix=""))[outcome.case_id]
    assert "attachment/0" not in fields
    assert b"riley" not in b"".join(fields.values()).lower()


def test_a_one_word_display_name_is_not_struck_out_of_the_allegation() -> None:
    raw = plain_message(
        "Concern about Pat",
        "Pat gave a pupil a lift home.\n",
        sender="Pat <office@example.org>",
        auth=(),
    )
    result = run(raw, WHISTLE)
    assert "Pat gave a pupil a lift home." in result.body
    assert "identity" not in result.notes


@pytest.mark.parametrize(
    ("text", "head_names"),
    [
        ("The headteacher shouted at a Year 2 child.", ()),
        ("I am worried about the Head Teacher's conduct at the trip.", ()),
        ("The head told staff not to record a concern.", ()),
        ("Our Principal asked me to delete an email.", ()),
        ("Jo Headley grabbed a child's arm in the corridor.", ("Jo Headley",)),
        ("Mrs  headley was seen alone with a pupil.", ("Mrs Headley",)),
    ],
)
def test_allegation_naming_the_head_is_flagged(text: str, head_names: tuple[str, ...]) -> None:
    raw = plain_message("Concern", text, sender="Riley Reporter <riley.reporter@example.org>")
    result = run(raw, WHISTLE, head_names)
    assert Flag.ABOUT_HEAD in result.flags
    assert any("headteacher" in reason for reason in result.notes["triage"])


@pytest.mark.parametrize(
    "text",
    [
        "Mr Example, the head of music, shouted at a child.",
        "The deputy headteacher left a child alone on the coach.",
        "The assistant head shared pupils' records on a personal phone.",
        "The principal reason I am writing is a teacher's conduct on the trip.",
        "A teacher grabbed a child's arm in the corridor.",
    ],
)
def test_allegation_not_about_the_head_is_not_flagged(text: str) -> None:
    raw = plain_message("Concern", text, sender="Riley Reporter <riley.reporter@example.org>")
    assert Flag.ABOUT_HEAD not in run(raw, WHISTLE, ("Jo Headley",)).flags


@pytest.mark.parametrize(
    ("text", "head_names"),
    [
        ("The headteacher has asked staff not to record concerns about one family.", ()),
        ("Jo Headley shouted at a Year 2 child and grabbed his arm.", ("Jo Headley",)),
    ],
)
async def test_allegation_about_the_head_goes_to_chair_and_mo_not_head(
    team: Team, text: str, head_names: tuple[str, ...]
) -> None:
    raw = plain_message(
        "Concern about leadership",
        f"{text}\nPreferred contact: letter to my home address\n",
        sender="Riley Reporter <riley.reporter@example.org>",
    )
    (outcome,) = await ingestor(team, head_names=head_names).ingest([Inbound(raw)], WHISTLE)
    assert Flag.ABOUT_HEAD in outcome.flags
    chair = await team.service.open_case(team["chair@example.org"], outcome.ref)
    assert chair.reporter is None  # the chair gets the allegation, not who made it
    assert text in chair.body_text
    mo = await team.service.open_case(team["mo@example.org"], outcome.ref)
    assert mo.reporter is not None
    assert mo.reporter["address"] == "riley.reporter@example.org"
    assert mo.reporter["preferred_contact"] == "letter to my home address"
    with pytest.raises(NotEntitled):
        await team.service.open_case(team["head@example.org"], outcome.ref)
    head_fields = await sealed_fields(team.service, team["head@example.org"], outcome.case_id)
    assert head_fields == {}
