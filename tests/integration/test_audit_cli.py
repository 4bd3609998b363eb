"""`hardmail audit` end to end, as an admin runs it, against a real `hardmail serve` on loopback with
a loopback DNS server as its resolver ([dns] in the configuration).

Most tests replace the check catalog in the audit's process by a spy (a sitecustomize on its
PYTHONPATH): a probe module that records what it was given (listeners, probe account, source
addresses, resolver), logs in over IMAPS with the probe account and reports a finding, and a
module that crashes. One test runs the real catalog, whatever modules it has."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from hardmail.config.load import load_config
from hardmail.ops.audit.catalog import all_checks
from support.cli_process import LoggedServe, cli_env, run_cli, seed_account, serving
from support.dns_server import LoopbackDnsServer
from support.live import ALICE, ALICE_PASSWORD, EPHEMERAL_LISTEN
from support.msgauth_dns import txt_value

SPY = '''
import json, os
from hardmail.ops.audit import catalog
from hardmail.ops.audit.findings import CheckInfo, Severity
from hardmail.server.probe_link import ProbeLink, insecure_client_context

SEEN = CheckInfo("spy.seen", 14, "Spy", "Because <b>it matters</b>.", "fix it")
CRASH = CheckInfo("spy.crash", 14, "Crash", "It crashes.", "nothing")


async def spy(ctx):
    out = {"targets": [[t.kind, t.host, t.port] for t in ctx.targets], "running": ctx.running,
           "own_server": ctx.own_server, "store": ctx.store is not None, "local_domain": ctx.local_domain,
           "source_ips": list(ctx.source_ips), "login": None}
    if ctx.login is not None:
        out["login"] = [ctx.login.address, ctx.login.foreign_address]
        out["password"] = ctx.login.password
        out["account_exists"] = ctx.store is not None and await ctx.store.get_account(ctx.login.address) is not None
        for t in ctx.targets_of("imaps"):
            async with await ProbeLink.open(t.host, t.port, timeout=ctx.timeout, tls=insecure_client_context()) as link:
                await link.read_line()
                await link.send(f'a1 LOGIN "{ctx.login.address}" "{ctx.login.password}"\\r\\n'.encode())
                out["imap_login"] = (await link.read_line() or b"").decode().strip()
    out["dns"] = (await ctx.resolver.resolve("spy.example.test", "TXT")).texts()
    with open(os.environ["AUDIT_SPY_OUT"], "w") as f:
        json.dump(out, f)
    severity = Severity(os.environ.get("AUDIT_SPY_SEVERITY", "high"))
    return [SEEN.finding(severity, "saw <script>alert(1)</script>", target=t.label) for t in ctx.targets[:1]]


async def crash(ctx):
    return [1 / 0]


catalog.check_modules = lambda: [catalog.CheckModule("probe_spy", True, (SEEN,), spy),
                                 catalog.CheckModule("checks_crash", False, (CRASH,), crash)]
'''


@pytest.fixture
def dns() -> Any:
    with LoopbackDnsServer({("spy.example.test", "TXT"): [txt_value("resolved through [dns]")]}) as server:
        yield server


@pytest.fixture
def config_file(tmp_path: Path, dns: LoopbackDnsServer) -> Path:
    raw = {"server": {"hostname": "mail.example.test", "data_dir": str(tmp_path / "data")},
           "listen": dict(EPHEMERAL_LISTEN), "logging": {"format": "json"},
           "auth": {"argon2": {"time_cost": 1, "memory_cost": 8192}},
           "inbound": {"enabled": False}, "antispam": {"enabled": False}, "queue": {"run_delivery": False},
           "dns": {"nameservers": ["127.0.0.1"], "port": dns.port, "timeout": 5.0},
           "audit": {"enabled": False, "probe_timeout": 5.0}, "backup": {"enabled": False}}
    path = tmp_path / "hardmail.toml"
    path.write_text(tomli_w.dumps(raw))
    seed_account(load_config(path), ALICE, ALICE_PASSWORD)
    return path


def spy_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    spy_dir = tmp_path / "spy"
    spy_dir.mkdir(exist_ok=True)
    (spy_dir / "sitecustomize.py").write_text(SPY)
    return cli_env(PYTHONPATH=str(spy_dir), AUDIT_SPY_OUT=str(tmp_path / "spy.json"), **extra)


def audit(tmp_path: Path, config: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return run_cli("audit", *args, "--config", str(config), cwd=tmp_path, env=env)


def accounts(tmp_path: Path, config: Path) -> list[str]:
    listed = run_cli("account", "list", "--json", "--config", str(config), cwd=tmp_path)
    return [row["address"] for row in json.loads(listed.stdout)]


def test_the_own_servers_audit_with_its_probe_account_reports_and_history(tmp_path: Path, config_file: Path) -> None:
    html = tmp_path / "report.html"
    with serving("--config", str(config_file), cwd=tmp_path, env=cli_env()):
        first = audit(tmp_path, config_file, "--json", "--html", str(html), env=spy_env(tmp_path))
        seen = json.loads((tmp_path / "spy.json").read_text())
        assert accounts(tmp_path, config_file) == [ALICE]  # the probe account is gone
        second = audit(tmp_path, config_file, "--json", env=spy_env(tmp_path, AUDIT_SPY_SEVERITY="ok"))
    assert first.returncode == 1, first.stderr
    report = json.loads(first.stdout)  # standard output is the JSON report and nothing else
    by_id = {f["check"]: f for f in report["findings"]}
    assert by_id["spy.seen"]["severity"] == "high" and by_id["spy.seen"]["target"].startswith("127.0.0.1:")
    crashed = by_id["spy.crash"]
    assert (crashed["severity"], crashed["evidence"]) == ("medium", "check failed: ZeroDivisionError")
    assert "Traceback" not in first.stdout + first.stderr
    assert (report["target"], report["score"], report["exit_status"]) == ("own", 86, 1)

    assert sorted(kind for kind, _, _ in seen["targets"]) == sorted(EPHEMERAL_LISTEN)
    assert {host for _, host, _ in seen["targets"]} == {"127.0.0.1"}
    assert (seen["running"], seen["own_server"], seen["store"]) == (True, True, True)
    assert seen["local_domain"] == "example.test"
    address, foreign = seen["login"]
    assert address.startswith("audit-probe-") and address.endswith("@example.test")
    assert foreign == "postmaster@example.test"
    assert seen["account_exists"] and seen["imap_login"].startswith("a1 OK")
    assert seen["source_ips"] == ["127.0.0.1", "127.0.0.2"]
    assert seen["dns"] == ["resolved through [dns]"]
    page = html.read_text()
    assert html.stat().st_mode & 0o077 == 0  # the report names the weaknesses: the owner's only
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    assert len(seen["password"]) >= 43 and seen["password"] not in first.stdout + first.stderr + page

    assert second.returncode == 0, second.stderr
    history = run_cli("audit", "history", "--json", "--config", str(config_file), cwd=tmp_path)
    runs = json.loads(history.stdout)["runs"]
    assert [(r["target"], r["trigger"], r["score"]) for r in runs] == [("own", "cli", 96), ("own", "cli", 86)]
    assert [f["check"] for f in runs[0]["changes"]["resolved"]] == ["spy.seen"]
    assert runs[0]["changes"]["new"] == [] and runs[1]["changes"] is None
    text = run_cli("audit", "history", "--config", str(config_file), cwd=tmp_path).stdout
    assert "1 resolved" in text and "resolved  high" in text


def test_a_target_run_probes_the_named_listener_only_and_is_kept_under_its_label(
        tmp_path: Path, config_file: Path) -> None:
    with serving("--config", str(config_file), cwd=tmp_path, env=cli_env()) as server:
        seen_own = audit(tmp_path, config_file, "--json", "--no-record", env=spy_env(tmp_path))
        own = json.loads((tmp_path / "spy.json").read_text())
        [(_, host, port)] = [t for t in own["targets"] if t[0] == "smtp"]
        label = f"{host}:{port}"
        run = audit(tmp_path, config_file, "--target", label, "--json", env=spy_env(tmp_path))
        seen = json.loads((tmp_path / "spy.json").read_text())
    assert seen_own.returncode == 1 and server.pid
    assert run.returncode == 1, run.stderr
    assert json.loads(run.stdout)["target"] == label
    assert seen["targets"] == [["smtp", host, port]]
    assert (seen["own_server"], seen["store"], seen["login"]) == (False, False, None)
    assert [f["check"] for f in json.loads(run.stdout)["findings"]] == ["spy.seen"]  # only probe modules
    history = json.loads(run_cli("audit", "history", "--json", "--target", label, "--config", str(config_file),
                                 cwd=tmp_path).stdout)["runs"]
    assert [r["target"] for r in history] == [label]


def test_an_existing_login_instead_of_a_probe_account(tmp_path: Path, config_file: Path) -> None:
    with serving("--config", str(config_file), cwd=tmp_path, env=cli_env()):
        result = audit(tmp_path, config_file, "--json", "--no-record", "--login", ALICE,
                       env=spy_env(tmp_path, HARDMAIL_AUDIT_PASSWORD=ALICE_PASSWORD))
        assert accounts(tmp_path, config_file) == [ALICE]
    assert result.returncode == 1, result.stderr
    assert (tmp_path / "spy.json").exists(), result.stdout + result.stderr
    seen = json.loads((tmp_path / "spy.json").read_text())
    assert seen["login"] == [ALICE, "postmaster@example.test"] and seen["imap_login"].startswith("a1 OK")
    assert ALICE_PASSWORD not in result.stdout + result.stderr


def test_usage_errors_say_what_to_do(tmp_path: Path, config_file: Path) -> None:
    refused = audit(tmp_path, config_file, "--target", "192.0.2.25:25", "--no-record")
    assert refused.returncode == 2
    assert "not a loopback address" in refused.stderr and "--i-own-this-server" in refused.stderr
    unreadable = audit(tmp_path, config_file, "--target", "mail.example.test", "--no-record")
    assert unreadable.returncode == 2 and "HOST:PORT" in unreadable.stderr


def test_without_a_running_server_the_probes_are_not_checked(tmp_path: Path, config_file: Path) -> None:
    result = audit(tmp_path, config_file, "--json", "--no-record", env=spy_env(tmp_path))
    report = json.loads(result.stdout)
    by_id = {f["check"]: f for f in report["findings"]}
    assert by_id["spy.seen"]["severity"] == "info" and "no server is running" in by_id["spy.seen"]["evidence"]
    assert result.returncode == 0 and accounts(tmp_path, config_file) == [ALICE]


def test_the_real_catalog_reports_every_check_and_leaves_no_probe_account(tmp_path: Path, config_file: Path) -> None:
    with serving("--config", str(config_file), cwd=tmp_path, env=cli_env()):
        result = audit(tmp_path, config_file, "--json", "--no-record", env=cli_env())
        left = accounts(tmp_path, config_file)
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    assert {check.id for check in all_checks()} <= {f["check"] for f in report["findings"]}
    assert [f for f in report["findings"] if f["evidence"].startswith("check failed")] == []
    assert left == [ALICE]


def test_the_server_schedules_the_audit_in_exactly_one_process(tmp_path: Path, config_file: Path) -> None:
    raw = tomllib.loads(config_file.read_text())
    raw["audit"]["enabled"] = True
    raw["server"]["workers"] = 2
    config_file.write_text(tomli_w.dumps(raw))
    server = LoggedServe(config_file)
    seen: list[dict[str, Any]] = []
    try:
        while sum(e.get("event") == "server.start" for e in seen) < 2 or not _named(seen, "audit.scheduler_started"):
            seen.append(server.wait_for_any())
    finally:
        server.stop()
    seen += server.drain()
    [started] = _named(seen, "audit.scheduler_started")
    assert (started["interval_hours"], started["reason"]) == (24.0, "catch-up")  # no run kept yet


def _named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [event for event in events if event.get("event") == name]
