"""Open relay probes (practice 8): does a listener accept, at RCPT, a recipient whose destination is
another domain, written plainly or hidden in one of the address forms relay testers have used for
decades (percent hack, source routes, quoted local parts, ``@`` in the local part, bang paths, IP
literals, trailing dots, case variants)?

Each form is tried at RCPT, never further (no DATA: nothing is delivered): the forms are the
RCPTs of one MAIL transaction (RFC 5321 4.5.3.1.8 allows 100), each reply judged on its own, with
a fresh session after a few refusals, on every SMTP target (smtp, submission, submissions) and from
every source address of ``ctx.source_ips``; once without AUTH and once with the probe account's
AUTH (inside TLS only). A 4xx reply (greylisting, 421/450/451/452/454) answers nothing: those
forms are reported as not checked (INFO), never as refused.

How a 2xx is judged. A *direct* form names the external domain as its domain (``user@example.com``,
``@local:user@example.com``): accepting it is relaying. A *hidden* form ends in a local domain
(``user%example.com@local``): a server may accept it as a local address it will deliver locally
(or bounce), which is not a relay. As Postfix's own address resolver does (it resolves the
address the way it will be delivered, then applies reject_unauth_destination), the probe asks the
question at the same place with a *control*: a random local part at the same domain. When the
control is refused (no such user) but the hidden form is accepted, the server read the form as
something other than a local mailbox: relay. When the control is accepted too (a catch-all
domain), the RCPT cannot tell; that is reported as low with the evidence.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field

from hardmail.ops.audit.context import AuditContext, ProbeLogin, ProbeTarget
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

OPEN = CheckInfo(
    "relay.open", 8, "Open relay (plain external recipients)",
    "A server that accepts mail for other domains from anyone without AUTH is an open relay: spammers "
    "find it within hours and its address lands on every blocklist. Relaying for a trusted network is "
    "as configured; relaying seen from a loopback source of another server (--target) is medium, as "
    "loopback is usually trusted there (Postfix mynetworks): probe it from a public address to tell.",
    "Relay only for authenticated users and the networks in relay.trusted_networks (keep that list "
    "small); on Postfix: smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, "
    "reject_unauth_destination")
DISGUISED = CheckInfo(
    "relay.disguised", 8, "Open relay through disguised address forms",
    "Percent hacks, bang paths, quoted local parts and '@' inside the local part make some servers "
    "deliver to another domain while the address seems local. Accepted when a random address of the "
    "same domain is refused means the server relays it: critical without AUTH. Accepted like every "
    "address of a catch-all domain cannot be told apart at RCPT: low.",
    "Refuse recipients whose local part contains '%', '!', '@' or a source route: hardmail does; "
    "on Postfix: allow_percent_hack = no, swap_bangpath = no, resolve_dequoted_address = yes, and "
    "reject_unauth_destination")
AUTHENTICATED = CheckInfo(
    "relay.authenticated", 8, "Relay after AUTH",
    "Relaying for authenticated users is what submission is for. On the MX listener (port 25) it "
    "is a finding only when this configuration says AUTH must not be offered there "
    "(smtp.auth_on_mx = false): then stolen passwords relay through the MX too.",
    "Keep smtp.auth_on_mx = false and let users submit on 587/465")
CHECKS: tuple[CheckInfo, ...] = (OPEN, DISGUISED, AUTHENTICATED)

SMTP_KINDS = ("smtp", "submission", "submissions")
MAX_RECONNECTS = 5
# A new session after this many refused recipients: servers slow down or drop sessions with many
# errors (Postfix sleeps smtpd_error_sleep_time after smtpd_soft_error_limit = 10 errors)
REFUSALS_PER_SESSION = 8
MAX_RCPTS = 100  # RFC 5321 4.5.3.1.8: a server must take at least 100 recipients in one transaction
_V4_TEST_NET = "192.0.2.25"  # RFC 5737 TEST-NET-1: never one of the target's addresses
_V6_DOC_NET = "2001:db8::25"  # RFC 3849


@dataclass(frozen=True, slots=True)
class Form:
    name: str
    address: str
    hidden: bool  # the address ends in a local domain and hides the external one
    domain: str | None = None  # for hidden forms: the (local) domain a control is tried at; None: no domain


def address_forms(user: str, ext: str, local: str | None, own_literal: str) -> list[Form]:
    """The address forms tried; ``own_literal`` is the target's own address as a literal ("[127.0.0.1]")."""
    forms = [
        Form("plain", f"{user}@{ext}", False),
        Form("upper case", f"{user.upper()}@{ext.upper()}", False),
        Form("mixed case", f"{user.capitalize()}@{ext.capitalize()}", False),
        Form("trailing dot", f"{user}@{ext}.", False),
        Form("quoted local part", f'"{user}"@{ext}', False),
        Form("IPv4 literal", f"{user}@[{_V4_TEST_NET}]", False),
        Form("IPv6 literal", f"{user}@[IPv6:{_V6_DOC_NET}]", False),
        Form("percent hack, own IP literal", f"{user}%{ext}@{own_literal}", True, own_literal),
        Form("@ in local part, own IP literal", f"{user}@{ext}@{own_literal}", True, own_literal),
        Form("bang path, no domain", f"{ext}!{user}", True, None),
    ]
    if local is not None:
        forms += _local_forms(user, ext, local)
    return forms


def _local_forms(user: str, ext: str, local: str) -> list[Form]:
    return [
        Form("source route", f"@{local}:{user}@{ext}", False),
        Form("source route, two hops", f"@{local},@{local}:{user}@{ext}", False),
        Form("double @, local first", f"{user}@{local}@{ext}", False),
        Form("percent hack", f"{user}%{ext}@{local}", True, local),
        Form("percent hack, upper case", f"{user.upper()}%{ext.upper()}@{local.upper()}", True, local),
        Form("percent hack, trailing dot", f"{user}%{ext}@{local}.", True, local),
        Form("quoted @", f'"{user}@{ext}"@{local}', True, local),
        Form("quoted percent hack", f'"{user}%{ext}"@{local}', True, local),
        Form("@ in local part", f"{user}@{ext}@{local}", True, local),
        Form("escaped @", f"{user}\\@{ext}@{local}", True, local),
        Form("bang path", f"{ext}!{user}@{local}", True, local),
        Form("quoted bang path", f'"{ext}!{user}"@{local}', True, local),
        Form("bang path through local", f"{local}!{ext}!{user}", True, None),
    ]


def own_literal(host: str) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"[{_V4_TEST_NET}]"  # a host name: no literal of its own known; any literal is foreign
    return f"[IPv6:{address}]" if address.version == 6 else f"[{address}]"


def control_address(token: str, domain: str | None) -> str:
    return f"audit-none-{token}@{domain}" if domain else f"audit-none-{token}"


# --- one session's tries ------------------------------------------------------------------------


class MailRefused(Exception):
    """MAIL FROM was refused: no recipient can be relayed in this session."""

    def __init__(self, reply: SmtpReply) -> None:
        super().__init__(str(reply))
        self.reply = reply


@dataclass
class Attempt:
    """The tries of one target from one source, with or without AUTH."""

    source: str
    replies: dict[str, SmtpReply | None] = field(default_factory=dict)  # address -> RCPT reply
    failure: str = ""  # why the tries could not run (evidence)
    mail_refused: SmtpReply | None = None
    auth_reply: SmtpReply | None = None
    auth_offered: bool = True

    def accepted(self, address: str) -> bool:
        reply = self.replies.get(address)
        return reply is not None and 200 <= reply.code < 300

    def not_checked(self, forms: list[Form]) -> list[str]:
        """The 4xx answers among ``forms`` (and a 4xx to MAIL): those forms were not checked."""
        if temporary(self.mail_refused):
            return [f"MAIL FROM answered {self.mail_refused} from {self.source}"]
        return [f"{f.name}: RCPT TO:<{f.address}> answered {self.replies[f.address]} from {self.source}"
                for f in forms if temporary(self.replies.get(f.address))]


class Prober:
    """Tries recipients as several RCPTs of one MAIL transaction (RFC 5321 4.5.3.1.8: up to 100),
    reconnecting when the server drops and starting a fresh session after a few refusals."""

    def __init__(self, ctx: AuditContext, target: ProbeTarget, source: str, login: ProbeLogin | None) -> None:
        self.ctx, self.target, self.source, self.login = ctx, target, source, login
        self.session: Talk | None = None
        self.reconnects = 0
        self.refusals = 0
        self.recipients = 0  # RCPTs in the open transaction; 0: no MAIL given yet
        # RFC 2606 .invalid: a sender domain with no SPF record to look up; the null sender when refused
        self.senders = [login.address] if login else [f"audit-probe@{EHLO_NAME}", ""]
        self.auth_reply: SmtpReply | None = None

    async def _session(self) -> Talk:
        if self.session is not None and not self.session.link.closed:
            return self.session
        if self.session is not None:
            self.reconnects += 1
            if self.reconnects > MAX_RECONNECTS:
                raise SessionError(f"{self.target.label} dropped the connection {MAX_RECONNECTS} times")
        self.recipients = 0
        self.session = await open_smtp(self.ctx, self.target, self.source)
        if self.login is not None:
            await self._log_in(self.session, self.login)
        return self.session

    async def _log_in(self, session: Talk, login: ProbeLogin) -> None:
        await upgrade(session)
        if not session.auth_mechanisms():
            raise AuthNotOffered()
        self.auth_reply = await auth_plain(session, login)
        if not session.authenticated:
            raise SessionError(f"AUTH of the probe account answered {self.auth_reply or 'nothing'}")

    async def rcpt(self, address: str) -> SmtpReply | None:
        for _ in range(2):  # once more on a new connection when the server dropped this one
            session = await self._session()
            if self.recipients == 0 or self.recipients >= MAX_RCPTS:
                if self.recipients:
                    await session.link.command("RSET")
                if await self._mail(session) is None:
                    continue  # dropped: reconnect
            reply = await session.link.command(f"RCPT TO:<{address}>")
            if reply is not None:
                self.recipients += 1
                await self._count_refusal(session, reply)
                return reply
        return None

    async def _count_refusal(self, session: Talk, reply: SmtpReply) -> None:
        if reply.positive:
            return
        self.refusals += 1
        if self.refusals % REFUSALS_PER_SESSION == 0:
            await quit_politely(session)
            self.session = None  # the next try opens a fresh session (not a reconnect after a drop)

    async def _mail(self, session: Talk) -> SmtpReply | None:
        last: SmtpReply | None = None
        for sender in list(self.senders):
            last = await session.link.command(f"MAIL FROM:<{sender}>")
            if last is None:
                return None
            if last.positive:
                self.senders = [sender]  # keep the sender that works
                return last
            await session.link.command("RSET")
            if last.code == 530 and session.link.tls_version is None and session.offers("STARTTLS"):
                await upgrade(session)  # "STARTTLS first": the relay question is asked inside TLS
                return await self._mail(session)
        assert last is not None
        raise MailRefused(last)

    async def finish(self) -> None:
        if self.session is not None:
            if self.recipients and not self.session.link.closed:
                await self.session.link.command("RSET")  # nothing is sent
            await quit_politely(self.session)


class AuthNotOffered(Exception):
    """The listener offers no AUTH inside TLS."""


async def attempt(ctx: AuditContext, target: ProbeTarget, source: str, addresses: list[str],
                  login: ProbeLogin | None) -> Attempt:
    result = Attempt(source)
    prober = Prober(ctx, target, source, login)
    try:
        for address in addresses:
            result.replies[address] = await prober.rcpt(address)
    except MailRefused as exc:
        result.mail_refused = exc.reply
    except AuthNotOffered:
        result.auth_offered = False
    except SessionError as exc:
        result.failure = str(exc)
    finally:
        result.auth_reply = prober.auth_reply
        await prober.finish()
    return result


# --- judging ------------------------------------------------------------------------------------


def source_trust(ctx: AuditContext, source: str) -> str:
    """"trusted" (own server, in relay.trusted_networks), "loopback" (another server's loopback
    source: usually trusted there) or "untrusted"."""
    address = ipaddress.ip_address(source)
    if ctx.own_server:
        networks = (ipaddress.ip_network(n, strict=False) for n in ctx.config.relay.trusted_networks)
        return "trusted" if any(address in n for n in networks) else "untrusted"
    return "loopback" if address.is_loopback else "untrusted"


def _relayed(forms: list[Form], result: Attempt, token: str) -> tuple[list[Form], list[Form]]:
    """(relayed forms, hidden forms accepted like any address of their domain)."""
    relayed, ambiguous = [], []
    for form in forms:
        if not result.accepted(form.address):
            continue
        control = result.replies.get(control_address(token, form.domain)) if form.hidden else None
        if form.hidden and (result.accepted(control_address(token, form.domain)) or temporary(control)):
            ambiguous.append(form)
        else:
            relayed.append(form)
    return relayed, ambiguous


def _detail(form: Form, result: Attempt, token: str | None, how: str) -> str:
    text = f"{form.name}: RCPT TO:<{form.address}> answered {result.replies[form.address]} from {result.source} {how}"
    if form.hidden and token is not None:
        control = control_address(token, form.domain)
        text += f" (control RCPT TO:<{control}> answered {result.replies.get(control) or 'nothing'})"
    return text


_SEVERITY_OF_TRUST = {"untrusted": Severity.CRITICAL, "loopback": Severity.MEDIUM, "trusted": Severity.OK}


def judge_unauthenticated(check: CheckInfo, ctx: AuditContext, target: ProbeTarget, forms: list[Form],
                          results: list[Attempt], token: str) -> Finding:
    details: list[str] = []
    severity = Severity.OK
    tried = [r for r in results if not r.failure]
    if not tried:
        return check.skipped("; ".join(r.failure for r in results) or "no source address", target=target.label)
    for result in tried:
        if result.mail_refused is not None:
            details.append(f"MAIL FROM refused from {result.source} without AUTH: {result.mail_refused}")
            continue
        relayed, ambiguous = _relayed(forms, result, token)
        trust = source_trust(ctx, result.source)
        how = "without AUTH" + ("" if trust == "untrusted" else f" ({trust} source)")
        details += [_detail(f, result, token, how) for f in relayed + ambiguous]
        if relayed:
            severity = min(severity, _SEVERITY_OF_TRUST[trust], key=lambda s: s.rank)
        elif ambiguous:
            severity = min(severity, Severity.LOW, key=lambda s: s.rank)
    sources = ", ".join(r.source for r in tried)
    later = [text for r in tried for text in r.not_checked(forms)]
    if later and severity is Severity.OK and not any(not d.startswith("MAIL FROM refused") for d in details):
        return _not_checked(check, target, forms, later)
    return _unauth_finding(check, target, forms, severity, details, sources)


def _not_checked(check: CheckInfo, target: ProbeTarget, forms: list[Form], later: list[str]) -> Finding:
    """Temporary refusals (4xx) are no answer to the relay question: not checked, never a pass."""
    return check.skipped(f"{len(later)} answers of {len(forms)} forms were temporary refusals, so the "
                         f"relay question was not answered: {later[0]}", target=target.label)


def _unauth_finding(check: CheckInfo, target: ProbeTarget, forms: list[Form], severity: Severity,
                    details: list[str], sources: str) -> Finding:
    accepted = [d for d in details if not d.startswith("MAIL FROM refused")]
    if severity is Severity.OK and not accepted:
        refused = details[0] if details else f"every one of {len(forms)} forms refused at RCPT"
        return check.ok(f"{len(forms)} address forms tried from {sources} without AUTH: {refused}",
                        target=target.label)
    if severity is Severity.OK:
        evidence = f"{len(accepted)} forms relayed, only for trusted sources (as configured): {accepted[0]}"
        return check.finding(Severity.OK, evidence, "", target=target.label, details=accepted)
    evidence = f"{len(accepted)} of {len(forms)} forms accepted without AUTH: {accepted[0]}"
    if severity is Severity.LOW:
        evidence += ("; the domain accepts any address (catch-all), so RCPT cannot tell local delivery "
                     "from relaying: send one test message to it and see where it goes")
    return check.finding(severity, evidence, target=target.label, details=accepted)


def judge_authenticated(ctx: AuditContext, target: ProbeTarget, forms: list[Form],
                        results: list[Attempt]) -> Finding:
    check = AUTHENTICATED
    tried = [r for r in results if not r.failure]
    if not tried:
        return check.skipped("; ".join(r.failure for r in results), target=target.label)
    if not any(r.auth_offered for r in tried):
        return check.ok("AUTH is not offered inside TLS: nobody relays here by AUTH", target=target.label)
    accepted = [_detail(f, r, None, "after AUTH") for r in tried if r.auth_offered and r.mail_refused is None
                for f in forms if r.accepted(f.address)]
    refused_mail = [r.mail_refused for r in tried if r.mail_refused is not None]
    later = [text for r in tried if r.auth_offered for text in r.not_checked(forms)]
    if not accepted and later:
        return _not_checked(check, target, forms, later)
    if not accepted:
        why = f"MAIL FROM refused: {refused_mail[0]}" if refused_mail else "every form refused at RCPT"
        return check.ok(f"{len(forms)} address forms tried after AUTH: {why}", target=target.label)
    evidence = f"{len(accepted)} of {len(forms)} forms accepted after AUTH: {accepted[0]}"
    if target.kind == "smtp" and ctx.own_server and not ctx.config.smtp.auth_on_mx:
        evidence += "; AUTH works on the MX listener although smtp.auth_on_mx = false"
        return check.finding(Severity.HIGH, evidence, target=target.label, details=accepted)
    note = " (as a submission listener should)" if target.kind != "smtp" else " (AUTH on the MX is allowed here)"
    return check.finding(Severity.OK, evidence + note, "", target=target.label, details=accepted)


# --- the module's entry -------------------------------------------------------------------------


async def probe_target(ctx: AuditContext, target: ProbeTarget) -> list[Finding]:
    token = secrets.token_hex(4)
    forms = address_forms(f"audit-relay-{token}", ctx.external_domain, ctx.local_domain, own_literal(target.host))
    direct = [f for f in forms if not f.hidden]
    hidden = [f for f in forms if f.hidden]
    controls = sorted({control_address(token, f.domain) for f in hidden})
    addresses = [f.address for f in forms] + controls
    plain = [await attempt(ctx, target, source, addresses, None) for source in ctx.source_ips]
    findings = [judge_unauthenticated(OPEN, ctx, target, direct, plain, token),
                judge_unauthenticated(DISGUISED, ctx, target, hidden, plain, token)]
    if ctx.login is None:
        findings.append(AUTHENTICATED.skipped("no probe login given", target=target.label))
    else:
        signed = [await attempt(ctx, target, source, [f.address for f in forms], ctx.login)
                  for source in ctx.source_ips]
        findings.append(judge_authenticated(ctx, target, forms, signed))
    return findings


async def run(ctx: AuditContext) -> list[Finding]:
    targets = ctx.targets_of(*SMTP_KINDS)
    if not ctx.running or not targets:
        why = "no server running" if not ctx.running else "no SMTP listener to probe"
        return [check.skipped(why) for check in CHECKS]
    findings: list[Finding] = []
    for target in targets:
        findings += await probe_target(ctx, target)
    return findings
