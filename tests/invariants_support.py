"""The world around the engine for the stateful invariant harness (tests/test_invariants.py).

Only the edges are fakes, as a pure unit-level harness allows: channels that record every
delivery and can be switched off (or kill the engine mid-send), a virtual clock, and mailboxes
the harness fills. The store file, engine, outbox, case service, ingest, replies, rota and keyring
are the real ones. The model kept here (cases, expected escalation steps, who was removed when,
when each channel was down) is what the invariants judge the engine against; policies and
readers come from the same config the engine loads.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from hypothesis import strategies as st

from sgalert.model import Flag, Role, Source
from sgalert.ports import DeliveryError, Notification, Receipt, Recipient
from sgalert.records.keyring import (
    ADDS_PEOPLE,
    Identity,
    add_first_person,
    add_person,
    approve_member,
)
from sgalert.records.store import Store
from sgalert.rules.policy import TARGETS, Policy

from .conftest import PASSPHRASES, ROLES
from .corpus import auth_results, plain_message
from .engine_helpers import SUNDAY_NIGHT, VirtualClock

# A Sunday night in term: the next school day starts at 08:30 on Monday.
START = SUNDAY_NIGHT

# How long the engine may take to tell someone that paging is broken (every channel failing, a
# target naming nobody, a channel the policy names missing): one capped retry backoff.
ALERT_GRACE = timedelta(minutes=5)

# Alerts that speak of something else than paging: they do not excuse a silent page.
NOT_ABOUT_PAGING = frozenset({"rota-gap", "source-down"})

EMAIL, TEAMS, UNCONFIGURED = "email", "teams", "sms"
TEAM_ROLES = frozenset({Role.DSL, Role.DEPUTY, Role.HEAD})

# Who may be on the team: the core three always, the rest unless a setup leaves them out.
EXTRA_MEMBERS = {
    "dsl2@example.org": (Role.DSL, "dsl@example.org"),
    "deputy2@example.org": (Role.DEPUTY, "deputy@example.org"),
    "mo2@example.org": (Role.MONITORING_OFFICER, "mo@example.org"),
}
ALWAYS = ("dsl@example.org", "mo@example.org", "staff@example.org")
OPTIONAL = (
    "deputy@example.org",
    "head@example.org",
    "chair@example.org",
    *EXTRA_MEMBERS,
)
EVERYONE = (*ALWAYS, *OPTIONAL)


def role_of(email: str) -> Role:
    return EXTRA_MEMBERS[email][0] if email in EXTRA_MEMBERS else ROLES[email]


def passphrase_of(email: str) -> str:
    return PASSPHRASES.get(email, f"{email.split('@')[0]}-passphrase-1")


# ----- setups: who is on the team, which channels exist, which policies apply ---------------


@dataclass(frozen=True)
class StepSpec:
    target: str
    channels: tuple[str, ...]
    delay_minutes: int


@dataclass(frozen=True)
class PolicySpec:
    steps: tuple[StepSpec, ...]
    repeat_target: str
    repeat_channels: tuple[str, ...]
    repeat_minutes: int


@dataclass(frozen=True)
class Setup:
    """One school: the team (everyone unless left out), a Teams channel or not, and any
    policies configured instead of the defaults."""

    left_out: frozenset[str] = frozenset()
    no_teams_channel: bool = False
    policies: tuple[tuple[str, PolicySpec], ...] = ()

    def members(self) -> tuple[str, ...]:
        kept = [e for e in EVERYONE if e not in self.left_out]
        # A second member needs the first to approve them.
        return tuple(e for e in kept if e not in EXTRA_MEMBERS or EXTRA_MEMBERS[e][1] in kept)


CHANNEL_CHOICES = ((EMAIL,), (TEAMS,), (EMAIL, TEAMS), (EMAIL, UNCONFIGURED))
TARGET_CHOICES = (*TARGETS, "deputy2@example.org", "dsl2@example.org")


def step_specs() -> st.SearchStrategy[StepSpec]:
    return st.builds(
        StepSpec,
        target=st.sampled_from(TARGET_CHOICES),
        channels=st.sampled_from(CHANNEL_CHOICES),
        delay_minutes=st.sampled_from((0, 1, 5, 10, 30)),
    )


def policy_specs() -> st.SearchStrategy[PolicySpec]:
    return st.builds(
        PolicySpec,
        steps=st.lists(step_specs(), min_size=1, max_size=3).map(tuple),
        repeat_target=st.sampled_from(TARGET_CHOICES),
        repeat_channels=st.sampled_from(CHANNEL_CHOICES),
        repeat_minutes=st.sampled_from((5, 15, 30, 60)),
    )


def setups() -> st.SearchStrategy[Setup]:
    custom = st.lists(
        st.tuples(st.sampled_from([s.value for s in Source]), policy_specs()),
        max_size=3,
        unique_by=lambda pair: pair[0],
    ).map(tuple)
    return st.builds(
        Setup,
        left_out=st.frozensets(st.sampled_from(OPTIONAL)),
        no_teams_channel=st.booleans(),
        policies=custom,
    )


@dataclass(frozen=True)
class ShiftSpec:
    who: str
    start: str
    end: str
    when: str


# The template's school year; a calendar that "runs out" keeps only what ends before a day.
TERMS = (
    ("Autumn 2026", date(2026, 9, 2), date(2026, 12, 18), (date(2026, 10, 26), date(2026, 10, 30))),
    ("Spring 2027", date(2027, 1, 5), date(2027, 3, 26), (date(2027, 2, 15), date(2027, 2, 19))),
    ("Summer 2027", date(2027, 4, 12), date(2027, 7, 21), (date(2027, 5, 31), date(2027, 6, 4))),
)


def _toml_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def config_text(
    setup: Setup, *, shifts: Sequence[ShiftSpec] = (), terms_end: date | None = None
) -> str:
    """The school's sgalert.toml for a setup, a weekly rota, and the last day its terms cover."""
    lines = [
        "[school]",
        'name = "Harness First School"',
        'timezone = "Europe/London"',
        "",
        "[calendar]",
        'nation = "england"',
        'school_day_starts = "08:30"',
        'school_day_ends = "15:30"',
        "inset_days = [2026-09-01, 2027-01-04]",
    ]
    for name, start, end, half in TERMS:
        if terms_end is not None:
            if start > terms_end:
                continue
            end = min(end, terms_end)
        lines += ["", "[[calendar.terms]]", f'name = "{name}"', f"start = {start}", f"end = {end}"]
        if half[1] <= end:
            lines.append(f"half_term = [{half[0]}, {half[1]}]")
    lines += ["", "[rota]", "fallback = []"]
    for shift in shifts:
        lines += [
            "",
            "[[rota.shifts]]",
            f'who = "{shift.who}"',
            'days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]',
            f'from = "{shift.start}"',
            f'to = "{shift.end}"',
            f'when = "{shift.when}"',
        ]
    lines += ["", f"[channels.{EMAIL}]", 'kind = "maildrop"', 'path = "outbox/email"']
    if not setup.no_teams_channel:
        lines += ["", f"[channels.{TEAMS}]", 'kind = "teams-workflow"', 'url_env = "TEAMS_URL"']
    for source, policy in setup.policies:
        steps = ", ".join(
            f'{{ target = "{s.target}", channels = {_toml_list(s.channels)},'
            f" delay_minutes = {s.delay_minutes} }}"
            for s in policy.steps
        )
        lines += [
            "",
            f"[policies.{source}]",
            f"steps = [{steps}]",
            f'repeat_target = "{policy.repeat_target}"',
            f"repeat_channels = {_toml_list(policy.repeat_channels)}",
            f"repeat_minutes = {policy.repeat_minutes}",
        ]
    for name, kind in (
        ("encompass", "encompass"),
        ("whistle", "whistle"),
        ("lesson", "lesson"),
        ("replies", "replies"),
    ):
        lines += [
            "",
            "[[sources]]",
            f'name = "{name}"',
            f'type = "{kind}"',
            'kind = "maildir"',
            f'path = "inbox/{name}"',
        ]
    return "\n".join(lines) + "\n"


# ----- the team ------------------------------------------------------------------------------


async def build_team(store: Store, members: Sequence[str]) -> dict[str, Identity]:
    """Add the invented people (fast test KDF), approve second members, unlock everyone."""
    from sgalert.records.crypto import TEST_KDF
    from sgalert.records.keyring import unlock

    people: dict[str, Identity] = {}
    # The first who may add people bootstraps the store (`user add --first`) and adds the rest.
    first = next(email for email in members if role_of(email) in ADDS_PEOPLE)
    await add_first_person(
        store,
        name=first.split("@")[0].title() + " Example",
        email=first,
        role=role_of(first),
        passphrase=passphrase_of(first),
        kdf=TEST_KDF,
    )
    people[first] = await unlock(store, first, passphrase_of(first))
    for email in members:
        if email == first:
            continue
        await add_person(
            store,
            by=people[first],
            name=email.split("@")[0].title() + " Example",
            email=email,
            role=role_of(email),
            passphrase=passphrase_of(email),
            kdf=TEST_KDF,
        )
        if email in EXTRA_MEMBERS:
            await approve_member(store, people[EXTRA_MEMBERS[email][1]], email)
        people[email] = await unlock(store, email, passphrase_of(email))
    return people


# ----- mail that arrives ---------------------------------------------------------------------

ARRIVALS = ("encompass", "lesson", "whistle", "whistle-about-head")


def notice(kind: str, number: int) -> bytes:
    """An invented notice for one source, unique by ``number``."""
    if kind == "encompass":
        return plain_message(
            f"OPERATION ENCOMPASS NOTIFICATION - Occurrence 44/{number:06d}/26",
            f"Child's Name: Ada Invented\nDOB: 14/03/2017\nOccurrence Number: 44/{number:06d}/26\n",
            message_id=f"<enc-{number}@police.example.org>",
        )
    school = auth_results(domain="example.org")
    if kind == "lesson":
        return plain_message(
            "Online lesson ended early - safeguarding concern",
            f"Teacher: Sam Tutor\nPupil: Eli Invented (Year 6)\nLesson number {number}\n"
            "Reason for ending: Pupil typed an inappropriate message in the lesson chat\n",
            sender="Sam Tutor <sam.tutor@example.org>",
            message_id=f"<lesson-{number}@example.org>",
            auth=(school,),
        )
    about = "the headteacher" if kind == "whistle-about-head" else "a Year 5 teacher"
    return plain_message(
        "Confidential concern about a member of staff",
        f"I want to raise a concern (note {number}) about {about}, who gave pupils lifts home"
        " alone after orchestra practice.\n",
        sender="Riley Reporter <riley.reporter@example.org>",
        message_id=f"<whistle-{number}@example.org>",
        auth=(school,),
    )


def reply(address: str, token: str, number: int) -> bytes:
    """A reply to a notification email, from ``address``, keeping its token in the subject."""
    return (
        f"From: {address}\r\nTo: replies@school.test\r\n"
        f"Subject: Re: [sgalert] URGENT [{token}]\r\n"
        f"Message-ID: <reply-{number}@example.org>\r\n"
        "Date: Mon, 23 Nov 2026 08:00:00 +0000\r\n\r\nSeen, on it.\r\n"
    ).encode()


# ----- channels --------------------------------------------------------------------------------


class SimulatedCrash(BaseException):
    """The engine process dies here (kill -9): no handler of the engine's may run."""


@dataclass(frozen=True)
class Delivery:
    """One page a channel accepted: what the person (or the shared channel) saw."""

    seq: int
    at: datetime
    channel: str
    shared: bool
    key: str
    address: str
    person_id: str | None
    case_ref: str
    source: str
    urgency: str
    step: int
    ack_token: str | None


@dataclass
class Ledger:
    """The outside world's record: every delivery, and a sequence that orders every action."""

    clock: VirtualClock
    deliveries: list[Delivery] = field(default_factory=list)
    by_ref: dict[str, list[Delivery]] = field(default_factory=lambda: defaultdict(list))
    crash: str | None = None  # "before-send" or "after-send": the next send kills the engine
    dead: bool = False  # the engine was killed: nothing of it sends any more
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    def next_seq(self) -> int:
        return next(self._counter)


class FakeChannel:
    """An in-memory notifier: records each delivery; when down, fails as a retryable error."""

    def __init__(self, name: str, per_person: bool, ledger: Ledger) -> None:
        self.name = name
        self.per_person = per_person
        self.up = True
        self.ledger = ledger

    async def send(self, notification: Notification, recipient: Recipient) -> Receipt:
        ledger = self.ledger
        if ledger.dead:
            raise SimulatedCrash
        if ledger.crash == "before-send":
            ledger.crash, ledger.dead = None, True
            raise SimulatedCrash
        if not self.up:
            raise DeliveryError(f"{self.name} is down (simulated)", retryable=True)
        delivery = Delivery(
            seq=ledger.next_seq(),
            at=ledger.clock(),
            channel=self.name,
            shared=not self.per_person,
            key=notification.idempotency_key,
            address=recipient.address,
            person_id=recipient.person_id,
            case_ref=notification.case_ref,
            source=notification.source,
            urgency=notification.urgency,
            step=notification.step,
            ack_token=notification.ack_token,
        )
        ledger.deliveries.append(delivery)
        ledger.by_ref[delivery.case_ref].append(delivery)
        if ledger.crash == "after-send":
            ledger.crash, ledger.dead = None, True
            raise SimulatedCrash
        return Receipt(self.name, f"fake-{delivery.seq}")

    async def close(self) -> None:
        return None


# ----- the model the invariants judge against -------------------------------------------------


@dataclass
class PersonModel:
    id: str
    email: str
    role: Role
    identity: Identity
    removed_at: datetime | None = None
    removed_seq: int | None = None

    def current_at(self, seq: int) -> bool:
        return self.removed_seq is None or seq < self.removed_seq


@dataclass
class Escalation:
    """One page the policy says is due: a step (``index`` < steps) or a repeat after them."""

    index: int
    is_step: bool
    target: str
    channels: tuple[str, ...]
    due: datetime
    fired: datetime | None = None  # the engine's first tick at or after ``due``
    fired_seq: int | None = None
    on_duty: str | None = None  # who the rota had on duty at that tick
    # Whom the target names (current, entitled) as the tick saw it; None: anyone entitled will
    # do (on-duty with the person on duty unable to read the case; "team" with no team member).
    target_people: frozenset[str] | None = None
    deadline: datetime | None = None  # the first tick at or after ``due`` that did not crash
    deadline_seq: int | None = None

    def label(self) -> str:
        kind = f"step {self.index + 1}" if self.is_step else f"repeat {self.index + 1}"
        return f"{kind} (target {self.target!r}, due {self.due:%a %H:%M:%S})"


@dataclass
class Ack:
    person_id: str
    seq: int
    at: datetime
    via: str


@dataclass
class ActionClock:
    kind: str
    started_seq: int
    met_seq: int | None = None


@dataclass
class CaseModel:
    id: str
    ref: str
    source: Source
    flags: frozenset[str]
    policy: Policy
    created: datetime
    created_seq: int
    entitled: frozenset[str]  # person ids the config's readers entitle, at creation
    events: list[Escalation] = field(default_factory=list)
    ack: Ack | None = None
    action_clocks: dict[str, ActionClock] = field(default_factory=dict)

    def shared_allowed(self) -> bool:
        """Shared channels never carry whistleblowing or about-head pages (design 6)."""
        return self.source is not Source.WHISTLE and Flag.ABOUT_HEAD not in self.flags

    def escalation(self, index: int, due: datetime) -> Escalation:
        if index < len(self.policy.steps):
            step = self.policy.steps[index]
            return Escalation(index, True, step.target, step.channels, due)
        return Escalation(index, False, self.policy.repeat_target, self.policy.repeat_channels, due)

    def delay(self, index: int) -> timedelta:
        steps = self.policy.steps
        minutes = steps[index].delay_minutes if index < len(steps) else self.policy.repeat_minutes
        return timedelta(minutes=minutes)

    def unacknowledged_at(self, seq: int) -> bool:
        return self.ack is None or self.ack.seq > seq


@dataclass(frozen=True)
class Round:
    at: datetime
    seq: int
    good: bool  # False: the engine was killed in it


def next_local_time(local: datetime, at: time) -> datetime:
    """The first local ``at`` strictly after ``local`` (an aware local datetime)."""
    candidate = local.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
    if candidate <= local:
        candidate = (local + timedelta(days=1)).replace(
            hour=at.hour, minute=at.minute, second=0, microsecond=0
        )
    return candidate
