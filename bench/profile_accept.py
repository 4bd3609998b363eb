"""Where the time of hardmail's accept path goes: CPU per message of each process, and a cProfile.

    .venv/bin/python bench/profile_accept.py                  # 3,000 messages, smtp-source -s 20 -d
    .venv/bin/python bench/profile_accept.py --messages 300 --out DIR

Runs hardmail as the throughput benchmark does, but with one worker (``server.workers = 1``), so
that the server process and its Maildir writer process are one of each; sends with smtp-source
reusing connections (Postfix's load generator; without it, bench/loadgen.py), then reports:

- CPU (user + system) per message of each process (server, Maildir writer) and of Postfix and
  aiosmtpd's Sink under the same load, for comparison (when they are installed);
- the same server run under ``cProfile``: its top functions by own time (``profile.txt``).

Writes ``profile_accept.json`` and ``profile_accept.md`` (and ``profile.txt``) into ``--out``.
Every process it starts is stopped by PID at the end (bench/peers/procs.py).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loadgen import LoadPlan, run_load_sync
from peers.aiosmtpd_peer import AiosmtpdPeer
from peers.hardmail_peer import HARDMAIL, PASSWORD, HardmailPeer
from peers.postfix import PostfixPeer
from peers.procs import ProcessGroup, free_port, process_tree, wait_for_greeting
from report import facts_line, machine_facts, markdown_table

DOMAIN = "bench.test"
USER = f"user@{DOMAIN}"
SMTP_SOURCE = "/usr/sbin/smtp-source"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` itself and of its reaped children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


def command_of(pid: int) -> str:
    words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    text = " ".join(word.decode(errors="replace") for word in words if word)
    if "maildir_writer" in text:
        return "hardmail Maildir writer"
    return "hardmail server" if "hardmail" in text else text[:40]


def send(address: tuple[str, int], messages: int) -> float:
    """Send ``messages`` over 20 reused sessions; returns the seconds taken."""
    started = time.perf_counter()
    if Path(SMTP_SOURCE).exists():
        subprocess.run([SMTP_SOURCE, "-s", "20", "-m", str(messages), "-l", "512", "-d", "-f", "sender@example.net",
                        "-t", USER, f"{address[0]}:{address[1]}"], check=True, timeout=600)
    else:
        result = run_load_sync(LoadPlan(*address, sender="sender@example.net", recipient=USER, messages=messages))
        if result.errors:
            raise RuntimeError(f"unexpected replies: {result.errors[:3]}")
    return time.perf_counter() - started


def measure_cpu(pid: int, address: tuple[str, int], messages: int) -> dict[str, Any]:
    """Messages/s and CPU microseconds per message of each process under ``pid`` while sending."""
    pids = process_tree(pid)
    before = {p: cpu_seconds(p) for p in pids}
    seconds = send(address, messages)  # every 250 came back: every delivery's CPU is spent
    per_process: dict[str, float] = {}
    for p in process_tree(pid):
        name = command_of(p)
        used = cpu_seconds(p) - before.get(p, 0.0)
        per_process[name] = per_process.get(name, 0.0) + 1e6 * used / messages
    return {"messages_per_second": messages / seconds, "cpu_us_per_message": per_process,
            "cpu_us_per_message_total": sum(per_process.values())}


def hardmail_cpu(workdir: Path, group: ProcessGroup, messages: int) -> dict[str, Any]:
    peer = HardmailPeer(workdir / "hardmail", DOMAIN, USER, group)
    peer.start({"HARDMAIL_SERVER__WORKERS": "1"})
    try:
        return measure_cpu(peer.pid, peer.address, messages)
    finally:
        peer.stop()


def peer_cpu(name: str, workdir: Path, group: ProcessGroup, messages: int) -> dict[str, Any] | None:
    if name == "postfix":
        if not Path("/usr/lib/postfix/sbin/master").exists() or os.geteuid() != 0:
            return None
        peer: Any = PostfixPeer(workdir / "postfix", free_port(), DOMAIN, [USER], group)
    else:
        peer = AiosmtpdPeer(workdir / "aiosmtpd", group, USER, PASSWORD)
    peer.start()
    try:
        found = measure_cpu(peer.pid, peer.address, messages)
    finally:
        group.stop_all()
    found["cpu_us_per_message"] = {name: found["cpu_us_per_message_total"]}
    return found


def hardmail_cprofile(workdir: Path, group: ProcessGroup, messages: int) -> str:
    """The server under cProfile (one worker): its top functions by own time."""
    peer = HardmailPeer(workdir / "profiled", DOMAIN, USER, group)
    peer.prepare()
    stats = workdir / "hardmail.cprofile"
    argv = [sys.executable, "-m", "cProfile", "-o", str(stats), str(HARDMAIL), "serve", "--config",
            str(peer.root / "hardmail.toml")]
    proc = group.start(argv, peer.root / "hardmail.log", env={**os.environ, "HARDMAIL_SERVER__WORKERS": "1"})
    wait_for_greeting(*peer.address, timeout=60, proc=proc)
    send(peer.address, messages)
    proc.send_signal(signal.SIGTERM)  # a clean stop writes the profile
    proc.wait(timeout=120)
    text = io.StringIO()
    pstats.Stats(str(stats), stream=text).sort_stats("tottime").print_stats(40)
    return text.getvalue()


def report(results: dict[str, Any]) -> str:
    rows = []
    for name, found in results["servers"].items():
        if found is None:
            continue
        parts = ", ".join(f"{part} {us:.0f}" for part, us in found["cpu_us_per_message"].items())
        rows.append([name, f"{found['messages_per_second']:.0f}", f"{found['cpu_us_per_message_total']:.0f}", parts])
    table = markdown_table(["server", "msg/s", "CPU µs per message", "by process (µs)"], rows)
    return f"{facts_line(results['machine'])}\n\n{table}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "profile")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="hardmail-profile-"))
    group = ProcessGroup()
    try:
        servers = {"hardmail": hardmail_cpu(workdir, group, args.messages),
                   "postfix": peer_cpu("postfix", workdir, group, args.messages),
                   "aiosmtpd": peer_cpu("aiosmtpd", workdir, group, args.messages)}
        profile = hardmail_cprofile(workdir, group, args.messages)
    finally:
        group.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    results = {"machine": machine_facts(), "messages": args.messages, "servers": servers}
    (args.out / "profile_accept.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    (args.out / "profile.txt").write_text(profile)
    summary = report(results)
    (args.out / "profile_accept.md").write_text(summary)
    print(summary)
    print("\n".join(profile.splitlines()[:30]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
