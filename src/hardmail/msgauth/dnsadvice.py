"""The DNS records advisor: what a hosted domain should publish, and whether DNS has it.

Only records for what hardmail serves today are advised: MX, SPF (domain and HELO name), DKIM
(every published selector), DMARC, TLS-RPT (RFC 8460: reports are mail to postmaster@DOMAIN) and
the SRV records of the submission listeners that are configured (RFC 6186, RFC 8314). No IMAP or
POP3 SRV, no autoconfig names and no MTA-STS (it needs an HTTPS policy host) until hardmail
serves them. When the server's host name is not a public DNS name (:func:`host_name_problem`),
the records that name it (MX, SPF, SRV) are left out and DMARC is advised at ``p=none``: an MX
pointing at ``localhost`` would send the domain's mail nowhere. :func:`check` looks each up
through the Resolver.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from publicsuffixlist import PublicSuffixList  # type: ignore[import-untyped]

from hardmail.msgauth.dkim_keys import PublicRecord
from hardmail.msgauth.dns import Resolver

Status = Literal["ok", "missing", "wrong"]
# RFC 6761 6 and RFC 2606 2-3 (test, example, invalid, localhost), RFC 6762 (local), RFC 8375
# (home.arpa), the .internal TLD reserved for private use (ICANN, 2024), RFC 7686 (onion).
SPECIAL_USE_SUFFIXES = ("localhost", "local", "test", "example", "invalid", "internal", "arpa", "onion",
                        "example.com", "example.net", "example.org")


@dataclass(frozen=True, slots=True)
class Served:
    """The client-facing services that are configured (``[listen]``), for their SRV records."""

    submission: bool = True  # port 587, STARTTLS
    submissions: bool = True  # port 465, implicit TLS


@lru_cache(maxsize=1)
def _suffix_list() -> PublicSuffixList:
    return PublicSuffixList()


def host_name_problem(hostname: str) -> str | None:
    """Why ``hostname`` cannot be the public name of a mail server, or None when it can be."""
    host = hostname.strip().rstrip(".").lower()
    if not host or host == "localhost":
        return "it is the default name localhost" if host else "it is empty"
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        return "it is an IP address; an MX record must name a host"
    if "." not in host:
        return "it has no dot, so it is not a name in the public DNS"
    special = next((s for s in SPECIAL_USE_SUFFIXES if host == s or host.endswith("." + s)), None)
    if special is not None:
        return f"names under .{special} are reserved and never resolve in the public DNS"
    if _suffix_list().privatesuffix(host, accept_unknown=False) is None:
        return "it is not under a public suffix (per the public suffix list), so others cannot resolve it"
    return None


@dataclass(frozen=True, slots=True)
class Advice:
    name: str
    rtype: str
    value: str  # zone-file rdata
    purpose: str

    def zone_line(self) -> str:
        return f"{self.name}.\t3600\tIN\t{self.rtype}\t{self.value}"


@dataclass(frozen=True, slots=True)
class CheckResult:
    advice: Advice
    status: Status
    found: str = ""
    fix: str = ""


def quoted_txt(text: str) -> str:
    """TXT rdata: character-strings of at most 255 octets (RFC 1035 3.3.14)."""
    return " ".join(f'"{text[i:i + 255]}"' for i in range(0, len(text), 255)) or '""'


def advise(domain: str, hostname: str, dkim: Sequence[PublicRecord], served: Served | None = None) -> list[Advice]:
    """Every record ``domain`` should publish when ``hostname`` is its mail server."""
    host = hostname.rstrip(".")
    public = host_name_problem(host) is None
    records = []
    if public:
        records += [
            Advice(domain, "MX", f"10 {host}.", "mail for the domain goes to this server"),
            Advice(domain, "TXT", quoted_txt("v=spf1 mx -all"), "SPF: only the MX hosts send for the domain"),
            Advice(host, "TXT", quoted_txt("v=spf1 a -all"), "SPF for the server's HELO name"),
        ]
    records += [Advice(r.name(domain), "TXT", quoted_txt(r.txt), f"DKIM key ({r.algorithm})") for r in dkim]
    policy = "p=quarantine" if public else "p=none"  # monitoring only until the server has its public name
    records += [
        Advice(f"_dmarc.{domain}", "TXT", quoted_txt(f"v=DMARC1; {policy}; adkim=s; aspf=r; "
                                                      f"rua=mailto:postmaster@{domain}"), "DMARC policy"),
        Advice(f"_smtp._tls.{domain}", "TXT", quoted_txt(f"v=TLSRPTv1; rua=mailto:postmaster@{domain}"),
               "TLS reporting (RFC 8460): senders mail TLS failure reports to postmaster"),
    ]
    return records + (_client_srv(domain, host, served or Served()) if public else [])


def _client_srv(domain: str, host: str, served: Served) -> list[Advice]:
    """RFC 6186 5, RFC 8314 5.1: SRV records for the submission listeners that are configured."""
    records = []
    if served.submissions:
        records.append(Advice(f"_submissions._tcp.{domain}", "SRV", f"0 1 465 {host}.",
                              "mail clients: submission over TLS"))
    if served.submission:
        records.append(Advice(f"_submission._tcp.{domain}", "SRV", f"0 1 587 {host}.",
                              "mail clients: submission, STARTTLS"))
    return records


def _txt_value(advice: Advice) -> str:
    return "".join(part for part in advice.value.split('"')[1::2])


def _compare_txt(advice: Advice, texts: list[str]) -> CheckResult:
    wanted = _txt_value(advice)
    version = wanted.split(";")[0].split(" ")[0].lower()
    found = [t for t in texts if t.lower().startswith(version)]
    if not found:
        return CheckResult(advice, "missing", fix=f"add: {advice.zone_line()}")
    if len(found) > 1:
        return CheckResult(advice, "wrong", " | ".join(found), f"keep exactly one {version} record")
    if version == "v=dkim1" and wanted.rpartition("p=")[2] != found[0].replace(" ", "").rpartition("p=")[2]:
        return CheckResult(advice, "wrong", found[0], f"replace it with: {advice.zone_line()}")
    if version == "v=spf1" and not found[0].rstrip().endswith(("-all", "~all", "redirect=")) \
            and "redirect=" not in found[0]:
        return CheckResult(advice, "wrong", found[0], "end the SPF record with -all (or ~all while testing)")
    return CheckResult(advice, "ok", found[0])


def _compare_target(advice: Advice, found: list[str]) -> CheckResult:
    wanted = advice.value.lower()
    if not found:
        return CheckResult(advice, "missing", fix=f"add: {advice.zone_line()}")
    if any(f.lower().endswith(wanted.split(" ")[-1]) and (advice.rtype != "SRV" or f.lower() == wanted)
           for f in found):
        return CheckResult(advice, "ok", ", ".join(found))
    return CheckResult(advice, "wrong", ", ".join(found), f"replace it with: {advice.zone_line()}")


async def check_one(resolver: Resolver, advice: Advice) -> CheckResult:
    answer = await resolver.resolve(advice.name, advice.rtype)
    if answer.status == "tempfail":
        return CheckResult(advice, "missing", fix=f"the look-up failed ({answer.detail}); try again")
    if advice.rtype == "TXT":
        return _compare_txt(advice, answer.texts())
    found = [r.to_text() for r in answer.records]
    if advice.rtype == "CNAME" and not found:  # an A/AAAA record for the name is as good
        addresses = await resolver.resolve(advice.name, "A")
        if addresses.ok:
            return CheckResult(advice, "ok", ", ".join(r.to_text() for r in addresses.records))
    return _compare_target(advice, found)


async def check(resolver: Resolver, advice: Sequence[Advice]) -> list[CheckResult]:
    return [await check_one(resolver, item) for item in advice]
