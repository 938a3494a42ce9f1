"""The domain's vocabulary: roles, case sources, states and flags.

Everything here is plaintext metadata that may appear in queues, logs and digests, so none of it
carries personal data.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class Role(enum.StrEnum):
    """A person's role in the school's safeguarding arrangements."""

    DSL = "dsl"
    DEPUTY = "deputy"
    HEAD = "head"
    MONITORING_OFFICER = "monitoring-officer"
    CHAIR = "chair"
    STAFF = "staff"


class Source(enum.StrEnum):
    """Which kind of notification a case came from; each has its own readers and clocks."""

    ENCOMPASS = "encompass"
    WHISTLE = "whistle"
    LESSON = "lesson"


class CaseState(enum.StrEnum):
    """Where a case is in its life. Transitions live in :mod:`sgalert.desk.transitions`."""

    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    CLOSED = "closed"


class Flag(enum.StrEnum):
    """Plaintext markers that drive routing and tell the DSL what needs a second look."""

    UNVERIFIED_SENDER = "unverified-sender"
    NEEDS_TRIAGE = "needs-triage"
    MALFORMED = "malformed"
    ABOUT_HEAD = "about-head"
    POSSIBLE_DUPLICATE = "possible-duplicate"
    MANUAL_ENTRY = "manual-entry"
    HOSTILE_TEXT = "hostile-text"
    # The next school day was past the configured terms, so its deadline counts working days.
    CALENDAR_ENDED = "calendar-ended"
    # Set with NEEDS_TRIAGE when the facts that make a notice actionable (an Encompass child, a
    # lesson's pupil) were not extracted, so the page can say "facts not extracted: open the case".
    FACTS_MISSING = "facts-missing"
    # A lesson ended over a disclosure by the pupil or an immediate risk to them: set at intake
    # from the report's reason, so the queue can rank it with urgent notices without decrypting
    # anything. The flag says only that; the words stay sealed in the case.
    DISCLOSURE = "disclosure"


class KeyName(enum.StrEnum):
    """A case's data keys: content for the record, identity for a whistleblower's name."""

    CONTENT = "content"
    IDENTITY = "identity"


# Compartments are key-holding groups that are not roles. A whistleblower's identity is sealed to
# this one, whose members are the monitoring officers and the deputies they nominate [HMS].
WHISTLE_IDENTITY = "whistle-identity"

# Which compartments a role joins automatically when a person is added with it.
ROLE_COMPARTMENTS: dict[Role, tuple[str, ...]] = {
    Role.MONITORING_OFFICER: (WHISTLE_IDENTITY,),
}


@dataclass(frozen=True, slots=True)
class Readers:
    """Which groups may read each data key of a case."""

    content: tuple[str, ...]
    identity: tuple[str, ...] = ()


DEFAULT_READERS: dict[Source, Readers] = {
    Source.ENCOMPASS: Readers(content=(Role.DSL, Role.DEPUTY, Role.HEAD)),
    Source.LESSON: Readers(content=(Role.DSL, Role.DEPUTY, Role.HEAD)),
    Source.WHISTLE: Readers(content=(Role.MONITORING_OFFICER,), identity=(WHISTLE_IDENTITY,)),
}

# An allegation about the headteacher goes to the chair and the monitoring officer, never the head.
ABOUT_HEAD_READERS = Readers(
    content=(Role.CHAIR, Role.MONITORING_OFFICER), identity=(WHISTLE_IDENTITY,)
)


def readers_for(source: Source, flags: frozenset[str], configured: Readers | None) -> Readers:
    """The groups entitled to a new case, honouring the about-head rule over any configuration.

    An allegation about the head goes to the chair and the monitoring officer. Any other case
    about the head (a police notice about their household, a lesson they ended) stays with the
    safeguarding team, who must still act on it before the next school day, and is kept from
    the head: the chair takes the head's place among its readers."""
    readers = configured if configured is not None else DEFAULT_READERS[source]
    if Flag.ABOUT_HEAD not in flags:
        return readers
    if source is Source.WHISTLE:
        return ABOUT_HEAD_READERS
    return kept_from_the_head(readers)


def kept_from_the_head(readers: Readers) -> Readers:
    """``readers`` without the head; the chair in their place if the head was one of them."""
    content = tuple(group for group in readers.content if group != Role.HEAD)
    if len(content) < len(readers.content) and Role.CHAIR not in content:
        content += (Role.CHAIR,)
    return Readers(content=content, identity=readers.identity)


@dataclass(frozen=True, slots=True)
class CaseSummary:
    """A case's plaintext metadata: safe for queues before unlock, digests and logs."""

    id: str
    ref: str
    source: Source
    state: CaseState
    received_at: datetime
    created_at: datetime
    updated_at: datetime
    flags: tuple[str, ...]
    assignee: str | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    closed_at: datetime | None
    next_deadline: datetime | None
    # Set once the case was crypto-shredded under retention: only this metadata is left.
    destroyed_at: datetime | None = None
    # Which statutory clock that deadline is (``clocks.kind``): says what the next step asks.
    next_clock: str | None = None
