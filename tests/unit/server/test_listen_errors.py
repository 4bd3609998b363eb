"""The one-line explanation of a listener that cannot be opened: the address and one hint per cause."""

from __future__ import annotations

import errno
import socket

import pytest

from hardmail.server.listen_errors import ListenError, describe_listen_error


@pytest.mark.parametrize(("host", "port", "code", "expected"), [
    ("0.0.0.0", 25, errno.EACCES,
     "cannot listen on 0.0.0.0:25: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"),
    ("::", 587, errno.EACCES,
     "cannot listen on [::]:587: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"),
    ("127.0.0.1", 2525, errno.EACCES, "cannot listen on 127.0.0.1:2525: permission denied"),
    ("192.0.2.1", 25, errno.EADDRNOTAVAIL, "cannot listen on 192.0.2.1:25: that address is not on this machine"),
    ("127.0.0.1", 2525, errno.EADDRINUSE,
     "cannot listen on 127.0.0.1:2525: address already in use (is another program, or another hardmail, "
     "using that port?)"),
    ("", 25, errno.EMFILE, "cannot listen on *:25: too many open files"),
])
def test_each_cause_has_its_own_hint(host: str, port: int, code: int, expected: str) -> None:
    cause = OSError(code, f"error while attempting to bind on address ('{host}', {port}): {errno.errorcode[code]}")
    cause.strerror = {errno.EMFILE: "Too many open files"}.get(code, cause.strerror)
    assert describe_listen_error(host, port, cause) == expected
    error = ListenError(host, port, cause)
    assert str(error) == expected and error.errno == code and error.cause is cause


def test_an_unresolvable_host_name() -> None:
    cause = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert describe_listen_error("mx.invalid", 25, cause) == (
        "cannot listen on mx.invalid:25: the host name does not resolve to an address of this machine "
        "(Name or service not known)")
