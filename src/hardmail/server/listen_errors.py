"""Why a listening socket could not be opened, in one line that names the address and the cause.

Binding fails for a few distinct reasons, each with its own remedy; the admin gets the one that
applies ("permission denied (ports below 1024 need root ...)", "that address is not on this
machine", "address already in use ..."), never one guess for all of them.
"""

from __future__ import annotations

import errno
import socket

PRIVILEGED_PORTS = 1024  # Linux's default net.ipv4.ip_unprivileged_port_start

_CAUSES = {
    errno.EADDRNOTAVAIL: "that address is not on this machine",
    errno.EADDRINUSE: "address already in use (is another program, or another hardmail, using that port?)",
}


class ListenError(OSError):
    """A listener could not be opened; ``str()`` is the whole one-line explanation."""

    def __init__(self, host: str, port: int, cause: OSError) -> None:
        super().__init__(cause.errno, describe_listen_error(host, port, cause))
        self.host = host
        self.port = port
        self.cause = cause

    def __str__(self) -> str:
        return str(self.strerror)


def show_address(host: str, port: int) -> str:
    """``0.0.0.0:25``, ``[::1]:587``, ``*:25`` for every interface."""
    shown = host or "*"
    return f"[{shown}]:{port}" if ":" in shown else f"{shown}:{port}"


def describe_listen_error(host: str, port: int, exc: OSError) -> str:
    """``cannot listen on HOST:PORT: <cause, with the one hint for that cause>``."""
    return f"cannot listen on {show_address(host, port)}: {_cause(port, exc)}"


def _cause(port: int, exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return f"the host name does not resolve to an address of this machine ({exc.strerror or exc})"
    if exc.errno in (errno.EACCES, errno.EPERM):
        if 0 < port < PRIVILEGED_PORTS:
            return "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        return "permission denied"
    if exc.errno in _CAUSES:
        return _CAUSES[exc.errno]
    return (exc.strerror or str(exc)).lower()
