"""``hardmail serve`` with its IMAP and POP3 listeners on free loopback ports, for the Dovecot
differential tests: accounts seeded before the start, a trustme certificate, JSON logs followed
by a thread (start-up is awaited on the ``server.start`` event, not slept for)."""

from __future__ import annotations

import asyncio
import queue
import ssl
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from hardmail.admin.service import AdminService
from hardmail.config.schema import Config
from hardmail.store import open_store
from support.cli_process import LoggedServe, cli_env, free_loopback_port, hardmail_command

IMAP_FLAGS = ("--listen-imap", "--listen-imaps", "--listen-pop3", "--listen-pop3s")
DOMAIN = "example.test"
WAIT = 60.0


def missing_imap_reason() -> str | None:
    """Why this checkout cannot serve IMAP/POP3 yet (``hardmail serve --help`` lacks the flags), or None."""
    done = subprocess.run(hardmail_command("serve", "--help"), capture_output=True, text=True, timeout=120,
                          env={**cli_env(), "COLUMNS": "200"}, check=False)
    missing = [flag for flag in IMAP_FLAGS if flag not in done.stdout]
    if missing:
        return f"hardmail serve --help lacks {', '.join(missing)}: no IMAP/POP3 listeners in this checkout yet"
    return None


class _Serve(LoggedServe):
    """LoggedServe with extra ``hardmail serve`` arguments."""

    def __init__(self, config_path: Path, extra: list[str], wait: float = WAIT) -> None:
        self.wait = wait
        self._kill = False
        self.proc = subprocess.Popen(hardmail_command("serve", "--config", str(config_path), *extra),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=cli_env())
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._follow, daemon=True).start()


@dataclass
class HardmailServer:
    root: Path
    imap: int
    imaps: int
    pop3: int
    pop3s: int
    ca_pem: bytes
    serve: LoggedServe
    host: str = "127.0.0.1"

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=self.ca_pem.decode())
        context.check_hostname = False
        return context

    def maildir(self, user: str) -> Path:
        local, _, domain = user.partition("@")
        return self.root / "data" / "mail" / domain / local


def seed_accounts(config: Config, accounts: Mapping[str, str], domain: str = DOMAIN) -> None:
    """Migrate the database of ``config``, add ``domain`` and the ``accounts`` (before serving)."""

    async def seed() -> None:
        store = await open_store(config.database_url)
        try:
            await store.migrate()
            admin = AdminService(store, config.auth.argon2)
            await admin.add_domain(domain)
            for address, password in accounts.items():
                await admin.add_account(address, password)
        finally:
            await store.close()

    asyncio.run(seed())


def _config(root: Path, cert: Path, key: Path, settings: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "server": {"hostname": "mail.example.test", "data_dir": str(root / "data"), "workers": 1},
        "listen": {"smtp": ["127.0.0.1:0"], "submission": ["127.0.0.1:0"], "submissions": ["127.0.0.1:0"]},
        "tls": {"cert_file": str(cert), "key_file": str(key)},
        "auth": {"argon2": {"time_cost": 1, "memory_cost": 8192}},
        "logging": {"format": "json"},
        "inbound": {"enabled": False},
        "antispam": {"enabled": False},
        "queue": {"run_delivery": False},
    }
    for section, values in settings.items():
        raw.setdefault(section, {}).update(values)
    return raw


@contextmanager
def running_hardmail(root: Path, accounts: Mapping[str, str],
                     settings: Mapping[str, Mapping[str, Any]] | None = None) -> Iterator[HardmailServer]:
    """Seed ``accounts`` (in example.test), serve IMAP/IMAPS/POP3/POP3S on free ports, stop at the end."""
    import trustme

    root.mkdir(parents=True, exist_ok=True)
    authority = trustme.CA()
    issued = authority.issue_cert("localhost", "mail.example.test", "127.0.0.1")
    cert, key = root / "cert.pem", root / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    raw = _config(root, cert, key, settings or {})
    path = root / "hardmail.toml"
    path.write_text(tomli_w.dumps(raw))
    seed_accounts(Config.model_validate(raw), accounts)
    ports = [free_loopback_port() for _ in IMAP_FLAGS]
    extra = [arg for flag, port in zip(IMAP_FLAGS, ports, strict=True) for arg in (flag, f"127.0.0.1:{port}")]
    serve = _Serve(path, extra)
    try:
        serve.wait_for("server.start")
        imap, imaps, pop3, pop3s = ports
        yield HardmailServer(root, imap, imaps, pop3, pop3s, ca_pem=authority.cert_pem.bytes(), serve=serve)
    finally:
        serve.stop()
