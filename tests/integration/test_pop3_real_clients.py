"""Independent clients: a message submitted with swaks is read back byte for byte over POP3, and
Debian's fetchmail fetches over STLS (port 110 kind) and implicit TLS (995 kind) with certificate
checking against a test CA, keeps track of what it saw with UIDL across runs, and deletes with
DELE + QUIT.
"""

from __future__ import annotations

import os
import poplib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from support.live import ALICE, ALICE_PASSWORD, HOSTNAME, ServerThread, require_program
from support.pop3 import deliver, message, pop3_server, pop3s_login


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def live(tmp_path: Path, ca: trustme.CA) -> Iterator[ServerThread]:
    cert = ca.issue_cert(HOSTNAME, "127.0.0.1", common_name=HOSTNAME)  # fetchmail looks at the CN
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    for pem in cert.cert_chain_pems[1:]:
        cert_file.write_bytes(cert_file.read_bytes() + pem.bytes())
    cert.private_key_pem.write_to_path(str(key_file))
    tls = {"cert_file": str(cert_file), "key_file": str(key_file)}
    with pop3_server(tmp_path / "data", messages=2, tls=tls) as server:
        yield server


def test_swaks_submission_read_back_byte_for_byte(live: ServerThread) -> None:
    body = "First line\r\n.a line with a leading dot\r\n\r\nlast line"
    result = subprocess.run(
        [require_program("swaks"), "--server", "127.0.0.1", "--port", str(live.address("submission")[1]), "--tls",
         "--auth", "PLAIN", "--auth-user", ALICE, "--auth-password", ALICE_PASSWORD, "--from", ALICE, "--to", ALICE,
         "--h-Subject", "over pop3", "--body", body, "--timeout", "30"],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout
    client = pop3s_login(live)
    count, _ = client.stat()
    _response, lines, _octets = client.retr(count)
    retrieved = b"".join(line + b"\r\n" for line in lines)
    client.quit()
    inbox = live.server.context.acceptor.maildir.mailbox_path(ALICE)  # type: ignore[union-attr]
    stored = [p.read_bytes() for p in [*inbox.glob("cur/*"), *inbox.glob("new/*")] if b"over pop3" in p.read_bytes()]
    assert stored == [retrieved]
    assert body.encode() + b"\r\n" in retrieved and b"Subject: over pop3\r\n" in retrieved


def _fetchmail(tmp_path: Path, live: ServerThread, ca: trustme.CA, kind: str, keep: bool) -> tuple[int, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    ca_file = home / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    out = home / "mbox"
    port = live.address(kind)[1]
    ssl = "ssl" if kind == "pop3s" else "sslproto tls1.2+"
    rc = home / "fetchmailrc"
    rc.write_text(
        f'set no syslog\npoll 127.0.0.1 service {port} protocol POP3 uidl auth password\n'
        f'  user "{ALICE}" there with password "{ALICE_PASSWORD}" is "tester" here\n'
        f'  {ssl} sslcertck sslcertfile "{ca_file}" sslcommonname "{HOSTNAME}"\n'
        f'  {"keep" if keep else "no keep fetchall"} mda "cat >> {out}"\n')
    rc.chmod(0o600)
    env = {**os.environ, "HOME": str(home), "FETCHMAILHOME": str(home), "FETCHMAILUSER": "tester"}
    result = subprocess.run([require_program("fetchmail"), "-f", str(rc), "-v"],
                            capture_output=True, text=True, timeout=120, check=False, env=env)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize("kind", ["pop3", "pop3s"])
def test_fetchmail_fetches_keeps_track_with_uidl_and_deletes(
        live: ServerThread, ca: trustme.CA, tmp_path: Path, kind: str) -> None:
    code, log = _fetchmail(tmp_path, live, ca, kind, keep=True)
    assert code == 0, log
    mbox = (tmp_path / "home" / "mbox").read_bytes()
    assert b"Subject: message 1" in mbox and b"Subject: message 2" in mbox
    if kind == "pop3":
        assert "STLS" in log
    code, log = _fetchmail(tmp_path, live, ca, kind, keep=True)
    assert code == 1, log  # PS_NOMAIL: UIDL told fetchmail it has seen both
    deliver(live, ALICE, message(3))
    code, log = _fetchmail(tmp_path, live, ca, kind, keep=False)
    assert code == 0, log
    assert (tmp_path / "home" / "mbox").read_bytes().count(b"Subject: message 3") == 1
    client = pop3s_login(live)
    assert client.stat()[0] == 0  # no keep: fetchall fetched and deleted all three at QUIT
    client.quit()


def test_fetchmail_refuses_a_certificate_it_cannot_check(live: ServerThread, tmp_path: Path) -> None:
    code, log = _fetchmail(tmp_path, live, trustme.CA(), "pop3s", keep=True)
    assert code not in (0, 1), log
    client: poplib.POP3_SSL = pop3s_login(live)
    assert client.stat()[0] == 2
    client.quit()
