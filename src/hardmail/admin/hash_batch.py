"""``hardmail account import-hashes FILE``: many imported password hashes at once.

Each line of the file (:func:`hardmail.auth.hash_import.parse_hash_file`) goes through
:meth:`CredentialService.import_hash`, so one hash is checked and stored exactly as by
``import-hash``. The outcome of every line is kept: imported, skipped (an account that does not
exist, unless ``create``; a user listed again) or failed (a line that is not ``user:hash``, a user
that is not an address, a hash refused), each with its line number and a reason that never
contains the hash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hardmail.admin.credentials import CredentialService, NoSuchAccount
from hardmail.admin.service import AdminError
from hardmail.auth.hash_import import BadLine, HashLine, parse_hash_file
from hardmail.core.address import AddressError, parse_address_arg


@dataclass(frozen=True, slots=True)
class LineOutcome:
    number: int
    user: str
    detail: str  # the scheme when imported, else the reason


@dataclass
class ImportReport:
    imported: list[LineOutcome] = field(default_factory=list)
    created: int = 0  # of the imported, accounts made by the import
    skipped: list[LineOutcome] = field(default_factory=list)
    failed: list[LineOutcome] = field(default_factory=list)


def _address(user: str, domain: str | None) -> str:
    return user if "@" in user or not domain else f"{user}@{domain}"


async def import_hash_file(
    service: CredentialService, text: str, *, scheme: str | None = None, domain: str | None = None,
    create: bool = False, advance: Callable[[], None] = lambda: None,
) -> ImportReport:
    """Import every line of ``text``; ``advance`` is called once per line (a progress bar)."""
    report = ImportReport()
    seen: dict[str, int] = {}
    for entry in parse_hash_file(text):
        await _import_line(service, entry, report, seen, scheme=scheme, domain=domain, create=create)
        advance()
    return report


def count_lines(text: str) -> int:
    """How many lines :func:`import_hash_file` will go through (for the progress bar's total)."""
    return len(parse_hash_file(text))


async def _import_line(
    service: CredentialService, entry: HashLine | BadLine, report: ImportReport, seen: dict[str, int],
    *, scheme: str | None, domain: str | None, create: bool,
) -> None:
    if isinstance(entry, BadLine):
        report.failed.append(LineOutcome(entry.number, "", entry.reason))
        return
    if "@" not in entry.user and not domain:
        report.failed.append(LineOutcome(entry.number, entry.user, "the user has no @domain (pass --domain)"))
        return
    try:
        address = parse_address_arg(_address(entry.user, domain)).key
    except AddressError as exc:
        report.failed.append(LineOutcome(entry.number, entry.user, f"not an address: {exc}"))
        return
    if address in seen:
        report.skipped.append(LineOutcome(entry.number, address, f"already imported from line {seen[address]}"))
        return
    try:
        done = await service.import_hash(address, scheme, entry.password, create=create)
    except NoSuchAccount as exc:
        report.skipped.append(LineOutcome(entry.number, address, f"{exc.message} (pass --create to create it)"))
        return
    except AdminError as exc:
        report.failed.append(LineOutcome(entry.number, address, exc.message))
        return
    seen[address] = entry.number
    report.created += done.created
    report.imported.append(LineOutcome(entry.number, done.address, done.scheme))
