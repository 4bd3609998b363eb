"""The header-block steps of the SMTP session at the end of DATA: the header block of the message
as received, parsed once with the one parser (:mod:`hardmail.mime.headers`), and the message to
store, without the fields the hooks asked to drop and without every incoming field that claims to
be a verdict of ours (:func:`hardmail.msgauth.authres.verdict_fields`), on every listener.

The parse is linear but Python: a header block larger than INLINE_PARSE_LIMIT is parsed (and
cleaned) in the message-work thread pool, so that no hostile header holds the event loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from hardmail.config.schema import Config
from hardmail.mime.headers import HeaderBlock, parse_header_block, without_fields
from hardmail.msgauth import workers
from hardmail.msgauth.authres import verdict_fields
from hardmail.ops.log import EventLogger

INLINE_PARSE_LIMIT = 8 * 1024  # a larger header block is parsed in a worker thread, off the event loop
_T = TypeVar("_T")


async def off_loop_if_large(size: int, func: Callable[..., _T], *args: Any) -> _T:
    """``func(*args)``: here for up to INLINE_PARSE_LIMIT bytes of header, else in a worker thread."""
    if size <= INLINE_PARSE_LIMIT:
        return func(*args)
    return await workers.run(func, *args)


async def head_block(head: bytes, complete: bool) -> HeaderBlock:
    """The header block of the message as received, parsed from its head (which holds at most
    ``[smtp] max_header_size`` bytes). ``complete`` is False when the block did not end within that
    limit (the session refuses such a message: fields past the limit would be seen by no check); a
    message that is all header section, with no empty line, is complete."""
    block = await off_loop_if_large(len(head), parse_header_block, head)
    if block.complete == complete:
        return block
    return dataclasses.replace(block, complete=complete)


async def message_to_store(config: Config, log: EventLogger, chunks: Sequence[bytes], block: HeaderBlock,
                           extra: bytes, hook_drops: Sequence[int]) -> tuple[bytes, ...]:
    """``extra`` (our submission fields) on top of ``chunks`` without the fields the hooks asked to
    drop and without every field claiming to be a verdict of ours (RFC 8601 5), whoever the client.

    The hooks saw ``extra`` + ``chunks`` and count ``extra``'s fields first; their positions are
    moved onto ``block``'s numbering (the header block of ``chunks``).
    """
    shift = len(parse_header_block(extra).fields) if extra else 0
    names = [config.server.hostname, config.inbound.authserv_id]
    forged = await off_loop_if_large(len(block.data), verdict_fields, block, names)
    if forged:
        names_removed = sorted({block.fields[i].name for i in forged})
        log.event("smtp.verdict_fields_removed", fields=len(forged), names=names_removed)
    drop = {*forged, *(p - shift for p in hook_drops if p >= shift)}
    kept = await off_loop_if_large(len(block.data), without_fields, chunks, drop, block) if drop else chunks
    return (extra, *kept) if extra else tuple(kept)
