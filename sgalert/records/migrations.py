"""Numbered schema migrations. Append new ones; never edit one that has shipped.

``PRAGMA user_version`` records the last applied number. Each migration runs in its own
transaction, so a crash leaves the store at a whole version. A migration that must compute
something (hashes, audit entries) has a Python step in :data:`STEPS`, run in that transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE people (
            id            TEXT PRIMARY KEY,
            name          TEXT NOT NULL,
            email         TEXT NOT NULL UNIQUE COLLATE NOCASE,
            role          TEXT NOT NULL,
            x25519_public BLOB NOT NULL,
            ed25519_public BLOB NOT NULL,
            -- AES-256-GCM of the two raw private keys under an Argon2id-derived key
            wrapped_private BLOB NOT NULL,
            kdf           TEXT NOT NULL,
            created_at    TEXT NOT NULL,
            removed_at    TEXT
        );

        -- A role or compartment; its key pairs are versioned so removing a member rotates it.
        CREATE TABLE groups (
            name            TEXT PRIMARY KEY,
            kind            TEXT NOT NULL CHECK (kind IN ('role', 'compartment')),
            current_version INTEGER NOT NULL
        );
        CREATE TABLE group_keys (
            group_name TEXT NOT NULL REFERENCES groups(name),
            version    INTEGER NOT NULL,
            public_key BLOB NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (group_name, version)
        );
        CREATE TABLE group_members (
            group_name TEXT NOT NULL REFERENCES groups(name),
            person_id  TEXT NOT NULL REFERENCES people(id),
            state      TEXT NOT NULL CHECK (state IN ('active', 'pending')),
            added_at   TEXT NOT NULL,
            PRIMARY KEY (group_name, person_id)
        );
        -- The private half of each group key version, sealed (HPKE) to each member.
        CREATE TABLE group_key_seals (
            group_name TEXT NOT NULL,
            version    INTEGER NOT NULL,
            person_id  TEXT NOT NULL REFERENCES people(id),
            sealed     BLOB NOT NULL,
            PRIMARY KEY (group_name, version, person_id),
            FOREIGN KEY (group_name, version) REFERENCES group_keys(group_name, version)
        );

        CREATE TABLE ref_counters (
            year INTEGER PRIMARY KEY,
            last INTEGER NOT NULL
        );

        -- Plaintext metadata only: nothing here may identify a child, a reporter or a concern.
        CREATE TABLE cases (
            id              TEXT PRIMARY KEY,
            ref             TEXT NOT NULL UNIQUE,
            source          TEXT NOT NULL,
            origin          TEXT NOT NULL,
            received_at     TEXT NOT NULL,
            created_at      TEXT NOT NULL,
            updated_at      TEXT NOT NULL,
            state           TEXT NOT NULL CHECK (state IN ('new', 'acknowledged', 'closed')),
            flags           TEXT NOT NULL DEFAULT '[]',
            assignee_id     TEXT REFERENCES people(id),
            acknowledged_at TEXT,
            acknowledged_by TEXT REFERENCES people(id),
            closed_at       TEXT,
            closed_by       TEXT REFERENCES people(id)
        );
        CREATE INDEX cases_by_state ON cases(state, received_at);
        CREATE INDEX cases_by_received ON cases(received_at);

        -- A batch key, wrapped (HPKE) to each group key version entitled to the batch's cases.
        CREATE TABLE batch_keys (
            batch_id   TEXT NOT NULL,
            group_name TEXT NOT NULL,
            version    INTEGER NOT NULL,
            wrapped    BLOB NOT NULL,
            PRIMARY KEY (batch_id, group_name, version),
            FOREIGN KEY (group_name, version) REFERENCES group_keys(group_name, version)
        );

        -- Each data key of a case: AES-GCM under a batch key, or HPKE to one person (a grant).
        CREATE TABLE key_wraps (
            case_id        TEXT NOT NULL REFERENCES cases(id),
            key_name       TEXT NOT NULL,
            recipient_kind TEXT NOT NULL CHECK (recipient_kind IN ('batch', 'person')),
            recipient      TEXT NOT NULL,
            version        INTEGER NOT NULL,
            wrapped        BLOB NOT NULL,
            PRIMARY KEY (case_id, key_name, recipient_kind, recipient, version)
        );
        CREATE INDEX key_wraps_by_recipient ON key_wraps(recipient_kind, recipient);

        -- Sealed content: AES-256-GCM, associated data binding case id and field name.
        CREATE TABLE sealed_fields (
            case_id  TEXT NOT NULL REFERENCES cases(id),
            field    TEXT NOT NULL,
            key_name TEXT NOT NULL,
            blob     BLOB NOT NULL,
            PRIMARY KEY (case_id, field)
        );

        -- The record: entries are signed by their author, sealed, and never edited;
        -- a correction is a new entry that names the one it corrects.
        CREATE TABLE chronology (
            id        TEXT PRIMARY KEY,
            case_id   TEXT NOT NULL REFERENCES cases(id),
            at        TEXT NOT NULL,
            author_id TEXT NOT NULL REFERENCES people(id),
            kind      TEXT NOT NULL,
            corrects  TEXT REFERENCES chronology(id),
            blob      BLOB NOT NULL
        );
        CREATE INDEX chronology_by_case ON chronology(case_id, at);
        CREATE TRIGGER chronology_no_update BEFORE UPDATE ON chronology
        BEGIN SELECT RAISE(ABORT, 'chronology entries are never edited; add a correction'); END;

        -- Statutory and review clocks; the engine escalates on them.
        CREATE TABLE clocks (
            case_id TEXT NOT NULL REFERENCES cases(id),
            kind    TEXT NOT NULL,
            due_at  TEXT NOT NULL,
            met_at  TEXT,
            PRIMARY KEY (case_id, kind)
        );
        CREATE INDEX clocks_open_by_due ON clocks(due_at) WHERE met_at IS NULL;

        -- Append-only, hash-chained audit log. It never holds case content.
        CREATE TABLE audit (
            seq       INTEGER PRIMARY KEY,
            at        TEXT NOT NULL,
            actor     TEXT NOT NULL,
            action    TEXT NOT NULL,
            case_id   TEXT,
            detail    TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash      TEXT NOT NULL
        );
        CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        """,
    ),
)

MIGRATIONS += (
    (
        2,
        """
        -- Ingest: exactly one case per message, whatever the mailbox or crash.
        ALTER TABLE cases ADD COLUMN source_name TEXT;
        ALTER TABLE cases ADD COLUMN content_sha256 TEXT;
        ALTER TABLE cases ADD COLUMN message_id_sha256 TEXT;
        ALTER TABLE cases ADD COLUMN duplicate_of TEXT REFERENCES cases(id);
        CREATE UNIQUE INDEX cases_by_content ON cases(content_sha256)
            WHERE content_sha256 IS NOT NULL;
        CREATE INDEX cases_by_message_id ON cases(message_id_sha256)
            WHERE message_id_sha256 IS NOT NULL;

        -- The mailbox's own key for a message: (mailbox, UIDVALIDITY, UID) or Graph's id.
        CREATE TABLE mailbox_receipts (
            idempotency_key TEXT PRIMARY KEY,
            case_id         TEXT NOT NULL REFERENCES cases(id),
            source_name     TEXT NOT NULL,
            received_at     TEXT NOT NULL
        );

        -- Where each watcher has got to (UIDVALIDITY and last UID, a delta link, …),
        -- written in the same transaction as the cases it covers.
        CREATE TABLE inbox_checkpoints (
            source_name TEXT PRIMARY KEY,
            state       TEXT NOT NULL,
            updated_at  TEXT NOT NULL
        );

        -- Alerts about sgalert itself (a mailbox unreachable, …): silence must not look
        -- like safety. The engine notifies the DSL team of every open one.
        CREATE TABLE system_alerts (
            id          INTEGER PRIMARY KEY,
            kind        TEXT NOT NULL,
            source_name TEXT NOT NULL,
            raised_at   TEXT NOT NULL,
            detail      TEXT NOT NULL,
            cleared_at  TEXT
        );
        CREATE UNIQUE INDEX system_alerts_open ON system_alerts(kind, source_name)
            WHERE cleared_at IS NULL;
        """,
    ),
)

MIGRATIONS += (
    (
        3,
        """
        -- Dated rota overrides: "the deputy covers 24 to 26 November".
        CREATE TABLE rota_covers (
            id           INTEGER PRIMARY KEY,
            person_id    TEXT NOT NULL REFERENCES people(id),
            starts_at    TEXT NOT NULL,
            ends_at      TEXT NOT NULL,
            created_by   TEXT NOT NULL,
            created_at   TEXT NOT NULL,
            cancelled_at TEXT,
            CHECK (ends_at > starts_at)
        );
        CREATE INDEX rota_covers_by_end ON rota_covers(ends_at) WHERE cancelled_at IS NULL;
        """,
    ),
)

MIGRATIONS += (
    (
        4,
        """
        -- Durable timers: a restart resumes every clock. Fired or cancelled, never deleted.
        CREATE TABLE timers (
            id           INTEGER PRIMARY KEY,
            case_id      TEXT REFERENCES cases(id),
            kind         TEXT NOT NULL,
            step         INTEGER NOT NULL DEFAULT 0,
            due_at       TEXT NOT NULL,
            created_at   TEXT NOT NULL,
            fired_at     TEXT,
            cancelled_at TEXT
        );
        CREATE INDEX timers_pending ON timers(due_at)
            WHERE fired_at IS NULL AND cancelled_at IS NULL;
        CREATE INDEX timers_by_case ON timers(case_id);

        -- Notifications to send, written in the same transaction as the decision to send them.
        CREATE TABLE outbox (
            id              INTEGER PRIMARY KEY,
            idempotency_key TEXT NOT NULL UNIQUE,
            case_id         TEXT REFERENCES cases(id),
            timer_id        INTEGER REFERENCES timers(id),
            channel         TEXT NOT NULL,
            recipient       TEXT NOT NULL,
            person_id       TEXT REFERENCES people(id),
            payload         TEXT NOT NULL,
            state           TEXT NOT NULL CHECK (state IN
                                ('pending', 'sending', 'delivered', 'failed', 'superseded')),
            attempts        INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            claimed_until   TEXT,
            last_error      TEXT,
            fallback_of     INTEGER REFERENCES outbox(id),
            created_at      TEXT NOT NULL,
            delivered_at    TEXT,
            receipt         TEXT
        );
        CREATE INDEX outbox_due ON outbox(next_attempt_at) WHERE state = 'pending';
        CREATE INDEX outbox_by_case ON outbox(case_id);

        -- Single-use acknowledgement tokens carried by notification emails (hashes only).
        CREATE TABLE ack_tokens (
            token_sha256 TEXT PRIMARY KEY,
            case_id      TEXT NOT NULL REFERENCES cases(id),
            person_id    TEXT NOT NULL REFERENCES people(id),
            outbox_id    INTEGER REFERENCES outbox(id),
            created_at   TEXT NOT NULL,
            expires_at   TEXT NOT NULL,
            used_at      TEXT
        );

        -- One engine drives the store at a time; the heartbeat tells the TUI it is alive.
        CREATE TABLE engine_lease (
            id           INTEGER PRIMARY KEY CHECK (id = 1),
            holder       TEXT NOT NULL,
            expires_at   TEXT NOT NULL,
            heartbeat_at TEXT NOT NULL
        );
        """,
    ),
)

MIGRATIONS += (
    (
        5,
        """
        -- When the DSL team was paged about a system alert (NULL: not yet).
        ALTER TABLE system_alerts ADD COLUMN paged_at TEXT;

        -- Daily jobs run once per local day, even across restarts.
        CREATE TABLE daily_jobs (
            name       TEXT PRIMARY KEY,
            last_day   TEXT NOT NULL,
            last_run_at TEXT NOT NULL
        );
        """,
    ),
)

MIGRATIONS += (
    (
        6,
        """
        -- A case's history (case view, child file, new-activity checks) without reading the
        -- whole log: it grows by several entries per case, for ever.
        CREATE INDEX audit_by_case ON audit(case_id, seq);
        """,
    ),
)

MIGRATIONS += (
    (
        7,
        """
        -- Tries at turning a mailbox message into a case, counted before each try, so a message
        -- that keeps failing (or keeps crashing the process) is quarantined after a bounded
        -- number, never retried for ever. The row goes in the transaction that stores the
        -- message's case. ``held_at`` is set when even quarantine failed: the message is left
        -- unread in its mailbox, skipped, and listed by ``sgalert status`` until released.
        CREATE TABLE ingest_tries (
            idempotency_key TEXT PRIMARY KEY,
            source_name     TEXT NOT NULL,
            tries           INTEGER NOT NULL,
            error           TEXT,
            first_tried_at  TEXT NOT NULL,
            last_tried_at   TEXT NOT NULL,
            held_at         TEXT
        );
        CREATE INDEX ingest_tries_held ON ingest_tries(held_at) WHERE held_at IS NOT NULL;
        """,
    ),
)

MIGRATIONS += (
    (
        8,
        """
        -- Wrong passphrases in a row, per person, so guessing is slowed across processes and
        -- restarts; cleared by the next right one.
        CREATE TABLE unlock_failures (
            person_id    TEXT PRIMARY KEY REFERENCES people(id),
            failures     INTEGER NOT NULL,
            last_failed_at TEXT NOT NULL
        );
        """,
    ),
)

MIGRATIONS += (
    (
        9,
        """
        -- A case's record is only ever added to: a decision or a sealed field that vanished
        -- would leave no gap anyone could see. (Crypto-shredding at the end of retention will
        -- replace these with triggers that allow it for expired cases only.)
        CREATE TRIGGER chronology_no_delete BEFORE DELETE ON chronology
        BEGIN SELECT RAISE(ABORT, 'chronology entries are never deleted; add a correction'); END;
        CREATE TRIGGER sealed_fields_no_update BEFORE UPDATE ON sealed_fields
        BEGIN SELECT RAISE(ABORT, 'sealed fields are never changed'); END;
        CREATE TRIGGER sealed_fields_no_delete BEFORE DELETE ON sealed_fields
        BEGIN SELECT RAISE(ABORT, 'sealed fields are never deleted'); END;
        """,
    ),
)

MIGRATIONS += (
    (
        10,
        """
        -- Group public keys are signed by the person who created or rotated the group, so a key
        -- swapped in the store is refused rather than sealed to. Keys from before this version
        -- are unsigned: their public halves are written into the audit log by the step below
        -- and accepted as "legacy, unsigned" until `sgalert keys sign` signs them.
        ALTER TABLE group_keys ADD COLUMN signer_id TEXT REFERENCES people(id);
        ALTER TABLE group_keys ADD COLUMN signature BLOB;
        CREATE TRIGGER group_keys_no_swap BEFORE UPDATE OF group_name, version, public_key
        ON group_keys
        BEGIN SELECT RAISE(ABORT, 'a group key is never changed; rotate the group instead'); END;
        -- The few audit entries the keyring checks each key against (see personkeys.TRUST_ACTIONS).
        CREATE INDEX audit_trust ON audit(action)
            WHERE action IN ('person-added', 'signing-key-recorded', 'group-key-legacy');
        """,
    ),
)


MIGRATIONS += (
    (
        11,
        """
        -- Retention (docs/retention.md). A destroyed case keeps its row (reference, source, times,
        -- state, flags: what the counts need) and the day it was crypto-shredded; once set, never
        -- unset. Its data keys and sealed rows are then deleted in the same transaction.
        ALTER TABLE cases ADD COLUMN destroyed_at TEXT;

        -- Legal holds: a held case is never destroyed. The reason is a signed, sealed decision
        -- in the case's record (entry_id); only who and when are plaintext here.
        CREATE TABLE legal_holds (
            id          INTEGER PRIMARY KEY,
            case_id     TEXT NOT NULL REFERENCES cases(id),
            placed_at   TEXT NOT NULL,
            placed_by   TEXT NOT NULL REFERENCES people(id),
            entry_id    TEXT NOT NULL,
            released_at TEXT,
            released_by TEXT REFERENCES people(id),
            released_entry_id TEXT
        );
        CREATE UNIQUE INDEX legal_holds_active ON legal_holds(case_id) WHERE released_at IS NULL;

        CREATE TRIGGER cases_destroyed_is_final BEFORE UPDATE OF destroyed_at ON cases
        WHEN OLD.destroyed_at IS NOT NULL
        BEGIN SELECT RAISE(ABORT, 'a destroyed case stays destroyed'); END;
        CREATE TRIGGER cases_held_not_destroyed BEFORE UPDATE OF destroyed_at ON cases
        WHEN NEW.destroyed_at IS NOT NULL AND EXISTS (
            SELECT 1 FROM legal_holds WHERE case_id = NEW.id AND released_at IS NULL)
        BEGIN SELECT RAISE(ABORT, 'a case under a legal hold is never destroyed'); END;

        -- Crypto-shredding is the one sanctioned deletion of a record: allowed only for a case
        -- already marked destroyed (in the same transaction, with its audit entry).
        DROP TRIGGER chronology_no_delete;
        CREATE TRIGGER chronology_no_delete BEFORE DELETE ON chronology
        WHEN (SELECT destroyed_at FROM cases WHERE id = OLD.case_id) IS NULL
        BEGIN SELECT RAISE(ABORT, 'chronology entries are never deleted; add a correction'); END;
        DROP TRIGGER sealed_fields_no_delete;
        CREATE TRIGGER sealed_fields_no_delete BEFORE DELETE ON sealed_fields
        WHEN (SELECT destroyed_at FROM cases WHERE id = OLD.case_id) IS NULL
        BEGIN SELECT RAISE(ABORT, 'sealed fields are never deleted'); END;
        -- Nothing new is sealed into a destroyed case.
        CREATE TRIGGER chronology_not_after_destroyed BEFORE INSERT ON chronology
        WHEN (SELECT destroyed_at FROM cases WHERE id = NEW.case_id) IS NOT NULL
        BEGIN SELECT RAISE(ABORT, 'the case was destroyed under retention'); END;
        CREATE TRIGGER sealed_fields_not_after_destroyed BEFORE INSERT ON sealed_fields
        WHEN (SELECT destroyed_at FROM cases WHERE id = NEW.case_id) IS NOT NULL
        BEGIN SELECT RAISE(ABORT, 'the case was destroyed under retention'); END;
        CREATE TRIGGER key_wraps_not_after_destroyed BEFORE INSERT ON key_wraps
        WHEN (SELECT destroyed_at FROM cases WHERE id = NEW.case_id) IS NOT NULL
        BEGIN SELECT RAISE(ABORT, 'the case was destroyed under retention'); END;
        """,
    ),
)


MIGRATIONS += (
    (
        12,
        """
        -- A person's public key (what grants and group keys are sealed to) is never changed, and
        -- is checked against the one the audit log recorded before anything is sealed to it. The
        -- keys of the people already here are recorded by the step below.
        CREATE TRIGGER people_keys_no_swap BEFORE UPDATE OF x25519_public, ed25519_public
        ON people
        BEGIN SELECT RAISE(ABORT, 'the keys of a person are never changed'); END;
        DROP INDEX audit_trust;
        CREATE INDEX audit_trust ON audit(action) WHERE action IN
            ('person-added', 'signing-key-recorded', 'group-key-legacy', 'person-key-recorded');
        """,
    ),
)


MIGRATIONS += (
    (
        13,
        """
        -- Which batches a person can open (the desk's "cases you can read", every query): looked
        -- up by group key version. Without it SQLite built a throwaway index over every batch
        -- key on each query, a tenth of a second at 100,000 cases.
        CREATE INDEX batch_keys_by_group ON batch_keys(group_name, version, batch_id);
        """,
    ),
)


def _trust_baseline(conn: sqlite3.Connection) -> None:
    """Migration 10's step: write into the audit chain what the store holds at the upgrade.

    Each person's public signing key, each group public key (accepted as legacy until signed),
    and each case's manifest. A row removed or a key swapped *before* the upgrade cannot be told
    from the real thing; from here on the chain holds the upgrade's state.
    """
    # Imported here: the audit module imports the store, which imports this module.
    from sgalert.records import audit, manifest

    events = [
        audit.AuditEvent(
            audit.SYSTEM,
            "signing-key-recorded",
            detail={"person": str(person_id), "signing_key": bytes(key).hex()},
        )
        for person_id, key in conn.execute(
            "SELECT id, ed25519_public FROM people ORDER BY created_at, id"
        )
    ]
    events += [
        audit.AuditEvent(
            audit.SYSTEM,
            "group-key-legacy",
            detail={"group": str(group), "version": int(version), "public_key": bytes(key).hex()},
        )
        for group, version, key in conn.execute(
            "SELECT group_name, version, public_key FROM group_keys ORDER BY group_name, version"
        )
    ]
    events += [
        audit.AuditEvent(audit.SYSTEM, manifest.RECORDED, case_id, {manifest.MANIFEST: digest})
        for case_id, digest in manifest.baseline_now(conn)
    ]
    if events:
        audit.append_now(conn, events)


def _person_key_baseline(conn: sqlite3.Connection) -> None:
    """Migration 12's step: each person's public key, as the store holds it, into the chain."""
    from sgalert.records import audit, personkeys

    events = personkeys.baseline_now(conn)
    if events:
        audit.append_now(conn, events)


#: Python run after a migration's SQL, in the same transaction.
STEPS: dict[int, Callable[[sqlite3.Connection], None]] = {
    10: _trust_baseline,
    12: _person_key_baseline,
}

HEAD_VERSION = MIGRATIONS[-1][0]
