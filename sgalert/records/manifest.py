"""A case's manifest: one hash over everything its sealed record holds, kept in the audit chain.

Triggers refuse to delete or change a sealed field or chronology entry, but anyone who can write
the store file can drop a trigger, or edit it with a tool that never runs one. So every write to
a case's record also writes, into the hash-chained audit entry for that write, the manifest of
the record as it now stands: a SHA-256 over the sorted list of its sealed fields (name, key name,
SHA-256 of the ciphertext) and chronology entries (id, time, author, kind, what it corrects,
SHA-256 of the ciphertext). ``audit verify`` recomputes every case's manifest from the rows and
compares it with the newest one in the chain: a row removed, altered or added outside sgalert
shows as one line naming the case reference, never its content.

Code that legitimately rewrites a case's sealed rows (a data key rotated, a record shredded at the
end of retention) must put the new manifest (:func:`case_manifest_now`) in the audit entry of
that write under :data:`MANIFEST`, or ``audit verify`` reports the case.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from sgalert.records.crypto import canonical_json

#: The key under which an audit entry's ``detail`` carries the case's manifest.
MANIFEST = "manifest"
#: The action of the entries an upgrade writes for the cases that existed before manifests.
RECORDED = "manifest-recorded"

FieldRow = tuple[str, str, bytes]  # field, key name, ciphertext
EntryRow = tuple[str, str, str, str, str | None, bytes]  # id, at, author, kind, corrects, blob


def _sha(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def manifest_of(fields: Iterable[FieldRow], entries: Iterable[EntryRow] = ()) -> str:
    """The manifest of a record holding these sealed fields and chronology entries."""
    items: list[list[str]] = [["field", name, key, _sha(blob)] for name, key, blob in fields]
    items += [
        ["entry", entry_id, at, author, kind, corrects or "", _sha(blob)]
        for entry_id, at, author, kind, corrects, blob in entries
    ]
    return hashlib.sha256(canonical_json(sorted(items))).hexdigest()


#: The manifest of a case with no sealed rows at all.
EMPTY = manifest_of(())

_FIELDS = "SELECT case_id, field, key_name, blob FROM sealed_fields"
_ENTRIES = "SELECT case_id, id, at, author_id, kind, corrects, blob FROM chronology"


def case_manifest_now(conn: sqlite3.Connection, case_id: str) -> str:
    """The manifest of one case's record as the store holds it now."""
    fields = [
        (str(r[1]), str(r[2]), bytes(r[3]))
        for r in conn.execute(f"{_FIELDS} WHERE case_id = ?", (case_id,))
    ]
    entries = [
        (str(r[1]), str(r[2]), str(r[3]), str(r[4]), r[5], bytes(r[6]))
        for r in conn.execute(f"{_ENTRIES} WHERE case_id = ?", (case_id,))
    ]
    return manifest_of(fields, entries)


def all_manifests_now(conn: sqlite3.Connection) -> dict[str, str]:
    """Every case's manifest from its rows, the blobs read one at a time (they may be large)."""
    fields: dict[str, list[FieldRow]] = {}
    entries: dict[str, list[EntryRow]] = {}
    for case_id, name, key, blob in conn.execute(_FIELDS):
        fields.setdefault(str(case_id), []).append((str(name), str(key), bytes(blob)))
    for case_id, entry_id, at, author, kind, corrects, blob in conn.execute(_ENTRIES):
        entries.setdefault(str(case_id), []).append(
            (str(entry_id), str(at), str(author), str(kind), corrects, bytes(blob))
        )
    return {
        case_id: manifest_of(fields.get(case_id, ()), entries.get(case_id, ()))
        for case_id in fields.keys() | entries.keys()
    }


def recorded_manifests_now(
    conn: sqlite3.Connection, case_id: str | None = None
) -> dict[str, tuple[int, str]]:
    """The newest manifest the audit chain holds for each case: case id -> (entry, manifest)."""
    sql = (
        "SELECT seq, case_id, json_extract(detail, '$.manifest') FROM audit"
        " WHERE case_id IS NOT NULL AND detail LIKE '%\"manifest\":%'"
    )
    params: tuple[str, ...] = ()
    if case_id is not None:
        sql += " AND case_id = ?"
        params = (case_id,)
    recorded: dict[str, tuple[int, str]] = {}
    for seq, case, value in conn.execute(sql + " ORDER BY seq", params):
        if isinstance(value, str):
            recorded[str(case)] = (int(seq), value)
    return recorded


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A case whose record is not what the audit chain says it is."""

    case_id: str
    ref: str
    seq: int  # the audit entry holding the manifest it fails; 0 when there is none

    def line(self) -> str:
        if self.seq == 0:
            return (
                f"case {self.ref}: holds sealed fields or chronology entries that no audit entry"
                " vouches for: they were added outside sgalert"
            )
        return (
            f"case {self.ref}: its sealed fields and chronology no longer match the manifest in"
            f" audit entry {self.seq}: a row was removed, altered or added outside sgalert"
        )


def _ref(conn: sqlite3.Connection, case_id: str) -> str:
    row = conn.execute("SELECT ref FROM cases WHERE id = ?", (case_id,)).fetchone()
    if row is not None:
        return str(row[0])
    row = conn.execute(
        "SELECT json_extract(detail, '$.ref') FROM audit WHERE case_id = ?"
        " AND action = 'case-created' ORDER BY seq LIMIT 1",
        (case_id,),
    ).fetchone()
    return str(row[0]) if row is not None and row[0] is not None else case_id


def check_now(conn: sqlite3.Connection, case_id: str | None = None) -> list[Mismatch]:
    """Every case (or the one given) whose rows do not match its newest recorded manifest."""
    recorded = recorded_manifests_now(conn, case_id)
    if case_id is None:
        actual = all_manifests_now(conn)
    else:
        actual = {case_id: case_manifest_now(conn, case_id)}
    found: list[Mismatch] = []
    for case in sorted(recorded.keys() | actual.keys()):
        current = actual.get(case, EMPTY)
        seq, manifest = recorded.get(case, (0, ""))
        if seq == 0 and current == EMPTY:
            continue
        if current != manifest:
            found.append(Mismatch(case, _ref(conn, case), seq))
    return found


def baseline_now(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    """(case id, manifest) for every case, as the upgrade that introduces manifests records."""
    actual = all_manifests_now(conn)
    ids = [str(r[0]) for r in conn.execute("SELECT id FROM cases ORDER BY received_at, id")]
    return [(case_id, actual.get(case_id, EMPTY)) for case_id in ids]


__all__ = [
    "EMPTY",
    "MANIFEST",
    "RECORDED",
    "Mismatch",
    "all_manifests_now",
    "baseline_now",
    "case_manifest_now",
    "check_now",
    "manifest_of",
    "recorded_manifests_now",
]
