"""WebSocket frames no client may send, to ``python -m fastserve module:app`` running a Starlette
app whose endpoints echo or never read: each gets the close code RFC 6455 section 7.4.1 names
(1002 protocol error, 1007 data that is not UTF-8, 1009 too big), the TCP connection ends, an
app that reads sees that code, and the worker goes on serving. Over loopback with a raw socket (the frames
are the ones a browser never sends). The corpus (tests/test_attack_corpus.py) holds the first of
each kind; these are the siblings: every reserved opcode and bit, lengths up to 2^64 - 1, the
continuation rules, UTF-8 split across fragments, the close codes and reasons a client may not
send.
"""
from __future__ import annotations

import struct
from typing import Iterator

import pytest

from server_helpers import ServerProcess, fetch, running_app_module
from test_server_websocket import RawWebSocket, frame_bytes

APP = '''
import asyncio

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

ENDED = []


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                ENDED.append(message["code"])
                return
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            else:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect as exc:
        ENDED.append(exc.code)


async def idle(websocket: WebSocket) -> None:
    await websocket.accept()
    await asyncio.sleep(3600)


async def ended(request):
    return PlainTextResponse(" ".join(str(code) for code in ENDED))


app = Starlette(routes=[WebSocketRoute("/echo", echo), WebSocketRoute("/idle", idle), Route("/ended", ended)])
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # An idle endpoint never learns its client went (it never calls receive, as under any ASGI
    # server): at the stop it is cancelled after --graceful-timeout.
    with running_app_module(tmp_path_factory.mktemp("ws_abuse"), "ws_abuse_app", APP,
                            ["--ws-ping-interval", "0", "--graceful-timeout", "1"]) as srv:
        yield srv


def close_frame(code: int, reason: bytes = b"") -> bytes:
    return frame_bytes(0x8, struct.pack("!H", code) + reason)


def announced(length: int) -> bytes:
    """The head of a masked binary frame announcing ``length`` bytes (64-bit length), and its mask."""
    return struct.pack("!BBQ", 0x82, 0x80 | 127, length) + b"mask"


VIOLATIONS = {
    # (frames, the close code the server must answer)
    "opcode-4": (frame_bytes(0x4, b"x"), 1002),
    "opcode-7": (frame_bytes(0x7, b"x"), 1002),
    "opcode-b": (frame_bytes(0xB, b"x"), 1002),
    "opcode-f": (frame_bytes(0xF, b"x"), 1002),
    "rsv2": (bytes([0x81 | 0x20]) + frame_bytes(0x1, b"x")[1:], 1002),
    "rsv3": (bytes([0x81 | 0x10]) + frame_bytes(0x1, b"x")[1:], 1002),
    "fragmented-close": (frame_bytes(0x8, struct.pack("!H", 1000), fin=False), 1002),
    "fragmented-pong": (frame_bytes(0xA, b"x", fin=False), 1002),
    "continuation-after-a-whole-message": (frame_bytes(0x1, b"a") + frame_bytes(0x0, b"b"), 1002),
    "text-inside-a-fragmented-message": (frame_bytes(0x1, b"a", fin=False) + frame_bytes(0x1, b"b"), 1002),
    "binary-inside-a-fragmented-message": (frame_bytes(0x2, b"a", fin=False) + frame_bytes(0x2, b"b"), 1002),
    "length-2^63": (announced(1 << 63), 1009),
    "length-2^64-1": (announced((1 << 64) - 1), 1009),
    "length-2^63-1": (announced((1 << 63) - 1), 1009),
    "utf8-broken-across-fragments": (frame_bytes(0x1, b"\xe2\x82", fin=False) + frame_bytes(0x0, b"\xff"), 1007),
    "utf8-surrogate": (frame_bytes(0x1, b"\xed\xa0\x80"), 1007),
    "utf8-overlong": (frame_bytes(0x1, b"\xc0\xaf"), 1007),
    "close-reason-not-utf8": (close_frame(1000, b"\xff\xfe"), 1007),
    "close-1004": (close_frame(1004), 1002),
    "close-1005": (close_frame(1005), 1002),  # "no status": never sent in a frame (RFC 6455 section 7.4.1)
    "close-1006": (close_frame(1006), 1002),  # "abnormal closure": likewise
    "close-1015": (close_frame(1015), 1002),  # "TLS handshake": likewise
    "close-1016": (close_frame(1016), 1002),
    "close-2999": (close_frame(2999), 1002),
    "close-5000": (close_frame(5000), 1002),
    "close-999": (close_frame(999), 1002),
}


@pytest.mark.parametrize("name", sorted(VIOLATIONS))
@pytest.mark.parametrize("path", ["/echo", "/idle"])
def test_a_frame_no_client_may_send_gets_its_close_code(server: ServerProcess, name: str, path: str) -> None:
    frames, code = VIOLATIONS[name]
    with RawWebSocket(server.port, path) as raw:
        assert raw.status == 101
        raw.sock.sendall(frames)
        assert raw.read_close()[0] == code
        assert raw.wait_eof(timeout=5.0), "the server kept the connection after its close"
    assert fetch(server.port, "/ended").status == 200


@pytest.mark.parametrize("code", [1000, 1001, 3000, 4999])
def test_a_close_code_a_client_may_send_is_answered_with_it(server: ServerProcess, code: int) -> None:
    with RawWebSocket(server.port, "/echo") as raw:
        raw.sock.sendall(close_frame(code, b"bye"))
        assert raw.read_close()[0] == code
        assert raw.wait_eof(timeout=5.0)


def test_utf8_split_across_fragments_is_one_text_message(server: ServerProcess) -> None:
    with RawWebSocket(server.port, "/echo") as raw:
        raw.sock.sendall(frame_bytes(0x1, b"\xe2\x82", fin=False) + frame_bytes(0x9, b"mid")
                         + frame_bytes(0x0, b"\xac"))
        frames = [raw.read_frame(), raw.read_frame()]
        assert (True, 0xA, b"mid") in frames and (True, 0x1, "\u20ac".encode()) in frames


@pytest.mark.parametrize("frames, code", [(frame_bytes(0x3, b"x"), 1002), (frame_bytes(0x1, b"\xff"), 1007),
                                          (announced(1 << 63), 1009)], ids=["opcode-3", "not-utf8", "2^63"])
def test_the_app_reading_sees_the_code_the_server_closed_with(server: ServerProcess, frames: bytes,
                                                             code: int) -> None:
    """The echo endpoint's next receive is the disconnect, with the code sent to the client."""
    with RawWebSocket(server.port, "/echo") as raw:
        raw.sock.sendall(frames)
        assert raw.read_close()[0] == code
        assert raw.wait_eof(timeout=5.0)
    ended = fetch(server.port, "/ended").body.decode().split()
    assert ended[-1] == str(code), ended
