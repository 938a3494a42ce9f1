"""Capped exponential backoff with jitter, honouring a server's own Retry-After.

One rule for every retry loop in sgalert (outbox rows, mailbox reconnects, Graph and EWS rounds,
a restarting inbox), so a failing channel is never hammered and a server that asks for patience
gets it; and one reading of ``Retry-After`` for every HTTP adapter (Teams, Graph mail and inbox,
the Entra sign-in), so a bad header cannot make one of them retry at once and another wait.
"""

from __future__ import annotations

import email.utils
import math
import random
import re
from datetime import UTC, datetime

from sgalert.clock import utcnow

#: Seconds: the longest ``Retry-After`` taken from any server; a longer one is read as this (msal
#: caps its own memory of a Retry-After there too). A longer wait is the engine's business.
MAX_RETRY_AFTER = 3600.0

#: ``delay-seconds`` (RFC 9110 §10.2.3 says digits; a fraction or a minus sign is tolerated).
_DELAY = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def retry_after_seconds(
    value: str | None, now: datetime | None = None, *, cap: float = MAX_RETRY_AFTER
) -> float | None:
    """Seconds a server's ``Retry-After`` header asks us to wait, or None if it asks nothing.

    The one reading for every adapter:

    - absent or blank: None (the caller's own backoff decides);
    - a number of seconds: that many; a negative number reads as 0 (retry now);
    - an HTTP date: the seconds from ``now`` until it; a date in the past reads as 0;
    - anything else (a word, ``nan``, ``inf``, a date that is no date): None, as if absent,
      never 0, so a garbled header cannot make us retry at once;
    - never more than ``cap`` (an hour by default), however large the number or late the date.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    if _DELAY.fullmatch(value):
        seconds = float(value)  # a long run of digits is inf here, and is capped below
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, OverflowError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000": UTC with no claim about local time
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or utcnow())).total_seconds()
    if math.isnan(seconds):
        return None
    return min(cap, max(0.0, seconds))


def backoff_seconds(
    attempt: int,
    *,
    first: float,
    cap: float,
    retry_after: float | None = None,
    jitter: float = 0.2,
) -> float:
    """Seconds to wait before try ``attempt + 1`` after ``attempt`` failures (1 or more).

    The wait doubles from ``first`` up to ``cap``, spread by ±``jitter`` so that many rows (or
    many schools' engines) that failed together do not retry together; a server's
    ``retry_after`` is honoured up to ``cap`` (a longer one would leave a page waiting longer
    than any policy step), and never shortens our own wait.
    """
    exponent = min(max(attempt, 1) - 1, 30)
    wait: float = min(first * float(2**exponent), cap)
    wait *= random.uniform(1 - jitter, 1 + jitter)  # noqa: S311 (jitter, not secrecy)
    if retry_after is not None:
        wait = max(wait, min(max(retry_after, 0.0), cap))
    return wait
