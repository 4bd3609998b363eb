"""Import direction: protocol cores and policy stay free of I/O (asyncio, sockets, storage, server)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "hardmail"
FORBIDDEN = ("asyncio", "socket", "ssl", "selectors", "hardmail.server", "hardmail.store.sql", "sqlalchemy",
             "hardmail.app", "hardmail.admin", "hardmail.delivery")
PURE_PACKAGES = ("proto", "policy", "mime", "imap")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _violations(path: Path) -> list[str]:
    return sorted(name for name in _imports(path)
                  if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN))


MODULES = sorted(p for package in PURE_PACKAGES for p in (SRC / package).rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(SRC)) for p in MODULES])
def test_pure_modules_import_no_io(path: Path) -> None:
    assert _violations(path) == []


def test_the_check_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import asyncio\nfrom hardmail.server.channel import Channel\n")
    assert _violations(bad) == ["asyncio", "hardmail.server.channel"]
