"""Secrets for adapters: from an environment variable or a file only its owner can read.

Never from ``sgalert.toml`` (it is shared and backed up) and never into logs or errors: a
message names where a secret should come from, never its value.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sgalert.errors import ConfigError


def read_secret(options: Mapping[str, Any], name: str, where: str, root: Path) -> str:
    """Resolve ``<name>_env`` (an environment variable) or ``<name>_file`` (a 0600 file)."""
    env_key, file_key = f"{name}_env", f"{name}_file"
    if env_key in options:
        variable = str(options[env_key])
        value = os.environ.get(variable)
        if not value:
            raise ConfigError(f"{where}.{env_key}: environment variable {variable} is not set")
        return value
    if file_key in options:
        path = Path(str(options[file_key])).expanduser()
        path = path if path.is_absolute() else root / path
        try:
            info = path.stat()
        except OSError:
            raise ConfigError(f"{where}.{file_key}: {path} cannot be read") from None
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"{where}.{file_key}: {path} is readable by others; run chmod 600 {path}"
            )
        return path.read_text(encoding="utf-8").strip()
    raise ConfigError(
        f'{where}: no {name} given; set {env_key} = "VARIABLE" or {file_key} = "path"'
    )
