"""Independent IMAP clients against the server: imapclient and aioimaplib from PyPI, Debian's mutt
(run in a pseudo-terminal, driven by its own ``push`` commands), and a message sent with swaks
through submission read back byte for byte over IMAP."""

from __future__ import annotations

import asyncio
import email
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.imap import imaps, message
from support.live import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    ServerThread,
    client_tls_context,
    require_program,
    running_server,
    server_config,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with running_server(server_config(tmp_path_factory.mktemp("imap-clients") / "data")) as live:
        yield live


def test_imapclient_session(server: ServerThread) -> None:
    imapclient = pytest.importorskip("imapclient")
    host, port = server.address("imaps")
    with imapclient.IMAPClient(host, port=port, ssl=True, ssl_context=client_tls_context(), timeout=20) as client:
        client.login(ALICE, ALICE_PASSWORD)
        assert b"IDLE" in client.capabilities() and b"MOVE" in client.capabilities()
        folders = {name: flags for flags, _, name in client.list_folders()}
        assert b"\\Sent" in folders["Sent"]
        assert client.find_special_folder(b"\\Sent") == "Sent"
        client.append("INBOX", message("imapclient"), flags=[imapclient.SEEN])
        info = client.select_folder("INBOX")
        assert info[b"EXISTS"] >= 1 and b"UIDVALIDITY" in info
        uids = client.search(["SUBJECT", "imapclient"])
        assert len(uids) == 1
        fetched = client.fetch(uids, ["ENVELOPE", "BODYSTRUCTURE", "FLAGS", "INTERNALDATE", "RFC822.SIZE"])
        data = fetched[uids[0]]
        assert data[b"ENVELOPE"].subject == b"imapclient"
        assert data[b"ENVELOPE"].from_[0].mailbox == b"bob"
        assert b"\\Seen" in data[b"FLAGS"]
        assert data[b"BODYSTRUCTURE"][0] == b"text"
        client.add_flags(uids, [imapclient.FLAGGED])
        assert b"\\Flagged" in client.get_flags(uids)[uids[0]]
        client.create_folder("Archive/2026")
        client.move(uids, "Archive/2026")
        assert client.search(["SUBJECT", "imapclient"]) == []
        client.select_folder("Archive/2026", readonly=True)
        assert len(client.search("ALL")) == 1
        assert client.get_quota_root("INBOX")[0].quota_roots is not None


def test_aioimaplib_idle_sees_an_append(server: ServerThread) -> None:
    aioimaplib = pytest.importorskip("aioimaplib")
    host, port = server.address("imaps")

    async def run() -> bool:
        client = aioimaplib.IMAP4_SSL(host=host, port=port, ssl_context=client_tls_context(), timeout=20)
        await client.wait_hello_from_server()
        assert (await client.login(ALICE, ALICE_PASSWORD)).result == "OK"
        assert (await client.select("INBOX")).result == "OK"
        idle = await client.idle_start(timeout=30)
        await asyncio.to_thread(_append_other, server)
        pushed = await client.wait_server_push(timeout=30)
        client.idle_done()
        assert (await asyncio.wait_for(idle, 30)).result == "OK"
        await client.logout()
        return any(b"EXISTS" in (line if isinstance(line, bytes) else str(line).encode()) for line in pushed)

    assert asyncio.run(run())


def _append_other(server: ServerThread) -> None:
    with imaps(server) as other:
        assert other.append("INBOX", None, None, message("aioimaplib idle"))[0] == "OK"


def test_swaks_message_read_back_byte_for_byte(server: ServerThread) -> None:
    swaks = require_program("swaks")
    host, port = server.address("submission")
    marker = "swaks-to-imap-7c1"
    result = subprocess.run(
        [swaks, "--server", host, "--port", str(port), "--from", ALICE, "--to", BOB, "--tls",
         "--auth", "PLAIN", "--auth-user", ALICE, "--auth-password", ALICE_PASSWORD, "--h-Subject", marker,
         "--body", "Read me back over IMAP.", "--helo", "swaks.client.example", "--timeout", "30"],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    [stored] = server.messages(BOB) or [p.read_bytes() for p in _bob_files(server)]
    with imaps(server, BOB, "another long passphrase 42") as client:
        client.select("INBOX")
        _status, data = client.search(None, "SUBJECT", marker)
        [number] = data[0].split()
        _status, fetched = client.fetch(number, "(BODY.PEEK[])")
        assert fetched[0][1] == stored
        assert email.message_from_bytes(fetched[0][1])["Subject"] == marker


def _bob_files(server: ServerThread) -> list[Path]:
    return [p for p in server.all_mail_files() if "bob" in str(p) and ("/cur/" in str(p) or "/new/" in str(p))]


def test_mutt_opens_the_inbox_and_saves_a_message(server: ServerThread, tmp_path: Path) -> None:
    mutt = require_program("mutt")
    script = require_program("script")
    with imaps(server) as client:
        client.create("ForMutt")
        client.append("ForMutt", None, None, message("for mutt"))
    host, port = server.address("imaps")
    saved = tmp_path / "saved.mbox"
    rc = tmp_path / "muttrc"
    rc.write_text("\n".join([
        "set ssl_verify_host = no", "set ssl_verify_dates = no", f"set certificate_file = {tmp_path / 'certs'}",
        "set ssl_starttls = no", f'set imap_user = "{ALICE}"', f'set imap_pass = "{ALICE_PASSWORD}"',
        f'set folder = "imaps://{host}:{port}/"', 'set spoolfile = "+INBOX"', "set confirmappend = no",
        "set confirmcreate = no", "set mbox_type = mbox", "set move = no", "set sort = date-sent",
        "set imap_check_subscribed = no", "set mail_check = 60", "set timeout = 10", "set wait_key = no",
        "set quit = yes", "set delete = no",
        # the self-signed certificate is accepted once ('o' on standard input); then copy the
        # message to a file and quit
        f"push '<copy-message>{saved}<enter><quit>'",
    ]) + "\n")
    done = subprocess.run(
        [script, "-qec", f"{mutt} -n -F {rc} -f imaps://{host}:{port}/ForMutt", "/dev/null"],
        input="o" * 4, capture_output=True, text=True, timeout=120, check=False,
        env={"TERM": "vt100", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert saved.exists(), done.stdout[-2000:] + done.stderr[-2000:]
    assert b"Subject: for mutt" in saved.read_bytes()
