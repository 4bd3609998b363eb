"""Mixed IMAP workload: N clients, each on its own account, in a loop of LOGIN, SELECT, FETCH of
headers and of bodies, STORE, APPEND, EXPUNGE, LOGOUT, against Dovecot and hardmail in the same
run (alternating rounds), over implicit TLS on loopback.

    .venv/bin/python bench/imap_workload.py                          # 10 and 50 clients, 3 rounds
    .venv/bin/python bench/imap_workload.py --clients 10 --seconds 5 --rounds 1 --servers dovecot

One loop ("session") is: connect + TLS, LOGIN, SELECT INBOX, FETCH 1:20 (BODY.PEEK[HEADER]),
FETCH of 3 whole messages (BODY.PEEK[]), STORE +FLAGS (\\Seen) on 5 messages, APPEND of one
message, STORE +FLAGS (\\Deleted) on it, EXPUNGE, LOGOUT: 10 commands, each counted as one
operation once its tagged OK has arrived. Every account starts with the same ``--messages``
messages (APPENDed before timing). The result is operations per second (median over rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from imap_peers import (
    PLAINTEXT,
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

CORPUS = sorted((Path(__file__).resolve().parents[1] / "tests" / "data" / "imap_diff").glob("*.eml"))


def _message(n: int) -> bytes:
    return CORPUS[n % len(CORPUS)].read_bytes()


async def _fill(server: ImapServer, user: str, password: str, count: int) -> None:
    client = await ImapClient.connect(server)
    await client.login(user, password)
    for n in range(count):
        await client.command(b"APPEND INBOX", _message(n))
    await client.command(b"LOGOUT")
    await client.close()


async def _session(server: ImapServer, user: str, password: str, seed: int) -> int:
    client = await ImapClient.connect(server)
    await client.login(user, password)
    await client.command(b"SELECT INBOX")
    await client.command(b"FETCH 1:20 (BODY.PEEK[HEADER])")
    await client.command(b"FETCH %d,%d,%d (BODY.PEEK[])" % (1 + seed % 20, 21 + seed % 20, 41 + seed % 20))
    await client.command(b"STORE %d:%d +FLAGS (\\Seen)" % (1 + seed % 50, 5 + seed % 50))
    appended = await client.command(b"APPEND INBOX", _message(seed))
    uid = appended[-1].split(b"APPENDUID ")[1].split(b" ")[1].rstrip(b"]")
    await client.command(b"UID STORE " + uid + b" +FLAGS (\\Deleted)")
    await client.command(b"EXPUNGE")
    await client.command(b"LOGOUT")
    await client.close()
    return 10  # LOGIN .. LOGOUT


async def _client_loop(server: ImapServer, user: str, password: str, until: float, counts: list[int],
                       errors: list[str]) -> None:
    seed = 0
    while time.monotonic() < until:
        try:
            counts.append(await _session(server, user, password, seed))
        except (RuntimeError, OSError, ConnectionError, asyncio.IncompleteReadError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
        seed += 1


async def _measure(server: ImapServer, users: dict[str, str], clients: int, seconds: float) -> dict[str, Any]:
    counts: list[int] = []
    errors: list[str] = []
    names = list(users)[:clients]
    ImapClient.retries = 0
    start = time.monotonic()
    await asyncio.gather(*[_client_loop(server, name, users[name], start + seconds, counts, errors) for name in names])
    elapsed = time.monotonic() - start
    return {"server": server.name, "clients": clients, "ops": sum(counts), "seconds": round(elapsed, 3),
            "login_retries": ImapClient.retries,
            "ops_per_s": round(sum(counts) / elapsed, 1), "errors": errors[:5], "error_count": len(errors)}


def _run(args: argparse.Namespace) -> dict[str, Any]:
    users = accounts(max(args.clients))
    group = ProcessGroup()
    root = Path(tempfile.mkdtemp(prefix="imap-workload-"))
    root.chmod(0o755)  # Dovecot's unprivileged processes must reach their files below it
    servers: dict[str, ImapServer] = {}
    peers: list[DovecotPeer | HardmailImapPeer] = []
    runs: list[dict[str, Any]] = []
    try:
        if "dovecot" in args.servers:
            dovecot = DovecotPeer(root / "dovecot", users)
            peers.append(dovecot)
            servers["dovecot"] = dovecot.start()
        if "hardmail" in args.servers:
            hardmail = HardmailImapPeer(root / "hardmail", users, group)
            hardmail.prepare()
            peers.append(hardmail)
            servers["hardmail"] = hardmail.start()
        for server in servers.values():
            asyncio.run(_fill_all(server, users, args.messages))
        for round_number in range(args.rounds):
            order = list(servers.values()) if round_number % 2 == 0 else list(servers.values())[::-1]
            for clients in args.clients:
                for server in order:
                    result = asyncio.run(_measure(server, users, clients, args.seconds))
                    result["round"] = round_number + 1
                    runs.append(result)
                    print(json.dumps(result), flush=True)
    finally:
        for peer in peers:
            peer.stop()
        group.stop_all()
    return {"runs": runs, "summary": _summary(runs)}


async def _fill_all(server: ImapServer, users: dict[str, str], messages: int) -> None:
    limit = asyncio.Semaphore(5)

    async def one(user: str, password: str) -> None:
        async with limit:
            await _fill(server, user, password, messages)

    await asyncio.gather(*[one(user, password) for user, password in users.items()])


def _summary(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for run in runs:
        out.setdefault(str(run["clients"]), {}).setdefault(run["server"], [])  # type: ignore[arg-type]
    for run in runs:
        out[str(run["clients"])][run["server"]].append(run["ops_per_s"])  # type: ignore[attr-defined]
    return {clients: {server: round(statistics.median(values), 1) for server, values in by.items()}  # type: ignore[arg-type]
            for clients, by in out.items()}


def _markdown(result: dict[str, Any], facts: dict[str, Any]) -> str:
    rows = []
    for clients, by in result["summary"].items():
        dovecot, hardmail = by.get("dovecot"), by.get("hardmail")
        ratio = f"{hardmail / dovecot:.2f}x" if dovecot and hardmail else "n/a"
        rows.append([clients, hardmail if hardmail is not None else "not run", dovecot or "not run", ratio])
    errors = sum(run["error_count"] for run in result["runs"])
    mode = "plaintext LOGIN on the imap port" if PLAINTEXT["on"] else "implicit TLS (993)"
    return (f"{facts_line(facts)}\n\nSessions over {mode}.\n\n"
            + markdown_table(["clients", "hardmail ops/s", "dovecot ops/s", "hardmail/dovecot"], rows)
            + f"\n\nMedian of {max(run['round'] for run in result['runs'])} rounds; failed sessions: {errors}; "
            f"LOGINs retried after NO [UNAVAILABLE] (busy password hashing): {_retries(result['runs'])}.")


def _retries(runs: list[dict[str, Any]]) -> str:
    listed = [f"{run['server']} {run['clients']} clients round {run['round']}: {run['login_retries']}"
              for run in runs if run.get("login_retries")]
    return "; ".join(listed) if listed else "none"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=lambda v: [int(x) for x in v.split(",")], default=[10, 50])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of one measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=60, help="messages in each account before timing")
    parser.add_argument("--servers", default="dovecot,hardmail")
    parser.add_argument("--plain", action="store_true", help="no TLS: clients use the imap port (see imap_peers)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--no-readme", action="store_true", help="do not write bench/README.md")
    args = parser.parse_args()
    args.servers = args.servers.split(",")
    if "hardmail" in args.servers and not hardmail_serves_imap():
        print("hardmail serve has no IMAP listeners in this checkout: running Dovecot alone", file=sys.stderr)
        args.servers.remove("hardmail")
    if args.plain:
        use_plaintext()
    raise_open_file_limit()
    facts = imap_facts()
    result = _run(args)
    result["facts"] = facts
    write_json(args.out / "imap_workload.json", result)
    text = _markdown(result, facts)
    (args.out / "imap_workload.md").write_text(text + "\n")
    print(text)
    if not args.no_readme:
        write_readme_section("Mixed workload (imap_workload.py)", text)
    return 1 if any(run["error_count"] for run in result["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
