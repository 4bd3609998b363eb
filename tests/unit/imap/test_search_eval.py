"""SEARCH evaluation: every key against small messages (RFC 9051 6.4.4, RFC 7162, RFC 5032, RFC 4731)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from hardmail.imap.search import (
    SearchContext,
    esearch_result,
    evaluate,
    needs_body,
    needs_headers,
    parse_sent_date,
    search,
    uses_modseq,
    uses_saved,
)
from hardmail.proto.imap import commands as c
from hardmail.proto.imap.connection import ImapServerConnection
from hardmail.proto.imap.searchkeys import SearchKey
from hardmail.proto.imap.state import ConnState


@dataclass
class Msg:
    seq: int
    uid: int
    flags: frozenset[str] = frozenset()
    internaldate: datetime = datetime(2024, 2, 1, 12, 0, tzinfo=UTC)
    size: int = 100
    modseq: int = 1
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: str = ""
    date_header: str | None = None
    body_reads: int = 0

    def header(self, name: str) -> list[str]:
        return self.headers.get(name.lower(), [])

    def headers_text(self) -> str:
        return "".join(f"{k}: {v}\r\n" for k, vs in self.headers.items() for v in vs)

    def body_text(self) -> str:
        self.body_reads += 1
        return self.body

    def sent_date(self) -> date | None:
        return parse_sent_date(self.date_header) if self.date_header else None


def key(text: str | bytes) -> SearchKey:
    conn = ImapServerConnection()
    conn.state = ConnState.SELECTED
    conn.receive_data(b"t SEARCH " + (text.encode() if isinstance(text, str) else text) + b"\r\n")
    event = conn.next_event()
    assert isinstance(event, c.Search), event
    return event.key


CTX = SearchContext(max_seq=3, max_uid=30, saved_uids=frozenset({20}),
                    now=datetime(2024, 2, 1, 13, 0, tzinfo=UTC))


def one(text: str | bytes, msg: Msg, ctx: SearchContext = CTX) -> bool:
    return evaluate(key(text), msg, ctx)


def test_flags_and_keywords() -> None:
    m = Msg(1, 10, frozenset({"\\Seen", "\\Answered", "$Forwarded", "\\Recent"}))
    for text, expected in [("SEEN", True), ("UNSEEN", False), ("ANSWERED", True), ("UNANSWERED", False),
                           ("DELETED", False), ("UNDELETED", True), ("DRAFT", False), ("UNDRAFT", True),
                           ("FLAGGED", False), ("UNFLAGGED", True), ("RECENT", True), ("UNRECENT", False),
                           ("OLD", False), ("NEW", False), ("KEYWORD $forwarded", True),
                           ("UNKEYWORD $Forwarded", False),
                           ("KEYWORD $Junk", False), ("UNKEYWORD $Junk", True), ("ALL", True)]:
        assert one(text, m) is expected, text
    assert one("NEW", Msg(1, 1, frozenset({"\\Recent"})))
    assert one("OLD", Msg(1, 1))


def test_internal_date_keys_compare_dates_in_the_dates_own_zone() -> None:
    # 23:30 on 1 Feb at -0500 is 2 Feb in UTC; the date "disregarding time and timezone" is 1 Feb.
    m = Msg(1, 1, internaldate=datetime(2024, 2, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5))))
    assert one("ON 1-Feb-2024", m) and not one("ON 2-Feb-2024", m)
    assert one("SINCE 1-Feb-2024", m) and not one("SINCE 2-Feb-2024", m)
    assert one("BEFORE 2-Feb-2024", m) and not one("BEFORE 1-Feb-2024", m)


def test_sent_date_keys_use_the_date_header() -> None:
    m = Msg(1, 1, date_header="Thu, 01 Feb 2024 23:59:00 -0800")
    assert one("SENTON 1-Feb-2024", m) and not one("SENTON 2-Feb-2024", m)
    assert one("SENTSINCE 1-Feb-2024", m) and not one("SENTSINCE 2-Feb-2024", m)
    assert one("SENTBEFORE 2-Feb-2024", m) and not one("SENTBEFORE 1-Feb-2024", m)
    no_date = Msg(1, 1)
    assert not one("SENTON 1-Feb-2024", no_date) and not one("SENTBEFORE 1-Jan-2100", no_date)
    assert parse_sent_date("garbage") is None and parse_sent_date("31 Feb 2024 10:00 +0000") is None


def test_older_younger() -> None:
    m = Msg(1, 1)  # internal date one hour before CTX.now
    assert one("OLDER 3600", m) and not one("OLDER 3601", m)
    assert one("YOUNGER 3601", m) and not one("YOUNGER 3600", m)
    assert not evaluate(key("OLDER 1"), m, SearchContext(1, 1))


def test_sizes() -> None:
    m = Msg(1, 1, size=100)
    assert one("LARGER 99", m) and not one("LARGER 100", m)
    assert one("SMALLER 101", m) and not one("SMALLER 100", m)


def test_headers_and_address_keys() -> None:
    m = Msg(1, 1, headers={"from": ["Jörg Müller <jm@example.org>"], "subject": ["Re: Lunch plans"],
                           "to": ["a@x", "b@y"], "x-empty": [""], "cc": [], "bcc": ["hidden@z"]})
    assert one('FROM "müller"', m) and one("FROM JM@EXAMPLE", m) and not one("FROM smith", m)
    assert one(b"CHARSET UTF-8 FROM {7+}\r\nM\xc3\x9cLLER", m)
    assert one("SUBJECT lunch", m) and one('SUBJECT "re: lunch"', m)
    assert one("TO b@y", m) and not one("CC a", m) and one("BCC hidden", m)
    assert one('HEADER X-Empty ""', m) and one('HEADER x-empty ""', m)
    assert not one('HEADER X-Missing ""', m)
    assert one('HEADER Subject "PLANS"', m) and not one("HEADER Subject dinner", m)
    assert one('TO ""', m) and not one('CC ""', m)


def test_text_and_body() -> None:
    m = Msg(1, 1, headers={"subject": ["Quarterly Report"]}, body="Ünïcode body with Fish Tacos")
    assert one("BODY tacos", m) and one(b"CHARSET UTF-8 BODY {6+}\r\n\xc3\xbcn\xc3\xafc", m)
    assert not one("BODY quarterly", m)
    assert one("TEXT quarterly", m) and one("TEXT fish", m) and not one("TEXT burrito", m)
    assert one('BODY ""', m)


def test_sequence_uid_and_saved() -> None:
    msgs = [Msg(1, 10), Msg(2, 20), Msg(3, 30)]
    def matching(text: str) -> list[int]:
        return [m.seq for m in search(key(text), msgs, CTX)]
    assert matching("1:2") == [1, 2] and matching("*") == [3] and matching("3:2") == [2, 3]
    assert matching("UID 15:25") == [2] and matching("UID *") == [3] and matching("UID 40:*") == [3]
    assert matching("UID 1:5") == [] and matching("$") == [2] and matching("UID $") == [2]
    assert matching("1,$") == [1, 2] and matching("NOT $") == [1, 3]


def test_modseq_key() -> None:
    m = Msg(1, 1, modseq=620162338)
    assert one("MODSEQ 620162338", m) and one("MODSEQ 1", m) and not one("MODSEQ 620162339", m)
    assert one('MODSEQ "/flags/\\\\draft" all 620162338', m)


def test_boolean_combinations() -> None:
    m = Msg(2, 20, frozenset({"\\Seen"}), size=500)
    assert one("OR FLAGGED LARGER 400", m) and not one("OR FLAGGED SMALLER 400", m)
    assert one("NOT (FLAGGED SEEN)", m) and one("(SEEN LARGER 400)", m) is not False
    assert one("SEEN LARGER 400 2", m) and not one("SEEN LARGER 400 1", m)
    assert one("OR (1 FLAGGED) (2 SEEN)", m) and not one("NOT OR 2 3", m)


def test_needs_body_and_headers() -> None:
    assert not needs_body(key("SEEN 1:* LARGER 5 UID 3 OR SINCE 1-Jan-2020 MODSEQ 4"))
    assert not needs_headers(key("SEEN 1:* LARGER 5 UID 3 OR SINCE 1-Jan-2020 MODSEQ 4"))
    assert needs_body(key("OR SEEN NOT BODY x")) and not needs_headers(key("BODY x"))
    assert needs_body(key("TEXT x")) and needs_headers(key("TEXT x"))
    assert needs_headers(key("NOT FROM x")) and needs_headers(key("SENTON 1-Jan-2020"))
    assert needs_headers(key('HEADER X ""')) and not needs_body(key("SUBJECT x"))
    assert uses_modseq(key("OR SEEN MODSEQ 5")) and not uses_modseq(key("SEEN"))
    assert uses_saved(key("NOT UID $")) and not uses_saved(key("1:*"))


def test_body_is_not_read_when_the_key_is_decided_before() -> None:
    m = Msg(1, 1, frozenset({"\\Seen"}), body="x")
    assert one("OR SEEN BODY x", m) and m.body_reads == 0


@pytest.mark.parametrize(("returns", "matches", "items", "saved", "send"), [
    ((), [(1, 10), (2, 20)], [("ALL", [1, 2])], None, True),
    (("MIN", "MAX", "COUNT", "ALL"), [(2, 20), (5, 50), (9, 90)],
     [("MIN", 2), ("MAX", 9), ("COUNT", 3), ("ALL", [2, 5, 9])], None, True),
    (("MIN", "MAX", "COUNT", "ALL"), [], [("COUNT", 0)], None, True),
    (("SAVE",), [(1, 10), (3, 30)], [], frozenset({10, 30}), False),
    (("SAVE", "MIN"), [(1, 10), (3, 30)], [("MIN", 1)], frozenset({10}), True),
    (("SAVE", "MIN", "MAX"), [(1, 10), (2, 20), (3, 30)], [("MIN", 1), ("MAX", 3)], frozenset({10, 30}), True),
    (("SAVE", "MIN", "COUNT"), [(1, 10), (3, 30)], [("MIN", 1), ("COUNT", 2)], frozenset({10, 30}), True),
    (("SAVE", "COUNT"), [], [("COUNT", 0)], frozenset(), True),
])
def test_esearch_results(returns: tuple[str, ...], matches: list[tuple[int, int]], items: list[tuple[str, object]],
                         saved: frozenset[int] | None, send: bool) -> None:
    result = esearch_result(returns, matches)
    assert (result.items, result.saved_uids, result.send) == (items, saved, send)
