"""Server-side SASL mechanisms as sans-IO state machines (PLAIN, LOGIN).

RFC 4422 is the framework; RFC 4616 defines PLAIN; LOGIN is the widely deployed
draft-murchison-sasl-login. RFC 4954 4 gives the SMTP encoding: base64 lines, "=" for an empty
initial response, "*" to cancel. A mechanism consumes decoded client responses and returns either a
challenge to send, the credentials to verify, or a failure.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Protocol


class SaslDecodeError(ValueError):
    """A client response that is not valid base64."""


@dataclass(frozen=True, slots=True)
class Challenge:
    data: bytes


@dataclass(frozen=True, slots=True)
class Credentials:
    authcid: str
    password: str = field(repr=False)
    authzid: str = ""

    def __str__(self) -> str:
        return f"Credentials(authcid={self.authcid!r})"


@dataclass(frozen=True, slots=True)
class Failure:
    reason: str  # for the log; never contains the client's secret


Step = Challenge | Credentials | Failure


class Mechanism(Protocol):
    name: str

    def step(self, response: bytes | None) -> Step:
        """``None`` means no initial response was sent with the AUTH command."""
        ...


def decode_response(text: str) -> bytes:
    """RFC 4954 4: "=" is an empty response; otherwise strict base64."""
    if text == "=":
        return b""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise SaslDecodeError("response is not valid base64") from None


def encode_challenge(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _utf8(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


class PlainMechanism:
    """RFC 4616 2: message = [authzid] NUL authcid NUL passwd."""

    name = "PLAIN"

    def step(self, response: bytes | None) -> Step:
        if response is None:
            return Challenge(b"")  # RFC 4954 4: empty challenge asks for the initial response
        parts = response.split(b"\x00")
        if len(parts) != 3:
            return Failure("PLAIN message must have three NUL-separated fields")
        authzid, authcid, password = (_utf8(p) for p in parts)
        if authzid is None or authcid is None or password is None:
            return Failure("PLAIN message is not UTF-8")
        if not authcid or not password:
            return Failure("PLAIN message lacks user name or password")
        if authzid and authzid.lower() != authcid.lower():
            return Failure("authorization identity differs from authentication identity")
        return Credentials(authcid=authcid, password=password, authzid=authzid)


class LoginMechanism:
    """The LOGIN mechanism: "Username:" then "Password:" challenges."""

    name = "LOGIN"

    def __init__(self) -> None:
        self._username: str | None = None

    def step(self, response: bytes | None) -> Step:
        if self._username is None:
            if response is None:
                return Challenge(b"Username:")
            username = _utf8(response)
            if not username:
                return Failure("LOGIN user name empty or not UTF-8")
            self._username = username
            return Challenge(b"Password:")
        password = _utf8(response or b"")
        if not password:
            return Failure("LOGIN password empty or not UTF-8")
        return Credentials(authcid=self._username, password=password)


MECHANISMS: dict[str, type[PlainMechanism] | type[LoginMechanism]] = {
    "PLAIN": PlainMechanism,
    "LOGIN": LoginMechanism,
}


def new_mechanism(name: str) -> Mechanism | None:
    factory = MECHANISMS.get(name.upper())
    return factory() if factory else None
