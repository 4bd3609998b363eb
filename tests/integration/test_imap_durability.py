"""Durability and concurrency over real sockets: a ``kill -9`` of ``hardmail serve`` in the middle of
a stream of APPENDs loses no acknowledged message and leaves index and files in step after the
next start; two clients flagging and expunging the same folder while mail is delivered into it
leave a consistent index."""

from __future__ import annotations

import json
import smtplib
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from hardmail.config.schema import Config
from support.cli_process import LoggedServe, free_loopback_port, seed_account
from support.imap import RawImap, message, raw
from support.live import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    BOB_PASSWORD,
    EPHEMERAL_LISTEN,
    ServerThread,
    client_tls_context,
    running_server,
    server_config,
)

WAIT = 60.0
PASSWORD = "correct horse battery staple"
HARDMAIL = str(Path(sys.executable).parent / "hardmail")


def _settings(tmp_path: Path, port: int) -> dict[str, Any]:
    return {
        "server": {"hostname": "mail.example.test", "data_dir": str(tmp_path / "data")},
        "listen": {**EPHEMERAL_LISTEN, "imaps": [f"127.0.0.1:{port}"]},
        "auth": {"argon2": {"time_cost": 1, "memory_cost": 8192}},
        "logging": {"format": "json"},
        "inbound": {"enabled": False}, "antispam": {"enabled": False}, "queue": {"run_delivery": False},
    }


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    port = free_loopback_port()
    config_path = tmp_path / "hardmail.toml"
    config_path.write_text(tomli_w.dumps(_settings(tmp_path, port)))
    seed_account(Config.model_validate(_settings(tmp_path, port)), ALICE, PASSWORD)
    yield config_path, port


def _client(port: int) -> RawImap:
    client = RawImap(("127.0.0.1", port), tls=True, timeout=WAIT)
    client.line()
    assert client.login(ALICE, PASSWORD).startswith(b"t1 OK")
    return client


def _body(n: int) -> bytes:
    return message(f"durable {n}", body=f"number {n}\r\n" + "x" * (n * 37 % 5000) + "\r\n")


def test_kill_9_during_appends_loses_no_acknowledged_message(served: tuple[Path, int]) -> None:
    config_path, port = served
    server = LoggedServe(config_path, WAIT, kill=True)
    acknowledged: dict[int, bytes] = {}  # UID → the message the server said OK to
    try:
        server.wait_for("server.start")
        client = _client(port)
        n = 0
        try:
            while True:
                n += 1
                data = _body(n)
                client.send(b"a APPEND INBOX {%d+}\r\n" % len(data) + data + b"\r\n")
                if n == 25:
                    server.stop()  # SIGKILL with APPENDs in flight: the client has sent the next ones
                done = client.until("a")[1]
                assert done.startswith(b"a OK [APPENDUID "), done
                acknowledged[int(done.split()[4].rstrip(b"]"))] = data
        except (ConnectionError, OSError):
            pass  # the server is gone
        finally:
            client.close()
    finally:
        server.stop()
    assert len(acknowledged) >= 20
    again = LoggedServe(config_path, WAIT)
    try:
        again.wait_for("server.start")
        client = _client(port)
        untagged, _ = client.command("SELECT INBOX")
        exists = next(int(line.split()[1]) for line in untagged if line.endswith(b" EXISTS\r\n"))
        assert exists >= len(acknowledged)
        for uid, data in acknowledged.items():
            fetched, done = client.command(f"UID FETCH {uid} (BODY.PEEK[])")
            assert done.startswith(b"t") and b" OK " in done
            assert b"}\r\n" + data + b" UID %d)\r\n" % uid in fetched[0], uid
        untagged, _ = client.command("FETCH 1:* (UID RFC822.SIZE)")  # every entry has its file
        assert len(untagged) == exists
        inbox = config_path.parent / "data" / "mail" / "example.test" / "alice"
        files = list((inbox / "cur").iterdir()) + list((inbox / "new").iterdir())
        assert len(files) == exists  # and no file without its entry
        client.close()
    finally:
        again.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    with running_server(server_config(tmp_path / "data")) as live:
        yield live


def test_two_clients_flagging_and_expunging_while_mail_arrives(server: ServerThread) -> None:
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            smtp = smtplib.SMTP(*server.address("submission"), timeout=WAIT)
            smtp.starttls(context=client_tls_context())
            smtp.login(BOB, BOB_PASSWORD)
            for n in range(30):
                smtp.sendmail(BOB, [ALICE], message(f"delivered {n}"))
            smtp.quit()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def churn(name: str) -> None:
        try:
            client = RawImap(server.address("imaps"), tls=True, timeout=WAIT)
            client.line()
            client.login(ALICE, ALICE_PASSWORD)
            client.command("SELECT INBOX")
            for _ in range(20):
                client.command("STORE 1:* +FLAGS.SILENT (\\Seen $" + name + ")")
                client.command("UID SEARCH UNSEEN")
                client.command("STORE 1:2 +FLAGS.SILENT (\\Deleted)")
                _, done = client.command("EXPUNGE")
                assert b" OK " in done, done
                client.command("NOOP")
            client.close()
        except BaseException as exc:
            errors.append(exc)

    with raw(server) as seeder:
        seeder.login()
        for n in range(20):
            data = message(f"seed {n}")
            seeder.send(b"s APPEND INBOX {%d+}\r\n" % len(data) + data + b"\r\n")
            seeder.until("s")
    threads = [threading.Thread(target=deliver)] + [threading.Thread(target=churn, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(240)
    assert not errors, errors
    with raw(server) as check:
        check.login()
        untagged, _ = check.command("SELECT INBOX")
        exists = next(int(line.split()[1]) for line in untagged if line.endswith(b" EXISTS\r\n"))
        fetched, _ = check.command("FETCH 1:* (UID FLAGS)")
        assert len(fetched) == exists
        uids = [int(line.split(b"UID ")[1].split()[0].rstrip(b")")) for line in fetched]
        assert uids == sorted(set(uids))
        inbox = server.config.maildir_root / "example.test" / "alice"
        files = list((inbox / "cur").iterdir()) + list((inbox / "new").iterdir())
        assert len(files) == exists
        report, _ = check.command("STATUS INBOX (MESSAGES)")
        assert report[0].endswith(b"(MESSAGES %d)\r\n" % exists)
    # a re-index finds nothing to repair: no file without entry, no entry without file, and the
    # flags of every file name are those of its entry
    done = subprocess.run([HARDMAIL, "mailbox", "reindex", ALICE, "--json", "--data-dir", str(server.config.data_dir)],
                          capture_output=True, text=True, timeout=120, check=False, cwd=server.config.data_dir.parent)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["added"], report["removed"], report["renamed"]) == (0, 0, 0)
