"""aiosmtpd's Sink as a peer process (bench/peers/aiosmtpd_sink.py), with STARTTLS and AUTH offered."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from peers import aiosmtpd_sink
from peers.certs import write_self_signed
from peers.procs import ProcessGroup, free_port, wait_for_greeting


@dataclass
class AiosmtpdPeer:
    root: Path
    group: ProcessGroup
    user: str
    password: str
    port: int = 0
    pid: int = 0
    name: str = "aiosmtpd"

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        cert, key = write_self_signed(self.root, "aiosmtpd.bench.invalid")
        argv = [sys.executable, aiosmtpd_sink.__file__, "--listen", f"127.0.0.1:{self.port}", "--cert", str(cert),
                "--key", str(key), "--user", self.user, "--password", self.password]
        proc = self.group.start(argv, self.root / "aiosmtpd.log", many_files=True)
        self.pid = proc.pid
        wait_for_greeting(*self.address, timeout=30, proc=proc)
