"""Differential IMAP tests: every scenario of support/imap_diff_scenarios.py is run against a
private Dovecot (tests/support/dovecot.py) and against ``hardmail serve``, each time for a fresh
account, and the normalised responses must be equal (support/imap_normalise.py says what is
normalised and why; a scenario's ``why`` says where hardmail differs on purpose).

``test_scenario_on_dovecot`` runs each script on Dovecot alone and checks every command gets the
status the script expects, so the scripts are known to be right whatever hardmail does.
"""

from __future__ import annotations

import datetime
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.dovecot import DovecotServer, running_dovecot, unavailable_reason
from support.hardmail_imap import HardmailServer, missing_imap_reason, running_hardmail
from support.imap_diff import Scenario, Target, compare, run_scenario, unexpected_statuses
from support.imap_diff_scenarios import scenarios
from support.imap_normalise import Context, capability_extras, finish, normalise_command, parse_response

SCENARIOS = scenarios()
PASSWORD = "scenario password 1"
# a fresh account for each scenario and run: s<n> for Dovecot alone, d<n> for the comparison
ACCOUNTS = {f"{run}{index}@example.test": PASSWORD for run in "sd" for index in range(len(SCENARIOS))}
pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))


def _source(index: int, run: str) -> str:
    """Each scenario and run connects from its own 127.x.y.2: Dovecot's auth penalty and hardmail's
    bans are per address (and subnet), and a client address unequal to the server's is what both
    see as "not secured"."""
    return f"127.{10 + index}.{'sd'.index(run)}.2"


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


def _target(name: str, server: DovecotServer | HardmailServer, index: int, run: str) -> Target:
    ports = server.ports if isinstance(server, DovecotServer) else server
    return Target(name, server.host, ports.imap, ports.imaps, server.client_context(),
                  f"{run}{index}@example.test", PASSWORD, _source(index, run))


@pytest.mark.parametrize("index", range(len(SCENARIOS)), ids=[s.name for s in SCENARIOS])
def test_scenario_on_dovecot(dovecot: DovecotServer, index: int) -> None:
    transcript = run_scenario(SCENARIOS[index], _target("dovecot", dovecot, index, "s"))
    wrong = unexpected_statuses(transcript)
    if wrong:
        pytest.fail("\n".join(wrong), pytrace=False)


@pytest.mark.parametrize("index", range(len(SCENARIOS)), ids=[s.name for s in SCENARIOS])
def test_hardmail_answers_like_dovecot(dovecot: DovecotServer, hardmail: HardmailServer, index: int) -> None:
    scenario: Scenario = SCENARIOS[index]
    theirs = run_scenario(scenario, _target("dovecot", dovecot, index, "d"))
    ours = run_scenario(scenario, _target("hardmail", hardmail, index, "d"))
    difference = compare(scenario, theirs, ours)
    if difference:
        pytest.fail(difference, pytrace=False)


def test_capabilities_outside_the_comparison_are_reported(dovecot: DovecotServer) -> None:
    """The capabilities that are not compared are the Dovecot extras issue 12 does not ask for."""
    transcript = run_scenario(SCENARIOS[0], _target("dovecot", dovecot, 0, "s"))
    extras = capability_extras(transcript.greetings[0].code or [])
    assert "LOGIN-REFERRALS" in extras and "IDLE" not in extras


def _normal(*lines: bytes) -> list[str]:
    responses = [parse_response(line) for line in lines]
    ctx = Context(now=datetime.datetime.now(datetime.UTC))
    return finish(normalise_command(responses, ctx))


def test_normaliser_equates_what_may_differ() -> None:
    dovecot = _normal(b"* 1 FETCH (UID 4 FLAGS (\\Seen \\Recent) MODSEQ (17) "
                      b"BODY[HEADER.FIELDS (FROM)] {5}\r\nFrom:)\r\n",
                      b"* OK [UIDVALIDITY 1796300424] UIDs valid\r\n", b'* LIST (\\HasNoChildren) "/" INBOX\r\n',
                      b'* LIST (\\HasNoChildren \\Sent) "/" Sent\r\n', b"* SEARCH 3 1 2\r\n",
                      b"a1 OK [COPYUID 1796300424 1,2,3 4:6] Done (0.001 + 0.000 secs).\r\n")
    hardmail = _normal(b'* 1 FETCH (MODSEQ (3) FLAGS (\\Recent \\Seen) UID 4 BODY[HEADER.FIELDS (From)] "From:")\r\n',
                       b"* OK [UIDVALIDITY 42] Ok\r\n", b'* LIST (\\Sent \\HasNoChildren) "/" "Sent"\r\n',
                       b'* LIST (\\HasNoChildren) "/" "INBOX"\r\n', b"* SEARCH 1 2 3\r\n",
                       b"a1 OK [COPYUID 42 1:3 4,5,6] COPY completed\r\n")
    assert dovecot == hardmail


def test_normaliser_keeps_real_differences() -> None:
    assert _normal(b"* 1 FETCH (FLAGS (\\Seen))\r\n") != _normal(b"* 1 FETCH (FLAGS (\\Seen \\Flagged))\r\n")
    assert _normal(b"a OK [READ-WRITE] x\r\n") != _normal(b"a OK [READ-ONLY] x\r\n")
    assert _normal(b"* 2 EXISTS\r\n") != _normal(b"* 3 EXISTS\r\n")
    assert _normal(b'* 1 FETCH (INTERNALDATE "01-Jan-2020 00:00:00 +0000")\r\n') != _normal(
        b'* 1 FETCH (INTERNALDATE "01-Jan-2020 00:00:01 +0000")\r\n')
    # the same instant written in another zone is the same INTERNALDATE
    assert _normal(b'* 1 FETCH (INTERNALDATE "01-Jan-2020 01:00:00 +0100")\r\n') == _normal(
        b'* 1 FETCH (INTERNALDATE "01-Jan-2020 00:00:00 +0000")\r\n')
