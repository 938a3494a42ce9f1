"""A half-typed dialog kept across the desk's idle lock: sealed to its writer, opened by them.

The desk locks on time even while someone is typing (a draft must not switch the lock off), so
what was typed is encrypted (HPKE, as a case's data key is wrapped) to the public key of the
person who typed it: sealing needs no unlock, and only that person's private key opens it again.
The sealed bytes stay in the desk's memory; nothing here writes them anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag

from sgalert.records.crypto import label, unwrap_with_private_key, wrap_to_public_key
from sgalert.records.keyring import Identity, Person

DRAFT_INFO = "sgalert/desk-draft/v1"

FieldValue = str | int | bool | None


def _info(person_id: str) -> bytes:
    return label(DRAFT_INFO, person_id)


def seal_draft(person: Person, values: Mapping[str, FieldValue], focus: str | None) -> bytes:
    """A dialog's fields and focused field, encrypted to ``person`` (their public key only)."""
    plain = json.dumps({"values": dict(values), "focus": focus}).encode("utf-8")
    return wrap_to_public_key(plain, person.x25519_public, _info(person.id))


def open_draft(
    identity: Identity, sealed: bytes
) -> tuple[dict[str, FieldValue], str | None] | None:
    """The fields and focus sealed to this person, or None when their key cannot open it (a
    key changed since, or a draft sealed to someone else)."""
    try:
        plain = unwrap_with_private_key(sealed, identity.x25519(), _info(identity.person.id))
    except InvalidTag:
        return None
    opened = json.loads(plain)
    return dict(opened["values"]), opened["focus"]
