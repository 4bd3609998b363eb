"""Pairing each local recipient with the file delivery wrote for it (INBOX and subfolders)."""

from __future__ import annotations

from pathlib import Path

from hardmail.delivery.local_index import delivered_files
from hardmail.delivery.maildir import MaildirStore

ROOT = Path("/srv/mail")
STORE = MaildirStore(ROOT, "host")


def test_inbox_files_pair_with_their_accounts() -> None:
    written = [ROOT / "example.test" / "bob" / "new" / "m1", ROOT / "example.test" / "alice" / "new" / "m1"]
    pairs = delivered_files(["alice@example.test", "bob@example.test"], written, None, STORE.mailbox_path)
    assert pairs == [("alice@example.test", written[1]), ("bob@example.test", written[0])]


def test_junk_files_pair_with_their_accounts() -> None:
    written = [ROOT / "example.test" / "alice" / ".Junk" / "new" / "m2"]
    assert delivered_files(["alice@example.test"], written, "Junk", STORE.mailbox_path) == [
        ("alice@example.test", written[0])]


def test_an_account_without_a_file_is_left_out() -> None:
    assert delivered_files(["carol@example.test"], [], None, STORE.mailbox_path) == []
