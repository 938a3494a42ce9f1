"""Capped exponential backoff with jitter, honouring a server's own Retry-After.

One rule for every retry loop in sgalert (outbox rows, mailbox reconnects, token renewals), so a
failing channel is never hammered and a server that asks for patience gets it.
"""

from __future__ import annotations

import random


def backoff_seconds(
    attempt: int,
    *,
    first: float,
    cap: float,
    retry_after: float | None = None,
    jitter: float = 0.2,
) -> float:
    """Seconds to wait before try ``attempt + 1`` after ``attempt`` failures (1 or more).

    The wait doubles from ``first`` up to ``cap``, spread by ±``jitter`` so that many rows that
    failed together do not retry together; a server's ``retry_after`` is honoured up to ``cap``
    (a longer one would leave a page waiting longer than any policy step).
    """
    exponent = min(max(attempt, 1) - 1, 30)
    wait: float = min(first * float(2**exponent), cap)
    wait *= random.uniform(1 - jitter, 1 + jitter)  # noqa: S311 (jitter, not secrecy)
    if retry_after is not None:
        wait = max(wait, min(max(retry_after, 0.0), cap))
    return wait
