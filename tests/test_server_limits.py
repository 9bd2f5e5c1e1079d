"""Bad, slow, greedy and vanishing clients: every limit answers clearly and the server stays healthy.

Each refusal is followed by a good request on a new connection, which must succeed.
"""
from __future__ import annotations

import os
import socket
import time

import pytest

from server_helpers import (
    ConnectionClosed,
    DocRoot,
    RawConnection,
    ServerProcess,
    build_request,
    fetch,
    running_server,
)

LIMIT_FLAGS = [
    "--max-header-bytes", "2048",
    "--max-header-count", "20",
    "--max-url-length", "512",
    "--max-body-size", "1024",
    "--max-ranges", "4",
    "--header-timeout", "1",
    "--keepalive-timeout", "1",
]


@pytest.fixture(scope="module")
def limited(docroot: DocRoot, tmp_path_factory) -> ServerProcess:
    log = tmp_path_factory.mktemp("logs") / "limits.log"
    with running_server(docroot.root, LIMIT_FLAGS, log_path=log) as srv:
        yield srv


def assert_healthy(server: ServerProcess, docroot: DocRoot) -> None:
    """A good request on a new connection succeeds promptly."""
    assert server.alive(), server.output()
    response = fetch(server.port, "/small.txt", timeout=3.0)
    assert (response.status, response.body) == (200, docroot.small)


def assert_refused_and_closed(conn: RawConnection, status: int) -> None:
    try:
        response = conn.read_response()
    except ConnectionClosed:
        pytest.fail(f"the connection was dropped without an answer (expected {status})")
    assert response.status == status, response
    assert response.header("connection") == "close"
    assert conn.wait_closed(2.0), "connection left open after the refusal"


# -- header size, count, URL length -----------------------------------------------------------


def test_one_huge_header_gives_431_and_close(limited: ServerProcess, docroot: DocRoot) -> None:
    with RawConnection(limited.port) as conn:
        conn.request("GET", "/small.txt", [("X-Big", "a" * 3000)])
        assert_refused_and_closed(conn, 431)
    assert_healthy(limited, docroot)


def test_many_header_bytes_in_small_writes_give_431(limited: ServerProcess, docroot: DocRoot) -> None:
    request = build_request("GET", "/small.txt", [(f"X-H{i}", "b" * 200) for i in range(15)])
    with RawConnection(limited.port) as conn:
        for offset in range(0, len(request), 100):
            try:
                conn.send(request[offset:offset + 100])
            except (BrokenPipeError, ConnectionResetError):
                break  # refused before we finished: fine, the answer is already waiting
        assert_refused_and_closed(conn, 431)
    assert_healthy(limited, docroot)


def test_too_many_headers_give_431(limited: ServerProcess, docroot: DocRoot) -> None:
    with RawConnection(limited.port) as conn:
        conn.request("GET", "/small.txt", [(f"X-N{i}", "1") for i in range(30)])
        assert_refused_and_closed(conn, 431)
    assert_healthy(limited, docroot)


def test_headers_at_the_limit_are_accepted(limited: ServerProcess, docroot: DocRoot) -> None:
    with RawConnection(limited.port) as conn:
        response = conn.exchange("GET", "/small.txt", [(f"X-N{i}", "1") for i in range(15)])
    assert (response.status, response.body) == (200, docroot.small)


def test_long_url_gives_414_and_close(limited: ServerProcess, docroot: DocRoot) -> None:
    with RawConnection(limited.port) as conn:
        conn.request("GET", "/" + "a" * 600)
        assert_refused_and_closed(conn, 414)
    assert_healthy(limited, docroot)


def test_long_query_counts_toward_the_url_limit(limited: ServerProcess, docroot: DocRoot) -> None:
    with RawConnection(limited.port) as conn:
        conn.request("GET", "/small.txt?" + "q" * 600)
        assert_refused_and_closed(conn, 414)
    assert_healthy(limited, docroot)


# -- syntax errors -----------------------------------------------------------------------------


MALFORMED = {
    "garbage request line": b"GARBAGE\r\n\r\n",
    "extra token in request line": b"GET /small.txt HTTP/1.1 extra\r\n\r\n",
    "control bytes as method": b"\x00\x01 / HTTP/1.1\r\n\r\n",
    "bad protocol name": b"GET /small.txt HTTX/1.1\r\n\r\n",
    "unknown HTTP version": b"GET /small.txt HTTP/9.9\r\n\r\n",
    "header without colon": b"GET /small.txt HTTP/1.1\r\nHost localhost\r\n\r\n",
    "space inside header name": b"GET /small.txt HTTP/1.1\r\nBad Header: x\r\n\r\n",
    "space before colon": b"GET /small.txt HTTP/1.1\r\nHost : x\r\n\r\n",
    "obsolete line folding": b"GET /small.txt HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n",
    "NUL in header value": b"GET /small.txt HTTP/1.1\r\nX-A: a\x00b\r\n\r\n",
    "bare LF line endings": b"GET /small.txt HTTP/1.1\nHost: x\n\n",
    "non-numeric Content-Length": b"GET /small.txt HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    "negative Content-Length": b"GET /small.txt HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    "Content-Length with a space": b"GET /small.txt HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n",
    "conflicting Content-Lengths": b"GET /small.txt HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "Content-Length with chunked": (b"GET /small.txt HTTP/1.1\r\nContent-Length: 5\r\n"
                                    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    "unknown Transfer-Encoding": b"GET /small.txt HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_request_gives_400_and_close(limited: ServerProcess, docroot: DocRoot,
                                               request_bytes: bytes) -> None:
    with RawConnection(limited.port) as conn:
        conn.send(request_bytes)
        assert_refused_and_closed(conn, 400)
    assert_healthy(limited, docroot)


def test_malformed_request_after_a_good_one_on_the_same_connection(limited: ServerProcess,
                                                                   docroot: DocRoot) -> None:
    with RawConnection(limited.port) as conn:
        conn.send(build_request("GET", "/small.txt") + b"NOT HTTP AT ALL\r\n\r\n")
        first = conn.read_response()
        assert (first.status, first.body) == (200, docroot.small)
        assert_refused_and_closed(conn, 400)
    assert_healthy(limited, docroot)


# -- request bodies ----------------------------------------------------------------------------


def test_declared_body_over_max_body_size_gives_413_without_waiting(limited: ServerProcess,
                                                                    docroot: DocRoot) -> None:
    with RawConnection(limited.port, timeout=3.0) as conn:
        conn.send(b"POST /small.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
        assert_refused_and_closed(conn, 413)
    assert_healthy(limited, docroot)


def test_chunked_body_over_max_body_size_gives_413(limited: ServerProcess, docroot: DocRoot) -> None:
    chunk = b"%x\r\n%s\r\n" % (512, b"z" * 512)
    with RawConnection(limited.port, timeout=3.0) as conn:
        conn.send(b"POST /small.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(8):  # 4 KiB, four times the limit
                conn.send(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert_refused_and_closed(conn, 413)
    assert_healthy(limited, docroot)


def test_small_body_trickling_in_is_still_answered(limited: ServerProcess, docroot: DocRoot) -> None:
    # each byte arrives well inside --keepalive-timeout, so the connection is not idle
    with RawConnection(limited.port, timeout=3.0) as conn:
        conn.send(b"POST /small.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n")
        for byte in b"abcd":
            time.sleep(0.35)
            conn.send(bytes([byte]))
        response = conn.read_response()
        assert response.status == 405
        assert conn.exchange("GET", "/small.txt").body == docroot.small


# -- slow and idle clients ---------------------------------------------------------------------


def test_headers_sent_one_byte_at_a_time_time_out(limited: ServerProcess, docroot: DocRoot) -> None:
    request = build_request("GET", "/small.txt", [("X-Slow", "s" * 100)])
    started = time.monotonic()
    outcome = None
    with RawConnection(limited.port, timeout=3.0) as conn:
        for byte in request:
            try:
                conn.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                outcome = "closed"
                break
            if not conn.is_open_after(0.3):
                try:
                    response = conn.read_response()
                    outcome = response.status
                    assert conn.wait_closed(2.0)
                except ConnectionClosed:
                    outcome = "closed"
                break
            if time.monotonic() - started > 5.0:
                break
    elapsed = time.monotonic() - started
    assert outcome in (408, "closed"), f"no timeout after {elapsed:.1f} s (outcome {outcome})"
    assert elapsed < 2.6, f"header timeout of 1 s took {elapsed:.1f} s"
    assert_healthy(limited, docroot)


def test_connection_that_sends_nothing_is_closed(limited: ServerProcess, docroot: DocRoot) -> None:
    with RawConnection(limited.port) as conn:
        started = time.monotonic()
        assert conn.wait_closed(3.0), "a silent connection was kept open"
        assert time.monotonic() - started < 2.6
    assert_healthy(limited, docroot)


def test_idle_keep_alive_connection_is_closed(limited: ServerProcess, docroot: DocRoot) -> None:
    with RawConnection(limited.port) as conn:
        assert conn.exchange("GET", "/small.txt").status == 200
        started = time.monotonic()
        assert conn.wait_closed(3.0), "idle keep-alive connection still open after 3 s"
        elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 2.6, f"closed after {elapsed:.2f} s with --keepalive-timeout 1"
    assert_healthy(limited, docroot)


def test_busy_keep_alive_connection_is_not_closed(limited: ServerProcess, docroot: DocRoot) -> None:
    # requests 0.3 s apart for 1.5 s: never idle for the whole timeout
    with RawConnection(limited.port) as conn:
        for _ in range(5):
            assert conn.exchange("GET", "/small.txt").body == docroot.small
            time.sleep(0.3)
        assert conn.exchange("GET", "/small.txt").body == docroot.small


# -- connection limit --------------------------------------------------------------------------


def test_connection_over_max_connections_gets_503_and_close(start_server, docroot: DocRoot) -> None:
    srv = start_server(docroot.root, "--max-connections", "2")
    first = RawConnection(srv.port)
    second = RawConnection(srv.port)
    try:
        assert first.exchange("GET", "/small.txt").status == 200
        assert second.exchange("GET", "/small.txt").status == 200
        with RawConnection(srv.port) as third:
            response = third.read_response()
            assert response.status == 503
            assert third.wait_closed(2.0)
        # the two admitted connections are unaffected
        assert first.exchange("GET", "/small.txt").body == docroot.small
        assert second.exchange("GET", "/small.txt").body == docroot.small
    finally:
        first.close()
    # a slot is free again once a connection has gone
    deadline = time.monotonic() + 2.0
    while True:
        with RawConnection(srv.port) as again:
            again.request("GET", "/small.txt")
            response = again.read_response()
        if response.status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    second.close()
    assert (response.status, response.body) == (200, docroot.small)


# -- greedy and vanishing clients ---------------------------------------------------------------


def test_client_that_never_reads_does_not_block_others(limited: ServerProcess, docroot: DocRoot) -> None:
    stuck = [RawConnection(limited.port, rcvbuf=4096) for _ in range(3)]
    try:
        for conn in stuck:
            conn.request("GET", "/large.bin")
        time.sleep(0.2)
        started = time.monotonic()
        for _ in range(20):
            response = fetch(limited.port, "/small.txt", timeout=2.0)
            assert (response.status, response.body) == (200, docroot.small)
        big = fetch(limited.port, "/large.bin", timeout=5.0)
        assert big.body == docroot.large
        assert time.monotonic() - started < 3.0
    finally:
        for conn in stuck:
            conn.close()
    assert_healthy(limited, docroot)


@pytest.mark.parametrize("how", ["close", "reset"])
def test_client_leaving_mid_download_leaves_the_server_healthy(limited: ServerProcess, docroot: DocRoot,
                                                               how: str) -> None:
    for _ in range(3):
        conn = RawConnection(limited.port)
        conn.request("GET", "/large.bin")
        head = conn.read_head()
        assert head.header("content-length") == str(len(docroot.large))
        conn.read_exact(200_000)
        conn.reset() if how == "reset" else conn.close()
    time.sleep(0.1)
    assert_healthy(limited, docroot)
    assert fetch(limited.port, "/large.bin", timeout=5.0).body == docroot.large


def test_client_leaving_with_pipelined_requests_queued(limited: ServerProcess, docroot: DocRoot) -> None:
    conn = RawConnection(limited.port, rcvbuf=4096)
    conn.send(build_request("GET", "/large.bin") * 5 + build_request("GET", "/small.txt") * 5)
    time.sleep(0.2)
    conn.reset()
    time.sleep(0.1)
    assert_healthy(limited, docroot)


def test_file_truncated_while_sent_closes_the_connection(start_server, fresh_docroot: DocRoot) -> None:
    srv = start_server(fresh_docroot.root, "--cache-valid", "0")
    path = fresh_docroot.path("large.bin")
    for new_size in (0, 1024 * 1024):
        path.write_bytes(fresh_docroot.large)
        with RawConnection(srv.port, timeout=5.0, rcvbuf=4096) as conn:
            conn.request("GET", "/large.bin")
            head = conn.read_head()
            assert head.status == 200
            promised = int(head.header("content-length"))
            assert promised == len(fresh_docroot.large)
            os.truncate(path, new_size)
            started = time.monotonic()
            try:
                received = conn.read_to_eof()
            except socket.timeout:
                pytest.fail("the connection hung after the file was truncated")
            assert time.monotonic() - started < 4.0
            assert len(received) < promised, "the full promised length cannot have been sent"
        # the server carries on, and serves the file as it now is
        now = fetch(srv.port, "/large.bin", timeout=5.0)
        assert (now.status, len(now.body)) == (200, new_size)
        assert now.body == fresh_docroot.large[:new_size]


# -- ranges ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, attr", [("/small.txt", "small"), ("/large.bin", "large")])
def test_more_ranges_than_max_ranges_send_the_whole_file(limited: ServerProcess, docroot: DocRoot,
                                                        name: str, attr: str) -> None:
    with RawConnection(limited.port, timeout=5.0) as conn:
        response = conn.exchange("GET", name, [("Range", "bytes=0-0,2-2,4-4,6-6,8-8")])
        assert response.status == 200
        assert response.header("content-range") is None
        assert response.body == getattr(docroot, attr)
        allowed = conn.exchange("GET", name, [("Range", "bytes=0-0,2-2,4-4,6-6")])
        assert allowed.status == 206
        assert allowed.header("content-type").startswith("multipart/byteranges")
