"""Folder names: IMAP modified UTF-7 (RFC 3501 5.1.3) and the Maildir++ directory mapping."""

from __future__ import annotations

import pytest

from hardmail.mailbox.names import (
    InvalidName,
    dirname,
    is_inbox,
    mutf7_decode,
    mutf7_encode,
    name_of_dirname,
    normalize,
    parent_names,
)

VECTORS = [
    ("INBOX", "INBOX"),
    ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501 5.1.3
    ("&", "&-"),
    ("A&B", "A&-B"),
    ("Été", "&AMk-t&AOk-"),
    ("Entwürfe", "Entw&APw-rfe"),
    ("😀", "&2D3eAA-"),  # outside the BMP: a surrogate pair
    ("a\x7fb", "a&AH8-b"),
    ("", ""),
    ("日本語&x", "&ZeVnLIqe-&-x"),
]


@pytest.mark.parametrize(("text", "encoded"), VECTORS)
def test_known_encodings(text: str, encoded: str) -> None:
    assert mutf7_encode(text) == encoded
    assert mutf7_decode(encoded) == text


@pytest.mark.parametrize("text", [
    "plain", "späte Post", "Ünïcödé/ńames", "a&b&c", "Ω≈ç√∫", "中文 文件夹", "🎉🎊 party", "mixed é & 😀 !",
    "".join(chr(c) for c in range(0xA0, 0x200)),
])
def test_round_trip(text: str) -> None:
    encoded = mutf7_encode(text)
    assert all(0x20 <= ord(c) <= 0x7E for c in encoded)
    assert mutf7_decode(encoded) == text


@pytest.mark.parametrize("bad", [
    "&",  # unterminated
    "&AMk",  # unterminated run
    "&AMk-&AOk-",  # two runs in a row: the canonical form is one run
    "&AGE-",  # a run that encodes printable ASCII ("a")
    "&AM-",  # not a whole UTF-16 unit
    "&AMl-",  # non-zero padding bits
    "&2D0-",  # a lone high surrogate
    "&Z!-",  # not modified base64
    "&AMk/-",  # "/" is "," in modified base64
    "é",  # 8-bit
    "a\tb",  # control character
    "&A-",  # one character of base64 cannot be anything
])
def test_invalid_input_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        mutf7_decode(bad)


def test_inbox_is_case_insensitive_also_as_a_parent() -> None:
    assert normalize("inbox") == "INBOX"
    assert normalize("InBoX/Sub") == "INBOX/Sub"
    assert normalize("Sent/") == "Sent"
    assert is_inbox("Inbox")
    assert normalize("Inboxes") == "Inboxes"


@pytest.mark.parametrize("bad", [
    "", "/", "a//b", "/a", "a.b", "..", "../x", "a/../b", ".hidden", "x\x00", "x\ny", "a*", "b%",
    "x" * 300, "/".join("a" * 10 for _ in range(40)), "\ud800",
])
def test_unsafe_names_are_refused(bad: str) -> None:
    with pytest.raises(InvalidName):
        normalize(bad)


def test_directories_are_dovecot_maildir_plus_plus() -> None:
    assert dirname("INBOX") == ""
    assert dirname("Sent") == ".Sent"
    assert dirname("Archive/2024") == ".Archive.2024"
    assert dirname("Archive/Été") == ".Archive.&AMk-t&AOk-"
    assert dirname("INBOX/Sub") == ".INBOX.Sub"


def test_a_directory_reads_back_as_its_name() -> None:
    for name in ("Sent", "Archive/2024", "Archive/Été", "A&B/c d", "INBOX/x"):
        assert name_of_dirname(dirname(name)) == name
    for entry in ("cur", "new", "tmp", ".", "..", "..DELETED-ab", ".a..b", ".&AGE-", ".x.", "dovecot.index"):
        assert name_of_dirname(entry) is None


def test_no_name_leaves_the_account_directory() -> None:
    for name in ("Sent", "a/b/c", "Été/Ω", "A&B"):
        entry = dirname(normalize(name))
        assert "/" not in entry and entry not in (".", "..") and entry.startswith(".")


def test_parent_names() -> None:
    assert parent_names("a/b/c") == ["a", "a/b"]
    assert parent_names("a") == []


def test_the_codec_imports_no_io() -> None:
    """The IMAP core (sans-IO) imports the codec from here."""
    import subprocess
    import sys

    code = ("import sys, hardmail.mailbox.names, hardmail.mailbox; "
            "print(sorted(m for m in ('asyncio', 'sqlalchemy', 'hardmail.delivery') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
