"""What a keep-alive connection holds between requests.

A static origin keeps thousands of quiet clients connected (browsers, a CDN's pool); each one
costs what its connection object keeps. After answering plain heads the connection holds no
request head (it goes back to the worker at the clock's next tick), no output list, no httptools parser, no queue and
no address tuples; a request that needs the parser still gets one. Measured in-process with tracemalloc on a stand-in transport: the
connection's own Python allocations, without the event loop's transport (``bench/run.sh``'s
memory group measures the whole process: RSS per idle connection).
"""
from __future__ import annotations

import asyncio
import tracemalloc
from pathlib import Path

from bench.inprocess import CountingTransport
from fastserve._speedups.protocol import HttpProtocol
from fastserve.config import Config
from fastserve.server.worker import build_state
from fastserve.staticfiles import StaticFiles

CONNECTIONS = 200
GET = b"GET /small.txt HTTP/1.1\r\nHost: localhost\r\n\r\n"


class StandInTransport(CountingTransport):
    """Counts the 200 answers written to it (keeping them would be measured too), and closes."""

    def __init__(self) -> None:
        super().__init__()
        self.answers = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        self.answers += data.count(b"HTTP/1.1 200 OK\r\n")

    def close(self) -> None:
        self.closed = True


def bytes_per_idle_connection(docroot: Path, requests: list[bytes], answers: int) -> float:
    """Python bytes each of CONNECTIONS connections still holds after `answers` 200s to `requests`:
    the least of three measures. About one in ten sees a kilobyte or so more that belongs to no
    connection (allocated once while the window was open: 382.2 bytes read as 384.16 or 389.42),
    which the 384-byte bound below cannot tell from a connection grown by a few bytes."""

    async def measure() -> float:
        loop = asyncio.get_running_loop()
        app = StaticFiles(directory=docroot, answers="static")
        state = build_state(Config(target=app), app, loop)
        transports = [StandInTransport() for _ in range(CONNECTIONS + 1)]

        def serve(transport: StandInTransport) -> HttpProtocol:
            conn = HttpProtocol(state, loop)
            conn.connection_made(transport)
            for data in requests:
                conn.data_received(data)
            assert transport.answers == answers
            return conn

        serve(transports[0])  # the first request fills the file cache; that is not per connection
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            held = [serve(transport) for transport in transports[1:]]
            state.tick(state.now)  # idle connections give their heads back at the clock's tick
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert len(held) == CONNECTIONS and not any(t.closed for t in transports)
        return (after - before) / CONNECTIONS

    return min(asyncio.run(measure()) for _ in range(3))


def write_docroot(tmp_path: Path) -> Path:
    (tmp_path / "small.txt").write_bytes(b"x" * 1024)
    return tmp_path


def test_an_idle_connection_after_plain_gets_holds_its_object_alone(tmp_path: Path) -> None:
    per_connection = bytes_per_idle_connection(write_docroot(tmp_path), [GET, GET + GET], 3)
    # The connection object (288 bytes) and its share of the worker's dict of connections
    # (about 340 in all). A request head (about 170 bytes and its target), an output list (56),
    # a parser, a deque or address tuples would each add to it; with all of them, as before:
    # about 2.5 KiB.
    assert per_connection < 384, per_connection


def test_a_head_the_scanner_leaves_to_httptools_is_answered_and_the_parser_kept(tmp_path: Path) -> None:
    with_body = b"GET /small.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc"
    per_connection = bytes_per_idle_connection(write_docroot(tmp_path), [with_body, GET], 2)
    assert per_connection > 1024  # the measure sees a parser: the bound above means something


def test_the_parser_made_midway_reads_the_rest_of_a_split_head(tmp_path: Path) -> None:
    split = b"GET /small.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n"
    bytes_per_idle_connection(write_docroot(tmp_path), [GET + split, b"\r\nhi", GET], 3)
