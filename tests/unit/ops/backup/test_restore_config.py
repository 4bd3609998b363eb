"""The restored configuration file: ``server.data_dir`` and ``storage.url`` pointed at the
restored data, in place (comments kept) where the file sets them on one line."""

from __future__ import annotations

import tomllib
from pathlib import Path

from hardmail.ops.backup.restore_config import rewrite


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hardmail.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_data_dir_is_rewritten_in_place(tmp_path: Path) -> None:
    path = _config(tmp_path, '# mine\n[server]\nhostname = "mx"   # the name\ndata_dir = "/srv/old"\n\n[smtp]\n'
                             'max_message_size = 100\n')
    assert rewrite(path, tmp_path / "new", None, "/srv/old") == []
    assert path.read_text() == (f'# mine\n[server]\nhostname = "mx"   # the name\ndata_dir = "{tmp_path}/new"\n\n'
                                '[smtp]\nmax_message_size = 100\n')
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_file_without_data_dir_is_left_alone(tmp_path: Path) -> None:
    text = '[server]\nhostname = "mx"\n'
    path = _config(tmp_path, text)
    assert rewrite(path, tmp_path / "new", None, "/srv/old") == []
    assert path.read_text() == text


def test_a_dotted_data_dir_is_rewritten(tmp_path: Path) -> None:
    path = _config(tmp_path, 'server.data_dir = "/srv/old"\n[smtp]\nmax_message_size = 1\n')
    rewrite(path, tmp_path / "new", None, "/srv/old")
    assert tomllib.loads(path.read_text())["server"]["data_dir"] == str(tmp_path / "new")


def test_storage_url_follows_the_restored_database(tmp_path: Path) -> None:
    path = _config(tmp_path, '[storage]\nurl = "postgresql+asyncpg://old@db/hardmail"\n')
    rewrite(path, tmp_path / "new", None, "/srv/old")  # into SQLite: the default (empty) URL
    assert tomllib.loads(path.read_text())["storage"]["url"] == ""
    path = _config(tmp_path, '[server]\nhostname = "mx"\n')
    rewrite(path, tmp_path / "new", "postgresql+asyncpg://postgres@127.0.0.1/restored", "/srv/old")
    assert tomllib.loads(path.read_text())["storage"]["url"] == "postgresql+asyncpg://postgres@127.0.0.1/restored"


def test_an_inline_table_is_written_again_with_a_note(tmp_path: Path) -> None:
    path = _config(tmp_path, '# lost\nserver = { data_dir = "/srv/old", hostname = "mx" }\n')
    notes = rewrite(path, tmp_path / "new", None, "/srv/old")
    parsed = tomllib.loads(path.read_text())
    assert parsed["server"] == {"data_dir": str(tmp_path / "new"), "hostname": "mx"}
    assert notes and "comments" in notes[0]


def test_settings_still_naming_the_old_directory_are_reported(tmp_path: Path) -> None:
    path = _config(tmp_path, '[server]\ndata_dir = "/srv/old"\n[tls]\ncert_file = "/srv/old/certs/a.pem"\n')
    notes = rewrite(path, tmp_path / "new", None, "/srv/old")
    assert notes == [f"{path} still names the old data directory /srv/old in tls.cert_file; change them if the "
                     "old directory is gone"]
