"""A worker spaces out the cyclic collector's young-generation runs (``run_worker``)."""
from __future__ import annotations

import gc
from typing import Iterator, Tuple

import pytest

from fastserve.server.worker import YOUNG_COLLECTION_EVERY, space_out_young_collections


@pytest.fixture
def thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    try:
        yield
    finally:
        gc.set_threshold(*saved)


@pytest.mark.parametrize(("before", "after"), [
    ((700, 10, 10), (YOUNG_COLLECTION_EVERY, 10, 10)),  # Python's default is raised
    ((50_000, 5, 7), (50_000, 5, 7)),  # an app's higher setting is kept
    ((0, 10, 10), (0, 10, 10)),  # 0 means the app turned collection off: left so
])
def test_the_first_threshold_is_only_ever_raised(thresholds: None, before: Tuple[int, int, int],
                                                 after: Tuple[int, int, int]) -> None:
    gc.set_threshold(*before)
    space_out_young_collections()
    assert gc.get_threshold() == after
