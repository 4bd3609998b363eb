"""Outbound delivery end to end: a real DNS server and real receiving SMTP servers on loopback.

MX hosts live on different 127.0.0.x addresses sharing one port (``outbound.port``); the resolver
asks the loopback DNS server; time is a FakeClock and the runner is driven with ``run_once``.
"""

from __future__ import annotations

import asyncio
import datetime
import email
import hashlib
import http.server
import json
import logging
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hardmail.config.schema import Config
from hardmail.core.clock import FakeClock
from hardmail.delivery.assembly import DeliveryServices, build_runner, build_services
from hardmail.delivery.dsn import DsnRequest, RecipientDsn
from hardmail.delivery.maildir import MaildirStore
from hardmail.delivery.runner import DeliveryRunner
from hardmail.store import open_store
from hardmail.store.ports import Store
from hardmail.store.ports_queue import RecipientOutcome
from support.dns_server import LoopbackDnsServer
from support.smtp_sink import Sink, free_port_on

ALICE = "alice@example.test"
MX1, MX2, MX3 = "127.0.0.2", "127.0.0.3", "127.0.0.4"

ZONE: dict[tuple[str, str], Any] = {
    ("dest.example", "MX"): ["10 mx1.dest.example.", "20 mx2.dest.example."],
    ("mx1.dest.example", "A"): [MX1],
    ("mx2.dest.example", "A"): [MX2],
    ("nullmx.example", "MX"): ["0 ."],
    ("implicit.example", "A"): [MX2],
    ("cname.example", "MX"): ["10 mail.cname.example."],
    ("mail.cname.example", "CNAME"): ["mx1.dest.example."],
    # MTA-STS: good.example's MX has a certificate from the trusted CA, bad.example's is self-signed
    ("good.example", "MX"): ["10 mx.good.example."],
    ("mx.good.example", "A"): [MX1],
    ("_mta-sts.good.example", "TXT"): ['"v=STSv1; id=20240101"'],
    ("mta-sts.good.example", "A"): ["127.0.0.1"],
    ("bad.example", "MX"): ["10 mx.bad.example."],
    ("mx.bad.example", "A"): [MX3],
    ("_mta-sts.bad.example", "TXT"): ['"v=STSv1; id=20240101"'],
    ("mta-sts.bad.example", "A"): ["127.0.0.1"],
    ("plain.example", "MX"): ["10 mx.bad.example."],  # same self-signed host, but no policy
}


@pytest.fixture(scope="module")
def dns() -> Iterator[LoopbackDnsServer]:
    with LoopbackDnsServer(ZONE) as server:
        yield server


@pytest.fixture
def port() -> int:
    return free_port_on(MX1, MX2, MX3)


@dataclass
class Harness:
    config: Config
    store: Store
    services: DeliveryServices
    runner: DeliveryRunner
    clock: FakeClock

    async def send(self, recipients: list[str], subject: str, sender: str = ALICE, body: bytes = b"hello\r\n") -> str:
        data = f"From: {sender}\r\nTo: {', '.join(recipients)}\r\nSubject: {subject}\r\n\r\n".encode() + body
        return await self.services.queue.enqueue(sender, recipients, data, origin_account=sender or None)

    def inbox(self, address: str = ALICE) -> list[Message]:
        new = MaildirStore(self.config.maildir_root, "x").mailbox_path(address) / "new"
        return [email.message_from_bytes(p.read_bytes()) for p in sorted(new.iterdir())] if new.exists() else []


async def make_harness(tmp_path: Path, dns: LoopbackDnsServer, port: int, **outbound: Any) -> Harness:
    config = Config.model_validate({
        "server": {"hostname": "mail.example.test", "data_dir": str(tmp_path / "data")},
        "dns": {"nameservers": ["127.0.0.1"], "port": dns.port, "timeout": 10},
        "outbound": {"port": port, "connect_timeout": 10, "command_timeout": 20, "data_timeout": 20,
                     "refuse_non_public": False, **outbound},  # the sinks listen on 127.0.0.x
    })
    clock = FakeClock()
    store = await open_store(config.database_url, clock=clock)
    await store.migrate()
    await store.add_domain("example.test")
    await store.add_account(ALICE, "$argon2id$not-used")
    services = build_services(config, store, MaildirStore(config.maildir_root, "mail.example.test"), clock)
    runner = build_runner(config, store, services, clock)
    runner.rng = lambda: 0.5  # the middle of the jitter range: retry times are exact
    return Harness(config, store, services, runner, clock)


@pytest.fixture
async def harness(tmp_path: Path, dns: LoopbackDnsServer, port: int) -> AsyncIterator[Harness]:
    made = await make_harness(tmp_path, dns, port)
    yield made
    await made.store.close()


def _report_parts(message: Message) -> tuple[Message, list[Message]]:
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    [status] = [p for p in message.walk() if p.get_content_type() == "message/delivery-status"]
    blocks = status.get_payload()
    assert isinstance(blocks, list)
    return blocks[0], blocks[1:]


async def test_delivers_to_the_lowest_preference_mx(harness: Harness, port: int) -> None:
    with Sink(MX1, port) as mx1, Sink(MX2, port) as mx2:
        await harness.send(["bob@dest.example", "carol@dest.example"], "lowest")
        assert await harness.runner.run_once() == 1
    [got] = mx1.received
    assert sorted(got.rcpt_tos) == ["bob@dest.example", "carol@dest.example"]  # one attempt for the domain
    assert got.mail_from == ALICE and b"Subject: lowest" in got.data
    assert mx2.received == []
    assert await harness.store.queue.list_queued() == []
    assert list(harness.services.queue.spool.list()) == []


async def test_falls_back_to_the_next_mx_when_the_first_refuses_connections(harness: Harness, port: int) -> None:
    with Sink(MX2, port) as mx2:  # nothing listens on MX1: connection refused
        await harness.send(["bob@dest.example"], "fallback")
        await harness.runner.run_once()
    assert mx2.subjects() == ["fallback"]
    assert await harness.store.queue.list_queued() == []


async def test_follows_a_cname_chain_to_the_mx_address(harness: Harness, port: int) -> None:
    with Sink(MX1, port) as mx1:
        await harness.send(["bob@cname.example"], "via cname")
        await harness.runner.run_once()
    assert mx1.subjects() == ["via cname"]


async def test_uses_the_domain_itself_without_mx_records(harness: Harness, port: int) -> None:
    with Sink(MX2, port) as mx2:
        await harness.send(["bob@implicit.example"], "implicit")
        await harness.runner.run_once()
    assert mx2.subjects() == ["implicit"]


async def test_a_4xx_is_retried_at_the_computed_time(harness: Harness, port: int) -> None:
    replies = {"bob@dest.example": "451 4.7.1 greylisted, try later"}
    with Sink(MX1, port, rcpt_reply=replies.get) as mx1:
        queue_id = await harness.send(["bob@dest.example"], "retry me")
        start = harness.clock.now()
        await harness.runner.run_once()
        [entry] = await harness.store.queue.list_queued()
        assert entry.attempts == 1 and entry.recipients[0].state == "pending"
        assert entry.next_attempt_at == start + 300.0  # first_retry, jitter centred by the injected rng
        assert "451" in entry.last_error and entry.recipients[0].last_code == 451
        assert await harness.runner.run_once() == 0  # not due yet
        harness.clock.advance(299)
        assert await harness.runner.run_once() == 0
        replies.clear()
        harness.clock.advance(1)
        assert await harness.runner.run_once() == 1
    assert mx1.subjects() == ["retry me"]
    assert await harness.store.queue.get_queued(queue_id) is None
    assert harness.inbox() == []  # no bounce, no delay notice


async def test_the_second_retry_waits_twice_as_long(harness: Harness, port: int) -> None:
    with Sink(MX1, port, rcpt_reply=lambda _a: "421 4.3.2 busy"):
        await harness.send(["bob@dest.example"], "twice")
        await harness.runner.run_once()
        harness.clock.advance(300)
        await harness.runner.run_once()
    [entry] = await harness.store.queue.list_queued()
    assert (entry.attempts, entry.next_attempt_at) == (2, harness.clock.now() + 600.0)


async def test_a_5xx_bounces_with_an_rfc3464_report(harness: Harness, port: int) -> None:
    def refuse(address: str) -> str | None:
        return "550 5.1.1 no such user here" if address.startswith("nobody") else None

    with Sink(MX1, port, rcpt_reply=refuse) as mx1:
        await harness.send(["nobody@dest.example", "bob@dest.example"], "half bounce")
        await harness.runner.run_once()
    assert mx1.received[0].rcpt_tos == ["bob@dest.example"]
    [bounce] = harness.inbox()
    assert bounce["From"].startswith("Mail Delivery System <MAILER-DAEMON@")
    per_message, [recipient] = _report_parts(bounce)
    assert per_message["Reporting-MTA"] == "dns; mail.example.test"
    assert recipient["Final-Recipient"] == "rfc822; nobody@dest.example"
    assert (recipient["Action"], recipient["Status"]) == ("failed", "5.1.1")
    assert "550 5.1.1 no such user here" in recipient["Diagnostic-Code"]
    assert recipient["Remote-MTA"] == "dns; mx1.dest.example"
    [original] = [p for p in bounce.walk() if p.get_content_type() == "message/rfc822"]
    assert "half bounce" in original.as_string()
    assert await harness.store.queue.list_queued() == []


async def test_null_mx_bounces_at_once_without_connecting(harness: Harness, port: int) -> None:
    with Sink(MX1, port) as mx1:
        await harness.send(["bob@nullmx.example"], "to null mx")
        await harness.runner.run_once()
    assert mx1.sessions == set()
    [bounce] = harness.inbox()
    _, [recipient] = _report_parts(bounce)
    assert (recipient["Final-Recipient"], recipient["Status"]) == ("rfc822; bob@nullmx.example", "5.1.10")
    assert await harness.store.queue.list_queued() == []


async def test_a_bounce_is_never_bounced(harness: Harness, port: int) -> None:
    with Sink(MX1, port, rcpt_reply=lambda _a: "550 5.1.1 gone"):
        await harness.send(["bob@dest.example"], "I am a bounce", sender="")
        await harness.runner.run_once()
    assert harness.inbox() == []
    assert await harness.store.queue.list_queued() == []


async def test_expiry_bounces_and_the_delay_notice_comes_once(harness: Harness, port: int) -> None:
    with Sink(MX1, port, rcpt_reply=lambda _a: "451 4.4.1 later"):
        await harness.send(["bob@dest.example"], "slow")
        await harness.runner.run_once()
        assert harness.inbox() == []
        harness.clock.advance(4 * 3600)
        await harness.runner.run_once()
        harness.clock.advance(4 * 3600)
        await harness.runner.run_once()
        [delayed] = harness.inbox()
        _, [recipient] = _report_parts(delayed)
        assert recipient["Action"] == "delayed" and "Will-Retry-Until" in recipient
        harness.clock.advance(5 * 86400)
        await harness.runner.run_once()
    notices = harness.inbox()  # Maildir names do not sort in delivery order
    actions = sorted((r["Action"], r["Status"]) for n in notices for r in _report_parts(n)[1])
    assert actions == [("delayed", "4.4.1"), ("failed", "5.4.7")]
    assert await harness.store.queue.list_queued() == []


async def test_one_connection_carries_several_messages(harness: Harness, port: int) -> None:
    with Sink(MX1, port) as mx1:
        for number in range(3):
            await harness.send([f"user{number}@dest.example"], f"reuse {number}")
        await harness.runner.run_once()
    assert sorted(mx1.subjects()) == ["reuse 0", "reuse 1", "reuse 2"]
    assert len(mx1.sessions) == 1


async def test_each_attempt_is_one_json_log_line(harness: Harness, port: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hardmail.events")
    with Sink(MX1, port):
        await harness.send(["bob@dest.example"], "logged")
        await harness.runner.run_once()
    lines = [json.loads(r.getMessage()) for r in caplog.records if '"delivery.attempt"' in r.getMessage()]
    [line] = lines
    assert (line["mx"], line["ip"], line["code"], line["result"]) == ("mx1.dest.example", MX1, 250, "delivered")
    assert line["reply"].startswith("250 ") and "tls" in line


# MTA-STS


def _self_signed(hostname: str, directory: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
            .sign(key, hashes.SHA256()))
    (directory / "self.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "self.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "self.pem", directory / "self.key")
    return context


def _server_context(ca: trustme.CA, *hostnames: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*hostnames).configure_cert(context)
    return context


class _PolicyHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        domain = self.headers["Host"].removeprefix("mta-sts.")
        body = f"version: STSv1\nmode: enforce\nmx: mx.{domain}\nmax_age: 86400\n".encode()
        self.send_response(200 if self.path == "/.well-known/mta-sts.txt" else 404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def policy_server(tmp_path: Path) -> Iterator[tuple[int, trustme.CA]]:
    ca = trustme.CA()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PolicyHandler)
    server.socket = _server_context(ca, "mta-sts.good.example", "mta-sts.bad.example").wrap_socket(
        server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], ca
    server.shutdown()
    server.server_close()


async def test_mta_sts_enforce_refuses_a_self_signed_mx_and_delivers_to_a_trusted_one(
    tmp_path: Path, dns: LoopbackDnsServer, port: int, policy_server: tuple[int, trustme.CA]
) -> None:
    https_port, ca = policy_server
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    harness = await make_harness(tmp_path, dns, port, mta_sts_port=https_port, ca_file=str(tmp_path / "ca.pem"))
    try:
        with Sink(MX1, port, tls_context=_server_context(ca, "mx.good.example")) as good, \
                Sink(MX3, port, tls_context=_self_signed("mx.bad.example", tmp_path)) as bad:
            await harness.send(["bob@good.example"], "to good")
            await harness.send(["bob@bad.example"], "to bad")
            await harness.send(["bob@plain.example"], "no policy")
            await harness.runner.run_once()
        assert [(m.tls, m.rcpt_tos) for m in good.received] == [(True, ["bob@good.example"])]
        assert [m.rcpt_tos for m in bad.received] == [["bob@plain.example"]]  # opportunistic, no policy
        [waiting] = await harness.store.queue.list_queued()
        assert [r.address for r in waiting.pending] == ["bob@bad.example"]
        assert "certificate" in waiting.last_error.lower()  # a temporary failure, not plaintext
        assert harness.inbox() == []
    finally:
        await harness.store.close()


async def test_a_route_sends_a_domain_to_its_fixed_host_instead_of_the_mx(harness: Harness, port: int) -> None:
    from hardmail.store.ports_queue import Route

    await harness.store.queue.set_route(Route("*.dest.example", MX3, port, "opportunistic"))
    await harness.store.queue.set_route(Route("dest.example", MX3, port, "none"))
    with Sink(MX1, port) as mx1, Sink(MX3, port) as routed:
        await harness.send(["bob@dest.example", "eve@sub.dest.example"], "routed")
        await harness.runner.run_once()
    assert mx1.received == []
    assert sorted(r for m in routed.received for r in m.rcpt_tos) == ["bob@dest.example", "eve@sub.dest.example"]


async def test_a_second_runner_never_delivers_a_message_twice_when_leases_run_out(
        tmp_path: Path, dns: LoopbackDnsServer, port: int) -> None:
    """Lease 3 s, 0.5 s per message: after message 8 a second runner takes over what the first has not sent."""
    made = await make_harness(tmp_path, dns, port)
    made.runner.section = made.runner.section.model_copy(update={"claim_lease": 3.0})
    other = build_runner(made.config, made.store, made.services, made.clock)
    other.owner, other.section = "runner-b", made.runner.section
    reached, release = threading.Event(), threading.Event()

    async def slow(message: Any) -> str | None:
        made.clock.advance(0.5)
        if b"Subject: m08" in message.data:
            reached.set()
            await asyncio.to_thread(release.wait, 30)
        return None

    try:
        with Sink(MX1, port, on_data=slow) as mx1:
            for number in range(1, 13):
                await made.send(["bob@dest.example"], f"m{number:02d}")
            first = asyncio.create_task(made.runner.run_once())
            await asyncio.to_thread(reached.wait, 30)
            await other.run_once()
            release.set()
            await first
        subjects = mx1.subjects()
        assert sorted(subjects) == [f"m{n:02d}" for n in range(1, 13)]  # each exactly once
        assert await made.store.queue.list_queued() == []
    finally:
        release.set()
        await made.store.close()


async def test_a_failure_stored_before_a_crash_is_still_bounced(harness: Harness, port: int) -> None:
    queue_id = await harness.send(["bob@dest.example", "gone@dest.example"], "crashed")
    # A runner stored this outcome and died before sending the bounce.
    await harness.store.queue.record_outcomes(queue_id, [RecipientOutcome("gone@dest.example", "failed", 550,
                                                                          "5.1.1 no such user", "mx1")], 0.0)
    with Sink(MX1, port) as mx1:
        await harness.runner.run_once()
    assert mx1.subjects() == ["crashed"]
    [bounce] = harness.inbox()
    _, blocks = _report_parts(bounce)
    assert [b["Final-Recipient"] for b in blocks] == ["rfc822; gone@dest.example"]


async def test_notify_never_and_success_are_honoured_with_envid_and_orcpt(harness: Harness, port: int) -> None:
    dsn = DsnRequest("HDRS", "env-7", {
        "nobody@dest.example": RecipientDsn(("NEVER",)),
        "bob@dest.example": RecipientDsn(("SUCCESS",), "rfc822;bob-alias@example.test"),
    })
    data = b"From: alice@example.test\r\nSubject: dsn\r\n\r\nbody\r\n"
    await harness.services.queue.enqueue(ALICE, ["nobody@dest.example", "bob@dest.example"], data,
                                         origin_account=ALICE, dsn=dsn)
    with Sink(MX1, port, rcpt_reply=lambda a: "550 5.1.1 no such user" if a.startswith("nobody") else None):
        await harness.runner.run_once()
    [notice] = harness.inbox()
    raw = notice.as_bytes()
    _, blocks = _report_parts(notice)
    assert [(b["Final-Recipient"], b["Action"]) for b in blocks] == [("rfc822; bob@dest.example", "delivered")]
    assert b"Original-Envelope-Id: env-7" in raw and b"Original-Recipient: rfc822;bob-alias@example.test" in raw


async def test_an_unexpected_error_for_one_domain_leaves_the_others_alone(harness: Harness, port: int,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    real = harness.runner.router.destination

    async def broken(domain: str, routes: Any = ()) -> Any:
        if domain == "cname.example":
            raise RuntimeError("bug")
        return await real(domain, routes)

    harness.runner.router.destination = broken  # type: ignore[method-assign]
    with Sink(MX1, port) as mx1:
        await harness.send(["bob@cname.example"], "broken")
        await harness.send(["bob@dest.example"], "fine")
        await harness.runner.run_once()
    assert mx1.subjects() == ["fine"]
    [left] = await harness.store.queue.list_queued()
    assert left.pending and left.next_attempt_at > harness.clock.now() and left.claimed_by is None
    assert "delivery.internal_error" in caplog.text


async def test_a_message_with_a_damaged_spool_envelope_is_held(harness: Harness, port: int,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    queue_id = await harness.send(["bob@dest.example"], "damaged")
    (harness.services.queue.spool.queue_dir / f"{queue_id}.json").write_text("{not json")
    with Sink(MX1, port) as mx1:
        await harness.runner.run_once()
    assert mx1.received == []
    [entry] = await harness.store.queue.list_queued()
    assert entry.held
    assert "queue.quarantined" in caplog.text


# DANE (RFC 7672): a validating resolver's AD flag, TLSA records at _<port>._tcp.<mx host>


def _spki_sha256(certificate_pem: bytes) -> str:
    key = x509.load_pem_x509_certificate(certificate_pem).public_key()
    return hashlib.sha256(key.public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def _chain_context(ca: trustme.CA, hostname: str, directory: Path, with_ca: bool) -> tuple[ssl.SSLContext, bytes]:
    """A server context presenting the leaf and (``with_ca``) the issuing CA, as RFC 7672 3.1.2 asks."""
    leaf = ca.issue_cert(hostname)
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems) + (ca.cert_pem.bytes() if with_ca else b"")
    (directory / "chain.pem").write_bytes(chain)
    leaf.private_key_pem.write_to_path(str(directory / "chain.key"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "chain.pem", directory / "chain.key")
    return context, leaf.cert_chain_pems[0].bytes()


def _tlsa(case: str, ca: trustme.CA, stranger: trustme.CA, sink_pem: bytes) -> str:
    return {
        "ee-match": f"3 1 1 {_spki_sha256(sink_pem)}",
        "ee-mismatch": f"3 1 1 {'00' * 32}",
        "ta-match": f"2 1 1 {_spki_sha256(ca.cert_pem.bytes())}",
        "ta-match-ca-not-presented": f"2 1 1 {_spki_sha256(ca.cert_pem.bytes())}",
        "ta-mismatch": f"2 1 1 {_spki_sha256(stranger.cert_pem.bytes())}",
        "ta-full-mismatch": f"2 0 1 {hashlib.sha256(stranger.cert_pem.bytes()).hexdigest()}",
    }[case]


@pytest.mark.parametrize(("case", "delivered"), [
    ("ee-match", True), ("ee-mismatch", False), ("ta-match", True), ("ta-match-ca-not-presented", False),
    ("ta-mismatch", False), ("ta-full-mismatch", False),
])
async def test_dane_tlsa_records_decide_whether_the_mx_is_authenticated(
    tmp_path: Path, port: int, case: str, delivered: bool
) -> None:
    ca, stranger = trustme.CA(), trustme.CA()
    context, sink_pem = _chain_context(ca, "mx.dane.example", tmp_path, with_ca=case != "ta-match-ca-not-presented")
    zone = {("dane.example", "MX"): ["10 mx.dane.example."], ("mx.dane.example", "A"): [MX1],
            (f"_{port}._tcp.mx.dane.example", "TLSA"): [_tlsa(case, ca, stranger, sink_pem)]}
    with LoopbackDnsServer(zone, authenticated=True) as dane_dns:
        harness = await make_harness(tmp_path, dane_dns, port)
        try:
            with Sink(MX1, port, tls_context=context) as mx:
                await harness.send(["bob@dane.example"], f"dane {case}")
                await harness.runner.run_once()
            waiting = await harness.store.queue.list_queued()
        finally:
            await harness.store.close()
    if delivered:
        assert [(m.tls, m.rcpt_tos) for m in mx.received] == [(True, ["bob@dane.example"])]
        assert waiting == []
    else:
        assert mx.received == []  # deferred: never sent in plaintext, nor over unauthenticated TLS
        [entry] = waiting
        assert [r.address for r in entry.pending] == ["bob@dane.example"]
        assert "dane" in entry.last_error.lower()
    assert harness.inbox() == []  # no failure notice either way
