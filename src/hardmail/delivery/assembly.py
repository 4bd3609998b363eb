"""Building the outbound delivery services from the configuration (used by app.py and the CLI).

The queue and the notice sender are all a process needs to accept mail and to steer the queue;
the runner adds DNS, routing, TLS policy and the SMTP client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken

from hardmail.auth.server_key import server_fernet
from hardmail.config.schema import Config, parse_host_port
from hardmail.core.clock import Clock
from hardmail.delivery.local_index import DeliveryIndexer
from hardmail.delivery.maildir import MaildirStore
from hardmail.delivery.notices import LocalNotices, NoticeSender
from hardmail.delivery.outbound import OutboundDeliverer, OutboundSettings
from hardmail.delivery.queue import DeliveryQueue
from hardmail.delivery.routing import AddressGuard, Router
from hardmail.delivery.runner import DeliveryRunner
from hardmail.delivery.smtp_client import Timeouts
from hardmail.delivery.spool import OutboundSpool
from hardmail.delivery.tls_policy import MtaSts, PolicyFetcher
from hardmail.msgauth.dns import DnsPythonResolver, Resolver
from hardmail.store.ports import Store


@dataclass
class DeliveryServices:
    queue: DeliveryQueue
    notices: NoticeSender


def build_services(config: Config, store: Store, maildir: MaildirStore, clock: Clock,
                   indexer: DeliveryIndexer | None = None) -> DeliveryServices:
    """``indexer``: records local notices in the mailbox index (the server gives one)."""
    queue = DeliveryQueue(store.queue, OutboundSpool(config.spool_dir), clock)
    local = LocalNotices(store, maildir, config.smtp.plus_separator, indexer=indexer)
    notices = NoticeSender(queue, config.server.hostname, clock, full_limit=config.queue.bounce_full_message_limit,
                           local=local)
    return DeliveryServices(queue, notices)


def decrypter(fernet: Fernet) -> Callable[[str], str]:
    """Route password tokens → passwords; a token the key cannot open raises ValueError (no details)."""
    def decrypt(token: str) -> str:
        try:
            return fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise ValueError("the route password cannot be decrypted") from None

    return decrypt


def runner_owner(config: Config) -> str:
    """Stable across restarts of this node, so a restart releases the claims a crash left behind."""
    return f"{config.server.hostname}:{config.data_dir.resolve()}"[:200]


def build_runner(config: Config, store: Store, services: DeliveryServices, clock: Clock,
                 resolver: Resolver | None = None) -> DeliveryRunner:
    resolver = resolver or DnsPythonResolver(config.dns.nameservers, config.dns.port, config.dns.timeout)
    out = config.outbound
    fetcher = PolicyFetcher(resolver, out.ca_file, out.mta_sts_port, out.connect_timeout)
    settings = OutboundSettings(
        helo_name=out.helo_name or config.server.hostname,
        timeouts=Timeouts(out.connect_timeout, out.command_timeout, out.data_timeout),
        ca_file=out.ca_file, mta_sts=out.mta_sts, dane=out.dane,
    )
    deliverer = OutboundDeliverer(settings, resolver, MtaSts(resolver, fetcher, clock, store),
                                  decrypter(server_fernet(config.data_dir)))
    guard = AddressGuard(out.refuse_non_public, out.refuse_private, own_addresses(config))
    return DeliveryRunner(services.queue, Router(resolver, out.port, guard=guard), deliverer, services.notices,
                          config.queue, clock, runner_owner(config))


def own_addresses(config: Config) -> frozenset[str]:
    """The IP addresses our listeners are bound to (mail to them would loop back to us)."""
    listen = config.listen
    found: set[str] = set()
    for value in (*listen.smtp, *listen.submission, *listen.submissions):
        host = parse_host_port(value)[0]
        if host == "localhost":
            found.update(("127.0.0.1", "::1"))
        elif host not in ("", "*") and not ipaddress.ip_address(host).is_unspecified:
            found.add(str(ipaddress.ip_address(host)))
    return frozenset(found)
