"""Password hashing: Argon2id PHC strings, verification that never raises, and a decoy check.

A stored hash's scheme is recognised by its prefix (``_VERIFIERS``); the legacy schemes of
:mod:`hardmail.auth.legacy` always report ``needs_rehash`` so that a successful login upgrades
them to Argon2id. Every failed path (unknown user, malformed or unknown stored hash, wrong password,
a wrong password against a legacy hash) costs exactly one full Argon2 computation with the
configured parameters: a path that did not complete one (a legacy check, a stored hash the library
refuses before hashing) pays for the decoy. What remains is the legacy check itself, added on top
for an account still on an imported hash (cheap for hMailServer's and the crypt formats, as much as
its own work factor for bcrypt and PBKDF2), and an Argon2 hash with older parameters, until the
first successful login upgrades either; docs/passwords.md tells admins how to shorten that time.

These functions are CPU-bound and block: the server calls them through
:class:`hardmail.auth.pool.HashPool`, never on the event loop.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from hardmail.auth.legacy import LEGACY_SCHEMES, LegacyScheme
from hardmail.config.schema import PasswordHashSection


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    needs_rehash: bool = False


REJECTED = VerifyResult(ok=False, needs_rehash=False)


@dataclass(frozen=True, slots=True)
class _Checked:
    result: VerifyResult
    spent_argon2: bool  # one full Argon2 computation was done (so the failure needs no decoy)


_NOT_CHECKED = _Checked(REJECTED, spent_argon2=False)

Verifier = Callable[[str, str, PasswordHashSection], _Checked]


@functools.lru_cache(maxsize=8)
def _argon2(params: PasswordHashSection) -> PasswordHasher:
    return PasswordHasher(
        time_cost=params.time_cost,
        memory_cost=params.memory_cost,
        parallelism=params.parallelism,
        type=Type.ID,
    )


def hash_password(password: str, params: PasswordHashSection) -> str:
    """An Argon2id PHC string (``$argon2id$v=19$m=...,t=...,p=...$salt$hash``) with a fresh salt."""
    return _argon2(params).hash(password)


def _check_argon2(stored_hash: str, password: str, params: PasswordHashSection) -> _Checked:
    hasher = _argon2(params)
    try:
        hasher.verify(stored_hash, password)
    except VerifyMismatchError:  # the hash was computed and differs
        return _Checked(REJECTED, spent_argon2=True)
    except (VerificationError, InvalidHashError, ValueError):  # refused before (or without) hashing
        return _NOT_CHECKED
    # A different type (argon2i/d) or weaker/stronger parameters than configured: rehash.
    return _Checked(VerifyResult(ok=True, needs_rehash=hasher.check_needs_rehash(stored_hash)), True)


def _verify_argon2(stored_hash: str, password: str, params: PasswordHashSection) -> VerifyResult:
    return _check_argon2(stored_hash, password, params).result


def _legacy_verifier(scheme: LegacyScheme) -> Verifier:
    def verify(stored_hash: str, password: str, params: PasswordHashSection) -> _Checked:
        if scheme.verify(stored_hash, password):
            return _Checked(VerifyResult(ok=True, needs_rehash=True), spent_argon2=False)
        return _NOT_CHECKED  # verify_password pays for the decoy

    return verify


_VERIFIERS: tuple[tuple[str, Verifier], ...] = (
    ("$argon2id$", _check_argon2),
    ("$argon2i$", _check_argon2),
    ("$argon2d$", _check_argon2),
    *((prefix, _legacy_verifier(scheme)) for scheme in LEGACY_SCHEMES for prefix in scheme.prefixes),
)


def _verifier_for(stored_hash: str) -> Verifier | None:
    for prefix, verifier in _VERIFIERS:
        if stored_hash.startswith(prefix):
            return verifier
    return None


def _check(stored_hash: str, password: str, params: PasswordHashSection) -> _Checked:
    verifier = _verifier_for(stored_hash)
    if verifier is None:
        return _NOT_CHECKED
    try:
        return verifier(stored_hash, password, params)
    except Exception:  # a broken stored hash must fail the login, not the session
        return _NOT_CHECKED


def verify_password(stored_hash: str, password: str, params: PasswordHashSection) -> VerifyResult:
    """Check ``password`` against ``stored_hash``; never raises, whatever the stored hash holds.
    A failure always costs one full Argon2 computation (the decoy's when none was done)."""
    checked = _check(stored_hash, password, params)
    if not checked.result.ok and not checked.spent_argon2:
        dummy_verify(params)
    return checked.result


@functools.lru_cache(maxsize=8)
def _decoy_hash(params: PasswordHashSection) -> str:
    return hash_password(secrets.token_urlsafe(32), params)


def prepare_dummy(params: PasswordHashSection) -> None:
    """Compute the decoy hash ahead of the first :func:`dummy_verify` (which would pay for it)."""
    _decoy_hash(params)


def dummy_verify(params: PasswordHashSection) -> None:
    """Spend the time of one real verification (for unknown users), always failing."""
    _verify_argon2(_decoy_hash(params), "not the decoy password", params)


@dataclass(frozen=True, slots=True)
class BoundHasher:
    """The functions above bound to one set of parameters: what HashPool runs in its threads."""

    params: PasswordHashSection

    def hash(self, password: str) -> str:
        return hash_password(password, self.params)

    def verify(self, stored_hash: str, password: str) -> VerifyResult:
        return verify_password(stored_hash, password, self.params)

    def dummy_verify(self) -> None:
        dummy_verify(self.params)

    def prepare(self) -> None:
        prepare_dummy(self.params)
