"""Connection rules in-process, with each request reader: keep-alive, the Connection field,
pipelined order, timeouts by moving the clock. Bytes in, bytes out; no sockets."""
from __future__ import annotations

from pathlib import Path

import pytest

from fastserve._speedups.requesthead import connection_option
from inprocess import parse_responses, request


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    (root / "a.txt").write_bytes(b"first\n")
    (root / "b.txt").write_bytes(b"second\n")
    return root


async def hello(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"hi"})


def test_connection_option_reads_token_lists():
    assert connection_option(b"close") == 2 and connection_option(b"Keep-Alive") == 1
    assert connection_option(b"keep-alive, Upgrade") == 1
    assert connection_option(b"Upgrade,  CLOSE") == 2 and connection_option(b"keep-alive, close") == 2
    assert connection_option(b"upgrade") == 0 and connection_option(b"") == 0


KEEP_ALIVE_CASES = [
    # version, Connection request field, stays open, Connection response field
    ("HTTP/1.1", None, True, None),
    ("HTTP/1.1", "close", False, "close"),
    ("HTTP/1.1", "keep-alive", True, None),
    ("HTTP/1.1", "Upgrade, close", False, "close"),
    ("HTTP/1.0", None, False, "close"),
    ("HTTP/1.0", "keep-alive", True, "keep-alive"),
    ("HTTP/1.0", "Keep-Alive, foo", True, "keep-alive"),
]


@pytest.mark.parametrize("version,option,stays_open,answer", KEEP_ALIVE_CASES)
@pytest.mark.parametrize("face", ["static", "asgi"])
def test_keep_alive_and_the_connection_field(site, serve, face, version, option, stays_open, answer):
    """One rule for both faces and both readers (RFC 9112 section 9.3)."""
    server = serve(site if face == "static" else hello)
    client = server.open()
    headers = [("Connection", option)] if option else []
    client.send(request("GET", "/a.txt", headers, version=version), [False])
    (response,) = client.parsed()
    assert response.status == 200
    assert response.header("connection") == answer
    assert client.closed == (not stays_open)


def test_pipelined_requests_are_answered_in_order(site, serve):
    server = serve(site)
    client = server.open()
    data = request("GET", "/a.txt") + request("HEAD", "/b.txt") + request("GET", "/missing") + request("GET", "/b.txt")
    client.send(data, [False, True, False, False])
    statuses = [(r.status, r.body) for r in client.parsed()]
    assert statuses == [(200, b"first\n"), (200, b""), (404, b"Not Found"), (200, b"second\n")]
    assert client.transport.writes == 1  # answers ready together go out in one write


def test_pipelined_static_and_app_answers_keep_order(serve):
    server = serve(hello)
    client = server.open()
    client.send(request("GET", "/1") + request("POST", "/2", body=b"xyz") + request("GET", "/3"), [False] * 3)
    assert [r.body for r in client.parsed()] == [b"hi", b"hi", b"hi"]


def test_idle_keep_alive_connection_closes_when_the_clock_passes_the_timeout(site, serve):
    server = serve(site, keepalive_timeout=5.0)
    client = server.open()
    assert client.request("GET", "/a.txt").status == 200
    server.tick(4.9)
    assert not client.closed
    server.tick(0.2)
    assert client.closed and client.transport.data.endswith(b"first\n")  # closed quietly


def test_slow_head_gets_408_when_the_clock_passes_the_header_timeout(site, serve):
    server = serve(site, header_timeout=10.0)
    client = server.open()
    client.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n")
    server.tick(9.0)
    assert not client.closed and not client.transport.data
    server.tick(2.0)
    (response,) = parse_responses(bytes(client.transport.data))[0]
    assert response.status == 408 and response.header("connection") == "close"
    assert client.closed


def test_eof_after_pipelined_requests_answers_them_then_closes(site, serve):
    server = serve(site)
    client = server.open()
    client.send(request("GET", "/a.txt") + request("GET", "/b.txt"), [False, False])
    client.eof()
    assert [r.status for r in client.parsed()] == [200, 200]
    assert client.closed
