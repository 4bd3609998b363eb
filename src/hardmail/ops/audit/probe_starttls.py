"""STARTTLS command injection probes (CVE-2011-0411 class) on every listener that upgrades to TLS
in-band: SMTP (STARTTLS), IMAP (STARTTLS) and POP3 (STLS).

The probe sends the upgrade command and a second command in the same write ("STARTTLS\\r\\nRSET\\r\\n",
also with NOOP; ". STARTTLS" with a tagged NOOP for IMAP; "STLS\\r\\nNOOP" for POP3). A correct
server discards what it read in plaintext before the handshake (RFC 3207 4.2, RFC 2595 3.1); a
vulnerable one runs the injected command inside TLS, so that a man in the middle can put commands
into a session the client believes is protected. After the handshake the probe sends one marker
command and collects what arrives until the peer is quiet: more than the marker's reply means
the injected command was answered.
"""

from __future__ import annotations

from dataclasses import dataclass

from hardmail.ops.audit.context import AuditContext, ProbeTarget
from hardmail.ops.audit.findings import CheckInfo, Finding, Severity
from hardmail.server.probe_link import ProbeLink, insecure_client_context

INJECTION = CheckInfo(
    "starttls.injection", 3, "STARTTLS command injection",
    "A server that keeps the plaintext it read before the TLS handshake runs commands a man in the "
    "middle appended to STARTTLS inside the encrypted session (CVE-2011-0411): he can, for example, "
    "make a client's credentials or mail go where he chose.",
    "Upgrade the server: after STARTTLS/STLS it must discard every byte read before the handshake "
    "(RFC 3207 4.2; hardmail, Postfix 2.8+, Dovecot do)")
CHECKS: tuple[CheckInfo, ...] = (INJECTION,)

IN_BAND_KINDS = ("smtp", "submission", "imap", "pop3")
QUIET = 1.0  # seconds without data after which the replies are considered complete


@dataclass(frozen=True, slots=True)
class Injection:
    protocol: str
    upgrade: bytes  # the upgrade command and the injected one, in one write
    marker: bytes  # sent inside TLS; its reply is the only one expected
    shown: str  # what the evidence calls it


INJECTIONS = {
    "smtp": (Injection("smtp", b"STARTTLS\r\nRSET\r\n", b"NOOP\r\n", "STARTTLS\\r\\nRSET\\r\\n"),
             Injection("smtp", b"STARTTLS\r\nNOOP\r\n", b"NOOP\r\n", "STARTTLS\\r\\nNOOP\\r\\n")),
    "imap": (Injection("imap", b"a1 STARTTLS\r\na2 NOOP\r\n", b"a3 NOOP\r\n", "a1 STARTTLS\\r\\na2 NOOP\\r\\n"),),
    "pop3": (Injection("pop3", b"STLS\r\nNOOP\r\n", b"NOOP\r\n", "STLS\\r\\nNOOP\\r\\n"),),
}


class NotApplicable(Exception):
    """The listener does not offer the in-band upgrade (or the probe could not get that far)."""


async def _read_to_upgrade(link: ProbeLink, protocol: str) -> bytes | None:
    """The greeting and capabilities, up to the point where the upgrade may be sent."""
    if protocol == "smtp":
        greeting = await link.read_smtp_reply()
        if greeting is None or greeting.code != 220:
            raise NotApplicable(f"no 220 greeting (got {greeting or 'nothing'})")
        ehlo = await link.command("EHLO audit-probe.invalid")
        if ehlo is None or not any(line.upper().startswith("STARTTLS") for line in ehlo.lines[1:]):
            raise NotApplicable("STARTTLS is not offered")
        return None
    return await link.read_line()


async def _upgrade_reply(link: ProbeLink, protocol: str) -> str:
    """The reply to the upgrade command; "" when it is not a yes."""
    if protocol == "smtp":
        reply = await link.read_smtp_reply()
        return str(reply) if reply is not None and reply.code == 220 else ""
    for _ in range(20):  # IMAP may send untagged lines first
        line = await link.read_line()
        if line is None:
            return ""
        text = line.decode("utf-8", "replace").strip()
        if protocol == "pop3":
            return text if text.startswith("+OK") else ""
        if text.startswith("a1 "):
            return text if text[3:].upper().startswith("OK") else ""
    return ""


def replies_after(protocol: str, data: bytes) -> list[str]:
    """The reply lines (SMTP: last lines of replies; IMAP: tagged lines; POP3: status lines)."""
    lines = [ln.strip() for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()]
    if protocol == "smtp":
        return [ln for ln in lines if len(ln) >= 3 and ln[:3].isdigit() and ln[3:4] != "-"]
    if protocol == "imap":
        return [ln for ln in lines if ln.startswith(("a2 ", "a3 "))]
    return [ln for ln in lines if ln.startswith(("+OK", "-ERR"))]


def injected_answered(protocol: str, replies: list[str]) -> bool:
    if protocol == "imap":
        return any(ln.startswith("a2 ") for ln in replies)
    return len(replies) > 1


async def try_injection(ctx: AuditContext, target: ProbeTarget, injection: Injection) -> tuple[bool, str]:
    """(injected command answered, evidence); NotApplicable when the upgrade cannot be probed."""
    try:
        link = await ProbeLink.open(target.host, target.port, timeout=ctx.timeout, source_ip=ctx.source_ips[0])
    except (OSError, TimeoutError) as exc:
        raise NotApplicable(f"could not connect: {type(exc).__name__}") from None
    async with link:
        await _read_to_upgrade(link, injection.protocol)
        if not await link.send(injection.upgrade):
            raise NotApplicable("the connection closed before the upgrade")
        said = await _upgrade_reply(link, injection.protocol)
        if not said:
            raise NotApplicable("the upgrade command was refused")
        if not await link.start_tls(insecure_client_context(), target.host):
            raise NotApplicable(f"the TLS handshake after {injection.shown} failed")
        await link.send(injection.marker)
        replies = replies_after(injection.protocol, await link.read_pending(min(QUIET, ctx.timeout)))
    answered = injected_answered(injection.protocol, replies)
    seen = "; ".join(replies[:3]) or "nothing"
    if answered:
        return True, f"sent {injection.shown} in one write; inside TLS the injected command was answered: {seen}"
    return False, f"sent {injection.shown} in one write; inside TLS only the marker was answered: {seen}"


async def probe_target(ctx: AuditContext, target: ProbeTarget) -> Finding:
    evidence: list[str] = []
    for injection in INJECTIONS[target.protocol]:
        try:
            answered, text = await try_injection(ctx, target, injection)
        except NotApplicable as exc:
            return INJECTION.skipped(str(exc), target=target.label)
        if answered:
            return INJECTION.finding(Severity.CRITICAL, text, target=target.label)
        evidence.append(text)
    return INJECTION.ok("; ".join(evidence), target=target.label)


async def run(ctx: AuditContext) -> list[Finding]:
    targets = ctx.targets_of(*IN_BAND_KINDS)
    if not ctx.running or not targets:
        why = "no server running" if not ctx.running else "no listener with STARTTLS/STLS to probe"
        return [INJECTION.skipped(why)]
    return [await probe_target(ctx, target) for target in targets]
