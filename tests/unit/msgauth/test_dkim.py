"""DKIM: the RFC 8463 example verifies, our signatures verify (here and in dkimverify), tampering fails."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hardmail.core.clock import FakeClock
from hardmail.msgauth.dkim import sign, signed_header_list, verify
from hardmail.msgauth.dkim_keys import DkimKeyError, DomainKeys
from hardmail.msgauth.dns import StaticResolver
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
