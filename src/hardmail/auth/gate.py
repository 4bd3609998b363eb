"""The seam between the login engine and the source's access rules, used by every protocol.

:func:`hardmail.auth.authenticator.authenticate` asks a :class:`LoginGate` about the account
once the user name is known and before any hashing: the gate may refuse (a banned source trying
an account it never logged in to), slow the login down (an account under attack, an unknown
source) or put it in the priority hashing lane (a known source/account pair). The server's
access hook implements it (:meth:`hardmail.server.access_hook.AccessHook.gate_for`); the
decisions themselves are :func:`hardmail.policy.login_guard.admission`.
"""

from __future__ import annotations

from typing import Protocol

from hardmail.policy.login_guard import OPEN, Admission


class LoginGate(Protocol):
    source: str  # the hashing pool's fairness key of the client (its address key); "" if none

    async def admit(self, account: str) -> Admission:
        """The verdict for a login to ``account`` (an account key; "" when the name is no
        account); a delay in it has already been waited when this returns."""
        ...


class OpenGate:
    """No access rules (tests, tools): every login is admitted, in the normal lane."""

    def __init__(self, source: str = "") -> None:
        self.source = source

    async def admit(self, account: str) -> Admission:
        return OPEN
