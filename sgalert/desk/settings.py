"""A person's desk settings: small answers the desk remembers so it asks them only once.

Kept per person (by their id, never a name) in ``desk-settings.json`` beside the store: they
are preferences about the desk, not personal data or case content, and need no unlock. The file
is rewritten whole and atomically (mode 0600), so two desks saving at once lose at most one of
the two answers, never the file.
"""

from __future__ import annotations

import enum
import json
import os
import tempfile
from pathlib import Path

from sgalert.errors import StoreError

SETTINGS_NAME = "desk-settings.json"


class DeskSetting(enum.StrEnum):
    """What a person told the desk once."""

    # "Working on a new case acknowledges it": confirmed once, not asked again.
    ACKNOWLEDGE_BY_WORKING = "acknowledge-by-working-confirmed"


def settings_path(store_path: Path) -> Path:
    return store_path.with_name(SETTINGS_NAME)


def _read_all(path: Path) -> dict[str, dict[str, bool]]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}  # unreadable settings only mean the desk asks again
    if not isinstance(loaded, dict):
        return {}
    return {
        str(person): {str(k): bool(v) for k, v in values.items()}
        for person, values in loaded.items()
        if isinstance(values, dict)
    }


def read_setting(path: Path, person_id: str, setting: DeskSetting) -> bool:
    """Whether this person gave this answer; False until they have."""
    return _read_all(path).get(person_id, {}).get(setting.value, False)


def write_setting(path: Path, person_id: str, setting: DeskSetting, value: bool) -> None:
    """Remember one answer for one person."""
    settings = _read_all(path)
    settings.setdefault(person_id, {})[setting.value] = value
    temporary: str | None = None
    try:
        handle, temporary = tempfile.mkstemp(prefix=".desk-settings-", dir=path.parent)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(settings, out, indent=1, sort_keys=True)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except OSError as error:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        raise StoreError(
            f"cannot save the desk's settings in {path.parent}: {error.strerror}"
        ) from None
