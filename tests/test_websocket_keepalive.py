"""WebSocket keepalive, in-process on a virtual clock: pings every --ws-ping-interval, a pong
with the ping's payload earns the next one, and a ping unanswered for --ws-ping-timeout
closes the connection with 1011.

The session's timers run on the event loop, so the loop's clock is moved (``advance``)
instead of waiting: each rule is checked at the exact second it is due and just before.
"""
from __future__ import annotations

import base64
import os
import struct
from typing import Any, Dict, List, Tuple

from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.protocol import OPEN
from websockets.uri import parse_uri

from connection_driver import Driven, VirtualClockLoop, run_on_virtual_clock
from test_server_websocket import CLOSE, PING, PONG, TEXT, frame_bytes

INTERVAL = 20.0  # --ws-ping-interval
TIMEOUT = 10.0   # --ws-ping-timeout

Frame = Tuple[bool, int, bytes]


def echo_app(seen: List[Dict[str, Any]]):
    """Echoes text; records the disconnect message in ``seen``."""
    async def app(scope, receive, send):
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                seen.append(message)
                return
            await send({"type": "websocket.send", "text": message["text"]})
    return app


class Session:
    """An accepted WebSocket on a driven connection, with the server's frames parsed."""

    def __init__(self, seen: List[Dict[str, Any]]) -> None:
        self.driven = Driven(echo_app(seen), ws_ping_interval=INTERVAL, ws_ping_timeout=TIMEOUT,
                             ws_per_message_deflate=False)
        self.taken = 0

    async def open(self, handshake: bytes = b"") -> None:
        if not handshake:
            key = base64.b64encode(os.urandom(16)).decode()
            handshake = (f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
        self.driven.send(handshake)
        await self.driven.settle()
        head_end = self.driven.output.index(b"\r\n\r\n") + 4
        assert self.driven.output.startswith(b"HTTP/1.1 101 "), self.driven.output
        self.taken = head_end

    def fresh(self) -> bytes:
        """What the server wrote since the last call."""
        data = self.driven.output[self.taken:]
        self.taken = len(self.driven.output)
        return data

    def frames(self) -> List[Frame]:
        return server_frames(self.fresh())

    async def send(self, opcode: int, payload: bytes) -> None:
        self.driven.send(frame_bytes(opcode, payload))
        await self.driven.settle()


def server_frames(data: bytes) -> List[Frame]:
    """(fin, opcode, payload) of each whole, unmasked server frame in ``data``."""
    frames: List[Frame] = []
    at = 0
    while at < len(data):
        first, second = data[at], data[at + 1]
        assert not second & 0x80, "a server frame must not be masked"
        length, at = second & 0x7F, at + 2
        if length == 126:
            (length,), at = struct.unpack_from("!H", data, at), at + 2
        elif length == 127:
            (length,), at = struct.unpack_from("!Q", data, at), at + 8
        frames.append((bool(first & 0x80), first & 0x0F, bytes(data[at:at + length])))
        at += length
    assert at == len(data), "a partial frame"
    return frames


def close_code(frame: Frame) -> Tuple[int, str]:
    assert frame[1] == CLOSE, frame
    return struct.unpack("!H", frame[2][:2])[0], frame[2][2:].decode()


def test_pongs_with_the_ping_payload_earn_the_next_ping_and_the_connection_stays() -> None:
    async def main(loop: VirtualClockLoop) -> None:
        seen: List[Dict[str, Any]] = []
        session = Session(seen)
        await session.open()
        for _ in range(3):
            await loop.advance(INTERVAL - 0.1)
            assert session.frames() == []  # not before the interval
            await loop.advance(0.1)
            [(fin, opcode, payload)] = session.frames()
            assert (fin, opcode, len(payload)) == (True, PING, 4)
            await loop.advance(TIMEOUT - 0.1)  # answered just in time
            await session.send(PONG, payload)
            assert session.frames() == []
        await loop.advance(TIMEOUT)  # past the last ping's timeout: it was answered, so no close
        assert session.frames() == []
        await session.send(TEXT, b"alive")
        assert session.frames() == [(True, TEXT, b"alive")]
        assert not session.driven.closed and seen == []

    run_on_virtual_clock(main)


def test_a_websockets_client_answers_the_pings_and_keeps_the_connection() -> None:
    """The ``websockets`` library's own client protocol (sans-I/O) on the other end."""
    async def main(loop: VirtualClockLoop) -> None:
        client = ClientProtocol(parse_uri("ws://127.0.0.1/ws"))
        client.send_request(client.connect())
        session = Session([])
        await session.open(b"".join(client.data_to_send()))
        client.receive_data(session.driven.output)  # the 101
        [response] = client.events_received()
        assert response.status_code == 101 and client.state is OPEN
        pings = 0
        for _ in range(3):
            await loop.advance(INTERVAL)
            client.receive_data(session.fresh())
            pings += sum(event.opcode is Opcode.PING for event in client.events_received())
            session.driven.send(b"".join(client.data_to_send()))  # the client's pong
            await session.driven.settle()
            await loop.advance(TIMEOUT / 2)
        assert pings == 3
        await loop.advance(TIMEOUT)
        client.send_text(b"still here")
        session.driven.send(b"".join(client.data_to_send()))
        await session.driven.settle()
        client.receive_data(session.fresh())
        [message] = client.events_received()
        assert (message.opcode, message.data) == (Opcode.TEXT, b"still here")
        assert client.state is OPEN and not session.driven.closed

    run_on_virtual_clock(main)


def test_client_that_never_pongs_is_closed_with_1011() -> None:
    async def main(loop: VirtualClockLoop) -> None:
        seen: List[Dict[str, Any]] = []
        session = Session(seen)
        await session.open()
        await loop.advance(INTERVAL)
        [(_, opcode, _)] = session.frames()
        assert opcode == PING
        await loop.advance(TIMEOUT - 0.1)
        assert session.frames() == [] and seen == []  # not before the timeout
        await loop.advance(0.1)
        [close] = session.frames()
        code, reason = close_code(close)
        assert code == 1011 and "ping" in reason
        assert seen and seen[0]["code"] == 1011  # the app hears of it

    run_on_virtual_clock(main)


def test_wrong_pong_payload_does_not_count() -> None:
    async def main(loop: VirtualClockLoop) -> None:
        session = Session([])
        await session.open()
        await loop.advance(INTERVAL)
        [(_, opcode, payload)] = session.frames()
        assert opcode == PING
        await session.send(PONG, b"nope")
        await loop.advance(TIMEOUT)
        [close] = session.frames()
        assert close_code(close)[0] == 1011

    run_on_virtual_clock(main)
