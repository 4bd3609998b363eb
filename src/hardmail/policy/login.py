"""Whether a correct main password may log in over a mail protocol. Pure.

Asked only after the password (or SCRAM proof) was verified. The refusal is answered on the wire
exactly like a wrong password (a different reply would confirm the password to a credential
stuffer); its reason goes to the login history and its text is for the user's notice (the
``notice`` kind names it). App passwords are not subject to these rules: they exist for mail
clients on accounts with two-factor authentication.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hardmail.config.schema import PasswordPolicySection
from hardmail.policy.passwords import password_expired

MAIL_PROTOCOLS = frozenset({"smtp", "imap", "pop3"})

TWO_FACTOR_TEXT = (
    "This account uses two-factor authentication: mail programs must log in with an app password "
    "(create one with 'hardmail account app-password add' or ask your administrator)"
)
MUST_CHANGE_TEXT = "Your password must be changed before you can log in; ask your administrator to set a new one"
EXPIRED_TEXT = "Your password has expired; ask your administrator to set a new one"


@dataclass(frozen=True, slots=True)
class LoginRefusal:
    reason: str  # for the log and the login history
    notice: str  # "two-factor", "must-change" or "expired": which notice the user should get
    notice_text: str  # for the user's notice, never for the wire


def main_password_refusal(
    *,
    protocol: str,
    two_factor: bool,
    must_change: bool,
    changed_at: datetime | None,
    now: datetime,
    policy: PasswordPolicySection,
) -> LoginRefusal | None:
    """Why a verified main password may not log in over ``protocol``, or None when it may."""
    if protocol not in MAIL_PROTOCOLS:
        return None
    if two_factor:
        return LoginRefusal("two-factor account: use an app password", "two-factor", TWO_FACTOR_TEXT)
    if must_change:
        return LoginRefusal("password must be changed", "must-change", MUST_CHANGE_TEXT)
    if password_expired(changed_at, now, policy):
        return LoginRefusal("password expired", "expired", EXPIRED_TEXT)
    return None
