"""Placeholder: replaced by the real loader."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hardmail.config.schema import Config


class ConfigError(Exception):
    pass


def load_config(path: Path | None = None, *, data_dir: Path | None = None,
                overrides: dict[str, Any] | None = None,
                environ: Mapping[str, str] | None = None) -> Config:
    cfg = Config()
    if data_dir is not None:
        cfg = cfg.model_copy(update={"server": cfg.server.model_copy(update={"data_dir": data_dir})})
    return cfg
