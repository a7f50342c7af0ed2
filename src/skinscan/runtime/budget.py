"""How much memory decoding may hold at once, and handing it back to the system afterwards.

Every decode first says what it will cost (`imaging.decode_cost`, from the headers, before any pixel is decoded)
and reserves that many bytes from its engine's `DecodeBudget`. A decode that would need more than the whole budget
is refused as too large; one that does not fit beside the decodes in progress waits, and gives up with BusyError
(the API's 503 with Retry-After) when it has waited too long. So whatever arrives, one process holds at most the
budget in decoded pixels.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from skinscan.core.errors import BusyError

DEFAULT_DECODE_BUDGET = 256 * 1024 * 1024  # bytes of decoded pixels and decoder buffers held at once
DEFAULT_WAIT_S = 10.0  # how long a decode waits for room before BusyError
_TRIM_ABOVE = 16 * 1024 * 1024  # decodes that held more than this hand their memory back when done


class DecodeBudget:
    """A counting budget of bytes, shared by the threads that decode for one engine.

    Args:
        capacity: the most bytes reserved at once; also the most one decode may cost.
        wait_s: how long `reserve` waits for room before raising BusyError.
        max_waiting: how many decodes may wait at once; the next one is refused at once.
    """

    def __init__(self, capacity: int = DEFAULT_DECODE_BUDGET, wait_s: float = DEFAULT_WAIT_S, max_waiting: int = 32):
        if capacity <= 0:
            raise ValueError("a decode budget needs a positive capacity")
        self.capacity, self.wait_s, self.max_waiting = capacity, wait_s, max_waiting
        self._used = 0
        self._waiting = 0
        self._room = threading.Condition()

    @property
    def in_use(self) -> int:
        """Bytes reserved now."""
        return self._used

    @contextmanager
    def reserve(self, cost: int) -> Iterator[None]:
        """Hold `cost` bytes of the budget for the block; on leaving it, big reservations return memory to the OS.

        Raises:
            BusyError: no room came within `wait_s`, or too many decodes are already waiting.
        """
        cost = max(0, min(cost, self.capacity))
        with self._room:
            if self._used + cost > self.capacity:
                if self._waiting >= self.max_waiting:
                    raise BusyError("busy: too many large images are being decoded; try again in a few seconds")
                self._waiting += 1
                try:
                    if not self._room.wait_for(lambda: self._used + cost <= self.capacity, timeout=self.wait_s):
                        raise BusyError("busy: other large images are being decoded; try again in a few seconds")
                finally:
                    self._waiting -= 1
            self._used += cost
        try:
            yield
        finally:
            with self._room:
                self._used -= cost
                self._room.notify_all()
            if cost > _TRIM_ABOVE:
                return_freed_memory()


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim  # noqa: B018 (glibc only: musl has no malloc_trim)
    except (OSError, AttributeError):
        return None
    return libc


def return_freed_memory() -> None:
    """Give freed heap pages back to the system (glibc keeps them otherwise: a process that once decoded a
    50-megapixel image would stay hundreds of MB larger for the rest of its life)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def limit_heap_retention(mmap_threshold: int = 4 * 1024 * 1024) -> None:
    """Serve every allocation of `mmap_threshold` bytes or more from its own mapping, returned on free.

    glibc raises its mmap threshold each time a large block is freed (up to 32 MB), after which Pillow's 16 MB image
    blocks and NumPy's large arrays come from the heap and stay with the process when freed. A fixed threshold
    stops that drift. Idempotent; a no-op where the C library is not glibc.
    """
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        m_mmap_threshold = -3  # from glibc's malloc.h
        libc.mallopt(m_mmap_threshold, mmap_threshold)
