"""Connection rules in-process, with each request reader: keep-alive, the Connection field,
pipelined order, timeouts by moving the clock, bodies sent to static files, precompressed
siblings, a stopping worker's idle and busy connections. Bytes in, bytes out; no sockets
(but one socket pair, for bytes the kernel holds unread)."""
from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from typing import Iterator, Tuple

import pytest

from fastserve._speedups.protocol import HttpProtocol
from fastserve._speedups.requesthead import connection_option
from inprocess import RecordingTransport, parse_responses, request


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
    ("HTTP/1.1", "Close", False, "close"),
    ("HTTP/1.1", "keep-alive", True, None),
    ("HTTP/1.1", "close, x-other", False, "close"),   # a list: left to httptools
    ("HTTP/1.1", "Upgrade, close", False, "close"),
    ("HTTP/1.0", None, False, "close"),
    ("HTTP/1.0", "keep-alive", True, "keep-alive"),
    ("HTTP/1.0", "Keep-Alive, foo", True, "keep-alive"),
    ("HTTP/1.0", "close", False, "close"),
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


@pytest.mark.parametrize("face", ["static", "app"])
@pytest.mark.parametrize("version", ["1.1", "1.0"])
def test_keepalive_timeout_0_keeps_no_connection_and_says_so(site, serve, face, version):
    """--keepalive-timeout 0 (nginx's keepalive_timeout 0): each answer says Connection: close
    and the connection closes after it, where one promising keep-alive went out and the
    connection was cut at the next tick, as a client may be sending its next request on it."""
    server = serve(site if face == "static" else hello, keepalive_timeout=0.0)
    client = server.open()
    asked = [("Connection", "keep-alive")] if version == "1.0" else []
    client.send(request("GET", "/a.txt", asked).replace(b"HTTP/1.1", f"HTTP/{version}".encode(), 1))
    [response] = client.parsed()
    assert response.status == 200 and response.header("connection") == "close"
    assert client.closed


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


# -- heads read by either reader, handed from one to the other mid-stream (from
# test_server_request_heads.py) ------------------------------------------------------------------


@pytest.mark.parametrize("cut", [1, 2, 3, 4, 5, 12, 25, 30, -3, -2, -1])
def test_a_head_split_anywhere_is_answered_and_the_next_one_too(serve, docroot, cut):
    client = serve(docroot.root).open()
    etag = client.request("HEAD", "/small.txt").header("etag")
    first = request("GET", "/small.txt", [("If-None-Match", etag)])
    client.send(first[:cut])
    assert len(client.parsed()) == 1  # the HEAD's answer only: the rest of the head is awaited
    client.send(first[cut:] + request("GET", "/small.txt"), [False, False])
    assert [r.status for r in client.parsed()[1:]] == [304, 200]
    assert client.parsed()[-1].body == docroot.small
    assert client.request("GET", "/medium.bin").body == docroot.medium


def test_plain_and_unusual_heads_pipelined_are_answered_in_order(serve, docroot):
    client = serve(docroot.root).open()
    etag = client.request("HEAD", "/small.txt").header("etag")
    batch = b"".join([
        request("GET", "/small.txt"),
        request("GET", "/small.txt", [("X-Note", "caf\u00e9"), ("If-None-Match", etag)]),
        request("HEAD", "/medium.bin"),
        request("GET", "/small.txt", body=b"hello"),
        request("GET", "/small.txt", [("iF-nOnE-mAtCh", f" {etag} \t")]),
        request("DELETE", "/small.txt"),
        request("GET", "/medium.bin", [("RANGE", "bytes=10-19")]),
    ])
    client.send(batch, [False, False, True, False, False, False, False])
    plain, tagged, head, with_body, spaced, refused, ranged = client.parsed()[1:]
    assert (plain.status, plain.body) == (200, docroot.small)
    assert tagged.status == 304
    assert head.header("content-length") == str(len(docroot.medium)) and head.body == b""
    assert (with_body.status, with_body.body) == (200, docroot.small)
    assert spaced.status == 304
    assert (refused.status, refused.header("allow")) == (405, "GET, HEAD")
    assert (ranged.status, ranged.body) == (206, docroot.medium[10:20])
    assert bytes(client.transport.data).endswith(docroot.medium[10:20])  # nothing written after
    assert not client.closed


def test_a_malformed_head_after_plain_ones_gets_400_after_their_answers(serve, docroot):
    client = serve(docroot.root).open()
    client.send(request("GET", "/small.txt") * 2 + b"GET /small.txt HTTP/1.1\r\nHost : x\r\n\r\n")
    answers = client.parsed()
    assert [(r.status, r.body) for r in answers[:2]] == [(200, docroot.small)] * 2
    assert answers[2].status == 400 and answers[2].header("connection") == "close"
    assert client.closed


# -- request bodies sent to static files (from test_server_static_body.py) -------------------


def test_post_with_a_large_body_is_answered_before_the_body_is_sent(serve, docroot):
    """A static file takes no body: a large announced one gets 405 at once, unread, and the close."""
    client = serve(docroot.root).open()
    client.send(b"POST /small.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n")  # no body follows
    (response,) = client.parsed()
    assert response.status == 405 and response.header("allow") == "GET, HEAD"
    assert response.header("connection") == "close" and client.closed


def test_post_without_a_body_keeps_the_connection(serve, docroot):
    client = serve(docroot.root).open()
    client.send(request("POST", "/small.txt") + request("GET", "/small.txt"), [False, False])
    refused, served = client.parsed()
    assert refused.status == 405 and (served.status, served.body) == (200, docroot.small)
    assert not client.closed


# -- precompressed siblings (from test_server_precompressed.py) --------------------------------


@pytest.fixture
def compressed_site(tmp_path: Path):
    import gzip

    site = tmp_path / "compressed"
    site.mkdir()
    text = b"body { color: red; }\n" * 200
    (site / "style.css").write_bytes(text)
    (site / "style.css.gz").write_bytes(gzip.compress(text))
    (site / "plain.txt").write_text("no siblings")
    return site, text


def test_gzip_sibling_served_to_clients_that_accept_it(serve, compressed_site):
    import gzip

    site, text = compressed_site
    client = serve(site).open()
    compressed = client.request("GET", "/style.css", [("Accept-Encoding", "gzip")])
    assert compressed.header("content-encoding") == "gzip" and compressed.header("vary") == "Accept-Encoding"
    assert compressed.header("content-type") == "text/css; charset=utf-8"
    assert gzip.decompress(compressed.body) == text
    identity = client.request("GET", "/style.css", [("Accept-Encoding", "identity")])
    assert identity.header("content-encoding") is None and identity.header("vary") == "Accept-Encoding"
    assert identity.body == text
    refused = client.request("GET", "/style.css", [("Accept-Encoding", "gzip;q=0")])
    assert refused.header("content-encoding") is None
    assert refused.header("etag") != compressed.header("etag")
    etag = compressed.header("etag")
    not_modified = client.request("GET", "/style.css", [("Accept-Encoding", "gzip"), ("If-None-Match", etag)])
    assert not_modified.status == 304 and not_modified.header("vary") == "Accept-Encoding"
    plain = client.request("GET", "/plain.txt", [("Accept-Encoding", "gzip")])
    assert plain.header("vary") is None and plain.body == b"no siblings"


def test_no_precompressed_setting(serve, compressed_site):
    import gzip

    site, text = compressed_site
    response = serve(site, precompressed=False, compress="off").open().request(
        "GET", "/style.css", [("Accept-Encoding", "gzip")])
    assert response.header("content-encoding") is None and response.body == text
    # compressed on the fly instead of sent from the sibling
    response = serve(site, precompressed=False).open().request("GET", "/style.css", [("Accept-Encoding", "gzip")])
    assert response.header("content-encoding") == "gzip" and gzip.decompress(response.body) == text
    assert response.body != (site / "style.css.gz").read_bytes()


# -- file bodies from an app ----------------------------------------------------------------------


def test_pathsend_larger_than_one_turns_budget_is_sent_whole(serve, tmp_path):
    """A file the app sends with http.response.pathsend goes on past the sender's per-turn budget
    (8 MiB): the sender schedules its own continuation, whoever the connection's current job is."""
    path = tmp_path / "big.bin"
    body = bytes(range(256)) * (9 * 4096)  # 9 MiB
    path.write_bytes(body)

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.pathsend", "path": str(path)})

    client = serve(app).open()
    response = client.request("GET", "/big")
    assert response.status == 200 and len(response.body) == len(body) and response.body == body
    assert client.request("GET", "/again").status == 200  # and the connection goes on


async def echo_headers(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b"\n".join(name + b": " + value for name, value in scope["headers"])
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


def test_between_requests_a_connection_holds_no_request_head(site, serve):
    """An idle keep-alive connection gives its request head back to the worker at the next clock
    tick (thousands of quiet clients then hold none); the next request, on any connection, is
    read into it. A busy connection keeps its head from one request to the next."""
    from fastserve._speedups.requesthead import RequestHead
    import gc

    server = serve(site)
    first, second = server.open(), server.open()
    first.send(request("GET", "/a.txt", [("Accept-Encoding", "gzip")]), [False])
    second.send(request("GET", "/b.txt") + request("GET", "/a.txt"), [False, False])
    assert [r.status for r in first.parsed() + second.parsed()] == [200, 200, 200]
    server.tick(0.01)
    for client in (first, second):
        assert not any(isinstance(o, RequestHead) for o in gc.get_referents(client.conn))
        assert not client.closed


def test_a_head_given_back_carries_nothing_into_the_next_request(site, serve):
    """Validators, ranges and the version of one connection's request never reach the next
    request read into the same head, on another connection."""
    server = serve(site)
    first = server.open()
    etag = first.request("GET", "/a.txt").header("etag")
    assert first.request("GET", "/a.txt", [("If-None-Match", etag)]).status == 304
    assert first.request("GET", "/a.txt", [("Range", "bytes=0-1")]).status == 206
    assert first.request("GET", "/a.txt", [("If-Match", '"other"')]).status == 412
    second = server.open()
    plain = second.request("GET", "/a.txt")
    assert (plain.status, plain.body) == (200, b"first\n")
    # A 1.0 client kept alive, then a head that cannot be parsed on a new connection: the
    # refusal is an HTTP/1.1 one (it says it closes), not shaped by the 1.0 request before it.
    old = server.open()
    old.send(request("GET", "/a.txt", [("Connection", "keep-alive")], version="HTTP/1.0"), [False])
    assert old.parsed()[0].header("connection") == "keep-alive"
    bad = server.open()
    bad.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nBad Field: y\r\n\r\n", [False])
    (refused,) = bad.parsed()
    assert (refused.status, refused.header("connection")) == (400, "close") and bad.closed


def test_a_head_given_back_keeps_no_bytes_of_its_request(site, serve):
    """The worker's spare head is emptied when given back: a large field of the last request
    is not kept alive by it."""
    import tracemalloc

    server = serve(site)
    client = server.open()
    assert client.request("GET", "/a.txt").status == 200
    tag = '"' + "x" * 8000 + '"'
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        assert client.request("GET", "/a.txt", [("If-None-Match", tag)]).status == 200
        server.tick(0.01)  # the connection is idle: its head goes back to the worker
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 4000, held  # the answer kept by the test's transport; not the 8 kB field


def test_an_asgi_request_sees_only_its_own_fields(serve):
    server = serve(echo_headers)
    first, second = server.open(), server.open()
    first.send(request("GET", "/", [("X-First", "1")]), [False])
    assert b"x-first: 1" in first.wait_for(1)[0].body
    second.send(request("GET", "/", [("X-Second", "2")]), [False])
    body = second.wait_for(1)[0].body
    assert b"x-second: 2" in body and b"x-first" not in body


# -- a stopping worker: shutdown() ends keep-alive, close_idle() closes what is idle ------------


@pytest.mark.parametrize("target", ["site", "app"])
@pytest.mark.parametrize("used", [True, False], ids=["kept-alive", "fresh"])
def test_a_request_sent_after_shutdown_on_an_idle_connection_is_answered(serve, site: Path, target: str,
                                                                         used: bool) -> None:
    """The client's next request (or its first, on a connection just accepted) may be on its
    way when the worker stops: it is answered, as the connection's last."""
    server = serve(site if target == "site" else hello)
    client = server.open()
    if used:
        assert client.request("GET", "/a.txt").header("connection") is None
    server.state.shutdown()
    server.settle()
    assert not client.closed, "an idle connection was closed before the client could send its request"
    response = client.request("GET", "/a.txt")
    assert response.status == 200
    assert response.header("connection") == "close"
    assert client.closed
    assert not server.state.connections


def pausing_app(release: "asyncio.Event", head_first: bool):
    """An app that waits for ``release`` before its answer (after its head when ``head_first``)."""

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        start = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
        if head_first:
            await send(start)
        await release.wait()
        if not head_first:
            await send(start)
        await send({"type": "http.response.body", "body": b"ok"})

    return app


@pytest.mark.parametrize("head_first", [False, True], ids=["head-to-come", "head-sent"])
def test_an_answer_an_app_is_making_as_the_worker_stops_keeps_the_client_from_a_closed_socket(
        serve, head_first: bool) -> None:
    """The answer is the connection's last: its head says Connection: close and the connection
    closes after it. A head that promised keep-alive before the stop is kept to: the connection
    stays for the idle grace, and the request the client sends on it is answered (close)."""
    release = asyncio.Event()
    server = serve(pausing_app(release, head_first))
    client = server.open()
    client.send(request("GET", "/"), [False])
    server.settle()
    server.state.shutdown()
    release.set()
    [response] = client.wait_for(1)
    assert (response.status, response.body) == (200, b"ok")
    if not head_first:
        assert response.header("connection") == "close" and client.closed
        return
    assert response.header("connection") is None and not client.closed
    following = client.request("GET", "/")  # release is still set: the app answers at once
    assert (following.status, following.header("connection")) == (200, "close")
    assert client.closed and not server.state.connections


def test_close_idle_closes_idle_connections_and_leaves_busy_ones_to_finish(serve, site: Path) -> None:
    server = serve(site)
    idle, fresh, arriving = server.open(), server.open(), server.open()
    idle.request("GET", "/a.txt")
    arriving.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n")  # half a head
    server.state.shutdown()
    server.state.close_idle()
    server.settle()
    assert idle.closed and fresh.closed
    assert not arriving.closed
    arriving.send(b"\r\n")
    [response] = arriving.parsed()
    assert (response.status, response.header("connection")) == (200, "close")
    assert arriving.closed
    assert not server.state.connections


def test_a_connection_made_while_stopping_is_served_once_then_closed_when_idle(serve, site: Path) -> None:
    """A connection whose TLS handshake finishes after the stop began was accepted before it:
    its request is answered (the last); left idle, it is closed after the grace like the others."""
    server = serve(site)
    server.state.shutdown()
    late, silent = server.open(), server.open()
    response = late.request("GET", "/a.txt")
    assert (response.status, response.header("connection")) == (200, "close")
    assert late.closed
    server.state.close_idle(0.5)
    assert not silent.closed  # idle for no time yet
    server.state.now += 0.5
    server.state.close_idle(0.5)
    server.settle()
    assert silent.closed and not server.state.connections


class SocketTransport(RecordingTransport):
    """A recording transport that names a real socket, as uvloop's does."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock

    def get_extra_info(self, name: str):
        return self.sock if name == "socket" else super().get_extra_info(name)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True
        self.sock.shutdown(socket.SHUT_WR)


def connected(server, transport: SocketTransport) -> SocketTransport:
    """``transport`` with a connection of ``server`` made on it."""
    transport.protocol, transport.loop = HttpProtocol(server.state, server.loop), server.loop
    transport.protocol.connection_made(transport)
    return transport


def test_close_idle_keeps_a_connection_whose_request_waits_unread(serve, site: Path) -> None:
    """Bytes the kernel holds for a connection the loop has not read yet are a request on its way:
    closing would discard it, and the kernel would answer the client with a reset."""
    server = serve(site)
    pairs = [socket.socketpair() for _ in range(2)]
    try:
        transports = []
        for ours, _ in pairs:
            transport = connected(server, SocketTransport(ours))
            transports.append(transport)
        silent, waiting = transports
        pairs[1][1].sendall(request("GET", "/a.txt"))  # in the kernel, not yet read by the loop
        server.state.shutdown()
        server.state.close_idle()
        server.settle()
        assert silent.closed
        assert not waiting.closed, "closed with a request waiting unread"
        waiting.protocol.data_received(pairs[1][0].recv(65536))  # the loop's next read
        server.settle()
        answer = bytes(waiting.data) or pairs[1][1].recv(65536)  # written to the socket itself, unless buffered
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"\r\nConnection: close\r\n" in answer
        assert waiting.eof_written and pairs[1][1].recv(65536) == b""  # then the client closes
        assert waiting.protocol.eof_received() is False and not waiting.closed  # the transport closes itself
    finally:
        for pair in pairs:
            for sock in pair:
                sock.close()


def test_a_closing_connection_shuts_its_side_then_lingers_for_at_most_five_seconds(serve, site: Path) -> None:
    """After its last answer (Connection: close) the connection sends FIN, reads on and drops what
    the client still sends (closing with it unread would make the kernel reset the connection and
    the client lose the end of the answer), and closes at the client's close or 5 s later."""
    server = serve(site)
    ours, theirs = socket.socketpair()
    try:
        transport = connected(server, SocketTransport(ours))
        transport.protocol.data_received(request("GET", "/a.txt", [("Connection", "close")]))
        server.settle()
        answer = bytes(transport.data) or theirs.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nConnection: close\r\n" in answer
        assert transport.eof_written and theirs.recv(65536) == b"" and not transport.closed
        transport.protocol.data_received(request("GET", "/a.txt"))  # sent late: read and dropped
        server.settle()
        assert theirs.recv(65536, socket.MSG_DONTWAIT) == b""  # nothing more was answered
        now = server.state.now
        transport.protocol.check_timeouts(now + 4.9)
        assert not transport.closed
        transport.protocol.check_timeouts(now + 5.1)
        assert transport.closed
    finally:
        ours.close()
        theirs.close()


class HoldingTransport(SocketTransport):
    """A socket transport whose client takes none of what it was handed: it stays buffered, and
    ``close`` waits for it as uvloop's does (only ``abort`` ends the connection)."""

    def get_write_buffer_size(self) -> int:
        return len(self.data)

    def close(self) -> None:
        self.closing = True


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_closing_connection_whose_client_takes_nothing_is_dropped_at_the_send_timeout(
        serve, site: Path, tls: bool) -> None:
    """The last answer is still in the transport (the client stopped reading): the linger, and a
    TLS connection's close, wait for it to go out; a client that never takes it is dropped at
    --send-timeout, as during the answer, not held for ever by a transport waiting to drain."""
    server = serve(site)
    ours, theirs = socket.socketpair()
    try:
        transport = connected(server, HoldingTransport(ours))
        if tls:
            transport.protocol.sock_fd = -1  # as under TLS: every byte goes through the transport
        transport.protocol.pause_writing()  # the client is not reading
        now = server.state.now
        transport.protocol.data_received(request("GET", "/a.txt", [("Connection", "close")]))
        server.settle()
        assert bytes(transport.data).startswith(b"HTTP/1.1 200 OK\r\n")  # held by the transport
        assert (getattr(transport, "closing", False) if tls else transport.eof_written)
        timeout = server.state.send_timeout
        transport.protocol.check_timeouts(now + min(timeout, 5.0) + 0.5)
        assert not transport.aborted  # not the linger's 5 s: the answer is not out yet
        transport.protocol.check_timeouts(now + timeout + 0.5)
        assert transport.aborted
    finally:
        ours.close()
        theirs.close()


@contextlib.contextmanager
def over_a_small_socket(server) -> Iterator[Tuple[SocketTransport, socket.socket]]:
    """A connection of ``server`` on one end of a socket pair with a small send buffer (and not
    blocking, as the server's sockets): the other end reads exactly what the socket took."""
    ours, theirs = socket.socketpair()
    try:
        ours.setblocking(False)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
        yield connected(server, HoldingTransport(ours)), theirs
    finally:
        ours.close()
        theirs.close()


def drained(sock: socket.socket) -> int:
    """Read what ``sock`` holds now, without waiting; returns how many bytes that was."""
    sock.setblocking(False)
    taken = 0
    while True:
        try:
            taken += len(sock.recv(1 << 20))
        except BlockingIOError:
            return taken


@pytest.mark.parametrize("first", ["small.txt", "big.bin"], ids=["small-answers", "behind-a-file"])
def test_answers_a_client_cut_short_are_logged_with_the_bytes_the_socket_took(
        serve, site: Path, first: str) -> None:
    """nginx's $bytes_sent: answers from memory that the socket did not take before the client
    went away (held for it, or queued behind a file transfer) are logged with what it took, to
    the byte: a socket pair's far end reads exactly what the socket took."""
    (site / "small.txt").write_bytes(b"s" * 16000)  # answered from memory
    (site / "big.bin").write_bytes(b"b" * (1 << 20))  # sent with sendfile
    server = serve(site, access_log=True)
    with over_a_small_socket(server) as (transport, theirs):
        transport.protocol.data_received(request("GET", "/" + first) + request("GET", "/small.txt") * 20)
        server.settle()
        taken = drained(theirs)
        transport.protocol.connection_lost(ConnectionResetError())
        server.settle()
        lines = server.state.access_logger.pending
        assert len(lines) == 21 and lines[0][2] == b"/" + first.encode()
        assert sum(line[5] for line in lines) == taken
        assert lines[-1][5] == 0  # queued behind the cut: none of it was sent
        assert all(line[4] == 499 for line in lines if line[5] == 0)  # nginx's "client closed request"



def test_an_app_answer_a_client_cut_short_is_logged_with_the_bytes_the_socket_took(serve) -> None:
    """The same for an app's body from memory: what the socket did not take is sent by a
    sender that counts what leaves, so a client that goes away is logged with what it got."""
    body = b"x" * (1 << 20)

    async def big(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body[:1000], "more_body": True})
        await send({"type": "http.response.body", "body": body[1000:]})

    server = serve(big, access_log=True)
    with over_a_small_socket(server) as (transport, theirs):
        transport.protocol.data_received(request("GET", "/"))
        server.settle()
        taken = drained(theirs)
        transport.protocol.connection_lost(ConnectionResetError())
        server.settle()
        [line] = server.state.access_logger.pending
        assert line[4] == 200 and line[5] == taken < len(body)


def test_a_large_answer_from_memory_waits_on_the_socket_not_as_a_copy_in_the_transport(serve, site: Path) -> None:
    """What the socket does not take of a large answer from memory is sent from the answer itself
    as the socket has room, not copied into the transport: 20 clients of a 20 MB cached file that
    did not read held a copy each (34 -> 405 MB); none is made now."""
    body = bytes(range(256)) * 4096  # 1 MiB
    (site / "huge.bin").write_bytes(body)
    server = serve(site, cache_max_file=2 << 20)
    with over_a_small_socket(server) as (transport, theirs):
        transport.protocol.data_received(request("GET", "/huge.bin"))
        server.settle()
        assert bytes(transport.data) == b""  # nothing handed to the transport: no copy held
        theirs.setblocking(False)
        received = bytearray()
        for _ in range(10000):
            try:
                received += theirs.recv(1 << 20)
            except BlockingIOError:  # the socket has room again: the sender goes on
                server.loop.run_until_complete(asyncio.sleep(0.001))
            if received.endswith(body[-1024:]):
                break
        assert bytes(received).split(b"\r\n\r\n", 1)[1] == body and bytes(transport.data) == b""

