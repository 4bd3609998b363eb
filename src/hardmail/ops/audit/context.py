"""What every audit check is given: the configuration, the store, the resolver, the clock and the
listeners to probe.

For the server's own audit (``hardmail audit``) the targets are its own listeners (from the running
server's status files, over loopback or the configured addresses), ``store`` is its database and
``login`` a short-lived probe account. For ``hardmail audit --target HOST:PORT`` the targets are
the named listeners of another server, ``store`` is None and checks of our own data and
configuration do not run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hardmail.config.schema import Config
from hardmail.core.clock import Clock, SystemClock

if TYPE_CHECKING:
    from hardmail.msgauth.dns import Resolver
    from hardmail.store.ports import Store

IMPLICIT_TLS_KINDS = frozenset({"submissions", "imaps", "pop3s"})
PROTOCOL_OF = {"smtp": "smtp", "submission": "smtp", "submissions": "smtp",
               "imap": "imap", "imaps": "imap", "pop3": "pop3", "pop3s": "pop3"}
# The usual port of each listener kind, for a ``--target HOST:PORT`` whose kind is not named
KIND_OF_PORT = {25: "smtp", 587: "submission", 465: "submissions", 143: "imap", 993: "imaps",
                110: "pop3", 995: "pop3s"}


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """One listener to probe."""

    kind: str  # "smtp", "submission", "submissions", "imap", "imaps", "pop3" or "pop3s"
    host: str
    port: int

    @property
    def implicit_tls(self) -> bool:
        return self.kind in IMPLICIT_TLS_KINDS

    @property
    def protocol(self) -> str:
        """"smtp", "imap" or "pop3"."""
        return PROTOCOL_OF[self.kind]

    @property
    def label(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ProbeLogin:
    """Credentials the probes may log in with (authenticated relay and spoofing probes)."""

    address: str
    password: str = field(repr=False)
    # An address in the target's domains that is not the login's own: the spoofing probes send as it
    foreign_address: str = ""


@dataclass
class AuditContext:
    config: Config
    resolver: Resolver
    targets: Sequence[ProbeTarget] = ()
    own_server: bool = True  # the targets are this configuration's own listeners
    store: Store | None = None  # None when auditing another server (--target)
    clock: Clock = field(default_factory=SystemClock)
    login: ProbeLogin | None = None
    local_domain: str | None = None  # a domain the target accepts mail for (relay and spoofing probes)
    external_domain: str = "example.com"  # a domain the target must not relay to (probes stop at RCPT)
    # Source addresses the probes may connect from; the banned-source probe needs a second one
    source_ips: Sequence[str] = ("127.0.0.1",)
    timeout: float = 10.0  # seconds for each network step of a probe
    running: bool = True  # False when no server answers: probes report INFO, other checks still run

    def targets_of(self, *kinds: str) -> list[ProbeTarget]:
        """The targets of the given listener kinds (every target when none are named)."""
        return [t for t in self.targets if not kinds or t.kind in kinds]

    def targets_speaking(self, protocol: str) -> list[ProbeTarget]:
        """The targets that speak ``protocol`` ("smtp", "imap", "pop3")."""
        return [t for t in self.targets if t.protocol == protocol]
