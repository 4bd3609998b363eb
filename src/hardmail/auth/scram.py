"""SCRAM-SHA-256 secrets (RFC 5802 3, RFC 7677): derived once from a password, never reversible.

What is stored per account is the salt, the iteration count, StoredKey = H(ClientKey) and
ServerKey; none of them lets anyone log in without the password (a stolen StoredKey is not a
password equivalent, since the client proof needs ClientKey). PBKDF2 is hashlib's; the password
is normalised with SASLprep (RFC 4013, from libpass) as RFC 5802 2.2 asks. SASLprep refuses some
passwords (characters unassigned in Unicode 3.2 such as emoji, private-use characters, malformed
right-to-left text): the password policy refuses them when set, and an imported or older password
that SASLprep refuses simply has no SCRAM secrets (:func:`derive_secrets_or_none`); SCRAM then
fails for it as for a wrong password, and PLAIN and LOGIN still work.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from passlib.utils import saslprep

SALT_BYTES = 16
_HASH = "sha256"


class NotSaslprepable(ValueError):
    """SASLprep (RFC 4013) refuses the password; the message names the rule, never the password."""


def saslprep_problem(password: str) -> str | None:
    """Why SASLprep (RFC 4013) refuses ``password`` (libpass's words, without the text), or None."""
    try:
        saslprep(password)
    except ValueError as exc:
        return " ".join(str(exc).replace(" in ", " ").split()).removesuffix(" value")
    return None


@dataclass(frozen=True, slots=True)
class ScramSecrets:
    salt: bytes = field(repr=False)
    iterations: int
    stored_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)

    def to_text(self) -> str:
        """One storable line: ``iterations$salt$StoredKey$ServerKey`` (base64 parts)."""
        parts = (self.salt, self.stored_key, self.server_key)
        return "$".join([str(self.iterations), *(base64.b64encode(p).decode("ascii") for p in parts)])

    @classmethod
    def from_text(cls, text: str) -> ScramSecrets:
        """Raises ValueError when the text is not what :meth:`to_text` writes."""
        iterations, salt, stored_key, server_key = text.split("$")
        decode = base64.b64decode
        return cls(decode(salt, validate=True), int(iterations), decode(stored_key, validate=True),
                   decode(server_key, validate=True))


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, _HASH).digest()


def salted_password(password: str, salt: bytes, iterations: int) -> bytes:
    """RFC 5802 3: SaltedPassword := Hi(Normalize(password), salt, i), Hi being PBKDF2-HMAC.
    Raises NotSaslprepable (RFC 4013 refuses the password)."""
    try:
        normalized = saslprep(password)
    except ValueError:
        raise NotSaslprepable("SASLprep (RFC 4013) refuses the password") from None
    return hashlib.pbkdf2_hmac(_HASH, normalized.encode("utf-8"), salt, iterations)


def derive_secrets(password: str, iterations: int, salt: bytes | None = None) -> ScramSecrets:
    """RFC 5802 3: StoredKey := H(HMAC(SaltedPassword, "Client Key")); ServerKey := HMAC(.., "Server Key").
    Raises NotSaslprepable; new passwords cannot, the password policy having refused them."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    salted = salted_password(password, salt, iterations)
    client_key = _hmac(salted, b"Client Key")
    return ScramSecrets(
        salt=salt,
        iterations=iterations,
        stored_key=hashlib.sha256(client_key).digest(),
        server_key=_hmac(salted, b"Server Key"),
    )


def derive_secrets_or_none(password: str, iterations: int) -> ScramSecrets | None:
    """The secrets of an existing or imported password, or None (store none) when SASLprep refuses it."""
    try:
        return derive_secrets(password, iterations)
    except NotSaslprepable:
        return None


def decoy_secrets(username: str, key: bytes, iterations: int) -> ScramSecrets:
    """Secrets for a user that does not exist: the same salt every time for the same name, so that
    the server-first message does not tell an unknown user from a known one; no proof matches."""
    salt = _hmac(key, b"scram-decoy-salt:" + username.encode("utf-8"))[:SALT_BYTES]
    unmatchable = _hmac(key, b"scram-decoy-key:" + username.encode("utf-8"))
    return ScramSecrets(salt, iterations, unmatchable, unmatchable)


def proof_matches(secrets_: ScramSecrets, auth_message: bytes, client_proof: bytes) -> bool:
    """RFC 5802 3: ClientKey := ClientProof XOR HMAC(StoredKey, AuthMessage); H(ClientKey) == StoredKey."""
    signature = _hmac(secrets_.stored_key, auth_message)
    if len(client_proof) != len(signature):
        return False
    client_key = bytes(a ^ b for a, b in zip(client_proof, signature, strict=True))
    return hmac.compare_digest(hashlib.sha256(client_key).digest(), secrets_.stored_key)


def server_signature(secrets_: ScramSecrets, auth_message: bytes) -> bytes:
    """RFC 5802 3: ServerSignature := HMAC(ServerKey, AuthMessage)."""
    return _hmac(secrets_.server_key, auth_message)
