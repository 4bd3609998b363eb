"""Outbound review findings, each checked without sockets: RSET after DATA, route credentials, DANE
lookup failures, the address guard, hop counting, DSN requests and the MTA-STS size limit."""

from __future__ import annotations

import email
from typing import Any

import httpx
import pytest

from hardmail.delivery.dsn import DsnRequest, Notice, RecipientDsn, RecipientReport, build_notice, wants_notice
from hardmail.delivery.headers import MAX_RECEIVED, received_count, too_many_hops
from hardmail.delivery.outbound import (
    DeliveryDeferred,
    OutboundDeliverer,
    OutboundSettings,
    OutgoingMessage,
    _Open,
    mail_params,
    rcpt_params,
    route_plan,
)
from hardmail.delivery.routing import AddressGuard, Destination, MxHost, Router, RoutingError
from hardmail.delivery.smtp_client import ConnectionFailed, Reply, TransactionReplies
from hardmail.delivery.tls_policy import MAX_POLICY_BYTES, OPPORTUNISTIC, PolicyError, _fetch_limited
from hardmail.msgauth.dns import StaticResolver
from hardmail.store.ports_queue import Route


class _FakeClient:
    """Answers a transaction with 250s; RSET breaks the connection."""

    extensions: dict[str, str] = {"DSN": ""}
    peer_ip = "192.0.2.1"
    tls_version = None

    def __init__(self) -> None:
        self.rcpt_params: Any = None

    def supports(self, keyword: str) -> bool:
        return keyword in self.extensions

    async def transaction(self, mail_line: str, recipients: Any, data: bytes, pipelining: bool,
                          rcpt_params: Any = None) -> TransactionReplies:
        self.rcpt_params = rcpt_params
        ok = Reply(250, ("2.0.0 ok",))
        return TransactionReplies(ok, {r: ok for r in recipients}, Reply(250, ("2.0.0 queued",)))

    async def rset(self) -> Reply:
        raise ConnectionFailed("connection closed by the server")


def _deliverer(resolver: Any = None) -> OutboundDeliverer:
    return OutboundDeliverer(OutboundSettings("me.example"), resolver or StaticResolver({}), None, lambda t: t)


async def test_a_failing_rset_after_an_accepted_message_keeps_it_delivered() -> None:
    client = _FakeClient()
    message = OutgoingMessage("Q1", "a@x.example", ("b@y.example",), b"Subject: s\r\n\r\nhi\r\n")
    result, reusable = await _deliverer()._send(_Open(client, MxHost("mx", 0), OPPORTUNISTIC), message)  # type: ignore[arg-type]
    assert [o.state for o in result.outcomes] == ["delivered"]
    assert reusable is False


def test_route_credentials_require_verified_tls() -> None:
    plan = route_plan(Route("*", "relay.example", 587, "opportunistic", "me", "token"))
    assert (plan.starttls, plan.verify) == ("require", "pkix")
    with pytest.raises(DeliveryDeferred, match="verified TLS"):
        route_plan(Route("*", "relay.example", 25, "none", "me", "token"))
    assert route_plan(Route("*", "relay.example", 25, "opportunistic")).verify == "none"


async def test_a_secure_host_whose_tlsa_lookup_fails_is_not_used() -> None:
    resolver = StaticResolver({("_25._tcp.mx1.d.example", "TLSA"): "TIMEOUT"})
    secure = MxHost("mx1.d.example", 10, ("192.0.2.1",), authenticated=True)
    insecure = MxHost("mx2.d.example", 20, ("192.0.2.2",), authenticated=False)
    deliverer = _deliverer(resolver)
    chosen = await deliverer.candidates(Destination("d.example", (secure, insecure), 25))
    assert [host.name for host, _ in chosen] == ["mx2.d.example"]
    with pytest.raises(DeliveryDeferred):
        await deliverer.candidates(Destination("d.example", (secure,), 25))


GUARDED_ZONE = {
    ("loop.example", "MX"): ["10 mx.loop.example."],
    ("mx.loop.example", "A"): ["127.0.0.1"],
    ("mixed.example", "MX"): ["10 lo.mixed.example.", "20 ok.mixed.example."],
    ("lo.mixed.example", "A"): ["169.254.1.1"],
    ("ok.mixed.example", "A"): ["198.51.100.7"],
    ("literal.example", "MX"): ["10 198.51.100.8."],
    ("self.example", "MX"): ["10 mx.self.example."],
    ("mx.self.example", "A"): ["198.51.100.9"],
    ("priv.example", "MX"): ["10 mx.priv.example."],
    ("mx.priv.example", "A"): ["10.1.2.3"],
}


async def test_the_guard_refuses_non_public_literal_and_own_addresses() -> None:
    router = Router(StaticResolver(GUARDED_ZONE), guard=AddressGuard(own=frozenset({"198.51.100.9"})))
    with pytest.raises(RoutingError) as loop:
        await router.destination("loop.example")
    assert (loop.value.temporary, loop.value.status) == (False, "5.4.4")
    assert "non-public address" in loop.value.text
    mixed = await router.destination("mixed.example")
    assert [h.addresses for h in mixed.hosts] == [("198.51.100.7",)]
    with pytest.raises(RoutingError, match="not an address"):
        await router.destination("literal.example")
    with pytest.raises(RoutingError, match="loops back to myself"):
        await router.destination("self.example")
    assert (await router.destination("priv.example")).hosts[0].addresses == ("10.1.2.3",)
    strict = Router(StaticResolver(GUARDED_ZONE), guard=AddressGuard(refuse_private=True))
    with pytest.raises(RoutingError, match="private address"):
        await strict.destination("priv.example")


def test_received_headers_are_counted_for_loop_detection() -> None:
    head = b"".join(b"Received: from h%d by x; Mon, 1 Jan 2024 00:00:00 +0000\r\n" % i
                    for i in range(MAX_RECEIVED)) + b"Subject: x\r\nX-Received: not counted\r\n"
    assert received_count(head) == MAX_RECEIVED and not too_many_hops(head)
    assert too_many_hops(b"RECEIVED: from one more\r\n" + head)


def test_notify_keywords_decide_which_reports_go_out() -> None:
    assert wants_notice((), "failed") and wants_notice((), "delayed") and not wants_notice((), "delivered")
    assert not wants_notice(("NEVER",), "failed")
    assert wants_notice(("SUCCESS",), "delivered") and not wants_notice(("SUCCESS",), "failed")
    assert DsnRequest.from_json(DsnRequest("HDRS", "env 1", {"a@x": RecipientDsn(("NEVER",), "rfc822;a@x")})
                                .to_json()).for_recipient("a@x").notify == ("NEVER",)


def test_a_report_carries_envid_orcpt_and_honours_ret_hdrs() -> None:
    notice = Notice("Q1", "a@x.example", 1_700_000_000.0, "mail.example", envid="env-42", ret="HDRS")
    report = RecipientReport("b@y.example", "failed", "5.1.1", original_recipient="rfc822;old@y.example")
    data = build_notice(notice, [report], b"Subject: s\r\n\r\nsecret body\r\n", now=1_700_000_100.0)
    parsed = email.message_from_bytes(data)
    assert b"Original-Envelope-Id: env-42" in data and b"Original-Recipient: rfc822;old@y.example" in data
    assert [p.get_content_type() for p in parsed.walk()][-1] == "text/rfc822-headers"
    assert b"secret body" not in data


def test_dsn_parameters_are_relayed_to_a_next_hop_offering_dsn() -> None:
    message = OutgoingMessage("Q1", "a@x.example", ("b@y.example",), b"x", ret="HDRS", envid="e 1",
                              recipient_dsn={"b@y.example": RecipientDsn(("SUCCESS", "FAILURE"), "rfc822;b+t@y")})
    client = _FakeClient()
    assert "RET=HDRS" in mail_params(client, message) and "ENVID=e+201" in mail_params(client, message)  # type: ignore[arg-type]
    assert rcpt_params(client, message) == {"b@y.example": ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;b+2Bt@y"]}  # type: ignore[arg-type]


async def test_the_mta_sts_policy_download_stops_at_the_size_limit() -> None:
    sent: list[int] = []

    async def endless() -> Any:
        for _ in range(1000):
            sent.append(1)
            yield b"x" * 4096

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/plain"}, content=endless())

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(PolicyError, match="too large"):
            await _fetch_limited(client, "https://mta-sts.x.example/", "mta-sts.x.example", "x.example")
    assert len(sent) <= MAX_POLICY_BYTES // 4096 + 2
