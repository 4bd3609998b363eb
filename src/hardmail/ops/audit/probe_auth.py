"""Audit probes of authentication outside TLS (practice 1): whether a plain-text listener offers
AUTH (SMTP EHLO, IMAP CAPABILITY, POP3 CAPA) before STARTTLS/STLS, whether it accepts a login
there, and whether the MX port offers AUTH at all.

Only made-up credentials are ever sent in clear text: the user ``audit-probe-nonexistent@invalid``
(RFC 2606 ``.invalid``: nobody's account) and a random password made for the one try. A server
that answers them "wrong password" (SMTP 535, IMAP NO [AUTHENTICATIONFAILED], POP3 -ERR after
PASS) has checked them, so it would check a real password sent the same way: critical. A server
that answers "encryption required" (SMTP 530/538 5.7.0/5.7.11, IMAP NO [PRIVACYREQUIRED], POP3
-ERR ... TLS) never looked at them: ok. Each plain-text listener gets at most one made-up login
that is checked, so that an audit never comes near the source-address ban (five failures).
"""

from __future__ import annotations

import base64
import re
import secrets

from hardmail.ops.audit.context import AuditContext, ProbeTarget
from hardmail.ops.audit.findings import CheckInfo, Finding, Severity
from hardmail.ops.audit.probe_wire import (
    MADE_UP_USER,
    Talk,
    ask_capabilities,
    each_target,
    imap_command,
    imap_status,
    open_talk,
    pop3_command,
    quit_politely,
    start_tls,
    tag,
)
from hardmail.server.probe_link import SmtpReply

OFFERED = CheckInfo(
    "auth.offered_before_tls", 1, "AUTH offered before TLS",
    "A listener that offers a login before TLS invites mail clients to send passwords readable by "
    "anyone on the network path (RFC 3207 and RFC 8314: authenticate only inside TLS).",
    "hardmail: smtp.allow_plaintext_auth = false, imap.allow_plaintext_login = false, "
    "pop3.allow_plaintext_login = false (the defaults); Postfix: smtpd_tls_auth_only = yes; "
    "Dovecot: disable_plaintext_auth = yes (ssl = required).",
)
ACCEPTED = CheckInfo(
    "auth.accepted_before_tls", 1, "AUTH accepted before TLS",
    "A listener that checks a password sent in clear text lets anyone who can see the traffic "
    "(public Wi-Fi, a hostile network on the way) read it, whatever the capability list says.",
    OFFERED.fix + " For one hardmail IP range: `hardmail range add ... --tls-for-auth`.",
)
ON_MX = CheckInfo(
    "auth.on_mx", 1, "AUTH on the MX port",
    "Port 25 must take mail from the whole Internet; offering AUTH there turns it into a place to "
    "guess passwords (mail clients submit on 587 or 465).",
    "hardmail: smtp.auth_on_mx = false (the default); Postfix: no smtpd_sasl_auth_enable in the "
    "main.cf settings of port 25 (only in master.cf for submission).",
)
CHECKS: tuple[CheckInfo, ...] = (OFFERED, ACCEPTED, ON_MX)

PLAIN_KINDS = ("smtp", "submission", "imap", "pop3")
# Words of a refusal "because there is no TLS" (RFC 3207 5.7.0, RFC 4954 5.7.11, RFC 5530 PRIVACYREQUIRED)
TLS_WORDS = re.compile(r"TLS|SSL|STLS|encrypt|privacy|plain ?text|clear ?text|secure", re.IGNORECASE)


async def run(ctx: AuditContext) -> list[Finding]:
    plain = ctx.targets_of(*PLAIN_KINDS)
    return [
        *await each_target(OFFERED, ctx, plain, "plain-text listener", lambda t: _offered(ctx, t)),
        *await each_target(ACCEPTED, ctx, plain, "plain-text listener", lambda t: _accepted(ctx, t)),
        *await each_target(ON_MX, ctx, ctx.targets_of("smtp"), "MX (smtp) listener", lambda t: _on_mx(ctx, t)),
    ]


def made_up_password() -> str:
    return "audit-" + secrets.token_hex(12)


def plain_response() -> str:
    """RFC 4616 PLAIN of the made-up user and a fresh random password, base64."""
    return base64.b64encode(f"\0{MADE_UP_USER}\0{made_up_password()}".encode()).decode()


# --- AUTH offered before TLS ------------------------------------------------------------------

async def _offered(ctx: AuditContext, target: ProbeTarget) -> Finding:
    talk = await open_talk(target, ctx)
    if isinstance(talk, str):
        return OFFERED.skipped(talk, target=target.label)
    try:
        problem = offered_in_clear(talk)
    finally:
        await quit_politely(talk)
    if problem:
        return OFFERED.finding(Severity.HIGH, f"{target.kind} {target.label}: {problem}", target=target.label)
    return OFFERED.ok(f"{target.kind} {target.label}: {_offer_summary(talk)}", target=target.label)


def offered_in_clear(talk: Talk) -> str:
    """What the capability list before TLS offers for logging in ("" when nothing)."""
    if talk.protocol == "smtp":
        if talk.offers("AUTH"):
            return "EHLO before STARTTLS lists AUTH " + " ".join(talk.capability_values("AUTH"))
        return ""
    if talk.protocol == "imap":
        mechanisms = talk.capability_values("AUTH")
        if mechanisms or "LOGINDISABLED" not in talk.capabilities:
            listed = " ".join(f"AUTH={m}" for m in mechanisms) or "no AUTH="
            return f"CAPABILITY before STARTTLS lists {listed} and no LOGINDISABLED (LOGIN is allowed)"
        return ""
    offered = [cap for cap in talk.capabilities if cap == "USER" or cap.startswith("SASL")]
    return "CAPA before STLS lists " + ", ".join(offered) if offered else ""


def _offer_summary(talk: Talk) -> str:
    return {"smtp": "EHLO before STARTTLS lists no AUTH",
            "imap": "CAPABILITY before STARTTLS lists LOGINDISABLED and no AUTH=",
            "pop3": "CAPA before STLS lists neither USER nor SASL"}[talk.protocol]


# --- AUTH accepted before TLS -----------------------------------------------------------------

async def _accepted(ctx: AuditContext, target: ProbeTarget) -> Finding:
    talk = await open_talk(target, ctx)
    if isinstance(talk, str):
        return ACCEPTED.skipped(talk, target=target.label)
    try:
        severity, evidence = await {"smtp": _smtp_login, "imap": _imap_login, "pop3": _pop3_login}[talk.protocol](talk)
    finally:
        await quit_politely(talk)
    text = f"{target.kind} {target.label} without TLS, a made-up user and password: {evidence}"
    if severity is Severity.INFO:
        return ACCEPTED.skipped(text, target=target.label)
    if severity is Severity.OK:
        return ACCEPTED.ok(text, target=target.label)
    return ACCEPTED.finding(severity, text, target=target.label)


async def _smtp_login(talk: Talk) -> tuple[Severity, str]:
    reply = await talk.link.command(f"AUTH PLAIN {plain_response()}")
    said = f"AUTH PLAIN answered {reply}"
    if reply is not None and reply.code == 504:  # RFC 4954 6: mechanism unknown; try the other common one
        reply = await talk.link.command("AUTH LOGIN")
        said += f"; AUTH LOGIN answered {reply}"
    if reply is not None and reply.code == 334:  # it wants the credentials in clear text: stop there
        await talk.link.command("*")  # RFC 4954 4: cancel
        return Severity.CRITICAL, said + " (it asks for the credentials in clear text)"
    return smtp_verdict(reply), said


def smtp_verdict(reply: SmtpReply | None) -> Severity:
    """What the answer to a clear-text AUTH means."""
    if reply is None or 400 <= reply.code < 500:
        return Severity.INFO  # gone or a temporary failure: cannot tell
    if reply.code in (235, 535) or reply.text.startswith(("5.7.8", "2.7.0")):
        return Severity.CRITICAL  # it checked the credentials
    return Severity.OK  # 530/538 encryption required, 502/503/504 no AUTH here


async def _imap_login(talk: Talk) -> tuple[Severity, str]:
    disabled = "LOGINDISABLED" in talk.capabilities
    status, _ = await imap_command(talk.link, f'LOGIN "{MADE_UP_USER}" "{made_up_password()}"')
    severity, said = imap_verdict(status, disabled), f"LOGIN answered {status or 'nothing'!r}"
    if severity is not Severity.OK:
        return severity, said
    status = await _imap_authenticate(talk)
    said += f"; AUTHENTICATE PLAIN answered {status or 'nothing'!r}"
    return max_severity(severity, imap_verdict(status, disabled)), said


async def _imap_authenticate(talk: Talk) -> str:
    name = tag()
    initial = f" {plain_response()}" if "SASL-IR" in talk.capabilities else ""  # RFC 4959
    if not await talk.link.send(f"{name} AUTHENTICATE PLAIN{initial}\r\n".encode()):
        return ""
    status, _ = await imap_status(talk.link, name)
    if status.startswith("+") and not initial:  # RFC 9051 6.2.2: the credentials on the next line
        await talk.link.send(plain_response().encode() + b"\r\n")
        status, _ = await imap_status(talk.link, name)
    if status.startswith("+"):  # more wanted: cancel; it has read the credentials
        await talk.link.send(b"*\r\n")
        await imap_status(talk.link, name)
        return status + " (asked for more)"
    return status


def imap_verdict(status: str, login_disabled: bool) -> Severity:
    upper = status.upper()
    if not status:
        return Severity.INFO
    if upper.startswith("OK") or upper.startswith("+") or "AUTHENTICATIONFAILED" in upper:
        return Severity.CRITICAL
    if "PRIVACYREQUIRED" in upper or login_disabled or TLS_WORDS.search(status) or upper.startswith("BAD"):
        return Severity.OK
    return Severity.CRITICAL  # a NO without a reason, where LOGINDISABLED is not advertised: a wrong password


async def _pop3_login(talk: Talk) -> tuple[Severity, str]:
    user = await pop3_command(talk.link, f"USER {MADE_UP_USER}")
    said = f"USER answered {user or 'nothing'!r}"
    if user is not None and user.upper().startswith("+OK"):
        answer = await pop3_command(talk.link, f"PASS {made_up_password()}")
        return pop3_verdict(answer, after_pass=True), f"{said}; PASS answered {answer or 'nothing'!r}"
    answer = await pop3_command(talk.link, f"AUTH PLAIN {plain_response()}")  # RFC 5034 4
    if answer is not None and answer.startswith("+ "):
        await pop3_command(talk.link, "*")
        return Severity.CRITICAL, f"{said}; AUTH PLAIN answered {answer!r} (asked for more)"
    return pop3_verdict(answer, after_pass=False), f"{said}; AUTH PLAIN answered {answer or 'nothing'!r}"


def pop3_verdict(answer: str | None, *, after_pass: bool) -> Severity:
    if answer is None:
        return Severity.INFO
    upper = answer.upper()
    if upper.startswith("+OK"):
        return Severity.CRITICAL
    if "[SYS/TEMP]" in upper or "[IN-USE]" in upper:  # RFC 3206: a temporary refusal tells nothing
        return Severity.INFO
    if TLS_WORDS.search(answer):
        return Severity.OK
    # RFC 3206 4: [AUTH] is a failed login; a PASS refused without a TLS reason was checked too
    return Severity.CRITICAL if "[AUTH]" in upper or after_pass else Severity.OK


def max_severity(a: Severity, b: Severity) -> Severity:
    """The worse of two verdicts; INFO (cannot tell) only when both are."""
    ranked = [s for s in (a, b) if s is not Severity.INFO]
    return min(ranked, key=lambda s: s.rank) if ranked else Severity.INFO


# --- AUTH on the MX port ----------------------------------------------------------------------

async def _on_mx(ctx: AuditContext, target: ProbeTarget) -> Finding:
    talk = await open_talk(target, ctx)
    if isinstance(talk, str):
        return ON_MX.skipped(talk, target=target.label)
    try:
        before = " ".join(talk.capability_values("AUTH")) if talk.offers("AUTH") else ""
        problem = await start_tls(talk) if talk.offers("STARTTLS") else "STARTTLS not offered"
        after = ""
        if not problem and await ask_capabilities(talk) and talk.offers("AUTH"):
            after = " ".join(talk.capability_values("AUTH"))
    finally:
        await quit_politely(talk)
    return _mx_finding(target, before, after, problem)


def _mx_finding(target: ProbeTarget, before: str, after: str, problem: str) -> Finding:
    seen = [f"before STARTTLS: AUTH {before}" if before else "", f"after STARTTLS: AUTH {after}" if after else ""]
    if before or after:
        evidence = f"EHLO on the MX port {target.label} lists " + "; ".join(s for s in seen if s)
        return ON_MX.finding(Severity.MEDIUM, evidence, target=target.label)
    if problem:
        return ON_MX.skipped(f"no AUTH before STARTTLS on {target.label}; after it: {problem}", target=target.label)
    return ON_MX.ok(f"EHLO on the MX port {target.label} lists no AUTH, before or after STARTTLS",
                    target=target.label)
