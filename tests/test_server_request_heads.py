"""Plain heads are read by fastserve's own scanner, the rest by httptools: the server must
answer the same either way, and hand a connection from one to the other mid-stream."""
from __future__ import annotations

import time

import pytest

from server_helpers import DocRoot, RawConnection, ServerProcess, build_request


@pytest.fixture(scope="module")
def small_etag(server: ServerProcess) -> str:
    with RawConnection(server.port) as conn:
        return conn.exchange("HEAD", "/small.txt").header("etag")


@pytest.mark.parametrize("cut", [1, 2, 3, 4, 5, 12, 25, 30, -3, -2, -1])
def test_a_head_split_anywhere_is_answered_and_the_next_one_too(server: ServerProcess, docroot: DocRoot,
                                                                 small_etag: str, cut: int) -> None:
    first = build_request("GET", "/small.txt", [("If-None-Match", small_etag)])
    with RawConnection(server.port) as conn:
        conn.send(first[:cut])
        time.sleep(0.05)  # the server reads the first part on its own
        conn.send(first[cut:] + build_request("GET", "/small.txt"))
        assert conn.read_response().status == 304
        second = conn.read_response()
        assert (second.status, second.body) == (200, docroot.small)
        assert conn.exchange("GET", "/medium.bin").body == docroot.medium


def test_plain_and_unusual_heads_pipelined_are_answered_in_order(server: ServerProcess, docroot: DocRoot,
                                                                   small_etag: str) -> None:
    batch = b"".join([
        build_request("GET", "/small.txt"),
        build_request("GET", "/small.txt", [("X-Note", "caf\u00e9"), ("If-None-Match", small_etag)]),
        build_request("HEAD", "/medium.bin"),
        build_request("GET", "/small.txt", [("Content-Length", "5")], body=b"hello"),
        build_request("GET", "/small.txt", [("iF-nOnE-mAtCh", f" {small_etag} \t")]),
        build_request("DELETE", "/small.txt"),
        build_request("GET", "/medium.bin", [("RANGE", "bytes=10-19")]),
    ])
    with RawConnection(server.port) as conn:
        conn.send(batch)
        assert (conn.read_response().body) == docroot.small
        assert conn.read_response().status == 304
        head = conn.read_response(head=True)
        assert head.header("content-length") == str(len(docroot.medium))
        with_body = conn.read_response()
        assert (with_body.status, with_body.body) == (200, docroot.small)
        assert conn.read_response().status == 304
        refused = conn.read_response()
        assert (refused.status, refused.header("allow")) == (405, "GET, HEAD")
        ranged = conn.read_response()
        assert (ranged.status, ranged.body) == (206, docroot.medium[10:20])
        assert conn.buffer == b""
        assert conn.is_open_after(0.1)


@pytest.mark.parametrize("version, connection, stays_open, answer", [
    ("HTTP/1.1", None, True, None),
    ("HTTP/1.1", "close", False, "close"),
    ("HTTP/1.1", "Close", False, "close"),
    ("HTTP/1.1", "keep-alive", True, None),
    ("HTTP/1.0", None, False, "close"),
    ("HTTP/1.0", "Keep-Alive", True, "keep-alive"),
    ("HTTP/1.0", "close", False, "close"),
    ("HTTP/1.1", "close, x-other", False, "close"),   # a list: left to httptools
    ("HTTP/1.0", "keep-alive, x-other", True, "keep-alive"),
])
def test_connection_rules_are_the_same_for_both_readers(server: ServerProcess, docroot: DocRoot, version: str,
                                                          connection: str | None, stays_open: bool,
                                                          answer: str | None) -> None:
    headers = [("Connection", connection)] if connection else []
    with RawConnection(server.port) as conn:
        response = conn.exchange("GET", "/small.txt", headers, version=version)
        assert response.body == docroot.small
        assert (response.header("connection") or "").lower() == (answer or "")
        if stays_open:
            assert conn.exchange("GET", "/small.txt", headers, version=version).body == docroot.small
        else:
            assert conn.wait_closed(2.0)


def test_a_malformed_head_after_plain_ones_gets_400_after_their_answers(server: ServerProcess,
                                                                        docroot: DocRoot) -> None:
    batch = build_request("GET", "/small.txt") * 2 + b"GET /small.txt HTTP/1.1\r\nHost : x\r\n\r\n"
    with RawConnection(server.port) as conn:
        conn.send(batch)
        assert conn.read_response().body == docroot.small
        assert conn.read_response().body == docroot.small
        assert conn.read_response().status == 400
        assert conn.wait_closed(2.0)
