"""fsync helpers: atomic durable writes, private directories, cleanup of partial files."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from hardmail.delivery import durable
from hardmail.delivery.durable import make_private_dir, write_durably, write_new_file


def test_write_durably_replaces_atomically(tmp_path):
    target = tmp_path / "file"
    target.write_bytes(b"old")
    assert write_durably(target, [b"new ", b"content"]) == 11
    assert target.read_bytes() == b"new content"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [path.name for path in tmp_path.iterdir()] == ["file"]


def test_write_durably_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "file"
    target.write_bytes(b"old")

    def failing_fsync(fd):
        raise OSError(errno.EIO, "disk error")

    monkeypatch.setattr(durable.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk error"):
        write_durably(target, b"new")
    assert target.read_bytes() == b"old"
    assert [path.name for path in tmp_path.iterdir()] == ["file"]


def test_write_new_file_never_overwrites(tmp_path):
    target = tmp_path / "file"
    target.write_bytes(b"keep")
    with pytest.raises(FileExistsError):
        write_new_file(target, b"other")
    assert target.read_bytes() == b"keep"


def test_write_new_file_fsyncs_before_returning(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(durable.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    write_new_file(tmp_path / "file", b"data")
    assert len(synced) == 1


def test_make_private_dir_creates_missing_levels_with_0700(tmp_path):
    created = make_private_dir(tmp_path / "a" / "b" / "c")
    assert created == [tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"]
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o700 for path in created)
    assert make_private_dir(tmp_path / "a" / "b" / "c") == []
