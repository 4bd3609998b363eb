"""Many concurrent IDLE sessions: memory per session and the time until every session has seen a
new message, Dovecot against hardmail, one server at a time, rounds alternating.

    .venv/bin/python bench/imap_idle.py                        # 10,000 sessions, 2 rounds
    .venv/bin/python bench/imap_idle.py --sessions 1000 --rounds 1 --servers dovecot

For each server: start it, open and close a few sessions (warm-up), read its memory (the sum of
RSS and the sum of PSS over all its processes), open N sessions (implicit TLS unless ``--plain``,
LOGIN, SELECT INBOX, IDLE up to its ``+``; at most ``--connect-concurrency`` opening at once,
spread over source addresses 127.0.0.2-51, held by ``--client-processes`` client processes with
an event loop each), read the memory again, then APPEND one message to the
same INBOX over another connection and time until every idling session has received its
``* n EXISTS``. All sessions use ``--accounts`` accounts (round robin); the APPEND goes to each.

Dovecot is configured for this many sessions as :data:`imap_peers.DOVECOT_MANY_SESSIONS` says:
login processes in high-performance mode (``service_count = 0``, 6,000 clients each), imap
processes with ``client_limit = 250`` (40 processes for 10,000 sessions, under the inotify limit
of 128 instances per user that IDLE relies on), ``mail_max_userip_connections`` raised.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from imap_peers import (
    DOVECOT_MANY_SESSIONS,
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

SOURCES = [f"127.0.0.{n}" for n in range(2, 52)]
MESSAGE = b"From: bench@bench.test\r\nSubject: wake up\r\n\r\nA new message for every idler.\r\n"


async def _idler(server: ImapServer, user: str, password: str, tls: bool, source: str) -> ImapClient:
    client = await ImapClient.connect(server, tls=tls, source=source)
    await client.login(user, password)
    await client.command(b"SELECT INBOX")
    client.writer.write(b"idle IDLE\r\n")
    await client.writer.drain()
    while not (line := await client.response()).startswith(b"+"):
        if line.startswith(b"idle "):
            raise RuntimeError(f"IDLE refused: {line!r}")
    return client


async def _open_range(server: ImapServer, users: list[tuple[str, str]], plan: argparse.Namespace,
                      first: int, count: int) -> list[ImapClient]:
    limit = asyncio.Semaphore(max(1, plan.connect_concurrency // plan.client_processes))

    async def one(index: int) -> ImapClient:
        async with limit:
            user, password = users[index % len(users)]
            return await _idler(server, user, password, not plan.plain, SOURCES[index % len(SOURCES)])

    return list(await asyncio.gather(*[one(n) for n in range(first, first + count)]))


async def _seen_exists(client: ImapClient, deadline: float) -> float:
    while True:
        line = await asyncio.wait_for(client.response(), max(0.01, deadline - time.monotonic()))
        if line.endswith(b" EXISTS\r\n"):
            return time.monotonic()


async def _deliver(server: ImapServer, users: list[tuple[str, str]], tls: bool) -> None:
    for user, password in users:
        client = await ImapClient.connect(server, tls=tls)
        await client.login(user, password)
        await client.command(b"APPEND INBOX", MESSAGE)
        await client.command(b"LOGOUT")
        await client.close()


async def _client_main(server: ImapServer, users: list[tuple[str, str]], plan: argparse.Namespace,
                       first: int, count: int, pipe: Connection) -> None:
    """One client process: open its sessions, say "ready", arm on "go", report when each saw EXISTS
    (time.monotonic() is the same clock in every process)."""
    clients = await _open_range(server, users, plan, first, count)
    pipe.send(("ready", len(clients)))
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, pipe.recv)
    deadline = time.monotonic() + plan.notify_timeout
    waiters = [asyncio.ensure_future(_seen_exists(client, deadline)) for client in clients]
    pipe.send(("armed", 0))
    done, _ = await asyncio.wait(waiters, timeout=plan.notify_timeout)
    pipe.send(("seen", [w.result() for w in done if not w.exception()]))
    for waiter in waiters:
        waiter.cancel()
    await asyncio.gather(*[client.close() for client in clients], return_exceptions=True)


def _client_process(server: ImapServer, users: list[tuple[str, str]], plan: argparse.Namespace,
                    first: int, count: int, pipe: Connection) -> None:
    try:
        asyncio.run(_client_main(server, users, plan, first, count, pipe))
    except Exception as exc:  # reported to the parent, which fails the run
        pipe.send(("error", f"{type(exc).__name__}: {exc}"))


def _expect(pipes: list[Connection], what: str) -> list[Any]:
    answers = []
    for pipe in pipes:
        kind, value = pipe.recv()
        if kind != what:
            raise RuntimeError(f"client process: {kind} {value}")
        answers.append(value)
    return answers


def _round(server: ImapServer, plan: argparse.Namespace) -> dict[str, Any]:
    users = list(accounts(plan.accounts).items())
    asyncio.run(_warm_up(server, users, plan))
    before = server.memory()
    started = time.monotonic()
    context = multiprocessing.get_context("fork")  # the server object (with its SSL context) is inherited
    share = -(-plan.sessions // plan.client_processes)
    pipes, processes = [], []
    for first in range(0, plan.sessions, share):
        ours, theirs = context.Pipe()
        process = context.Process(target=_client_process, daemon=True,
                                  args=(server, users, plan, first, min(share, plan.sessions - first), theirs))
        process.start()
        pipes.append(ours)
        processes.append(process)
    try:
        _expect(pipes, "ready")
        opened = time.monotonic() - started
        after = server.memory()
        for pipe in pipes:
            pipe.send("go")
        _expect(pipes, "armed")
        sent = time.monotonic()
        asyncio.run(_deliver(server, users, not plan.plain))
        appended = time.monotonic() - sent
        seen = sorted(t - sent for times in _expect(pipes, "seen") for t in times)
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    return _result(server, plan, before, after, opened, appended, seen)


async def _warm_up(server: ImapServer, users: list[tuple[str, str]], plan: argparse.Namespace) -> None:
    warm = await _open_range(server, users, plan, 0, 20)
    await asyncio.gather(*[client.close() for client in warm])


def _result(server: ImapServer, plan: argparse.Namespace, before: dict[str, int], after: dict[str, int],
            opened: float, appended: float, seen: list[float]) -> dict[str, Any]:
    n = plan.sessions
    return {
        "server": server.name, "sessions": n, "open_seconds": round(opened, 2),
        "rss_before_mb": round(before["rss"] / 2**20, 1), "rss_after_mb": round(after["rss"] / 2**20, 1),
        "pss_before_mb": round(before["pss"] / 2**20, 1), "pss_after_mb": round(after["pss"] / 2**20, 1),
        "rss_per_session_kb": round((after["rss"] - before["rss"]) / n / 1024, 1),
        "pss_per_session_kb": round((after["pss"] - before["pss"]) / n / 1024, 1),
        "processes_after": after["processes"], "notified": len(seen), "append_s": round(appended, 3),
        "first_notified_s": round(seen[0], 3) if seen else None,
        "all_notified_s": round(seen[-1], 3) if len(seen) == n else None,
        "median_notified_s": round(statistics.median(seen), 3) if seen else None,
    }


def _start(name: str, root: Path, users: dict[str, str], group: ProcessGroup) -> tuple[Any, ImapServer]:
    if name == "dovecot":
        dovecot = DovecotPeer(root / f"dovecot-{time.monotonic_ns()}", users, DOVECOT_MANY_SESSIONS)
        return dovecot, dovecot.start()
    hardmail = HardmailImapPeer(root / f"hardmail-{time.monotonic_ns()}", users, group)
    hardmail.prepare()
    return hardmail, hardmail.start()


def _run(plan: argparse.Namespace) -> list[dict[str, Any]]:
    users = accounts(plan.accounts)
    group = ProcessGroup()
    root = Path(tempfile.mkdtemp(prefix="imap-idle-"))
    root.chmod(0o755)
    results = []
    try:
        for number in range(plan.rounds):
            for name in (plan.servers if number % 2 == 0 else plan.servers[::-1]):
                peer, server = _start(name, root, users, group)
                try:
                    result = _round(server, plan)
                finally:
                    peer.stop()
                result["round"] = number + 1
                results.append(result)
                print(json.dumps(result), flush=True)
    finally:
        group.stop_all()
    return results


def _markdown(results: list[dict[str, Any]], facts: dict[str, Any], plan: argparse.Namespace) -> str:
    header = ["server", "round", "sessions", "RSS before/after (MB)", "PSS before/after (MB)",
              "RSS per session (KB)", "PSS per session (KB)", "processes", "all notified (s)", "median (s)"]
    rows = [[r["server"], r["round"], r["sessions"], f"{r['rss_before_mb']} / {r['rss_after_mb']}",
             f"{r['pss_before_mb']} / {r['pss_after_mb']}", r["rss_per_session_kb"], r["pss_per_session_kb"],
             r["processes_after"], r["all_notified_s"] if r["all_notified_s"] is not None else
             f"{r['notified']} of {r['sessions']} within {plan.notify_timeout:.0f}", r["median_notified_s"]]
            for r in results]
    mode = "plaintext LOGIN (Dovecot counts loopback as secured)" if plan.plain else "implicit TLS"
    return (f"{facts_line(facts)}\n\n{markdown_table(header, rows)}\n\nSessions over {mode}, "
            f"{plan.accounts} account(s); the notification is one APPEND per account from another connection.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--accounts", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connect-concurrency", type=int, default=200)
    parser.add_argument("--client-processes", type=int, default=2,
                        help="client processes sharing the sessions (each its own event loop)")
    parser.add_argument("--notify-timeout", type=float, default=30.0)
    parser.add_argument("--plain", action="store_true", help="no TLS (hardmail gets imap.allow_plaintext_login)")
    parser.add_argument("--servers", default="dovecot,hardmail")
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
    results = _run(plan)
    write_json(plan.out / "imap_idle.json", {"facts": facts, "runs": results})
    text = _markdown(results, facts, plan)
    (plan.out / "imap_idle.md").write_text(text + "\n")
    print(text)
    if not plan.no_readme:
        write_readme_section("IDLE sessions (imap_idle.py)", text)
    return 0 if all(r["all_notified_s"] is not None for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
