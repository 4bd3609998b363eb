"""What the IMAP benchmarks share: the two servers (a private Dovecot from tests/support/dovecot.py
and ``hardmail serve`` with its IMAP listeners), each its own process tree on loopback ports,
stopped by PID; an asyncio IMAP client that sends one command at a time and reads complete
responses; the servers' memory; and the IMAP section of bench/README.md.

Dovecot runs with its Debian defaults except for what a benchmark from one address needs
(``mail_max_userip_connections``) and, for many sessions, the service limits given by
:data:`DOVECOT_MANY_SESSIONS` (see bench/README.md). hardmail runs with the per-IP and
per-account limits raised, like the SMTP benchmarks' peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from peers.procs import ProcessGroup, free_port, process_tree, pss_bytes, rss_bytes  # noqa: E402

from support import dovecot as dovecot_support  # noqa: E402

HARDMAIL = Path(sys.executable).with_name("hardmail")
DOMAIN = "bench.test"
PASSWORD = "orange kettle marble 4471 quiet"
BIG = 10_000_000
# Dovecot for 10,000+ sessions: login processes in "high-performance" mode (each serves many
# connections and keeps proxying TLS), imap processes serving 250 sessions each (one process per
# session, Dovecot's default, would need 10,000 processes and more inotify instances than the
# kernel's default of 128 per user). Sessions of one mailbox inside one imap process are not woken
# by inotify (measured: they saw a new message only at the 30 s fallback check), so IDLE falls
# back to checking the mailbox every second (mailbox_idle_check_interval).
DOVECOT_MANY_SESSIONS = """
mailbox_idle_check_interval = 1 secs
default_client_limit = 20000
default_process_limit = 200
service imap-login {
  service_count = 0
  process_min_avail = 2
  process_limit = 8
  client_limit = 6000
  vsz_limit = 1G
}
service imap {
  service_count = 0
  process_limit = 100
  client_limit = 250
  vsz_limit = 1G
}
service auth {
  client_limit = 20000
}
service anvil {
  client_limit = 20000
}
"""
PLAINTEXT = {"on": False}  # use_plaintext(): every client connects to the imap port without TLS


def use_plaintext() -> None:
    """Clients log in without TLS (Dovecot: loopback counts as secured; hardmail: the peer sets
    ``[imap] allow_plaintext_login``), so the run measures the IMAP servers, not TLS."""
    PLAINTEXT["on"] = True


DOVECOT_BENCH = """
mail_max_userip_connections = 100000
"""


@dataclass
class ImapServer:
    """One server as the clients see it."""

    name: str
    host: str
    imap: int
    imaps: int
    context: ssl.SSLContext
    pid: int

    def memory(self) -> dict[str, int]:
        """Sum of RSS and of PSS over the server's process tree, in bytes."""
        members = process_tree(self.pid)
        rss = pss = 0
        for member in members:
            try:
                rss += rss_bytes(member)
                pss += pss_bytes(member)
            except (OSError, RuntimeError):
                continue
        return {"rss": rss, "pss": pss, "processes": len(members)}


def accounts(count: int) -> dict[str, str]:
    return {f"user{n}@{DOMAIN}": PASSWORD for n in range(count)}


class DovecotPeer:
    def __init__(self, root: Path, users: dict[str, str], extra: str = "") -> None:
        self.root = root
        if PLAINTEXT["on"]:  # clients come from 127.0.0.2-51 too: count all of loopback as secured
            extra += "\nlogin_trusted_networks = 127.0.0.0/8\n"
        self.server = dovecot_support.prepare(root, users, DOVECOT_BENCH + extra)

    def maildir(self, user: str) -> Path:
        path: Path = self.server.maildir(user)
        return path

    def start(self) -> ImapServer:
        dovecot_support.start(self.server, timeout=60)
        ports = self.server.ports
        return ImapServer("dovecot", dovecot_support.HOST, ports.imap, ports.imaps, self.server.client_context(),
                          self.server.pid)

    def stop(self) -> None:
        dovecot_support.stop(self.server)

    def own_files(self) -> None:
        dovecot_support.give_to_mail_user(self.root / "mail")


def hardmail_serves_imap() -> bool:
    done = subprocess.run([str(HARDMAIL), "serve", "--help"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"}, check=False)
    return "--listen-imaps" in done.stdout


def _config_sections() -> set[str]:
    from hardmail.config.schema import Config

    return set(Config.model_fields)


@dataclass
class HardmailImapPeer:
    root: Path
    users: dict[str, str]
    group: ProcessGroup
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    ports: tuple[int, int] = (0, 0)

    def maildir(self, user: str) -> Path:
        local, _, domain = user.partition("@")
        return self.root / "data" / "mail" / domain / local

    def _cli(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run([str(HARDMAIL), *args, "--config", str(self.root / "hardmail.toml")], input=stdin,
                              capture_output=True, text=True, timeout=3600, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"hardmail {' '.join(args)} failed: {done.stdout}{done.stderr}")
        return done.stdout

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        cert, key = _self_signed(self.root)
        config: dict[str, Any] = {
            "server": {"hostname": "hardmail.bench.invalid", "data_dir": str(self.root / "data")},
            "listen": {"smtp": [f"127.0.0.1:{free_port()}"], "submission": [f"127.0.0.1:{free_port()}"],
                       "submissions": [f"127.0.0.1:{free_port()}"]},
            "tls": {"cert_file": str(cert), "key_file": str(key)},
            "inbound": {"enabled": False}, "antispam": {"enabled": False}, "queue": {"run_delivery": False},
            "auth": {"argon2": {"time_cost": 1, "memory_cost": 8192}},
            "access": {"limits": {"connections_per_ip": BIG, "connections_per_subnet": BIG,
                                  "new_connections_per_minute": BIG}},
            "logging": {"format": "json", "level": "warning"},
        }
        if "imap" in _config_sections():
            config["imap"] = {"connections_per_ip": BIG, "connections_per_account": BIG, "commands_per_second": BIG,
                              "allow_plaintext_login": PLAINTEXT["on"]}
        for section, values in self.settings.items():
            config.setdefault(section, {}).update(values)
        (self.root / "hardmail.toml").write_text(tomli_w.dumps(config))
        from hardmail.config.schema import Config
        from support.hardmail_imap import seed_accounts

        seed_accounts(Config.model_validate(config), self.users, DOMAIN)  # as `hardmail account add` does

    def start(self) -> ImapServer:
        self.ports = (free_port(), free_port())
        argv = [str(HARDMAIL), "serve", "--config", str(self.root / "hardmail.toml"),
                "--listen-imap", f"127.0.0.1:{self.ports[0]}", "--listen-imaps", f"127.0.0.1:{self.ports[1]}",
                "--listen-pop3", f"127.0.0.1:{free_port()}", "--listen-pop3s", f"127.0.0.1:{free_port()}"]
        self.proc = self.group.start(argv, self.root / "hardmail.log", many_files=True)
        wait_for_imap(self.ports[0], 60, self.proc)
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        return ImapServer("hardmail", "127.0.0.1", self.ports[0], self.ports[1], context, self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None:
            self.group.stop(self.proc)
            self.proc = None

    def reindex(self, user: str) -> str:
        """``hardmail mailbox reindex`` when this checkout has it; '' when it does not."""
        done = subprocess.run([str(HARDMAIL), "mailbox", "--help"], capture_output=True, text=True, timeout=60,
                              check=False)
        if done.returncode != 0 or "reindex" not in done.stdout:
            return ""
        return self._cli("mailbox", "reindex", user)


def _self_signed(directory: Path) -> tuple[Path, Path]:
    from peers.certs import write_self_signed

    return write_self_signed(directory, "hardmail.bench.invalid")


def wait_for_imap(port: int, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before its IMAP greeting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                if sock.recv(100).startswith(b"* OK"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"no IMAP greeting on port {port}")


# --- client ---------------------------------------------------------------------------------

_LITERAL = re.compile(rb"\{(\d+)\}\r\n$")


class ImapClient:
    """One session: a command at a time, every tagged status checked."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.tag = 0

    @classmethod
    async def connect(cls, server: ImapServer, tls: bool | None = None, source: str | None = None) -> ImapClient:
        tls = not PLAINTEXT["on"] if tls is None else tls
        reader, writer = await asyncio.open_connection(
            server.host, server.imaps if tls else server.imap, ssl=server.context if tls else None,
            local_addr=(source, 0) if source else None, limit=1 << 20)
        client = cls(reader, writer)
        greeting = await reader.readline()
        if not greeting.startswith(b"* OK"):
            raise RuntimeError(f"{server.name} greeting {greeting[:80]!r}")
        return client

    async def response(self) -> bytes:
        line = await self.reader.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        while (match := _LITERAL.search(line)) is not None:
            line += await self.reader.readexactly(int(match.group(1)))
            line += await self.reader.readline()
        return line

    async def command(self, text: bytes, literal: bytes | None = None) -> list[bytes]:
        """Send one command (with one synchronizing literal at its end); OK or RuntimeError."""
        self.tag += 1
        tag = b"b%d" % self.tag
        if literal is None:
            self.writer.write(tag + b" " + text + b"\r\n")
        else:
            self.writer.write(tag + b" " + text + b" {%d}\r\n" % len(literal))
            await self.writer.drain()
            if not (await self.response()).startswith(b"+"):
                raise RuntimeError(f"no continuation for {text[:40]!r}")
            self.writer.write(literal + b"\r\n")
        await self.writer.drain()
        lines = []
        while True:
            line = await self.response()
            lines.append(line)
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(f"{text[:60]!r}: {line[:200]!r}")
                return lines

    retries = 0  # LOGINs answered NO [UNAVAILABLE] (busy password hashing) and tried again, all sessions

    async def login(self, user: str, password: str, attempts: int = 20) -> None:
        """LOGIN; a NO [UNAVAILABLE] (the server's password hashing is busy) is retried after 50 ms."""
        for attempt in range(attempts):
            try:
                await self.command(f'LOGIN "{user}" "{password}"'.encode())
                return
            except RuntimeError as exc:
                if "[UNAVAILABLE]" not in str(exc) or attempt == attempts - 1:
                    raise
                ImapClient.retries += 1
                await asyncio.sleep(0.05)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self.writer.wait_closed()


# --- results -------------------------------------------------------------------------------

def imap_facts() -> dict[str, Any]:
    """machine_facts() with the versions that matter here: hardmail, Dovecot, uvloop."""
    from report import machine_facts

    facts = machine_facts()
    try:
        done = subprocess.run([str(dovecot_support.DOVECOT), "--version"], capture_output=True, text=True,
                              timeout=10, check=False)
        dovecot = done.stdout.split()[0] if done.stdout else "unknown"
    except OSError:
        dovecot = "not installed"
    versions = facts["versions"]
    facts["versions"] = {"hardmail": versions["hardmail"], "dovecot": dovecot, "uvloop": versions["uvloop"]}
    return facts


README_SECTION_START = "## IMAP benchmarks"


def write_readme_section(part: str, text: str) -> None:
    """Put ``text`` under ``### <part>`` inside bench/README.md's IMAP section (replacing an older one)."""
    readme = ROOT / "bench" / "README.md"
    content = readme.read_text()
    if README_SECTION_START not in content:
        content = content.rstrip() + f"\n\n{README_SECTION_START}\n"
    head, _, section = content.partition(README_SECTION_START)
    marker = f"<!-- imap:{part} -->"
    block = f"{marker}\n### {part}\n\n{text.strip()}\n{marker}"
    if marker in section:
        before, _, rest = section.partition(marker)
        _, _, after = rest.partition(marker)
        section = before + block + after
    else:
        section = section.rstrip() + "\n\n" + block + "\n"
    readme.write_text(head + README_SECTION_START + section)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
