"""The bytes of a backup archive: a POSIX pax tar inside one zstd stream (content checksums on),
optionally encrypted to age X25519 recipients; written member by member with the SHA-256 of each
computed while it is copied, and read back member by member as a stream.

Written with :mod:`tarfile` and the ``zstandard`` binding rather than by calling ``tar``, so that
each file is read once: hashed, stored and counted for the progress bar in the same pass. age
encryption (pyrage) works on whole files: the plaintext archive is written first (mode 0600, in
the destination directory), then encrypted next to it; decryption for reading goes to a private
temporary directory that is removed afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

import pyrage
import zstandard

from hardmail.delivery.durable import fsync_dir

ZSTD_LEVEL = 3
_COPY_BUFFER = 1024 * 1024
_IDENTITY_PREFIX = "AGE-SECRET-KEY-1"
_SECRET_PREFIX = "AGE-SECRET-KEY-"
_RECIPIENT_PREFIX = "age1"
NOT_A_RECIPIENT = ("that is an age identity (a secret key), not a recipient: give its public key (age1..., "
                   "printed by `hardmail backup keygen`)")
BytesCallback = Callable[[int], None]


class ArchiveError(Exception):
    """An archive that cannot be written or read; ``str()`` is one line fit for an admin."""


class _HashingReader:
    """Reads ``size`` bytes of a file while hashing them; fails if the file got shorter."""

    def __init__(self, source: IO[bytes], on_bytes: BytesCallback | None) -> None:
        self._source = source
        self._on_bytes = on_bytes
        self.sha256 = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self.sha256.update(data)
        self.count += len(data)
        if self._on_bytes is not None and data:
            self._on_bytes(len(data))
        return data


class ArchiveWriter:
    """Writes one ``.tar.zst`` archive at ``path`` (created, never overwritten; mode 0600)."""

    def __init__(self, path: Path, level: int = ZSTD_LEVEL) -> None:
        self.path = path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file = os.fdopen(fd, "wb")
        compressor = zstandard.ZstdCompressor(level=level, write_checksum=True, threads=-1)
        self._zstd = compressor.stream_writer(self._file, closefd=False)
        self._tar = tarfile.open(fileobj=self._zstd, mode="w|", format=tarfile.PAX_FORMAT)  # type: ignore[call-overload]  # noqa: SIM115 (held across calls)

    def add_file(self, member: str, source: Path, on_bytes: BytesCallback | None = None) -> tuple[int, str, int, int]:
        """Store ``source`` as ``member``; returns (size, sha256 hex, mode, mtime_ns) as read.
        Raises FileNotFoundError when it vanished, ArchiveError when it shrank while read."""
        with open(source, "rb") as handle:
            stat = os.fstat(handle.fileno())
            info = _tar_info(member, stat.st_size, stat.st_mode & 0o7777, stat.st_mtime)
            reader = _HashingReader(handle, on_bytes)
            self._tar.addfile(info, reader)  # type: ignore[arg-type]
        if reader.count != stat.st_size:
            raise ArchiveError(f"{source} changed while it was read")
        return stat.st_size, reader.sha256.hexdigest(), stat.st_mode & 0o7777, stat.st_mtime_ns

    def add_bytes(self, member: str, data: bytes, mode: int = 0o600, mtime: float = 0.0) -> tuple[int, str]:
        """Store ``data`` as ``member``; returns (size, sha256 hex)."""
        self._tar.addfile(_tar_info(member, len(data), mode, mtime), _BytesReader(data))  # type: ignore[arg-type]
        return len(data), hashlib.sha256(data).hexdigest()

    def close(self) -> None:
        """Finish the tar and the zstd frame and fsync the file and its directory."""
        self._tar.close()
        self._zstd.close()  # type: ignore[no-untyped-call]
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        fsync_dir(self.path.parent)

    def abort(self) -> None:
        """Close whatever is open and remove the partial file."""
        for closing in (self._tar.close, self._zstd.close, self._file.close):
            with contextlib.suppress(Exception):
                closing()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._at = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._view) if size < 0 else self._at + size
        chunk = bytes(self._view[self._at:end])
        self._at += len(chunk)
        return chunk


def _tar_info(member: str, size: int, mode: int, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(member)
    info.size = size
    info.mode = mode
    info.mtime = int(mtime)
    info.type = tarfile.REGTYPE
    return info


# --- reading ---------------------------------------------------------------------------------

@contextlib.contextmanager
def opened_plaintext(archive: Path, identities: Sequence[Path] = ()) -> Iterator[Path]:
    """The ``.tar.zst`` path of ``archive``: itself, or for ``.age`` a decrypted copy in a
    private temporary directory removed when the block ends."""
    if archive.name.endswith(".age"):
        with tempfile.TemporaryDirectory(prefix="hardmail-restore-") as scratch:
            plain = Path(scratch) / archive.name.removesuffix(".age")
            decrypt_file(archive, plain, identities)
            yield plain
    else:
        yield archive


def iter_members(archive: Path, identities: Sequence[Path] = (),
                 on_skipped: Callable[[tarfile.TarInfo], None] | None = None,
                 ) -> Iterator[tuple[tarfile.TarInfo, IO[bytes]]]:
    """Every regular member of ``archive`` in order, with a stream of its bytes (valid until the
    next member); ``on_skipped`` is told of each other member (a link, a directory, a device:
    hardmail writes none). Raises ArchiveError for a damaged, truncated or undecryptable archive."""
    with opened_plaintext(archive, identities) as plain:
        try:
            with open(plain, "rb") as raw:
                stream = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
                with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
                    for info in tar:
                        if not info.isreg():
                            if on_skipped is not None:
                                on_skipped(info)
                            continue
                        extracted = tar.extractfile(info)
                        assert extracted is not None
                        yield info, _GuardedStream(extracted, archive.name)  # type: ignore[misc]
                # A damaged header ends the tar reader without an error: the rest of the stream is read
                # so that zstd checks its content checksum at the end of the frame.
                while stream.read(_COPY_BUFFER):
                    pass
        except (tarfile.TarError, zstandard.ZstdError, EOFError) as exc:
            raise ArchiveError(f"the archive {archive.name} is damaged or truncated ({_one_line(exc)})") from None
        except FileNotFoundError:
            raise ArchiveError(f"the archive {archive} does not exist") from None


class _GuardedStream:
    """A member's stream whose read errors (damage met while the caller reads) are ArchiveError."""

    def __init__(self, stream: IO[bytes], archive_name: str) -> None:
        self._stream = stream
        self._archive_name = archive_name

    def read(self, size: int = -1) -> bytes:
        try:
            return self._stream.read(size)
        except (tarfile.TarError, zstandard.ZstdError, EOFError) as exc:
            raise ArchiveError(f"the archive {self._archive_name} is damaged or truncated ({_one_line(exc)})") from None

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


def copy_member(stream: IO[bytes], target: IO[bytes], on_bytes: BytesCallback | None = None) -> tuple[int, str]:
    """Copy a member's stream into ``target``; returns (size, sha256 hex)."""
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(_COPY_BUFFER):
        digest.update(chunk)
        target.write(chunk)
        size += len(chunk)
        if on_bytes is not None:
            on_bytes(len(chunk))
    return size, digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_COPY_BUFFER):
            digest.update(chunk)
    return digest.hexdigest()


# --- age encryption --------------------------------------------------------------------------

def parse_recipients(values: Sequence[str]) -> list[pyrage.x25519.Recipient]:
    """age X25519 recipients from ``age1...`` strings or from files holding one per line."""
    recipients = []
    for value in values:
        if is_secret_key(value):
            raise ArchiveError(NOT_A_RECIPIENT)
        lines = [value] if value.strip().startswith(_RECIPIENT_PREFIX) else _key_file_lines(Path(value), "recipient")
        for line in lines:
            if is_secret_key(line):
                raise ArchiveError(f"the recipient file {value} holds an age identity: {NOT_A_RECIPIENT}")
            try:
                recipients.append(pyrage.x25519.Recipient.from_str(line.strip()))
            except pyrage.RecipientError:
                raise ArchiveError(f"{_shown_recipient(line)} is not an age recipient (age1...)") from None
    if values and not recipients:
        raise ArchiveError("no age recipient was given (age1... public keys, or files of them)")
    return recipients


def is_secret_key(value: str) -> bool:
    """Whether ``value`` is (or begins like) an age identity, which must never be shown."""
    return value.strip().upper().startswith(_SECRET_PREFIX)


def load_identities(paths: Sequence[Path]) -> list[pyrage.x25519.Identity]:
    """The age identities of identity files (``AGE-SECRET-KEY-1...`` lines, ``#`` comments)."""
    identities = []
    for path in paths:
        found = [line for line in _key_file_lines(path, "identity") if line.startswith(_IDENTITY_PREFIX)]
        if not found:
            raise ArchiveError(f"{path} is not an age identity file (it has no {_IDENTITY_PREFIX}... line)")
        for line in found:
            try:
                identities.append(pyrage.x25519.Identity.from_str(line))
            except pyrage.IdentityError:
                raise ArchiveError(f"{path} holds a line that is not a valid age identity") from None
    if not identities:
        raise ArchiveError("no age identity was given: pass --identity FILE (the file `hardmail backup keygen` wrote)")
    return identities


def encrypt_file(plain: Path, encrypted: Path, recipients: Sequence[str]) -> None:
    """Encrypt ``plain`` to ``encrypted`` (mode 0600, fsync'd; never overwrites)."""
    parsed = parse_recipients(recipients)
    fd = os.open(encrypted, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with open(plain, "rb") as reader, os.fdopen(fd, "wb") as writer:
            pyrage.encrypt_io(reader, writer, parsed)
            writer.flush()
            os.fsync(writer.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            encrypted.unlink()
        raise
    fsync_dir(encrypted.parent)


def decrypt_file(encrypted: Path, plain: Path, identities: Sequence[Path]) -> None:
    """Decrypt ``encrypted`` into ``plain`` (mode 0600) with the identities of ``identities``."""
    parsed = load_identities(identities)
    fd = os.open(plain, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with open(encrypted, "rb") as reader, os.fdopen(fd, "wb") as writer:
            pyrage.decrypt_io(reader, writer, parsed)
    except FileNotFoundError:
        raise ArchiveError(f"the archive {encrypted} does not exist") from None
    except pyrage.DecryptError as exc:
        raise ArchiveError(f"cannot decrypt {encrypted.name}: {_decrypt_reason(exc)}") from None


def new_identity() -> tuple[str, str]:
    """A new age X25519 identity: (secret identity line, public recipient)."""
    identity = pyrage.x25519.Identity.generate()
    return str(identity), str(identity.to_public())


def _decrypt_reason(exc: Exception) -> str:
    text = _one_line(exc).lower()
    if "no matching keys" in text or "no identity" in text:
        return "none of the given identities can decrypt it (wrong identity file?)"
    return "the archive is damaged or truncated, or the identity does not match"


def _key_file_lines(path: Path, what: str) -> list[str]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ArchiveError(f"{path} is not an age {what} file (it is not text)") from None
    except IsADirectoryError:
        raise ArchiveError(f"{path} is not an age {what} file (it is a directory)") from None
    except FileNotFoundError:
        raise ArchiveError(f"the age {what} file {path} does not exist") from None
    except OSError as exc:
        raise ArchiveError(f"cannot read the age {what} file {path}: {exc.strerror or exc}") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _shown_recipient(value: str) -> str:
    value = value.strip()
    if is_secret_key(value):
        return "an age identity (secret key)"
    return repr(value if len(value) <= 24 else value[:20] + "...")


def _one_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
