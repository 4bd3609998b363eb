"""Showing a configuration: commented TOML (``config check``, the example file), JSON, a docs table.

Values are written with tomli-w; the layout (one section per schema model, each key preceded by
its schema description) is ours, because a TOML writer has no notion of comments. A password in
``storage.url`` is never shown.
"""

from __future__ import annotations

import json
import textwrap
import types
from typing import Any, Union, get_args, get_origin

import tomli_w
from pydantic import BaseModel
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from hardmail.config.schema import Config

EXAMPLE_HEADER = """\
hardmail configuration: every setting, set to its default value.
Copy this file to hardmail.toml (or name it with --config or $HARDMAIL_CONFIG) and change what
you need; a setting you leave out keeps its default. Relative paths are relative to this file's
directory. Any setting can also come from the environment as HARDMAIL_SECTION__KEY, for example
HARDMAIL_SMTP__MAX_RECIPIENTS=200. Check the result with: hardmail config check"""

_WIDTH = 98


def _unwrap(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _is_model_list(annotation: Any) -> bool:
    return get_origin(annotation) is list and _is_model(get_args(annotation)[0])


def effective_dict(cfg: Config) -> dict[str, Any]:
    """Every setting as plain JSON-able data, with a database password hidden."""
    data = cfg.model_dump(mode="json")
    data["storage"]["url"] = hide_url_password(data["storage"]["url"])
    return data


def hide_url_password(url: str) -> str:
    """``postgresql+asyncpg://user:secret@host/db`` → ``...user:***@host/db``."""
    if not url:
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "(not shown: not a valid database URL)"


def render_json(cfg: Config) -> str:
    return json.dumps(effective_dict(cfg), indent=2) + "\n"


def render_toml(cfg: Config, *, header: str = "") -> str:
    """The configuration as TOML that loads back to the same values (unset keys commented)."""
    data = effective_dict(cfg)
    lines = _comment(header) if header else []
    for name, found in Config.model_fields.items():
        lines += _section_lines((name,), _unwrap(found.annotation), data[name])
    return "\n".join(lines).lstrip("\n") + "\n"


def render_example() -> str:
    """The text of ``hardmail.toml.example``: every setting at its default, each explained."""
    return render_toml(Config(), header=EXAMPLE_HEADER)


def _section_lines(path: tuple[str, ...], model: type[BaseModel], values: Any) -> list[str]:
    lines = ["", f"[{'.'.join(path)}]"]
    later: list[str] = []
    for key, found in model.model_fields.items():
        annotation = _unwrap(found.annotation)
        if _is_model(annotation):
            later += _section_lines((*path, key), annotation, values[key])
            continue
        if _is_model_list(annotation) and values[key]:
            later += ["", *_comment(found.description or "")]
            later += tomli_w.dumps(_nest((*path, key), values[key])).rstrip("\n").split("\n")
            continue
        lines += _comment(found.description or "")
        lines.append(_key_line(key, values[key]))
    return lines + later


def _nest(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    for part in reversed(path):
        value = {part: value}
    return value  # type: ignore[no-any-return]


def _key_line(key: str, value: Any) -> str:
    if value is None:
        return f"#{key} =   (unset)"
    return f"{key} = {_toml_value(value)}"


def _toml_value(value: Any) -> str:
    """One TOML value; arrays of plain values on one line, which reads best for short lists."""
    if isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return tomli_w.dumps({"v": value}).removeprefix("v = ").rstrip("\n")


def _comment(text: str) -> list[str]:
    lines: list[str] = []
    for paragraph in text.split("\n"):
        lines += [f"# {line}" for line in textwrap.wrap(paragraph, _WIDTH - 2)] or ["#"]
    return lines if text else []


def reference_rows() -> list[tuple[str, str, str]]:
    """(dotted key, default as TOML, description) for every setting, in schema order."""
    rows: list[tuple[str, str, str]] = []
    _collect_rows((), Config, effective_dict(Config()), rows)
    return rows


def _collect_rows(path: tuple[str, ...], model: type[BaseModel], values: Any,
                  rows: list[tuple[str, str, str]]) -> None:
    for key, found in model.model_fields.items():
        annotation = _unwrap(found.annotation)
        if _is_model(annotation):
            _collect_rows((*path, key), annotation, values[key], rows)
            continue
        default = "(unset)" if values[key] is None else _toml_value(values[key])
        rows.append((".".join((*path, key)), default, found.description or ""))


def render_reference_markdown() -> str:
    """The settings table of docs/configuration.md."""
    lines = ["| Setting | Default | Meaning |", "| --- | --- | --- |"]
    for key, default, description in reference_rows():
        cells = [cell.replace("|", "\\|") for cell in (default, description)]
        lines.append(f"| `{key}` | `{cells[0]}` | {cells[1]} |")
    return "\n".join(lines) + "\n"
