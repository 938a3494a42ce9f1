"""Escalation policies: who is paged, on which channels, and how soon, until someone answers.

A policy is a list of steps run in order (each waits ``delay_minutes`` after the previous one),
then a repeat that pages ``repeat_target`` every ``repeat_minutes`` until the case is
acknowledged, plus the statutory clock of the source with a warning before it runs out.
Targets: ``on-duty`` (the rota), a role (``dsl``, ``deputy``, ``head``, ``monitoring-officer``,
``chair``), ``team`` (DSLs, deputies and the head) or one person's email. Only people entitled to
read the case are ever paged: an allegation about the head never pages the head.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from sgalert.model import Role, Source

TARGETS = ("on-duty", "team", "dsl", "deputy", "head", "monitoring-officer", "chair", "staff")


@dataclass(frozen=True, slots=True)
class Step:
    target: str
    channels: tuple[str, ...]
    delay_minutes: float


@dataclass(frozen=True, slots=True)
class Policy:
    steps: tuple[Step, ...]
    repeat_target: str
    repeat_channels: tuple[str, ...]
    repeat_minutes: float
    # The source's statutory clock, and how long before it runs out the whole team is paged.
    clock: str | None = None
    warn_minutes_before: float = 30.0


BOTH = ("email", "teams")

DEFAULT_POLICIES: Mapping[Source, Policy] = {
    # The DSL must know before the child arrives the next school day [school 1.4.4].
    Source.ENCOMPASS: Policy(
        steps=(
            Step("on-duty", BOTH, 0),
            Step("deputy", BOTH, 10),
            Step("head", BOTH, 10),
        ),
        repeat_target="team",
        repeat_channels=BOTH,
        repeat_minutes=30,
        clock="encompass-before-school-day",
        warn_minutes_before=30,
    ),
    # The Monitoring Officer is informed in writing within 5 working days [HMS].
    Source.WHISTLE: Policy(
        steps=(Step("monitoring-officer", ("email",), 0),),
        repeat_target="monitoring-officer",
        repeat_channels=("email",),
        repeat_minutes=24 * 60,
        clock="whistle-monitoring-officer-5-working-days",
        warn_minutes_before=24 * 60,
    ),
    # Details go to the safeguarding team at once [HMS-online].
    Source.LESSON: Policy(
        steps=(Step("on-duty", BOTH, 0), Step("deputy", BOTH, 5)),
        repeat_target="team",
        repeat_channels=BOTH,
        repeat_minutes=15,
    ),
}

# An allegation about the headteacher goes to the chair of governors [school 2.1.1, 4.2].
ABOUT_HEAD_POLICY = Policy(
    steps=(Step("chair", ("email",), 0), Step("monitoring-officer", ("email",), 0)),
    repeat_target="chair",
    repeat_channels=("email",),
    repeat_minutes=24 * 60,
    clock="whistle-monitoring-officer-5-working-days",
    warn_minutes_before=24 * 60,
)


def without_the_head(policy: Policy) -> Policy:
    """A policy whose steps never page the head: the chair takes each step that named them."""

    def instead(target: str) -> str:
        return Role.CHAIR.value if target == Role.HEAD.value else target

    return replace(
        policy,
        steps=tuple(replace(step, target=instead(step.target)) for step in policy.steps),
        repeat_target=instead(policy.repeat_target),
    )
