"""Workspace resolution: explicit directory, then SGALERT_WORKSPACE, then XDG."""

from __future__ import annotations

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
