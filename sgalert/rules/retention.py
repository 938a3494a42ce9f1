"""How long each source's cases are kept, and what happens then: the policies' retention rules.

- Lesson terminations: the chat evidence is kept for 2 years [HMS-online], then destroyed.
- Operation Encompass notices are child-protection records: kept until the child's 25th
  birthday, then reviewed (a record may need keeping longer) [school 1.13.0].
- Whistleblowing allegations about staff: kept 10 years from the allegation or until the person
  reaches normal retirement age, whichever is longer (KCSIE). sgalert does not record retirement
  ages, so at 10 years such a case is due for review, never destroyed unattended.

Only ``DESTROY`` rules ever lead to unattended crypto-shredding; ``REVIEW`` ones list the case for
a person to decide. A school may set its own periods in ``[retention]`` (see
:mod:`sgalert.config`), never shorter than the policy's unless it says it chose so on advice.

The child's date of birth is sealed, so the engine cannot count from it. Every rule can always
count from the day the case arrived: a child is born before a notice about them arrives, so the
arrival date plus 25 years is never before the 25th birthday. That is the unattended date; a
reader who unlocks (``retention run --as``) sees the earlier, exact one. Pure arithmetic on dates.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

from sgalert.model import Source


class AtExpiry(enum.StrEnum):
    DESTROY = "destroy"  # crypto-shred: the data keys and sealed rows go, metadata stays
    REVIEW = "review"  # list for a person to decide (keep longer, or shred by hand)


class CountFrom(enum.StrEnum):
    RECEIVED = "received"  # the day the notice or allegation arrived
    CHILD_BIRTH = "child-birth"  # the child's date of birth (sealed: needs an unlocked reader)


def add_years(start: date, years: int) -> date:
    """``start`` moved on ``years`` years; 29 February lands on 1 March in a common year."""
    try:
        return start.replace(year=start.year + years)
    except ValueError:
        return date(start.year + years, 3, 1)


@dataclass(frozen=True, slots=True)
class RetentionRule:
    """Keep a case ``years`` from ``count_from``, then ``then``; ``why`` cites the policy."""

    years: int
    count_from: CountFrom
    then: AtExpiry
    why: str

    def expires(self, received_at: datetime, child_dob: date | None = None) -> date:
        """The first day the case is past its period.

        A rule that counts from the child's birth uses ``child_dob`` when a reader supplied it;
        without it, the day the case arrived stands in, which is never earlier (the child was
        born before the notice came), so nothing is ever let go too soon.
        """
        if self.count_from is CountFrom.CHILD_BIRTH and child_dob is not None:
            return add_years(child_dob, self.years)
        return add_years(received_at.date(), self.years)


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

RetentionRules = Mapping[Source, RetentionRule]
