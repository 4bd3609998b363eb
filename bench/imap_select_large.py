"""SELECT plus FETCH 1:* (FLAGS) on a 100,000-message INBOX, Dovecot against hardmail, with the
same Maildir contents, rounds alternating.

    .venv/bin/python bench/imap_select_large.py                       # 100,000 messages, 5 rounds
    .venv/bin/python bench/imap_select_large.py --messages 5000 --rounds 2 --servers dovecot

The Maildir is generated once (``cur/`` files with CRLF line ends, 0.5-1.5 KB each, a third
unseen, a tenth flagged; kept under ``--cache`` for later runs) and copied into each server's
account before it starts. hardmail then indexes it with ``hardmail mailbox reindex`` when this
checkout has that command (its time is reported), else through its first SELECT. Dovecot indexes
it on its first SELECT. The first SELECT of each server is reported apart ("cold"); the others,
each on a new logged-in connection, give the median ("warm"). Time = from sending SELECT to the
tagged OK of FETCH 1:* (FLAGS), every FETCH line read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from imap_peers import (
    PASSWORD,
    DovecotPeer,
    HardmailImapPeer,
    ImapClient,
    ImapServer,
    accounts,
    hardmail_serves_imap,
    imap_facts,
    use_plaintext,
    write_readme_section,
)
from peers.procs import ProcessGroup, raise_open_file_limit
from report import facts_line, markdown_table, write_json

BASE_TIME = 1_780_000_000


def _message(n: int) -> bytes:
    body = f"Line of the message body number {n}, with some words to search for.\r\n" * (5 + n % 15)
    return (f"From: Sender {n % 97} <sender{n % 97}@example.org>\r\nTo: user0@bench.test\r\n"
            f"Subject: Message {n} about topic {n % 31}\r\nDate: Mon, 02 Nov 2026 10:{n % 60:02d}:00 +0000\r\n"
            f"Message-ID: <m{n}@example.org>\r\n\r\n{body}").encode()


def _flags(n: int) -> str:
    return "".join(flag for flag, on in (("F", n % 10 == 0), ("S", n % 3 != 0)) if on)


def generate(directory: Path, count: int) -> Path:
    """A Maildir with ``count`` messages in cur/ (made once per count, reused)."""
    maildir = directory / f"maildir-{count}"
    if (maildir / "complete").exists():
        return maildir
    shutil.rmtree(maildir, ignore_errors=True)
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    for n in range(count):
        data = _message(n)
        name = f"{BASE_TIME + n}.M{n}P1.bench,S={len(data)}:2,{_flags(n)}"
        (maildir / "cur" / name).write_bytes(data)
    (maildir / "complete").write_text(str(count))
    return maildir


def _copy_into(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for sub in ("cur", "new", "tmp"):
        shutil.copytree(source / sub, target / sub, dirs_exist_ok=True)


async def _select_fetch(server: ImapServer, user: str, expected: int) -> float:
    client = await ImapClient.connect(server)
    await client.login(user, PASSWORD)
    started = time.monotonic()
    await client.command(b"SELECT INBOX")
    lines = await client.command(b"FETCH 1:* (FLAGS)")
    elapsed = time.monotonic() - started
    await client.command(b"LOGOUT")
    await client.close()
    fetched = sum(1 for line in lines if line.startswith(b"* ") and b" FETCH (" in line)
    if fetched != expected:
        raise RuntimeError(f"{server.name}: FETCH 1:* gave {fetched} messages, expected {expected}")
    return elapsed


def _prepare(plan: argparse.Namespace, root: Path, group: ProcessGroup,
             maildir: Path) -> tuple[dict[str, ImapServer], list[Any], dict[str, Any]]:
    user = "user0@bench.test"
    users = accounts(1)
    servers: dict[str, ImapServer] = {}
    peers: list[Any] = []
    notes: dict[str, Any] = {}
    if "dovecot" in plan.servers:
        dovecot = DovecotPeer(root / "dovecot", users)
        _copy_into(maildir, dovecot.maildir(user))
        dovecot.own_files()
        peers.append(dovecot)
        servers["dovecot"] = dovecot.start()
        notes["dovecot_indexing"] = "first SELECT"
    if "hardmail" in plan.servers:
        hardmail = HardmailImapPeer(root / "hardmail", users, group)
        hardmail.prepare()
        _copy_into(maildir, hardmail.maildir(user))
        started = time.monotonic()
        report = hardmail.reindex(user)
        notes["hardmail_indexing"] = ("hardmail mailbox reindex" if report else "first SELECT")
        if report:
            notes["hardmail_reindex_seconds"] = round(time.monotonic() - started, 2)
            notes["hardmail_reindex_output"] = report.strip()[-500:]
        peers.append(hardmail)
        servers["hardmail"] = hardmail.start()
    return servers, peers, notes


def _run(plan: argparse.Namespace) -> dict[str, Any]:
    maildir = generate(plan.cache, plan.messages)
    group = ProcessGroup()
    root = Path(tempfile.mkdtemp(prefix="imap-select-", dir=plan.work))
    root.chmod(0o755)
    runs: list[dict[str, Any]] = []
    peers: list[Any] = []
    try:
        servers, peers, notes = _prepare(plan, root, group, maildir)
        for number in range(plan.rounds):
            order = list(servers.values()) if number % 2 == 0 else list(servers.values())[::-1]
            for server in order:
                seconds = asyncio.run(_select_fetch(server, "user0@bench.test", plan.messages))
                runs.append({"server": server.name, "round": number + 1, "seconds": round(seconds, 3)})
                print(json.dumps(runs[-1]), flush=True)
    finally:
        for peer in peers:
            peer.stop()
        group.stop_all()
        shutil.rmtree(root, ignore_errors=True)
    return {"runs": runs, "notes": notes, "messages": plan.messages}


def _markdown(result: dict[str, Any], facts: dict[str, Any]) -> str:
    by: dict[str, list[float]] = {}
    for run in result["runs"]:
        by.setdefault(run["server"], []).append(run["seconds"])
    warm = {name: statistics.median(values[1:]) if len(values) > 1 else None for name, values in by.items()}
    rows = [[name, values[0], warm[name] if warm[name] is not None else "n/a", len(values) - 1]
            for name, values in by.items()]
    ratio = ""
    theirs, ours = warm.get("dovecot"), warm.get("hardmail")
    if theirs and ours:
        ratio = f"\n\nhardmail/dovecot (warm): {ours / theirs:.2f}x (target: at most 2x)."
    notes = result["notes"]
    indexing = ", ".join(f"{key}: {value}" for key, value in notes.items() if key != "hardmail_reindex_output")
    table = markdown_table(["server", "cold: first SELECT + FETCH (s)", "warm: median (s)", "warm rounds"], rows)
    return f"{facts_line(facts)}\n\n{result['messages']:,} messages.\n\n{table}{ratio}\n\nIndexing: {indexing}."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--servers", default="dovecot,hardmail")
    parser.add_argument("--plain", action="store_true", help="no TLS: clients use the imap port (see imap_peers)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "hardmail-bench-maildir")
    parser.add_argument("--work", type=Path, default=None, help="where the servers' copies go (default: /tmp)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--no-readme", action="store_true")
    plan = parser.parse_args()
    plan.servers = plan.servers.split(",")
    if "hardmail" in plan.servers and not hardmail_serves_imap():
        print("hardmail serve has no IMAP listeners in this checkout: running Dovecot alone", file=sys.stderr)
        plan.servers.remove("hardmail")
    if plan.plain:
        use_plaintext()
    raise_open_file_limit()
    facts = imap_facts()
    result = _run(plan)
    result["facts"] = facts
    write_json(plan.out / "imap_select_large.json", result)
    text = _markdown(result, facts)
    (plan.out / "imap_select_large.md").write_text(text + "\n")
    print(text)
    if not plan.no_readme:
        write_readme_section("SELECT on a large mailbox (imap_select_large.py)", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
