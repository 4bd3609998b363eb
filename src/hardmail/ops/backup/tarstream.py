"""A fast writer of the archive format (:mod:`hardmail.ops.backup.archive`): the same POSIX pax tar
in one zstd stream (level 3, content checksums on), with the interface of ``ArchiveWriter``, for
the many small files of a mail store.

Python's ``tarfile`` spends about 100 µs on each member (a ``TarInfo`` copied, the pax header
built field by field, every ``TarInfo`` kept in memory until the archive is closed), six times
what ``tar`` needs for a Maildir file. Here a member costs one ``open``, one ``fstat``, one
``read`` for a file up to :data:`WHOLE_READ` bytes (a larger one is streamed in chunks), a
SHA-256 and a header made with one format operation; output is gathered in a buffer and handed
to zstd a MiB at a time. Nothing is kept per member, so memory does not grow with the number of
files.

Headers: ustar (``ustar\\0`` magic, version ``00``, uid/gid 0, no user names), preceded by a pax
extended header (type ``x``, name ``././@PaxHeader``) with ``path`` when the name is not ASCII or
longer than 100 bytes, and ``size`` from 8 GiB on. The archive ends with two zero blocks, padded
to a multiple of 10240 bytes as ``tar`` does. ``tarfile`` and GNU tar read it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import stat
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import zstandard

from hardmail.delivery.durable import fsync_dir
from hardmail.ops.backup.archive import ZSTD_LEVEL, ArchiveError

BytesCallback = Callable[[int], None]
BLOCK = 512
RECORD = 20 * BLOCK
WHOLE_READ = 4 * 1024 * 1024  # files up to this size are read with one read() and checked before any byte is written
_CHUNK = 1024 * 1024
_MAX_OCTAL_SIZE = 8**11 - 1
_ZEROS = bytes(RECORD)
_USTAR_TAIL = b"ustar\x0000" + bytes(64) + b"0000000\x000000000\x00" + bytes(167)  # magic..devminor, prefix, pad


def header(member: str, size: int, mode: int, mtime: int, kind: bytes = b"0") -> bytes:
    """The header block(s) of one member: a pax extended header first when it needs one."""
    name = member.encode("utf-8")
    records = b""
    if len(name) > 100 or not name.isascii():
        records += _pax_record(b"path", name)
        name = name[:100].decode("utf-8", "ignore").encode("ascii", "replace")[:100]
    if size > _MAX_OCTAL_SIZE:
        records += _pax_record(b"size", str(size).encode())
    block = _ustar(name, 0 if size > _MAX_OCTAL_SIZE else size, mode, mtime, kind)
    if not records:
        return block
    extended = _ustar(b"././@PaxHeader", len(records), 0o644, mtime, b"x")
    return extended + records + _ZEROS[: -len(records) % BLOCK] + block


def _pax_record(key: bytes, value: bytes) -> bytes:
    """``"<length> <key>=<value>\\n"``, the length counting itself (POSIX pax)."""
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode() + body


def _ustar(name: bytes, size: int, mode: int, mtime: int, kind: bytes) -> bytes:
    head = b"%s%07o\x000000000\x000000000\x00%011o\x00%011o\x00" % (name.ljust(100, b"\x00"), mode, size, mtime)
    tail = _TAILS[kind]
    checksum = sum(head) + _TAIL_SUMS[kind] + 8 * 32  # the checksum field counts as eight spaces
    return head + b"%06o\x00 " % checksum + tail


_TAILS = {kind: kind + bytes(100) + _USTAR_TAIL for kind in (b"0", b"x")}  # type flag .. end of the block
_TAIL_SUMS = {kind: sum(tail) for kind, tail in _TAILS.items()}


class _Output:
    """The archive file under the compressor: every byte is counted and hashed on its way to the
    file, so that the sidecar's ``archive_sha256`` needs no second read of the archive; a
    :class:`GrowingFile` learns from it how far the file has been written."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.sha256: Any = hashlib.sha256()  # None once a GrowingFile hashes the bytes instead
        self.size = 0
        self.ended = False
        self.abandoned = False
        self._changed = threading.Condition()

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        if self.sha256 is not None:
            self.sha256.update(view)
        while view:
            view = view[os.write(self.fd, view):]
        with self._changed:
            self.size += len(data)
            self._changed.notify_all()
        return len(data)

    def flush(self) -> None:
        return None

    def end(self, abandoned: bool = False) -> None:
        with self._changed:
            self.ended, self.abandoned = True, abandoned
            self._changed.notify_all()

    def wait_beyond(self, position: int) -> int:
        """The size written once it is beyond ``position`` or the file has ended."""
        with self._changed:
            self._changed.wait_for(lambda: self.size > position or self.ended)
            if self.abandoned:
                raise ArchiveError("the archive was abandoned while it was read back")
            return self.size


class GrowingFile:
    """The archive being written, read from the file itself (a descriptor of its own), never
    beyond what was written: for reading it back while it is written. The bytes read are those
    of the file, as a read after the writer's end would find them; :meth:`read` waits for more
    until the writer has finished."""

    def __init__(self, path: Path, output: _Output, hashing: bool) -> None:
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._output = output
        self._at = 0
        self._sha256 = hashlib.sha256() if hashing else None

    def sha256_of_whole(self, size: int) -> str | None:
        """The SHA-256 of the file (what was read of it), when it was read whole (``size`` bytes)."""
        return self._sha256.hexdigest() if self._sha256 is not None and self._at == size else None

    def read(self, size: int = -1) -> bytes:
        available = self._output.wait_beyond(self._at) - self._at
        if available <= 0:
            return b""
        data = os.pread(self._fd, available if size < 0 else min(size, available), self._at)
        if not data:
            raise ArchiveError("the archive file is shorter than what was written to it")
        self._at += len(data)
        if self._sha256 is not None:
            self._sha256.update(data)
        return data

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@dataclass(frozen=True)
class Written:
    """What a closed writer wrote: the file's size and SHA-256 ("" when a follower made it, see
    :meth:`FastArchiveWriter.follow`), and the size of the tar stream inside it (what reading it
    back must find)."""

    file_size: int
    file_sha256: str
    tar_size: int


class FastArchiveWriter:
    """Writes one ``.tar.zst`` archive at ``path`` (created, never overwritten; mode 0600), with
    the methods of ``archive.ArchiveWriter``. ``written`` is set by :meth:`close`."""

    def __init__(self, path: Path, level: int = ZSTD_LEVEL) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self._output = _Output(self._fd)
        compressor = zstandard.ZstdCompressor(level=level, write_checksum=True, threads=-1)
        self._zstd = compressor.stream_writer(self._output, closefd=False,  # type: ignore[arg-type]
                                              write_size=_CHUNK)
        self._offset = 0
        self.written: Written | None = None

    def add_file(self, member: str, source: Path | str,
                 on_bytes: BytesCallback | None = None) -> tuple[int, str, int, int]:
        """Store ``source`` as ``member``; returns (size, sha256 hex, mode, mtime_ns) as read.
        Raises FileNotFoundError when it vanished (nothing written), ArchiveError when it is not a
        regular file or got shorter while it was read (a file over :data:`WHOLE_READ` bytes that
        shrinks midway leaves the archive unusable: the caller must abort it)."""
        fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ArchiveError(f"{source} is not a regular file")
            mode, size = stat.S_IMODE(info.st_mode), info.st_size
            if size <= WHOLE_READ:
                digest = self._add_whole(fd, member, source, size, mode, int(info.st_mtime))
            else:
                digest = self._add_streamed(fd, member, source, size, mode, int(info.st_mtime))
        finally:
            os.close(fd)
        if on_bytes is not None:
            on_bytes(size)
        return size, digest, mode, info.st_mtime_ns

    def _add_whole(self, fd: int, member: str, source: Path | str, size: int, mode: int, mtime: int) -> str:
        data = os.read(fd, size) if size else b""
        while len(data) < size:  # a short read (large file, signal): read on
            more = os.read(fd, size - len(data))
            if not more:
                raise ArchiveError(f"{source} changed while it was read")
            data += more
        self._member(header(member, size, mode, mtime), data)
        return hashlib.sha256(data).hexdigest()

    def _add_streamed(self, fd: int, member: str, source: Path | str, size: int, mode: int, mtime: int) -> str:
        self._put(header(member, size, mode, mtime))
        digest, left = hashlib.sha256(), size
        while left:
            chunk = os.read(fd, min(_CHUNK, left))
            if not chunk:
                raise ArchiveError(f"{source} changed while it was read")
            digest.update(chunk)
            self._put(chunk)
            left -= len(chunk)
        self._put(_ZEROS[: -size % BLOCK])
        return digest.hexdigest()

    def add_bytes(self, member: str, data: bytes, mode: int = 0o600, mtime: float = 0.0) -> tuple[int, str]:
        """Store ``data`` as ``member``; returns (size, sha256 hex)."""
        self._member(header(member, len(data), mode, int(mtime)), data)
        return len(data), hashlib.sha256(data).hexdigest()

    def _member(self, head: bytes, data: bytes) -> None:
        """Header, data and padding, each handed to the compressor as it is (the compressor
        buffers; gathering them in a buffer of our own first cost a copy of every byte)."""
        self._put(head)
        if data:
            self._put(data)
            self._put(_ZEROS[: -len(data) % BLOCK])

    def _put(self, data: bytes) -> None:
        if data:
            self._zstd.write(data)
            self._offset += len(data)

    def close(self) -> None:
        """:meth:`finish` and :meth:`sync`."""
        self.finish()
        self.sync()

    def finish(self) -> None:
        """Two zero blocks, padding to a whole record, the end of the zstd frame: every byte
        handed to the file (not yet on disk: :meth:`sync`, which may run meanwhile in another
        thread while the file is read back)."""
        self._put(_ZEROS[: 2 * BLOCK])
        self._put(_ZEROS[: -self._offset % RECORD])
        self._zstd.close()  # type: ignore[no-untyped-call]
        sha256 = self._output.sha256
        self.written = Written(self._output.size, "" if sha256 is None else sha256.hexdigest(), self._offset)
        self._output.end()

    def follow(self) -> GrowingFile:
        """A reader of the file as it is written (see :class:`GrowingFile`). Followed from the
        start, the file's SHA-256 is made by the reader from the bytes it reads back (its thread
        waits for the writer most of the time; the writer's is the busy one), and ``written``
        then has none."""
        hashing = self._output.size == 0 and self._output.sha256 is not None
        if hashing:
            self._output.sha256 = None
        return GrowingFile(self.path, self._output, hashing)

    def sync(self) -> None:
        """The finished file and its directory entry on disk."""
        try:
            os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = -1
        fsync_dir(self.path.parent)

    def abort(self) -> None:
        """Close whatever is open and remove the partial file."""
        self._output.end(abandoned=True)
        with contextlib.suppress(Exception):
            self._zstd.close()  # type: ignore[no-untyped-call]
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


# --- reading ---------------------------------------------------------------------------------

_READ = 4 * 1024 * 1024  # decompressed bytes asked for at a time (a multiple of BLOCK)
_AHEAD = 4  # decompressed blocks read ahead
_MAX_EXTENDED = 1024 * 1024  # a pax or GNU long-name header's data: more is not a header of ours
_REGULAR = frozenset({b"0", b"\x00", b"7"})
_EXTENDED = frozenset({b"x", b"g", b"L", b"K"})
_ZERO_BLOCK = bytes(BLOCK)
_SIGNED_HEADER = struct.Struct("148b8x356b")
Chunks = Iterator[memoryview]


@dataclass(frozen=True, slots=True)
class TarMember:
    name: str
    size: int
    mode: int
    mtime: int
    regular: bool  # a regular file (anything else is listed, never written)


class TarReader:
    """The members of a POSIX tar stream (ustar with pax extended headers, as this module and
    :mod:`tarfile` write them; GNU long names too), read in blocks of 4 MiB: a member costs the
    parse of its header and hands its data out as views of the block that holds it, with no copy.
    Each header's checksum is checked. After the end-of-archive marker the stream must hold only
    zeros, and it is read to its very end, so that the zstd frame's end (with its content
    checksum) is decoded. Raises ArchiveError for anything else, naming ``shown``."""

    def __init__(self, source: IO[bytes], shown: str) -> None:
        self._source = source
        self._shown = shown
        self._buffer = b""
        self._at = 0
        self._left = 0  # data bytes of the current member not handed out yet
        self._padding = 0
        self.tar_size = 0  # bytes of the tar stream read so far

    def members(self) -> Iterator[TarMember]:
        """Every member in order; its data is :meth:`chunks` (skipped when not read)."""
        extended: dict[bytes, bytes] = {}
        while True:
            self._skip_rest()
            block = self._take(BLOCK)
            if block == _ZERO_BLOCK:
                self._read_to_end()
                return
            member, kind = self._parse(block, extended)
            if kind in _EXTENDED:
                self._extended(kind, member.size, extended)
                continue
            extended = {}
            self._left, self._padding = member.size, -member.size % BLOCK
            yield member

    def chunks(self) -> Chunks:
        """The current member's data, in views valid until the next call."""
        while self._left:
            if self._at == len(self._buffer):
                self._fill(1)
            take = min(self._left, len(self._buffer) - self._at)
            yield memoryview(self._buffer)[self._at:self._at + take]
            self._at += take
            self._left -= take

    def read_all(self) -> bytes:
        return b"".join(self.chunks())

    def _skip_rest(self) -> None:
        for _chunk in self.chunks():
            pass
        if self._padding:
            self._take(self._padding)
            self._padding = 0

    def _take(self, count: int) -> bytes:
        if len(self._buffer) - self._at < count:
            self._fill(count)
        taken = self._buffer[self._at:self._at + count]
        self._at += count
        return taken

    def _fill(self, count: int) -> None:
        """At least ``count`` bytes in the buffer from ``_at`` on."""
        while len(self._buffer) - self._at < count:
            chunk = self._read()
            if not chunk:
                raise self._damaged("unexpected end of data")
            self._buffer = self._buffer[self._at:] + chunk if self._at < len(self._buffer) else chunk
            self._at = 0

    def _read(self) -> bytes:
        try:
            chunk = self._source.read(_READ)
        except zstandard.ZstdError as exc:
            raise self._damaged(str(exc).strip().splitlines()[0] if str(exc).strip() else "zstd error") from None
        self.tar_size += len(chunk)
        return chunk

    def _read_to_end(self) -> None:
        rest = self._buffer[self._at:]
        while rest:
            if rest.count(0) != len(rest):
                raise self._damaged("data after the end of the archive")
            rest = self._read()
        self._buffer, self._at = b"", 0

    def _parse(self, block: bytes, extended: dict[bytes, bytes]) -> tuple[TarMember, bytes]:
        if _octal(block[148:156], self) not in (256 + sum(block[:148]) + sum(block[156:]),
                                                256 + sum(_SIGNED_HEADER.unpack_from(block))):
            raise self._damaged("a header's checksum is wrong")
        kind = block[156:157]
        name = _text(block[:100])
        if block[257:263] == b"ustar\x00" and block[345] != 0:
            name = f"{_text(block[345:500])}/{name}"
        if b"path" in extended:
            name = extended[b"path"].decode("utf-8", "surrogateescape")
        if kind == b"5":
            name = name.rstrip("/")  # a directory, named as tarfile names it
        size = int(extended[b"size"]) if b"size" in extended and extended[b"size"].isdigit() else \
            _octal(block[124:136], self)
        member = TarMember(name, size, _octal(block[100:108], self), _octal(block[136:148], self),
                           kind in _REGULAR)
        return member, kind

    def _extended(self, kind: bytes, size: int, extended: dict[bytes, bytes]) -> None:
        if size > _MAX_EXTENDED:
            raise self._damaged("an extended header is too large")
        self._left, self._padding = size, -size % BLOCK
        data = self.read_all()
        if kind == b"L":
            extended[b"path"] = data.rstrip(b"\x00")
        elif kind == b"x":
            extended.update(_pax_records(data, self))

    def _damaged(self, reason: str) -> ArchiveError:
        return ArchiveError(f"the archive {self._shown} is damaged or truncated ({reason})")


def _text(field: bytes) -> str:
    return field.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


def _octal(field: bytes, reader: TarReader) -> int:
    """A number field: octal digits, or base-256 (GNU) when its first byte has the high bit."""
    if field[0] in (0o200, 0o377):
        value = int.from_bytes(field[1:], "big")
        return value - (256 ** (len(field) - 1)) if field[0] == 0o377 else value
    digits = field.split(b"\x00", 1)[0].strip()
    try:
        return int(digits, 8) if digits else 0
    except ValueError:
        raise reader._damaged("a header holds a bad number") from None


def _pax_records(data: bytes, reader: TarReader) -> dict[bytes, bytes]:
    """``"<length> <key>=<value>\\n"`` records (POSIX pax)."""
    records, at = {}, 0
    while at < len(data) and data[at] != 0:
        space = data.find(b" ", at)
        try:
            length = int(data[at:space])
        except ValueError:
            raise reader._damaged("a pax header is malformed") from None
        record = data[space + 1:at + length]
        if length <= 0 or not record.endswith(b"\n") or b"=" not in record:
            raise reader._damaged("a pax header is malformed")
        key, _, value = record[:-1].partition(b"=")
        records[key] = value
        at += length
    return records


class _ReadAhead:
    """The decompressed stream, read ahead by a thread of its own: zstd decompresses without the
    GIL, so that the next blocks are decompressed while this one is hashed and written (on two
    cores, a restore took 40 % less). At most :data:`_AHEAD` blocks wait; an error of the
    source is raised by the :meth:`read` that would have returned its block."""

    def __init__(self, source: IO[bytes]) -> None:
        self._blocks: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=_AHEAD)
        self._stopped = threading.Event()
        self._ended = False
        self._thread = threading.Thread(target=self._run, args=(source,), name="hardmail-archive-read", daemon=True)
        self._thread.start()

    def _run(self, source: IO[bytes]) -> None:
        try:
            while not self._stopped.is_set():
                block = source.read(_READ)
                self._put(block)
                if not block:
                    return
        except BaseException as exc:  # handed to the reader, which raises it
            self._put(exc)

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stopped.is_set():
            with contextlib.suppress(queue.Full):
                self._blocks.put(item, timeout=0.5)
                return

    def read(self, _size: int = -1) -> bytes:
        if self._ended:
            return b""
        item = self._blocks.get()
        if isinstance(item, BaseException):
            self._ended = True
            raise item
        self._ended = not item
        return item

    def close(self) -> None:
        """Stop the thread (it may be waiting to hand over a block) and wait for it."""
        self._stopped.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._blocks.get_nowait()
        self._thread.join()


@contextlib.contextmanager
def open_tar(plain: Path, shown: str | None = None) -> Iterator[TarReader]:
    """A :class:`TarReader` of the plaintext ``.tar.zst`` file ``plain``."""
    try:
        raw = open(plain, "rb")  # noqa: SIM115 (closed below)
    except FileNotFoundError:
        raise ArchiveError(f"the archive {plain} does not exist") from None
    with raw, read_tar(raw, shown or plain.name) as tar:
        yield tar


@contextlib.contextmanager
def read_tar(raw: IO[bytes] | GrowingFile, shown: str) -> Iterator[TarReader]:
    """A :class:`TarReader` of the ``.tar.zst`` bytes ``raw`` gives (closed by the caller)."""
    source = zstandard.ZstdDecompressor().stream_reader(raw, read_size=_CHUNK,  # type: ignore[arg-type]
                                                        read_across_frames=True)
    ahead = _ReadAhead(source)  # type: ignore[arg-type]
    try:
        yield TarReader(ahead, shown)  # type: ignore[arg-type]
    finally:
        ahead.close()
