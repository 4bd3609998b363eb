"""Content goes to the session's sink as it arrives (DATA and BDAT), never held by the core whole.

Issue 11, point 12: memory per message must not grow with its size. These tests drive the sans-IO
core with a recording sink, whole and one byte at a time (``feed_mode``).
"""

from __future__ import annotations

from collections.abc import Callable

from hardmail.core.replies import Reply
from hardmail.proto.smtp.data import _MAX_PENDING, BdatReader, DataReader
from hardmail.proto.smtp.events import BdatChunk, MessageReceived, MessageRefused, Noop
from hardmail.proto.smtp.state import ServerConnection, SmtpOptions
from unit.proto.conftest import HOSTNAME, Driver

NO_ROOM = Reply(452, "4.3.1", "Insufficient system storage, try again later")


class Recorder:
    """A sink that records what it is given (and when the message was abandoned)."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.abandoned = False

    def write(self, piece: bytes) -> None:
        assert not self.abandoned, "a piece after abandon()"
        self.pieces.append(piece)

    def abandon(self) -> None:
        self.abandoned = True

    @property
    def content(self) -> bytes:
        return b"".join(self.pieces)


def driver_with_sinks(feed_mode: str, sinks: list[Recorder], refuse: bool = False,
                      **options: object) -> Driver:
    def factory() -> Recorder | Reply:
        if refuse:
            return NO_ROOM
        sinks.append(Recorder())
        return sinks[-1]

    conn = ServerConnection(SmtpOptions(hostname=HOSTNAME, **options), content_sink=factory)  # type: ignore[arg-type]
    driver = Driver(conn, bytewise=feed_mode == "bytewise", greeting=conn.greeting())
    driver.envelope()
    return driver


def test_data_content_reaches_the_sink_before_the_end_marker(feed_mode: str) -> None:
    sinks: list[Recorder] = []
    driver = driver_with_sinks(feed_mode, sinks)
    driver.feed(b"DATA\r\n")
    lines = b"".join(b"line %06d ..with a dot\r\n" % i for i in range(4000))  # ~100 KB
    driver.feed(b"Subject: big\r\n\r\n" + lines)
    (sink,) = sinks
    assert len(sink.content) >= len(lines) - _MAX_PENDING  # streamed, not kept for the end
    (exchange,) = driver.feed(b".\r\n")
    assert isinstance(exchange.event, MessageReceived)
    assert exchange.event.chunks == ()  # the sink has it, the event does not
    assert sink.content == b"Subject: big\r\n\r\n" + lines
    assert exchange.event.size == len(sink.content)
    assert not sink.abandoned


def test_dot_stuffing_is_undone_in_what_the_sink_gets(feed_mode: str) -> None:
    sinks: list[Recorder] = []
    driver = driver_with_sinks(feed_mode, sinks)
    driver.feed(b"DATA\r\n")
    driver.feed(b"..leading\r\nmid..dle\r\n...\r\n.\r\n")
    assert sinks[0].content == b".leading\r\nmid..dle\r\n..\r\n"


def test_data_reader_keeps_at_most_one_unfinished_line() -> None:
    sink = Recorder()
    reader = DataReader(10_000_000, sink, max_line_length=1_000_000)  # a raised text line limit
    for _ in range(300):  # 300 KB without a CRLF, one KB at a time
        reader.feed(b"x" * 1024)
        assert len(reader._pending) <= _MAX_PENDING
    assert len(sink.content) >= 300 * 1024 - _MAX_PENDING


def test_too_big_message_is_abandoned_once_and_read_to_its_end(feed_mode: str) -> None:
    sinks: list[Recorder] = []
    driver = driver_with_sinks(feed_mode, sinks, max_message_size=1000)
    driver.feed(b"DATA\r\n")
    exchanges = driver.feed(b"x" * 998 + b"\r\n" + b"y" * 100 + b"\r\n.\r\nNOOP\r\n")
    assert [type(x.event) for x in exchanges] == [MessageRefused, Noop]
    assert exchanges[0].reply.code == 552
    assert sinks[0].abandoned


def test_bdat_chunks_stream_to_one_sink(feed_mode: str) -> None:
    sinks: list[Recorder] = []
    driver = driver_with_sinks(feed_mode, sinks)
    exchanges = driver.feed(b"BDAT 6\r\nSubj: BDAT 5 LAST\r\nx\r\n\r\n")
    assert [type(x.event) for x in exchanges] == [BdatChunk, MessageReceived]
    (sink,) = sinks
    assert sink.content == b"Subj: x\r\n\r\n"
    assert exchanges[1].event.chunks == ()


def test_bdat_reader_hands_a_chunk_on_as_it_arrives() -> None:
    sink = Recorder()
    reader = BdatReader(10_000_000, sink)
    reader.start_chunk(100_000, last=True)
    reader.feed((b"a" * 78 + b"\r\n") * 500)
    assert len(sink.content) == 40_000


def test_a_sink_refusal_answers_bdat_after_consuming_its_chunk(feed_mode: str) -> None:
    sinks: list[Recorder] = []
    driver = driver_with_sinks(feed_mode, sinks, refuse=True)
    exchanges = driver.feed(b"BDAT 10 LAST\r\nNOOP\r\nab\r\nNOOP\r\n")
    assert [type(x.event) for x in exchanges] == [MessageRefused, Noop]
    assert exchanges[0].reply == NO_ROOM
    assert driver.conn.transaction is None


def test_a_sink_refusal_after_354_refuses_data_at_its_end(feed_mode: str) -> None:
    sinks: list[Recorder] = []
    driver = driver_with_sinks(feed_mode, sinks, refuse=True)
    driver.feed(b"DATA\r\n")
    exchanges = driver.feed(b"hello\r\n.\r\nNOOP\r\n")
    assert [type(x.event) for x in exchanges] == [MessageRefused, Noop]
    assert exchanges[0].reply == NO_ROOM


def test_content_in_progress_follows_the_message(feed_mode: str) -> None:
    sinks: list[Recorder] = []
    driver = driver_with_sinks(feed_mode, sinks)
    conn: ServerConnection = driver.conn
    assert not conn.content_in_progress
    driver.feed(b"BDAT 3\r\nabc")
    assert conn.content_in_progress  # a BDAT transaction holds its sink between chunks
    driver.feed(b"RSET\r\n")
    assert not conn.content_in_progress


def test_without_a_sink_the_content_comes_with_the_event(smtp: Callable[..., Driver]) -> None:
    driver = smtp()
    driver.envelope()
    driver.feed(b"DATA\r\n")
    (exchange,) = driver.feed(b"kept\r\n.\r\n")
    assert b"".join(exchange.event.chunks) == b"kept\r\n"


def test_bdat_without_a_transaction_never_opens_a_sink(feed_mode: str) -> None:
    """BDAT before MAIL (or after every RCPT failed) is read off the wire and refused: its content
    must not go to the session's sink (a file on disk, counted against the bytes in flight)."""
    sinks: list[Recorder] = []
    driver = driver_with_sinks(feed_mode, sinks)
    driver.feed(b"RSET\r\n")
    exchanges = driver.feed(b"BDAT 20\r\n" + b"x" * 18 + b"\r\nNOOP\r\n")
    assert [type(x.event) for x in exchanges] == [MessageRefused, Noop]
    assert exchanges[0].reply.code == 503
    assert sinks == []
    assert not driver.conn.content_in_progress
