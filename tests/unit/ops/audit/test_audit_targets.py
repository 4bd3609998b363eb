"""What the audit probes: --target parsing, the loopback rule, the kind from a greeting (real
listeners on loopback), the own server's listeners from its status files, the source addresses,
and the probe account's life on a real store."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hardmail.admin.service import AdminService
from hardmail.config.schema import Config
from hardmail.ops.audit.context import ProbeTarget
from hardmail.ops.audit.targets import (
    PROBE_NAME,
    TargetError,
    TargetSpec,
    audit_lock,
    is_loopback,
    mailbox_purge,
    own_targets,
    parse_targets,
    probe_account,
    remove_leftover_probe_accounts,
    require_owned,
    resolve_targets,
    source_ips_for,
)
from hardmail.ops.runstate import ServerLock, write_status
from hardmail.store import open_store
from hardmail.store.ports import Store


def test_targets_are_read_in_every_form() -> None:
    assert parse_targets("127.0.0.1:25, [::1]:587,imaps=mail.example.test:9993") == [
        TargetSpec(None, "127.0.0.1", 25), TargetSpec(None, "::1", 587), TargetSpec("imaps", "mail.example.test", 9993)]


@pytest.mark.parametrize("text", ["127.0.0.1", "::1:25", "[mail.example.test]:25", "smtq=127.0.0.1:25",
                                  "127.0.0.1:0", "127.0.0.1:70000", " , "])
def test_unreadable_targets_say_how_to_write_one(text: str) -> None:
    with pytest.raises(TargetError) as caught:
        parse_targets(text)
    assert caught.value.usage and caught.value.hint


def test_a_target_off_loopback_needs_the_admins_word() -> None:
    specs = parse_targets("127.0.0.1:25,192.0.2.7:25,[2001:db8::1]:25")
    with pytest.raises(TargetError) as caught:
        require_owned(specs, i_own_it=False)
    assert "192.0.2.7:25, [2001:db8::1]:25 is not a loopback address" in caught.value.message
    assert "--i-own-this-server" in caught.value.hint
    require_owned(specs, i_own_it=True)
    require_owned(parse_targets("127.0.0.9:25,[::1]:25,localhost:25"), i_own_it=False)
    assert not is_loopback("mail.example.test")


async def _greeter(greeting: bytes) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(greeting)
        await writer.drain()
        await reader.read(100)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize(("greeting", "kind"), [(b"220 mx ESMTP\r\n", "smtp"), (b"* OK IMAP4rev1 ready\r\n", "imap"),
                                                (b"+OK POP3 ready\r\n", "pop3")])
async def test_the_kind_of_an_unusual_port_comes_from_its_greeting(greeting: bytes, kind: str) -> None:
    server, port = await _greeter(greeting)
    async with server:
        [target] = await resolve_targets([TargetSpec(None, "127.0.0.1", port)], timeout=5)
    assert target == ProbeTarget(kind, "127.0.0.1", port)


async def test_a_usual_port_or_a_named_kind_needs_no_connection() -> None:
    found = await resolve_targets([TargetSpec(None, "127.0.0.1", 993), TargetSpec("pop3s", "127.0.0.1", 1)], 5)
    assert [t.kind for t in found] == ["imaps", "pop3s"] and found[0].implicit_tls


async def test_a_silent_listener_is_an_error_saying_to_name_the_kind() -> None:
    server, port = await _greeter(b"")
    async with server:
        with pytest.raises(TargetError) as caught:
            await resolve_targets([TargetSpec(None, "127.0.0.1", port)], timeout=0.2)
    assert f"smtp=127.0.0.1:{port}" in caught.value.hint and not caught.value.usage


def test_own_targets_come_from_the_running_servers_status_files(tmp_path: Path) -> None:
    config = Config.model_validate({"server": {"data_dir": str(tmp_path)}})
    assert own_targets(config).running is False
    lock = ServerLock.acquire(tmp_path, {"workers": 1})
    try:
        listeners = [{"kind": "smtp", "address": "0.0.0.0:2525"}, {"kind": "imaps", "address": "[::]:9993"},
                     {"kind": "submission", "address": "127.0.0.1:5870"}, {"kind": "http", "address": "127.0.0.1:80"}]
        write_status(tmp_path, 0, {"server_pid": os.getpid(), "worker": 0, "listeners": listeners})
        own = own_targets(config)
    finally:
        lock.release()
    assert own.running
    assert own.targets == (ProbeTarget("smtp", "127.0.0.1", 2525), ProbeTarget("imaps", "::1", 9993),
                           ProbeTarget("submission", "127.0.0.1", 5870))


def test_source_addresses() -> None:
    assert source_ips_for([ProbeTarget("smtp", "127.0.0.1", 25)]) == ("127.0.0.1", "127.0.0.2")
    assert source_ips_for([ProbeTarget("smtp", "127.0.0.1", 25), ProbeTarget("smtp", "::1", 25)]) == ("",)
    assert source_ips_for([ProbeTarget("smtp", "192.0.2.1", 25)]) == ("",)


def test_one_own_audit_at_a_time(tmp_path: Path) -> None:
    with audit_lock(tmp_path):
        with pytest.raises(TargetError) as caught, audit_lock(tmp_path):
            pass
        assert "another hardmail audit is running" in caught.value.message
    with audit_lock(tmp_path):
        pass


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[tuple[AdminService, Store]]:
    config = Config.model_validate({"server": {"data_dir": str(tmp_path)}})
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'hardmail.db'}")
    await store.migrate()
    service = AdminService(store, config.auth.argon2, auth=config.auth)
    await service.add_domain("example.test")
    yield service, store
    await store.close()


async def test_the_probe_account_lives_for_the_block_only(admin: tuple[AdminService, Store], tmp_path: Path) -> None:
    service, store = admin
    config = Config.model_validate({"server": {"data_dir": str(tmp_path)}})
    maildir = tmp_path / "mail" / "example.test"
    with pytest.raises(RuntimeError):
        async with probe_account(service, "example.test", mailbox_purge(store, config)) as login:
            assert login.address.startswith("audit-probe-") and login.address.endswith("@example.test")
            assert login.foreign_address == "postmaster@example.test"
            assert len(login.password) >= 43 and login.password not in repr(login)
            assert await store.get_account(login.address) is not None
            (maildir / login.address.partition("@")[0] / "new").mkdir(parents=True)  # a probe message's home
            raise RuntimeError("the audit crashed")
    assert [a.address for a in await service.list_accounts()] == []
    assert list(maildir.iterdir()) == []  # its mail went with it


async def test_probe_accounts_left_by_a_crashed_run_are_removed(admin: tuple[AdminService, Store],
                                                                tmp_path: Path) -> None:
    service, store = admin
    config = Config.model_validate({"server": {"data_dir": str(tmp_path)}})
    await service.add_account("audit-probe-0badc0ffee@example.test", "a long random probe password 1", PROBE_NAME)
    await service.add_account("audit-probe-mine@example.test", "an admin's own account, not a probe 2")
    await service.add_account("alice@example.test", "correct horse battery staple")
    removed = await remove_leftover_probe_accounts(service, mailbox_purge(store, config))
    assert removed == ["audit-probe-0badc0ffee@example.test"]
    assert sorted(a.address for a in await service.list_accounts()) == ["alice@example.test",
                                                                       "audit-probe-mine@example.test"]
