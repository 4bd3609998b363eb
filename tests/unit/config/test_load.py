"""Loading: file location, environment, overrides, precedence, paths, and problem messages."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from hardmail.config.load import ConfigError, load_config
from hardmail.config.schema import Config

Write = Callable[..., Path]


def problems_of(**kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(**kwargs)  # type: ignore[arg-type]
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


# --- where the file comes from ------------------------------------------------------------


def test_defaults_only_when_no_file_anywhere(workdir: Path) -> None:
    cfg = load_config(environ={})
    assert cfg.smtp == Config().smtp
    assert cfg.server.data_dir == workdir / "hardmail-data"


def test_hardmail_toml_in_current_directory_is_used(workdir: Path) -> None:
    (workdir / "hardmail.toml").write_text("[server]\nhostname = 'mx.example.org'\n")
    assert load_config(environ={}).server.hostname == "mx.example.org"


def test_hardmail_config_variable_names_the_file(workdir: Path, write_toml: Write) -> None:
    (workdir / "hardmail.toml").write_text("[server]\nhostname = 'ignored.example'\n")
    path = write_toml("[server]\nhostname = 'from-env.example'\n")
    cfg = load_config(environ={"HARDMAIL_CONFIG": str(path)})
    assert cfg.server.hostname == "from-env.example"


def test_explicit_path_wins_over_hardmail_config(workdir: Path, write_toml: Write) -> None:
    env_file = write_toml("[server]\nhostname = 'env.example'\n", name="env.toml")
    given = write_toml("[server]\nhostname = 'given.example'\n", name="given.toml")
    cfg = load_config(given, environ={"HARDMAIL_CONFIG": str(env_file)})
    assert cfg.server.hostname == "given.example"


def test_missing_explicit_file_is_an_error(workdir: Path) -> None:
    [line] = problems_of(path=Path("nowhere.toml"), environ={})
    assert line.startswith("nowhere.toml: configuration file does not exist")


def test_missing_file_named_by_variable_is_an_error(workdir: Path) -> None:
    [line] = problems_of(environ={"HARDMAIL_CONFIG": "gone.toml"})
    assert "gone.toml" in line and "HARDMAIL_CONFIG" in line


def test_toml_syntax_error_names_file_and_line(workdir: Path, write_toml: Write) -> None:
    path = write_toml("[smtp]\nmax_recipients = = 5\n")
    [line] = problems_of(path=path, environ={})
    assert line.startswith(f"{path}: TOML syntax error at line 2: ")


# --- environment --------------------------------------------------------------------------


def test_environment_values_are_typed_from_toml(workdir: Path) -> None:
    cfg = load_config(environ={
        "HARDMAIL_SMTP__MAX_RECIPIENTS": "250",
        "HARDMAIL_SMTP__AUTH_ON_MX": "true",
        "HARDMAIL_SMTP__TIMEOUTS__COMMAND": "60",
        "HARDMAIL_LISTEN__SMTP": '["127.0.0.1:25", "[::1]:25"]',
    })
    assert cfg.smtp.max_recipients == 250
    assert cfg.smtp.auth_on_mx is True
    assert cfg.smtp.timeouts.command == 60.0
    assert cfg.listen.smtp == ["127.0.0.1:25", "[::1]:25"]


def test_environment_list_accepts_comma_separated_text(workdir: Path) -> None:
    cfg = load_config(environ={"HARDMAIL_RELAY__TRUSTED_NETWORKS": "10.0.0.0/8, 192.168.1.0/24"})
    assert cfg.relay.trusted_networks == ["10.0.0.0/8", "192.168.1.0/24"]


def test_environment_names_are_case_insensitive(workdir: Path) -> None:
    cfg = load_config(environ={"hardmail_Server__HostName": "mx.example.org"})
    assert cfg.server.hostname == "mx.example.org"


def test_text_settings_keep_digits_as_text(workdir: Path) -> None:
    cfg = load_config(environ={"HARDMAIL_SERVER__HOSTNAME": "123", "HARDMAIL_TLS__MIN_VERSION": "TLSv1.3"})
    assert cfg.server.hostname == "123"
    assert cfg.tls.min_version == "TLSv1.3"


def test_empty_value_unsets_an_optional_setting(workdir: Path, write_toml: Write) -> None:
    path = write_toml("[logging]\nfile = 'hardmail.log'\n")
    cfg = load_config(path, environ={"HARDMAIL_LOGGING__FILE": ""})
    assert cfg.logging.file is None


def test_unknown_environment_setting_is_reported_with_its_variable(workdir: Path) -> None:
    [line] = problems_of(environ={"HARDMAIL_SMTP__MAX_RECIPENTS": "5"})
    assert line.startswith("env HARDMAIL_SMTP__MAX_RECIPENTS:smtp.max_recipents: unknown setting")
    assert "did you mean max_recipients?" in line


def test_single_underscore_setting_says_how_to_spell_it(workdir: Path) -> None:
    [line] = problems_of(environ={"HARDMAIL_SMTP_MAX_RECIPIENTS": "5"})
    assert "HARDMAIL_SMTP__MAX_RECIPIENTS" in line


def test_other_hardmail_variables_and_config_are_ignored(workdir: Path) -> None:
    cfg = load_config(environ={"HARDMAIL_TEST_MODE": "1", "HARDMAIL_CONFIG": "", "PATH": "/bin"})
    assert cfg.smtp == Config().smtp


# --- overrides and precedence -------------------------------------------------------------


def test_precedence_file_env_overrides_data_dir(workdir: Path, write_toml: Write, tmp_path: Path) -> None:
    path = write_toml(
        "[smtp]\nmax_recipients = 200\nmax_commands = 300\nmax_bad_commands = 3\n"
        "[server]\ndata_dir = '/srv/file'\n"
    )
    cfg = load_config(
        path,
        environ={"HARDMAIL_SMTP__MAX_COMMANDS": "400", "HARDMAIL_SMTP__MAX_BAD_COMMANDS": "4",
                 "HARDMAIL_SERVER__DATA_DIR": "/srv/env"},
        overrides={"smtp.max_bad_commands": 5, "server.data_dir": "/srv/override"},
        data_dir=tmp_path / "final",
    )
    assert (cfg.smtp.max_recipients, cfg.smtp.max_commands, cfg.smtp.max_bad_commands) == (200, 400, 5)
    assert cfg.server.data_dir == tmp_path / "final"


def test_override_problem_names_the_option(workdir: Path) -> None:
    [line] = problems_of(
        environ={}, overrides={"listen.smtp": ["nonsense"]},
        override_names={"listen.smtp": "--listen-smtp"},
    )
    assert line.startswith("--listen-smtp:listen.smtp: 'nonsense' is not HOST:PORT")


def test_override_without_a_name_is_shown_as_command_line(workdir: Path) -> None:
    [line] = problems_of(environ={}, overrides={"smtp.max_recipients": -1})
    assert line.startswith("command line:smtp.max_recipients: must be greater than 0 (got -1)")


def test_nested_file_table_merges_with_environment(workdir: Path, write_toml: Write) -> None:
    path = write_toml("[smtp.timeouts]\ncommand = 10\nsession = 20\n")
    cfg = load_config(path, environ={"HARDMAIL_SMTP__TIMEOUTS__SESSION": "30"})
    assert (cfg.smtp.timeouts.command, cfg.smtp.timeouts.session) == (10.0, 30.0)


def test_environment_inline_table_merges(workdir: Path, write_toml: Write) -> None:
    path = write_toml("[smtp.timeouts]\ncommand = 10\n")
    cfg = load_config(path, environ={"HARDMAIL_SMTP__TIMEOUTS": "{session = 30}"})
    assert (cfg.smtp.timeouts.command, cfg.smtp.timeouts.session) == (10.0, 30.0)


# --- relative paths -----------------------------------------------------------------------


def test_file_paths_are_relative_to_the_file(workdir: Path, write_toml: Write) -> None:
    path = write_toml(
        "[server]\ndata_dir = 'data'\n[tls]\ncert_file = 'tls/c.pem'\nkey_file = 'tls/k.pem'\n"
        "certificates = [{hostnames = ['a.example'], cert_file = 'a.pem', key_file = '/abs/a.key'}]\n"
    )
    cfg = load_config(path, environ={})
    etc = path.parent.resolve()
    assert cfg.server.data_dir == etc / "data"
    assert (cfg.tls.cert_file, cfg.tls.key_file) == (etc / "tls/c.pem", etc / "tls/k.pem")
    assert cfg.tls.certificates[0].cert_file == etc / "a.pem"
    assert cfg.tls.certificates[0].key_file == Path("/abs/a.key")


def test_environment_and_option_paths_are_relative_to_cwd(workdir: Path) -> None:
    cfg = load_config(environ={"HARDMAIL_LOGGING__FILE": "logs/h.log"}, data_dir=Path("d"))
    assert cfg.logging.file == workdir / "logs/h.log"
    assert cfg.server.data_dir == workdir / "d"


# --- problem messages ---------------------------------------------------------------------


def test_out_of_range_value_line(workdir: Path, write_toml: Write) -> None:
    path = write_toml("[smtp]\nmax_recipients = 0\n")
    [line] = problems_of(path=path, environ={})
    assert line.startswith(
        f"{path}:smtp.max_recipients: must be greater than 0 (got 0); allowed: an integer > 0"
    )


def test_unknown_key_lists_allowed_keys(workdir: Path, write_toml: Write) -> None:
    path = write_toml("[smtp]\nmax_recipent = 5\n")
    [line] = problems_of(path=path, environ={})
    assert line.startswith(f"{path}:smtp.max_recipent: unknown setting (did you mean max_recipients?)")
    assert "allowed: keys in section smtp: max_message_size, max_recipients" in line


def test_unknown_section_and_empty_unknown_table_are_reported(workdir: Path, write_toml: Write) -> None:
    path = write_toml("[smpt]\n")
    [line] = problems_of(path=path, environ={})
    assert line.startswith(f"{path}:smpt: unknown section (did you mean smtp?)")


def test_literal_problem_shows_allowed_values(workdir: Path, write_toml: Write) -> None:
    path = write_toml("[logging]\nformat = 'xml'\n")
    [line] = problems_of(path=path, environ={})
    assert line == f"{path}:logging.format: is not an allowed value (got 'xml'); allowed: one of json, console"


def test_every_problem_is_listed_with_its_own_source(workdir: Path, write_toml: Write) -> None:
    path = write_toml("[smtp]\nmax_recipients = 0\n[tls]\ncertificates = [{hostnames = ['a']}]\n")
    lines = problems_of(path=path, environ={"HARDMAIL_SMTP__MAX_COMMANDS": "many"})
    assert len(lines) == 4
    joined = "\n".join(lines)
    assert f"{path}:tls.certificates[0].cert_file: required setting is missing" in joined
    assert f"{path}:tls.certificates[0].key_file: required setting is missing" in joined
    assert "env HARDMAIL_SMTP__MAX_COMMANDS:smtp.max_commands: must be a valid integer" in joined


def test_wrong_type_for_a_section(workdir: Path, write_toml: Write) -> None:
    path = write_toml("smtp = 5\n")
    [line] = problems_of(path=path, environ={})
    assert line.startswith(f"{path}:smtp: ")


def test_storage_url_is_never_echoed(workdir: Path, write_toml: Write) -> None:
    path = write_toml("[storage]\nurl = ['postgresql+asyncpg://mail:s3cretpw@db/mail']\n")
    [line] = problems_of(path=path, environ={})
    assert line.startswith(f"{path}:storage.url: must be a valid string")
    assert "s3cretpw" not in line


def test_certificate_without_key_is_reported(workdir: Path, write_toml: Write) -> None:
    path = write_toml("[tls]\ncert_file = 'c.pem'\n")
    [line] = problems_of(path=path, environ={})
    assert line.startswith(f"{path}:tls.cert_file: is set but tls.key_file is not")


def test_config_error_accepts_a_single_message() -> None:
    assert ConfigError("one problem").problems == ["one problem"]
    assert str(ConfigError(["a", "b"])) == "a\nb"


def test_hardmail_data_dir_replaces_only_the_default(workdir: Path, write_toml: Write, tmp_path: Path) -> None:
    env = {"HARDMAIL_DATA_DIR": "from-env"}
    assert load_config(environ=env).server.data_dir == workdir / "from-env"
    path = write_toml("[server]\ndata_dir = '/srv/file'\n")
    assert load_config(path, environ=env).server.data_dir == Path("/srv/file")
    assert load_config(path, environ=env, data_dir=tmp_path / "opt").server.data_dir == tmp_path / "opt"
    assert load_config(environ={"HARDMAIL_DATA_DIR": ""}).server.data_dir == workdir / "hardmail-data"


def test_the_data_dir_is_absolute_and_normalised(workdir: Path) -> None:
    assert load_config(environ={}, data_dir=Path("a/../b/./c")).server.data_dir == workdir / "b" / "c"


def test_one_listen_address_as_a_string_is_a_list_of_one(workdir: Path, write_toml: Write) -> None:
    path = write_toml("[listen]\nsmtp = '0.0.0.0:25'\nsubmission = ['0.0.0.0:587', '[::]:587']\n")
    cfg = load_config(path, environ={})
    assert cfg.listen.smtp == ["0.0.0.0:25"]
    assert cfg.listen.submission == ["0.0.0.0:587", "[::]:587"]
    with pytest.raises(ConfigError, match="is not HOST:PORT"):
        load_config(write_toml("[listen]\nsmtp = 'mail'\n"), environ={})
