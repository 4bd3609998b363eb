"""Every importable Dovecot scheme, imported through CredentialService, logs in with its password
only and is re-hashed to Argon2id (with SCRAM secrets) at the first login; and the batch import of
a mixed file (admin/hash_batch)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hardmail.admin.credentials import CredentialService
from hardmail.admin.hash_batch import import_hash_file
from hardmail.admin.service import AdminService
from hardmail.auth.authenticator import LoginAttempt, LoginRules, authenticate
from hardmail.auth.pool import HashPool
from hardmail.config.schema import PasswordHashSection, PasswordPolicySection
from hardmail.core.clock import FakeClock
from hardmail.store.ports import Store
from support.dovecot_hashes import KNOWN_PASSWORD, KNOWN_VECTORS, dovecot_hashes

CHEAP = PasswordHashSection(time_cost=1, memory_cost=8192, parallelism=1, hash_workers=1)
STRONGER = PasswordHashSection(time_cost=2, memory_cost=8192, parallelism=1, hash_workers=1)
ALICE = "alice@example.org"
PASSWORD = "tr0ubadour and a horse"
RULES = LoginRules(PasswordPolicySection(), scram_iterations=4096)
SMTP = LoginAttempt(protocol="smtp", client_ip="192.0.2.7", mechanism="PLAIN", tls_version="TLSv1.3")
FORMS = {**dovecot_hashes(PASSWORD), **{name: f"{{{name}}}{text}" for name, text in KNOWN_VECTORS.items()}}


@pytest.fixture
async def credentials(store: Store, service: AdminService, tmp_path: Path) -> CredentialService:
    await service.add_domain("example.org")
    await service.add_account(ALICE, "a long enough passphrase")
    return CredentialService(store, tmp_path / "data")


@pytest.fixture(params=[CHEAP, STRONGER], ids=["same-argon2-params", "stronger-argon2-params"])
def pool(request: pytest.FixtureRequest) -> Iterator[HashPool]:
    created = HashPool(request.param)
    yield created
    created.close()


@pytest.mark.parametrize("dovecot", sorted(FORMS))
async def test_imported_hash_logs_in_and_becomes_argon2id(
    credentials: CredentialService, store: Store, pool: HashPool, dovecot: str
) -> None:
    password = KNOWN_PASSWORD if dovecot in KNOWN_VECTORS else PASSWORD
    done = await credentials.import_hash(ALICE, None, FORMS[dovecot])
    assert await store.credentials.list_legacy() == [(ALICE, done.scheme)]
    clock = FakeClock()
    wrong = await authenticate(store, pool, ALICE, password + "x", SMTP, rules=RULES, clock=clock)
    assert wrong.account is None
    right = await authenticate(store, pool, ALICE, password, SMTP, rules=RULES, clock=clock)
    assert right.account == ALICE
    account = await store.get_account(ALICE)
    state = await store.credentials.get_credentials(ALICE)
    assert account is not None and account.password_hash.startswith("$argon2id$")
    assert state is not None and state.scram is not None and state.legacy_scheme is None
    assert await store.credentials.list_legacy() == []
    again = await authenticate(store, pool, ALICE, password, SMTP, rules=RULES, clock=clock)
    assert again.account == ALICE


MIXED_FILE = f"""# a Dovecot passwd-file, with plain user:hash lines
alice@example.org:{FORMS["SSHA512"]}:1000:1000::/var/mail/alice::userdb_quota_rule=*:storage=1G

bob:{KNOWN_VECTORS["SHA512-CRYPT"]}
carol@example.org:{FORMS["BLF-CRYPT"]}::::::
this line has no colon
dave@example.org:{{NTLM}}8846f7eaee8fb117ad06bdd830b7586c
alice@example.org:{FORMS["SHA"]}
erin@example.net:{FORMS["SHA256"]}
"""


async def test_mixed_file_without_create(credentials: CredentialService, store: Store) -> None:
    report = await import_hash_file(credentials, MIXED_FILE, domain="example.org")
    assert [(o.number, o.user, o.detail) for o in report.imported] == [(2, ALICE, "ssha512")]
    assert [(o.number, o.detail) for o in report.skipped] == [
        (4, "no account bob@example.org (pass --create to create it)"),
        (5, "no account carol@example.org (pass --create to create it)"),
        (8, "already imported from line 2"),
        (9, "no account erin@example.net (pass --create to create it)"),
    ]
    assert [o.number for o in report.failed] == [6, 7]
    assert "unknown scheme {NTLM}" in report.failed[1].detail and "8846f7" not in report.failed[1].detail
    assert await store.get_account("bob@example.org") is None


async def test_mixed_file_with_create(credentials: CredentialService, store: Store) -> None:
    calls: list[int] = []
    report = await import_hash_file(credentials, MIXED_FILE, domain="example.org", create=True,
                                    advance=lambda: calls.append(1))
    assert [(o.user, o.detail) for o in report.imported] == [
        (ALICE, "ssha512"), ("bob@example.org", "sha512-crypt"), ("carol@example.org", "bcrypt")]
    assert report.created == 2 and len(calls) == 7  # every line but the comment and the blank one
    assert [(o.number, o.detail) for o in report.failed][-1] == (9, "domain example.net is not hosted here")
    assert sorted(await store.credentials.list_legacy()) == [
        (ALICE, "ssha512"), ("bob@example.org", "sha512-crypt"), ("carol@example.org", "bcrypt")]
