"""What the audit probes and with what: the listeners, the source addresses, the resolver.

- The server's own listeners come from the running server's status files
  (:mod:`hardmail.ops.runstate`: the addresses each process really bound); a wildcard bind
  (``0.0.0.0``, ``::``) is probed on loopback (``127.0.0.1``, ``::1``). No server holding the
  data directory's lock: no targets, ``running`` False.
- ``--target`` lists other listeners: ``HOST:PORT``, ``[V6]:PORT`` or ``KIND=HOST:PORT``, comma
  separated. A missing kind comes from the port (:data:`~.context.KIND_OF_PORT`), else from the
  greeting ("220" SMTP, "* OK" IMAP, "+OK" POP3; read in the clear, then over TLS). A target that
  is not a loopback address is refused unless the admin says they own it (``--i-own-this-server``).
- Source addresses: a second loopback address (``127.0.0.2``) when every target is on IPv4
  loopback and it can be bound, for the banned-source probe; ``""`` (the system chooses) when a
  target is elsewhere.
- The resolver is the configured one (``[dns]``), never a fixed public resolver.
- The probe account: for the server's own audit, a short-lived account
  ``audit-probe-<hex>@<first hosted domain>`` with a random password, made through the admin
  service and removed when the audit ends (probe accounts left by a run that crashed are removed
  at the start of the next). Its ``foreign_address`` (an address of the domain that is not its
  own, for the spoofing probes) is ``postmaster@`` the domain.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import os
import re
import secrets
import shutil
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hardmail.config.schema import Config
from hardmail.delivery.maildir import MaildirStore
from hardmail.msgauth.dns import DnsPythonResolver
from hardmail.ops.audit.context import KIND_OF_PORT, PROTOCOL_OF, ProbeLogin, ProbeTarget
from hardmail.ops.runstate import lock_holder, read_statuses
from hardmail.server.probe_link import ProbeLink, insecure_client_context
from hardmail.store.ports import NotFound

if TYPE_CHECKING:
    from hardmail.admin.service import AdminService
    from hardmail.store.ports import Store

GREETING_WAIT = 5.0  # seconds to wait for a greeting when telling a listener's kind
LOOPBACK_OF_WILDCARD = {"0.0.0.0": "127.0.0.1", "::": "::1"}
SECOND_SOURCE = "127.0.0.2"
ANY_SOURCE = ""  # ProbeLink.open(source_ip="") lets the system choose
_TARGET = re.compile(r"^(?:(?P<kind>[a-z0-9]+)=)?(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]+)):(?P<port>\d{1,5})$")
OWN_HINT = ("add --i-own-this-server if you run that server (the audit sends probes an attacker would send), "
            "or audit a loopback address")


class TargetError(Exception):
    """A ``--target`` that cannot be used: what was wrong, and what to do."""

    def __init__(self, message: str, hint: str = "", usage: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.usage = usage  # a usage error (exit status 2), not a failure of the audit (1)


@dataclass(frozen=True)
class OwnListeners:
    targets: tuple[ProbeTarget, ...]
    running: bool


# --- the server's own listeners ---------------------------------------------------------------

def own_targets(config: Config) -> OwnListeners:
    """The running server's listeners (see the module docstring)."""
    holder = lock_holder(config.data_dir) if config.data_dir.is_dir() else None
    if holder is None or holder.get("command"):  # no server, or a restore/upgrade holds the lock
        return OwnListeners((), False)
    statuses = read_statuses(config.data_dir, holder.get("pid"))
    listed: list[dict[str, Any]] = next((s["listeners"] for s in statuses if s.get("listeners")), [])
    return OwnListeners(tuple(_unique(_own_target(item) for item in listed)), True)


def _own_target(item: dict[str, Any]) -> ProbeTarget | None:
    kind = str(item.get("kind", ""))
    if kind not in PROTOCOL_OF:
        return None
    try:
        host, port = split_host_port(str(item.get("address", "")))
    except TargetError:
        return None
    return ProbeTarget(kind, LOOPBACK_OF_WILDCARD.get(host, host), port)


def _unique(targets: Iterable[ProbeTarget | None]) -> list[ProbeTarget]:
    found: list[ProbeTarget] = []
    for target in targets:
        if target is not None and target not in found:
            found.append(target)
    return found


# --- --target ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class TargetSpec:
    kind: str | None
    host: str
    port: int


def split_host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT``."""
    spec = parse_one(text)
    return spec.host, spec.port


def parse_one(text: str) -> TargetSpec:
    match = _TARGET.match(text.strip())
    if match is None:
        raise TargetError(f"cannot read the target {text.strip()!r}",
                          "write HOST:PORT, [IPV6]:PORT or KIND=HOST:PORT (KIND one of "
                          f"{', '.join(PROTOCOL_OF)}), several separated by commas")
    kind, port = match["kind"], int(match["port"])
    if kind is not None and kind not in PROTOCOL_OF:
        raise TargetError(f"unknown listener kind {kind!r} in the target {text.strip()!r}",
                          f"use one of {', '.join(PROTOCOL_OF)}, e.g. smtp=mail.example.com:25")
    if not 0 < port < 65536:
        raise TargetError(f"port {port} of the target {text.strip()!r} is not a TCP port", "use a port 1-65535")
    host = match["v6"] or match["host"]
    if match["v6"] is not None:
        _require_v6(host, text)
    return TargetSpec(kind, host, port)


def _require_v6(host: str, text: str) -> None:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise TargetError(f"{host!r} in the target {text.strip()!r} is not an IPv6 address",
                          "brackets are for IPv6 addresses only: [2001:db8::25]:25") from None


def parse_targets(text: str) -> list[TargetSpec]:
    """``--target`` as given: one or more targets separated by commas."""
    parts = [part for part in text.split(",") if part.strip()]
    if not parts:
        raise TargetError("--target names no listener", "give HOST:PORT, e.g. --target 127.0.0.1:25")
    return [parse_one(part) for part in parts]


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or the name localhost (any other name counts as elsewhere)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_owned(specs: Sequence[TargetSpec], i_own_it: bool) -> None:
    """Refuse a target off loopback unless the admin said they own it."""
    elsewhere = [spec for spec in specs if not is_loopback(spec.host)]
    if elsewhere and not i_own_it:
        names = ", ".join(ProbeTarget("smtp", spec.host, spec.port).label for spec in elsewhere)
        raise TargetError(f"{names} is not a loopback address: the audit probes only servers you own", OWN_HINT)


async def resolve_targets(specs: Sequence[TargetSpec], timeout: float) -> list[ProbeTarget]:
    """Each spec with its kind: as given, from the port, or from the greeting."""
    found = await asyncio.gather(*(_with_kind(spec, timeout) for spec in specs))
    return _unique(found)


async def _with_kind(spec: TargetSpec, timeout: float) -> ProbeTarget:
    kind = spec.kind or KIND_OF_PORT.get(spec.port) or await kind_from_greeting(spec.host, spec.port, timeout)
    if kind is None:
        label = ProbeTarget("smtp", spec.host, spec.port).label
        raise TargetError(f"cannot tell what {label} is: it sent no SMTP, IMAP or POP3 greeting, "
                          "in the clear or over TLS",
                          f"name the kind, e.g. --target smtp={label} (kinds: {', '.join(PROTOCOL_OF)}), "
                          "and check that the server is reachable", usage=False)
    return ProbeTarget(kind, spec.host, spec.port)


_KIND_OF_GREETING = (("220", "smtp", "submissions"), ("* OK", "imap", "imaps"), ("+OK", "pop3", "pop3s"))


def kind_of_greeting(line: bytes, tls: bool) -> str | None:
    text = line.decode("latin-1").lstrip()
    for prefix, plain, implicit in _KIND_OF_GREETING:
        if text.upper().startswith(prefix):
            return implicit if tls else plain
    return None


async def kind_from_greeting(host: str, port: int, timeout: float) -> str | None:
    """Read the greeting in the clear, then over implicit TLS."""
    for tls in (False, True):
        line = await _greeting(host, port, timeout, tls)
        if line is not None:
            return kind_of_greeting(line, tls)
    return None


async def _greeting(host: str, port: int, timeout: float, tls: bool) -> bytes | None:
    context = insecure_client_context() if tls else None
    try:
        async with await ProbeLink.open(host, port, timeout=timeout, tls=context) as link:
            return await link.read_line(min(timeout, GREETING_WAIT))
    except (OSError, TimeoutError):
        return None


# --- source addresses, resolver ---------------------------------------------------------------

def source_ips_for(targets: Sequence[ProbeTarget]) -> tuple[str, ...]:
    """Where the probes may connect from (see the module docstring)."""
    if targets and all(_is_v4_loopback(t.host) for t in targets):
        return ("127.0.0.1", SECOND_SOURCE) if can_bind(SECOND_SOURCE) else ("127.0.0.1",)
    return (ANY_SOURCE,)


def _is_v4_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.version == 4 and address.is_loopback


def can_bind(address: str) -> bool:
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        return True
    return False


def build_resolver(config: Config) -> DnsPythonResolver:
    """The resolver of ``[dns]`` (the system's when no nameservers are configured)."""
    return DnsPythonResolver(config.dns.nameservers, config.dns.port, config.dns.timeout)


# --- the domain a --target accepts mail for -------------------------------------------------------


def domain_candidates(greeting: str) -> list[str]:
    """From ``220 mx.example.org ESMTP ...``: mx.example.org, then example.org (never a bare TLD)."""
    words = greeting[4:].split()
    name = words[0].rstrip(".").lower() if words else ""
    labels = name.split(".")
    if len(labels) < 2 or not all(labels):
        return []
    return [".".join(labels[i:]) for i in range(len(labels) - 1)]


async def guess_local_domain(targets: Sequence[ProbeTarget], timeout: float) -> str | None:
    """The first domain named by a plain SMTP target's greeting whose postmaster it accepts at RCPT
    (RFC 5321 4.5.1: every domain has one), for a ``--target`` run without ``--domain``; None when
    none is. Nothing is sent past RCPT."""
    for target in (t for t in targets if t.kind == "smtp"):
        try:
            async with await ProbeLink.open(target.host, target.port, timeout=timeout) as link:
                greeting = await link.read_smtp_reply()
                if greeting is None or greeting.code != 220 or await link.command("EHLO audit-probe.invalid") is None:
                    continue
                for domain in domain_candidates(f"220 {greeting.lines[0]}"):
                    if not await _accepts_postmaster(link, domain):
                        continue
                    await link.command("QUIT")
                    return domain
        except (OSError, TimeoutError):
            continue
    return None


async def _accepts_postmaster(link: ProbeLink, domain: str) -> bool:
    mail = await link.command("MAIL FROM:<>")
    rcpt = await link.command(f"RCPT TO:<postmaster@{domain}>") if mail is not None and mail.code == 250 else None
    await link.command("RSET")
    return rcpt is not None and rcpt.code in (250, 251)


# --- the probe account ------------------------------------------------------------------------

PROBE_PREFIX = "audit-probe-"
PROBE_NAME = "hardmail audit probe (removed after the audit)"  # the marker of a probe account
Purge = Callable[[str], Awaitable[None]]


def is_probe_account(address: str, display_name: str = PROBE_NAME) -> bool:
    """A probe account: the probe prefix and the marker name (a real account named audit-probe-x
    that an admin made is never taken for one)."""
    return address.partition("@")[0].startswith(PROBE_PREFIX) and display_name == PROBE_NAME


def mailbox_purge(store: Store, config: Config) -> Purge:
    """Removes a removed probe account's mail: its Maildir and its mailbox index folders (the
    probes' test messages and its security notices), which removing an account keeps."""
    maildir = MaildirStore(config.maildir_root, config.server.hostname)

    async def purge(address: str) -> None:
        for folder in await store.mailbox.list_folders(address):
            with contextlib.suppress(NotFound):
                await store.mailbox.delete_folder(folder.id)
        path = maildir.mailbox_path(address)
        if path.is_dir() and path.name.startswith(PROBE_PREFIX):
            await asyncio.to_thread(shutil.rmtree, path, True)

    return purge


async def remove_leftover_probe_accounts(admin: AdminService, purge: Purge) -> list[str]:
    """Remove probe accounts a crashed audit left behind, and their mail; their addresses."""
    left = [account.address for account in await admin.list_accounts()
            if is_probe_account(account.address, account.display_name)]
    for address in left:
        await admin.remove_account(address)
        await purge(address)
    return left


@contextlib.asynccontextmanager
async def probe_account(admin: AdminService, domain: str, purge: Purge) -> AsyncIterator[ProbeLogin]:
    """A new account of ``domain`` for the probes, removed with its mail when the block ends,
    whatever happens."""
    address = f"{PROBE_PREFIX}{secrets.token_hex(6)}@{domain}"
    password = secrets.token_urlsafe(32)  # 32 random bytes
    await admin.add_account(address, password, PROBE_NAME)
    try:
        yield ProbeLogin(address, password, f"postmaster@{domain}")
    finally:
        await admin.remove_account(address)
        await purge(address)


# --- one audit of the own server at a time ------------------------------------------------------

AUDIT_LOCK = "audit.lock"


@contextlib.contextmanager
def audit_lock(data_dir: Path) -> Iterator[None]:
    """Held for an audit of the server's own data directory: a second audit at the same time would
    remove the first one's probe account as a left-over (and both would share the rate limits)."""
    path = data_dir / AUDIT_LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TargetError(f"another hardmail audit is running on {data_dir}",
                              "wait for it to end, then run it again", usage=False) from None
        yield
    finally:
        os.close(fd)
