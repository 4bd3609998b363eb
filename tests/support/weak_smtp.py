"""A small, deliberately vulnerable mail server on loopback for the audit's probe tests.

It speaks enough SMTP (or, with ``protocol="imap"``/``"pop3"``, enough IMAP/POP3 for STARTTLS and
a login) to be probed, and is weak in exactly the ways its :class:`WeakFlags` say. It runs a
thread per connection behind a ``socketserver`` listener on its own thread (blocking sockets, so
that what is buffered before STARTTLS is under its control); :meth:`WeakServer.stop` closes the
listener and every open connection. TLS uses a self-signed certificate made with ``cryptography``
in the directory it is given. Messages it accepts are kept in ``messages`` (bytes as received)
and their envelopes in ``envelopes``.

Flags (all off means a well-behaved server that refuses relaying and bare CR/LF):

- relaying: ``open_relay`` (any external recipient without AUTH), ``relay_patterns`` (regular
  expressions: recipients matching one are accepted without AUTH, e.g. ``r"%"`` for the percent
  hack, ``r"!"`` for bang paths), ``catch_all`` (every address of ``local_domain`` accepted),
  ``trusted_sources`` (client IPs that relay everything), ``relay_when_authenticated``.
- smuggling: ``split_on`` (extra end-of-data sequences honoured in DATA, e.g. ``{b"\\n.\\n",
  b"\\n.\\r\\n"}`` like Postfix with smtpd_forbid_bare_newline = no), ``split_in_bdat`` (the same
  sequences also end a BDAT chunk's message), ``accept_bare_newlines`` (bare CR/LF in content
  accepted instead of 550), ``chunking`` (CHUNKING/BDAT offered).
- STARTTLS: ``starttls`` (offered), ``starttls_injection`` (what was pipelined after STARTTLS
  in plaintext is kept and run inside TLS: CVE-2011-0411).
- AUTH (for the probe_auth tests): ``offer_auth`` (AUTH PLAIN LOGIN advertised inside TLS),
  ``offer_auth_before_tls`` (advertised in plaintext too), ``accept_auth_before_tls`` (accepted in
  plaintext even when not advertised); the server is an "AUTH on port 25" case whenever the test
  probes it as kind ``smtp`` with AUTH offered.
- enumeration and limits: ``vrfy_enumerates`` (VRFY answers 250 for users, 550 for others),
  ``expn_enumerates`` (EXPN lists the members of ``lists``), ``max_line_length`` (None: any
  length is accepted).
- ``temporary``: a greylisting server that answers 451 4.7.1 to every MAIL FROM (and RCPT, for
  probes that get past MAIL): nothing can be judged; ``mail_commands`` counts the MAILs it was sent.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

STANDARD_END = b"\r\n.\r\n"
POSTFIX_LIKE_SPLIT = frozenset({b"\n.\n", b"\n.\r\n"})  # bare-LF line ends honoured (forbid_bare_newline = no)
UNLIMITED_CAP = 4 * 1024 * 1024  # even "unlimited" lines stop here, so a test cannot exhaust memory


@dataclass
class WeakFlags:
    protocol: str = "smtp"  # "smtp", "imap" or "pop3"
    local_domain: str = "example.test"
    users: dict[str, str] = field(default_factory=dict)  # address -> password
    mailboxes: set[str] = field(default_factory=lambda: {"postmaster@example.test"})
    lists: dict[str, list[str]] = field(default_factory=dict)  # for EXPN
    banner: str = "weak.example.test ESMTP WeakSMTP"
    open_relay: bool = False
    relay_patterns: tuple[str, ...] = ()
    catch_all: bool = False
    trusted_sources: frozenset[str] = frozenset()
    relay_when_authenticated: bool = True
    split_on: frozenset[bytes] = frozenset()
    split_in_bdat: bool = False
    accept_bare_newlines: bool = False
    chunking: bool = True
    starttls: bool = True
    starttls_injection: bool = False
    offer_auth: bool = True
    offer_auth_before_tls: bool = False
    accept_auth_before_tls: bool = False
    vrfy_enumerates: bool = False
    expn_enumerates: bool = False
    max_line_length: int | None = 1000
    temporary: bool = False  # greylisting: 451 4.7.1 to every RCPT and MAIL after the first session's


def write_self_signed(directory: Path, name: str = "weak.example.test") -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "weak-cert.pem", directory / "weak-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class _Closed(Exception):
    pass


class Connection:
    """One client: a byte buffer over a (possibly TLS-wrapped) blocking socket."""

    def __init__(self, server: WeakServer, sock: socket.socket, peer: str) -> None:
        self.server, self.flags, self.sock, self.peer = server, server.flags, sock, peer
        self.buf = bytearray()
        self.tls = False
        self.authed = False
        self.sender: str | None = None
        self.recipients: list[str] = []
        self.bdat = bytearray()

    # --- bytes ----------------------------------------------------------------------------

    def _fill(self) -> None:
        try:
            chunk = self.sock.recv(65536)
        except (OSError, ssl.SSLError):
            raise _Closed() from None
        if not chunk:
            raise _Closed()
        self.buf += chunk

    def send(self, text: str | bytes) -> None:
        data = text.encode() if isinstance(text, str) else text
        try:
            self.sock.sendall(data)
        except (OSError, ssl.SSLError):
            raise _Closed() from None

    def reply(self, *lines: str) -> None:
        """An SMTP reply: each line "250 text"; continuation dashes added."""
        out = [f"{ln[:3]}-{ln[4:]}" for ln in lines[:-1]] + [lines[-1]]
        self.send("".join(f"{ln}\r\n" for ln in out))

    def line(self) -> bytes:
        limit = self.flags.max_line_length or UNLIMITED_CAP
        while b"\n" not in self.buf:
            if len(self.buf) > limit:
                self._skip_overlong()
                return b""
            self._fill()
        end = self.buf.index(b"\n") + 1
        raw = bytes(self.buf[:end])
        del self.buf[:end]
        if len(raw) > limit:
            self.reply("500 5.5.6 line too long")
            return b""
        return raw

    def _skip_overlong(self) -> None:
        while b"\n" not in self.buf:
            self.buf.clear()
            self._fill()
        del self.buf[: self.buf.index(b"\n") + 1]
        self.reply("500 5.5.6 line too long")

    def exactly(self, count: int) -> bytes:
        while len(self.buf) < count:
            self._fill()
        data = bytes(self.buf[:count])
        del self.buf[:count]
        return data

    def start_tls(self) -> None:
        if not self.flags.starttls_injection:
            self.buf.clear()  # the fix for CVE-2011-0411: nothing read in plaintext survives
        try:
            self.sock = self.server.tls_context.wrap_socket(self.sock, server_side=True)
        except (OSError, ssl.SSLError):
            raise _Closed() from None
        self.tls = True

    # --- SMTP ----------------------------------------------------------------------------

    def run(self) -> None:
        with suppress(_Closed):
            if self.flags.protocol == "imap":
                _Imap(self).run()
            elif self.flags.protocol == "pop3":
                _Pop3(self).run()
            else:
                _Smtp(self).run()


def _angle(arg: str) -> str:
    start, end = arg.find("<"), arg.rfind(">")
    return arg[start + 1:end] if 0 <= start < end else arg.split(":", 1)[-1].strip()


def _has_bare_newline(content: bytes) -> bool:
    rest = content.replace(b"\r\n", b"")
    return b"\r" in rest or b"\n" in rest


def find_end(data: bytes, terms: list[bytes]) -> tuple[int, int] | None:
    """(start, end) of the earliest end-of-data sequence in ``data`` (longest at a tie); a
    non-standard one that ends where ``data`` ends waits for more (it may be a standard one's head)."""
    best: tuple[int, int] | None = None
    for term in terms:
        at = data.find(term)
        if at < 0 or (term != STANDARD_END and at + len(term) == len(data)):
            continue
        if best is None or at < best[0] or (at == best[0] and at + len(term) > best[1]):
            best = (at, at + len(term))
    return best


class _Smtp:
    def __init__(self, conn: Connection) -> None:
        self.c = conn
        self.f = conn.flags

    def run(self) -> None:
        self.c.reply(f"220 {self.f.banner}")
        while True:
            raw = self.c.line()
            if not raw:
                continue
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb, _, arg = text.partition(" ")
            if self.dispatch(verb.upper(), arg) is False:
                return

    def dispatch(self, verb: str, arg: str) -> bool | None:
        handler = getattr(self, f"do_{verb.lower()}", None) if verb.isalpha() else None
        if handler is None:
            self.c.reply("500 5.5.2 unknown command")
            return None
        result: bool | None = handler(arg)
        return result

    def do_ehlo(self, arg: str) -> None:
        self.c.server.ehlo_names.append(arg.strip())
        self.reset()
        lines = [f"250 {self.f.banner.split()[0]} hello {arg}", "250 PIPELINING", "250 8BITMIME", "250 SIZE 10240000"]
        if self.f.chunking:
            lines.append("250 CHUNKING")
        if self.f.starttls and not self.c.tls:
            lines.append("250 STARTTLS")
        if (self.c.tls and self.f.offer_auth) or (not self.c.tls and self.f.offer_auth_before_tls):
            lines.append("250 AUTH PLAIN LOGIN")
        self.c.reply(*lines)

    def do_helo(self, arg: str) -> None:
        self.reset()
        self.c.reply(f"250 {self.f.banner.split()[0]}")

    def do_starttls(self, arg: str) -> None:
        if not self.f.starttls or self.c.tls:
            self.c.reply("502 5.5.1 no STARTTLS")
            return
        self.c.reply("220 2.0.0 ready to start TLS")
        self.c.start_tls()
        self.reset()

    def do_auth(self, arg: str) -> None:
        allowed = (self.c.tls and self.f.offer_auth) or self.f.offer_auth_before_tls or self.f.accept_auth_before_tls
        if not allowed:
            self.c.reply("538 5.7.11 encryption required" if not self.c.tls else "502 5.5.1 no AUTH")
            return
        mechanism, _, initial = arg.partition(" ")
        user, password = self._credentials(mechanism.upper(), initial)
        self.c.authed = self.f.users.get(user) == password and user != ""
        self.c.reply("235 2.7.0 authenticated" if self.c.authed else "535 5.7.8 bad credentials")

    def _credentials(self, mechanism: str, initial: str) -> tuple[str, str]:
        try:
            if mechanism == "PLAIN":
                token = initial or self._challenge("")
                _, user, password = base64.b64decode(token).decode().split("\0")
                return user, password
            if mechanism == "LOGIN":
                user = base64.b64decode(initial or self._challenge("VXNlcm5hbWU6")).decode()
                return user, base64.b64decode(self._challenge("UGFzc3dvcmQ6")).decode()
        except ValueError:
            pass
        return "", ""

    def _challenge(self, text: str) -> str:
        self.c.send(f"334 {text}\r\n")
        return self.c.line().decode("ascii", "replace").strip()

    def do_mail(self, arg: str) -> None:
        if self.c.sender is not None:
            self.c.reply("503 5.5.1 nested MAIL")
            return
        self.c.server.mail_commands += 1
        self.c.server.senders.append(_angle(arg))
        if self.f.temporary:
            self.c.reply("451 4.7.1 greylisted, try again later")
            return
        self.c.sender = _angle(arg)
        self.c.reply("250 2.1.0 ok")

    def do_rcpt(self, arg: str) -> None:
        if self.c.sender is None:
            self.c.reply("503 5.5.1 need MAIL")
            return
        address = _angle(arg)
        reply = self.recipient_reply(address)
        if reply.startswith("250"):
            self.c.recipients.append(address)
        self.c.reply(reply)

    def recipient_reply(self, address: str) -> str:
        if (self.c.authed and self.f.relay_when_authenticated) or self.c.peer in self.f.trusted_sources:
            return "250 2.1.5 ok (relayed for you)"
        if any(re.search(p, address) for p in self.f.relay_patterns):
            return "250 2.1.5 ok"
        domain = address.rpartition("@")[2].rstrip(".").lower()
        if domain == self.f.local_domain:
            known = address.lower() in self.known_addresses() or self.f.catch_all
            return "250 2.1.5 ok" if known else "550 5.1.1 no such user"
        return "250 2.1.5 ok" if self.f.open_relay else "554 5.7.1 relay access denied"

    def known_addresses(self) -> set[str]:
        return {a.lower() for a in set(self.f.users) | self.f.mailboxes}

    def do_data(self, arg: str) -> None:
        if not self.c.recipients:
            self.c.reply("503 5.5.1 need RCPT")
            return
        self.c.reply("354 end with <CRLF>.<CRLF>")
        terms = [STANDARD_END, *sorted(self.f.split_on)]
        while (hit := find_end(b"\r\n" + bytes(self.c.buf), terms)) is None:
            self.c._fill()
        view = b"\r\n" + bytes(self.c.buf)
        content = view[2:hit[0]] if hit[0] >= 2 else b""
        del self.c.buf[: hit[1] - 2]
        self.finish(content)

    def do_bdat(self, arg: str) -> None:
        words = arg.split()
        if not self.f.chunking or not words or not words[0].isdigit() or not self.c.recipients:
            self.c.reply("503 5.5.1 BDAT not possible")
            return
        chunk = self.c.exactly(int(words[0]))
        last = len(words) > 1 and words[1].upper() == "LAST"
        if self.f.split_in_bdat:
            hit = find_end(b"\r\n" + bytes(self.c.bdat) + chunk, [STANDARD_END, *sorted(self.f.split_on)])
            if hit is not None:
                view = b"\r\n" + bytes(self.c.bdat) + chunk
                self.c.buf[:0] = view[hit[1]:]  # what followed the "end" is read as commands
                self.finish(view[2:hit[0]] if hit[0] >= 2 else b"")
                return
        self.c.bdat += chunk
        if last:
            self.finish(bytes(self.c.bdat))
        else:
            self.c.reply(f"250 2.0.0 {len(chunk)} octets received")

    def finish(self, content: bytes) -> None:
        if _has_bare_newline(content) and not self.f.accept_bare_newlines:
            self.c.reply("550 5.6.0 bare CR or LF in message")
        else:
            self.c.server.messages.append(content)
            self.c.server.envelopes.append((self.c.sender or "", list(self.c.recipients)))
            self.c.reply("250 2.0.0 queued")
        self.reset()

    def reset(self) -> None:
        self.c.sender, self.c.recipients, self.c.bdat = None, [], bytearray()

    def do_rset(self, arg: str) -> None:
        self.reset()
        self.c.reply("250 2.0.0 ok")

    def do_noop(self, arg: str) -> None:
        self.c.reply("250 2.0.0 ok")

    def do_vrfy(self, arg: str) -> None:
        if not self.f.vrfy_enumerates:
            self.c.reply("252 2.5.2 cannot VRFY user")
            return
        address = _angle(arg).strip()
        if "@" not in address:
            address = f"{address}@{self.f.local_domain}"
        found = address.lower() in self.known_addresses()
        self.c.reply(f"250 2.1.5 <{address}>" if found else "550 5.1.1 no such user")

    def do_expn(self, arg: str) -> None:
        members = self.f.lists.get(arg.strip().lower())
        if not self.f.expn_enumerates:
            self.c.reply("502 5.5.1 EXPN not available")
        elif members is None:
            self.c.reply("550 5.1.1 no such list")
        else:
            self.c.reply(*(f"250 <{m}>" for m in members))

    def do_quit(self, arg: str) -> bool:
        self.c.reply("221 2.0.0 bye")
        return False


class _Imap:
    def __init__(self, conn: Connection) -> None:
        self.c = conn
        self.f = conn.flags

    def capability(self) -> str:
        caps = ["IMAP4rev1"]
        if self.f.starttls and not self.c.tls:
            caps.append("STARTTLS")
        if self.c.tls or self.f.offer_auth_before_tls:
            caps.append("AUTH=PLAIN")
        else:
            caps.append("LOGINDISABLED")
        return " ".join(caps)

    def run(self) -> None:
        self.c.send(f"* OK [CAPABILITY {self.capability()}] weak IMAP ready\r\n")
        while True:
            words = self.c.line().decode("utf-8", "replace").split()
            if len(words) < 2:
                continue
            tag, verb, args = words[0], words[1].upper(), words[2:]
            if not self.dispatch(tag, verb, args):
                return

    def dispatch(self, tag: str, verb: str, args: list[str]) -> bool:
        if verb == "CAPABILITY":
            self.c.send(f"* CAPABILITY {self.capability()}\r\n{tag} OK done\r\n")
        elif verb == "STARTTLS" and self.f.starttls and not self.c.tls:
            self.c.send(f"{tag} OK begin TLS\r\n")
            self.c.start_tls()
        elif verb == "NOOP":
            self.c.send(f"{tag} OK NOOP done\r\n")
        elif verb == "LOGIN" and len(args) == 2:
            allowed = self.c.tls or self.f.offer_auth_before_tls or self.f.accept_auth_before_tls
            good = allowed and self.f.users.get(args[0].strip('"')) == args[1].strip('"')
            self.c.send(f"{tag} OK logged in\r\n" if good else f"{tag} NO login refused\r\n")
        elif verb == "LOGOUT":
            self.c.send(f"* BYE\r\n{tag} OK bye\r\n")
            return False
        else:
            self.c.send(f"{tag} BAD unknown\r\n")
        return True


class _Pop3:
    def __init__(self, conn: Connection) -> None:
        self.c = conn
        self.f = conn.flags
        self.user = ""

    def run(self) -> None:
        self.c.send("+OK weak POP3 ready\r\n")
        while True:
            verb, _, arg = self.c.line().decode("utf-8", "replace").strip().partition(" ")
            if not self.dispatch(verb.upper(), arg):
                return

    def dispatch(self, verb: str, arg: str) -> bool:
        allowed = self.c.tls or self.f.offer_auth_before_tls or self.f.accept_auth_before_tls
        if verb == "CAPA":
            caps = (["STLS"] if self.f.starttls and not self.c.tls else []) + (["USER"] if allowed else [])
            self.c.send("+OK\r\n" + "".join(f"{c}\r\n" for c in caps) + ".\r\n")
        elif verb == "STLS" and self.f.starttls and not self.c.tls:
            self.c.send("+OK begin TLS\r\n")
            self.c.start_tls()
        elif verb == "NOOP":
            self.c.send("+OK\r\n")
        elif verb == "USER" and allowed:
            self.user = arg
            self.c.send("+OK\r\n")
        elif verb == "PASS" and allowed:
            good = self.user != "" and self.f.users.get(self.user) == arg
            self.c.send("+OK logged in\r\n" if good else "-ERR login refused\r\n")
        elif verb == "QUIT":
            self.c.send("+OK bye\r\n")
            return False
        else:
            self.c.send("-ERR unknown or not allowed\r\n")
        return True


class _Handler(socketserver.BaseRequestHandler):
    server: _Listener

    def handle(self) -> None:
        weak = self.server.weak
        sock: socket.socket = self.request
        sock.settimeout(30)
        conn = Connection(weak, sock, self.client_address[0])
        with weak.lock:
            weak.connections.add(conn)
        try:
            conn.run()
        finally:
            with weak.lock:
                weak.connections.discard(conn)
            with suppress(OSError):
                conn.sock.close()


class _Listener(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, weak: WeakServer, host: str) -> None:
        self.weak = weak
        super().__init__((host, 0), _Handler)


class WeakServer:
    """Start with :meth:`start` (or use :func:`weak_server`); ``port`` is its listening port."""

    def __init__(self, cert_dir: Path, flags: WeakFlags, host: str = "127.0.0.1") -> None:
        self.flags = flags
        self.host = host
        self.messages: list[bytes] = []
        self.envelopes: list[tuple[str, list[str]]] = []  # (MAIL FROM, RCPT TOs) of each message kept
        self.mail_commands = 0
        self.ehlo_names: list[str] = []  # what each EHLO said
        self.senders: list[str] = []  # the address of each MAIL FROM
        self.connections: set[Connection] = set()
        self.lock = threading.Lock()
        cert, key = write_self_signed(cert_dir)
        self.tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls_context.load_cert_chain(cert, key)
        self._listener = _Listener(self, host)
        self._thread = threading.Thread(target=self._listener.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._listener.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._listener.shutdown()
        self._listener.server_close()
        with self.lock:
            for conn in list(self.connections):
                with suppress(OSError):
                    conn.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(10)


@contextmanager
def weak_server(cert_dir: Path, flags: WeakFlags) -> Iterator[WeakServer]:
    server = WeakServer(cert_dir, flags)
    server.start()
    try:
        yield server
    finally:
        server.stop()
