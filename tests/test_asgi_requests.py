"""The ASGI bridge's protocol rules in-process, on both request readers: a Starlette app (the one
``test_server_asgi.py`` serves over a real port) run by a connection on a recording transport.
Bodies, pipelining, HTTP/1.0, Expect, limits, proxy headers and failing apps; what the kernel
decides (pathsend and zerocopysend by sendfile, a body arriving in pieces) stays there."""
import json
import textwrap

import pytest

from bridge_app import APP
from inprocess import parse_responses, request
from server_helpers import echo_body



@pytest.fixture(scope="module")
def app(tmp_path_factory):
    static = tmp_path_factory.mktemp("asgi-static")
    (static / "a.txt").write_text("static a")
    (static / "big.bin").write_bytes(bytes(range(256)) * 64)
    namespace = {"STATIC": str(static)}
    exec(compile(textwrap.dedent(APP), "asgi_test_app.py", "exec"), namespace)
    return namespace["app"]


@pytest.fixture
def server(serve, app):
    return serve(app, max_body_size=1_000_000)


def exchange(server, raw: bytes, eof: bool = True) -> bytes:
    """What one connection is sent back for ``raw`` (followed by the client's FIN unless ``eof`` is false)."""
    client = server.open()
    client.send(raw)
    if eof:
        client.eof()
    return bytes(client.transport.data)


def test_get_and_post(server):
    client = server.open()
    assert client.request("GET", "/echo?q=1").body == b"GET /echo 0 1"
    assert client.request("POST", "/echo", body=b"x" * 100).body == b"POST /echo 100 None"
    assert client.request("GET", "/echo").header("server") == "fastserve"


def test_streaming_response_is_chunked(server):
    response = server.open().request("GET", "/stream")
    assert response.header("transfer-encoding") == "chunked"
    assert response.body == b"part0;part1;part2;"


def test_chunked_request_body(server):
    data = exchange(
        server,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    assert data.startswith(b"HTTP/1.1 200 ")
    assert data.endswith(b"POST /echo 8 None")


def test_app_exception_is_500_and_the_connection_keeps_working(server):
    client = server.open()
    assert client.request("GET", "/boom").status == 500
    assert client.request("GET", "/echo").status == 200


def test_body_too_large_is_413_and_close(server):
    client = server.open()
    client.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000001\r\n\r\n" + b"x" * 100)
    data = bytes(client.transport.data)
    assert data.startswith(b"HTTP/1.1 413 ")
    assert b"Connection: close" in data and client.closed
    client = server.open()
    client.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                + (b"10000\r\n" + b"y" * 65536 + b"\r\n") * 16)
    assert bytes(client.transport.data).startswith(b"HTTP/1.1 413 ") and client.closed


def test_http10_without_length_closes_to_end_the_body(server):
    client = server.open()
    client.send(b"GET /raw/ HTTP/1.0\r\n\r\n")
    head, _, body = bytes(client.transport.data).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"connection: close" in head.lower()
    assert body == b"no length" and client.closed


def test_pipelined_requests_are_answered_in_order(server):
    requests = b"".join(
        b"GET /echo?q=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i if i % 2 else b"GET /static/a.txt HTTP/1.1\r\nHost: x\r\n\r\n"
        for i in range(10)
    )
    client = server.open()
    client.send(requests + b"GET /echo?q=last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    responses = client.wait_for(11)  # StaticFiles checks its directory in a worker thread once
    assert len(responses) == 11
    for i, response in enumerate(responses[:10]):
        expected = b"GET /echo 0 %d" % i if i % 2 else b"static a"
        assert (response.status, response.body) == (200, expected), i
    assert responses[10].body == b"GET /echo 0 last" and client.closed


def _scope_of(server, head: bytes) -> dict:
    response = server.open().send(head).parsed()[0]
    assert response.status == 200, response
    return json.loads(response.body)


def test_plain_and_unusual_heads_give_the_app_the_same_scope(server):
    # The first head is read by fastserve's scanner (when it reads heads); the obs-text header
    # sends the second to httptools.
    plain = b"GET /scope/a%20b?x=1&y HTTP/1.1\r\nHost: x\r\nX-Mixed-Case:\t v 1 \r\nx-mixed-case: v2\r\nAccept: */*\r\n"
    scanned = _scope_of(server, plain + b"\r\n")
    parsed = _scope_of(server, plain + b"X-Note: caf\xc3\xa9\r\n\r\n")
    assert scanned["headers"] == [["host", "x"], ["x-mixed-case", "v 1"], ["x-mixed-case", "v2"], ["accept", "*/*"]]
    assert parsed["headers"][:4] == scanned["headers"]
    assert parsed["headers"][4] == ["x-note", "caf\u00c3\u00a9"]
    for key in ("method", "path", "raw_path", "query_string", "http_version", "body", "more_body"):
        assert scanned[key] == parsed[key], key
    assert (scanned["raw_path"], scanned["query_string"], scanned["body"], scanned["more_body"]) == (
        "/scope/a%20b", "x=1&y", "", False)


def test_plain_http10_and_head_requests_reach_the_app(server):
    client = server.open()
    for count in (1, 2):  # kept alive: the same connection answers twice
        client.send(b"GET /scope/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        responses = client.parsed()
        assert len(responses) == count and not client.closed
        assert json.loads(responses[-1].body)["http_version"] == "1.0"
        assert responses[-1].header("connection") == "keep-alive"
    head = exchange(server, b"HEAD /echo?q=h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", eof=False)
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")  # headers only


def test_plain_and_unusual_heads_pipelined_to_an_app(server):
    requests = (
        b"GET /echo?q=1 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /echo?q=3 HTTP/1.1\r\nHost: x\r\nX: \xff\r\n\r\n"
        b"GET /static/a.txt HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /echo?q=5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    responses = server.open().send(requests).wait_for(5)
    expected = [b"GET /echo 0 1", b"POST /echo 3 None", b"GET /echo 0 3", b"static a", b"GET /echo 0 5"]
    assert [(r.status, r.body) for r in responses] == [(200, body) for body in expected]


def test_static_files_mounted_in_the_app(server):
    client = server.open()
    client.send(request("GET", "/static/a.txt") + request("GET", "/static/missing"))
    found, missing = client.wait_for(2)
    assert (found.body, missing.status) == (b"static a", 404)


def test_expect_100_continue(server):
    client = server.open()
    client.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    assert bytes(client.transport.data) == b"HTTP/1.1 100 Continue\r\n\r\n"
    client.send(b"hello")
    response = bytes(client.transport.data)[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
    assert response.startswith(b"HTTP/1.1 200 ") and response.endswith(b"1 5")


def test_expect_100_continue_from_an_http10_client_is_ignored(server):
    # RFC 9110 section 10.1.1: the expectation is ignored; section 15.2: no 1xx to an HTTP/1.0 client.
    client = server.open()
    client.send(b"POST /upload HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    assert bytes(client.transport.data) == b""  # the app waits for the body, which the client sends
    client.send(b"hello")
    assert bytes(client.transport.data).startswith(b"HTTP/1.1 200 ") and b"100 Continue" not in bytes(client.transport.data)


def test_expect_100_continue_refused_without_reading(server):
    # The app answers without asking for the body: no 100, and the connection ends after the
    # answer, which says so (RFC 9110 section 10.1.1: the client may still hold the body back).
    client = server.open()
    client.send(b"POST /raw/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    (response,), _ = parse_responses(bytes(client.transport.data))
    assert response.status == 200 and b"100 Continue" not in bytes(client.transport.data)
    assert response.header("connection") == "close" and client.closed


def test_oversized_body_behind_another_request_is_413_in_turn(server):
    client = server.open()
    client.send(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n" + b"z" * 1000)
    first, refused = parse_responses(bytes(client.transport.data))[0]
    assert (first.status, first.body) == (200, b"GET /echo 0 None")
    assert refused.status == 413 and client.closed


def test_proxy_headers_from_a_trusted_address(server):
    client = server.open()  # the recording transport's peer is 127.0.0.1, trusted by default
    forwarded = [("x-forwarded-for", "203.0.113.9"), ("x-forwarded-proto", "https")]
    assert client.request("GET", "/whoami", forwarded).body == b"203.0.113.9 https"
    assert client.request("GET", "/whoami").body == b"127.0.0.1 http"


def test_proxy_headers_from_an_untrusted_address_are_ignored(serve, app):
    client = serve(app, forwarded_allow_ips="10.9.9.9").open()
    forwarded = [("x-forwarded-for", "203.0.113.9"), ("x-forwarded-proto", "https")]
    assert client.request("GET", "/whoami", forwarded).body == b"127.0.0.1 http"


def test_ipv6_client_and_server_are_host_port_pairs(serve):
    """ASGI's client and server are [host, port] (uvicorn's too); an IPv6 socket's address has
    four items, and Starlette's ``request.client`` (``Address(*client)``) raised on them."""
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse

    async def app(scope, receive, send):
        request = Request(scope, receive)
        text = f"{request.client.host} {request.client.port} {scope['server']}"
        await PlainTextResponse(text)(scope, receive, send)

    client = serve(app).open()
    addresses = {"peername": ("::1", 40000, 0, 0), "sockname": ("::1", 8000, 0, 0)}
    client.transport.get_extra_info = addresses.get
    assert client.request("GET", "/").body == b"::1 40000 ('::1', 8000)"


def test_app_that_never_reads_the_body_keeps_the_connection_usable(server):
    body = b"b" * 300_000
    client = server.open()
    client.send(b"POST /raw/ HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    client.send(b"GET /echo?q=after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    responses = client.parsed()
    assert [r.status for r in responses] == [200, 200]
    assert responses[-1].body == b"GET /echo 0 after"


def test_app_that_never_responds_does_not_block_others(server):
    stuck = server.open()
    stuck.send(request("GET", "/hang/"))
    other = server.open()
    for _ in range(5):
        assert other.request("GET", "/echo").status == 200
    stuck.eof()
    assert server.open().request("GET", "/echo").status == 200


@pytest.mark.parametrize("query, version, body, reset", [
    ("", "HTTP/1.1", b"x" * 10, False),  # short of the promised 100
    ("unsized", "HTTP/1.1", b"a\r\n" + b"x" * 10 + b"\r\n", False),  # no last chunk
    ("unsized", "HTTP/1.0", b"x" * 10, True),  # the close would read as its end
    ("unsized&returns", "HTTP/1.1", b"a\r\n" + b"x" * 10 + b"\r\n", False),  # returned, not raised
    ("unsized&returns", "HTTP/1.0", b"x" * 10, True),
], ids=["content-length", "chunked", "close-delimited", "chunked returned", "close-delimited returned"])
def test_app_that_raises_after_starting_cuts_the_connection(server, query, version, body, reset):
    """A response the app broke off (raising, or returning before its last body message)
    closes its connection after what the app sent: with a FIN where the framing shows the body
    cut short, as uvicorn and nginx close it (the client keeps every byte sent, and reads the
    message as incomplete); with a reset where only the close would end the body."""
    client = server.open()
    client.send(request("GET", "/half/?" + query, version=version))
    head, _, sent = bytes(client.transport.data).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and sent == body
    assert client.closed and client.transport.aborted == reset
    assert server.open().request("GET", "/echo").status == 200


def test_the_apps_task_factory_makes_each_exchanges_task(serve):
    """Without a task factory each exchange's task is made directly, all with one name; an app
    that installs one (in its lifespan, say) gets every exchange's task from it, named the same
    (a stopping worker finds the requests it cancels by that name)."""
    import asyncio

    async def name_of_task(scope, receive, send):
        task = asyncio.current_task()
        said = b"%s %d" % (task.get_name().encode(), id(task))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(said))]})
        await send({"type": "http.response.body", "body": said})

    server = serve(name_of_task)
    client = server.open()
    client.send(request("GET", "/") + request("GET", "/"))
    assert [r.body.split()[0] for r in client.wait_for(2)] == [b"fastserve-http"] * 2
    made = []

    def factory(loop, coro, **kwargs):
        task = asyncio.Task(coro, loop=loop, **kwargs)
        if coro.__name__ == "run":  # an exchange's (the test's own loop turns make tasks too)
            made.append(task)
        return task

    server.loop.set_task_factory(factory)
    client.send(request("GET", "/") + request("GET", "/"))
    responses = client.wait_for(4)
    assert len(made) == 2
    assert [r.body.decode() for r in responses[2:]] == [f"fastserve-http {id(task)}" for task in made]


def echoing_app(seen: list):
    """server_helpers.echo_body, each message it receives recorded by its type in ``seen``."""
    async def app(scope, receive, send):
        async def recorded():
            message = await receive()
            seen.append(message["type"])
            return message
        await echo_body(scope, recorded, send)
    return app


UPGRADES = [
    ("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"), ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
]
NEXT = b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize("pieces", [1, 3, 200])
def test_a_request_whose_upgrade_is_not_taken_keeps_its_body(serve, pieces):
    """RFC 9110 section 7.8: a server may ignore an Upgrade and answer in HTTP/1.1, and the
    request is then the one it was, body included. httptools reads nothing past the head of a
    request that asks to switch protocols, so the app of an h2c upgrade on a POST (curl
    --http2 to an http:// URL) was told its body was empty; the connection still closes after
    the answer (what follows the head may have been meant for the new protocol)."""
    seen: list = []
    client = serve(echoing_app(seen)).open()
    body = bytes(range(256)) * 40
    raw = request("POST", "/", UPGRADES, body) + NEXT
    step = -(-len(raw) // pieces)
    for at in range(0, len(raw), step):
        client.send(raw[at:at + step])
    (response,) = client.parsed()
    assert (response.status, response.body) == (200, body)
    assert response.header("connection") == "close" and client.closed


def test_a_chunked_body_of_a_request_whose_upgrade_is_not_taken_is_read(serve):
    seen: list = []
    client = serve(echoing_app(seen)).open()
    head = b"POST / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: foo\r\nTransfer-Encoding: chunked\r\n\r\n"
    client.send(head + b"3\r\nabc\r\n")
    client.send(b"2;ext=1\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n" + NEXT)
    (response,) = client.parsed()
    assert (response.status, response.body) == (200, b"abcde") and client.closed


def test_the_body_of_a_request_whose_upgrade_is_not_taken_is_held_to_the_limits(serve):
    seen: list = []
    client = serve(echoing_app(seen), max_body_size=100).open()
    client.send(request("POST", "/", UPGRADES, b"x" * 101))
    (response,) = client.parsed()
    assert response.status == 413 and client.closed
    # Cut off by the client's FIN: the app has what came, then hears of it, as of any body.
    seen.clear()
    client = serve(echoing_app(seen)).open()
    client.send(request("POST", "/", [("Content-Length", "10"), ("Connection", "upgrade"), ("Upgrade", "foo")]) + b"abc")
    client.eof()
    assert seen == ["http.request", "http.disconnect"]
    assert [r.status for r in client.parsed()] == [400] and client.closed


def test_a_stalled_body_of_a_request_whose_upgrade_is_not_taken_times_out(serve):
    seen: list = []
    server = serve(echoing_app(seen), body_timeout=5)
    client = server.open()
    client.send(request("POST", "/", [("Content-Length", "10"), ("Connection", "upgrade"), ("Upgrade", "foo")]) + b"abc")
    server.tick(6)
    server.settle()
    assert seen == ["http.request", "http.disconnect"]
    assert [r.status for r in client.parsed()] == [408] and client.closed
