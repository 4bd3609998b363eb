"""AUTH flood benchmark: wrong-password attempts from many loopback addresses while one legitimate
client keeps logging in; prints the legitimate client's AUTH latency (p50/p99) and how many
password hashes each attacking source cost before its ban.

    .venv/bin/python bench/auth_flood.py --sources 20 --rate 50 --duration 20

Each attacking source gets its own /24 inside 127.0.0.0/8 (Linux answers on all of it), so the
subnet rule does not touch the legitimate client at 127.0.0.2. The server runs in this process,
on a thread with its own event loop; clients are threads using smtplib over STARTTLS.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import smtplib
import ssl
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hardmail.admin.service import AdminService
from hardmail.app import RunningServer, start_server
from hardmail.auth.hashing import BoundHasher
from hardmail.auth.pool import CountingHasher, HashPool
from hardmail.auth.verify_cache import enable_verify_cache
from hardmail.config.schema import Config

T = TypeVar("T")
USER = "alice@bench.example"
PASSWORD = "correct horse battery staple 42"
LEGIT_SOURCE = "127.0.0.2"




@dataclass
class Results:
    attacker_codes: Counter[int] = field(default_factory=Counter)
    legit_latencies: list[float] = field(default_factory=list)
    legit_failures: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


class ServerThread:
    def __init__(self, config: Config) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: RunningServer = self.run(start_server(config))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(120)

    def stop(self) -> None:
        self.run(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


def _tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # the bench server is self-signed
    return context


def _plain(password: str) -> str:
    return "PLAIN " + base64.b64encode(f"\0{USER}\0{password}".encode()).decode()


def attempt(address: tuple[str, int], source: str, password: str) -> tuple[int, float]:
    """One connection and one AUTH: (reply code, seconds the AUTH took); 421 at connect is (421, 0)."""
    try:
        client = smtplib.SMTP(*address, timeout=60, source_address=(source, 0))
    except smtplib.SMTPConnectError as refused:
        return refused.smtp_code, 0.0
    except OSError:
        return 0, 0.0
    try:
        client.starttls(context=_tls())
        client.ehlo("bench.example")
        started = time.perf_counter()
        code, _ = client.docmd("AUTH", _plain(password))
        return code, time.perf_counter() - started
    except (smtplib.SMTPException, OSError):
        return 0, 0.0
    finally:
        client.close()


def attacker(address: tuple[str, int], source: str, interval: float, deadline: float, out: Results) -> None:
    n = 0
    while time.monotonic() < deadline:
        started = time.monotonic()
        code, _ = attempt(address, source, f"guess number {n}")
        n += 1
        with out.lock:
            out.attacker_codes[code] += 1
        time.sleep(max(0.0, interval - (time.monotonic() - started)))


def legitimate(address: tuple[str, int], interval: float, deadline: float, out: Results) -> None:
    while time.monotonic() < deadline:
        started = time.monotonic()
        code, seconds = attempt(address, LEGIT_SOURCE, PASSWORD)
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
        with out.lock:
            if code == 235:
                out.legit_latencies.append(seconds)
            else:
                out.legit_failures[str(code)] += 1


def bench_config(data_dir: Path, cheap_hash: bool) -> Config:
    argon2 = {"time_cost": 1, "memory_cost": 8192} if cheap_hash else {}
    return Config.model_validate({
        "server": {"hostname": "bench.example", "data_dir": str(data_dir)},
        "listen": {"smtp": [], "submission": ["127.0.0.1:0"], "submissions": []},
        "auth": {"argon2": argon2},
        "queue": {"run_delivery": False},
    })


@dataclass(frozen=True)
class Plan:
    sources: int = 20
    rate: float = 50.0  # wrong-password attempts per second, all sources together
    duration: float = 20.0
    legit_interval: float = 0.6  # below access.limits.new_connections_per_minute (120)
    cheap_hash: bool = False


def run_bench(plan: Plan) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        config = bench_config(Path(tmp) / "data", plan.cheap_hash)
        server = ServerThread(config)
        try:
            return _flood(server, config, plan)
        finally:
            server.stop()


def _flood(server: ServerThread, config: Config, plan: Plan) -> dict[str, Any]:
    context = server.server.context
    admin = AdminService(context.store, config.auth.argon2)
    server.run(admin.add_domain("bench.example"))
    server.run(admin.add_account(USER, PASSWORD))
    hasher = CountingHasher(BoundHasher(config.auth.argon2))
    context.hash_pool = HashPool(config.auth.argon2, hashing=hasher)
    enable_verify_cache(context.hash_pool, config.access.verify_cache_seconds)
    address = server.server.address("submission")
    attempt(address, LEGIT_SOURCE, PASSWORD)  # the user's address becomes a known one
    warm = hasher.calls
    results, deadline = Results(), time.monotonic() + plan.duration
    threads = [threading.Thread(target=attacker, args=(address, f"127.{1 + i // 250}.{i % 250}.1",
                                                       plan.sources / plan.rate, deadline, results))
               for i in range(plan.sources)]
    threads.append(threading.Thread(target=legitimate, args=(address, plan.legit_interval, deadline, results)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    bans = server.run(context.store.access.list_bans())
    return _summary(results, hasher.calls - warm, len(bans), plan.sources)


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _summary(results: Results, attack_hashes: int, banned: int, sources: int) -> dict[str, Any]:
    latencies = results.legit_latencies
    return {
        "sources": sources,
        "attempts": sum(results.attacker_codes.values()),
        "attacker_replies": {str(code): count for code, count in sorted(results.attacker_codes.items())},
        "banned_sources": banned,
        "hashes_during_attack": attack_hashes,
        "hashes_per_banned_source": round(attack_hashes / banned, 2) if banned else None,
        "legit_logins": len(latencies),
        "legit_failures": dict(results.legit_failures),
        "legit_auth_p50_ms": round(1000 * statistics.median(latencies), 2) if latencies else None,
        "legit_auth_p99_ms": round(1000 * p99, 2) if (p99 := _percentile(latencies, 0.99)) is not None else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sources", type=int, default=20, help="attacking loopback addresses (one per /24)")
    parser.add_argument("--rate", type=float, default=50.0, help="wrong-password attempts per second, in total")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds the flood lasts")
    parser.add_argument("--legit-interval", type=float, default=0.6, help="seconds between the user's logins")
    parser.add_argument("--cheap-hash", action="store_true", help="Argon2id at its lowest cost (smoke runs)")
    args = parser.parse_args()
    for noisy in ("hardmail", "asyncio"):  # one log line per connection would drown the result
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    plan = Plan(args.sources, args.rate, args.duration, args.legit_interval, args.cheap_hash)
    print(json.dumps(run_bench(plan), indent=2))


if __name__ == "__main__":
    main()
