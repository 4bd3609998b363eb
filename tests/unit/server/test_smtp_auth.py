"""The AUTH exchange against fake stores and hashing pools: outcomes and replies."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from hardmail.auth.hashing import VerifyResult
from hardmail.auth.pool import PoolSaturated
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

    async def verify(self, stored_hash: str, password: str) -> VerifyResult:
        if self.saturated:
            raise PoolSaturated("busy")
        self.verified += 1
        return VerifyResult(ok=password == "right password", needs_rehash=False)

    async def dummy_verify(self) -> None:
        if self.saturated:
            raise PoolSaturated("busy")
        self.dummies += 1

    async def hash(self, password: str) -> str:
        return "new-hash"


class FakeCredentials:
    def __init__(self) -> None:
        self.events: list[LoginEvent] = []

    async def get_credentials(self, address: str) -> CredentialState | None:
        return CredentialState(address) if address == "alice@example.test" else None

    async def find_app_password(self, address: str, digest: str) -> AppPassword | None:
        return None

    async def append_login_event(self, event: LoginEvent) -> None:
        self.events.append(event)

    async def upgrade_hash(self, address: str, password_hash: str, scram: object) -> None:
        return None  # SCRAM secrets are derived at the first successful login


class FakeStore:
    def __init__(self) -> None:
        self.credentials = FakeCredentials()

    async def get_account(self, address: str) -> Account | None:
        if address == "alice@example.test":
            return Account(address=address, password_hash="h")
        return None


def _auth(pool: FakePool) -> SmtpAuth:
    ctx: Any = SimpleNamespace(store=FakeStore(), hash_pool=pool, config=Config(), clock=FakeClock())
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
