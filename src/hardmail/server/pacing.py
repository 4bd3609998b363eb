"""The pace of one connection's commands (IMAP and POP3 ``commands_per_second``).

A token bucket (bursts of twice the rate): a client over it is slowed down, each command waiting
for its token, as Stalwart and Dovecot's anvil penalties do; no command is refused for it, so a
correct but busy client (a first sync) only goes slower, and a flood costs the server one timer
per command and no memory (no command is read while one waits).
"""

from __future__ import annotations


class CommandPacer:
    """``per_second`` commands (0: no limit); a wait is at most ``max_delay`` seconds when given."""

    def __init__(self, per_second: float, burst: float | None = None, max_delay: float | None = None) -> None:
        self.rate = per_second
        self.burst = burst if burst is not None else max(1.0, 2 * per_second)
        self.max_delay = max_delay
        self.tokens = self.burst
        self.at: float | None = None

    def delay(self, now: float) -> float:
        """Seconds the next command waits (0 within the pace); takes its token."""
        if self.rate <= 0:
            return 0.0
        if self.at is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        self.tokens -= 1.0
        if self.tokens >= 0:
            return 0.0
        wait = -self.tokens / self.rate
        return wait if self.max_delay is None else min(self.max_delay, wait)
