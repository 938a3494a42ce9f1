"""A digest on the email channels: multipart text + HTML over real SMTP (aiosmtpd), its HTML body
through Graph sendMail (the loopback Graph server), and never on a shared channel."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sgalert.ports import Document, Notification, PageSource, Recipient, Urgency

from .test_graph_mail import client_secret, graph, send, tls  # noqa: F401  (fixtures)
from .test_graph_mail import only as graph_only
from .test_notifiers import Mailroom, smtp_channel, smtp_server  # noqa: F401  (fixtures)

TEXT = "Test School: safeguarding digest for Monday 7 December 2026\n\nAt a glance: 1 new.\n"
HTML = (
    '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>t</title></head>'
    "<body><p>At a glance: 1 new.</p></body></html>\n"
)


def digest_notification() -> Notification:
    return Notification(
        idempotency_key="digest-2026-12-07:mail:p1",
        school="Test School",
        case_ref="daily digest 2026-12-07",
        source=PageSource.DIGEST,
        received_at=datetime(2026, 12, 7, 7, 30, tzinfo=UTC),
        urgency=Urgency.DIGEST,
        step=0,
        reason="daily digest",
        document=Document(
            subject="[sgalert] Daily digest Mon 7 Dec 2026: 1 new, 0 unacknowledged",
            text=TEXT,
            html=HTML,
        ),
    )


async def test_smtp_sends_the_digest_as_text_and_its_html_twin(
    smtp_server: tuple[Mailroom, int],  # noqa: F811
    tmp_path: Path,
) -> None:
    room, port = smtp_server
    channel = smtp_channel(port, tmp_path)
    await channel.send(digest_notification(), Recipient("head@school.example.org"))
    await channel.close()
    (arrived,) = room.received
    message = arrived.message()
    assert message["Subject"] == "[sgalert] Daily digest Mon 7 Dec 2026: 1 new, 0 unacknowledged"
    assert message.get_content_type() == "multipart/alternative"
    text, page = message.iter_parts()
    assert (text.get_content_type(), page.get_content_type()) == ("text/plain", "text/html")
    # SMTP lines end in CRLF on the wire.
    assert text.get_content().replace("\r\n", "\n") == TEXT
    assert page.get_content().replace("\r\n", "\n") == HTML


async def test_graph_sendmail_carries_the_digest_as_html(
    graph: object,  # noqa: F811
    tls: object,  # noqa: F811
) -> None:
    await send(graph, tls, digest_notification())  # type: ignore[arg-type]
    message = graph_only(graph).payload["message"]  # type: ignore[arg-type]
    assert message["subject"].startswith("[sgalert] Daily digest")
    assert message["body"] == {"contentType": "HTML", "content": HTML}


def test_a_page_stays_plain_text() -> None:
    plain = Notification(
        idempotency_key="timer-1:mail:p1",
        school="Test School",
        case_ref="SG-2026-0001",
        source=PageSource.ENCOMPASS,
        received_at=datetime(2026, 12, 7, 7, 30, tzinfo=UTC),
        urgency=Urgency.URGENT,
        step=0,
        reason="new case",
    )
    assert plain.html() is None and "needs acknowledging" in plain.body()


__all__ = ["client_secret"]
