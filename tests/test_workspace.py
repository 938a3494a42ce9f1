"""Workspace resolution: explicit directory, then SGALERT_WORKSPACE, then XDG."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sgalert.workspace import resolve_workspace


def test_explicit_beats_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SGALERT_WORKSPACE", str(tmp_path / "env"))
    ws = resolve_workspace(tmp_path / "explicit")
    assert ws.config_path == tmp_path / "explicit" / "sgalert.toml"
    assert ws.store_path == tmp_path / "explicit" / "sgalert.db"
    assert resolve_workspace().root == tmp_path / "env"


def test_xdg_directories_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SGALERT_WORKSPACE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    ws = resolve_workspace()
    assert ws.config_path == tmp_path / "cfg" / "sgalert" / "sgalert.toml"
    assert ws.store_path == tmp_path / "data" / "sgalert" / "sgalert.db"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the XDG layout is Linux's")
def test_home_directories_when_xdg_is_unset_or_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No XDG variables (or empty ones, which the XDG spec says to ignore): ~/.config and
    ~/.local/share, as sgalert has always used."""
    monkeypatch.delenv("SGALERT_WORKSPACE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", "")
    ws = resolve_workspace()
    assert ws.config_path == tmp_path / ".config" / "sgalert" / "sgalert.toml"
    assert ws.store_path == tmp_path / ".local" / "share" / "sgalert" / "sgalert.db"
    assert not ws.config_path.parent.exists(), "resolving a workspace must not create it"
