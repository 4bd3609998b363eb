"""Fixtures of the backup tests: ``data``, a small data directory with accounts and messages
(:func:`unit.ops.backup.create_helpers.build_data_dir`), closed after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from unit.ops.backup.create_helpers import DataDir, build_data_dir


@pytest.fixture
async def data(tmp_path: Path) -> AsyncIterator[DataDir]:
    made = await build_data_dir(tmp_path / "data")
    try:
        yield made
    finally:
        await made.close()
