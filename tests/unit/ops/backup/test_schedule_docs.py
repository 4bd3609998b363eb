"""docs/backup.md, "Scheduled backups": its example configuration loads and its schedules parse."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from hardmail.config.schema import Config
from hardmail.ops.backup.schedule import parse_schedule

PAGE = Path(__file__).resolve().parents[4] / "docs" / "backup.md"


def section() -> str:
    text = PAGE.read_text()
    start = text.index("## Scheduled backups")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def test_the_example_configuration_is_valid() -> None:
    [block] = re.findall(r"```toml\n(.*?)```", section(), re.S)
    backup = Config.model_validate(tomllib.loads(block)).backup
    assert backup.destination == Path("/srv/backup/hardmail") and len(backup.recipients) == 1


def test_every_schedule_of_the_table_parses() -> None:
    values = re.findall(r'^\| `("[^`]*")` \|', section(), re.M)
    assert len(values) == 5
    for value in values:
        parse_schedule(tomllib.loads(f"v = {value}")["v"])
