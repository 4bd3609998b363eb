"""``hardmail dkim`` and ``hardmail dns``: keys on disk, printed records, and the DNS check."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from hardmail.admin.cli import app
from hardmail.msgauth.dkim_keys import DomainKeys
from hardmail.msgauth.dnsadvice import advise
from support.dns_server import LoopbackDnsServer

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_generate_rotate_show(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    code, out = _run("dkim", "generate", "Example.ORG", "-d", data)
    assert code == 0, out
    assert re.search(r"hm\d{8}r\._domainkey\.example\.org\.\s+3600\s+IN\s+TXT\s+\"v=DKIM1; k=rsa; p=", out)
    assert "k=ed25519" in out
    assert _run("dkim", "generate", "example.org", "-d", data)[0] == 1
    code, out = _run("dkim", "rotate", "example.org", "-d", data)
    assert code == 0 and "Publish" in out
    code, out = _run("dkim", "show", "example.org", "-d", data)
    assert code == 0 and ": active" in out and ": pending" in out
    code, out = _run("dkim", "rotate", "nokeys.example", "-d", data)
    assert code == 1 and "dkim generate nokeys.example" in out


def test_dns_prints_every_record_kind(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    _run("dkim", "generate", "example.org", "-d", data)
    code, out = _run("dns", "example.org", "-d", data)
    assert code == 0, out
    assert re.search(r"example\.org\.\s+3600\s+IN\s+MX\s+10 localhost\.", out)
    for needle in ('"v=spf1 mx -all"', "_dmarc.example.org.", "_mta-sts.example.org.",
                   "_smtp._tls.example.org.", "_submissions._tcp.example.org.", "autoconfig.example.org.",
                   "version: STSv1", "mode: enforce", "k=ed25519"):
        assert needle in out, needle
    assert _run("dns", "nonsense", "example.org", "-d", data)[0] == 2


def _zone_from(advice: list, skip: str = "") -> dict[tuple[str, str], list[str]]:
    zone: dict[tuple[str, str], list[str]] = {}
    for item in advice:
        if item.name != skip:
            zone.setdefault((item.name, item.rtype), []).append(item.value)
    return zone


def test_dns_check_reports_ok_missing_and_wrong(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _run("dkim", "generate", "example.org", "-d", str(data))
    keys = DomainKeys(data, "example.org")
    advice = advise("example.org", "localhost", [r for g in keys.generations() for r in keys.public_records(g)])
    zone = _zone_from(advice, skip="_dmarc.example.org")
    zone[("example.org", "MX")] = ["10 elsewhere.example."]
    with LoopbackDnsServer(zone) as server:
        config = tmp_path / "hardmail.toml"
        config.write_text(f'[server]\ndata_dir = "{data}"\n[dns]\nnameservers = ["127.0.0.1"]\nport = {server.port}\n')
        code, out = _run("dns", "check", "example.org", "-c", str(config))
        assert code == 1, out
        assert re.search(r"missing\s+TXT\s+_dmarc\.example\.org", out)
        assert re.search(r"wrong\s+MX\s+example\.org", out)
        assert re.search(r"ok\s+TXT\s+hm\d{8}e\._domainkey\.example\.org", out)
        assert "2 record(s) missing or wrong" in out
    with LoopbackDnsServer(_zone_from(advice)) as server:
        config.write_text(f'[server]\ndata_dir = "{data}"\n[dns]\nnameservers = ["127.0.0.1"]\nport = {server.port}\n')
        code, out = _run("dns", "check", "example.org", "-c", str(config))
        assert code == 0, out
        assert "every record is published as advised" in out
