"""Argon2id hashing and verification."""

from __future__ import annotations

import pytest

from hardmail.auth import hashing
from hardmail.auth.hashing import (
    BoundHasher,
    VerifyResult,
    dummy_verify,
    hash_password,
    verify_password,
)
from hardmail.config.schema import PasswordHashSection

PASSWORD = "correct horse battery staple"


def test_hash_is_an_argon2id_phc_string_with_the_configured_parameters(
    params: PasswordHashSection,
) -> None:
    stored = hash_password(PASSWORD, params)
    assert stored.startswith("$argon2id$v=19$m=8192,t=1,p=1$")
    assert PASSWORD not in stored


def test_each_hash_has_its_own_salt(params: PasswordHashSection) -> None:
    assert hash_password(PASSWORD, params) != hash_password(PASSWORD, params)


def test_right_password_verifies(params: PasswordHashSection) -> None:
    stored = hash_password(PASSWORD, params)
    assert verify_password(stored, PASSWORD, params) == VerifyResult(ok=True, needs_rehash=False)


def test_wrong_password_fails(params: PasswordHashSection) -> None:
    stored = hash_password(PASSWORD, params)
    assert verify_password(stored, PASSWORD + "!", params) == VerifyResult(False, False)


def test_unicode_password_round_trips(params: PasswordHashSection) -> None:
    stored = hash_password("pässwörd-日本語-ok", params)
    assert verify_password(stored, "pässwörd-日本語-ok", params).ok
    assert not verify_password(stored, "passwort-日本語-ok", params).ok


def test_changed_parameters_ask_for_a_rehash(params: PasswordHashSection) -> None:
    stored = hash_password(PASSWORD, params)
    stronger = params.model_copy(update={"time_cost": 2})
    assert verify_password(stored, PASSWORD, stronger) == VerifyResult(ok=True, needs_rehash=True)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "plain-text-password",
        "$argon2id$",
        "$argon2id$v=19$m=8192,t=1,p=1$bad$bad",
        "$argon2i$garbage",
        "$2b$12$abcdefghijklmnopqrstuv",
        "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
    ],
)
def test_malformed_or_unknown_hash_fails_without_raising(
    stored: str, params: PasswordHashSection
) -> None:
    assert verify_password(stored, PASSWORD, params) == VerifyResult(False, False)


def test_lone_surrogate_password_fails_without_raising(params: PasswordHashSection) -> None:
    stored = hash_password(PASSWORD, params)
    assert not verify_password(stored, "\udcff", params).ok


def test_dummy_verify_runs_one_real_argon2_verification(
    params: PasswordHashSection, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    real = hashing._verify_argon2

    def spy(stored: str, password: str, p: PasswordHashSection) -> VerifyResult:
        seen.append(stored)
        return real(stored, password, p)

    monkeypatch.setattr(hashing, "_verify_argon2", spy)
    dummy_verify(params)
    dummy_verify(params)
    assert len(seen) == 2 and seen[0] == seen[1]
    assert seen[0].startswith("$argon2id$v=19$m=8192,t=1,p=1$")


def test_unknown_scheme_also_spends_a_verification(
    params: PasswordHashSection, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[PasswordHashSection] = []
    monkeypatch.setattr(hashing, "dummy_verify", calls.append)
    assert not verify_password("{SHA}abc", PASSWORD, params).ok
    assert calls == [params]


def test_bound_hasher_uses_its_parameters(params: PasswordHashSection) -> None:
    bound = BoundHasher(params)
    stored = bound.hash(PASSWORD)
    assert bound.verify(stored, PASSWORD).ok
    assert PASSWORD not in repr(bound)


@pytest.fixture
def full_argon2_runs(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The hashes of every Argon2 verification that ran to the end (matched or mismatched)."""
    import argon2._password_hasher as argon2_hasher
    from argon2.exceptions import VerifyMismatchError

    runs: list[bytes] = []
    real = argon2_hasher.verify_secret

    def counting(stored: bytes, secret: bytes, kind: object) -> bool:
        try:
            result = real(stored, secret, kind)  # type: ignore[arg-type]
        except VerifyMismatchError:
            runs.append(stored)
            raise
        runs.append(stored)
        return result

    monkeypatch.setattr(argon2_hasher, "verify_secret", counting)
    return runs


def _bcrypt_of(password: str) -> str:
    from passlib.hash import bcrypt

    return str(bcrypt.using(rounds=4).hash(password))


@pytest.mark.parametrize(
    "stored_for",
    [
        pytest.param(lambda p: "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", id="unknown scheme"),
        pytest.param(lambda p: hash_password(PASSWORD, p), id="argon2id, wrong password"),
        pytest.param(lambda p: "$argon2id$v=19$m=8192,t=1,p=1$bad$bad", id="malformed argon2id"),
        pytest.param(lambda p: "$argon2id$garbage", id="garbage argon2id"),
        pytest.param(lambda p: "{HMS2}" + "0" * 32, id="hmailserver2, wrong password"),
        pytest.param(lambda p: _bcrypt_of(PASSWORD), id="bcrypt, wrong password"),
        pytest.param(lambda p: "$2b$12$abcdefghijklmnopqrstuv", id="malformed bcrypt"),
        pytest.param(lambda p: "$pbkdf2-sha256$garbage", id="malformed pbkdf2"),
    ],
)
def test_every_failure_costs_exactly_one_full_argon2_computation(
    stored_for: object, params: PasswordHashSection, full_argon2_runs: list[bytes]
) -> None:
    stored = stored_for(params)  # type: ignore[operator]
    full_argon2_runs.clear()
    assert not verify_password(stored, "not the password", params).ok
    assert len(full_argon2_runs) == 1
