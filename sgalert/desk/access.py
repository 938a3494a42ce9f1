"""Who may act on a case, and what a refusal leaves behind.

A person reads or changes a case only with its content key, unwrapped from their own keys inside
the transaction that acts. Anyone else is refused: the acting transaction rolls back, so it
records nothing, and the refusal is audited in a transaction of its own before the caller sees
:class:`~sgalert.errors.NotEntitled`. Every refusal on the desk goes through :func:`refusals`.
Someone refused the whole case is told exactly what a missing case tells
(:class:`~sgalert.errors.NoSuchCase`), so a guessed reference confirms nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import NoReturn

import aiosqlite

from sgalert.errors import CaseDestroyed, NoSuchCase, NotEntitled
from sgalert.model import CaseSummary, KeyName
from sgalert.records import audit
from sgalert.records.cases import unwrap_key_versions
from sgalert.records.keyring import Identity
from sgalert.records.shredding import destroyed_line
from sgalert.records.store import Store
from sgalert.rules.access import barred, may_know_destroyed


class Refused(Exception):
    """Raised inside a transaction so it rolls back; :func:`refusals` turns it into an audited
    :class:`~sgalert.errors.NotEntitled`."""

    def __init__(
        self,
        case_id: str | None,
        ref: str,
        what: str | None = None,
        detail: Mapping[str, object] | None = None,
    ) -> None:
        self.case_id = case_id
        self.ref = ref
        # A refusal of the whole case answers as a missing case does (NoSuchCase); one of a
        # part of it (the reporter's identity, an attachment, a grant) says what was refused.
        self.whole_case = what is None
        self.what = what or f"case {ref}"  # what the person is not entitled to
        self.detail = dict(detail or {})  # more for the audit entry (metadata only)


async def refuse(store: Store, identity: Identity, refused: Refused, action: str) -> NoReturn:
    """Audit the refused ``action`` in its own transaction, then raise NotEntitled: for the
    whole case :class:`~sgalert.errors.NoSuchCase`, word for word what a missing case gets."""
    detail = {"action": action, **refused.detail}
    async with store.write() as db:
        await audit.append(
            db, [audit.AuditEvent(identity.email, "refused", refused.case_id, detail)]
        )
    if refused.whole_case:
        raise NoSuchCase()
    raise NotEntitled(f"{identity.email} is not entitled to {refused.what}")


class _Refusals:
    """See :func:`refusals`."""

    def __init__(self, store: Store, identity: Identity, action: str) -> None:
        self._store = store
        self._identity = identity
        self._action = action

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, Refused):
            await refuse(self._store, self._identity, exc, self._action)


def refusals(store: Store, identity: Identity, action: str) -> _Refusals:
    """Around an action's transaction (``async with refusals(store, who, "assign"):``): a
    :class:`Refused` raised inside becomes an audited NotEntitled once the transaction has rolled
    back. Other errors pass through untouched."""
    return _Refusals(store, identity, action)


async def key_versions(
    db: aiosqlite.Connection,
    identity: Identity,
    summary: CaseSummary,
    key_name: KeyName = KeyName.CONTENT,
) -> dict[int, bytes]:
    """Every version of one of the case's data keys this person unwraps; :class:`Refused` if
    they reach none, or if the access policy bars them from the case (the head and an
    allegation about the head) whatever key they hold."""
    if barred(identity.person.role, summary.flags):
        raise Refused(summary.id, summary.ref, detail={"reason": "about-head"})
    found = await unwrap_key_versions(db, identity, [summary.id])
    versions = found.get((summary.id, key_name.value))
    if not versions:
        what = (
            None if key_name is KeyName.CONTENT else f"the {key_name.value} of case {summary.ref}"
        )
        raise Refused(summary.id, summary.ref, what)
    return versions


def destroyed(identity: Identity, summary: CaseSummary) -> CaseDestroyed | Refused:
    """The answer about a case retention destroyed: that it was, to someone who may know
    (:func:`~sgalert.rules.access.may_know_destroyed`); to anyone else a refusal, which
    :func:`refusals` audits and answers as for a missing case."""
    if may_know_destroyed(identity.person.role, summary.source, summary.flags):
        assert summary.destroyed_at is not None
        return CaseDestroyed(destroyed_line(summary.ref, summary.destroyed_at))
    return Refused(summary.id, summary.ref)


async def content_key(db: aiosqlite.Connection, identity: Identity, summary: CaseSummary) -> bytes:
    """The case's current content key as this person unwraps it (the newest version, which new
    entries are sealed with); :class:`Refused` if they cannot,
    :class:`~sgalert.errors.CaseDestroyed` if retention destroyed it (no one can)."""
    if summary.destroyed_at is not None:
        raise destroyed(identity, summary)
    versions = await key_versions(db, identity, summary)
    return versions[max(versions)]
