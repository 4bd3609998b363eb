"""The signer switches to rotated keys once DNS shows them; Maildir++ folder delivery."""

from __future__ import annotations

from pathlib import Path

import pytest

from hardmail.core.clock import FakeClock
from hardmail.delivery.maildir import MaildirStore, folder_directory
from hardmail.msgauth.dkim_keys import DomainKeys
from hardmail.msgauth.dns import StaticResolver
from hardmail.msgauth.signer import DkimSigner
from support.msgauth_dns import txt_value

MESSAGE = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: s\r\n\r\nbody\r\n"


async def test_rotated_keys_sign_once_published_and_old_ones_retire(tmp_path: Path) -> None:
    clock = FakeClock()
    keys = DomainKeys(tmp_path, "example.org")
    first = keys.generate(clock.now())
    resolver = StaticResolver({})
    signer = DkimSigner(tmp_path, resolver, clock, grace_seconds=86400, check_interval=600)
    header, used = await signer.sign(MESSAGE)
    assert [k.selector for k in used] == list(first.selectors) and header.count(b"DKIM-Signature") == 2
    clock.advance(3600)
    second = keys.rotate(clock.now())
    _, used = await signer.sign(MESSAGE)
    assert [k.selector for k in used] == list(first.selectors)  # not yet in DNS
    resolver.zone = {(r.name("example.org"), "TXT"): [txt_value(r.txt)] for r in keys.public_records(second)}
    _, used = await signer.sign(MESSAGE)
    assert [k.selector for k in used] == list(first.selectors)  # checked again only after the interval
    clock.advance(601)
    _, used = await signer.sign(MESSAGE)
    assert [k.selector for k in used] == list(second.selectors)
    clock.advance(86400 + 601)
    await signer.sign(MESSAGE)
    assert [g.name for g in keys.generations()] == [second.name]


async def test_domains_without_keys_are_not_signed(tmp_path: Path) -> None:
    signer = DkimSigner(tmp_path, StaticResolver({}), FakeClock(), 86400, 600)
    assert await signer.sign(MESSAGE) == (b"", [])


def test_delivery_into_a_maildir_plus_plus_folder(tmp_path: Path) -> None:
    store = MaildirStore(tmp_path, "mx.example.test")
    [path] = store.deliver(["bob@example.test"], b"Subject: x\r\n\r\nbody\r\n", folder="Junk")
    mailbox = store.mailbox_path("bob@example.test")
    assert path.parent == mailbox / ".Junk" / "new"
    assert (mailbox / ".Junk" / "maildirfolder").is_file() and (mailbox / "new").is_dir()
    store.deliver(["bob@example.test"], b"Subject: y\r\n\r\nbody\r\n", folder="Junk")
    assert len(list((mailbox / ".Junk" / "new").iterdir())) == 2
    with pytest.raises(ValueError, match="not a folder name"):
        folder_directory("../escape")
