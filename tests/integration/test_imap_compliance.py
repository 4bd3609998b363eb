"""IMAP behaviour an IMAP compliance suite checks, where hardmail once differed from Dovecot:
keyword case (RFC 9051 2.3.2), bare-LF APPEND, sequence numbers beyond EXISTS, CONDSTORE/QRESYNC
details, \\Recent and subscriptions. Each test works in a folder of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.imap import RawImap, message, raw
from support.live import ServerThread, running_server, server_config


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
