"""Verifying an archive: every member of it and of each earlier archive of its chain read and
re-hashed against the manifests, the database copy opened and checked, and the mailbox index and
the outbound queue compared with the files the archive restores (those content checks:
:mod:`hardmail.ops.backup.verify_contents`). :func:`verify_archive` is ``hardmail backup
verify``; :func:`verify_created` is the check ``hardmail backup create`` makes of the archive it
has just written, which can take less for granted (see there).

What is checked (each problem is one failure line; the report is ok only when there is none):
- each archive of the chain is there and complete (a truncated one has no ``MANIFEST.json``), and
  its manifest belongs to the chain; every entry stored in an archive is a member of it with the
  manifest's size and SHA-256, and every member is in that archive's manifest;
- the database copy and the index against the files (:mod:`.verify_contents`).
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from hardmail.core.bulk import bulk_allocation
from hardmail.ops.backup.archive import ArchiveError, opened_plaintext
from hardmail.ops.backup.catalog import read_record, sidecar_path
from hardmail.ops.backup.manifest import (
    ENCRYPTED_SUFFIX,
    MANIFEST_MEMBER,
    SIDECAR_SUFFIX,
    FileEntry,
    Manifest,
    ManifestError,
)
from hardmail.ops.backup.restore import (
    MAX_MANIFEST_BYTES,
    RestoreError,
    check_database_names,
    check_member_name,
    find_archive,
    stored_bytes_hint,
)
from hardmail.ops.backup.tarstream import GrowingFile, TarReader, Written, open_tar, read_tar
from hardmail.ops.backup.verify_contents import check_contents

ProgressCallback = Callable[[str, int, int], None]
MAX_FAILURES = 300


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    failures: tuple[str, ...]
    files_checked: int
    messages_checked: int
    # the failures counted by kind, without file names or addresses (for the sidecar record)
    summary: tuple[str, ...] = ()


class _Failures:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.count = 0
        self.kinds: Counter[str] = Counter()

    def add(self, subject: str, problem: str, kind: str | None = None) -> None:
        self.count += 1
        self.kinds[kind or problem] += 1
        if len(self.lines) < MAX_FAILURES:
            self.lines.append(f"{subject}: {problem}" if subject else problem)

    def report(self, files: int, messages: int) -> VerifyReport:
        lines = list(self.lines)
        if self.count > len(lines):
            lines.append(f"... and {self.count - len(lines)} more failures")
        summary = tuple(f"{count} times: {kind}" if count > 1 else kind for kind, count in self.kinds.items())
        return VerifyReport(self.count == 0, tuple(lines), files, messages, summary)


@dataclass
class _Scan:
    """What reading one archive found: member → (size, sha256), its manifest, and whether the
    stream was read to its end."""

    file: Path
    members: dict[str, tuple[int, str | None]] = field(default_factory=dict)  # None: not hashed
    manifest: Manifest | None = None
    complete: bool = False
    manifest_data: bytes = b""
    tar_size: int = 0


@dataclass
class _Progress:
    callback: ProgressCallback | None
    phase: str = "verifying"
    done: int = 0
    total: int = 0

    def __call__(self, count: int) -> None:
        self.done += count
        if self.callback is not None:
            self.callback(self.phase, self.done, self.total)


def verify_archive(archive: Path, identities: Sequence[Path] = (),
                   progress: ProgressCallback | None = None, *,
                   manifests: Mapping[str, Manifest] | None = None) -> VerifyReport:
    """Check ``archive`` and the earlier archives of its chain (see the module docstring).
    ``manifests``: earlier archives of the chain taken as these manifests say instead of read (a
    new incremental archive after encrypted ones, which the server cannot decrypt: create passes
    the manifest copies of the state directory, for archives whose own verification passed)."""
    failures = _Failures()
    counter = _Progress(progress)
    with tempfile.TemporaryDirectory(prefix="hardmail-verify-") as scratch, bulk_allocation():  # a record per file
        extracted = Path(scratch)
        target = _scan(archive, identities, failures, counter, extract_to=extracted)
        manifest = target.manifest
        if manifest is None:
            return failures.report(0, 0)
        scans: dict[str, _Scan | None] = {manifest.name: target}
        _check_chain_shape(manifest, failures)
        names_safe = _check_names(manifest, failures)
        _check_own(target, manifest, failures)
        for position, name in enumerate(manifest.chain[:-1]):
            if manifests is not None and name in manifests:
                kept = manifests[name]
                scans[name] = _scan_as_listed(archive.parent, name, kept, failures) \
                    if _belongs(kept, name, manifest.chain[:position + 1], name, failures) else None
                continue
            scans[name] = _scan_earlier(archive.parent, name, manifest.chain[:position + 1], identities,
                                        failures, counter)
        _check_held(manifest, scans, failures)
        messages = check_contents(manifest, extracted, failures) if names_safe else 0
    return failures.report(len(manifest.files), messages)


class CannotVerify(Exception):
    """The chain of a new archive cannot be checked here (an earlier archive is encrypted and was
    never verified); ``str()`` says which, for the admin."""


def verify_created(archive: Path, manifest: Manifest, manifest_json: bytes, written: Written,
                   parent: Manifest | None = None, progress: ProgressCallback | None = None, *,
                   read_back: ReadBack | None = None) -> VerifyReport:
    """The check ``hardmail backup create`` makes of the plaintext archive it has just written
    (``written``: what the writer says it wrote; ``parent``: the manifest an incremental one was
    built on). Everything :func:`verify_archive` checks, with two differences:

    - The new archive is read back and decompressed whole, but its members are not hashed with
      SHA-256 again: the zstd frame carries a content checksum (XXH64 of the whole decompressed
      stream) that zstd checks when it decodes the frame's end, and the file must be the size
      the writer wrote, so that the end is in it. A read that passes proves that the bytes on disk
      decompress to exactly the stream that was written, and every member of that stream was
      hashed for the manifest from the very bytes handed to the compressor; a second SHA-256
      would prove the same again for a third of the backup's time. (The checksum is against
      damage, not forgery: an archive's manifest is inside it anyway.) The manifest read back
      must be the bytes written. ``hardmail backup verify`` re-hashes every member.
    - The earlier archives of the chain are not read: each was verified in full when it was made.
      Each must be there, the size its record (sidecar) says, with a record of this chain whose
      verification passed, and hold what the parent's manifest says the new archive takes from
      it. Re-hashing them (the full archive is most of a chain's bytes) would cost more than the
      whole incremental backup; ``hardmail backup verify`` reads them all. An earlier archive
      that was never verified is read in full here, or, when encrypted (the server has no key),
      the new one is left unverified: CannotVerify.

    ``read_back``: the new archive already being read back while it was written (:class:`ReadBack`).
    """
    read_back = read_back or ReadBack(archive, None, progress)
    with read_back, bulk_allocation():  # a record per file
        failures, counter, extracted = read_back.failures, _Progress(progress), read_back.extracted
        target = _checked_read_back(archive, read_back.result(), manifest_json, written, failures)
        if not target.complete:
            if not failures.count:
                failures.add(archive.name, "it could not be read back whole", "the new archive could not be read back")
            return failures.report(0, 0)
        target.manifest = manifest
        scans: dict[str, _Scan | None] = {manifest.name: target}
        _check_chain_shape(manifest, failures)
        _check_own(target, manifest, failures)
        for position, name in enumerate(manifest.chain[:-1]):
            scans[name] = _earlier_as_recorded(archive.parent, name, manifest.chain[:position + 1], parent,
                                               failures, counter)
        _check_held(manifest, scans, failures)
        messages = check_contents(manifest, extracted, failures)
    return failures.report(len(manifest.files), messages)


class ReadBack:
    """Reading a new archive back (``source``: the file as it grows while it is written, see
    ``tarstream.GrowingFile``; None: ``archive`` once written) in a thread of its own, members
    counted and not hashed (see :func:`verify_created`), the database members extracted to a
    private scratch directory, which :meth:`close` (or the end of a ``with``) removes. Read
    while it is written, the read-back costs the backup no time of its own on a second core."""

    def __init__(self, archive: Path, source: GrowingFile | None, progress: ProgressCallback | None = None) -> None:
        self.archive = archive
        self.failures = _Failures()
        self._scratch = tempfile.TemporaryDirectory(prefix="hardmail-verify-")
        self.extracted = Path(self._scratch.name)
        self._scan = _Scan(archive)
        self._error: BaseException | None = None
        self._source = source
        self._counter = _Progress(progress)
        self._thread = threading.Thread(target=self._run, name="hardmail-read-back", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._scan = _scan(self.archive, (), self.failures, self._counter, extract_to=self.extracted,
                               hashing=False, source=self._source)
        except BaseException as exc:  # raised by result(), in the thread that waits for it
            self._error = exc

    def file_sha256(self, size: int) -> str | None:
        """The archive file's SHA-256, from the bytes read back, when they were the whole ``size``."""
        self._thread.join()
        return None if self._source is None else self._source.sha256_of_whole(size)

    def result(self) -> _Scan:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._scan

    def close(self) -> None:
        """Wait for the reading (the writer has ended or was abandoned) and remove the scratch."""
        self._thread.join()
        if self._source is not None:
            self._source.close()
        self._scratch.cleanup()

    def __enter__(self) -> ReadBack:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _checked_read_back(archive: Path, scan: _Scan, manifest_json: bytes, written: Written,
                       failures: _Failures) -> _Scan:
    """The read-back against what the writer wrote: the file's size, the stream's, the manifest."""
    size = archive.stat().st_size
    if size != written.file_size:
        failures.add(archive.name, f"{size} bytes on disk, {written.file_size} were written",
                     "the new archive is not the size written")
        scan.complete = False
    elif not scan.complete or not scan.manifest_data:
        scan.complete = False
    elif scan.tar_size != written.tar_size:
        failures.add(archive.name, f"it decompresses to {scan.tar_size} bytes, {written.tar_size} were written",
                     "the new archive does not decompress to what was written")
        scan.complete = False
    elif scan.manifest_data != manifest_json:
        failures.add(archive.name, f"its {MANIFEST_MEMBER} is not the one written", "a manifest is damaged")
        scan.complete = False
    return scan


def _earlier_as_recorded(directory: Path, name: str, chain: tuple[str, ...], parent: Manifest | None,
                         failures: _Failures, counter: _Progress) -> _Scan | None:
    """An earlier archive of a new one's chain, checked against its record (see verify_created)."""
    path = find_archive(directory, name)
    record = read_record(sidecar_path(directory, name))
    if path is None or record is None or record.verify is None or parent is None:
        if path is not None and path.name.endswith(ENCRYPTED_SUFFIX):
            raise CannotVerify(f"the earlier archive {name} of its chain is encrypted and was not verified; "
                               "verify the chain with its identity")
        return _scan_earlier(directory, name, chain, (), failures, counter)  # read in full (or: missing)
    if not record.verify.ok:
        failures.add(name, "this archive of the chain failed its own verification (`hardmail backup verify` "
                     "lists why)", "an archive of the chain failed its verification")
        return None
    if record.chain != chain or record.archive_file != path.name:
        failures.add(name, f"its record {name}{SIDECAR_SUFFIX} is not that of this archive of the chain",
                     "an archive of the chain is not the one named")
        return None
    size = path.stat().st_size
    if size != record.archive_size:
        failures.add(path.name, f"{size} bytes, its record says {record.archive_size}: the file changed or was cut "
                     "short since it was made", "an archive of the chain changed since it was made")
        return None
    return _scan_as_listed(directory, name, parent, failures)


# --- reading archives ------------------------------------------------------------------------

def _scan(archive: Path, identities: Sequence[Path], failures: _Failures, counter: _Progress,
          extract_to: Path | None = None, hashing: bool = True, source: GrowingFile | None = None) -> _Scan:
    """Read every member of ``archive``; the ``database/`` members are copied under
    ``extract_to`` when given. Without ``hashing`` the members are counted, not hashed, and the
    manifest is kept as bytes (:func:`verify_created`). Problems are added to ``failures``."""
    scan = _Scan(archive)
    counter.phase, counter.done, counter.total = f"verifying {archive.name}", 0, stored_bytes_hint(archive)
    manifest_data: bytes | None = None
    def not_regular(info: Any) -> None:
        failures.add(archive.name, f"member {info.name[:200]!r} is not a regular file; restore would not write it",
                     "a member is not a regular file")

    try:
        with _opened(archive, identities, source) as tar:
            for member in tar.members():
                if not member.regular:
                    not_regular(member)
                    continue
                if manifest_data is not None:
                    failures.add(archive.name, f"member {member.name[:200]} comes after {MANIFEST_MEMBER}",
                                 "a member comes after MANIFEST.json")
                if member.name == MANIFEST_MEMBER:
                    manifest_data = tar.read_all() if member.size <= MAX_MANIFEST_BYTES else b""
                    continue
                _scan_member(scan, member.name, tar.chunks(), failures, counter, extract_to, hashing)
            scan.tar_size = tar.tar_size
        scan.complete = True
    except ArchiveError as exc:
        failures.add("", str(exc), "an archive is damaged or truncated")
        return scan
    if manifest_data is None:
        failures.add(archive.name, f"archive truncated: it has no {MANIFEST_MEMBER}",
                     "an archive is truncated (no MANIFEST.json)")
        return scan
    scan.manifest_data = manifest_data
    if hashing:
        try:
            scan.manifest = Manifest.from_json(manifest_data)
        except ManifestError as exc:
            failures.add(archive.name, str(exc), "a manifest is damaged")
    return scan


@contextlib.contextmanager
def _opened(archive: Path, identities: Sequence[Path], source: GrowingFile | None) -> Iterator[TarReader]:
    if source is not None:
        with read_tar(source, archive.name) as tar:
            yield tar
    else:
        with opened_plaintext(archive, identities) as plain, open_tar(plain, archive.name) as tar:
            yield tar


def _scan_member(scan: _Scan, name: str, chunks: Iterator[memoryview], failures: _Failures, counter: _Progress,
                 extract_to: Path | None, hashing: bool) -> None:
    if name in scan.members:
        failures.add(name, f"appears twice in {scan.file.name}", "a member appears twice")
    try:
        path = check_member_name(name)
    except RestoreError:
        failures.add(scan.file.name, f"member {name[:200]!r} has an unsafe name", "a member has an unsafe name")
        scan.members[name] = _digest(chunks, counter, True)
        return
    if extract_to is not None and path.parts[0] == "database":
        target = extract_to / path
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(target, "wb") as out:
            scan.members[name] = _digest(chunks, counter, hashing, out)
        return
    scan.members[name] = _digest(chunks, counter, hashing)


def _digest(chunks: Iterator[memoryview], counter: _Progress, hashing: bool,
            out: IO[bytes] | None = None) -> tuple[int, str | None]:
    """(size, sha256 hex or None without ``hashing``) of a member's data, copied to ``out``."""
    digest = hashlib.sha256() if hashing else None
    size = 0
    for chunk in chunks:
        if digest is not None:
            digest.update(chunk)
        if out is not None:
            out.write(chunk)
        size += len(chunk)
    counter(size)
    return size, None if digest is None else digest.hexdigest()


def _scan_earlier(directory: Path, name: str, chain: tuple[str, ...], identities: Sequence[Path],
                  failures: _Failures, counter: _Progress) -> _Scan | None:
    path = find_archive(directory, name)
    if path is None:
        failures.add(name, f"this archive of the chain is missing from {directory}",
                     "an archive of the chain is missing")
        return None
    scan = _scan(path, identities, failures, counter)
    if scan.manifest is not None and _belongs(scan.manifest, name, chain, path.name, failures):
        _check_own(scan, scan.manifest, failures)
    return scan


def _belongs(manifest: Manifest, name: str, chain: tuple[str, ...], shown: str, failures: _Failures) -> bool:
    """Whether ``manifest`` is that of archive ``name`` of this chain (a failure if not)."""
    if manifest.name == name and manifest.chain == chain:
        return True
    failures.add(shown, f"its manifest is that of {manifest.name} (chain {', '.join(manifest.chain)}), not of "
                 f"{name} of this chain", "an archive of the chain is not the one named")
    return False


def _scan_as_listed(directory: Path, name: str, manifest: Manifest, failures: _Failures) -> _Scan | None:
    """An earlier archive that is not read: its members are the entries ``manifest`` (its own,
    or a later one of the chain) says it holds."""
    path = find_archive(directory, name)
    if path is None:
        failures.add(name, f"this archive of the chain is missing from {directory}",
                     "an archive of the chain is missing")
        return None
    members: dict[str, tuple[int, str | None]] = {
        entry.member: (entry.size, entry.sha256) for entry in manifest.files if entry.archive == name}
    return _Scan(path, members, manifest, complete=True)


# --- the manifests against the members -------------------------------------------------------

def _check_chain_shape(manifest: Manifest, failures: _Failures) -> None:
    chain = manifest.chain
    if not chain or chain[-1] != manifest.name:
        failures.add(manifest.name, "the manifest's chain does not end with the archive itself", "a chain is damaged")
    elif manifest.kind == "full" and (len(chain) != 1 or manifest.parent is not None):
        failures.add(manifest.name, "a full archive with a parent", "a chain is damaged")
    elif manifest.kind == "incremental" and (len(chain) < 2 or manifest.parent != chain[-2]):
        failures.add(manifest.name, "an incremental archive whose parent is not the previous archive of its chain",
                     "a chain is damaged")


def _check_names(manifest: Manifest, failures: _Failures) -> bool:
    """Every path the manifest names is one restore accepts (the check restore makes), and no
    entry's path is a directory of another's; False when the database members are unsafe."""
    paths = set()
    for entry in manifest.files:
        for name in dict.fromkeys((entry.path, entry.member)):
            try:
                check_member_name(name)
            except RestoreError as exc:
                failures.add(entry.path[:200], str(exc), "an entry names an unsafe path")
        paths.add(entry.path)
    for path in sorted(paths):
        parent = PurePosixPath(path).parent
        while len(parent.parts) > 1:
            if str(parent) in paths:
                failures.add(path, f"is inside {parent}, which the manifest lists as a file; restore cannot write "
                             "both", "an entry is inside another entry's path")
                break
            parent = parent.parent
    try:
        check_database_names(manifest)
    except RestoreError as exc:
        failures.add(manifest.name, str(exc), "the manifest names an unsafe database path")
        return False
    return True


def _check_own(scan: _Scan, manifest: Manifest, failures: _Failures) -> None:
    """Every entry the archive's own manifest stores in it is a member with its size and hash,
    and every member is one of them."""
    stored = manifest.stored_here()
    for entry in stored:
        _check_entry(entry, scan, failures)
    listed = {entry.member for entry in stored}
    for member in scan.members:
        if member not in listed:
            failures.add(member, f"in archive {scan.file.name} but not in its manifest",
                         "a member is not in the manifest")


def _check_entry(entry: FileEntry, scan: _Scan, failures: _Failures) -> None:
    found = scan.members.get(entry.member)
    if found is None:
        if scan.complete:  # a damaged stream is one failure already, not one per file after it
            failures.add(entry.path, f"missing from archive {scan.file.name}", "a file is missing from its archive")
        return
    size, sha256 = found
    if size != entry.size:
        failures.add(entry.path, f"size differs from the manifest ({size} bytes, the manifest says {entry.size})",
                     "a file's size differs from the manifest")
    elif sha256 is not None and sha256 != entry.sha256:
        failures.add(entry.path, "SHA-256 differs from the manifest", "a file's SHA-256 differs from the manifest")


def _check_held(manifest: Manifest, scans: dict[str, _Scan | None], failures: _Failures) -> None:
    """Entries of this manifest whose bytes are in an earlier archive: there, and the same."""
    for entry in manifest.files:
        if entry.archive == manifest.name:
            continue
        if entry.archive not in scans:
            failures.add(entry.path, f"held by archive {entry.archive}, which is not in the chain",
                         "a file is held by an archive outside the chain")
            continue
        scan = scans[entry.archive]
        if scan is not None:
            _check_entry(entry, scan, failures)
