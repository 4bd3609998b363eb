"""probe_wire's capability rules and its one AUTH PLAIN: never outside TLS."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from hardmail.ops.audit.context import ProbeLogin, ProbeTarget
from hardmail.ops.audit.probe_wire import SessionError, Talk, auth_plain
from hardmail.server.probe_link import ProbeLink

LOGIN = ProbeLogin("probe@example.test", "secret pass phrase 9")


class _Link:
    def __init__(self, tls_version: str | None) -> None:
        self.tls_version, self.sent = tls_version, list[str]()

    async def command(self, line: str) -> Any:
        self.sent.append(line)
        return None


def _talk(tls_version: str | None, *capabilities: str, kind: str = "submission") -> tuple[Talk, _Link]:
    link = _Link(tls_version)
    return Talk(ProbeTarget(kind, "127.0.0.1", 587), cast(ProbeLink, link), capabilities=list(capabilities)), link


def test_auth_plain_refuses_to_run_outside_tls() -> None:
    talk, link = _talk(None, "AUTH PLAIN LOGIN")
    with pytest.raises(SessionError) as raised:
        asyncio.run(auth_plain(talk, LOGIN))
    assert link.sent == [] and LOGIN.password not in str(raised.value)
    inside, link = _talk("TLSv1.3", "AUTH PLAIN")
    asyncio.run(auth_plain(inside, LOGIN))
    assert [line.split()[:2] for line in link.sent] == [["AUTH", "PLAIN"]] and not inside.authenticated


def test_one_set_of_capability_rules() -> None:
    smtp, _ = _talk(None, "PIPELINING", "AUTH PLAIN LOGIN", "STARTTLS", "SIZE 1000")
    assert smtp.keywords() == {"PIPELINING", "AUTH", "STARTTLS", "SIZE"}
    assert smtp.auth_mechanisms() == {"PLAIN", "LOGIN"} and smtp.offers("STARTTLS") and not smtp.offers("CHUNKING")
    imap, _ = _talk(None, "IMAP4REV1", "AUTH=PLAIN", "AUTH=SCRAM-SHA-256", kind="imap")
    assert imap.auth_mechanisms() == {"PLAIN", "SCRAM-SHA-256"}
    pop3, _ = _talk(None, "USER", "SASL PLAIN", kind="pop3")
    assert pop3.auth_mechanisms() == {"PLAIN"}
