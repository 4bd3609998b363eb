"""PROXY protocol on a listener that enables it: the real client address is used (bans apply to
it), and only the configured proxies may send the header."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardmail.policy.bans import BanDecision
from hardmail.proto.proxy import V2_SIGNATURE
from hardmail.server.access_hook import access_hook_of
from support.live import ServerThread, running_server, server_config

PROXY_LISTENER = "127.0.0.3:0"
PROXY_ADDRESS = "127.0.0.4"


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[ServerThread]:
    config = server_config(
        tmp_path / "data",
        listen={"smtp": [PROXY_LISTENER]},
        access={"proxy_protocol": {"listeners": [PROXY_LISTENER], "trusted_proxies": [f"{PROXY_ADDRESS}/32"]}},
    )
    with running_server(config) as server:
        yield server


def _connect(server: ServerThread, source: str, header: bytes) -> socket.socket:
    sock = socket.create_connection(server.address("smtp"), timeout=20, source_address=(source, 0))
    sock.sendall(header)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    sock.close()
    return data


def v2_header(client: str, port: int) -> bytes:
    payload = socket.inet_aton(client) + socket.inet_aton("127.0.0.3") + struct.pack("!HH", port, 25)
    return V2_SIGNATURE + struct.pack("!BBH", 0x21, 0x11, len(payload)) + payload


@pytest.mark.parametrize("version", [1, 2])
def test_bans_apply_to_the_client_named_by_the_proxy(
    proxied: ServerThread, version: int, caplog: pytest.LogCaptureFixture
) -> None:
    assert proxied.server is not None
    hook = access_hook_of(proxied.server.context)
    assert hook is not None
    proxied.run(hook.ban(BanDecision("203.0.113.9", "admin", "test"), "admin"))

    def header(client: str) -> bytes:
        return f"PROXY TCP4 {client} 127.0.0.3 40000 25\r\n".encode() if version == 1 else v2_header(client, 40000)

    banned = _read_all(_connect(proxied, PROXY_ADDRESS, header("203.0.113.9") + b"QUIT\r\n"))
    assert banned.startswith(b"421 4.7.0")
    fine = _read_all(_connect(proxied, PROXY_ADDRESS, header("203.0.113.10") + b"EHLO c.example\r\nQUIT\r\n"))
    assert fine.startswith(b"220 ") and b"221 2.0.0" in fine
    assert any('"event": "smtp.connect"' in r.message and '"peer": "203.0.113.10"' in r.message
               for r in caplog.records)


def test_header_from_an_untrusted_address_is_dropped(proxied: ServerThread) -> None:
    sock = _connect(proxied, "127.0.0.1", b"PROXY TCP4 203.0.113.10 127.0.0.3 40000 25\r\nQUIT\r\n")
    assert _read_all(sock) == b""


def test_missing_header_is_dropped(proxied: ServerThread) -> None:
    assert _read_all(_connect(proxied, PROXY_ADDRESS, b"EHLO c.example\r\n")) == b""
