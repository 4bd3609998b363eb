"""Password authentication shared by every protocol: look up, verify off the loop, upgrade hashes.

Unknown users, disabled accounts and wrong passwords cost the same hashing work and produce the
same outcome for the client; only the log reason differs.
"""

from __future__ import annotations

from dataclasses import dataclass

from hardmail.auth.pool import HashPool
from hardmail.core.address import AddressError, parse_address_arg
from hardmail.store.ports import AccountStore


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    account: str | None  # the authenticated account address, None on failure
    reason: str  # for the log: "ok", "unknown user", "wrong password", "account disabled", ...


async def authenticate(store: AccountStore, pool: HashPool, username: str, password: str) -> AuthOutcome:
    """Raises auth.pool.PoolSaturated when hashing capacity is exhausted (callers reply 454)."""
    try:
        key = parse_address_arg(username).key
    except AddressError:
        await pool.dummy_verify()
        return AuthOutcome(None, "user name is not an address")
    account = await store.get_account(key)
    if account is None:
        await pool.dummy_verify()
        return AuthOutcome(None, "unknown user")
    result = await pool.verify(account.password_hash, password)
    if not result.ok:
        return AuthOutcome(None, "wrong password")
    if not account.enabled:
        return AuthOutcome(None, "account disabled")
    if result.needs_rehash:
        await store.set_password_hash(account.address, await pool.hash(password))
    return AuthOutcome(account.address, "ok")
