"""What the engine runs on, and nothing more: the store, the config and its escalation plan, and
the intake that turns mail into cases.

The desk's :class:`~sgalert.desk.service.CaseService` is one such workplace, and the CLI and the
tests hand theirs over; the engine names only this protocol, so it cannot come to depend on the
desk's façade (it could not read a case anyway: it holds public keys only).
"""

from __future__ import annotations

from typing import Protocol

from sgalert.config import Config
from sgalert.intake.ingest import Ingestor
from sgalert.records.store import Store
from sgalert.routing.escalation import Plan


class Workplace(Protocol):
    @property
    def store(self) -> Store: ...

    @property
    def config(self) -> Config | None: ...

    @property
    def plan(self) -> Plan | None: ...

    def ingestor(self) -> Ingestor:
        """A new intake for this store (the caller closes it)."""
        ...
