"""What the SMTP probes send: the relay address forms and the smuggling payloads."""

from __future__ import annotations

from hardmail.ops.audit.probe_relay import address_forms, control_address, own_literal
from hardmail.ops.audit.probe_smuggling import VARIANTS, Envelope, bare, payload
from hardmail.ops.audit.probe_starttls import injected_answered, replies_after


def test_at_least_sixteen_forms_each_kind_named_by_the_issue() -> None:
    forms = address_forms("u", "example.com", "example.test", own_literal("127.0.0.1"))
    assert len(forms) >= 16
    assert len({f.address for f in forms}) == len(forms)
    names = " ".join(f.name for f in forms)
    for kind in ("percent hack", "source route", "quoted", "@ in local part", "bang path", "IPv4 literal",
                 "IPv6 literal", "trailing dot", "upper case", "plain"):
        assert kind in names
    hidden = [f for f in forms if f.hidden]
    assert all(not f.address.endswith("example.com") for f in hidden)  # each hides the external domain
    assert own_literal("::1") == "[IPv6:::1]"
    assert control_address("ab", None) == "audit-none-ab"


def test_every_variant_carries_a_smuggled_transaction_and_ends_properly() -> None:
    envelope = Envelope("", "postmaster@example.test")
    for variant in VARIANTS:
        data = payload(variant, envelope, "t0ken")
        assert data.endswith(b"\r\n.\r\n")
        assert data.count(b"\r\n.\r\n") == 1  # the only standard end is the real one
        if not variant.name.startswith("bare"):
            assert b"RCPT TO:<postmaster@example.test>\r\nDATA\r\n" in data
        assert b"Subject: hardmail audit probe" in data
    assert bare(b"a\nb\r\n", b"\n") and not bare(b"a\r\nb\r\n", b"\n") and bare(b"a\rb", b"\r")


def test_injection_reply_counting() -> None:
    assert injected_answered("smtp", replies_after("smtp", b"250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n"))
    assert not injected_answered("smtp", replies_after("smtp", b"250-a\r\n250 b\r\n"))
    assert injected_answered("imap", replies_after("imap", b"a2 OK\r\na3 OK\r\n"))
    assert not injected_answered("pop3", replies_after("pop3", b"-ERR Not logged in.\r\n"))
