"""Search over the cases one unlocked person can read: by child, date of birth, police
reference or any words of the notice.

Case content is sealed, so the store cannot be searched. :func:`build` decrypts, for one
identity, the facts and message text of every case whose content key they can unwrap, in chunks
of short read transactions, and keeps an in-memory :class:`SearchIndex`. The index lives only
in the desk's memory: it is never written anywhere, and :meth:`SearchIndex.forget` (the desk
calls it when it locks) drops every entry. Building it is audited once (``search-indexed``,
with a count only), not as one read per case: it shows nothing until a case is opened, and
opening is audited as always.

Matching: a **name** matches when each word of the query starts a word of the child's name,
normalised as the child file normalises it (``ada invented``, ``Invented, Ada`` and ``Ada
Invented (Year 4)`` all find Ada Invented); a **date of birth** when the query is a date (ISO
or written day-first) equal to the child's; a **police reference** when the query's letters and
digits appear in the reference's (``ex 1234`` finds ``EX/1234/26``); **text** when the folded
query appears in the facts or the message. Results come best first: name, reference, birth date,
text, then newest.
"""

from __future__ import annotations

import asyncio
import enum
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from cryptography.exceptions import InvalidTag

from sgalert.clock import parse_iso
from sgalert.desk.child_file import NAME_FACTS, _fold, name_key, parse_dob
from sgalert.model import CaseState, KeyName, Source
from sgalert.records import audit, crypto
from sgalert.records.cases import FIELD_BODY, FIELD_FACTS, field_aad, unwrap_data_keys
from sgalert.records.keyring import Identity
from sgalert.records.store import Store, fetch_in

CHUNK_SIZE = 500
TEXT_LIMIT = 20_000  # characters of a message kept for text search
POLICE_FACTS = ("police_reference",)


class Matched(enum.StrEnum):
    """Why a case was found, in words for the desk."""

    NAME = "child's name"
    REFERENCE = "police reference"
    BIRTH = "date of birth"
    TEXT = "words in the notice"


_RANK = {Matched.NAME: 0, Matched.REFERENCE: 1, Matched.BIRTH: 2, Matched.TEXT: 3}


@dataclass(frozen=True, slots=True)
class Hit:
    """One case found: metadata, the child's name as written, and why it matched."""

    ref: str
    source: Source
    state: CaseState
    received_at: datetime
    child: str | None
    matched: Matched


@dataclass(slots=True)
class _Entry:
    case_id: str
    ref: str
    source: Source
    state: CaseState
    received_at: datetime
    child: str | None
    name: tuple[str, ...]
    dob: date | None
    police: str
    text: str


def _letters(text: str) -> str:
    return re.sub(r"[\W_]+", "", _fold(text)).casefold()


def _entry(
    case_id: str, ref: str, row: Sequence[object], facts: dict[str, object], body: str
) -> _Entry:
    child = next((v for k in NAME_FACTS if isinstance(v := facts.get(k), str) and v.strip()), None)
    dob = next((d for k in ("child_dob",) if (d := parse_dob(facts.get(k))) is not None), None)
    police = " ".join(str(facts[k]) for k in POLICE_FACTS if isinstance(facts.get(k), str))
    words = " ".join(str(value) for value in facts.values() if isinstance(value, str))
    return _Entry(
        case_id,
        ref,
        Source(str(row[0])),
        CaseState(str(row[1])),
        parse_iso(str(row[2])),
        child,
        name_key(child) if child else (),
        dob,
        _letters(police),
        _fold(f"{words}\n{body[:TEXT_LIMIT]}").casefold(),
    )


class SearchIndex:
    """What one person may search, in memory only. Forget it when the desk locks."""

    def __init__(self, email: str, entries: list[_Entry]) -> None:
        self.email = email
        self._entries = entries
        self.forgotten = False

    def __len__(self) -> int:
        return len(self._entries)

    def case_ids(self) -> set[str]:
        return {entry.case_id for entry in self._entries}

    def add(self, entries: list[_Entry]) -> None:
        """Cases indexed since; refused once forgotten, so a late update cannot refill it."""
        if not self.forgotten:
            self._entries.extend(entries)

    def forget(self) -> None:
        """Drop every entry: nothing decrypted outlives the unlock."""
        self.forgotten = True
        self._entries.clear()

    def _why(
        self, entry: _Entry, query: str, words: tuple[str, ...], born: date | None
    ) -> Matched | None:
        if words and entry.name and all(any(n.startswith(w) for n in entry.name) for w in words):
            return Matched.NAME
        letters = _letters(query)
        if len(letters) >= 3 and entry.police and letters in entry.police:
            return Matched.REFERENCE
        if born is not None and entry.dob == born:
            return Matched.BIRTH
        folded = _fold(query).casefold().strip()
        if len(folded) >= 2 and folded in entry.text:
            return Matched.TEXT
        return None

    def search(self, query: str, *, limit: int = 200) -> list[Hit]:
        """The cases that match ``query``, best first (see the module docstring)."""
        if not query.strip():
            return []
        words = name_key(query)
        born = parse_dob(query)
        found: list[tuple[int, float, Hit]] = []
        for entry in self._entries:
            why = self._why(entry, query, words, born)
            if why is None:
                continue
            hit = Hit(entry.ref, entry.source, entry.state, entry.received_at, entry.child, why)
            found.append((_RANK[why], -entry.received_at.timestamp(), hit))
        found.sort(key=lambda item: (item[0], item[1]))
        return [hit for _, _, hit in found[:limit]]


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _open_chunk(
    readable: Sequence[str],
    keys: Mapping[tuple[str, str], bytes],
    blobs: Mapping[tuple[str, str], bytes],
    meta: Mapping[str, tuple[str, Sequence[object]]],
) -> list[_Entry]:
    """Decrypt the facts and text of one chunk of readable cases into index entries."""
    content = KeyName.CONTENT
    entries: list[_Entry] = []
    for case_id in readable:
        key = keys[(case_id, content.value)]
        opened: dict[str, str] = {}
        for name in (FIELD_FACTS, FIELD_BODY):
            blob = blobs.get((case_id, name))
            if blob is None:
                continue
            try:
                plain = crypto.aead_open(key, blob, field_aad(case_id, name, content))
            except InvalidTag:
                continue
            opened[name] = plain.decode("utf-8", "replace")
        try:
            facts = json.loads(opened.get(FIELD_FACTS, "{}"))
        except ValueError:
            facts = {}
        ref, row = meta[case_id]
        body = opened.get(FIELD_BODY, "")
        entries.append(_entry(case_id, ref, row, facts if isinstance(facts, dict) else {}, body))
    return entries


async def build(
    store: Store,
    identity: Identity,
    *,
    into: SearchIndex | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> SearchIndex:
    """Decrypt the facts and message text of every case ``identity`` can read, chunk by
    chunk, into an index in memory; with ``into``, only the cases it does not hold yet (new
    ones), added to it. A field that fails its integrity check is left out of the index
    (opening that case reports it), so one damaged case does not stop the search. Audited
    once per build or update that indexed anything, with a count only."""
    known = into.case_ids() if into is not None else set()
    rows = await store.fetchall("SELECT id, ref, source, state, received_at FROM cases")
    meta = {
        str(row[0]): (str(row[1]), (row[2], row[3], row[4]))
        for row in rows
        if str(row[0]) not in known
    }
    entries: list[_Entry] = []
    content = KeyName.CONTENT
    for chunk in _chunks(list(meta), chunk_size):
        async with store.read() as db:
            keys = await unwrap_data_keys(db, identity, chunk)
            readable = [i for i in chunk if (i, content.value) in keys]
            if not readable:
                continue
            sealed = await fetch_in(
                db,
                "SELECT case_id, field, blob FROM sealed_fields WHERE key_name = ?"
                " AND field IN (?, ?) AND case_id IN ({ids})",
                readable,
                params=(content.value, FIELD_FACTS, FIELD_BODY),
            )
        blobs = {(str(r[0]), str(r[1])): bytes(r[2]) for r in sealed}
        # AES-GCM and JSON for a chunk of cases: in a thread, so the desk stays responsive.
        entries += await asyncio.to_thread(_open_chunk, readable, keys, blobs, meta)
    if into is not None:
        if entries:
            into.add(entries)
            await _audit(store, identity, len(entries))
        return into
    await _audit(store, identity, len(entries))
    return SearchIndex(identity.email, entries)


async def _audit(store: Store, identity: Identity, count: int) -> None:
    async with store.write() as db:
        await audit.append(
            db, [audit.AuditEvent(identity.email, "search-indexed", None, {"cases": count})]
        )
