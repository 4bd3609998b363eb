"""The restore drill of issue 13, checked the way a new admin and an attacker would check it.

A real ``hardmail serve`` gets several domains, accounts with TOTP 2FA and app passwords, aliases,
DKIM keys, IP ranges, a quota, a disabled account, queued outbound mail (its MX, a loopback sink,
does not listen yet) and a few hundred messages in several folders with flags. ``hardmail backup
create`` runs while a load client keeps sending over SMTP (every message that got 250 is
counted), then the load stops and ``hardmail backup create --incremental`` runs. The server is
stopped, its data directory deleted, the incremental archive restored (``hardmail backup restore
ARCHIVE --into NEW``, which follows the chain) and the server started on NEW as the restore says.
Then: a real IMAP client sees every message byte for byte with the same UIDs, UIDVALIDITY, flags
and INTERNALDATE; the same logins work and the same ones fail; settings, keys and certificate are
the same; the queued mail is delivered once its MX listens; and no message that got 250 during the
backup is lost. Damaged copies of the real archives fail ``hardmail backup verify``; an encrypted
archive cannot be restored without its identity file and restores with it.

One module fixture builds the whole drill once (about a minute); each test checks one promise.
Nothing sleeps: conditions are polled with a deadline.
"""

from __future__ import annotations

import collections
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dkim
import pytest

from support.backup_damage import DAMAGES, damaged_copy
from support.backup_drill import (
    DKIM_DOMAINS,
    LOAD_TARGET,
    MAILBOX_ACCOUNTS,
    MX_HOST,
    REMOTE,
    REMOTE_RECIPIENT,
    Credentials,
    DrillServer,
    build_settings,
    check_codes,
    check_logins,
    fill_mailboxes,
    message,
    queue_remote_mail,
    wait_until,
)
from support.backup_drill_state import (
    LoadClient,
    Mailboxes,
    count_messages,
    differences,
    key_files,
    load_numbers,
    mailbox_bodies,
    maildir_bodies,
    settings_snapshot,
    snapshot_mailboxes,
)
from support.cli_process import cli_env, hardmail_command
from support.dns_server import LoopbackDnsServer
from support.smtp_sink import Sink, free_port_on

NEEDED = ("create", "restore", "verify", "keygen")


def _missing_backup_commands() -> list[str]:
    done = subprocess.run(hardmail_command("backup", "--help"), capture_output=True, text=True, timeout=120,
                          env={**cli_env(), "COLUMNS": "200"}, check=False)
    return [name for name in NEEDED if f" {name} " not in done.stdout]


pytestmark = pytest.mark.skipif(bool(_missing_backup_commands()),
                                reason="hardmail backup create/restore/verify/keygen are not in this checkout yet")


@dataclass
class Drill:
    root: Path
    server: DrillServer  # serving the restored data directory during the tests
    credentials: Credentials
    dkim_records: dict[str, str]
    outbound_port: int
    queued: list[str]
    acked: list[int]  # load messages that got 250, in order
    acked_before_full: int  # how many of them before `backup create` started
    acked_during_full: int
    full: Path
    incremental: Path
    encrypted: Path
    identity: Path
    logins_before: list[str]
    codes_before: list[str]
    before: Mailboxes
    after: Mailboxes
    settings_before: dict[str, Any]
    settings_after: dict[str, Any]
    keys_before: dict[str, str]
    keys_after: dict[str, str]
    certificate_before: str
    certificate_after: str


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A ``hardmail`` command without any configuration (verify, restore, keygen need none)."""
    return subprocess.run(hardmail_command(*args), cwd=cwd, env=cli_env(), capture_output=True, text=True,
                          timeout=300, check=False)


def create_backup(server: DrillServer, destination: Path, *options: str) -> Path:
    """``hardmail backup create --to DIR [OPTIONS]``; the archive it wrote."""
    destination.mkdir(parents=True, exist_ok=True)
    old = set(destination.iterdir())
    server.cli("backup", "create", "--to", str(destination), *options)
    made = [p for p in set(destination.iterdir()) - old if ".tar.zst" in p.name]
    assert len(made) == 1, f"backup create wrote {sorted(p.name for p in made)} into {destination}"
    return made[0]


def restore(archive: Path, into: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return cli("backup", "restore", str(archive), "--into", str(into), *options, cwd=archive.parent)


def _zone() -> dict[tuple[str, str], Any]:
    return {(REMOTE, "MX"): [f"10 mx.{REMOTE}."], (f"mx.{REMOTE}", "A"): [MX_HOST]}


def _backup_under_load(server: DrillServer, destination: Path) -> tuple[Path, Path, list[int], int, int]:
    """The full backup while the load client sends, then the incremental after it stopped."""
    with LoadClient(server) as load:
        load.wait_for(5)
        before = load.count()
        full = create_backup(server, destination)
        during = load.count() - before
        load.wait_for(before + during + 5)  # some only the incremental can hold
        load.stop()
    assert not load.failed, load.failed[:5]
    incremental = create_backup(server, destination, "--incremental")
    return full, incremental, list(load.acked), before, during


def _encrypted_backup(server: DrillServer, root: Path) -> tuple[Path, Path]:
    """An encrypted chain, as scheduled backups with recipients make it: a full backup, then an
    incremental one (verified when made: with the kept manifests, without the private key)."""
    identity = root / "keys" / "backup-identity.txt"
    identity.parent.mkdir()
    made = cli("backup", "keygen", "--out", str(identity), cwd=root)
    assert made.returncode == 0, made.stdout + made.stderr
    recipient = next(word for word in made.stdout.split() if word.startswith("age1"))
    create_backup(server, root / "offsite", "--encrypt-to", recipient)
    return create_backup(server, root / "offsite", "--encrypt-to", recipient, "--incremental"), identity


def sidecar(archive: Path) -> dict[str, Any]:
    """The catalog record next to an archive."""
    record: dict[str, Any] = json.loads(archive.with_name(archive.name.split(".tar.zst")[0] + ".json").read_text())
    return record


def _lose_the_machine(server: DrillServer) -> None:
    """The data directory and the configuration file are gone; the archives (elsewhere) are left."""
    shutil.rmtree(server.data_dir)
    server.config_path.unlink()


def _restore(server: DrillServer, archive: Path, into: Path) -> None:
    """Restore into a new directory, to be started as the restore's own output says: with the
    configuration file that came back from the archive, pointed at the new directory."""
    done = restore(archive, into)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"--config {into / 'hardmail.toml'}" in done.stdout, done.stdout
    server.data_dir, server.config_path = into, into / "hardmail.toml"


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drill]:
    root = tmp_path_factory.mktemp("drill")
    outbound_port = free_port_on(MX_HOST)
    with LoopbackDnsServer(_zone()) as dns:
        server = DrillServer(root, dns.port, outbound_port)
        server.start()
        try:
            credentials, records = build_settings(server)
            fill_mailboxes(server, credentials)
            queued = queue_remote_mail(server, credentials)
            logins_before, codes_before = check_logins(server, credentials), check_codes(server, credentials)
            full, incremental, acked, acked_before, acked_during = _backup_under_load(server, root / "backups")
            before = snapshot_mailboxes(server, credentials)
            settings_before = settings_snapshot(server, credentials)
            keys_before, certificate_before = key_files(server.data_dir), server.certificate_sha256()
            encrypted, identity = _encrypted_backup(server, root)
            server.stop()
            _lose_the_machine(server)
            _restore(server, incremental, root / "restored")
            settings_after, keys_after = settings_snapshot(server, credentials), key_files(server.data_dir)
            server.start()
            yield Drill(root, server, credentials, records, outbound_port, queued, acked, acked_before, acked_during,
                        full, incremental, encrypted, identity, logins_before, codes_before,
                        before, snapshot_mailboxes(server, credentials), settings_before, settings_after,
                        keys_before, keys_after, certificate_before, server.certificate_sha256())
        finally:
            server.stop(check=False)


def test_an_imap_client_sees_every_message_byte_for_byte_with_the_same_uids_and_flags(drill: Drill) -> None:
    assert count_messages(drill.before) >= 250, "the drill made fewer messages than it should"
    assert all(len(folders) >= 7 for folders in drill.before.values()), drill.before.keys()
    assert differences(drill.before, drill.after) == []
    assert count_messages(drill.after) == count_messages(drill.before)


def test_every_message_that_got_250_during_the_backup_is_restored(drill: Drill) -> None:
    restored = load_numbers(mailbox_bodies(drill.after, LOAD_TARGET))
    lost = set(drill.acked) - restored
    assert lost == set(), (f"{len(lost)} acknowledged load messages are lost ({drill.acked_during_full} were "
                           f"acknowledged while the full backup ran)")
    assert load_numbers(mailbox_bodies(drill.before, LOAD_TARGET)) == set(drill.acked)
    # what was acknowledged before the full backup began is in the full archive itself
    only_full = drill.root / "full-only"
    done = restore(drill.full, only_full)
    assert done.returncode == 0, done.stdout + done.stderr
    in_full = load_numbers(maildir_bodies(only_full, LOAD_TARGET))
    assert set(drill.acked[: drill.acked_before_full]) <= in_full
    assert in_full <= set(drill.acked)


def test_the_same_logins_work_and_the_same_ones_fail(drill: Drill) -> None:
    assert drill.logins_before == [] and drill.codes_before == [], "the checks did not hold before the backup"
    assert check_logins(drill.server, drill.credentials) == []
    assert check_codes(drill.server, drill.credentials) == []


def test_settings_keys_and_certificate_are_the_same(drill: Drill) -> None:
    assert drill.settings_after == drill.settings_before
    assert drill.keys_after == drill.keys_before
    assert any(path.startswith("dkim/") for path in drill.keys_before) and "server.key" in drill.keys_before
    assert drill.certificate_after == drill.certificate_before


def _dkim_dns(records: dict[str, str]) -> Any:
    def lookup(name: bytes | str, timeout: float = 5) -> bytes | None:
        key = (name.decode() if isinstance(name, bytes) else name).rstrip(".").lower()
        return records[key].encode() if key in records else None

    return lookup


def test_queued_mail_is_delivered_once_its_mx_listens_and_new_mail_is_signed_with_the_old_keys(
        drill: Drill) -> None:
    server = drill.server
    with Sink(MX_HOST, drill.outbound_port) as sink:
        server.cli("queue", "retry", "--all")
        wait_until(lambda: set(sink.subjects()) >= set(drill.queued), "the queued mail at the sink")
        wait_until(lambda: server.cli_json("queue", "list") == [], "an empty queue")
        assert collections.Counter(sink.subjects()) == dict.fromkeys(drill.queued, 1)
        bob = next(a for a in MAILBOX_ACCOUNTS if a.address == "bob@alpha.test")
        fresh = message("after-restore", 1, to=REMOTE_RECIPIENT, sender=bob.address, subject="signed after restore")
        server.submit(bob.address, bob.password, [REMOTE_RECIPIENT], fresh)
        wait_until(lambda: "signed after restore" in sink.subjects(), "the new mail at the sink")
    delivered = next(m.data for m in sink.received if b"Subject: signed after restore" in m.data)
    assert f"d={DKIM_DOMAINS[0]}".encode() in delivered
    signer = dkim.DKIM(delivered)
    count = delivered.count(b"DKIM-Signature:")
    assert count >= 1 and all(signer.verify(idx=i, dnsfunc=_dkim_dns(drill.dkim_records)) for i in range(count)), \
        "mail signed after the restore does not verify against the DNS records published before the backup"


def test_verify_accepts_the_real_archives_and_list_shows_the_chain(drill: Drill) -> None:
    for archive in (drill.full, drill.incremental):
        assert (sidecar(archive)["verify"] or {}).get("ok") is True, f"{archive.name} was not verified when made"
        done = cli("backup", "verify", str(archive), cwd=drill.root)
        assert done.returncode == 0, done.stdout + done.stderr
    listed = drill.server.cli("backup", "list", "--dir", str(drill.full.parent)).stdout
    for archive in (drill.full, drill.incremental):
        assert archive.name.split(".tar.zst")[0] in listed, listed


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_verify_catches_a_damaged_copy_and_names_the_failure(drill: Drill, damage: str) -> None:
    copy, named = damaged_copy(drill.full, drill.root / "damaged" / damage.replace(" ", "-"), damage)
    done = cli("backup", "verify", str(copy), cwd=copy.parent)
    report = done.stdout + done.stderr
    assert done.returncode == 1, report
    name = named.removeprefix("files/")
    assert name in report or named in report, f"{damage}: verify did not name {named!r}:\n{report}"


def test_an_encrypted_archive_cannot_be_restored_without_its_identity_and_restores_with_it(drill: Drill) -> None:
    assert drill.encrypted.name.endswith("-incr.tar.zst.age")
    for archive in drill.encrypted.parent.glob("*.tar.zst*"):
        assert archive.name.endswith(".age") and archive.read_bytes().startswith(b"age-encryption.org/v1\n")
    assert (sidecar(drill.encrypted)["verify"] or {}).get("ok") is True, "the encrypted incremental was not verified"
    refused = restore(drill.encrypted, drill.root / "no-identity")
    assert refused.returncode != 0 and "identity" in (refused.stdout + refused.stderr).lower()
    leftover = drill.root / "no-identity"
    assert not leftover.exists() or not any(leftover.iterdir()), "a refused restore left files behind"
    assert cli("backup", "verify", str(drill.encrypted), cwd=drill.root).returncode != 0
    checked = cli("backup", "verify", str(drill.encrypted), "--identity", str(drill.identity), cwd=drill.root)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    into = drill.root / "from-encrypted"
    done = restore(drill.encrypted, into, "--identity", str(drill.identity))
    assert done.returncode == 0, done.stdout + done.stderr
    for account in MAILBOX_ACCOUNTS:
        restored = collections.Counter(maildir_bodies(into, account.address))
        assert restored == collections.Counter(mailbox_bodies(drill.before, account.address)), account.address

