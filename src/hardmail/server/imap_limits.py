"""IMAP limits kept in the server process: the pace of one connection's commands and the IMAP
connections open per client address and per account.

The pace is a token bucket (``commands_per_second``, bursts of twice that): a client over it is
slowed down, each command waiting for its token, as Stalwart and Dovecot's anvil penalties do; no
command is refused for it, so a correct but busy client (a first sync) only goes slower, and a
flood costs the server one timer per command and no memory (no command is read while one waits).

The connection counts are per process (``server.workers`` processes each count their own): the
limits are documented that way in ``docs/imap.md``.
"""

from __future__ import annotations

from collections import Counter

from hardmail.server.context import ServerContext

MAX_DELAY = 5.0  # seconds one command may wait for its turn


class CommandPacer:
    def __init__(self, per_second: float, burst: float | None = None) -> None:
        self.rate = per_second
        self.burst = burst if burst is not None else max(1.0, 2 * per_second)
        self.tokens = self.burst
        self.at: float | None = None

    def delay(self, now: float) -> float:
        """Seconds the next command waits (0 within the pace); takes its token."""
        if self.at is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        self.tokens -= 1.0
        if self.tokens >= 0:
            return 0.0
        return min(MAX_DELAY, -self.tokens / self.rate)


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
