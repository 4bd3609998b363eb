"""The login guard over real sockets on loopback, from many 127.0.0.x source addresses.

- a correct main password of a 2FA (or must-change) account gets the reply of a wrong one, at the
  same hashing cost; the reason is in the login history;
- a subnet ban refuses AUTH and the subnet's only-failing sources, but not the owner's known
  address for the owner's account, and not the MX port;
- password spraying from rotating addresses is detected per subnet (ban) and globally (guard);
- one source cannot saturate the hashing pool: known pairs still log in;
- a user name that is no account never reaches the log, only its keyed label;
- a failing audit write does not fail a login; an unreadable store gives 454 4.7.0.
"""

from __future__ import annotations

import base64
import re
import smtplib
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import pytest
from scramp import ScramClient
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from hardmail.admin.credentials import CredentialService
from hardmail.auth.hashing import BoundHasher, VerifyResult
from hardmail.auth.pool import CountingHasher, HashPool
from hardmail.auth.verify_cache import enable_verify_cache
from hardmail.core.clock import FakeClock
from hardmail.ops.counters import value
from hardmail.policy.bans import Ban, BanDecision
from hardmail.server.access_hook import AccessHook, access_hook_of
from hardmail.store.sql.tables_access import access_auth_failures
from support.live import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    BOB_PASSWORD,
    ServerThread,
    client_tls_context,
    running_server,
    server_config,
)

WAIT = 30.0  # upper bound of a thread handshake; never reached when the code is right
CHEAP = {"time_cost": 1, "memory_cost": 8192}
WIDE_LIMITS = {"connections_per_ip": 200, "connections_per_subnet": 400, "new_connections_per_minute": 1000}


class Recorded:
    """The tarpit's sleeper: records the waits instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


Guarded = tuple[ServerThread, AccessHook, CountingHasher, Recorded]


def _guard(server: ServerThread, pool: HashPool | None = None) -> tuple[AccessHook, Recorded]:
    assert server.server is not None
    hook = access_hook_of(server.server.context)
    assert hook is not None
    hook.clock, hook.sleeper = FakeClock(start=time.time()), Recorded()
    if pool is not None:
        server.server.context.hash_pool = pool
    return hook, hook.sleeper  # type: ignore[return-value]


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Guarded]:
    config = server_config(tmp_path / "data", access={"limits": WIDE_LIMITS})
    with running_server(config) as server:
        hasher = CountingHasher(BoundHasher(config.auth.argon2))
        pool = HashPool(config.auth.argon2, hashing=hasher)
        enable_verify_cache(pool, 300.0)
        hook, sleeps = _guard(server, pool)
        yield server, hook, hasher, sleeps


def _plain(user: str, password: str) -> str:
    return "PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def _session(server: ServerThread, source: str, kind: str = "submission") -> smtplib.SMTP | int:
    """A client from ``source`` after STARTTLS and EHLO, or the code of a refused greeting."""
    try:
        client = smtplib.SMTP(*server.address(kind), timeout=WAIT, source_address=(source, 0))
    except smtplib.SMTPConnectError as refused:
        return refused.smtp_code
    client.starttls(context=client_tls_context())
    client.ehlo("client.example")
    return client


def _auth_reply(server: ServerThread, source: str, user: str, password: str) -> tuple[int, bytes]:
    client = _session(server, source)
    if isinstance(client, int):
        return client, b""
    try:
        return client.docmd("AUTH", _plain(user, password))
    finally:
        client.close()


def _auth(server: ServerThread, source: str, user: str, password: str) -> int:
    return _auth_reply(server, source, user, password)[0]


def _history(server: ServerThread, account: str) -> list[Any]:
    assert server.server is not None
    return server.run(server.server.context.store.credentials.list_login_events(account))


# point 4: a 2FA account's correct main password --------------------------------------------------


def test_correct_main_password_of_a_2fa_account_looks_and_costs_like_a_wrong_one(guarded: Guarded) -> None:
    server, _, hasher, _ = guarded
    assert server.server is not None
    server.run(server.server.context.store.credentials.set_totp(ALICE, "encrypted-secret-token", []))
    replies, costs = [], []
    for password in (ALICE_PASSWORD, "a wrong password", ALICE_PASSWORD, "another wrong one"):
        spent = hasher.calls
        replies.append(_auth_reply(server, "127.0.0.7", ALICE, password))
        costs.append(hasher.calls - spent)
    assert replies == [(535, b"5.7.8 Authentication credentials invalid")] * 4
    assert costs == [1, 1, 1, 1]  # a refused correct password is never served from the verify cache
    refused = [event for event in _history(server, ALICE) if event.result == "refused"]
    assert [event.detail for event in refused] == ["two-factor account: use an app password"] * 2


def test_a_password_that_must_be_changed_is_not_confirmed_either(guarded: Guarded) -> None:
    server, _, _, _ = guarded
    assert server.server is not None
    server.run(server.server.context.store.credentials.set_must_change(BOB, True))
    assert _auth_reply(server, "127.0.0.8", BOB, BOB_PASSWORD) == _auth_reply(server, "127.0.0.8", BOB, "wrong") == (
        535, b"5.7.8 Authentication credentials invalid")
    assert _history(server, BOB)[1].detail == "password must be changed"


# point 5: bans, the owner, the MX port, spraying ---------------------------------------------------


def test_subnet_ban_spares_the_owners_known_address_and_the_mx_port(guarded: Guarded) -> None:
    server, hook, hasher, _ = guarded
    owner = "127.0.3.200"
    assert _auth(server, owner, ALICE, ALICE_PASSWORD) == 235
    for n in range(1, 12):  # 11 addresses x 5 failures against one account, in one /24
        for k in range(5):
            _auth(server, f"127.0.3.{n}", ALICE, f"guess {n}.{k}")
    bans = server.run(hook.store.access.get_bans(["127.0.3.0/24"]))
    assert [ban.kind for ban in bans] == ["subnet"]  # every rule saw every failure
    assert _auth(server, owner, ALICE, ALICE_PASSWORD) == 235  # the owner, from a known address
    spent = hasher.calls
    assert _auth(server, owner, BOB, BOB_PASSWORD) == 421  # but only for the account it is known for
    assert hasher.calls == spent  # refused before any hashing
    assert _session(server, "127.0.3.99") == 421  # a neighbour that only ever failed: refused at connect
    mx = smtplib.SMTP(*server.address("smtp"), timeout=WAIT, source_address=("127.0.3.99", 0))
    mx.ehlo("mx.example")
    assert mx.mail("someone@elsewhere.example")[0] == 250
    assert mx.rcpt(ALICE)[0] == 250  # the MX port keeps taking mail from a source banned for AUTH
    mx.close()


def test_scram_through_a_login_ban_only_for_the_account_known_there(guarded: Guarded) -> None:
    server, hook, _, _ = guarded
    owner = "127.0.5.20"
    assert _auth(server, owner, ALICE, ALICE_PASSWORD) == 235  # known now; SCRAM secrets derived
    assert _auth(server, "127.0.5.21", BOB, BOB_PASSWORD) == 235  # bob's secrets, from elsewhere
    server.run(hook.ban(BanDecision("127.0.5.0/24", "subnet", "test"), "auto"))
    for user, password, code in ((ALICE, ALICE_PASSWORD, 235), (BOB, BOB_PASSWORD, 421)):
        client = _session(server, owner)
        assert not isinstance(client, int)
        assert _scram_login(client, user, password) == code
        client.close()


def _spray(server: ServerThread, source_of: Any) -> list[int]:
    accounts = [ALICE, BOB] + [f"user{n}@example.test" for n in range(28)]
    return [_auth(server, source_of(n), account, "Summer2026!") for n, account in enumerate(accounts)]


def test_spraying_from_rotating_addresses_of_one_subnet_is_detected_and_banned(
    guarded: Guarded, caplog: pytest.LogCaptureFixture
) -> None:
    server, hook, _, _ = guarded
    spotted = value("auth.spray_detected")
    codes = _spray(server, lambda n: f"127.0.4.{n % 24 + 1}")  # 30 accounts, one try each, 24 addresses
    assert codes[:9] == [535] * 9 and set(codes[9:]) == {421}
    [ban] = server.run(hook.store.access.get_bans(["127.0.4.0/24"]))
    assert ban.kind == "subnet-spraying"
    assert value("auth.spray_detected") == spotted + 1
    assert '"event": "auth.spray_detected"' in caplog.text and '"scope": "subnet"' in caplog.text


def test_spraying_spread_over_many_subnets_raises_every_accounts_guard(
    guarded: Guarded, caplog: pytest.LogCaptureFixture
) -> None:
    server, hook, _, sleeps = guarded
    assert _auth(server, "127.0.0.7", ALICE, ALICE_PASSWORD) == 235  # the owner's usual address
    spotted = value("auth.spray_detected")
    codes = _spray(server, lambda n: f"127.0.{10 + n % 24}.9")  # one address in each of 24 /24s
    assert codes == [535] * 30  # no single source or subnet crosses a threshold ...
    assert value("auth.spray_detected") == spotted + 1  # ... but the campaign is seen
    assert '"scope": "global"' in caplog.text and hook.guarded("anyone@example.test")
    sleeps.delays.clear()
    assert _auth(server, "127.0.0.7", ALICE, ALICE_PASSWORD) == 235  # the known pair: no wait
    assert sleeps.delays == []
    assert _auth(server, "127.0.50.1", BOB, BOB_PASSWORD) == 235  # an unknown source still logs in ...
    assert sleeps.delays == [hook.bans.guard_tarpit]  # ... after the guard's wait


# point 6: fairness of the hashing pool ---------------------------------------------------------------


class HeldWrongPasswords:
    """Argon2 for real, but a wrong password's check holds its thread until released."""

    def __init__(self, inner: BoundHasher) -> None:
        self.inner = inner
        self.release = threading.Event()

    def hash(self, password: str) -> str:
        return self.inner.hash(password)

    def verify(self, stored_hash: str, password: str) -> VerifyResult:
        if password.startswith("wrong"):
            assert self.release.wait(WAIT)
        return self.inner.verify(stored_hash, password)

    def dummy_verify(self) -> None:
        self.inner.dummy_verify()


class ObservedPool(HashPool):
    """Tells the test each time a known pair's check has entered the pool."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.known_admitted = threading.Semaphore(0)

    def _admit(self, job: Any) -> None:
        super()._admit(job)
        if job.lane.priority:
            self.known_admitted.release()


def _until_done(futures: list[Future[int]], how_many: int) -> list[int]:
    """Wait (on the futures, not on a clock) until ``how_many`` of them are done; their results."""
    done: set[Future[int]] = set()
    while len(done) < how_many:
        finished, _ = wait(set(futures) - done, timeout=WAIT, return_when=FIRST_COMPLETED)
        assert finished, "the server did not answer"
        done |= finished
    return sorted(future.result() for future in done)


def test_one_source_cannot_saturate_the_pool_and_known_pairs_go_first(tmp_path: Path) -> None:
    tiny = {**CHEAP, "hash_workers": 1, "max_pending": 4, "per_source": 3}  # 5 places, 3 per source
    config = server_config(tmp_path / "data", auth={"argon2": tiny}, access={"limits": WIDE_LIMITS})
    with running_server(config) as server:
        held = HeldWrongPasswords(BoundHasher(config.auth.argon2))
        pool = ObservedPool(config.auth.argon2, hashing=held)
        _guard(server, pool)
        assert _auth(server, "127.0.0.2", ALICE, ALICE_PASSWORD) == 235  # now a known source/account pair
        with ThreadPoolExecutor(63) as threads:
            attack = [threads.submit(_auth, server, "127.0.0.3", ALICE, f"wrong {n}") for n in range(60)]
            assert _until_done(attack, 57) == [454] * 57  # the excess of one source, before the pool
            assert pool.in_flight == 3  # its share: one running, two waiting; two places left
            legit = [threads.submit(_auth, server, "127.0.0.2", ALICE, ALICE_PASSWORD) for _ in range(3)]
            for _ in legit:
                assert pool.known_admitted.acquire(timeout=WAIT)  # queued while the attacker holds the thread
            assert pool.waiting(True) == 3
            held.release.set()
            assert [future.result() for future in legit] == [235, 235, 235]
            assert _until_done(attack, 60) == [454] * 57 + [535] * 3
        pool.close()


# point 9: user names that are no account -----------------------------------------------------------


def _scram_login(client: smtplib.SMTP, username: str, password: str) -> int:
    scram = ScramClient(["SCRAM-SHA-256"], username, password)
    first = [True]

    def authobject(challenge: bytes | None = None) -> str:
        if first[0]:
            first[0] = False
            return scram.get_client_first()
        assert challenge is not None
        if challenge.startswith(b"v="):
            scram.set_server_final(challenge.decode())
            return ""
        scram.set_server_first(challenge.decode())
        return scram.get_client_final()

    try:
        return client.auth("SCRAM-SHA-256", authobject)[0]
    except (smtplib.SMTPAuthenticationError, smtplib.SMTPResponseException) as refused:
        return refused.smtp_code


def test_a_password_typed_as_the_user_name_never_reaches_the_log(
    guarded: Guarded, caplog: pytest.LogCaptureFixture
) -> None:
    server, hook, _, _ = guarded
    typed = "Tr0ub4dor&3 Correct Staple"  # the password, typed into the user name field
    assert _auth(server, "127.0.0.30", typed, "x") == 535
    assert _auth(server, "127.0.0.30", typed.upper(), "y") == 535
    client = _session(server, "127.0.0.30")
    assert not isinstance(client, int)
    assert _scram_login(client, typed, "z") == 535
    client.close()
    assert _auth(server, "127.0.0.30", ALICE, "wrong") == 535
    text = caplog.text
    assert typed.casefold() not in text.casefold()
    labels = set(re.findall(r"~h:[0-9a-f]{12}", text))
    assert len(labels) == 1  # stable: the same name, whatever its case, correlates
    assert f'"user": "{ALICE}"' in text  # an existing account is logged as its address
    [label] = labels
    failures = server.run(_failure_accounts(hook))
    assert label in failures and ALICE in failures and not any(typed.casefold() in f.casefold() for f in failures)


async def _failure_accounts(hook: AccessHook) -> list[str]:
    engine = hook.store.engine  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        return [row.account for row in await conn.execute(select(access_auth_failures))]


# point 13: audit writes that fail, a store that cannot be read --------------------------------------


def _disk_full(*_args: object, **_kwargs: object) -> Any:
    async def fail() -> None:
        raise OperationalError("INSERT ...", {}, sqlite3.OperationalError("database or disk is full"))
    return fail()


def test_a_full_disk_does_not_fail_a_correct_login(
    guarded: Guarded, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, hook, _, _ = guarded
    assert server.server is not None
    monkeypatch.setattr(server.server.context.login_store.credentials, "append_login_event", _disk_full)
    monkeypatch.setattr(hook.store.access, "remember_source", _disk_full)
    monkeypatch.setattr(hook.store.access, "record_failure", _disk_full)
    failed = value("auth.audit_write_failed")
    assert _auth(server, "127.0.0.31", ALICE, ALICE_PASSWORD) == 235
    assert _auth(server, "127.0.0.31", ALICE, ALICE_PASSWORD) == 235
    assert _auth(server, "127.0.0.31", ALICE, "a wrong password") == 535
    assert value("auth.audit_write_failed") - failed == 6  # two history rows and one source per login, ...
    logged = re.findall(r'"event": "auth.audit_write_failed"[^}]*"write": "([a-z-]+)"', caplog.text)
    assert len(logged) == len(set(logged)) <= 3  # ... but each kind of write is logged once


def test_an_unreadable_store_answers_454(guarded: Guarded, monkeypatch: pytest.MonkeyPatch) -> None:
    server, _, _, _ = guarded
    assert server.server is not None
    monkeypatch.setattr(server.server.context.login_store, "get_account", _disk_full)
    assert _auth_reply(server, "127.0.0.32", ALICE, ALICE_PASSWORD) == (
        454, b"4.7.0 Temporary authentication failure, try again later")  # RFC 4954 6, not 451 4.3.0


# review: a cached login, then the rules refuse it; an admin ban under a longer login ban ----------


@pytest.mark.parametrize("refuse", ["must-change", "two-factor", "disabled"])
def test_a_password_refused_after_it_was_cached_still_costs_a_full_check(guarded: Guarded, refuse: str) -> None:
    """The owner logged in a minute ago (verify cache); then the admin sets must-change (the password
    leaked), or 2FA is turned on, or the account disabled: the leaked password must not get a faster
    535 than a wrong one, or the missing hash confirms it."""
    server, _, hasher, _ = guarded
    assert server.server is not None
    store = server.server.context.store
    assert _auth(server, "127.0.0.40", BOB, BOB_PASSWORD) == 235  # now in the verify cache
    if refuse == "must-change":
        server.run(store.credentials.set_must_change(BOB, True))
    elif refuse == "two-factor":
        server.run(store.credentials.set_totp(BOB, "encrypted-secret-token", []))
    else:
        server.run(store.set_account_enabled(BOB, False))
    costs = []
    for password in (BOB_PASSWORD, "a wrong password"):
        spent = hasher.calls
        assert _auth_reply(server, "127.0.0.41", BOB, password) == (535, b"5.7.8 Authentication credentials invalid")
        costs.append(hasher.calls - spent)
    assert costs == [1, 1]


def test_an_admin_ban_of_a_known_address_is_not_hidden_by_a_longer_login_ban_of_its_subnet(
    guarded: Guarded,
) -> None:
    """Stolen credentials used from 127.0.6.5: the admin bans that address (everything, for a
    short while); a longer automatic login ban on its /24 must not make the look-up see only the
    login ban, whose known-pair exemption would let the intruder back in."""
    server, hook, hasher, _ = guarded
    intruder = "127.0.6.5"
    assert _auth(server, intruder, ALICE, ALICE_PASSWORD) == 235  # a known pair now
    now = hook.clock.now()
    server.run(hook.store.access.put_ban(Ban(intruder, "admin", "stolen password used", created_at=now,
                                             expires_at=now + 600, by_admin=True)))
    server.run(hook.store.access.put_ban(Ban("127.0.6.0/24", "subnet", "test", created_at=now,
                                             expires_at=now + 3600)))
    hook.forget_cached_bans()
    spent = hasher.calls
    assert _auth(server, intruder, ALICE, ALICE_PASSWORD) == 421
    mx = smtplib.SMTP(timeout=WAIT, source_address=(intruder, 0))
    try:
        code = mx.connect(*server.address("smtp"))[0]
    except smtplib.SMTPConnectError as refused:
        code = refused.smtp_code
    mx.close()
    assert code == 421  # an administrator's ban closes the MX port too
    assert hasher.calls == spent


def test_a_full_disk_when_a_ban_is_written_still_answers_and_bans(
    guarded: Guarded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ban that a failed login earns cannot be written: the client still gets the ban's reply
    (not 451 4.3.0), and the ban holds in this process; the failure is counted."""
    server, hook, _, _ = guarded
    monkeypatch.setattr(hook.store.access, "put_ban", _disk_full)
    failed = value("auth.audit_write_failed")
    codes = [_auth(server, "127.0.0.33", ALICE, f"wrong {n}") for n in range(hook.bans.failures)]
    assert codes == [535] * (hook.bans.failures - 1) + [421]
    assert _auth(server, "127.0.0.33", ALICE, ALICE_PASSWORD) == 421  # held in memory
    assert value("auth.audit_write_failed") > failed


def test_a_valid_app_password_of_a_disabled_account_costs_what_a_wrong_password_costs(guarded: Guarded) -> None:
    """A valid app password is found by its digest, with no hashing; when the account is disabled
    the refusal must still cost one check, or the quick 535 confirms the stolen app password."""
    server, _, hasher, _ = guarded
    assert server.server is not None
    service = CredentialService(server.server.context.store, server.config.data_dir)
    _record, secret = server.run(service.add_app_password(BOB, "phone", ["smtp"]))
    server.run(server.server.context.store.set_account_enabled(BOB, False))
    costs = []
    for password in (secret, "a wrong password"):
        spent = hasher.calls
        assert _auth_reply(server, "127.0.0.42", BOB, password) == (535, b"5.7.8 Authentication credentials invalid")
        costs.append(hasher.calls - spent)
    assert costs == [1, 1]


class DropObservedPool(HashPool):
    """Tells the test when a check entered the pool and when a waiting one was dropped."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.admitted = threading.Semaphore(0)
        self.dropped = threading.Semaphore(0)

    def _admit(self, job: Any) -> None:
        super()._admit(job)
        self.admitted.release()

    def _drop_if_waiting(self, job: Any) -> None:
        super()._drop_if_waiting(job)
        self.dropped.release()


def test_a_client_that_disconnects_while_its_check_waits_frees_its_place(tmp_path: Path) -> None:
    tiny = {**CHEAP, "hash_workers": 1, "max_pending": 4, "per_source": 3}
    config = server_config(tmp_path / "data", auth={"argon2": tiny}, access={"limits": WIDE_LIMITS})
    with running_server(config) as server:
        held = HeldWrongPasswords(BoundHasher(config.auth.argon2))
        pool = DropObservedPool(config.auth.argon2, hashing=held)
        _guard(server, pool)
        clients = []
        for n in range(3):  # one holds the only thread, two wait: the source's whole share
            client = _session(server, "127.0.0.3")
            assert not isinstance(client, int)
            client.send(f"AUTH {_plain(ALICE, f'wrong {n}')}\r\n")
            assert pool.admitted.acquire(timeout=WAIT)
            clients.append(client)
        assert pool.in_flight == 3 and pool.waiting(False) == 2
        for client in clients[1:]:
            client.close()  # gone while their checks wait
        for _ in clients[1:]:
            assert pool.dropped.acquire(timeout=WAIT)
        assert pool.in_flight == 1 and pool.waiting(False) == 0  # nothing is hashed for nobody
        held.release.set()
        assert clients[0].getreply()[0] == 535
        clients[0].close()
        pool.close()


def _login_mechanism(client: smtplib.SMTP, user: str, password: str) -> tuple[int, bytes]:
    code, _ = client.docmd("AUTH", "LOGIN " + base64.b64encode(user.encode()).decode())
    assert code == 334
    return client.docmd(base64.b64encode(password.encode()).decode())


def _scram_reply(client: smtplib.SMTP, user: str, password: str) -> tuple[int, bytes]:
    scram = ScramClient(["SCRAM-SHA-256"], user, password)
    first = base64.b64encode(scram.get_client_first().encode()).decode()
    code, challenge = client.docmd("AUTH", "SCRAM-SHA-256 " + first)
    assert code == 334
    scram.set_server_first(base64.b64decode(challenge).decode())
    return client.docmd(base64.b64encode(scram.get_client_final().encode()).decode())


@pytest.mark.parametrize("mechanism", ["LOGIN", "SCRAM-SHA-256"])
def test_login_and_scram_do_not_confirm_the_password_of_a_must_change_account(guarded: Guarded, mechanism: str) -> None:
    server, _, hasher, _ = guarded
    assert server.server is not None
    assert _auth(server, "127.0.0.43", ALICE, ALICE_PASSWORD) == 235  # SCRAM secrets derived now
    server.run(server.server.context.store.credentials.set_must_change(ALICE, True))
    exchange = _login_mechanism if mechanism == "LOGIN" else _scram_reply
    replies, costs, rows = [], [], []
    for password in (ALICE_PASSWORD, "a wrong password"):
        client = _session(server, "127.0.0.44")
        assert not isinstance(client, int)
        spent, before = hasher.calls, len(_history(server, ALICE))
        replies.append(exchange(client, ALICE, password))
        costs.append(hasher.calls - spent)
        rows.append(len(_history(server, ALICE)) - before)
        client.close()
    assert replies == [(535, b"5.7.8 Authentication credentials invalid")] * 2
    assert costs[0] == costs[1] and rows == [1, 1]


def test_an_admin_ban_made_elsewhere_refuses_a_known_address_at_once_despite_a_login_ban(guarded: Guarded) -> None:
    """The server's snapshot holds a login ban of the /24; the CLI (another process) bans the
    intruder's address for everything: the next AUTH asks the store and refuses, not 10 s later."""
    server, hook, hasher, _ = guarded
    intruder = "127.0.7.5"
    assert _auth(server, intruder, ALICE, ALICE_PASSWORD) == 235
    server.run(hook.ban(BanDecision("127.0.7.0/24", "subnet", "test"), "auto"))  # in the snapshot
    assert _auth(server, intruder, ALICE, ALICE_PASSWORD) == 235  # the known pair through the login ban
    now = hook.clock.now()
    server.run(hook.store.access.put_ban(Ban(intruder, "admin", "stolen password used", created_at=now,
                                             expires_at=now + 600, by_admin=True)))  # not in the snapshot
    spent = hasher.calls
    assert _auth(server, intruder, ALICE, ALICE_PASSWORD) == 421
    assert hasher.calls == spent


def test_ranges_that_cannot_be_read_at_auth_answer_454(guarded: Guarded, monkeypatch: pytest.MonkeyPatch) -> None:
    """The IP ranges are reloaded (every 10 s) when AUTH asks whether it needs TLS: a store that
    cannot be read then is a temporary failure of AUTH, not 451 4.3.0."""
    server, hook, _, _ = guarded
    client = _session(server, "127.0.0.45")  # connected while the store could be read
    assert not isinstance(client, int)
    monkeypatch.setattr(hook.store.access, "list_ranges", _disk_full)
    hook.forget_cached_ranges()
    assert client.docmd("AUTH", _plain(ALICE, ALICE_PASSWORD)) == (
        454, b"4.7.0 Temporary authentication failure, try again later")
    client.close()
