"""Requests at the edges of HTTP/1.1 framing, found by attacking a running server, each answered
as RFC 9110/9112 say, in-process with both request readers (bytes in, bytes out):

* ``Expect: 100-continue`` to a static root: a GET or HEAD whose body the client holds back gets
  ``100 (Continue)`` and then its answer (one without a body, its answer alone); another method
  ``405`` at once, unread;
* a request line of another major version (``HTTP/2.0``, ``HTTP/3.0``, ``HTTP/0.9``): ``505`` + close;
* a request line without an HTTP-version (HTTP/0.9's ``GET /path``), one broken by a CR or LF
  before it, or a method that is no token: ``400`` + close as soon as the bytes say so, never a
  wait for more; a method token the server does not recognise: ``501`` + close (RFC 9110 §9.1),
  once its request line has ended well; a known method a static file does not allow stays ``405``;
* a transfer coding other than ``chunked``: ``501`` + close (``400`` when chunked is not last),
  before any app starts; HTTP/1.0 with ``Transfer-Encoding``: answered, then closed;
* a body sent to a static root must arrive within ``--header-timeout``, however slowly it trickles.
* a WebSocket handshake with a body: ``400`` + close; an HTTP/1.0 request's ``Upgrade`` is
  ignored (RFC 9110 §7.8): the app answers it as plain HTTP;
* a file asked for with a trailing slash (``/a.txt/``): ``404`` from the server, as nginx answers;
* a HEAD request the connection refuses (no Host, a target it cannot read, two lengths, another
  version, a coding, a body too large) gets the refusal's head without its text (RFC 9110
  §9.3.2), as nginx answers it; a GET refused after a HEAD on the same connection keeps its text;
* a static field sent on several lines is one value, its lines joined with ", " (RFC 9110 §5.3):
  a list field (If-None-Match, If-Match, Accept-Encoding) holds every member, a repeated
  singleton (If-Modified-Since, Range, If-Range) is invalid and ignored, on the fast path and in
  ``StaticFiles`` alike.
"""
from __future__ import annotations

from typing import Any, List

import pytest

from inprocess import parse_responses

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Recorder:
    """An ASGI app that reads the body and answers 200 with its length; counts its calls."""

    def __init__(self) -> None:
        self.calls: List[str] = []

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.calls.append(scope["method"])
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        text = b"%d" % len(body)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % len(text))]})
        await send({"type": "http.response.body", "body": text})


def statuses(data: bytes) -> List[int]:
    responses, rest = parse_responses(data)
    assert not rest, rest
    return [response.status for response in responses]


# -- Expect: 100-continue to a static root ---------------------------------------------------

EXPECTING = [
    b"Content-Length: 5\r\n",
    b"Transfer-Encoding: chunked\r\n",
]
BODIES = {EXPECTING[0]: b"hello", EXPECTING[1]: b"5\r\nhello\r\n0\r\n\r\n"}


@pytest.mark.parametrize("framing", EXPECTING)
def test_a_static_get_expecting_100_gets_it_then_its_answer(site, serve, framing):
    client = serve(site).open()
    client.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n" + framing + b"\r\n")
    assert bytes(client.transport.data) == CONTINUE and not client.closed  # the client may now send
    client.send(BODIES[framing] + b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    responses = client.parsed()
    assert [r.status for r in responses] == [100, 200, 200]
    assert responses[1].body == b"first\n" and not client.closed


def test_the_100_takes_its_place_after_the_answers_before_it(site, serve):
    client = serve(site).open()
    client.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n"
                b"HEAD /a.txt HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n",
                [False, False, True])
    assert [r.status for r in client.parsed()] == [200, 100]
    client.send(b"abc")
    assert [r.status for r in client.parsed()] == [200, 100, 200]


def test_no_100_when_the_body_came_with_the_head_or_the_client_speaks_http10(site, serve):
    client = serve(site).open()
    client.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello")
    assert [r.status for r in client.parsed()] == [200]
    old = serve(site).open()
    old.send(b"GET /a.txt HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    assert bytes(old.transport.data) == b""  # RFC 9110 section 10.1.1: no 100 to HTTP/1.0
    old.send(b"hello")
    assert [r.status for r in old.parsed()] == [200]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_static_get_or_heads_large_body_is_read_and_dropped(site, serve, method):
    """Past the 64 KiB an other method's body may have: a GET or HEAD is answered once its
    body is in (up to --max-body-size), and the connection goes on; a POST that declares as
    much is 405 and a close at once, its body never read."""
    client = serve(site).open()
    client.send(f"{method} /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".encode()
                + b"a" * 60_000, [method == "HEAD"])
    assert client.parsed() == [] and not client.closed
    client.send(b"a" * 40_000 + b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [r.status for r in client.parsed()] == [200, 200] and not client.closed
    refused = serve(site).open()
    refused.send(b"POST /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
    assert [r.status for r in refused.parsed()] == [405] and refused.closed


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_no_100_for_a_request_without_a_body(site, serve, method):
    """Nothing to hold back: the answer alone, at once (RFC 9110 section 10.1.1)."""
    client = serve(site).open()
    client.send(f"{method} /a.txt HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n".encode(), [method == "HEAD"])
    assert [r.status for r in client.parsed()] == [200] and not client.closed


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_another_method_expecting_100_is_405_at_once_and_the_body_never_read(site, serve, method):
    client = serve(site).open()
    client.send(f"{method} /a.txt HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n".encode()
                + b"Content-Length: 5\r\n\r\n")
    (response,) = client.parsed()
    assert response.status == 405 and response.header("allow") == "GET, HEAD"
    assert response.header("connection") == "close" and client.closed


# -- HTTP versions -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/0.9", b"HTTP/3.0", b"HTTP/9.1", b"HTTP/0.1", b"HTTP/2.1"])
@pytest.mark.parametrize("face", ["static", "asgi"])
def test_another_major_version_is_505(site, serve, version, face):
    app = Recorder()
    client = serve(site if face == "static" else app).open()
    client.send(b"GET /a.txt " + version + b"\r\nHost: x\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    (response,) = client.parsed()
    assert response.status == 505 and response.header("connection") == "close"
    assert client.closed and app.calls == []


class VersionApp(Recorder):
    """Answers with the scope's http_version as the body."""

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.calls.append(scope["http_version"])
        while (await receive()).get("more_body"):
            pass
        body = scope["http_version"].encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize("version", [b"HTTP/1.2", b"HTTP/1.5", b"HTTP/1.9"])
@pytest.mark.parametrize("face", ["static", "asgi"])
@pytest.mark.parametrize("method", [b"GET", b"POST"])
def test_a_higher_http1_minor_version_is_served_as_http11(site, serve, version, face, method):
    """RFC 9112 section 2.3: a request of a higher minor version than the server's is served
    as HTTP/1.1 (it was 400): kept alive by default, Host required, ``http_version`` 1.1 in
    the scope; nginx answers it so. Through the scanner (GET) and httptools (POST) alike."""
    app = VersionApp()
    server = serve(site if face == "static" else app)
    client = server.open()
    framing = b"\r\n" if method == b"GET" else b"Content-Length: 2\r\n\r\nhi"
    client.send(method + b" /a.txt " + version + b"\r\nHost: x\r\n" + framing + b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    first, second = client.parsed()
    assert first.version == "HTTP/1.1" and second.status == 200 and not client.closed
    if face == "static":
        assert (first.status, first.body if method == b"GET" else b"first\n") == (
            200 if method == b"GET" else 405, b"first\n")
    else:
        assert (first.status, first.body, app.calls) == (200, b"1.1", ["1.1", "1.1"])
    closing = server.open()
    closing.send(b"GET /a.txt " + version + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert [r.status for r in closing.parsed()] == [200] and closing.closed
    hostless = server.open()
    hostless.send(b"GET /a.txt " + version + b"\r\n\r\n")  # HTTP/1.1's rule: exactly one Host
    assert [r.status for r in hostless.parsed()] == [400] and hostless.closed


@pytest.mark.parametrize("face", ["static", "asgi"])
@pytest.mark.parametrize("bytewise", [False, True])
def test_the_http2_connection_preface_is_505_at_once(site, serve, face, bytewise):
    """``PRI * HTTP/2.0`` begins HTTP/2's connection preface (RFC 9113 section 3.4), which
    httptools holds until its ``SM`` line: its head is refused as the version it names, at its
    empty line, once; the preface's last line was read as a request of its own (400)."""
    app = Recorder()
    client = serve(site if face == "static" else app).open()
    send_in_pieces(client, b"PRI * HTTP/2.0\r\n\r\n", bytewise)
    assert [r.status for r in client.parsed()] == [505] and client.closed and app.calls == []
    whole = serve(site if face == "static" else app).open()
    whole.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00")
    assert [r.status for r in whole.parsed()] == [505] and whole.closed


@pytest.mark.parametrize("version", [b"HTTP/1.10", b"HTTP/10.1", b"HTTP/01.1", b"HTTP/1.", b"HTTP/1.x"])
def test_an_http_version_of_another_shape_stays_400(site, serve, version):
    """RFC 9112 section 2.3: HTTP-version is "HTTP/" DIGIT "." DIGIT; nginx serves HTTP/1.10
    and answers HTTP/10.1 505, the grammar says neither is a version."""
    client = serve(site).open()
    client.send(b"GET /a.txt " + version + b"\r\nHost: x\r\n\r\n")
    assert [r.status for r in client.parsed()] == [400] and client.closed


# -- a refusal of a HEAD request -----------------------------------------------------------------

# (what follows "HEAD /a.txt", the status): refusals made once the request's method is read
HEAD_REFUSALS = [
    (b" HTTP/1.1\r\n\r\n", 400),                                                   # no Host
    (b"\xc3\xbc HTTP/1.1\r\nHost: x\r\n\r\n", 400),                                   # raw UTF-8 in the target
    (b" HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    (b" HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    (b" HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    (b" HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n\r\n" + b"x" * 99, 413),
    (b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n63\r\n" + b"x" * 99 + b"\r\n0\r\n\r\n", 413),
    # past the limit only with its second chunk: an app is already reading it
    (b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1e\r\n" + b"x" * 30 + b"\r\n1e\r\n" + b"x" * 30
     + b"\r\n0\r\n\r\n", 413),
]


def _answer_bytes(client: Any, before: int) -> bytes:
    return bytes(client.transport.data[before:])


@pytest.mark.parametrize("rest, status", HEAD_REFUSALS, ids=[
    "no-host", "non-ascii-target", "two-hosts", "two-lengths", "http2", "gzip-chunked", "gzip", "length-over", "chunk-over",
    "second-chunk-over"])
@pytest.mark.parametrize("face", ["static", "asgi"])
@pytest.mark.parametrize("after_head", [False, True])
def test_a_refused_head_request_gets_no_content(site, serve, rest, status, face, after_head):
    """The refusal's text went out after its head whatever the method: a HEAD's answer carries
    none (RFC 9110 section 9.3.2; nginx sends none). The same refusal of a GET keeps its text,
    after a HEAD answered on the same connection too (whose method is not the GET's)."""
    app = Recorder()
    server = serve(site if face == "static" else app, max_body_size=50)
    for method in (b"HEAD", b"GET"):
        client = server.open()
        if after_head:
            client.send(b"HEAD /a.txt HTTP/1.1\r\nHost: x\r\nX-First: 1\r\n\r\n")
            server.run_until(lambda: len(client.transport.data) > 0)
        before = len(client.transport.data)
        client.send(method + b" /a.txt" + rest)
        server.run_until(lambda: client.closed)
        head, _, content = _answer_bytes(client, before).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 %d " % status), (method, head)
        length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))[15:])
        assert length > 0 and content == (b"" if method == b"HEAD" else content[:length]) and (
            method == b"HEAD" or len(content) == length), (method, head, content)


# -- request lines and methods -------------------------------------------------------------------


def send_in_pieces(client: Any, data: bytes, bytewise: bool) -> None:
    for piece in ([data[i:i + 1] for i in range(len(data))] if bytewise else [data]):
        client.send(piece)


@pytest.mark.parametrize("line", [
    b"GET /a.txt\r\n",                        # HTTP/0.9: nothing else comes
    b"GET /a.txt\r\n\r\n",
    b"GET /a.txt\n",
    b"GET /a.txt\r\nHost: x\r\n\r\n",
    b"GET /a.txt\rHost: x\r\n\r\n",             # a bare CR ends the target
    b"GET /a\rb HTTP/1.1\r\n",
    b"GET \r\n",
    b"GET\r\n",
    b" GET /a.txt HTTP/1.1\r\n",              # an empty method
    b"G@T /a.txt HTTP/1.1\r\n",               # a method that is no token (RFC 9110 section 5.6.2)
    b"GET\t/a.txt HTTP/1.1\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00",            # a TLS ClientHello
])
@pytest.mark.parametrize("face", ["static", "asgi"])
@pytest.mark.parametrize("bytewise", [False, True])
def test_a_broken_request_line_is_400_at_once(site, serve, line, face, bytewise):
    app = Recorder()
    server = serve(site if face == "static" else app)
    client = server.open()
    send_in_pieces(client, line, bytewise)
    (response,) = client.parsed()  # no clock moved: not the header timeout's 408
    assert response.status == 400 and response.header("connection") == "close"
    assert client.closed and app.calls == []


@pytest.mark.parametrize("face", ["static", "asgi"])
def test_a_version_less_line_after_a_good_request_is_400_after_its_answer(site, serve, face):
    client = serve(site if face == "static" else Recorder()).open()
    client.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n\r\nGET /a.txt\r\n")
    assert [r.status for r in client.parsed()] == [200, 400] and client.closed


@pytest.mark.parametrize("method", [b"FOO", b"get", b"GETT", b"X-CUSTOM_1", b"DESCRIBE", b"M" * 40])
@pytest.mark.parametrize("face", ["static", "asgi"])
@pytest.mark.parametrize("bytewise", [False, True])
def test_a_method_not_recognised_is_501(site, serve, method, face, bytewise):
    app = Recorder()
    client = serve(site if face == "static" else app).open()
    send_in_pieces(client, method + b" /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", bytewise)
    (response,) = client.parsed()
    assert response.status == 501 and response.header("connection") == "close"
    assert client.closed and app.calls == []


@pytest.mark.parametrize("first, rest, status", [
    (b"FO", b"O@ /a.txt HTTP/1.1\r\n", 400),             # not a token after all
    (b"FOO /a.txt HTTP/1.1", b"\r\n", 501),
    (b"FOO /a.txt", b" HTTP/1.1\r\n", 501),
    (b"FOO /a.txt HTTP/1.1", b"\n", 400),                 # not CR LF: httptools takes no other line end
    (b"FOO /a.txt HT", b"XP/1.1\r\n", 400),
    (b"NOT HTTP", b" AT ALL\r\n\r\n", 400),               # a token, but the line is no request line
])
def test_an_unknown_method_waits_for_its_line_to_end_before_it_is_judged(site, serve, first, rest, status):
    client = serve(site).open()
    client.send(first)
    assert client.transport.data == b"" and not client.closed
    client.send(rest)
    (response,) = client.parsed()
    assert response.status == status and client.closed


@pytest.mark.parametrize("method", ["DELETE", "PUT", "POST", "PATCH", "OPTIONS", "PROPFIND", "PURGE"])
def test_a_known_method_a_static_file_does_not_allow_is_405(site, serve, method):
    client = serve(site).open()
    response = client.request(method, "/a.txt")
    assert response.status == 405 and response.header("allow") == "GET, HEAD"
    assert not client.closed


@pytest.mark.parametrize("method", ["PROPFIND", "PATCH"])
def test_an_app_gets_the_methods_httptools_reads(serve, method):
    app = Recorder()
    client = serve(app).open()
    assert client.request(method, "/a.txt").status == 200 and app.calls == [method]


# -- transfer codings ----------------------------------------------------------------------------


@pytest.mark.parametrize("coding, status", [
    (b"gzip, chunked", 501),       # RFC 9112 section 6.1: a coding not understood
    (b"identity, chunked", 501),   # identity is no transfer coding (RFC 9112 section 7)
    (b"x-custom , chunked", 501),
    (b"gzip", 400),                # section 6.3: chunked not last, the length is unknown
    (b", gzip, , chunked", 501),
    (b",", 400),                   # no coding at all: not chunked, the length is unknown
    (b"chunked ,", 400),           # an empty member after chunked: chunked is not last
    # an empty member is not ignored (as RFC 9110 section 5.6.1.2 would allow): h11 refuses the
    # list, nginx answers 501, a proxy comparing the value whole frames no chunked body
    (b", chunked", 501),
    (b",chunked", 501),
    (b" , ,chunked", 501),
])
@pytest.mark.parametrize("face", ["static", "asgi"])
def test_a_transfer_coding_besides_chunked_is_refused_before_any_app_starts(site, serve, coding, status, face):
    app = Recorder()
    client = serve(site if face == "static" else app).open()
    client.send(b"POST /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + coding + b"\r\n\r\n"
                b"5\r\nhello\r\n0\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    (response,) = client.parsed()
    assert response.status == status and client.closed
    assert app.calls == []


@pytest.mark.parametrize("coding", [b"chunked", b"Chunked", b"chunked  "])
def test_chunked_alone_is_read_as_always(serve, coding):
    app = Recorder()
    client = serve(app).open()
    client.send(b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + coding + b"\r\n\r\n"
                b"5\r\nhello\r\n0\r\n\r\n")
    (response,) = client.wait_for(1)
    assert response.status == 200 and response.body == b"5" and not client.closed


@pytest.mark.parametrize("coding", [b", chunked", b" ,,chunked"])
def test_empty_transfer_coding_members_are_refused_on_the_static_face_too(site, serve, coding):
    """Its body is never read as chunked: 501 and a close, the request behind it unanswered."""
    client = serve(site).open()
    client.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + coding + b"\r\n\r\n"
                b"5\r\nhello\r\n0\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [r.status for r in client.parsed()] == [501] and client.closed


@pytest.mark.parametrize("face", ["static", "asgi"])
def test_http10_with_transfer_encoding_is_answered_then_closed(site, serve, face):
    """RFC 9112 section 6.1: its framing cannot be trusted, even with keep-alive asked for."""
    client = serve(site if face == "static" else Recorder()).open()
    client.send(b"GET /a.txt HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n0\r\n\r\nGET /a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    (response,) = client.wait_for(1)
    assert response.status == 200 and response.header("connection") == "close"
    client.server.settle()
    assert client.closed and len(client.parsed()) == 1


# -- a body trickled to a static root ------------------------------------------------------------


@pytest.mark.parametrize("framing, chunk", [
    (b"Content-Length: 1000\r\n", b"a"),
    (b"Transfer-Encoding: chunked\r\n", b"1\r\na\r\n"),
])
def test_a_body_trickled_to_a_static_root_is_408_at_the_header_timeout(site, serve, framing, chunk):
    server = serve(site, header_timeout=4.0, body_timeout=2.0)
    client = server.open()
    client.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\n")
    for _ in range(3):  # never stalls for the body timeout ...
        server.tick(1.0)
        client.send(chunk)
    assert client.parsed() == [] and not client.closed
    server.tick(1.5)  # ... but the request is not whole at the header timeout
    assert statuses(bytes(client.transport.data)) == [408] and client.closed


def test_a_body_trickled_to_an_app_is_the_apps_to_wait_for(serve):
    app = Recorder()
    server = serve(app, header_timeout=4.0, body_timeout=2.0)
    client = server.open()
    client.send(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n")
    for _ in range(8):
        server.tick(1.0)
        client.send(b"a")
    (response,) = client.wait_for(1)
    assert response.status == 200 and response.body == b"8"


# -- a field sent on several lines (RFC 9110 section 5.3) ---------------------------------------


@pytest.mark.parametrize("lines, status", [
    # a list field: its lines are one list, whichever line names the match
    (["If-None-Match: {etag}", 'If-None-Match: "other"'], 304),
    (['If-None-Match: "other"', "If-None-Match: {etag}"], 304),
    (["If-Match: {etag}", 'If-Match: "other"'], 200),
    (['If-Match: "other"', "If-Match: {etag}"], 200),
    (['If-Match: "x"', 'If-Match: "y"'], 412),
    # a singleton sent twice is no valid value: ignored, as its own rules say
    (["If-Modified-Since: {date}", "If-Modified-Since: {date}"], 200),
    (["If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT", "If-Unmodified-Since: {date}"], 200),
    (["Range: bytes=0-1", "Range: bytes=2-3"], 200),
    (["Range: bytes=0-1", "If-Range: {etag}", "If-Range: {etag}"], 200),
])
def test_a_field_on_several_lines_is_one_value(site, serve, lines, status):
    client = serve(site).open()
    first = client.request("GET", "/a.txt")
    values = {"etag": first.header("etag"), "date": first.header("last-modified")}
    head = "".join(line.format(**values) + "\r\n" for line in lines)
    client.send(f"GET /a.txt HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode())
    assert client.parsed()[-1].status == status


def test_accept_encoding_on_two_lines_offers_both(tmp_path, serve):
    (tmp_path / "app.js").write_bytes(b"x" * 4000)
    (tmp_path / "app.js.gz").write_bytes(b"gzipped")
    client = serve(tmp_path).open()
    client.send(b"GET /app.js HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nAccept-Encoding: br\r\n\r\n")
    (response,) = client.parsed()
    assert response.header("content-encoding") == "gzip" and response.body == b"gzipped"


@pytest.mark.parametrize("first, second, status", [
    ('"other"', "{etag}", 304),
    ("{etag}", '"other"', 304),
])
def test_staticfiles_joins_a_field_on_several_lines_too(site, first, second, status):
    from fastserve.staticfiles import StaticFiles
    from fastserve.testclient import TestClient

    client = TestClient(StaticFiles(directory=site))
    etag = client.get("/a.txt").headers["etag"]
    headers = [("if-none-match", first.format(etag=etag)), ("if-none-match", second.format(etag=etag))]
    assert client.get("/a.txt", headers=headers).status_code == status


# -- a file asked for as a directory -------------------------------------------------------------


@pytest.mark.parametrize("target", ["/a.txt/", "/a.txt//", "/dir/index.html/", "/a%2etxt/", "/a.txt/?q=1"])
def test_the_server_answers_a_file_with_a_trailing_slash_404(site, serve, target):
    """As nginx does: one file has one URL, so relative links, caches and a proxy's path rules
    in front never see it under another."""
    (site / "dir").mkdir()
    (site / "dir" / "index.html").write_bytes(b"<p>index</p>")
    client = serve(site).open()
    assert client.request("GET", target).status == 404
    assert client.request("HEAD", target).status == 404
    assert client.request("GET", "/a.txt").status == 200 and client.request("GET", "/dir/").status == 200


def test_staticfiles_serves_a_file_with_a_trailing_slash_as_starlette_does(site):
    from fastserve.exceptions import HTTPException
    from fastserve.staticfiles import StaticFiles
    from fastserve.testclient import TestClient

    assert TestClient(StaticFiles(directory=site)).get("/a.txt/").content == b"first\n"
    with pytest.raises(HTTPException) as refused:  # standalone, a miss is raised, as Starlette's is
        TestClient(StaticFiles(directory=site, file_slash=False)).get("/a.txt/")
    assert refused.value.status_code == 404


# -- WebSocket handshakes that are not one ----------------------------------------------------

HANDSHAKE = (b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")


class ScopeTypes:
    """An ASGI app that records each scope's type and answers an HTTP request 200."""

    def __init__(self) -> None:
        self.types: List[str] = []

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return  # the server runs without one
        self.types.append(scope["type"])
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.close", "code": 1000})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.parametrize("framing, body", [
    (b"Content-Length: 5\r\n", b"hello"),
    (b"Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
])
def test_a_websocket_handshake_with_a_body_is_400(serve, framing, body):
    """Its body's bytes would be read as the client's first frames, while a proxy in front takes
    them for the request's content: the same bytes read two ways."""
    app = ScopeTypes()
    client = serve(app).open()
    client.send(b"GET /ws HTTP/1.1\r\nHost: x\r\n" + HANDSHAKE + framing + b"\r\n" + body)
    (response,) = client.parsed()
    assert response.status == 400 and client.closed and app.types == []


def test_an_http10_upgrade_is_answered_as_plain_http(serve):
    """RFC 9110 section 7.8: a server ignores Upgrade in an HTTP/1.0 request (it was a 505 from
    the WebSocket handshake)."""
    app = ScopeTypes()
    client = serve(app).open()
    client.send(b"GET /ws HTTP/1.0\r\n" + HANDSHAKE + b"\r\n")
    (response,) = client.wait_for(1)
    assert response.status == 200 and response.body == b"ok" and app.types == ["http"]


H2C = (b"GET /a.txt HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
       b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
CONNECT = b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n"


@pytest.mark.parametrize("face, head", [
    ("static", H2C), ("asgi", H2C), ("static", CONNECT), ("asgi", CONNECT),
    ("static", b"GET /a.txt HTTP/1.1\r\nHost: x\r\n" + HANDSHAKE + b"\r\n"),  # no WebSocket for a file
])
def test_an_upgrade_not_taken_is_answered_with_connection_close(site, serve, face, head):
    """Past a request asking to switch protocols (or a CONNECT) the connection's bytes may be
    another protocol's, so the server answers it as plain HTTP and closes: the answer says so
    (RFC 9112 section 9.6), and the bytes after it are never read as a request."""
    client = serve(site if face == "static" else Recorder()).open()
    client.send(head + b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    (response,) = client.wait_for(1)
    assert response.header("connection") == "close", response
    client.server.settle()
    assert client.closed and len(client.parsed()) == 1


# -- request bodies held for apps: one bound per connection ------------------------------------


class Gated:
    """An ASGI app that waits for ``gate`` before it answers; with ``read``, it reads the body
    first and answers its length, else it never reads it."""

    def __init__(self, read: bool) -> None:
        self.read = read
        self.gate: Any = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        import asyncio

        if scope["type"] != "http":
            return
        if self.gate is None:
            self.gate = asyncio.Event()
        await self.gate.wait()
        size = 0
        while self.read:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        text = b"%d" % size
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(text))]})
        await send({"type": "http.response.body", "body": text})


def post(size: int) -> bytes:
    return b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size + b"a" * size


def test_a_pipelined_requests_body_is_not_read_while_its_exchange_waits(serve):
    """200 KB bodies (each under one exchange's 256 KiB bound) pipelined behind an app that is
    busy were all read and held: 60 of them on each of 10 connections took 144 MB. Reading
    now pauses at a body whose exchange waits behind another, until its turn."""
    app = Gated(read=True)
    server = serve(app)
    client = server.open()
    client.send(post(200_000)[:100_000])
    assert client.transport.reading  # the first exchange's body is read as it comes
    client.send(post(200_000)[100_000:] + post(200_000)[:100_000])
    assert not client.transport.reading  # the second's waits behind the first: no more is read
    app.gate.set()
    client.wait_for(1)
    assert client.transport.reading  # its turn: its body is read
    client.send(post(200_000)[100_000:] + post(200_000))
    responses = client.wait_for(3)
    assert [(r.status, r.body) for r in responses] == [(200, b"200000")] * 3
    assert client.transport.reading and not client.closed


def test_an_app_that_answers_without_reading_a_large_body_lets_the_connection_read_on(serve):
    """The body over the exchange's bound had paused reading until the app read it; an app that
    answered without reading it left the connection paused for good (the rest of the body and
    the next request never read, no timeout running)."""
    app = Gated(read=False)
    server = serve(app)
    client = server.open()
    client.send(post(600_000)[:-300_000])
    assert not client.transport.reading  # 300 KB wait for the app: over its bound
    app.gate.set()
    assert [r.status for r in client.wait_for(1)] == [200]
    assert client.transport.reading  # what is left of the body is read (and dropped)
    client.send(b"a" * 300_000 + b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [r.status for r in client.wait_for(2)] == [200, 200]
