"""Handing out an attachment's plaintext: an export, so entitled, audited, and written safely.

An attachment need not be sealed with the content key: a whistleblowing case seals its
attachments' bytes with the identity key (a signed statement names the reporter), so an
investigator who reads the allegation is refused its attachments. "Not there" is
:class:`~sgalert.errors.NotFound`; "there, but not for this person" is a refusal, audited. The
file side (a private, atomic copy) is :mod:`sgalert.desk.export`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from sgalert.desk import export
from sgalert.desk.access import Refused, destroyed, refusals
from sgalert.desk.transitions import acknowledge_by_working
from sgalert.desk.views import find_summary
from sgalert.errors import NotFound
from sgalert.model import CaseSummary, KeyName
from sgalert.records import audit
from sgalert.records.cases import FIELD_ATTACHMENTS, open_field, sealed_with, unwrap_data_keys
from sgalert.records.keyring import Identity
from sgalert.records.store import Store

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AttachmentContent:
    """One attachment decrypted for export. Its name and bytes stay out of its repr, and so out
    of logs and tracebacks: a filename can name a child."""

    index: int
    filename: str = field(repr=False)
    content_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class SavedAttachment:
    """Where a decrypted copy was written (the path can hold the attachment's name)."""

    path: Path = field(repr=False)
    size: int
    replaced: bool


async def _to_thread_to_the_end(work: Callable[..., T], *args: object) -> T:
    """Run blocking file work in a worker thread and, even if cancelled, wait until it has
    finished: the thread runs on regardless, and what it leaves behind (a written or a placed
    copy) must be known before anything is cleaned up. The cancellation is re-raised after."""
    task = asyncio.ensure_future(asyncio.to_thread(work, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise


async def attachment(
    store: Store, identity: Identity, ref: str, index: int, *, now: datetime | None = None
) -> AttachmentContent:
    """Decrypt one attachment (numbered from 0 as the case view lists them) for export.

    Handing out the plaintext is an export, so it is audited as one (``attachment-exported``
    with the index and size, never the filename); a person not entitled to the case, or
    whose keys do not reach the attachment (one sealed with a whistleblower's identity), is
    refused and the refusal audited. Prefer :func:`save_attachment`, which also writes the
    copy safely. Given ``now``, a NEW case is acknowledged by the export (working on it).
    """
    async with refusals(store, identity, "export-attachment"), store.write() as db:
        summary = await find_summary(db, ref)
        content = await _decrypt(db, identity, summary, index)
        if now is not None:
            await acknowledge_by_working(db, identity, summary, now, "export-attachment")
        await _audit_export(db, identity, summary, content, "caller")
        return content


async def save_attachment(
    store: Store,
    identity: Identity,
    ref: str,
    index: int,
    destination: Path,
    *,
    overwrite: bool = False,
    now: datetime | None = None,
) -> SavedAttachment:
    """Write a decrypted copy of one attachment to ``destination``: mode 0600, atomically,
    never over an existing file unless ``overwrite`` (:class:`AlreadyExists` otherwise).

    The log records exactly the copies that were written, and no lock is held while the
    file is: the attachment is decrypted in a read transaction; the copy is written,
    nameless, in a worker thread outside any transaction; then one short write transaction
    checks the entitlement again, appends the audit entry and gives the copy its name. If
    that does not commit, the copy is removed again and a file it replaced is restored.
    Cancelled at any point, it waits for the thread it started and cleans up first. Given
    ``now``, a NEW case is acknowledged in that transaction (working on it acknowledges it).
    """
    copy = export.StagedCopy(destination, overwrite=overwrite, store=store.path)
    try:
        async with refusals(store, identity, "export-attachment"):
            async with store.read() as db:
                summary = await find_summary(db, ref)
                content = await _decrypt(db, identity, summary, index)
            await _to_thread_to_the_end(copy.write, content.data)
            try:
                async with store.write() as db:
                    summary = await find_summary(db, ref)
                    await _reach(db, identity, summary, index)
                    if now is not None:
                        await acknowledge_by_working(
                            db, identity, summary, now, "export-attachment"
                        )
                    await _audit_export(db, identity, summary, content, "file")
                    await _to_thread_to_the_end(copy.place)
            except BaseException:
                await _to_thread_to_the_end(copy.unplace)  # no unrecorded copy stays behind
                raise
    finally:
        await _to_thread_to_the_end(copy.discard)
    return SavedAttachment(copy.target, len(content.data), copy.replaced)


async def _reach(
    db: aiosqlite.Connection, identity: Identity, summary: CaseSummary, index: int
) -> tuple[Mapping[tuple[str, str], bytes], dict[str, Any]]:
    """The person's keys and the listed attachment, once it is certain they reach it."""
    if summary.destroyed_at is not None:
        raise destroyed(identity, summary)
    keys = await unwrap_data_keys(db, identity, [summary.id])
    if (summary.id, KeyName.CONTENT.value) not in keys:
        raise Refused(summary.id, summary.ref)
    listed = json.loads(await open_field(db, keys, summary.id, FIELD_ATTACHMENTS) or b"[]")
    if not 0 <= index < len(listed):
        raise NotFound(f"case {summary.ref} has no attachment number {index + 1}")
    key_name = await sealed_with(db, summary.id, f"attachment/{index}")
    if key_name is None:
        raise NotFound(f"the content of attachment {index + 1} of {summary.ref} was not kept")
    if (summary.id, key_name) not in keys:
        sealing = (
            " (it is sealed with the reporter's identity)"
            if key_name == KeyName.IDENTITY.value
            else ""
        )
        raise Refused(
            summary.id,
            summary.ref,
            f"attachment {index + 1} of case {summary.ref}{sealing}",
            {"index": index, "key": key_name},
        )
    return keys, listed[index]


async def _decrypt(
    db: aiosqlite.Connection, identity: Identity, summary: CaseSummary, index: int
) -> AttachmentContent:
    keys, meta = await _reach(db, identity, summary, index)
    data = await open_field(db, keys, summary.id, f"attachment/{index}")
    if data is None:
        raise NotFound(f"the content of attachment {index + 1} of {summary.ref} was not kept")
    return AttachmentContent(
        index=index,
        filename=str(meta.get("filename") or ""),
        content_type=str(meta.get("content_type") or "application/octet-stream"),
        data=data,
    )


async def _audit_export(
    db: aiosqlite.Connection,
    identity: Identity,
    summary: CaseSummary,
    content: AttachmentContent,
    to: str,
) -> None:
    detail = {"ref": summary.ref, "index": content.index, "bytes": len(content.data), "to": to}
    await audit.append(
        db, [audit.AuditEvent(identity.email, "attachment-exported", summary.id, detail)]
    )
