"""Shared fixtures: real SQLite files in a temp workspace, real (cheap) key derivation.

Unit tests use :data:`sgalert.records.crypto.TEST_KDF` so creating a dozen people takes
milliseconds; the CLI tests and one keyring test use the real Argon2id parameters.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings

from sgalert.config import load_config, render_template
from sgalert.desk.service import CaseService
from sgalert.model import Role, Source
from sgalert.records.cases import FIELD_ATTACHMENTS, FIELD_BODY, FIELD_FACTS, FIELD_RAW, NewCase
from sgalert.records.crypto import TEST_KDF, KdfParams
from sgalert.records.keyring import (
    ADDS_PEOPLE,
    Identity,
    add_first_person,
    add_person,
    approve_member,
    unlock,
)
from sgalert.records.store import Store
from sgalert.workspace import CONFIG_NAME, STORE_NAME, Workspace

from .dovecot import dovecot  # noqa: F401  (the real-IMAP-server fixture)

# Hypothesis profiles. "default" is what CI runs: derandomized (the same examples every run, so a
# red build is reproducible) and no example database, so no .hypothesis directory is written.
# "long" is a soak: `pytest tests/test_invariants.py --hypothesis-profile=long`, random each run.
# Examples here drive a real engine on a real store: no per-example deadline.
# The explain phase re-runs a failure many times to annotate it: minutes here, so it is left out.
_SLOW_BY_DESIGN = [HealthCheck.too_slow, HealthCheck.data_too_large]
_PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]
settings.register_profile(
    "default",
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    phases=_PHASES,
    suppress_health_check=_SLOW_BY_DESIGN,
)
settings.register_profile(
    "long",
    # SGALERT_SOAK_EXAMPLES sizes a shorter soak on a busy machine.
    max_examples=int(os.environ.get("SGALERT_SOAK_EXAMPLES", "400")),
    stateful_step_count=60,
    deadline=None,
    derandomize=False,
    database=None,
    print_blob=True,
    phases=_PHASES,
    suppress_health_check=_SLOW_BY_DESIGN,
)

PASSPHRASES = {
    "dsl@example.org": "dsl-passphrase-1",
    "deputy@example.org": "deputy-passphrase-1",
    "head@example.org": "head-passphrase-1",
    "mo@example.org": "mo-passphrase-1",
    "chair@example.org": "chair-passphrase-1",
    "staff@example.org": "staff-passphrase-1",
}
ROLES = {
    "dsl@example.org": Role.DSL,
    "deputy@example.org": Role.DEPUTY,
    "head@example.org": Role.HEAD,
    "mo@example.org": Role.MONITORING_OFFICER,
    "chair@example.org": Role.CHAIR,
    "staff@example.org": Role.STAFF,
}


def store_file_bytes(*paths: Path) -> bytes:
    """The bytes of the store's files (those that exist), read by another process.

    Never ``path.read_bytes()`` on a store this process has open: POSIX locks belong to the
    process, so closing that file drops every SQLite lock its connections hold, and the next
    process to close its own connection deletes the write-ahead log in use (see 3be1a8c)."""
    program = (
        "import sys, pathlib\n"
        "for name in sys.argv[1:]:\n"
        "    path = pathlib.Path(name)\n"
        "    if path.exists():\n"
        "        sys.stdout.buffer.write(path.read_bytes())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program, *map(str, paths)], capture_output=True, check=True
    )
    return done.stdout


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    root.mkdir()
    (root / CONFIG_NAME).write_text(render_template("Test School"), encoding="utf-8")
    return Workspace(config_path=root / CONFIG_NAME, store_path=root / STORE_NAME)


@pytest.fixture
async def service(workspace: Workspace) -> AsyncIterator[CaseService]:
    store = await Store.open(workspace.store_path, create=True)
    svc = CaseService(store, load_config(workspace.config_path))
    yield svc
    await svc.close()


@dataclass
class Team:
    """The invented safeguarding team, each person unlocked."""

    service: CaseService
    people: dict[str, Identity]

    def __getitem__(self, email: str) -> Identity:
        return self.people[email]


async def add_people(
    store: Store,
    people: Sequence[tuple[str, Role, str]],
    *,
    by: Identity | None = None,
    kdf: KdfParams | None = TEST_KDF,
) -> dict[str, dict[str, str]]:
    """Add people (email, role, passphrase) as `sgalert user add` does: into an empty store, the
    first of them who may add people comes first (``--first``) and adds the rest (``--by``).
    Names are made from the emails. Returns each person's group memberships."""
    added: dict[str, dict[str, str]] = {}
    order = list(people)
    if by is None:
        first = next(p for p in order if p[1] in ADDS_PEOPLE)
        order.remove(first)
        email, role, passphrase = first
        _, added[email] = await add_first_person(
            store, name=_name(email), email=email, role=role, passphrase=passphrase, kdf=kdf
        )
        by = await unlock(store, email, passphrase)
    for email, role, passphrase in order:
        _, added[email] = await add_person(
            store, by=by, name=_name(email), email=email, role=role, passphrase=passphrase, kdf=kdf
        )
    return added


def _name(email: str) -> str:
    return email.split("@")[0].title() + " Example"


@pytest.fixture
async def team(service: CaseService) -> Team:
    await add_people(service.store, [(e, r, PASSPHRASES[e]) for e, r in ROLES.items()])
    people = {email: await service.unlock(email, PASSPHRASES[email]) for email in ROLES}
    return Team(service, people)


async def add_member(team: Team, email: str, role: Role, approver: str) -> Identity:
    """Add a second member of a role and have an existing member approve them."""
    passphrase = f"{email}-passphrase"
    await add_person(
        team.service.store,
        by=team["dsl@example.org"],
        name="Second Example",
        email=email,
        role=role,
        passphrase=passphrase,
        kdf=TEST_KDF,
    )
    await approve_member(team.service.store, team[approver], email)
    identity = await team.service.unlock(email, passphrase)
    team.people[email] = identity
    return identity


def encompass_case(child: str = "Ada Invented", **extra: str) -> NewCase:
    facts = {"child_name": child, "child_dob": "2017-03-14", **extra}
    return NewCase(
        source=Source.ENCOMPASS,
        received_at=datetime(2026, 11, 22, 21, 55, tzinfo=UTC),
        origin="mailbox",
        content={
            FIELD_RAW: b"From: notices@police.example.org\r\n\r\nChild present.",
            FIELD_FACTS: json.dumps(facts).encode(),
            FIELD_BODY: b"Child present at an incident.",
            FIELD_ATTACHMENTS: json.dumps(
                [{"filename": "notice.pdf", "content_type": "application/pdf", "size": 1234}]
            ).encode(),
            "attachment/0": b"%PDF-1.7 invented",
        },
    )


def whistle_case(*, about_head: bool = False) -> NewCase:
    return NewCase(
        source=Source.WHISTLE,
        received_at=datetime(2026, 11, 20, 9, 0, tzinfo=UTC),
        origin="mailbox",
        content={
            FIELD_FACTS: json.dumps({"allegation": "Invented allegation about a teacher"}).encode(),
            FIELD_BODY: b"An invented allegation.",
        },
        identity={
            "reporter": json.dumps(
                {"name": "Riley Reporter", "address": "riley@example.org"}
            ).encode()
        },
        flags=frozenset({"about-head"}) if about_head else frozenset(),
    )
