"""The IMAP server over real sockets: capabilities in each state, TLS before any password, logins
and their failures, and the basic commands, with raw lines and with Python's imaplib."""

from __future__ import annotations

import base64
import imaplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.imap import RawImap, imaps, message, raw
from support.live import ALICE, ALICE_PASSWORD, ServerThread, client_tls_context, running_server, server_config

PRE_LOGIN_PLAIN = b"IMAP4rev2 IMAP4rev1 STARTTLS LOGINDISABLED LITERAL- SASL-IR ID ENABLE"
PRE_LOGIN_TLS = b"IMAP4rev2 IMAP4rev1 LITERAL- SASL-IR ID ENABLE AUTH=PLAIN AUTH=SCRAM-SHA-256"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with running_server(server_config(tmp_path_factory.mktemp("imap") / "data")) as live:
        yield live


def test_capabilities_before_tls_offer_no_login(server: ServerThread) -> None:
    client = RawImap(server.address("imap"))
    try:
        greeting = client.line()
        assert greeting.startswith(b"* OK [CAPABILITY " + PRE_LOGIN_PLAIN + b"]")
        untagged, done = client.command("CAPABILITY")
        assert untagged == [b"* CAPABILITY " + PRE_LOGIN_PLAIN + b"\r\n"]
        assert done.startswith(b"t1 OK")
        _, done = client.command(f'LOGIN "{ALICE}" "{ALICE_PASSWORD}"')
        assert done.startswith(b"t2 NO [PRIVACYREQUIRED]")
        plain = base64.b64encode(f"\0{ALICE}\0{ALICE_PASSWORD}".encode()).decode()
        _, done = client.command(f"AUTHENTICATE PLAIN {plain}")
        assert done.startswith(b"t3 NO [PRIVACYREQUIRED]")
        _, done = client.command("STARTTLS")
        assert done.startswith(b"t4 OK")
        client.starttls()
        untagged, done = client.command("CAPABILITY")
        assert untagged == [b"* CAPABILITY " + PRE_LOGIN_TLS + b"\r\n"]
        _, done = client.command(f'LOGIN "{ALICE}" "{ALICE_PASSWORD}"')
        assert done.startswith(b"t6 OK [CAPABILITY IMAP4rev2 IMAP4rev1 IDLE UIDPLUS MOVE")
        assert b" APPENDLIMIT=" in done and b"LITERAL+" in done and b"AUTH=" not in done
    finally:
        client.close()


def test_starttls_drops_commands_sent_with_it(server: ServerThread) -> None:
    client = RawImap(server.address("imap"))
    try:
        client.line()
        client.send(b"a STARTTLS\r\nb CAPABILITY\r\n")  # b must not be answered (CVE-2011-0411 class)
        assert client.line().startswith(b"a OK")
        client.starttls()
        untagged, done = client.command("NOOP", tag="c")
        assert untagged == [] and done.startswith(b"c OK")
    finally:
        client.close()


def test_imaplib_starttls_and_imaps_login(server: ServerThread) -> None:
    host, port = server.address("imap")
    with imaplib.IMAP4(host, port, timeout=20) as client:
        client.starttls(ssl_context=client_tls_context())
        assert client.login(ALICE, ALICE_PASSWORD)[0] == "OK"
        status, _data = client.select("INBOX")
        assert status == "OK"
        client.logout()
    with imaps(server) as client:
        assert client.list()[0] == "OK"


def test_failures_look_alike(server: ServerThread) -> None:
    with raw(server) as client:
        _, wrong = client.command(f'LOGIN "{ALICE}" "not the password at all"')
        _, unknown = client.command('LOGIN "nobody@example.test" "not the password at all"')
    assert wrong == b"t1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    assert unknown == b"t2 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"


def test_authenticate_plain_with_initial_response_and_cancel(server: ServerThread) -> None:
    plain = base64.b64encode(f"\0{ALICE}\0{ALICE_PASSWORD}".encode()).decode()
    with raw(server) as client:
        client.send(b"c1 AUTHENTICATE PLAIN\r\n")
        assert client.line() == b"+ \r\n"
        client.send(b"*\r\n")
        assert client.line().startswith(b"c1 BAD")
        _, done = client.command(f"AUTHENTICATE PLAIN {plain}")
        assert done.startswith(b"t1 OK [CAPABILITY IMAP4rev2")


def test_malformed_commands_get_bad(server: ServerThread) -> None:
    with raw(server) as client:
        for text in ("FROB", "SELECT", "LOGIN onlyone", 'LOGIN "unterminated'):
            _, done = client.command(text)
            assert b" BAD " in done, (text, done)
        assert client.login().startswith(b"t5 OK")
        for text in ("FETCH", "FETCH 1:* (FLAGS)", "SELECT INBOX (FOO)", "STORE x +FLAGS (\\Seen)"):
            _, done = client.command(text)
            assert b" BAD " in done, (text, done)


def test_append_select_fetch_round_trip(server: ServerThread) -> None:
    body = message("Round trip")
    with imaps(server) as client:
        status, data = client.append("INBOX", "(\\Flagged)", None, body)
        assert status == "OK" and b"[APPENDUID " in data[0]
        uid = int(data[0].split()[2].rstrip(b"]"))
        client.select("INBOX")
        status, data = client.uid("FETCH", str(uid), "(FLAGS BODY.PEEK[] RFC822.SIZE)")
        assert status == "OK"
        assert data[0][1] == body
        assert b"\\Flagged" in data[0][0] and b"RFC822.SIZE %d" % len(body) in data[0][0] + data[1]
        status, data = client.uid("FETCH", str(uid), "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert data[0][1] == b"Subject: Round trip\r\n\r\n"


def test_folders_and_special_use(server: ServerThread) -> None:
    with imaps(server) as client:
        status, lines = client.list()
        names = b"\n".join(lines)
        for name, use in ((b"Sent", b"\\Sent"), (b"Trash", b"\\Trash"), (b"Drafts", b"\\Drafts")):
            assert use in names and name in names
        assert client.create("Projects/2026")[0] == "OK"
        assert client.create("Projects/2026")[0] == "NO"
        assert client.rename("Projects/2026", "Projects/Done")[0] == "OK"
        status, lines = client.list('""', "Projects/*")
        assert any(b'"Projects/Done"' in line or b"Projects/Done" in line for line in lines)
        assert client.delete("Projects/Done")[0] == "OK"
        status, data = client.status("INBOX", "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN SIZE)")
        assert status == "OK" and b"UIDVALIDITY" in data[0]


def test_store_copy_move_expunge(server: ServerThread) -> None:
    with imaps(server) as client:
        client.create("Keep")
        for n in range(3):
            client.append("INBOX", None, None, message(f"m{n}"))
        client.select("INBOX")
        status, data = client.search(None, "ALL")
        numbers = data[0].split()
        assert len(numbers) >= 3
        status, data = client.store(numbers[-1], "+FLAGS", "(\\Deleted)")
        assert status == "OK" and b"\\Deleted" in data[0]
        status, data = client.copy(numbers[-2], "Keep")
        assert status == "OK"
        status, data = client.uid("MOVE", client.fetch(numbers[-3], "(UID)")[1][0].split()[2].rstrip(b")"), "Keep")
        assert status == "OK"
        status, data = client.expunge()
        assert status == "OK"
        status, data = client.copy("1", "Nowhere")
        assert (status == "NO" and b"TRYCREATE" in str(client.response("TRYCREATE")).encode()) or status == "NO"
        status, data = client.select("Keep")
        assert int(data[0]) == 2


def test_literal_limits(server: ServerThread, tmp_path: Path) -> None:
    with raw(server) as client:
        assert client.login().startswith(b"t1 OK")
        limit = server.config.imap.max_literal
        client.send(b"a APPEND INBOX {%d}\r\n" % (server.config.smtp.max_message_size + 1))
        assert client.line().startswith(b"a NO [TOOBIG]") or limit
        client.send(b"b LOGOUT\r\n")
        assert client.line().startswith(b"* BYE")
