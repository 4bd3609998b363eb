"""IMAP behaviour an IMAP compliance suite checks, where hardmail once differed from Dovecot:
keyword case (RFC 9051 2.3.2), bare-LF APPEND, sequence numbers beyond EXISTS, CONDSTORE/QRESYNC
details, \\Recent and subscriptions. Each test works in a folder of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.imap import RawImap, message, raw
from support.live import ALICE, ServerThread, running_server, server_config


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with running_server(server_config(tmp_path_factory.mktemp("imap") / "data")) as live:
        yield live


def _append(client: RawImap, folder: str, body: bytes, flags: str = "") -> bytes:
    extra = f" {flags}" if flags else ""
    _, done = client.command(f"APPEND {folder}{extra} {{{len(body)}+}}\r\n".encode() + body)
    assert b" OK " in done, done
    return done


def _folder(client: RawImap, name: str, count: int = 1, flags: str = "", enable: str = "IMAP4rev2") -> None:
    assert client.login().startswith(b"t1 OK")
    if enable:
        assert b" OK" in client.command(f"ENABLE {enable}")[1]
    assert b" OK" in client.command(f"CREATE {name}")[1]
    for n in range(count):
        _append(client, name, message(f"m{n}"), flags)
    assert b" OK" in client.command(f"SELECT {name}")[1]


def test_keywords_compare_ignoring_case(server: ServerThread) -> None:
    with raw(server) as client:
        _folder(client, "Keywords", 2, "(Custom_1)")
        untagged, done = client.command("STORE 1 +FLAGS (CUSTOM_1 Other)")
        assert b" OK" in done and untagged == [b"* 1 FETCH (FLAGS (Custom_1 Other))\r\n"]
        untagged, _ = client.command("SEARCH KEYWORD custom_1")
        assert untagged[0].endswith(b") ALL 1:2\r\n")
        untagged, _ = client.command("STORE 1:2 -FLAGS (custom_1)")
        assert untagged == [b"* 1 FETCH (FLAGS (Other))\r\n", b"* 2 FETCH (FLAGS ())\r\n"]
        client.command("STORE 2 +FLAGS (oTHER)")
        untagged, _ = client.command("FETCH 1:2 (FLAGS)")
        assert untagged == [b"* 1 FETCH (FLAGS (Other))\r\n", b"* 2 FETCH (FLAGS (Other))\r\n"]
        untagged, _ = client.command("SEARCH UNKEYWORD OTHER")
        assert untagged[0].endswith(b'")\r\n')  # no ALL: nothing matched


BARE_LF = b"From: bob@example.test\nSubject: bare\nContent-Type: text/plain\n\nline one\nline two\n"
AS_CRLF = BARE_LF.replace(b"\n", b"\r\n")


def _served(client: RawImap) -> bytes:
    untagged, done = client.command("FETCH 1 (RFC822.SIZE BODYSTRUCTURE BODY.PEEK[] BODY.PEEK[HEADER])")
    assert b" OK" in done
    return b"".join(untagged)


def _expected_served() -> list[bytes]:
    header = AS_CRLF[:AS_CRLF.index(b"\r\n\r\n") + 4]
    return [b"RFC822.SIZE %d " % len(AS_CRLF), b' NIL NIL "7bit" 20 2 ', b"BODY[] {%d}\r\n" % len(AS_CRLF) + AS_CRLF,
            b"BODY[HEADER] {%d}\r\n" % len(header) + header]


def test_bare_lf_append_is_stored_with_crlf(server: ServerThread) -> None:
    with raw(server) as client:
        assert client.login().startswith(b"t1 OK")
        client.command("CREATE BareLf")
        _append(client, "BareLf", BARE_LF)
        client.command("SELECT BareLf")
        served = _served(client)
    for part in _expected_served():
        assert part in served, (part, served)


def test_bare_lf_file_on_disk_is_served_with_crlf(server: ServerThread) -> None:
    with raw(server) as client:
        assert client.login().startswith(b"t1 OK")
        client.command("CREATE OnDisk")
        folder = server.server.context.acceptor.maildir.mailbox_path(ALICE) / ".OnDisk"  # type: ignore[union-attr]
        (folder / "new" / "1700000000.M1P1Q1.other.host").write_bytes(BARE_LF)
        client.command("SELECT OnDisk")
        served = _served(client)
    for part in _expected_served():
        assert part in served, (part, served)


def test_sequence_numbers_beyond_exists_are_bad_uids_never_fail(server: ServerThread) -> None:
    with raw(server) as client:
        _folder(client, "Beyond", 2)
        for text in ("FETCH 3 (FLAGS)", "FETCH 1:3 (FLAGS)", "STORE 5 +FLAGS (\\Seen)", "COPY 2:9 INBOX"):
            untagged, done = client.command(text)
            assert b" BAD " in done and untagged == [], (text, done)
        for text in ("UID FETCH 3:9 (FLAGS)", "UID STORE 7 +FLAGS (\\Seen)", "UID COPY 9 INBOX"):
            untagged, done = client.command(text)
            assert b" OK " in done and untagged == [], (text, done)


def test_condstore_store_reports_only_what_changed(server: ServerThread) -> None:
    with raw(server) as client:
        _folder(client, "Condstore", 2, "(\\Seen)", enable="IMAP4rev2 CONDSTORE")
        untagged, done = client.command("STORE 1 +FLAGS (\\Seen)")
        assert b" OK " in done and untagged == []  # nothing changed: no FETCH, as Dovecot
        untagged, _ = client.command("STORE 1 +FLAGS.SILENT (\\Flagged)")
        assert len(untagged) == 1 and untagged[0].startswith(b"* 1 FETCH (MODSEQ (")
        untagged, _ = client.command("UID STORE 2 +FLAGS.SILENT (\\Flagged)")
        assert len(untagged) == 1 and untagged[0].startswith(b"* 2 FETCH (UID 2 MODSEQ (")
        untagged, _ = client.command("STORE 1:2 -FLAGS (\\Answered)")
        assert untagged == []


def test_qresync_expunge_ok_carries_highestmodseq(server: ServerThread) -> None:
    with raw(server) as client:
        _folder(client, "Qresync", 2, "(\\Deleted)", enable="IMAP4rev2 QRESYNC")
        untagged, done = client.command("EXPUNGE")
        assert untagged == [b"* VANISHED 1:2\r\n"] and b" OK [HIGHESTMODSEQ " in done
        untagged, _ = client.command("STATUS Qresync (HIGHESTMODSEQ)")
        assert done.split(b"HIGHESTMODSEQ ")[1].split(b"]")[0] in untagged[0]


def _recent_lines(untagged: list[bytes]) -> list[bytes]:
    return [line for line in untagged if line.endswith(b" RECENT\r\n") or line.endswith(b" EXISTS\r\n")]


def test_recent_goes_to_exactly_one_session(server: ServerThread) -> None:
    with raw(server) as first, raw(server) as second, raw(server) as other:
        _folder(first, "Recent", 0, enable="")
        assert second.login().startswith(b"t1 OK")
        second.command("SELECT Recent")
        assert other.login().startswith(b"t1 OK")
        _append(other, "Recent", message("new"))
        untagged, _ = other.command("STATUS Recent (RECENT MESSAGES)")
        assert untagged == [b'* STATUS Recent (RECENT 1 MESSAGES 1)\r\n']
        untagged, _ = other.command("EXAMINE Recent")  # shows, does not claim
        assert b"* 1 RECENT\r\n" in untagged
        other.command("CLOSE")
        assert _recent_lines(first.command("NOOP")[0]) == [b"* 1 EXISTS\r\n", b"* 1 RECENT\r\n"]
        assert _recent_lines(second.command("NOOP")[0]) == [b"* 1 EXISTS\r\n", b"* 0 RECENT\r\n"]
        assert other.command("STATUS Recent (RECENT)")[0] == [b'* STATUS Recent (RECENT 0)\r\n']
        untagged, _ = first.command("FETCH 1 (FLAGS)")
        assert untagged == [b"* 1 FETCH (FLAGS (\\Recent))\r\n"]
        untagged, _ = first.command("STORE 1 +FLAGS.SILENT (\\Deleted)")
        untagged, _ = first.command("EXPUNGE")
        assert untagged == [b"* 1 EXPUNGE\r\n", b"* 0 RECENT\r\n"]


def test_delete_keeps_the_subscription(server: ServerThread) -> None:
    with raw(server) as client:
        assert client.login().startswith(b"t1 OK")
        client.command("CREATE Subscribed")
        assert b" OK " in client.command("SUBSCRIBE Subscribed")[1]
        assert b" OK " in client.command("DELETE Subscribed")[1]
        untagged, _ = client.command('LSUB "" "Subscribed"')
        assert untagged == [b'* LSUB () "/" Subscribed\r\n']
        untagged, _ = client.command('LIST (SUBSCRIBED) "" "Subscribed"')
        assert untagged == [b'* LIST (\\NonExistent \\Subscribed) "/" Subscribed\r\n']
        _, done = client.command("SUBSCRIBE NeverCreated")  # RFC 9051 6.3.9: MAY refuse (as Dovecot)
        assert b" NO [NONEXISTENT]" in done


def test_fetch_shows_flags_only_when_it_set_seen(server: ServerThread) -> None:
    with raw(server) as client:
        _folder(client, "SeenNow", 1)
        untagged, _ = client.command("FETCH 1 (BODY[HEADER])")
        assert untagged[-1].endswith(b" FLAGS (\\Seen))\r\n")
        untagged, _ = client.command("FETCH 1 (BODY[HEADER])")  # already \Seen: no FLAGS, as Dovecot
        assert b"FLAGS" not in b"".join(untagged)
