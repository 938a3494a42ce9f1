"""Half-typed dialogs survive the lock: sealed to their writer on lock, reopened after unlock.

Why seal rather than make the lock wait. A lock that waits for a confirmation while a draft
exists keeps the desk unlocked, the case open and the child's words on screen for as long as
the DSL is away, which is exactly when the idle lock matters: a draft would switch off the lock.
So the lock always happens on time, and the draft is kept instead, encrypted by the core
(:mod:`sgalert.desk.drafts`, through the façade) to the public key of the person who typed it.
Nothing of it stays on any screen; only that person's passphrase opens it again, and only in
this process's memory: it is never written to disk and is lost when the desk quits. When someone
else unlocks, their desk works as usual and the draft waits, still sealed, for its writer.

After unlock the desk reopens where the dialog was (the case, the queue or the rota), runs the
action that opened the dialog, and the dialog fills itself from the draft when it mounts (see
:meth:`tui.screens.dialogs.FormScreen.on_mount`). Python cannot wipe memory: the plaintext
dropped at lock is unreachable, not erased, as with :meth:`Identity.forget`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sgalert.desk.service import CaseService, Identity, Person

FieldValue = str | int | bool | None
Surface = Literal["case", "queue", "rota"]


@dataclass(frozen=True, slots=True)
class Where:
    """Where the dialog was open, to open it again: the screen under it, the case on that screen
    (metadata: a reference), and the action that opens the dialog there."""

    surface: Surface
    ref: str | None
    action: str


@dataclass(frozen=True, slots=True)
class Draft:
    """A dialog's fields in the clear: only between unlock and the dialog taking them back."""

    form: str  # the dialog's class name
    where: Where
    title: str
    values: dict[str, FieldValue]
    focus: str | None


@dataclass(frozen=True, slots=True)
class SealedDraft:
    """A draft as kept while locked: who it is for, what it is (metadata), and the sealed text."""

    owner: str
    form: str
    where: Where
    title: str
    sealed: bytes = field(repr=False)


class Drafts:
    """At most one sealed draft per person, and the one draft being given back after unlock."""

    def __init__(self) -> None:
        self._sealed: dict[str, SealedDraft] = {}
        self.restoring: Draft | None = None

    def seal(self, person: Person, draft: Draft) -> SealedDraft:
        """Encrypt ``draft`` to ``person`` (their public key: no unlock needed) and keep it."""
        sealed = SealedDraft(
            owner=person.email.lower(),
            form=draft.form,
            where=draft.where,
            title=draft.title,
            sealed=CaseService.seal_draft(person, draft.values, draft.focus),
        )
        self._sealed[sealed.owner] = sealed
        return sealed

    def take(self, form: str, ref: str | None) -> Draft | None:
        """The draft being given back, to the dialog it came from (same kind, same case)."""
        draft = self.restoring
        if draft is None or draft.form != form or draft.where.ref != ref:
            return None
        self.restoring = None
        return draft

    def sealed_for(self, email: str) -> SealedDraft | None:
        return self._sealed.get(email.lower())

    def open_for(self, identity: Identity) -> Draft | None:
        """The draft this person left, decrypted with their key and no longer kept sealed."""
        sealed = self._sealed.pop(identity.email.lower(), None)
        if sealed is None:
            return None
        opened = CaseService.open_draft(identity, sealed.sealed)
        if opened is None:
            return None  # sealed to a key this person no longer has: nothing to give back
        values, focus = opened
        return Draft(sealed.form, sealed.where, sealed.title, values, focus)
