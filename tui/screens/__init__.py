"""The desk's screens. Each is small and typed; each reaches the core only through the app."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar, cast

from textual.screen import ModalScreen, Screen

if TYPE_CHECKING:
    from tui.app import SgalertApp

ResultType = TypeVar("ResultType")


class DeskScreen(Screen[ResultType]):
    """A full screen of the desk."""

    @property
    def desk(self) -> SgalertApp:
        return cast("SgalertApp", self.app)


class DeskModal(ModalScreen[ResultType]):
    """A dialog that dismisses with a typed result."""

    @property
    def desk(self) -> SgalertApp:
        return cast("SgalertApp", self.app)
