"""A private Dovecot for differential tests and benchmarks: started from a generated config under a
temporary directory, on free loopback ports, stopped by PID. It touches no system file.

Layout, chosen to match hardmail's mailbox store: Maildir++ under ``<root>/mail/<domain>/<local>``
(INBOX is the Maildir root, folders are ``.Name``), one inbox namespace with ``/`` as separator and
an empty prefix, special-use folders Sent, Drafts, Trash, Junk, Archive (created and subscribed on
first login), a passwd-file with ``{PLAIN}`` passwords (so SCRAM-SHA-256 works), TLS from a
trustme certificate authority, listeners for imap (STARTTLS), imaps, pop3 (STLS) and pop3s.

Run as root (CI), the mail user is root too (``first_valid_uid = 0``) and the login and internal
processes run as Debian's ``dovenull`` and ``dovecot`` users; as another user everything runs as
that user. Dovecot counts a connection whose client address equals its server address as secured
(plaintext LOGIN allowed, no LOGINDISABLED); clients that want the "not secured" behaviour connect
from 127.0.0.2 (``SOURCE_ADDRESS``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import select
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

DOVECOT = Path("/usr/sbin/dovecot")
DH_PARAMS = Path("/usr/share/dovecot/dh.pem")
HOST = "127.0.0.1"
SOURCE_ADDRESS = "127.0.0.2"  # not equal to HOST: Dovecot then treats the connection as not secured
SPECIAL_USE = {"Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash", "Junk": "\\Junk",
               "Archive": "\\Archive"}
DEFAULT_USERS = {"alice@example.test": "correct horse battery staple",
                 "bob@example.test": "another long passphrase 42"}
CERT_NAMES = ("localhost", "mail.example.test", HOST)


def unavailable_reason() -> str | None:
    """Why no private Dovecot can run here, or None."""
    if not DOVECOT.exists():
        return f"{DOVECOT} is absent (Debian: apt-get install dovecot-imapd dovecot-pop3d)"
    if os.geteuid() == 0 and not (_user_exists("dovenull") and _user_exists("nobody")):
        return "running as root but the dovenull or nobody user is missing (Debian's dovecot-core adds dovenull)"
    return None


def skip_unless_available() -> None:
    """pytest.skip with the reason when Dovecot cannot run here."""
    reason = unavailable_reason()
    if reason is not None:
        import pytest

        pytest.skip(reason)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@dataclass
class Ports:
    imap: int = field(default_factory=free_port)
    imaps: int = field(default_factory=free_port)
    pop3: int = field(default_factory=free_port)
    pop3s: int = field(default_factory=free_port)


@dataclass
class DovecotServer:
    """A running (or configured) private Dovecot; see :func:`running_dovecot`."""

    root: Path
    ports: Ports
    users: dict[str, str]
    ca_pem: bytes = b""
    proc: subprocess.Popen[bytes] | None = None
    host: str = HOST

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def log_path(self) -> Path:
        return self.root / "log" / "dovecot.log"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client_context(self) -> ssl.SSLContext:
        """A TLS client context that trusts this server's certificate (hostname: localhost)."""
        context = ssl.create_default_context(cadata=self.ca_pem.decode())
        context.check_hostname = False  # the tests connect to 127.0.0.1; the chain is still verified
        return context

    def maildir(self, user: str) -> Path:
        """The user's Maildir++ root (INBOX)."""
        local, _, domain = user.partition("@")
        return self.root / "mail" / domain / local

    def add_user(self, user: str, password: str) -> None:
        """Add (or change) a user; Dovecot re-reads the passwd-file when it changes."""
        self.users[user] = password
        _write_users(self.root, self.users)

    def processes(self) -> list[int]:
        """The master and every Dovecot process below it."""
        return _process_tree(self.pid) if self.proc is not None else []


def _process_tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def _ids() -> tuple[int, int, str, str]:
    """(mail uid, mail gid, login user, internal user). Dovecot never gives mail access to root
    ("Mail access not allowed for root"), so as root the mail user is ``nobody``."""
    uid, gid = os.geteuid(), os.getegid()
    if uid == 0:
        nobody = pwd.getpwnam("nobody")
        internal = "dovecot" if _user_exists("dovecot") else "dovenull"
        return nobody.pw_uid, nobody.pw_gid, "dovenull", internal
    me = pwd.getpwuid(uid).pw_name
    return uid, gid, me, me


def give_to_mail_user(path: Path) -> None:
    """chown ``path`` and everything below it to the mail user (after copying a Maildir in as root)."""
    uid, gid, _, _ = _ids()
    if os.geteuid() != 0:
        return
    os.chown(path, uid, gid)
    for base, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(base, name), uid, gid, follow_symlinks=False)


def _write_users(root: Path, users: Mapping[str, str]) -> None:
    lines = []
    for user, password in users.items():
        if ":" in user or ":" in password or "\n" in password:
            raise ValueError("passwd-file fields cannot hold ':' or newlines")
        local, _, domain = user.partition("@")
        home = root / "home" / domain / local
        if not home.is_dir():
            home.mkdir(parents=True)
            give_to_mail_user(root / "home")
        # uid/gid left empty: passwd-file refuses uid 0, mail_uid/mail_gid give them
        lines.append(f"{user}:{{PLAIN}}{password}:::{home}::\n")
    temporary = root / "users.new"
    temporary.write_text("".join(lines))
    temporary.chmod(0o644)
    temporary.replace(root / "users")


def _namespace() -> str:
    boxes = "".join(f"  mailbox {name} {{\n    special_use = {flag}\n    auto = subscribe\n  }}\n"
                    for name, flag in SPECIAL_USE.items())
    return f"namespace inbox {{\n  inbox = yes\n  separator = /\n  prefix =\n{boxes}}}\n"


def _listeners(ports: Ports) -> str:
    def service(name: str, plain: int, implicit: int) -> str:
        return (f"service {name}-login {{\n"
                f"  inet_listener {name} {{\n    address = {HOST}\n    port = {plain}\n  }}\n"
                f"  inet_listener {name}s {{\n    address = {HOST}\n    port = {implicit}\n    ssl = yes\n  }}\n"
                f"}}\n")
    return service("imap", ports.imap, ports.imaps) + service("pop3", ports.pop3, ports.pop3s)


def render_config(root: Path, ports: Ports, extra: str = "") -> str:
    """The dovecot.conf text for a private instance under ``root`` (``extra`` is appended)."""
    uid, gid, login_user, internal_user = _ids()
    dh = f"ssl_dh = <{DH_PARAMS}\n" if DH_PARAMS.exists() else ""
    return f"""# generated by tests/support/dovecot.py: a private instance, no system file is read
instance_name = hardmail-test-{ports.imap}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/log/dovecot.log
listen = {HOST}
protocols = imap pop3
ssl = yes
ssl_cert = <{root}/tls/cert.pem
ssl_key = <{root}/tls/key.pem
{dh}ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login scram-sha-256
auth_cache_size = 0
auth_failure_delay = 0
first_valid_uid = {uid}
first_valid_gid = {gid}
mail_uid = {uid}
mail_gid = {gid}
default_login_user = {login_user}
default_internal_user = {internal_user}
mail_location = maildir:{root}/mail/%d/%n
mail_plugins = $mail_plugins quota
mail_max_userip_connections = 100
pop3_uidl_format = %08Xu%08Xv
# files keep CRLF line ends, as hardmail's Maildir files do (messages are stored as received)
mail_save_crlf = yes
{_namespace()}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users
}}
protocol imap {{
  mail_plugins = $mail_plugins imap_quota
}}
plugin {{
  quota = count:User quota
  quota_rule = *:storage=1G
  quota_vsizes = yes
}}
{_listeners(ports)}{extra}
"""


def _write_tls(root: Path) -> bytes:
    import trustme

    authority = trustme.CA()
    issued = authority.issue_cert(*CERT_NAMES)
    tls = root / "tls"
    tls.mkdir()
    issued.cert_chain_pems[0].write_to_path(str(tls / "cert.pem"))
    issued.private_key_pem.write_to_path(str(tls / "key.pem"))
    (tls / "key.pem").chmod(0o600)
    return authority.cert_pem.bytes()


def prepare(root: Path, users: Mapping[str, str] | None = None, extra: str = "",
            ports: Ports | None = None) -> DovecotServer:
    """Write config, users, certificate and directories under ``root`` (nothing is started)."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # the login and auth processes run as other users and must reach their files
    closed = [p for p in root.parents if os.geteuid() == 0 and not p.stat().st_mode & 0o001]
    if closed:
        raise PermissionError(f"{closed[0]} is not searchable by other users; Dovecot's auth and mail "
                              f"processes (not root) could not reach {root}")
    for sub in ("run", "state", "log", "mail", "home"):
        (root / sub).mkdir(exist_ok=True)
    server = DovecotServer(root=root, ports=ports or Ports(), users=dict(users or DEFAULT_USERS))
    server.ca_pem = _write_tls(root)
    _write_users(root, server.users)
    give_to_mail_user(root / "mail")
    give_to_mail_user(root / "home")
    (root / "dovecot.conf").write_text(render_config(root, server.ports, extra))
    return server


def start(server: DovecotServer, timeout: float = 30.0) -> None:
    """Run ``dovecot -F`` on the prepared config; returns once the IMAP and POP3 ports greet."""
    log = (server.root / "log" / "master.out").open("ab")
    server.proc = subprocess.Popen([str(DOVECOT), "-F", "-c", str(server.root / "dovecot.conf")],
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    deadline = time.monotonic() + timeout
    try:
        _wait_for_greeting(server, server.ports.imap, b"* OK", deadline)
        _wait_for_greeting(server, server.ports.pop3, b"+OK", deadline)
    except BaseException:
        stop(server)
        raise


def _wait_for_greeting(server: DovecotServer, port: int, expected: bytes, deadline: float) -> None:
    assert server.proc is not None
    last: object = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=max(0.1, deadline - time.monotonic())) as sock:
                greeting = sock.recv(512)
            if greeting.startswith(expected):
                return
            last = greeting
        except OSError as exc:
            last = exc
        try:  # the poll interval doubles as the check that dovecot is still running
            server.proc.wait(timeout=0.02)
        except subprocess.TimeoutExpired:
            continue
        raise RuntimeError(f"dovecot exited with {server.proc.returncode}: {_startup_output(server)}")
    raise TimeoutError(f"dovecot did not greet on {HOST}:{port} ({last}): {_startup_output(server)}")


def _startup_output(server: DovecotServer) -> str:
    out = server.root / "log" / "master.out"
    return (out.read_text(errors="replace") if out.exists() else "") + server.log_text()[-4000:]


def stop(server: DovecotServer, wait: float = 20.0) -> None:
    """SIGTERM the master (it stops its children), wait, then SIGKILL whatever is left, by PID."""
    if server.proc is None:
        return
    members = server.processes()
    with contextlib.suppress(ProcessLookupError):
        server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=wait)
    for pid in members[1:]:
        _reap(pid, deadline=time.monotonic() + wait)
    server.proc = None


def _reap(pid: int, deadline: float) -> None:
    """Wait (on a pidfd, no polling) for a child of the master to end; SIGKILL it at the deadline."""
    try:
        handle = os.pidfd_open(pid)
    except OSError:  # already gone
        return
    try:
        if not select.select([handle], [], [], max(0.0, deadline - time.monotonic()))[0]:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(handle, signal.SIGKILL)
    finally:
        os.close(handle)


@contextlib.contextmanager
def running_dovecot(root: Path | None = None, *, users: Mapping[str, str] | None = None,
                    extra: str = "", timeout: float = 30.0) -> Iterator[DovecotServer]:
    """A started private Dovecot, stopped (and its directory removed, if we made it) at the end."""
    made = root is None
    base = Path(tempfile.mkdtemp(prefix="hardmail-dovecot-")) if root is None else root
    server = prepare(base, users, extra)
    try:
        start(server, timeout)
        yield server
    finally:
        stop(server)
        if made:
            shutil.rmtree(base, ignore_errors=True)
