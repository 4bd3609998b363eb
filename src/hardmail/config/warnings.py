"""Insecure but valid settings: one sentence per finding, saying what the risk is and what to do.

These never stop the server; ``hardmail config check`` and the startup log show them. Besides the
settings themselves, the modes of an existing log file and its directory are looked at (a file
others can read or write is a finding, see :mod:`hardmail.ops.logfile`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

from hardmail.config.schema import Config, parse_host_port
from hardmail.ops.logfile import loose_modes

# A trusted network this wide lets (nearly) the whole Internet relay: an open relay.
_WIDEST_SAFE_PREFIX = {4: 8, 6: 16}
_OLD_TLS_VERSIONS = ("TLSv1", "TLSv1.1")
_LOCAL_HOST_NAMES = ("localhost",)


def insecure_warnings(cfg: Config) -> list[str]:
    """Every insecure choice in ``cfg``, as sentences an administrator can act on."""
    return [
        *_plaintext_auth(cfg),
        *_plaintext_mailbox_login(cfg),
        *_old_tls(cfg),
        *_open_relay(cfg),
        *_auth_on_mx(cfg),
        *_self_signed_on_public_listeners(cfg),
        *_log_file_modes(cfg),
        *_slow_session_check(cfg),
        *_unfair_hash_pool(cfg),
        *_cap_below_message_size(cfg),
        *_backups(cfg),
    ]


def _backups(cfg: Config) -> Iterator[str]:
    backup = cfg.backup
    if not backup.enabled:
        yield (
            "backup.enabled is false: the server takes no scheduled backups, so a failed disk or a "
            "mistaken command can lose every mailbox; turn it on, or run `hardmail backup create` "
            "from cron and watch its result."
        )
        return
    if not backup.verify:
        yield (
            "backup.verify is false: scheduled archives are not verified, so a damaged one goes "
            "unnoticed and none counts as a good backup (last_good_backup_at stays unset); set it to true."
        )
    destination = backup.destination
    if destination is not None and not backup.recipients and not _inside(destination, cfg.data_dir):
        yield (
            f"backup.destination {destination} is outside the data directory and backup.recipients is "
            "empty: scheduled archives there are not encrypted, so anyone who can read that disk or "
            "copy reads every message, password hash and key; add an age public key to "
            "backup.recipients (`hardmail backup keygen` makes one)."
        )


def _inside(path: Path, directory: Path) -> bool:
    resolved, base = path.expanduser().resolve(), directory.expanduser().resolve()
    return resolved == base or resolved.is_relative_to(base)


def _slow_session_check(cfg: Config) -> Iterator[str]:
    seconds = cfg.auth.session_check_seconds
    if seconds == 0 or seconds > 1:
        how_long = "until they disconnect" if seconds == 0 else f"for up to {seconds:g} s"
        yield (
            f"auth.session_check_seconds is {seconds:g}: open sessions of an account that is disabled, "
            f"frozen or whose password was changed can go on (short of sending a message) {how_long}; "
            "set it to 1 or less (default 0.5)."
        )


def _unfair_hash_pool(cfg: Config) -> Iterator[str]:
    argon2 = cfg.auth.argon2
    places = argon2.hash_workers + (argon2.max_pending or argon2.hash_workers * 8)
    if argon2.per_source >= places:
        yield (
            f"auth.argon2.per_source ({argon2.per_source}) is not below the hashing pool's "
            f"{places} places: one client can fill the pool and keep every other login out "
            "(454 4.7.0); set it lower."
        )


def _cap_below_message_size(cfg: Config) -> Iterator[str]:
    if cfg.smtp.max_bytes_in_flight < cfg.smtp.max_message_size:
        yield (
            f"smtp.max_bytes_in_flight ({cfg.smtp.max_bytes_in_flight}) is below smtp.max_message_size "
            f"({cfg.smtp.max_message_size}): a message larger than the cap gets 452 4.3.1 at every try "
            "and is bounced by its sender after days; keep the cap several times the message size."
        )


def _plaintext_auth(cfg: Config) -> Iterator[str]:
    if cfg.smtp.allow_plaintext_auth:
        yield (
            "smtp.allow_plaintext_auth is true: AUTH is offered without TLS, so passwords can "
            "cross the network readable by anyone on the path; set it to false."
        )


def _plaintext_mailbox_login(cfg: Config) -> Iterator[str]:
    """``[imap]`` / ``[pop3]`` ``allow_plaintext_login`` (read safely: those sections come with
    the IMAP and POP3 servers and may be absent from a build)."""
    for section, where in (("imap", "LOGIN and AUTHENTICATE"), ("pop3", "USER/PASS and AUTH")):
        if getattr(getattr(cfg, section, None), "allow_plaintext_login", False) is True:
            yield (
                f"{section}.allow_plaintext_login is true: {where} are accepted on the {section} "
                "listener before STARTTLS, so passwords can cross the network readable by anyone "
                "on the path; set it to false."
            )


def _old_tls(cfg: Config) -> Iterator[str]:
    if cfg.tls.min_version in _OLD_TLS_VERSIONS:
        yield (
            f"tls.min_version is {cfg.tls.min_version}: TLS versions below 1.2 have known "
            "weaknesses and are deprecated (RFC 8996); set it to TLSv1.2 or TLSv1.3."
        )


def _open_relay(cfg: Config) -> Iterator[str]:
    for text in cfg.relay.trusted_networks:
        network = ipaddress.ip_network(text, strict=False)
        if network.prefixlen < _WIDEST_SAFE_PREFIX[network.version]:
            yield (
                f"relay.trusted_networks contains {network}, which lets (nearly) every host on "
                "the Internet relay mail through this server without AUTH (an open relay); "
                "list only your own networks."
            )


def _auth_on_mx(cfg: Config) -> Iterator[str]:
    if cfg.smtp.auth_on_mx:
        yield (
            "smtp.auth_on_mx is true: the MX listener offers AUTH (inside TLS), which invites "
            "password guessing from the whole Internet; users should submit on the submission "
            "listeners, so set it to false unless a client needs port 25."
        )


def _self_signed_on_public_listeners(cfg: Config) -> Iterator[str]:
    if cfg.tls.cert_file is not None:
        return
    public = [address for address in _all_listeners(cfg) if not _is_loopback(address)]
    if public:
        yield (
            f"listeners on non-loopback addresses ({', '.join(public)}) use a self-signed "
            "certificate because tls.cert_file is unset: mail clients will not trust it and "
            "other servers cannot verify it; set tls.cert_file and tls.key_file to a "
            "certificate from a certificate authority (for example Let's Encrypt)."
        )


def _all_listeners(cfg: Config) -> list[str]:
    listen = cfg.listen
    return [*listen.smtp, *listen.submission, *listen.submissions, *listen.imap, *listen.imaps, *listen.pop3,
            *listen.pop3s]


def _is_loopback(address: str) -> bool:
    host, _port = parse_host_port(address)
    if host in _LOCAL_HOST_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*" or "" mean every address
        return False


def _log_file_modes(cfg: Config) -> list[str]:
    if cfg.logging.file is None:
        return []
    return loose_modes(cfg.logging.file, cfg.logging.file_group)
