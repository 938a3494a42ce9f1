"""Acknowledge by working: the desk says once, per person, that working on a new case
acknowledges it.

The core acknowledges a NEW case in the transaction of any action taken on it (see
:mod:`sgalert.desk.transitions`). The first time a person starts such an action on a new case,
the desk asks them to confirm that they mean to take it on; the answer is remembered for them in
the workspace (:class:`~sgalert.desk.service.DeskSetting`), so it is asked once per person, not
once per desk or per case.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

from sgalert.desk.service import DeskSetting
from sgalert.model import CaseState, CaseSummary

from .screens.dialogs import ConfirmScreen

if TYPE_CHECKING:
    from sgalert.desk.service import CaseView

    from .app import SgalertApp

SETTING = DeskSetting.ACKNOWLEDGE_BY_WORKING


def confirm_working(desk: SgalertApp, summary: CaseSummary, then: Callable[[], object]) -> bool:
    """Before an action on ``summary``: True if the desk is asking first (``then`` runs once the
    person confirms), False if the action may go ahead now (the case is not new, or this
    person confirmed before)."""
    identity = desk.identity
    if summary.state is not CaseState.NEW or identity is None:
        return False
    if identity.id in desk.working_confirmed:
        return False
    person = identity.id

    def confirmed(yes: bool | None) -> None:
        if not yes:
            return
        desk.working_confirmed.add(person)
        desk.submit(
            desk.service.remember_desk_setting(person, SETTING),
            description="Remembering your answer",
        )
        then()

    def known(remembered: bool) -> None:
        if remembered:
            desk.working_confirmed.add(person)
            then()
            return
        desk.push_screen(
            ConfirmScreen(
                f"{summary.ref} is new: working on it acknowledges it",
                "A note, a decision, a referral, an assignment, a clock or an export on a new"
                " case acknowledges it first, in your name: escalation stops and nobody else is"
                " paged about it. Asked once: the desk remembers your answer.",
                confirm="Acknowledge and go on",
            ),
            confirmed,
        )

    desk.submit(
        desk.service.desk_setting(person, SETTING),
        description="Reading your desk settings",
        done=known,
    )
    return True


class _OnACase(Protocol):
    @property
    def desk(self) -> SgalertApp: ...

    view: CaseView


Screen = TypeVar("Screen", bound=_OnACase)


def working(action: Callable[[Screen], None]) -> Callable[[Screen], None]:
    """An action on the case screen that works on the case: on a new case, confirmed first."""

    @functools.wraps(action)
    def ask_first(screen: Screen) -> None:
        if not confirm_working(screen.desk, screen.view.summary, lambda: action(screen)):
            action(screen)

    return ask_first
