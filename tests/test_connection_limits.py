"""Every limit answers clearly, in-process and with each request reader: 431, 414, 400, 413,
408, idle and busy keep-alive, 503 over the connection limit, --max-ranges. The clock is moved
by hand (``server.tick``), so the timeouts cost no waiting.

(Moved from the real-socket tests; what the kernel decides stays in test_server_limits.py.)
"""
from __future__ import annotations

import pytest

from inprocess import Client, parse_responses
from server_helpers import DocRoot, build_request

LIMITS = dict(
    max_header_bytes=2048, max_header_count=20, max_url_length=512, max_body_size=1024, max_ranges=4,
    header_timeout=1.0, keepalive_timeout=1.0,
)


@pytest.fixture
def limited(serve, docroot: DocRoot):
    return serve(docroot.root, **LIMITS)


def assert_refused_and_closed(client: Client, status: int) -> None:
    responses = client.parsed()
    assert responses, "the connection was dropped without an answer"
    assert responses[-1].status == status, responses[-1]
    assert responses[-1].header("connection") == "close"
    assert client.closed, "connection left open after the refusal"


def assert_healthy(server, docroot: DocRoot) -> None:
    """A good request on a new connection succeeds."""
    response = server.open().request("GET", "/small.txt")
    assert (response.status, response.body) == (200, docroot.small)


# -- header size, count, URL length -----------------------------------------------------------


def test_one_huge_header_gives_431_and_close(limited, docroot):
    client = limited.open().send(build_request("GET", "/small.txt", [("X-Big", "a" * 3000)]))
    assert_refused_and_closed(client, 431)
    assert_healthy(limited, docroot)


def test_many_header_bytes_in_small_writes_give_431(limited, docroot):
    request = build_request("GET", "/small.txt", [(f"X-H{i}", "b" * 200) for i in range(15)])
    client = limited.open()
    for offset in range(0, len(request), 100):
        client.send(request[offset:offset + 100])
    assert_refused_and_closed(client, 431)
    assert_healthy(limited, docroot)


def test_too_many_headers_give_431(limited, docroot):
    client = limited.open().send(build_request("GET", "/small.txt", [(f"X-N{i}", "1") for i in range(30)]))
    assert_refused_and_closed(client, 431)


def test_headers_at_the_limit_are_accepted(limited, docroot):
    response = limited.open().request("GET", "/small.txt", [(f"X-N{i}", "1") for i in range(15)])
    assert (response.status, response.body) == (200, docroot.small)


@pytest.mark.parametrize("target", ["/" + "a" * 600, "/small.txt?" + "q" * 600])
def test_long_url_or_query_gives_414_and_close(limited, docroot, target):
    client = limited.open().send(build_request("GET", target))
    assert_refused_and_closed(client, 414)
    assert_healthy(limited, docroot)


@pytest.mark.parametrize("piece", [100, 1 << 20], ids=["in-small-writes", "in-one-write"])
def test_a_request_line_longer_than_the_head_limit_gives_414_however_it_arrives(limited, docroot, piece):
    """A request line still going at the head limit holds a target longer than any the server
    reads (RFC 9112 section 3): 414 at once, whether its bytes come slowly (httptools sees the
    target grow) or in one read (refused before httptools sees them)."""
    line = b"GET /" + b"a" * (LIMITS["max_header_bytes"] * 2)
    client = limited.open()
    for offset in range(0, len(line), piece):
        client.send(line[offset:offset + piece])
        if client.closed:
            break
    assert_refused_and_closed(client, 414)
    assert_healthy(limited, docroot)


# -- syntax errors -----------------------------------------------------------------------------


MALFORMED = {
    "garbage request line": b"GARBAGE\r\n\r\n",
    "extra token in request line": b"GET /small.txt HTTP/1.1 extra\r\n\r\n",
    "control bytes as method": b"\x00\x01 / HTTP/1.1\r\n\r\n",
    "bad protocol name": b"GET /small.txt HTTX/1.1\r\n\r\n",
    "unknown HTTP/1 minor version": b"GET /small.txt HTTP/1.9\r\n\r\n",  # HTTP/9.9: 505 (test_request_edges)
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
def test_malformed_request_gives_400_and_close(limited, docroot, request_bytes):
    client = limited.open().send(request_bytes)
    assert_refused_and_closed(client, 400)
    assert_healthy(limited, docroot)


def test_malformed_request_after_a_good_one_on_the_same_connection(limited, docroot):
    client = limited.open().send(build_request("GET", "/small.txt") + b"NOT HTTP AT ALL\r\n\r\n")
    first, refused = client.parsed()
    assert (first.status, first.body) == (200, docroot.small)
    assert refused.status == 400 and client.closed


# -- request bodies ----------------------------------------------------------------------------


def test_declared_body_over_max_body_size_gives_413_without_waiting(limited, docroot):
    client = limited.open().send(b"POST /small.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
    assert_refused_and_closed(client, 413)
    assert_healthy(limited, docroot)


def test_chunked_body_over_max_body_size_gives_413(limited, docroot):
    client = limited.open().send(b"POST /small.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(8):  # 4 KiB, four times the limit
        if client.closed:
            break
        client.send(b"%x\r\n%s\r\n" % (512, b"z" * 512))
    assert_refused_and_closed(client, 413)
    assert_healthy(limited, docroot)


class BodyLength:
    """An ASGI app that reads the body and answers its length; records what it received."""

    def __init__(self) -> None:
        self.messages: list = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        size = 0
        while True:
            message = await receive()
            self.messages.append(message)
            if message["type"] == "http.disconnect":
                return
            size += len(message["body"])
            if not message.get("more_body"):
                break
        text = b"%d" % size
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(text))]})
        await send({"type": "http.response.body", "body": text})


TOO_LARGE_HEADS = [
    b"Content-Length: 9223372036854775807\r\n\r\n",          # 19 digits: was not read as a length
    b"Content-Length: 18446744073709551615\r\n\r\n",         # 20, the most httptools takes
    b"Content-Length: 00000000000000000000000000002048\r\n\r\n",
    b"Transfer-Encoding: chunked\r\n\r\n801\r\n",              # one chunk over the limit
    b"Transfer-Encoding: chunked\r\n\r\n7fffffffffffffff\r\n",
    b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffff;ext=1\r\nabc",
]


@pytest.mark.parametrize("face", ["static", "app"])
@pytest.mark.parametrize("fields", TOO_LARGE_HEADS)
def test_a_length_over_max_body_size_is_413_without_waiting_however_it_is_written(serve, docroot, face, fields):
    """A Content-Length of 19 digits or more, and a chunk whose size alone is over the limit,
    were waited on: read up to the limit, or held to the header or body timeout, while a
    shorter declared length over it was 413 at once. Each is 413 + close at once now; the
    app, which may already be running, never gets a byte of such a body."""
    app = BodyLength()
    server = serve(docroot.root if face == "static" else app, **LIMITS)
    client = server.open().send(b"POST /small.txt HTTP/1.1\r\nHost: x\r\n" + fields)
    assert_refused_and_closed(client, 413)
    assert all(message["type"] == "http.disconnect" for message in app.messages), app.messages
    if face == "static":
        assert_healthy(server, docroot)


@pytest.mark.parametrize("fields, body", [
    (b"Content-Length: 0000000000000000000000000000000005\r\n\r\n", b"abcde"),      # leading zeros
    (b"Transfer-Encoding: chunked\r\n\r\n", b"400\r\n" + b"a" * 1024 + b"\r\n0\r\n\r\n"),  # at the limit
    (b"Transfer-Encoding: chunked\r\n\r\n", b"0000000000000000000000003\r\nabc\r\n0\r\n\r\n"),
])
def test_lengths_within_max_body_size_are_read_however_they_are_written(serve, fields, body):
    server = serve(BodyLength(), **LIMITS)
    client = server.open().send(b"POST /n HTTP/1.1\r\nHost: x\r\n" + fields + body)
    response = client.wait_for(1)[0]
    assert response.status == 200 and int(response.body) == len(body.split(b"\r\n")[1] if b"\r\n" in body else body)
    assert not client.closed


def test_small_body_trickling_in_is_still_answered(serve, docroot):
    # each byte arrives well inside the keep-alive timeout, so the connection is not idle (and
    # the whole request inside the header timeout, which a static root's request must keep)
    limited = serve(docroot.root, **{**LIMITS, "header_timeout": 5.0})
    client = limited.open().send(b"POST /small.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n")
    for byte in b"abcd":
        limited.tick(0.35)
        client.send(bytes([byte]))
    assert client.parsed()[-1].status == 405
    assert client.request("GET", "/small.txt").body == docroot.small


# -- slow and idle clients ---------------------------------------------------------------------


def test_headers_sent_one_byte_at_a_time_time_out(limited, docroot):
    request = build_request("GET", "/small.txt", [("X-Slow", "s" * 100)])
    client = limited.open()
    for byte in request[:40]:
        client.send(bytes([byte]))
        limited.tick(0.1)  # 4 s of trickling: the head must be whole within 1 s
        if client.closed:
            break
    assert_refused_and_closed(client, 408)
    assert_healthy(limited, docroot)


def test_connection_that_sends_nothing_is_closed(limited):
    client = limited.open()
    limited.tick(0.9)
    assert not client.closed
    limited.tick(0.2)
    assert client.closed and not client.transport.data


def test_idle_keep_alive_connection_is_closed(limited):
    client = limited.open()
    assert client.request("GET", "/small.txt").status == 200
    limited.tick(0.9)
    assert not client.closed
    limited.tick(0.2)
    assert client.closed


def test_busy_keep_alive_connection_is_not_closed(limited, docroot):
    client = limited.open()
    for _ in range(6):  # a request every 0.3 s: never idle for the whole second
        assert client.request("GET", "/small.txt").body == docroot.small
        limited.tick(0.3)
    assert not client.closed


# -- connection limit --------------------------------------------------------------------------


def test_connection_over_max_connections_gets_503_and_close(serve, docroot):
    server = serve(docroot.root, max_connections=2)
    first, second = server.open(), server.open()
    third = server.open()
    (refused,) = parse_responses(bytes(third.transport.data))[0]
    assert refused.status == 503 and refused.header("connection") == "close" and third.closed
    assert server.state.refused_connections == 1  # for the worker's warning and --metrics (no access line)
    assert first.request("GET", "/small.txt").status == 200
    first.eof()  # the client leaves: its place is free
    assert server.open().request("GET", "/small.txt").status == 200  # room again
    assert second.request("GET", "/small.txt").status == 200


# -- ranges ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, attr", [("/small.txt", "small"), ("/large.bin", "large")])
def test_more_ranges_than_max_ranges_send_the_whole_file(limited, docroot, name, attr):
    client = limited.open()
    response = client.request("GET", name, [("Range", "bytes=0-0,2-2,4-4,6-6,8-8")])
    assert response.status == 200 and response.header("content-range") is None
    assert response.body == getattr(docroot, attr)
    allowed = client.request("GET", name, [("Range", "bytes=0-0,2-2,4-4,6-6")])
    assert allowed.status == 206 and allowed.header("content-type").startswith("multipart/byteranges")


def test_refusals_at_max_connections_are_said_at_most_every_ten_seconds(caplog):
    """The first refusal is said at the next tick; more are summed into one line at most every
    REFUSALS_EVERY seconds, so a worker shedding load all day writes a line per 10 s, not per
    connection, and an operator still sees that it sheds."""
    import logging
    import os

    from fastserve.server.worker import REFUSALS_EVERY, Refusals

    refusals = Refusals(100)
    with caplog.at_level(logging.WARNING, logger="fastserve"):
        for refused, now in [(0, 0.0), (1, 0.5), (7, 1.0), (7, 1.0 + REFUSALS_EVERY - 0.6), (9, 0.5 + REFUSALS_EVERY),
                             (9, 100.0)]:
            refusals.look(refused, now)
    prefix = f"worker {os.getpid()}: --max-connections 100 reached: "
    assert [record.getMessage() for record in caplog.records] == [
        prefix + "1 connection answered 503 and closed",
        prefix + "8 connections answered 503 and closed since the last such line",
    ]
