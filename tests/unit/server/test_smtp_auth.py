"""The AUTH exchange against fake stores and hashing pools: outcomes and replies."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from hardmail.auth.hashing import VerifyResult
from hardmail.auth.pool import PoolSaturated
from hardmail.auth.scram import ScramSecrets, derive_secrets
from hardmail.config.schema import Config
from hardmail.core.clock import FakeClock
from hardmail.core.replies import Reply
from hardmail.ops.log import EventLogger
from hardmail.proto.smtp.events import Auth, AuthResponse
from hardmail.server.smtp_auth import SmtpAuth
from hardmail.store.ports import Account
from hardmail.store.ports_credentials import AppPassword, CredentialState, LoginEvent


@dataclass
class FakePool:
    saturated: bool = False
    verified: int = 0
    dummies: int = 0

    async def verify(self, stored_hash: str, password: str, lane: object = None) -> VerifyResult:
        if self.saturated:
            raise PoolSaturated("busy")
        self.verified += 1
        return VerifyResult(ok=password == "right password", needs_rehash=False)

    async def dummy_verify(self, lane: object = None) -> None:
        if self.saturated:
            raise PoolSaturated("busy")
        self.dummies += 1

    async def hash(self, password: str, lane: object = None) -> str:
        return "new-hash"


class FakeCredentials:
    def __init__(self) -> None:
        self.events: list[LoginEvent] = []
        self.scram: ScramSecrets | None = None  # alice's stored SCRAM secrets
        self.common_iterations: int | None = None
        self.calls: list[str] = []

    async def get_credentials(self, address: str) -> CredentialState | None:
        self.calls.append("get_credentials")
        return CredentialState(address, scram=self.scram) if address == "alice@example.test" else None

    async def most_common_scram_iterations(self) -> int | None:
        return self.common_iterations

    async def find_app_password(self, address: str, digest: str) -> AppPassword | None:
        return None

    async def append_login_event(self, event: LoginEvent) -> None:
        self.calls.append("append_login_event")
        self.events.append(event)

    async def upgrade_hash(self, address: str, password_hash: str, scram: object, *, expected_hash: str) -> bool:
        return True  # SCRAM secrets are derived at the first successful login


class FakeStore:
    def __init__(self) -> None:
        self.credentials = FakeCredentials()

    async def get_account(self, address: str) -> Account | None:
        self.credentials.calls.append("get_account")
        if address == "alice@example.test":
            return Account(address=address, password_hash="h")
        return None

    async def get_alias(self, source: str) -> None:
        return None


def _auth(pool: FakePool) -> SmtpAuth:
    store = FakeStore()
    ctx: Any = SimpleNamespace(store=store, login_store=store, hash_pool=pool, config=Config(), clock=FakeClock(),
                               hooks=[])
    return SmtpAuth(ctx, EventLogger(session="test"), peer_ip="192.0.2.1")


def _plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def _start(mechanism: str, initial: str | None) -> Auth:
    return Auth(Reply(334, None, ""), mechanism=mechanism, initial_response=initial)


def _response(data: bytes) -> AuthResponse:
    return AuthResponse(Reply(334, None, ""), data=base64.b64encode(data).decode())


async def test_success_sets_account() -> None:
    auth = _auth(FakePool())
    reply = await auth.start(_start("PLAIN", _plain("alice@example.test", "right password")))
    assert reply.code == 235 and auth.account == "alice@example.test"


async def test_unknown_user_costs_a_dummy_verification() -> None:
    pool = FakePool()
    reply = await _auth(pool).start(_start("PLAIN", _plain("nobody@example.test", "right password")))
    assert (reply.code, pool.dummies, pool.verified) == (535, 1, 0)


async def test_saturated_pool_answers_454() -> None:
    auth = _auth(FakePool(saturated=True))
    reply = await auth.start(_start("PLAIN", _plain("alice@example.test", "right password")))
    assert (reply.code, reply.enhanced) == (454, "4.7.0") and auth.account is None


async def test_login_exchange_and_wrong_password() -> None:
    auth = _auth(FakePool())
    first = await auth.start(_start("LOGIN", None))
    assert (first.code, first.lines[0]) == (334, "VXNlcm5hbWU6")
    second = await auth.respond(_response(b"alice@example.test"))
    assert second.lines[0] == "UGFzc3dvcmQ6"
    third = await auth.respond(_response(b"wrong"))
    assert third.code == 535 and auth.account is None


async def test_bad_base64_is_501() -> None:
    reply = await _auth(FakePool()).start(_start("PLAIN", "!!!"))
    assert (reply.code, reply.enhanced) == (501, "5.5.2")


async def test_attempts_are_recorded_with_protocol_mechanism_and_peer() -> None:
    auth = _auth(FakePool())
    await auth.start(_start("PLAIN", _plain("alice@example.test", "wrong")))
    await auth.start(_start("PLAIN", _plain("alice@example.test", "right password")))
    events = auth.ctx.store.credentials.events
    assert [(e.result, e.protocol, e.mechanism, e.client_ip) for e in events] == [
        ("failure", "smtp", "PLAIN", "192.0.2.1"), ("success", "smtp", "PLAIN", "192.0.2.1")]
    assert auth.last_outcome == ("alice@example.test", True, "ok")


async def _scram_first(auth: SmtpAuth, user: str, nonce: str = "clientnonce") -> Reply:
    client_first = f"n,,n={user},r={nonce}".encode()
    return await auth.start(_start("SCRAM-SHA-256", base64.b64encode(client_first).decode()))


async def _scram_wrong_proof(auth: SmtpAuth, user: str) -> Reply:
    server_first = base64.b64decode((await _scram_first(auth, user)).lines[0]).decode()
    nonce = server_first.split(",")[0]
    proof = base64.b64encode(bytes(32)).decode()
    return await auth.respond(_response(f"c=biws,{nonce},p={proof}".encode()))


async def test_a_non_ascii_scram_nonce_gets_the_normal_failure() -> None:
    for user in ("alice@example.test", "nobody@example.test"):
        auth = _auth(FakePool())
        auth.ctx.store.credentials.scram = derive_secrets("right password", 4096)
        reply = await _scram_first(auth, user, nonce="caf\u00e9")
        assert (reply.code, reply.enhanced) == (535, "5.7.8") and auth.account is None


async def test_failed_scram_costs_the_same_store_work_for_known_and_unknown_users() -> None:
    seen = []
    for user in ("alice@example.test", "nobody@example.test"):
        auth = _auth(FakePool())
        auth.ctx.store.credentials.scram = derive_secrets("right password", 4096)
        reply = await _scram_wrong_proof(auth, user)
        credentials = auth.ctx.store.credentials
        seen.append((reply.code, reply.enhanced, reply.lines, credentials.calls, len(credentials.events)))
    assert seen[0] == seen[1]
    assert seen[0][:2] == (535, "5.7.8") and seen[0][4] == 1


async def test_decoy_scram_secrets_use_the_most_common_stored_iteration_count() -> None:
    auth = _auth(FakePool())
    auth.ctx.store.credentials.common_iterations = 4096  # the configuration says 10000
    server_first = base64.b64decode((await _scram_first(auth, "nobody@example.test")).lines[0]).decode()
    assert server_first.endswith(",i=4096")
