"""hardmail as its own process, seeded and configured like a production MX + submission server.

The data directory gets a domain and an account through the real CLI (``hardmail domain add``,
``hardmail account add --password-stdin``), then ``hardmail serve`` runs with a generated TOML file:
durable Maildir delivery (fsync before 250, written by each worker's Maildir writer process),
recipient checks, JSON logs (to a file), the default number of worker processes (one per core, at
most 4). Changed from the defaults, and why:

- ``inbound.enabled`` and ``antispam.enabled`` are off: SPF/DKIM/DMARC and the spam score look
  names up in DNS, which would measure the resolver; Postfix does none of that by default either.
- ``access.limits`` are raised: the benchmark opens thousands of connections from 127.0.0.1, and
  the authenticated account sends thousands of messages per hour.
- ``queue.run_delivery`` is off: every recipient is local, nothing is queued for remote delivery.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from peers.procs import ProcessGroup, free_port, wait_for_greeting

HARDMAIL = Path(sys.executable).with_name("hardmail")
PASSWORD = "correct horse battery staple 9041"
BIG = 10_000_000


def _config(data_dir: Path, smtp: int, submission: int, submissions: int) -> dict[str, Any]:
    return {
        "server": {"hostname": "hardmail.bench.invalid", "data_dir": str(data_dir)},
        "listen": {"smtp": [f"127.0.0.1:{smtp}"], "submission": [f"127.0.0.1:{submission}"],
                   "submissions": [f"127.0.0.1:{submissions}"]},
        "inbound": {"enabled": False},
        "antispam": {"enabled": False},
        "queue": {"run_delivery": False},
        "access": {"limits": {"connections_per_ip": BIG, "connections_per_subnet": BIG,
                              "new_connections_per_minute": BIG, "messages_per_hour": BIG,
                              "messages_per_day": BIG, "recipients_per_hour": BIG, "recipients_per_day": BIG}},
        # every line written, as for load spread over many real clients (all bench clients share 127.0.0.1)
        "logging": {"format": "json", "level": "info", "per_source_burst": 0},
    }


@dataclass
class HardmailPeer:
    root: Path
    domain: str
    user: str
    group: ProcessGroup
    port: int = 0
    submission_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    name: str = "hardmail"
    settings: dict[str, dict[str, Any]] | None = None  # merged into the generated config, per section
    env: dict[str, str] | None = None  # for the CLI and the server (e.g. PYTHONPATH of another checkout)

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def submission_address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.submission_port)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _cli(self, *args: str, stdin: str | None = None) -> None:
        done = subprocess.run([str(HARDMAIL), *args, "--config", str(self.root / "hardmail.toml")],
                              input=stdin, capture_output=True, text=True, timeout=120,
                              env={**os.environ, **(self.env or {})})
        if done.returncode != 0:
            raise RuntimeError(f"hardmail {' '.join(args)} failed: {done.stdout}{done.stderr}")

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.port, self.submission_port = free_port(), free_port()
        config = _config(self.root / "data", self.port, self.submission_port, free_port())
        for section, values in (self.settings or {}).items():
            config.setdefault(section, {}).update(values)
        (self.root / "hardmail.toml").write_text(tomli_w.dumps(config))
        self._cli("domain", "add", self.domain)
        self._cli("account", "add", self.user, "--password-stdin", stdin=PASSWORD + "\n")

    def start(self, extra_env: dict[str, str] | None = None) -> None:
        self.prepare()
        env = {**os.environ, **(self.env or {}), **(extra_env or {})}
        argv = [str(HARDMAIL), "serve", "--config", str(self.root / "hardmail.toml")]
        self.proc = self.group.start(argv, self.root / "hardmail.log", env=env, many_files=True)
        wait_for_greeting(*self.address, timeout=60, proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            self.group.stop(self.proc)
            self.proc = None

    def delivered(self) -> int:
        """Messages in the account's Maildir ``new/`` (a check that 250 meant stored)."""
        local, _, domain = self.user.partition("@")
        new = self.root / "data" / "mail" / domain / local / "new"
        return sum(1 for _ in new.iterdir()) if new.is_dir() else 0

    def remove_files(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
