"""CPU-heavy IMAP work off the event loop, with bounded concurrency, and reading a message's
header block without reading its body.

Parsing a big message's MIME tree, decoding text for SEARCH, SORT keys and THREAD run in worker
threads; at most WORKERS such jobs run at once per server (event loop), so a few clients asking
for heavy work cannot take every thread of the process. Small jobs (a message under INLINE_BYTES)
run inline: a thread hop would cost more than the work.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hardmail.mime.structure import crlf

T = TypeVar("T")

WORKERS = 4
INLINE_BYTES = 64 * 1024
HEADER_READ = 16 * 1024  # bytes read at a time while looking for the end of the header block
MAX_HEADER = 1024 * 1024  # a header block longer than this is cut there (as the SMTP side bounds it)

_LIMITS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def _semaphore() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    found = _LIMITS.get(loop)
    if found is None:
        found = _LIMITS[loop] = asyncio.Semaphore(WORKERS)
    return found


async def heavy(size: int, function: Callable[..., T], *args: object) -> T:
    """``function(*args)``: inline when the input (``size`` bytes) is small, else in a thread."""
    if size <= INLINE_BYTES:
        return function(*args)
    async with _semaphore():
        return await asyncio.to_thread(function, *args)


def read_header_block(path: Path) -> bytes:
    """The message's header block with the empty line that ends it (all of a message that has no
    body); reads only as far as that line."""
    data = bytearray()
    with path.open("rb") as handle:
        while len(data) < MAX_HEADER:
            chunk = handle.read(HEADER_READ)
            if not chunk:
                break
            searched_from = max(0, len(data) - 3)
            data += chunk
            end = _blank_line_end(data, searched_from)
            if end is not None:
                return crlf(bytes(data[:end]))
    return crlf(bytes(data[:MAX_HEADER]))


def _blank_line_end(data: bytearray, start: int) -> int | None:
    """Where the empty line that ends a header block ends (CRLF CRLF, or bare LF LF)."""
    crlf = data.find(b"\r\n\r\n", start)
    lf = data.find(b"\n\n", start)
    candidates = [pos + 4 for pos in (crlf,) if pos >= 0] + [pos + 2 for pos in (lf,) if pos >= 0]
    if not candidates:
        return None
    if data.startswith(b"\r\n") and start == 0:
        return 2
    return min(candidates)
