"""Backup and restore time of a data directory of 10,000 messages: ``hardmail backup create`` (full)
against ``tar --zstd -cf`` of the same directory, in the same run, rounds alternating; an
incremental backup after 100 new messages against the full one; ``hardmail backup restore``
against ``tar --zstd -xf``.

    .venv/bin/python bench/backup.py                            # 10,000 messages, 3 rounds
    .venv/bin/python bench/backup.py --messages 500 --rounds 1  # a quick look

The messages (a cache under ``--cache``, made once per count) are Maildir files of a mix an
ordinary mailbox holds: 60 % plain text of 2-10 KB, 30 % HTML-like text of 20-80 KB, 10 % with a
base64 attachment of 100-800 KB of random bytes (compressed files do not compress again); about
63 KB each on average. They go into ten accounts (80 % INBOX, 20 % Archive) of a data directory
made with the real CLI (``hardmail domain add``, ``account add``), and ``hardmail mailbox reindex``
builds each account's index, as for mail copied in from another server. No server runs: the
timings are the archive work alone.

Each round: the full backup by both (hardmail's default, which verifies the new archive before it
counts, and ``--no-verify`` when the checkout has it; tar does no verification), 100 new messages
(files + reindex) and ``hardmail backup create --incremental``, then both restores into new
directories (hardmail fsyncs every file it restores; tar does not, so ``tar -xf`` + ``sync`` is
shown as well). Targets (issue 13): full backup within 1.5x of tar; incremental under 10 % of the
full. Installs nothing: ``tar`` (GNU, with ``--zstd``) and ``zstd`` come with the system.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w
from report import facts_line, machine_facts, markdown_table, write_json

HARDMAIL = Path(sys.executable).with_name("hardmail")
DOMAIN = "bench.test"
PASSWORD = "seven copper lanterns 5528 drift"
ACCOUNTS = 10
BASE_TIME = 1_780_000_000
FULL_TARGET = 1.5
INCREMENTAL_TARGET = 0.10
_WORDS = [
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not",
    "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "they", "you", "were",
    "her", "she", "there", "been", "one", "all", "we", "their", "has", "would", "when", "if", "so", "no",
    "what", "up", "out", "more", "will", "backup", "mail", "server", "message", "invoice", "meeting",
    "project", "report", "attached", "please", "regards", "thanks", "tomorrow", "schedule", "budget",
    "review", "draft", "minutes", "agenda", "customer", "order", "delivery", "account", "quarter", "figures",
]


# --- the messages ----------------------------------------------------------------------------

def _text_pool(rng: random.Random, size: int = 1 << 20) -> str:
    words, length = [], 0
    while length < size:
        line = " ".join(rng.choices(_WORDS, k=rng.randint(8, 14)))
        words.append(line.capitalize() + ".")
        length += len(line) + 3
    return "\r\n".join(words) + "\r\n"


def _message(n: int, rng: random.Random, pool: str) -> bytes:
    head = (f"From: Sender {n % 97} <sender{n % 97}@example.org>\r\nTo: user@{DOMAIN}\r\n"
            f"Subject: Message {n} about {rng.choice(_WORDS)}\r\nDate: Mon, 02 Nov 2026 10:{n % 60:02d}:00 +0000\r\n"
            f"Message-ID: <b{n}@example.org>\r\nMIME-Version: 1.0\r\n")
    kind = rng.random()
    size = rng.randint(2_000, 10_000) if kind < 0.6 else rng.randint(20_000, 80_000)
    start = rng.randrange(0, len(pool) - size)
    text = pool[start:start + size]
    text = text[text.find("\r\n") + 2:] if "\r\n" in text else text
    if kind < 0.9:
        subtype = "plain" if kind < 0.6 else "html"
        return (head + f"Content-Type: text/{subtype}; charset=us-ascii\r\n\r\n" + text + "\r\n").encode()
    blob = base64.encodebytes(rng.randbytes(rng.randint(100_000, 800_000))).replace(b"\n", b"\r\n")
    return (head + 'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n'
            + text[:2000] + "\r\n--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            ).encode() + blob + b"--b--\r\n"


def _flags(n: int) -> str:
    return "".join(flag for flag, on in (("F", n % 10 == 0), ("S", n % 3 != 0)) if on)


def generate(cache: Path, count: int, first: int = 0) -> list[Path]:
    """``count`` message files (named as Maildir cur/ files), made once and kept in ``cache``."""
    directory = cache / f"messages-{first}-{count}"
    if not (directory / "complete").exists():
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        rng = random.Random(first)
        pool = _text_pool(rng)
        for n in range(first, first + count):
            data = _message(n, rng, pool)
            (directory / f"{BASE_TIME + n}.M{n}P1.bench,S={len(data)}:2,{_flags(n)}").write_bytes(data)
        (directory / "complete").write_text(str(count))
    return sorted(p for p in directory.iterdir() if p.name != "complete")


# --- the data directory ------------------------------------------------------------------------

def _run(argv: list[str], what: str) -> float:
    """Run ``argv`` to its end; its wall-clock seconds. Raises with its output when it fails."""
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=3600, check=False)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return seconds


def _hardmail(config: Path, *args: str) -> list[str]:
    return [str(HARDMAIL), *args, "--config", str(config)]


def _user(index: int) -> str:
    return f"user{index}@{DOMAIN}"


def _maildir(data_dir: Path, index: int, folder: str = "") -> Path:
    return data_dir / "mail" / DOMAIN / f"user{index}" / (f".{folder}" if folder else "")


def _write_config(root: Path) -> Path:
    config = root / "hardmail.toml"
    config.write_text(tomli_w.dumps({"server": {"hostname": "backup.bench.invalid", "data_dir": str(root / "data")},
                                     "auth": {"argon2": {"time_cost": 1, "memory_cost": 8192}}}))
    return config


def _fill(config: Path, data_dir: Path, messages: list[Path]) -> None:
    _run(_hardmail(config, "domain", "add", DOMAIN), "domain add")
    for index in range(ACCOUNTS):
        subprocess.run(_hardmail(config, "account", "add", _user(index), "--password-stdin"), input=PASSWORD + "\n",
                       capture_output=True, text=True, check=True, timeout=120)
    for n, source in enumerate(messages):
        folder = "Archive" if (n // ACCOUNTS) % 5 == 4 else ""
        target = _maildir(data_dir, n % ACCOUNTS, folder) / "cur"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / source.name)
    for index in range(ACCOUNTS):
        _run(_hardmail(config, "mailbox", "reindex", _user(index)), f"mailbox reindex {_user(index)}")


def prepare(root: Path, cache: Path, messages: list[Path]) -> Path:
    """A data directory with ACCOUNTS accounts holding ``messages``, indexed (made once under
    ``cache``, copied for each run); the config file that names it."""
    made = cache / f"data-dir-{len(messages)}"
    if not (made / "complete").exists():
        shutil.rmtree(made, ignore_errors=True)
        made.mkdir(parents=True)
        _fill(_write_config(made), made / "data", messages)
        (made / "complete").write_text("")
    shutil.copytree(made / "data", root / "data", copy_function=shutil.copy2)
    return _write_config(root)


def add_new_messages(config: Path, data_dir: Path, messages: list[Path]) -> None:
    """New mail for user0 (``new/``), then its index brought up to date."""
    target = _maildir(data_dir, 0) / "new"
    for source in messages:
        shutil.copy2(source, target / source.name.partition(":2,")[0])
    _run(_hardmail(config, "mailbox", "reindex", _user(0)), "mailbox reindex")


def tree_summary(directory: Path) -> tuple[int, int]:
    """(message files, their bytes) under ``directory``/mail."""
    files = [p for p in (directory / "mail").rglob("*") if p.is_file() and p.parent.name in ("cur", "new")]
    return len(files), sum(p.stat().st_size for p in files)


def read_everything(directory: Path) -> None:
    """Read every file once, so that the first timed reader does not pay for a cold page cache alone."""
    for path in directory.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                while handle.read(1 << 20):
                    pass


# --- one round ---------------------------------------------------------------------------------

def _has_option(config: Path, command: str, option: str) -> bool:
    done = subprocess.run([str(HARDMAIL), "backup", command, "--help"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}, timeout=120, check=False)
    return option in done.stdout


def _newest_archive(directory: Path) -> Path:
    archives = sorted(p for p in directory.iterdir() if p.name.endswith(".tar.zst"))
    if not archives:
        raise RuntimeError(f"no archive was written into {directory}")
    return archives[-1]


def _linked_copy(source: Path, target: Path) -> None:
    """``source``'s archives and records in ``target`` as hard links (archives never change)."""
    target.mkdir(parents=True)
    for path in source.iterdir():
        if path.is_file() and path.name.startswith("hardmail-"):
            os.link(path, target / path.name)


class Round:
    """One round: each measurement of the round's data, hardmail and tar in alternating order.
    ``times``: wall-clock seconds of each command; ``inner``: for hardmail, the seconds the
    command itself reports (``--json``), i.e. without the interpreter's start-up."""

    def __init__(self, plan: argparse.Namespace, config: Path, data_dir: Path, work: Path, number: int) -> None:
        self.plan, self.config, self.data_dir, self.number = plan, config, data_dir, number
        self.work = work / f"round-{number}"
        self.times: dict[str, float] = {}
        self.inner: dict[str, float] = {}
        self.checks: dict[str, Any] = {}

    def _hardmail(self, name: str, *args: str, config: bool = True) -> Callable[[], float]:
        argv = _hardmail(self.config, *args, "--json") if config else [str(HARDMAIL), *args, "--json"]

        def measure() -> float:
            started = time.monotonic()
            done = subprocess.run(argv, capture_output=True, text=True, timeout=3600, check=False)
            seconds = time.monotonic() - started
            if done.returncode != 0:
                raise RuntimeError(f"hardmail {' '.join(args)} failed ({done.returncode}): "
                                   f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
            self.inner[name] = float(json.loads(done.stdout)["seconds"])
            return seconds

        return measure

    def _pair(self, first: tuple[str, Callable[[], float]], second: tuple[str, Callable[[], float]]) -> None:
        """Both measurements, in the order of the round (A B, then B A), so neither always goes first."""
        order = [first, second] if self.number % 2 else [second, first]
        for name, measure in order:
            self.times[name] = measure()

    def _create(self, name: str, destination: Path, *options: str) -> None:
        self.times[name] = self._hardmail(name, "backup", "create", self.plan.dest_option, str(destination),
                                          *options)()

    def full(self) -> Path:
        destination, tar_out = self.work / "hardmail", self.work / "tar"
        tar_out.mkdir(parents=True)
        archive = tar_out / "data.tar.zst"
        self._pair(("hardmail full", self._hardmail("hardmail full", "backup", "create", self.plan.dest_option,
                                                    str(destination))),
                   ("tar full", lambda: _run(["tar", "--zstd", "-cf", str(archive), "-C", str(self.data_dir), "."],
                                             "tar -c")))
        self.times["tar full + sync"] = self.times["tar full"] + _run(["sync", str(archive)], "sync")
        if self.plan.no_verify:
            self._create("hardmail full --no-verify", self.work / "hardmail-no-verify", "--no-verify")
        self.checks["archive_bytes"] = {"hardmail": _newest_archive(destination).stat().st_size,
                                        "tar": archive.stat().st_size}
        return _newest_archive(destination)

    def incremental(self, new: list[Path]) -> None:
        """The new messages, then an incremental backup after the full one, as made by default and
        (into a linked copy of the same directory) with --no-verify."""
        add_new_messages(self.config, self.data_dir, new)
        destination = self.work / "hardmail"
        if self.plan.no_verify:
            _linked_copy(destination, self.work / "hardmail-incremental-no-verify")
            self._create("hardmail incremental --no-verify", self.work / "hardmail-incremental-no-verify",
                         "--incremental", "--no-verify")
        self._create("hardmail incremental", destination, "--incremental")
        self.checks["incremental_bytes"] = _newest_archive(destination).stat().st_size

    def restores(self, full: Path) -> None:
        ours, theirs = self.work / "restored-hardmail", self.work / "restored-tar"
        theirs.mkdir()
        archive = self.work / "tar" / "data.tar.zst"
        self._pair(("hardmail restore", self._hardmail("hardmail restore", "backup", "restore", str(full), "--into",
                                                       str(ours), config=False)),
                   ("tar restore", lambda: _run(["tar", "--zstd", "-xf", str(archive), "-C", str(theirs)], "tar -x")))
        self.times["tar restore + sync"] = self.times["tar restore"] + _run(["sync", "-f", str(theirs)], "sync -f")
        self.checks["restored"] = {"hardmail": tree_summary(ours), "tar": tree_summary(theirs)}

    def run(self, new: list[Path]) -> dict[str, Any]:
        self.work.mkdir(parents=True)
        try:
            self.checks["source"] = tree_summary(self.data_dir)
            full = self.full()
            self.restores(full)
            self.incremental(new)
        finally:
            shutil.rmtree(self.work, ignore_errors=True)
        return {"round": self.number, "seconds": {k: round(v, 3) for k, v in self.times.items()},
                "inner_seconds": {k: round(v, 3) for k, v in self.inner.items()}, **self.checks}


# --- report ------------------------------------------------------------------------------------

def _medians(runs: list[dict[str, Any]], key: str) -> dict[str, float]:
    names = sorted({name for run in runs for name in run[key]})
    return {name: statistics.median(run[key][name] for run in runs if name in run[key]) for name in names}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    wall, inner = _medians(runs, "seconds"), _medians(runs, "inner_seconds")
    ratios: dict[str, float] = {}
    for label, ours, theirs in (("full", "hardmail full", "tar full"),
                                ("full --no-verify", "hardmail full --no-verify", "tar full"),
                                ("restore", "hardmail restore", "tar restore"),
                                ("incremental/full", "hardmail incremental", "hardmail full"),
                                ("incremental/full --no-verify", "hardmail incremental --no-verify",
                                 "hardmail full --no-verify")):
        if ours in wall and theirs in wall:
            ratios[label] = wall[ours] / wall[theirs]
            inner_theirs = inner.get(theirs, wall[theirs])
            if ours in inner:
                ratios[label + " (without start-up)"] = inner[ours] / inner_theirs
    targets = {name: value <= FULL_TARGET if name.startswith("full") else value < INCREMENTAL_TARGET
               for name, value in ratios.items() if not name.startswith("restore")}
    return {"median_seconds": wall, "median_inner_seconds": inner, "targets": targets,
            "ratios": {k: round(v, 3) for k, v in ratios.items()}}


def markdown(result: dict[str, Any], facts: dict[str, Any]) -> str:
    summary = result["summary"]
    wall, inner, ratios = summary["median_seconds"], summary["median_inner_seconds"], summary["ratios"]

    def cell(values: dict[str, float], name: str) -> str:
        return f"{values[name]:.2f}" if name in values else ""

    def ratio(name: str, suffix: str = "x") -> str:
        if name not in ratios:
            return ""
        return f"{ratios[name]:.1%}" if suffix == "%" else f"{ratios[name]:.2f}x"

    rows = []
    for label, ours, theirs, key, suffix in (
            ("full backup (verified, the default)", "hardmail full", "tar full", "full", "x"),
            ("full backup --no-verify", "hardmail full --no-verify", "tar full", "full --no-verify", "x"),
            ("restore of the full backup", "hardmail restore", "tar restore", "restore", "x"),
            (f"incremental after {result['new_messages']} new messages, of the full", "hardmail incremental",
             "", "incremental/full", "%"),
            ("incremental --no-verify, of the full --no-verify", "hardmail incremental --no-verify", "",
             "incremental/full --no-verify", "%")):
        if ours in wall:
            rows.append([label, cell(wall, ours), cell(inner, ours), cell(wall, theirs), ratio(key, suffix),
                         ratio(key + " (without start-up)", suffix)])
    table = markdown_table(["operation", "hardmail (s)", "hardmail without start-up (s)", "tar --zstd (s)",
                            "ratio", "ratio without start-up"], rows)
    targets = "; ".join(f"{name}: {'yes' if held else 'NO'}" for name, held in summary["targets"].items())
    source = result["runs"][0]["source"]
    durable = (f"tar does not fsync: `tar -c` + `sync` of the archive {wall['tar full + sync']:.2f} s, `tar -x` + "
               f"`sync -f` {wall['tar restore + sync']:.2f} s (hardmail fsyncs the archive and every restored file).")
    return (f"{facts_line(facts)}\n\n{source[0]:,} messages ({source[1] / 1e6:.0f} MB) in {ACCOUNTS} accounts, "
            f"median of {len(result['runs'])} round(s). Every hardmail command also pays the interpreter's start-up "
            f"(`hardmail --version`: {result['startup_seconds']:.2f} s); \"without start-up\" is the time the "
            f"command itself reports. Targets: full within {FULL_TARGET}x of tar, incremental under "
            f"{INCREMENTAL_TARGET:.0%} of the full.\n\n{table}\n\n{durable}\n\nTargets held: {targets}.")


def _check(runs: list[dict[str, Any]]) -> list[str]:
    problems = []
    for run in runs:
        ours, theirs = run["restored"]["hardmail"], run["restored"]["tar"]
        if ours != theirs or ours != run["source"]:
            problems.append(f"round {run['round']}: restored {ours} (hardmail) and {theirs} (tar), "
                            f"source {run['source']} (messages, bytes)")
    return problems


def _bench(plan: argparse.Namespace) -> dict[str, Any]:
    base = generate(plan.cache, plan.messages)
    work = Path(tempfile.mkdtemp(prefix="backup-bench-", dir=plan.work))
    try:
        config = prepare(work / "server", plan.cache, base)
        data_dir = work / "server" / "data"
        plan.no_verify = _has_option(config, "create", "--no-verify")
        read_everything(data_dir)
        startup = _run([str(HARDMAIL), "--version"], "hardmail --version")
        runs = []
        for number in range(1, plan.rounds + 1):
            new = generate(plan.cache, plan.new, first=plan.messages + number * plan.new)
            runs.append(Round(plan, config, data_dir, work, number).run(new))
            print(runs[-1], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"runs": runs, "messages": plan.messages, "new_messages": plan.new, "startup_seconds": startup}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--new", type=int, default=100, help="new messages before the incremental backup")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dest-option", default="--to", help="the destination option of backup create")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "hardmail-bench-backup")
    parser.add_argument("--work", type=Path, default=None, help="where the data directory and archives go (/tmp)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    plan = parser.parse_args()
    if shutil.which("tar") is None or shutil.which("zstd") is None:
        print("tar and zstd are needed (apt-get install tar zstd)", file=sys.stderr)
        return 2
    result = _bench(plan)
    result["summary"] = summarise(result["runs"])
    result["facts"] = facts = machine_facts()
    write_json(plan.out / "backup.json", result)
    text = markdown(result, facts)
    (plan.out / "backup.md").write_text(text + "\n")
    print(text)
    problems = _check(result["runs"])
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
