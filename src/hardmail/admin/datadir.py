"""The data directory as the commands see it: found, created for commands that write, refused
when missing for commands that only read (which must never create an empty database), and
checked to be writable by the user running the command.

The directory itself is resolved once, absolute, by :func:`hardmail.config.load.load_config`
(``--data-dir``, then the configuration, then ``$HARDMAIL_DATA_DIR``, then ``./hardmail-data``).
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from hardmail.config.schema import Config

WHERE_HINT = "pass --data-dir or set HARDMAIL_DATA_DIR, or run `hardmail serve` first"


class DataDirError(Exception):
    """The data directory cannot be used as the command needs; ``str()`` is one line."""


def user_name() -> str:
    """The name of the effective user (its number when it has no name)."""
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def sqlite_file(config: Config) -> Path | None:
    """The SQLite database file of ``config``, or None when the database is elsewhere (PostgreSQL)."""
    url = config.database_url
    if not url.startswith("sqlite"):
        return None
    _scheme, _sep, path = url.partition(":///")
    return Path(path) if path and not path.startswith(":memory:") else None


def require_initialised(config: Config, database: bool = True) -> None:
    """For read-only commands: the data directory must exist, and with ``database`` its SQLite
    database too. A database elsewhere (PostgreSQL) is the server's state: nothing to check here."""
    data_dir = config.data_dir
    database_file = sqlite_file(config)
    if database and database_file is None:
        return
    if not data_dir.is_dir():
        raise DataDirError(f"no hardmail data directory at {data_dir}; {WHERE_HINT}")
    if not os.access(data_dir, os.R_OK | os.X_OK):
        raise DataDirError(f"data directory {data_dir} is not readable by user {user_name()}")
    if database and database_file is not None and not database_file.is_file():
        raise DataDirError(f"the data directory {data_dir} is not initialised (no database {database_file.name} "
                           f"in it); {WHERE_HINT}")


def ensure_data_dir(config: Config) -> bool:
    """For commands that write: create the data directory when missing (mode 0700); True when it
    was created. Raises DataDirError when it cannot be created or written."""
    data_dir = config.data_dir
    created = False
    if not data_dir.is_dir():
        if data_dir.exists():
            raise DataDirError(f"the data directory {data_dir} exists but is not a directory")
        try:
            data_dir.mkdir(parents=True, mode=0o700)
        except PermissionError:
            raise DataDirError(f"cannot create the data directory {data_dir}: its parent directory is not "
                               f"writable by user {user_name()}") from None
        created = True
    require_writable(data_dir)
    return created


def require_writable(data_dir: Path) -> None:
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise DataDirError(f"data directory {data_dir} is not writable by user {user_name()}")
