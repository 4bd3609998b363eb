"""``bulk_allocation()``: the cyclic garbage collector paused while a burst of objects is built.

Building the view of a 100,000-message folder allocates hundreds of thousands of small tuples and
records in one go; each 700 allocations start a young-generation collection and every few of those
an older one that walks every live object, so the collector, not the building, took most of the
time (3x in our measurements). Pausing it for the burst (synchronous code only: no await inside)
leaves one collection for afterwards. Reference counting still frees everything as usual.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def bulk_allocation() -> Iterator[None]:
    """Pause the cyclic collector for a synchronous burst of allocations (nesting is harmless)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
