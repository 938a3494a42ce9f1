"""Hostile mail: spoofed senders, terminal and markup injection, parser bombs, broken encodings.

Whatever arrives becomes a case: flagged for what is wrong with it, its original bytes sealed
exactly as evidence, and nothing a person will be shown carrying a control or bidi character
(those become visible escapes such as ``\\x1b``). No exception escapes ``prepare`` or ``ingest``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sgalert.config import ParseLimits
from sgalert.intake.htmltext import html_to_text
from sgalert.intake.ingest import Ingestor
from sgalert.intake.mime import parse_message
from sgalert.intake.prepare import SourceRules, prepare
from sgalert.intake.sender import EXCHANGE_ONLINE, check_sender, parse_from
from sgalert.model import Flag, Source
from sgalert.ports import Inbound
from sgalert.records.cases import FIELD_RAW, open_fields, unwrap_data_keys
from sgalert.workspace import ENV_WORKSPACE

from .conftest import Team
from .corpus import (
    AUTHSERV,
    FIFTY_MB,
    HOSTILE,
    POLICE,
    Hostile,
    auth_results,
    deep_multipart,
    envelope,
    huge_message,
    leaf,
    message,
    plain_message,
)

LONDON = ZoneInfo("Europe/London")
RULES = SourceRules("encompass", Source.ENCOMPASS, AUTHSERV, (POLICE,))
REPO = Path(__file__).resolve().parent.parent
# What must never reach a screen: C0 controls but newline and tab, DEL, C1, bidi controls.
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069]")
DISPLAY_FIELDS = ("subject", "body_text", "fields", "sender", "ingest_notes", "attachments")


def flags_of(raw: bytes, rules: SourceRules = RULES) -> frozenset[str]:
    return prepare(Inbound(raw), rules, zone=LONDON).case.flags


def sender_problems(raw: bytes, rules: SourceRules = RULES) -> list[str]:
    notes = prepare(Inbound(raw), rules, zone=LONDON).case.content["ingest_notes"]
    return list(json.loads(notes)["sender"])


def notice(
    sender: str | bytes = f"Operation Encompass <encompass@{POLICE}>", **kwargs: object
) -> bytes:
    return plain_message(
        "Operation Encompass notification",
        "Child's Name: Ada Invented\nOccurrence Number: 44/123456/26\n",
        sender=sender,
        **kwargs,  # type: ignore[arg-type]
    )


# ----- sender authenticity ------------------------------------------------------------------


def test_dmarc_pass_from_the_police_domain_is_verified() -> None:
    assert Flag.UNVERIFIED_SENDER not in flags_of(notice())


@pytest.mark.parametrize(
    "stamp",
    [
        auth_results(spf="fail", dkim="fail", dmarc="fail"),
        auth_results(spf="softfail", dkim="none", dmarc="fail"),
        # The server's DMARC verdict stands even where SPF passed for a subdomain under relaxed
        # alignment: the domain's own policy (strict alignment, say) said fail.
        auth_results(spf="pass", dkim="none", dmarc="fail"),
        auth_results(spf="pass", dkim="pass", dmarc="temperror"),
        auth_results(spf="none", dkim="none", dmarc="none"),
    ],
)
def test_unauthenticated_sender_is_flagged(stamp: str) -> None:
    raw = notice(auth=(stamp,))
    assert Flag.UNVERIFIED_SENDER in flags_of(raw)
    assert any("not authenticated" in p for p in sender_problems(raw))


def test_forged_authentication_results_from_another_server_only() -> None:
    # The sender wrote its own "pass"; our server stamped nothing (or it was stripped).
    forged = auth_results(authserv="mx.attacker.test")
    raw = notice(auth=(forged,))
    assert Flag.UNVERIFIED_SENDER in flags_of(raw)
    assert f"no Authentication-Results from {AUTHSERV}" in sender_problems(raw)


def test_our_server_stamp_wins_over_a_forged_pass_below_it() -> None:
    ours = auth_results(spf="fail", dkim="fail", dmarc="fail")
    forged_as_ours = auth_results()  # claims our authserv-id, added by the sender, so lower
    assert Flag.UNVERIFIED_SENDER in flags_of(notice(auth=(ours, forged_as_ours)))


def test_exchange_online_header_without_an_authserv_id() -> None:
    rules = SourceRules("encompass", Source.ENCOMPASS, EXCHANGE_ONLINE, (POLICE,))
    passed = auth_results(authserv=None) + ";compauth=pass reason=100"
    assert Flag.UNVERIFIED_SENDER not in flags_of(notice(auth=(passed,)), rules)
    failed = auth_results(authserv=None, spf="fail", dkim="none", dmarc="fail")
    assert Flag.UNVERIFIED_SENDER in flags_of(notice(auth=(failed + ";compauth=fail",)), rules)
    assert Flag.UNVERIFIED_SENDER in flags_of(notice(auth=()), rules)


def test_sender_outside_the_allow_list_even_when_authenticated() -> None:
    raw = notice(
        sender="Operation Encompass <encompass@police-example.test>",
        auth=(auth_results(domain="police-example.test"),),
    )
    assert Flag.UNVERIFIED_SENDER in flags_of(raw)
    assert "sender domain is not on this source's allow-list" in sender_problems(raw)
    # A subdomain of an allowed domain is allowed.
    sub = f"mash.{POLICE}"
    assert Flag.UNVERIFIED_SENDER not in flags_of(
        notice(sender=f"MASH <mash@{sub}>", auth=(auth_results(domain=sub),))
    )


def test_dmarc_pass_for_a_different_from_header_counts_for_nothing() -> None:
    # Two From headers: the server judged the attacker's own domain, sgalert shows the police one.
    raw = notice(
        auth=(auth_results(domain="attacker.test"),),
        extra=[("From", "Evil <evil@attacker.test>")],
    )
    flags = flags_of(raw)
    assert {Flag.UNVERIFIED_SENDER, Flag.MALFORMED} <= flags


@pytest.mark.parametrize(
    ("sender", "problem"),
    [
        # Right-to-left override: shows as "Operation Encompass moc.elpmaxe..." reversed.
        (
            f"=?utf-8?q?Operation_Encompass_=E2=80=AEgro=2Eecilop?= <encompass@{POLICE}>",
            "bidi",
        ),
        # A Cyrillic o inside a Latin word: looks like "Police Encompass", is not.
        (f"=?utf-8?b?{'UNC+bGljZSBFbmNvbXBhc3M='}?= <encompass@{POLICE}>", "alphabets"),
        ('"encompass@police.example.org" <encompass@attacker.test>', "different address"),
        ("Encompass (encompass@police.example.org) <x@attacker.test>", "hide the address"),
        # A full-width commercial at is still an address in a display name.
        (
            "=?utf-8?q?encompass=EF=BC=A0police=2Eexample=2Eorg?= <x@attacker.test>",
            "different address",
        ),
        (f"=?utf-8?q?Operation_Encompass=E2=80=8B?= <encompass@{POLICE}>", "invisible"),
    ],
)
def test_display_name_spoofing_is_flagged(sender: str, problem: str) -> None:
    raw = notice(sender=sender)
    assert Flag.UNVERIFIED_SENDER in flags_of(raw)
    assert any(problem in p for p in sender_problems(raw)), sender_problems(raw)


def test_cyrillic_fixture_is_really_mixed() -> None:
    # The encoded display name above, spelled out: the second letter is CYRILLIC SMALL LETTER O.
    sender, _ = parse_from("=?utf-8?b?UNC+bGljZSBFbmNvbXBhc3M=?= <encompass@police.example.org>")
    assert sender.display_name == "P\u043elice Encompass"


CVE_2023_27043 = [
    "alice@police.example.org)<evil@attacker.test>",
    '"alice@police.example.org" <evil@attacker.test>',
    "alice@police.example.org <evil@attacker.test>",
    "alice@police.example.org, evil@attacker.test",
    "<alice@police.example.org>, <evil@attacker.test>",
    '"alice@police.example.org)" <evil@attacker.test>',
    "alice@police.example.org\r\n <evil@attacker.test>",
]


@pytest.mark.parametrize("sender", CVE_2023_27043)
def test_crafted_from_is_never_taken_as_police(sender: str) -> None:
    # Even with an authentication stamp that passes for the police domain: the address is what
    # counts, and these do not name one plainly.
    verdict = check_sender(
        sender, [auth_results()], authserv_id=AUTHSERV, allowed_domains=(POLICE,)
    )
    assert verdict.sender.domain != POLICE
    assert not verdict.verified
    raw = notice(sender=sender.replace("\r\n", ""))
    assert Flag.UNVERIFIED_SENDER in flags_of(raw)
    stored = json.loads(prepare(Inbound(raw), RULES, zone=LONDON).case.content["sender"])
    assert not stored["address"].endswith("@police.example.org")


def _interpreters() -> list[str]:
    """This Python and any other 3.11+ on PATH (the system's 3.11 often lacks the CVE fix)."""
    found = {sys.executable}
    for name in ("python3.11", "python3.12", "python3.13"):
        path = shutil.which(name)
        if path and path not in found:
            check = [path, "-c", "import sys; sys.exit(sys.version_info < (3, 11))"]
            if subprocess.run(check, capture_output=True, timeout=30).returncode == 0:
                found.add(path)
    return sorted(found)


@pytest.mark.parametrize("python", _interpreters())
def test_strict_from_parser_agrees_on_every_python(python: str) -> None:
    """The verdict is sgalert's own parser's, not ``email.utils``', so it is the same on a
    Python without the CVE-2023-27043 fixes (3.11 before 3.11.10) and on 3.13."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    probe = (
        "import json, sys\n"
        "from sgalert.intake.sender import check_sender\n"
        "out = []\n"
        "for value in json.load(sys.stdin):\n"
        "    v = check_sender(value, [], authserv_id=None,\n"
        "                     allowed_domains=('police.example.org',))\n"
        "    out.append([v.sender.domain, v.verified])\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run(
        [python, "-c", probe],
        input=json.dumps([*CVE_2023_27043, "MASH <mash@police.example.org>"]),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    *crafted, plain = json.loads(result.stdout)
    assert all(domain != POLICE and not ok for domain, ok in crafted), crafted
    assert plain == [POLICE, True]


# ----- the hostile corpus ----------------------------------------------------------------------


def _display_texts(content: dict[str, bytes]) -> dict[str, str]:
    return {name: content[name].decode("utf-8") for name in DISPLAY_FIELDS if name in content}


@pytest.mark.parametrize("hostile", HOSTILE, ids=lambda h: h.name)
def test_prepare_flags_keeps_raw_and_shows_nothing_unsafe(hostile: Hostile) -> None:
    raw = hostile.build()
    prepared = prepare(Inbound(raw), RULES, zone=LONDON)
    assert hostile.flags <= prepared.case.flags, prepared.case.content["ingest_notes"]
    assert prepared.case.content[FIELD_RAW] == raw
    for name, text in _display_texts(dict(prepared.case.content)).items():
        assert not UNSAFE.search(text), (name, text[:300])
    json.loads(prepared.case.content["fields"])  # every display field is valid JSON or text
    json.loads(prepared.case.content["ingest_notes"])


def test_escapes_and_bidi_are_shown_as_visible_escapes() -> None:
    by_name = {h.name: h for h in HOSTILE}
    prepared = prepare(Inbound(by_name["escapes-in-subject"].build()), RULES, zone=LONDON)
    subject = prepared.case.content["subject"].decode()
    for visible in ("\\x1b[2J", "\\x1b]0;sgalert: all clear\\x07", "\\x1b]52;c;", "\\x9b31m"):
        assert visible in subject
    assert "\\u202efdp.exe" in subject
    c1 = prepare(Inbound(by_name["c1-bytes"].build()), RULES, zone=LONDON).case.content
    assert c1["subject"].decode() == "Encompass \\x9b2J notice"
    assert json.loads(c1["fields"])["child_name"] == "Ada \\x9b31mInvented"
    body_case = prepare(Inbound(by_name["escapes-in-body"].build()), RULES, zone=LONDON).case
    facts = json.loads(body_case.content["fields"])
    assert facts["child_name"] == "Ada \\x1b[2J\\x1b[HInvented"
    assert facts["voice_of_child"] == "\\x9b31m\\u202eolleh"


def test_header_injection_through_encoded_words_is_noted() -> None:
    by_name = {h.name: h for h in HOSTILE}
    for name, header in (("crlf-in-subject", "Subject"), ("crlf-in-from", "From")):
        content = prepare(Inbound(by_name[name].build()), RULES, zone=LONDON).case.content
        problems = json.loads(content["ingest_notes"])["problems"]
        assert f"{header} header decodes to a line break (header injection attempt)" in problems
        assert "\r" not in content["subject"].decode() and "\n" not in content["subject"].decode()
    sender = json.loads(
        prepare(Inbound(by_name["crlf-in-from"].build()), RULES, zone=LONDON).case.content["sender"]
    )
    assert "\n" not in sender["display_name"] and "\\x0d\\nReply-To" in sender["display_name"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("unknown-charset", "unknown charset 'x-unknown-8'"),
        ("broken-base64", "MIME defect: InvalidBase64CharactersDefect"),
        ("ten-thousand-headers", "headers, over the limit of 500"),
        ("one-megabyte-header", "a Subject header is over 16384 bytes"),
        ("eight-bit-headers", "raw 8-bit bytes that are not UTF-8"),
        ("multipart-2000-deep", "nested containers"),
        ("message-rfc822-2000-deep", "nested containers"),
        ("content-type-bomb", "a Content-Type or Content-Disposition header is"),
        ("fifty-megabytes", "over the 26,214,400-byte limit"),
        ("part-flood", "more than 2,000 MIME parts"),
        ("encoded-message-flood", "too many encoded attached messages"),
        ("encoded-messages-at-depth", "MissingHeaderBodySeparatorDefect"),  # left encoded
    ],
)
def test_malformed_messages_say_why(name: str, expected: str) -> None:
    hostile = {h.name: h for h in HOSTILE}[name]
    notes = prepare(Inbound(hostile.build()), RULES, zone=LONDON).case.content["ingest_notes"]
    problems = json.loads(notes)["problems"]
    assert any(expected in p for p in problems), problems


def test_unparsed_messages_still_have_their_sender_checked_and_subject_shown() -> None:
    # Over a limit, the structure is not parsed, but the top-level headers still are.
    for raw in (deep_multipart(2000), huge_message(30 * 1024 * 1024)):
        prepared = prepare(Inbound(raw), RULES, zone=LONDON)
        assert Flag.MALFORMED in prepared.case.flags
        assert Flag.UNVERIFIED_SENDER not in prepared.case.flags
        assert prepared.case.content["subject"].decode() in (
            "Deep notice",
            "Encompass notice with a very large attachment",
        )
        assert prepared.message_id_sha256 is not None


def test_eight_bit_headers_are_read_as_utf8_else_latin1() -> None:
    utf8 = plain_message("Encompass for \u00c9lodie".encode(), "Child's Name: \u00c9lodie\n")
    prepared = prepare(Inbound(utf8), RULES, zone=LONDON)
    assert prepared.case.content["subject"].decode() == "Encompass for \u00c9lodie"
    assert Flag.MALFORMED not in prepared.case.flags  # raw UTF-8 headers are RFC 6532, fine
    latin = {h.name: h for h in HOSTILE}["eight-bit-headers"].build()
    content = prepare(Inbound(latin), RULES, zone=LONDON).case.content
    assert content["subject"].decode() == "Encompass notice for \u00c9lodie \u00ff\u00fe"
    assert json.loads(content["sender"])["display_name"] == "Op\u00e9ration Encompass"


@pytest.mark.parametrize("charset", ["base64", "idna", "rot13", "x-unknown-8", "utf-\u00e9"])
def test_a_strange_charset_still_gives_the_body(charset: str) -> None:
    raw = message(
        envelope("Operation Encompass"),
        leaf(
            f"text/plain; charset={charset}",
            "Child's Name: Ada Invented\n",
        ),
    )
    prepared = prepare(Inbound(raw), RULES, zone=LONDON)
    assert json.loads(prepared.case.content["fields"])["child_name"] == "Ada Invented"
    assert Flag.MALFORMED in prepared.case.flags


def test_undecodable_encoded_words_keep_the_rest_of_the_subject() -> None:
    raw = plain_message(
        "=?utf-8?q?Operation_Encompass?= =?utf-8?b?QUJDRA=?= =?x-nope?q?abc?=",
        "Child's Name: Ada\n",
    )
    prepared = prepare(Inbound(raw), RULES, zone=LONDON)
    assert Flag.MALFORMED in prepared.case.flags
    assert prepared.case.content["subject"].decode().startswith("Operation Encompass")


def test_random_mutations_never_raise() -> None:
    """A few hundred seeded mutations of a realistic multipart notice: no exception, and every
    display field encodes (lone surrogates from raw 8-bit bytes once broke that)."""
    base = message(
        envelope("=?utf-8?b?T3BlcmF0aW9uIEVuY29tcGFzcw==?= notice"),
        b'Content-Type: multipart/mixed; boundary="AA"\r\n\r\n--AA\r\n'
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\nChild's Name: Ada=20Invented\r\n"
        b'--AA\r\nContent-Type: application/pdf; name="=?utf-8?q?notice=E9.pdf?="\r\n'
        b"Content-Disposition: attachment; filename*=utf-8''notice%E9.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjcK\r\n--AA--\r\n",
    )
    pieces = [
        b"\xe9",
        b"\xff",
        b"\x00",
        b"\r\n",
        b"=?",
        b"?=",
        b"=?utf-8?b?",
        b'"',
        b";",
        b"\x1b",
        b"\xc2\x9b",
        b"multipart/",
        b"message/rfc822",
        b"--AA",
        b"*0*=",
        b"%ff",
    ]
    rng = random.Random(20261122)
    for _ in range(400):
        mutated = bytearray(base)
        for _ in range(rng.randint(1, 5)):
            at = rng.randrange(len(mutated) + 1)
            if rng.random() < 0.6:
                mutated[at:at] = rng.choice(pieces)
            else:
                del mutated[at : at + rng.randint(1, 6)]
        for source in Source:
            rules = SourceRules(source.value, source, AUTHSERV, (POLICE,))
            prepared = prepare(Inbound(bytes(mutated)), rules, zone=LONDON)
            for name, text in _display_texts(dict(prepared.case.content)).items():
                assert not UNSAFE.search(text), name


# ----- cost: nothing quadratic, nothing slow ------------------------------------------------------


def _timed(work: object) -> float:
    start = time.perf_counter()
    work()  # type: ignore[operator]
    return time.perf_counter() - start


def test_fifty_megabytes_and_two_thousand_deep_parse_quickly() -> None:
    big = huge_message()
    assert len(big) >= FIFTY_MB
    assert _timed(lambda: parse_message(big)) < 2
    deep = deep_multipart(2000)
    assert _timed(lambda: parse_message(deep)) < 2
    # Even with the limits raised so the parser itself must descend, it stops, and quickly.
    lax = ParseLimits(max_message_bytes=64 << 20, max_parts=10_000, max_depth=100)
    parsed = parse_message(deep, lax)
    assert parsed.problems and parsed.subject == "Deep notice"
    assert _timed(lambda: parse_message(deep, lax)) < 2


def test_parse_time_grows_linearly_with_size() -> None:
    lax = ParseLimits(max_message_bytes=64 << 20)
    small, large = huge_message(4 << 20), huge_message(16 << 20)
    parse_message(small, lax)  # warm up
    ratio = _timed(lambda: parse_message(large, lax)) / max(
        _timed(lambda: parse_message(small, lax)), 1e-3
    )
    assert ratio < 10  # 4 times the bytes: about 4 times the time, never 16


@pytest.mark.parametrize(
    "markup",
    [
        "<a" * 1_000_000,  # html.parser: quadratic, most of a second at 40 KB, hours at 2 MB
        "<!" * 1_000_000,
        "< " * 1_000_000,
        "<table><tr><td>x " * 120_000,
        "<table><tr>" + "<td>x</td>" * 200_000 + "</tr></table>",
        "<!--" + "x" * 2_000_000,
    ],
    ids=["open-tags", "bang", "lt-space", "nested-tables", "wide-row", "open-comment"],
)
def test_html_bombs_render_in_bounded_time(markup: str) -> None:
    assert _timed(lambda: html_to_text(markup)) < 5  # linear: about a second; quadratic: hours


def test_html_bomb_in_a_message_is_bounded_too() -> None:
    parts = b"".join(
        b"--B\r\nContent-Type: text/html\r\n\r\n" + b"<a" * 400_000 + b"\r\n" for _ in range(20)
    )
    raw = message(
        envelope("Encompass"),
        b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n' + parts + b"--B--\r\n",
    )
    assert _timed(lambda: prepare(Inbound(raw), RULES, zone=LONDON)) < 6


def test_a_flood_of_parts_is_not_handed_to_the_parser() -> None:
    flood = {h.name: h for h in HOSTILE}["part-flood"].build()
    assert _timed(lambda: parse_message(flood)) < 1
    # A message with more parts than are read, but not a flood, still gives its first parts.
    parts = b"".join(
        b"--few\r\nContent-Type: text/plain\r\n\r\nline %d\r\n" % i for i in range(300)
    )
    raw = message(
        envelope("Encompass"),
        b'Content-Type: multipart/mixed; boundary="few"\r\n\r\n' + parts + b"--few--\r\n",
    )
    parsed = parse_message(raw)
    assert "line 0\n" in parsed.body_text and "line 198" in parsed.body_text
    assert "line 250" not in parsed.body_text
    assert "more than 200 MIME parts; the rest not read" in parsed.problems


def test_content_type_bomb_is_not_parsed_at_quadratic_cost() -> None:
    bomb = {h.name: h for h in HOSTILE}["content-type-bomb"].build()
    assert _timed(lambda: parse_message(bomb)) < 1
    # Under the header limit, a part's hostile parameters are still cheap to read.
    params = "; ".join(f'p{i}="(x;y)"' for i in range(700))
    raw = message(envelope("Encompass"), leaf(f"text/plain; {params}", "Child's Name: Ada\n"))
    assert len(params) < ParseLimits().max_header_bytes
    assert _timed(lambda: prepare(Inbound(raw), RULES, zone=LONDON)) < 1
    assert "Child's Name: Ada" in parse_message(raw).body_text


# ----- through the store and the CLI -------------------------------------------------------------


@pytest.mark.parametrize("hostile", HOSTILE, ids=lambda h: h.name)
async def test_ingest_seals_the_raw_bytes_exactly(team: Team, hostile: Hostile) -> None:
    raw = hostile.build()
    assert team.service.config is not None
    (outcome,) = await Ingestor(team.service.new_cases, team.service.config).ingest(
        [Inbound(raw)], RULES
    )
    assert outcome.created
    assert hostile.flags <= set(outcome.flags)
    dsl = team["dsl@example.org"]
    async with team.service.store.read() as db:
        keys = await unwrap_data_keys(db, dsl, [outcome.case_id])
        fields = (await open_fields(db, keys, [outcome.case_id]))[outcome.case_id]
    assert fields[FIELD_RAW] == raw
    del fields[FIELD_RAW]
    for name, text in _display_texts(fields).items():
        assert not UNSAFE.search(text), (name, text[:300])
    view = await team.service.open_case(dsl, outcome.ref)  # the service reads it back too
    assert set(view.summary.flags) == set(outcome.flags)
    assert not UNSAFE.search(view.subject + view.body_text + json.dumps(view.facts))


@pytest.mark.slow
async def test_the_whole_corpus_through_the_cli(team: Team, tmp_path: Path) -> None:
    assert team.service.config is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGALERT_")}
    env[ENV_WORKSPACE] = str(team.service.config.path.parent)
    refs = set()
    for hostile in HOSTILE:
        path = tmp_path / f"{hostile.name}.eml"
        path.write_bytes(hostile.build())
        result = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "sgalert",
                "ingest",
                str(path),
                "--source",
                "encompass",
                "--json",
            ],
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )
        if hostile.big:  # over [ingest] max_message_mb: by hand, refused unread past it
            assert result.returncode == 1, (hostile.name, result.stderr)
            assert "max_message_mb" in result.stderr and len(result.stderr.splitlines()) == 1
            path.unlink()
            continue
        assert result.returncode == 0, (hostile.name, result.stderr)
        assert "\x1b" not in result.stdout and "\x9b" not in result.stdout
        outcome = json.loads(result.stdout)
        assert outcome["created"] is True, hostile.name
        assert hostile.flags <= set(outcome["flags"]), (hostile.name, outcome["flags"])
        refs.add(outcome["ref"])
        path.unlink()
    assert len(refs) == len([h for h in HOSTILE if not h.big])
    cases = await team.service.list_cases()
    assert {c.ref for c in cases} == refs
