"""``hardmail serve`` start-up failures, for real (issue 11, 17): each says in one line which address
(or directory) and why, with the one hint for that cause, exits non-zero, and prints no traceback.

No test here sends any traffic: a bind that fails opens nothing. The unprivileged-user cases run the
server as ``nobody`` through ``setpriv`` and need root (skipped otherwise, or arranged with chmod).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli_process import EPHEMERAL_LISTENERS, cli_env, run_cli
from support.unprivileged import AS_NOBODY, require_setpriv

MAILBOX_LISTENERS = EPHEMERAL_LISTENERS[6:]  # imap, imaps, pop3, pop3s on ephemeral ports
IN_USE_HINT = "address already in use (is another program, or another hardmail, using that port?)"


def _serve(*listen: str, data: Path, workers: str = "1",
           prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    args = ["--listen-submission", "127.0.0.1:0", "--listen-submissions", "127.0.0.1:0", *MAILBOX_LISTENERS, *listen]
    return run_cli("serve", *args, "-d", str(data), cwd=data.parent, prefix=prefix,
                   env=cli_env(HARDMAIL_SERVER__WORKERS=workers))


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one human line on standard error besides "created data directory" (JSON log lines aside)."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "hardmail is running" not in result.stdout
    lines = [line for line in result.stderr.splitlines()
             if not line.startswith(("{", "created data directory "))]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_named_with_its_cause(tmp_path: Path, workers: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _serve("--listen-smtp", f"127.0.0.1:{port}", data=tmp_path / "data", workers=workers)
    assert _error_line(result) == f"error: cannot listen on 127.0.0.1:{port}: {IN_USE_HINT}"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_address_of_another_machine_is_named_with_its_cause(tmp_path: Path, workers: str) -> None:
    # 192.0.2.1 (TEST-NET-1) is on no interface here: the bind fails locally, nothing is sent.
    result = _serve("--listen-smtp", "192.0.2.1:25", data=tmp_path / "data", workers=workers)
    assert _error_line(result) == "error: cannot listen on 192.0.2.1:25: that address is not on this machine"


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory ``nobody`` can enter (pytest's tmp_path is private to its user)."""
    path = Path(tempfile.mkdtemp(prefix="hardmail-startup-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _require_setpriv() -> None:
    require_setpriv("to run the server as an unprivileged user")


def _unprivileged_port_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        return 1024


def test_a_privileged_port_as_an_unprivileged_user(shared_dir: Path) -> None:
    _require_setpriv()
    if _unprivileged_port_start() <= 25:
        pytest.skip("this machine lets every user bind port 25 (net.ipv4.ip_unprivileged_port_start)")
    data = shared_dir / "data"
    data.mkdir(mode=0o700)
    nobody = pwd.getpwnam("nobody")
    os.chown(data, nobody.pw_uid, nobody.pw_gid)
    # Port 25 is never bound: the kernel refuses the unprivileged bind before it looks at the port.
    result = _serve("--listen-smtp", "127.0.0.1:25", data=data, prefix=AS_NOBODY)
    assert _error_line(result) == ("error: cannot listen on 127.0.0.1:25: permission denied "
                                   "(ports below 1024 need root or CAP_NET_BIND_SERVICE)")


@pytest.mark.parametrize("command", ["serve", "domain add"])
def test_a_data_dir_the_user_cannot_write(shared_dir: Path, command: str) -> None:
    data = shared_dir / "data"
    data.mkdir(mode=0o755)
    if os.geteuid() == 0:
        _require_setpriv()
        prefix, user = AS_NOBODY, "nobody"
    else:
        data.chmod(0o555)
        prefix, user = (), pwd.getpwuid(os.geteuid()).pw_name
    if command == "serve":
        result = _serve("--listen-smtp", "127.0.0.1:0", data=data, prefix=prefix)
    else:
        result = run_cli("domain", "add", "example.org", "-d", str(data), cwd=shared_dir, prefix=prefix)
    assert _error_line(result) == f"error: data directory {data} is not writable by user {user}"
    assert list(data.iterdir()) == []


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize(("content", "cause"), [
    (None, "cannot read certificate file {cert}: No such file or directory"),
    ("not a certificate\n", "certificate file {cert} holds no PEM certificate"),
])
def test_a_certificate_that_cannot_be_loaded_stops_the_start(tmp_path: Path, workers: str, content: str | None,
                                                              cause: str) -> None:
    """Before: one worker printed a traceback; with workers, each crashed and was restarted forever."""
    cert, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    if content is not None:
        cert.write_text(content)
        key.write_text(content)
    env = cli_env(HARDMAIL_SERVER__WORKERS=workers, HARDMAIL_TLS__CERT_FILE=str(cert),
                  HARDMAIL_TLS__KEY_FILE=str(key))
    result = run_cli("serve", *EPHEMERAL_LISTENERS, "-d", str(tmp_path / "data"), cwd=tmp_path, env=env,
                     timeout=60)
    assert _error_line(result).startswith(f"error: cannot start: {cause.format(cert=cert)}")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_damaged_server_key_stops_the_start_before_it_serves(tmp_path: Path, workers: str) -> None:
    """Before: the server logged server.start, then died with a traceback when the queue runner
    read the key."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    key = data / "server.key"
    key.write_text("not a key\n")
    key.chmod(0o600)
    result = run_cli("serve", *EPHEMERAL_LISTENERS, "-d", str(data), cwd=tmp_path,
                     env=cli_env(HARDMAIL_SERVER__WORKERS=workers), timeout=60)
    assert result.returncode == 1
    assert _error_line(result) == (f"error: cannot start: {key} does not hold a valid server key; restore it from a "
                                   "backup (secrets encrypted with the old key cannot be read without it)")
    assert '"event": "server.start"' not in result.stderr and "Traceback" not in result.stderr
