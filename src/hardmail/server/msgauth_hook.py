"""The session hook of message authentication and anti-spam.

On the MX listener, for clients that are neither authenticated nor in a trusted range: DNSBL and
reverse-DNS facts at connect, HELO checks and SPF at MAIL FROM, greylisting at RCPT TO, and at the end
of DATA DKIM/ARC/DMARC with ``Authentication-Results``/``Received-SPF``, DMARC enforcement and the
spam verdict. A refusal comes at the earliest point where the score is known and where no later
authentication could exempt the client. For authenticated and trusted clients: DKIM signing.
Every finding is logged with the session id and counted in :attr:`MsgAuthHook.counts`.
SPF, DKIM and ARC work runs in the bounded pool of :mod:`hardmail.msgauth.workers`, sized here from
``[inbound] worker_threads`` and shut down by :meth:`MsgAuthHook.close` when the server stops.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hardmail.config.schema import Config
from hardmail.core.address import Address
from hardmail.core.clock import Clock
from hardmail.core.replies import Reply
from hardmail.delivery.recipients import Resolution
from hardmail.msgauth import inbound, spamfacts, workers
from hardmail.msgauth.authres import Findings
from hardmail.msgauth.dns import DnsPythonResolver, Resolver
from hardmail.msgauth.signer import DkimSigner
from hardmail.msgauth.spf import SpfResult, check_helo, check_mail_from
from hardmail.ops.log import log_event
from hardmail.policy import greylist, spam
from hardmail.policy.relay import in_networks
from hardmail.proto.smtp.events import MailParams
from hardmail.server.hooks import MessageDecision, MessageFacts, SessionFacts, SessionHook
from hardmail.server.msgauth_scoring import message_verdict, weights_of
from hardmail.store.ports_msgauth import GreylistStore

DMARC_REJECTED = Reply(550, "5.7.1", "Message refused: it fails the sender domain's DMARC policy (p=reject)")
NO_AUTHOR = Reply(550, "5.7.1", "Message refused: its From: field names no author domain "
                             "(RFC 5322 3.6.2 requires one From: field with its author's address)")
# RFC 7489 6.6.2 and 6.7: an aligned check had a temporary error, so the DMARC result may yet be pass
DMARC_TEMPFAIL = Reply(451, "4.7.1", "DMARC check of the sender domain could not be completed "
                                     "(temporary DNS error); please try again later")


@dataclass
class _Session:
    trusted: bool
    findings: list[spam.Finding] = field(default_factory=list)  # connect, HELO and MAIL findings
    spf_helo: SpfResult | None = None
    spf_mailfrom: SpfResult | None = None
    mail_findings: list[spam.Finding] = field(default_factory=list)
    helo_checked: str | None = None


class MsgAuthHook(SessionHook):
    def __init__(self, config: Config, greylist_store: GreylistStore, resolver: Resolver, clock: Clock,
                 signer: DkimSigner) -> None:
        self.config = config
        self.greylist_store = greylist_store
        self.resolver = resolver
        self.clock = clock
        self.signer = signer
        self.counts: Counter[str] = Counter()  # "<check>.<result>" -> occurrences
        self._sessions: dict[str, _Session] = {}
        self._weights = weights_of(config.antispam)
        g = config.greylist
        self._greylist = greylist.GreylistSettings(g.initial_delay, g.unconfirmed_lifetime, g.confirmed_lifetime,
                                                   g.auto_whitelist_after, g.ipv4_prefix, g.ipv6_prefix)

    # ----- helpers ----------------------------------------------------------------------
    def _record(self, facts: SessionFacts, check: str, result: str, **detail: Any) -> None:
        self.counts[f"{check}.{result}"] += 1
        log_event(f"msgauth.{check}", session=facts.session_id, peer=facts.peer_ip, result=result, **detail)

    def _checked(self, facts: SessionFacts) -> _Session | None:
        """The session's state when it gets inbound checks (MX, unauthenticated, not trusted)."""
        session = self._sessions.get(facts.session_id)
        if session is None or session.trusted or facts.account is not None:
            return None
        return session

    def _early_refusal_allowed(self) -> bool:
        return not self.config.smtp.auth_on_mx  # else a later AUTH could still exempt the client

    def _spam_refusal(self, facts: SessionFacts, session: _Session, stage: str, early: bool) -> Reply | None:
        antispam = self.config.antispam
        score = spam.total(session.findings)
        if not antispam.enabled or (early and not self._early_refusal_allowed()):
            return None
        if spam.action(score, antispam.mark_threshold, antispam.reject_threshold) != "reject":
            return None
        self._record(facts, "spam", "reject", stage=stage, score=score)
        return spam.SPAM_REFUSED

    def _add_findings(self, facts: SessionFacts, session: _Session, found: list[spam.Finding]) -> None:
        for finding in found:
            self._record(facts, finding.check, "hit", detail=finding.detail, score=finding.score)
        session.findings.extend(found)

    # ----- connect and HELO --------------------------------------------------------------
    async def on_connect(self, facts: SessionFacts) -> Reply | None:
        if facts.listener != "smtp":
            return None
        trusted = in_networks(facts.peer_ip, self.config.relay.trusted_networks)
        session = self._sessions[facts.session_id] = _Session(trusted=trusted)
        if trusted or not self.config.antispam.enabled:
            return None
        blocklists = [spamfacts.Blocklist(b.zone, b.score, tuple(b.expect)) for b in self.config.antispam.dnsbl]
        listed, confirmed = await asyncio.gather(spamfacts.dnsbl_findings(self.resolver, facts.peer_ip, blocklists),
                                                 spamfacts.forward_confirmed_name(self.resolver, facts.peer_ip))
        found = list(listed)
        if confirmed is None:
            found.append(spam.Finding("no_fcrdns", "no forward-confirmed reverse DNS name", self._weights.no_fcrdns))
        self._add_findings(facts, session, found)
        return self._spam_refusal(facts, session, "connect", early=True)

    async def _helo_checks(self, facts: SessionFacts, session: _Session) -> None:
        """HELO findings, once per HELO name (checked at MAIL FROM, when the name is final)."""
        hostname = facts.helo or ""
        if session.helo_checked == hostname or not self.config.antispam.enabled:
            return
        session.helo_checked = hostname
        session.findings = [f for f in session.findings if not f.check.startswith("helo_")]  # a second EHLO
        addresses = await spamfacts.addresses_of(self.resolver, hostname.strip("[]")) if hostname else set()
        found = spam.helo_findings(hostname, addresses is None or bool(addresses), self._our_names(), self._weights)
        self._add_findings(facts, session, found)

    def _our_names(self) -> list[str]:
        return [self.config.server.hostname, self.config.inbound.authserv_id]

    # ----- MAIL FROM ------------------------------------------------------------------------
    async def on_mail(self, facts: SessionFacts, sender: Address | None, params: MailParams) -> Reply | None:
        session = self._checked(facts)
        if session is None:
            return None
        sender_text = sender.key if sender is not None else ""
        await self._helo_checks(facts, session)
        refusal = self._spam_refusal(facts, session, "helo", early=True)
        if refusal is not None:
            return refusal
        if self.config.inbound.enabled:
            await self._check_spf(facts, session, sender_text)
        if self.config.antispam.enabled:
            session.mail_findings = await self._mail_findings(session, sender)
            for finding in session.mail_findings:
                self._record(facts, finding.check, "hit", detail=finding.detail, score=finding.score)
        session_score = _Session(False, [*session.findings, *session.mail_findings])
        return self._spam_refusal(facts, session_score, "mail", early=False)

    async def _check_spf(self, facts: SessionFacts, session: _Session, sender: str) -> None:
        helo = facts.helo or ""
        receiver = self.config.server.hostname
        session.spf_helo = await check_helo(self.resolver, facts.peer_ip, helo, receiver) if helo else None
        session.spf_mailfrom = await check_mail_from(self.resolver, facts.peer_ip, sender, helo, receiver) \
            if sender else session.spf_helo
        for result in (session.spf_helo, session.spf_mailfrom if sender else None):
            if result is not None:
                self._record(facts, "spf", result.result, identity=result.identity, domain=result.domain)

    async def _mail_findings(self, session: _Session, sender: Address | None) -> list[spam.Finding]:
        spf_word = session.spf_mailfrom.result if session.spf_mailfrom else None
        found = spam.auth_findings(spf_word, (), None, self._weights)
        if sender is not None and await spamfacts.domain_accepts_mail(self.resolver, sender.domain) is False:
            found.append(spam.Finding("sender_domain_no_mx", f"{sender.domain} has no MX or address record",
                                      self._weights.sender_domain_no_mx))
        return found

    # ----- RCPT TO: greylisting ---------------------------------------------------------------
    async def on_rcpt(self, facts: SessionFacts, sender: str, recipient: Address,
                      resolution: Resolution) -> Reply | None:
        session = self._checked(facts)
        if session is None or not self.config.greylist.enabled:
            return None
        triplet = greylist.make_triplet(facts.peer_ip, sender, recipient.key, self._greylist)
        now = self.clock.now()
        try:
            bypass = await self._greylist_bypass(facts, session, triplet, sender, recipient)
            if bypass is not None:
                self._record(facts, "greylist", "bypass", reason=bypass)
                return None
            decision = greylist.decide(await self.greylist_store.get_triplet(triplet.key), now, self._greylist)
            await self.greylist_store.save_triplet(triplet.key, triplet.network, decision.state)
            if decision.newly_confirmed:
                await self._maybe_whitelist(facts, triplet, now)
        except Exception as exc:  # storage trouble must not stop mail: greylisting fails open
            self._record(facts, "greylist", "error", error=type(exc).__name__)
            return None
        self._record(facts, "greylist", decision.action, reason=decision.reason, network=triplet.network,
                     sender=sender, recipient=recipient.key)
        return greylist.GREYLISTED if decision.action == "defer" else None

    async def _greylist_bypass(self, facts: SessionFacts, session: _Session, triplet: greylist.Triplet,
                               sender: str, recipient: Address) -> str | None:
        g = self.config.greylist
        whitelisted = await self.greylist_store.network_whitelisted(triplet.network, self.clock.now())
        spf_pass = session.spf_mailfrom is not None and session.spf_mailfrom.result == "pass"
        bypass = greylist.BypassFacts(facts.peer_ip, sender, recipient.domain, facts.account is not None,
                                      session.trusted, spf_pass, whitelisted)
        return greylist.bypass_reason(bypass, g.whitelist, g.bypass_spf_pass, g.domains, g.exempt_domains)

    async def _maybe_whitelist(self, facts: SessionFacts, triplet: greylist.Triplet, now: float) -> None:
        """Count the triplet's sender among its network's distinct senders; whitelist at the threshold."""
        mark = greylist.sender_mark(triplet)
        await self.greylist_store.save_triplet(mark.key, mark.network, greylist.sender_mark_state(now, self._greylist))
        senders = await self.greylist_store.count_confirmed(mark.network, now)
        if greylist.network_earns_whitelist(senders, self._greylist):
            await self.greylist_store.whitelist_network(triplet.network, now + self._greylist.confirmed_lifetime)
            self._record(facts, "greylist", "network_whitelisted", network=triplet.network, senders=senders)

    # ----- end of DATA ----------------------------------------------------------------------------
    async def on_message(self, facts: SessionFacts, message: MessageFacts) -> MessageDecision | None:
        session = self._sessions.get(facts.session_id)
        if facts.account is not None or (session is not None and session.trusted):
            return await self._sign(facts, message)
        checked = self._checked(facts)
        if checked is None:
            return None
        return await self._inbound(facts, checked, message)

    async def _sign(self, facts: SessionFacts, message: MessageFacts) -> MessageDecision | None:
        if not self.config.dkim.sign:
            return None
        header, keys = await self.signer.sign(message.content)  # read in the signing worker thread
        if keys:
            self._record(facts, "dkim_sign", "signed", domain=keys[0].domain,
                         selectors=[k.selector for k in keys])
        return MessageDecision(headers=header) if header else None

    async def _inbound(self, facts: SessionFacts, session: _Session, message: MessageFacts) -> MessageDecision:
        raw = message.head  # checks of the header fields; DKIM and ARC read the file in their threads
        authserv_id = self.config.inbound.authserv_id or self.config.server.hostname
        findings = Findings(session.spf_helo, session.spf_mailfrom, (), None, None)
        report = inbound.InboundReport(findings, b"")
        if self.config.inbound.enabled:
            inbound_settings = self.config.inbound
            findings = await inbound.check_message(self.resolver, message.content, session.spf_helo,
                                                   session.spf_mailfrom, inbound_settings.max_dkim_signatures,
                                                   inbound_settings.verify_deadline)
            self._log_findings(facts, findings)
            report = inbound.report(findings, authserv_id, facts.peer_ip, message.sender, facts.helo or "")
        dmarc_decision = self._dmarc_decision(facts, findings)
        if dmarc_decision is not None and dmarc_decision.reply is not None:
            return dmarc_decision
        verdict = await workers.run(message_verdict, self.config.antispam, self._weights,  # reads the header
                                    [*session.findings, *session.mail_findings], findings, raw)
        if verdict.action != "accept":
            self._record(facts, "spam", verdict.action, score=verdict.score)
        if verdict.action == "reject":
            return MessageDecision(reply=spam.SPAM_REFUSED)
        folder = (dmarc_decision.folder if dmarc_decision else None) or verdict.folder
        return MessageDecision(headers=report.headers + verdict.headers, folder=folder,
                               drop_headers=verdict.drop_headers)

    def _log_findings(self, facts: SessionFacts, findings: Findings) -> None:
        for signature in findings.dkim:
            self._record(facts, "dkim", signature.result, domain=signature.domain, selector=signature.selector,
                         reason=signature.reason or None)
        if not findings.dkim:
            self._record(facts, "dkim", "none")
        if findings.arc is not None:
            self._record(facts, "arc", findings.arc.result, reason=findings.arc.reason or None)
        if findings.dmarc is not None:
            self._record(facts, "dmarc", findings.dmarc.result, domain=findings.dmarc.from_domain,
                         policy=findings.dmarc.policy, reason=findings.dmarc.reason or None)

    def _dmarc_decision(self, facts: SessionFacts, findings: Findings) -> MessageDecision | None:
        """RFC 7489 6.7: p=reject refused with 550 5.7.1, p=quarantine to Junk, unless set to mark only;
        a temporary error where the policy would be enforced is answered 451 4.7.1 (RFC 7489 6.6.2)."""
        result = findings.dmarc
        if result is not None and result.no_author:  # RFC 5322 3.6: exactly one From, with an author
            self._record(facts, "dmarc_policy", "no_author", reason=result.reason)
            return MessageDecision(reply=NO_AUTHOR)
        if result is not None and result.result == "temperror" and self._enforced(result.policy):
            self._record(facts, "dmarc_policy", "defer", domain=result.from_domain)
            return MessageDecision(reply=DMARC_TEMPFAIL)
        if result is None or result.result != "fail":
            return None
        if result.policy == "reject" and self.config.inbound.dmarc_reject == "enforce":
            self._record(facts, "dmarc_policy", "reject", domain=result.from_domain)
            return MessageDecision(reply=DMARC_REJECTED)
        if result.policy in ("reject", "quarantine") and self.config.inbound.dmarc_quarantine == "enforce":
            self._record(facts, "dmarc_policy", "quarantine", domain=result.from_domain)
            return MessageDecision(folder="Junk")
        return None

    def _enforced(self, policy: str) -> bool:
        """Whether a DMARC fail under ``policy`` would be refused or sent to Junk."""
        inbound_settings = self.config.inbound
        return (policy == "reject" and inbound_settings.dmarc_reject == "enforce") or \
            (policy in ("reject", "quarantine") and inbound_settings.dmarc_quarantine == "enforce")

    async def on_disconnect(self, facts: SessionFacts) -> None:
        self._sessions.pop(facts.session_id, None)

    def close(self) -> None:
        """At server stop: shut the message-authentication thread pool down."""
        workers.shutdown()


def build_msgauth_hook(config: Config, greylist_store: GreylistStore, clock: Clock,
                       resolver: Resolver | None = None) -> MsgAuthHook:
    """The hook with a resolver from the ``[dns]`` settings (or the one given) and a DKIM signer."""
    if resolver is None:
        resolver = DnsPythonResolver(config.dns.nameservers, config.dns.port, config.dns.timeout)
    workers.configure(config.inbound.worker_threads)
    signer = DkimSigner(config.data_dir, resolver, clock, config.dkim.rotation_grace_days * 86400,
                        config.dkim.publication_check_interval)
    return MsgAuthHook(config, greylist_store, resolver, clock, signer)
