"""Request framing held to a strict reference reader: h11 (sans-I/O, the framing Python's HTTP
stack reads by). Each head of the table (Content-Length and Transfer-Encoding together, lists of
codings, repeated and odd lengths, chunk lines of every odd shape, line ends, folded and odd
field lines, trailers) is sent with a second request pipelined behind it, through both request
readers, to an app that echoes the body it read and to a static root.

The rule (RFC 9112 sections 6 and 7; what request smuggling exploits when two readers differ):
what fastserve answers is a prefix of what h11 reads, request for request and body for body;
where it stops short, its last answer is a refusal and the connection closes. So fastserve
never reads a framing h11 refuses, never finds two requests where h11 finds one or one where
h11 finds two, and never gives a body other bytes. Where fastserve refuses what h11 reads (it
is stricter: bare LF line ends, a chunk size with whitespace before its extensions), the table
says so in ``STRICTER``, so that a change either way is seen.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional, Tuple

import h11
import pytest

from inprocess import parse_responses
from server_helpers import read_body

SECOND = b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n"
P = b"POST /p HTTP/1.1\r\nHost: x\r\n"
CHUNKED = P + b"Transfer-Encoding: chunked\r\n\r\n"


def chunked(body: bytes) -> bytes:
    return CHUNKED + body


FRAMINGS = {
    # Content-Length and Transfer-Encoding together, and codings
    "cl-then-te": P + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "te-then-cl": P + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "te-and-cl-0": P + b"Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "te-gzip-chunked": P + b"Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "te-chunked-identity": P + b"Transfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "te-identity": P + b"Transfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello",
    "te-chunked-chunked": P + b"Transfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "te-upper": P + b"Transfer-Encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "te-ows": P + b"Transfer-Encoding: \t chunked \t\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "te-two-lines": P + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "te-gzip-line-then-chunked": P + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "te-chunked-line-then-gzip": P + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "te-xchunked": P + b"Transfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "te-chunked-param": P + b"Transfer-Encoding: chunked;q=1\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "te-empty": P + b"Transfer-Encoding: \r\nContent-Length: 5\r\n\r\nhello",
    "te-trailing-comma": P + b"Transfer-Encoding: chunked,\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "te-leading-comma": P + b"Transfer-Encoding: , chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "te-space-before-colon": P + b"Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\nhello",
    "te-underscore": P + b"Transfer_Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello",
    "te-folded-in": P + b"X: y\r\n Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello",
    "te-value-folded": P + b"Transfer-Encoding:\r\n chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "te-vertical-tab": P + b"Transfer-Encoding:\x0bchunked\r\nContent-Length: 5\r\n\r\nhello",
    "http10-te": b"POST /p HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    # Content-Length
    "cl-plain": P + b"Content-Length: 5\r\n\r\nhello",
    "cl-twice-equal": P + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    "cl-twice-unequal": P + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "cl-list-equal": P + b"Content-Length: 5, 5\r\n\r\nhello",
    "cl-list-unequal": P + b"Content-Length: 5, 6\r\n\r\nhello!",
    "cl-plus": P + b"Content-Length: +5\r\n\r\nhello",
    "cl-minus": P + b"Content-Length: -5\r\n\r\nhello",
    "cl-ows": P + b"Content-Length: \t 5 \t\r\n\r\nhello",
    "cl-leading-zeros": P + b"Content-Length: 0005\r\n\r\nhello",
    "cl-inner-space": P + b"Content-Length: 5 5\r\n\r\nhello",
    "cl-hex": P + b"Content-Length: 0x5\r\n\r\nhello",
    "cl-decimal": P + b"Content-Length: 5.0\r\n\r\nhello",
    "cl-exponent": P + b"Content-Length: 5e0\r\n\r\nhello",
    "cl-empty": P + b"Content-Length: \r\n\r\nhello",
    "cl-huge": P + b"Content-Length: 99999999999999999999\r\n\r\nhello",
    "cl-folded": P + b"Content-Length: 5\r\n 6\r\n\r\nhello!",
    "cl-space-before-colon": P + b"Content-Length : 5\r\n\r\nhello",
    "cl-name-with-space": P + b"Content Length: 5\r\n\r\nhello",
    "cl-zero-with-bytes": P + b"Content-Length: 0\r\n\r\nhello",
    "cl-longer-body": P + b"Content-Length: 5\r\n\r\nhello!",
    "get-with-cl": b"GET /g HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    "get-with-chunked": b"GET /g HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "http10-cl": b"POST /p HTTP/1.0\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello",
    "expect-continue": P + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
    "absolute-form": b"POST http://x/p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    "connection-close": P + b"Content-Length: 5\r\nConnection: close\r\n\r\nhello",
    # chunk lines
    "chunk-ext": chunked(b"5;ext=1\r\nhello\r\n0\r\n\r\n"),
    "chunk-ext-no-value": chunked(b"5;ext\r\nhello\r\n0\r\n\r\n"),
    "chunk-ext-quoted": chunked(b'5;ext="a b"\r\nhello\r\n0\r\n\r\n'),
    "chunk-ext-quote-unended": chunked(b'5;ext="a\r\nhello\r\n0\r\n\r\n'),
    "chunk-ext-bws": chunked(b"5 ;ext=1\r\nhello\r\n0\r\n\r\n"),
    "chunk-ext-space-after": chunked(b"5; ext=1\r\nhello\r\n0\r\n\r\n"),
    "chunk-ext-with-lf-inside": chunked(b"5;ext=a\nb\r\nhello\r\n0\r\n\r\n"),
    "chunk-ext-many": chunked(b"5" + b";e=1" * 200 + b"\r\nhello\r\n0\r\n\r\n"),
    "chunk-leading-zeros": chunked(b"0000000000000005\r\nhello\r\n0\r\n\r\n"),
    "chunk-overlong-hex": chunked(b"fffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
    "chunk-16-hex-digits": chunked(b"1000000000000005\r\nhello\r\n0\r\n\r\n"),
    "chunk-0x": chunked(b"0x5\r\nhello\r\n0\r\n\r\n"),
    "chunk-negative": chunked(b"-5\r\nhello\r\n0\r\n\r\n"),
    "chunk-plus": chunked(b"+5\r\nhello\r\n0\r\n\r\n"),
    "chunk-leading-space": chunked(b" 5\r\nhello\r\n0\r\n\r\n"),
    "chunk-trailing-space": chunked(b"5 \r\nhello\r\n0\r\n\r\n"),
    "chunk-trailing-tab": chunked(b"5\t\r\nhello\r\n0\r\n\r\n"),
    "chunk-upper-hex": chunked(b"A\r\n0123456789\r\n0\r\n\r\n"),
    "chunk-not-hex": chunked(b"g\r\nhello\r\n0\r\n\r\n"),
    "chunk-empty-size": chunked(b"\r\nhello\r\n0\r\n\r\n"),
    "chunk-bare-lf-lines": chunked(b"5\nhello\n0\n\n"),
    "chunk-bare-lf-after-data": chunked(b"5\r\nhello\n0\r\n\r\n"),
    "chunk-bare-cr-size": chunked(b"5\rhello\r\n0\r\n\r\n"),
    "chunk-data-no-crlf": chunked(b"5\r\nhelloXX0\r\n\r\n"),
    "chunk-data-longer": chunked(b"5\r\nhello!\r\n0\r\n\r\n"),
    "chunk-data-shorter": chunked(b"5\r\nhell\r\n0\r\n\r\n"),
    "chunk-last-ext": chunked(b"5\r\nhello\r\n0;ext=1\r\n\r\n"),
    "chunk-last-00": chunked(b"5\r\nhello\r\n00\r\n\r\n"),
    "chunk-cut": chunked(b"5\r\nhel"),
    "chunk-last-missing-crlf": chunked(b"5\r\nhello\r\n0\r\n"),
    # trailers
    "trailer-field": chunked(b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"),
    "trailer-content-length": chunked(b"5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n"),
    "trailer-transfer-encoding": chunked(b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n"),
    "trailer-folded": chunked(b"5\r\nhello\r\n0\r\nX-T: 1\r\n 2\r\n\r\n"),
    "trailer-bad-name": chunked(b"5\r\nhello\r\n0\r\nBad Name: 1\r\n\r\n"),
    "trailer-nul": chunked(b"5\r\nhello\r\n0\r\nX-T: a\x00b\r\n\r\n"),
    "trailer-no-colon": chunked(b"5\r\nhello\r\n0\r\nX-T\r\n\r\n"),
    "trailer-bare-lf": chunked(b"5\r\nhello\r\n0\r\nX-T: 1\n\r\n"),
    "trailers-too-big": chunked(b"5\r\nhello\r\n0\r\n" + b"X-T: " + b"t" * 20000 + b"\r\n\r\n"),
    "trailers-too-many": chunked(b"5\r\nhello\r\n0\r\n" + b"X-T: 1\r\n" * 200 + b"\r\n"),
    # line ends and field lines of the head
    "head-bare-lf": b"POST /p HTTP/1.1\nHost: x\nContent-Length: 5\n\nhello",
    "head-bare-lf-last": P + b"Content-Length: 5\r\n\nhello",
    "head-bare-cr": P + b"X: a\rb\r\nContent-Length: 5\r\n\r\nhello",
    "head-nul-value": P + b"X: a\x00b\r\nContent-Length: 5\r\n\r\nhello",
    "head-nul-name": P + b"X\x00: a\r\nContent-Length: 5\r\n\r\nhello",
    "head-empty-name": P + b": a\r\nContent-Length: 5\r\n\r\nhello",
    "head-no-colon": P + b"Content-Length 5\r\nContent-Length: 5\r\n\r\nhello",
    "head-colon-first": P + b":Content-Length: 5\r\n\r\nhello",
    "head-fold-first-line": b"POST /p HTTP/1.1\r\n Host: x\r\nContent-Length: 5\r\n\r\nhello",
    "head-obs-text-value": P + b"X: caf\xc3\xa9\r\nContent-Length: 5\r\n\r\nhello",
    "head-del-in-value": P + b"X: a\x7fb\r\nContent-Length: 5\r\n\r\nhello",
    "request-line-bare-lf": b"POST /p HTTP/1.1\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
}

# What fastserve refuses while h11 reads it (fastserve is the stricter reader; never the other
# way round): CL with TE (RFC 9112 section 6.1 allows the refusal), repeated or listed equal
# lengths, bare LF line ends, obs-fold (section 5.2 allows the 400), DEL in a value, whitespace
# after a chunk size or around its extensions, framing fields and bare LF in trailers, and
# trailers past the head's limits (431).
STRICTER = {
    "chunk-ext-quote-unended", "chunk-ext-space-after", "chunk-trailing-space", "chunk-trailing-tab",
    "cl-list-equal", "cl-then-te", "cl-twice-equal", "head-bare-lf", "head-bare-lf-last", "head-del-in-value",
    "request-line-bare-lf", "te-and-cl-0", "te-folded-in", "te-ows", "te-then-cl", "te-value-folded",
    "trailer-bare-lf", "trailer-content-length", "trailer-folded", "trailer-transfer-encoding",
    "trailers-too-big", "trailers-too-many",
}


def _origin_form(target: bytes) -> str:
    """An absolute-form target as the app's scope names it (its path and query)."""
    text = target.decode("latin-1")
    if "://" in text:
        text = "/" + text.split("://", 1)[1].partition("/")[2]
    return text


# The methods httptools reads (RFC 9110's and WebDAV's among them; the table sends these three)
LLHTTP_METHODS = {b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"}


def h11_read(data: bytes) -> Tuple[List[Tuple[str, bytes]], bool]:
    """(target, body) of each request h11 reads whole from ``data``, answering each; and whether
    it refused the bytes (a RemoteProtocolError) before they ran out."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
    conn.receive_data(data)
    requests: List[Tuple[str, bytes]] = []
    target: Optional[str] = None
    body = b""
    keep_alive_10 = False
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return requests, False
            if isinstance(event, h11.Request):
                target, body = _origin_form(event.target), b""
                if event.method not in LLHTTP_METHODS:  # a request of a method fastserve refuses (501)
                    return requests, True
                fields = {name: value.lower() for name, value in event.headers}
                # h11 keeps no HTTP/1.0 connection alive; one that asked for it reads on
                keep_alive_10 = event.http_version == b"1.0" and fields.get(b"connection") == b"keep-alive"
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert target is not None
                requests.append((target, body))
                conn.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
                conn.send(h11.EndOfMessage())
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    if not keep_alive_10:
                        return requests, False
                    rest, _ = conn.trailing_data
                    more, refused = h11_read(rest)
                    return requests + more, refused
                conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return requests, False
    except h11.RemoteProtocolError:
        return requests, True


class Echo:
    """Answers each request with ``target`` and the body it read: ``/p 5:hello``."""

    def __init__(self) -> None:
        self.seen: List[Tuple[str, bytes]] = []

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        if body is None:
            return
        target = scope["raw_path"].decode("latin-1") + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
        self.seen.append((target, body))
        text = b"%s %d:%s" % (target.encode("latin-1"), len(body), body)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % len(text))]})
        await send({"type": "http.response.body", "body": text})


REFUSALS = (400, 408, 413, 431, 501, 505)


def fastserve_read(serve: Any, data: bytes) -> Tuple[List[Tuple[str, bytes]], Optional[int], bool]:
    """(target, body) of each request the app answered, the refusal after them (None: none), and
    whether the connection closed."""
    app = Echo()
    server = serve(app, max_body_size=1 << 20)
    client = server.open()
    client.send(data)
    server.settle()
    responses, rest = parse_responses(bytes(client.transport.data))
    assert not rest, rest
    answered: List[Tuple[str, bytes]] = []
    refusal = None
    for index, response in enumerate(responses):
        if response.status == 100:
            continue
        if response.status in REFUSALS:
            assert index == len(responses) - 1 and client.closed, (responses, client.closed)
            refusal = response.status
            break
        assert response.status == 200, response
        target, _, counted = response.body.partition(b" ")
        length, _, body = counted.partition(b":")
        assert int(length) == len(body)
        answered.append((target.decode("latin-1"), body))
    assert answered == app.seen  # every answer is the app's, for a request it read
    return answered, refusal, client.closed


def test_the_table_is_wide() -> None:
    assert len(FRAMINGS) >= 80 and STRICTER <= set(FRAMINGS)


@pytest.mark.parametrize("name", sorted(FRAMINGS))
@pytest.mark.parametrize("pipelined", [False, True])
def test_framing_is_read_as_strictly_as_h11_reads_it(serve, name: str, pipelined: bool) -> None:
    data = FRAMINGS[name] + (SECOND if pipelined else b"")
    expected, h11_refused = h11_read(data)
    answered, refusal, closed = fastserve_read(serve, data)
    # never more, never other: h11's requests, body for body, as far as fastserve answers
    assert answered == expected[:len(answered)], (answered, expected)
    if name in STRICTER:
        assert len(answered) < len(expected) and refusal is not None and closed, (answered, expected, refusal)
        return
    # otherwise exactly the requests h11 reads; what h11 refuses after them is refused too
    # (fastserve may refuse at once what h11 still waits on: a length past every limit)
    assert answered == expected, (answered, expected, refusal)
    if h11_refused:
        assert refusal is not None, (answered, expected)
    if refusal is not None:
        assert closed


def test_a_static_root_answers_each_request_h11_reads(site_root: Path, serve) -> None:
    """The static face reads the same framing (a body it drops is still framed): as many
    answers as requests h11 reads, then at most a refusal and a close."""
    for name, framing in sorted(FRAMINGS.items()):
        data = framing.replace(b"POST /p", b"GET /a.txt").replace(b"GET /g", b"GET /a.txt") + SECOND
        expected, h11_refused = h11_read(data)
        client = serve(site_root, max_body_size=1 << 20).open()
        client.send(data)
        responses = [r for r in client.parsed() if r.status != 100]
        statuses = [r.status for r in responses]
        answered = [status for status in statuses if status in (200, 404, 405)]
        assert answered == statuses[:len(answered)], (name, statuses)
        if name in STRICTER:
            assert len(answered) < len(expected), (name, statuses, expected)
        else:
            assert len(answered) == len(expected), (name, statuses, expected)
        assert len(statuses) - len(answered) <= 1, (name, statuses)
        if len(statuses) > len(answered):
            assert statuses[-1] in REFUSALS and client.closed, (name, statuses)


@pytest.fixture
def site_root(tmp_path: Path) -> Path:
    (tmp_path / "a.txt").write_bytes(b"a\n")
    return tmp_path


def answers(serve: Any, data: bytes, bytewise: bool) -> Tuple[List[Tuple[int, bytes]], List[Tuple[str, bytes]]]:
    """(status, body) of each answer but a 100, and what the app read, for ``data`` sent in one
    read or a byte at a time."""
    app = Echo()
    server = serve(app, max_body_size=1 << 20)
    client = server.open()
    for piece in ([data[i:i + 1] for i in range(len(data))] if bytewise else [data]):
        if client.closed:
            break
        client.send(piece)
    server.settle()
    responses, _ = parse_responses(bytes(client.transport.data))
    return [(r.status, r.body) for r in responses if r.status != 100], app.seen


@pytest.mark.parametrize("name", sorted(name for name, framing in FRAMINGS.items() if len(framing) < 4096))
def test_framing_sent_a_byte_at_a_time_is_read_as_in_one_read(serve, name: str) -> None:
    """Where the reads end changes nothing: the same answers, the same bodies."""
    data = FRAMINGS[name] + SECOND
    assert answers(serve, data, True) == answers(serve, data, False)


# Where fastserve reads what h11 refuses, by a leniency RFC 9112 allows that moves no body's
# end: empty lines before a request-line are ignored (section 2.2; llhttp ignores a bare LF one
# too), and the request-line is split on runs of spaces (section 3). Each is read as the same
# request without it; h11 refuses them.
LENIENT = {
    "empty-lines-before-the-first-request": b"\r\n\r\n" + FRAMINGS["cl-plain"],
    "bare-lf-before-the-first-request": b"\n" + FRAMINGS["cl-plain"],
    "empty-line-after-a-chunked-body": FRAMINGS["trailer-field"] + b"\r\n",
    "two-spaces-after-the-method": FRAMINGS["cl-plain"].replace(b"POST /p", b"POST  /p"),
    "two-spaces-before-the-version": FRAMINGS["cl-plain"].replace(b"/p HTTP", b"/p  HTTP"),
}


@pytest.mark.parametrize("name", sorted(LENIENT))
def test_what_fastserve_reads_beyond_h11_moves_no_request_boundary(serve, name: str) -> None:
    data = LENIENT[name] + SECOND
    assert h11_read(data)[1]  # h11 refuses it
    answered, refusal, closed = fastserve_read(serve, data)
    assert (answered, refusal, closed) == ([("/p", b"hello"), ("/second", b"")], None, False)
