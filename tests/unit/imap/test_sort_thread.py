"""RFC 5256 base subjects, SORT keys and THREAD on small made-up mailboxes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from hardmail.imap.sort import base_subject, base_subject_and_reply, casemap, parse_date, sort_messages
from hardmail.imap.thread import ThreadNode, thread_list, thread_messages
from hardmail.mime.headers import HeaderBlock, parse_header_block


@pytest.mark.parametrize(("subject", "base", "reply"), [
    ("Meeting", "Meeting", False),
    ("Re: Meeting", "Meeting", True),
    ("RE:Re: re [list]: Meeting", "Meeting", True),
    ("Fwd: Meeting (fwd)", "Meeting", True),
    ("Fw: Meeting", "Meeting", True),
    ("[fwd: Re: Meeting]", "Meeting", True),
    ("[list] Meeting", "Meeting", False),  # (4): a blob goes when something remains
    ("[list]", "[list]", False),
    ("[a] [b] Re: [c] Meeting  (fwd) (FWD)  ", "Meeting", True),
    ("Re:", "", True),
    ("   ", "", False),
    ("Meeting\t agenda\r\n  now", "Meeting agenda now", False),  # (1)
    ("Rex: Meeting", "Rex: Meeting", False),
    ("Re : Meeting", "Meeting", True),  # subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
    ("Re [x]: [fwd: Meeting]", "Meeting", True),
])
def test_base_subject(subject: str, base: str, reply: bool) -> None:
    assert base_subject_and_reply(subject) == (base, reply)
    assert base_subject(subject) == base


def test_casemap_orders_like_unicode_casemap() -> None:
    assert sorted(["Frank", "Émilie", "eve", "Eva"], key=casemap) == ["Eva", "eve", "Émilie", "Frank"]


@dataclass(frozen=True)
class Msg:
    uid: int
    headers: HeaderBlock
    size: int = 0
    internaldate: datetime = datetime(2024, 1, 1, tzinfo=UTC)


def box(*headers: str) -> list[Msg]:
    return [Msg(n, parse_header_block(h.replace("|", "\r\n").encode() + b"\r\n\r\n"), size=100 - n,
                internaldate=datetime(2024, 1, 1, tzinfo=UTC) + timedelta(hours=n)) for n, h in enumerate(headers, 1)]


@dataclass(frozen=True)
class C:
    key: str
    reverse: bool = False


def uids(messages: list[Msg]) -> list[int]:
    return [m.uid for m in messages]


def test_sort_keys_and_ties() -> None:
    messages = box("From: b@x|Date: Tue, 2 Jan 2024 00:00:00 +0000|Subject: Re: b",
                   "From: A <a@x>|Date: bad date|Subject: a",
                   "From: b@y|Subject: b|Cc: z@x",
                   "From: =?utf-8?q?=C3=89?= <e@x>|To: Group:;, t@x")
    assert uids(sort_messages(messages, [C("FROM")])) == [2, 1, 3, 4]
    assert uids(sort_messages(messages, [C("FROM", True)])) == [4, 1, 3, 2]  # ties keep their order
    assert uids(sort_messages(messages, [C("DISPLAYFROM")])) == [2, 1, 3, 4]  # "A", "b@x", "b@y", "É"
    assert uids(sort_messages(messages, [C("DATE")])) == [2, 3, 4, 1]  # no/bad Date: INTERNALDATE
    assert uids(sort_messages(messages, [C("SUBJECT"), C("SIZE")])) == [4, 2, 3, 1]
    assert uids(sort_messages(messages, [C("CC"), C("ARRIVAL", True)])) == [4, 2, 1, 3]
    assert uids(sort_messages(messages, [C("TO")])) == [1, 2, 3, 4]
    with pytest.raises(KeyError):
        sort_messages(messages, [C("NOPE")])


def test_references_thread_shapes() -> None:
    messages = box(
        "Message-ID: <1@x>|Subject: topic|Date: Mon, 1 Jan 2024 10:00:00 +0000",
        "Message-ID: <2@x>|References: <1@x>|Subject: Re: topic|Date: Mon, 1 Jan 2024 11:00:00 +0000",
        "Message-ID: <3@x>|References: <1@x> <gone@x>|Subject: Re: topic|Date: Mon, 1 Jan 2024 09:00:00 +0000",
        "Message-ID: <4@x>|In-Reply-To: <2@x> <1@x>|Subject: Re: topic|Date: Mon, 1 Jan 2024 12:00:00 +0000",
        "Message-ID: <5@x>|References: <6@x>|Subject: loop|Date: Mon, 1 Jan 2024 13:00:00 +0000",
        "Message-ID: <6@x>|References: <5@x>|Subject: other|Date: Mon, 1 Jan 2024 14:00:00 +0000",
        "Message-ID: <7@x>|References: <7@x>|Subject: self|Date: Mon, 1 Jan 2024 15:00:00 +0000",
        "Subject: Re: self|Date: Mon, 1 Jan 2024 16:00:00 +0000",
    )
    threads = thread_messages("REFERENCES", messages)
    # 3's parent <gone@x> is a dummy with one child: it goes, 3 hangs under 1
    assert thread_list(threads, lambda m: m.uid) == "(1 (3)(2 4))(6 5)(7 8)"
    assert all(isinstance(node, ThreadNode) for node in threads)
    ordered = thread_messages("ORDEREDSUBJECT", messages)
    assert thread_list(ordered, lambda m: m.uid) == "(3 (1)(2)(4))(5)(6)(7 8)"
    with pytest.raises(ValueError, match="unknown THREAD"):
        thread_messages("X", messages)


def test_thread_of_nothing_and_a_long_chain() -> None:
    assert thread_list(thread_messages("REFERENCES", []), lambda m: 0) == ""
    chain = [f"Message-ID: <{n}@x>|References: " + " ".join(f"<{k}@x>" for k in range(max(0, n - 150), n))
             + f"|Date: Mon, 1 Jan 2024 00:{n // 60:02}:{n % 60:02} +0000" for n in range(3000)]
    threads = thread_messages("REFERENCES", box(*chain))
    assert len(threads) == 1
    text = thread_list(threads, lambda m: m.uid)
    assert text == "(" + " ".join(str(n) for n in range(1, 3001)) + ")"


@pytest.mark.parametrize(("raw", "expected"), [
    (b"Tue, 12 Mar 2024 09:13:58 +0100", datetime(2024, 3, 12, 8, 13, 58, tzinfo=UTC)),
    (b"12 Mar 2024 09:13 -0000", datetime(2024, 3, 12, 9, 13, tzinfo=UTC)),
    (b"Fri, 6 Apr 2001 09:23:06 -0800 (GMT-0800)", datetime(2001, 4, 6, 17, 23, 6, tzinfo=UTC)),
    (b"Sun, 23 Sep 01 20:14:35 PDT", datetime(2001, 9, 24, 3, 14, 35, tzinfo=UTC)),  # RFC 5322 4.3
    (b"1 Jan 99 00:00:00 XYZ", datetime(1999, 1, 1, tzinfo=UTC)),
    (b"01 Jan 2001 00:01+0000", None),  # no space before the zone: Dovecot takes no date either
    (b"31 Feb 2024 00:00:00 +0000", None), (b"not a date", None), (b"", None),
])
def test_parse_date(raw: bytes, expected: datetime | None) -> None:
    assert parse_date(raw) == (expected.timestamp() if expected else None)


def test_group_is_the_first_address_of_a_sort_key() -> None:
    messages = box("To: b@x", "To: Announce:;", "To: c@x")
    assert uids(sort_messages(messages, [C("TO")])) == [2, 1, 3]  # "announce" (as Dovecot)
    assert uids(sort_messages(messages, [C("DISPLAYTO")])) == [2, 1, 3]


def test_thread_list_text_of_the_rfc_examples() -> None:
    """RFC 5256 4: the two examples of thread-list syntax."""
    def node(number: int | None, *children: ThreadNode[int]) -> ThreadNode[int]:
        return ThreadNode(number, list(children))

    threads = [node(2), node(3, node(6, node(4, node(23)), node(44, node(7, node(96)))))]
    assert thread_list(threads, lambda n: n) == "(2)(3 6 (4 23)(44 7 96))"
    assert thread_list([node(None, node(3), node(5))], lambda n: n) == "((3)(5))"  # a dummy parent
