"""Rendering: TOML that loads back to the same configuration, JSON, the example file, the docs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from hardmail.config.load import load_config
from hardmail.config.render import reference_rows, render_example, render_json, render_toml
from hardmail.config.schema import Config

REPO = Path(__file__).resolve().parents[3]
REGENERATE = "regenerate it with: scripts/gen-config-docs"


def busy_config(tmp_path: Path) -> Config:
    return Config.model_validate({
        "server": {"hostname": "mx.example.org", "data_dir": tmp_path / "data"},
        "listen": {"smtp": ["0.0.0.0:25", "[::]:25"]},
        "tls": {"cert_file": tmp_path / "c.pem", "key_file": tmp_path / "k.pem",
                "certificates": [{"hostnames": ["a.example"], "cert_file": tmp_path / "a.pem",
                                  "key_file": tmp_path / "a.key"}]},
        "smtp": {"plus_separator": "", "timeouts": {"command": 12.5}},
        "relay": {"trusted_networks": ["10.0.0.0/8"]},
        "logging": {"format": "console"},
    })


def test_toml_round_trips(tmp_path: Path) -> None:
    original = busy_config(tmp_path)
    path = tmp_path / "out.toml"
    path.write_text(render_toml(original, header="a header"))
    assert load_config(path, environ={}) == original


def test_defaults_round_trip_with_unset_settings_commented(tmp_path: Path) -> None:
    text = render_toml(Config())
    assert "#cert_file =   (unset)" in text
    path = tmp_path / "defaults.toml"
    path.write_text(text)
    loaded = load_config(path, environ={})
    assert loaded.model_dump(exclude={"server"}) == Config().model_dump(exclude={"server"})


def test_database_password_is_hidden() -> None:
    cfg = Config.model_validate({"storage": {"url": "postgresql+asyncpg://mail:s3cret@db/mail"}})
    for text in (render_toml(cfg), render_json(cfg)):
        assert "s3cret" not in text
        assert "mail:***@db/mail" in text


def test_json_has_every_section() -> None:
    data = json.loads(render_json(Config()))
    assert list(data) == list(Config.model_fields)
    assert data["tls"]["cert_file"] is None


def test_example_file_matches_the_schema() -> None:
    example = (REPO / "hardmail.toml.example").read_text(encoding="utf-8")
    assert example == render_example(), REGENERATE


def test_example_file_loads_to_the_defaults() -> None:
    loaded = load_config(REPO / "hardmail.toml.example", environ={})
    assert loaded.model_dump(exclude={"server"}) == Config().model_dump(exclude={"server"})


def _schema_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, found in model.model_fields.items():
        annotation: Any = found.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += _schema_keys(annotation, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def test_every_setting_is_documented() -> None:
    docs = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = [key for key in _schema_keys(Config) if f"`{key}`" not in docs]
    assert missing == [], "add these to docs/configuration.md: run scripts/gen-config-docs"


def test_every_setting_has_a_description() -> None:
    assert [key for key, _default, text in reference_rows() if not text] == []


def test_reference_rows_cover_the_schema() -> None:
    assert [key for key, _d, _t in reference_rows()] == _schema_keys(Config)
    assert all(re.fullmatch(r"[a-z0-9_.]+", key) for key, _d, _t in reference_rows())
