"""TLS policy on the wire (1.2+ only), certificate reload on a live server, and phase timeouts."""

from __future__ import annotations

import socket
import ssl
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.live import RawClient, ServerThread, running_server, server_config


def _handshake(address: tuple[str, int], context: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(address, timeout=20)
    return context.wrap_socket(raw)


def _client_context(maximum: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():  # old versions on purpose: the server must refuse them
        warnings.simplefilter("ignore", DeprecationWarning)
        context.maximum_version = maximum
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("ALL:@SECLEVEL=0")
    return context


def test_tls_below_1_2_is_refused_on_465(live_server: ServerThread) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _handshake(live_server.address("submissions"), _client_context(ssl.TLSVersion.TLSv1_1))


def test_tls_1_1_client_can_connect_when_an_admin_allows_it(tmp_path: Path) -> None:
    """Control for the test above: this client really speaks TLS 1.1, so the refusal is the server's."""
    config = server_config(tmp_path / "data", tls={"min_version": "TLSv1", "ciphers": "ALL:@SECLEVEL=0"})
    with running_server(config) as server, \
            _handshake(server.address("submissions"), _client_context(ssl.TLSVersion.TLSv1_1)) as tls:
        assert tls.version() == "TLSv1.1"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_1_2_and_1_3_work(live_server: ServerThread, version: ssl.TLSVersion) -> None:
    with _handshake(live_server.address("submissions"), _client_context(version)) as tls:
        assert tls.version() == version.name.replace("_", ".").replace("TLSv1.", "TLSv1.")
        assert tls.recv(1024).startswith(b"220 ")


def _fingerprint(sock: ssl.SSLSocket) -> bytes:
    der = sock.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_reload_swaps_certificate_without_dropping_sessions(live_server: ServerThread) -> None:
    context = _client_context(ssl.TLSVersion.TLSv1_3)
    before = _handshake(live_server.address("submissions"), context)
    assert before.recv(1024).startswith(b"220 ")
    old = _fingerprint(before)
    assert live_server.server is not None
    tls_dir = live_server.config.tls_dir
    for path in tls_dir.iterdir():  # force a fresh self-signed certificate, then reload
        path.unlink()
    live_server.server.context.tls.ensure_certificate()
    live_server.server.context.tls.reload()
    with _handshake(live_server.address("submissions"), context) as after:
        assert _fingerprint(after) != old
    before.sendall(b"NOOP\r\n")
    assert before.recv(1024).startswith(b"250 ")  # the old session is still alive
    before.close()


@pytest.fixture
def impatient_server(tmp_path: Path) -> Iterator[ServerThread]:
    config = server_config(tmp_path / "data", smtp={"timeouts": {"command": 0.3, "data_block": 0.3}})
    with running_server(config) as server:
        yield server


def test_idle_session_gets_421_on_timeout(impatient_server: ServerThread) -> None:
    client = RawClient(impatient_server.address("smtp"))
    assert client.read_reply()[0] == 220
    code, lines = client.read_reply()  # the server speaks first when the client idles
    assert (code, lines[0][:5]) == (421, "4.4.2")
    assert client.closed_by_server()


def test_stalled_data_gets_421_on_timeout(impatient_server: ServerThread) -> None:
    client = RawClient(impatient_server.address("smtp"))
    client.read_reply()
    client.command("EHLO client.example")
    client.command("MAIL FROM:<a@elsewhere.example>")
    client.command("RCPT TO:<bob@example.test>")
    assert client.command("DATA")[0] == 354
    client.send(b"Subject: half a message\r\n")
    code, _ = client.read_reply()
    assert code == 421
    assert impatient_server.all_mail_files() == []
