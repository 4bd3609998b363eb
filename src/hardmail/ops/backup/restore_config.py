"""The configuration file of a restored data directory: ``server.data_dir`` set to the restore
directory (when the file sets it), ``storage.url`` set to where the database was restored, and
the admin told about other settings that still name the old data directory.

The file is edited line by line, so that its comments and layout stay; when a setting is written
in a form this does not edit (an inline table, a multi-line string) the file is written again
from its parsed values, and a note says that its comments were lost.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tomli_w

from hardmail.delivery.durable import write_durably

_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\- ]+?)\s*\]\s*(#.*)?$")


def rewrite(config_file: Path, into: Path, database_url: str | None, old_data_dir: str) -> list[str]:
    """Point the restored configuration at ``into`` and its database; returns notes for the admin.
    ``database_url``: the PostgreSQL database restored into, None for SQLite in ``into``."""
    text = config_file.read_text(encoding="utf-8")
    try:
        parsed = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return [f"the restored configuration {config_file} is not valid TOML ({exc}); set server.data_dir and "
                "storage.url in it by hand"]
    wanted = _wanted_values(parsed, into, database_url)
    if not wanted:
        return _old_paths(parsed, old_data_dir, config_file)
    edited, notes = _edited(text, wanted, parsed)
    write_durably(config_file, edited.encode("utf-8"), mode=0o600)  # it may hold the database password
    return notes + _old_paths(tomllib.loads(edited), old_data_dir, config_file)


def _wanted_values(parsed: dict[str, Any], into: Path, database_url: str | None) -> dict[tuple[str, str], str]:
    wanted: dict[tuple[str, str], str] = {}
    if "data_dir" in parsed.get("server", {}):
        wanted[("server", "data_dir")] = str(into)
    current_url = parsed.get("storage", {}).get("url")
    if database_url is not None and current_url != database_url:
        wanted[("storage", "url")] = database_url
    elif database_url is None and current_url:
        wanted[("storage", "url")] = ""  # empty: SQLite at data_dir/hardmail.db
    return wanted


def _edited(text: str, wanted: dict[tuple[str, str], str], parsed: dict[str, Any]) -> tuple[str, list[str]]:
    lines = text.splitlines(keepends=True)
    missing = dict(wanted)
    for index, (table, key) in _setting_lines(lines, set(wanted)):
        lines[index] = f"{key} = {_toml_string(wanted[(table, key)])}\n" if "." not in _key_of(lines[index]) \
            else f"{table}.{key} = {_toml_string(wanted[(table, key)])}\n"
        missing.pop((table, key), None)
    for (table, key), value in missing.items():  # set by the file in a form not edited here: add the table
        if table not in parsed:
            lines.append(f"\n[{table}]\n{key} = {_toml_string(value)}\n")
    edited = "".join(lines)
    if _reads_back(edited, wanted):
        return edited, []
    for (table, key), value in wanted.items():
        parsed.setdefault(table, {})[key] = value
    return tomli_w.dumps(parsed), ["the restored configuration was written again from its values (its comments "
                                   "were lost): it sets server.data_dir or storage.url in a form not edited in place"]


def _setting_lines(lines: list[str], keys: set[tuple[str, str]]) -> Iterator[tuple[int, tuple[str, str]]]:
    """(line index, (table, key)) of each single-line ``key = value`` of ``keys``, in the table's
    section or as a dotted key at the top."""
    section = ""
    for index, line in enumerate(lines):
        header = _HEADER.match(line)
        if header:
            section = header.group(1).strip()
            continue
        key = _key_of(line)
        if not key:
            continue
        dotted = key.split(".")
        found = (section, key) if len(dotted) == 1 else (dotted[0], dotted[1]) if not section and len(dotted) == 2 \
            else None
        if found in keys:
            yield index, found


def _key_of(line: str) -> str:
    match = re.match(r"^\s*([A-Za-z0-9_\-]+(?:\s*\.\s*[A-Za-z0-9_\-]+)?)\s*=", line)
    return re.sub(r"\s+", "", match.group(1)) if match else ""


def _toml_string(value: str) -> str:
    return tomli_w.dumps({"v": value}).partition("=")[2].strip()


def _reads_back(text: str, wanted: dict[tuple[str, str], str]) -> bool:
    try:
        parsed = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False
    return all(parsed.get(table, {}).get(key) == value for (table, key), value in wanted.items())


def _old_paths(parsed: dict[str, Any], old_data_dir: str, config_file: Path) -> list[str]:
    """A note naming the settings that still point into the old data directory."""
    if not old_data_dir:
        return []
    found = [name for name, value in _flatten(parsed) if isinstance(value, str)
             and (value == old_data_dir or value.startswith(old_data_dir.rstrip("/") + "/"))
             and name not in ("server.data_dir", "storage.url")]
    if not found:
        return []
    return [f"{config_file} still names the old data directory {old_data_dir} in {', '.join(found)}; change them "
            "if the old directory is gone"]


def _flatten(value: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, dict):
            yield from _flatten(item, name + ".")
        else:
            yield name, item
