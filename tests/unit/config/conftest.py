"""Shared fixtures for the configuration tests: a clean working directory and a TOML writer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

WriteToml = Callable[..., Path]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current directory, so no stray ./hardmail.toml is picked up."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("HARDMAIL_CONFIG", raising=False)
    return cwd


@pytest.fixture
def write_toml(tmp_path: Path) -> WriteToml:
    """write_toml(text, name="hardmail.toml", folder="etc") → the path of the written file."""

    def write(text: str, name: str = "hardmail.toml", folder: str = "etc") -> Path:
        directory = tmp_path / folder
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
