"""IMAP limits kept in the server process: the IMAP connections open per client address and per
account (the pace of one connection's commands is :mod:`hardmail.server.pacing`).

The connection counts are per process (``server.workers`` processes each count their own): the
limits are documented that way in ``docs/imap.md``.
"""

from __future__ import annotations

from collections import Counter

from hardmail.server.context import ServerContext


class ConnectionCounts:
    """Open IMAP connections by client address and sessions by account, in this process."""

    def __init__(self) -> None:
        self.by_ip: Counter[str] = Counter()
        self.by_account: Counter[str] = Counter()

    def open_ip(self, ip: str, limit: int) -> bool:
        if self.by_ip[ip] >= limit:
            return False
        self.by_ip[ip] += 1
        return True

    def close_ip(self, ip: str) -> None:
        self.by_ip[ip] -= 1
        if self.by_ip[ip] <= 0:
            del self.by_ip[ip]

    def open_account(self, account: str, limit: int) -> bool:
        if self.by_account[account] >= limit:
            return False
        self.by_account[account] += 1
        return True

    def close_account(self, account: str) -> None:
        self.by_account[account] -= 1
        if self.by_account[account] <= 0:
            del self.by_account[account]


_COUNTS: dict[int, ConnectionCounts] = {}  # by id() of the ServerContext (a dataclass: not hashable)


def connection_counts(ctx: ServerContext) -> ConnectionCounts:
    """The counts of the server ``ctx`` belongs to (one per server; tests run several)."""
    found = _COUNTS.get(id(ctx))
    if found is None:
        found = _COUNTS[id(ctx)] = ConnectionCounts()
    return found
