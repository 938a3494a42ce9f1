"""One reading of ``Retry-After`` and one backoff for every retry loop.

Teams, Graph (mail and inbox) and the Entra sign-in each read the header once; they disagreed on
bad values (Graph and Entra read ``nan`` as "retry at once", Teams as "no wait given"; Entra
ignored an HTTP date; Graph left a huge number uncapped). These pin the one rule they now share.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from sgalert.routing.backoff import MAX_RETRY_AFTER, backoff_seconds, retry_after_seconds

NOW = datetime(2026, 11, 22, 22, 0, tzinfo=UTC)
#: What every adapter must make of an odd header (used by the Teams, Graph and Entra tests too):
#: a garbled value is no wait given (never "retry at once"), a past date now, a huge one an hour.
ODD_RETRY_AFTER = [
    ("nan", None),
    ("soon", None),
    (format_datetime(datetime(2020, 1, 1, tzinfo=UTC), usegmt=True), 0.0),
    ("99999999", 3600.0),
]


def http_date(at: datetime) -> str:
    return format_datetime(at, usegmt=True)


def test_retry_after_takes_seconds_or_a_date() -> None:
    assert retry_after_seconds("12", NOW) == 12.0
    assert retry_after_seconds(" 12 ", NOW) == 12.0
    assert retry_after_seconds(http_date(NOW + timedelta(seconds=90)), NOW) == 90.0
    assert retry_after_seconds(None, NOW) is None
    assert retry_after_seconds("  ", NOW) is None


@pytest.mark.parametrize(("header", "wait"), ODD_RETRY_AFTER)
def test_the_odd_values_every_adapter_is_tested_with(header: str, wait: float | None) -> None:
    assert retry_after_seconds(header, NOW) == wait


@pytest.mark.parametrize("garbled", ["soon", "nan", "NaN", "inf", "-inf", "1_000", "0x10", "1e3"])
def test_a_garbled_value_is_no_wait_given_never_retry_at_once(garbled: str) -> None:
    assert retry_after_seconds(garbled, NOW) is None


def test_a_negative_number_or_a_date_in_the_past_means_now() -> None:
    assert retry_after_seconds("-5", NOW) == 0.0
    assert retry_after_seconds(http_date(NOW - timedelta(hours=3)), NOW) == 0.0


@pytest.mark.parametrize("huge", ["999999", "9" * 400, http_date(datetime(2100, 1, 1, tzinfo=UTC))])
def test_a_huge_wait_is_capped_at_an_hour(huge: str) -> None:
    assert retry_after_seconds(huge, NOW) == MAX_RETRY_AFTER == 3600.0
    assert retry_after_seconds(huge, NOW, cap=300.0) == 300.0


def test_a_date_without_a_zone_is_utc() -> None:
    assert retry_after_seconds("Sun, 22 Nov 2026 22:01:00 -0000", NOW) == 60.0


def test_backoff_doubles_to_its_cap_within_the_jitter() -> None:
    for attempt, middle in [(1, 5.0), (2, 10.0), (3, 20.0), (7, 300.0), (60, 300.0)]:
        waits = [backoff_seconds(attempt, first=5.0, cap=300.0) for _ in range(200)]
        assert middle * 0.8 <= min(waits) and max(waits) <= middle * 1.2
        assert len(set(waits)) > 150, "retries that failed together must not retry together"


def test_backoff_honours_a_longer_retry_after_up_to_its_cap() -> None:
    assert backoff_seconds(1, first=5.0, cap=300.0, retry_after=60.0) == 60.0
    assert backoff_seconds(1, first=5.0, cap=300.0, retry_after=MAX_RETRY_AFTER) == 300.0
    assert backoff_seconds(3, first=5.0, cap=300.0, retry_after=1.0) >= 16.0
    assert backoff_seconds(0, first=5.0, cap=300.0) <= 6.0
