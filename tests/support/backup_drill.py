"""The restore drill's scenario (issue 13): a real ``hardmail serve`` process and the data an admin
would be afraid to lose, built the way an admin and their users build it: with the ``hardmail`` CLI
(domains, accounts, TOTP 2FA, app passwords, aliases, DKIM keys, IP ranges, folders, a quota, a
disabled account) and with real clients (SMTP to the MX port, IMAP APPEND/STORE/COPY/EXPUNGE,
authenticated submission of mail for a remote domain whose MX is a loopback sink that is not
listening yet, so the mail stays queued).

Nothing here sleeps: the server's start is awaited on its ``server.start`` log line, everything else
is polled on a condition with a deadline (:func:`wait_until`). DNS is a loopback server; no query
leaves the machine. The IMAP state, the settings and the load client live in
:mod:`support.backup_drill_state`.
"""

from __future__ import annotations

import imaplib
import json
import queue
import re
import smtplib
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from hardmail.auth import totp
from hardmail.config.schema import Config
from support.cli_process import LoggedServe, cli_env, free_loopback_port, hardmail_command

WAIT = 90.0
HOSTNAME = "mail.alpha.test"
DOMAINS = ("alpha.test", "beta.test", "gamma.test")
DKIM_DOMAINS = ("alpha.test", "beta.test")
REMOTE = "remote.test"  # not hosted: its MX is the sink at MX_HOST
REMOTE_RECIPIENT = f"partner@{REMOTE}"
MX_HOST = "127.0.0.2"
OUTSIDE_SENDER = "news@outside.test"
LOAD_TARGET = "erin@gamma.test"


@dataclass(frozen=True)
class Account:
    address: str
    password: str
    two_factor: bool = False
    enabled: bool = True


ACCOUNTS = (
    Account("alice@alpha.test", "correct horse battery staple 1", two_factor=True),
    Account("bob@alpha.test", "staple of the long passphrase 2"),
    Account("carol@beta.test", "another long passphrase too 3", two_factor=True),
    Account("dave@beta.test", "four random words are used 4"),
    Account(LOAD_TARGET, "keeps receiving the load 5"),
    Account("frank@gamma.test", "disabled by the admin today 6", enabled=False),
)
MAILBOX_ACCOUNTS = tuple(a for a in ACCOUNTS if a.enabled)
ALIASES = (
    ("sales@alpha.test", ("alice@alpha.test", "bob@alpha.test")),
    ("info@beta.test", ("carol@beta.test", "dave@beta.test")),
    ("@gamma.test", (LOAD_TARGET,)),  # catch-all
)
RANGES = (
    ("office", "192.0.2.0/24", ("--allow", "smtp,submission", "--priority", "30")),
    ("partner", "198.51.100.0/24", ("--deliver", "external-local", "--expires", "30d")),
)


def wait_until(condition: Callable[[], Any], what: str, deadline: float = WAIT) -> Any:
    """Poll ``condition`` until it returns something true, or fail naming ``what`` after ``deadline`` s."""
    end = time.monotonic() + deadline
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {deadline:.0f} s")
        threading.Event().wait(0.05)  # a poll step, not a wait for the condition itself


def client_context() -> ssl.SSLContext:
    """The server's certificate is self-signed (data_dir/tls): clients compare its fingerprint instead."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@dataclass(frozen=True)
class Ports:
    smtp: int
    submission: int
    imaps: int

    @classmethod
    def free(cls) -> Ports:
        return cls(free_loopback_port(), free_loopback_port(), free_loopback_port())


def drill_settings(data_dir: Path, ports: Ports, dns_port: int, outbound_port: int) -> dict[str, Any]:
    """The server's configuration file: loopback ports, a loopback resolver, cheap Argon2 (tests),
    no look-up cache (the CLI's changes are seen at once), the queue polled every second."""
    raw: dict[str, Any] = {
        "server": {"hostname": HOSTNAME, "data_dir": str(data_dir), "workers": 1},
        "listen": {"smtp": [f"127.0.0.1:{ports.smtp}"], "submission": [f"127.0.0.1:{ports.submission}"],
                   "submissions": ["127.0.0.1:0"], "imap": ["127.0.0.1:0"], "imaps": [f"127.0.0.1:{ports.imaps}"],
                   "pop3": ["127.0.0.1:0"], "pop3s": ["127.0.0.1:0"]},
        "auth": {"argon2": {"time_cost": 1, "memory_cost": 8192}},
        "storage": {"cache_seconds": 0},
        "dns": {"nameservers": ["127.0.0.1"], "port": dns_port, "timeout": 5.0},
        "inbound": {"enabled": False}, "antispam": {"enabled": False},
        "queue": {"poll_interval": 1.0, "workers": 2},
        "outbound": {"port": outbound_port, "connect_timeout": 10, "refuse_non_public": False,
                     "mta_sts": False, "dane": False},
        "access": {"bans": {"tarpit_step": 0, "never_ban": ["127.0.0.0/8"]},
                   "limits": {"new_connections_per_minute": 100_000, "messages_per_hour": 100_000,
                              "messages_per_day": 100_000}},
        "imap": {"commands_per_second": 10_000},
        "logging": {"format": "json", "per_source_burst": 0},
    }
    if "backup" in Config.model_fields:  # no scheduled backup of its own during the drill
        raw["backup"] = {"enabled": False}
    Config.model_validate(raw)
    return raw


class _Serve(LoggedServe):
    """``hardmail serve --config PATH --data-dir DIR``, its JSON log lines kept for the failure report."""

    def __init__(self, config_path: Path, data_dir: Path, wait: float = WAIT) -> None:
        self.wait = wait
        self._kill = False
        self.lines: list[dict[str, Any]] = []
        env = cli_env(PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(hardmail_command("serve", "--config", str(config_path), "--data-dir",
                                                      str(data_dir)),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with suppress(ValueError):
                event = json.loads(line)
                self.lines.append(event)
                self.events.put(event)


class DrillServer:
    """One configuration file, the data directory in use, and ``hardmail serve`` on it when started."""

    def __init__(self, root: Path, dns_port: int, outbound_port: int) -> None:
        self.root = root
        self.ports = Ports.free()
        self.data_dir = root / "data"
        self.config_path = root / "hardmail.toml"
        self.config_path.write_text(tomli_w.dumps(drill_settings(self.data_dir, self.ports, dns_port, outbound_port)))
        self.serve: _Serve | None = None

    def cli(self, *args: str, stdin: str | None = None, check: bool = True,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``hardmail ARGS --config ... --data-dir <the data directory in use>``, to its end."""
        done = subprocess.run([*hardmail_command(*args), "--config", str(self.config_path),
                               "--data-dir", str(self.data_dir)],
                              cwd=self.root, env=cli_env(), input=stdin, capture_output=True, text=True,
                              timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"hardmail {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
        return done

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> tuple[int, str]:
        """``hardmail ARGS`` run in this process through typer's CliRunner: the same command code as
        :meth:`cli` without the second of interpreter start-up each of the drill's many admin steps
        would cost as a process. (exit status, output)."""
        from typer.testing import CliRunner

        from hardmail.admin.cli import app

        done = CliRunner().invoke(app, [*args, "--config", str(self.config_path), "--data-dir", str(self.data_dir)],
                                  input=stdin, env={"COLUMNS": "200"})
        if check and done.exit_code != 0:
            raise AssertionError(f"hardmail {' '.join(args)} exited {done.exit_code}:\n{done.output}{done.exception!r}")
        return done.exit_code, done.output

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json")[1])

    def start(self) -> None:
        self.serve = _Serve(self.config_path, self.data_dir)
        try:
            self.serve.wait_for("server.start")
        except AssertionError:
            self.stop(check=False)
            raise

    def stop(self, check: bool = True) -> None:
        """SIGTERM, and (``check``) the exit status of a clean stop."""
        if self.serve is not None:
            serve, self.serve = self.serve, None
            serve.stop()
            assert not check or serve.proc.returncode == 0, f"hardmail serve exited {serve.proc.returncode}"

    def log_tail(self, count: int = 40) -> str:
        lines = self.serve.lines[-count:] if self.serve is not None else []
        return "\n".join(json.dumps(line) for line in lines)

    @contextmanager
    def imap(self, user: str, password: str) -> Iterator[imaplib.IMAP4_SSL]:
        client = imaplib.IMAP4_SSL("127.0.0.1", self.ports.imaps, ssl_context=client_context(), timeout=WAIT)
        try:
            client.login(user, password)
            yield client
        finally:
            with suppress(imaplib.IMAP4.error, OSError):
                client.logout()

    def imap_login_works(self, user: str, password: str) -> bool:
        try:
            with self.imap(user, password) as client:
                return client.noop()[0] == "OK"
        except imaplib.IMAP4.error:
            return False

    def smtp_auth_works(self, user: str, password: str) -> bool:
        """AUTH on the submission port (STARTTLS first); True on 235."""
        with smtplib.SMTP("127.0.0.1", self.ports.submission, timeout=WAIT) as client:
            client.starttls(context=client_context())
            try:
                client.login(user, password)
            except smtplib.SMTPAuthenticationError:
                return False
            return True

    def submit(self, user: str, password: str, recipients: Sequence[str], message: bytes) -> None:
        with smtplib.SMTP("127.0.0.1", self.ports.submission, timeout=WAIT) as client:
            client.starttls(context=client_context())
            client.login(user, password)
            client.sendmail(user, list(recipients), message)

    def send_mx(self, recipients: Sequence[str], messages: Sequence[bytes]) -> None:
        with smtplib.SMTP("127.0.0.1", self.ports.smtp, timeout=WAIT) as client:
            client.ehlo("client.outside.test")
            for data in messages:
                client.sendmail(OUTSIDE_SENDER, list(recipients), data)

    def certificate_sha256(self) -> str:
        import hashlib
        import socket

        with socket.create_connection(("127.0.0.1", self.ports.imaps), timeout=WAIT) as raw, \
                client_context().wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return hashlib.sha256(der).hexdigest()


# --- messages ---------------------------------------------------------------------------------

def message(tag: str, n: int, *, to: str, sender: str = OUTSIDE_SENDER, subject: str | None = None) -> bytes:
    """A message of a few kinds: plain ASCII, UTF-8 8bit, and (every 7th) a base64 attachment."""
    import base64
    import random

    subject = subject or f"{tag} {n}"
    head = (f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
            f"Date: Thu, 03 Dec 2026 10:{n % 60:02d}:00 +0000\r\nMessage-ID: <{tag}-{n}@drill.test>\r\n"
            "MIME-Version: 1.0\r\n")
    if n % 7 == 3:
        blob = base64.encodebytes(random.Random(n).randbytes(2000 + 911 * (n % 13))).replace(b"\n", b"\r\n")
        return (head + 'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\n'
                "Content-Type: text/plain; charset=us-ascii\r\n\r\nSee attached.\r\n--b1\r\n"
                "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n").encode() \
            + blob + b"--b1--\r\n"
    if n % 5 == 1:
        body = f"Grüße aus dem Drill, Nachricht {n}. Ça va? Überprüfung der Sicherung.\r\n" * (1 + n % 4)
        return (head + "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
                + body).encode()
    body = "".join(f"Line {line} of message {tag} {n}.\r\n" for line in range(3 + n % 40))
    return (head + "Content-Type: text/plain; charset=us-ascii\r\n\r\n" + body).encode()


# --- the scenario ---------------------------------------------------------------------------

@dataclass
class TwoFactor:
    secret: str
    recovery_codes: list[str]
    last_step: int  # the newest TOTP step used (a code of it or older is refused)
    used_recovery: list[str] = field(default_factory=list)

    def next_code(self) -> str:
        """A code the server takes now: of the current step, or of the next one (one step of drift
        is allowed) when the current one was used already; when that one was used too, the next
        30-second step is waited for."""
        step = self.last_step + 1
        wait_until(lambda: totp.time_step(time.time()) >= step - 1, "the next TOTP step", deadline=60)
        step = max(step, totp.time_step(time.time()))
        self.last_step = step
        return totp.code_at(self.secret, step)


@dataclass
class Credentials:
    """What each user logs in with: the password, and for 2FA accounts the TOTP secret, recovery
    codes and two app passwords (``mail``: imap+smtp, ``smtp-only``: smtp)."""

    two_factor: dict[str, TwoFactor] = field(default_factory=dict)
    app_passwords: dict[tuple[str, str], str] = field(default_factory=dict)

    def mail_password(self, account: Account) -> str:
        """The password a mail program uses: an app password on a 2FA account."""
        return self.app_passwords[(account.address, "mail")] if account.two_factor else account.password


def enable_two_factor(server: DrillServer, address: str) -> TwoFactor:
    """``hardmail account 2fa enable`` as an admin types it: read the URI, answer with the app's code."""
    process = subprocess.Popen([*hardmail_command("account", "2fa", "enable", address), "--config",
                                str(server.config_path), "--data-dir", str(server.data_dir)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=cli_env(PYTHONUNBUFFERED="1"), cwd=server.root)
    assert process.stdout is not None
    secret = ""
    for line in process.stdout:
        found = re.search(r"[?&]secret=([A-Z2-7]+)", line)
        if found:
            secret = found.group(1)
            break
    assert secret, "hardmail account 2fa enable printed no otpauth:// URI"
    step = totp.time_step(time.time())
    out, err = process.communicate(totp.code_at(secret, step) + "\n", timeout=WAIT)
    assert process.returncode == 0, f"2fa enable failed: {out}{err}"
    codes = re.findall(r"^\s+([a-z0-9]{4}(?:-[a-z0-9]{4}){3})\s*$", out, re.MULTILINE)
    assert len(codes) == 10, out
    return TwoFactor(secret, codes, step)


def add_app_password(server: DrillServer, address: str, name: str, *scopes: str) -> str:
    args = [arg for scope in scopes for arg in ("--scope", scope)]
    out = server.run("account", "app-password", "add", address, name, *args)[1]
    found = re.search(r"^\s+([a-z0-9]{4}(?:-[a-z0-9]{4}){7})\s*$", out, re.MULTILINE)
    assert found, f"no app password in: {out}"
    return found.group(1)


def dkim_records(output: str) -> dict[str, str]:
    """``name. TTL IN TXT "a" "b"`` lines of ``hardmail dkim generate`` → {name: "ab"}."""
    records = {}
    for line in output.splitlines():
        parts = line.split(None, 4)
        if len(parts) == 5 and parts[2:4] == ["IN", "TXT"]:
            records[parts[0].rstrip(".").lower()] = "".join(re.findall(r'"([^"]*)"', parts[4]))
    return records


def build_settings(server: DrillServer) -> tuple[Credentials, dict[str, str]]:
    """Domains, accounts, 2FA, app passwords, aliases, DKIM keys, IP ranges, folders, a quota and a
    disabled account, all through the CLI of a running server. Returns the credentials and the
    DKIM TXT records an admin would have published."""
    credentials = Credentials()
    for domain in DOMAINS:
        server.run("domain", "add", domain)
    for account in ACCOUNTS:
        server.run("account", "add", account.address, "--password-stdin", stdin=account.password + "\n")
    for account in ACCOUNTS:
        if account.two_factor:
            credentials.two_factor[account.address] = enable_two_factor(server, account.address)
            for name, scopes in (("mail", ("imap", "smtp")), ("smtp-only", ("smtp",))):
                credentials.app_passwords[(account.address, name)] = add_app_password(
                    server, account.address, name, *scopes)
        if not account.enabled:
            server.run("account", "disable", account.address)
    for source, targets in ALIASES:
        server.run("alias", "add", source, *targets)
    records: dict[str, str] = {}
    for domain in DKIM_DOMAINS:
        records |= dkim_records(server.run("dkim", "generate", domain)[1])
    for name, network, options in RANGES:
        server.run("range", "add", name, network, *options)
    for account in MAILBOX_ACCOUNTS[:3]:
        server.run("mailbox", "create", account.address, "Projects/2026")
    server.run("mailbox", "quota", "dave@beta.test", "--storage", "50M", "--messages", "5000")
    return credentials, records


def fill_mailboxes(server: DrillServer, credentials: Credentials, per_account: int = 30) -> None:
    """Mail to every mailbox over SMTP (also through aliases and the catch-all), then each user's
    IMAP session: APPENDs with flags and dates, STOREs, a COPY and an EXPUNGE (UID gaps)."""
    for index, account in enumerate(MAILBOX_ACCOUNTS):
        server.send_mx([account.address], [message("mx", index * 1000 + n, to=account.address)
                                           for n in range(per_account)])
    for source, _targets in ALIASES:
        to = source if not source.startswith("@") else "anyone" + source
        server.send_mx([to], [message("alias", n, to=to) for n in range(6)])
    for index, account in enumerate(MAILBOX_ACCOUNTS):
        with server.imap(account.address, credentials.mail_password(account)) as client:
            _imap_activity(client, account, index)


def _ok(result: tuple[str, Any], what: str) -> Any:
    status, data = result
    assert status == "OK", f"{what}: {status} {data!r}"
    return data


def _imap_activity(client: imaplib.IMAP4_SSL, account: Account, index: int) -> None:
    _ok(client.create('"Receipts"'), "CREATE Receipts")
    _ok(client.subscribe('"Receipts"'), "SUBSCRIBE Receipts")
    own = index < 3  # the accounts that got Projects/2026 from the CLI
    targets = [("Sent", "(\\Seen)"), ("Drafts", "(\\Draft)"), ("Receipts", "(\\Flagged $Receipt)"),
               ("Projects/2026" if own else "Archive", "(\\Seen \\Answered)")]
    for n in range(12):
        folder, flags = targets[n % len(targets)]
        date = imaplib.Time2Internaldate(1_780_000_000 + index * 86_400 + n * 3_600)
        data = message("append", index * 1000 + n, to=account.address, sender=account.address)
        _ok(client.append(f'"{folder}"', flags, date, data), f"APPEND {folder}")
    _ok(client.select('"INBOX"'), "SELECT INBOX")
    uids = _ok(client.uid("SEARCH", "ALL"), "UID SEARCH")[0].split()
    for flags, step in (("(\\Seen)", 2), ("(\\Flagged)", 5), ("(\\Answered)", 7), ("($Work)", 3)):
        chosen = b",".join(uids[::step]).decode()
        _ok(client.uid("STORE", chosen, "+FLAGS", flags), f"STORE {flags}")
    _ok(client.uid("COPY", b",".join(uids[:8]).decode(), '"Archive"'), "COPY to Archive")
    _ok(client.uid("STORE", b",".join(uids[3:18:6]).decode(), "+FLAGS", "(\\Deleted)"), "STORE \\Deleted")
    _ok(client.expunge(), "EXPUNGE")
    _ok(client.select('"Archive"'), "SELECT Archive")
    _ok(client.store("1:3", "+FLAGS", "($Archived)"), "STORE in Archive")


def queue_remote_mail(server: DrillServer, credentials: Credentials) -> list[str]:
    """Authenticated mail for REMOTE_RECIPIENT (a 2FA user with an app password, a password user);
    its MX does not listen yet, so it stays queued. Returns the subjects, once all are queued."""
    subjects = []
    senders = [a for a in MAILBOX_ACCOUNTS if a.address in ("alice@alpha.test", "bob@alpha.test")]
    for n, account in enumerate(senders * 2):
        subject = f"queued {n} from {account.address}"
        data = message("queued", n, to=REMOTE_RECIPIENT, sender=account.address, subject=subject)
        server.submit(account.address, credentials.mail_password(account), [REMOTE_RECIPIENT], data)
        subjects.append(subject)
    wait_until(lambda: len(server.cli_json("queue", "list")) == len(subjects), "the remote mail in the queue")
    return subjects


def check_logins(server: DrillServer, credentials: Credentials) -> list[str]:
    """Every login rule an admin and an attacker would try; returns what did not hold (empty: all did)."""
    wrong = []
    for account in ACCOUNTS:
        address = account.address
        if not account.enabled:
            if server.imap_login_works(address, account.password):
                wrong.append(f"{address} is disabled yet logs in over IMAP")
            continue
        if server.imap_login_works(address, account.password + "x"):
            wrong.append(f"{address}: a wrong password logs in")
        if not account.two_factor:
            if not server.imap_login_works(address, account.password):
                wrong.append(f"{address}: the password does not log in over IMAP")
            if not server.smtp_auth_works(address, account.password):
                wrong.append(f"{address}: the password does not log in over SMTP AUTH")
            continue
        mail, smtp_only = (credentials.app_passwords[(address, name)] for name in ("mail", "smtp-only"))
        if server.imap_login_works(address, account.password):
            wrong.append(f"{address} has 2FA, yet its main password logs in over IMAP")
        if server.smtp_auth_works(address, account.password):
            wrong.append(f"{address} has 2FA, yet its main password logs in over SMTP AUTH")
        if not server.imap_login_works(address, mail):
            wrong.append(f"{address}: the app password (imap, smtp) does not log in over IMAP")
        if not server.smtp_auth_works(address, smtp_only):
            wrong.append(f"{address}: the smtp-only app password does not log in over SMTP AUTH")
        if server.imap_login_works(address, smtp_only):
            wrong.append(f"{address}: the smtp-only app password logs in over IMAP")
    return wrong


def check_codes(server: DrillServer, credentials: Credentials) -> list[str]:
    """The portal-free 2FA path (``hardmail account 2fa verify``): a TOTP code and a recovery code of
    each 2FA account are accepted, a used one is refused (also one used before a backup was taken)."""
    wrong = []
    for address, factor in credentials.two_factor.items():
        for spent in factor.used_recovery:
            if _code_accepted(server, address, spent):
                wrong.append(f"{address}: a recovery code used before is accepted again")
        code = factor.next_code()
        if not _code_accepted(server, address, code):
            wrong.append(f"{address}: a fresh TOTP code is refused")
        if _code_accepted(server, address, code):
            wrong.append(f"{address}: a used TOTP code is accepted again")
        recovery = factor.recovery_codes.pop()
        factor.used_recovery.append(recovery)
        if not _code_accepted(server, address, recovery):
            wrong.append(f"{address}: an unused recovery code is refused")
    return wrong


def _code_accepted(server: DrillServer, address: str, code: str) -> bool:
    return server.run("account", "2fa", "verify", address, "--code", code, check=False)[0] == 0
