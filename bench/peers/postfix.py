"""A throwaway Postfix instance on loopback: its own config and queue directories under a temp dir.

Nothing under /etc/postfix or /var/spool/postfix is read for configuration or written: ``main.cf``
and ``master.cf`` are generated here, the master runs in the foreground (``master -c DIR``, no
``-w``), so its PID is ours, and :meth:`PostfixPeer.stop` stops the master and every worker it
forked, by PID. Mail flows smtpd → cleanup → qmgr → ``discard``: each message is fsync'd into the
queue (cleanup) before the 250, then thrown away by the discard transport. Recipients are checked
against a ``virtual_mailbox_maps`` inline table (unknown ones get 550), like hardmail's MX checks.

Postfix logs only through postlogd here (``maillog_file``), so start-up failures are readable in
``<dir>/maillog``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from peers.certs import write_self_signed
from peers.procs import ProcessGroup, children_of, wait_for_greeting

DAEMON_DIR = Path("/usr/lib/postfix/sbin")
GREETING_TIMEOUT = 60.0

# One service per line: name, type, private, unpriv, chroot (n: no chroot), wakeup, maxproc, command.
_MASTER_CF = """\
{listen} inet n - n - {smtpd_procs} smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
proxywrite unix - - n - 1 proxymap
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
discard   unix  - - n - - discard
error     unix  - - n - - error
retry     unix  - - n - - error
postlog   unix-dgram n - n - 1 postlogd
"""


def _main_cf(root: Path, domain: str, recipients: list[str], cert: Path, key: Path) -> str:
    mailbox_map = "inline:{ " + ", ".join(f"{r}=ok" for r in recipients) + " }"
    settings = {
        "compatibility_level": "3.6",
        "queue_directory": root / "spool",
        "data_directory": root / "data",
        "daemon_directory": DAEMON_DIR,
        "shlib_directory": "/usr/lib/postfix",
        "meta_directory": "/etc/postfix",
        "command_directory": "/usr/sbin",
        "mail_owner": "postfix",
        "setgid_group": "postdrop",
        "maillog_file": root / "maillog",
        "maillog_file_prefixes": root,
        "myhostname": "postfix.bench.invalid",
        "mydomain": "bench.invalid",
        "mydestination": "",
        "inet_interfaces": "127.0.0.1",
        "inet_protocols": "ipv4",
        "mynetworks": "127.0.0.0/8",
        "alias_maps": "",
        "alias_database": "",
        "local_recipient_maps": "",
        "virtual_mailbox_domains": domain,
        "virtual_mailbox_maps": mailbox_map,
        "virtual_transport": "discard:",
        "default_transport": "discard:",
        "relay_transport": "discard:",
        "local_transport": "discard:",
        "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
        "smtpd_recipient_restrictions": "reject_unlisted_recipient",
        "smtpd_client_connection_count_limit": "0",
        "smtpd_client_connection_rate_limit": "0",
        "smtpd_tls_security_level": "may",
        "smtpd_tls_cert_file": cert,
        "smtpd_tls_key_file": key,
        "smtpd_tls_session_cache_database": "",
        "smtpd_sasl_auth_enable": "no",
        "smtp_dns_support_level": "disabled",
        "biff": "no",
        "smtputf8_enable": "no",
        "default_process_limit": "200",
        "in_flow_delay": "0s",
        "import_environment": "MAIL_CONFIG MAIL_DEBUG LANG TZ",
    }
    return "".join(f"{name} = {value}\n" for name, value in settings.items())


@dataclass
class PostfixPeer:
    """One Postfix instance; ``start`` writes its files and waits for the greeting, ``stop`` ends it."""

    root: Path
    port: int
    domain: str
    recipients: list[str]
    group: ProcessGroup
    smtpd_processes: int = 100
    proc: subprocess.Popen[bytes] | None = None
    workers: set[int] = field(default_factory=set)
    name: str = "postfix"

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def prepare(self) -> None:
        """Write main.cf/master.cf, create the queue (``postfix check``) and fix ownership."""
        postfix_user = pwd.getpwnam("postfix")
        self.root.mkdir(parents=True, exist_ok=True)
        for directory in (self.root.parent, self.root):  # the postfix user must reach its queue and data
            directory.chmod(0o755)
        etc = self.root / "etc"
        etc.mkdir(exist_ok=True)
        cert, key = write_self_signed(etc, "postfix.bench.invalid")
        (etc / "main.cf").write_text(_main_cf(self.root, self.domain, self.recipients, cert, key))
        (etc / "master.cf").write_text(_MASTER_CF.format(listen=f"127.0.0.1:{self.port}",
                                                         smtpd_procs=self.smtpd_processes))
        for sub in ("spool", "data"):
            (self.root / sub).mkdir(exist_ok=True)
        os.chown(self.root / "data", postfix_user.pw_uid, postfix_user.pw_gid)
        (self.root / "maillog").touch()
        os.chown(self.root / "maillog", postfix_user.pw_uid, postfix_user.pw_gid)
        check = subprocess.run(["/usr/sbin/postfix", "-c", str(etc), "check"], capture_output=True, text=True,
                               timeout=60, env=self._env())
        if check.returncode != 0:
            raise RuntimeError(f"postfix check failed: {check.stdout}{check.stderr}".strip())

    def _env(self) -> dict[str, str]:
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "MAIL_CONFIG": str(self.root / "etc"), "LANG": "C"}

    def start(self) -> None:
        self.prepare()
        self.proc = self.group.start([str(DAEMON_DIR / "master"), "-c", str(self.root / "etc")],
                                     self.root / "master.out", env=self._env())
        try:
            wait_for_greeting(*self.address, timeout=GREETING_TIMEOUT, proc=self.proc)
        except Exception as exc:
            raise RuntimeError(f"{exc}; Postfix log tail:\n{self.log_tail()}") from exc

    def note_workers(self) -> None:
        """Remember the master's current workers so that they are stopped by PID too."""
        if self.proc is not None:
            for pid in children_of(self.proc.pid):
                if pid not in self.workers:
                    self.workers.add(pid)
                    self.group.adopt(pid)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.note_workers()
        self.group.stop(self.proc)
        deadline = time.monotonic() + 5
        while any(Path(f"/proc/{pid}").exists() for pid in self.workers) and time.monotonic() < deadline:
            time.sleep(0.05)  # the master tells its workers to exit; bounded by the deadline
        self.proc = None

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for name in ("maillog", "master.out"):
            path = self.root / name
            if path.exists():
                parts += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(parts)

    def queue_dirs_empty(self) -> bool:
        return not any((self.root / "spool" / "active").iterdir())

    def remove_files(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
