"""The message-authentication hook with a table resolver and an in-memory greylist store: DMARC
temporary errors are deferred, forged trace and spam fields are removed, automatic whitelisting
counts distinct senders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hardmail.config.schema import Config
from hardmail.core.address import parse_mailbox
from hardmail.core.clock import FakeClock
from hardmail.delivery.content import MessageContent
from hardmail.delivery.recipients import Resolution
from hardmail.mime.headers import parse_header_block, without_fields
from hardmail.msgauth.authres import verdict_fields
from hardmail.msgauth.dkim import sign
from hardmail.msgauth.dkim_keys import DomainKeys
from hardmail.msgauth.dns import StaticResolver
from hardmail.policy.greylist import TripletState
from hardmail.proto.smtp.events import MailParams
from hardmail.server.hooks import MessageFacts, SessionFacts
from hardmail.server.msgauth_hook import MsgAuthHook, build_msgauth_hook

FACTS = SessionFacts("s1", "smtp", "192.0.2.10", 40000, "client.example", None, None)


class _MemoryGreylist:
    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, TripletState]] = {}
        self.whitelisted: dict[str, float] = {}

    async def get_triplet(self, key: str) -> TripletState | None:
        return self.rows[key][1] if key in self.rows else None

    async def save_triplet(self, key: str, network: str, state: TripletState) -> None:
        self.rows[key] = (network, state)

    async def count_confirmed(self, network: str, now: float) -> int:
        return sum(1 for n, s in self.rows.values() if n == network and s.confirmed and s.expires_at > now)

    async def whitelist_network(self, network: str, until: float) -> None:
        self.whitelisted[network] = until

    async def network_whitelisted(self, network: str, now: float) -> bool:
        return self.whitelisted.get(network, 0) > now

    async def purge_expired(self, now: float) -> int:
        return 0


def _hook(tmp_path: Path, zone: dict[tuple[str, str], Any], **sections: dict[str, Any]) -> MsgAuthHook:
    raw: dict[str, Any] = {"server": {"hostname": "mx.example.test", "data_dir": str(tmp_path / "data")},
                           "inbound": {"authserv_id": "ar.example.test"}, "antispam": {"enabled": False}}
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return build_msgauth_hook(Config.model_validate(raw), _MemoryGreylist(), FakeClock(), StaticResolver(zone))


async def _deliver(hook: MsgAuthHook, sender: str, message: bytes) -> Any:
    await hook.on_connect(FACTS)
    await hook.on_mail(FACTS, parse_mailbox(sender), MailParams())
    return await hook.on_message(FACTS, MessageFacts(sender, ("bob@example.test",), ("bob@example.test",), (),
                                                     MessageContent.in_memory(message), len(message)))


async def test_dmarc_reject_with_an_aligned_key_look_up_failing_is_deferred_not_refused(tmp_path: Path) -> None:
    keys = DomainKeys(tmp_path / "sender", "bank.example")
    keys.generate(1_800_000_000.0)
    zone: dict[tuple[str, str], Any] = {("bank.example", "TXT"): ['"v=spf1 -all"'],
                                        ("_dmarc.bank.example", "TXT"): ['"v=DMARC1; p=reject"']}
    zone.update({(r.name("bank.example"), "TXT"): "TIMEOUT" for r in keys.public_records(keys.generations()[0])})
    hook = _hook(tmp_path, zone)
    plain = b"From: <ceo@bank.example>\r\nTo: <bob@example.test>\r\nSubject: pay\r\n\r\nHello\r\n"
    decision = await _deliver(hook, "ceo@bank.example", await sign(plain, keys.signing_keys()) + plain)
    assert decision.reply is not None and (decision.reply.code, decision.reply.enhanced) == (451, "4.7.1")
    assert hook.counts["dmarc.temperror"] == 1 and hook.counts["dmarc_policy.defer"] == 1
    unsigned = await _deliver(hook, "ceo@bank.example", plain)  # nothing could align: a real fail
    assert unsigned.reply is not None and unsigned.reply.code == 550
    hook.close()


async def test_forged_results_naming_either_of_our_names_and_spam_fields_are_removed(tmp_path: Path) -> None:
    message = (b"Authentication-Results: mx.example.test 1; dmarc=pass header.from=bank.example\r\n"
               b'Authentication-Results: "AR.example.test"; dkim=pass\r\n'
               b"X-Spam-Status: No, score=-10\r\nX-SPAM-Score: -10\r\nX-Spam-Flag: NO\r\n"
               b"From: <a@nodmarc.example>\r\nSubject: hi\r\n\r\nbody\r\n")
    for antispam in (True, False):
        hook = _hook(tmp_path, {}, antispam={"enabled": antispam})
        decision = await _deliver(hook, "a@nodmarc.example", message)
        # the session drops the verdict fields of every message; the hook only adds its own
        forged = verdict_fields(parse_header_block(message), [hook.config.server.hostname,
                                                              hook.config.inbound.authserv_id])
        kept = b"".join(without_fields((message,), {*decision.drop_headers, *forged}))
        assert kept == b"From: <a@nodmarc.example>\r\nSubject: hi\r\n\r\nbody\r\n", antispam
        assert (b"X-Spam-Status: " in decision.headers) is antispam  # only ours


async def _greylist_pass(hook: MsgAuthHook, clock: FakeClock, sender: str, recipient: str) -> None:
    address = parse_mailbox(recipient)
    assert await hook.on_rcpt(FACTS, sender, address, Resolution("local", (recipient,))) is not None
    clock.advance(301)
    assert await hook.on_rcpt(FACTS, sender, address, Resolution("local", (recipient,))) is None


async def test_automatic_whitelisting_counts_distinct_senders_not_recipients(tmp_path: Path) -> None:
    hook = _hook(tmp_path, {}, greylist={"enabled": True, "auto_whitelist_after": 3})
    clock = FakeClock()
    hook.clock = clock
    await hook.on_connect(FACTS)
    store = hook.greylist_store
    assert isinstance(store, _MemoryGreylist)
    for recipient in ("a@example.test", "b@example.test", "c@example.test", "d@example.test"):
        await _greylist_pass(hook, clock, "spam@random.example", recipient)
    assert not store.whitelisted  # one sender writing to many recipients earns nothing
    await _greylist_pass(hook, clock, "news@list.example", "a@example.test")
    assert not store.whitelisted
    await _greylist_pass(hook, clock, "alerts@bank.example", "a@example.test")
    assert list(store.whitelisted) == ["192.0.2.0/24"]
    assert hook.counts["greylist.network_whitelisted"] == 1


def test_greylisting_does_not_skip_spf_pass_by_default() -> None:
    assert Config().greylist.bypass_spf_pass is False
