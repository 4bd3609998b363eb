"""DKIM keys on disk, per domain, and their rotation.

Layout: ``<data_dir>/dkim/<domain>/<selector>.key`` (mode 0600: PEM for RSA, the base64 seed for
Ed25519) and ``state.json`` (the key generations). A generation is one RSA 2048 and one Ed25519 key
(RFC 8463), with selectors ``<name>r`` and ``<name>e``. Its state is ``active`` (signs), ``pending``
(made by a rotation; signs once its DNS records are seen) or ``retiring`` (no longer signs, stays
published until ``retire_after`` so that mail in transit still verifies).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from hardmail.core.address import normalize_domain
from hardmail.msgauth.dkim import Algorithm, SigningKey

GenerationState = Literal["active", "pending", "retiring"]
RSA_BITS = 2048
ALGORITHMS: dict[str, Algorithm] = {"r": "rsa-sha256", "e": "ed25519-sha256"}
KEY_TYPES = {"rsa-sha256": "rsa", "ed25519-sha256": "ed25519"}


class DkimKeyError(Exception):
    """A DKIM key problem with a text fit for the administrator (never key material)."""


@dataclass(frozen=True, slots=True)
class Generation:
    name: str
    created: float
    state: GenerationState
    retire_after: float | None = None

    @property
    def selectors(self) -> tuple[str, str]:
        return (f"{self.name}r", f"{self.name}e")


@dataclass(frozen=True, slots=True)
class PublicRecord:
    selector: str
    algorithm: Algorithm
    txt: str  # v=DKIM1; k=...; p=...

    def name(self, domain: str) -> str:
        return f"{self.selector}._domainkey.{domain}"


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 and ``data``, atomically (never readable by others, even briefly)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _new_rsa() -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, base64.b64encode(public).decode()


def _new_ed25519() -> tuple[bytes, str]:
    key = ed25519.Ed25519PrivateKey.generate()
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(seed), base64.b64encode(public).decode()  # RFC 8463 3, 4


def _public_of(algorithm: Algorithm, private: bytes) -> str:
    if algorithm == "ed25519-sha256":
        key = ed25519.Ed25519PrivateKey.from_private_bytes(base64.b64decode(private))
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return base64.b64encode(raw).decode()
    rsa_key = serialization.load_pem_private_key(private, password=None)
    der = rsa_key.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


class DomainKeys:
    """The DKIM keys of one domain under ``<data_dir>/dkim/<domain>``."""

    def __init__(self, data_dir: Path, domain: str) -> None:
        self.domain = normalize_domain(domain)
        self.directory = Path(data_dir) / "dkim" / self.domain

    # ----- state ------------------------------------------------------------------------
    def generations(self) -> list[Generation]:
        path = self.directory / "state.json"
        if not path.is_file():
            return []
        try:
            raw = json.loads(path.read_text())
            return [Generation(**item) for item in raw["generations"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise DkimKeyError(f"{path} is damaged ({type(exc).__name__}); restore it from a backup") from None

    def _save(self, generations: list[Generation]) -> None:
        body = json.dumps({"generations": [asdict(g) for g in generations]}, indent=2).encode()
        _write_private(self.directory / "state.json", body)

    def _new_generation(self, now: float, state: GenerationState) -> Generation:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        stamp = datetime.fromtimestamp(now, UTC).strftime("hm%Y%m%d")
        taken = {g.name for g in self.generations()}
        name = next(f"{stamp}{suffix}" for suffix in ["", *"abcdefghijklmnopqrstuvwxyz"]
                    if f"{stamp}{suffix}" not in taken)
        generation = Generation(name, now, state)
        rsa_selector, ed_selector = generation.selectors
        for selector, (private, _public) in ((rsa_selector, _new_rsa()), (ed_selector, _new_ed25519())):
            _write_private(self.directory / f"{selector}.key", private)
        return generation

    # ----- administration ---------------------------------------------------------------
    def generate(self, now: float) -> Generation:
        """The domain's first keys, active at once; refuses when keys exist (rotate instead)."""
        if self.generations():
            raise DkimKeyError(f"{self.domain} already has DKIM keys; use `hardmail dkim rotate {self.domain}`")
        generation = self._new_generation(now, "active")
        self._save([generation])
        return generation

    def rotate(self, now: float) -> Generation:
        """A new pending generation; it replaces the active one once its DNS records are seen."""
        current = self.generations()
        if not current:
            raise DkimKeyError(f"{self.domain} has no DKIM keys; run `hardmail dkim generate {self.domain}` first")
        if any(g.state == "pending" for g in current):
            raise DkimKeyError(f"{self.domain} already has a rotation waiting for its DNS records; "
                            f"publish the records `hardmail dns {self.domain}` prints")
        generation = self._new_generation(now, "pending")
        self._save([*current, generation])
        return generation

    def promote(self, now: float, grace: float) -> Generation | None:
        """The pending generation becomes active; the active one retires after ``grace`` seconds."""
        current = self.generations()
        pending = next((g for g in current if g.state == "pending"), None)
        if pending is None:
            return None
        updated = [replace(g, state="retiring", retire_after=now + grace) if g.state == "active"
                   else replace(g, state="active") if g is pending else g for g in current]
        self._save(updated)
        return replace(pending, state="active")

    def prune(self, now: float) -> list[str]:
        """Delete retiring generations whose grace period is over; returns their names."""
        current = self.generations()
        expired = [g for g in current if g.state == "retiring" and (g.retire_after or 0) <= now]
        if not expired:
            return []
        for generation in expired:
            for selector in generation.selectors:
                with contextlib.suppress(FileNotFoundError):
                    (self.directory / f"{selector}.key").unlink()
        self._save([g for g in current if g not in expired])
        return [g.name for g in expired]

    # ----- use ----------------------------------------------------------------------------
    def _read_key(self, selector: str) -> bytes:
        path = self.directory / f"{selector}.key"
        try:
            return path.read_bytes().strip()
        except OSError as exc:
            raise DkimKeyError(f"cannot read the DKIM key {path}: {exc.strerror}") from None

    def keys_of(self, generation: Generation) -> list[SigningKey]:
        return [SigningKey(self.domain, selector, ALGORITHMS[selector[-1]], self._read_key(selector))
                for selector in generation.selectors]

    def signing_keys(self) -> list[SigningKey]:
        """The active generation's keys (RSA first, then Ed25519), or none."""
        active = next((g for g in self.generations() if g.state == "active"), None)
        return self.keys_of(active) if active else []

    def public_records(self, generation: Generation) -> list[PublicRecord]:
        records = []
        for key in self.keys_of(generation):
            txt = f"v=DKIM1; k={KEY_TYPES[key.algorithm]}; p={_public_of(key.algorithm, key.private)}"
            records.append(PublicRecord(key.selector, key.algorithm, txt))
        return records
