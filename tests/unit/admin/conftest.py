"""An AdminService on a fresh SQLite store, with cheap Argon2 parameters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hardmail.admin.service import AdminService
from hardmail.config.schema import PasswordHashSection
from hardmail.store import open_store
from hardmail.store.ports import Store

CHEAP_HASHING = PasswordHashSection(time_cost=1, memory_cost=8192, parallelism=1)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'hardmail.db'}")
    await opened.migrate()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def hash_params() -> PasswordHashSection:
    return CHEAP_HASHING


@pytest.fixture
def service(store: Store, hash_params: PasswordHashSection) -> AdminService:
    return AdminService(store, hash_params)
