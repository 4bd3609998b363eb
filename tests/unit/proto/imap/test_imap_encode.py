"""The IMAP response encoder, the modified UTF-7 codec and sequence-set arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from hardmail.imap.values import Atom, Run
from hardmail.proto.imap import encode as e
from hardmail.proto.imap.lexer import Reader
from hardmail.proto.imap.mutf7 import Mutf7Error, mutf7_decode, mutf7_encode
from hardmail.proto.imap.sequence import STAR, SequenceSet, compress


def test_status_lines() -> None:
    assert e.tagged("a1", "OK", "LOGIN completed") == b"a1 OK LOGIN completed\r\n"
    assert e.tagged("a1", "NO", "Over quota", "OVERQUOTA") == b"a1 NO [OVERQUOTA] Over quota\r\n"
    assert e.tagged("a1", "BAD", "bad\r\nline\x00") == b"a1 BAD bad line\r\n"
    assert e.tagged("a1", "OK", "") == b"a1 OK done\r\n"
    assert e.untagged_status("OK", "Ready", "CAPABILITY IMAP4rev2") == b"* OK [CAPABILITY IMAP4rev2] Ready\r\n"
    assert e.untagged("3 EXISTS") == b"* 3 EXISTS\r\n"
    assert e.continuation("Ready for literal data") == b"+ Ready for literal data\r\n"
    assert e.continuation() == b"+ \r\n"
    assert e.continuation("cj1hYmM=") == b"+ cj1hYmM=\r\n"


@pytest.mark.parametrize(("value", "wire"), [
    (None, b"NIL"), (0, b"0"), (4294967296, b"4294967296"), (Atom("\\Seen"), b"\\Seen"),
    ("plain", b'"plain"'), ("", b'""'), ('q"u\\o', b'"q\\"u\\\\o"'), (b"bytes", b'"bytes"'),
    ("a\r\nb", b"{4}\r\na\r\nb"), ("nul\x00", b"{4}\r\nnul\x00"), ("é", b"{2}\r\n\xc3\xa9"),
    (b"\xff", b"{1}\r\n\xff"), ("x" * 999, b'"' + b"x" * 999 + b'"'), ("x" * 1000, b"{1000}\r\n" + b"x" * 1000),
    (e.Literal8(b"\x00\x01"), b"~{2}\r\n\x00\x01"),
    ([], b"()"), ([1, [None, "a"], Atom("X")], b'(1 (NIL "a") X)'), ((Atom("A"), 2), b"(A 2)"),
    ([Run([[1], [2]]), "mixed"], b'((1)(2) "mixed")'), ([Run([["a", None]])], b'(("a" NIL))'),
])
def test_values(value: object, wire: bytes) -> None:
    assert e.encode_value(value) == wire


def test_8bit_is_quoted_only_in_utf8_mode() -> None:
    assert e.encode_value("été", utf8=True) == '"été"'.encode()
    assert e.encode_value(b"\xff", utf8=True) == b"{1}\r\n\xff"  # not UTF-8: still a literal
    assert e.encode_value("a\nb", utf8=True) == b"{3}\r\na\nb"


def test_bad_values_are_refused() -> None:
    for value in (True, 1.5, {"a": 1}, object()):
        with pytest.raises(TypeError):
            e.encode_value(value)


def test_quoted_output_parses_back() -> None:
    for text in ['a"b', "back\\slash", "sp ace", "]", "{1}", "%*"]:
        assert Reader(e.string(text)).string() == text.encode()


def test_fetch_response() -> None:
    when = datetime(2024, 3, 5, 9, 8, 7, tzinfo=timezone(timedelta(hours=-5)))
    wire = e.fetch_response(12, [("UID", 55), ("FLAGS", e.flags(["\\Seen", "$Junk"])),
                                 ("INTERNALDATE", e.date_time(when)), ("RFC822.SIZE", 4),
                                 ("BODY[]<0>", b"ab\r\n"), ("BINARY[1]", e.Literal8(b"\x00")), ("MODSEQ", [7])])
    assert wire == (b'* 12 FETCH (UID 55 FLAGS (\\Seen $Junk) INTERNALDATE "05-Mar-2024 09:08:07 -0500" '
                    b"RFC822.SIZE 4 BODY[]<0> {4}\r\nab\r\n BINARY[1] ~{1}\r\n\x00 MODSEQ (7))\r\n")


def test_date_time_formats() -> None:
    assert e.date_time(datetime(2026, 12, 25, 23, 59, 59, tzinfo=UTC)) == "25-Dec-2026 23:59:59 +0000"
    assert e.date_time(datetime(2026, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=5, minutes=45)))) == \
        "01-Jan-2026 00:00:00 +0545"
    assert e.date_time(datetime(2026, 1, 1)) == "01-Jan-2026 00:00:00 +0000"
    assert e.date_time(datetime(2026, 1, 1, tzinfo=timezone(-timedelta(minutes=90)))) == "01-Jan-2026 00:00:00 -0130"


def test_search_and_esearch_responses() -> None:
    assert e.search_response([]) == b"* SEARCH\r\n"
    assert e.search_response([2, 3, 9], modseq=917162500) == b"* SEARCH 2 3 9 (MODSEQ 917162500)\r\n"
    assert e.esearch_response("A282", False, [("MIN", 2), ("COUNT", 3)]) == b'* ESEARCH (TAG "A282") MIN 2 COUNT 3\r\n'
    assert e.esearch_response("a", True, [("ALL", [1, 2, 3, 5, 7, 8])]) == b'* ESEARCH (TAG "a") UID ALL 1:3,5,7:8\r\n'
    assert e.esearch_response(None, False, []) == b"* ESEARCH\r\n"
    assert e.esearch_response("t", False, [("COUNT", 0), ("MODSEQ", 5)]) == b'* ESEARCH (TAG "t") COUNT 0 MODSEQ 5\r\n'


def test_list_and_status_responses() -> None:
    assert e.list_response(["\\HasNoChildren"], "/", "INBOX") == b'* LIST (\\HasNoChildren) "/" INBOX\r\n'
    assert e.list_response([], None, "") == b'* LIST () NIL ""\r\n'
    assert e.list_response(["\\Sent"], "/", "Envoyés") == b'* LIST (\\Sent) "/" Envoy&AOk-s\r\n'
    assert e.list_response(["\\Sent"], "/", "Envoyés", utf8=True) == '* LIST (\\Sent) "/" "Envoyés"\r\n'.encode()
    assert e.list_response(["\\Subscribed"], "/", "Foo", extended=[("CHILDINFO", ["SUBSCRIBED"])]) == \
        b'* LIST (\\Subscribed) "/" Foo ("CHILDINFO" ("SUBSCRIBED"))\r\n'
    assert e.list_response([], "/", "Foo", command="LSUB") == b'* LSUB () "/" Foo\r\n'
    assert e.status_response("Été", [("MESSAGES", 3), ("SIZE", 1024)]) == \
        b'* STATUS &AMk-t&AOk- (MESSAGES 3 SIZE 1024)\r\n'


def test_other_responses() -> None:
    assert e.vanished_response([5, 1, 2, 3]) == b"* VANISHED 1:3,5\r\n"
    assert e.vanished_response([9], earlier=True) == b"* VANISHED (EARLIER) 9\r\n"
    assert e.capability_response(["IMAP4rev2", "IMAP4rev1"]) == b"* CAPABILITY IMAP4rev2 IMAP4rev1\r\n"
    assert e.enabled_response([]) == b"* ENABLED\r\n"
    assert e.enabled_response(["CONDSTORE"]) == b"* ENABLED CONDSTORE\r\n"
    assert e.flags_response(["\\Seen", "$x"]) == b"* FLAGS (\\Seen $x)\r\n"
    assert e.id_response([("name", "hardmail"), ("version", None)]) == b'* ID ("name" "hardmail" "version" NIL)\r\n'
    assert e.id_response(None) == b"* ID NIL\r\n"
    assert e.astring("INBOX") == b"INBOX" and e.astring("a b") == b'"a b"'
    for quoted in ("NIL", "nil", "a]b", "a%b", "a*b", "", "a(b", "{1}"):
        assert e.astring(quoted).startswith(b'"'), quoted
    assert e.mailbox("Archive/2024") == b"Archive/2024" and e.mailbox("&") == b"&-"
    assert e.mailbox("é") == b"&AOk-" and e.mailbox("é", utf8=True) == '"é"'.encode()


# ----- modified UTF-7 ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "wire"), [
    ("INBOX", "INBOX"), ("&", "&-"), ("a&b", "a&-b"), ("Entwürfe", "Entw&APw-rfe"), ("Été", "&AMk-t&AOk-"),
    ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"), ("😀", "&2D3eAA-"), ("", ""),
    ("a\tb", "a&AAk-b"),
])
def test_mutf7_round_trip(text: str, wire: str) -> None:
    assert mutf7_encode(text) == wire
    assert mutf7_decode(wire) == text
    assert e.mutf7_encode is mutf7_encode


@pytest.mark.parametrize("wire", ["R&D", "&", "&Jjo", "&AGE-", "&A-", "&AM-", "&AMk", "é", "&AM/-", "&2D0-"])
def test_mutf7_rejects_invalid(wire: str) -> None:
    with pytest.raises(Mutf7Error):
        mutf7_decode(wire)


# ----- sequence sets ---------------------------------------------------------------------------------------
def test_resolve_with_star_reversed_and_overlaps() -> None:
    s = SequenceSet(((5, 2), (4, 6), (9, STAR), (20, 20)))
    assert s.resolve(10) == [2, 3, 4, 5, 6, 9, 10]
    assert SequenceSet(((STAR, STAR),)).resolve(3) == [3]
    assert SequenceSet(((1, STAR),)).resolve(0) == []
    assert s.exceeds(10) and not SequenceSet(((1, STAR),)).exceeds(1)
    assert str(s) == "5:2,4:6,9:*,20" and str(SequenceSet(((1, 2),), saved=True)) == "1:2,$"


def test_filter_uids_star_is_the_largest_present() -> None:
    uids = [3, 7, 10, 15]
    assert SequenceSet(((1, STAR),)).filter(uids) == uids
    assert SequenceSet(((20, STAR),)).filter(uids) == [15]  # RFC 9051 6.4.9: n:* includes the last
    assert SequenceSet(((4, 10),)).filter(uids) == [7, 10]
    assert SequenceSet(saved=True).filter(uids, saved=[7, 99]) == [7]
    assert SequenceSet(((1, 3),), saved=True).filter(uids, saved=[15]) == [3, 15]
    assert SequenceSet(((1, STAR),)).filter([]) == []


def test_resolve_is_cheap_for_big_ranges() -> None:
    assert len(SequenceSet(((1, STAR),)).resolve(100_000)) == 100_000
    assert SequenceSet(((1, STAR),)).contains(99_999, 100_000)


def test_compress() -> None:
    assert compress([]) == ""
    assert compress([1]) == "1"
    assert compress([3, 1, 2, 2, 7, 9, 8, 11]) == "1:3,7:9,11"


def test_refusals() -> None:
    from hardmail.proto.imap import commands as c

    assert e.refusal(c.BadCommand("a", "Unknown command FOO")) == b"a BAD Unknown command FOO\r\n"
    assert e.refusal(c.BadCommand("*", "Invalid tag")) == b"* BAD Invalid tag\r\n"
    assert e.refusal(c.LiteralTooLarge("a", 9, 1, True, "NO", "Message too large")) == \
        b"a NO [TOOBIG] Message too large\r\n"
    assert e.refusal(c.LineTooLong("b")) == b"b BAD [TOOBIG] Command line too long\r\n"
    assert e.refusal(c.BadCommand("s", "x", "NO", "BADCHARSET (UTF-8 US-ASCII)")) == \
        b"s NO [BADCHARSET (UTF-8 US-ASCII)] x\r\n"


def test_resolve_with_saved_and_plain_item_names() -> None:
    from hardmail.proto.imap.commands import FetchItem

    assert SequenceSet(((1, 2),), saved=True).resolve(10, saved=[5, 2, 11]) == [1, 2, 5]
    assert SequenceSet(saved=True).resolve(10, saved=[3]) == [3]
    assert FetchItem("RFC822.SIZE").response_name() == "RFC822.SIZE"
