"""Idle connections: N concurrent SMTP sessions that each send EHLO and wait, against hardmail and
aiosmtpd in the same run.

    .venv/bin/python bench/idle_connections.py                    # N = 10,000
    .venv/bin/python bench/idle_connections.py --sessions 500

For each server (own process, loopback, per-IP connection limits raised): open and close a few
sessions (warm-up), read its memory (the sum of the proportional set sizes, PSS, of the server's
processes, so that pages worker processes share after a fork count once), open N sessions
(connect, 220, EHLO, 250; at most ``--connect-concurrency`` connecting at once, spread over source
addresses 127.0.0.2-51), read the memory again, then time the greeting of ``--probes`` new
sessions while all N are still open. Reports memory growth per session and the greeting latency
(median and max); writes JSON and Markdown into ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peers.aiosmtpd_peer import AiosmtpdPeer
from peers.hardmail_peer import PASSWORD, HardmailPeer
from peers.procs import ProcessGroup, raise_open_file_limit, tree_memory_bytes
from report import facts_line, machine_facts, markdown_table, write_json

DOMAIN = "bench.test"
USER = f"user@{DOMAIN}"
SERVERS = ("hardmail", "aiosmtpd")
SOURCE_ADDRESSES = [f"127.0.0.{n}" for n in range(2, 52)]

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass(frozen=True)
class Plan:
    sessions: int
    probes: int
    connect_concurrency: int
    out: Path


async def _reply(reader: asyncio.StreamReader, expected: bytes) -> None:
    while True:
        line = await reader.readline()
        if line[3:4] != b"-":
            break
    if not line.startswith(expected):
        raise RuntimeError(f"expected {expected!r}, got {line[:80]!r}")


async def open_session(host: str, port: int, source: str) -> Stream:
    """Connect, take the 220, send EHLO and take its 250; the session then stays open, idle."""
    reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    await _reply(reader, b"220")
    writer.write(b"EHLO idle.bench.invalid\r\n")
    await _reply(reader, b"250")
    return reader, writer


async def open_many(host: str, port: int, count: int, concurrency: int) -> list[Stream]:
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> Stream:
        async with gate:
            return await open_session(host, port, SOURCE_ADDRESSES[index % len(SOURCE_ADDRESSES)])

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def greeting_latency(host: str, port: int) -> float:
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port, local_addr=("127.0.0.1", 0))
    await _reply(reader, b"220")
    elapsed = time.perf_counter() - started
    writer.close()
    return elapsed


async def close_all(streams: list[Stream]) -> None:
    for _, writer in streams:
        writer.close()
    await asyncio.sleep(0)  # let the transports start closing before the next measurement


async def measure(peer: Any, plan: Plan) -> dict[str, Any]:
    host, port = peer.address
    await close_all(await open_many(host, port, 50, plan.connect_concurrency))  # warm-up
    before = tree_memory_bytes(peer.pid)
    started = time.perf_counter()
    streams = await open_many(host, port, plan.sessions, plan.connect_concurrency)
    open_seconds = time.perf_counter() - started
    after = tree_memory_bytes(peer.pid)
    latencies = [await greeting_latency(host, port) for _ in range(plan.probes)]
    await close_all(streams)
    return {"sessions": plan.sessions, "memory_before": before, "memory_after": after,
            "memory_per_session": (after - before) / plan.sessions, "open_seconds": open_seconds,
            "greeting_ms_median": statistics.median(latencies) * 1000, "greeting_ms_max": max(latencies) * 1000}


def start_peers(workdir: Path, group: ProcessGroup) -> dict[str, Any]:
    peers: dict[str, Any] = {"hardmail": HardmailPeer(workdir / "hardmail", DOMAIN, USER, group),
                             "aiosmtpd": AiosmtpdPeer(workdir / "aiosmtpd", group, USER, PASSWORD)}
    for peer in peers.values():
        peer.start()
    return peers


def render(results: dict[str, dict[str, Any]], facts: dict[str, Any]) -> str:
    header = ["server", "sessions", "memory before (MB)", "memory after (MB)", "growth per session (KB)",
              "greeting with all open, median / max (ms)"]
    rows = [[name, r["sessions"], f"{r['memory_before'] / 1e6:.1f}", f"{r['memory_after'] / 1e6:.1f}",
             f"{r['memory_per_session'] / 1024:.1f}", f"{r['greeting_ms_median']:.1f} / {r['greeting_ms_max']:.1f}"]
            for name, r in results.items()]
    return f"{facts_line(facts)}\n\n{markdown_table(header, rows)}\n"


def run(plan: Plan) -> dict[str, dict[str, Any]]:
    raise_open_file_limit()
    group = ProcessGroup()
    workdir = Path(tempfile.mkdtemp(prefix="hardmail-idle-"))
    try:
        peers = start_peers(workdir, group)
        results = {}
        for name, peer in peers.items():
            results[name] = asyncio.run(measure(peer, plan))
            print(f"{name}: {results[name]}", file=sys.stderr, flush=True)
        return results
    finally:
        group.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Memory per idle SMTP session: hardmail vs aiosmtpd")
    parser.add_argument("--sessions", type=int, default=10_000, help="idle sessions held open at once")
    parser.add_argument("--probes", type=int, default=20, help="new sessions timed while all are open")
    parser.add_argument("--connect-concurrency", type=int, default=200, help="connections being set up at once")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results", help="where results go")
    args = parser.parse_args(argv)
    plan = Plan(args.sessions, args.probes, args.connect_concurrency, args.out)
    results = run(plan)
    facts = machine_facts()
    text = render(results, facts)
    write_json(plan.out / "idle_connections.json", {"machine": facts, "results": results,
                                                    "params": {"sessions": plan.sessions, "probes": plan.probes}})
    (plan.out / "idle_connections.md").write_text(text)
    print(text)
    hardmail, aiosmtpd = results["hardmail"]["memory_per_session"], results["aiosmtpd"]["memory_per_session"]
    return 0 if hardmail <= aiosmtpd else 1


if __name__ == "__main__":
    sys.exit(main())
