"""The login guard: the owner exemption from bans, the guard raised by distributed guessing and
spraying campaigns, and which bans refuse connections on which port."""

from __future__ import annotations

from hardmail.policy.bans import Ban, BanRules, FailureStats
from hardmail.policy.login_guard import (
    Admission,
    admission,
    auth_refused_by_ban,
    connection_refused_by_ban,
    guard_signals,
)

RULES = BanRules()
AUTO = Ban("198.51.100.0/24", "subnet", "55 failed logins", 0, 3600)
ADMIN = Ban("198.51.100.7", "admin", "by hand", 0, 3600, by_admin=True)
ACCOUNT = "alice@example.test"


def test_a_known_pair_logs_in_through_an_automatic_ban_in_the_priority_lane() -> None:
    assert admission(ban=AUTO, known_pair=True, guarded=True, rules=RULES) == Admission(priority=True)


def test_a_banned_source_may_not_try_an_account_it_is_not_known_for() -> None:
    verdict = admission(ban=AUTO, known_pair=False, guarded=False, rules=RULES)
    assert not verdict.allowed and "subnet" in verdict.reason


def test_an_administrators_ban_refuses_the_known_pair_too() -> None:
    assert not admission(ban=ADMIN, known_pair=True, guarded=False, rules=RULES).allowed


def test_a_guarded_account_slows_unknown_sources_down_but_bans_nobody() -> None:
    verdict = admission(ban=None, known_pair=False, guarded=True, rules=RULES)
    assert verdict.allowed and verdict.delay == RULES.guard_tarpit and not verdict.priority
    assert admission(ban=None, known_pair=False, guarded=False, rules=RULES) == Admission()


def test_many_sources_against_one_account_raise_its_guard() -> None:
    assert guard_signals(ACCOUNT, FailureStats(ips_for_account=10), RULES).account_under_attack
    assert not guard_signals(ACCOUNT, FailureStats(ips_for_account=9), RULES).account_under_attack
    assert not guard_signals("", FailureStats(ips_for_account=99), RULES).account_under_attack


def test_a_spraying_campaign_needs_many_accounts_and_many_sources() -> None:
    assert guard_signals(ACCOUNT, FailureStats(accounts_total=30, sources_total=24), RULES).spraying_campaign
    assert not guard_signals(ACCOUNT, FailureStats(accounts_total=30, sources_total=3), RULES).spraying_campaign
    assert not guard_signals(ACCOUNT, FailureStats(accounts_total=5, sources_total=24), RULES).spraying_campaign


def test_the_mx_port_takes_mail_from_a_source_banned_for_login_abuse() -> None:
    assert not connection_refused_by_ban(AUTO, "smtp", source_has_logins=False)
    assert connection_refused_by_ban(ADMIN, "smtp", source_has_logins=True)
    assert connection_refused_by_ban(Ban("198.51.100.7", "smtp", "MX abuse", 0, 3600), "smtp", False)


def test_submission_refuses_banned_sources_that_only_ever_failed() -> None:
    assert connection_refused_by_ban(AUTO, "submission", source_has_logins=False)
    assert not connection_refused_by_ban(AUTO, "submission", source_has_logins=True)
    assert not connection_refused_by_ban(None, "submission", source_has_logins=False)
    assert auth_refused_by_ban(AUTO, source_has_logins=False)
    assert not auth_refused_by_ban(AUTO, source_has_logins=True)
    assert auth_refused_by_ban(ADMIN, source_has_logins=True)
