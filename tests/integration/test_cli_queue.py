"""``hardmail queue ...``: list, show, hold/release, retry, delete, bounce and routes, through the real CLI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from hardmail.admin.cli import app
from hardmail.config.schema import Config
from hardmail.core.clock import SystemClock
from hardmail.delivery.assembly import build_services
from hardmail.delivery.maildir import MaildirStore
from hardmail.store import open_store

ALICE = "alice@example.test"


async def _seed(data_dir: Path) -> str:
    config = Config.model_validate({"server": {"data_dir": str(data_dir)}})
    store = await open_store(config.database_url)
    try:
        await store.migrate()
        await store.add_domain("example.test")
        await store.add_account(ALICE, "$argon2id$unused")
        services = build_services(config, store, MaildirStore(config.maildir_root, "h"), SystemClock())
        return await services.queue.enqueue(ALICE, ["bob@dest.example"], b"Subject: queued\r\n\r\nhi\r\n",
                                            origin_account=ALICE)
    finally:
        await store.close()


def _cli(data_dir: Path, *args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, [*args, "--data-dir", str(data_dir)], input=stdin)
    return result.exit_code, result.output


def test_list_show_hold_release_retry_and_delete(tmp_path: Path) -> None:
    data = tmp_path / "data"
    queue_id = asyncio.run(_seed(data))
    code, out = _cli(data, "queue", "list", "--json")
    [row] = json.loads(out)
    assert (code, row["queue_id"], row["recipients"][0]["state"]) == (0, queue_id, "pending")
    assert _cli(data, "queue", "show", queue_id)[1].count("bob@dest.example") >= 1
    assert _cli(data, "queue", "hold", queue_id)[0] == 0
    assert json.loads(_cli(data, "queue", "list", "--json")[1])[0]["held"] is True
    assert _cli(data, "queue", "release", queue_id)[0] == 0
    assert "1 message(s)" in _cli(data, "queue", "retry", "--all")[1]
    assert _cli(data, "queue", "delete", queue_id)[0] == 0
    assert json.loads(_cli(data, "queue", "list", "--json")[1]) == []
    code, out = _cli(data, "queue", "show", queue_id)
    assert code == 1 and "no queued message" in out


def test_bounce_returns_the_message_to_a_local_sender(tmp_path: Path) -> None:
    data = tmp_path / "data"
    queue_id = asyncio.run(_seed(data))
    code, out = _cli(data, "queue", "bounce", queue_id)
    assert code == 0 and "notice: local" in out
    [notice] = (data / "mail" / "example.test" / "alice" / "new").iterdir()
    assert b"multipart/report" in notice.read_bytes() and b"Action: failed" in notice.read_bytes()


def test_routes_keep_their_password_encrypted_and_hidden(tmp_path: Path) -> None:
    data = tmp_path / "data"
    code, out = _cli(data, "queue", "route", "set", "*", "relay.example.net:587", "--tls", "starttls",
                     "--username", "me", "--password-stdin", stdin="s3cret-relay-pass\n")
    assert code == 0, out
    code, out = _cli(data, "queue", "route", "list", "--json")
    assert json.loads(out) == [{"pattern": "*", "host": "relay.example.net", "port": 587, "tls": "starttls",
                                "username": "me", "has_password": True}]
    assert b"s3cret-relay-pass" not in (data / "hardmail.db").read_bytes()
    assert _cli(data, "queue", "route", "set", "x.example", "h", "--tls", "none", "--username", "me",
                "--password-stdin", stdin="p\n")[0] == 1
    code, out = _cli(data, "queue", "route", "set", "y.example", "h", "--username", "me", "--password-stdin",
                     stdin="p\n")
    assert code == 1 and "verified TLS" in out  # opportunistic (the default) does not verify
    assert _cli(data, "queue", "route", "remove", "*")[0] == 0
    assert _cli(data, "queue", "route", "remove", "*")[0] == 1


def test_retry_needs_an_id_or_all(tmp_path: Path) -> None:
    assert _cli(tmp_path / "data", "queue", "retry")[0] == 2
