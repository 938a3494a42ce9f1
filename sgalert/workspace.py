"""Where a workspace lives: its config file and its store.

A workspace is either one directory (``--workspace DIR`` or ``SGALERT_WORKSPACE``) holding
``sgalert.toml`` and ``sgalert.db``, or, by default, the platform's own places as
``platformdirs`` knows them: on Linux the XDG config and data directories, on macOS Application
Support, on Windows the roaming %APPDATA%.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import platformdirs

CONFIG_NAME = "sgalert.toml"
STORE_NAME = "sgalert.db"
ENV_WORKSPACE = "SGALERT_WORKSPACE"


@dataclass(frozen=True, slots=True)
class Workspace:
    """The two files an sgalert installation consists of."""

    config_path: Path
    store_path: Path

    @property
    def root(self) -> Path:
        """The directory relative paths in the config (mailbox folders, say) are resolved from."""
        return self.config_path.parent

    def is_initialised(self) -> bool:
        return self.config_path.is_file() and self.store_path.is_file()

    def not_ready(self) -> str | None:
        """Why this workspace cannot be used, in one line, or None when it can.

        A config without its store (the store deleted, or its disk not mounted: by default
        they live in different folders) once said 'run `sgalert init`', which refuses a folder
        that holds a config: the way out is the store itself, or a backup.
        """
        try:
            has_config, has_store = self.config_path.is_file(), self.store_path.is_file()
        except OSError as exc:  # a folder this account may not enter, a name too long
            return unreachable(exc)
        if not has_config:
            return (
                f"no workspace at {self.root}; run `sgalert init` "
                "(or pass --workspace / set SGALERT_WORKSPACE)"
            )
        if not has_store:
            return (
                f"{self.store_path}: the store is missing, though its config {self.config_path}"
                " is there; put the store back (is its disk mounted?), or restore the latest"
                " backup into a new folder: sgalert --workspace NEW restore BACKUP"
            )
        return None


def unreachable(exc: OSError) -> str:
    """A workspace path the file system will not even look at, in one line: typically the
    service account's folder (0700), reached from a DSL's own account."""
    return (
        f"{exc.filename}: cannot be reached ({exc.strerror}); run sgalert as the account that"
        " owns the workspace, or give yours access to its folders"
    )


PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def make_private(workspace: Workspace) -> None:
    """Only the owner may enter the workspace's folders or read its files (``sgalert doctor``
    flags anything wider). Called as a workspace is made or restored: the store is sealed, but
    who works when, and the Maildir folders' raw notices, are for the owner's eyes only."""
    for top in {workspace.config_path.parent, workspace.store_path.parent}:
        os.chmod(top, PRIVATE_DIR)
        for folder, dirs, files in os.walk(top):
            for name in [*dirs, *files]:
                path = os.path.join(folder, name)
                mode = os.lstat(path).st_mode
                if not stat.S_ISLNK(mode) and mode & 0o077:
                    os.chmod(path, stat.S_IMODE(mode) & ~0o077)


def wider_than(mode: int, allowed: int) -> bool:
    """Whether ``mode`` grants group or others anything ``allowed`` does not."""
    return bool(stat.S_IMODE(mode) & ~allowed & 0o077)


def _platform_dirs() -> tuple[Path, Path]:
    """Where the config and the store live by default. No author folder on Windows
    (``%APPDATA%\\sgalert``, not ``sgalert\\sgalert``), and the roaming profile, as before."""
    config_dir = platformdirs.user_config_path("sgalert", appauthor=False, roaming=True)
    data_dir = platformdirs.user_data_path("sgalert", appauthor=False, roaming=True)
    return config_dir, data_dir


def resolve_workspace(explicit: str | os.PathLike[str] | None = None) -> Workspace:
    """Pick the workspace: the explicit one, then ``SGALERT_WORKSPACE``, then the platform's."""
    chosen = explicit if explicit is not None else os.environ.get(ENV_WORKSPACE)
    if chosen:
        root = Path(chosen).expanduser().absolute()
        return Workspace(config_path=root / CONFIG_NAME, store_path=root / STORE_NAME)
    config_dir, data_dir = _platform_dirs()
    return Workspace(config_path=config_dir / CONFIG_NAME, store_path=data_dir / STORE_NAME)
