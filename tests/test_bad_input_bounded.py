"""Whatever a client sends, a connection answers or closes: never a hang, a desync or
unbounded memory. In-process, bytes in and bytes out (``connection_driver``):

* a framing error after the head (bad chunk size, bad chunk terminator, bare LF, ...) is
  ``400`` + close, and an app reading the body gets ``http.disconnect``;
* a client that half-closes mid-body: the app gets ``http.disconnect``; a body that stalls
  past ``--body-timeout``: ``408`` + close; a body cut into tiny chunks holds about its bytes
  while it waits for the app, not an object per chunk;
* an app whose body disagrees with its own Content-Length: cut or closed, never glued to
  the next response; ``204``/``304`` carry no Content-Length or body on the wire; an app
  streaming a body nothing is written for (HEAD, 204) is suspended at each piece and stops
  when its client leaves;
* pipelined requests for a client that is not reading: the bytes the connection holds stay
  under ``--max-response-buffer``, and every answer still comes, in order, once it reads;
* empty lines before a request count toward ``--header-timeout``;
* HTTP/1.1 without ``Host`` or with two: ``400`` (RFC 9112 §3.2); an absolute-form target's
  authority, which stands for it, is held to the same rule.
"""
from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any, List

import pytest

from connection_driver import Driven, run, statuses
from fastserve.responses import FileResponse
from fastserve.staticfiles import StaticFiles

POST_CHUNKED = b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


class BodyReader:
    """An ASGI app that reads the whole body, records every message, then answers 200."""

    def __init__(self) -> None:
        self.messages: List[dict] = []
        self.returned = False

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        try:
            while True:
                message = await receive()
                self.messages.append(message)
                if message["type"] == "http.disconnect" or not message.get("more_body"):
                    break
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})
        finally:
            self.returned = True

    @property
    def types(self) -> List[str]:
        return [message["type"] for message in self.messages]


# ---------------------------------------------------------------------------------------------
# 1. framing errors after the head


@pytest.mark.parametrize("body", [
    b"zz\r\n",                                 # a chunk size that is not hex
    b"5\r\nabcdeXX0\r\n\r\n",                  # no CRLF after the chunk data
    b"5\r\nabcde\n0\r\n\r\n",                  # a bare LF after the chunk data
    b"5\nabcde\r\n0\r\n\r\n",                  # a bare LF after the size
    b"-5\r\nabcde\r\n",                        # a negative size
    b"ffffffffffffffffffff\r\n",               # a size past 64 bits
    b"5 5\r\nabcde\r\n",                       # a space inside the size
    b"3\r\nabc\r\n0\r\nbad trailer\r\n\r\n",   # a trailer line that is no field
])
def test_a_framing_error_in_a_chunked_body_is_400_and_the_app_sees_a_disconnect(body: bytes) -> None:
    async def main() -> None:
        app = BodyReader()
        driven = Driven(app)
        driven.send(POST_CHUNKED)
        await driven.settle()
        driven.send(body + b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        await driven.settle()
        assert statuses(driven.output) == [400], driven.output
        assert b"connection: close" in driven.output.lower()
        assert driven.closed
        assert app.returned and app.types[-1] == "http.disconnect"

    run(main)


@pytest.mark.parametrize("fields", [
    b"Transfer-Encoding: gzip\r\n",                          # not ending in chunked
    b"Transfer-Encoding: chunked, gzip\r\n",
    b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",  # both framings
    b"Content-Length: 5\r\nContent-Length: 6\r\n",
    b"Content-Length: -1\r\n",
    b"Content-Length: 5x\r\n",
])
def test_request_framing_fields_that_cannot_be_trusted_are_400(fields: bytes) -> None:
    async def main() -> None:
        app = BodyReader()
        driven = Driven(app)
        driven.send(b"POST /upload HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\nabcde")
        await driven.settle()
        assert statuses(driven.output) == [400] and driven.closed
        assert not app.messages  # the app never saw a request whose body it could not be given

    run(main)


def test_a_framing_error_reaches_a_request_queued_behind_another() -> None:
    async def main() -> None:
        app = BodyReader()
        driven = Driven(app)
        driven.send(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n" + POST_CHUNKED + b"zz\r\n")
        await driven.settle()
        assert statuses(driven.output) == [200, 400] and driven.closed

    run(main)


class HeadersSeen(BodyReader):
    """A ``BodyReader`` that also keeps the request's header list as it is once the body is read."""

    headers: List[tuple] = []

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        await super().__call__(scope, receive, send)
        self.headers = list(scope["headers"])


def test_trailer_fields_never_join_the_request_headers() -> None:
    # RFC 9110 section 6.5.1: a trailer is not a header. Merged, "Host: evil" or an
    # "Authorization" sent after the body would reach the app as if the client had sent it first.
    async def main() -> None:
        app = HeadersSeen()
        driven = Driven(app)
        driven.send(POST_CHUNKED + b"3\r\nabc\r\n0\r\nHost: evil\r\nAuthorization: Basic eDp4\r\n\r\n")
        await driven.settle()
        assert statuses(driven.output) == [200] and not driven.closed
        assert app.headers == [(b"host", b"x"), (b"transfer-encoding", b"chunked")]

    run(main)


def test_trailer_fields_never_change_a_static_answer(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"hello")

    async def main() -> None:
        driven = Driven(StaticFiles(directory=tmp_path, answers="static"))
        driven.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"1\r\nz\r\n0\r\nRange: bytes=0-1\r\nIf-None-Match: *\r\n\r\n")
        await driven.settle()
        assert statuses(driven.output) == [200] and driven.output.endswith(b"\r\n\r\nhello")

    run(main)


@pytest.mark.parametrize("body, status", [
    (b"3\r\nabc\r\n0\r\n" + b"X-T: 1\r\n" * 102, 431),                    # more fields than --max-header-count
    (b"3\r\nabc\r\n0\r\nX-T: " + b"a" * 20000, 431),                      # a trailer over --max-header-bytes
    (b"3;" + b"e" * 20000, 400),                                          # a chunk extension over it
    (b"3\r\nabc\r\n" + b"1;" + b"e" * 8000 + b";" + b"e" * 9000, 400),  # in pieces
])
def test_trailers_and_chunk_extensions_are_bounded_like_a_head(body: bytes, status: int) -> None:
    # httptools joins a field's value piece by piece (memory and copying without bound), and a
    # chunk extension is never body progress: both are held to the head's limits.
    async def main() -> None:
        app = BodyReader()
        driven = Driven(app, max_header_bytes=16384, max_header_count=100)
        driven.send(POST_CHUNKED)
        await driven.settle()
        for at in range(0, len(body), 4096):
            driven.send(body[at:at + 4096])
            await driven.settle()
        assert statuses(driven.output) == [status], driven.output
        assert driven.closed and app.returned and app.types[-1] == "http.disconnect"

    run(main)


# ---------------------------------------------------------------------------------------------
# 2. a body cut short: half-close, stall


def test_half_close_mid_body_is_a_disconnect_for_the_app() -> None:
    async def main() -> None:
        app = BodyReader()
        driven = Driven(app)
        driven.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        await driven.settle()
        assert app.messages == [{"type": "http.request", "body": b"abc", "more_body": True}]
        driven.half_close()
        await driven.settle()
        assert app.returned and app.types[-1] == "http.disconnect"
        assert statuses(driven.output) == [400]
        assert driven.closed  # no CLOSE-WAIT

    run(main)


@pytest.mark.parametrize("body", [b"Content-Length: 100\r\n\r\nabc", b"Transfer-Encoding: chunked\r\n\r\n5\r\nab"])
def test_half_close_mid_body_to_a_static_root_is_400(tmp_path: Path, body: bytes) -> None:
    (tmp_path / "a.txt").write_bytes(b"hello")

    async def main() -> None:
        driven = Driven(StaticFiles(directory=tmp_path, answers="static"))
        driven.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n" + body)
        await driven.settle()
        assert statuses(driven.output) == []
        driven.half_close()
        await driven.settle()
        assert statuses(driven.output) == [400]
        assert driven.closed  # no CLOSE-WAIT

    run(main)


def test_a_stalled_body_is_408_after_the_body_timeout() -> None:
    async def main() -> None:
        app = BodyReader()
        driven = Driven(app, body_timeout=5.0, header_timeout=60.0)
        driven.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        await driven.settle()
        for _ in range(4):  # a slow body that keeps coming is not timed out
            driven.tick(4.0)
            driven.send(b"d")
            await driven.settle()
        assert not driven.output and not driven.closed
        driven.tick(5.5)
        await driven.settle()
        assert statuses(driven.output) == [408] and driven.closed
        assert app.types[-1] == "http.disconnect"

    run(main)


def test_a_stalled_body_to_a_static_root_is_408(tmp_path: Path) -> None:
    async def main() -> None:
        driven = Driven(StaticFiles(directory=tmp_path, answers="static"), body_timeout=2.0)
        driven.send(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        driven.tick(2.5)
        assert statuses(driven.output) == [408] and driven.closed

    run(main)


class GatedBodyReader(BodyReader):
    """A ``BodyReader`` that starts reading only once ``gate`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        await self.gate.wait()
        await super().__call__(scope, receive, send)


def chunked_pieces(sizes: List[int], total: int) -> tuple[bytes, bytes]:
    """A chunked body of about ``total`` bytes cut into chunks of ``sizes`` in turn:
    (the framing, the data it carries)."""
    framing, data, index = bytearray(), bytearray(), 0
    while len(data) < total:
        size = sizes[index % len(sizes)]
        piece = bytes([97 + index % 26]) * size
        framing += b"%x\r\n" % size + piece + b"\r\n"
        data += piece
        index += 1
    return bytes(framing), bytes(data)


@pytest.mark.parametrize("sizes", [[2], [7], [600], [1, 2, 3, 2000, 1, 5000, 7]],
                         ids=["2-byte", "7-byte", "600-byte", "mixed"])
def test_a_body_chunked_finely_holds_about_its_bytes_while_the_app_waits(sizes: List[int]) -> None:
    """Body pieces waiting for an app were held one object each, counted by their bytes alone:
    256 KiB of 2-byte chunks (the bound) held 131,072 objects, ~7 MiB a connection. Small
    pieces are now gathered into one buffer, and the app still gets every byte, in order, as
    bytes."""
    import tracemalloc

    async def main() -> None:
        app = GatedBodyReader()
        driven = Driven(app)
        framing, data = chunked_pieces(sizes, 1024 * 1024)
        driven.send(POST_CHUNKED)
        await driven.settle()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            sent = 0
            while driven.transport.reading and sent < len(framing):
                driven.send(framing[sent:sent + 65536])  # what one read brings
                sent += 65536
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert not driven.transport.reading  # the bound was reached: reading paused
        assert held < 1024 * 1024, held  # 256 KiB waiting, and what the last read brought
        app.gate.set()
        for start in range(sent, len(framing), 65536):
            await driven.settle()
            driven.send(framing[start:start + 65536])
        driven.send(b"0\r\n\r\n")
        await driven.settle()
        assert statuses(driven.output) == [200]
        assert all(type(message["body"]) is bytes for message in app.messages)
        assert b"".join(message["body"] for message in app.messages) == data

    run(main)


# ---------------------------------------------------------------------------------------------
# 3. an app's body against its own Content-Length


def answering(status: int, headers: list, *bodies: bytes) -> Any:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["path"] == "/next":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
            await send({"type": "http.response.body", "body": b"next"})
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        for i, body in enumerate(bodies):
            await send({"type": "http.response.body", "body": body, "more_body": i < len(bodies) - 1})
    return app


PIPELINED = b"GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize("declared, bodies, wire_body", [
    (b"5", [b"ok"], b"ok"),                   # short: the connection closes after it
    (b"1", [b"ok"], b"o"),                    # long: cut at the declared length
    (b"4", [b"ab", b"cd", b"ef"], b"abcd"),   # long over several messages
    (b"6", [b"ab", b"cd"], b"abcd"),
])
def test_a_body_that_disagrees_with_its_content_length_never_desynchronises(
    declared: bytes, bodies: list, wire_body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        driven = Driven(answering(200, [(b"content-length", declared)], *bodies))
        driven.send(PIPELINED)
        await driven.settle()
        head, _, body = driven.output.partition(b"\r\n\r\n")
        assert body == wire_body  # and nothing after it: the next response is not glued on
        assert driven.closed
        assert "content-length" in caplog.text

    run(main)


def test_a_body_that_matches_keeps_the_connection() -> None:
    async def main() -> None:
        driven = Driven(answering(200, [(b"content-length", b"4")], b"ab", b"cd"))
        driven.send(PIPELINED)
        await driven.settle()
        assert statuses(driven.output) == [200, 200] and driven.output.endswith(b"next")
        assert not driven.closed

    run(main)


@pytest.mark.parametrize("pathsend", [False, True])
def test_a_file_shorter_than_the_length_an_app_declared_closes_the_connection(tmp_path: Path, pathsend: bool) -> None:
    """An app that declares more than the file it sends holds (by its body, or by pathsend of a
    file that shrank) gets its connection closed after what there is: the next pipelined request
    is never read as the rest of the body."""
    path = tmp_path / "f.txt"
    path.write_bytes(b"1234")

    async def main() -> None:
        async def app(scope: dict, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
            if pathsend:
                await send({"type": "http.response.pathsend", "path": str(path)})
            else:
                await send({"type": "http.response.body", "body": path.read_bytes()})

        driven = Driven(app, pathsend=pathsend)
        driven.send(PIPELINED)
        await driven.settle_until_closed()
        head, _, body = driven.output.partition(b"\r\n\r\n")
        assert b"content-length: 10" in head.lower() and body == b"1234"
        assert driven.closed and statuses(driven.output) == [200]

    run(main)


@pytest.mark.parametrize("pathsend", [False, True])
def test_file_response_with_a_stat_result_larger_than_the_file(tmp_path: Path, pathsend: bool) -> None:
    """A ``FileResponse`` given a stat that no longer describes its file sends the file it opened,
    described as it is: its length, the whole of it, and the connection kept."""
    path = tmp_path / "f.txt"
    path.write_bytes(b"1234")
    larger = os.stat_result((*os.stat(path)[:6], 10, *os.stat(path)[7:]))

    async def main() -> None:
        async def app(scope: dict, receive: Any, send: Any) -> None:
            await FileResponse(path, stat_result=larger)(scope, receive, send)

        driven = Driven(app, pathsend=pathsend)
        driven.send(PIPELINED)
        deadline = time.monotonic() + 5.0  # the file is opened in a worker thread
        while len(statuses(driven.output)) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        head, _, rest = driven.output.partition(b"\r\n\r\n")
        assert b"content-length: 4" in head.lower() and rest.startswith(b"1234HTTP/1.1 200")
        assert not driven.closed and statuses(driven.output) == [200, 200]

    run(main)


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_carry_no_length_or_body(status: int) -> None:
    async def main() -> None:
        driven = Driven(answering(status, [(b"content-length", b"5"), (b"etag", b'"e"')], b"hello"))
        driven.send(PIPELINED)
        await driven.settle()
        first = driven.output[:driven.output.index(b"HTTP/1.1 200")]
        assert first.startswith(b"HTTP/1.1 %d" % status) and first.endswith(b"\r\n\r\n")
        assert b"content-length" not in first.lower() and b"transfer-encoding" not in first.lower()
        assert b"hello" not in driven.output
        assert statuses(driven.output) == [status, 200] and not driven.closed

    run(main)


@pytest.mark.parametrize("status", [100, 101, 103, 199])
def test_an_informational_status_from_an_app_is_a_500_not_an_interim_answer(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    # http.response.start begins the final response: a 1xx there would be read by the client
    # as an interim answer, and the body after it as the head of the final one (a desync).
    async def main() -> None:
        driven = Driven(answering(status, [(b"content-length", b"2")], b"ok"))
        driven.send(PIPELINED)
        await driven.settle()
        assert statuses(driven.output) == [500], driven.output
        assert b"ok" not in driven.output and driven.closed
        assert "status" in caplog.text

    run(main)


@pytest.mark.parametrize("how", ["file gone", "file gone, pathsend", "returned", "started twice",
                                 "body str", "body list", "body int", "body dict"])
def test_an_app_failing_after_its_start_but_before_any_byte_left_is_a_500(tmp_path: Path, how: str) -> None:
    # http.response.start is held until the first body piece: an app that fails or returns in
    # between (a FileResponse whose file went away before it was opened, by the response in a
    # thread or, with --pathsend, by the server) has sent nothing yet. A first body that is no
    # bytes (a str the app forgot to encode) is refused before the held head is framed: the
    # head was taken for the piece and lost with it, so the client got no answer at all.
    gone = tmp_path / "gone.txt"
    gone.write_bytes(b"hello")
    stat = os.stat(gone)
    gone.unlink()

    async def main() -> None:
        async def app(scope: dict, receive: Any, send: Any) -> None:
            if how.startswith("file gone"):
                await FileResponse(gone, stat_result=stat)(scope, receive, send)
                return
            if how.startswith("body "):
                body = {"str": "text", "list": [b"a"], "int": 5, "dict": {}}[how[5:]]
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": body})
                return
            for _ in range(1 if how == "returned" else 2):
                await send({"type": "http.response.start", "status": 200, "headers": []})

        driven = Driven(app, pathsend=how.endswith("pathsend"))
        driven.send(PIPELINED)
        await driven.settle_until_closed()
        assert statuses(driven.output) == [500], driven.output
        assert b"connection: close" in driven.output.lower() and driven.closed

    run(main)


@pytest.mark.parametrize("kind", ["fifo", "directory", "device", "socket"])
def test_pathsend_of_what_is_no_regular_file_is_a_500_and_never_blocks_the_loop(tmp_path: Path, kind: str) -> None:
    """The server opens what an app names with http.response.pathsend on the event loop: a
    FIFO there (put in the place of a file the app had checked, or named by mistake) held the
    worker in open() until a writer came, and a device was read as a file. It is opened
    without waiting and sent only when it is a regular file; anything else fails the app's
    send before any byte left: a 500, the connection closed."""
    import socket
    import threading

    target = tmp_path / kind
    unblock = threading.Event()
    if kind == "fifo":
        os.mkfifo(target)

        def writer() -> None:  # frees an open() that waits for a writer, so a failure cannot hang
            if not unblock.wait(3.0):
                os.close(os.open(target, os.O_WRONLY | os.O_NONBLOCK))

        threading.Thread(target=writer, daemon=True).start()
    elif kind == "directory":
        target.mkdir()
    elif kind == "device":
        target = Path("/dev/zero")
    else:
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(target))

    async def main() -> None:
        async def app(scope: dict, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
            await send({"type": "http.response.pathsend", "path": str(target)})

        driven = Driven(app, pathsend=True)
        started = time.monotonic()
        driven.send(PIPELINED)
        await driven.settle_until_closed()
        assert time.monotonic() - started < 2.0, "the event loop waited in open()"
        assert statuses(driven.output) == [500], driven.output
        assert b"connection: close" in driven.output.lower() and driven.closed

    try:
        run(main)
    finally:
        unblock.set()
        if kind == "socket":
            listener.close()


WS_HANDSHAKE = (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def denying(status: int) -> Any:
    """A WebSocket app that refuses the handshake with an HTTP answer of ``status``."""
    async def app(scope: dict, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.http.response.start", "status": status,
                    "headers": [(b"content-length", b"5")]})
        await send({"type": "websocket.http.response.body", "body": b"hello"})
    return app


@pytest.mark.parametrize("versions, status", [
    ([b"8"], 426), ([b"12"], 426), ([b"14"], 426), ([b"013"], 426), ([b"13, 8"], 426), ([b"13", b"13"], 426),
    ([b" 13 "], 101), ([b"13"], 101), ([], 400),
])
def test_a_websocket_version_other_than_13_is_answered_with_the_one_spoken(versions: List[bytes], status: int) -> None:
    """RFC 6455 section 4.4: a handshake for a version the server does not speak gets one that
    names the version it does (Sec-WebSocket-Version: 13), here 426 Upgrade Required with the
    Upgrade field RFC 9110 section 15.5.22 asks of a 426; the app is never called. The frame
    layer answered 400 without naming it. A handshake naming no version stays 400."""
    called = []

    async def main() -> None:
        async def app(scope: dict, receive: Any, send: Any) -> None:
            called.append(scope["type"])
            assert (await receive())["type"] == "websocket.connect"
            await send({"type": "websocket.accept"})

        driven = Driven(app)
        head = WS_HANDSHAKE.replace(b"Sec-WebSocket-Version: 13\r\n", b"")
        head = head[:-2] + b"".join(b"Sec-WebSocket-Version: %s\r\n" % version for version in versions) + b"\r\n"
        driven.send(head)
        await driven.settle_until_closed() if status != 101 else await driven.settle()
        assert statuses(driven.output) == [status], driven.output
        fields = driven.output.split(b"\r\n\r\n")[0].lower()
        if status == 426:
            assert b"\r\nsec-websocket-version: 13\r\n" in fields and b"\r\nupgrade: websocket\r\n" in fields
            assert b"\r\nconnection: upgrade, close" in fields and driven.closed
            assert called == []
        elif status == 101:
            assert called == ["websocket"]

    run(main)


@pytest.mark.parametrize("status", [100, 101, 103, 600, 999, 0, "403", 403.0])
def test_an_informational_status_in_a_websocket_denial_is_a_500(status: Any) -> None:
    # A 101 would tell the client its handshake succeeded (without Sec-WebSocket-Accept); a
    # 100/103 is interim, so the body after it would be read as the final answer's head. The
    # rest are no final status (RFC 9110 section 15): the rule http.response.start is held to
    # (asgi_cycle.final_status), which the session had a copy of.
    async def main() -> None:
        driven = Driven(denying(status))
        driven.send(WS_HANDSHAKE)
        await driven.settle()
        assert statuses(driven.output) == [500], driven.output
        assert b"hello" not in driven.output and driven.closed

    run(main)


@pytest.mark.parametrize("reason, sent", [
    ("x" * 200, b"x" * 123),
    ("é" * 100, "é".encode() * 61),  # cut between characters, never inside one
    ("bye", b"bye"),
])
def test_a_close_reason_too_long_for_a_frame_is_cut_to_fit(reason: str, sent: bytes) -> None:
    # ASGI lets the reason be any string; a close frame holds 123 bytes of it (RFC 6455 section
    # 5.5): the app's close goes out with its code, not as a 1011 for the app's error.
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4001, "reason": reason})

    async def main() -> None:
        driven = Driven(app, ws_per_message_deflate=False)
        driven.send(WS_HANDSHAKE)
        await driven.settle()
        frame = driven.output[driven.output.index(b"\r\n\r\n") + 4:]
        assert frame[0] == 0x88 and frame[1] == 2 + len(sent), frame
        assert frame[2:4] == (4001).to_bytes(2, "big") and frame[4:] == sent

    run(main)


@pytest.mark.parametrize("status", [204, 304])
def test_a_websocket_denial_of_204_or_304_carries_no_length_or_body(status: int) -> None:
    async def main() -> None:
        driven = Driven(denying(status))
        driven.send(WS_HANDSHAKE)
        await driven.settle()
        assert driven.output.startswith(b"HTTP/1.1 %d " % status), driven.output
        assert driven.output.endswith(b"\r\n\r\n") and b"hello" not in driven.output
        assert b"content-length" not in driven.output.lower()
        assert driven.closed

    run(main)


DROPPED_BODIES = {   # a request, the status the app answers, the body pieces it streams
    "HEAD": (b"HEAD /stream HTTP/1.1\r\nHost: x\r\n\r\n", 200, b"x" * 100),
    "204": (b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n", 204, b"x" * 100),
    "empty-pieces": (b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n", 200, b""),
}


def streaming(status: int, piece: bytes, pieces: int, sent: List[int], ended: List[BaseException],
              gate: Any = None) -> Any:
    """An ASGI app streaming ``pieces`` body pieces (counted in ``sent``), recording in ``ended``
    the exception that stopped it; with ``gate``, once that event is set."""
    async def app(scope: dict, receive: Any, send: Any) -> None:
        if gate is not None:
            await gate.wait()
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
        try:
            for _ in range(pieces):
                await send({"type": "http.response.body", "body": piece, "more_body": True})
                sent[0] += 1
        except BaseException as exc:
            ended.append(exc)
            raise
        await send({"type": "http.response.body", "body": b""})
    return app


@pytest.mark.parametrize("case", list(DROPPED_BODIES))
def test_an_app_streaming_a_body_nothing_is_written_for_lets_the_loop_run(case: str) -> None:
    """``await send(...)`` of a piece that writes nothing (the body of a HEAD answer or a 204,
    an empty piece) completed at once: no client backpressure ever suspends the app, so one
    streaming without end held the worker for good, every other connection with it, and
    could not even hear its own client leave. Such a send now gives the loop a turn."""
    request, status, piece = DROPPED_BODIES[case]

    async def main() -> None:
        sent, ended, seen = [0], [], set()
        driven = Driven(streaming(status, piece, 2000, sent, ended))

        async def other_work() -> None:
            while sent[0] < 2000 and not ended:
                seen.add(sent[0])
                await asyncio.sleep(0)

        other = asyncio.ensure_future(other_work())
        driven.send(request)
        for _ in range(100):
            await driven.settle()
            if sent[0] == 2000:
                break
        await other
        assert sent[0] == 2000 and not ended
        assert len(seen) > 1000, sorted(seen)[:10]  # the loop ran between the app's sends
        assert statuses(driven.output) == [status] and not driven.closed

    run(main)


def test_a_head_answer_streamed_without_end_stops_when_its_client_leaves() -> None:
    """With nothing written, no write ever fails: the client's FIN is the only word that it
    left, and the app's next send raises (ASGI's OSError), so it stops."""
    async def main() -> None:
        sent, ended = [0], []
        driven = Driven(streaming(200, b"x" * 100, 10 ** 6, sent, ended))
        driven.send(DROPPED_BODIES["HEAD"][0])
        await driven.settle()
        assert statuses(driven.output) == [200] and 0 < sent[0] < 10 ** 6
        driven.half_close()
        await driven.settle()
        assert ended and isinstance(ended[0], OSError), ended
        assert sent[0] < 10 ** 6 and driven.closed

    run(main)


def test_an_app_streaming_after_its_request_was_refused_413_stops_when_the_connection_closes(
        caplog: pytest.LogCaptureFixture) -> None:
    """A body over --max-body-size while the app runs is answered 413 on its behalf, and what
    the app sends next is dropped; the connection waited for the app to return before it
    closed, so an app streaming without end held it (and spun) for good. It closes once the
    413 is out, and the app's next send raises (ASGI's OSError), no app error logged."""
    async def main() -> None:
        sent, ended, gate = [0], [], asyncio.Event()
        driven = Driven(streaming(200, b"x", 10 ** 6, sent, ended, gate), max_body_size=10)
        driven.send(POST_CHUNKED)
        await driven.settle()
        driven.send(b"14\r\n" + b"x" * 20 + b"\r\n")
        gate.set()
        await driven.settle()
        assert statuses(driven.output) == [413] and driven.closed
        assert ended and isinstance(ended[0], OSError) and sent[0] < 10 ** 6

    run(main)
    assert "Exception in ASGI application" not in caplog.text


# ---------------------------------------------------------------------------------------------
# 4. pipelined answers for a client that is not reading


@pytest.fixture
def big_file_root(tmp_path: Path) -> Path:
    (tmp_path / "big.bin").write_bytes(bytes(range(256)) * 1024)  # 256 KiB: cached in memory (MEMORY_BODIES)
    return tmp_path


MEMORY_BODIES = 512 * 1024  # --cache-max-file for these tests: answers made whole in memory


@pytest.mark.parametrize("count", [1000, 4000])
def test_pipelined_answers_are_bounded_for_a_client_that_is_not_reading(big_file_root: Path, count: int) -> None:
    limit = 1024 * 1024
    request = b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n"

    async def main() -> None:
        driven = Driven(StaticFiles(directory=big_file_root, answers="static"), max_response_buffer=limit, cache_max_file=MEMORY_BODIES)
        transport = driven.transport
        transport.reading_client = transport.keep = False
        driven.send(request * count)
        # Held: what the transport was given and not read, plus one answer past the bound.
        assert transport.unread <= limit + 2 * 256 * 1024 + 64 * 1024
        assert not transport.reading  # and reading stopped until the client drains
        for _ in range(4 * count):  # (each drain lets about one buffer more go out)
            transport.drain()
            await driven.settle(2)  # requests held back unread are read on the loop's next turn
            if transport.heads == count and not transport.counter.body_left:
                break
            assert transport.unread <= limit + 2 * 256 * 1024 + 64 * 1024
        assert transport.heads == count and not transport.counter.body_left
        transport.drain()  # the last of them read: the connection reads again
        await driven.settle(2)
        assert transport.written % count == 0 and transport.written // count > 256 * 1024  # every answer whole
        assert transport.reading and not driven.closed

    run(main)


def gated_app(gate: asyncio.Event, paths: List[str]) -> Any:
    """Answers each request with its path, once ``gate`` is set."""
    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await gate.wait()
        paths.append(scope["path"])
        body = scope["path"].encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})
    return app


@pytest.mark.parametrize("eof", [False, True], ids=["open", "then-eof"])
def test_requests_past_max_pipeline_wait_as_the_bytes_they_came_in(eof: bool) -> None:
    """A read's requests were all parsed, each held as an exchange waiting for its turn: one
    256 KiB read of short pipelined GETs to an app that was busy made 9,700 of them, 5.7 MiB
    (22 times the read). Past --max-pipeline waiting, the rest of the read now waits unparsed;
    every request is still answered, in order, and a client that sends its FIN after them
    gets every answer before the close."""
    import tracemalloc

    async def main() -> None:
        gate, paths = asyncio.Event(), []
        driven = Driven(gated_app(gate, paths), max_pipeline=64)
        data = b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(8000))
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            driven.send(data[:262144])
            await driven.settle()
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert held < 3 * 262144, held
        assert not driven.transport.reading
        driven.send(data[262144:])  # what the transport hands over after the pause waits too
        if eof:
            driven.half_close()
        gate.set()
        for _ in range(2000):
            await driven.settle()
            if len(paths) == 8000:
                break
        assert paths == ["/%d" % i for i in range(8000)]
        assert statuses(driven.output) == [200] * 8000
        assert driven.closed == eof

    run(main)


def test_max_pipeline_counts_held_answers_too(big_file_root: Path) -> None:
    async def main() -> None:
        driven = Driven(StaticFiles(directory=big_file_root, answers="static"), max_response_buffer=64 * 1024, max_pipeline=1,
                        cache_max_file=MEMORY_BODIES)
        driven.transport.reading_client = False
        driven.send(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n" * 50)
        assert driven.transport.unread < 4 * 256 * 1024

    run(main)


ONE_BUFFER = 64 * 1024 + 128 * 1024 + 1024  # the transport's high-water mark, a chunk past it, a head


async def big_body_app(scope: Any, receive: Any, send: Any) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB from memory
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize("face", ["static", "app"])
def test_a_large_answer_from_memory_is_handed_to_the_transport_a_buffer_at_a_time(big_file_root: Path,
                                                                                   face: str) -> None:
    """Under TLS every byte goes through the transport: an answer from memory (a cached file, an
    encoding made on the fly, an app's body) was handed to it whole, so each client that did not
    read held a copy of it (20 clients of a 20 MB answer: 74 -> 883 MB). It goes a chunk at a
    time now, under the transport's flow control, and arrives whole as the client reads."""
    (big_file_root / "huge.bin").write_bytes(bytes(range(256)) * 4096)  # 1 MiB

    async def main() -> None:
        app: Any = StaticFiles(directory=big_file_root, answers="static") if face == "static" else big_body_app
        driven = Driven(app, cache_max_file=2 << 20)
        assert driven.conn.sock_fd < 0  # no socket: every byte through the transport, as under TLS
        transport = driven.transport
        transport.reading_client = False
        driven.send(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        await driven.settle()
        assert 0 < transport.unread <= ONE_BUFFER
        for _ in range(64):
            transport.drain()
            await driven.settle()
            assert transport.unread <= ONE_BUFFER
        body = driven.output.split(b"\r\n\r\n", 1)[1]
        assert body == bytes(range(256)) * 4096

    run(main)


# ---------------------------------------------------------------------------------------------
# 6. empty lines before a request


def test_empty_lines_count_toward_the_header_timeout(tmp_path: Path) -> None:
    async def main() -> None:
        driven = Driven(StaticFiles(directory=tmp_path, answers="static"), header_timeout=10.0, keepalive_timeout=60.0)
        for _ in range(5):
            driven.send(b"\r\n")
            driven.tick(2.0)
        assert not driven.closed
        driven.send(b"\r\n")
        driven.tick(2.5)
        assert statuses(driven.output) == [408] and driven.closed

    run(main)


def test_the_header_timeout_starts_after_the_previous_answer(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"a")

    async def main() -> None:
        driven = Driven(StaticFiles(directory=tmp_path, answers="static"), header_timeout=10.0, keepalive_timeout=60.0)
        driven.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        driven.tick(30.0)  # idle: the keep-alive timeout applies, not the header one
        assert not driven.closed
        driven.send(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n")
        driven.tick(6.0)
        driven.send(b"X-Slow: 1\r\n")  # a byte now and then does not restart the clock
        driven.tick(5.0)
        assert statuses(driven.output) == [200, 408] and driven.closed

    run(main)


# ---------------------------------------------------------------------------------------------
# 8. Host


@pytest.mark.parametrize("head, status", [
    (b"GET /a.txt HTTP/1.1\r\n\r\n", 400),
    (b"GET /a.txt HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    (b"GET /a.txt HTTP/1.1\r\nhost: x\r\nHOST: x\r\n\r\n", 400),
    (b"GET /a.txt HTTP/1.0\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    (b"GET /a.txt HTTP/1.1\r\nX-Odd: \x80\r\n\r\n", 400),        # read by httptools, not the scanner
    (b"get /a.txt HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    (b"GET /a.txt HTTP/1.0\r\n\r\n", 200),
    (b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n", 200),
    # a Host value that is no uri-host [":" port] (RFC 9112 section 3.2: 400), in either reader
    (b"GET /a.txt HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    (b"GET /a.txt HTTP/1.1\r\nHost: x/y\r\n\r\n", 400),
    (b"GET /a.txt HTTP/1.1\r\nHost: [::1\r\n\r\n", 400),
    (b"GET /a.txt HTTP/1.1\r\nHost: x:abc\r\n\r\n", 400),
    (b"GET /a.txt HTTP/1.0\r\nHost: x:8080:1\r\n\r\n", 400),
    (b"GET /a.txt HTTP/1.1\r\nHost: a b\r\nUpgrade: x\r\n\r\n", 400),   # read by httptools
    (b"GET /a.txt HTTP/1.1\r\nHost: [::1]:8000\r\n\r\n", 200),
    (b"GET /a.txt HTTP/1.1\r\nHost: Example.COM.:80\r\n\r\n", 200),
    (b"GET /a.txt HTTP/1.1\r\nHost: \r\n\r\n", 200),                      # empty: a target without authority
    (b"GET /a.txt HTTP/1.1\r\nHost: [::1]:8000\r\nUpgrade: x\r\n\r\n", 200),
])
@pytest.mark.parametrize("server", ["static", "asgi"])
def test_http11_needs_exactly_one_host(tmp_path: Path, head: bytes, status: int, server: str) -> None:
    (tmp_path / "a.txt").write_bytes(b"a")
    app = StaticFiles(directory=tmp_path, answers="static") if server == "static" else answering(200, [(b"content-length", b"1")], b"a")

    async def main() -> None:
        driven = Driven(app)
        driven.send(head)
        await driven.settle()
        got = statuses(driven.output)
        if head.startswith(b"get "):
            assert got == [501]  # methods are case-sensitive: a token not recognised (RFC 9110 section 9.1)
        else:
            assert got == [status], driven.output
        if status == 400:
            assert driven.closed

    run(main)


@pytest.mark.parametrize("target, status, path", [
    (b"http://[::1/a.txt", 400, None),             # a broken IP literal
    (b"http://user:secret@x/a.txt", 400, None),    # userinfo (RFC 9110 section 4.2.4)
    (b"http:///a.txt", 400, None),                 # an empty host (RFC 9110 section 4.2.1)
    (b"http://x y/a.txt", 400, None),
    (b"http://[::1]:8000/a.txt", 200, "/a.txt"),
    (b"http://x?to=/a.txt", 200, "/"),             # a slash in the query was taken for the path
])
@pytest.mark.parametrize("server", ["static", "asgi"])
def test_the_authority_of_an_absolute_form_target_is_held_to_hosts_rule(tmp_path: Path, target: bytes, status: int,
                                                                        path: Any, server: str) -> None:
    """It stands for the Host field (RFC 9112 section 3.2.2), yet any authority was taken: a
    request Host would have refused went through, on the fast path and to apps alike."""
    (tmp_path / "a.txt").write_bytes(b"a")
    paths: List[str] = []

    async def asgi(scope: dict, receive: Any, send: Any) -> None:
        paths.append(scope["path"])
        await answering(200, [(b"content-length", b"1")], b"a")(scope, receive, send)

    async def main() -> None:
        driven = Driven(StaticFiles(directory=tmp_path, answers="static") if server == "static" else asgi)
        driven.send(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target)
        await driven.settle()
        if server == "asgi":
            assert statuses(driven.output) == [status], driven.output
            assert paths == ([] if path is None else [path])
        else:  # "/" is a directory StaticFiles shows nothing for: 404
            assert statuses(driven.output) == [404 if path == "/" else status], driven.output

    run(main)


def test_a_body_too_large_for_a_pipelined_request_is_refused_after_the_answers_before_it() -> None:
    # The 413 for a request still queued behind another response waits its turn: written at
    # once, it would land inside (or before) the earlier response and desynchronise the client.
    async def main() -> None:
        release = asyncio.Event()

        async def app(scope: dict, receive: Any, send: Any) -> None:
            if scope["path"] == "/slow":
                await release.wait()
            else:
                while (await receive()).get("more_body"):
                    pass
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})

        driven = Driven(app, max_body_size=10)
        driven.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n" + POST_CHUNKED + b"14\r\n" + b"x" * 20 + b"\r\n")
        await driven.settle()
        assert driven.output == b"", driven.output
        release.set()
        await driven.settle()
        assert statuses(driven.output) == [200, 413], driven.output
        assert driven.closed

    run(main)


@pytest.mark.parametrize("target, path, query", [
    (b"/a.txt#frag", "/a.txt", b""),
    (b"/a.txt?x=1#frag?y=2", "/a.txt", b"x=1"),
    (b"http://example.com/a.txt#f", "/a.txt", b""),
])
@pytest.mark.parametrize("reader", ["scanner", "httptools"])
def test_a_fragment_in_the_target_is_dropped(tmp_path: Path, target: bytes, path: str, query: bytes,
                                             reader: str) -> None:
    """RFC 9112 section 3.2: a request-target has no fragment; one sent anyway is ignored (nginx,
    uvicorn), not looked up as part of the file name or handed to the app as part of its path."""
    (tmp_path / "a.txt").write_bytes(b"a")
    seen = []

    async def app(scope, receive, send) -> None:
        seen.append((scope["path"], scope["raw_path"], scope["query_string"]))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    extra = b"" if reader == "scanner" else b"Upgrade: x\r\n"  # an Upgrade field leaves the head to httptools
    head = b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n"

    async def main() -> None:
        for served in (StaticFiles(directory=tmp_path, answers="static"), app):
            driven = Driven(served)
            driven.send(head)
            await driven.settle()
            assert statuses(driven.output) == [200], driven.output
        assert seen == [(path, path.encode(), query)]

    run(main)
