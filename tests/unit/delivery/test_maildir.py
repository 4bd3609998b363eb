"""Maildir delivery: round trip, several recipients, names, permissions, rollback, path safety."""

from __future__ import annotations

import errno
import mailbox
import os
import re
import stat
from pathlib import Path

import pytest

from hardmail.delivery import maildir as maildir_module
from hardmail.delivery.maildir import escape_hostname, safe_path_component

NAME = re.compile(r"^(\d+)\.M(\d+)P(\d+)Q(\d+)\.([^,]+),S=(\d+)$")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_round_trip_is_byte_for_byte(store, maildir_root, sample_message):
    [path] = store.deliver(["bob@example.org"], sample_message)
    assert path.parent == maildir_root / "example.org" / "bob" / "new"
    assert path.read_bytes() == sample_message


def test_chunks_are_written_in_order(store, sample_message):
    prefix = b"Received: from x by y; Sun, 29 Nov 2026 15:00:00 +0000\r\n"
    [path] = store.deliver(["bob@example.org"], [prefix, sample_message[:10], sample_message[10:]])
    assert path.read_bytes() == prefix + sample_message


def test_python_mailbox_reads_the_message(store, sample_message):
    [path] = store.deliver(["bob@example.org"], sample_message)
    box = mailbox.Maildir(path.parent.parent, factory=None, create=False)
    [key] = box.keys()
    assert box.get_bytes(key) == sample_message
    assert box[key]["Subject"] == "hello"


def test_file_name_follows_the_maildir_convention(store, sample_message):
    [path] = store.deliver(["bob@example.org"], sample_message)
    match = NAME.match(path.name)
    assert match, path.name
    assert int(match.group(3)) == os.getpid()
    assert match.group(5) == "mx.example.org"
    assert int(match.group(6)) == len(sample_message)


def test_hostname_slash_colon_and_comma_are_escaped():
    assert escape_hostname("a/b:c,d") == r"a\057b\072c\054d"


def test_names_are_unique_within_the_process(store, sample_message):
    paths = [store.deliver(["bob@example.org"], sample_message)[0] for _ in range(50)]
    assert len({path.name for path in paths}) == 50
    assert len(list((paths[0].parent).iterdir())) == 50


def test_several_recipients_get_one_hard_linked_copy_each(store, maildir_root, sample_message):
    addresses = ["bob@example.org", "carol@example.org", "dave@example.net"]
    paths = store.deliver(addresses, sample_message)
    assert [path.parent.parent for path in paths] == [
        maildir_root / "example.org" / "bob",
        maildir_root / "example.org" / "carol",
        maildir_root / "example.net" / "dave",
    ]
    assert all(path.read_bytes() == sample_message for path in paths)
    assert len({path.stat().st_ino for path in paths}) == 1
    assert paths[0].stat().st_nlink == 3
    assert all(not list((path.parent.parent / "tmp").iterdir()) for path in paths)


def test_the_same_mailbox_twice_gets_one_copy(store, sample_message):
    paths = store.deliver(["Bob@Example.org", "bob@example.org"], sample_message)
    assert len(paths) == 1


def test_copies_when_hard_links_cross_file_systems(store, sample_message, monkeypatch):
    def cross_device(source, target):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(maildir_module.os, "link", cross_device)
    paths = store.deliver(["bob@example.org", "carol@example.org"], sample_message)
    assert len({path.stat().st_ino for path in paths}) == 2
    assert all(path.read_bytes() == sample_message for path in paths)


def test_other_link_errors_are_raised_and_cleaned_up(store, maildir_root, sample_message, monkeypatch,
                                                      list_files):
    def no_permission(source, target):
        raise PermissionError(errno.EACCES, "denied")

    monkeypatch.setattr(maildir_module.os, "link", no_permission)
    with pytest.raises(PermissionError):
        store.deliver(["bob@example.org", "carol@example.org"], sample_message)
    for user in ("bob", "carol"):
        for sub in ("tmp", "new"):
            assert list_files(maildir_root / "example.org" / user / sub) == []


def test_directories_and_files_are_private(store, sample_message):
    [path] = store.deliver(["bob@example.org"], sample_message)
    mailbox_dir = path.parent.parent
    assert mode_of(mailbox_dir) == 0o700
    assert all(mode_of(mailbox_dir / sub) == 0o700 for sub in ("new", "cur", "tmp"))
    assert mode_of(path) == 0o600


def test_failed_rename_leaves_nothing_behind(store, maildir_root, sample_message, monkeypatch,
                                             list_files):
    real_rename = os.rename
    calls = []

    def rename_fails_second_time(source, target):
        calls.append(target)
        if len(calls) == 2:
            raise OSError(errno.EIO, "simulated I/O error")
        real_rename(source, target)

    monkeypatch.setattr(maildir_module.os, "rename", rename_fails_second_time)
    with pytest.raises(OSError, match="simulated"):
        store.deliver(["bob@example.org", "carol@example.org"], sample_message)
    assert len(calls) == 2
    for user in ("bob", "carol"):
        for sub in ("tmp", "new"):
            assert list_files(maildir_root / "example.org" / user / sub) == []


def test_failed_directory_fsync_rolls_back(store, maildir_root, sample_message, monkeypatch,
                                           list_files):
    def failing_fsync(path):
        raise OSError(errno.EIO, "fsync failed")

    monkeypatch.setattr(maildir_module, "fsync_dir", failing_fsync)
    with pytest.raises(OSError, match="fsync failed"):
        store.deliver(["bob@example.org"], sample_message)
    assert list_files(maildir_root / "example.org" / "bob" / "new") == []
    assert list_files(maildir_root / "example.org" / "bob" / "tmp") == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_new_dir_fails_cleanly(store, maildir_root, sample_message, list_files):
    store.deliver(["bob@example.org"], sample_message)
    new_dir = maildir_root / "example.org" / "bob" / "new"
    new_dir.chmod(0o500)
    try:
        with pytest.raises(PermissionError):
            store.deliver(["bob@example.org"], sample_message)
    finally:
        new_dir.chmod(0o700)
    assert len(list_files(new_dir)) == 1
    assert list_files(new_dir.parent / "tmp") == []


def test_batch_delivers_all_with_one_round_of_directory_fsyncs(store, sample_message, monkeypatch):
    synced = []
    real_fsync_dir = maildir_module.fsync_dir
    monkeypatch.setattr(maildir_module, "fsync_dir", lambda path: (synced.append(path),
                                                                   real_fsync_dir(path)))
    results = store.deliver_batch([
        (["bob@example.org"], sample_message),
        (["bob@example.org", "carol@example.org"], [b"X: 1\r\n", sample_message]),
    ])
    assert [len(paths) for paths in results] == [1, 2]
    assert results[1][0].read_bytes() == b"X: 1\r\n" + sample_message
    assert sorted(path.name for path in synced) == ["new", "new"]  # new/ of each mailbox, once
    assert len(set(synced)) == 2


def test_batch_failure_removes_every_message_of_the_batch(store, maildir_root, sample_message,
                                                          list_files):
    with pytest.raises(ValueError):
        store.deliver_batch([(["bob@example.org"], sample_message), (["not-an-address"], b"x")])
    assert list_files(maildir_root / "example.org" / "bob" / "new") == []


def test_no_recipients_is_an_error(store, sample_message):
    with pytest.raises(ValueError, match="no recipients"):
        store.deliver([], sample_message)


@pytest.mark.parametrize(
    ("address", "local_dir"),
    [
        ("Bob@Example.ORG", "bob"),
        ("bob.smith+tag@example.org", "bob.smith+tag"),
        ("../x@example.org", "%2E.%2Fx"),
        ("..@example.org", "%2E."),
        (".@example.org", "%2E"),
        (".hidden@example.org", "%2Ehidden"),
        ("a/b@example.org", "a%2Fb"),
        ("%41@example.org", "%2541"),
        ('"a b"@example.org', "%22a%20b%22"),
        ("jörg@example.org", "j%C3%B6rg"),
    ],
)
def test_mailbox_path_is_safe(store, maildir_root, address, local_dir):
    path = store.mailbox_path(address)
    assert path == maildir_root / "example.org" / local_dir
    assert path.resolve().is_relative_to(maildir_root.resolve())
    assert path.name not in (".", "..")


@pytest.mark.parametrize("address", ["bob", "@example.org", "bob@", "bob@../etc", "bob@a/b"])
def test_mailbox_path_rejects_malformed_addresses(store, address):
    with pytest.raises(ValueError):
        store.mailbox_path(address)


def test_internationalised_domain_uses_its_a_label(store, maildir_root):
    assert store.mailbox_path("bob@bücher.de") == maildir_root / "xn--bcher-kva.de" / "bob"


def test_distinct_local_parts_never_share_a_directory():
    names = ["a.b", "a%2Eb", "A.B", ".ab", "%2Eab"]
    encoded = [safe_path_component(name) for name in names]
    assert encoded[0] == encoded[2]  # only case folds together
    assert len({encoded[0], encoded[1], encoded[3], encoded[4]}) == 4
