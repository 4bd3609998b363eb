"""The DNS records advisor: what a hosted domain should publish, and whether DNS has it.

Records: MX, SPF (domain and HELO name), DKIM (every published selector), DMARC, MTA-STS (TXT and
policy host, RFC 8461), TLS-RPT (RFC 8460), SRV for mail clients (RFC 6186, RFC 8314) and the
autoconfig/autodiscover names. :func:`check` looks each up through the Resolver.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from hardmail.msgauth.dkim_keys import PublicRecord
from hardmail.msgauth.dns import Resolver

Status = Literal["ok", "missing", "wrong"]
MTA_STS_MAX_AGE = 604800  # one week (RFC 8461 3.2 allows up to a year)


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


def mta_sts_policy(hostname: str) -> str:
    """RFC 8461 3.2: the policy file served at https://mta-sts.DOMAIN/.well-known/mta-sts.txt."""
    return f"version: STSv1\r\nmode: enforce\r\nmx: {hostname}\r\nmax_age: {MTA_STS_MAX_AGE}\r\n"


def _mta_sts_id(hostname: str) -> str:
    return hashlib.sha256(mta_sts_policy(hostname).encode()).hexdigest()[:20]  # changes with the policy


def advise(domain: str, hostname: str, dkim: Sequence[PublicRecord]) -> list[Advice]:
    """Every record ``domain`` should publish when ``hostname`` is its mail server."""
    host = hostname.rstrip(".")
    records = [
        Advice(domain, "MX", f"10 {host}.", "mail for the domain goes to this server"),
        Advice(domain, "TXT", quoted_txt("v=spf1 mx -all"), "SPF: only the MX hosts send for the domain"),
        Advice(host, "TXT", quoted_txt("v=spf1 a -all"), "SPF for the server's HELO name"),
    ]
    records += [Advice(r.name(domain), "TXT", quoted_txt(r.txt), f"DKIM key ({r.algorithm})") for r in dkim]
    records += [
        Advice(f"_dmarc.{domain}", "TXT", quoted_txt(f"v=DMARC1; p=quarantine; adkim=s; aspf=r; "
                                                      f"rua=mailto:postmaster@{domain}"), "DMARC policy"),
        Advice(f"_mta-sts.{domain}", "TXT", quoted_txt(f"v=STSv1; id={_mta_sts_id(host)}"), "MTA-STS (RFC 8461)"),
        Advice(f"mta-sts.{domain}", "CNAME", f"{host}.", "MTA-STS policy host (HTTPS, serves the policy file)"),
        Advice(f"_smtp._tls.{domain}", "TXT", quoted_txt(f"v=TLSRPTv1; rua=mailto:postmaster@{domain}"),
               "TLS reporting (RFC 8460)"),
        Advice(f"_submissions._tcp.{domain}", "SRV", f"0 1 465 {host}.", "mail clients: submission over TLS"),
        Advice(f"_submission._tcp.{domain}", "SRV", f"0 1 587 {host}.", "mail clients: submission, STARTTLS"),
        Advice(f"_imaps._tcp.{domain}", "SRV", f"0 1 993 {host}.", "mail clients: IMAP over TLS"),
        Advice(f"autoconfig.{domain}", "CNAME", f"{host}.", "client autoconfiguration (Thunderbird)"),
        Advice(f"autodiscover.{domain}", "CNAME", f"{host}.", "client autoconfiguration (Outlook)"),
    ]
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
