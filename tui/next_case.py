"""Next: from an open case to the next one needing attention, in Needs action's order.

The most urgent case still waiting (unacknowledged) comes first, whatever was just done to the
one open: after a decision, a note or an acknowledgement, that case has stopped waiting and Next
moves on. When nothing waits, Next walks Needs action in order from the open case, round to the
start. Metadata only (the queue's own query); opening the case is audited as ever.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sgalert.desk.views import QueuePage, QueueQuery, QueueView
from sgalert.model import CaseState, CaseSummary

if TYPE_CHECKING:
    from .app import SgalertApp

NOTHING_ELSE = "No other case needs action."


def next_ref(rows: Sequence[CaseSummary], current: str) -> str | None:
    """The case Next opens from ``current``, given Needs action in its order (None: no other)."""
    others = [case for case in rows if case.ref != current]
    waiting = [case for case in others if case.state is CaseState.NEW]
    if waiting:
        return waiting[0].ref
    refs = [case.ref for case in rows]
    if current in refs:
        after = refs.index(current) + 1
        others = [*rows[after:], *rows[: after - 1]]
    return others[0].ref if others else None


def open_next_case(desk: SgalertApp, current: str) -> None:
    """Open the case after ``current`` in place of it (Escape still goes back to the queue)."""

    def found(page: QueuePage) -> None:
        ref = next_ref(page.rows, current)
        if ref is None:
            desk.notify(NOTHING_ELSE, markup=False)
            return
        desk.open_case(ref, replacing=current)

    desk.submit(
        desk.service.queue_page(QueueQuery(view=QueueView.NEEDS_ACTION), viewer=desk.identity),
        description="Finding the next case",
        done=found,
        latest="next-case",
    )
