"""The settings part of a selective restore (``--only settings``, and the non-mail part of
``--only domain D``): domains, accounts with their credentials, aliases, IP ranges, settings rows,
outbound routes, DKIM keys, account quotas and the configuration file, merged into the live server
through its store interfaces (never by writing its database file): what is missing live is added,
what exists live is left as it is and reported as skipped.

Secrets the server must read back (TOTP seeds, route passwords) are encrypted with the server key
(``server.key``). When the archived key differs from the live one, each is decrypted with the
archived key and encrypted again with the live one. One that neither key opens is kept as it is
for a TOTP seed (the account stays two-factor: its main password is still refused for mail, the
admin enrols it again) and left out for a route; both are warnings. Password hashes, SCRAM secrets,
recovery codes and app passwords are digests: they are restored as they are.

An account is created with a hash that verifies nothing, then gets its second factor, app
passwords, frozen/disabled state and quota, and only then its password hash: no login can slip in
with the password alone before its second factor is back. A crash in between leaves an account
nobody can log in to, which a second run of the restore completes.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import select

from hardmail.auth.events import record_admin_event
from hardmail.core.clock import Clock
from hardmail.delivery.durable import fsync_dir, make_private_dir, write_new_file
from hardmail.ops.backup.selective_report import Tally
from hardmail.store.ports import Account, AlreadyExists, NotFound, Store
from hardmail.store.ports_queue import Route
from hardmail.store.sql.tables import settings as settings_t
from hardmail.store.sql.tables_credentials import app_passwords as app_passwords_t
from hardmail.store.sql.tables_credentials import recovery_codes as recovery_codes_t

RESTORING_HASH = "!restore-in-progress"  # verifies no password (hardmail.auth.hashing knows no such scheme)
DKIM_DIR = "dkim"


@dataclass(frozen=True, slots=True)
class Scope:
    """``domain`` None: every domain, with the server-wide objects (ranges, settings rows, routes,
    the configuration file) too."""

    domain: str | None = None

    @property
    def server_wide(self) -> bool:
        return self.domain is None


@dataclass(frozen=True, slots=True)
class ServerKeys:
    archived: bytes | None  # the archive's server.key (None when it holds none)
    live: bytes

    @property
    def differ(self) -> bool:
        return self.archived is not None and self.archived != self.live

    def recrypt(self, token: str) -> str | None:
        """``token`` readable with the live key: as it is, or re-encrypted from the archived key;
        None when neither key opens it."""
        if not token:
            return token
        try:
            Fernet(self.live).decrypt(token.encode("ascii"))
            return token
        except (InvalidToken, ValueError):
            pass
        if self.archived is None:
            return None
        try:
            plain = Fernet(self.archived).decrypt(token.encode("ascii"))
        except (InvalidToken, ValueError):
            return None
        return Fernet(self.live).encrypt(plain).decode("ascii")


@dataclass(frozen=True, slots=True)
class Places:
    data_dir: Path  # the live data directory
    into: Path  # where the archive's files were extracted
    config_file: Path | None  # the live configuration file, when known
    archive: str  # the archive's name (for the login history)


async def restore_objects(live: Store, archived: Store, scope: Scope, keys: ServerKeys, places: Places,
                          tally: Tally, clock: Clock) -> list[str]:
    """Merge the scope's objects; returns the accounts this restore created (or completed)."""
    for domain in await archived.list_domains():
        if scope.domain in (None, domain.name):
            await _restore_domain(live, domain.name, tally)
    created = []
    for account in await archived.list_accounts(scope.domain):
        if await restore_account(live, archived, account, keys, tally):
            await record_admin_event(live.credentials, clock, account.address, "account-restored", places.archive)
            created.append(account.address)
    await _restore_aliases(live, archived, scope, tally)
    if scope.server_wide:
        await _restore_ranges(live, archived, tally)
        await _restore_settings_rows(live, archived, tally)
        await _restore_routes(live, archived, keys, tally)
        restore_config_file(places, tally)
    restore_dkim_keys(places, scope, tally)
    return created


async def _restore_domain(live: Store, name: str, tally: Tally) -> None:
    try:
        await live.add_domain(name)
        tally.add("domain")
    except AlreadyExists:
        tally.skip("domain", name)


# --- accounts ----------------------------------------------------------------------------------

async def restore_account(live: Store, archived: Store, account: Account, keys: ServerKeys, tally: Tally) -> bool:
    """Add the account with its credentials, state and quota; False when it exists live already."""
    address = account.address
    current = await live.get_account(address)
    if current is not None and current.password_hash != RESTORING_HASH:
        tally.skip("account", address)
        return False
    if current is None:
        try:
            await live.add_account(address, RESTORING_HASH, account.display_name)
        except (AlreadyExists, NotFound):  # an alias of that name, or its domain is gone
            tally.skip("account", address)
            return False
    await _restore_second_factor(live, archived, address, keys, tally)
    await _restore_app_passwords(live, archived, address)
    await _restore_state(live, archived, account)
    state = await archived.credentials.get_credentials(address)
    await live.credentials.set_password(address, account.password_hash, state.scram if state else None,
                                        legacy_scheme=state.legacy_scheme if state else None,
                                        must_change=bool(state and state.must_change))
    tally.add("account")
    return True


async def _restore_second_factor(live: Store, archived: Store, address: str, keys: ServerKeys, tally: Tally) -> None:
    state = await archived.credentials.get_credentials(address)
    if state is None or state.totp_secret is None:
        return
    token = keys.recrypt(state.totp_secret)
    if token is None:
        token = state.totp_secret  # fail closed: still two-factor, the main password is still refused
        tally.warn(f"the two-factor secret of {address} cannot be read with the archived or the live server key: "
                   f"its TOTP codes will fail; run `hardmail account 2fa disable {address}` and enrol it again")
    async with archived.engine.connect() as conn:  # type: ignore[attr-defined]
        digests = list(await conn.scalars(select(recovery_codes_t.c.digest)
                                          .where(recovery_codes_t.c.address == address)))
    await live.credentials.set_totp(address, token, digests)
    if state.totp_last_step is not None:  # a code used before the backup stays used
        await live.credentials.claim_totp_step(address, state.totp_last_step)


async def _restore_app_passwords(live: Store, archived: Store, address: str) -> None:
    have = {app.name for app in await live.credentials.list_app_passwords(address)}
    async with archived.engine.connect() as conn:  # type: ignore[attr-defined]
        rows = (await conn.execute(select(app_passwords_t).where(app_passwords_t.c.address == address)
                                   .order_by(app_passwords_t.c.id))).all()
    for row in rows:
        if row.name in have:
            continue
        scopes = frozenset(scope for scope in row.scopes.split(",") if scope)
        try:
            await live.credentials.add_app_password(address, row.name, row.digest, scopes, row.expires_at)
        except AlreadyExists:
            continue  # added meanwhile


async def _restore_state(live: Store, archived: Store, account: Account) -> None:
    address = account.address
    if account.frozen:
        await live.set_account_frozen(address, True, account.frozen_reason)
    if not account.enabled:
        await live.set_account_enabled(address, False)
    usage = await archived.mailbox.usage(address)
    if usage.custom_limits:
        await live.mailbox.set_limits(address, usage.storage_limit, usage.messages_limit)


# --- aliases, ranges, settings rows, routes ---------------------------------------------------------

async def _restore_aliases(live: Store, archived: Store, scope: Scope, tally: Tally) -> None:
    for alias in await archived.list_aliases(scope.domain):
        try:
            await live.add_alias(alias.source, alias.targets)
            tally.add("alias")
        except (AlreadyExists, NotFound):  # an alias or account of that name; its domain is not hosted
            tally.skip("alias", alias.source)


async def _restore_ranges(live: Store, archived: Store, tally: Tally) -> None:
    have = {ip_range.name for ip_range in await live.access.list_ranges()}
    for ip_range in await archived.access.list_ranges():
        if ip_range.name in have:
            tally.skip("ip range", ip_range.name)
            continue
        try:
            await live.access.add_range(ip_range)
            tally.add("ip range")
        except AlreadyExists:
            tally.skip("ip range", ip_range.name)


async def _restore_settings_rows(live: Store, archived: Store, tally: Tally) -> None:
    async with archived.engine.connect() as conn:  # type: ignore[attr-defined]
        rows = (await conn.execute(select(settings_t.c.key, settings_t.c.value).order_by(settings_t.c.key))).all()
    for key, value in rows:
        if await live.get_setting(key) is not None:
            tally.skip("setting", key)
            continue
        await live.set_setting(key, value)
        tally.add("setting")


async def _restore_routes(live: Store, archived: Store, keys: ServerKeys, tally: Tally) -> None:
    have = {route.pattern for route in await live.queue.list_routes()}
    for route in await archived.queue.list_routes():
        if route.pattern in have:
            tally.skip("route", route.pattern)
            continue
        token = keys.recrypt(route.password_encrypted)
        if token is None:
            tally.warn(f"the AUTH password of the route {route.pattern} cannot be read with the archived or the live "
                       f"server key: the route was not restored; set it again with `hardmail queue route set`")
            continue
        await live.queue.set_route(Route(route.pattern, route.host, route.port, route.tls, route.username, token,
                                         route.created_at))
        tally.add("route")


# --- files: DKIM keys and the configuration file ----------------------------------------------

def restore_dkim_keys(places: Places, scope: Scope, tally: Tally) -> None:
    """Each domain's key directory from the archive, when the live one has no key file at all
    (live keys are never overwritten, nor mixed with archived ones)."""
    archived_root = places.into / "files" / DKIM_DIR
    if not archived_root.is_dir():
        return
    for source in sorted(archived_root.iterdir()):
        if not source.is_dir() or scope.domain not in (None, source.name):
            continue
        target = places.data_dir / DKIM_DIR / source.name
        if target.is_dir() and any(target.iterdir()):
            tally.skip("dkim keys", source.name)
            continue
        _copy_keys(source, target)
        tally.add("dkim keys")


def _copy_keys(source: Path, target: Path) -> None:
    """Copy a key directory beside ``target``, then rename it into place: the signer, which reads
    the keys at each message, sees all of them or none."""
    building = target.with_name(f".{target.name}.restoring")
    shutil.rmtree(building, ignore_errors=True)
    make_private_dir(building)
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        destination = building / path.relative_to(source)
        make_private_dir(destination.parent)
        write_new_file(destination, path.read_bytes(), mode=0o600)
        fsync_dir(destination.parent)
    if target.is_dir():
        target.rmdir()  # empty (checked by the caller)
    os.rename(building, target)
    fsync_dir(target.parent)


def restore_config_file(places: Places, tally: Tally) -> None:
    """The archived configuration file, next to the live one as ``<name>.restored`` (``.restored.N``
    when that is taken); the live file is never touched."""
    archived_dir = places.into / "config"
    files = sorted(p for p in archived_dir.iterdir() if p.is_file()) if archived_dir.is_dir() else []
    if not files:
        return
    source = files[0]
    directory = places.config_file.parent if places.config_file is not None else places.data_dir
    base = places.config_file.name if places.config_file is not None else source.name
    target = directory / f"{base}.restored"
    number = 0
    while target.exists():
        if target.read_bytes() == source.read_bytes():
            tally.config_written = target
            return
        number += 1
        target = directory / f"{base}.restored.{number}"
    write_new_file(target, source.read_bytes(), mode=0o600)
    fsync_dir(directory)
    tally.config_written = target


def read_key(path: Path) -> bytes | None:
    try:
        return path.read_bytes().strip() or None
    except FileNotFoundError:
        return None
