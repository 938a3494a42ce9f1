"""How long each source's cases are kept, and what happens then: the policies' retention rules.

- Lesson terminations: the chat evidence is kept for 2 years [HMS-online], then destroyed.
- Operation Encompass notices are child-protection records: kept until the child's 25th
  birthday, then reviewed (a record may need keeping longer) [school 1.13.0].
- Whistleblowing allegations about staff: kept 10 years from the allegation or until the person
  reaches normal retirement age, whichever is longer (KCSIE). sgalert does not record retirement
  ages, so at 10 years such a case is due for review, never destroyed unattended.

Only ``DESTROY`` rules ever lead to automatic crypto-shredding; ``REVIEW`` ones list the case for
a person to decide. Pure arithmetic on dates: the child's date of birth is sealed, so whoever
asks for an Encompass case's date must have unlocked it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime

from sgalert.model import Source


class AtExpiry(enum.StrEnum):
    DESTROY = "destroy"  # crypto-shred: the data keys and sealed rows go, metadata stays
    REVIEW = "review"  # list for a person to decide (keep longer, or shred by hand)


class CountFrom(enum.StrEnum):
    RECEIVED = "received"  # the day the notice or allegation arrived
    CHILD_BIRTH = "child-birth"  # the child's date of birth (sealed: needs an unlocked reader)


@dataclass(frozen=True, slots=True)
class RetentionRule:
    """Keep a case ``years`` from ``count_from``, then ``then``; ``why`` cites the policy."""

    years: int
    count_from: CountFrom
    then: AtExpiry
    why: str

    def expires(self, received_at: datetime, child_dob: date | None = None) -> date | None:
        """The first day the case is past its period, or None when that is not known (an
        Encompass case whose child's date of birth was not read, or not given)."""
        start = received_at.date() if self.count_from is CountFrom.RECEIVED else child_dob
        if start is None:
            return None
        try:
            return start.replace(year=start.year + self.years)
        except ValueError:  # 29 February, into a year without one
            return date(start.year + self.years, 3, 1)


DEFAULT_RETENTION: dict[Source, RetentionRule] = {
    Source.LESSON: RetentionRule(
        2, CountFrom.RECEIVED, AtExpiry.DESTROY, "lesson chat evidence is kept 2 years"
    ),
    Source.ENCOMPASS: RetentionRule(
        25,
        CountFrom.CHILD_BIRTH,
        AtExpiry.REVIEW,
        "child-protection records are kept until the child's 25th birthday, then reviewed",
    ),
    Source.WHISTLE: RetentionRule(
        10,
        CountFrom.RECEIVED,
        AtExpiry.REVIEW,
        "allegations about staff are kept 10 years or to retirement age, whichever is longer",
    ),
}
