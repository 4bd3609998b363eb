"""The password policy: may this new password be set, and has a set password expired? Pure.

A refusal names the one rule that failed and what would pass. The rules, in order: valid text,
no control characters, accepted by SASLprep (RFC 4013, which SCRAM-SHA-256 logins need: no emoji
or other characters unassigned in Unicode 3.2, no private-use characters), minimum length,
maximum size in bytes, not containing the account's local part or domain name, not one of the
most common passwords (zxcvbn's frequency list of leaked passwords, about 30,000 entries), and a
zxcvbn strength score at or above the configured minimum.
Strength is estimated by zxcvbn (a well-kept port of Dropbox's estimator), never by hand-made
character-class rules.
"""

from __future__ import annotations

import threading
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from zxcvbn import zxcvbn
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from hardmail.auth.scram import saslprep_problem
from hardmail.config.schema import PasswordPolicySection

MIN_LOCAL_PART_CHECKED = 3  # a shorter local part ("a", "jo") is too common a substring to refuse
MIN_DOMAIN_LABEL_CHECKED = 4  # "mail", "corp" and longer labels of the domain are searched for
ZXCVBN_MAX_CHARS = 72  # zxcvbn refuses longer input; the first 72 characters are estimated
PASSPHRASE_ADVICE = "a passphrase of four or more unrelated words, or a password manager's random password"

_COMMON_PASSWORDS = frozenset(FREQUENCY_LISTS["passwords"])
_zxcvbn_lock = threading.Lock()  # zxcvbn keeps the user inputs in a module global while it runs


@dataclass(frozen=True, slots=True)
class PasswordRefusal:
    """Why a new password is refused (``reason``) and what would pass (``advice``); never the password."""

    reason: str
    advice: str

    def __str__(self) -> str:
        return f"{self.reason}; {self.advice}"


def check_new_password(
    password: str, address: str, policy: PasswordPolicySection
) -> PasswordRefusal | None:
    """The first rule ``password`` breaks for the account ``address``, or None when it may be set."""
    for rule in (_valid_text, _saslprep_rule, _length_rules, _account_name_rule, _common_rule, _strength_rule):
        refusal = rule(password, address, policy)
        if refusal is not None:
            return refusal
    return None


def password_expired(
    changed_at: datetime | None, now: datetime, policy: PasswordPolicySection
) -> bool:
    """True when expiry is on and the password was set more than ``max_age_days`` ago."""
    if policy.max_age_days <= 0 or changed_at is None:
        return False
    return now - changed_at > timedelta(days=policy.max_age_days)


def _valid_text(password: str, _address: str, _policy: PasswordPolicySection) -> PasswordRefusal | None:
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        return PasswordRefusal(
            "the password is not valid text (it holds unpaired surrogate characters)",
            "type it again using ordinary characters",
        )
    if any(unicodedata.category(char) == "Cc" for char in password):
        return PasswordRefusal(
            "the password contains a control character (such as a tab or a line break)",
            "use letters, digits, spaces and punctuation only",
        )
    return None


# libpass's SASLprep complaint -> what it means for the person choosing a password.
_SASLPREP_REASONS = {
    "unassigned code points forbidden": "an emoji or another character not in Unicode 3.2",
    "private use characters forbidden": "a private-use character",
    "forbidden bidi character": "right-to-left text mixed with left-to-right text",
    "malformed bidi sequence": "right-to-left text that does not begin and end with a right-to-left letter",
}


def _saslprep_rule(password: str, _address: str, _policy: PasswordPolicySection) -> PasswordRefusal | None:
    """RFC 4013: SCRAM-SHA-256 (RFC 5802 2.2) normalises passwords with SASLprep; what it refuses
    could never log in with SCRAM, so it is refused here, whatever the configuration."""
    problem = saslprep_problem(password)
    if problem is None:
        return None
    what = _SASLPREP_REASONS.get(problem, "a character that is not allowed in passwords (such as a non-character)")
    return PasswordRefusal(
        f"the password contains {what}, which SCRAM-SHA-256 logins (SASLprep, RFC 4013) cannot use",
        "use letters (accented ones too), digits, spaces and punctuation, without emoji or symbols "
        f"newer than Unicode 3.2; for example {PASSPHRASE_ADVICE}",
    )


def _length_rules(password: str, _address: str, policy: PasswordPolicySection) -> PasswordRefusal | None:
    if len(password) < policy.min_length:
        return PasswordRefusal(
            f"the password has {len(password)} characters; at least {policy.min_length} are required",
            f"choose at least {policy.min_length} characters, for example {PASSPHRASE_ADVICE}",
        )
    if len(password.encode("utf-8")) > policy.max_bytes:
        return PasswordRefusal(
            f"the password is longer than {policy.max_bytes} bytes",
            f"choose a password of at most {policy.max_bytes} bytes (UTF-8)",
        )
    return None


def account_name_parts(address: str) -> list[str]:
    """The parts of an address a password must not contain: local part and domain labels."""
    local, _, domain = address.lower().rpartition("@")
    parts = [local] if len(local) >= MIN_LOCAL_PART_CHECKED else []
    labels = domain.split(".")[:-1]  # the top-level label ("org") alone is too common to refuse
    parts.extend(label for label in labels if len(label) >= MIN_DOMAIN_LABEL_CHECKED)
    return parts


def _account_name_rule(password: str, address: str, policy: PasswordPolicySection) -> PasswordRefusal | None:
    if not policy.forbid_account_name:
        return None
    lowered = password.lower()
    for part in account_name_parts(address):
        if part in lowered:
            which = "account name" if part == address.lower().rpartition("@")[0] else "domain name"
            return PasswordRefusal(
                f"the password contains the {which} {part!r}",
                "choose a password that does not contain any part of the address",
            )
    return None


def _common_rule(password: str, _address: str, policy: PasswordPolicySection) -> PasswordRefusal | None:
    if policy.forbid_common and password.lower() in _COMMON_PASSWORDS:
        return PasswordRefusal(
            "the password is in the list of the most common passwords",
            f"choose a password nobody else uses, for example {PASSPHRASE_ADVICE}",
        )
    return None


def _strength_rule(password: str, address: str, policy: PasswordPolicySection) -> PasswordRefusal | None:
    if policy.min_score <= 0:
        return None
    result = estimate_strength(password, account_name_parts(address))
    score = int(result["score"])
    if score >= policy.min_score:
        return None
    feedback = result.get("feedback") or {}
    warning = str(feedback.get("warning") or "").rstrip(".")
    reason = f"the password is too easy to guess (strength {score} of 4; at least {policy.min_score} is required)"
    suggestions = " ".join(str(s) for s in feedback.get("suggestions") or [])
    advice = f"{suggestions + ' ' if suggestions else ''}For example, {PASSPHRASE_ADVICE} passes"
    return PasswordRefusal(f"{reason}: {warning.lower()}" if warning else reason, advice)


def estimate_strength(password: str, user_inputs: list[str]) -> dict[str, Any]:
    """zxcvbn's estimate of the first 72 characters, with the account's own words as user inputs."""
    with _zxcvbn_lock:
        result: dict[str, Any] = zxcvbn(password[:ZXCVBN_MAX_CHARS], user_inputs=user_inputs)
    return result
