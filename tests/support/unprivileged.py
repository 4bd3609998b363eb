"""Running hardmail as an unprivileged user (``nobody``) from tests that run as root.

``require_setpriv`` skips the test unless it runs as root with ``setpriv``, and makes the checkout
and the virtual environment reachable for other users: every directory on
their paths gets the search bit for others (``o+x``, never read or write) when it lacks it, e.g.
a CI clone made in a ``mktemp -d`` directory (0700). The modes are put back when pytest exits.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

AS_NOBODY = ("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--")
ROOT = Path(__file__).resolve().parents[2]
_changed: dict[Path, int] = {}


def require_setpriv(why: str = "to run hardmail as an unprivileged user") -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip(f"needs root and setpriv {why}")
    for path in (ROOT, Path(sys.prefix)):
        _searchable_by_others(path)


def _searchable_by_others(path: Path) -> None:
    for directory in [path, *path.parents] if path.is_dir() else list(path.parents):
        mode = directory.stat().st_mode
        if directory in _changed or mode & stat.S_IXOTH:
            continue
        _changed[directory] = stat.S_IMODE(mode)
        directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


@atexit.register
def _restore() -> None:
    for directory, mode in _changed.items():
        with contextlib.suppress(OSError):
            directory.chmod(mode)
    _changed.clear()
