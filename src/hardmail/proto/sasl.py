"""Server-side SASL mechanisms as sans-IO state machines (PLAIN, LOGIN, SCRAM-SHA-256).

RFC 4422 is the framework; RFC 4616 defines PLAIN; LOGIN is the widely deployed
draft-murchison-sasl-login; RFC 5802 and RFC 7677 define SCRAM-SHA-256. RFC 4954 4 gives the SMTP
encoding: base64 lines, "=" for an empty initial response, "*" to cancel. A mechanism consumes
decoded client responses and returns a step: a challenge to send, the credentials to verify, or a
failure. SCRAM never sees a password: it returns :class:`NeedSecrets` with the user name, the
session layer looks the stored secrets up and hands them to :meth:`ScramSha256Mechanism.supply`;
a matching client proof gives :class:`Verified` (the session applies its account rules, then sends
the server's final message), and the client's empty answer to that gives :class:`Completed`.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from hardmail.auth.scram import ScramSecrets, proof_matches, server_signature


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


@dataclass(frozen=True, slots=True)
class NeedSecrets:
    """SCRAM: look up the stored secrets of ``username`` and call ``supply`` with them."""

    username: str


@dataclass(frozen=True, slots=True)
class Verified:
    """SCRAM: the client proved it knows the password; send ``server_final`` as a challenge."""

    authcid: str
    server_final: bytes


@dataclass(frozen=True, slots=True)
class Completed:
    """SCRAM: the client accepted the server's final message; the exchange succeeded."""

    authcid: str


Step = Challenge | Credentials | Failure | NeedSecrets | Verified | Completed


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


def _decode_saslname(text: str) -> str | None:
    """RFC 5802 5.1: "=2C" is a comma and "=3D" an equals sign; any other "=" is malformed."""
    if "=" in text.replace("=2C", "").replace("=3D", ""):
        return None
    return text.replace("=2C", ",").replace("=3D", "=")


def _is_scram_printable(text: str) -> bool:
    """RFC 5802 7: nonce = 1*printable; printable = %x21-2B / %x2D-7E (ASCII without ","); never empty."""
    return bool(text) and all("\x21" <= char <= "\x7e" and char != "," for char in text)


@dataclass(frozen=True, slots=True)
class _ClientFirst:
    gs2_header: str
    bare: str
    username: str
    nonce: str


def _parse_gs2_header(text: str) -> tuple[str, str] | Failure:
    """RFC 5802 7: gs2-header = ("n" / "y" / "p=" cb-name) "," [authzid] ","; (header, authzid)."""
    if text.startswith("p="):  # RFC 5802 6: we offer no -PLUS mechanism, so binding cannot work
        return Failure("client asked for channel binding, which is not offered")
    flag, _, rest = text.partition(",")
    authzid_field, sep, _ = rest.partition(",")
    if flag not in ("n", "y") or not sep:
        return Failure("SCRAM client-first message lacks a valid GS2 header")
    authzid = ""
    if authzid_field:
        decoded = _decode_saslname(authzid_field[2:]) if authzid_field.startswith("a=") else None
        if not decoded:
            return Failure("SCRAM authorization identity is malformed")
        authzid = decoded
    return f"{flag},{authzid_field},", authzid


def _parse_client_first(data: bytes) -> _ClientFirst | Failure:
    text = _utf8(data)
    if text is None:
        return Failure("SCRAM client-first message is not UTF-8")
    header = _parse_gs2_header(text)
    if isinstance(header, Failure):
        return header
    gs2_header, authzid = header
    bare = text[len(gs2_header):]
    attributes = bare.split(",")
    if attributes[0].startswith("m="):  # RFC 5802 5.1: an unknown mandatory extension fails
        return Failure("SCRAM mandatory extension not supported")
    if len(attributes) < 2 or not attributes[0].startswith("n=") or not attributes[1].startswith("r="):
        return Failure("SCRAM client-first message lacks user name or nonce")
    username, nonce = _decode_saslname(attributes[0][2:]), attributes[1][2:]
    if not username or not _is_scram_printable(nonce):
        return Failure("SCRAM user name or nonce is malformed")
    if authzid and authzid.lower() != username.lower():
        return Failure("authorization identity differs from authentication identity")
    return _ClientFirst(gs2_header, bare, username, nonce)


def new_server_nonce() -> str:
    return secrets.token_urlsafe(24)  # printable and comma-free, as RFC 5802 7 "nonce" requires


class ScramSha256Mechanism:
    """RFC 5802 / RFC 7677 SCRAM-SHA-256, server side, without channel binding."""

    name = "SCRAM-SHA-256"

    def __init__(self, nonce_factory: Callable[[], str] = new_server_nonce) -> None:
        self._nonce_factory = nonce_factory
        self._first: _ClientFirst | None = None
        self._secrets: ScramSecrets | None = None
        self._server_first = ""
        self._verified: str | None = None

    def __repr__(self) -> str:
        return "ScramSha256Mechanism()"

    def step(self, response: bytes | None) -> Step:
        if self._verified is not None:  # RFC 4954 4: the client answers the final message empty
            return Completed(self._verified) if response == b"" else Failure("SCRAM final answer not empty")
        if self._first is None:
            return self._client_first(response)
        if self._secrets is None:
            return Failure("SCRAM response before the secrets were supplied")
        return self._client_final(response or b"")

    def _client_first(self, response: bytes | None) -> Step:
        if response is None:
            return Challenge(b"")  # RFC 4954 4: ask for the client-first message
        parsed = _parse_client_first(response)
        if isinstance(parsed, Failure):
            return parsed
        self._first = parsed
        return NeedSecrets(parsed.username)

    def supply(self, stored: ScramSecrets) -> Step:
        """The stored (or, for an unknown user, decoy) secrets: answer with the server-first message."""
        assert self._first is not None and self._secrets is None
        self._secrets = stored
        nonce = self._first.nonce + self._nonce_factory()
        salt = base64.b64encode(stored.salt).decode("ascii")
        self._server_first = f"r={nonce},s={salt},i={stored.iterations}"  # RFC 5802 5.1
        return Challenge(self._server_first.encode("ascii"))

    def _client_final(self, data: bytes) -> Step:
        assert self._first is not None and self._secrets is not None
        text = _utf8(data)
        if text is None or ",p=" not in text:
            return Failure("SCRAM client-final message is malformed")
        without_proof, _, proof_text = text.rpartition(",p=")
        attributes = without_proof.split(",")
        binding = base64.b64encode(self._first.gs2_header.encode("utf-8")).decode("ascii")
        if len(attributes) < 2 or attributes[0] != f"c={binding}":  # RFC 5802 7: c= echoes the header
            return Failure("SCRAM channel-binding attribute does not match the GS2 header")
        if attributes[1] != "r=" + self._server_first[2:].partition(",")[0]:
            return Failure("SCRAM nonce does not match")
        try:
            proof = base64.b64decode(proof_text, validate=True)
        except binascii.Error:
            return Failure("SCRAM proof is not base64")
        auth_message = f"{self._first.bare},{self._server_first},{without_proof}".encode()
        if not proof_matches(self._secrets, auth_message, proof):
            return Failure("SCRAM proof does not match")
        self._verified = self._first.username
        signature = base64.b64encode(server_signature(self._secrets, auth_message)).decode("ascii")
        return Verified(self._first.username, f"v={signature}".encode("ascii"))


MechanismFactory = Callable[[], "PlainMechanism | LoginMechanism | ScramSha256Mechanism"]

MECHANISMS: dict[str, MechanismFactory] = {
    "PLAIN": PlainMechanism,
    "LOGIN": LoginMechanism,
    "SCRAM-SHA-256": ScramSha256Mechanism,
}


def new_mechanism(name: str) -> Mechanism | None:
    factory = MECHANISMS.get(name.upper())
    return factory() if factory else None
