"""Every check module of the audit, in the order of the report's sections.

A check module exports ``CHECKS`` (a tuple of :class:`~hardmail.ops.audit.findings.CheckInfo`)
and ``async def run(ctx: AuditContext) -> list[Finding]``. The modules are imported here by
name (an explicit table, not discovery), so that ``docs/audit.md`` and the runner see one list;
every id is unique (a test checks it).
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from hardmail.ops.audit.context import AuditContext
from hardmail.ops.audit.findings import CheckInfo, Finding

# (module, whether it probes listeners over the network)
CHECK_MODULES: tuple[tuple[str, bool], ...] = (
    ("probe_relay", True),
    ("probe_smuggling", True),
    ("probe_starttls", True),
    ("probe_auth", True),
    ("probe_tls", True),
    ("probe_session", True),
    ("checks_config", False),
    ("checks_data", False),
    ("checks_dns", False),
)


@dataclass(frozen=True)
class CheckModule:
    name: str
    probes: bool  # True: talks to the targets' listeners (runs for --target too)
    checks: tuple[CheckInfo, ...]
    run: Callable[[AuditContext], Awaitable[list[Finding]]]


def check_modules() -> list[CheckModule]:
    found = []
    for name, probes in CHECK_MODULES:
        module = importlib.import_module(f"hardmail.ops.audit.{name}")
        found.append(CheckModule(name, probes, tuple(module.CHECKS), module.run))
    return found


def all_checks() -> list[CheckInfo]:
    """Every check of every module, in report order (ids are unique)."""
    return [check for module in check_modules() for check in module.checks]
