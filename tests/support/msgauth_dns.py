"""Helpers for message-authentication tests: TXT zone values and DNS redirection for child processes."""

from __future__ import annotations

from pathlib import Path

SITECUSTOMIZE = '''
import os
import dns.resolver
_resolver = dns.resolver.Resolver(configure=False)
_resolver.nameservers = ["127.0.0.1"]
_resolver.port = int(os.environ["HARDMAIL_TEST_DNS_PORT"])
dns.resolver.default_resolver = _resolver
'''


def txt_value(text: str) -> str:
    """``text`` as zone-file TXT rdata: quoted character-strings of at most 255 octets (RFC 1035 3.3.14)."""
    pieces = [text[i:i + 255] for i in range(0, len(text), 255)] or [""]
    return " ".join('"' + piece.replace("\\", "\\\\").replace('"', '\\"') + '"' for piece in pieces)


def loopback_dns_env(directory: Path, port: int, base: dict[str, str]) -> dict[str, str]:
    """Environment for a Python child process whose dnspython asks only our loopback DNS server."""
    (directory / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return {**base, "PYTHONPATH": str(directory), "HARDMAIL_TEST_DNS_PORT": str(port)}
