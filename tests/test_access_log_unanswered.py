"""Requests whose connection ends before any byte of their answer left are logged (and counted)
once, as nginx logs them: status 499 ("client closed request"), 0 bytes, on both faces: an app
still working, a response begun but not sent, requests waiting their turn behind it, a static
request whose body was still arriving, a WebSocket handshake the app had not answered.
In-process: bytes in, the client's reset as ``connection_lost``."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import List, Tuple

import pytest

from inprocess import request

WEBSOCKET_HANDSHAKE = request("GET", "/ws", [
    ("Upgrade", "websocket"), ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13"),
])


def make_app(stalled: asyncio.Event):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return
        if scope["type"] == "websocket":
            await stalled.wait()
            return
        if scope["path"] == "/begun":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        if scope["path"] != "/quick":
            await stalled.wait()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
    return app


def logged(server) -> List[Tuple[bytes, int, int]]:
    """(target, status, bytes) of each access-log line written so far."""
    return [(line[2], line[4], line[5]) for line in server.state.access_logger.pending]


def reset(server, client, stalled: asyncio.Event = None) -> None:
    """The client resets; then the app's wait ends (its line is written when it returns, as
    nginx writes one when the request ends)."""
    client.conn.connection_lost(ConnectionResetError())
    server.settle()
    if stalled is not None:
        stalled.set()
        server.settle()


@pytest.mark.parametrize("sent, expected", [
    (request("GET", "/stall"), [(b"/stall", 499, 0)]),
    (request("GET", "/begun"), [(b"/begun", 499, 0)]),  # its head waits for the first body piece
    (request("GET", "/quick") + request("GET", "/stall") + request("GET", "/behind") + request("POST", "/too", body=b"x"),
     [(b"/quick", 200, 0), (b"/behind", 499, 0), (b"/too", 499, 0), (b"/stall", 499, 0)]),
    (request("POST", "/upload", [("Content-Length", "100")])[:-2] + b"\r\n\r\npart", [(b"/upload", 499, 0)]),
    (WEBSOCKET_HANDSHAKE, [(b"/ws", 499, 0)]),
], ids=["app-working", "response-begun", "pipelined-behind", "body-arriving", "websocket-handshake"])
def test_an_app_request_cut_before_its_answer_is_logged_499(serve, sent, expected) -> None:
    """Such a request used to leave no line at all (its status was 0, and 0 was not logged)."""
    stalled = asyncio.Event()
    server = serve(make_app(stalled), access_log=True)
    client = server.open()
    client.transport.is_reading = lambda: client.transport.reading  # a WebSocket session asks
    client.send(sent)
    reset(server, client, stalled)
    lines = logged(server)
    if expected[0][0] == b"/quick":  # it was answered: its bytes are what the transport took
        assert lines[0][:2] == (b"/quick", 200) and lines[0][2] > 0
        lines, expected = lines[1:], expected[1:]
    assert sorted(lines) == sorted(expected)


def test_a_static_request_cut_before_its_answer_is_logged_499(serve, tmp_path: Path) -> None:
    """The static face, the same: a request whose body was still arriving when the client reset
    used to leave no line (a half-close there is answered 400, and logged so)."""
    (tmp_path / "a.txt").write_bytes(b"a\n")
    server = serve(tmp_path, access_log=True)
    client = server.open()
    client.send(request("GET", "/a.txt", [("Content-Length", "100")])[:-2] + b"\r\n\r\npart")
    reset(server, client)
    assert logged(server) == [(b"/a.txt", 499, 0)]
    client = server.open()
    client.send(request("GET", "/a.txt", [("Content-Length", "100")])[:-2] + b"\r\n\r\npart")
    client.eof()
    [(target, status, sent)] = logged(server)[1:]
    assert (target, status) == (b"/a.txt", 400) and sent > 0


def test_unanswered_requests_are_counted_as_4xx_in_the_metrics(serve) -> None:
    pytest.importorskip("prometheus_client")
    stalled = asyncio.Event()
    server = serve(make_app(stalled), access_log=True, metrics=True)
    client = server.open()
    client.send(request("GET", "/stall") + request("GET", "/behind"))
    reset(server, client, stalled)
    exposition = server.state.admin.metrics.exposition().decode()
    assert 'fastserve_requests_total{method="GET",status="4xx"} 2.0' in exposition, exposition


def test_the_duration_of_a_request_never_answered(serve, tmp_path: Path) -> None:
    """What README says of ``duration_us`` for a 499: next to nothing for a static request that
    never came to be answered (nothing was done for it), and for an app's request waiting its turn, the time
    from its head to the client going away."""
    (tmp_path / "a.txt").write_bytes(b"a\n")
    server = serve(tmp_path, access_log=True)
    client = server.open()
    client.send(request("GET", "/a.txt", [("Content-Length", "100")])[:-2] + b"\r\n\r\npart")
    time.sleep(0.05)
    reset(server, client)
    [line] = server.state.access_logger.pending
    assert (line[2], line[4]) == (b"/a.txt", 499) and line[6] < 0.001, line  # not the 0.05 s it waited

    stalled = asyncio.Event()
    server = serve(make_app(stalled), access_log=True)
    client = server.open()
    client.send(request("GET", "/stall") + request("GET", "/behind"))
    time.sleep(0.05)
    reset(server, client, stalled)
    seconds = {line[2]: line[6] for line in server.state.access_logger.pending}
    assert seconds[b"/behind"] >= 0.05, seconds
