"""The protocol-neutral login driver, driven by a stand-in protocol session (no sockets) on a real
SQLite store: password and SASL logins for IMAP and POP3, the login history, app-password scopes
and two-factor accounts per protocol, hooks, bans shared between the protocols, and the session
registry that ends a session when its account changes."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from scramp import ScramClient

from hardmail.admin.service import AdminService
from hardmail.auth.app_passwords import app_password_digest, new_app_password
from hardmail.auth.pool import HashPool
from hardmail.config.schema import Config
from hardmail.core.clock import FakeClock
from hardmail.core.ids import new_id
from hardmail.core.replies import AUTH_ENCRYPTION_REQUIRED, AUTH_TEMP_FAILURE, Reply
from hardmail.ops.log import EventLogger
from hardmail.proto.smtp.events import Auth
from hardmail.server.access_hook import BANNED, AccessHook
from hardmail.server.hooks import SessionFacts, SessionHook
from hardmail.server.login import LoginDriver, LoginResult
from hardmail.server.sessions import SessionRegistry
from hardmail.server.smtp_auth import SmtpAuth
from hardmail.store import open_store
from hardmail.store.ports import CHANGE_DISABLED, AccountChange, Store

ALICE = "alice@example.org"
PASSWORD = "correct horse battery staple"
WRONG = "wrong horse battery staple"
PEER = "192.0.2.7"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config.model_validate({
        "server": {"data_dir": str(tmp_path / "data")},
        "auth": {"argon2": {"time_cost": 1, "memory_cost": 8192, "parallelism": 1, "hash_workers": 1},
                 "scram": {"iterations": 4096}},
        "access": {"bans": {"failures": 3}},
    })


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock, config: Config) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'hardmail.db'}", clock=clock)
    await opened.migrate()
    admin = AdminService(opened, config.auth.argon2, auth=config.auth, clock=clock)
    await admin.add_domain("example.org")
    await admin.add_account(ALICE, PASSWORD)
    try:
        yield opened
    finally:
        await opened.close()


class CountingPool:
    """The real hashing pool, counting the work asked of it."""

    def __init__(self, config: Config) -> None:
        self.pool = HashPool(config.auth.argon2)
        self.work = 0

    async def verify(self, stored_hash: str, password: str, lane: Any = None) -> Any:
        self.work += 1
        return await self.pool.verify(stored_hash, password, lane)

    async def dummy_verify(self, lane: Any = None) -> None:
        self.work += 1
        await self.pool.dummy_verify(lane)

    async def hash(self, password: str, lane: Any = None) -> str:
        return await self.pool.hash(password, lane)


@pytest.fixture
def pool(config: Config) -> Iterator[CountingPool]:
    counting = CountingPool(config)
    yield counting
    counting.pool.close()


@dataclass
class RecordingHook(SessionHook):
    refuse_with: Reply | None = None
    calls: list[tuple[str, str, tuple[Any, ...]]] = field(default_factory=list)

    async def before_auth(self, facts: SessionFacts, mechanism: str) -> Reply | None:
        self.calls.append(("before", facts.listener, (mechanism,)))
        return self.refuse_with

    async def after_auth(self, facts: SessionFacts, username: str, success: bool, reason: str) -> Reply | None:
        self.calls.append(("after", facts.listener, (username, success, reason)))
        return None


def _context(config: Config, store: Store, pool: CountingPool, clock: FakeClock, *hooks: SessionHook) -> Any:
    return SimpleNamespace(config=config, store=store, login_store=store, hash_pool=pool, clock=clock,
                           hooks=list(hooks), sessions=SessionRegistry())


class FakeSession:
    """What an IMAP or POP3 session gives the driver: its facts, and an end for account changes."""

    def __init__(self, ctx: Any, kind: str, *, peer: str = PEER, tls: bool = True,
                 client_gone: asyncio.Future[None] | None = None) -> None:
        self.id = new_id()
        self.kind = kind
        self.peer = peer
        self.tls = {"version": "TLSv1.3"} if tls else None
        self.ended: list[Reply] = []
        protocol = "imap" if kind.startswith("imap") else "pop3"
        self.login = LoginDriver(ctx, EventLogger(session=self.id), protocol=protocol, facts=self.facts,
                                 client_gone=client_gone)

    def facts(self) -> SessionFacts:
        return SessionFacts(session_id=self.id, listener=self.kind, peer_ip=self.peer, peer_port=40000, helo=None,
                            tls=self.tls, account=self.login.account)

    def end_session(self, reply: Reply) -> None:
        self.ended.append(reply)


async def _add_app_password(store: Store, scopes: set[str]) -> str:
    secret = new_app_password()
    await store.credentials.add_app_password(ALICE, f"device-{'-'.join(sorted(scopes))}",
                                             app_password_digest(secret), frozenset(scopes), None)
    return secret


async def _history(store: Store) -> list[tuple[str, str, str, str, str]]:
    events = reversed(await store.credentials.list_login_events(ALICE))
    return [(e.result, e.protocol, e.mechanism, e.client_ip, e.tls_version) for e in events if e.kind == "login"]


async def test_imap_login_succeeds_is_recorded_and_registered(
    config: Config, store: Store, pool: CountingPool, clock: FakeClock
) -> None:
    ctx = _context(config, store, pool, clock)
    session = FakeSession(ctx, "imaps")
    result = await session.login.password_login(ALICE, PASSWORD, "LOGIN")
    assert result == LoginResult("success", account=ALICE)
    assert (session.login.account, session.login.via) == (ALICE, "password")
    assert await _history(store) == [("success", "imap", "LOGIN", PEER, "TLSv1.3")]
    assert ctx.sessions.is_registered(session.id)
    assert ctx.sessions.apply(AccountChange(1, ALICE, CHANGE_DISABLED, datetime.now(UTC))) == 1
    assert [reply.code for reply in session.ended] == [421]


async def test_pop3_user_pass_failures_look_the_same_and_cost_the_same(
    config: Config, store: Store, pool: CountingPool, clock: FakeClock
) -> None:
    ctx = _context(config, store, pool, clock)
    seen = []
    for user, password in ((ALICE, WRONG), ("nobody@example.org", PASSWORD), ("not an address", PASSWORD)):
        session = FakeSession(ctx, "pop3s")
        before = pool.work
        seen.append((await session.login.password_login(user, password, "USER"), pool.work - before))
        assert not ctx.sessions.is_registered(session.id)
    assert seen == [(LoginResult("failure"), 1)] * 3
    assert await _history(store) == [("failure", "pop3", "USER", PEER, "TLSv1.3")]


@pytest.mark.parametrize("kind", ["imap", "pop3"])
async def test_two_factor_and_app_password_scopes_per_protocol(
    config: Config, store: Store, pool: CountingPool, clock: FakeClock, kind: str
) -> None:
    ctx = _context(config, store, pool, clock)
    await store.credentials.set_totp(ALICE, "encrypted-secret-token", [])
    smtp_only = await _add_app_password(store, {"smtp"})
    this_protocol = await _add_app_password(store, {kind})
    mechanism = "LOGIN" if kind == "imap" else "USER"

    async def login(password: str) -> LoginResult:
        return await FakeSession(ctx, kind).login.password_login(ALICE, password, mechanism)

    wrong = await login(WRONG)
    assert await login(PASSWORD) == wrong == LoginResult("failure")  # the main password of a 2FA account
    assert await login(smtp_only) == wrong  # an SMTP-only app password, like a wrong password
    assert await login(this_protocol) == LoginResult("success", account=ALICE)
    results = [row[0] for row in await _history(store)]
    assert results == ["failure", "refused", "failure", "success"]


async def _sasl_plain(session: FakeSession, user: str, password: str) -> LoginResult:
    return await session.login.start("PLAIN", f"\0{user}\0{password}".encode())


async def test_sasl_plain_and_login_exchanges(
    config: Config, store: Store, pool: CountingPool, clock: FakeClock
) -> None:
    ctx = _context(config, store, pool, clock)
    assert (await _sasl_plain(FakeSession(ctx, "imaps"), ALICE, PASSWORD)).kind == "success"
    session = FakeSession(ctx, "pop3s")
    assert await session.login.start("LOGIN", None) == LoginResult("challenge", challenge=b"Username:")
    assert await session.login.respond(ALICE.encode()) == LoginResult("challenge", challenge=b"Password:")
    assert await session.login.respond(PASSWORD.encode()) == LoginResult("success", account=ALICE)
    assert [row[:3] for row in await _history(store)] == [("success", "imap", "PLAIN"), ("success", "pop3", "LOGIN")]


async def _scram(session: FakeSession, user: str, password: str) -> LoginResult:
    client = ScramClient(["SCRAM-SHA-256"], user, password)
    result = await session.login.start("SCRAM-SHA-256", client.get_client_first().encode())
    assert result.kind == "challenge"
    client.set_server_first(result.challenge.decode())
    result = await session.login.respond(client.get_client_final().encode())
    if result.kind != "challenge":
        return result
    client.set_server_final(result.challenge.decode())
    return await session.login.respond(b"")


async def test_scram_on_imap_and_its_failures(
    config: Config, store: Store, pool: CountingPool, clock: FakeClock
) -> None:
    ctx = _context(config, store, pool, clock)
    good = FakeSession(ctx, "imaps")
    assert await _scram(good, ALICE, PASSWORD) == LoginResult("success", account=ALICE)
    assert ctx.sessions.is_registered(good.id) and good.login.via == "scram"
    assert await _scram(FakeSession(ctx, "imaps"), ALICE, WRONG) == LoginResult("failure")
    assert await _scram(FakeSession(ctx, "imaps"), "nobody@example.org", WRONG) == LoginResult("failure")
    assert [row[:3] for row in await _history(store)] == [("success", "imap", "SCRAM-SHA-256"),
                                                          ("failure", "imap", "SCRAM-SHA-256")]


@pytest.mark.parametrize(("reply", "kind"), [(BANNED, "refused"), (AUTH_ENCRYPTION_REQUIRED, "encryption_required"),
                                             (AUTH_TEMP_FAILURE, "tempfail")])
async def test_a_hook_refusal_comes_before_any_password_work(
    config: Config, store: Store, pool: CountingPool, clock: FakeClock, reply: Reply, kind: str
) -> None:
    hook = RecordingHook(refuse_with=reply)
    ctx = _context(config, store, pool, clock, hook)
    session = FakeSession(ctx, "imap")
    assert await session.login.password_login(ALICE, PASSWORD, "LOGIN") == LoginResult(kind, reply=reply)
    assert (await _sasl_plain(session, ALICE, PASSWORD)).kind == kind
    assert pool.work == 0 and await _history(store) == [] and session.login.account is None
    assert [call[:2] for call in hook.calls] == [("before", "imap"), ("before", "imap")]


async def test_hooks_see_the_listener_and_the_verdict(
    config: Config, store: Store, pool: CountingPool, clock: FakeClock
) -> None:
    hook = RecordingHook()
    ctx = _context(config, store, pool, clock, hook)
    await FakeSession(ctx, "pop3").login.password_login(ALICE, WRONG, "USER")
    await FakeSession(ctx, "imaps").login.password_login(ALICE, PASSWORD, "LOGIN")
    assert hook.calls == [("before", "pop3", ("USER",)), ("after", "pop3", (ALICE, False, "wrong password")),
                          ("before", "imaps", ("LOGIN",)), ("after", "imaps", (ALICE, True, "ok"))]


async def test_a_ban_earned_on_imap_refuses_pop3_and_smtp_before_any_hashing(
    config: Config, store: Store, pool: CountingPool, clock: FakeClock
) -> None:
    async def no_tarpit(seconds: float) -> None:
        return None

    hook = AccessHook(store, config, clock, sleeper=no_tarpit)
    ctx = _context(config, store, pool, clock, hook)
    results = [await FakeSession(ctx, "imaps").login.password_login(ALICE, WRONG, "LOGIN") for _ in range(3)]
    assert [r.kind for r in results] == ["failure", "failure", "refused"]  # the third failure bans
    work = pool.work
    assert (await FakeSession(ctx, "pop3s").login.password_login(ALICE, PASSWORD, "USER")).kind == "refused"
    smtp = SmtpAuth(ctx, EventLogger(session="smtp"), peer_ip=PEER)
    plain = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode()).decode()
    assert await smtp.start(Auth(Reply(334, None, ""), mechanism="PLAIN", initial_response=plain)) == BANNED
    assert pool.work == work  # no hash was spent on the banned source
    other = FakeSession(ctx, "imaps", peer="192.0.2.200")
    assert (await other.login.password_login(ALICE, PASSWORD, "LOGIN")).kind == "success"


async def test_cancel_ends_the_exchange_unverified(
    config: Config, store: Store, pool: CountingPool, clock: FakeClock
) -> None:
    ctx = _context(config, store, pool, clock)
    session = FakeSession(ctx, "imaps")
    assert (await session.login.start("LOGIN", None)).kind == "challenge"
    assert session.login.in_progress
    session.login.cancel()
    assert not session.login.in_progress
    assert await session.login.respond(PASSWORD.encode()) == LoginResult("aborted")
    assert pool.work == 0 and await _history(store) == []


async def test_log_events_are_named_by_protocol_and_hold_no_password(
    config: Config, store: Store, pool: CountingPool, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ctx = _context(config, store, pool, clock)
    await FakeSession(ctx, "imaps").login.password_login(ALICE, WRONG, "LOGIN")
    await _sasl_plain(FakeSession(ctx, "pop3s"), ALICE, PASSWORD)
    text = caplog.text
    assert '"event": "imap.auth"' in text and '"event": "pop3.auth"' in text
    assert '"code"' not in text  # SMTP's enhanced codes stay in SMTP's events
    for secret in (PASSWORD, WRONG, base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode()).decode()):
        assert secret not in text


async def test_a_client_that_went_away_gets_no_password_check(
    config: Config, store: Store, pool: CountingPool, clock: FakeClock
) -> None:
    ctx = _context(config, store, pool, clock)
    gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    gone.set_result(None)
    session = FakeSession(ctx, "imaps", client_gone=gone)
    assert await session.login.password_login(ALICE, PASSWORD, "LOGIN") == LoginResult("tempfail")
    assert await _history(store) == [] and not ctx.sessions.is_registered(session.id)


class RefusingAfterHook(SessionHook):
    async def after_auth(self, facts: SessionFacts, username: str, success: bool, reason: str) -> Reply | None:
        return AUTH_TEMP_FAILURE


async def test_a_verified_login_a_check_refuses_does_not_stand(
    config: Config, store: Store, pool: CountingPool, clock: FakeClock
) -> None:
    ctx = _context(config, store, pool, clock, RefusingAfterHook())
    session = FakeSession(ctx, "pop3s")
    result = await session.login.password_login(ALICE, PASSWORD, "USER")
    assert result == LoginResult("tempfail", reply=AUTH_TEMP_FAILURE)
    assert session.login.account is None and not ctx.sessions.is_registered(session.id)
