"""--max-header-bytes in-process, with each request reader and both servers (static, ASGI): a
head (request line through the empty line that ends it; empty lines before a request not
counted) over the limit is answered 431 and the connection closed, however the head is split
into reads, whatever whitespace pads it; a head within it is answered, whatever follows it in
the same read (a body, pipelined requests)."""
from __future__ import annotations

from pathlib import Path
from typing import List

import pytest

from inprocess import Client, InProcessServer

START = b"GET /a.txt HTTP/1.1\r\nHost: x\r\n"


async def hello(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"hi"})


@pytest.fixture(params=["static", "asgi"])
def server(request: pytest.FixtureRequest, serve, tmp_path: Path):
    """``server(**config)``: a static server of a site with /a.txt, or an ASGI app answering "hi"."""
    if request.param == "static":
        (tmp_path / "a.txt").write_bytes(b"hi")
        target: object = tmp_path
    else:
        target = hello

    def start(**options: object) -> InProcessServer:
        return serve(target, **options)

    return start


def head_of(size: int, fields: int = 3, method: bytes = b"GET", extra: bytes = b"") -> bytes:
    """A head of exactly ``size`` bytes: ``fields`` lines ``X-Fn: vvv`` (the padding spread over
    them) after the request line, Host and ``extra`` lines."""
    start = START.replace(b"GET", method, 1) + extra
    names = [b"X-F%d: " % i for i in range(fields)]
    pad = size - len(start) - 2 - sum(len(name) + 2 for name in names)
    assert pad >= fields, size
    lines = [name + b"v" * (pad // fields + (i < pad % fields)) + b"\r\n" for i, name in enumerate(names)]
    head = start + b"".join(lines) + b"\r\n"
    assert len(head) == size
    return head


def answers(client: Client) -> List[int]:
    return [r.status for r in client.parsed()]


def assert_answered(client: Client, count: int = 1) -> None:
    assert answers(client) == [200] * count
    assert not client.closed


def assert_refused(client: Client, answered: int = 0) -> None:
    assert answers(client) == [200] * answered + [431]
    assert client.parsed()[-1].header("connection") == "close"
    assert client.closed


def send_in(client: Client, data: bytes, cuts: List[int]) -> Client:
    for begin, end in zip([0, *cuts], [*cuts, len(data)]):
        if not client.closed:
            client.send(data[begin:end])
    return client


@pytest.mark.parametrize("size", [304, 310, 316])
@pytest.mark.parametrize("cuts", [[], [150], "bytes"])
def test_the_reported_heads_over_300_bytes_are_refused_however_split(server, size, cuts):
    srv = server(max_header_bytes=300)
    head = head_of(size)
    client = send_in(srv.open(), head, list(range(1, size)) if cuts == "bytes" else cuts)
    assert_refused(client)


@pytest.mark.parametrize("limit", [120, 300])
def test_heads_around_the_limit_in_two_writes_at_every_offset(server, limit):
    srv = server(max_header_bytes=limit)
    for size in (limit - 1, limit, limit + 1):
        head = head_of(size)
        for cut in range(0, size):
            client = send_in(srv.open(), head, [cut] if cut else [])
            if size > limit:
                assert_refused(client)
            else:
                assert_answered(client)


@pytest.mark.parametrize("limit", [120, 2000])
def test_heads_around_the_limit_byte_by_byte(server, limit):
    srv = server(max_header_bytes=limit, max_header_count=1000)
    for size in (limit - 1, limit, limit + 1):
        head = head_of(size, fields=3 if limit < 1000 else 100)
        client = send_in(srv.open(), head, list(range(1, size)))
        if size > limit:
            assert_refused(client)
        else:
            assert_answered(client)


def test_the_default_limit_is_16_kib_of_head(server):
    srv = server()
    assert_answered(srv.open().send(head_of(16384)))
    assert_refused(srv.open().send(head_of(16385)))
    assert_refused(srv.open().send(head_of(16401)))


def test_whitespace_padding_a_field_value_counts(server):
    srv = server()
    assert_refused(srv.open().send(START + b"X-Pad:" + b" " * 200000 + b"v\r\n\r\n"))
    assert_refused(srv.open().send(START + b"X-Pad: " + b"v" + b" " * 20000 + b"\r\n\r\n"))
    assert_refused(srv.open().send(START + b"".join(b"X-P%d:%sv\r\n" % (i, b" " * 2000) for i in range(90)) + b"\r\n"))
    padded = START + b"X-Pad:" + b" " * (16384 - len(START) - len(b"X-Pad:v\r\n\r\n")) + b"v\r\n\r\n"
    assert len(padded) == 16384
    assert_answered(srv.open().send(padded))
    assert_refused(srv.open().send(padded.replace(b"v\r\n", b" v\r\n")))


def test_many_short_lines_count_in_full(server):
    srv = server(max_header_bytes=1000, max_header_count=1000)
    head = START + b"A: b\r\n" * ((1000 - len(START)) // len(b"A: b\r\n") - 2)
    head += b"A: " + b"b" * (1000 - len(head) - len(b"A: \r\n\r\n")) + b"\r\n\r\n"
    assert len(head) == 1000
    assert_answered(srv.open().send(head))
    assert_refused(srv.open().send(head.replace(b"A: b\r\n", b"A:  b\r\n", 1)))


def test_empty_lines_before_a_request_are_not_its_head(server):
    srv = server(max_header_bytes=200)
    client = srv.open().send(b"\r\n\r\n\r\n" + head_of(200))
    assert_answered(client)
    client = send_in(srv.open(), b"\r\n" + head_of(200) + b"\r\n" + head_of(200), [1, 2, 203])
    assert_answered(client, 2)


def test_a_head_within_the_limit_is_answered_whatever_follows_it(server):
    srv = server(max_header_bytes=200, max_body_size=1 << 20)
    body = b"x\r\n\r\n" * 20000
    head = head_of(200, extra=b"Content-Length: %d\r\n" % len(body))
    for cut in (0, 1, 100, 199, 200, 201, 300):
        assert_answered(send_in(srv.open(), head + body + head_of(200), [cut] if cut else []), 2)
    chunked = head_of(200, extra=b"Transfer-Encoding: chunked\r\n")
    chunks = b"4\r\n\r\n\r\n\r\n" * 100 + b"0\r\n\r\n"
    for cut in (0, 199, 200, 203, 205, 208, len(chunked) + len(chunks) - 2):
        assert_answered(send_in(srv.open(), chunked + chunks + head_of(200) + head_of(200), [cut] if cut else []), 3)


def test_a_pipelined_head_over_the_limit_is_refused_after_the_ones_before(server):
    srv = server(max_header_bytes=200)
    assert_refused(srv.open().send(head_of(200) + head_of(201)), answered=1)
    assert_refused(srv.open().send(head_of(150) + head_of(200) + head_of(201) + head_of(100)), answered=2)
    body = b"abc"
    with_body = head_of(200, extra=b"Content-Length: 3\r\n") + body
    assert_refused(srv.open().send(with_body + head_of(201)), answered=1)
    chunked = head_of(200, extra=b"Transfer-Encoding: chunked\r\n") + b"3\r\nabc\r\n0\r\nT: 1\r\n\r\n"
    assert_refused(srv.open().send(chunked + head_of(201)), answered=1)
    assert_refused(send_in(srv.open(), chunked + head_of(201), [len(chunked) - 1]), answered=1)


def test_a_chunked_body_ends_where_its_framing_does_at_every_split(server):
    srv = server(max_header_bytes=200)
    chunked = head_of(200, extra=b"Transfer-Encoding: chunked\r\n")
    data = b"0\r\n\r\nGET / HTTP/1.1\r\n\r\n"
    body = b"%x;ext=1\r\n%s\r\n" % (len(data), data) + b"A\r\n" + b"\r\n" * 5 + b"\r\n" + b"0\r\nT: 1\r\n\r\n"
    stream = chunked + body + head_of(200) + head_of(201)
    for cut in range(len(chunked) - 2, len(chunked) + len(body) + 3):
        assert_refused(send_in(srv.open(), stream, [cut]), answered=2)
    assert_answered(send_in(srv.open(), chunked + body + head_of(200), list(range(1, len(chunked) + len(body) + 200))), 2)


@pytest.mark.parametrize("piece", [0, 7, 4096])
def test_a_request_line_past_the_limit_is_414_however_it_is_split(server, piece):
    """A request line longer than --max-header-bytes was 431 when it ended in the same read as
    the bytes that passed the limit, 414 when read in smaller pieces: it is 414 either way (RFC
    9112 section 3, as nginx answers), and a head past the limit by its fields stays 431."""
    for line, status in (
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n", 414),
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /a.txt HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 5000 + b"\r\n\r\n", 431),
        (b"GET /" + b"a" * 900 + b" HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 5000 + b"\r\n\r\n", 431),
    ):
        client = server(max_header_bytes=4096, max_url_length=2048).open()
        for i in range(0, len(line), piece or len(line)):
            client.send(line[i:i + (piece or len(line))])
        assert answers(client) == [status] and client.closed, (line[:30], piece)


@pytest.mark.parametrize("piece", [0, 7])
def test_a_head_request_refused_for_its_size_gets_no_content(server, piece):
    """A HEAD refused 431 or 414 got the refusal's text after its head: none now (RFC 9110
    section 9.3.2), in one read or in pieces; a GET refused after a HEAD was answered on the same
    connection keeps its text."""
    for line in (head_of(5000, method=b"HEAD"), b"HEAD /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"):
        for method, first in ((b"HEAD", b""), (b"GET", b"HEAD /a.txt HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\n")):
            client = server(max_header_bytes=4096, max_url_length=2048).open()
            client.send(first)
            before = len(client.transport.data)
            data = method + line[4:]
            for i in range(0, len(data), piece or len(data)):
                client.send(data[i:i + (piece or len(data))])
            head, _, content = bytes(client.transport.data[before:]).partition(b"\r\n\r\n")
            assert head.split(b" ")[1] in (b"414", b"431") and client.closed, head
            assert (content == b"") == (method == b"HEAD"), (method, head, content)


def test_a_refused_head_is_logged_as_its_own_not_as_the_request_before_it(serve, tmp_path):
    """A head refused before it was read (431, 414) after a HEAD answered on the same connection
    was logged under that HEAD's method and target: its access line names its own request line."""
    (tmp_path / "a.txt").write_bytes(b"hi")
    server = serve(tmp_path, access_log=True, max_header_bytes=4096)
    client = server.open()
    client.send(b"HEAD /a.txt HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\n")
    client.send(b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    lines = [line[1:5] for line in server.state.access_logger.pending]
    assert lines == [(b"HEAD", b"/a.txt", b"HTTP/1.1", 200), (b"GET", b"/" + b"a" * 5000, b"HTTP/1.1", 431)]
