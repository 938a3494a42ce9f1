"""The one exception tree of sgalert.

Every error the core raises on purpose derives from :class:`SgalertError`; the CLI prints its
message on one line and exits with its ``exit_code``. Messages name the thing that went wrong
(a file and key, a case reference, an email) and never carry case content or passphrases.

    SgalertError
    ├── InvalidInput           a value given on the command line or through the API is unusable
    ├── ConfigError            bad or missing sgalert.toml; names the file, the key and the fix
    ├── WorkspaceError         workspace missing, not initialised, or already initialised
    ├── StoreError             the database could not be opened or migrated
    │   ├── StoreUnwritable    its file or folder cannot be written (permissions, a read-only
    │   │                      disk): nothing is damaged, so no backup is the fix
    │   └── StoreGone          the file was deleted or replaced under a process that has it open
    ├── NotFound               no such case, person or group
    ├── AlreadyExists          a person with that email, or a file where a copy would go
    ├── WrongPassphrase        the passphrase does not unlock that person's keys
    ├── NotEntitled            the person may not read or act on that case (exit code 2)
    │   └── NoSuchCase         no case by that reference they may read (also a NotFound): a
    │                          missing case and one they may not read answer alike
    ├── IllegalTransition      the case is not in a state that allows the action
    ├── CaseDestroyed          the case was crypto-shredded under retention: only metadata is left
    ├── IntegrityError         a sealed blob failed authentication (tampered or moved)
    ├── NoEntitledReaders      nobody holding a key may read a new case, so it cannot be sealed
    ├── MembershipError        a group change that would lock everyone out, or is not allowed
    ├── ExportError            a decrypted copy could not be written where the person asked
    ├── OutputFailed           standard output could not be written (a full disk, closed)
    ├── DigestNotSent          a digest sent by hand reached nobody, or not everyone it was for
    └── AuditChainBroken       an audit entry's hash does not match (names the entry)
"""

from __future__ import annotations


class SgalertError(Exception):
    """Base of every error sgalert raises on purpose."""

    exit_code = 1


class InvalidInput(SgalertError):
    """A value the caller gave cannot be used (empty text, malformed email, short passphrase)."""


class ConfigError(SgalertError):
    """The configuration file is missing, malformed or holds an invalid value."""


class WorkspaceError(SgalertError):
    """The workspace directory is missing, unusable, or not initialised."""


class StoreError(SgalertError):
    """The case store could not be opened, migrated or written."""


class StoreUnwritable(StoreError):
    """The store or its folder cannot be written; the fix is the permissions or the disk."""


class StoreGone(StoreError):
    """The store's file was deleted or replaced while open: what is written now is lost."""


class NotFound(SgalertError):
    """No case, person or group matches what was asked for."""


class AlreadyExists(SgalertError):
    """Something with the same identity already exists."""


class WrongPassphrase(SgalertError):
    """The passphrase does not unlock the person's private keys."""


class UnlockThrottled(SgalertError):
    """Too many wrong passphrases for this person in a row: the next try must wait a little."""


class NotEntitled(SgalertError):
    """The person may not read or act on this case; the refusal is audited."""

    exit_code = 2


class NoSuchCase(NotEntitled, NotFound):
    """No case by that reference that the person may read. A missing case and one they may not
    read give this same message and exit code, so a guessed reference confirms nothing (the
    refusal is still audited)."""

    def __init__(self, message: str = "no such case, or you are not entitled to it") -> None:
        super().__init__(message)


class IllegalTransition(SgalertError):
    """The case's current state does not allow the requested action."""


class CaseDestroyed(SgalertError):
    """The case was destroyed under retention: its content is gone, its metadata kept."""


class IntegrityError(SgalertError):
    """A sealed blob failed authentication: it was altered or copied from elsewhere."""


class NoEntitledReaders(SgalertError):
    """No reader group for the case has a key yet, so sealing it would make it unreadable."""


class MembershipError(SgalertError):
    """A change to a group's members that is not allowed (for example removing the last one)."""


class ExportError(SgalertError):
    """A decrypted copy could not be written (no such folder, no permission, disk full). The
    message never names the path, which may hold a case's filename."""


class OutputFailed(SgalertError):
    """Standard output could not be written: a full disk, an I/O error, or it was closed."""


class DigestNotSent(SgalertError):
    """A digest sent by hand reached nobody, or not every recipient (it stays queued)."""


class AuditChainBroken(SgalertError):
    """An audit entry's stored hash does not match its recomputed hash."""

    def __init__(self, seq: int, message: str) -> None:
        super().__init__(message)
        self.seq = seq
