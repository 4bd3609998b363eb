"""POP3 over real sockets with Python's poplib (STLS on the pop3 listener, implicit TLS on pop3s).

The maildrop is alice's INBOX: sizes in LIST are the octets RETR sends, RETR gives the stored file
byte for byte, UIDL is Dovecot's ``%08Xu%08Xv`` of the INBOX UID (the IMAP UID) and is the same in
every session, DELE removes only at QUIT (a dropped connection keeps everything), a second session
on the same INBOX gets ``-ERR [IN-USE]``, and RETR does not set \\Seen.
"""

from __future__ import annotations

import poplib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.live import ALICE, ALICE_PASSWORD, ServerThread, client_tls_context
from support.pop3 import deliver, message, pop3_server, pop3s_login, stls_client


@pytest.fixture
def live(tmp_path: Path) -> Iterator[ServerThread]:
    with pop3_server(tmp_path / "data", messages=3) as server:
        yield server


def _files(server: ServerThread) -> list[bytes]:
    """alice's INBOX files in UID order."""
    inbox = server.server.context.acceptor.maildir.mailbox_path(ALICE)  # type: ignore[union-attr]
    by_name = {p.name.partition(":")[0]: p for p in [*inbox.glob("cur/*"), *inbox.glob("new/*")]}
    return [by_name[m.name].read_bytes() for m in _snapshot(server).messages]  # type: ignore[attr-defined]


def _snapshot(server: ServerThread) -> object:
    assert server.server is not None
    return server.run(server.server.context.mailbox_store().snapshot(ALICE, "INBOX"))


def _retr(client: poplib.POP3, number: int) -> bytes:
    _response, lines, octets = client.retr(number)
    data = b"".join(line + b"\r\n" for line in lines)
    assert octets == len(data)  # poplib counts the octets without the stuffing
    return data


def test_stls_login_list_and_retr_byte_for_byte(live: ServerThread) -> None:
    client = stls_client(live)
    assert "USER" in client.capa()
    client.user(ALICE)
    client.pass_(ALICE_PASSWORD)
    count, total = client.stat()
    files = _files(live)
    assert count == 3 and total == sum(len(f) for f in files)
    listing = [line.split() for line in client.list()[1]]
    assert [int(size) for _, size in listing] == [len(f) for f in files]
    for number, stored in enumerate(files, 1):
        assert _retr(client, number) == stored
    assert client.quit().startswith(b"+OK")


def test_capa_before_tls_has_no_user_and_login_is_refused(live: ServerThread) -> None:
    client = poplib.POP3(*live.address("pop3"), timeout=30)
    capabilities = client.capa()
    assert "STLS" in capabilities and "USER" not in capabilities
    with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\].*STLS"):
        client.user(ALICE)
    client.quit()


def test_pop3s_top_and_uidl_match_the_inbox_uids(live: ServerThread) -> None:
    client = pop3s_login(live)
    snapshot = _snapshot(live)
    expected = [f"{m.uid:08X}{snapshot.info.uidvalidity:08X}".encode() for m in snapshot.messages]  # type: ignore[attr-defined]
    uidls = [line.split()[1] for line in client.uidl()[1]]
    assert uidls == expected
    _response, lines, _octets = client.top(2, 0)
    header = _files(live)[1].split(b"\r\n\r\n")[0]
    assert b"\r\n".join(lines) == header + b"\r\n"
    _response, lines, _octets = client.top(2, 1)
    assert lines[-1] == b"Body of message 2."
    client.quit()
    again = pop3s_login(live)
    assert [line.split()[1] for line in again.uidl()[1]] == expected
    again.quit()


def test_dele_applies_only_at_quit(live: ServerThread) -> None:
    client = pop3s_login(live)
    client.dele(1)
    client.dele(3)
    client.sock.shutdown(socket.SHUT_RDWR)  # dropped without QUIT: nothing is removed
    client.sock.close()
    client = pop3s_login(live)
    assert client.stat()[0] == 3
    uidls = [line.split()[1] for line in client.uidl()[1]]
    client.dele(1)
    client.dele(3)
    client.rset()
    client.dele(2)
    assert client.quit() == b"+OK Logging out, messages deleted."
    assert len(_files(live)) == 2
    client = pop3s_login(live)
    assert [line.split()[1] for line in client.uidl()[1]] == [uidls[0], uidls[2]]
    client.quit()


def test_second_session_is_refused_in_use_until_the_first_ends(live: ServerThread) -> None:
    first = pop3s_login(live)
    with pytest.raises(poplib.error_proto, match=r"-ERR \[IN-USE\]"):
        pop3s_login(live)
    first.quit()
    pop3s_login(live).quit()


def test_retr_does_not_set_seen_and_new_mail_waits_for_the_next_session(live: ServerThread) -> None:
    client = pop3s_login(live)
    _retr(client, 1)
    deliver(live, ALICE, message(4))
    assert client.stat()[0] == 3  # the maildrop is the INBOX at login (RFC 1939 8)
    client.quit()
    assert all("\\Seen" not in m.flags for m in _snapshot(live).messages)  # type: ignore[attr-defined]
    client = pop3s_login(live)
    assert client.stat()[0] == 4
    client.quit()


def test_dot_stuffing_and_bare_lf_file(live: ServerThread) -> None:
    deliver(live, ALICE, message(4, b".leading dot\r\n..two dots\r\n.\r\n"))
    inbox = live.server.context.acceptor.maildir.mailbox_path(ALICE)  # type: ignore[union-attr]
    (inbox / "new" / "1.M1P1Q1.other-program").write_bytes(b"Subject: lf\n\nline\n.dot\n")
    client = pop3s_login(live)
    sizes = [int(line.split()[1]) for line in client.list()[1]]
    bodies = [_retr(client, number) for number in range(1, len(sizes) + 1)]
    assert [len(body) for body in bodies] == sizes
    lf_file = b"Subject: lf\r\n\r\nline\r\n.dot\r\n"
    assert lf_file in bodies
    assert any(b.endswith(b".leading dot\r\n..two dots\r\n.\r\n") for b in bodies)
    client.quit()


def test_wrong_password_and_unknown_user_get_the_same_answer(live: ServerThread) -> None:
    answers = []
    for user, password in ((ALICE, "wrong password here"), ("nobody@example.test", ALICE_PASSWORD)):
        client = poplib.POP3_SSL(*live.address("pop3s"), context=client_tls_context(), timeout=30)
        client.user(user)
        with pytest.raises(poplib.error_proto) as failed:
            client.pass_(password)
        answers.append(failed.value.args[0])
        client.quit()
    assert answers == [b"-ERR [AUTH] Authentication failed."] * 2


def test_a_message_expunged_by_another_client_meanwhile(live: ServerThread) -> None:
    client = pop3s_login(live)
    first = _snapshot(live).messages[0]  # type: ignore[attr-defined]
    store = live.server.context.mailbox_store()  # type: ignore[union-attr]
    live.run(store.store_flags(ALICE, "INBOX", [first.uid], "add", ["\\Deleted"]))
    live.run(store.expunge(ALICE, "INBOX", [first.uid]))  # as an IMAP client would
    with pytest.raises(poplib.error_proto, match="removed by another session"):
        client.retr(1)
    assert len(_retr(client, 2)) > 0
    client.dele(1)
    assert client.quit() == b"+OK Logging out, messages deleted."
    assert len(_snapshot(live).messages) == 2  # type: ignore[attr-defined]
