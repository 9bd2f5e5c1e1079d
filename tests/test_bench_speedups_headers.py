"""Micro-benchmarks: the Cython header helpers against the pure-Python way of doing the same.

Each operation has a ``fastserve`` and a ``python`` benchmark in one group, so
``pytest --benchmark-enable tests/test_bench_speedups_headers.py`` prints the ratio. With
``--benchmark-disable`` (the project default) each runs once and still checks its answer.
"""

from __future__ import annotations

import email.utils
import re

import pytest

from fastserve._speedups.conditional import evaluate_preconditions
from fastserve._speedups.headers import (
    current_http_date,
    format_http_date,
    parse_http_date,
    parse_range,
    serialize_headers,
)

TS = 1_700_000_000
DATE = b"Tue, 14 Nov 2023 22:13:20 GMT"
ETAG = b'"18b4c9a1f2e00000-4c4b"'
RANGE = b"bytes=0-1023, 4096-8191, -512"
SIZE = 1_000_000
HEADERS = [
    (b"server", b"fastserve"),
    (b"date", DATE),
    (b"content-type", b"text/css; charset=utf-8"),
    (b"content-length", b"19531"),
    (b"last-modified", DATE),
    (b"etag", ETAG),
    (b"accept-ranges", b"bytes"),
    (b"cache-control", b"public, max-age=3600"),
]


def bench(group: str):
    # short runs: the machine is shared
    return pytest.mark.benchmark(group=group, max_time=0.25, min_rounds=5)


# ---------------------------------------------------------------------------------------------
# pure-Python equivalents
# ---------------------------------------------------------------------------------------------


def python_parse_range(value: bytes | None, size: int, max_ranges: int = 16):
    if not value:
        return None
    unit, _, spec = value.decode("latin-1").strip().partition("=")
    if unit.lower() != "bytes" or not spec:
        return None
    ranges = []
    listed = 0
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        listed += 1
        if listed > max_ranges:
            return None
        first, dash, last = part.partition("-")
        if not dash or not (first.isdigit() or not first) or not (last.isdigit() or not last):
            return None
        if not first:
            if not last:
                return None
            length = int(last)
            if length and size:
                ranges.append((max(0, size - length), size - 1))
            continue
        start = int(first)
        end = int(last) if last else size - 1
        if start > end:
            return None
        if start < size:
            ranges.append((start, min(end, size - 1)))
    if not listed:
        return None
    merged: list[list[int]] = []  # [start, end, where the first range merged into it was listed]
    for start, end, listed_at in sorted((start, end, i) for i, (start, end) in enumerate(ranges)):
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = [merged[-1][0], max(merged[-1][1], end), min(merged[-1][2], listed_at)]
        else:
            merged.append([start, end, listed_at])
    return [(start, end) for start, end, _ in sorted(merged, key=lambda each: each[2])]


def python_parse_http_date(value: bytes | None) -> int:
    try:
        return int(email.utils.parsedate_to_datetime(value.decode("latin-1")).timestamp())
    except (AttributeError, TypeError, ValueError):
        return -1


def python_preconditions(method, if_match, ius, inm, ims, etag, last_modified) -> int:
    def matches(value: bytes, weak: bool) -> bool:
        if value.strip() == b"*":
            return True
        ours = etag[2:] if weak and etag.startswith(b"W/") else etag
        for tag in value.split(b","):
            tag = tag.strip()
            if tag.startswith(b"W/"):
                if not weak:
                    continue
                tag = tag[2:]
            if tag == ours:
                return True
        return False

    if if_match is not None:
        if not matches(if_match, False):
            return 412
    elif ius is not None:
        date = python_parse_http_date(ius)
        if date != -1 and last_modified > date:
            return 412
    if inm is not None:
        if matches(inm, True):
            return 304 if method in (b"GET", b"HEAD") else 412
    elif ims is not None and method in (b"GET", b"HEAD"):
        date = python_parse_http_date(ims)
        if date != -1 and last_modified <= date:
            return 304
    return 0


_BAD_NAME = re.compile(rb"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
_BAD_VALUE = re.compile(rb"[\r\n\x00]")
_PHRASES = {200: b"OK", 206: b"Partial Content", 304: b"Not Modified"}


def python_serialize_headers(status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, _PHRASES.get(status, b""))]
    for name, value in headers:
        if not name or _BAD_NAME.search(name) or _BAD_VALUE.search(value):
            raise ValueError("invalid header")
        lines.append(b"%s: %s\r\n" % (name, value))
    lines.append(b"\r\n")
    return b"".join(lines)


# ---------------------------------------------------------------------------------------------
# benchmarks
# ---------------------------------------------------------------------------------------------

EXPECTED_RANGES = [(0, 1023), (4096, 8191), (SIZE - 512, SIZE - 1)]


@bench("parse_range")
def test_parse_range_fastserve(benchmark) -> None:
    assert benchmark(parse_range, RANGE, SIZE) == EXPECTED_RANGES


@bench("parse_range")
def test_parse_range_python(benchmark) -> None:
    assert benchmark(python_parse_range, RANGE, SIZE) == EXPECTED_RANGES


@bench("parse_http_date")
def test_parse_http_date_fastserve(benchmark) -> None:
    assert benchmark(parse_http_date, DATE) == TS


@bench("parse_http_date")
def test_parse_http_date_python(benchmark) -> None:
    assert benchmark(python_parse_http_date, DATE) == TS


@bench("format_http_date")
def test_format_http_date_fastserve(benchmark) -> None:
    assert benchmark(format_http_date, TS) == DATE


@bench("format_http_date")
def test_format_http_date_python(benchmark) -> None:
    assert benchmark(lambda ts: email.utils.formatdate(ts, usegmt=True).encode(), TS) == DATE


@bench("current_http_date")
def test_current_http_date_fastserve(benchmark) -> None:
    value = benchmark(current_http_date)
    assert abs(parse_http_date(value) - parse_http_date(current_http_date())) <= 1


@bench("current_http_date")
def test_current_http_date_python(benchmark) -> None:
    value = benchmark(lambda: email.utils.formatdate(usegmt=True).encode())
    assert abs(parse_http_date(value) - parse_http_date(current_http_date())) <= 1


# a revalidation: If-None-Match matches, so the answer is 304
PRECONDITION_ARGS = (b"GET", None, None, b'"stale", ' + ETAG, DATE, ETAG, TS)


@bench("evaluate_preconditions")
def test_evaluate_preconditions_fastserve(benchmark) -> None:
    assert benchmark(evaluate_preconditions, *PRECONDITION_ARGS) == 304


@bench("evaluate_preconditions")
def test_evaluate_preconditions_python(benchmark) -> None:
    assert benchmark(python_preconditions, *PRECONDITION_ARGS) == 304


# the date-only revalidation path (If-Modified-Since) parses a date
IMS_ARGS = (b"GET", None, None, None, DATE, ETAG, TS)


@bench("evaluate_preconditions_if_modified_since")
def test_evaluate_preconditions_ims_fastserve(benchmark) -> None:
    assert benchmark(evaluate_preconditions, *IMS_ARGS) == 304


@bench("evaluate_preconditions_if_modified_since")
def test_evaluate_preconditions_ims_python(benchmark) -> None:
    assert benchmark(python_preconditions, *IMS_ARGS) == 304


@bench("serialize_headers")
def test_serialize_headers_fastserve(benchmark) -> None:
    assert benchmark(serialize_headers, 200, HEADERS) == python_serialize_headers(200, HEADERS)


@bench("serialize_headers")
def test_serialize_headers_python(benchmark) -> None:
    assert benchmark(python_serialize_headers, 200, HEADERS) == serialize_headers(200, HEADERS)
