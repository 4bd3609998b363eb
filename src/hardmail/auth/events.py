"""Credential and login events: each one is logged and appended to the account's login history.

Kinds: ``login``, ``password-set``, ``password-changed``, ``must-change-set``,
``must-change-cleared``, ``hash-imported``, ``legacy-hash-upgraded``, ``hash-parameters-upgraded``,
``2fa-enabled``, ``2fa-disabled``, ``2fa-code-wrong``, ``2fa-locked``, ``recovery-code-used``, ``app-password-created``,
``app-password-first-use``, ``app-password-revoked``. A history write that fails is logged once
and counted (:func:`hardmail.auth.audit.audited`) and does not fail the login or the admin action
it records.

A ``login`` row with result ``refused`` is a correct main password refused by the login rules
(two-factor authentication on, must change, expired): the client got the reply of a wrong
password, and the row's detail says why; the user's notice is made from these rows.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hardmail.auth.audit import audited
from hardmail.core.clock import Clock
from hardmail.ops.log import log_event
from hardmail.store.ports_credentials import CredentialStore, LoginEvent


def now_utc(clock: Clock) -> datetime:
    return datetime.fromtimestamp(clock.now(), UTC)


async def record_event(credentials: CredentialStore, event: LoginEvent) -> None:
    name = "auth.login" if event.kind == "login" else "auth.credential"
    level = "info" if event.result in ("success", "done") else "warning"
    log_event(name, level=level, account=event.account, kind=event.kind, result=event.result,
              protocol=event.protocol or None, mechanism=event.mechanism or None,
              client_ip=event.client_ip or None, tls_version=event.tls_version or None,
              detail=event.detail or None)
    await audited("login-history", credentials.append_login_event(event))


async def record_admin_event(
    credentials: CredentialStore, clock: Clock, account: str, kind: str, detail: str = ""
) -> None:
    """A credential event caused by an admin action (CLI or API)."""
    event = LoginEvent(at=now_utc(clock), account=account, kind=kind, result="done",
                       protocol="admin", detail=detail)
    await record_event(credentials, event)
