"""The invented school that ``sgalert demo`` runs: its people, its config and the notices that
drip into its mailboxes.

Everything here is made up (``example.org`` addresses, invented children and staff). The
config is the packaged template's shape with the demo's own parts: an SMTP channel and a Teams
channel pointing at loopback servers, a Maildir inbox per source plus a replies mailbox, the
DSL on duty at all hours, and escalation delays of seconds instead of minutes so a newcomer
sees a page go unanswered and move on to the deputy within the first minute. The calendar is
built around today, so the demo never meets a calendar that has run out.
"""

from __future__ import annotations

import email.utils
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sgalert.model import Role, Source

SCHOOL = "Example First School (demo)"
ZONE = ZoneInfo("Europe/London")
TEAMS_URL_FILE = "teams-webhook-url"
"""The file (0600, in the workspace) the Teams channel reads its loopback webhook URL from."""
REPLY_ADDRESS = "sgalert-replies@school.example.org"
INBOXES = {source: f"inbox/{source.value}" for source in Source}
REPLIES = "inbox/replies"


@dataclass(frozen=True, slots=True)
class DemoPerson:
    """One member of the invented team; the passphrase is printed, as it is a demo."""

    name: str
    email: str
    role: Role
    passphrase: str


PEOPLE = (
    DemoPerson("Dana Demo", "dsl@example.org", Role.DSL, "harbour-violet-tandem-quince"),
    DemoPerson("Dev Demo", "deputy@example.org", Role.DEPUTY, "gravel-lantern-oboe-mistral"),
    DemoPerson("Harper Demo", "head@example.org", Role.HEAD, "copper-fjord-walnut-sonnet"),
    DemoPerson(
        "Morgan Demo", "mo@example.org", Role.MONITORING_OFFICER, "pebble-quartz-heron-fable"
    ),
    DemoPerson("Cam Demo", "chair@example.org", Role.CHAIR, "saffron-kettle-bramble-onyx"),
)
DSL = PEOPLE[0]


def _terms(today: date) -> str:
    """Three back-to-back terms around today, so every day of the demo is a term day or a
    holiday the calendar knows about, and no calendar-runs-out alert is raised."""
    start = today - timedelta(days=30)
    blocks = []
    for number in range(3):
        begin = start + timedelta(days=120 * number)
        end = begin + timedelta(days=105)
        blocks.append(
            f'[[calendar.terms]]\nname = "Demo term {number + 1}"\n'
            f"start = {begin.isoformat()}\nend = {end.isoformat()}\n"
        )
    return "\n".join(blocks)


def demo_config(smtp_port: int, today: date) -> str:
    """The demo workspace's ``sgalert.toml``: loopback channels, quick escalation."""
    both = '["email", "teams"]'
    return (
        textwrap.dedent(
            f"""\
        # The sgalert demo's configuration: loopback servers only, escalation in seconds.
        [school]
        name = "{SCHOOL}"
        timezone = "Europe/London"

        [security]
        idle_lock_minutes = 10

        [calendar]
        nation = "england"
        school_day_starts = "08:30"
        school_day_ends = "15:30"

        """
        )
        + _terms(today)
        + textwrap.dedent(
            f"""
        [rota]
        fallback = []

        [[rota.shifts]]
        who = "{DSL.email}"
        days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        from = "00:00"
        to = "00:00"
        when = "always"

        # A real SMTP server on 127.0.0.1 (started by the demo); replies acknowledge cases.
        [channels.email]
        kind = "smtp"
        host = "127.0.0.1"
        port = {smtp_port}
        security = "none"
        from = "sgalert@school.example.org"
        reply_to = "{REPLY_ADDRESS}"

        # A loopback stand-in for a Teams Workflows webhook (the URL is in {TEAMS_URL_FILE}).
        [channels.teams]
        kind = "teams-workflow"
        url_file = "{TEAMS_URL_FILE}"
        timeout = 5

        # Seconds, not minutes: the deputy is paged 6 s after an unanswered page, the head 6 s
        # later, then the whole team every minute until someone acknowledges.
        [policies.encompass]
        steps = [{{ target = "on-duty", channels = {both}, delay_minutes = 0 }},
                 {{ target = "deputy", channels = {both}, delay_minutes = 0.1 }},
                 {{ target = "head", channels = {both}, delay_minutes = 0.1 }}]
        repeat_target = "team"
        repeat_channels = {both}
        repeat_minutes = 1

        [policies.lesson]
        steps = [{{ target = "on-duty", channels = {both}, delay_minutes = 0 }},
                 {{ target = "deputy", channels = {both}, delay_minutes = 0.1 }}]
        repeat_target = "team"
        repeat_channels = {both}
        repeat_minutes = 1

        # Whistleblowing never goes to a shared channel: email to the monitoring officer only.
        [policies.whistle]
        steps = [{{ target = "monitoring-officer", channels = ["email"], delay_minutes = 0 }}]
        repeat_target = "monitoring-officer"
        repeat_channels = ["email"]
        repeat_minutes = 1

        [readers]
        encompass = ["dsl", "deputy", "head"]
        lesson = ["dsl", "deputy", "head"]
        whistle = ["monitoring-officer"]
        whistle_identity = ["whistle-identity"]

        [digest]
        time = "07:30"
        recipients = ["head"]
        also_non_school_days = true
        channel = "email"

        [[sources]]
        name = "encompass"
        type = "encompass"
        kind = "maildir"
        path = "{INBOXES[Source.ENCOMPASS]}"
        poll_seconds = 0.5

        [[sources]]
        name = "whistle"
        type = "whistle"
        kind = "maildir"
        path = "{INBOXES[Source.WHISTLE]}"
        poll_seconds = 0.5

        [[sources]]
        name = "lesson"
        type = "lesson"
        kind = "maildir"
        path = "{INBOXES[Source.LESSON]}"
        poll_seconds = 0.5

        [[sources]]
        name = "replies"
        type = "replies"
        kind = "maildir"
        path = "{REPLIES}"
        poll_seconds = 0.5
        sender_domains = ["example.org"]
        """
        )
    )


# ----- the drip: invented notices, dated as they arrive --------------------------------------


@dataclass(frozen=True, slots=True)
class Notice:
    """One invented message: when it arrives (seconds after the engine starts), where, what it
    is (said on screen; never its content) and how to build its bytes for a given moment."""

    at: float
    source: Source
    what: str
    build: Callable[[datetime], bytes]


def _headers(now: datetime, sender: str, subject: str, message_id: str) -> str:
    return (
        f"From: {sender}\r\nTo: safeguarding@school.example.org\r\nSubject: {subject}\r\n"
        f"Date: {email.utils.format_datetime(now)}\r\nMessage-ID: <{message_id}>\r\n"
        "MIME-Version: 1.0\r\n"
    )


def _local(moment: datetime, fmt: str) -> str:
    return moment.astimezone(ZONE).strftime(fmt)


def _encompass_plain(now: datetime) -> bytes:
    head = _headers(
        now,
        '"Operation Encompass" <encompass@police.example.org>',
        "OPERATION ENCOMPASS NOTIFICATION - Occurrence 44/123456/26",
        "demo-enc-0001@police.example.org",
    )
    body = (
        "OPERATION ENCOMPASS - NOTIFICATION TO SCHOOL\r\n\r\n"
        "Child's Name: Ada Invented\r\nDOB: 14/03/2017\r\nSchool: Example First School\r\n"
        f"Date/Time of Incident: {_local(now - timedelta(minutes=25), '%d/%m/%Y %H:%M')}\r\n"
        "Occurrence Number: 44/123456/26\r\nChild present: Yes - in the house at the time\r\n"
        'Voice of the child: "I went to my room and hid."\r\n\r\n'
        "Please treat this information as confidential.\r\n"
    )
    return (head + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + body).encode()


def _encompass_html(now: datetime) -> bytes:
    head = _headers(
        now,
        '"Example Constabulary - Operation Encompass" <encompass@police.example.org>',
        "Operation Encompass notification",
        "demo-enc-0002@police.example.org",
    )
    when = _local(now - timedelta(hours=1), "%d.%m.%Y %H%M hrs")
    html = (
        "<html><body><p>Operation Encompass: please read before the start of the school day.</p>"
        "<table><tr><td>Surname</td><td>INVENTED</td></tr><tr><td>Forename</td><td>Bea</td></tr>"
        "<tr><td>D.O.B.</td><td>02-Sep-2015</td></tr>"
        "<tr><td>School</td><td>Example First School</td></tr>"
        f"<tr><td>Incident date</td><td>{when}</td></tr>"
        "<tr><td>Incident ref</td><td>EX/0002/26</td></tr>"
        "<tr><td>Child present</td><td>No - asleep upstairs, did not witness</td></tr>"
        "</table></body></html>"
    )
    return (
        head + 'Content-Type: multipart/alternative; boundary="alt-0002"\r\n\r\n'
        "--alt-0002\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        f"{html}\r\n--alt-0002--\r\n"
    ).encode()


def _encompass_portal(now: datetime) -> bytes:
    head = _headers(
        now,
        "Example Constabulary Secure Mail <securemail@police.example.org>",
        "You have received a secure message",
        "demo-portal-0003@police.example.org",
    )
    return (
        head + "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        "You have received a secure message from Example Constabulary.\r\n\r\n"
        "To read it, sign in to the secure messaging portal:\r\n"
        "https://securemail.police.example.org/read/5521-ab34\r\n"
    ).encode()


def _hostile(now: datetime) -> bytes:
    """Terminal escapes and a bidi override in the headers, Rich markup in the body and a
    multipart whose boundary never closes and whose base64 is broken: it must become a case
    (flagged) and drive nobody's terminal."""
    head = _headers(
        now,
        '"Unknown \u202eecilop" <someone@attacker.test>',
        "Urgent \x1b[2J\x1b]0;sgalert: all clear\x07 [/b] notice",
        "demo-hostile-0004@attacker.test",
    )
    return (
        head + 'Content-Type: multipart/mixed; boundary="never-closed"\r\n\r\n'
        "--never-closed\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "Child's name: [bold red]Dot[/] Invented\x1b[31m\r\nDOB: 30.06.2019\r\n"
        "--never-closed\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        "\r\nJVBERi0xLjcK!!!not*base64\r\n"
    ).encode("utf-8")


def _whistle(now: datetime) -> bytes:
    head = _headers(
        now,
        "Riley Reporter <riley.reporter@example.org>",
        "Confidential concern about a member of staff",
        "demo-whistle-0005@example.org",
    )
    return (
        head + "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        "I want to raise a concern about a member of staff.\r\n\r\n"
        "Staff member: Mr Pat Example (Year 5 teacher)\r\n\r\n"
        "He has been giving pupils lifts home alone after orchestra practice,\r\n"
        "without telling their parents.\r\n\r\n"
        "Preferred contact: personal mobile, evenings only\r\n"
    ).encode()


def _lesson_form(now: datetime) -> bytes:
    head = _headers(
        now,
        "Sam Tutor <sam.tutor@example.org>",
        "Online lesson ended early - safeguarding concern",
        "demo-lesson-0006@example.org",
    )
    return (
        head + "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        "Teacher: Sam Tutor\r\nPupil: Eli Invented (Year 6)\r\n"
        "Lesson: Violin, Grade 3 (online)\r\n"
        f"Ended at: {_local(now - timedelta(minutes=5), '%d/%m/%Y %H:%M')}\r\n"
        "Reason for ending: Pupil typed an inappropriate message in the lesson chat\r\n"
        "Responsible adult present: No - parent was out of the room\r\n"
    ).encode()


def _lesson_running(now: datetime) -> bytes:
    head = _headers(
        now,
        "Sam Tutor <sam.tutor@example.org>",
        "Online lesson ended early",
        "demo-lesson-0007@example.org",
    )
    return (
        head + "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        "Dear safeguarding team,\r\n\r\n"
        "Lesson ended with pupil Fin Invented (Year 4), piano, after the pupil typed an\r\n"
        "inappropriate message in the lesson chat. The chat log is saved.\r\n\r\nSam Tutor\r\n"
    ).encode()


DRIP = (
    Notice(
        0.5, Source.ENCOMPASS, "a police notice (Operation Encompass, plain text)", _encompass_plain
    ),
    Notice(2.0, Source.WHISTLE, "a whistleblowing report about a member of staff", _whistle),
    Notice(
        3.5,
        Source.ENCOMPASS,
        "a police notice (Operation Encompass, an HTML table)",
        _encompass_html,
    ),
    Notice(5.0, Source.ENCOMPASS, "a hostile message (terminal escapes, broken MIME)", _hostile),
    Notice(6.5, Source.LESSON, "a tutor ended an online lesson (a form)", _lesson_form),
    Notice(
        8.0,
        Source.ENCOMPASS,
        "a secure-portal wrapper (the notice is behind a link)",
        _encompass_portal,
    ),
    Notice(9.5, Source.LESSON, "a tutor ended an online lesson (running text)", _lesson_running),
)
"""The notices in the order they arrive; all are in by ten seconds, so that a twenty-second
run sees pages, a reply, and escalations to the deputy and the head."""

PERSONAL = (
    "Invented",
    "INVENTED",
    "Riley",
    "Pat Example",
    "Sam Tutor",
    "14/03/2017",
    "44/123456/26",
    "orchestra",
)
"""Words from the notices that must never appear in what the demo prints (the test checks)."""


def reply_by(person: DemoPerson, page_subject: str, now: datetime) -> bytes:
    """The reply a person sends to a page from their mail client: same subject with ``Re:``
    (the ack token rides in it), from their own address, to the replies mailbox."""
    return (
        f"From: {person.name} <{person.email}>\r\nTo: {REPLY_ADDRESS}\r\n"
        f"Subject: Re: {page_subject}\r\nDate: {email.utils.format_datetime(now)}\r\n"
        f"Message-ID: <{email.utils.make_msgid(domain='example.org')[1:-1]}>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nSeen, on it.\r\n"
    ).encode()
