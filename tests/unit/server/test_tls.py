"""TLS contexts: self-signed generation, protocol versions, SNI, reload, describe_tls.

Handshakes run between two ssl.MemoryBIO pairs in this process: real TLS, no sockets.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import os
import ssl
import stat
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hardmail.config.schema import CertificateEntry, Config, ServerSection, TlsSection
from hardmail.core.clock import FakeClock
from hardmail.server import tls as tls_module
from hardmail.server.tls import TlsError, TlsManager, describe_tls, hostname_matches

HOSTNAME = "mail.example.org"


# --- helpers ------------------------------------------------------------------------------


def make_config(tmp_path: Path, hostname: str = HOSTNAME, **tls) -> Config:
    return Config(server=ServerSection(hostname=hostname, data_dir=tmp_path / "data"),
                  tls=TlsSection(**tls))


def write_cert(directory: Path, stem: str, names: list[str], *, days: int = 90,
               issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None = None) -> tuple[Path, Path]:
    """A fresh key and certificate for ``names`` (self-signed unless ``issuer`` is given)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    issuer_name, signing_key = issuer or (subject, key)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(signing_key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def fingerprint_of_file(cert_path: Path) -> bytes:
    return x509.load_pem_x509_certificate(cert_path.read_bytes()).fingerprint(hashes.SHA256())


def client_context(maximum: ssl.TLSVersion | None = None,
                   minimum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if minimum is not None:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer old versions
        context.minimum_version = minimum
    if maximum is not None:
        context.maximum_version = maximum
    return context


class Pair:
    """A client and a server SSLObject joined by memory BIOs."""

    def __init__(self, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext,
                 server_name: str | None = None) -> None:
        self.c_in, self.c_out, self.s_in, self.s_out = (ssl.MemoryBIO() for _ in range(4))
        self.client = client_ctx.wrap_bio(self.c_in, self.c_out, server_hostname=server_name)
        self.server = server_ctx.wrap_bio(self.s_in, self.s_out, server_side=True)

    def pump(self) -> None:
        self.s_in.write(self.c_out.read())
        self.c_in.write(self.s_out.read())

    def handshake(self) -> Pair:
        done = {"client": False, "server": False}
        for _ in range(10):
            for side, obj in (("client", self.client), ("server", self.server)):
                if not done[side]:
                    try:
                        obj.do_handshake()
                        done[side] = True
                    except ssl.SSLWantReadError:
                        pass
            self.pump()
            if all(done.values()):
                return self
        raise AssertionError("handshake did not finish")

    def peer_fingerprint(self) -> bytes:
        der = self.client.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).fingerprint(hashes.SHA256())


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext | None = None,
              server_name: str | None = None) -> Pair:
    return Pair(server_ctx, client_ctx or client_context(), server_name).handshake()


# --- self-signed generation ---------------------------------------------------------------


def test_generates_a_private_self_signed_certificate(tmp_path):
    cfg = make_config(tmp_path)
    manager = TlsManager(cfg)
    assert manager.ensure_certificate() is True
    cert_path, key_path = cfg.tls_dir / "selfsigned.crt", cfg.tls_dir / "selfsigned.key"
    assert stat.S_IMODE(cfg.tls_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [HOSTNAME, "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"),
                                                       ipaddress.ip_address("::1")]
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=365) <= lifetime <= dt.timedelta(days=366)
    assert manager.self_signed


def test_generated_certificate_is_reused(tmp_path):
    cfg = make_config(tmp_path)
    assert TlsManager(cfg).ensure_certificate() is True
    before = (cfg.tls_dir / "selfsigned.crt").read_bytes()
    assert TlsManager(cfg).ensure_certificate() is False
    assert (cfg.tls_dir / "selfsigned.crt").read_bytes() == before


def test_regenerated_when_the_hostname_changes(tmp_path):
    TlsManager(make_config(tmp_path)).ensure_certificate()
    cfg = make_config(tmp_path, hostname="mx2.example.org")
    assert TlsManager(cfg).ensure_certificate() is True
    cert = x509.load_pem_x509_certificate((cfg.tls_dir / "selfsigned.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "mx2.example.org" in san.get_values_for_type(x509.DNSName)


def test_regenerated_when_expired(tmp_path):
    cfg = make_config(tmp_path)
    TlsManager(cfg).ensure_certificate()
    later = FakeClock(start=time.time() + 400 * 86400)
    assert TlsManager(cfg, clock=later).ensure_certificate() is True


def test_regenerated_when_the_key_does_not_match(tmp_path):
    cfg = make_config(tmp_path)
    TlsManager(cfg).ensure_certificate()
    other_key = ec.generate_private_key(ec.SECP256R1())
    (cfg.tls_dir / "selfsigned.key").write_bytes(other_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    assert TlsManager(cfg).ensure_certificate() is True
    handshake(TlsManager(cfg).context())


def test_workers_reloading_at_once_never_mix_their_key_and_certificate(tmp_path, monkeypatch):
    """Two workers get the same SIGHUP with the pair deleted: the second one's check-make-load waits
    for the first one's (a flock on tls_dir), so both end on one whole matching pair."""
    cfg = make_config(tmp_path)
    first, second = TlsManager(cfg), TlsManager(cfg)
    first.reload()
    for path in cfg.tls_dir.iterdir():
        path.unlink()
    real_write = tls_module.write_durably
    seen: list[bool] = []

    def write_then_probe_the_lock(path, data, mode):
        real_write(path, data, mode=mode)
        if path.name == "selfsigned.key":  # the first worker is between its key and its certificate
            probe = os.open(cfg.tls_dir, os.O_RDONLY | os.O_DIRECTORY)
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                seen.append(False)  # the second worker could have gone in now: read a half pair
                fcntl.flock(probe, fcntl.LOCK_UN)
            except BlockingIOError:
                seen.append(True)
            finally:
                os.close(probe)

    monkeypatch.setattr(tls_module, "write_durably", write_then_probe_the_lock)
    first.reload()
    second.reload()
    assert seen == [True]
    assert handshake(first.context()).peer_fingerprint() == handshake(second.context()).peer_fingerprint()


def test_nothing_generated_when_a_certificate_is_configured(tmp_path):
    cert_path, key_path = write_cert(tmp_path / "certs", "real", [HOSTNAME])
    cfg = make_config(tmp_path, cert_file=cert_path, key_file=key_path)
    assert TlsManager(cfg).ensure_certificate() is False
    assert not cfg.tls_dir.exists()


def test_generated_certificate_verifies_for_its_names(tmp_path):
    cfg = make_config(tmp_path)
    manager = TlsManager(cfg)
    server_ctx = manager.context()  # generates the certificate on first use
    client = ssl.create_default_context(cafile=str(cfg.tls_dir / "selfsigned.crt"))
    for name in (HOSTNAME, "localhost", "127.0.0.1", "::1"):
        handshake(server_ctx, client, server_name=name)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(manager.context(), client, server_name="other.example.org")


# --- protocol versions --------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_tls_1_1_client_is_refused(tmp_path):
    server_ctx = TlsManager(make_config(tmp_path)).context()
    pair = Pair(server_ctx, client_context(maximum=ssl.TLSVersion.TLSv1_1,
                                           minimum=ssl.TLSVersion.TLSv1))
    with pytest.raises(ssl.SSLError):
        pair.client.do_handshake()
    pair.pump()
    with pytest.raises(ssl.SSLError, match=r"(?i)protocol|version"):
        pair.server.do_handshake()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_1_2_and_1_3_work(tmp_path, version):
    server_ctx = TlsManager(make_config(tmp_path)).context()
    pair = handshake(server_ctx, client_context(maximum=version))
    assert pair.server.version() == version.name.replace("_", ".")
    pair.client.write(b"EHLO client.example\r\n")
    pair.pump()
    assert pair.server.read() == b"EHLO client.example\r\n"


def test_min_version_tls_1_3_refuses_tls_1_2(tmp_path):
    server_ctx = TlsManager(make_config(tmp_path, min_version="TLSv1.3")).context()
    with pytest.raises(ssl.SSLError):
        handshake(server_ctx, client_context(maximum=ssl.TLSVersion.TLSv1_2))


def test_context_is_hardened(tmp_path):
    context = TlsManager(make_config(tmp_path)).context()
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    for option in (ssl.OP_NO_COMPRESSION, ssl.OP_CIPHER_SERVER_PREFERENCE,
                   ssl.OP_NO_RENEGOTIATION, ssl.OP_SINGLE_ECDH_USE):
        assert context.options & option == option  # OP_SINGLE_ECDH_USE is 0 (always on) in OpenSSL 3
    tls12 = [c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12 and all(name.startswith(("ECDHE", "DHE")) for name in tls12)


def test_invalid_cipher_list_is_explained(tmp_path):
    with pytest.raises(TlsError, match=r"tls\.ciphers"):
        TlsManager(make_config(tmp_path, ciphers="NO-SUCH-CIPHER")).context()


# --- SNI ----------------------------------------------------------------------------------


@pytest.fixture
def sni_setup(tmp_path):
    certs = tmp_path / "certs"
    default = write_cert(certs, "default", [HOSTNAME])
    org = write_cert(certs, "org", ["a.example.org"])
    net = write_cert(certs, "net", ["*.example.net"])
    cfg = make_config(
        tmp_path, cert_file=default[0], key_file=default[1],
        certificates=[
            CertificateEntry(hostnames=["a.example.org"], cert_file=org[0], key_file=org[1]),
            CertificateEntry(hostnames=["*.example.net"], cert_file=net[0], key_file=net[1]),
        ],
    )
    prints = {name: fingerprint_of_file(paths[0])
              for name, paths in (("default", default), ("org", org), ("net", net))}
    return TlsManager(cfg), prints


@pytest.mark.parametrize(
    ("server_name", "expected"),
    [
        ("a.example.org", "org"),
        ("A.Example.ORG", "org"),
        ("x.example.net", "net"),
        ("y.x.example.net", "default"),
        ("example.net", "default"),
        ("b.example.org", "default"),
        (None, "default"),
    ],
)
def test_sni_picks_the_certificate(sni_setup, server_name, expected):
    manager, prints = sni_setup
    pair = handshake(manager.context(), server_name=server_name)
    assert pair.peer_fingerprint() == prints[expected]


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("mail.example.org", "MAIL.example.org.", True),
        ("*.example.org", "a.example.org", True),
        ("*.example.org", "a.b.example.org", False),
        ("*.example.org", "example.org", False),
        ("*.example.org", ".example.org", False),
    ],
)
def test_hostname_matches(pattern, name, matches):
    assert hostname_matches(pattern, name) is matches


def test_certificate_summary(sni_setup):
    manager, prints = sni_setup
    summary = manager.certificate_summary()
    assert [entry["sni"] for entry in summary] == [[], ["a.example.org"], ["*.example.net"]]
    assert summary[0]["hostnames"] == [HOSTNAME]
    assert summary[0]["sha256"] == prints["default"].hex(":").upper()
    assert summary[0]["subject"] == f"CN={HOSTNAME}"
    assert summary[0]["self_signed"] is True
    assert dt.datetime.fromisoformat(str(summary[0]["not_after"])) > dt.datetime.now(dt.UTC)


def test_ca_signed_certificate_is_not_self_signed(tmp_path):
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    cert_path, key_path = write_cert(tmp_path / "certs", "leaf", [HOSTNAME], issuer=(ca_name, ca_key))
    manager = TlsManager(make_config(tmp_path, cert_file=cert_path, key_file=key_path))
    assert manager.self_signed is False
    assert not any("self-signed" in warning for warning in manager.warnings())


def test_no_warnings_for_the_generated_certificate(tmp_path):
    assert TlsManager(make_config(tmp_path)).warnings() == []


def test_warning_for_a_configured_self_signed_certificate(tmp_path):
    cert_path, key_path = write_cert(tmp_path / "certs", "own", [HOSTNAME])
    manager = TlsManager(make_config(tmp_path, cert_file=cert_path, key_file=key_path))
    assert manager.warnings() == [f"certificate {cert_path} is self-signed: clients will not "
                                  "trust it; use a certificate from a certificate authority"]


def test_warning_when_a_certificate_expires_soon(tmp_path):
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    cert_path, key_path = write_cert(tmp_path / "certs", "short", [HOSTNAME], days=5,
                                     issuer=(ca_name, ca_key))
    manager = TlsManager(make_config(tmp_path, cert_file=cert_path, key_file=key_path))
    [warning] = manager.warnings()
    assert warning.startswith(f"certificate {cert_path} expires ")
    assert "kill -HUP" in warning


def test_warning_when_the_certificate_misses_the_hostname(tmp_path):
    cert_path, key_path = write_cert(tmp_path / "certs", "other", ["other.example.org"])
    manager = TlsManager(make_config(tmp_path, cert_file=cert_path, key_file=key_path))
    assert any(f"does not cover {HOSTNAME}" in warning for warning in manager.warnings())


# --- reload -------------------------------------------------------------------------------


@pytest.fixture
def reloadable(tmp_path):
    cert_path, key_path = write_cert(tmp_path / "certs", "live", [HOSTNAME])
    manager = TlsManager(make_config(tmp_path, cert_file=cert_path, key_file=key_path))
    return manager, cert_path, key_path


def test_reload_swaps_the_certificate_for_new_handshakes(reloadable, tmp_path):
    manager, cert_path, _ = reloadable
    old_print = fingerprint_of_file(cert_path)
    old_context = manager.context()
    running = handshake(old_context)
    assert running.peer_fingerprint() == old_print

    write_cert(tmp_path / "certs", "live", [HOSTNAME])  # renewed files at the same paths
    manager.reload()
    new_print = fingerprint_of_file(cert_path)

    assert new_print != old_print
    assert manager.context() is not old_context
    assert handshake(manager.context()).peer_fingerprint() == new_print
    # A listener still holding the old context presents the new certificate too.
    assert handshake(old_context).peer_fingerprint() == new_print
    assert handshake(old_context, server_name=HOSTNAME).peer_fingerprint() == new_print
    # The session that was already running keeps working with its certificate.
    running.client.write(b"NOOP\r\n")
    running.pump()
    assert running.server.read() == b"NOOP\r\n"
    assert running.peer_fingerprint() == old_print


def test_broken_key_on_reload_keeps_the_old_context(reloadable):
    manager, cert_path, key_path = reloadable
    old_print = fingerprint_of_file(cert_path)
    old_context = manager.context()
    key_path.write_text("-----BEGIN PRIVATE KEY-----\nSECRETGARBAGE\n-----END PRIVATE KEY-----\n")

    with pytest.raises(TlsError) as caught:
        manager.reload()

    assert str(key_path) in str(caught.value)
    assert "SECRETGARBAGE" not in str(caught.value)
    assert manager.context() is old_context
    assert handshake(manager.context()).peer_fingerprint() == old_print


def test_missing_key_file_is_explained(reloadable):
    manager, _, key_path = reloadable
    manager.context()
    key_path.unlink()
    with pytest.raises(TlsError, match=r"cannot read key file .*check the path"):
        manager.reload()


def test_certificate_file_without_pem_is_explained(tmp_path):
    cert_path, key_path = write_cert(tmp_path / "certs", "c", [HOSTNAME])
    cert_path.write_text("not a certificate")
    with pytest.raises(TlsError, match="holds no PEM certificate"):
        TlsManager(make_config(tmp_path, cert_file=cert_path, key_file=key_path)).context()


def test_broken_sni_certificate_blocks_the_whole_reload(sni_setup, tmp_path):
    manager, prints = sni_setup
    manager.context()
    (tmp_path / "certs" / "net.key").write_text("garbage")
    with pytest.raises(TlsError, match=r"net\.key"):
        manager.reload()
    assert handshake(manager.context(), server_name="x.example.net").peer_fingerprint() == prints["net"]


# --- describe_tls -------------------------------------------------------------------------


def test_describe_tls_of_a_session(tmp_path):
    pair = handshake(TlsManager(make_config(tmp_path)).context())
    described = describe_tls(pair.server)
    name, _, bits = pair.server.cipher()
    assert described == {"version": "TLSv1.3", "cipher": name, "bits": str(bits)}
    assert described["cipher"].startswith("TLS_")


def test_describe_tls_without_a_session(tmp_path):
    assert describe_tls(None) == {}
    unstarted = Pair(TlsManager(make_config(tmp_path)).context(), client_context())
    assert describe_tls(unstarted.server) == {}


def test_unwritable_tls_dir_is_explained(tmp_path, monkeypatch):
    from hardmail.server import tls as tls_module

    def no_space(path, data, mode=0o600):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tls_module, "write_durably", no_space)
    with pytest.raises(TlsError, match=r"cannot write the self-signed certificate .*tls\.cert_file"):
        TlsManager(make_config(tmp_path)).ensure_certificate()
