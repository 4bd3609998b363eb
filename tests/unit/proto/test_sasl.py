"""SASL PLAIN (RFC 4616) and LOGIN mechanisms, and the RFC 4954 base64 encoding."""

from __future__ import annotations

import base64

import pytest

from hardmail.proto import sasl


def test_decode_response_empty_marker():
    assert sasl.decode_response("=") == b""


def test_decode_response_base64():
    assert sasl.decode_response("AGFsaWNlAHNlY3JldA==") == b"\x00alice\x00secret"


@pytest.mark.parametrize("text", ["not base64!", "YWJ", "YW Jj", "YWJj\n", "ä", "==="])
def test_decode_response_rejects_bad_base64(text):
    with pytest.raises(sasl.SaslDecodeError):
        sasl.decode_response(text)


def test_bad_base64_error_does_not_echo_the_input():
    with pytest.raises(sasl.SaslDecodeError) as info:
        sasl.decode_response("c2VjcmV0!!")
    assert "c2VjcmV0" not in str(info.value)


def test_encode_challenge():
    assert sasl.encode_challenge(b"Username:") == "VXNlcm5hbWU6"
    assert sasl.encode_challenge(b"") == ""


# ----- PLAIN --------------------------------------------------------------------------------------
def test_plain_with_initial_response():
    step = sasl.PlainMechanism().step(b"\x00alice@example.org\x00s3cret")
    assert step == sasl.Credentials(authcid="alice@example.org", password="s3cret", authzid="")


def test_plain_without_initial_response_asks_with_empty_challenge():
    mechanism = sasl.PlainMechanism()
    assert mechanism.step(None) == sasl.Challenge(b"")
    assert isinstance(mechanism.step(b"\x00alice\x00pw"), sasl.Credentials)


@pytest.mark.parametrize("authzid", [b"alice@example.org", b"ALICE@example.org"])
def test_plain_authzid_equal_to_authcid(authzid):
    step = sasl.PlainMechanism().step(authzid + b"\x00alice@example.org\x00pw")
    assert isinstance(step, sasl.Credentials)
    assert step.authcid == "alice@example.org"


def test_plain_different_authzid_fails():
    step = sasl.PlainMechanism().step(b"bob@example.org\x00alice@example.org\x00pw")
    assert isinstance(step, sasl.Failure)


@pytest.mark.parametrize(
    "message",
    [b"", b"alice", b"\x00alice", b"\x00alice\x00pw\x00extra", b"\x00\x00pw", b"\x00alice\x00",
     b"\x00\xffalice\x00pw", b"\x00alice\x00\xfe"],
)
def test_plain_malformed(message):
    assert isinstance(sasl.PlainMechanism().step(message), sasl.Failure)


def test_plain_failure_reason_never_holds_the_password():
    step = sasl.PlainMechanism().step(b"bob\x00alice\x00hunter2")
    assert isinstance(step, sasl.Failure)
    assert "hunter2" not in step.reason


# ----- LOGIN --------------------------------------------------------------------------------------
def test_login_two_steps():
    mechanism = sasl.LoginMechanism()
    assert mechanism.step(None) == sasl.Challenge(b"Username:")
    assert mechanism.step(b"alice@example.org") == sasl.Challenge(b"Password:")
    assert mechanism.step(b"s3cret") == sasl.Credentials(authcid="alice@example.org", password="s3cret")


def test_login_with_initial_response():
    mechanism = sasl.LoginMechanism()
    assert mechanism.step(b"alice") == sasl.Challenge(b"Password:")
    step = mechanism.step(b"pw")
    assert isinstance(step, sasl.Credentials)
    assert (step.authcid, step.password) == ("alice", "pw")


@pytest.mark.parametrize("username", [b"", b"\xff\xfe"])
def test_login_bad_username(username):
    assert isinstance(sasl.LoginMechanism().step(username), sasl.Failure)


@pytest.mark.parametrize("password", [b"", b"\xff", None])
def test_login_bad_password(password):
    mechanism = sasl.LoginMechanism()
    mechanism.step(b"alice")
    assert isinstance(mechanism.step(password), sasl.Failure)


# ----- registry and secrecy -----------------------------------------------------------------------
def test_new_mechanism():
    assert isinstance(sasl.new_mechanism("plain"), sasl.PlainMechanism)
    assert isinstance(sasl.new_mechanism("LOGIN"), sasl.LoginMechanism)
    assert sasl.new_mechanism("CRAM-MD5") is None


def test_new_mechanism_gives_fresh_state():
    first = sasl.new_mechanism("LOGIN")
    assert first is not None
    first.step(b"alice")
    second = sasl.new_mechanism("LOGIN")
    assert second is not None
    assert second.step(None) == sasl.Challenge(b"Username:")


def test_credentials_repr_and_str_hide_the_password():
    password = "Tr0ub4dor&3"
    credentials = sasl.Credentials(authcid="alice", password=password, authzid="alice")
    for text in (repr(credentials), str(credentials), f"{credentials}", f"{credentials!r}", repr([credentials])):
        assert password not in text
        assert base64.b64encode(password.encode()).decode() not in text
        assert "alice" in text
