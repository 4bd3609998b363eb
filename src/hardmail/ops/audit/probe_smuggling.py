"""SMTP smuggling probes (practices 8 and 9; CVE-2023-51764/51765/51766 class): does a listener end
a message anywhere but at ``<CR><LF>.<CR><LF>`` (RFC 5321 4.1.1.4), or accept bare CR or LF in a
message at all?

For each variant (bare LF, bare CR, every ``<LF>.<CR><LF>``-family fake end of data, a fake end
at the very start, and a NUL before the dot) one message is sent in DATA, and again in one BDAT
chunk when CHUNKING is offered, whose content holds the variant followed by a second, smuggled
transaction (MAIL FROM, RCPT TO, DATA, a message, the real end). Right after it the probe sends a
marker command (EHLO when the server's EHLO reply has several lines, else QUIT) and reads the
replies up to the marker's: one reply (250 or a refusal) means the content was taken as one
message; a 2xx followed by more replies means the server ended the message at the fake end and
ran the smuggled commands: it can be made to accept mail "from" anyone its peers relay for.

Messages go only to the probe account (``ctx.login.address``, own server) or to
``postmaster@<local_domain>`` (``--target``), with the Subject "hardmail audit probe".
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from hardmail.ops.audit.context import AuditContext, ProbeTarget
from hardmail.ops.audit.findings import CheckInfo, Finding, Severity
from hardmail.ops.audit.probe_wire import (
    EHLO_NAME,
    SessionError,
    Talk,
    auth_plain,
    open_smtp,
    quit_politely,
    temporary,
    upgrade,
)
from hardmail.server.probe_link import SmtpReply

_GENERIC_FIX = ("Accept only <CR><LF>.<CR><LF> as the end of data and refuse bare CR or LF (hardmail does "
                "by default); on Postfix: smtpd_forbid_bare_newline = yes; on Exim: 4.97.1 or later; on "
                "Sendmail: 8.18 or later")
POSTFIX_FIX = ("In main.cf set smtpd_forbid_bare_newline = yes (and smtpd_forbid_bare_newline_exclusions = "
               "$mynetworks), then run: postfix reload. The setting exists from Postfix 3.5.23, 3.6.13, "
               "3.7.9 and 3.8.4 on; older versions must be upgraded first")
POSTFIX_BARE_FIX = ("In main.cf set smtpd_forbid_bare_newline = reject (Postfix 3.6.14, 3.7.10, 3.8.5, 3.9 "
                    "and later; 'yes' only normalizes bare LF to a line end, which stops the smuggling but "
                    "still takes the content), then run: postfix reload")
DATA = CheckInfo(
    "smuggling.data", 8, "SMTP smuggling in DATA",
    "A server that ends DATA at a fake end (<LF>.<LF>, <LF>.<CR><LF> and their kin) reads what follows as "
    "new commands: an attacker relays through a server that does not split, and this one accepts the "
    "smuggled message as coming from that server, so SPF and DMARC pass for a forged sender.",
    _GENERIC_FIX)
BDAT = CheckInfo(
    "smuggling.bdat", 8, "SMTP smuggling in BDAT",
    "BDAT content is counted in octets and has no end marker (RFC 3030); a server that still looks for "
    "one inside a chunk runs smuggled commands just as in DATA.",
    _GENERIC_FIX)
BARE_LF = CheckInfo(
    "smuggling.bare_lf", 9, "Bare LF accepted in messages",
    "RFC 5321 2.3.8 forbids a bare LF. A server that accepts it without splitting is not smuggled "
    "itself, but passes such content on to servers that may split at it (medium): refusing bare LF "
    "is what closed the SMTP smuggling attacks.",
    _GENERIC_FIX)
BARE_CR = CheckInfo(
    "smuggling.bare_cr", 9, "Bare CR accepted in messages",
    "A bare CR is as illegal as a bare LF (RFC 5321 2.3.8), but fewer servers split at it: accepting "
    "it is low.",
    _GENERIC_FIX)
CHECKS: tuple[CheckInfo, ...] = (DATA, BDAT, BARE_LF, BARE_CR)

SMTP_KINDS = ("smtp", "submission", "submissions")
MAX_REPLIES = 40  # replies read after one probe message before giving up on the marker


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    fake_end: bytes  # what stands between the first part and the smuggled commands
    at_start: bool = False  # the fake end opens the content (right after DATA's CRLF)


VARIANTS = (
    Variant("bare <LF>", b"\n"),
    Variant("bare <CR>", b"\r"),
    Variant("<LF>.<LF>", b"\n.\n"),
    Variant("<LF>.<CR>", b"\n.\r"),
    Variant("<LF>.<CR><LF>", b"\n.\r\n"),
    Variant("<CR>.<LF>", b"\r.\n"),
    Variant("<CR>.<CR>", b"\r.\r"),
    Variant("<CR>.<CR><LF>", b"\r.\r\n"),
    Variant("<CR><LF>.<LF>", b"\r\n.\n"),
    Variant("<CR><LF>.<CR>", b"\r\n.\r"),
    Variant("<CR><LF><NUL>.<CR><LF>", b"\r\n\x00.\r\n"),
    Variant(".<LF> at the start of data", b".\n", at_start=True),
)


# Submission listeners count each message against the probe account's hourly limit (200 by default):
# there the probes send the variants of the published attacks (CVE-2023-51764/51765/51766) only
SUBMISSION_VARIANTS = tuple(v for v in VARIANTS if v.name in {
    "bare <LF>", "bare <CR>", "<LF>.<LF>", "<LF>.<CR><LF>", "<CR>.<CR><LF>", "<CR><LF>.<LF>"})


def bare(payload: bytes, char: bytes) -> bool:
    """Whether ``payload`` holds ``char`` (b"\\r" or b"\\n") outside a CRLF pair."""
    return char in payload.replace(b"\r\n", b"")


@dataclass(frozen=True, slots=True)
class Envelope:
    sender: str
    recipient: str


def payload(variant: Variant, envelope: Envelope, token: str) -> bytes:
    """The probe message: first part, the variant, a smuggled transaction, the real end."""
    def message(subject: str, text: str) -> bytes:
        return (f"From: <{envelope.sender or 'mailer-daemon@' + EHLO_NAME}>\r\nTo: <{envelope.recipient}>\r\n"
                f"Subject: {subject}\r\nMessage-ID: <{token}.{subject.count('(')}@{EHLO_NAME}>\r\n"
                f"\r\n{text}").encode()
    smuggled = (f"MAIL FROM:<{envelope.sender}>\r\nRCPT TO:<{envelope.recipient}>\r\nDATA\r\n").encode() + message(
        "hardmail audit probe (smuggled)", "If you read this, the server split a message at a fake end of data.\r\n")
    if variant.at_start:
        return variant.fake_end + smuggled + b"\r\n.\r\n"
    first = message("hardmail audit probe", f"SMTP smuggling probe ({variant.name}) by hardmail audit; "
                    "it can be deleted.\r\nThe variant follows")
    if variant.name.startswith("bare"):
        return first + variant.fake_end + b"and this line goes on after it.\r\n.\r\n"
    return first + variant.fake_end + smuggled + b"\r\n.\r\n"


@dataclass
class Outcome:
    variant: Variant
    via: str  # "DATA" or "BDAT"
    replies: list[SmtpReply] = field(default_factory=list)
    marker_seen: bool = False
    payload: bytes = b""
    problem: str = ""  # the transaction could not be started (evidence)
    later: bool = False  # the problem is a temporary refusal (4xx): this variant was not checked

    @property
    def accepted(self) -> bool:
        return bool(self.replies) and 200 <= self.replies[0].code < 300

    @property
    def split(self) -> bool:
        return self.accepted and len(self.replies) > 1 and not self.variant.name.startswith("bare")

    def describe(self) -> str:
        seen = "; ".join(str(r) for r in self.replies[:6]) or "no reply"
        return f"{self.via} with {self.variant.name}: {seen}"


# --- one target ---------------------------------------------------------------------------------


class Smuggler:
    """Sends the probe messages of one target, reusing the session while the marker says it is sane."""

    def __init__(self, ctx: AuditContext, target: ProbeTarget, envelope: Envelope, token: str) -> None:
        self.ctx, self.target, self.envelope, self.token = ctx, target, envelope, token
        self.session: Talk | None = None
        self.postfix = False
        self.chunking = False

    async def _session(self) -> Talk:
        if self.session is not None and not self.session.link.closed:
            return self.session
        session = await open_smtp(self.ctx, self.target, self.ctx.source_ips[0])
        if self.target.kind != "smtp":
            assert self.ctx.login is not None
            await upgrade(session)
            reply = await auth_plain(session, self.ctx.login)
            if not session.authenticated:
                await quit_politely(session)
                raise SessionError(f"AUTH of the probe account answered {reply or 'nothing'}")
        self.postfix = self.postfix or session.looks_like_postfix()
        self.chunking = session.offers("CHUNKING")
        self.session = session
        return session

    async def probe(self, variant: Variant, via: str) -> Outcome:
        outcome = Outcome(variant, via, payload=payload(variant, self.envelope, self.token))
        session = await self._session()
        outcome.problem, outcome.later = await self._envelope(session, via)
        if outcome.problem:
            await session.link.command("RSET")
            return outcome
        multiline = _multiline_ehlo(session)
        marker = f"EHLO {EHLO_NAME}\r\n".encode() if multiline else b"QUIT\r\n"
        body = outcome.payload
        data = body if via == "DATA" else f"BDAT {len(body)} LAST\r\n".encode() + body
        if not await session.link.send(data + marker):
            outcome.problem = "the server closed the connection before the message was sent"
            return outcome
        await self._read(session, outcome, multiline)
        if len(outcome.replies) == 1 and temporary(outcome.replies[0]):  # 4xx: neither taken nor refused
            outcome.problem = f"{via} with {variant.name} answered {outcome.replies[0]} (a temporary refusal)"
            outcome.later = True
        if not (multiline and outcome.marker_seen):
            await session.link.close()
        return outcome

    async def _envelope(self, session: Talk, via: str) -> tuple[str, bool]:
        """"" when the content may be sent, else what went wrong and whether it was a 4xx."""
        commands = [f"MAIL FROM:<{self.envelope.sender}>", f"RCPT TO:<{self.envelope.recipient}>"]
        for command in commands + ([] if via == "BDAT" else ["DATA"]):
            reply = await session.link.command(command)
            if reply is None or not (reply.positive if command != "DATA" else reply.code == 354):
                return f"{command} answered {reply or 'nothing'}", temporary(reply)
        return "", False

    async def _read(self, session: Talk, outcome: Outcome, multiline: bool) -> None:
        for _ in range(MAX_REPLIES):
            reply = await session.link.read_smtp_reply()
            if reply is None:
                return
            if (multiline and reply.code == 250 and len(reply.lines) > 1) or (not multiline and reply.code == 221):
                outcome.marker_seen = True
                return
            outcome.replies.append(reply)

    async def finish(self) -> None:
        if self.session is not None:
            await quit_politely(self.session)


def _multiline_ehlo(session: Talk) -> bool:
    return session.ehlo is not None and len(session.ehlo.lines) > 1


def envelope_for(ctx: AuditContext, target: ProbeTarget) -> Envelope | str:
    """Who the probe messages go to (the probe account or postmaster), or why none can be sent."""
    if target.kind != "smtp":
        if ctx.login is None:
            return "no probe login given (submission needs AUTH)"
        return Envelope(ctx.login.address, ctx.login.address)
    if ctx.own_server and ctx.login is not None:
        return Envelope("", ctx.login.address)
    if ctx.local_domain is None:
        return "no local domain given (the probe messages go to postmaster@ it)"
    return Envelope("", f"postmaster@{ctx.local_domain}")


async def probe_target(ctx: AuditContext, target: ProbeTarget) -> list[Finding]:
    envelope = envelope_for(ctx, target)
    if isinstance(envelope, str):
        return [check.skipped(envelope, target=target.label) for check in CHECKS]
    smuggler = Smuggler(ctx, target, envelope, secrets.token_hex(6))
    outcomes: list[Outcome] = []
    try:
        for via in ("DATA", "BDAT"):
            for variant in VARIANTS if target.kind == "smtp" else SUBMISSION_VARIANTS:
                await smuggler._session()
                if via == "BDAT" and not smuggler.chunking:
                    break
                outcomes.append(await smuggler.probe(variant, via))
    except SessionError as exc:
        if not outcomes:
            return [check.skipped(str(exc), target=target.label) for check in CHECKS]
    finally:
        await smuggler.finish()
    return judge(target, outcomes, smuggler.postfix, smuggler.chunking)


def judge(target: ProbeTarget, outcomes: list[Outcome], postfix: bool, chunking: bool) -> list[Finding]:
    fix = POSTFIX_FIX if postfix else None
    data = [o for o in outcomes if o.via == "DATA"]
    bdat = [o for o in outcomes if o.via == "BDAT"]
    findings = [_split_finding(DATA, target, data, fix)]
    if not chunking:
        findings.append(BDAT.skipped("CHUNKING is not offered", target=target.label))
    else:
        findings.append(_split_finding(BDAT, target, bdat, fix))
    findings.append(_bare_finding(BARE_LF, b"\n", Severity.MEDIUM, target, outcomes,
                                  POSTFIX_BARE_FIX if postfix else None))
    findings.append(_bare_finding(BARE_CR, b"\r", Severity.LOW, target, outcomes, None))
    return findings


def _problems(outcomes: list[Outcome]) -> str:
    return "; ".join(sorted({o.problem for o in outcomes if o.problem}))


def _split_finding(check: CheckInfo, target: ProbeTarget, outcomes: list[Outcome], fix: str | None) -> Finding:
    tried = [o for o in outcomes if not o.problem]
    if not tried:
        return check.skipped(_problems(outcomes) or "no probe message could be sent", target=target.label)
    split = [o for o in tried if o.split]
    if split:
        evidence = (f"{len(split)} of {len(tried)} fake ends of data ended the message and the smuggled "
                    f"commands were answered: {split[0].describe()}")
        return check.finding(Severity.CRITICAL, evidence, fix, target=target.label,
                             details=[o.describe() for o in split])
    later = [o for o in outcomes if o.later]
    if later:
        return _not_checked(check, target, later)
    accepted = sum(o.accepted for o in tried)
    return check.ok(f"{len(tried)} variants sent: none ended the message early ({accepted} accepted "
                    f"whole, {len(tried) - accepted} refused)", target=target.label)


def _bare_finding(check: CheckInfo, char: bytes, severity: Severity, target: ProbeTarget,
                  outcomes: list[Outcome], fix: str | None) -> Finding:
    holding = [o for o in outcomes if not o.problem and bare(o.payload, char)]
    if not holding:
        return check.skipped(_problems(outcomes) or "no probe message could be sent", target=target.label)
    accepted = [o for o in holding if o.accepted and not o.split]  # a split one is smuggling.data/bdat's
    later = [o for o in outcomes if o.later and bare(o.payload, char)]
    if not accepted and later:
        return _not_checked(check, target, later)
    if not accepted:
        return check.ok(f"none of {len(holding)} messages with a bare {_name(char)} was accepted whole: "
                        f"{holding[0].describe()}", target=target.label)
    evidence = (f"{len(accepted)} of {len(holding)} messages with a bare {_name(char)} were accepted whole, "
                f"without splitting: {accepted[0].describe()}")
    return check.finding(severity, evidence, fix, target=target.label, details=[o.describe() for o in accepted])


def _not_checked(check: CheckInfo, target: ProbeTarget, later: list[Outcome]) -> Finding:
    """A 4xx is no verdict: the server may take the same content a minute later."""
    return check.skipped(f"{len(later)} probe messages met a temporary refusal, so they were not checked: "
                         f"{later[0].problem}", target=target.label)


def _name(char: bytes) -> str:
    return "LF" if char == b"\n" else "CR"


async def run(ctx: AuditContext) -> list[Finding]:
    targets = ctx.targets_of(*SMTP_KINDS)
    if not ctx.running or not targets:
        why = "no server running" if not ctx.running else "no SMTP listener to probe"
        return [check.skipped(why) for check in CHECKS]
    findings: list[Finding] = []
    for target in targets:
        findings += await probe_target(ctx, target)
    return findings
