"""How good a passphrase must be, and how fast wrong ones may be tried.

A passphrase guards a private key that opens every case the person may read, so it is judged by
how guessable it is (zxcvbn's estimate, given the person's own name and email as words an
attacker would try first), not by character classes. Wrong passphrases are counted per person in
the store, so guessing stays slow across processes and restarts: the first few are free (people
mistype at 22:00), then each try waits longer, to a ceiling short enough that the real DSL is
never locked out of an emergency for long.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import aiosqlite
from zxcvbn import zxcvbn

from sgalert.clock import iso, parse_iso
from sgalert.errors import InvalidInput, UnlockThrottled

MIN_LENGTH = 8
MIN_SCORE = 3  # zxcvbn: 3 = "safely unguessable" against an offline attack on a slow hash
FREE_FAILURES = 5
FIRST_WAIT = timedelta(seconds=30)
MAX_WAIT = timedelta(minutes=10)


def check_strength(passphrase: str, *, name: str = "", email: str = "") -> None:
    """Refuse a weak passphrase with the reason and what to do instead."""
    if len(passphrase) < MIN_LENGTH:
        raise InvalidInput(f"the passphrase must be at least {MIN_LENGTH} characters")
    own_words = [w for w in (name, *name.split(), email, email.split("@")[0]) if w]
    result = zxcvbn(passphrase[:100], user_inputs=own_words)
    if int(result["score"]) >= MIN_SCORE:
        return
    why = str(result["feedback"]["warning"] or "it would be guessed quickly").rstrip(".")
    raise InvalidInput(
        f"the passphrase is too easy to guess ({why[:1].lower() + why[1:]}); "
        "use four or more uncommon words"
    )


def wait_after(failures: int) -> timedelta:
    """How long to wait after ``failures`` wrong passphrases in a row."""
    if failures < FREE_FAILURES:
        return timedelta(0)
    doublings = min(failures - FREE_FAILURES, 16)
    return min(FIRST_WAIT * (1 << doublings), MAX_WAIT)


async def refuse_if_throttled(db: aiosqlite.Connection, person_id: str, now: datetime) -> None:
    """Raise :class:`UnlockThrottled` while this person's wait after failures is running."""
    cursor = await db.execute(
        "SELECT failures, last_failed_at FROM unlock_failures WHERE person_id = ?", (person_id,)
    )
    row = await cursor.fetchone()
    if row is None:
        return
    until = parse_iso(row["last_failed_at"]) + wait_after(int(row["failures"]))
    if now < until:
        seconds = math.ceil((until - now).total_seconds())
        raise UnlockThrottled(
            f"{int(row['failures'])} wrong passphrases in a row: try again in {seconds} s"
        )


async def record_failure(db: aiosqlite.Connection, person_id: str, now: datetime) -> int:
    """Count one more wrong passphrase; returns the count in a row."""
    await db.execute(
        "INSERT INTO unlock_failures (person_id, failures, last_failed_at) VALUES (?, 1, ?)"
        " ON CONFLICT (person_id) DO UPDATE SET failures = failures + 1,"
        " last_failed_at = excluded.last_failed_at",
        (person_id, iso(now)),
    )
    cursor = await db.execute(
        "SELECT failures FROM unlock_failures WHERE person_id = ?", (person_id,)
    )
    row = await cursor.fetchone()
    return int(row["failures"]) if row else 1


async def record_success(db: aiosqlite.Connection, person_id: str) -> None:
    await db.execute("DELETE FROM unlock_failures WHERE person_id = ?", (person_id,))
