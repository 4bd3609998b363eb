"""DKIM: the RFC 8463 example verifies, our signatures verify (here and in dkimverify), tampering fails."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from hardmail.core.clock import FakeClock
from hardmail.msgauth import arc, workers
from hardmail.msgauth.dkim import MAX_SIGNATURES, SIGNED_FIELDS, sign, signed_header_list, verify
from hardmail.msgauth.dkim_keys import DkimKeyError, DomainKeys
from hardmail.msgauth.dns import DnsAnswer, StaticResolver
from hardmail.msgauth.signer import DkimSigner
from hardmail.msgauth.spf import check_mail_from
from support.dns_server import LoopbackDnsServer
from support.msgauth_dns import loopback_dns_env, txt_value

TESTDATA = Path(__file__).resolve().parents[4] / "shared" / "testdata" / "dkim"
MESSAGE = (b"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: hello\r\n"
           b"Date: Sun, 29 Nov 2026 12:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nHi Bob.\r\n")


def _rfc8463_zone() -> dict[tuple[str, str], list[str]]:
    zone = {}
    for line in (TESTDATA / "keys.txt").read_text().splitlines():
        name, value = line.split(" ", 1)
        zone[(name, "TXT")] = [txt_value(value)]
    return zone


async def test_rfc8463_example_verifies_both_signatures() -> None:
    message = (TESTDATA / "rfc8463-dual-signed.crlf.eml").read_bytes()
    results = await verify(message, StaticResolver(_rfc8463_zone()))
    assert [(r.result, r.algorithm, r.selector) for r in results] == [
        ("pass", "ed25519-sha256", "brisbane"), ("pass", "rsa-sha256", "test")]


async def test_rfc8463_tampered_copy_fails_both() -> None:
    message = (TESTDATA / "tampered.crlf.eml").read_bytes()
    results = await verify(message, StaticResolver(_rfc8463_zone()))
    assert [r.result for r in results] == ["fail", "fail"]


async def test_missing_key_is_permerror_and_timeout_is_temperror() -> None:
    message = (TESTDATA / "rfc8463-dual-signed.crlf.eml").read_bytes()
    missing = await verify(message, StaticResolver({("other.example", "A"): ["192.0.2.1"]}))
    assert [r.result for r in missing] == ["permerror", "permerror"]
    zone = {(name, "TXT"): "TIMEOUT" for name, _ in _rfc8463_zone()}
    assert [r.result for r in await verify(message, StaticResolver(zone))] == ["temperror", "temperror"]


def _keys(tmp_path: Path, clock: FakeClock) -> DomainKeys:
    keys = DomainKeys(tmp_path, "example.org")
    keys.generate(clock.now())
    return keys


def _zone_for(keys: DomainKeys) -> dict[tuple[str, str], list[str]]:
    return {(record.name(keys.domain), "TXT"): [txt_value(record.txt)]
            for generation in keys.generations() for record in keys.public_records(generation)}


async def test_generated_keys_are_private_files_and_sign_both_algorithms(tmp_path: Path) -> None:
    keys = _keys(tmp_path, FakeClock())
    for path in keys.directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    header = await sign(MESSAGE, keys.signing_keys())
    assert header.count(b"DKIM-Signature:") == 2
    assert b"a=rsa-sha256" in header and b"a=ed25519-sha256" in header and b"c=relaxed/relaxed" in header
    results = await verify(header + MESSAGE, StaticResolver(_zone_for(keys)))
    assert [r.result for r in results] == ["pass", "pass"]
    tampered = header + MESSAGE.replace(b"Hi Bob.", b"Hi Eve.")
    assert [r.result for r in await verify(tampered, StaticResolver(_zone_for(keys)))] == ["fail", "fail"]


def test_header_list_oversigns_from_and_covers_mime_fields() -> None:
    names = signed_header_list(MESSAGE)
    assert names.count(b"from") == 2
    for name in (b"subject", b"date", b"to", b"cc", b"message-id", b"mime-version", b"content-type"):
        assert name in names


def _dkimverify(message: bytes, index: int, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    script = Path(sys.executable).parent / "dkimverify"
    return subprocess.run([str(script), "--index", str(index)], input=message, capture_output=True, env=env,
                          timeout=60, check=False)


async def test_independent_verifier_accepts_our_signatures(tmp_path: Path) -> None:
    keys = _keys(tmp_path / "data", FakeClock())
    signed = await sign(MESSAGE, keys.signing_keys()) + MESSAGE
    tampered = signed.replace(b"Hi Bob.", b"Hi Eve.")
    with LoopbackDnsServer(_zone_for(keys)) as server:
        env = loopback_dns_env(tmp_path, server.port, dict(os.environ))
        for index in (0, 1):
            good = _dkimverify(signed, index, env)
            assert good.returncode == 0, good.stdout + good.stderr
            assert b"signature ok" in good.stdout
            bad = _dkimverify(tampered, index, env)
            assert bad.returncode == 1, bad.stdout + bad.stderr


async def test_rotation_signs_with_new_selector_only_after_promotion(tmp_path: Path) -> None:
    clock = FakeClock()
    keys = _keys(tmp_path, clock)
    first = [k.selector for k in keys.signing_keys()]
    with pytest.raises(DkimKeyError, match="already has DKIM keys"):
        keys.generate(clock.now())
    clock.advance(86400)
    pending = keys.rotate(clock.now())
    assert [k.selector for k in keys.signing_keys()] == first
    with pytest.raises(DkimKeyError, match="waiting for its DNS records"):
        keys.rotate(clock.now())
    keys.promote(clock.now(), grace=7 * 86400)
    assert [k.selector for k in keys.signing_keys()] == list(pending.selectors)
    assert {g.state for g in keys.generations()} == {"active", "retiring"}
    clock.advance(6 * 86400)
    assert keys.prune(clock.now()) == []
    clock.advance(2 * 86400)
    assert len(keys.prune(clock.now())) == 1
    assert not (keys.directory / f"{first[0]}.key").exists()


def test_every_signed_field_is_oversigned_even_when_absent() -> None:
    names = signed_header_list(MESSAGE)
    for field in SIGNED_FIELDS:
        present = sum(1 for line in MESSAGE.split(b"\r\n\r\n")[0].split(b"\r\n")
                      if line.lower().startswith(field.encode() + b":"))
        assert names.count(field.encode()) == present + 1, field
    for field in (b"sender", b"reply-to", b"in-reply-to", b"references", b"list-id", b"list-post",
                  b"content-transfer-encoding", b"message-id", b"mime-version", b"content-type"):
        assert field in names


@pytest.mark.parametrize("added", [b"Sender: ceo@example.org\r\n", b"Message-ID: <2@example.org>\r\n",
                                   b"List-Unsubscribe: <https://evil.example/>\r\n",
                                   b"Content-Transfer-Encoding: base64\r\n"])
async def test_adding_a_signed_field_breaks_the_signature(tmp_path: Path, added: bytes) -> None:
    keys = _keys(tmp_path, FakeClock())
    signed = await sign(MESSAGE, keys.signing_keys()) + MESSAGE
    results = await verify(added + signed, StaticResolver(_zone_for(keys)))
    assert [r.result for r in results] == ["fail", "fail"]


async def test_at_most_five_signatures_are_verified_the_rest_reported_as_policy(tmp_path: Path) -> None:
    keys = _keys(tmp_path, FakeClock())
    header = await sign(MESSAGE, keys.signing_keys())
    resolver = StaticResolver(_zone_for(keys))
    results = await verify(header * 150 + MESSAGE, resolver)  # 300 signatures
    assert len(resolver.queries) == MAX_SIGNATURES == 5
    assert [r.result for r in results] == ["pass"] * 5 + ["policy"]
    assert results[-1].reason == "295 more signatures not verified (limit 5)"
    assert len(await verify(header * 150 + MESSAGE, StaticResolver(_zone_for(keys)), limit=2)) == 3


class _SlowResolver:
    """Each look-up takes 25 seconds of the fake clock and answers nothing."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.queries: list[tuple[str, str]] = []

    async def resolve(self, name: str, rdtype: str) -> DnsAnswer:
        self.queries.append((name, rdtype))
        self.clock.advance(25)
        return DnsAnswer("tempfail", detail="timeout")


async def test_one_deadline_for_every_key_look_up_of_a_message(tmp_path: Path) -> None:
    keys = _keys(tmp_path, FakeClock())
    header = await sign(MESSAGE, keys.signing_keys())
    clock = FakeClock()
    resolver = _SlowResolver(clock=clock)
    results = await verify(header * 3 + MESSAGE, resolver, deadline=20.0, clock=clock)
    assert len(resolver.queries) == 1  # the first look-up used the whole deadline: no more look-ups
    assert [r.result for r in results] == ["temperror"] * 5 + ["policy"]
    assert all(r.reason == "verification deadline passed" for r in results[1:5])
    assert {r.domain for r in results[:5]} == {"example.org"}


class _NoDefaultExecutor(ThreadPoolExecutor):
    def submit(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("message authentication used asyncio's default thread pool")


async def test_signing_and_verifying_never_use_the_default_thread_pool(tmp_path: Path) -> None:
    keys = _keys(tmp_path, FakeClock())
    asyncio.get_running_loop().set_default_executor(_NoDefaultExecutor(max_workers=1))
    signed = await sign(MESSAGE, keys.signing_keys()) + MESSAGE
    assert [r.result for r in await verify(signed, StaticResolver(_zone_for(keys)))] == ["pass", "pass"]
    assert (await arc.verify(signed, StaticResolver({}))).result == "none"
    spf_result = await check_mail_from(StaticResolver({("example.org", "TXT"): ['"v=spf1 -all"']}),
                                       "192.0.2.1", "a@example.org", "client.example")
    assert spf_result.result == "fail"
    signer = DkimSigner(tmp_path, StaticResolver({}), FakeClock(), 86400, 600)
    assert (await signer.sign(MESSAGE))[0].count(b"DKIM-Signature") == 2


def test_the_pool_is_bounded_sized_from_configuration_and_shut_down() -> None:
    workers.configure(2)
    pool = workers.executor()
    assert pool._max_workers == 2 and pool is workers.executor()
    workers.shutdown()
    assert workers.executor() is not pool
    workers.configure(workers.DEFAULT_WORKERS)
    workers.shutdown()


def _hostile_selection(signature_field: bytes) -> bytes:
    """A message whose signature names 1,000 fields in h= over a block of 1,100 fields: dkimpy's
    field selection would make 1.1 million comparisons (quadratic in the header block)."""
    names = b":".join(b"x-absent-%d" % i for i in range(1000))
    padding = b"".join(b"X-N%d: v\r\n" % i for i in range(1100))
    return (signature_field + b": v=1; a=rsa-sha256; c=relaxed/relaxed; d=football.example.com; s=test;\r\n"
            b" h=from:" + names + b"; bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=; b=AAAA\r\n"
            + padding + MESSAGE)


def _select_headers_spy(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    import dkim as dkimpy  # type: ignore[import-untyped]

    calls: list[int] = []
    real = dkimpy.select_headers

    def spy(headers: Any, include: Any) -> Any:
        calls.append(len(headers) * len(include))
        return real(headers, include)

    monkeypatch.setattr(dkimpy, "select_headers", spy)
    return calls


async def test_a_signature_whose_verification_would_be_quadratic_is_permerror(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _select_headers_spy(monkeypatch)
    [result] = await verify(_hostile_selection(b"DKIM-Signature"), StaticResolver(_rfc8463_zone()))
    assert (result.result, result.domain) == ("permerror", "football.example.com")
    assert "too many header fields" in result.reason and calls == []


async def test_an_arc_chain_whose_verification_would_be_quadratic_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _select_headers_spy(monkeypatch)
    seal = b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=football.example.com; s=test; b=AAAA\r\n"
    message = seal + _hostile_selection(b"ARC-Message-Signature: i=1;")
    result = await arc.verify(message, StaticResolver(_rfc8463_zone()))
    assert result.result == "fail" and "too many header fields" in result.reason and calls == []
