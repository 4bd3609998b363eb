"""A restore an IMAP client cannot tell from the original: a real server gets mail (IMAP APPEND
with flags, an SMTP delivery, a folder with a non-ASCII name, expunged messages), is backed up
(a full archive, then an incremental one after more changes), restored with ``hardmail backup
restore --into`` into a new directory and started there with ``hardmail serve``; imaplib over TLS
then sees every message byte for byte with the same UIDs and flags, and every folder with the
same UIDVALIDITY and UIDNEXT."""

from __future__ import annotations

import imaplib
import re
import smtplib
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from hardmail.config.schema import Config
from hardmail.proto.imap.mutf7 import mutf7_encode
from support.backup_archives import BuiltArchive, build_archive
from support.cli_process import cli_env, run_cli, serving
from support.dns_server import LoopbackDnsServer
from support.live import ALICE, ALICE_PASSWORD, BOB, BOB_PASSWORD, EPHEMERAL_LISTEN, ServerThread, client_tls_context
from support.live import running_server as live_server

FOLDERS = ("INBOX", "Archive/2024", "Été")
WAIT = 60.0
ONE_WORKER = {"HARDMAIL_SERVER__WORKERS": "1"}
Snapshot = dict[tuple[str, str], dict[str, Any]]


@pytest.fixture
def dns() -> Any:
    with LoopbackDnsServer({}) as server:  # the servers resolve nothing but through this
        yield server


def _settings(data_dir: Path, dns_port: int) -> dict[str, Any]:
    return {
        "server": {"hostname": "mail.example.test", "data_dir": str(data_dir)},
        "listen": dict(EPHEMERAL_LISTEN),
        "auth": {"argon2": {"time_cost": 1, "memory_cost": 8192}},
        "dns": {"nameservers": ["127.0.0.1"], "port": dns_port, "timeout": 5.0},
        "inbound": {"enabled": False}, "antispam": {"enabled": False}, "queue": {"run_delivery": False},
    }


def _imap(address: tuple[str, int], user: str, password: str) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL(address[0], address[1], ssl_context=client_tls_context(), timeout=WAIT)
    client.login(user, password)
    return client


def _wire(name: str) -> str:
    return '"' + "/".join(mutf7_encode(level) for level in name.split("/")) + '"'


def _fill(server: ServerThread, round_number: int) -> None:
    """Mail in several folders, flags set, some expunged; a delivery over SMTP for Bob."""
    client = _imap(server.address("imaps"), ALICE, ALICE_PASSWORD)
    try:
        for folder in FOLDERS[1:]:
            client.create(_wire(folder))
        for folder in FOLDERS:
            for n in range(5):
                flags = ["(\\Seen)", "(\\Seen \\Flagged)", "()", "(\\Answered $Work)", "(\\Draft)"][n]
                body = (f"From: a@example.net\r\nSubject: {folder} {round_number}.{n}\r\n\r\n"
                        + "line\r\n" * (n * 31 + round_number)).encode()
                assert client.append(_wire(folder), flags, None, body)[0] == "OK"
            client.select(_wire(folder))
            client.store("1", "+FLAGS", "(\\Deleted)")
            client.expunge()
            client.store("2", "+FLAGS", "($Later \\Answered)")
    finally:
        client.logout()
    with smtplib.SMTP(*server.address("smtp"), timeout=WAIT) as smtp:
        smtp.sendmail("someone@example.net", [BOB], f"Subject: for bob {round_number}\r\n\r\nhi\r\n".encode())


def _snapshot(address: tuple[str, int]) -> Snapshot:
    found: Snapshot = {}
    for user, password, folders in ((ALICE, ALICE_PASSWORD, FOLDERS), (BOB, BOB_PASSWORD, ("INBOX",))):
        client = _imap(address, user, password)
        try:
            for folder in folders:
                found[(user, folder)] = _folder(client, folder)
        finally:
            client.logout()
    return found


def _folder(client: imaplib.IMAP4_SSL, folder: str) -> dict[str, Any]:
    status, data = client.status(_wire(folder), "(UIDVALIDITY UIDNEXT MESSAGES)")
    assert status == "OK", data
    text = data[0].decode() if isinstance(data[0], bytes) else str(data[0])
    counters = {key: int(value) for key, value in re.findall(r"(UIDVALIDITY|UIDNEXT|MESSAGES) (\d+)", text)}
    client.select(_wire(folder), readonly=True)
    status, fetched = client.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
    assert status == "OK", fetched
    messages = {}
    for head, body, tail in _fetch_items(fetched):
        text = head + b" " + tail  # the server may send UID and FLAGS after the literal
        uid = int(re.search(rb"UID (\d+)", text).group(1))  # type: ignore[union-attr]
        flags = set(re.search(rb"FLAGS \(([^)]*)\)", text).group(1).split()) - {b"\\Recent"}  # type: ignore[union-attr]
        messages[uid] = (frozenset(flags), body)
    client.close()
    return {"status": counters, "messages": messages}


def _fetch_items(fetched: list[Any]) -> list[tuple[bytes, bytes, bytes]]:
    """imaplib's FETCH data as (text before the literal, the literal, text after it)."""
    items: list[tuple[bytes, bytes, bytes]] = []
    for item in fetched:
        if isinstance(item, tuple):
            items.append((item[0], item[1], b""))
        elif isinstance(item, bytes) and items and not items[-1][2]:
            items[-1] = (items[-1][0], items[-1][1], item)
    return items


def _backups(tmp_path: Path, config: Config, config_file: Path) -> tuple[BuiltArchive, Snapshot]:
    """Two rounds of mail, a full archive after the first, an incremental after the second."""
    backups = tmp_path / "backups"
    with live_server(config) as server:
        _fill(server, 1)
    full = build_archive(config.data_dir, backups, config_file=config_file)
    thread = ServerThread(config)
    thread.start()
    try:
        _fill_again(thread)
        expected = _snapshot(thread.address("imaps"))
    finally:
        thread.stop()
    return build_archive(config.data_dir, backups, parent=full, config_file=config_file), expected


def _fill_again(server: ServerThread) -> None:
    client = _imap(server.address("imaps"), ALICE, ALICE_PASSWORD)
    try:
        client.select(_wire("Archive/2024"))
        client.store("1:*", "+FLAGS", "(\\Seen)")  # renames files the full archive holds
        client.append("INBOX", "(\\Flagged)", None, b"Subject: after the full backup\r\n\r\nnew\r\n")
    finally:
        client.logout()
    with smtplib.SMTP(*server.address("smtp"), timeout=WAIT) as smtp:
        smtp.sendmail("someone@example.net", [BOB], b"Subject: for bob, later\r\n\r\nhi again\r\n")


def _imaps_port(started: list[str]) -> int:
    for line in started:
        words = line.split()
        if words[:1] == ["imaps"]:
            return int(words[1].rsplit(":", 1)[1])
    raise AssertionError(f"no imaps listener in {started}")


def test_a_restored_server_shows_the_same_mail_to_imap(tmp_path: Path, dns: LoopbackDnsServer) -> None:
    settings = _settings(tmp_path / "original" / "data", dns.port)
    config_file = tmp_path / "original" / "hardmail.toml"
    config_file.parent.mkdir()
    config_file.write_text(tomli_w.dumps(settings))
    incremental, expected = _backups(tmp_path, Config.model_validate(settings), config_file)
    assert incremental.manifest.kind == "incremental"
    assert sum(len(folder["messages"]) for folder in expected.values()) >= 15

    restored = tmp_path / "restored"
    done = run_cli("backup", "restore", str(incremental.path), "--into", str(restored), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    start = f"hardmail serve --config {restored}/hardmail.toml --data-dir {restored}"
    assert f"Start it with: {start}" in done.stdout

    with serving("--config", str(restored / "hardmail.toml"), "--data-dir", str(restored), cwd=tmp_path,
                 env=cli_env(**ONE_WORKER)) as server:
        seen = _snapshot(("127.0.0.1", _imaps_port(server.started)))
    assert seen.keys() == expected.keys()
    for key in expected:
        assert seen[key]["status"] == expected[key]["status"], key
        assert seen[key]["messages"] == expected[key]["messages"], key
