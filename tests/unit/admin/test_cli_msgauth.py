"""``hardmail dkim`` and ``hardmail dns``: keys on disk, printed records, and the DNS check."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hardmail.admin.cli import app
from hardmail.msgauth import dnsadvice
from hardmail.msgauth.dkim_keys import DomainKeys
from hardmail.msgauth.dnsadvice import advise, host_name_problem
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


PUBLIC_HOST = "mail.hardmail-test.net"


def _host(domain: str, *options: str) -> None:
    """A domain hosted here, with DKIM keys: what `hardmail dns` advises records for."""
    assert _run("domain", "add", domain, *options)[0] == 0
    assert _run("dkim", "generate", domain, *options)[0] == 0


def _config(tmp_path: Path, hostname: str, extra: str = "") -> str:
    config = tmp_path / "hardmail.toml"
    config.write_text(f'[server]\ndata_dir = "{tmp_path / "data"}"\nhostname = "{hostname}"\n{extra}')
    return str(config)


def test_dns_prints_the_records_of_what_is_served(tmp_path: Path) -> None:
    config = _config(tmp_path, PUBLIC_HOST)
    _host("example.org", "-c", config)
    code, out = _run("dns", "example.org", "-c", config)
    assert code == 0, out
    assert re.search(r"example\.org\.\s+3600\s+IN\s+MX\s+10 mail\.hardmail-test\.net\.", out)
    for needle in ('"v=spf1 mx -all"', "k=ed25519", "_dmarc.example.org.", "p=quarantine", "_smtp._tls.example.org."):
        assert needle in out, needle
    for pattern in (r'mail\.hardmail-test\.net\.\s+3600\s+IN\s+TXT\s+"v=spf1 a -all"',
                    r"_submissions\._tcp\.example\.org\.\s+3600\s+IN\s+SRV\s+0 1 465 mail\.hardmail-test\.net\.",
                    r"_submission\._tcp\.example\.org\.\s+3600\s+IN\s+SRV\s+0 1 587 mail\.hardmail-test\.net\."):
        assert re.search(pattern, out), pattern
    for absent in ("_imaps", "_imap.", "autoconfig", "autodiscover", "mta-sts", "STSv1", "mode: enforce", "warning"):
        assert absent not in out, absent
    assert _run("dns", "nonsense", "example.org", "-c", config)[0] == 2


def test_dns_advises_srv_only_for_configured_submission_listeners(tmp_path: Path) -> None:
    config = _config(tmp_path, PUBLIC_HOST, "[listen]\nsubmission = []\n")
    _host("example.org", "-c", config)
    code, out = _run("dns", "example.org", "-c", config)
    assert code == 0, out
    assert "_submissions._tcp.example.org." in out and "_submission._tcp" not in out


@pytest.mark.parametrize("hostname", ["localhost", "mailserver", "mail.local", "mx.test", "mail.example",
                                      "mx.invalid", "box.localhost", "192.0.2.25", "mail.corp", "mail.example.org"])
def test_dns_warns_about_a_host_name_that_is_not_public(tmp_path: Path, hostname: str) -> None:
    config = _config(tmp_path, hostname)
    _host("example.org", "-c", config)
    code, out = _run("dns", "example.org", "-c", config)
    text = " ".join(out.split())
    assert code == 0, out
    assert f"warning: the server's host name '{hostname}' is not a public name" in text
    assert "an MX record naming it would be wrong" in text
    # the example name is not one the same check refuses (mail.example.org is reserved)
    assert '[server] hostname = "mail.your-domain.tld"' in text and 'hostname = "mail.example.org"' not in text
    assert not re.search(r"\sIN\s+(MX|SRV)\s", out) and "v=spf1" not in out
    assert "p=none" in out and "p=quarantine" not in out and "enforce" not in out
    assert "k=ed25519" in out and "_smtp._tls.example.org." in out


def _zone_from(advice: list, skip: str = "") -> dict[tuple[str, str], list[str]]:
    zone: dict[tuple[str, str], list[str]] = {}
    for item in advice:
        if item.name != skip:
            zone.setdefault((item.name, item.rtype), []).append(item.value)
    return zone


def test_dns_check_reports_ok_missing_and_wrong(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _host("example.org", "-d", str(data))
    keys = DomainKeys(data, "example.org")
    advice = advise("example.org", PUBLIC_HOST, [r for g in keys.generations() for r in keys.public_records(g)])
    zone = _zone_from(advice, skip="_dmarc.example.org")
    zone[("example.org", "MX")] = ["10 elsewhere.example."]
    with LoopbackDnsServer(zone) as server:
        config = tmp_path / "hardmail.toml"
        config.write_text(f'[server]\ndata_dir = "{data}"\nhostname = "{PUBLIC_HOST}"\n'
                          f'[dns]\nnameservers = ["127.0.0.1"]\nport = {server.port}\n')
        code, out = _run("dns", "check", "example.org", "-c", str(config))
        assert code == 1, out
        assert re.search(r"missing\s+TXT\s+_dmarc\.example\.org", out)
        assert re.search(r"wrong\s+MX\s+example\.org", out)
        assert re.search(r"ok\s+TXT\s+hm\d{8}e\._domainkey\.example\.org", out)
        assert "2 record(s) missing or wrong" in out
    with LoopbackDnsServer(_zone_from(advice)) as server:
        config.write_text(f'[server]\ndata_dir = "{data}"\nhostname = "{PUBLIC_HOST}"\n'
                          f'[dns]\nnameservers = ["127.0.0.1"]\nport = {server.port}\n')
        code, out = _run("dns", "check", "example.org", "-c", str(config))
        assert code == 0, out
        assert "every record is published as advised" in out


def test_dns_check_fails_while_the_host_name_is_not_public(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _host("example.org", "-d", str(data))
    keys = DomainKeys(data, "example.org")
    advice = advise("example.org", "localhost", [r for g in keys.generations() for r in keys.public_records(g)])
    with LoopbackDnsServer(_zone_from(advice)) as server:
        config = tmp_path / "hardmail.toml"
        config.write_text(f'[server]\ndata_dir = "{data}"\n[dns]\nnameservers = ["127.0.0.1"]\nport = {server.port}\n')
        code, out = _run("dns", "check", "example.org", "-c", str(config))
    assert code == 1, out
    assert "is not a public name" in out and "cannot be checked" in out
    assert "every record is published" not in out


@pytest.mark.parametrize(("hostname", "public"), [
    ("mail.example-mail.net", True), ("MX1.Example-Mail.co.uk.", True), ("localhost", False), ("", False),
    ("mail", False), ("x.local", False), ("a.b.test", False), ("mail.example", False), ("m.invalid", False),
    ("m.localhost", False), ("10.0.0.1", False), ("[2001:db8::1]", False), ("2001:db8::1", False),
    ("mail.corp", False), ("mail.lan", False), ("co.uk", False), ("router.home.arpa", False),
    ("mail.example.com", False), ("mail.internal", False),
])
def test_host_name_problem(hostname: str, public: bool) -> None:
    assert (host_name_problem(hostname) is None) is public


def test_the_host_name_warning_suggests_a_public_name_in_the_domain(tmp_path: Path) -> None:
    config = _config(tmp_path, "localhost")
    _host("mydomain.net", "-c", config)
    code, out = _run("dns", "mydomain.net", "-c", config)
    text = " ".join(out.split())
    assert code == 0, out
    assert '[server] hostname = "mail.mydomain.net"' in text and "HARDMAIL_SERVER__HOSTNAME=mail.mydomain.net" in text
    assert dnsadvice.host_name_problem("mail.mydomain.net") is None


@pytest.mark.parametrize("words", [["example.com"], ["check", "example.com"]])
def test_dns_refuses_a_domain_that_is_not_hosted_here(tmp_path: Path, words: list[str]) -> None:
    config = _config(tmp_path, PUBLIC_HOST)
    _host("example.org", "-c", config)
    code, out = _run("dns", *words, "-c", config)
    assert code == 1, out
    assert " ".join(out.split()) == ("error: example.com is not a domain of this server; "
                                     "add it with `hardmail domain add example.com`")


def test_dns_needs_an_initialised_data_directory(tmp_path: Path) -> None:
    config = _config(tmp_path, PUBLIC_HOST)
    code, out = _run("dns", "example.org", "-c", config)
    assert code == 1 and "no hardmail data directory" in out, out
    assert not (tmp_path / "data").exists()
