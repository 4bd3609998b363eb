"""The password policy, table-driven: every refusal reason, its advice, and what passes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hardmail.config.schema import PasswordPolicySection
from hardmail.policy.login import MUST_CHANGE_TEXT, TWO_FACTOR_TEXT, main_password_refusal
from hardmail.policy.passwords import check_new_password, password_expired

ADDRESS = "alice@example.org"
DEFAULT = PasswordPolicySection()


@pytest.mark.parametrize(
    "password",
    ["correct horse battery staple", "ünïcödé-pässwörd", "a strong passphrase", "Tr0ub4dor&3-not-the-pass"],
)
def test_acceptable_passwords(password: str) -> None:
    assert check_new_password(password, ADDRESS, DEFAULT) is None


@pytest.mark.parametrize(
    ("password", "address", "reason_part", "advice_part"),
    [
        ("\udcff" * 20, ADDRESS, "not valid text", "ordinary characters"),
        ("line one\nline two is long", ADDRESS, "control character", "letters, digits"),
        ("eleven char", ADDRESS, "has 11 characters; at least 12", "at least 12 characters"),
        ("é" * 513, ADDRESS, "longer than 1024 bytes", "at most 1024 bytes"),
        ("alice-rides-purple-bikes", ADDRESS, "account name 'alice'", "does not contain any part"),
        ("my EXAMPLE purple bikes", ADDRESS, "domain name 'example'", "does not contain any part"),
        ("password1234", ADDRESS, "most common passwords", "nobody else uses"),
        ("qwertyuiop12", ADDRESS, "most common passwords", "nobody else uses"),
        ("zzzzzzzzzzzzzzzz", ADDRESS, "too easy to guess (strength 0 of 4; at least 3", "passphrase"),
        ("x" * 1024, ADDRESS, "too easy to guess", "passphrase"),
        ("purple elephants dance \N{GRINNING FACE} quietly", ADDRESS, "emoji or another character not in Unicode 3.2",
         "without emoji"),
        ("purple elephants dance \ue000 quietly", ADDRESS, "private-use character", "without emoji"),
        ("purple elephants \u0627 dance quietly", ADDRESS, "right-to-left text mixed", "without emoji"),
        ("purple elephants dance \ufffe quietly", ADDRESS, "not allowed in passwords", "without emoji"),
    ],
)
def test_each_refusal_says_why_and_what_passes(password: str, address: str, reason_part: str, advice_part: str) -> None:
    refusal = check_new_password(password, address, DEFAULT)
    assert refusal is not None
    assert reason_part in refusal.reason
    assert advice_part in refusal.advice


@pytest.mark.parametrize(
    ("password", "policy"),
    [
        ("eleven char", PasswordPolicySection(min_length=8)),
        ("alice-rides-purple-bikes", PasswordPolicySection(forbid_account_name=False)),
        ("zzzzzzzzzzzzzzzz", PasswordPolicySection(min_score=0)),
    ],
)
def test_each_rule_follows_its_setting(password: str, policy: PasswordPolicySection) -> None:
    assert check_new_password(password, ADDRESS, DEFAULT) is not None
    assert check_new_password(password, ADDRESS, policy) is None


def test_common_list_can_be_switched_off_leaving_the_strength_rule() -> None:
    refusal = check_new_password("password1234", ADDRESS, PasswordPolicySection(forbid_common=False))
    assert refusal is not None and "too easy to guess" in refusal.reason


def test_very_short_local_parts_and_the_top_level_domain_are_not_searched_for() -> None:
    assert check_new_password("a strong passphrase for org", "a@example.org", DEFAULT) is None


def test_refusal_never_contains_the_password() -> None:
    password = "alice-secret-value"
    refusal = check_new_password(password, ADDRESS, DEFAULT)
    assert refusal is not None and password not in str(refusal)


NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("max_age_days", "changed_days_ago", "expired"),
    [(0, 1000, False), (90, 89, False), (90, 91, True), (90, None, False)],
)
def test_expiry(max_age_days: int, changed_days_ago: int | None, expired: bool) -> None:
    changed = None if changed_days_ago is None else NOW - timedelta(days=changed_days_ago)
    assert password_expired(changed, NOW, PasswordPolicySection(max_age_days=max_age_days)) is expired


@pytest.mark.parametrize(
    ("protocol", "two_factor", "must_change", "text"),
    [
        ("smtp", True, False, TWO_FACTOR_TEXT),
        ("imap", False, True, MUST_CHANGE_TEXT),
        ("pop3", True, True, TWO_FACTOR_TEXT),
        ("smtp", False, False, None),
        ("web", True, True, None),  # interactive logins are guarded by the TOTP code instead
    ],
)
def test_main_password_rules_for_mail_protocols(protocol: str, two_factor: bool, must_change: bool,
                                                text: str | None) -> None:
    refusal = main_password_refusal(protocol=protocol, two_factor=two_factor, must_change=must_change,
                                    changed_at=NOW, now=NOW, policy=DEFAULT)
    assert (refusal.notice_text if refusal else None) == text


def test_two_factor_text_tells_the_user_to_create_an_app_password() -> None:
    assert "app password" in TWO_FACTOR_TEXT


def test_saslprep_refusals_hold_whatever_the_policy_allows() -> None:
    lax = PasswordPolicySection(min_length=8, min_score=0, forbid_common=False, forbid_account_name=False)
    refusal = check_new_password("\N{GRINNING FACE}" * 8, ADDRESS, lax)
    assert refusal is not None and "SASLprep" in refusal.reason and "\N{GRINNING FACE}" not in str(refusal)
    assert check_new_password("caf\u00e9 \u00c5ngstr\u00f6m \u00df", ADDRESS, lax) is None  # Unicode 3.2 letters pass
