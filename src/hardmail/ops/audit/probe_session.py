"""Audit probes of what an SMTP session lets a client do: tell users apart with VRFY and EXPN
(practice 4), send lines longer than RFC 5321 4.5.3.1 allows (practice 12), send as another
address once signed in (practice 8), and whether a banned source is really refused (practice 12).

No probe here delivers mail anywhere but to the probe account itself (``ctx.login.address``): the
long text line is ended only when it goes to that account (else the connection is dropped inside
DATA, which discards the message), the MAIL FROM spoofing probe stops at RCPT and resets, and the
From: spoofing probe's message is addressed to the probe account. The probe account's password
is only ever sent inside TLS.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import time
from email.utils import formatdate

from hardmail.ops.audit.context import AuditContext, ProbeLogin, ProbeTarget
from hardmail.ops.audit.findings import CheckInfo, Finding, Severity
from hardmail.ops.audit.probe_wire import (
    EHLO_NAME,
    SessionError,
    Talk,
    auth_plain,
    connect,
    each_target,
    greet,
    open_secure,
    open_talk,
    quit_politely,
    temporary,
)
from hardmail.ops.log import log_event
from hardmail.policy.bans import Ban
from hardmail.server.access_hook import BAN_REFRESH_SECONDS
from hardmail.server.probe_link import SmtpReply
from hardmail.store.ports_access import AccessStore

VRFY = CheckInfo(
    "session.vrfy", 4, "VRFY does not tell users apart",
    "A VRFY that answers differently for existing and unknown addresses gives an attacker the list "
    "of accounts to guess passwords for and to send phishing to.",
    "Answer VRFY with 252 for every address (RFC 5321 3.5.3; hardmail always does); Postfix: "
    "disable_vrfy_command = yes; Exim: no acl_smtp_vrfy accept.",
)
EXPN = CheckInfo(
    "session.expn", 4, "EXPN does not tell users apart",
    "EXPN shows who is behind a list or an alias, or whether an address exists at all: a free "
    "directory of the organisation for spammers and password guessers.",
    "Turn EXPN off (502; hardmail never offers it); Postfix: disable_vrfy_command = yes also "
    "covers EXPN; Exim: no acl_smtp_expn accept.",
)
LONG_COMMAND = CheckInfo(
    "session.long_command", 12, "Overlong command lines refused",
    "RFC 5321 4.5.3.1.4 limits a command line to 512 octets but lets extensions raise it (ESMTP "
    "parameters and AUTH initial responses such as OAuth tokens need more), so up to 1000 is usual "
    "and only noted; a server that reads any length (1100 accepted: medium) buffers what a client "
    "sends without end and is easier to exhaust.",
    "hardmail: smtp.max_line_length = 1000 (the default); Postfix: line_length_limit = 2048 or less.",
)
LONG_TEXT = CheckInfo(
    "session.long_text_line", 12, "Overlong text lines in DATA refused",
    "RFC 5321 4.5.3.1.6 limits a text line to 1000 octets; a longer one is split or refused by servers "
    "further on, which changes the message (breaking its DKIM signature) or bounces it.",
    "Refuse or re-encode text lines over 1000 octets (Postfix splits them at line_length_limit).",
)
SPOOF_MAIL = CheckInfo(
    "session.spoof_mail_from", 8, "Signed-in users cannot send as others (MAIL FROM)",
    "A user (or a thief of one user's password) who may use any MAIL FROM can send as the boss, the "
    "bank or the helpdesk through your own, trusted, DKIM-signed server.",
    "hardmail refuses addresses outside the account and its aliases (553 5.7.1); Postfix: "
    "smtpd_sender_login_maps with reject_sender_login_mismatch.",
)
SPOOF_HEADER = CheckInfo(
    "session.spoof_from_header", 8, "Signed-in users cannot send as others (From:)",
    "The From: header is what people read; a server that checks only MAIL FROM still lets a user "
    "sign mail as somebody else.",
    "hardmail refuses a From: header outside the account and its aliases (553 5.7.1); Postfix: a "
    "header check or a milter that compares From: with the login.",
)
BANNED = CheckInfo(
    "session.banned_source", 12, "Banned sources refused",
    "A ban (by hand or after failed logins) that the listeners do not apply gives an attacker who was "
    "caught all the tries they want.",
    "Check `hardmail ban explain <address>` and that every listener runs hardmail's access hook; "
    "bans made with the CLI apply within 10 seconds (BAN_REFRESH_SECONDS).",
)
CHECKS: tuple[CheckInfo, ...] = (VRFY, EXPN, LONG_COMMAND, LONG_TEXT, SPOOF_MAIL, SPOOF_HEADER, BANNED)

# Octets with CRLF: 600 is beyond RFC 5321 4.5.3.1.4's 512 (noted in the evidence: extensions may raise
# it), 1100 beyond 1000 too (accepted: medium, a server that reads any length)
COMMAND_STEPS = ((600, Severity.OK), (1100, Severity.MEDIUM))
TEXT_LINE = 2000  # octets with CRLF: beyond 1000 (RFC 5321 4.5.3.1.6)
SUBMISSION_KINDS = ("submission", "submissions")
_LATER = " (a temporary refusal: not checked)"  # RFC 5321 4.2.1: a 4xx says "not now", not "no"


async def run(ctx: AuditContext) -> list[Finding]:
    smtp = ctx.targets_speaking("smtp")
    return [
        *await each_target(VRFY, ctx, smtp, "SMTP listener", lambda t: _enumeration(ctx, t, "VRFY")),
        *await each_target(EXPN, ctx, smtp, "SMTP listener", lambda t: _enumeration(ctx, t, "EXPN")),
        *await each_target(LONG_COMMAND, ctx, smtp, "SMTP listener", lambda t: _long_command(ctx, t)),
        *await each_target(LONG_TEXT, ctx, ctx.targets_of("smtp"), "MX (smtp) listener", lambda t: _long_text(ctx, t)),
        *await _spoofing(ctx),
        *await _banned_source(ctx),
    ]


def _addresses(ctx: AuditContext) -> tuple[str, str] | None:
    """An address the target has (the probe account, else postmaster, RFC 5321 4.5.1) and one it cannot have."""
    known = ctx.login.address if ctx.login else f"postmaster@{ctx.local_domain}" if ctx.local_domain else None
    if known is None:
        return None
    return known, f"audit-nobody-{secrets.token_hex(6)}@{known.rpartition('@')[2]}"


def _answer_key(reply: SmtpReply | None) -> tuple[int, str] | None:
    """The code and enhanced status code of a reply (the text may echo the address)."""
    if reply is None:
        return None
    first = reply.text.split()[0] if reply.text else ""
    return reply.code, first if first[:1].isdigit() and first.count(".") == 2 else ""


# --- VRFY and EXPN ----------------------------------------------------------------------------

async def _enumeration(ctx: AuditContext, target: ProbeTarget, verb: str) -> Finding:
    check = VRFY if verb == "VRFY" else EXPN
    addresses = _addresses(ctx)
    if addresses is None:
        return check.skipped("no address of the target is known (give --domain or --login)", target=target.label)
    talk = await open_talk(target, ctx)
    if isinstance(talk, str):
        return check.skipped(talk, target=target.label)
    try:
        known, unknown = addresses
        real, made_up = await talk.link.command(f"{verb} {known}"), await talk.link.command(f"{verb} {unknown}")
    finally:
        await quit_politely(talk)
    evidence = f"{target.label}: {verb} {known} answered {real}; {verb} {unknown} (made up) answered {made_up}"
    if real is None or made_up is None or temporary(real) or temporary(made_up):
        return check.skipped(evidence + _LATER * (temporary(real) or temporary(made_up)), target=target.label)
    if _answer_key(real) != _answer_key(made_up):
        return check.finding(Severity.MEDIUM, evidence + ": the answers tell users apart", target=target.label)
    return check.ok(evidence, target=target.label)


# --- long lines ---------------------------------------------------------------------------------

async def _long_command(ctx: AuditContext, target: ProbeTarget) -> Finding:
    talk = await open_talk(target, ctx)
    if isinstance(talk, str):
        return LONG_COMMAND.skipped(talk, target=target.label)
    said: list[str] = []
    severity = Severity.OK
    try:
        for octets, rating in COMMAND_STEPS:
            reply = await talk.link.command("NOOP " + "x" * (octets - 7))  # RFC 5321 4.1.1.9: NOOP may take a string
            said.append(f"a {octets}-octet NOOP line answered {reply or 'nothing (connection closed)'}")
            if temporary(reply):
                return LONG_COMMAND.skipped(f"{target.label}: {'; '.join(said)}{_LATER}", target=target.label)
            if reply is None or not reply.positive:
                break
            severity = rating
    finally:
        await quit_politely(talk)
    evidence = f"{target.label}: {'; '.join(said)}"
    if severity is Severity.OK:
        return LONG_COMMAND.ok(evidence, target=target.label)
    return LONG_COMMAND.finding(severity, evidence, target=target.label)


async def _long_text(ctx: AuditContext, target: ProbeTarget) -> Finding:
    recipient = ctx.login.address if ctx.login else f"postmaster@{ctx.local_domain}" if ctx.local_domain else None
    if recipient is None:
        return LONG_TEXT.skipped("no address of the target is known (give --domain or --login)", target=target.label)
    talk = await open_talk(target, ctx)
    if isinstance(talk, str):
        return LONG_TEXT.skipped(talk, target=target.label)
    try:
        severity, said = await _send_long_text(ctx, talk, recipient, may_deliver=ctx.login is not None)
    finally:
        await quit_politely(talk)
    evidence = f"{target.label}: a {TEXT_LINE}-octet text line in DATA to {recipient}: {said}"
    if severity is Severity.INFO:
        return LONG_TEXT.skipped(evidence, target=target.label)
    return LONG_TEXT.finding(severity, evidence, "" if severity is Severity.OK else None, target=target.label)


async def _send_long_text(ctx: AuditContext, talk: Talk, recipient: str, *, may_deliver: bool) -> tuple[Severity, str]:
    for command in ("MAIL FROM:<>", f"RCPT TO:<{recipient}>", "DATA"):
        reply = await talk.link.command(command)
        if reply is None or not reply.positive:
            return Severity.INFO, f"{command} answered {reply or 'nothing'}"
    head = _message_head(recipient, recipient, "long text line probe")
    await talk.link.send(head + b"x" * (TEXT_LINE - 2) + b"\r\n")
    early = await talk.link.read_pending(quiet=min(1.0, ctx.timeout))
    if early.startswith(b"4"):
        return Severity.INFO, f"answered {early[:200].decode('utf-8', 'replace').strip()}{_LATER}"
    if early or talk.link.closed:  # refused while the message came in: decided without ending it
        return Severity.OK, f"answered {early[:200].decode('utf-8', 'replace').strip() or 'by closing'} before the end"
    if not may_deliver:
        return Severity.INFO, ("the server read it without answering; the message was not ended (it would be "
                               "delivered): give --login to let the probe send it to its own account")
    reply = await talk.link.command(b"This message is a hardmail audit probe; it can be deleted.\r\n.")
    if temporary(reply):
        return Severity.INFO, f"the end of data answered {reply}{_LATER}"
    if reply is not None and reply.positive:
        return Severity.LOW, f"the message was accepted ({reply})"
    return Severity.OK, f"the end of data answered {reply or 'nothing'}"


def _message_head(sender: str, recipient: str, what: str) -> bytes:
    return (f"From: <{sender}>\r\nTo: <{recipient}>\r\nSubject: hardmail audit: {what}\r\n"
            f"Date: {formatdate()}\r\nMessage-ID: <audit-{secrets.token_hex(8)}@{EHLO_NAME}>\r\n\r\n").encode()


# --- sending as another address -----------------------------------------------------------------

async def _spoofing(ctx: AuditContext) -> list[Finding]:
    targets, login = ctx.targets_of(*SUBMISSION_KINDS), ctx.login
    why = ("no server is running" if not ctx.running else "no submission listener to probe" if not targets
           else "no probe login given (--login)" if login is None else "")
    if why or login is None:
        return [SPOOF_MAIL.skipped(why), SPOOF_HEADER.skipped(why)]
    pairs = await asyncio.gather(*(_spoof(ctx, target, login) for target in targets))
    return [finding for pair in pairs for finding in pair]


def nobody_address(login: ProbeLogin) -> str:
    """An address of the login's domain that exists nowhere, so that the login cannot own it (not
    as an alias either): a server that lets a user send as it lets them send as anyone."""
    return f"audit-nobody-{secrets.token_hex(6)}@{login.address.rpartition('@')[2]}"


async def _spoof(ctx: AuditContext, target: ProbeTarget, login: ProbeLogin) -> tuple[Finding, Finding]:
    label = target.label
    talk = await open_secure(target, ctx)
    if isinstance(talk, str):
        return SPOOF_MAIL.skipped(talk, target=label), SPOOF_HEADER.skipped(talk, target=label)
    try:
        problem = await _sign_in(talk, login)
        if problem:
            return SPOOF_MAIL.skipped(problem, target=label), SPOOF_HEADER.skipped(problem, target=label)
        nobody = nobody_address(login)
        return await _spoof_envelope(talk, login, nobody), await _spoof_header(talk, login, nobody)
    finally:
        await quit_politely(talk)


async def _sign_in(talk: Talk, login: ProbeLogin) -> str:
    """AUTH PLAIN as the probe account, inside TLS only; "" when signed in, else what went wrong."""
    try:
        reply = await auth_plain(talk, login)
    except SessionError:  # never the password in clear text
        return "no TLS, so the probe did not sign in"
    if not talk.authenticated:
        return f"the probe account {login.address} could not sign in: {reply or 'no answer'}"
    return ""


async def _spoof_envelope(talk: Talk, login: ProbeLogin, nobody: str) -> Finding:
    label = talk.target.label
    said = (f"signed in as {login.address} on {label}: MAIL FROM:<{nobody}> (an address that exists "
            "nowhere, so no account owns it) answered ")
    mail = await talk.link.command(f"MAIL FROM:<{nobody}>")
    said += str(mail or "nothing")
    if temporary(mail):
        await talk.link.command("RSET")
        return SPOOF_MAIL.skipped(said + _LATER, target=label)
    if mail is None or not mail.positive:
        return SPOOF_MAIL.ok(said, target=label)
    rcpt = await talk.link.command(f"RCPT TO:<{login.address}>")  # some servers judge the sender at RCPT
    await talk.link.command("RSET")  # stop here: nothing is sent
    said += f"; RCPT TO:<{login.address}> answered {rcpt or 'nothing'}"
    if temporary(rcpt):
        return SPOOF_MAIL.skipped(said + _LATER, target=label)
    if rcpt is not None and rcpt.positive:
        return SPOOF_MAIL.finding(Severity.HIGH, said + " (the probe reset before DATA): a signed-in user "
                                  "may send as any address", target=label)
    return SPOOF_MAIL.ok(said, target=label)


async def _spoof_header(talk: Talk, login: ProbeLogin, nobody: str) -> Finding:
    label = talk.target.label
    for command in (f"MAIL FROM:<{login.address}>", f"RCPT TO:<{login.address}>", "DATA"):
        reply = await talk.link.command(command)
        if reply is None or not reply.positive:
            await talk.link.command("RSET")
            return SPOOF_HEADER.skipped(f"{command} answered {reply or 'nothing'} on {label}", target=label)
    head = _message_head(nobody, login.address, "sender spoofing probe")
    reply = await talk.link.command(head + b"A signed-in user tried to send this as an address nobody owns; "
                                    b"it can be deleted.\r\n.")
    said = (f"signed in as {login.address} on {label}, a message to {login.address} with From: "
            f"<{nobody}> (an address that exists nowhere) answered {reply or 'nothing'}")
    if temporary(reply):
        return SPOOF_HEADER.skipped(said + _LATER, target=label)
    if reply is not None and reply.positive:
        return SPOOF_HEADER.finding(Severity.HIGH, said + f" (the server took it for delivery to {login.address}, "
                                    "the signed-in account)", target=label)
    return SPOOF_HEADER.ok(said, target=label)


# --- a banned source ----------------------------------------------------------------------------
#
# The probe bans a second loopback address of this machine (ctx.source_ips, e.g. 127.0.0.2) the way
# `hardmail ban add` does: an administrator's ban (scope "all") put into the access store. Like the
# CLI's, it reaches the running server through the server's ban snapshot, reloaded at most every
# BAN_REFRESH_SECONDS, so the probe connects from that address until it is refused or that time
# (and one more step) has passed. The ban ends by itself after BAN_SECONDS and is removed (or the
# record that was there before is put back) when the probe ends, whatever happens.

BAN_SECONDS = 300.0
BAN_WAIT = BAN_REFRESH_SECONDS
POLL_EVERY = 1.0  # seconds between tries (a try is a connection: stay far below the per-minute limit)


def ban_source(ctx: AuditContext) -> str | None:
    """A loopback address of ``ctx.source_ips`` other than the first, which the probes use."""
    for ip in ctx.source_ips[1:]:
        try:
            if ipaddress.ip_address(ip).is_loopback and ip != ctx.source_ips[0]:
                return ip
        except ValueError:
            continue
    return None


async def _banned_source(ctx: AuditContext) -> list[Finding]:
    source = ban_source(ctx)
    why = ("no server is running" if not ctx.running else "no listener to probe" if not ctx.targets
           else "only for the server's own audit (it bans an address in its database)"
           if ctx.store is None or not ctx.own_server
           else "no second loopback source address to ban (e.g. 127.0.0.2)" if source is None else "")
    if why or source is None or ctx.store is None:
        return [BANNED.skipped(why)]
    served_before = {t.label: await _served(ctx, t, source) for t in ctx.targets}
    found = [BANNED.skipped(f"{source} is refused before any ban ({served})", target=label)
             for label, served in served_before.items() if not served.startswith("served")]
    probed = [t for t in ctx.targets if served_before[t.label].startswith("served")]
    if probed:
        found += await _with_ban(ctx, ctx.store.access, source, probed)
    return found


async def _with_ban(ctx: AuditContext, access: AccessStore, source: str, targets: list[ProbeTarget]) -> list[Finding]:
    now = ctx.clock.now()
    before = await access.get_bans([source])
    await access.put_ban(Ban(source, "admin", "hardmail audit: temporary ban probe", now, now + BAN_SECONDS,
                             before[0].offences if before else 1, by_admin=True))
    log_event("audit.ban_probe", subject=source, action="banned", seconds=BAN_SECONDS)
    try:
        deadline = time.monotonic() + BAN_WAIT + ctx.timeout
        return [await _refused_in_time(ctx, target, source, deadline) for target in targets]
    finally:
        if before:
            await access.put_ban(before[0])  # the record that was there, offences and all
        else:
            await access.remove_ban(source)
        log_event("audit.ban_probe", subject=source, action="ban removed")


async def _refused_in_time(ctx: AuditContext, target: ProbeTarget, source: str, deadline: float) -> Finding:
    """Connect from ``source`` until ``target`` refuses it or the deadline passes (one target at a
    time: once one listener has reloaded its bans, the others of that process have too). Unlike the
    other probes, a 4xx greeting here is the refusal looked for: the source was served before the
    ban, and 421 is how servers (hardmail too) turn a banned source away (RFC 5321 3.8)."""
    while True:
        answer = await _served(ctx, target, source)
        if not answer.startswith("served"):
            return BANNED.ok(f"{target.label} refused the banned {source}: {answer}", target=target.label)
        if time.monotonic() >= deadline:
            waited = BAN_WAIT + ctx.timeout
            return BANNED.finding(Severity.HIGH, f"{target.label} still {answer} to {source} {waited:.0f} s "
                                  "after an administrator's ban of it", target=target.label)
        await asyncio.sleep(POLL_EVERY)


async def _served(ctx: AuditContext, target: ProbeTarget, source: str) -> str:
    """"served: <greeting>" when ``target`` greets a client at ``source``, else how it refused."""
    talk = await _greeted(ctx, target, source)
    if isinstance(talk, str):
        return talk
    await quit_politely(talk)
    return f"served: {talk.greeting[:120]!r}"


async def _greeted(ctx: AuditContext, target: ProbeTarget, source: str) -> Talk | str:
    try:
        link = await connect(target, ctx, source_ip=source)
    except (OSError, TimeoutError) as exc:
        return f"no connection ({type(exc).__name__})"
    talk = Talk(target, link)
    if await greet(talk):
        return talk
    await link.close()
    return f"greeting {talk.greeting!r}" if talk.greeting else "closed without a greeting"
