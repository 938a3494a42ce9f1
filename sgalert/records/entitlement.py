"""Who can read a case now: the one query the engine pages by.

A person is entitled to a case when its content key is wrapped to them directly (a grant) or to
a batch key sealed to a group version of which they are an active member, and they have not been
removed. Only entitled people are ever paged about a case, so a page never tells someone of a
case they cannot open. The access policy (:mod:`sgalert.rules.access`) is applied on top of the
keys: the head is never entitled to a case flagged about-head, even if a key was wrapped to them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from sgalert.model import KeyName
from sgalert.rules.access import may_hold


@dataclass(frozen=True, slots=True)
class Person:
    """A current member of staff, as the engine sees them: no keys, no personal data."""

    id: str
    email: str
    role: str


_ENTITLED_SQL = (
    "SELECT DISTINCT p.id, p.email, p.role FROM key_wraps w"
    " JOIN batch_keys b ON b.batch_id = w.recipient AND w.recipient_kind = 'batch'"
    " JOIN group_key_seals s ON s.group_name = b.group_name AND s.version = b.version"
    " JOIN group_members m ON m.group_name = s.group_name AND m.person_id = s.person_id"
    "   AND m.state = 'active'"
    " JOIN people p ON p.id = s.person_id AND p.removed_at IS NULL"
    " WHERE w.case_id = ? AND w.key_name = ?"
    " UNION SELECT p.id, p.email, p.role FROM key_wraps w JOIN people p ON p.id = w.recipient"
    " WHERE w.case_id = ? AND w.recipient_kind = 'person' AND w.key_name = ?"
    " AND p.removed_at IS NULL"
)


def entitled_people(conn: sqlite3.Connection, case_id: str) -> dict[str, Person]:
    """Current people who can read the case's content, by lower-cased email."""
    key = KeyName.CONTENT.value
    rows = conn.execute(_ENTITLED_SQL, (case_id, key, case_id, key)).fetchall()
    found = conn.execute("SELECT flags FROM cases WHERE id = ?", (case_id,)).fetchone()
    flags = json.loads(found[0]) if found else []
    return {
        str(r[1]).lower(): Person(str(r[0]), str(r[1]), str(r[2]))
        for r in rows
        if may_hold(str(r[2]), flags)
    }


def people_in_roles(conn: sqlite3.Connection, roles: Iterable[str]) -> list[tuple[str, str, str]]:
    """Current members of staff in these roles, by email: (id, email, role). Who is told of a
    system alert, whichever case (if any) it is about."""
    wanted = list(roles)
    rows = conn.execute(
        f"SELECT id, email, role FROM people WHERE removed_at IS NULL"
        f" AND role IN ({','.join('?' * len(wanted))}) ORDER BY email",
        wanted,
    ).fetchall()
    return [(str(pid), str(email), str(role)) for pid, email, role in rows]


def may_read(conn: sqlite3.Connection, person_id: str, case_id: str) -> bool:
    """Whether this current member of staff can read the case: asked before giving it to them."""
    return any(p.id == person_id for p in entitled_people(conn, case_id).values())


# Whether the person ``:viewer`` holds case ``c``'s content key: wrapped to them directly (a
# grant) or to a batch key sealed to a group version of which they are an active member. For a
# query over ``cases c`` with a named ``:viewer`` parameter (the desk's metadata views). The
# batches the viewer can open are an uncorrelated subquery, which SQLite builds once per query;
# each case then seeks its few wraps by the table's key (a correlated form re-ran the joins per
# wrap: the desk's tabs took 150 ms at 30,000 cases).
READS_CASE_SQL = (
    "EXISTS (SELECT 1 FROM key_wraps rw WHERE rw.case_id = c.id AND rw.key_name = 'content'"
    " AND ((rw.recipient_kind = 'person' AND rw.recipient = :viewer)"
    " OR (rw.recipient_kind = 'batch' AND rw.recipient IN (SELECT rb.batch_id FROM batch_keys rb"
    " JOIN group_key_seals rs ON rs.group_name = rb.group_name AND rs.version = rb.version"
    " JOIN group_members rm ON rm.group_name = rs.group_name AND rm.person_id = rs.person_id"
    "   AND rm.state = 'active'"
    " WHERE rs.person_id = :viewer))))"
)
