"""Arithmetic of the benchmark's rounds: who goes first, medians, and ratios taken within a round.

The servers of a group are measured one after another inside each round, seconds apart, so a
ratio of two measurements from the same round compares them under nearly the same background
load; ratios between rounds would not. Standard library only, like bench/run_bench.py.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Optional, Sequence, TypeVar

T = TypeVar("T")


def rotated(items: Sequence[T], round_index: int) -> list[T]:
    """`items` in the order of round `round_index` (0-based): each round starts one item later.

    Over len(items) rounds every item goes first once, so none is always measured first
    (right after a warm-up, or right after the previous round's heaviest load).
    """
    if not items:
        return []
    shift = round_index % len(items)
    return [*items[shift:], *items[:shift]]


def median_of(values: Sequence[Optional[float]]) -> Optional[float]:
    """Median of the values that were measured (None entries are rounds without a number)."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def per_round_ratios(
    numerators: Sequence[Optional[float]], denominators: Sequence[Optional[float]]
) -> list[Optional[float]]:
    """numerator / denominator round by round; None where either side has no (or a zero) number."""
    return [
        top / bottom if top is not None and bottom else None
        for top, bottom in zip(numerators, denominators)
    ]


@dataclass(frozen=True)
class RatioSummary:
    median: Optional[float]  # what a target is judged on
    low: Optional[float]  # smallest per-round ratio
    high: Optional[float]  # largest per-round ratio
    per_round: list[Optional[float]]

    @classmethod
    def of(cls, per_round: Sequence[Optional[float]]) -> "RatioSummary":
        present = [v for v in per_round if v is not None]
        if not present:
            return cls(None, None, None, list(per_round))
        return cls(statistics.median(present), min(present), max(present), list(per_round))

    def meets(self, target: Optional[float], at_most: bool = False) -> Optional[bool]:
        """True/False against `target` (on the median only); None without a target or a value.

        `target` is a floor (throughput: the median must reach it), or with `at_most` a ceiling
        (latency: the median must not exceed it).
        """
        if target is None or self.median is None:
            return None
        return self.median <= target if at_most else self.median >= target

    def render(self) -> str:
        """`1.13x (0.95–1.30)`: the median, then the range of the per-round ratios."""
        if self.median is None:
            return "n/a"
        return f"{self.median:.2f}x ({self.low:.2f}\u2013{self.high:.2f})"
