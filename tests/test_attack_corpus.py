"""A corpus of hostile requests against real servers on loopback (docs/security.md lists it).

Two servers: the static origin (the shared ``server`` fixture: a document root with a secret
file beside it and symlinks pointing out) and an ASGI app with a body echo, a form parser,
a redirect and the soak's WebSocket echo (``bench/apps/soak_app.py``). For every case: the answer is one of the statuses it allows
(or a clean close), no byte of the secret ever comes back, and a good request on a fresh
connection is answered afterwards.
"""
from __future__ import annotations

import itertools
import socket
import struct
from typing import Iterator, List, Optional, Sequence, Tuple

import pytest

from server_helpers import SECRET_MARKER, ConnectionClosed, RawConnection, ServerProcess, fetch, running_app_module
from test_server_websocket import RawWebSocket, frame_bytes

APP = '''
from fastserve.exceptions import HTTPException
from fastserve.formparsers import MultiPartException
from fastserve.requests import Request
from fastserve.responses import PlainTextResponse, RedirectResponse
from bench.apps.soak_app import app as soak_app


async def app(scope, receive, send):
    assert scope["type"] in ("http", "websocket")  # no lifespan: the server's "auto" runs without it
    if scope["type"] == "websocket":
        return await soak_app(scope, receive, send)  # the soak's WebSocket echo
    request = Request(scope, receive)
    if scope["path"] == "/form":
        try:
            form = await request.form()
            response = PlainTextResponse(str(len(form)))
        except HTTPException as exc:  # what an app's exception handlers would answer
            response = PlainTextResponse(exc.detail, status_code=exc.status_code)
        except MultiPartException as exc:  # raised as is outside a Starlette app, as Starlette does
            response = PlainTextResponse(exc.message, status_code=400)
    elif scope["path"] == "/redirect":
        response = RedirectResponse(request.query_params.get("to", "/"))
    else:
        body = await request.body()
        response = PlainTextResponse(str(len(body)))
    await response(scope, receive, send)
'''

ANY_REFUSAL = (400, 403, 404, 405, 413, 414, 431, 501, 505)


@pytest.fixture(scope="module")
def app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_app_module(tmp_path_factory.mktemp("attack_app"), "attack_app", APP,
                            ["--max-body-size", "65536", "--ws-ping-interval", "0"]) as srv:
        yield srv


def exchange(port: int, data: bytes) -> Tuple[Optional[int], bytes]:
    """(status, everything received) for raw ``data``; status None for a clean close."""
    with RawConnection(port, timeout=5.0) as conn:
        try:
            conn.send(data)
            response = conn.read_response(head=data.startswith(b"HEAD "))
        except (ConnectionClosed, ConnectionResetError, BrokenPipeError):
            return None, b""
        return response.status, response.raw_head + response.body


def assert_case(port: int, data: bytes, allowed: Sequence[Optional[int]], good: str = "/small.txt") -> bytes:
    status, received = exchange(port, data)
    assert status in allowed, (data[:200], status, received[:300])
    assert SECRET_MARKER not in received, data[:200]
    assert fetch(port, good).status == 200, data[:200]
    return received


# ---------------------------------------------------------------------------------------------
# traversal, in every encoding

DOTS = ["..", "%2e%2e", "%2E%2E", ".%2e", "%2e.", "%252e%252e", "%c0%ae%c0%ae", "%u002e%u002e", "..;", "...."]
SLASHES = ["/", "%2f", "%2F", "%5c", "\\", "%252f", "%c0%af", "//", "/./"]
TRAVERSALS = sorted({
    f"/{dots}{slash}secret.txt" for dots, slash in itertools.product(DOTS, SLASHES)
} | {
    f"/dir/{dots}{slash}{dots}{slash}secret.txt" for dots, slash in itertools.product(DOTS[:5], SLASHES[:5])
} | {
    f"/nested/deeper/{dots}{slash}{dots}{slash}{dots}{slash}secret.txt"
    for dots, slash in itertools.product(DOTS[:6], SLASHES[:6])
} | {
    "/outside_link.txt", "/outside_dir/secret.txt", "/outside_dir/../secret.txt", "//secret.txt",
    "/%00/../secret.txt", "/small.txt%00.html", "/secret.txt", "/../../../../etc/passwd",
    "/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/C:/secret.txt", "/c%3a/secret.txt",
})


@pytest.mark.parametrize("target", TRAVERSALS)
def test_traversal(server: ServerProcess, target: str) -> None:
    assert_case(server.port, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode("latin-1"), (400, 403, 404))


@pytest.mark.parametrize("target", ["http://x/../secret.txt", "http://x/%2e%2e/secret.txt", "https://x//secret.txt"])
def test_traversal_in_absolute_form(server: ServerProcess, target: str) -> None:
    assert_case(server.port, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), (400, 403, 404))


# ---------------------------------------------------------------------------------------------
# request smuggling: framing that two parsers could read two ways

SMUGGLING = [
    b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    b"Content-Length: 5\r\nContent-Length: 6\r\n",
    b"Content-Length: 5, 5\r\n",
    b"Content-Length: +5\r\n",
    b"Content-Length: 0x5\r\n",
    b"Transfer-Encoding: xchunked\r\n",
    b"Transfer-Encoding: chunked, identity\r\n",
    b"Transfer-Encoding: identity\r\n",
    b"Transfer-Encoding : chunked\r\n",
    b"Transfer-Encoding:\x0bchunked\r\n",
    b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n",
    b"Transfer-Encoding:\r\n chunked\r\n",
    b"X-Pad: a\r\nTransfer-Encoding: chunked\n",
]
SMUGGLED_BODY = b"0\r\n\r\nGET /outside_link.txt HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize("fields", SMUGGLING)
@pytest.mark.parametrize("which", ["static", "app"])
def test_smuggling(server: ServerProcess, app_server: ServerProcess, fields: bytes, which: str) -> None:
    port = server.port if which == "static" else app_server.port
    data = b"POST /echo HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n" + SMUGGLED_BODY
    assert_case(port, data, (400, 405, None), good="/small.txt" if which == "static" else "/echo")


@pytest.mark.parametrize("chunks", [
    b"zz\r\n", b"5\r\nabcdeXX", b"5\nabcde\r\n0\r\n\r\n", b"fffffffffffffffffffffff\r\n", b"-1\r\n",
    b"5;\x00\r\nabcde\r\n0\r\n\r\n", b"5\r\nabcde\r\n0\r\nX: \x00\r\n\r\n",
])
def test_bad_chunked_bodies_to_an_app(app_server: ServerProcess, chunks: bytes) -> None:
    data = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks
    assert_case(app_server.port, data, (400, None), good="/echo")


# ---------------------------------------------------------------------------------------------
# oversize


@pytest.mark.parametrize("data, status", [
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 200 + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: x\r\nRange: bytes=" + b"0-0," * 5000 + b"\r\n\r\n", 431),
])
def test_oversize_heads(server: ServerProcess, data: bytes, status: int) -> None:
    assert_case(server.port, data, (status,))


@pytest.mark.parametrize("data", [
    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"a" * 1000,
    b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + b"8000\r\n" + b"a" * 32768 * 3,
    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
])
def test_oversize_bodies(app_server: ServerProcess, data: bytes) -> None:
    assert_case(app_server.port, data, (400, 413, None), good="/echo")


# ---------------------------------------------------------------------------------------------
# odd versions, methods, targets, Host

ODD_REQUESTS = [
    b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", b"GET / HTTP/0.9\r\n\r\n", b"GET /\r\n\r\n", b"GET / HTTP/1.1x\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.10\r\nHost: x\r\n\r\n", b"GET / http/1.1\r\nHost: x\r\n\r\n", b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n", b"get / HTTP/1.1\r\nHost: x\r\n\r\n", b"G\xc9T / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\n\r\n", b"TRACE / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", b"DELETE /small.txt HTTP/1.1\r\nHost: x\r\n\r\n",
    b"PUT /small.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    b"GET /small.txt HTTP/1.1\r\n\r\n", b"GET /small.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET /small.txt HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n", b"GET /small.txt HTTP/1.1\r\nHost: x\r\n X: folded\r\n\r\n",
    b"GET /small.txt HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", b"GET /small.txt HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n",
    b"GET /small.txt HTTP/1.1\r\nHost: x\r\nX: \x00\r\n\r\n", b"GET /50%.txt HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", b"GET ? HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
]


@pytest.mark.parametrize("data", ODD_REQUESTS)
def test_odd_requests(server: ServerProcess, data: bytes) -> None:
    assert_case(server.port, data, (*ANY_REFUSAL, None))


# answers that must be exact, each once a fault (see tests/test_request_edges.py)

EXACT = [
    (b"GET /small.txt HTTP/2.0\r\nHost: x\r\n\r\n", 505, "both"),
    (b"GET /small.txt HTTP/0.9\r\nHost: x\r\n\r\n", 505, "both"),
    (b"GET /small.txt HTTP/3.0\r\nHost: x\r\n\r\n", 505, "both"),     # a version llhttp does not know
    (b"GET /small.txt\r\n", 400, "both"),                          # HTTP/0.9: at once, not at the header timeout
    (b"FOO /small.txt HTTP/1.1\r\nHost: x\r\n\r\n", 501, "both"),     # a method not recognised
    (b"POST /small.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, "both"),
    (b"POST /small.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n", 501, "both"),
    (b"GET /small.txt HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", 100, "static"),
    (b"POST /small.txt HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", 405, "static"),
    (b"GET /small.txt/ HTTP/1.1\r\nHost: x\r\n\r\n", 404, "static"),
    (b"GET /nested/deeper/../../dir/%2e%2e/small.txt HTTP/1.1\r\nHost: x\r\n\r\n", 200, "static"),  # dot segments removed
    (b"GET /small.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\nRange: bytes=2-3\r\n\r\n", 200, "static"),
]


@pytest.mark.parametrize("data, status, which", EXACT)
def test_exact_answers(server: ServerProcess, app_server: ServerProcess, data: bytes, status: int, which: str) -> None:
    for port in [server.port] + ([app_server.port] if which == "both" else []):
        assert_case(port, data, (status,), good="/small.txt" if port == server.port else "/echo")


# ---------------------------------------------------------------------------------------------
# CRLF into redirects


@pytest.mark.parametrize("target", [
    "/dir?%0d%0aSet-Cookie:%20a=b", "/dir%0d%0aSet-Cookie:%20a=b", "/dir?x=%0aSet-Cookie:a", "/dir?\\r\\nSet-Cookie:a",
    "//evil.example/dir", "/%2f%2fevil.example/dir", "/evil.example/dir",
])
def test_crlf_and_open_redirects_from_the_static_path(server: ServerProcess, target: str) -> None:
    received = assert_case(server.port, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), (301, 400, 404))
    head = received.split(b"\r\n\r\n", 1)[0].lower()
    assert b"\r\nset-cookie" not in head
    location = [line for line in head.split(b"\r\n") if line.startswith(b"location:")]
    assert all(not line[9:].strip().startswith(b"//") for line in location)  # never protocol-relative


@pytest.mark.parametrize("to", ["/x%0d%0aSet-Cookie:%20a=b", "/x%0aSet-Cookie:a", "/x%0dSet-Cookie:a", "/x%00"])
def test_crlf_into_an_app_redirect(app_server: ServerProcess, to: str) -> None:
    received = assert_case(app_server.port, f"GET /redirect?to={to} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
                           (307, 400, 500), good="/echo")
    assert b"\r\nset-cookie" not in received.split(b"\r\n\r\n", 1)[0].lower()


# ---------------------------------------------------------------------------------------------
# range amplification


@pytest.mark.parametrize("value", [
    "bytes=" + ",".join(["0-"] * 16), "bytes=" + ",".join(["0-"] * 17), "bytes=" + ",".join(f"{i}-{i + 1000}" for i in range(16)),
    "bytes=" + ",".join(["-5000000"] * 16), "bytes=0-0," * 15 + "0-0", "bytes=" + ",".join(f"{i * 2}-{i * 2}" for i in range(16)),
    "bytes=1-0", "bytes=99999999999999999999-", "bytes=--1", "bytes=0-99999999999999999999999",
])
def test_range_amplification(server: ServerProcess, docroot, value: str) -> None:
    received = assert_case(server.port, f"GET /large.bin HTTP/1.1\r\nHost: x\r\nRange: {value}\r\n\r\n".encode(),
                           (200, 206, 416))
    assert len(received) <= len(docroot.large) + 16 * 256  # never more than the file and part heads


# ---------------------------------------------------------------------------------------------
# multipart part floods


def multipart(parts: List[bytes]) -> bytes:
    body = b"".join(b"--B\r\n" + part + b"\r\n" for part in parts) + b"--B--\r\n"
    return (b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body


@pytest.mark.parametrize("data", [
    multipart([b'Content-Disposition: form-data; name="f%d"\r\n\r\nv' % i for i in range(1500)]),
    multipart([b'Content-Disposition: form-data; name="f%d"; filename="a"\r\n\r\nv' % i for i in range(1500)]),
    multipart([b'Content-Disposition: form-data; name="f"\r\n' + b"X-A: b\r\n" * 2000 + b"\r\nv"]),
    multipart([b'Content-Disposition: form-data; name="f"\r\n\r\n' + b"v" * 60000]),
    (b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: 9\r\n\r\nnot multi"),
    (b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data\r\nContent-Length: 4\r\n\r\nabcd"),
    (b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 60000\r\n\r\n"
     + b"a=b&" * 15000),
])
def test_multipart_floods(app_server: ServerProcess, data: bytes) -> None:
    assert_case(app_server.port, data, (200, 400, 413), good="/echo")


# ---------------------------------------------------------------------------------------------
# WebSocket protocol violations


def close_code(raw: RawWebSocket) -> Optional[int]:
    try:
        return raw.read_close()[0]
    except (EOFError, ConnectionResetError, socket.timeout):
        return None


@pytest.mark.parametrize("frame, codes", [
    (frame_bytes(0x1, b"unmasked", mask=False), (1002,)),
    (bytes([0x81 | 0x40]) + frame_bytes(0x1, b"rsv")[1:], (1002,)),        # a reserved bit
    (frame_bytes(0x3, b"opcode 3"), (1002,)),                                # an unknown opcode
    (frame_bytes(0x9, b"p" * 126), (1002,)),                                 # a control frame over 125 bytes
    (frame_bytes(0x9, b"ping", fin=False), (1002,)),                         # a fragmented control frame
    (frame_bytes(0x0, b"continuation first"), (1002,)),
    (frame_bytes(0x1, b"\xff\xfe"), (1007,)),                                # text that is not UTF-8
    (frame_bytes(0x8, struct.pack("!H", 999)), (1002,)),                     # a close code no one may send
    (frame_bytes(0x8, b"\x03"), (1002,)),                                    # a one-byte close payload
    (struct.pack("!BBQ", 0x82, 0x80 | 127, 17_000_000) + b"mask", (1009, None)),  # a 17 MB frame announced: head and mask only
], ids=["unmasked", "reserved-bit", "opcode-3", "long-control", "fragmented-control", "continuation-first",
        "bad-utf8", "close-999", "one-byte-close", "17mb-frame"])  # the frames carry random masks
def test_websocket_violations(app_server: ServerProcess, frame: bytes, codes: Tuple[Optional[int], ...]) -> None:
    with RawWebSocket(app_server.port, "/ws") as raw:
        assert raw.status == 101
        raw.sock.sendall(frame)
        assert close_code(raw) in codes
    assert fetch(app_server.port, "/echo").status == 200


@pytest.mark.parametrize("headers, version", [([], "12"), ([("Sec-WebSocket-Extensions", "permessage-deflate; x=\x01")], "13")])
def test_websocket_bad_handshakes(app_server: ServerProcess, headers: list, version: str) -> None:
    with RawWebSocket(app_server.port, "/ws", headers, version=version) as raw:
        assert raw.status in (400, 426)
    assert fetch(app_server.port, "/echo").status == 200
