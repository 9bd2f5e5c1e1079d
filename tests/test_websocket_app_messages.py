"""What a WebSocket app sends, as the session takes it (in-process: bytes in, bytes out): the
status of a denial and the buffers a binary message may be given as."""
from __future__ import annotations

import array
import base64
import os
import struct
from typing import Any, List, Tuple

import pytest

from connection_driver import Driven, run, statuses

HANDSHAKE = (
    "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
).encode()


def server_frames(data: bytes) -> List[Tuple[int, bytes]]:
    """(opcode, payload) of each unmasked, uncompressed frame a server wrote in ``data``."""
    frames = []
    while data:
        opcode, length = data[0] & 0x0F, data[1] & 0x7F
        at = 2
        if length == 126:
            (length,), at = struct.unpack("!H", data[2:4]), 4
        elif length == 127:
            (length,), at = struct.unpack("!Q", data[2:10]), 10
        frames.append((opcode, data[at:at + length]))
        data = data[at + length:]
    return frames


def test_a_denial_status_may_be_an_int_subclass() -> None:
    from http import HTTPStatus

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": HTTPStatus.FORBIDDEN, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"no"})

    async def main() -> None:
        driven = Driven(app)
        driven.send(HANDSHAKE)
        await driven.settle()
        assert statuses(driven.output) == [403] and driven.output.endswith(b"\r\n\r\nno")

    run(main)


def test_a_binary_message_may_be_a_bytearray_or_memoryview_of_any_format() -> None:
    """A message is its bytes: a memoryview of int32s went out as as many bytes as it has items
    (the frame layer sized it by len()), 2 of 8; a bytearray the app refills after its send
    returned goes out as it was when sent."""
    ints = array.array("i", [1, 2])

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "bytes": memoryview(ints)})
        buffer = bytearray(b"a" * 300)
        await send({"type": "websocket.send", "bytes": buffer})
        buffer[:] = b"b" * 300
        await send({"type": "websocket.send", "bytes": memoryview(buffer)})
        await receive()

    async def main() -> None:
        driven = Driven(app, ws_per_message_deflate=False, ws_ping_interval=0)
        driven.send(HANDSHAKE)
        await driven.settle()
        head, _, frames = driven.output.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        assert server_frames(frames) == [(2, ints.tobytes()), (2, b"a" * 300), (2, b"b" * 300)]

    run(main)


@pytest.mark.parametrize("data", ["text", 12, [1, 2]])
def test_a_binary_message_that_is_no_bytes_is_refused(data: Any) -> None:
    """The app's send raises TypeError (its failure closes the socket 1011), nothing is sent."""
    seen: List[str] = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        try:
            await send({"type": "websocket.send", "bytes": data})
        except TypeError as exc:
            seen.append(str(exc))
            raise

    async def main() -> None:
        driven = Driven(app, ws_per_message_deflate=False, ws_ping_interval=0)
        driven.send(HANDSHAKE)
        await driven.settle()
        frames = server_frames(driven.output.partition(b"\r\n\r\n")[2])
        assert [opcode for opcode, _ in frames] == [8] and frames[0][1][:2] == struct.pack("!H", 1011)
        assert seen and "websocket.send" in seen[0]

    run(main)


def handshake_fields(output: bytes) -> List[Tuple[str, str]]:
    head = output.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    assert head[0].startswith("HTTP/1.1 101 "), head
    return [(name.lower(), value.strip()) for name, _, value in (line.partition(":") for line in head[1:])]


@pytest.mark.parametrize("subprotocol, app_fields, kept", [
    (None, [(b"Connection", b"close"), (b"upgrade", b"h2c"), (b"sec-websocket-accept", b"bogus"),
            (b"Sec-WebSocket-Extensions", b"foo"), (b"content-length", b"5"), (b"transfer-encoding", b"chunked"),
            (b"x-kept", b"1")], [("x-kept", "1")]),
    ("chat", [(b"sec-websocket-protocol", b"other"), (b"x-kept", b"1")], [("sec-websocket-protocol", "chat"), ("x-kept", "1")]),
    (None, [(b"Sec-WebSocket-Protocol", b"chat")], [("sec-websocket-protocol", "chat")]),  # as uvicorn sends it
])
def test_an_accepts_fields_leave_the_handshakes_own_to_the_server(subprotocol: Any, app_fields: list, kept: list) -> None:
    """A second Upgrade, Connection, Sec-WebSocket-Accept or -Extensions from the app went out
    beside the server's, and the client refused the 101 (websockets: 'invalid Upgrade header',
    'multiple values', 'Unsupported extension'); a 1xx carries no Content-Length or
    Transfer-Encoding (RFC 9110 section 8.6, RFC 9112 section 6.1). The subprotocol key wins
    over a Sec-WebSocket-Protocol field; the field alone is sent, as under uvicorn."""
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept", "subprotocol": subprotocol, "headers": app_fields})
        await receive()

    async def main() -> None:
        driven = Driven(app, ws_per_message_deflate=False, ws_ping_interval=0)
        driven.send(HANDSHAKE.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Protocol: chat\r\n\r\n"))
        await driven.settle()
        fields = handshake_fields(driven.output)
        names = [name for name, _ in fields]
        assert names.count("upgrade") == names.count("connection") == names.count("sec-websocket-accept") == 1
        assert dict(fields)["upgrade"] == "websocket" and dict(fields)["connection"] == "Upgrade"
        for name in ("sec-websocket-extensions", "content-length", "transfer-encoding"):
            assert name not in names
        assert [(name, value) for name, value in fields if name in ("x-kept", "sec-websocket-protocol")] == kept

    run(main)


@pytest.mark.parametrize("offered", [b"", b"Sec-WebSocket-Protocol: chat, superchat\r\n"])
def test_a_subprotocol_the_client_did_not_offer_is_answered_500(offered: bytes, caplog: pytest.LogCaptureFixture) -> None:
    """RFC 6455 section 4.2.2: the server's choice is one of the client's; on any other the
    client fails the connection after the 101 (websockets: 'unsupported subprotocol'), so the
    app's error was the client's to find. It is a 500 before the handshake, and logged."""
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept", "subprotocol": "graphql-ws"})

    async def main() -> None:
        driven = Driven(app, ws_ping_interval=0)
        driven.send(HANDSHAKE.replace(b"\r\n\r\n", b"\r\n" + offered + b"\r\n", 1) if offered else HANDSHAKE)
        await driven.settle()
        assert statuses(driven.output) == [500] and driven.closed, driven.output
        assert "not offered" in caplog.text

    run(main)
