"""The private Dovecot of the differential tests (support/dovecot.py) on its own, with Python's
imaplib and poplib: it starts on free loopback ports, takes logins only over TLS, stores into
the Maildir++ layout hardmail uses, and leaves no process behind."""

from __future__ import annotations

import imaplib
import poplib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.dovecot import SOURCE_ADDRESS, DovecotServer, running_dovecot, unavailable_reason
from support.imap_diff import ImapWire, Target

USER, PASSWORD = "alice@example.test", "correct horse battery staple"
MESSAGE = b"From: Alice <alice@example.test>\r\nSubject: fixture\r\n\r\nHello, Dovecot.\r\n"
pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))


@pytest.fixture
def dovecot() -> Iterator[DovecotServer]:
    with running_dovecot() as server:
        yield server


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_imap_login_select_append_fetch_over_tls(dovecot: DovecotServer) -> None:
    client = imaplib.IMAP4_SSL(dovecot.host, dovecot.ports.imaps, ssl_context=dovecot.client_context())
    try:
        assert client.login(USER, PASSWORD)[0] == "OK"
        assert client.select("INBOX") == ("OK", [b"0"])
        status, data = client.append("INBOX", "(\\Flagged)", None, MESSAGE)
        assert status == "OK" and b"APPENDUID" in data[0]
        status, fetched = client.fetch("1", "(FLAGS BODY.PEEK[])")
        assert status == "OK"
        first: Any = fetched[0]
        assert first[1] == MESSAGE and b"\\Flagged" in first[0]
        folders: list[Any] = client.list()[1]
        assert any(b"\\Sent" in line for line in folders)
        assert client.create("Work/Projects")[0] == "OK"
    finally:
        client.logout()
    new = dovecot.maildir(USER) / "new"
    cur = dovecot.maildir(USER) / "cur"
    assert [p.read_bytes() for p in [*new.iterdir(), *cur.iterdir()]] == [MESSAGE]
    assert (dovecot.maildir(USER) / ".Work.Projects" / "cur").is_dir()  # Maildir++: "/" becomes "."


def test_starttls_port_refuses_login_before_tls(dovecot: DovecotServer) -> None:
    # Dovecot counts 127.0.0.1 -> 127.0.0.1 as secured, so the client connects from 127.0.0.2
    target = Target("dovecot", dovecot.host, dovecot.ports.imap, dovecot.ports.imaps, dovecot.client_context(),
                    USER, PASSWORD, SOURCE_ADDRESS)
    wire = ImapWire(target, "imap")
    try:
        assert "LOGINDISABLED" in [str(v) for v in wire.command("a", b"CAPABILITY")[0].values]
        refused = wire.command("b", f'LOGIN "{USER}" "{PASSWORD}"'.encode())[-1]
        assert refused.status == "NO" and refused.code == ["PRIVACYREQUIRED"]
        assert wire.command("c", b"STARTTLS")[-1].status == "OK"
        wire.upgrade()
        assert wire.command("d", f'LOGIN "{USER}" "{PASSWORD}"'.encode())[-1].status == "OK"
    finally:
        wire.close()


def test_pop3_sees_the_appended_message(dovecot: DovecotServer) -> None:
    client = imaplib.IMAP4_SSL(dovecot.host, dovecot.ports.imaps, ssl_context=dovecot.client_context())
    client.login(USER, PASSWORD)
    client.append("INBOX", None, None, MESSAGE)
    client.logout()
    pop = poplib.POP3_SSL(dovecot.host, dovecot.ports.pop3s, context=dovecot.client_context())
    try:
        pop.user(USER)
        pop.pass_(PASSWORD)
        assert pop.stat() == (1, len(MESSAGE))
        uidl = pop.uidl()[1][0].split()[1]
        assert len(uidl) == 16  # pop3_uidl_format = %08Xu%08Xv
        assert b"\r\n".join(pop.retr(1)[1]) + b"\r\n" == MESSAGE
    finally:
        pop.quit()
    plain = poplib.POP3(dovecot.host, dovecot.ports.pop3)
    plain.stls(dovecot.client_context())
    plain.user(USER)
    plain.pass_(PASSWORD)
    assert plain.stat()[0] == 1
    plain.quit()


def test_stops_every_process_and_removes_its_directory() -> None:
    with running_dovecot() as server:
        members = server.processes()
        root = server.root
        assert len(members) > 1 and all(_alive(pid) for pid in members)
    assert not any(_alive(pid) for pid in members)
    assert not root.exists()


def test_touches_no_system_file(dovecot: DovecotServer) -> None:
    config = (dovecot.root / "dovecot.conf").read_text()
    assert "/etc/" not in config and "/var/" not in config and "/run/" not in config.replace(f"{dovecot.root}/run", "")
    assert (dovecot.root / "run" / "master.pid").read_text().strip() == str(dovecot.pid)
