"""SEARCH arguments: every key of RFC 9051 6.4.4 and RFC 3501, RETURN options, CHARSET, nesting."""

from __future__ import annotations

from datetime import date

import pytest

from hardmail.proto.imap import commands as c
from hardmail.proto.imap.searchkeys import (
    AllKey,
    AndKey,
    DateKey,
    FlagKey,
    HeaderKey,
    ModSeqKey,
    NotKey,
    OrKey,
    SearchKey,
    SeqKey,
    SizeKey,
    TextKey,
    WithinKey,
)
from hardmail.proto.imap.sequence import STAR, SequenceSet
from hardmail.proto.imap.state import ConnState

from .conftest import parse_one


def search(args: str | bytes, uid: bool = False) -> c.Search:
    raw = args.encode() if isinstance(args, str) else args
    event = parse_one((b"t UID SEARCH " if uid else b"t SEARCH ") + raw + b"\r\n", ConnState.SELECTED)
    assert isinstance(event, c.Search), event
    return event


def key(args: str | bytes) -> SearchKey:
    return search(args).key


def bad(args: str | bytes) -> c.BadCommand:
    raw = args.encode() if isinstance(args, str) else args
    event = parse_one(b"t SEARCH " + raw + b"\r\n", ConnState.SELECTED)
    assert isinstance(event, c.BadCommand), event
    return event


D = date(1994, 2, 1)


@pytest.mark.parametrize(("text", "expected"), [
    ("ALL", AllKey()),
    ("ANSWERED", FlagKey("\\Answered")), ("UNANSWERED", FlagKey("\\Answered", False)),
    ("DELETED", FlagKey("\\Deleted")), ("UNDELETED", FlagKey("\\Deleted", False)),
    ("DRAFT", FlagKey("\\Draft")), ("UNDRAFT", FlagKey("\\Draft", False)),
    ("FLAGGED", FlagKey("\\Flagged")), ("UNFLAGGED", FlagKey("\\Flagged", False)),
    ("SEEN", FlagKey("\\Seen")), ("UNSEEN", FlagKey("\\Seen", False)),
    ("RECENT", FlagKey("\\Recent")), ("UNRECENT", FlagKey("\\Recent", False)), ("OLD", FlagKey("\\Recent", False)),
    ("NEW", AndKey((FlagKey("\\Recent"), FlagKey("\\Seen", False)))),
    ("KEYWORD $Forwarded", FlagKey("$Forwarded")), ("KEYWORD \\seen", FlagKey("\\Seen")),
    ("UNKEYWORD Junk", FlagKey("Junk", False)),
    ("BCC joe", HeaderKey("Bcc", "joe")), ("CC \"a b\"", HeaderKey("Cc", "a b")),
    ("FROM smith", HeaderKey("From", "smith")), ("SUBJECT {5+}\r\nhi yo", HeaderKey("Subject", "hi yo")),
    ("TO \"\"", HeaderKey("To", "")),
    ("HEADER X-Spam yes", HeaderKey("X-Spam", "yes")), ('HEADER "a b" x', HeaderKey("a b", "x")),
    ('HEADER "Message-ID" ""', HeaderKey("Message-ID", "")),
    ("BODY lunch", TextKey("body", "lunch")), ("TEXT \"fish tacos\"", TextKey("text", "fish tacos")),
    ("BEFORE 1-Feb-1994", DateKey("internal", "before", D)), ("ON \"01-feb-1994\"", DateKey("internal", "on", D)),
    ("SINCE 01-Feb-1994", DateKey("internal", "since", D)),
    ("SENTBEFORE 1-Feb-1994", DateKey("sent", "before", D)), ("SENTON 1-FEB-1994", DateKey("sent", "on", D)),
    ("SENTSINCE 1-Feb-1994", DateKey("sent", "since", D)),
    ("LARGER 1024", SizeKey("larger", 1024)), ("SMALLER 0", SizeKey("smaller", 0)),
    ("LARGER 9223372036854775807", SizeKey("larger", 2**63 - 1)),
    ("UID 1:*", SeqKey(SequenceSet(((1, STAR),)), uid=True)), ("UID $", SeqKey(SequenceSet(saved=True), uid=True)),
    ("1:3,5", SeqKey(SequenceSet(((1, 3), (5, 5))))), ("*", SeqKey(SequenceSet(((STAR, STAR),)))),
    ("$", SeqKey(SequenceSet(saved=True))), ("7:2", SeqKey(SequenceSet(((7, 2),)))),
    ("NOT SEEN", NotKey(FlagKey("\\Seen"))), ("NOT NOT 1", NotKey(NotKey(SeqKey(SequenceSet.of(1))))),
    ("OR SEEN FLAGGED", OrKey(FlagKey("\\Seen"), FlagKey("\\Flagged"))),
    ("OR (SEEN 1) NOT 2",
     OrKey(AndKey((FlagKey("\\Seen"), SeqKey(SequenceSet.of(1)))), NotKey(SeqKey(SequenceSet.of(2))))),
    ("(SEEN)", FlagKey("\\Seen")), ("((ALL))", AllKey()),
    ("SEEN FLAGGED", AndKey((FlagKey("\\Seen"), FlagKey("\\Flagged")))),
    ("MODSEQ 620162338", ModSeqKey(620162338)),
    ('MODSEQ "/flags/\\\\draft" all 620162338', ModSeqKey(620162338, "/flags/\\draft", "all")),
    ("OLDER 3600", WithinKey(True, 3600)), ("YOUNGER 60", WithinKey(False, 60)),
    ("all", AllKey()), ("unseen", FlagKey("\\Seen", False)),
])
def test_every_search_key(text: str, expected: SearchKey) -> None:
    assert key(text) == expected


@pytest.mark.parametrize("text", [
    "", "FOO", "SEEN (", "(SEEN", "()", "NOT", "OR SEEN", "KEYWORD", "KEYWORD \\Foo", "BEFORE 30-Feb-2020",
    "BEFORE 1-Feb-94", "ON 1-Fox-1994", "SINCE", "LARGER", "LARGER -1", "LARGER x", "SMALLER 99999999999999999999",
    "UID", "UID x", "0", "1:0", "HEADER", "HEADER X", "FROM", "SEEN  FLAGGED", "SEEN ",
    "MODSEQ", 'MODSEQ "/flags/x" bogus 1', 'MODSEQ "/other" all 1', "OLDER 0", "YOUNGER",
    "CHARSET", "CHARSET ALL", "CHARSET KOI8-R", "SEEN CHARSET UTF-8", "SUBJECT \"unterminated",
])
def test_bad_search_keys(text: str) -> None:
    bad(text)


def test_nesting_is_bounded() -> None:
    assert isinstance(key("(" * 60 + "SEEN" + ")" * 60), FlagKey)
    assert "deeply" in bad("(" * 70 + "SEEN" + ")" * 70).text
    assert "deeply" in bad("NOT " * 70 + "SEEN").text
    assert "deeply" in bad("OR " * 70 + "SEEN " * 71).text


def test_charset_and_8bit_strings() -> None:
    event = search(b"CHARSET UTF-8 SUBJECT {5+}\r\n\xc3\xa9t\xc3\xa9 FROM \"\xc3\xbc\"")
    assert event.charset == "UTF-8"
    assert event.key == AndKey((HeaderKey("Subject", "été"), HeaderKey("From", "ü")))
    assert search('charset "us-ascii" ALL').charset == "US-ASCII"
    assert search("ALL").charset is None
    no = bad("CHARSET ISO-8859-1 ALL")
    assert (no.status, no.code) == ("NO", "BADCHARSET (UTF-8 US-ASCII)")
    bad(b"CHARSET US-ASCII SUBJECT {2+}\r\n\xc3\xa9")
    bad(b"SUBJECT {1+}\r\n\xe9")


def test_return_options() -> None:
    assert search("RETURN (MIN MAX COUNT ALL) UNSEEN").returns == ("MIN", "MAX", "COUNT", "ALL")
    assert search("RETURN () ALL").returns == ()
    assert search("RETURN (SAVE) CHARSET UTF-8 1:*").returns == ("SAVE",)
    assert search("ALL").returns is None
    assert search("return (count) all").returns == ("COUNT",)
    for broken in ("RETURN (FOO) ALL", "RETURN ALL", "RETURN (MIN", "RETURN (MIN)"):
        bad(broken)


def test_uid_search() -> None:
    event = search("UID 5:* SEEN", uid=True)
    assert event.uid and event.key == AndKey((SeqKey(SequenceSet(((5, STAR),)), uid=True), FlagKey("\\Seen")))
