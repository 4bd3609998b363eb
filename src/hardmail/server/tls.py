"""TLS server contexts and certificates: loading, SNI selection, self-signed default, reload.

One :class:`TlsManager` owns every certificate the listeners present. It builds hardened
``ssl.SSLContext`` objects (TLS 1.2+ by default, no compression, no renegotiation), picks a
certificate per SNI host name, generates a self-signed certificate when none is configured, and
swaps all certificates atomically on reload (SIGHUP). Private key material never appears in an
exception text or log line.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import os
import ssl
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hardmail.config.schema import Config
from hardmail.core.clock import Clock, SystemClock
from hardmail.delivery.durable import make_private_dir, write_durably

SELF_SIGNED_CERT = "selfsigned.crt"
SELF_SIGNED_KEY = "selfsigned.key"
SELF_SIGNED_DAYS = 365
RENEW_BEFORE = dt.timedelta(days=30)  # a generated certificate is replaced this long before expiry
EXPIRY_WARNING = dt.timedelta(days=14)

_TLS_VERSIONS = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}


class TlsError(Exception):
    """A certificate or TLS setting that cannot be used; the text says what to do."""


@dataclass(frozen=True)
class LoadedCertificate:
    """One certificate chain loaded into its own server context."""

    hostnames: tuple[str, ...]  # SNI names it is chosen for (empty for the default certificate)
    cert_file: Path
    context: ssl.SSLContext
    leaf: x509.Certificate

    @property
    def self_signed(self) -> bool:
        return self.leaf.issuer == self.leaf.subject


@dataclass(frozen=True)
class ContextSet:
    """The default certificate and the SNI ones, replaced as a whole on reload."""

    default: LoadedCertificate
    by_name: tuple[LoadedCertificate, ...]

    def for_server_name(self, server_name: str | None) -> LoadedCertificate:
        if server_name:
            for loaded in self.by_name:
                if any(hostname_matches(p, server_name) for p in loaded.hostnames):
                    return loaded
        return self.default


def hostname_matches(pattern: str, server_name: str) -> bool:
    """Exact (case-insensitive) match, or ``*.example.org`` covering exactly one more label."""
    pattern, name = pattern.lower().rstrip("."), server_name.lower().rstrip(".")
    if not pattern.startswith("*."):
        return pattern == name
    label, dot, rest = name.partition(".")
    return bool(label) and bool(dot) and rest == pattern[2:]


class TlsManager:
    """Owns the server certificates and contexts; see the module docstring."""

    def __init__(self, cfg: Config, *, clock: Clock | None = None) -> None:
        self._cfg = cfg
        self._clock = clock or SystemClock()
        self._current: ContextSet | None = None

    # --- self-signed default -------------------------------------------------------------

    @property
    def _self_signed_paths(self) -> tuple[Path, Path]:
        return self._cfg.tls_dir / SELF_SIGNED_CERT, self._cfg.tls_dir / SELF_SIGNED_KEY

    def ensure_certificate(self) -> bool:
        """Generate the self-signed certificate when needed; True if one was generated.

        Nothing happens when ``tls.cert_file`` is set. A generated certificate is reused on later
        starts unless it expires within 30 days, no longer names ``server.hostname`` or does
        not match its key.
        """
        if self._cfg.tls.cert_file is not None:
            return False
        with self._generation_lock():
            return self._ensure_locked()

    @contextmanager
    def _generation_lock(self) -> Iterator[None]:
        """Hold the generation lock: an ``flock`` on tls_dir itself, so that worker processes that
        reload at the same SIGHUP never write or read each other's half-written key and certificate."""
        try:
            make_private_dir(self._cfg.tls_dir)
            descriptor = os.open(self._cfg.tls_dir, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise self._unwritable(exc) from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # closing the descriptor drops the flock

    def _ensure_locked(self) -> bool:
        cert_path, key_path = self._self_signed_paths
        if self._generated_is_usable(cert_path, key_path):
            return False
        try:
            self._generate(cert_path, key_path)
        except OSError as exc:
            raise self._unwritable(exc) from None
        return True

    def _unwritable(self, exc: OSError) -> TlsError:
        return TlsError(
            f"cannot write the self-signed certificate into {self._cfg.tls_dir}: "
            f"{exc.strerror or exc.__class__.__name__}; make server.data_dir writable "
            "for hardmail or set tls.cert_file and tls.key_file"
        )

    def _generated_is_usable(self, cert_path: Path, key_path: Path) -> bool:
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError):
            return False
        same_key = _public_key_der(cert.public_key()) == _public_key_der(key.public_key())
        fresh = cert.not_valid_after_utc - self._now() > RENEW_BEFORE
        named = self._cfg.server.hostname.lower() in certificate_hostnames(cert)
        return same_key and fresh and named

    def _generate(self, cert_path: Path, key_path: Path) -> None:
        """Write a new key (0600) and certificate atomically into tls_dir (0700); key first."""
        make_private_dir(self._cfg.tls_dir)
        os.chmod(self._cfg.tls_dir, 0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = build_self_signed(key, self._cfg.server.hostname, self._now())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_durably(key_path, key_pem, mode=0o600)
        write_durably(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._clock.now(), dt.UTC)

    # --- contexts -------------------------------------------------------------------------

    def context(self) -> ssl.SSLContext:
        """The current default server context (loads certificates on first use)."""
        return self._loaded().default.context

    def reload(self) -> None:
        """Re-read every certificate and key; swap only if all of them load (else TlsError)."""
        self._current = self._build()

    def _loaded(self) -> ContextSet:
        if self._current is None:
            self._current = self._build()
        return self._current

    def _build(self) -> ContextSet:
        tls = self._cfg.tls
        if tls.cert_file is None:
            with self._generation_lock():  # the pair is checked, made and loaded as one step
                self._ensure_locked()
                default = self._load((), *self._self_signed_paths)
        else:
            default = self._load((), tls.cert_file, tls.key_file or tls.cert_file)
        extras = tuple(
            self._load(tuple(entry.hostnames), entry.cert_file, entry.key_file)
            for entry in tls.certificates
        )
        return ContextSet(default, extras)

    def _load(
        self, hostnames: tuple[str, ...], cert_path: Path, key_path: Path
    ) -> LoadedCertificate:
        leaf = read_leaf_certificate(cert_path)
        _check_readable(key_path, "key")
        context = self._new_context()
        try:
            # A callable password stops OpenSSL from prompting on the terminal for encrypted keys.
            context.load_cert_chain(cert_path, key_path, password=_no_password)
        except (ssl.SSLError, OSError) as exc:
            raise TlsError(
                f"cannot load certificate {cert_path} with key {key_path}: {exc.__class__.__name__}"
                "; check that the key is unencrypted PEM and belongs to the certificate"
            ) from None
        return LoadedCertificate(hostnames, cert_path, context, leaf)

    def _new_context(self) -> ssl.SSLContext:
        """A hardened server context; SSLv3 and older are never possible with PROTOCOL_TLS_SERVER."""
        tls = self._cfg.tls
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with warnings.catch_warnings():
            # TLSv1/TLSv1.1 are deprecated; an admin who chose them gets our own warning instead.
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = _TLS_VERSIONS[tls.min_version]
        try:
            context.set_ciphers(tls.ciphers)  # TLS 1.2 and older; TLS 1.3 suites stay modern
        except ssl.SSLError:
            raise TlsError(
                f"tls.ciphers {tls.ciphers!r} selects no usable cipher; "
                "fix the OpenSSL cipher list or remove the setting to use the default"
            ) from None
        context.options |= (
            ssl.OP_NO_COMPRESSION  # CRIME
            | ssl.OP_CIPHER_SERVER_PREFERENCE
            | ssl.OP_NO_RENEGOTIATION
            | ssl.OP_SINGLE_ECDH_USE
        )
        context.sni_callback = self._on_server_name
        return context

    def _on_server_name(
        self, ssl_object: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        """Pick the certificate for the requested name from the CURRENT set (after any reload).

        Called for every handshake (``server_name`` is None without SNI), so even a listener that
        still holds a pre-reload context presents the reloaded certificate.
        """
        current = self._current
        if current is None:
            return
        chosen = current.for_server_name(server_name).context
        if ssl_object.context is not chosen:
            ssl_object.context = chosen

    # --- reporting ------------------------------------------------------------------------

    @property
    def self_signed(self) -> bool:
        """True when the default certificate is self-signed (clients will not trust it)."""
        return self._loaded().default.self_signed

    def certificate_summary(self) -> list[dict[str, Any]]:
        """One entry per certificate, default first, for the start-up print and ``status``."""
        current = self._loaded()
        return [_summary(loaded) for loaded in (current.default, *current.by_name)]

    def warnings(self) -> list[str]:
        """Problems found in the certificates themselves: expiring, not covering their names,
        or self-signed although configured. (Settings such as ``tls.min_version`` and the
        generated self-signed default are reported by ``hardmail.config.warnings``.)
        """
        current = self._loaded()
        found = []
        for loaded in (current.default, *current.by_name):
            found.extend(self._certificate_warnings(loaded))
        return found

    def _certificate_warnings(self, loaded: LoadedCertificate) -> list[str]:
        found = []
        if loaded.self_signed and loaded.cert_file.name != SELF_SIGNED_CERT:
            found.append(f"certificate {loaded.cert_file} is self-signed: clients will not "
                         "trust it; use a certificate from a certificate authority")
        left = loaded.leaf.not_valid_after_utc - self._now()
        if left < EXPIRY_WARNING:
            expiry = f"{loaded.leaf.not_valid_after_utc:%Y-%m-%d}"
            found.append(f"certificate {loaded.cert_file} expires {expiry}; "
                         "renew it and run kill -HUP <pid>")
        names = certificate_hostnames(loaded.leaf)
        for wanted in loaded.hostnames or (self._cfg.server.hostname,):
            if not certificate_covers(names, wanted):
                found.append(f"certificate {loaded.cert_file} does not cover {wanted}")
        return found


def _public_key_der(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _no_password() -> bytes:
    return b""


def _check_readable(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TlsError(
            f"cannot read {what} file {path}: {exc.strerror or exc.__class__.__name__}; "
            "check the path and that hardmail can read it"
        ) from None


def read_leaf_certificate(path: Path) -> x509.Certificate:
    """The first certificate of a PEM chain file; TlsError says what is wrong."""
    data = _check_readable(path, "certificate")
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise TlsError(
            f"certificate file {path} holds no PEM certificate; "
            "point tls.cert_file at the full chain (for example fullchain.pem)"
        ) from None
    return chain[0]


def certificate_covers(cert_names: Sequence[str], wanted: str) -> bool:
    """Whether a certificate with ``cert_names`` is valid for ``wanted`` (itself maybe a wildcard)."""
    wanted = wanted.lower().rstrip(".")
    return any(pattern == wanted or hostname_matches(pattern, wanted) for pattern in cert_names)


def certificate_hostnames(cert: x509.Certificate) -> list[str]:
    """DNS names and IP addresses of the subjectAltName, lower-cased (the CN when there is none)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return [str(attr.value).lower() for attr in common]
    names = [name.lower() for name in san.get_values_for_type(x509.DNSName)]
    return names + [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]


def build_self_signed(
    key: ec.EllipticCurvePrivateKey, hostname: str, now: dt.datetime
) -> x509.Certificate:
    """A one-year self-signed server certificate for hostname, localhost, 127.0.0.1 and ::1."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64])])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate small client clock skew
        .not_valid_after(now + dt.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName(_san_entries(hostname)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    return builder.sign(key, hashes.SHA256())


def _san_entries(hostname: str) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = []
    for name in dict.fromkeys([hostname.lower(), "localhost"]):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    for ip in ("127.0.0.1", "::1"):
        entry = x509.IPAddress(ipaddress.ip_address(ip))
        if entry not in entries:
            entries.append(entry)
    return entries


def _summary(loaded: LoadedCertificate) -> dict[str, Any]:
    leaf = loaded.leaf
    return {
        "cert_file": str(loaded.cert_file),
        "hostnames": certificate_hostnames(leaf),
        "sni": list(loaded.hostnames),
        "subject": leaf.subject.rfc4514_string(),
        "not_after": leaf.not_valid_after_utc.isoformat(),
        "sha256": leaf.fingerprint(hashes.SHA256()).hex(":").upper(),
        "self_signed": loaded.self_signed,
    }


def describe_tls(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> dict[str, str]:
    """``{"version", "cipher", "bits"}`` of an established TLS session; empty without one."""
    if ssl_object is None:
        return {}
    cipher: Sequence[object] | None = ssl_object.cipher()
    version = ssl_object.version()
    if not cipher or version is None:
        return {}
    return {"version": version, "cipher": str(cipher[0]), "bits": str(cipher[2])}
