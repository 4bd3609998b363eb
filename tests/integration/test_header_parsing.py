"""One header parser on every path, over real sockets: a From: that cannot be reduced to one author
domain fails DMARC under the policy of the domains it names (RFC 7489 6.6.1) on the MX port, the
submission port refuses a From: without an address, and the verdict fields hardmail writes are
removed from every incoming message on every listener. DNS is a real DNS server on loopback."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.dns_server import LoopbackDnsServer
from support.live import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    HOSTNAME,
    RawClient,
    ServerThread,
    client_tls_context,
    delivery_order,
    mx_config,
    running_server,
    send_mx,
    server_config,
)

ZONE: dict[tuple[str, str], Any] = {
    ("client.example", "A"): ["127.0.0.1"],
    ("1.0.0.127.in-addr.arpa", "PTR"): ["client.example."],
    ("bank.example", "TXT"): ['"v=spf1 -all"'],
    ("bank.example", "MX"): ["10 mx.bank.example."],
    ("_dmarc.bank.example", "TXT"): ['"v=DMARC1; p=reject"'],
    ("sender.example", "TXT"): ['"v=spf1 ip4:127.0.0.1 -all"'],  # the attacker's own, passing domain
    ("sender.example", "MX"): ["10 mx.sender.example."],
    ("_dmarc.quarantine.example", "TXT"): ['"v=DMARC1; p=quarantine"'],
    ("_dmarc.subreject.example", "TXT"): ['"v=DMARC1; p=none; sp=reject"'],
}
TAIL = b"To: <bob@example.test>\r\nSubject: pay now\r\nDate: Sun, 29 Nov 2026 12:00:00 +0000\r\n\r\nHello\r\n"
CEO = b"ceo@bank.example"


@pytest.fixture
def dns_server() -> Iterator[LoopbackDnsServer]:
    with LoopbackDnsServer(ZONE) as server:
        yield server


AMBIGUOUS = {
    "obsolete-field-after": b"From: <" + CEO + b">\r\nX-Foo : bar\r\n" + TAIL,
    "obsolete-field-before": b"X-Foo : bar\r\nFrom: <" + CEO + b">\r\n" + TAIL,
    "obsolete-from": b"From : <" + CEO + b">\r\n" + TAIL,
    "line-without-colon": b"From: <" + CEO + b">\r\nthis line has no colon\r\n" + TAIL,
    "no-colon-line-first": b"X-junk\r\nFrom: <" + CEO + b">\r\n" + TAIL,
    "two-from-fields": b"From: <me@sender.example>\r\nFrom: <" + CEO + b">\r\n" + TAIL,
    "two-mailboxes": b"From: <me@sender.example>, <" + CEO + b">\r\n" + TAIL,
    "unparsable-from": b"From: " + CEO + b" <\r\n" + TAIL,
    "group-named-like-the-victim": b'From: "' + CEO + b'" :;\r\n' + TAIL,
    # too long to parse, read leniently: a comment between "@" and the domain must not hide it
    "over-long-from-comment-in-domain": b"From: <me@sender.example>,"
                                        + (b"\r\n (" + b"x" * 900 + b")") * 6 + b" ceo@(c)bank.example\r\n" + TAIL,
    "obsolete-route": b"From: <@bank.example:me@sender.example>\r\n" + TAIL,  # RFC 5322 4.4
    "from-like-continuation-first": b" From: <" + CEO + b">\r\nFrom: <me@sender.example>\r\n" + TAIL,
    "from-like-without-colon": b"From: <me@sender.example>\r\nFrom <" + CEO + b">\r\n" + TAIL,
    "many-comments-comment-in-domain": b"From: <me@sender.example>, " + b"(c)" * 70
                                       + b" ceo@ (c) bank.example\r\n" + TAIL,
}
NO_AUTHOR = {
    "no-from": TAIL,
    "empty-from": b"From:\r\n" + TAIL,
    "empty-group": b"From: Undisclosed:;\r\n" + TAIL,
    # beside a passing domain, an address whose "domain" no DMARC record can be found for
    "junk-domain-beside-a-real-one": b"From: <me@sender.example>, <" + CEO + b"!>\r\n" + TAIL,
    "ambiguous-with-junk-domain": "From : <me@sender.example>, <ceo@bank.example\u3002>\r\n".encode() + TAIL,
}


@pytest.fixture(scope="module")
def mx_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with LoopbackDnsServer(ZONE) as dns, running_server(mx_config(tmp_path_factory.mktemp("mx"), dns)) as server:
        yield server


@pytest.mark.parametrize("message", list(AMBIGUOUS.values()), ids=list(AMBIGUOUS))
def test_from_that_is_not_one_author_domain_fails_dmarc_on_the_mx_port(mx_server: ServerThread,
                                                                        message: bytes) -> None:
    """RFC 7489 6.6.1: each variant was delivered to the inbox as dmarc=permerror before."""
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send_mx(mx_server, "me@sender.example", message)
    assert refused.value.smtp_code == 550 and refused.value.smtp_error.startswith(b"5.7.1")
    assert b"DMARC policy (p=reject)" in refused.value.smtp_error
    assert mx_server.messages(BOB) == []


# "_dmarc." before this 250-character subdomain of bank.example is longer than a DNS name may be
LONG_SUBDOMAIN = b".".join([b"a" * 63] * 3) + b".b" * 23 + b".bank.example"


def test_a_subdomain_too_long_for_its_dmarc_name_gets_the_organizational_policy(mx_server: ServerThread) -> None:
    """RFC 7489 6.6.3: no record can exist at such a name, so the organizational domain's policy
    applies; the failed query was a temporary error before, and the message reached the inbox."""
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send_mx(mx_server, "me@sender.example", b"From: <ceo@" + LONG_SUBDOMAIN + b">\r\n" + TAIL)
    assert refused.value.smtp_code == 550 and b"DMARC policy (p=reject)" in refused.value.smtp_error
    assert mx_server.messages(BOB) == []


def _bdat_in_small_chunks(client: RawClient, message: bytes) -> tuple[int, list[str]]:
    reply: tuple[int, list[str]] = (0, [])
    for at in range(0, len(message), 7):
        part = message[at:at + 7]
        last = " LAST" if at + 7 >= len(message) else ""
        client.send(f"BDAT {len(part)}{last}\r\n".encode() + part)
        reply = client.read_reply()
    return reply


def _data_in_small_pieces(client: RawClient, message: bytes) -> tuple[int, list[str]]:
    assert client.command("DATA")[0] == 354
    data = message + b".\r\n"
    for at in range(0, len(data), 3):
        client.send(data[at:at + 3])
    return client.read_reply()


@pytest.mark.parametrize("send", [_bdat_in_small_chunks, _data_in_small_pieces], ids=["bdat", "data-pieces"])
@pytest.mark.parametrize("message", [AMBIGUOUS["obsolete-from"], AMBIGUOUS["two-from-fields"],
                                     b"From: <" + CEO + b">\r\n"], ids=["obsolete-from", "two-from", "no-blank-line"])
def test_ambiguous_from_fails_dmarc_however_the_message_arrives(mx_server: ServerThread, send: Any,
                                                                 message: bytes) -> None:
    client = RawClient(mx_server.address("smtp"))
    try:
        client.read_reply()
        assert client.command("EHLO client.example")[0] == 250
        assert client.command("MAIL FROM:<me@sender.example>")[0] == 250
        assert client.command(f"RCPT TO:<{BOB}>")[0] == 250
        code, lines = send(client, message)
    finally:
        client.close()
    assert code == 550 and "DMARC policy (p=reject)" in lines[0]
    assert mx_server.messages(BOB) == []


def _junk(server: ServerThread, address: str) -> list[bytes]:
    assert server.server is not None
    path = server.server.context.acceptor.maildir.mailbox_path(address) / ".Junk" / "new"
    return [p.read_bytes() for p in sorted(path.iterdir(), key=delivery_order)] if path.exists() else []


@pytest.mark.parametrize("from_line", [
    b"From : <ceo@quarantine.example>\r\n",
    b"From: <me@sender.example>, <ceo@quarantine.example>\r\n",
], ids=["obsolete-from", "two-domains"])
def test_an_ambiguous_from_of_a_quarantine_domain_goes_to_junk(tmp_path: Path, dns_server: LoopbackDnsServer,
                                                                from_line: bytes) -> None:
    with running_server(mx_config(tmp_path, dns_server)) as server:
        send_mx(server, "me@sender.example", from_line + TAIL)
        assert server.messages(BOB) == []
        [stored] = _junk(server, BOB)
    assert b"dmarc=fail" in stored and b"header.from=quarantine.example" in stored


@pytest.mark.parametrize("from_line", [
    b"From: <ceo@mail.subreject.example>\r\n",
    b"From: <me@sender.example>, <ceo@mail.subreject.example>\r\n",
    b"From : <me@sender.example>, <ceo@mail.subreject.example>\r\n",
], ids=["one-domain", "two-domains", "ambiguous"])
def test_the_subdomain_policy_applies_to_every_author_domain(mx_server: ServerThread, from_line: bytes) -> None:
    """RFC 7489 6.6.3: sp= of the organizational record applies to a subdomain without a record."""
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send_mx(mx_server, "me@sender.example", from_line + TAIL)
    assert refused.value.smtp_code == 550 and b"DMARC policy (p=reject)" in refused.value.smtp_error
    assert mx_server.messages(BOB) == []


@pytest.mark.parametrize("message", list(NO_AUTHOR.values()), ids=list(NO_AUTHOR))
def test_from_without_any_author_domain_is_refused_on_the_mx_port(mx_server: ServerThread, message: bytes) -> None:
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send_mx(mx_server, "me@sender.example", message)
    assert refused.value.smtp_code == 550 and refused.value.smtp_error.startswith(b"5.7.1")
    assert b"no author domain" in refused.value.smtp_error
    assert mx_server.messages(BOB) == []


async def test_encoded_crlf_in_a_display_name_is_accepted_on_the_mx_port(
        tmp_path: Path, dns_server: LoopbackDnsServer) -> None:
    message = b"From: =?utf-8?q?Bob=0D=0AX?= <me@sender.example>\r\n" + TAIL
    with running_server(mx_config(tmp_path, dns_server)) as server:
        await asyncio.to_thread(send_mx, server, "me@sender.example", message)
        [stored] = server.messages(BOB)
    assert b"dmarc=none" in stored and stored.endswith(message)


def _submit(server: ServerThread, message: bytes, recipients: list[str] | None = None) -> None:
    host, port = server.address("submissions")
    with smtplib.SMTP_SSL(host, port, timeout=30, context=client_tls_context()) as client:
        client.login(ALICE, ALICE_PASSWORD)
        client.sendmail(ALICE, recipients or [BOB], message)


@pytest.mark.parametrize("from_line", [
    b"From:\r\n",
    b"From: Undisclosed:;\r\n",
    b'From: "alice@example.test" :;\r\n',
    b"From: alice@example.test\r\nSender: undisclosed:;\r\n",
])
def test_submission_refuses_a_from_without_an_address(tmp_path: Path, from_line: bytes) -> None:
    with running_server(server_config(tmp_path / "data")) as server:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            _submit(server, from_line + TAIL)
        assert server.messages(BOB) == []
    assert refused.value.smtp_code == 553 and b"5.7.1" in refused.value.smtp_error


def test_submission_accepts_a_from_folded_past_one_line_length(tmp_path: Path) -> None:
    """RFC 5322 2.1.1 bounds a line at 998 characters, not a field: a long encoded display name
    folded over many lines is ordinary mail and must not be refused."""
    words = b"\r\n ".join([b"=?UTF-8?Q?Al=C3=AFce_Liddell_of_the_very_long_name?="] * 24)
    message = b"From: " + words + b"\r\n <alice@example.test>\r\n" + TAIL
    with running_server(server_config(tmp_path / "data")) as server:
        _submit(server, message)
        [stored] = server.messages(BOB)
    assert stored.endswith(message)


def test_submission_accepts_an_encoded_crlf_in_a_display_name(tmp_path: Path) -> None:
    message = (b"From: =?utf-8?q?Alice=0D=0ABcc=3A_x?= <alice@example.test>\r\n"
               b"Sender: =?utf-8?q?A=0D=0A?= <alice@example.test>\r\n" + TAIL)
    with running_server(server_config(tmp_path / "data")) as server:
        _submit(server, message)
        [stored] = server.messages(BOB)
    assert stored.endswith(message)


FORGED = (f"Authentication-Results: {HOSTNAME}; dkim=pass header.d=example.test\r\n"
          f"ARC-Authentication-Results: i=1; {HOSTNAME.upper()}; dmarc=pass\r\n"
          f"ARC-Authentication-Results: (c) i=2 (d); {HOSTNAME}.; arc=pass\r\n"
          "Authentication-Results: other.example; spf=pass\r\n"
          "X-Spam-Status: No, score=-100\r\nX-Spam-Flag: NO\r\nX-Spam-Score:\r\n -100\r\n"
          "Received-SPF: pass (forged)\r\nX-Hardmail-Queue-ID: 123\r\n").encode()
OUR_VERDICTS = (b"dkim=pass header.d=example.test", b"dmarc=pass", b"arc=pass", b"score=-100", b"-100", b"forged",
                b"X-Spam-Flag", b"X-Hardmail-Queue-ID")


def _assert_stripped(stored: bytes) -> None:
    head = stored.split(b"\r\n\r\n", 1)[0]
    for text in OUR_VERDICTS:
        assert text not in head, text
    assert b"Authentication-Results: other.example; spf=pass\r\n" in head  # another host's is kept
    assert stored.endswith(TAIL)


@pytest.mark.parametrize("padding", [0, 40], ids=["small-header", "header-parsed-off-the-loop"])
def test_submission_to_a_local_mailbox_strips_our_verdict_fields(tmp_path: Path, padding: int) -> None:
    pad = (b"X-Pad: " + b"p" * 990 + b"\r\n") * padding  # past INLINE_PARSE_LIMIT: worker-thread path
    with running_server(server_config(tmp_path / "data")) as server:
        _submit(server, b"From: alice@example.test\r\n" + pad + FORGED + TAIL)
        [stored] = server.messages(BOB)
    _assert_stripped(stored)
    assert stored.count(b"X-Pad: ") == padding


def test_submission_to_a_remote_recipient_strips_our_verdict_fields(tmp_path: Path) -> None:
    with running_server(server_config(tmp_path / "data")) as server:
        _submit(server, b"From: alice@example.test\r\n" + FORGED + TAIL, ["x@elsewhere.example"])
        assert server.server is not None
        queue = server.server.context.acceptor.queue
        [row] = server.run(queue.store.list_queued())
        _, spooled = queue.spool.load(row.queue_id)
    _assert_stripped(spooled)


@pytest.mark.parametrize("trusted", [False, True], ids=["mx", "trusted-relay"])
async def test_a_verdict_forged_in_a_leading_continuation_line_is_removed(
        tmp_path: Path, dns_server: LoopbackDnsServer, trusted: bool) -> None:
    """(Submission refuses such a header block: a malformed line.)"""
    forged = f" Authentication-Results: {HOSTNAME}; dmarc=pass\r\n X-Spam-Status: No\r\n".encode()
    relay = {"trusted_networks": ["127.0.0.0/8"]} if trusted else {}
    with running_server(mx_config(tmp_path, dns_server, relay=relay)) as server:
        await asyncio.to_thread(send_mx, server, "me@sender.example", forged + b"From: <me@sender.example>\r\n" + TAIL)
        [stored] = server.messages(BOB)
    assert b"dmarc=pass" not in stored and b"X-Spam-Status: No\r\n" not in stored and stored.endswith(TAIL)


@pytest.mark.parametrize("trusted", [False, True], ids=["mx", "trusted-relay"])
async def test_mx_and_trusted_relays_strip_our_verdict_fields(
        tmp_path: Path, dns_server: LoopbackDnsServer, trusted: bool) -> None:
    relay = {"trusted_networks": ["127.0.0.0/8"]} if trusted else {}
    config = mx_config(tmp_path, dns_server, relay=relay)
    with running_server(config) as server:
        await asyncio.to_thread(send_mx, server, "me@sender.example", b"From: <me@sender.example>\r\n" + FORGED + TAIL)
        [stored] = server.messages(BOB)
    _assert_stripped(stored)
    head = stored.split(b"\r\n\r\n", 1)[0]
    assert head.count(b"Received-SPF:") == (0 if trusted else 1)  # ours only
    if not trusted:
        assert b"Received-SPF: pass (mail.example.test:" in head and b"X-Spam-Status: No, score=" in head


def test_a_header_section_that_does_not_end_within_the_head_limit_is_refused(tmp_path: Path) -> None:
    """A field past the 256 KiB the checks read (here a forged verdict) would reach the mailbox
    unseen: such a message is refused on the MX port as on submission."""
    padding = b"X-Pad: " + b"p" * 990 + b"\r\n"
    message = b"From: <me@sender.example>\r\n" + padding * 300 + b"X-Spam-Status: No\r\n" + TAIL
    with running_server(server_config(tmp_path / "data", smtp={"max_message_size": 2_000_000})) as server:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            send_mx(server, "me@sender.example", message)
        assert server.messages(BOB) == []
    assert (refused.value.smtp_code, refused.value.smtp_error) == (552, b"5.3.4 Message header section too large")


LONG_FIELDS = (b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=sender.example; s=s; h=from:to;\r\n"
               b" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=; b=" + b"\r\n\t".join([b"A" * 70] * 40) + b"\r\n"
               b"References: " + b"\r\n ".join(b"<message-%d@example.org>" % i for i in range(500)) + b"\r\n"
               b"X-Long: " + b"x" * 990 + b"\r\n")


async def test_long_ordinary_fields_are_not_refused(tmp_path: Path, dns_server: LoopbackDnsServer) -> None:
    """A long folded References or DKIM-Signature, or a 998-character line, is ordinary mail."""
    with running_server(mx_config(tmp_path / "mx", dns_server)) as server:
        message = b"From: <me@sender.example>\r\n" + LONG_FIELDS + TAIL
        await asyncio.to_thread(send_mx, server, "me@sender.example", message)
        [stored] = server.messages(BOB)
        assert stored.endswith(message)
    with running_server(server_config(tmp_path / "submission")) as server:
        message = b"From: alice@example.test\r\n" + LONG_FIELDS + TAIL
        await asyncio.to_thread(_submit, server, message)
        [stored] = server.messages(BOB)
        assert message in stored
