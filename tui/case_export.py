"""Saving a decrypted copy of an attachment: the case screen's most careful flow.

Pick an attachment and a path (a safe name in the Downloads folder is proposed), read the
warning, confirm, and confirm again to replace a file already there; only then does the core
write the copy (mode 0600) and audit the export. Every file-system look runs in a thread, and
each step is a dialog that can be cancelled without anything being written.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text

from sgalert.desk.service import (
    CaseView,
    Identity,
    SavedAttachment,
    default_directory,
    proposed_name,
)
from sgalert.text import printable

from .formatting import untrusted
from .screens.dialogs import AttachmentSave, ConfirmScreen, SaveAttachmentScreen

if TYPE_CHECKING:
    from tui.app import SgalertApp


def save_attachment(desk: SgalertApp, view: CaseView) -> None:
    """Start the flow for one of ``view``'s attachments (says so when there is none)."""
    if not view.attachments:
        desk.notify("This case has no attachments.", markup=False)
        return
    desk.submit(
        asyncio.to_thread(default_directory),  # it looks at the file system
        description="Finding your Downloads folder",
        done=lambda folder: _ask_where_to_save(desk, view, folder),
    )


def _ask_where_to_save(desk: SgalertApp, view: CaseView, folder: Path) -> None:
    ref = view.summary.ref
    choices: list[tuple[Text, int]] = []
    proposals: dict[int, str] = {}
    for index, item in enumerate(view.attachments):
        label = Text(f"{index + 1}. ")
        label.append_text(untrusted(item.filename, one_line=True))
        label.append(f"  {item.size:,} bytes", "dim")
        choices.append((label, index))
        proposals[index] = str(folder / proposed_name(ref, index, item.filename))

    def save(request: AttachmentSave, overwrite: bool) -> None:
        def run(identity: Identity) -> None:
            def saved(result: SavedAttachment) -> None:
                shown = printable(str(result.path), keep_newlines=False)
                desk.notify(
                    f"Decrypted copy written to {shown} (readable by you only). Delete it"
                    " when you no longer need it.",
                    title="Attachment saved",
                    timeout=10,
                    markup=False,
                )

            desk.submit(
                desk.service.save_attachment(
                    identity, ref, request.index, request.path, overwrite=overwrite
                ),
                description=f"Saving an attachment of {ref}",
                done=saved,
                sensitive=True,
            )

        desk.require_identity(run)

    def replace_answered(request: AttachmentSave, yes: bool | None) -> None:
        if yes:
            save(request, overwrite=True)

    def checked(request: AttachmentSave, taken: bool) -> None:
        if taken:
            desk.push_screen(
                ConfirmScreen(
                    "Replace the existing file?",
                    "A file already exists at that path. Replacing it destroys what is"
                    " there now and cannot be undone.",
                    confirm="Replace",
                ),
                lambda again: replace_answered(request, again),
            )
            return
        save(request, overwrite=False)

    def warned(request: AttachmentSave, yes: bool | None) -> None:
        if yes:
            desk.submit(
                asyncio.to_thread(os.path.lexists, request.path),
                description="Checking the path",
                done=lambda taken: checked(request, taken),
            )

    def chosen(request: AttachmentSave | None) -> None:
        if request is None:
            return
        who = desk.identity.email if desk.identity else "you"
        where = printable(str(request.path), keep_newlines=False)
        desk.push_screen(
            ConfirmScreen(
                "Write a decrypted copy outside the encrypted store?",
                "WARNING: this writes a decrypted copy of confidential safeguarding material"
                f" to\n  {where}\nwhere sgalert's encryption no longer protects it. From now"
                f" on {who} is responsible for it: keep it on an encrypted device, share it"
                " only with those who need to know, and delete it when it is no longer"
                " needed. The export is recorded in the audit log in your name.",
                confirm="Write copy",
            ),
            lambda yes: warned(request, yes),
        )

    desk.push_screen(SaveAttachmentScreen(ref, choices, proposals), chosen)
