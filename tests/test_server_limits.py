"""Greedy and vanishing clients over real sockets: what the kernel decides (full socket buffers,
resets, a file shrinking or written in place under sendfile) leaves the server healthy.

The protocol limits themselves (431, 414, 400, 413, 408, keep-alive, 503, --max-ranges) are tested
in-process in test_connection_limits.py.
"""
from __future__ import annotations

import os
import socket
import time

import pytest

from server_helpers import (
    DocRoot,
    RawConnection,
    ServerProcess,
    build_request,
    fetch,
    running_server,
    server_side_of,
    wait_released,
    wait_unread,
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


# -- greedy and vanishing clients ---------------------------------------------------------------


def test_client_that_never_reads_does_not_block_others(limited: ServerProcess, docroot: DocRoot) -> None:
    stuck = [RawConnection(limited.port, rcvbuf=4096) for _ in range(3)]
    try:
        for conn in stuck:
            conn.request("GET", "/large.bin")
        for conn in stuck:  # each transfer has begun and stalled on a full socket
            wait_unread(conn.sock)
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
        held = server_side_of(limited.pid, conn.sock)
        conn.reset() if how == "reset" else conn.close()
        assert wait_released(limited.pid, held), "the server kept the connection of a client that left"
    assert_healthy(limited, docroot)
    assert fetch(limited.port, "/large.bin", timeout=5.0).body == docroot.large


def test_client_leaving_with_pipelined_requests_queued(limited: ServerProcess, docroot: DocRoot) -> None:
    conn = RawConnection(limited.port, rcvbuf=4096)
    conn.send(build_request("GET", "/large.bin") * 5 + build_request("GET", "/small.txt") * 5)
    held = server_side_of(limited.pid, conn.sock)
    wait_unread(conn.sock)  # the first answer is on its way
    conn.reset()
    assert wait_released(limited.pid, held), "the server kept the connection of a client that left"
    assert_healthy(limited, docroot)


def assert_cut_short(conn: RawConnection, promised: int) -> None:
    """The connection ends promptly (closed or reset), short of the ``promised`` body length,
    and the pipelined request behind the answer is not answered after it."""
    started = time.monotonic()
    try:
        received = conn.read_to_eof()
    except socket.timeout:
        pytest.fail("the connection hung after the file changed")
    assert time.monotonic() - started < 4.0
    assert len(received) < promised, "the full promised length cannot have been sent"
    assert b"HTTP/1.1 200" not in received[-4096:]  # no answer after the cut one


# (the Range asked for, the status, the size the file is cut to while it is sent)
CUTS = [
    (None, 200, 0),
    (None, 200, 1024 * 1024),
    # a multipart/byteranges answer: two parts, the second longer than a socket's send buffer
    # may grow to (net.ipv4.tcp_wmem: 4 MiB), so that the cut is met before it is all sent
    ("bytes=-100,0-{gap_before_last_100}", 206, 1024 * 1024),
]


@pytest.mark.parametrize("range_value, status, new_size", CUTS)
def test_file_truncated_while_sent_closes_the_connection(start_server, fresh_docroot: DocRoot,
                                                         range_value, status, new_size) -> None:
    """A file that shrinks under sendfile cannot give the length promised: the connection is
    closed, never left waiting, nor the pipelined request after it read as the rest of the body."""
    srv = start_server(fresh_docroot.root, "--cache-valid", "0")
    path = fresh_docroot.path("large.bin")
    path.write_bytes(fresh_docroot.large)
    with RawConnection(srv.port, timeout=5.0, rcvbuf=4096) as conn:
        if range_value is not None:
            range_value = range_value.format(gap_before_last_100=len(fresh_docroot.large) - 202)
        conn.send(build_request("GET", "/large.bin", [("Range", range_value)] if range_value else [])
                  + build_request("GET", "/small.txt"))
        head = conn.read_head()
        assert head.status == status
        promised = int(head.header("content-length"))
        if range_value is None:
            assert promised == len(fresh_docroot.large)
        os.truncate(path, new_size)
        assert_cut_short(conn, promised)
    # the server carries on, and serves the file as it now is
    now = fetch(srv.port, "/large.bin", timeout=5.0)
    assert (now.status, len(now.body)) == (200, new_size)
    assert now.body == fresh_docroot.large[:new_size]


def _write_in_place(path, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.write(data)


def _append(path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(b"appended while it was sent " * 40000)


# how the file changes while it is sent (nginx sends each whole, the mix of versions included)
WRITES_IN_PLACE = {
    "appended to": _append,
    "rewritten at its size": lambda path, data: _write_in_place(path, bytes(255 - b for b in data)),
}


@pytest.mark.parametrize("how", sorted(WRITES_IN_PLACE))
@pytest.mark.parametrize("range_value", [None, "bytes=1000-"])
def test_file_written_in_place_while_sent_is_cut(start_server, fresh_docroot: DocRoot, how: str,
                                                 range_value) -> None:
    """A file written in place while sendfile sends it (``cp`` over it, an append) is another
    version than the one its head named: the connection is reset short of the promised length,
    so no client takes bytes of two versions for one answer under one ETag, nor the pipelined
    answer after it for the rest of the body; the next request gets the new version whole."""
    srv = start_server(fresh_docroot.root, "--cache-valid", "0")
    path = fresh_docroot.path("large.bin")
    # Larger than the socket's send buffer may grow to (net.ipv4.tcp_wmem: 4 MiB): an answer the
    # socket takes whole at once is checked only at its lookup, before the file changes.
    original = fresh_docroot.large * (8 * 1024 * 1024 // len(fresh_docroot.large) + 1)
    path.write_bytes(original)
    with RawConnection(srv.port, timeout=5.0, rcvbuf=4096) as conn:
        conn.send(build_request("GET", "/large.bin", [("Range", range_value)] if range_value else [])
                  + build_request("GET", "/small.txt"))
        head = conn.read_head()
        assert head.status == (206 if range_value else 200)
        promised = int(head.header("content-length"))
        WRITES_IN_PLACE[how](path, original)
        assert_cut_short(conn, promised)
    now = fetch(srv.port, "/large.bin", timeout=5.0)
    assert (now.status, now.body) == (200, path.read_bytes())
    assert now.header("etag") != head.header("etag")


@pytest.mark.parametrize("range_value", [None, "bytes=1000-"])
def test_file_replaced_by_rename_while_sent_goes_out_whole(start_server, fresh_docroot: DocRoot,
                                                           range_value) -> None:
    """A deploy that writes the new version beside the file and renames it over the old one
    leaves the transfer on the old version: sent whole, the pipelined answer in step after it."""
    srv = start_server(fresh_docroot.root, "--cache-valid", "0")
    path = fresh_docroot.path("large.bin")
    original = fresh_docroot.large
    path.write_bytes(original)
    expected = original[1000:] if range_value else original
    with RawConnection(srv.port, timeout=5.0, rcvbuf=4096) as conn:
        conn.send(build_request("GET", "/large.bin", [("Range", range_value)] if range_value else [])
                  + build_request("GET", "/small.txt"))
        head = conn.read_head()
        assert int(head.header("content-length")) == len(expected)
        fresh = path.with_name("large.bin.new")
        fresh.write_bytes(bytes(255 - b for b in original))
        os.replace(fresh, path)
        assert conn.read_exact(len(expected)) == expected
        after = conn.read_response()
        assert (after.status, after.body) == (200, fresh_docroot.small)
