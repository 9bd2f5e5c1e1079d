"""Handing freed heap memory back to the kernel after a burst of connections.

A TLS connection holds, from accept until it closes, uvloop's 256 KiB read buffer and OpenSSL's
state (about 320 KiB of heap in all), whether or not its handshake ever finishes. Freed, those
bytes go back to glibc's heap, not to the kernel: glibc returns only the free space at the top
of the heap, and the pages of a freed buffer stay resident while later allocations land
elsewhere and touch new ones. Clients that open connections and reset them before, during or
after the handshake (cheap for them: no handshake of their own is needed) so ratchet a worker's
resident memory up towards (connections at once) x 320 KiB, where it stays after they leave,
though nothing is allocated any more. ``malloc_trim(0)`` gives every free page of the heap back.

``HeapTrimmer.check`` runs on the worker's tick and reads the resident size (one read of
``/proc/self/statm``). It trims when that is ``TRIM_GROWTH`` above the floor (the least the
worker was left holding after a trim) and either grew by ``TRIM_GROWTH`` more since the last
trim or the last trim's wait is over. A trim that gave back under half of ``TRIM_GROWTH`` found
live data (caches, connections) rather than freed pages, and doubles the wait before the next
one (up to ``TRIM_GAP_MAX``); one that gave back more sets it to ``TRIM_GAP``. Trims take at
most 1% of the worker's time (one costs milliseconds on a large fragmented heap). Without
glibc's allocator (musl) or ``/proc`` it does nothing.
"""
from __future__ import annotations

import ctypes
import logging
import os
import time
from typing import Callable, Optional

logger = logging.getLogger("fastserve")

TRIM_GROWTH = 16 * 1024 * 1024  # bytes of resident growth above the floor that ask for a trim
TRIM_GAP = 1.0  # seconds: the least time between two trims
TRIM_GAP_MAX = 64.0  # seconds: the longest, after trims that found little to give back
TRIM_SHARE = 0.01  # the most of a worker's time trims may take


def _malloc_trim() -> Optional[Callable[[int], int]]:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


class ResidentSize:
    """This process's resident set size in bytes, read from an open ``/proc/self/statm``."""

    def __init__(self) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.fd = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)

    def __call__(self) -> int:
        return int(os.pread(self.fd, 128, 0).split()[1]) * self.page

    def close(self) -> None:
        os.close(self.fd)


class HeapTrimmer:
    """Trims the heap when resident memory is ``growth`` bytes above its floor.

    ``resident()`` gives the resident size in bytes, ``trim()`` hands free heap pages back;
    ``check(now)`` (``now`` in seconds, the loop's clock) returns whether it trimmed.
    """

    def __init__(self, resident: Callable[[], int], trim: Callable[[], object],
                 growth: int = TRIM_GROWTH, gap: float = TRIM_GAP, gap_max: float = TRIM_GAP_MAX) -> None:
        self.resident = resident
        self.trim = trim
        self.growth = growth
        self.gap_min = gap
        self.gap_max = gap_max
        self.gap = gap
        self.floor = self.left = resident()  # the least left after a trim; left after the last one
        self.earliest = 0.0  # no trim before (trims take at most TRIM_SHARE of the time)
        self.next_at = 0.0  # the wait after the last trim is over
        self.trims = 0

    def check(self, now: float) -> bool:
        if now < self.earliest:
            return False
        size = self.resident()
        self.floor = min(self.floor, size)
        if size - self.floor < self.growth or (now < self.next_at and size - self.left < self.growth):
            return False
        started = time.thread_time()  # CPU time: a busy machine's waits are not the trim's cost
        self.trim()
        took = time.thread_time() - started
        self.trims += 1
        self.left = self.resident()
        self.floor = min(self.floor, self.left)
        if size - self.left >= self.growth // 2:
            self.gap = self.gap_min  # freed pages: trim again as soon as more come
        else:
            self.gap = min(self.gap * 2, self.gap_max)  # live data: look again later
        self.earliest = now + max(self.gap_min, took / TRIM_SHARE)
        self.next_at = max(self.earliest, now + self.gap)
        logger.debug("worker %d: heap trimmed in %.1f ms: %d MiB resident, %d MiB after",
                     os.getpid(), took * 1e3, size >> 20, self.left >> 20)
        return True

    def close(self) -> None:
        """Release what reading the resident size holds (``/proc/self/statm``'s descriptor)."""
        close = getattr(self.resident, "close", None)
        if close is not None:
            close()


def heap_trimmer() -> Optional[HeapTrimmer]:
    """The worker's trimmer; None where glibc's ``malloc_trim`` or ``/proc`` is missing."""
    trim = _malloc_trim()
    if trim is None:
        return None
    try:
        resident = ResidentSize()
    except (OSError, ValueError):
        return None
    return HeapTrimmer(resident, lambda: trim(0))
