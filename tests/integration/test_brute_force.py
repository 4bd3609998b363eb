"""A scripted attacker on loopback: wrong passwords over SMTP AUTH from several 127.0.0.x sources.

The ban triggers at the threshold, a banned source is refused before any password hash is
computed, an unrelated source and the real user at a known address still log in, and the ban
ends on the (fake) clock.
"""

from __future__ import annotations

import asyncio
import base64
import smtplib
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from hardmail.admin.access_service import AccessService
from hardmail.auth.hashing import BoundHasher
from hardmail.auth.pool import CountingHasher, HashPool
from hardmail.core.clock import FakeClock
from hardmail.policy.bans import BanDecision
from hardmail.server.access_hook import BAN_REFRESH_SECONDS, AccessHook, access_hook_of
from hardmail.store import open_store
from support.live import ALICE, ALICE_PASSWORD, ServerThread, client_tls_context, running_server, server_config


class Recorded:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[tuple[ServerThread, AccessHook, CountingHasher, FakeClock]]:
    config = server_config(tmp_path / "data")
    with running_server(config) as server:
        assert server.server is not None
        context = server.server.context
        hasher = CountingHasher(BoundHasher(config.auth.argon2))
        context.hash_pool = HashPool(config.auth.argon2, hashing=hasher)
        hook = access_hook_of(context)
        assert hook is not None
        clock = FakeClock(start=time.time())
        hook.clock, hook.sleeper = clock, Recorded()
        yield server, hook, hasher, clock


def _plain(user: str, password: str) -> str:
    return "PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def _session(server: ServerThread, source: str) -> smtplib.SMTP:
    host, port = server.address("submission")
    client = smtplib.SMTP(host, port, timeout=30, source_address=(source, 0))
    client.starttls(context=client_tls_context())
    client.ehlo("attacker.example")
    return client


def _auth(server: ServerThread, source: str, user: str, password: str) -> int:
    client = _session(server, source)
    code, _ = client.docmd("AUTH", _plain(user, password))
    client.close()
    return code


def _greeting(server: ServerThread, source: str) -> int:
    host, port = server.address("submission")
    try:
        client = smtplib.SMTP(host, port, timeout=30, source_address=(source, 0))
    except smtplib.SMTPConnectError as refused:
        return refused.smtp_code
    client.close()
    return 220


def test_attacker_is_banned_and_then_costs_no_hashing(
    guarded: tuple[ServerThread, AccessHook, CountingHasher, FakeClock],
) -> None:
    server, _, hasher, clock = guarded
    codes = [_auth(server, "127.0.0.5", ALICE, f"guess {n}") for n in range(5)]
    assert codes == [535, 535, 535, 535, 421]  # banned at the fifth failure (default 5 in 15 minutes)
    spent = hasher.calls
    for _ in range(3):
        assert _greeting(server, "127.0.0.5") == 421  # refused at connect
    assert hasher.calls == spent
    assert _auth(server, "127.0.0.6", ALICE, ALICE_PASSWORD) == 235  # an unrelated source logs in
    clock.advance(3601)  # the first ban lasts an hour
    assert _greeting(server, "127.0.0.5") == 220


def test_ban_during_a_session_refuses_auth_before_hashing(
    guarded: tuple[ServerThread, AccessHook, CountingHasher, FakeClock],
) -> None:
    server, hook, hasher, _ = guarded
    client = _session(server, "127.0.0.9")
    server.run(hook.ban(BanDecision("127.0.0.9", "admin", "test"), "admin"))
    spent = hasher.calls
    code, _ = client.docmd("AUTH", _plain(ALICE, "whatever it is"))
    assert code == 421 and hasher.calls == spent
    client.close()


def test_ban_landing_at_the_password_prompt_refuses_before_hashing(
    guarded: tuple[ServerThread, AccessHook, CountingHasher, FakeClock],
) -> None:
    server, hook, hasher, _ = guarded
    client = _session(server, "127.0.0.10")
    code, _ = client.docmd("AUTH", "LOGIN " + base64.b64encode(ALICE.encode()).decode())
    assert code == 334  # parked at the password prompt
    server.run(hook.ban(BanDecision("127.0.0.10", "admin", "test"), "admin"))
    spent = hasher.calls
    code, _ = client.docmd(base64.b64encode(b"whatever it is").decode())
    assert code == 421 and hasher.calls == spent
    client.close()


def test_distributed_guessing_does_not_lock_out_the_real_user(
    guarded: tuple[ServerThread, AccessHook, CountingHasher, FakeClock],
) -> None:
    server, hook, _, _ = guarded
    assert _auth(server, "127.0.0.7", ALICE, ALICE_PASSWORD) == 235  # the user's usual address
    codes = [_auth(server, f"127.0.0.{20 + n}", ALICE, f"guess {n}") for n in range(11)]
    assert codes == [535] * 11  # many sources against one account: a raised guard, not bans
    assert hook.guarded(ALICE)
    assert _greeting(server, "127.0.0.29") == 220
    delays = hook.sleeper.delays  # type: ignore[attr-defined]
    delays.clear()
    assert _auth(server, "127.0.0.40", ALICE, "the owner's typo from a new address") == 535  # no ban ...
    assert delays[0] == hook.bans.guard_tarpit  # ... it waits before its password is even checked
    assert _greeting(server, "127.0.0.40") == 220
    delays.clear()
    assert _auth(server, "127.0.0.7", ALICE, ALICE_PASSWORD) == 235  # the known source logs in normally
    assert delays == []
    assert _auth(server, "127.0.0.7", ALICE, "a typo") == 535  # a typo from home is not a ban
    assert _greeting(server, "127.0.0.7") == 220


def _with_cli(server: ServerThread, action: Callable[[AccessService], Awaitable[object]]) -> None:
    """Run ``action`` as the CLI does: its own store connection, its own event loop, not the server's."""
    async def run() -> None:
        store = await open_store(server.config.database_url)
        try:
            await action(AccessService(store, server.config))
        finally:
            await store.close()

    asyncio.run(run())


def test_ban_and_unban_with_the_cli_apply_to_the_running_server_within_the_refresh_time(
    guarded: tuple[ServerThread, AccessHook, CountingHasher, FakeClock],
) -> None:
    server, _, _, clock = guarded
    assert _greeting(server, "127.0.0.11") == 220  # the server has loaded its snapshot of the bans
    _with_cli(server, lambda access: access.add_ban("127.0.0.11", "1h", "by hand"))
    assert _greeting(server, "127.0.0.11") == 220  # not looked at again yet: no query per connection
    clock.advance(BAN_REFRESH_SECONDS)
    assert _greeting(server, "127.0.0.11") == 421
    _with_cli(server, lambda access: access.remove_ban("127.0.0.11"))
    clock.advance(BAN_REFRESH_SECONDS)
    assert _greeting(server, "127.0.0.11") == 220
