"""Spam scoring, the trace fields we write, and removal of forged Authentication-Results."""

from __future__ import annotations

import pytest

from hardmail.mime.headers import parse_header_block, without_fields
from hardmail.msgauth.authres import Findings, authentication_results, received_spf, verdict_fields
from hardmail.msgauth.dkim import DkimVerification
from hardmail.msgauth.dmarc import DmarcResult
from hardmail.msgauth.spf import SpfResult
from hardmail.policy.spam import (
    Finding,
    SpamWeights,
    action,
    auth_findings,
    helo_findings,
    helo_is_well_formed,
    status_headers,
    total,
)
from hardmail.server.msgauth_scoring import tagged_subject

WEIGHTS = SpamWeights()


def test_helo_checks() -> None:
    assert helo_is_well_formed("mail.example.org") and helo_is_well_formed("[192.0.2.1]")
    assert not helo_is_well_formed("localhost") and not helo_is_well_formed("bad_name!")
    assert [f.check for f in helo_findings("OEMCOMPUTER", False, ["mx.example.test"], WEIGHTS)] == ["helo_syntax"]
    assert [f.check for f in helo_findings("nowhere.example", False, [], WEIGHTS)] == ["helo_unresolvable"]
    ours = helo_findings("MX.example.test", True, ["mx.example.test"], WEIGHTS)
    assert [f.check for f in ours] == ["helo_ours"]
    assert helo_findings("mail.example.org", True, ["mx.example.test"], WEIGHTS) == []


def test_scores_and_thresholds() -> None:
    found = auth_findings("fail", ["fail"], "fail", WEIGHTS)
    assert [f.check for f in found] == ["spf_fail", "dkim_fail", "dmarc_fail"]
    assert total(found) == 8
    assert auth_findings("pass", ["fail", "pass"], "pass", WEIGHTS) == []
    assert action(4, 5, 15) == "accept" and action(5, 5, 15) == "mark" and action(15, 5, 15) == "reject"
    assert action(100, 0, 0) == "accept"
    headers = status_headers(8, "mark", found, 5)
    assert headers.startswith(b"X-Spam-Status: Yes, score=8 required=5 tests=dkim_fail,dmarc_fail,spf_fail\r\n")
    assert b"X-Spam-Score: 8\r\n" in headers


def test_authentication_results_and_received_spf() -> None:
    spf = SpfResult("pass", "mailfrom", "example.org", "sender SPF authorized", "mx")
    dkim = DkimVerification("pass", "example.org", "sel", "ed25519-sha256", "", "abcdefgh")
    findings = Findings(None, spf, (dkim,), None, DmarcResult("pass", "example.org", "none", "example.org"))
    field = authentication_results("mx.example.test", findings, "a@example.org", "mail.example.org")
    assert field.startswith(b"Authentication-Results: mx.example.test;\r\n\tspf=pass smtp.mailfrom=a@example.org;")
    assert b"dkim=pass header.d=example.org header.s=sel header.a=ed25519-sha256 header.b=abcdefgh;" in field
    assert b"dmarc=pass (p=none d=example.org) header.from=example.org" in field
    assert field.endswith(b"\r\n") and b"\r\n\r\n" not in field
    spf_field = received_spf(spf, "mx.example.test", "192.0.2.1", "a@example.org", "mail.example.org")
    assert spf_field.startswith(b"Received-SPF: pass (mx.example.test: sender SPF authorized for example.org)")
    assert b"client-ip=192.0.2.1; envelope-from=a@example.org; helo=mail.example.org; identity=mailfrom" in spf_field


HEAD = (b"Authentication-Results: MX.example.test; dkim=pass\r\n header.d=bank.example\r\n"
        b"Authentication-Results: other.example; spf=fail\r\n"
        b"Authentication-Results: (comment) mx.example.test ; dmarc=pass\r\n"
        b"Subject: hi\r\n")


def forged_authres_indexes(head: bytes, names: list[str]) -> tuple[int, ...]:
    return verdict_fields(parse_header_block(head), names)


def test_forged_authentication_results_are_found_and_removed() -> None:
    indexes = forged_authres_indexes(HEAD, ["mx.example.test"])
    assert indexes == (0, 2)
    message = HEAD + b"\r\nbody\r\n"
    cleaned = b"".join(without_fields((message[:30], message[30:]), indexes))
    assert cleaned == b"Authentication-Results: other.example; spf=fail\r\nSubject: hi\r\n\r\nbody\r\n"
    assert without_fields((message,), ()) == [message]


@pytest.mark.parametrize("field", [
    b"Authentication-Results: mx.example.test 1; dkim=pass header.d=bank.example\r\n",  # RFC 8601 2.2 version
    b'Authentication-Results: "mx.example.test"; dmarc=pass\r\n',  # quoted-string
    b'Authentication-Results: (a (nested) comment)\r\n "MX.Example.Test." 1 ; spf=pass\r\n',
    b"Authentication-Results: mx.example.test; none\r\n",
    b"Authentication-Results: AR.EXAMPLE.TEST 1; dkim=pass\r\n",  # the configured authserv-id
    b"ARC-Authentication-Results: i=1; mx.example.test; dmarc=pass\r\n",
    b"ARC-Authentication-Results: (c) i=1; mx.example.test; dmarc=pass\r\n",  # a comment before i=
    b"ARC-Authentication-Results: i=1 (c); (d) MX.example.test.; dmarc=pass\r\n",
    b"ARC-Authentication-Results: mx.example.test; dmarc=pass\r\n",  # no instance tag
])
def test_forged_results_with_version_quotes_or_either_name_are_found(field: bytes) -> None:
    assert forged_authres_indexes(field, ["ar.example.test", "mx.example.test"]) == (0,)


def test_results_of_other_hosts_are_kept() -> None:
    head = (b"Authentication-Results: mx.example.test.evil 1; dkim=pass\r\n"
            b"ARC-Authentication-Results: i=1; other.example; dkim=pass\r\n"
            b'Authentication-Results: "other.example"; spf=pass\r\n')
    assert forged_authres_indexes(head, ["mx.example.test", ""]) == ()


def test_findings_are_plain_values() -> None:
    assert Finding("dnsbl", "listed", 3).score == 3


def test_subject_tag_replaces_every_subject_field_and_is_not_doubled() -> None:
    message = b"Subject: first\r\nTo: b@example.test\r\nSubject: second\r\n\r\nbody\r\n"
    subject, drop = tagged_subject(message, "[SPAM]")
    assert (subject, drop) == (b"Subject: [SPAM] first\r\n", (0, 2))
    assert tagged_subject(b"Subject: [SPAM] already\r\n\r\nx", "[SPAM]")[0] == b"Subject: [SPAM] already\r\n"
