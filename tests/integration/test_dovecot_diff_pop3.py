"""Differential POP3 tests: the same sessions against a private Dovecot and ``hardmail serve``,
each scenario for a fresh account whose INBOX first gets the same messages (APPENDed over IMAP,
so both servers hold identical bytes). See support/pop3_diff.py for what is normalised.
``test_pop3_scenario_on_dovecot`` proves the scripts on Dovecot alone.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.dovecot import DovecotServer, running_dovecot, unavailable_reason
from support.hardmail_imap import HardmailServer, missing_imap_reason, running_hardmail
from support.imap_diff import Scenario, Target, run_scenario, unexpected_statuses
from support.imap_diff_scenarios import own_messages
from support.pop3_diff import P, Pop3Scenario, Reconnect, compare_pop3, run_pop3, unexpected

PASSWORD = "pop3 scenario password 7"
SCENARIOS = [
    # CAPA before STLS is not compared: hardmail lists no SASL mechanism before TLS (AUTH only inside TLS),
    # Dovecot lists SASL SCRAM-SHA-256 there (tests/unit/proto/pop3/test_connection.py checks hardmail's list).
    Pop3Scenario("capa-and-stls", (P("USER $USER", "-ERR"), P("STLS"), P("CAPA"), P("USER $USER"),
                                   P("PASS $PASS"), P("STAT"), P("QUIT")), port="pop3", login=False),
    Pop3Scenario("user-pass", (P("USER $USER"), P("PASS wrong-password", "-ERR"), P("USER $USER"), P("PASS $PASS"),
                               P("STAT")), login=False),
    Pop3Scenario("unknown-user", (P("USER nosuch@example.test"), P("PASS whatever", "-ERR")), login=False),
    Pop3Scenario("auth-plain", (P("AUTH PLAIN $PLAIN"), P("STAT")), login=False),
    Pop3Scenario("stat-list-uidl", (P("STAT"), P("LIST"), P("LIST 1"), P("LIST 99", "-ERR"), P("UIDL"),
                                    P("UIDL 2"), P("UIDL 0", "-ERR"), P("NOOP"))),
    Pop3Scenario("top-retr", (P("TOP 1 0"), P("TOP 2 3"), P("TOP 4 10000"), P("RETR 1"), P("RETR 4"),
                              P("RETR 3"), P("RETR 99", "-ERR"), P("TOP 1", "-ERR"))),
    Pop3Scenario("dele-rset-quit", (P("DELE 1"), P("DELE 1", "-ERR"), P("RETR 1", "-ERR"), P("STAT"), P("LIST"),
                                    P("RSET"), P("STAT"), P("DELE 2"), P("UIDL"), P("QUIT"), Reconnect(),
                                    P("STAT"), P("UIDL"), P("LIST"))),
    Pop3Scenario("no-dele-without-quit", (P("DELE 1"), Reconnect(), P("STAT"), P("UIDL"))),
    Pop3Scenario("uidl-stable", (P("UIDL"), P("QUIT"), Reconnect(), P("UIDL"), P("RETR 2"), P("QUIT"),
                                 Reconnect(), P("UIDL"))),
    Pop3Scenario("empty-mailbox", (P("STAT"), P("LIST"), P("UIDL"), P("RETR 1", "-ERR")), messages=0),
    Pop3Scenario("bad-commands", (P("STAT", "-ERR"), P("FOO", "-ERR"), P("PASS early", "-ERR"), P("USER $USER"),
                                  P("PASS $PASS"), P("LIST abc", "-ERR"), P("FOO", "-ERR"), P("DELE", "-ERR")),
                 login=False),
]
ACCOUNTS = {f"p{run}{index}@example.test": PASSWORD for run in "sd" for index in range(len(SCENARIOS))}
pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    with running_dovecot(users=ACCOUNTS) as server:
        yield server


@pytest.fixture(scope="module")
def hardmail() -> Iterator[HardmailServer]:
    reason = missing_imap_reason()
    if reason is not None:
        pytest.skip(reason)
    with tempfile.TemporaryDirectory(prefix="hardmail-diff-") as root, running_hardmail(Path(root), ACCOUNTS) as server:
        yield server


def _prepared(name: str, server: DovecotServer | HardmailServer, index: int,
              run: str) -> tuple[Target, tuple[int, int]]:
    """The target for scenario ``index``, its INBOX filled over IMAP."""
    ports = server.ports if isinstance(server, DovecotServer) else server
    target = Target(name, server.host, ports.imap, ports.imaps, server.client_context(),
                    f"p{run}{index}@example.test", PASSWORD, f"127.{100 + index}.{'sd'.index(run)}.2")
    fill = Scenario("fill", tuple(own_messages()[:SCENARIOS[index].messages]))
    assert unexpected_statuses(run_scenario(fill, target)) == []
    return target, (ports.pop3, ports.pop3s)


@pytest.mark.parametrize("index", range(len(SCENARIOS)), ids=[s.name for s in SCENARIOS])
def test_pop3_scenario_on_dovecot(dovecot: DovecotServer, index: int) -> None:
    target, ports = _prepared("dovecot", dovecot, index, "s")
    assert unexpected(run_pop3(SCENARIOS[index], target, ports)) == []


@pytest.mark.parametrize("index", range(len(SCENARIOS)), ids=[s.name for s in SCENARIOS])
def test_hardmail_pop3_answers_like_dovecot(dovecot: DovecotServer, hardmail: HardmailServer, index: int) -> None:
    theirs = run_pop3(SCENARIOS[index], *_prepared("dovecot", dovecot, index, "d"))
    ours = run_pop3(SCENARIOS[index], *_prepared("hardmail", hardmail, index, "d"))
    difference = compare_pop3(SCENARIOS[index].name, theirs, ours)
    if difference:
        pytest.fail(difference, pytrace=False)
