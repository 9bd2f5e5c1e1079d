"""Micro-benchmark: reading a plain request head with ``scan_head`` against httptools callbacks.

``pytest --benchmark-enable tests/test_bench_speedups_requesthead.py`` prints the pair; with
``--benchmark-disable`` (the project default) each runs once and checks its answer. Both
sides build the same Python objects (target and If-None-Match), as the connection does.
"""
import httptools
import pytest

from fastserve._speedups.requesthead import scan_head

HEAD = (
    b"GET /assets/app.js HTTP/1.1\r\nHost: localhost:8000\r\nUser-Agent: bench\r\n"
    b"Accept: */*\r\nIf-None-Match: \"18eb4b51e413cdf0-400\"\r\n\r\n"
)


class _Collector:
    def __init__(self) -> None:
        self.url = None
        self.if_none_match = None

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"if-none-match":
            self.if_none_match = value


def read_with_httptools(parser: httptools.HttpRequestParser, collector: _Collector):
    parser.feed_data(HEAD)
    return collector.url, collector.if_none_match


def read_with_scan_head():
    _, fields = scan_head(HEAD)
    return fields["target"], fields["if_none_match"]


EXPECTED = (b"/assets/app.js", b'"18eb4b51e413cdf0-400"')


@pytest.mark.benchmark(group="request head", max_time=0.25, min_rounds=5)
def test_bench_httptools_callbacks(benchmark) -> None:
    collector = _Collector()
    parser = httptools.HttpRequestParser(collector)
    assert benchmark(read_with_httptools, parser, collector) == EXPECTED


@pytest.mark.benchmark(group="request head", max_time=0.25, min_rounds=5)
def test_bench_scan_head(benchmark) -> None:
    assert benchmark(read_with_scan_head) == EXPECTED
