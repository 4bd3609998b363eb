"""Insecure-but-valid settings each produce one actionable warning; the defaults produce none."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from hardmail.config.schema import Config
from hardmail.config.warnings import insecure_warnings


def config(**sections: Mapping[str, object]) -> Config:
    return Config.model_validate(sections)


def test_defaults_are_quiet() -> None:
    assert insecure_warnings(Config()) == []


def test_a_cap_on_bytes_in_flight_below_the_message_size_limit() -> None:
    """Such a message could never be accepted: it would get 452 4.3.1 at every try."""
    [warning] = insecure_warnings(config(smtp={"max_bytes_in_flight": 10_000_000, "max_message_size": 20_000_000}))
    assert "smtp.max_bytes_in_flight" in warning and "smtp.max_message_size" in warning
    assert insecure_warnings(config(smtp={"max_bytes_in_flight": 20_000_000, "max_message_size": 20_000_000})) == []


def test_plaintext_auth() -> None:
    [warning] = insecure_warnings(config(smtp={"allow_plaintext_auth": True}))
    assert "smtp.allow_plaintext_auth" in warning and "set it to false" in warning


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1.1"])
def test_old_tls(version: str) -> None:
    [warning] = insecure_warnings(config(tls={"min_version": version}))
    assert version in warning and "TLSv1.2" in warning


@pytest.mark.parametrize("network", ["0.0.0.0/0", "128.0.0.0/1", "10.0.0.0/7", "::/0", "2000::/3"])
def test_relay_for_nearly_all(network: str) -> None:
    [warning] = insecure_warnings(config(relay={"trusted_networks": ["10.1.0.0/16", network]}))
    assert "open relay" in warning and network.split("/")[1] in warning


@pytest.mark.parametrize("network", ["10.0.0.0/8", "192.168.0.0/16", "2001:db8::/32", "fd00::/16"])
def test_ordinary_trusted_networks_are_fine(network: str) -> None:
    assert insecure_warnings(config(relay={"trusted_networks": [network]})) == []


def test_auth_on_mx_is_mentioned() -> None:
    [warning] = insecure_warnings(config(smtp={"auth_on_mx": True}))
    assert "smtp.auth_on_mx" in warning


@pytest.mark.parametrize("address", ["0.0.0.0:25", "[::]:25", "192.0.2.10:587", "*:25"])
def test_self_signed_certificate_on_public_listener(address: str) -> None:
    [warning] = insecure_warnings(config(listen={"submission": [address]}))
    assert address in warning and "will not trust" in warning and "tls.cert_file" in warning


def test_loopback_listeners_with_self_signed_certificate_are_fine() -> None:
    listen = {"smtp": ["localhost:25"], "submission": ["[::1]:587"], "submissions": ["127.0.0.2:465"]}
    assert insecure_warnings(config(listen=listen)) == []


def test_public_listener_with_real_certificate_is_fine() -> None:
    cfg = config(listen={"smtp": ["0.0.0.0:25"]},
                 tls={"cert_file": Path("/c.pem"), "key_file": Path("/k.pem")})
    assert insecure_warnings(cfg) == []


def test_each_finding_is_reported_once() -> None:
    cfg = config(smtp={"allow_plaintext_auth": True, "auth_on_mx": True},
                 tls={"min_version": "TLSv1"}, relay={"trusted_networks": ["0.0.0.0/0"]},
                 listen={"smtp": ["0.0.0.0:25"]})
    assert len(insecure_warnings(cfg)) == 5


@pytest.mark.parametrize(("seconds", "says"), [(0, "until they disconnect"), (5, "up to 5 s")])
def test_slow_session_check(seconds: float, says: str) -> None:
    [warning] = insecure_warnings(config(auth={"session_check_seconds": seconds}))
    assert "auth.session_check_seconds" in warning and says in warning


def test_session_check_of_a_second_or_less_is_fine() -> None:
    assert insecure_warnings(config(auth={"session_check_seconds": 1})) == []


def test_a_per_source_share_as_big_as_the_hashing_pool() -> None:
    [warning] = insecure_warnings(config(auth={"argon2": {"hash_workers": 1, "max_pending": 2, "per_source": 3}}))
    assert "auth.argon2.per_source" in warning
    assert insecure_warnings(config(auth={"argon2": {"hash_workers": 1, "max_pending": 2, "per_source": 2}})) == []
