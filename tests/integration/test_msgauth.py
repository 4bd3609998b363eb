"""Message authentication on real listeners, with DNS served by a real DNS server on loopback:
SPF/DKIM/DMARC results in Authentication-Results, DMARC reject and quarantine, forged results removed,
DNSBL refusal, greylisting with a fake clock, and DKIM signing of submitted mail."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hardmail.core.clock import FakeClock
from hardmail.msgauth.dkim import sign, verify
from hardmail.msgauth.dkim_keys import DomainKeys
from hardmail.msgauth.dns import DnsPythonResolver, StaticResolver
from hardmail.msgauth.spamfacts import Blocklist, dnsbl_findings
from hardmail.server.msgauth_hook import MsgAuthHook
from support.dns_server import LoopbackDnsServer
from support.live import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    HOSTNAME,
    ServerThread,
    client_tls_context,
    delivery_order,
    mx_config,
    running_server,
    send_mx,
)
from support.live import server_config as base_config
from support.msgauth_dns import txt_value

SENDER_KEYS_DOMAIN = "sender.example"


def _message(from_address: str, subject: str, extra: bytes = b"") -> bytes:
    return extra + (f"From: <{from_address}>\r\nTo: <{BOB}>\r\nSubject: {subject}\r\n"
                    f"Date: Sun, 29 Nov 2026 12:00:00 +0000\r\nMessage-ID: <{subject}@x>\r\n\r\nHello\r\n").encode()


def _zone(keys: DomainKeys) -> dict[tuple[str, str], Any]:
    zone: dict[tuple[str, str], Any] = {
        ("client.example", "A"): ["127.0.0.1"],
        ("1.0.0.127.in-addr.arpa", "PTR"): ["client.example."],
        ("sender.example", "TXT"): ['"v=spf1 ip4:127.0.0.1 -all"'],
        ("sender.example", "MX"): ["10 mx.sender.example."],
        ("_dmarc.sender.example", "TXT"): ['"v=DMARC1; p=reject"'],
        ("bank.example", "TXT"): ['"v=spf1 -all"'],
        ("bank.example", "MX"): ["10 mx.bank.example."],
        ("_dmarc.bank.example", "TXT"): ['"v=DMARC1; p=reject"'],
        ("quarantine.example", "TXT"): ['"v=spf1 -all"'],
        ("quarantine.example", "MX"): ["10 mx.quarantine.example."],
        ("_dmarc.quarantine.example", "TXT"): ['"v=DMARC1; p=quarantine"'],
        ("1.0.0.127.dnsbl.test", "A"): ["127.0.0.2"],
    }
    for generation in keys.generations():
        for record in keys.public_records(generation):
            zone[(record.name(keys.domain), "TXT")] = [txt_value(record.txt)]
    return zone


@pytest.fixture
def sender_keys(tmp_path: Path) -> DomainKeys:
    keys = DomainKeys(tmp_path / "sender-side", SENDER_KEYS_DOMAIN)
    keys.generate(1_800_000_000.0)
    return keys


@pytest.fixture
def dns_server(sender_keys: DomainKeys) -> Iterator[LoopbackDnsServer]:
    with LoopbackDnsServer(_zone(sender_keys)) as server:
        yield server


def _hook(server: ServerThread) -> MsgAuthHook:
    assert server.server is not None
    return next(h for h in server.server.context.hooks if isinstance(h, MsgAuthHook))


def _junk(server: ServerThread) -> list[bytes]:
    assert server.server is not None
    path = server.server.context.acceptor.maildir.mailbox_path(BOB) / ".Junk" / "new"
    return [p.read_bytes() for p in sorted(path.iterdir(), key=delivery_order)] if path.exists() else []


async def test_inbound_results_dmarc_enforcement_and_forged_results(
        tmp_path: Path, dns_server: LoopbackDnsServer, sender_keys: DomainKeys) -> None:
    forged = f"Authentication-Results: {HOSTNAME}; dmarc=pass header.from=bank.example\r\n".encode()
    plain = _message("ceo@sender.example", "signed", forged)
    signed = await sign(plain, sender_keys.signing_keys()) + plain
    with running_server(mx_config(tmp_path, dns_server)) as server:
        await asyncio.to_thread(send_mx, server, "ceo@sender.example", signed)
        with pytest.raises(smtplib.SMTPDataError) as refused:
            await asyncio.to_thread(send_mx, server, "ceo@bank.example", _message("ceo@bank.example", "phish"))
        await asyncio.to_thread(send_mx, server, "x@quarantine.example",
                                _message("x@quarantine.example", "doubtful"))
        [stored] = server.messages(BOB)
        [junk] = _junk(server)
        counts = _hook(server).counts
    assert refused.value.smtp_code == 550 and b"5.7.1" in refused.value.smtp_error
    head = stored.split(b"\r\n\r\n", 1)[0]
    assert f"Authentication-Results: {HOSTNAME};".encode() in head
    assert b"spf=pass smtp.mailfrom=ceo@sender.example" in head
    assert head.count(b"dkim=pass header.d=sender.example") == 2
    assert b"dmarc=pass" in head and b"header.from=sender.example" in head
    assert b"Received-SPF: pass" in head
    assert b"bank.example" not in head  # the forged field claiming our name is gone
    assert b"X-Spam-Status: No" in head
    assert b"Subject: doubtful" in junk and b"dmarc=fail" in junk
    assert counts["dmarc.pass"] == 1 and counts["dmarc_policy.reject"] == 1 and counts["dmarc_policy.quarantine"] == 1


async def test_dmarc_mark_only_delivers_to_inbox(tmp_path: Path, dns_server: LoopbackDnsServer) -> None:
    config = mx_config(tmp_path, dns_server, inbound={"dmarc_reject": "mark", "dmarc_quarantine": "mark"},
                     antispam={"enabled": False})
    with running_server(config) as server:
        await asyncio.to_thread(send_mx, server, "ceo@bank.example", _message("ceo@bank.example", "phish"))
        [stored] = server.messages(BOB)
    assert b"dmarc=fail" in stored and b"spf=fail" in stored


async def test_dnsbl_listing_refuses_at_connect(tmp_path: Path, dns_server: LoopbackDnsServer) -> None:
    listed = {"zone": "dnsbl.test", "score": 20}
    with running_server(mx_config(tmp_path, dns_server, antispam={"dnsbl": [listed]})) as server:
        host, port = server.address("smtp")
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            await asyncio.to_thread(smtplib.SMTP, host, port, timeout=30)
        assert _hook(server).counts["dnsbl.hit"] == 1
    assert refused.value.smtp_code == 554


async def test_dnsbl_answers_against_a_real_dns_server(dns_server: LoopbackDnsServer) -> None:
    resolver = DnsPythonResolver(["127.0.0.1"], dns_server.port, timeout=5)
    listed = await dnsbl_findings(resolver, "127.0.0.1", [Blocklist("dnsbl.test", 4)])
    assert [(f.check, f.score) for f in listed] == [("dnsbl", 4)]
    assert await dnsbl_findings(resolver, "127.0.0.1", [Blocklist("dnsbl.test", 4, ("127.0.0.4",))]) == []
    assert await dnsbl_findings(resolver, "127.0.0.9", [Blocklist("dnsbl.test", 4)]) == []


async def test_greylisting_defers_then_accepts_after_the_delay(tmp_path: Path, dns_server: LoopbackDnsServer) -> None:
    config = mx_config(tmp_path, dns_server, greylist={"enabled": True, "bypass_spf_pass": False})
    message = _message("ceo@sender.example", "grey")
    with running_server(config) as server:
        clock = FakeClock()
        _hook(server).clock = clock
        with pytest.raises(smtplib.SMTPRecipientsRefused) as deferred:
            await asyncio.to_thread(send_mx, server, "ceo@sender.example", message)
        clock.advance(120)
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            await asyncio.to_thread(send_mx, server, "ceo@sender.example", message)
        clock.advance(200)
        await asyncio.to_thread(send_mx, server, "ceo@sender.example", message)
        assert len(server.messages(BOB)) == 1
    code, text = deferred.value.recipients[BOB]
    assert code == 451 and text.startswith(b"4.7.1 Greylisted")


async def test_submitted_mail_is_dkim_signed(tmp_path: Path) -> None:
    config = base_config(tmp_path / "data")
    keys = DomainKeys(config.data_dir, "example.test")
    keys.generate(1_800_000_000.0)
    zone = {(r.name(keys.domain), "TXT"): [txt_value(r.txt)] for r in keys.public_records(keys.generations()[0])}
    with running_server(config) as server:
        host, port = server.address("submissions")

        def submit() -> None:
            with smtplib.SMTP_SSL(host, port, timeout=30, context=client_tls_context()) as client:
                client.login(ALICE, ALICE_PASSWORD)
                client.sendmail(ALICE, [BOB], _message(ALICE, "outgoing"))

        await asyncio.to_thread(submit)
        [stored] = server.messages(BOB)
    assert stored.count(b"DKIM-Signature:") == 2
    results = await verify(stored, StaticResolver(zone))
    assert [r.result for r in results] == ["pass", "pass"]


async def test_marked_spam_gets_headers_tagged_subject_and_junk(tmp_path: Path, dns_server: LoopbackDnsServer) -> None:
    config = mx_config(tmp_path, dns_server, antispam={"mark_threshold": 3, "subject_tag": "[SPAM]"})
    with running_server(config) as server:
        await asyncio.to_thread(send_mx, server, "ceo@bank.example", _message("x@nodmarc.example", "offer"))
        [junk] = _junk(server)
        assert server.messages(BOB) == []
    head = junk.split(b"\r\n\r\n", 1)[0]
    assert b"X-Spam-Status: Yes, score=3 required=3 tests=spf_fail" in head
    assert b"Subject: [SPAM] offer\r\n" in head and b"Subject: offer" not in head
