"""SMTP throughput: hardmail beside Postfix and aiosmtpd's Sink, on loopback, in one run.

    .venv/bin/python bench/smtp_throughput.py                 # full size (see README.md)
    .venv/bin/python bench/smtp_throughput.py --messages 200 --rounds 1 --servers hardmail,aiosmtpd

Every server is started by this script as its own process (bench/peers/), on a private high port.
Workloads (each run once per server per round, servers in alternation A B C A B C ...):

- ``smtp-source -d``: Postfix's load generator, ``-s 20 -m 2000 -l 512``, reusing connections;
- ``smtp-source``: the same with a new connection per message;
- ``loadgen reuse`` / ``loadgen new``: our asyncio client (bench/loadgen.py), checking every reply;
- TLS table: ``loadgen`` over STARTTLS (hardmail: submission with AUTH PLAIN; aiosmtpd: AUTH PLAIN
  inside TLS; Postfix: STARTTLS, no SASL, relay by ``permit_mynetworks``).

Prints Markdown tables of the median messages/s and the ratios hardmail/Postfix and
hardmail/aiosmtpd; writes the results JSON, the tables and a PNG plot into ``--out``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from loadgen import LoadPlan, run_load_sync
from peers.aiosmtpd_peer import AiosmtpdPeer
from peers.hardmail_peer import PASSWORD, HardmailPeer
from peers.postfix import PostfixPeer
from peers.procs import ProcessGroup, free_port, run_bounded
from report import bar_plot, facts_line, machine_facts, markdown_table, median, write_json

DOMAIN = "bench.test"
USER = f"user@{DOMAIN}"
SENDER = "sender@example.net"
SMTP_SOURCE = "/usr/sbin/smtp-source"
ALL_SERVERS = ("hardmail", "postfix", "aiosmtpd")
PLAIN_WORKLOADS = ("smtp-source -d", "smtp-source", "loadgen reuse", "loadgen new")
TLS_WORKLOADS = ("loadgen reuse TLS", "loadgen new TLS")


class Peer(Protocol):
    name: str

    @property
    def address(self) -> tuple[str, int]: ...


@dataclass
class Settings:
    sessions: int
    messages: int
    size: int
    rounds: int
    servers: tuple[str, ...]
    tls: bool
    smtp_source: bool
    out: Path


def start_peers(settings: Settings, workdir: Path, group: ProcessGroup) -> dict[str, Any]:
    peers: dict[str, Any] = {}
    for name in settings.servers:
        if name == "hardmail":
            peers[name] = HardmailPeer(workdir / "hardmail", DOMAIN, USER, group)
        elif name == "postfix":
            peers[name] = PostfixPeer(workdir / "postfix", free_port(), DOMAIN, [USER], group)
        else:
            peers[name] = AiosmtpdPeer(workdir / "aiosmtpd", group, USER, PASSWORD)
        peers[name].start()
    return peers


def smtp_source_rate(peer: Any, settings: Settings, reuse: bool, workdir: Path, group: ProcessGroup) -> dict[str, Any]:
    host, port = peer.address
    argv = [SMTP_SOURCE, "-s", str(settings.sessions), "-m", str(settings.messages), "-l", str(settings.size),
            "-f", SENDER, "-t", USER, "-M", "source.bench.invalid"]
    argv += ["-d"] if reuse else []
    started = time.perf_counter()
    code, output = run_bounded(group, [*argv, f"{host}:{port}"], workdir / "smtp-source.log", timeout=600)
    elapsed = time.perf_counter() - started
    (workdir / "smtp-source.log").unlink()
    errors = {} if code == 0 and "fatal" not in output and "warning" not in output else {"smtp-source": output[-500:]}
    return {"sent": settings.messages if not errors else 0, "elapsed": elapsed,
            "rate": settings.messages / elapsed if not errors else 0.0, "errors": errors}


def loadgen_rate(peer: Any, settings: Settings, reuse: bool, tls: bool) -> dict[str, Any]:
    host, port = peer.submission_address if tls and peer.name == "hardmail" else peer.address
    auth = (USER, PASSWORD) if tls and peer.name != "postfix" else None
    plan = LoadPlan(host, port, sender=USER if auth else SENDER, recipient=USER, sessions=settings.sessions,
                    messages=settings.messages, size=settings.size, reuse=reuse, starttls=tls, auth=auth)
    result = run_load_sync(plan)
    return {"sent": result.sent, "elapsed": result.elapsed, "rate": result.rate, "errors": dict(result.errors),
            "setup_errors": result.setup_errors}


def measure(workload: str, peer: Any, settings: Settings, workdir: Path, group: ProcessGroup) -> dict[str, Any]:
    reuse = "-d" in workload or "reuse" in workload
    if workload.startswith("smtp-source"):
        return smtp_source_rate(peer, settings, reuse, workdir, group)
    return loadgen_rate(peer, settings, reuse, tls=workload.endswith("TLS"))


def settle(peer: Any) -> None:
    """Let a peer finish background work (Postfix's queue manager) before the next measurement."""
    if isinstance(peer, PostfixPeer):
        deadline = time.monotonic() + 60
        while not peer.queue_dirs_empty() and time.monotonic() < deadline:
            time.sleep(0.1)  # bounded by the deadline
        peer.note_workers()


def run_rounds(settings: Settings, peers: dict[str, Any], workdir: Path, group: ProcessGroup,
               log: Callable[[str], None]) -> list[dict[str, Any]]:
    workloads = [w for w in PLAIN_WORKLOADS if settings.smtp_source or not w.startswith("smtp-source")]
    workloads += list(TLS_WORKLOADS) if settings.tls else []
    runs = []
    for round_number in range(1, settings.rounds + 1):
        for workload in workloads:
            for name, peer in peers.items():
                result = measure(workload, peer, settings, workdir, group)
                settle(peer)
                runs.append({"round": round_number, "workload": workload, "server": name, **result})
                log(f"round {round_number} {workload:<20} {name:<9} {result['rate']:8.0f} msg/s"
                    f"  errors={result['errors'] or 0}")
    return runs


def summarize(runs: list[dict[str, Any]], servers: tuple[str, ...]) -> dict[str, dict[str, float]]:
    summary: dict[str, dict[str, float]] = {}
    for run in runs:
        summary.setdefault(run["workload"], {})
    for workload, cell in summary.items():
        for server in servers:
            cell[server] = median([r["rate"] for r in runs if r["workload"] == workload and r["server"] == server])
        for peer in ("postfix", "aiosmtpd"):
            if peer in servers and "hardmail" in servers and cell[peer]:
                cell[f"hardmail/{peer}"] = cell["hardmail"] / cell[peer]
    return summary


def tables(summary: dict[str, dict[str, float]], servers: tuple[str, ...]) -> str:
    ratios = [f"hardmail/{p}" for p in ("postfix", "aiosmtpd") if p in servers and "hardmail" in servers]
    header = ["workload", *(f"{s} msg/s" for s in servers), *ratios]
    parts = []
    for title, names in (("Plain SMTP (MX)", PLAIN_WORKLOADS), ("STARTTLS (+ AUTH where offered)", TLS_WORKLOADS)):
        rows = [[w, *(f"{summary[w][s]:.0f}" for s in servers), *(f"{summary[w].get(r, 0):.2f}x" for r in ratios)]
                for w in names if w in summary]
        if rows:
            parts.append(f"**{title}**\n\n" + markdown_table(header, rows))
    return "\n\n".join(parts)


def write_outputs(settings: Settings, runs: list[dict[str, Any]], extra: dict[str, Any]) -> str:
    summary = summarize(runs, settings.servers)
    facts = machine_facts()
    text = f"{facts_line(facts)}\n\n{tables(summary, settings.servers)}\n"
    params = {k: v for k, v in vars(settings).items() if k != "out"}
    write_json(settings.out / "smtp_throughput.json",
               {"machine": facts, "params": params, "summary": summary, "runs": runs, **extra})
    (settings.out / "smtp_throughput.md").write_text(text)
    bar_plot(settings.out / "smtp_throughput.png",
             f"Median messages/s, {settings.sessions} sessions, {settings.size}-byte body, "
             f"{settings.rounds} rounds ({facts['cores']} cores)",
             list(summary), {s: [summary[w][s] for w in summary] for s in settings.servers}, "messages / s")
    return text


def parse_args(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(description="SMTP throughput of hardmail, Postfix and aiosmtpd on loopback")
    parser.add_argument("--sessions", type=int, default=20, help="concurrent sessions (smtp-source -s)")
    parser.add_argument("--messages", type=int, default=2000, help="messages per measurement (smtp-source -m)")
    parser.add_argument("--size", type=int, default=512, help="body bytes (smtp-source -l)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of alternation (the median is reported)")
    parser.add_argument("--servers", default=",".join(ALL_SERVERS),
                        help="comma-separated subset of " + ",".join(ALL_SERVERS))
    parser.add_argument("--no-tls", action="store_true", help="skip the STARTTLS table")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results", help="where results go")
    args = parser.parse_args(argv)
    servers = tuple(s.strip() for s in args.servers.split(",") if s.strip())
    if unknown := set(servers) - set(ALL_SERVERS):
        parser.error(f"unknown server(s) {', '.join(sorted(unknown))}; choose from {', '.join(ALL_SERVERS)}")
    return Settings(args.sessions, args.messages, args.size, args.rounds, servers, not args.no_tls,
                    Path(SMTP_SOURCE).exists(), args.out)


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    if "postfix" in settings.servers and not Path("/usr/lib/postfix/sbin/master").exists():
        print("Postfix is not installed: run bench/setup.sh first (or leave postfix out of --servers)",
              file=sys.stderr)
        return 1
    group = ProcessGroup()
    workdir = Path(tempfile.mkdtemp(prefix="hardmail-bench-"))
    try:
        peers = start_peers(settings, workdir, group)
        before = peers["hardmail"].delivered() if "hardmail" in peers else 0
        runs = run_rounds(settings, peers, workdir, group, lambda line: print(line, file=sys.stderr, flush=True))
        extra = {}
        if "hardmail" in peers:
            extra["hardmail_stored"] = peers["hardmail"].delivered() - before
            extra["hardmail_accepted"] = sum(r["sent"] for r in runs if r["server"] == "hardmail")
        print(write_outputs(settings, runs, extra))
        failed = any(r["errors"] for r in runs) or extra.get("hardmail_stored") != extra.get("hardmail_accepted")
        return 1 if failed else 0
    finally:
        group.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
