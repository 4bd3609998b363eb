"""ARC: a chain sealed by dkimpy's signer verifies through our Resolver; a changed body breaks it."""

from __future__ import annotations

from pathlib import Path

import dkim

from hardmail.core.clock import FakeClock
from hardmail.msgauth.arc import verify
from hardmail.msgauth.dkim_keys import DomainKeys
from hardmail.msgauth.dns import StaticResolver
from support.msgauth_dns import txt_value

MESSAGE = (b"Authentication-Results: lists.example.org; spf=pass smtp.mailfrom=a@example.com\r\n"
           b"From: a@example.com\r\nTo: list@example.org\r\nSubject: hi\r\n"
           b"Date: Sun, 29 Nov 2026 12:00:00 +0000\r\nMessage-ID: <arc@x>\r\n\r\nbody\r\n")


async def test_arc_chain_pass_fail_and_none(tmp_path: Path) -> None:
    keys = DomainKeys(tmp_path, "example.org")
    generation = keys.generate(FakeClock().now())
    rsa = keys.keys_of(generation)[0]
    sealed = b"".join(dkim.arc_sign(MESSAGE, rsa.selector.encode(), b"example.org", rsa.private,
                                    b"lists.example.org")) + MESSAGE
    resolver = StaticResolver({(r.name("example.org"), "TXT"): [txt_value(r.txt)]
                               for r in keys.public_records(generation)})
    assert (await verify(sealed, resolver)).result == "pass"
    assert (await verify(sealed.replace(b"body", b"evil"), resolver)).result == "fail"
    assert (await verify(MESSAGE, resolver)).result == "none"
