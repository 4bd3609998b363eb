"""DATA (RFC 5321 4.1.1.4, 4.5.2), SMTP smuggling (CVE-2023-51764 class) and BDAT (RFC 3030)."""

from __future__ import annotations

import pytest

from hardmail.core.replies import Reply
from hardmail.proto.smtp.data import DataReader
from hardmail.proto.smtp.events import (
    BdatChunk,
    DataStart,
    Mail,
    MessageReceived,
    MessageRefused,
    Noop,
    ProtocolError,
    Quit,
)


def lines(*commands: str) -> bytes:
    return "".join(f"{c}\r\n" for c in commands).encode()


def stuff(content: bytes) -> bytes:
    """RFC 5321 4.5.2 transparency, as a client applies it."""
    return (b"\r\n" + content).replace(b"\r\n.", b"\r\n..")[2:]


def send_data(driver, content: bytes):
    """EHLO/MAIL/RCPT/DATA, then ``content`` (which must carry its own end marker)."""
    driver.envelope()
    (start,) = driver.feed(b"DATA\r\n")
    assert isinstance(start.event, DataStart)
    return driver.feed(content)


def received(driver) -> MessageReceived:
    (message,) = driver.of_type(MessageReceived)
    return message


# ----- DATA ---------------------------------------------------------------------------------------
def test_simple_message(ready):
    body = b"Subject: hi\r\n\r\nHello\r\n"
    (exchange,) = send_data(ready, body + b".\r\n")
    assert isinstance(exchange.event, MessageReceived)
    assert b"".join(exchange.event.chunks) == body
    assert exchange.event.size == len(body)
    assert not exchange.event.via_bdat
    assert exchange.wire == b"250 2.0.0 OK\r\n"
    assert ready.conn.transaction is None


@pytest.mark.parametrize(
    ("wire", "content"),
    [
        (b"..x\r\n.\r\n", b".x\r\n"),
        (b"a\r\n..\r\nb\r\n.\r\n", b"a\r\n.\r\nb\r\n"),
        (b"..\r\n.\r\n", b".\r\n"),
        (b"...\r\n.\r\n", b"..\r\n"),
        (b"a.b\r\n.a\r\n.\r\n", b"a.b\r\na\r\n"),
        (b"\r\n.\r\n", b"\r\n"),
        (b"x\r\n\r\n.\r\n", b"x\r\n\r\n"),
    ],
)
def test_dot_unstuffing(ready, wire, content):
    send_data(ready, wire)
    message = received(ready)
    assert b"".join(message.chunks) == content
    assert message.size == len(content)


def test_empty_message(ready):
    (exchange,) = send_data(ready, b".\r\n")
    assert isinstance(exchange.event, MessageReceived)
    assert exchange.event.chunks == ()
    assert exchange.event.size == 0


def test_data_followed_by_pipelined_commands(ready):
    exchanges = send_data(ready, b"Hello\r\n.\r\nNOOP\r\nQUIT\r\n")
    assert [type(x.event) for x in exchanges] == [MessageReceived, Noop, Quit]
    assert b"".join(exchanges[0].event.chunks) == b"Hello\r\n"
    assert ready.conn.closed


def test_commands_and_data_in_one_feed(session):
    session.feed(lines("EHLO c", "MAIL FROM:<a@example.net>", "RCPT TO:<b@example.org>", "DATA")
                 + b"line one\r\n..line two\r\n.\r\n" + lines("QUIT"))
    assert [type(e).__name__ for e in session.events] == [
        "Helo", "Mail", "Rcpt", "DataStart", "MessageReceived", "Quit"]
    assert b"".join(received(session).chunks) == b"line one\r\n.line two\r\n"


def test_end_marker_split_at_every_position(smtp):
    content = b".a\r\n.b\r\nc\r\n"
    wire = stuff(content) + b".\r\nNOOP\r\n"
    for cut in range(1, len(wire)):
        driver = smtp()
        send_data(driver, wire[:cut])
        driver.feed(wire[cut:])
        assert b"".join(received(driver).chunks) == content
        assert isinstance(driver.events[-1], Noop)


def test_long_message_chunks_join_to_the_content(ready):
    body = b"".join(b"line %d %s\r\n" % (i, b"." * (i % 7)) for i in range(300))
    body += b".leading dot\r\n"
    send_data(ready, stuff(body) + b".\r\n")
    message = received(ready)
    assert b"".join(message.chunks) == body
    assert message.size == len(body)


def test_line_longer_than_the_pending_window(smtp):
    driver = smtp(max_line_length=100_000)  # a raised text line limit (RFC 5321 4.5.3.1.6 allows it)
    body = b"." + b"x" * 70_000 + b"\r\n.y\r\n"
    send_data(driver, stuff(body) + b".\r\n")
    assert b"".join(received(driver).chunks) == body


def test_cr_at_the_pending_window_edge_is_not_a_bare_cr(smtp):
    driver = smtp(max_line_length=100_000)
    body = b"x" * 65535 + b"\r\n" + b"y\r\n"
    send_data(driver, body + b".\r\n")
    assert b"".join(received(driver).chunks) == body


def test_message_too_big(smtp):
    driver = smtp(max_message_size=50)
    exchanges = send_data(driver, b"x" * 40 + b"\r\n" + b"y" * 40 + b"\r\n.\r\nNOOP\r\n")
    refused = exchanges[0]
    assert isinstance(refused.event, MessageRefused)
    assert (refused.reply.code, refused.reply.enhanced) == (552, "5.3.4")
    assert driver.conn.transaction is None
    assert isinstance(exchanges[1].event, Noop)
    assert not driver.of_type(MessageReceived)


def test_message_of_exactly_the_limit(smtp):
    driver = smtp(max_message_size=12)
    send_data(driver, b"0123456789\r\n.\r\n")
    assert received(driver).size == 12


def test_session_may_refuse_354(smtp):
    driver = smtp(answer=lambda e: Reply(451, "4.3.0", "later") if isinstance(e, DataStart) else None)
    send_data(driver, b"NOOP\r\n")
    assert isinstance(driver.events[-1], Noop)


# ----- SMTP smuggling -----------------------------------------------------------------------------
SMUGGLED = b"MAIL FROM:<evil@x.y>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nevil\r\n"


@pytest.mark.parametrize("fake_end", [b"\n.\r\n", b"\r\n.\n", b"\n.\n", b"\r.\r\n", b"\r\n.\r", b"\r.\r"])
def test_smuggling_fake_end_refused(ready, fake_end):
    exchanges = send_data(ready, b"Subject: x\r\n\r\nbody" + fake_end + SMUGGLED + b"\r\n.\r\nNOOP\r\n")
    assert isinstance(exchanges[0].event, MessageRefused)
    assert (exchanges[0].reply.code, exchanges[0].reply.enhanced) == (554, "5.6.11")
    assert [type(x.event) for x in exchanges[1:]] == [Noop]
    assert not ready.of_type(MessageReceived)
    assert len(ready.of_type(Mail)) == 1  # the real one only
    assert ready.conn.transaction is None


@pytest.mark.parametrize("content", [b"a\nb\r\n", b"a\rb\r\n", b"\n", b"a\r\r\n", b"a\r\n\n"])
def test_bare_cr_or_lf_anywhere_refused(ready, content):
    (exchange,) = send_data(ready, content + b"\r\n.\r\n")
    assert isinstance(exchange.event, MessageRefused)
    assert exchange.reply.enhanced == "5.6.11"


def test_smuggled_command_after_fake_end_at_start(ready):
    exchanges = send_data(ready, b".\n" + SMUGGLED + b".\r\n")
    assert [type(x.event) for x in exchanges] == [MessageRefused]


def test_real_end_after_refusal_then_next_message_works(ready):
    send_data(ready, b"a\nb\r\n.\r\n")
    send_data(ready, b"clean\r\n.\r\n")
    assert b"".join(received(ready).chunks) == b"clean\r\n"


def test_reader_directly_flags_bare_lf_across_feeds():
    reader = DataReader(1000)
    assert reader.feed(b"abc") == b""
    assert reader.feed(b"\n.\r\n") == b""
    assert not reader.done
    assert reader.feed(b"x\r\n.\r\nrest") == b"rest"
    assert reader.done
    assert reader.bare_newline


# ----- BDAT ---------------------------------------------------------------------------------------
def bdat(driver, *chunks: tuple[bytes, bool]):
    driver.envelope()
    data = b"".join(b"BDAT %d%s\r\n%s" % (len(c), b" LAST" if last else b"", c) for c, last in chunks)
    return driver.feed(data)


def test_bdat_chunks(ready):
    exchanges = bdat(ready, (b"Subject: x\r\n", False), (b"\r\nbody\r\n", True))
    assert [type(x.event) for x in exchanges] == [BdatChunk, MessageReceived]
    assert exchanges[0].event.size == 12
    assert exchanges[0].wire == b"250 2.0.0 12 octets received\r\n"
    message = exchanges[1].event
    assert message.via_bdat
    assert b"".join(message.chunks) == b"Subject: x\r\n\r\nbody\r\n"
    assert message.size == 20
    assert ready.conn.transaction is None


def test_bdat_zero_last(ready):
    exchanges = bdat(ready, (b"part", False), (b"", True))
    assert [type(x.event) for x in exchanges] == [BdatChunk, MessageReceived]
    assert b"".join(exchanges[1].event.chunks) == b"part"


def test_bdat_single_last_chunk(ready):
    (exchange,) = bdat(ready, (b"all of it\r\n", True))
    assert isinstance(exchange.event, MessageReceived)
    assert exchange.event.via_bdat


def test_bdat_data_is_literal(ready):
    content = b"a\r\n.\r\nMAIL FROM:<evil@x.y>\r\n..b\r\nc\r\n"
    exchanges = bdat(ready, (content, True))
    assert isinstance(exchanges[0].event, MessageReceived)
    assert b"".join(exchanges[0].event.chunks) == content
    assert len(ready.of_type(Mail)) == 1


@pytest.mark.parametrize("content", [b"a\nb\r\n", b"a\rb\r\n", b"ends with cr\r", b"\n"])
def test_bdat_bare_cr_or_lf_is_refused(ready, content):
    (exchange,) = bdat(ready, (content, True))
    assert isinstance(exchange.event, MessageRefused)
    assert (exchange.reply.code, exchange.reply.enhanced) == (554, "5.6.11")


def test_bdat_crlf_split_across_chunks_is_fine(ready):
    exchanges = bdat(ready, (b"line\r", False), (b"\nnext\r\n", True))
    assert isinstance(exchanges[-1].event, MessageReceived)


def test_bdat_followed_by_pipelined_command(ready):
    ready.envelope()
    exchanges = ready.feed(b"BDAT 3 LAST\r\nabcNOOP\r\n")
    assert [type(x.event) for x in exchanges] == [MessageReceived, Noop]


def test_bdat_without_mail_consumes_then_refuses(ready):
    exchanges = ready.feed(b"BDAT 14\r\nNOOP\r\nNOOP\r\n\r\nNOOP\r\n")
    assert [type(x.event) for x in exchanges] == [MessageRefused, Noop]
    assert exchanges[0].reply.code == 503


def test_bdat_over_size(smtp):
    driver = smtp(max_message_size=10)
    exchanges = bdat(driver, (b"123456", False), (b"789012", False))
    exchanges += driver.feed(b"BDAT 2 LAST\r\nxxNOOP\r\n")
    kinds = [type(x.event) for x in exchanges]
    assert kinds == [BdatChunk, MessageRefused, MessageRefused, Noop]
    assert (exchanges[1].reply.code, exchanges[1].reply.enhanced) == (552, "5.3.4")
    assert driver.conn.transaction is None
    assert not driver.of_type(MessageReceived)


def test_data_after_bdat_refused(ready):
    bdat(ready, (b"part", False))
    (exchange,) = ready.feed(b"DATA\r\n")
    assert isinstance(exchange.event, ProtocolError)
    assert exchange.reply.code == 503


def test_rset_after_bdat_allows_data(ready):
    bdat(ready, (b"part", False))
    ready.feed(b"RSET\r\n")
    (exchange,) = send_data(ready, b"x\r\n.\r\n")
    assert isinstance(exchange.event, MessageReceived)


def test_refused_bdat_chunk_resets(smtp):
    driver = smtp(answer=lambda e: Reply(452, "4.3.1", "full") if isinstance(e, BdatChunk) else None)
    exchanges = bdat(driver, (b"abc", False), (b"def", True))
    assert [x.reply.code for x in exchanges] == [452, 503]
    assert driver.conn.transaction is None
