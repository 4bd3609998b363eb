"""The audit's SMTP probes against a real, throwaway Postfix (Debian's ``postfix`` package).

Each test starts its own Postfix master in the foreground (``master -c DIR``: its PID is ours) on
a free loopback port, with main.cf/master.cf, queue_directory and data_directory under the test's
tmp directory; nothing under /etc/postfix is read for configuration or written. It is stopped with
``postfix -c DIR stop`` and then by PID. Mail for postmaster@example.test is accepted and thrown
away by the ``discard`` transport. ``mynetworks`` leaves out loopback, so that the probe is an
untrusted client (and ``smtpd_forbid_bare_newline_exclusions = $mynetworks`` does not exempt it).

A default Postfix 3.7 (``smtpd_forbid_bare_newline = no``) ends DATA at a bare-LF end of data:
the audit must find smuggling there and name the setting; with ``yes`` it must not.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hardmail.msgauth.dns import StaticResolver
from hardmail.ops.audit import probe_relay, probe_smuggling, probe_starttls
from hardmail.ops.audit.context import AuditContext, ProbeTarget
from hardmail.ops.audit.findings import Finding, Severity
from support.cli_process import cli_env, run_cli
from support.live import server_config
from support.weak_smtp import write_self_signed

DAEMON_DIR = Path("/usr/lib/postfix/sbin")
POSTFIX = Path("/usr/sbin/postfix")

pytestmark = pytest.mark.skipif(not (DAEMON_DIR / "master").exists() or os.geteuid() != 0,
                                reason="needs Debian's postfix package (scripts/test installs it) and root")

MASTER_CF = """\
127.0.0.1:{port} inet n - n - 10 smtpd
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
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
discard   unix  - - n - - discard
error     unix  - - n - - error
retry     unix  - - n - - error
postlog   unix-dgram n - n - 1 postlogd
"""


def main_cf(root: Path, cert: Path, key: Path, forbid_bare_newline: str) -> str:
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
        "myhostname": "postfix.example.test",
        "mydomain": "example.test",
        "mydestination": "",
        "inet_interfaces": "127.0.0.1",
        "inet_protocols": "ipv4",
        "mynetworks": "192.0.2.1/32",  # not loopback: the probe is an untrusted client
        "alias_maps": "",
        "alias_database": "",
        "local_recipient_maps": "",
        "virtual_mailbox_domains": "example.test",
        "virtual_mailbox_maps": "inline:{ postmaster@example.test=ok }",
        "virtual_transport": "discard:",
        "default_transport": "discard:",
        "relay_transport": "discard:",
        "local_transport": "discard:",
        "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
        "smtpd_recipient_restrictions": "reject_unlisted_recipient",
        "smtpd_forbid_bare_newline": forbid_bare_newline,
        "smtpd_tls_security_level": "may",
        "smtpd_tls_cert_file": cert,
        "smtpd_tls_key_file": key,
        "smtpd_tls_session_cache_database": "",
        "smtpd_sasl_auth_enable": "no",
        "smtp_dns_support_level": "disabled",
        "smtputf8_enable": "no",
        "biff": "no",
        "import_environment": "MAIL_CONFIG MAIL_DEBUG LANG TZ",
    }
    return "".join(f"{name} = {value}\n" for name, value in settings.items())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThrowawayPostfix:
    def __init__(self, root: Path, forbid_bare_newline: str) -> None:
        self.root = root
        self.etc = root / "etc"
        self.port = free_port()
        self.forbid = forbid_bare_newline
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "MAIL_CONFIG": str(self.etc), "LANG": "C"}

    def prepare(self) -> None:
        owner = pwd.getpwnam("postfix")
        self.root.mkdir(parents=True)
        for directory in (*reversed(self.root.parents[:3]), self.root):
            if directory.is_relative_to(Path("/tmp")) and directory != Path("/tmp"):
                directory.chmod(0o755)  # the postfix user must reach its queue and data directories
        self.etc.mkdir(parents=True)
        cert, key = write_self_signed(self.etc, "postfix.example.test")
        (self.etc / "main.cf").write_text(main_cf(self.root, cert, key, self.forbid))
        (self.etc / "master.cf").write_text(MASTER_CF.format(port=self.port))
        for sub in ("spool", "data"):
            (self.root / sub).mkdir()
        os.chown(self.root / "data", owner.pw_uid, owner.pw_gid)
        (self.root / "maillog").touch()
        os.chown(self.root / "maillog", owner.pw_uid, owner.pw_gid)
        check = subprocess.run([str(POSTFIX), "-c", str(self.etc), "check"], capture_output=True, text=True,
                               timeout=60, env=self.env)
        assert check.returncode == 0, check.stdout + check.stderr

    def start(self) -> None:
        self.prepare()
        log = (self.root / "master.out").open("ab")
        self.proc = subprocess.Popen([str(DAEMON_DIR / "master"), "-c", str(self.etc)], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env)
        log.close()
        self._wait_for_greeting(60.0)

    def _wait_for_greeting(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, f"Postfix exited:\n{self.log_tail()}"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                    if sock.recv(512).startswith(b"220"):
                        sock.sendall(b"QUIT\r\n")
                        return
            except OSError:
                pass
            time.sleep(0.05)  # polling for the listener, bounded by the deadline
        raise AssertionError(f"no greeting from Postfix within {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        subprocess.run([str(POSTFIX), "-c", str(self.etc), "stop"], capture_output=True, timeout=60, env=self.env)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # by PID: the master we started
            self.proc.wait(timeout=10)
        self.proc = None

    def log_tail(self) -> str:
        parts = []
        for name in ("maillog", "master.out"):
            path = self.root / name
            if path.exists():
                parts += path.read_text(errors="replace").splitlines()[-30:]
        return "\n".join(parts)


def _master_children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@contextmanager
def throwaway_postfix(root: Path, forbid_bare_newline: str) -> Iterator[ThrowawayPostfix]:
    """A started Postfix; on the way out it is stopped and none of its processes is left."""
    server = ThrowawayPostfix(root, forbid_bare_newline)
    master, workers = 0, []
    try:
        server.start()
        assert server.proc is not None
        master = server.proc.pid
        yield server
        workers = _master_children(master)
    finally:
        server.stop()
    assert master and not _running(master), "the Postfix master is still running"
    deadline = time.monotonic() + 30
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)  # the master has told its workers to exit; bounded by the deadline
    assert not [pid for pid in workers if _running(pid)], "a Postfix worker is still running"
    shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(params=["no", "yes", "reject"])
def postfix(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ThrowawayPostfix]:
    with throwaway_postfix(tmp_path / "postfix", request.param) as server:
        yield server


@pytest.fixture
def default_postfix(tmp_path: Path) -> Iterator[ThrowawayPostfix]:
    with throwaway_postfix(tmp_path / "postfix", "no") as server:
        yield server


def context(postfix: ThrowawayPostfix, tmp_path: Path) -> AuditContext:
    return AuditContext(config=server_config(tmp_path / "unused"), resolver=StaticResolver({}),
                        targets=[ProbeTarget("smtp", "127.0.0.1", postfix.port)], own_server=False, store=None,
                        local_domain="example.test", timeout=10.0)


def by_id(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


async def test_smuggling_against_postfix(postfix: ThrowawayPostfix, tmp_path: Path) -> None:
    found = by_id(await probe_smuggling.run(context(postfix, tmp_path)))
    data, bare_lf = found["smuggling.data"], found["smuggling.bare_lf"]
    if postfix.forbid == "no":
        assert data.severity is Severity.CRITICAL, data
        assert "smtpd_forbid_bare_newline = yes" in data.fix
        assert any("<LF>.<CR><LF>" in line for line in data.details), data.details
        return
    assert data.severity is Severity.OK, data
    assert found["smuggling.bdat"].severity in (Severity.OK, Severity.INFO), found["smuggling.bdat"]
    if postfix.forbid == "yes":  # "normalize": a bare LF is a line end, never an end of data
        assert bare_lf.severity is Severity.MEDIUM, bare_lf
        assert "smtpd_forbid_bare_newline = reject" in bare_lf.fix
    else:  # "reject": DATA with a bare LF is refused (Postfix 3.7 still takes one inside a BDAT chunk)
        assert not [line for line in bare_lf.details if line.startswith("DATA")], bare_lf.details


async def test_relay_and_starttls_against_postfix(default_postfix: ThrowawayPostfix, tmp_path: Path) -> None:
    ctx = context(default_postfix, tmp_path)
    relay = by_id(await probe_relay.run(ctx))
    assert relay["relay.open"].severity is Severity.OK, relay["relay.open"]
    # Postfix resolves percent hacks, quoted and bang-path forms for a virtual domain as unknown users
    assert relay["relay.disguised"].severity is Severity.OK, relay["relay.disguised"]
    starttls = by_id(await probe_starttls.run(ctx))
    assert starttls["starttls.injection"].severity is Severity.OK, starttls["starttls.injection"]


def test_the_audit_command_against_postfix_finds_the_smuggling_acceptance(
        postfix: ThrowawayPostfix, tmp_path: Path) -> None:
    """`hardmail audit --target` as an admin runs it, without --domain: the domain comes from the
    greeting (postfix.example.test, then example.test, whose postmaster Postfix accepts)."""
    result = run_cli("audit", "--target", f"127.0.0.1:{postfix.port}", "--json", "--no-record",
                     "--data-dir", str(tmp_path / "unused"), cwd=tmp_path, env=cli_env())
    report = json.loads(result.stdout)
    data = {f["check"]: f for f in report["findings"]}["smuggling.data"]
    assert "postmaster@example.test" in result.stderr
    if postfix.forbid == "no":
        assert result.returncode == 1, result.stderr
        assert data["severity"] == "critical" and "smtpd_forbid_bare_newline = yes" in data["fix"]
    else:
        assert data["severity"] == "ok", data
