"""The IMAP and POP3 listener kinds in the configuration, the access policy and the warnings."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from hardmail.config.schema import Config
from hardmail.config.warnings import insecure_warnings
from hardmail.policy.access import DEFAULT_RANGES, IpRange, connection_allowed
from hardmail.policy.bans import Ban
from hardmail.policy.login_guard import connection_refused_by_ban


def test_defaults_listen_on_high_loopback_ports() -> None:
    listen = Config().listen
    assert (listen.imap, listen.imaps, listen.pop3, listen.pop3s) == (
        ["127.0.0.1:2143"], ["127.0.0.1:2993"], ["127.0.0.1:2110"], ["127.0.0.1:2995"])


def test_one_address_is_a_list_and_bad_addresses_are_refused() -> None:
    assert Config.model_validate({"listen": {"imaps": "0.0.0.0:993"}}).listen.imaps == ["0.0.0.0:993"]
    with pytest.raises(ValidationError, match="HOST:PORT"):
        Config.model_validate({"listen": {"pop3": ["110"]}})


def test_plaintext_mailbox_logins_are_warned_about_when_the_sections_exist() -> None:
    assert not any("allow_plaintext_login" in w for w in insecure_warnings(Config()))  # no section yet: nothing
    relaxed = Config().model_copy(update={"imap": SimpleNamespace(allow_plaintext_login=True),
                                          "pop3": SimpleNamespace(allow_plaintext_login=False)})
    found = [w for w in insecure_warnings(relaxed) if "allow_plaintext_login" in w]
    assert len(found) == 1 and found[0].startswith("imap.allow_plaintext_login is true")


def test_public_mailbox_listeners_with_a_self_signed_certificate_are_warned_about() -> None:
    config = Config.model_validate({"listen": {"imaps": ["0.0.0.0:993"]}})
    assert any("0.0.0.0:993" in w and "self-signed" in w for w in insecure_warnings(config))


@pytest.mark.parametrize(("listener", "protocol"), [("imap", "imap"), ("imaps", "imap"), ("pop3", "pop3"),
                                                    ("pop3s", "pop3")])
def test_each_kind_needs_its_protocol_flag(listener: str, protocol: str) -> None:
    assert connection_allowed(DEFAULT_RANGES[0], listener)
    others = frozenset({"smtp", "submission", "imap", "pop3"} - {protocol})
    assert not connection_allowed(IpRange("no " + protocol, 20, "0.0.0.0", "255.255.255.255", protocols=others),
                                  listener)


@pytest.mark.parametrize("listener", ["imap", "imaps", "pop3", "pop3s"])
def test_a_login_ban_closes_mailbox_ports_like_submission(listener: str) -> None:
    ban = Ban(subject="192.0.2.7", kind="failures", offences=1, created_at=1e9, expires_at=2e9, reason="test")
    assert connection_refused_by_ban(ban, listener, source_has_logins=False)
    assert not connection_refused_by_ban(ban, listener, source_has_logins=True)
    assert not connection_refused_by_ban(ban, "smtp", source_has_logins=False)
