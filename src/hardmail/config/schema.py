"""The typed configuration schema: every setting documented, defaulted and validated once.

Static settings (listeners, TLS, limits, storage) live here and in ``hardmail.toml``; dynamic data
(domains, accounts, aliases) lives in the database. ``hardmail.config.load`` turns a TOML file,
``HARDMAIL_SECTION__KEY`` environment variables and command-line overrides into a :class:`Config`.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hardmail.config.schema_security import AuditSection, ImpersonationSection, NoticesSection
from hardmail.ops.backup.schedule import parse_schedule, resolve_timezone


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_host_port(value: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` → (host, port); raises ValueError with what is allowed."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{value!r} is not HOST:PORT (for example 127.0.0.1:2525 or [::1]:2525)")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not 0 <= int(port) < 65536:  # 0 asks the system for a free port (tests)
        raise ValueError(f"port {port} is outside 0-65535")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host not in ("localhost", "*", ""):
            raise ValueError(f"{host!r} is not an IP address (use 0.0.0.0, ::, or an address)") from None
    return host, int(port)


class ServerSection(Section):
    hostname: str = Field("localhost", description="Name in the greeting, EHLO and Received headers.")
    data_dir: Path = Field(Path("hardmail-data"), description="Where mail, spool, keys and the SQLite database live.")
    postmaster: str = Field("", description="Where mail to the bare <Postmaster> goes (RFC 5321 4.5.1); empty: postmaster@ the first hosted domain.")
    workers: int = Field(0, ge=0, le=64, description="Worker processes sharing the listeners (`hardmail serve`); 0: one per CPU core, at most 4.")


class ListenSection(Section):
    smtp: list[str] = Field(["127.0.0.1:2525"], description="MX listeners (port 25 in production); STARTTLS offered.")
    submission: list[str] = Field(["127.0.0.1:2587"], description="Submission listeners (587): STARTTLS, then AUTH, required.")
    submissions: list[str] = Field(["127.0.0.1:2465"], description="Submissions listeners (465): implicit TLS, AUTH required.")
    imap: list[str] = Field(["127.0.0.1:2143"], description="IMAP listeners (143): STARTTLS, no login before it (LOGINDISABLED).")
    imaps: list[str] = Field(["127.0.0.1:2993"], description="IMAPS listeners (993): implicit TLS.")
    pop3: list[str] = Field(["127.0.0.1:2110"], description="POP3 listeners (110): STLS, no login before it.")
    pop3s: list[str] = Field(["127.0.0.1:2995"], description="POP3S listeners (995): implicit TLS.")

    @field_validator("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s", mode="before")
    @classmethod
    def _one_address_is_a_list(cls, value: object) -> object:
        """``smtp = "0.0.0.0:25"`` (what a new admin writes) means the list of that one address."""
        return [value] if isinstance(value, str) else value

    @field_validator("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")
    @classmethod
    def _check_addresses(cls, values: list[str]) -> list[str]:
        for value in values:
            parse_host_port(value)
        return values


class CertificateEntry(Section):
    hostnames: list[str] = Field(description="Host names (SNI) this certificate serves.")
    cert_file: Path = Field(description="PEM certificate chain.")
    key_file: Path = Field(description="PEM private key.")


class TlsSection(Section):
    cert_file: Path | None = Field(None, description="PEM certificate chain; a self-signed one is generated in data_dir/tls when unset.")
    key_file: Path | None = Field(None, description="PEM private key for cert_file.")
    min_version: Literal["TLSv1.2", "TLSv1.3", "TLSv1", "TLSv1.1"] = Field("TLSv1.2", description="Oldest TLS version accepted; below TLSv1.2 is insecure.")
    ciphers: str = Field(
        "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!MD5:!DSS",
        description="OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are always the modern set).",
    )
    certificates: list[CertificateEntry] = Field([], description="Extra certificates chosen by SNI host name.")


class TimeoutSection(Section):
    # RFC 5321 4.5.3.2 gives minimum server timeouts.
    command: float = Field(300.0, gt=0, description="Seconds to wait for the next command (RFC 5321 4.5.3.2.7: 5 minutes).")
    data_block: float = Field(180.0, gt=0, description="Seconds to wait for each block of message data (RFC 5321 4.5.3.2.6 is 3 minutes on the client side).")
    tls_handshake: float = Field(30.0, gt=0, description="Seconds for a TLS handshake to complete.")
    session: float = Field(3600.0, gt=0, description="Total seconds one session may last.")


class SmtpSection(Section):
    max_message_size: int = Field(50 * 1024 * 1024, gt=0, description="Largest message in bytes, advertised in SIZE and enforced while data streams in.")
    max_recipients: int = Field(100, gt=0, description="Recipients per message (RFC 5321 4.5.3.1.8 requires at least 100).")
    max_commands: int = Field(10_000, gt=0, description="Commands per session before it is closed.")
    max_bad_commands: int = Field(20, gt=0, description="Unknown or malformed commands before the session is closed.")
    max_line_length: int = Field(1000, ge=512, description="Longest command or text line in octets including CRLF (RFC 5321 4.5.3.1.4 and 4.5.3.1.6): a longer command gets 500 5.5.6; a message (DATA or BDAT) with a longer text line is refused at its end with 554 5.6.0.")
    max_header_size: int = Field(256 * 1024, ge=16 * 1024, description="Largest header block of a message in bytes (held in memory while the rest streams to disk); a message whose header block is larger gets 552 5.3.4.")
    max_bytes_in_flight: int = Field(512 * 1024 * 1024, gt=0, description="Bytes of messages one server process may be receiving at once (on disk in data_dir/incoming); over it a new DATA or BDAT gets 452 4.3.1 before its content is read, and a message that gets more content stores no more and gets 452 4.3.1 at its end.")
    auth_on_mx: bool = Field(False, description="Offer AUTH on the MX listener (inside TLS only). Off by default.")
    allow_plaintext_auth: bool = Field(False, description="INSECURE: offer AUTH outside TLS. Never enable in production.")
    plus_separator: str = Field("+", max_length=1, description="Sub-address separator (user+tag@domain); empty disables plus addressing.")
    reveal_disabled_recipients: bool = Field(False, description="Answer RCPT to a disabled account with 550 5.2.1 (mailbox disabled). Off by default: it answers exactly like an unknown address (catch-all included), so probes cannot tell disabled accounts from absent ones.")
    timeouts: TimeoutSection = TimeoutSection()


class RelaySection(Section):
    trusted_networks: list[str] = Field([], description="Networks allowed to relay without AUTH. Covering the whole Internet makes an open relay.")

    @field_validator("trusted_networks")
    @classmethod
    def _check_networks(cls, values: list[str]) -> list[str]:
        for value in values:
            ipaddress.ip_network(value, strict=False)
        return values


class StorageSection(Section):
    url: str = Field("", description="SQLAlchemy URL; empty means SQLite at data_dir/hardmail.db. PostgreSQL: postgresql+asyncpg://user@host/db")
    cache_seconds: float = Field(5.0, ge=0, description="Seconds the server remembers domain, account and alias look-ups (also \"not found\"); admin changes made by another process (the CLI) take effect within this time, changes made by the server itself at once; 0 turns the cache off.")
    cache_entries: int = Field(10000, ge=1, description="Most look-ups the cache holds (least recently used go first).")
    maildir_writer: Literal["process", "thread"] = Field("process", description="Where Maildir files are written and fsync'd: a child process of each server process (its file system calls never slow the event loop down), or a thread of it.")


class MailboxSection(Section):
    # 10 GiB: well above what nearly every real mailbox holds, so nobody meets it by surprise, yet one
    # runaway mailbox (a mail loop, a forgotten account collecting spam) cannot fill the disk that every
    # other account shares; a full disk would refuse mail for all of them (452 4.3.1).
    default_quota_bytes: int = Field(10 * 1024**3, ge=0, description="Storage quota in bytes of every mailbox without limits of its own (set with `hardmail mailbox quota`); 0 means unlimited.")
    default_quota_messages: int = Field(0, ge=0, description="Message-count quota of every mailbox without limits of its own; 0 means unlimited.")
    over_quota: Literal["defer", "bounce"] = Field("defer", description="Mail for a full mailbox: defer (452 4.2.2, the sender retries and the owner has time to clean up) or bounce (552 5.2.2, refused for good).")
    append_limit: int = Field(0, ge=0, description="Largest message in bytes a client may APPEND (IMAP APPENDLIMIT, RFC 7889); 0 means the same as smtp.max_message_size.")


class PasswordHashSection(Section):
    # OWASP's Argon2id recommendation: m=19 MiB, t=2, p=1 is the floor; we default higher.
    time_cost: int = Field(3, ge=1, description="Argon2id iterations.")
    memory_cost: int = Field(65536, ge=8192, description="Argon2id memory in KiB.")
    parallelism: int = Field(1, ge=1, description="Argon2id lanes.")
    hash_workers: int = Field(2, ge=1, description="Threads that hash passwords off the event loop.")
    max_pending: int = Field(0, ge=0, description="Password checks that may wait for a hashing thread (beyond those running); more get 454 4.7.0. 0 means 8 per thread.")
    per_source: int = Field(4, ge=1, description="Password checks one source address (IPv4 address, IPv6 /64) may have running or waiting at once; more from it get 454 4.7.0 before they reach the pool.")
    priority_pending: int = Field(0, ge=0, description="Extra waiting places for logins of an account from an address it logged in from before (served first, never taken by unknown sources). 0 means as many as max_pending.")


class PasswordPolicySection(Section):
    min_length: int = Field(12, ge=8, description="Fewest characters a new password may have.")
    max_bytes: int = Field(1024, ge=64, le=4096, description="Most UTF-8 bytes a password may have (bounds hashing work).")
    min_score: int = Field(3, ge=0, le=4, description="Lowest zxcvbn strength score (0-4) a new password must reach.")
    forbid_account_name: bool = Field(True, description="Refuse passwords that contain the account's local part or domain name.")
    forbid_common: bool = Field(True, description="Refuse passwords found in the list of most common passwords.")
    max_age_days: int = Field(0, ge=0, description="Days after which a password expires and logins are refused until it is changed; 0 means never.")


class ScramSection(Section):
    iterations: int = Field(10000, ge=4096, le=1_000_000, description="PBKDF2 iterations of the SCRAM-SHA-256 secrets (RFC 7677 asks for at least 4096); used when a password is set.")


class TwoFactorSection(Section):
    issuer: str = Field("hardmail", min_length=1, description="Issuer name shown by authenticator apps for TOTP codes.")
    max_failures: int = Field(5, ge=1, le=100, description="Wrong two-factor codes (TOTP or recovery) an account may get per lockout window; further checks are refused until the window ends.")
    lockout_minutes: int = Field(15, ge=1, le=1440, description="Length of the window in which wrong two-factor codes are counted, in minutes.")


class AuthSection(Section):
    session_check_seconds: float = Field(0.5, ge=0, le=60, description="How often each server process looks for accounts disabled, frozen or removed, passwords changed and app passwords revoked (by any process), and ends the open sessions they affect; 0 checks only before accepting a message.")
    argon2: PasswordHashSection = PasswordHashSection()
    password_policy: PasswordPolicySection = PasswordPolicySection()
    scram: ScramSection = ScramSection()
    two_factor: TwoFactorSection = TwoFactorSection()


class DnsSection(Section):
    nameservers: list[str] = Field([], description="Resolvers to ask (IP addresses); empty uses the system's /etc/resolv.conf. They must validate DNSSEC for DANE.")
    port: int = Field(53, ge=0, lt=65536, description="UDP/TCP port of the nameservers.")
    timeout: float = Field(5.0, gt=0, description="Seconds one look-up may take before it counts as a temporary failure.")

    @field_validator("nameservers")
    @classmethod
    def _check_nameservers(cls, values: list[str]) -> list[str]:
        for value in values:
            ipaddress.ip_address(value)
        return values


class QueueSection(Section):
    run_delivery: bool = Field(True, description="Deliver queued mail from this process; turn off on nodes that only accept mail.")
    workers: int = Field(8, ge=1, description="Outbound connections open at once, over all destinations.")
    per_domain_connections: int = Field(2, ge=1, description="Outbound connections open at once to one destination domain.")
    messages_per_connection: int = Field(20, ge=1, description="Messages sent over one connection before it is closed.")
    first_retry: float = Field(300.0, gt=0, description="Seconds before the first retry after a temporary failure.")
    backoff_factor: float = Field(2.0, ge=1, description="Each further retry waits this many times longer.")
    max_retry_interval: float = Field(14400.0, gt=0, description="Longest wait between two attempts, in seconds.")
    jitter: float = Field(0.2, ge=0, lt=1, description="Random spread of each retry time, as a fraction of the wait (0.2 is plus or minus 20%).")
    give_up_after: float = Field(432000.0, gt=0, description="Seconds after which undelivered recipients are bounced (5 days).")
    delay_notice_after: float = Field(14400.0, ge=0, description="Seconds after which the sender gets one delay notice (0 disables it).")
    poll_interval: float = Field(30.0, gt=0, description="Longest idle wait, in seconds, before the queue is checked again.")
    claim_lease: float = Field(900.0, gt=0, description="Seconds a delivery run owns a message before another runner may take it over.")
    bounce_full_message_limit: int = Field(65536, ge=0, description="Bounces quote the whole message when it is at most this many bytes, else its headers only.")


class OutboundSection(Section):
    port: int = Field(25, gt=0, lt=65536, description="TCP port of remote MX hosts; change it only for tests.")
    helo_name: str = Field("", description="Name sent in EHLO; empty uses server.hostname.")
    connect_timeout: float = Field(30.0, gt=0, description="Seconds to open a connection to one MX address.")
    command_timeout: float = Field(300.0, gt=0, description="Seconds to wait for a reply to a command (RFC 5321 4.5.3.2: 5 minutes).")
    data_timeout: float = Field(600.0, gt=0, description="Seconds to wait for the reply after the message data (RFC 5321 4.5.3.2.6: 10 minutes).")
    mta_sts: bool = Field(True, description="Fetch and enforce MTA-STS policies (RFC 8461) of destination domains.")
    dane: bool = Field(True, description="Enforce DANE TLSA records (RFC 7672) when the resolver reports DNSSEC-validated answers.")
    mta_sts_port: int = Field(443, gt=0, lt=65536, description="HTTPS port of MTA-STS policy hosts; change it only for tests.")
    ca_file: Path | None = Field(None, description="Extra CA certificates (PEM) trusted for MTA-STS and verified TLS, besides the system store.")
    refuse_non_public: bool = Field(True, description="Never deliver to MX hosts whose addresses are loopback, unspecified, link-local, multicast or reserved, nor to MX records naming an IP address; turn off only for tests. Routes are not checked.")
    refuse_private: bool = Field(False, description="Also never deliver to MX hosts with private addresses (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7).")


def _check_network_list(values: list[str]) -> list[str]:
    for value in values:
        ipaddress.ip_network(value, strict=False)
    return values


class BanSection(Section):
    failures: int = Field(5, ge=1, description="Failed logins from one address within the window that ban it.")
    window: float = Field(900.0, gt=0, description="Seconds over which failed logins are counted (15 minutes).")
    durations: list[float] = Field([3600.0, 86400.0, 604800.0], min_length=1, description="Seconds each successive ban of the same source lasts (1 hour, 1 day, 1 week); the last repeats.")
    forget_after: float = Field(2592000.0, gt=0, description="Seconds after a ban ends after which it no longer counts for escalation (30 days).")
    subnet_failures: int = Field(50, ge=1, description="Failed logins from one IPv4 /24 or IPv6 /48 within the window that ban the whole subnet for AUTH.")
    spray_accounts: int = Field(4, ge=2, description="Different accounts one address may fail against within the window before it is banned (password spraying).")
    guessing_sources: int = Field(10, ge=2, description="Different addresses failing against one account within the window after which the account is under attack (distributed guessing): logins from addresses it never logged in from wait guard_tarpit seconds and come last in the hashing queue; nobody is banned for it.")
    spray_subnet_accounts: int = Field(10, ge=2, description="Different accounts failed against from one IPv4 /24 or IPv6 /48 within the window that ban the subnet for AUTH (password spraying from rotating addresses).")
    spray_global_accounts: int = Field(20, ge=2, description="Different accounts failed against from anywhere within the window that, with spray_global_sources, mean a spraying campaign: logged, and every account's guard is raised.")
    spray_global_sources: int = Field(10, ge=2, description="Different failing addresses within the window that, with spray_global_accounts, mean a spraying campaign.")
    guard_tarpit: float = Field(10.0, ge=0, description="Seconds a login from an address an account never logged in from waits while that account (or every account, during a spraying campaign) is under attack.")
    never_ban: list[str] = Field([], description="Networks never banned automatically (your own offices, monitoring).")
    tarpit_step: float = Field(1.0, ge=0, description="Seconds a failed login waits per earlier failure of its source.")
    tarpit_max: float = Field(10.0, ge=0, description="Longest wait after a failed login, in seconds.")

    @field_validator("never_ban")
    @classmethod
    def _check_never_ban(cls, values: list[str]) -> list[str]:
        return _check_network_list(values)


class LimitSection(Section):
    connections_per_ip: int = Field(20, ge=1, description="Connections open at once from one address.")
    connections_per_subnet: int = Field(100, ge=1, description="Connections open at once from one IPv4 /24 or IPv6 /64.")
    new_connections_per_minute: int = Field(120, ge=1, description="New connections per minute from one address.")
    messages_per_hour: int = Field(200, ge=1, description="Messages an authenticated account may submit per hour.")
    messages_per_day: int = Field(1000, ge=1, description="Messages an authenticated account may submit per day.")
    recipients_per_hour: int = Field(1000, ge=1, description="Recipients an authenticated account may address per hour.")
    recipients_per_day: int = Field(5000, ge=1, description="Recipients an authenticated account may address per day.")


class ProxyProtocolSection(Section):
    listeners: list[str] = Field([], description="Listener addresses (exactly as written under [listen]) that expect a PROXY protocol v1 or v2 header first.")
    trusted_proxies: list[str] = Field([], description="Networks of the proxies allowed to send a PROXY header; other clients of those listeners are dropped.")
    header_timeout: float = Field(10.0, gt=0, description="Seconds a proxy has to send the PROXY header.")

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, values: list[str]) -> list[str]:
        return _check_network_list(values)


class AccessSection(Section):
    bans: BanSection = BanSection()
    limits: LimitSection = LimitSection()
    proxy_protocol: ProxyProtocolSection = ProxyProtocolSection()
    verify_cache_seconds: float = Field(300.0, ge=0, description="Seconds a successful password check is remembered (by a keyed hash, never the password) so clients that log in on every connection stay cheap; 0 turns it off.")


class LoggingSection(Section):
    format: Literal["json", "console"] = Field("json", description="json: one JSON object per line; console: readable lines.")
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="Lowest level written.")
    file: Path | None = Field(None, description="Append logs to this file instead of standard error. hardmail creates it with mode 0600 (and its directory with 0700), whatever the umask.")
    file_group: str = Field("", description="Group allowed to read the log file (for a fail2ban or log shipper that is not hardmail's user): the file is created 0640 and its directory 0750 with this group; empty keeps them to hardmail's user (0600/0700).")
    per_source_burst: int = Field(20, ge=0, description="Lines of one event from one client address (IPv6: its /64) written per interval; further ones are counted and written as one log.suppressed line; 0 writes every line.")
    per_source_interval: float = Field(10.0, gt=0, description="Seconds of the per_source_burst interval.")
    per_subnet_burst: int = Field(100, ge=0, description="Lines of one event written per interval from all the client addresses of one subnet (IPv4 /24, IPv6 /48) together, so that many addresses of one network cannot multiply the volume; 0: no subnet budget (per_source_burst = 0 turns both off).")


class DkimSection(Section):
    sign: bool = Field(True, description="DKIM-sign mail from authenticated or trusted clients for domains that have keys (`hardmail dkim generate DOMAIN`).")
    rotation_grace_days: float = Field(7.0, ge=0, description="Days a replaced DKIM key stays published after a rotation, so mail in transit still verifies.")
    publication_check_interval: float = Field(600.0, gt=0, description="Seconds between DNS checks for the records of a rotated key before it starts signing.")


class InboundSection(Section):
    enabled: bool = Field(True, description="Check SPF, DKIM, DMARC and ARC of mail arriving on the MX listener and add Authentication-Results.")
    authserv_id: str = Field("", description="Name in Authentication-Results (RFC 8601); empty uses server.hostname. Incoming fields claiming it are removed.")
    dmarc_reject: Literal["enforce", "mark"] = Field("enforce", description="DMARC p=reject failures: enforce refuses them with 550 5.7.1; mark only records the result.")
    dmarc_quarantine: Literal["enforce", "mark"] = Field("enforce", description="DMARC p=quarantine failures: enforce delivers them to the Junk folder; mark only records the result.")
    max_dkim_signatures: int = Field(5, ge=1, le=50, description="DKIM signatures verified per message (RFC 6376 6.1); further ones are reported as dkim=policy, not verified.")
    verify_deadline: float = Field(20.0, gt=0, description="Seconds for all DKIM and ARC key look-ups of one message; signatures left unverified then are temperror.")
    worker_threads: int = Field(4, ge=1, le=64, description="Threads of the pool that runs SPF, DKIM and ARC work (kept apart from delivery's threads).")


class GreylistSection(Section):
    enabled: bool = Field(False, description="Greylist mail from unknown senders on the MX listener (first attempt deferred with 451 4.7.1).")
    domains: list[str] = Field([], description="Recipient domains greylisted; empty means every hosted domain.")
    exempt_domains: list[str] = Field([], description="Recipient domains never greylisted.")
    initial_delay: float = Field(300.0, ge=0, description="Seconds a sender must wait before its retry is accepted.")
    unconfirmed_lifetime: float = Field(86400.0, gt=0, description="Seconds an unconfirmed triplet (never retried) is remembered.")
    confirmed_lifetime: float = Field(36 * 86400.0, gt=0, description="Seconds a confirmed triplet is remembered after its last use.")
    bypass_spf_pass: bool = Field(False, description="Skip greylisting when the envelope sender's SPF result is pass. Off by default: spammers publish SPF records too.")
    whitelist: list[str] = Field([], description="Never greylisted: sender addresses (user@domain), sender domains, client IP addresses or networks (CIDR).")
    auto_whitelist_after: int = Field(3, ge=0, description="Whitelist a client network once this many distinct envelope senders from it have passed greylisting by retrying; 0 never.")
    ipv4_prefix: int = Field(24, ge=8, le=32, description="IPv4 prefix length of the client network in a triplet.")
    ipv6_prefix: int = Field(64, ge=16, le=128, description="IPv6 prefix length of the client network in a triplet.")


class DnsblList(Section):
    zone: str = Field(description="DNS blocklist zone, e.g. zen.spamhaus.org.")
    score: int = Field(3, description="Score added when the client is listed.")
    expect: list[str] = Field([], description="Answers (A records) that count as listed; empty means any 127.0.0.0/8 answer except 127.255.255.x errors.")


class AntispamSection(Section):
    enabled: bool = Field(True, description="Score unauthenticated mail on the MX listener; authenticated sessions are never scored.")
    mark_threshold: int = Field(5, ge=0, description="Score at which X-Spam-Status: Yes is added (and the subject tagged); 0 turns marking off.")
    reject_threshold: int = Field(15, ge=0, description="Score at which mail is refused (554 5.7.1) as early as the facts are known; 0 turns refusing off.")
    subject_tag: str = Field("", description="Text put before the Subject of marked mail, e.g. [SPAM]; empty leaves the subject alone.")
    junk_marked: bool = Field(True, description="Deliver marked mail to the recipient's Junk folder.")
    dnsbl: list[DnsblList] = Field([], description="DNS blocklists asked about the client address.")
    score_helo_syntax: int = Field(2, description="HELO name is neither a domain name nor an address literal.")
    score_helo_unresolvable: int = Field(1, description="HELO name has no A or AAAA record.")
    score_helo_ours: int = Field(5, description="HELO name is this server's own name.")
    score_no_fcrdns: int = Field(1, description="Client address has no forward-confirmed reverse DNS name.")
    score_sender_no_mx: int = Field(3, description="Envelope sender domain has neither MX nor A/AAAA records.")
    score_spf_fail: int = Field(3, description="SPF result fail.")
    score_spf_softfail: int = Field(1, description="SPF result softfail.")
    score_dkim_fail: int = Field(2, description="Signatures present but none verified.")
    score_dmarc_fail: int = Field(3, description="DMARC result fail.")


class ImapSection(Section):
    max_line: int = Field(8192, ge=1024, le=1_048_576, description="Longest command line in bytes (literals not counted); a longer line gets BAD and the connection is closed (RFC 9051 4: at least 8000 octets are recommended).")
    max_literal: int = Field(50 * 1024 * 1024, ge=65536, description="Largest APPEND literal in bytes; APPENDLIMIT (RFC 7889) is the smaller of this and [mailbox] append_limit, and a larger APPEND gets NO [TOOBIG] before its data. Literals of other commands are limited to 64 KiB.")
    commands_per_second: float = Field(200.0, gt=0, description="Commands one connection may send per second on average (bursts of twice that pass); faster clients are slowed down (each command waits its turn), not refused.")
    connections_per_ip: int = Field(20, ge=1, description="IMAP connections open at once from one client address, in each server process ([access.limits] counts every protocol together).")
    connections_per_account: int = Field(20, ge=1, description="IMAP sessions one account may have open at once, in each server process; one more gets NO [LIMIT] at login.")
    idle_timeout: float = Field(1800.0, ge=60, description="Seconds an authenticated client may stay silent (also in IDLE) before the server says BYE (RFC 9051 5.4 and RFC 2177: at least 30 minutes).")
    login_timeout: float = Field(60.0, gt=0, description="Seconds a client has to log in after connecting, all its commands before login included; then BYE.")
    allow_plaintext_login: bool = Field(False, description="Allow LOGIN and AUTHENTICATE PLAIN before TLS on the STARTTLS listener. Sends passwords readable on the network: only for a trusted link.")


class Pop3Section(Section):
    """The POP3 server (listeners ``[listen] pop3`` and ``pop3s``; docs/pop3.md)."""

    max_line: int = Field(8192, ge=255, le=65536, description="Longest command line in octets, CRLF included (RFC 2449 4 asks for 255; longer user names and passwords are common); a longer line gets -ERR.")
    commands_per_second: int = Field(200, ge=0, description="Commands one connection may send per second (a burst of twice as many is allowed); more are answered later, not refused. 0: no limit.")
    connections_per_ip: int = Field(10, ge=1, description="POP3 connections open at once from one address, in each server process; more get -ERR [SYS/TEMP] and are closed.")
    idle_timeout: float = Field(600.0, ge=600.0, description="Seconds a logged-in client may stay silent (RFC 1939 3: at least 10 minutes).")
    login_timeout: float = Field(60.0, gt=0, description="Seconds a client has to log in after connecting.")
    allow_plaintext_login: bool = Field(False, description="Allow USER/PASS and AUTH before STLS on the pop3 listener (passwords in the clear; only for trusted networks).")


_AGE_RECIPIENT = re.compile(r"age1[02-9ac-hj-np-z]{58}")  # bech32: "age1" and 58 lower-case characters


class BackupSection(Section):
    """Scheduled backups made by the server (docs/backup.md, "Scheduled backups")."""

    enabled: bool = Field(True, description="Take backups on the schedule below, in one process of the server (each in a child process, so that it never slows mail down). Off: no scheduled backups, a warning at start.")
    schedule: str = Field("03:00", description='When: "HH:MM" (daily at that local time), a comma-separated list of times ("03:00, 15:00"), "hourly", "every Nh" (N dividing 24, from midnight) or "every Nm" (15, 20 or 30). A time skipped by a daylight-saving change runs at the change; one that happens twice runs once. A backup missed while the server was down runs a few minutes after start when the last good one is older than one period.')
    timezone: str = Field("", description='Time zone of the schedule and of the retention days: an IANA name such as "Europe/Berlin"; empty: the system\'s zone.')
    destination: Path | None = Field(None, description="Directory of the archives; unset or empty: data_dir/backups. Put it on another disk (or copy the archives off the machine) so that one failure cannot take the mail and its backups.")
    recipients: list[str] = Field([], description="age public keys (age1...) or absolute paths of files of them (one per line, # comments) that scheduled archives are encrypted to (`hardmail backup keygen` makes a key pair); empty: not encrypted.")
    full_every_days: int = Field(7, ge=0, description="Scheduled backups are incremental (only files that are new since the previous archive) until the newest full one is this many days old; then a full one. 0: every scheduled backup is full.")
    keep_daily: int = Field(7, ge=0, description="Retention: keep the newest archive of each of the last this many days that have archives.")
    keep_weekly: int = Field(4, ge=0, description="Retention: keep the newest archive of each of the last this many ISO weeks that have archives.")
    keep_monthly: int = Field(6, ge=0, description="Retention: keep the newest archive of each of the last this many months that have archives. Archives that a kept one's chain needs, and the newest good one, are never deleted.")
    verify: bool = Field(True, description="Verify each new archive (every hash, the database copy, index against files); an archive that is not verified does not count as a good backup.")
    before_upgrade: bool = Field(True, description="Take a full backup before the server applies a database schema upgrade (`hardmail upgrade` and `hardmail serve`).")

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, value: str) -> str:
        parse_schedule(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        if value.strip():
            resolve_timezone(value)
        return value.strip()

    @field_validator("destination", mode="before")
    @classmethod
    def _empty_destination_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("recipients", mode="before")
    @classmethod
    def _one_recipient_is_a_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("recipients")
    @classmethod
    def _check_recipients(cls, values: list[str]) -> list[str]:
        checked = []
        for value in (item.strip() for item in values):
            if value.upper().startswith("AGE-SECRET-KEY-"):  # never echoed: it is the private key
                raise ValueError("that is an age identity (a secret key), not a recipient: give its public key "
                                 "(age1..., printed by `hardmail backup keygen`)")
            if value.startswith("age1"):
                if not _AGE_RECIPIENT.fullmatch(value):
                    raise ValueError(f"{value[:12]!r}... is not an age public key (age1 and 58 more characters, "
                                     "as `hardmail backup keygen` prints)")
            elif not Path(value).expanduser().is_absolute():
                raise ValueError(f"{value!r} is neither an age public key (age1...) nor an absolute path of a "
                                 "file of them")
            checked.append(value if value.startswith("age1") else str(Path(value).expanduser()))
        return checked


class Config(Section):
    server: ServerSection = ServerSection()
    listen: ListenSection = ListenSection()
    tls: TlsSection = TlsSection()
    smtp: SmtpSection = SmtpSection()
    relay: RelaySection = RelaySection()
    storage: StorageSection = StorageSection()
    auth: AuthSection = AuthSection()
    dns: DnsSection = DnsSection()
    logging: LoggingSection = LoggingSection()
    queue: QueueSection = QueueSection()
    outbound: OutboundSection = OutboundSection()
    access: AccessSection = AccessSection()
    dkim: DkimSection = DkimSection()
    inbound: InboundSection = InboundSection()
    greylist: GreylistSection = GreylistSection()
    antispam: AntispamSection = AntispamSection()
    mailbox: MailboxSection = MailboxSection()
    imap: ImapSection = ImapSection()
    pop3: Pop3Section = Pop3Section()
    backup: BackupSection = BackupSection()
    audit: AuditSection = AuditSection()
    notices: NoticesSection = NoticesSection()
    impersonation: ImpersonationSection = ImpersonationSection()

    @property
    def data_dir(self) -> Path:
        return self.server.data_dir

    @property
    def database_url(self) -> str:
        if self.storage.url:
            return self.storage.url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'hardmail.db').resolve()}"

    @property
    def append_limit(self) -> int:
        """[mailbox] append_limit, or smtp.max_message_size when that is 0."""
        return self.mailbox.append_limit or self.smtp.max_message_size

    @property
    def maildir_root(self) -> Path:
        return self.data_dir / "mail"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def incoming_dir(self) -> Path:
        return self.data_dir / "incoming"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"
