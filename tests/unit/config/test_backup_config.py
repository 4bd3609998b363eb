"""The [backup] section: defaults, validation with clear errors, and its warnings."""

from __future__ import annotations

from pathlib import Path

import pytest

from hardmail.config.load import ConfigError, load_config
from hardmail.config.schema import BackupSection, Config
from hardmail.config.warnings import insecure_warnings

RECIPIENT = "age15jtlgp2vt49e6cwthf4drkavgm4z3sqvk8w2xvpvvrsrfav08y5qn728kv"


def load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "hardmail.toml"
    path.write_text(f'[server]\ndata_dir = "data"\n[backup]\n{text}\n')
    return load_config(path, environ={})


def test_defaults() -> None:
    backup = Config().backup
    assert (backup.enabled, backup.schedule, backup.timezone, backup.destination, backup.recipients) == (
        True, "03:00", "", None, [])
    assert (backup.full_every_days, backup.keep_daily, backup.keep_weekly, backup.keep_monthly) == (7, 7, 4, 6)
    assert backup.verify and backup.before_upgrade


def test_every_field_is_documented() -> None:
    assert all(field.description for field in BackupSection.model_fields.values())


def test_a_relative_destination_is_relative_to_the_file(tmp_path: Path) -> None:
    config = load(tmp_path, 'destination = "archives"')
    assert config.backup.destination == tmp_path / "archives"
    assert load(tmp_path, 'destination = ""').backup.destination is None


def test_recipients_keys_and_absolute_files(tmp_path: Path) -> None:
    config = load(tmp_path, f'recipients = ["{RECIPIENT}", "/etc/hardmail/backup.pub"]')
    assert config.backup.recipients == [RECIPIENT, "/etc/hardmail/backup.pub"]
    assert load(tmp_path, f'recipients = "{RECIPIENT}"').backup.recipients == [RECIPIENT]


@pytest.mark.parametrize(("text", "says"), [
    ('schedule = "25:00"', "backup.schedule: '25:00' is not a time of day"),
    ('schedule = "every 7h"', "divide 24"),
    ('schedule = ""', "empty"),
    ('timezone = "Mars/Olympus"', "not a known time zone"),
    ('recipients = ["age1short"]', "not an age public key"),
    ('recipients = ["keys.txt"]', "absolute path"),
    ("keep_daily = -1", "backup.keep_daily"),
    ("full_every_days = -1", "backup.full_every_days"),
])
def test_bad_settings_say_what_is_wrong(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        load(tmp_path, text)


def test_good_schedules_and_zones(tmp_path: Path) -> None:
    config = load(tmp_path, 'schedule = "every 6h"\ntimezone = "Europe/Berlin"')
    assert (config.backup.schedule, config.backup.timezone) == ("every 6h", "Europe/Berlin")


# --- warnings ----------------------------------------------------------------------------------

def backup_warnings(tmp_path: Path, text: str) -> list[str]:
    return [w for w in insecure_warnings(load(tmp_path, text)) if "backup." in w]


def test_defaults_warn_nothing(tmp_path: Path) -> None:
    assert backup_warnings(tmp_path, "") == []


def test_disabled_backups_warn(tmp_path: Path) -> None:
    [warning] = backup_warnings(tmp_path, "enabled = false")
    assert "backup.enabled is false" in warning and "hardmail backup create" in warning


def test_unverified_backups_warn(tmp_path: Path) -> None:
    [warning] = backup_warnings(tmp_path, "verify = false")
    assert "backup.verify is false" in warning


def test_unencrypted_outside_the_data_directory_warns(tmp_path: Path) -> None:
    [warning] = backup_warnings(tmp_path, 'destination = "/srv/backups"')
    assert "/srv/backups" in warning and "backup.recipients" in warning and "keygen" in warning


def test_encrypted_outside_or_unencrypted_inside_does_not_warn(tmp_path: Path) -> None:
    assert backup_warnings(tmp_path, f'destination = "/srv/backups"\nrecipients = ["{RECIPIENT}"]') == []
    assert backup_warnings(tmp_path, 'destination = "data/backups"') == []
    assert backup_warnings(tmp_path, 'destination = "data/../data/elsewhere"') == []
    assert len(backup_warnings(tmp_path, 'destination = "data-other"')) == 1  # a sibling with a common prefix
