"""TOTP (RFC 6238) on a fake clock, recovery codes, and the secret's encryption."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from hardmail.auth import totp
from hardmail.core.clock import FakeClock

# RFC 6238 Appendix B: the SHA-1 key "12345678901234567890" at T=59 gives 94287082 (8 digits).
RFC_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"


def test_rfc_6238_vector_last_six_digits() -> None:
    assert totp.code_at(RFC_SECRET, totp.time_step(59)) == "287082"


def test_current_and_neighbouring_steps_match_others_do_not() -> None:
    clock = FakeClock(1_700_000_000)
    secret = totp.new_totp_secret()
    step = totp.time_step(clock.now())
    for offset, expected in ((-2, None), (-1, step - 1), (0, step), (1, step + 1), (2, None)):
        assert totp.matching_step(secret, totp.code_at(secret, step + offset), clock.now()) == expected


def test_a_code_stops_matching_after_the_drift_window() -> None:
    clock = FakeClock(1_700_000_000)
    secret = totp.new_totp_secret()
    code = totp.code_at(secret, totp.time_step(clock.now()))
    clock.advance(totp.STEP_SECONDS)
    assert totp.matching_step(secret, code, clock.now()) is not None
    clock.advance(totp.STEP_SECONDS)
    assert totp.matching_step(secret, code, clock.now()) is None


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "12 34 5x"])
def test_malformed_codes_never_match(code: str) -> None:
    assert totp.matching_step(RFC_SECRET, code, 59) is None


def test_code_with_spaces_matches() -> None:
    code = totp.code_at(RFC_SECRET, totp.time_step(59))
    assert totp.matching_step(RFC_SECRET, f"{code[:3]} {code[3:]}", 59) == totp.time_step(59)


def test_secret_round_trips_through_the_server_key_and_fails_with_another() -> None:
    key = Fernet.generate_key()
    token = totp.encrypt_secret(RFC_SECRET, key)
    assert RFC_SECRET not in token
    assert totp.decrypt_secret(token, key) == RFC_SECRET
    with pytest.raises(totp.SecretUnreadable):
        totp.decrypt_secret(token, Fernet.generate_key())


def test_recovery_codes_are_ten_distinct_and_digest_ignores_dashes_and_case() -> None:
    codes = totp.new_recovery_codes()
    assert len(set(codes)) == 10
    assert totp.recovery_code_digest(codes[0]) == totp.recovery_code_digest(codes[0].replace("-", "").upper())
    assert len(codes[0].replace("-", "")) == 16


def test_uri_names_issuer_and_account() -> None:
    uri = totp.provisioning_uri(RFC_SECRET, "alice@example.org", "Example Mail")
    assert uri.startswith("otpauth://totp/Example%20Mail:alice%40example.org?")
    assert f"secret={RFC_SECRET}" in uri and "issuer=Example%20Mail" in uri
