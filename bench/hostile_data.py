"""Hostile message data: how long the server's event loop stalls and how much memory it takes.

    .venv/bin/python bench/hostile_data.py --label after                          # this checkout
    .venv/bin/python bench/hostile_data.py --label before --checkout /path/to/old  # another one

Runs ``hardmail serve`` (one worker process, so that every connection meets the same event loop;
its Maildir writer process; the code of ``--checkout``, by PYTHONPATH) and, per case, while the
hostile client(s) send, a probe client opens a new connection every 10 ms and times its 220
greeting. Reported per case: the longest greeting wait (the event-loop stall), the median one, the
server's memory before, at its peak and after (the sum of the RSS of its processes, sampled every
50 ms, as in issue 11), the replies and the wall time. Cases:

- ``header-removal``: one message of ``--header-mb`` MB sent in ``--piece``-byte TCP writes
  (TCP_NODELAY) ``--gap-ms`` apart, so that the server reads them one by one (many DATA chunks), a
  header block with no empty line that starts with fields the server removes (a forged
  ``X-Spam-Status:`` and ``Received-SPF:`` on the MX port);
- ``header-removal+body``: the same forged fields in a 200 KB header block, then ``--header-mb`` MB
  of body, in the same small writes (the removal path on a message that is accepted);
- ``concurrent-big``: ``--concurrent`` messages of ``--big-mb`` MB at once, 64 KiB writes.

Results are merged into ``--out``/hostile_data.json under ``--label`` (so a "before" and an
"after" run sit side by side) and rendered to hostile_data.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peers.hardmail_peer import HardmailPeer
from peers.procs import ProcessGroup, process_tree, rss_bytes
from report import facts_line, machine_facts, markdown_table, write_json

DOMAIN = "bench.test"
USER = f"user@{DOMAIN}"
MB = 1024 * 1024
FORGED = (b"X-Spam-Status: No, score=-100.0 (forged by the sender)\r\n"
          b"Received-SPF: pass (forged) client-ip=192.0.2.1\r\n")
CASES = ("header-removal", "header-removal+body", "concurrent-big")
FILLER = b"X-Filler: " + b"f" * 88 + b"\r\n"  # 100 bytes a line


@dataclass(frozen=True)
class Plan:
    checkout: Path
    label: str
    header_mb: float
    big_mb: float
    concurrent: int
    piece: int
    gap: float
    out: Path
    cases: tuple[str, ...]


def header_only(size: int) -> bytes:
    """Forged fields, then header lines to ``size`` bytes and no empty line at all."""
    return FORGED + FILLER * max(1, (size - len(FORGED)) // len(FILLER))


def header_and_body(size: int) -> bytes:
    head = FORGED + FILLER * (200_000 // len(FILLER)) + b"\r\n"
    return head + b"body line of the message, nothing to see here .......\r\n" * max(1, size // 56)


def plain(size: int) -> bytes:
    head = f"From: someone@remote.example\r\nTo: {USER}\r\nSubject: big\r\n\r\n".encode()
    line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


async def _reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if not line or line[3:4] != b"-":
            return line


async def send_message(address: tuple[str, int], message: bytes, piece: int, gap: float = 0.0) -> str:
    """One session: envelope, DATA, the message in ``piece``-byte writes ``gap`` seconds apart;
    returns the final reply."""
    reader, writer = await asyncio.open_connection(*address)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        await _reply(reader)
        for line in (b"EHLO hostile.example", b"MAIL FROM:<someone@remote.example>", f"RCPT TO:<{USER}>".encode(),
                     b"DATA"):
            writer.write(line + b"\r\n")
            answer = await _reply(reader)
        if not answer.startswith(b"354"):
            return answer.decode(errors="replace").strip()
        view = memoryview(message)
        for start in range(0, len(view), piece):
            writer.write(view[start:start + piece])
            await writer.drain()
            if gap:
                await asyncio.sleep(gap)  # the workload's shape: pieces that arrive one by one
        writer.write(b".\r\n")
        return (await _reply(reader)).decode(errors="replace").strip()
    finally:
        writer.close()


async def probe(address: tuple[str, int], stop: asyncio.Event, waits: list[float]) -> None:
    """A new connection every 10 ms: the time to its 220 greeting."""
    while not stop.is_set():
        started = time.perf_counter()
        reader, writer = await asyncio.open_connection(*address)
        await reader.readline()
        waits.append(time.perf_counter() - started)
        writer.write(b"QUIT\r\n")
        writer.close()
        await asyncio.sleep(0.01)


def tree_rss(pid: int) -> int:
    total = 0
    for member in process_tree(pid):
        try:
            total += rss_bytes(member)
        except (OSError, RuntimeError):
            continue
    return total


async def sample_memory(pid: int, stop: asyncio.Event, samples: list[int]) -> None:
    while not stop.is_set():
        samples.append(await asyncio.to_thread(tree_rss, pid))
        await asyncio.sleep(0.05)


async def measure(peer: HardmailPeer, senders: Callable[[], list[Awaitable[str]]]) -> dict[str, Any]:
    before = tree_rss(peer.pid)
    stop, waits, samples = asyncio.Event(), [], [before]
    watchers = [asyncio.create_task(probe(peer.address, stop, waits)),
                asyncio.create_task(sample_memory(peer.pid, stop, samples))]
    started = time.perf_counter()
    try:
        replies = await asyncio.gather(*senders())
    finally:
        seconds = time.perf_counter() - started
        stop.set()
        await asyncio.gather(*watchers, return_exceptions=True)
    after = tree_rss(peer.pid)
    return {"stall_ms": round(max(waits, default=0.0) * 1000, 1),
            "greeting_median_ms": round(statistics.median(waits) * 1000, 1) if waits else 0.0,
            "probes": len(waits), "rss_before_mb": round(before / MB, 1),
            "rss_peak_mb": round(max(samples) / MB, 1), "rss_after_mb": round(after / MB, 1),
            "replies": sorted(set(r[:9] for r in replies)), "seconds": round(seconds, 2)}


async def run_cases(peer: HardmailPeer, plan: Plan) -> dict[str, Any]:
    results: dict[str, Any] = {}
    await send_message(peer.address, plain(10_000), 65536)  # warm-up: the Maildir writer runs
    header_size = int(plan.header_mb * MB)
    cases: dict[str, Callable[[], list[Awaitable[str]]]] = {
        "header-removal": lambda: [send_message(peer.address, header_only(header_size), plan.piece, plan.gap)],
        "header-removal+body": lambda: [send_message(peer.address, header_and_body(header_size), plan.piece,
                                                     plan.gap)],
        "concurrent-big": lambda: [send_message(peer.address, big, 65536) for _ in range(plan.concurrent)],
    }
    big = plain(int(plan.big_mb * MB)) if "concurrent-big" in plan.cases else b""
    for name in plan.cases:
        results[name] = await measure(peer, cases[name])
        print(f"{plan.label} {name}: {json.dumps(results[name])}", flush=True)
    return results


def write_report(plan: Plan, results: dict[str, Any]) -> None:
    path = plan.out / "hostile_data.json"
    data = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    data["runs"][plan.label] = {"facts": machine_facts(), "checkout": str(plan.checkout), "results": results,
                                "sizes": {"header_mb": plan.header_mb, "big_mb": plan.big_mb, "piece": plan.piece,
                                          "concurrent": plan.concurrent, "gap_ms": plan.gap * 1000}}
    write_json(path, data)
    (plan.out / "hostile_data.md").write_text(render(data))


def render(data: dict[str, Any]) -> str:
    """The Markdown table: each case, every run beside the others."""
    header = ["case", "run", "event-loop stall (ms)", "greeting median (ms)", "RSS before (MB)", "RSS peak (MB)",
              "RSS after (MB)", "replies", "seconds"]
    rows = []
    labels = sorted(data["runs"], key=lambda label: (label != "before", label))  # "before" first
    for case in CASES:
        for label in labels:
            r = data["runs"][label]["results"].get(case)
            if r is not None:
                rows.append([case, label, r["stall_ms"], r["greeting_median_ms"], r["rss_before_mb"],
                             r["rss_peak_mb"], r["rss_after_mb"], " ".join(r["replies"]), r["seconds"]])
    lines = ["# Hostile message data", ""]
    for label in labels:
        run = data["runs"][label]
        lines.append(f"- {label}: {facts_line(run['facts'])}; checkout {run['checkout']}; sizes {run['sizes']}")
    return "\n".join([*lines, "", markdown_table(header, rows), ""])


def parse(argv: list[str]) -> Plan:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", type=Path, default=here.parent, help="the repository whose src/ is run")
    parser.add_argument("--label", default="after", help="name of this run in the results (e.g. before, after)")
    parser.add_argument("--header-mb", type=float, default=8.0)
    parser.add_argument("--big-mb", type=float, default=45.0)
    parser.add_argument("--concurrent", type=int, default=8)
    parser.add_argument("--piece", type=int, default=4096, help="bytes per TCP write in the header cases")
    parser.add_argument("--gap-ms", type=float, default=1.0, help="pause between those writes")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--out", type=Path, default=here / "results")
    args = parser.parse_args(argv)
    return Plan(args.checkout.resolve(), args.label, args.header_mb, args.big_mb, args.concurrent, args.piece,
                args.gap_ms / 1000, args.out, tuple(args.cases.split(",")))


def main(argv: list[str]) -> int:
    plan = parse(argv)
    group = ProcessGroup()
    workdir = Path(tempfile.mkdtemp(prefix="hardmail-hostile-"))
    peer = HardmailPeer(workdir / "hardmail", DOMAIN, USER, group, env={"PYTHONPATH": str(plan.checkout / "src")},
                        settings={"server": {"workers": 1},
                                  "smtp": {"max_message_size": int(max(plan.big_mb, plan.header_mb) * MB) + MB}})
    try:
        peer.start()
        results = asyncio.run(run_cases(peer, plan))
    finally:
        peer.stop()
        group.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    write_report(plan, results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
