"""CredentialService: 2FA enrolment and codes on a fake clock (replays refused), recovery codes,
app passwords, imported hashes, and the credential events they leave in the login history."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from hardmail.admin.credentials import CredentialService
from hardmail.admin.service import AdminError, AdminService
from hardmail.auth import totp
from hardmail.config.schema import TwoFactorSection
from hardmail.core.clock import FakeClock
from hardmail.store.ports import Store

ALICE = "alice@example.org"
PASSWORD = "a long enough passphrase"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def credentials(store: Store, service: AdminService, tmp_path: Path, clock: FakeClock) -> CredentialService:
    await service.add_domain("example.org")
    await service.add_account(ALICE, PASSWORD)
    return CredentialService(store, tmp_path / "data", clock=clock)


async def _kinds(store: Store) -> list[str]:
    return [e.kind for e in reversed(await store.credentials.list_login_events(ALICE))]


async def _enable(credentials: CredentialService, clock: FakeClock) -> tuple[str, list[str]]:
    enrolment = await credentials.begin_two_factor(ALICE)
    codes = await credentials.confirm_two_factor(enrolment, totp.code_at(enrolment.secret, totp.time_step(clock.now())))
    return enrolment.secret, codes


async def test_enable_stores_the_secret_encrypted_and_ten_hashed_recovery_codes(
    credentials: CredentialService, store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    secret, codes = await _enable(credentials, clock)
    state = await store.credentials.get_credentials(ALICE)
    assert state is not None and state.totp_secret is not None and secret not in state.totp_secret
    assert len(codes) == 10 and await store.credentials.count_recovery_codes(ALICE) == 10
    key_file = tmp_path / "data" / "server.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "2fa-enabled" in await _kinds(store)


async def test_wrong_first_code_leaves_2fa_off(credentials: CredentialService, store: Store) -> None:
    enrolment = await credentials.begin_two_factor(ALICE)
    with pytest.raises(AdminError) as refused:
        await credentials.confirm_two_factor(enrolment, "000000" if enrolment.secret else "")
    assert "does not match" in refused.value.message or "wrong" in refused.value.message
    state = await store.credentials.get_credentials(ALICE)
    assert state is not None and not state.two_factor


async def test_a_code_works_once_and_the_confirming_code_is_spent(
    credentials: CredentialService, clock: FakeClock
) -> None:
    secret, _codes = await _enable(credentials, clock)
    confirming = totp.code_at(secret, totp.time_step(clock.now()))
    with pytest.raises(AdminError):
        await credentials.verify_second_factor(ALICE, confirming)  # used to confirm: spent
    clock.advance(totp.STEP_SECONDS)
    fresh = totp.code_at(secret, totp.time_step(clock.now()))
    assert await credentials.verify_second_factor(ALICE, fresh) == "totp"
    with pytest.raises(AdminError) as replay:
        await credentials.verify_second_factor(ALICE, fresh)
    assert "already used" in replay.value.message


async def test_an_older_step_is_refused_after_a_newer_one(credentials: CredentialService, clock: FakeClock) -> None:
    secret, _codes = await _enable(credentials, clock)
    clock.advance(3 * totp.STEP_SECONDS)
    step = totp.time_step(clock.now())
    assert await credentials.verify_second_factor(ALICE, totp.code_at(secret, step + 1)) == "totp"
    with pytest.raises(AdminError):
        await credentials.verify_second_factor(ALICE, totp.code_at(secret, step))


async def test_recovery_code_works_once(credentials: CredentialService, store: Store, clock: FakeClock) -> None:
    _secret, codes = await _enable(credentials, clock)
    assert await credentials.verify_second_factor(ALICE, codes[3].upper()) == "recovery-code"
    with pytest.raises(AdminError):
        await credentials.verify_second_factor(ALICE, codes[3])
    assert await store.credentials.count_recovery_codes(ALICE) == 9
    assert "recovery-code-used" in await _kinds(store)


async def test_enable_twice_is_refused_and_disable_removes_codes(
    credentials: CredentialService, store: Store, clock: FakeClock
) -> None:
    await _enable(credentials, clock)
    with pytest.raises(AdminError) as refused:
        await credentials.begin_two_factor(ALICE)
    assert "2fa disable" in refused.value.hint
    await credentials.disable_two_factor(ALICE)
    assert await store.credentials.count_recovery_codes(ALICE) == 0
    assert "2fa-disabled" in await _kinds(store)


async def test_app_password_life_cycle(credentials: CredentialService, store: Store) -> None:
    record, secret = await credentials.add_app_password(ALICE, "phone", ["smtp,imap"], expires_days=30)
    assert record.scopes == {"smtp", "imap"} and record.expires_at is not None
    assert len(secret.replace("-", "")) * 5 >= 128
    assert [a.name for a in await credentials.list_app_passwords(ALICE)] == ["phone"]
    with pytest.raises(AdminError):
        await credentials.add_app_password(ALICE, "phone", ["smtp"])
    await credentials.revoke_app_password(ALICE, "phone")
    assert await credentials.list_app_passwords(ALICE) == []
    assert {"app-password-created", "app-password-revoked"} <= set(await _kinds(store))


@pytest.mark.parametrize(("scopes", "message"), [(["web"], "unknown scope web"), ([], "at least one scope")])
async def test_app_password_scopes_are_checked(credentials: CredentialService, scopes: list[str], message: str) -> None:
    with pytest.raises(AdminError) as refused:
        await credentials.add_app_password(ALICE, "x", scopes)
    assert message in refused.value.message


async def test_import_hash_and_legacy_listing(credentials: CredentialService, store: Store) -> None:
    await credentials.import_hash(ALICE, "hmailserver2", "5f4dcc3b5aa765d61d8327deb882cf99")
    assert await credentials.list_legacy() == [(ALICE, "hmailserver2")]
    with pytest.raises(AdminError) as refused:
        await credentials.import_hash(ALICE, "bcrypt", "not a hash")
    assert "$2b$" in refused.value.hint
    assert "hash-imported" in await _kinds(store)


async def test_password_set_and_change_are_events_and_policy_applies(
    service: AdminService, credentials: CredentialService, store: Store
) -> None:
    await service.set_password(ALICE, "another long passphrase 42")
    assert (await _kinds(store))[:2] == ["password-set", "password-changed"]
    with pytest.raises(AdminError) as refused:
        await service.set_password(ALICE, "password1234")
    assert "most common" in refused.value.message and "nobody else uses" in refused.value.hint


def _wrong_code(secret: str, clock: FakeClock) -> str:
    right = {totp.code_at(secret, totp.time_step(clock.now()) + drift) for drift in (-1, 0, 1)}
    return next(code for code in ("000000", "111111", "222222", "333333") if code not in right)


async def test_too_many_wrong_codes_lock_every_check_until_the_window_ends(
    credentials: CredentialService, store: Store, clock: FakeClock
) -> None:
    secret, codes = await _enable(credentials, clock)
    clock.advance(totp.STEP_SECONDS)  # past the confirming code's step
    for _ in range(5):  # TwoFactorSection.max_failures
        with pytest.raises(AdminError) as wrong:
            await credentials.verify_second_factor(ALICE, _wrong_code(secret, clock))
        assert "wrong" in wrong.value.message
    for locked_out in (totp.code_at(secret, totp.time_step(clock.now())), codes[0]):
        with pytest.raises(AdminError) as locked:
            await credentials.verify_second_factor(ALICE, locked_out)
        assert "too many wrong two-factor codes" in locked.value.message and "UTC" in locked.value.message
        assert locked.value.hint
    assert await store.credentials.count_recovery_codes(ALICE) == 10  # the locked check spent nothing
    assert (await _kinds(store)).count("2fa-locked") == 1
    clock.advance(15 * 60)  # TwoFactorSection.lockout_minutes: the next window
    assert await credentials.verify_second_factor(ALICE, totp.code_at(secret, totp.time_step(clock.now()))) == "totp"


async def test_right_codes_do_not_count_against_the_limit(credentials: CredentialService, clock: FakeClock) -> None:
    secret, codes = await _enable(credentials, clock)
    for attempt in range(4):
        with pytest.raises(AdminError):
            await credentials.verify_second_factor(ALICE, _wrong_code(secret, clock))
        assert await credentials.verify_second_factor(ALICE, codes[attempt]) == "recovery-code"
    with pytest.raises(AdminError) as fifth_wrong:
        await credentials.verify_second_factor(ALICE, _wrong_code(secret, clock))
    assert "too many" not in fifth_wrong.value.message
    with pytest.raises(AdminError) as sixth:
        await credentials.verify_second_factor(ALICE, codes[5])
    assert "too many" in sixth.value.message


async def test_the_limit_and_window_come_from_the_configuration(
    store: Store, service: AdminService, tmp_path: Path, clock: FakeClock
) -> None:
    await service.add_domain("example.org")
    await service.add_account(ALICE, PASSWORD)
    strict = CredentialService(store, tmp_path / "data", TwoFactorSection(max_failures=1, lockout_minutes=1),
                               clock=clock)
    secret, _codes = await _enable(strict, clock)
    clock.advance(60)
    with pytest.raises(AdminError):
        await strict.verify_second_factor(ALICE, _wrong_code(secret, clock))
    with pytest.raises(AdminError) as locked:
        await strict.verify_second_factor(ALICE, totp.code_at(secret, totp.time_step(clock.now())))
    assert "too many" in locked.value.message
    clock.advance(60)
    assert await strict.verify_second_factor(ALICE, totp.code_at(secret, totp.time_step(clock.now()))) == "totp"
