"""Loading the configuration: TOML file, ``HARDMAIL_*`` environment, command line → Config.

Precedence, later wins: schema defaults < ``$HARDMAIL_DATA_DIR`` < file < environment
(``HARDMAIL_SECTION__KEY``) < overrides < ``--data-dir``. ``$HARDMAIL_DATA_DIR`` thus only replaces
the default data directory (``./hardmail-data``): a configuration that names one wins over it.
The data directory is made absolute here, once, so every command and the server use one path.
Every value is recorded with the place it came from, so that each problem is reported as
``<source>:<dotted.key>: what is wrong; allowed: what is accepted`` — all problems at once.
Relative paths are resolved against the config file's directory (values from the file) or the
current directory (values from the environment or the command line).
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from hardmail.config.schema import Config

ENV_PREFIX = "HARDMAIL_"
CONFIG_ENV = "HARDMAIL_CONFIG"
DATA_DIR_ENV = "HARDMAIL_DATA_DIR"
AUDIT_PASSWORD_ENV = "HARDMAIL_AUDIT_PASSWORD"  # `hardmail audit --login`'s password: not a setting
DEFAULT_CONFIG_FILE = Path("hardmail.toml")
# Settings whose values may hold a secret (a database password in a URL): never echoed.
_UNSHOWN_KEYS = frozenset({("storage", "url")})
_MAX_SHOWN = 60

Key = tuple[str | int, ...]


class ConfigError(Exception):
    """The configuration is unusable; ``str(exc)`` has one line per problem."""

    def __init__(self, problems: str | Sequence[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class _Setting:
    """One value from one source, at one dotted place in the configuration."""

    path: tuple[str, ...]
    value: Any
    source: str


@dataclass
class _Collected:
    settings: list[_Setting] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


# --- the schema, walked by key -------------------------------------------------------------


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """``X | None`` → (X, True); anything else → (annotation, False)."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _field_at(path: Key) -> FieldInfo | None:
    """The schema field at a dotted place (list indices step into the item type), or None."""
    model: Any = Config
    found: FieldInfo | None = None
    for part in path:
        if isinstance(part, int):
            model = get_args(model)[0] if get_origin(model) is list else None
            continue
        if not _is_model(model) or part not in model.model_fields:
            return None
        found = model.model_fields[part]
        model = _unwrap_optional(found.annotation)[0]
    return found


def _model_at(path: Key) -> type[BaseModel] | None:
    """The section model at a dotted place (the root for an empty path), or None."""
    if not path:
        return Config
    found = _field_at(path)
    annotation = _unwrap_optional(found.annotation)[0] if found else None
    if get_origin(annotation) is list:
        annotation = get_args(annotation)[0]
    return annotation if _is_model(annotation) else None


# --- reading the sources -------------------------------------------------------------------


def _choose_file(path: Path | None, environ: Mapping[str, str]) -> tuple[Path | None, str]:
    """Which file to read and who named it; an explicitly named file must exist."""
    if path is not None:
        return path, "--config"
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV]), f"env {CONFIG_ENV}"
    if _default_file_visible():
        return DEFAULT_CONFIG_FILE, "default location"
    return None, ""


def _default_file_visible() -> bool:
    """Whether ./hardmail.toml is there for this user. A current directory the user may not
    search (``sudo -u mail hardmail status`` run from /root) hides it: no file, not a crash."""
    try:
        return DEFAULT_CONFIG_FILE.is_file()
    except PermissionError:
        return False


def _read_toml(path: Path, named_by: str) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(
            f"{path}: configuration file does not exist (named by {named_by}); "
            "create it (see hardmail.toml.example) or name another file"
        )
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {_describe_toml_error(exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{path}: cannot read the configuration file: {reason}") from None


def _describe_toml_error(exc: tomllib.TOMLDecodeError) -> str:
    """tomllib says ``Invalid value (at line 3, column 9)``; we lead with the line number."""
    match = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
    if not match:
        return f"TOML syntax error: {exc}"
    reason = str(exc)[: match.start()].strip()
    return f"TOML syntax error at line {match[1]}: {reason} (column {match[2]})"


def _flatten(value: Any, path: tuple[str, ...], source: str) -> Iterator[_Setting]:
    """A nested table → one setting per leaf; an empty table is kept so unknown ones are seen."""
    if isinstance(value, dict) and (value or not path):
        for key, item in value.items():
            yield from _flatten(item, (*path, str(key)), source)
    else:
        yield _Setting(path, value, source)


def _file_settings(path: Path, named_by: str) -> list[_Setting]:
    data = _read_toml(path, named_by)
    base = path.parent.resolve()
    settings = _flatten(data, (), str(path))
    return [_Setting(s.path, _absolutize(s.path, s.value, base), s.source) for s in settings]


# --- environment ---------------------------------------------------------------------------


def _env_settings(environ: Mapping[str, str]) -> _Collected:
    collected = _Collected()
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX) or name.upper() in (CONFIG_ENV, DATA_DIR_ENV, AUDIT_PASSWORD_ENV):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        if "__" not in rest:
            collected.problems.extend(_single_underscore_problem(name, rest))
            continue
        path = tuple(rest.split("__"))
        if "" in path:
            collected.problems.append(
                f"env {name}: malformed setting name; use HARDMAIL_SECTION__KEY, "
                "for example HARDMAIL_SMTP__MAX_RECIPIENTS"
            )
            continue
        value = _absolutize(path, _parse_env_value(environ[name], path), Path.cwd())
        collected.settings.append(_Setting(path, value, f"env {name}"))
    return collected


def _single_underscore_problem(name: str, rest: str) -> list[str]:
    """``HARDMAIL_SMTP_MAX_RECIPIENTS`` is almost surely meant as a setting: say how to spell it."""
    for section in Config.model_fields:
        if rest.startswith(section + "_"):
            fixed = f"{ENV_PREFIX}{section.upper()}__{rest[len(section) + 1 :].upper()}"
            return [
                f"env {name}: not a setting name; put a double underscore between "
                f"section and key, for example {fixed}"
            ]
    return []  # Another program's HARDMAIL_* variable: not ours to judge.


def _parse_env_value(raw: str, path: tuple[str, ...]) -> Any:
    """Text for text settings; a TOML value (int, bool, array) where that parses; else text."""
    found = _field_at(path)
    annotation, optional = _unwrap_optional(found.annotation) if found else (None, False)
    if raw == "" and optional:
        return None
    if annotation in (str, Path) or get_origin(annotation) is Literal:
        return raw
    parsed = _toml_value(raw)
    if get_origin(annotation) is list and not isinstance(parsed, list):
        return [item.strip() for item in raw.split(",") if item.strip()]
    return raw if parsed is None else parsed


def _toml_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"value = {raw}").get("value")
    except tomllib.TOMLDecodeError:
        return None


# --- overrides and paths -------------------------------------------------------------------


def _override_settings(
    overrides: Mapping[str, Any], names: Mapping[str, str], data_dir: Path | None
) -> list[_Setting]:
    cwd = Path.cwd()
    settings = []
    for dotted, value in overrides.items():
        path = tuple(dotted.split("."))
        source = names.get(dotted, "command line")
        settings.append(_Setting(path, _absolutize(path, value, cwd), source))
    if data_dir is not None:
        path = ("server", "data_dir")
        settings.append(_Setting(path, _absolutize(path, data_dir, cwd), "--data-dir"))
    return settings


def _absolutize(path: Key, value: Any, base: Path) -> Any:
    """Make relative path values absolute against ``base``; other values pass unchanged."""
    found = _field_at(path)
    return _absolutize_typed(_unwrap_optional(found.annotation)[0], value, base) if found else value


def _absolutize_typed(annotation: Any, value: Any, base: Path) -> Any:
    if annotation is Path and isinstance(value, str | PurePath) and str(value):
        return base / Path(value).expanduser()
    if _is_model(annotation) and isinstance(value, dict):
        fields = annotation.model_fields
        return {
            key: _absolutize_typed(_unwrap_optional(fields[key].annotation)[0], item, base)
            if key in fields else item
            for key, item in value.items()
        }
    if get_origin(annotation) is list and isinstance(value, list):
        return [_absolutize_typed(get_args(annotation)[0], item, base) for item in value]
    return value


# --- merging and validating ----------------------------------------------------------------


def _merge(settings: list[_Setting]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """Apply settings in order into one nested dict; remember who set each place."""
    raw: dict[str, Any] = {}
    sources: dict[tuple[str, ...], str] = {}
    leaves = [leaf for s in settings for leaf in _flatten(s.value, s.path, s.source)]
    for setting in leaves:
        table = raw
        for part in setting.path[:-1]:
            if not isinstance(table.get(part), dict):
                table[part] = {}
            table = table[part]
        leaf = setting.path[-1]
        if not (isinstance(setting.value, dict) and isinstance(table.get(leaf), dict)):
            table[leaf] = setting.value
        sources[setting.path] = setting.source
    return raw, sources


def _source_of(loc: Key, sources: Mapping[tuple[str, ...], str], fallback: str) -> str:
    for end in range(len(loc), 0, -1):
        prefix = loc[:end]
        if all(isinstance(p, str) for p in prefix) and prefix in sources:
            return sources[prefix]  # type: ignore[index]
    return fallback


def _dotted(loc: Key) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def load_config(
    path: Path | None = None,
    *,
    data_dir: Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    override_names: Mapping[str, str] | None = None,
) -> Config:
    """Build the effective configuration, or raise ConfigError listing every problem.

    ``path`` None means ``$HARDMAIL_CONFIG``, else ``./hardmail.toml`` if present, else defaults.
    ``overrides`` maps dotted keys to values; ``override_names`` maps the same dotted keys to the
    command-line option that supplied them (shown in problems instead of "command line").
    """
    environ = os.environ if environ is None else environ
    file_path, named_by = _choose_file(path, environ)
    settings = _default_data_dir(environ)
    settings += _file_settings(file_path, named_by) if file_path else []
    env = _env_settings(environ)
    settings += env.settings
    settings += _override_settings(overrides or {}, override_names or {}, data_dir)
    raw, sources = _merge(settings)
    fallback = str(file_path) if file_path else "configuration"
    problems = list(env.problems)
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        problems += [_problem_line(err, sources, fallback) for err in exc.errors()]
        raise ConfigError(problems) from None
    problems += _cross_check(cfg, sources, fallback)
    if problems:
        raise ConfigError(problems)
    return _with_absolute_data_dir(cfg)


def config_file_path(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Path | None:
    """The configuration file :func:`load_config` reads for the same ``path`` and ``environ``
    (made absolute), or None when it reads none (built-in defaults and the environment only).

    The choice is ``load_config``'s own: ``path`` (``--config``) when given, else
    ``$HARDMAIL_CONFIG`` when set, else ``./hardmail.toml`` when this user can see it. A backup
    stores that file, so that a restore brings back the configuration that was in use.
    """
    chosen, _named_by = _choose_file(path, os.environ if environ is None else environ)
    return None if chosen is None else chosen.absolute()


def _default_data_dir(environ: Mapping[str, str]) -> list[_Setting]:
    """``$HARDMAIL_DATA_DIR`` in place of the built-in default (relative: to the current directory)."""
    value = environ.get(DATA_DIR_ENV, "")
    if not value:
        return []
    path = ("server", "data_dir")
    return [_Setting(path, _absolutize(path, value, Path.cwd()), f"env {DATA_DIR_ENV}")]


def _with_absolute_data_dir(cfg: Config) -> Config:
    """The data directory as one absolute, normalised path (``a/../b`` → ``b``, ``~`` expanded)."""
    absolute = Path(os.path.normpath(Path.cwd() / cfg.server.data_dir.expanduser()))
    if absolute == cfg.server.data_dir:
        return cfg
    server = cfg.server.model_copy(update={"data_dir": absolute})
    return cfg.model_copy(update={"server": server})


def _cross_check(cfg: Config, sources: Mapping[tuple[str, ...], str], fallback: str) -> list[str]:
    """Rules that span two settings, which the per-field schema cannot state."""
    if (cfg.tls.cert_file is None) == (cfg.tls.key_file is None):
        return []
    present, absent = ("cert_file", "key_file") if cfg.tls.key_file is None else (
        "key_file", "cert_file")
    source = _source_of(("tls", present), sources, fallback)
    return [
        f"{source}:tls.{present}: is set but tls.{absent} is not; allowed: set both "
        "(a PEM certificate chain and its private key) or neither (a self-signed certificate)"
    ]


# --- turning pydantic's errors into admin-readable lines -----------------------------------


Sources = Mapping[tuple[str, ...], str]


def _problem_line(error: ErrorDetails, sources: Sources, fallback: str) -> str:
    loc = tuple(error["loc"])
    what, allowed = _describe(error, loc)
    line = f"{_source_of(loc, sources, fallback)}:{_dotted(loc)}: {what}"
    return f"{line}; allowed: {allowed}" if allowed else line


def _describe(error: ErrorDetails, loc: Key) -> tuple[str, str]:
    """(what is wrong, what is allowed) for one validation error."""
    kind = error["type"]
    if kind == "extra_forbidden":
        return _unknown_key(loc)
    found = _field_at(loc)
    got = _shown(error.get("input"), loc)
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return "required setting is missing", _allowed(found)
    if kind == "literal_error":
        return f"is not an allowed value{got}", _allowed(found)
    if kind in _BOUND_TEMPLATES:
        bound = next(iter(ctx.values()), "?")
        return _BOUND_TEMPLATES[kind].format(bound) + got, _allowed(found)
    if kind == "value_error" and isinstance(error.get("input"), list):
        got = ""  # the message already names the bad item of the list
    message = str(error["msg"]).removeprefix("Value error, ")
    message = message.replace("Input should be", "must be")
    return f"{message[:1].lower()}{message[1:]}{got}", _allowed(found)


_BOUND_TEMPLATES = {
    "greater_than": "must be greater than {}",
    "greater_than_equal": "must be at least {}",
    "less_than": "must be less than {}",
    "less_than_equal": "must be at most {}",
    "string_too_long": "must be at most {} character(s) long",
    "string_too_short": "must be at least {} character(s) long",
    "too_long": "must have at most {} items",
    "too_short": "must have at least {} items",
}


def _unknown_key(loc: Key) -> tuple[str, str]:
    parent = _model_at(loc[:-1])
    allowed_keys = list(parent.model_fields) if parent else []
    guess = difflib.get_close_matches(str(loc[-1]), allowed_keys, n=1)
    hint = f" (did you mean {guess[0]}?)" if guess else ""
    if len(loc) == 1:
        return f"unknown section{hint}", f"sections {', '.join(allowed_keys)}"
    section = _dotted(loc[:-1])
    return f"unknown setting{hint}", f"keys in section {section}: {', '.join(allowed_keys)}"


def _shown(value: Any, loc: Key) -> str:
    """`` (got 'x')`` — never for settings that may carry a secret, never unbounded."""
    if value is None or loc[:2] in _UNSHOWN_KEYS or isinstance(value, dict):
        return ""
    text = repr(str(value)) if isinstance(value, PurePath) else repr(value)
    if len(text) > _MAX_SHOWN:
        text = text[: _MAX_SHOWN - 3] + "..."
    return f" (got {text})"


def _allowed(found: FieldInfo | None) -> str:
    if found is None:
        return ""
    annotation, optional = _unwrap_optional(found.annotation)
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(str(arg) for arg in get_args(annotation))
    phrase = _type_phrase(annotation) + _constraint_phrase(found)
    if optional:
        phrase += " (or unset)"
    return f"{phrase} — {found.description}" if found.description else phrase


def _type_phrase(annotation: Any) -> str:
    if get_origin(annotation) is list:
        item = get_args(annotation)[0]
        return "a list of tables" if _is_model(item) else "a list of strings"
    if _is_model(annotation):
        return "a table"
    words = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
             Path: "a file system path"}
    return words.get(annotation, "a value")


def _constraint_phrase(found: FieldInfo) -> str:
    parts = []
    for item in found.metadata:
        if isinstance(item, annotated_types.Gt):
            parts.append(f" > {item.gt}")
        elif isinstance(item, annotated_types.Ge):
            parts.append(f" >= {item.ge}")
        elif isinstance(item, annotated_types.MaxLen):
            parts.append(f" of at most {item.max_length} character(s)")
    return "".join(parts)
