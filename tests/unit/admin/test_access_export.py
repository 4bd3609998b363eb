"""Ban subjects given to the CLI and written to the nftables export come out normalised:
IPv4-mapped IPv6 as IPv4, scope ids refused, the export built from parsed networks only."""

from __future__ import annotations

import pytest

from hardmail.admin.access_service import listener_ports, nft_script, normalise_subject
from hardmail.admin.service import AdminError
from hardmail.config.schema import Config
from hardmail.policy.bans import Ban

NOW = 1_700_000_000.0


def ban(subject: str) -> Ban:
    return Ban(subject, "admin", "test", NOW, NOW + 3600)


def set_elements(script: str, name: str) -> str:
    lines = script.splitlines()
    start = lines.index(f"  set {name} {{")
    found = [line for line in lines[start:start + 5] if "elements" in line]
    return found[0] if found else ""


@pytest.mark.parametrize(("text", "subject"), [("::ffff:192.0.2.5", "192.0.2.5"), ("192.0.2.5", "192.0.2.5"),
                                               ("2001:db8::1/64", "2001:db8::/64")])
def test_subjects_are_normalised(text: str, subject: str) -> None:
    assert normalise_subject(text) == subject


@pytest.mark.parametrize("text", ["fe80::1%eth0", "fe80::1%a;}x", "fe80::1%a;}x/128"])
def test_scope_ids_are_refused(text: str) -> None:
    with pytest.raises(AdminError):
        normalise_subject(text)


def test_mapped_subject_goes_to_the_ipv4_set() -> None:
    script = nft_script([ban("::ffff:192.0.2.5")], NOW, "hardmail", [25])
    assert set_elements(script, "banned4") == "    elements = { 192.0.2.5 timeout 3600s }"
    assert set_elements(script, "banned6") == ""


def test_export_writes_only_parsed_networks() -> None:
    script = nft_script([ban("fe80::1%a;}x"), ban("2001:db8:1:2::/64"), ban("not an address")], NOW, "hardmail", [25])
    assert "%" not in script and "}x" not in script and "not an" not in script
    assert set_elements(script, "banned6") == "    elements = { 2001:db8:1:2::/64 timeout 3600s }"


def test_the_export_drops_banned_sources_on_the_imap_and_pop3_ports_too() -> None:
    config = Config.model_validate({"listen": {"smtp": ["0.0.0.0:25"], "submission": ["0.0.0.0:587"],
                                               "submissions": ["0.0.0.0:465"], "imap": ["0.0.0.0:143"],
                                               "imaps": ["0.0.0.0:993", "[::]:993"], "pop3": [],
                                               "pop3s": ["0.0.0.0:995"]}})
    assert listener_ports(config) == [25, 143, 465, 587, 993, 995]
