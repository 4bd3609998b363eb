"""SCRAM-SHA-256 server mechanism (RFC 5802, RFC 7677): the RFC example and an independent client."""

from __future__ import annotations

import base64

import pytest
from scramp import ScramClient

from hardmail.auth.scram import ScramSecrets, decoy_secrets, derive_secrets
from hardmail.proto import sasl

# RFC 7677 3: user "user", password "pencil".
RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
RFC_CLIENT_FINAL = (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def _rfc_secrets() -> ScramSecrets:
    return derive_secrets("pencil", 4096, base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="))


def _mechanism() -> sasl.ScramSha256Mechanism:
    return sasl.ScramSha256Mechanism(nonce_factory=lambda: RFC_SERVER_NONCE)


def test_rfc_7677_example_exchange() -> None:
    mechanism = _mechanism()
    assert mechanism.step(RFC_CLIENT_FIRST) == sasl.NeedSecrets("user")
    assert mechanism.supply(_rfc_secrets()) == sasl.Challenge(RFC_SERVER_FIRST)
    assert mechanism.step(RFC_CLIENT_FINAL) == sasl.Verified("user", RFC_SERVER_FINAL)
    assert mechanism.step(b"") == sasl.Completed("user")


def test_without_initial_response_the_server_asks_first() -> None:
    mechanism = _mechanism()
    assert mechanism.step(None) == sasl.Challenge(b"")
    assert mechanism.step(RFC_CLIENT_FIRST) == sasl.NeedSecrets("user")


def _run_client(password: str, stored_password: str, username: str = "alice@example.org") -> list[sasl.Step]:
    client = ScramClient(["SCRAM-SHA-256"], username, password)
    mechanism = sasl.ScramSha256Mechanism()
    steps: list[sasl.Step] = [mechanism.step(client.get_client_first().encode())]
    steps.append(mechanism.supply(derive_secrets(stored_password, 4096)))
    challenge = steps[-1]
    assert isinstance(challenge, sasl.Challenge)
    client.set_server_first(challenge.data.decode())
    steps.append(mechanism.step(client.get_client_final().encode()))
    if isinstance(steps[-1], sasl.Verified):
        client.set_server_final(steps[-1].server_final.decode())  # raises if the server signature is wrong
        steps.append(mechanism.step(b""))
    return steps


def test_independent_client_with_the_right_password() -> None:
    steps = _run_client("correct horse battery staple", "correct horse battery staple")
    assert steps[0] == sasl.NeedSecrets("alice@example.org")
    assert steps[-1] == sasl.Completed("alice@example.org")


def test_independent_client_with_a_wrong_password_fails() -> None:
    steps = _run_client("wrong horse battery staple", "correct horse battery staple")
    assert isinstance(steps[-1], sasl.Failure) and "proof" in steps[-1].reason


def test_saslprep_makes_equivalent_passwords_match() -> None:
    # RFC 4013 3 example: SOFT HYPHEN is mapped to nothing.
    steps = _run_client("I\u00adX long passphrase", "IX long passphrase")
    assert isinstance(steps[-1], sasl.Completed)


def test_decoy_secrets_never_verify_and_are_stable() -> None:
    key = b"k" * 32
    assert decoy_secrets("nobody", key, 4096) == decoy_secrets("nobody", key, 4096)
    client = ScramClient(["SCRAM-SHA-256"], "nobody", "anything at all")
    mechanism = sasl.ScramSha256Mechanism()
    mechanism.step(client.get_client_first().encode())
    challenge = mechanism.supply(decoy_secrets("nobody", key, 4096))
    assert isinstance(challenge, sasl.Challenge)
    client.set_server_first(challenge.data.decode())
    assert isinstance(mechanism.step(client.get_client_final().encode()), sasl.Failure)


def test_gs2_y_flag_is_accepted_and_echoed_in_c() -> None:
    mechanism = _mechanism()
    assert mechanism.step(b"y,,n=user,r=rOprNGfwEbeRWgbNEkqO") == sasl.NeedSecrets("user")
    mechanism.supply(_rfc_secrets())
    # c= must now be base64("y,,") = "eSws"; the RFC message's "biws" no longer matches.
    step = mechanism.step(RFC_CLIENT_FINAL)
    assert isinstance(step, sasl.Failure) and "channel-binding" in step.reason


@pytest.mark.parametrize(
    ("client_first", "reason"),
    [
        (b"p=tls-unique,,n=user,r=abc", "channel binding"),
        (b"x,,n=user,r=abc", "GS2 header"),
        (b"n,,m=ext,n=user,r=abc", "mandatory extension"),
        (b"n,,r=abc,n=user", "lacks user name or nonce"),
        (b"n,,n=us=er,r=abc", "malformed"),
        (b"n,a=bob,n=user,r=abc", "differs"),
        (b"n,,n=user", "lacks user name or nonce"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_bad_client_first_messages_fail(client_first: bytes, reason: str) -> None:
    step = _mechanism().step(client_first)
    assert isinstance(step, sasl.Failure) and reason in step.reason


def test_escaped_user_name_and_matching_authzid() -> None:
    assert _mechanism().step(b"n,a=a=2Cb,n=a=2Cb,r=abc") == sasl.NeedSecrets("a,b")


@pytest.mark.parametrize(
    ("client_final", "reason"),
    [
        (RFC_CLIENT_FINAL.replace(b"c=biws", b"c=eSws"), "channel-binding"),
        (RFC_CLIENT_FINAL.replace(b"%hvYD", b"%hvYE"), "nonce"),
        (RFC_CLIENT_FINAL.replace(b"p=dHzb", b"p=dHzc"), "proof does not match"),
        (RFC_CLIENT_FINAL.split(b",p=")[0], "malformed"),
        (RFC_CLIENT_FINAL[:-2] + b"!!", "not base64"),
    ],
)
def test_bad_client_final_messages_fail(client_final: bytes, reason: str) -> None:
    mechanism = _mechanism()
    mechanism.step(RFC_CLIENT_FIRST)
    mechanism.supply(_rfc_secrets())
    step = mechanism.step(client_final)
    assert isinstance(step, sasl.Failure) and reason in step.reason


def test_final_answer_must_be_empty() -> None:
    mechanism = _mechanism()
    mechanism.step(RFC_CLIENT_FIRST)
    mechanism.supply(_rfc_secrets())
    mechanism.step(RFC_CLIENT_FINAL)
    assert isinstance(mechanism.step(b"x"), sasl.Failure)


def test_secrets_text_round_trip_and_redacted_repr() -> None:
    stored = _rfc_secrets()
    assert ScramSecrets.from_text(stored.to_text()) == stored
    assert "W22ZaJ0SNY7soEsUEjb6gQ" not in repr(stored)
    assert sasl.new_mechanism("scram-sha-256") is not None


@pytest.mark.parametrize(
    "nonce",
    ["caf\u00e9".encode(), "\u00a0abc".encode(), "日本".encode(), b"a b", b"a\x7fb", b"tab\there"],
    ids=["latin-1 letter", "no-break space", "CJK", "space", "DEL", "tab"],
)
def test_nonce_must_be_rfc_5802_printable(nonce: bytes) -> None:
    step = _mechanism().step(b"n,,n=user,r=" + nonce)
    assert isinstance(step, sasl.Failure) and "nonce is malformed" in step.reason


def test_every_rfc_5802_printable_character_is_a_valid_nonce() -> None:
    printable = bytes(c for c in range(0x21, 0x7F) if c != ord(","))
    assert isinstance(_mechanism().step(b"n,,n=user,r=" + printable), sasl.NeedSecrets)
