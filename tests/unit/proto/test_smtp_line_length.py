"""Text line length in DATA and BDAT (RFC 5321 4.5.3.1.6): at most ``max_line_length`` octets
including CRLF, not counting the dot added for transparency (RFC 5321 4.5.2).

A message with a longer line is read to its real end, its sink is abandoned, and it is refused with
554 5.6.0 at the end of data. Runs whole and one byte at a time (``feed_mode``).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import pytest

from hardmail.proto.smtp.data import _MAX_PENDING, BdatReader, DataReader, LineMeter
from hardmail.proto.smtp.events import BdatChunk, Mail, MessageReceived, MessageRefused, Noop
from unit.proto.conftest import Driver
from unit.proto.test_smtp_data import SMUGGLED, bdat, received, send_data, stuff
from unit.proto.test_smtp_streaming import Recorder, driver_with_sinks


def line(total: int, fill: bytes = b"x") -> bytes:
    """A line of ``total`` octets including its CRLF."""
    return fill * (total - 2) + b"\r\n"


def assert_line_refused(exchange, limit: int = 1000) -> None:
    assert isinstance(exchange.event, MessageRefused)
    assert (exchange.reply.code, exchange.reply.enhanced) == (554, "5.6.0")
    text = " ".join(exchange.reply.lines)
    assert f"longer than {limit} octets" in text
    assert f"wrap lines at {limit - 2} characters or use quoted-printable/base64" in text


# ----- DATA ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_1000_octet_line_passes(ready: Driver, where: str) -> None:
    body = {"first": line(1000) + b"b\r\n", "middle": b"a\r\n" + line(1000) + b"b\r\n",
            "last": b"a\r\n" + line(1000)}[where]
    send_data(ready, body + b".\r\n")
    assert b"".join(received(ready).chunks) == body


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_1001_octet_line_is_refused(ready: Driver, where: str) -> None:
    body = {"first": line(1001) + b"b\r\n", "middle": b"a\r\n" + line(1001) + b"b\r\n",
            "last": b"a\r\n" + line(1001)}[where]
    exchanges = send_data(ready, body + b".\r\nNOOP\r\n")
    assert_line_refused(exchanges[0])
    assert [type(x.event) for x in exchanges[1:]] == [Noop]
    assert not ready.of_type(MessageReceived)
    assert ready.conn.transaction is None


def test_the_stuffed_dot_does_not_count(ready: Driver) -> None:
    body = line(1000, b".")  # 1001 octets on the wire once stuffed
    send_data(ready, stuff(body) + b".\r\n")
    assert b"".join(received(ready).chunks) == body


def test_a_leading_dot_of_the_content_counts(ready: Driver) -> None:
    (exchange,) = send_data(ready, stuff(b"." + line(1000)) + b".\r\n")
    assert_line_refused(exchange)


def test_a_configured_limit_is_used_and_named(smtp: Callable[..., Driver]) -> None:
    driver = smtp(max_line_length=2000)
    driver.ehlo()
    send_data(driver, line(2000) + b".\r\n")
    assert received(driver).size == 2000
    (exchange,) = send_data(driver, line(2001) + b".\r\n")
    assert_line_refused(exchange, limit=2000)


def test_a_huge_line_is_read_to_the_real_end(ready: Driver) -> None:
    """Nothing after a fake end inside the refused message is taken as a command."""
    wire = b"x" * 200_000 + b"\r\n.\n" + SMUGGLED + b"more\r\n.\r\nNOOP\r\n"
    exchanges = send_data(ready, wire)
    assert [type(x.event) for x in exchanges] == [MessageRefused, Noop]
    assert len(ready.of_type(Mail)) == 1


def test_a_huge_line_with_a_bare_lf_gets_the_bare_lf_answer(ready: Driver) -> None:
    (exchange,) = send_data(ready, b"x" * 5000 + b"\r\na\nb\r\n.\r\n")
    assert exchange.reply.enhanced == "5.6.11"


def test_the_next_message_is_measured_afresh(ready: Driver) -> None:
    send_data(ready, line(1001) + b".\r\n")
    send_data(ready, line(1000) + b".\r\n")
    assert received(ready).size == 1000


def test_the_sink_is_abandoned_and_gets_nothing_more(feed_mode: str) -> None:
    sinks: list[Recorder] = []
    driver = driver_with_sinks(feed_mode, sinks)
    driver.feed(b"DATA\r\n")
    exchanges = driver.feed(b"Subject: x\r\n\r\n" + line(5000) + line(80) * 100 + b".\r\nNOOP\r\n")
    assert_line_refused(exchanges[0])
    assert sinks[0].abandoned
    assert isinstance(exchanges[1].event, Noop)


@pytest.mark.parametrize("total", [999, 1000, 1001, 70_000])
def test_reader_across_every_feed_size(total: int) -> None:
    body = b"a\r\n" + line(total) + b"b\r\n"
    for step in (1, 7, 999, 1000, 1001, 65536):
        reader = DataReader(10_000_000)
        wire = body + b".\r\nrest"
        rest = b""
        for i in range(0, len(wire), step):
            rest = reader.feed(wire[i:i + step]) if not reader.done else rest + wire[i:i + step]
        assert reader.done and rest.endswith(b"rest")
        assert reader.lines.too_long == (total > 1000), (total, step)


def test_reader_pending_stays_bounded_for_a_huge_line() -> None:
    sink = Recorder()
    reader = DataReader(10_000_000, sink)
    for _ in range(300):  # 300 KB without a CRLF
        reader.feed(b"x" * 1024)
        assert len(reader._pending) <= _MAX_PENDING
    assert reader.lines.too_long
    assert sink.abandoned and sink.content == b""


# ----- BDAT ---------------------------------------------------------------------------------------
def test_bdat_1000_octet_line_passes(ready: Driver) -> None:
    exchanges = bdat(ready, (b"a\r\n" + line(1000), True))
    assert isinstance(exchanges[0].event, MessageReceived)


def test_bdat_1001_octet_line_is_refused(ready: Driver) -> None:
    exchanges = bdat(ready, (b"a\r\n" + line(1001), True))
    assert_line_refused(exchanges[0])


def test_bdat_line_across_chunks(ready: Driver) -> None:
    chunks = ((b"a\r\n" + b"x" * 400, False), (b"x" * 400, False), (b"x" * 300 + b"\r\nb\r\n", True))
    exchanges = bdat(ready, *chunks)
    assert [type(x.event) for x in exchanges] == [BdatChunk, BdatChunk, MessageRefused]
    assert_line_refused(exchanges[2])
    assert isinstance(ready.feed(b"NOOP\r\n")[0].event, Noop)


def test_bdat_refused_at_the_chunk_where_the_line_gets_too_long(ready: Driver) -> None:
    """Like a message over the size limit (RFC 3030 2): that chunk is refused, the rest get 503."""
    exchanges = bdat(ready, (b"x" * 600, False), (b"x" * 600, False), (b"\r\n", True))
    assert [type(x.event) for x in exchanges] == [BdatChunk, MessageRefused, MessageRefused]
    assert_line_refused(exchanges[1])
    assert exchanges[2].reply.code == 503


def test_bdat_line_across_chunks_at_the_limit_passes(ready: Driver) -> None:
    exchanges = bdat(ready, (b"x" * 499, False), (b"x" * 499 + b"\r", False), (b"\nb\r\n", True))
    assert isinstance(exchanges[-1].event, MessageReceived)
    assert received(ready).size == 1003


def test_bdat_reader_abandons_the_sink() -> None:
    sink = Recorder()
    reader = BdatReader(10_000_000, sink)
    reader.start_chunk(3000, last=True)
    reader.feed(line(80) * 10)
    reader.feed(b"y" * 2200)
    assert reader.lines.too_long and sink.abandoned


# ----- the meter ----------------------------------------------------------------------------------
@pytest.mark.parametrize("cuts", [(), (1,), (500,), (998, 999), (999,), (1000,), (1001,)])
@pytest.mark.parametrize("total", [1000, 1001])
def test_line_meter_with_cuts(total: int, cuts: tuple[int, ...]) -> None:
    data = b"ab\r\n" + line(total) + b"cd\r\n"
    meter = LineMeter(1000)
    edges = [0, *[4 + c for c in cuts], len(data)]
    for start, end in pairwise(edges):
        meter.measure(data[start:end])
    assert meter.too_long == (total > 1000)
