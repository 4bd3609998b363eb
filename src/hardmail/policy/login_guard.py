"""The login guard: who may try a password, how fast, and in which hashing lane. Pure.

A ban (see :mod:`hardmail.policy.bans`) refuses AUTH from its source, with one exemption: an
account keeps logging in from an address it logged in from before (a *known pair*), so people
guessing from the owner's subnet (or the owner's own typos) never lock the owner out. Such a
source is let through to the user name and then only for the accounts it is known for; any
other user name is refused before any hashing.

Signals raise the guard instead of banning:

- *account under attack*: ``guessing_sources`` different addresses failed against one account
  within the window (distributed guessing). Unknown sources for that account wait
  ``guard_tarpit`` seconds before their password is checked and hash in the slow lane; nobody
  is banned for it, so the owner's typo from a new address is not a ban.
- *spraying campaign*: ``spray_global_accounts`` different accounts failed against from
  ``spray_global_sources`` different addresses within the window. Every account's guard is up.

Known pairs always hash in the priority lane (:class:`hardmail.auth.pool.HashPool`).
"""

from __future__ import annotations

from dataclasses import dataclass

from hardmail.policy.bans import Ban, BanRules, FailureStats


@dataclass(frozen=True, slots=True)
class Admission:
    """Whether a login may go on to the password check, and how."""

    allowed: bool = True
    priority: bool = False  # the known-pair hashing lane
    delay: float = 0.0  # seconds to wait before the password is checked
    reason: str = ""  # for the log, when refused or slowed down


OPEN = Admission()


@dataclass(frozen=True, slots=True)
class GuardSignals:
    account_under_attack: bool = False
    spraying_campaign: bool = False


def guard_signals(account: str, stats: FailureStats, rules: BanRules) -> GuardSignals:
    """What one failed login's counts (the failure included) say about attacks across sources."""
    under_attack = bool(account) and stats.ips_for_account >= rules.guessing_sources
    campaign = (stats.accounts_total >= rules.spray_global_accounts
                and stats.sources_total >= rules.spray_global_sources)
    return GuardSignals(account_under_attack=under_attack, spraying_campaign=campaign)


def admission(*, ban: Ban | None, known_pair: bool, guarded: bool, rules: BanRules) -> Admission:
    """The verdict for a login to one account from one source, once the user name is known.

    ``ban``: the active ban on the source, if any; ``known_pair``: the account logged in from this
    address before; ``guarded``: the account's guard (or the global one) is up."""
    if ban is not None and ban.scope == "all":
        return Admission(allowed=False, reason=f"source banned ({ban.kind}: {ban.subject})")
    if known_pair:
        return Admission(priority=True)
    if ban is not None:
        return Admission(allowed=False, reason=f"source banned ({ban.kind}: {ban.subject})")
    if guarded and rules.guard_tarpit > 0:
        return Admission(delay=rules.guard_tarpit, reason="account under attack: unknown source slowed down")
    return OPEN


# The listener kinds that take mail without a login: a login ban does not close them.
MAIL_INTAKE_LISTENERS = frozenset({"smtp"})


def connection_refused_by_ban(ban: Ban | None, listener: str, source_has_logins: bool) -> bool:
    """Whether ``ban`` refuses a new connection on ``listener``.

    The MX port ("smtp") takes mail from a source banned for login abuse; a ban for everything
    refuses it there too. On every other port (submission, submissions, imap, imaps, pop3,
    pop3s: each exists to log in) a source with a successful login history for some account is
    let in (its logins are then judged by :func:`admission`), any other banned source is not."""
    if ban is None:
        return False
    if ban.scope == "all":
        return True
    return listener not in MAIL_INTAKE_LISTENERS and not source_has_logins


def auth_refused_by_ban(ban: Ban | None, source_has_logins: bool) -> bool:
    """Before the user name is known: refuse AUTH from a banned source that never logged in."""
    return ban is not None and (ban.scope == "all" or not source_has_logins)
