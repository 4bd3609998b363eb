"""core/replies.py: reply rendering (RFC 5321 4.2, enhanced codes per RFC 2034 4)."""

from __future__ import annotations

import re

import pytest

from hardmail.core import replies
from hardmail.core.replies import Reply


def test_single_line():
    assert Reply(250, "2.0.0", "OK").to_bytes() == b"250 2.0.0 OK\r\n"


def test_single_line_without_enhanced_code():
    assert Reply(354, None, "Go ahead").to_bytes() == b"354 Go ahead\r\n"


def test_enhanced_codes_can_be_left_out():
    assert Reply(250, "2.0.0", "OK").to_bytes(enhanced_codes=False) == b"250 OK\r\n"


def test_multi_line_has_enhanced_code_on_every_line():
    wire = Reply(550, "5.7.1", ("first", "second", "third")).to_bytes()
    assert wire == b"550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n"


def test_multi_line_without_enhanced_code():
    assert Reply(250, None, ("a", "b")).to_bytes() == b"250-a\r\n250 b\r\n"


def test_empty_text():
    assert Reply(334, None, "").to_bytes() == b"334 \r\n"
    assert Reply(250, None, ()).to_bytes() == b"250 \r\n"


def test_classification():
    assert Reply(250, None, "").is_positive
    assert Reply(354, None, "").is_positive
    assert Reply(451, None, "").is_temporary
    assert not Reply(451, None, "").is_permanent
    assert Reply(550, None, "").is_permanent


def test_with_text_keeps_codes():
    assert replies.SYNTAX_ERROR.with_text("x") == Reply(501, "5.5.4", "x")


def test_log_text():
    assert Reply(550, "5.1.1", ("a", "b")).log_text() == "550 5.1.1 a / b"
    assert Reply(250, None, "OK").log_text() == "250 OK"


NAMED = [value for value in vars(replies).values() if isinstance(value, Reply)]


@pytest.mark.parametrize("reply", NAMED, ids=lambda r: f"{r.code}-{r.lines[0][:20]}")
def test_named_replies_are_well_formed(reply):
    assert 200 <= reply.code < 600
    if reply.enhanced is not None:
        assert re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", reply.enhanced)
        assert reply.enhanced[0] == str(reply.code)[0]
    wire = reply.to_bytes()
    assert wire.isascii()
    for line in wire.split(b"\r\n")[:-1]:
        assert re.match(rb"^\d{3}[ -]", line)
        assert len(line) + 2 <= 512  # RFC 5321 4.5.3.1.5
