"""The audit log in words: who did what to which case, as a person reads it.

An entry stores emails, ids and action codes (``assigned``, ``assignee=c537…``); people read
"Dana Example assigned SG-2026-0003 to Sam Example". :func:`describe` writes that sentence from
the entry, the case's reference and the people table, and keeps every raw field for a detail
view, so nothing the log holds is hidden, only put second. The desk's audit screen and the CLI
read the same words. Metadata only: entries never hold case content, and neither do these lines.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sgalert.clock import parse_iso
from sgalert.desk.views import NOBODY, Viewer, audit_log
from sgalert.records.audit import ENGINE, SYSTEM, AuditEntry
from sgalert.records.store import Store
from sgalert.routing.escalation import SYSTEM_ALERT_TEXT
from sgalert.rules.statutory import CLOCK_RULES, StatutoryClock


@dataclass(frozen=True, slots=True)
class Named:
    """One person as the log names them: by name, with the address for a detail view."""

    id: str
    name: str
    email: str


@dataclass(frozen=True, slots=True)
class People:
    """Everyone who ever had an account (removed people still appear in old entries)."""

    by_id: Mapping[str, Named]
    by_email: Mapping[str, Named]

    @classmethod
    def of(cls, people: list[Named]) -> People:
        return cls({p.id: p for p in people}, {p.email.lower(): p for p in people})

    def actor(self, actor: str) -> str:
        """An entry's actor in words: a person's name, the engine, or the address as written."""
        if actor == ENGINE:
            return "The engine"
        if actor == SYSTEM:
            return "sgalert"
        person = self.by_email.get(actor.lower())
        return person.name if person else actor

    def person(self, person_id: object) -> str:
        """A person named by id in an entry's detail; an unknown id is said to be one."""
        person = self.by_id.get(str(person_id))
        return person.name if person else "someone no longer known"

    def labelled(self, person_id: object) -> str:
        """``Name <email> (id)``: the detail view's full form."""
        person = self.by_id.get(str(person_id))
        return f"{person.name} <{person.email}> ({person.id})" if person else str(person_id)


@dataclass(frozen=True, slots=True)
class AuditLine:
    """One entry in words, with its raw fields (``details``) for whoever wants the ids."""

    entry: AuditEntry
    ref: str | None
    who: str  # the actor by name
    what: str  # the whole sentence, actor included
    details: tuple[tuple[str, str], ...]


# How a case's source and a person's role read in a sentence.
_SOURCES = {
    "encompass": "Operation Encompass",
    "whistle": "whistleblowing",
    "lesson": "lesson termination",
}
_ROLES = {
    "dsl": "DSL",
    "deputy": "deputy DSL",
    "head": "headteacher",
    "monitoring-officer": "monitoring officer",
    "chair": "chair of governors",
    "staff": "member of staff",
}

# Detail keys that hold a person's id.
_PERSON_KEYS = frozenset({"person", "assignee", "grantee"})


def _clock(kind: object) -> str:
    try:
        return CLOCK_RULES[StatutoryClock(str(kind))].wording
    except (ValueError, KeyError):
        return str(kind).replace("-", " ")


def _count(count: object, word: str, many: str | None = None) -> str:
    number = int(count) if isinstance(count, int | float | str) and str(count).isdigit() else 0
    return f"{number:,} {word if number == 1 else many or word + 's'}"


def _items(value: object) -> list[str]:
    """A list held in an entry's detail, as strings (anything else as no items)."""
    return [str(item) for item in value] if isinstance(value, list) else []


def _when(value: object) -> str:
    try:
        return parse_iso(str(value)).strftime("%a %d %b %H:%M UTC")
    except ValueError:
        return str(value)


def _sent_to(d: Mapping[str, object], p: People) -> str:
    """Who a page was sent to, and by which channel: a person by name, or a shared channel
    (a Teams channel is nobody's, so it has no person) by the name the config gives it.
    Entries written before ``shared`` was recorded had no person only on a shared channel
    or for a digest to a configured address; the shared channel is by far the likelier."""
    channel = d.get("channel", "?")
    person = d.get("person")
    if d.get("shared", person is None):
        return f"the shared channel {channel}"
    if person is None:
        return f"an address that is not a person's by {channel}"
    return f"{p.person(person)} by {channel}"


Phrase = Callable[[str, str, Mapping[str, object], People], str]

# Each action as a sentence: (who, the case's reference or "a case", the detail, people).
_PHRASES: dict[str, Phrase] = {
    "unlock": lambda who, ref, d, p: f"{who} unlocked their key",
    "unlock-failed": lambda who, ref, d, p: (
        f"{who} typed a wrong passphrase ({_count(d.get('in_a_row', 1), 'time')} in a row)"
    ),
    "unlock-refused": lambda who, ref, d, p: f"{who} was refused: wrong passphrase",
    "unlock-throttled": lambda who, ref, d, p: f"{who} was made to wait after wrong passphrases",
    "person-added": lambda who, ref, d, p: (
        f"{who} added {p.person(d.get('person'))} as"
        f" {_ROLES.get(str(d.get('role')), str(d.get('role', 'staff')))}"
    ),
    "membership-granted": lambda who, ref, d, p: (
        f"{who} approved {p.person(d.get('person'))} joining"
        f" {', '.join(_items(d.get('groups'))) or 'their groups'}"
    ),
    "person-removed": lambda who, ref, d, p: f"{who} removed {p.person(d.get('person'))}",
    "case-created": lambda who, ref, d, p: (
        f"{who} recorded a new {_SOURCES.get(str(d.get('source')), 'unknown source')} case {ref}"
    ),
    "duplicate-received": lambda who, ref, d, p: f"{who} received a repeat of {ref}",
    "case-read": lambda who, ref, d, p: (
        f"{who} read {ref}"
        + (" including the whistleblower's identity" if d.get("identity") is True else "")
    ),
    "acknowledged": lambda who, ref, d, p: (
        f"{who} acknowledged {ref}" + (" by replying to a page" if d.get("via") == "reply" else "")
    ),
    "ack-reply-late": lambda who, ref, d, p: (
        f"{who} replied to acknowledge {ref}, which was already {d.get('state', 'handled')}"
    ),
    "ack-reply-refused": lambda who, ref, d, p: f"{who} refused a reply acknowledging {ref}",
    "assigned": lambda who, ref, d, p: f"{who} assigned {ref} to {p.person(d.get('assignee'))}",
    "access-granted": lambda who, ref, d, p: f"{who} let {p.person(d.get('grantee'))} read {ref}",
    "access-revoked": lambda who, ref, d, p: (
        f"{who} took back {p.person(d.get('person'))}'s access to {ref}"
    ),
    "case-previewed": lambda who, ref, d, p: f"{who} glanced at {ref} in the queue's preview",
    "case-destroyed": lambda who, ref, d, p: (
        f"{who} destroyed {d.get('ref') or ref} at the end of its retention period"
    ),
    "legal-hold-placed": lambda who, ref, d, p: f"{who} put {ref} on hold: it is not destroyed",
    "legal-hold-released": lambda who, ref, d, p: f"{who} released the hold on {ref}",
    "original-read": lambda who, ref, d, p: f"{who} read the original message of {ref}",
    "group-key-signed": lambda who, ref, d, p: (
        f"{who} vouched for the key of {d.get('group', 'a group')} (version {d.get('version')})"
    ),
    "group-key-legacy": lambda who, ref, d, p: (
        f"{who} recorded the key of {d.get('group', 'a group')} (version {d.get('version')})"
        " that was in use before keys were signed"
    ),
    "signing-key-recorded": lambda who, ref, d, p: (
        f"{who} recorded {p.person(d.get('person'))}'s signing key"
    ),
    "person-key-recorded": lambda who, ref, d, p: (
        f"{who} recorded {p.person(d.get('person'))}'s keys"
    ),
    "person-key-refused": lambda who, ref, d, p: (
        f"{who} refused to seal to {p.person(d.get('person'))}: their stored key is not the one"
        " the audit log recorded"
    ),
    "note-added": lambda who, ref, d, p: (
        f"{who} recorded {ref} from a phone call"
        if d.get("kind") == "case-recorded"
        else f"{who} {'corrected a note on' if d.get('corrects') else 'added a note to'} {ref}"
    ),
    "decision-recorded": lambda who, ref, d, p: f"{who} recorded a decision on {ref}",
    "referred": lambda who, ref, d, p: f"{who} recorded a referral of {ref}",
    "closed": lambda who, ref, d, p: f"{who} closed {ref}",
    "clock-started": lambda who, ref, d, p: (
        f"{who} started the clock on {ref}: {_clock(d.get('clock'))}"
    ),
    "clock-met": lambda who, ref, d, p: (
        f"{who} met {_clock(d.get('clock'))} on {ref} by reading it"
        if d.get("via") == "read"
        else f"{who} recorded a deadline met on {ref}: {_clock(d.get('clock'))}"
    ),
    "refused": lambda who, ref, d, p: (
        f"{who} was refused ({str(d.get('action', 'an action')).replace('-', ' ')}) on {ref}"
    ),
    "attachment-exported": lambda who, ref, d, p: f"{who} saved an attachment of {ref}",
    "search-indexed": lambda who, ref, d, p: (
        f"{who} prepared search over {_count(d.get('cases', 0), 'case')} they can read"
    ),
    "child-file-viewed": lambda who, ref, d, p: (
        f"{who} viewed the child's file from {ref} ({_count(d.get('cases', 0), 'case')}"
        + (
            f", {_count(d['confirmed'], 'match', 'matches')} confirmed"
            if d.get("confirmed")
            else ""
        )
        + ")"
    ),
    "rota-cover-added": lambda who, ref, d, p: (
        f"{who} added a cover: {p.person(d.get('person'))} from {_when(d.get('from'))}"
        f" to {_when(d.get('to'))}"
    ),
    "rota-checked": lambda who, ref, d, p: (
        f"{who} checked the rota: {_count(d.get('gaps', 0), 'gap')} in the next 14 days"
    ),
    "escalation-step": lambda who, ref, d, p: (
        f"{who} paged {', '.join(p.person(r) for r in _items(d.get('recipients'))) or 'nobody'}"
        f" about {ref}"
    ),
    "notification-delivered": lambda who, ref, d, p: f"A page about {ref} reached {_sent_to(d, p)}",
    "notification-failed": lambda who, ref, d, p: f"A page about {ref} to {_sent_to(d, p)} failed",
    "notification-fallback": lambda who, ref, d, p: (
        f"A page about {ref} was sent again on another channel"
    ),
    "alert-raised": lambda who, ref, d, p: (
        f"System alert: {SYSTEM_ALERT_TEXT.get(str(d.get('kind')), str(d.get('kind')))}"
    ),
    "alert-cleared": lambda who, ref, d, p: (
        f"System alert cleared: {str(d.get('kind', '')).replace('-', ' ')}"
    ),
    "alert-paged": lambda who, ref, d, p: (
        f"{who} paged the people responsible about a {str(d.get('kind', '')).replace('-', ' ')}"
        " alert"
    ),
    "source-down": lambda who, ref, d, p: f"Mailbox {d.get('source', '?')} cannot be reached",
    "source-recovered": lambda who, ref, d, p: f"Mailbox {d.get('source', '?')} is reachable again",
    "engine-started": lambda who, ref, d, p: f"{who} started",
    "digest-queued": lambda who, ref, d, p: f"{who} queued the daily digest for {d.get('date')}",
    "backup-made": lambda who, ref, d, p: f"{who} made a backup",
    "store-created": lambda who, ref, d, p: f"{who} created this store",
    "retention-dry-run": lambda who, ref, d, p: f"{who} listed what retention would delete",
    "message-held": lambda who, ref, d, p: (
        f"A message in {d.get('source', '?')} could not be read and was set aside"
    ),
    "message-released": lambda who, ref, d, p: (
        f"{who} released a set-aside message in {d.get('source', '?')}"
    ),
    "message-quarantined": lambda who, ref, d, p: (
        f"A message in {d.get('source', '?')} could not be read nor set aside"
    ),
}


def describe(entry: AuditEntry, ref: str | None, people: People) -> AuditLine:
    """One entry in words. An action this module does not know is still said plainly
    ("Dana Example did something-new to SG-2026-0003") rather than hidden."""
    who = people.actor(entry.actor)
    case = ref or ("a case" if entry.case_id else "")
    phrase = _PHRASES.get(entry.action)
    if phrase is not None:
        what = phrase(who, case, entry.detail, people)
    else:
        target = f" ({case})" if case else ""
        what = f"{who}: {entry.action.replace('-', ' ')}{target}"
    details: list[tuple[str, str]] = [
        ("Entry", f"#{entry.seq}"),
        ("When", entry.at),
        ("Who", entry.actor),
        ("Action", entry.action),
    ]
    if entry.case_id:
        details.append(("Case", f"{ref} ({entry.case_id})" if ref else entry.case_id))
    for key, value in sorted(entry.detail.items()):
        if key in _PERSON_KEYS:
            shown = people.labelled(value)
        elif key == "recipients":
            shown = ", ".join(people.labelled(v) for v in _items(value))
        else:
            shown = str(value)
        details.append((key, shown))
    details.append(("Hash", entry.hash))
    return AuditLine(entry, ref, who, what, tuple(details))


async def audit_lines(
    store: Store, *, limit: int = 500, viewer: Viewer = NOBODY
) -> tuple[AuditLine, ...]:
    """The newest ``limit`` entries in words, newest first, leaving out those about a case
    ``viewer`` may not see (:func:`sgalert.desk.views.audit_log` decides which)."""
    rows = await audit_log(store, limit=limit, viewer=viewer)
    async with store.read() as db:
        cursor = await db.execute("SELECT id, name, email FROM people")
        people = People.of(
            [Named(str(r[0]), str(r[1]), str(r[2])) for r in await cursor.fetchall()]
        )
    return tuple(describe(row.entry, row.ref, people) for row in rows)
