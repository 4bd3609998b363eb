"""The audit's data checks: what the database and the data directory say about the server's state.

Accounts still on imported legacy hashes (and since when), admin accounts without TOTP, accounts
and app passwords unused for ``audit.idle_account_days``, DKIM keys older than
``audit.dkim_max_key_age_days``, the last verified backup against ``audit.backup_max_age_hours``,
free disk on the data directory, file modes of the data directory, database, keys and certificates,
and the database schema against this build. Every check needs the server's own store: with
``ctx.store`` None (``--target``) each reports that it did not run.

hardmail has no admin role of its own: the accounts that administer a domain are taken to be
``postmaster@``, ``abuse@`` and ``admin@`` of each hosted domain (what an alias of those names
delivers to counts too) and the ``server.postmaster`` address.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from hardmail.auth.server_key import server_key_path
from hardmail.config.schema import Config
from hardmail.msgauth.dkim_keys import DkimKeyError, DomainKeys
from hardmail.ops.audit.context import AuditContext
from hardmail.ops.audit.findings import CheckInfo, Finding, Severity
from hardmail.ops.backup.health import read_health
from hardmail.ops.backup.schedule import next_run, resolve_timezone
from hardmail.server.tls import SELF_SIGNED_CERT, SELF_SIGNED_KEY
from hardmail.store.ports import Account, Store
from hardmail.store.sql.engine import sqlite_database_file

DAY = 86400.0
MAX_DETAILS = 50  # lines of details per finding; the rest are counted
ADMIN_LOCAL_PARTS = ("postmaster", "abuse", "admin")

LEGACY = CheckInfo(
    "data.legacy_hashes", 2, "Accounts on legacy password hashes",
    "Imported hashes (MD5-crypt, SHA-crypt, bcrypt ...) are much cheaper to guess than Argon2id; each is "
    "replaced at the account's first login.",
    "ask these users to log in once (the hash becomes Argon2id), or `hardmail account must-change ADDRESS`")
ADMIN_TOTP = CheckInfo(
    "data.admin_totp", 13, "Admin accounts without two-factor authentication",
    "postmaster@, abuse@ and admin@ receive password resets and reports: a guessed password there opens more.",
    "hardmail account 2fa enable ADDRESS")
IDLE = CheckInfo(
    "data.idle_accounts", 2, "Accounts without a login for a long time",
    "Nobody watches an unused account: a guessed password there goes unnoticed.",
    "hardmail account disable ADDRESS (or remove it)")
APP_PASSWORDS = CheckInfo(
    "data.app_passwords", 13, "Unused app passwords",
    "An app password nobody uses is a credential that can only leak.",
    "hardmail account app-password revoke ADDRESS NAME")
DKIM_AGE = CheckInfo(
    "data.dkim_key_age", 9, "DKIM keys past their rotation period",
    "A key used for years has had years to leak or be factored; rotation limits what one key can sign.",
    "hardmail dkim rotate DOMAIN")
BACKUP_AGE = CheckInfo(
    "data.backup_age", 11, "Last verified backup",
    "Only a created and verified archive counts; mail received since the last one is lost with the disk.",
    "hardmail backup create (and backup.enabled = true for the schedule)")
DISK = CheckInfo(
    "data.disk_free", 17, "Free disk on the data directory",
    "When the disk fills, mail is deferred, logins fail to be recorded and the database can stop.",
    "free space on the data directory's file system, or move server.data_dir to a larger one")
KEY_MODES = CheckInfo(
    "data.key_modes", 3, "Private keys readable by other users",
    "Whoever reads server.key, a TLS key or a DKIM key can decrypt TOTP secrets, impersonate the server or "
    "sign mail as its domains.",
    "chmod 600 FILE")
DATA_MODES = CheckInfo(
    "data.data_modes", 2, "Data directory, database or certificates open to other users",
    "The database holds password hashes and the mail directory every message; a certificate others can "
    "replace is a man-in-the-middle.",
    "chmod 700 DIRECTORY, chmod 600 FILE")
SCHEMA = CheckInfo(
    "data.schema_version", 5, "Database schema against this build",
    "A database behind this build must be upgraded (`hardmail upgrade` takes a backup first); one ahead of "
    "it was written by a newer hardmail and this build must not run on it.",
    "hardmail upgrade")

CHECKS: tuple[CheckInfo, ...] = (LEGACY, ADMIN_TOTP, IDLE, APP_PASSWORDS, DKIM_AGE, BACKUP_AGE, DISK,
                                 KEY_MODES, DATA_MODES, SCHEMA)


# --- helpers ---------------------------------------------------------------------------


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _days_since(now: float, value: datetime) -> float:
    return max(0.0, (now - _aware(value).timestamp()) / DAY)


def _day(value: datetime) -> str:
    return _aware(value).astimezone(UTC).date().isoformat()


def _capped(lines: Sequence[str]) -> list[str]:
    if len(lines) <= MAX_DETAILS:
        return list(lines)
    return [*lines[:MAX_DETAILS], f"... and {len(lines) - MAX_DETAILS} more"]


def _worst_of(severities: Iterable[Severity]) -> Severity:
    return min(severities, key=lambda s: s.rank, default=Severity.OK)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


async def _active_accounts(store: Store) -> list[Account]:
    return [a for a in await store.list_accounts() if a.enabled and not a.frozen]


# --- legacy hashes ------------------------------------------------------------------------


async def _legacy_since(store: Store, address: str) -> datetime | None:
    """When the legacy hash was imported: the newest ``hash-imported`` event, else the password's
    change time (set when it was imported)."""
    for event in await store.credentials.list_login_events(address, limit=500):
        if event.kind == "hash-imported":
            return event.at
    state = await store.credentials.get_credentials(address)
    return state.password_changed_at if state is not None else None


async def legacy_finding(ctx: AuditContext, store: Store) -> Finding:
    legacy = await store.credentials.list_legacy()
    if not legacy:
        return LEGACY.ok("every account's password hash is Argon2id")
    limit, now = ctx.config.audit.legacy_hash_max_days, ctx.clock.now()
    lines, old = [], 0
    for address, scheme in legacy:
        since = await _legacy_since(store, address)
        days = _days_since(now, since) if since is not None else None
        if days is None or days > limit:
            old += 1
        when = f"since {_day(since)} ({days:.0f} days)" if since is not None and days is not None else "since unknown"
        lines.append(f"{address}: {scheme} {when}")
    severity = Severity.MEDIUM if old else Severity.LOW
    evidence = (f"{_plural(len(legacy), 'account')} still on legacy hashes, {old} of them for more than "
                f"{limit} days (audit.legacy_hash_max_days)")
    return LEGACY.finding(severity, evidence, details=_capped(lines))


# --- admin accounts without TOTP ------------------------------------------------------------


async def admin_addresses(cfg: Config, store: Store) -> list[str]:
    """The accounts taken to be admins: postmaster@, abuse@, admin@ of each domain and
    server.postmaster, or the local accounts an alias of those names delivers to."""
    names = {f"{local}@{d.name}" for d in await store.list_domains() for local in ADMIN_LOCAL_PARTS}
    if cfg.server.postmaster:
        names.add(cfg.server.postmaster.strip().lower())
    found: set[str] = set()
    for name in names:
        account = await store.get_account(name)
        if account is not None:
            found.add(account.address)
            continue
        alias = await store.get_alias(name)
        for target in alias.targets if alias is not None and alias.enabled else ():
            if await store.get_account(target) is not None:
                found.add(target)
    return sorted(found)


async def admin_totp_finding(ctx: AuditContext, store: Store) -> Finding:
    admins = await admin_addresses(ctx.config, store)
    if not admins:
        return ADMIN_TOTP.ok("no postmaster@, abuse@ or admin@ account (nor an alias of them to an account)")
    without = []
    for address in admins:
        state = await store.credentials.get_credentials(address)
        if state is None or not state.two_factor:
            without.append(address)
    if not without:
        return ADMIN_TOTP.ok(f"every admin account has TOTP ({', '.join(admins)})")
    fix = "; ".join(f"hardmail account 2fa enable {a}" for a in without[:5])
    return ADMIN_TOTP.finding(Severity.MEDIUM, f"admin accounts without TOTP: {', '.join(without[:10])}"
                              + (f" and {len(without) - 10} more" if len(without) > 10 else ""),
                              fix, details=_capped(without))


# --- idle accounts and app passwords ------------------------------------------------------------


async def idle_finding(ctx: AuditContext, store: Store) -> Finding:
    last_logins = await store.security.last_successful_logins()
    days, now = ctx.config.audit.idle_account_days, ctx.clock.now()
    lines = []
    for account in await _active_accounts(store):
        last = last_logins.get(account.address)
        if last is not None and _days_since(now, last) > days:
            lines.append(f"{account.address}: last login {_day(last)} ({_days_since(now, last):.0f} days)")
        elif last is None and account.created_at is not None and _days_since(now, account.created_at) > days:
            lines.append(f"{account.address}: never logged in (created {_day(account.created_at)})")
    if not lines:
        return IDLE.ok(f"every enabled account logged in within {days} days or is newer")
    return IDLE.finding(Severity.LOW, f"{_plural(len(lines), 'enabled account')} without a login for more than "
                        f"{days} days (audit.idle_account_days)", details=_capped(lines))


def _unused_app_password(now: float, days: int, address: str, name: str, created: datetime,
                         last_used: datetime | None) -> str | None:
    if last_used is None:
        if _days_since(now, created) > days:
            return f"{address} {name!r}: never used (created {_day(created)})"
        return None
    if _days_since(now, last_used) > days:
        return f"{address} {name!r}: last used {_day(last_used)} ({_days_since(now, last_used):.0f} days)"
    return None


async def app_password_finding(ctx: AuditContext, store: Store) -> Finding:
    days, now = ctx.config.audit.idle_account_days, ctx.clock.now()
    lines, total, first = [], 0, ""
    for account in await store.list_accounts():
        for app in await store.credentials.list_app_passwords(account.address):
            if app.expires_at is not None and _aware(app.expires_at).timestamp() <= now:
                continue  # no longer accepted
            total += 1
            line = _unused_app_password(now, days, app.address, app.name, app.created_at, app.last_used_at)
            if line is not None:
                lines.append(line)
                first = first or f"hardmail account app-password revoke {app.address} {app.name}"
    if not lines:
        return APP_PASSWORDS.ok(f"every app password ({total}) was used within {days} days or is newer")
    return APP_PASSWORDS.finding(
        Severity.LOW, f"{_plural(len(lines), 'app password')} never used or not used for more than {days} days "
        "(audit.idle_account_days)", f"{first} (and likewise for the others)" if len(lines) > 1 else first,
        details=_capped(lines))


# --- DKIM keys --------------------------------------------------------------------------


async def dkim_finding(ctx: AuditContext, store: Store) -> Finding:
    max_days, now = ctx.config.audit.dkim_max_key_age_days, ctx.clock.now()
    problems: list[tuple[Severity, str, str]] = []  # severity, what, fix
    checked = 0
    for domain in await store.list_domains():
        try:
            generations = DomainKeys(ctx.config.data_dir, domain.name).generations()
        except DkimKeyError as exc:
            problems.append((Severity.MEDIUM, f"{domain.name}: {exc}", f"restore dkim/{domain.name}/state.json"))
            continue
        active = [g for g in generations if g.state == "active"]
        if not active:
            problems.append((Severity.LOW, f"{domain.name}: no active DKIM key",
                             f"hardmail dkim generate {domain.name}"))
        for generation in active:
            checked += 1
            age = max(0.0, (now - generation.created) / DAY)
            if age > max_days:
                problems.append((Severity.LOW, f"{domain.name}: key {generation.name} is {age:.0f} days old, "
                                 f"older than {max_days} days (audit.dkim_max_key_age_days)",
                                 f"hardmail dkim rotate {domain.name}"))
    if not problems:
        return DKIM_AGE.ok(f"{_plural(checked, 'active DKIM key')}, none older than {max_days} days")
    texts = [t for _s, t, _f in problems]
    return DKIM_AGE.finding(_worst_of(s for s, _t, _f in problems),
                            "; ".join(texts[:5]) + (f" and {len(texts) - 5} more" if len(texts) > 5 else ""),
                            "; ".join(f for _s, _t, f in problems[:5]), details=_capped(texts))


# --- backups and disk ---------------------------------------------------------------------------


async def backup_finding(ctx: AuditContext, store: Store) -> Finding:
    max_hours = ctx.config.audit.backup_max_age_hours
    health = read_health(ctx.config.data_dir)
    if health is None or health.last_good_backup_at is None:
        tried = "" if health is None or health.last_result is None else f" (last attempt: {health.last_result})"
        if await _installed_within(ctx, store, max_hours) and ctx.config.backup.enabled and not tried:
            due = next_run(ctx.config.backup.schedule, datetime.fromtimestamp(ctx.clock.now(), UTC),
                           resolve_timezone(ctx.config.backup.timezone))
            return BACKUP_AGE.finding(Severity.LOW, "no backup yet on this new server; the first scheduled one "
                                      f"is due at {due.isoformat(timespec='minutes')}",
                                      "nothing, or run `hardmail backup create` now")
        return BACKUP_AGE.finding(Severity.HIGH, f"no verified backup was ever made{tried}")
    hours = (ctx.clock.now() - health.last_good_backup_at.timestamp()) / 3600
    seen = f"the last verified backup is {hours:.1f} hours old ({health.last_good_backup_at.isoformat()})"
    if health.consecutive_failures:
        seen += f"; {_plural(health.consecutive_failures, 'attempt')} since then did not succeed"
    if hours <= max_hours:
        return BACKUP_AGE.ok(seen)
    severity = Severity.HIGH if hours > 3 * max_hours else Severity.MEDIUM
    return BACKUP_AGE.finding(severity, f"{seen}, older than {max_hours:g} hours (audit.backup_max_age_hours)")


def disk_finding(ctx: AuditContext) -> Finding:
    data_dir, minimum = ctx.config.data_dir, ctx.config.audit.disk_free_min_percent
    try:
        fs = os.statvfs(data_dir)
    except OSError as exc:
        return DISK.skipped(f"cannot look at {data_dir}: {exc.strerror or type(exc).__name__}")
    if fs.f_blocks == 0:
        return DISK.skipped(f"the file system of {data_dir} reports no size")
    percent = 100.0 * fs.f_bavail / fs.f_blocks
    seen = f"{percent:.1f} % free on the file system of {data_dir} ({fs.f_bavail * fs.f_frsize // 2**20} MiB)"
    if percent >= minimum:
        return DISK.ok(seen)
    return DISK.finding(Severity.HIGH, f"{seen}, below {minimum:g} % (audit.disk_free_min_percent)")


# --- file modes ----------------------------------------------------------------------------


def _mode(path: Path) -> int | None:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None


def key_files(cfg: Config) -> list[Path]:
    """Every private key file hardmail uses: server.key, the TLS keys (a cert_file without a
    key_file holds its key too), the self-signed key and the DKIM keys."""
    found = [server_key_path(cfg.data_dir), cfg.tls_dir / SELF_SIGNED_KEY]
    if cfg.tls.cert_file is not None:
        found.append(cfg.tls.key_file or cfg.tls.cert_file)
    found += [entry.key_file for entry in cfg.tls.certificates]
    found += sorted((cfg.data_dir / "dkim").glob("*/*.key"))
    return found


def certificate_files(cfg: Config) -> list[Path]:
    found = [cfg.tls_dir / SELF_SIGNED_CERT]
    if cfg.tls.cert_file is not None and cfg.tls.key_file is not None:
        found.append(cfg.tls.cert_file)
    return found + [entry.cert_file for entry in cfg.tls.certificates]


def _key_problem(path: Path) -> tuple[Severity, str] | None:
    mode = _mode(path)
    if mode is None:
        return None
    if mode & stat.S_IROTH:
        return Severity.CRITICAL, f"{path} has mode {mode:04o}: every user can read it (chmod 600 {path})"
    if mode & (stat.S_IWOTH | stat.S_IWGRP):
        return Severity.HIGH, f"{path} has mode {mode:04o}: other users can replace it (chmod 600 {path})"
    if mode & stat.S_IRGRP:
        return Severity.HIGH, f"{path} has mode {mode:04o}: its group can read it (chmod 600 {path})"
    return None


def _from_problems(check: CheckInfo, problems: Sequence[tuple[Severity, str]], seen: str) -> Finding:
    if not problems:
        return check.ok(seen)
    texts = [t for _s, t in problems]
    fixes = "; ".join(t.rpartition("(")[2].rstrip(")") for t in texts[:5])
    return check.finding(_worst_of(s for s, _t in problems), "; ".join(texts[:5])
                         + (f" and {len(texts) - 5} more" if len(texts) > 5 else ""), fixes, details=_capped(texts))


def key_modes_finding(ctx: AuditContext) -> Finding:
    files = [path for path in key_files(ctx.config) if _mode(path) is not None]
    problems = [p for p in (_key_problem(path) for path in files) if p is not None]
    return _from_problems(KEY_MODES, problems, f"{_plural(len(files), 'key file')}, each readable by hardmail's "
                          "user only")


def _data_items(cfg: Config) -> list[tuple[Path, bool]]:
    """(path, secret) of each directory and file to look at; a secret one must not be readable by
    its group either."""
    items = [(cfg.data_dir, True), (cfg.maildir_root, True), (cfg.tls_dir, True),
             (cfg.data_dir / "backup-state", True)]
    database = sqlite_database_file(cfg.database_url)
    if database is not None:
        items += [(database, True), (database.parent / (database.name + "-wal"), True)]
    return items + [(path, False) for path in certificate_files(cfg)]


def _data_problem(path: Path, secret: bool) -> tuple[Severity, str] | None:
    mode = _mode(path)
    if mode is None:
        return None
    wanted = "700" if path.is_dir() else "600"
    fix = f"chmod {wanted} {path}"
    if mode & (stat.S_IWOTH | stat.S_IWGRP):
        return Severity.HIGH, f"{path} has mode {mode:04o}: other users can write to it ({fix})"
    if secret and mode & (stat.S_IROTH | stat.S_IXOTH):
        return Severity.HIGH, f"{path} has mode {mode:04o}: every user can read it ({fix})"
    if secret and mode & (stat.S_IRGRP | stat.S_IXGRP):
        return Severity.MEDIUM, f"{path} has mode {mode:04o}: its group can read it ({fix})"
    return None


def data_modes_finding(ctx: AuditContext) -> Finding:
    items = [(path, secret) for path, secret in _data_items(ctx.config) if _mode(path) is not None]
    problems = [p for p in (_data_problem(path, secret) for path, secret in items) if p is not None]
    return _from_problems(DATA_MODES, problems, f"{_plural(len(items), 'path')} of the data directory, "
                          "database and certificates closed to other users")


# --- schema against this build --------------------------------------------------------------


async def schema_finding(store: Store) -> Finding:
    from hardmail.store.sql import migrate

    reader = getattr(store, "schema_state", None)
    if reader is None:
        return SCHEMA.skipped("this store does not say where its schema stands")
    ours = migrate.hardmail_version()
    try:
        state = await reader()
    except migrate.SchemaTooNew as exc:
        return SCHEMA.finding(Severity.HIGH, f"the database is ahead of this build: {exc}", exc.hint or SCHEMA.fix)
    except migrate.SchemaError as exc:
        return SCHEMA.finding(Severity.HIGH, f"the database's schema is unusable: {exc}", exc.hint or SCHEMA.fix)
    if state.pending:
        return SCHEMA.finding(Severity.HIGH, f"the database is behind this build (hardmail {ours}): at revision "
                              f"{state.current}, {len(state.pending)} pending ({', '.join(state.pending)})")
    seen = f"schema revision {state.current} is this build's (hardmail {ours})"
    if state.written_by and state.written_by != ours:
        seen += f"; last upgraded by hardmail {state.written_by}"
    return SCHEMA.ok(seen)


async def _installed_within(ctx: AuditContext, store: Store, hours: float) -> bool:
    """Whether the oldest hosted domain (when the server was set up) is younger than ``hours``."""
    made = [d.created_at for d in await store.list_domains() if d.created_at is not None]
    if not made:
        return True
    oldest = min(m if m.tzinfo else m.replace(tzinfo=UTC) for m in made)
    return ctx.clock.now() - oldest.timestamp() < hours * 3600


# --- the module --------------------------------------------------------------------------------


async def run(ctx: AuditContext) -> list[Finding]:
    store = ctx.store
    if store is None:
        return [check.skipped("no database here (auditing another server)") for check in CHECKS]
    return [
        await legacy_finding(ctx, store),
        await admin_totp_finding(ctx, store),
        await idle_finding(ctx, store),
        await app_password_finding(ctx, store),
        await dkim_finding(ctx, store),
        await backup_finding(ctx, store),
        disk_finding(ctx),
        key_modes_finding(ctx),
        data_modes_finding(ctx),
        await schema_finding(store),
    ]
