"""Configuration of the security audit (``[audit]``), the users' security notices (``[notices]``)
and the impersonation warnings on incoming mail (``[impersonation]``)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

_ADDR_SPEC = re.compile(r"[^\s@<>()\[\],;:\\\"]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")  # a plain address


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuditSection(_Section):
    """``hardmail audit`` and the audit the server runs on a schedule (docs/audit.md)."""

    enabled: bool = Field(True, description="Run the audit on a schedule inside the server (in a child process, one server process only) and keep each run's results in the database.")
    interval_hours: float = Field(24.0, gt=0, description="Hours between scheduled audits (daily by default); the first runs a few minutes after start when the last one is older than this.")
    keep_runs: int = Field(90, ge=1, description="Audit runs kept in the database per target (`hardmail audit history`).")
    probe_timeout: float = Field(10.0, gt=0, description="Seconds each network step of a probe may take.")
    disk_free_min_percent: float = Field(10.0, ge=0, le=100, description="Free space on the data directory's file system below this percentage is a finding.")
    idle_account_days: int = Field(90, ge=1, description="Accounts without a login for this many days, and app passwords not used for this many days, are findings.")
    dkim_max_key_age_days: int = Field(365, ge=1, description="DKIM keys older than this many days should be rotated (`hardmail dkim rotate DOMAIN`).")
    backup_max_age_hours: float = Field(36.0, gt=0, description="The last verified backup older than this is a finding.")
    legacy_hash_max_days: int = Field(30, ge=0, description="Accounts still on a legacy password hash this many days after it was imported are a finding of higher severity.")


class NoticesSection(_Section):
    """Security notices the server delivers into users' INBOXes (docs/user-notices.md)."""

    enabled: bool = Field(True, description="Deliver security notices at all; off turns every kind below off.")
    new_sign_in: bool = Field(True, description="A notice when an account signs in from a source never seen for it (see ipv4_prefix and ipv6_prefix), on any protocol.")
    first_sign_in: bool = Field(False, description="Also send the new-sign-in notice for the very first sign-in of an account (off: that one only sets the baseline the later ones are compared with).")
    refused_sign_in: bool = Field(True, description="A notice when the account's correct password is used and the sign-in is refused by its rules (two-factor authentication on, password must be changed or has expired): someone knows the password.")
    credential_changes: bool = Field(True, description="A notice when an app password is created, two-factor authentication is turned off or the password is changed.")
    weekly_digest: bool = Field(True, description="Offer the weekly digest (sign-ins by source, failed attempts, app passwords) to users who ask for it (`hardmail account digest ADDRESS on`).")
    digest_weekday: int = Field(0, ge=0, le=6, description="Day the weekly digest is sent: 0 Monday ... 6 Sunday (server's local time, at 07:00).")
    ipv4_prefix: int = Field(32, ge=8, le=32, description="IPv4 sources in one network of this prefix length count as one source for new-sign-in notices (32: each address; 24: each /24).")
    ipv6_prefix: int = Field(48, ge=16, le=128, description="IPv6 sources in one network of this prefix length count as one source for new-sign-in notices (48 by default: privacy addresses change within it).")
    sender: str = Field("", description="From: address of the notices; empty: postmaster@ the account's domain. Notices are DKIM-signed when that domain has keys.")
    help_url: str = Field("", description="Page (for example the user portal's security page) the notices point users to; empty: the notices name the commands an admin runs.")
    poll_interval: float = Field(2.0, gt=0, description="Seconds between looks at the login history for events that need a notice.")


    @field_validator("sender")
    @classmethod
    def _check_sender(cls, value: str) -> str:
        value = value.strip()
        if value and not _ADDR_SPEC.fullmatch(value):
            raise ValueError(f"{value[:80]!r} is not a plain address such as security@example.org "
                             "(no display name, spaces or line breaks); leave it empty for postmaster@ the account's domain")
        return value


class ImpersonationSection(_Section):
    """Warnings on incoming mail that pretends to come from a local user or domain (docs/user-notices.md)."""

    enabled: bool = Field(True, description="Add X-Hardmail-Warning to mail from outside whose display name is a local user's name, or whose From: domain looks like a local domain.")
    prepend_warning: bool = Field(False, description="Also put a short warning line at the top of the message's visible text (changes the body: off by default).")
    max_edit_distance: int = Field(2, ge=0, le=3, description="From: domains this many edits (or fewer, but not 0) away from a local domain are look-alikes; 0 turns the edit-distance test off (homographs are still found).")
    match_display_names: bool = Field(True, description="Warn when the display name of mail from outside equals a local user's full display name, a local address or a local part with a separator (bob.smith).")
    allow_domains: list[str] = Field([], description="From: domains never warned about, subdomains included: the organisation's own other domains, partners (\"example.net\", \"partner.example\").")
    allow_senders: list[str] = Field([], description="From: addresses never warned about (\"alice.liddell@partner.example\").")

    @field_validator("allow_domains")
    @classmethod
    def _check_domains(cls, values: list[str]) -> list[str]:
        for value in values:
            if not value.strip() or "@" in value or any(c.isspace() for c in value.strip()):
                raise ValueError(f"not a domain name: {value!r}")
        return values

    @field_validator("allow_senders")
    @classmethod
    def _check_senders(cls, values: list[str]) -> list[str]:
        for value in values:
            local, at, domain = value.strip().rpartition("@")
            if not (local and at and domain) or any(c.isspace() for c in value.strip()):
                raise ValueError(f"not an address: {value!r}")
        return values
