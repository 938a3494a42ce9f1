"""Who may do what with a case: the access policy in one place.

Pure decisions on plaintext metadata (a person's role, a case's source and flags); whether a
person actually holds a case's key is the store's question, asked by the desk
(:mod:`sgalert.desk.access`) and by routing (:mod:`sgalert.records.entitlement`), which then ask
this module whether the policy allows it.

- **Readers**: the groups a new case is sealed to (:func:`sgalert.model.readers_for`). An
  allegation flagged ``about-head`` is sealed to the chair and the monitoring officer; any other
  case flagged so keeps its readers, the chair taking the head's place.
- **The head and about-head**: the headteacher is never a reader, grantee, assignee or page
  recipient of a case flagged about-head, and never sees that one exists [school 2.1.1, 4.2].
- **Granting**: a whistleblowing case is granted by the monitoring officer only (an investigator
  they appoint may not pass it on) [HMS]; any other case by anyone who can read it (never to
  the head if it is about them). Revoking follows the same rule.
- **The reporter's identity compartment**: sealed apart; it goes with a grant only when the
  monitoring officer asks for it explicitly, and only on a whistleblowing case [HMS].
- **Metadata**: a whistleblowing case or an allegation about the head is confidential: it appears
  in lists, queues and counts only to people who can read it.
- **System alerts**: one about a case (a page that could not be delivered) is listed only to
  people who may see that case; one raised while paging a confidential case names no case, but
  its policy tells what kind it was, so it is listed only to the monitoring officer.
- **The audit log**: the DSLs and the headteacher [school 1.13.0], each seeing only the entries
  about cases they may see.
"""

from __future__ import annotations

from collections.abc import Iterable

from sgalert.model import Flag, Role, Source

# Who may open the audit log (the desk's rule, made the core's).
AUDIT_LOG_READERS = frozenset({Role.DSL, Role.DEPUTY, Role.HEAD})

# Who may grant (and revoke) access to a whistleblowing case, about the head or not.
WHISTLE_GRANTORS = frozenset({Role.MONITORING_OFFICER})


def about_head(flags: Iterable[str]) -> bool:
    """Whether the case is flagged as being about the headteacher."""
    return Flag.ABOUT_HEAD in set(flags)


def confidential(source: Source | str, flags: Iterable[str]) -> bool:
    """A whistleblowing case or an allegation about the head: its very existence is told only
    to those who can read it, and its pages never go to a shared channel."""
    return source == Source.WHISTLE or about_head(flags)


def barred(role: Role | str, flags: Iterable[str]) -> bool:
    """The head and a case about the head: never a reader, grantee, assignee or page
    recipient, whatever any key or configuration says."""
    return role == Role.HEAD and about_head(flags)


def may_grant(role: Role | str, source: Source | str, flags: Iterable[str]) -> bool:
    """Whether a person of this role, who can read the case, may let someone else read it (or
    stop someone reading it)."""
    if barred(role, flags):
        return False
    if source == Source.WHISTLE:
        return role in WHISTLE_GRANTORS
    return True


def may_grant_identity(role: Role | str, source: Source | str) -> bool:
    """Whether the reporter's identity may go with a grant: the monitoring officer's explicit
    choice, on a whistleblowing case only."""
    return source == Source.WHISTLE and role in WHISTLE_GRANTORS


def may_hold(role: Role | str, flags: Iterable[str]) -> bool:
    """Whether a person of this role may be given the case at all (granted, assigned, paged)."""
    return not barred(role, flags)


def may_see(
    role: Role | str | None, source: Source | str, flags: Iterable[str], *, reads: bool
) -> bool:
    """Whether the case appears in this person's lists, queues and counts. ``reads``: they hold
    its key. ``role`` None is somebody not identified, who sees no confidential case."""
    if role is not None and barred(role, flags):
        return False
    return not confidential(source, flags) or (role is not None and reads)


def may_know_destroyed(role: Role | str | None, source: Source | str, flags: Iterable[str]) -> bool:
    """Whether a person may be told that retention destroyed this case (its keys are gone, so
    nobody can read it any more): anyone, for a case of an open kind; a confidential one only
    the monitoring officer, who answers for it [HMS]. Anyone else is answered as for a case
    that does not exist, so a guessed reference confirms nothing."""
    if role is not None and barred(role, flags):
        return False
    return not confidential(source, flags) or role in WHISTLE_GRANTORS


def may_see_confidential_alert(role: Role | str | None) -> bool:
    """Whether a system alert raised while paging a confidential case (its policy named nobody
    or no channel) appears in this person's status and banners: the monitoring officer's, who
    answers for whistleblowing and allegations about the head [HMS]."""
    return role in WHISTLE_GRANTORS


def may_read_audit_log(role: Role | str | None) -> bool:
    """Whether this person may open the audit log."""
    return role in AUDIT_LOG_READERS
