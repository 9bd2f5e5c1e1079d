"""The worker's heap trimmer (``fastserve.server.heap``): when it trims, and how often."""
from __future__ import annotations

from typing import List

import pytest

from fastserve.server.heap import HeapTrimmer, heap_trimmer

MIB = 1024 * 1024


class FakeHeap:
    """A resident size that grows as a test says, and a trim that gives back ``freed`` of it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.freed = 0
        self.trims: List[int] = []

    def resident(self) -> int:
        return self.size

    def trim(self) -> None:
        self.trims.append(self.size)
        self.size -= self.freed
        self.freed = 0


def trimmer(heap: FakeHeap) -> HeapTrimmer:
    return HeapTrimmer(heap.resident, heap.trim, growth=16 * MIB, gap=1.0, gap_max=8.0)


def test_growth_below_the_threshold_is_left_alone() -> None:
    heap = FakeHeap(40 * MIB)
    trim = trimmer(heap)
    heap.size += 15 * MIB
    assert not trim.check(10.0)
    assert heap.trims == []


def test_freed_pages_are_given_back_and_trims_continue_while_they_come() -> None:
    heap = FakeHeap(40 * MIB)
    trim = trimmer(heap)
    heap.size, heap.freed = 120 * MIB, 78 * MIB
    assert trim.check(10.0)
    assert heap.size == 42 * MIB
    heap.size, heap.freed = 100 * MIB, 58 * MIB
    assert not trim.check(10.5)  # at most one trim a second
    assert trim.check(11.0)
    assert heap.trims == [120 * MIB, 100 * MIB]


def test_live_growth_backs_off_but_new_growth_is_trimmed() -> None:
    heap = FakeHeap(40 * MIB)
    trim = trimmer(heap)
    heap.size = 80 * MIB  # caches filled: nothing to give back
    assert trim.check(10.0)
    assert not trim.check(11.0)  # the wait doubled to 2 s
    assert trim.check(12.0)  # and again: 4 s
    assert not trim.check(15.0)
    assert trim.check(16.0)
    heap.size, heap.freed = 100 * MIB, 60 * MIB  # a burst: 16 MiB more than the last trim left
    assert trim.check(17.0)
    assert heap.size == 40 * MIB
    assert len(heap.trims) == 4


def test_the_wait_never_exceeds_its_maximum() -> None:
    heap = FakeHeap(40 * MIB)
    trim = trimmer(heap)
    heap.size = 80 * MIB
    now = 0.0
    for _ in range(10):
        now += 8.0
        assert trim.check(now)


def test_the_real_trimmer_reads_this_process() -> None:
    trim = heap_trimmer()
    if trim is None:
        pytest.skip("no glibc malloc_trim or /proc here: workers run without a trimmer")
    try:
        assert trim.resident() > 1 * MIB
        trim.check(0.0)
    finally:
        trim.close()
