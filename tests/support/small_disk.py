"""A tiny tmpfs mounted for a test that needs a file system which fills up for real (a full
disk, a nearly full one). Root only: without root, or where mounting fails, the test is skipped;
it is always unmounted afterwards."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_tmpfs(size: str, *, mode: str = "0755", prefix: str = "hardmail-disk-") -> Iterator[Path]:
    """Mount a tmpfs of ``size`` (``4m``) with the root directory's ``mode``; yields its mount point."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount_point = Path(tempfile.mkdtemp(prefix=prefix))
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode={mode}", "tmpfs", str(mount_point)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        mount_point.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)
        mount_point.rmdir()
