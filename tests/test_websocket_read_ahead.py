"""--ws-max-queue, in-process: how many WebSocket messages a connection reads ahead of an app
that is not receiving, counted message by message on a driven connection (bytes in, the
transport's pause/resume seen directly); and what a message cut into many fragments holds
while it is assembled. That uvloop's transport really stops reading from the
socket when paused is checked over loopback in tests/test_server_websocket.py
(``test_reading_pauses_while_the_app_is_not_receiving``).
"""
from __future__ import annotations

import asyncio
import base64
import os
import zlib
from typing import Any, Dict, List

import pytest

from connection_driver import Driven, run
from test_server_websocket import BINARY, CLOSE, CONT, TEXT, frame_bytes

HANDSHAKE = (
    "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
).encode()


def held_back_app(release: asyncio.Event, received: List[Dict[str, Any]]):
    """Accepts, then receives nothing until ``release`` is set; then records every message
    until the text ``done`` or the disconnect (recorded too)."""
    async def app(scope: Dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await release.wait()
        while True:
            message = await receive()
            if message.get("text") == "done":
                return
            received.append(message)
            if message["type"] == "websocket.disconnect":
                return
    return app


@pytest.mark.parametrize("queue", [1, 8, 24])
def test_ws_max_queue_bounds_the_messages_read_ahead_of_the_app(queue: int) -> None:
    """Reading pauses on the message that fills the queue, not before; when the app receives
    again it resumes once the queue is down to a quarter (at least 1), and nothing sent
    meanwhile is lost or reordered."""
    async def main() -> None:
        release, received = asyncio.Event(), []
        driven = Driven(held_back_app(release, received), ws_max_queue=queue, ws_ping_interval=0,
                        ws_per_message_deflate=False)
        driven.send(HANDSHAKE)
        await driven.settle()
        assert driven.output.startswith(b"HTTP/1.1 101 ")
        transport = driven.transport
        sent = 0
        while transport.reading:  # a client sending as fast as the server reads
            assert sent < queue, f"still reading with {sent} messages waiting (--ws-max-queue {queue})"
            driven.send(frame_bytes(BINARY, sent.to_bytes(4, "big") * 256))
            await driven.settle()
            sent += 1
        assert sent == queue and received == []
        release.set()
        await driven.settle()
        assert transport.reading, "the app took every message, yet reading stayed paused"
        for _ in range(3 * queue):  # the rest, now read as it comes
            driven.send(frame_bytes(BINARY, sent.to_bytes(4, "big") * 256))
            await driven.settle()
            sent += 1
        driven.send(frame_bytes(TEXT, b"done"))
        await driven.settle()
        assert [message["bytes"][:4] for message in received] == [i.to_bytes(4, "big") for i in range(sent)]
        assert all(len(message["bytes"]) == 1024 for message in received)

    run(main)


def test_reading_resumes_at_a_quarter_of_the_queue() -> None:
    """With --ws-max-queue 8 the connection reads again once the app has taken the queue down
    to 2 messages: it does not flap on every message the app takes."""
    async def main() -> None:
        taken: List[bytes] = []
        step = asyncio.Event()

        async def app(scope: Dict[str, Any], receive: Any, send: Any) -> None:
            assert (await receive())["type"] == "websocket.connect"
            await send({"type": "websocket.accept"})
            while True:
                await step.wait()
                step.clear()
                taken.append((await receive())["bytes"])

        driven = Driven(app, ws_max_queue=8, ws_ping_interval=0, ws_per_message_deflate=False)
        driven.send(HANDSHAKE)
        await driven.settle()
        for i in range(8):
            driven.send(frame_bytes(BINARY, bytes([i])))
            await driven.settle()
        assert not driven.transport.reading
        waiting = []
        for _ in range(6):  # the app takes one at a time: 7, 6, ... 2 left
            step.set()
            await driven.settle()
            waiting.append(driven.transport.reading)
        assert waiting == [False] * 5 + [True]
        assert taken == [bytes([i]) for i in range(6)]

    run(main)


ZERO_MASK = b"\0\0\0\0"  # masking is no part of what is measured


@pytest.mark.parametrize("opcode, piece, count", [
    (BINARY, b"\x01", 50_000),
    (TEXT, "é".encode(), 50_000),    # each fragment half a character: valid only whole
    (TEXT, b"", 100_000),           # empty fragments: no size limit sees them
], ids=["binary-1-byte", "text-split-characters", "empty"])
def test_a_message_in_tiny_fragments_holds_about_its_bytes(opcode: int, piece: bytes, count: int) -> None:
    """Fragments were kept one object each until the last: a message of 1-byte fragments held
    ~50 bytes per byte (under --ws-max-size, 16 MiB, that is ~800 MiB), and one of empty
    fragments grew with their count. The message is now gathered into one buffer."""
    import tracemalloc

    async def main() -> None:
        release, received = asyncio.Event(), []
        driven = Driven(held_back_app(release, received), ws_ping_interval=0, ws_per_message_deflate=False)
        driven.send(HANDSHAKE)
        await driven.settle()
        assert driven.output.startswith(b"HTTP/1.1 101 ")
        fragments = [bytes([byte]) for byte in piece] if piece else [b""]
        batch = b"".join(frame_bytes(CONT, fragment, fin=False, mask_key=ZERO_MASK) for fragment in fragments) * 1000
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            driven.send(frame_bytes(opcode, b"", fin=False, mask_key=ZERO_MASK))
            for _ in range(count // 1000):
                driven.send(batch)
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert held < len(piece) * count + 256 * 1024, held
        driven.send(frame_bytes(CONT, b"", mask_key=ZERO_MASK))
        driven.send(frame_bytes(CLOSE, (1000).to_bytes(2, "big"), mask_key=ZERO_MASK))
        release.set()
        await driven.settle()
        message = received[0]
        if opcode == TEXT:
            assert message["text"] == piece.decode() * count
        else:
            assert type(message["bytes"]) is bytes and message["bytes"] == piece * count
        assert received[1]["type"] == "websocket.disconnect" and received[1]["code"] == 1000

    run(main)


@pytest.mark.parametrize("fragments, code", [
    ([b"caf", b"\xc3", b"\xa9"], None),                  # a character across fragments
    ([b"ok", b"\xff", b"never"], 1007),                  # a bad byte mid-message: failed there
    ([b"\xe2\x82"], 1007),                               # a message ending mid-character
], ids=["split-character", "bad-byte", "cut-character"])
def test_fragmented_text_is_checked_as_it_comes(fragments: List[bytes], code: Any) -> None:
    async def main() -> None:
        release, received = asyncio.Event(), []
        driven = Driven(held_back_app(release, received), ws_ping_interval=0, ws_per_message_deflate=False)
        driven.send(HANDSHAKE)
        await driven.settle()
        for index, fragment in enumerate(fragments):
            driven.send(frame_bytes(TEXT if index == 0 else CONT, fragment, fin=index == len(fragments) - 1))
        release.set()
        await driven.settle()
        if code is None:
            assert received[0] == {"type": "websocket.receive", "text": b"".join(fragments).decode()}
        else:
            assert received[0]["type"] == "websocket.disconnect" and received[0]["code"] == code

    run(main)


def deflated_frame(payload: bytes) -> bytes:
    """A client's permessage-deflate message (RFC 7692 section 7.2.1: RSV1, no context
    takeover needed, the final empty block's four bytes taken off)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    frame = frame_bytes(BINARY, data[:-4], mask_key=ZERO_MASK)
    return bytes([frame[0] | 0x40]) + frame[1:]


def message_number(i: int, size: int) -> bytes:
    return i.to_bytes(4, "big") + bytes(size - 4)


@pytest.mark.parametrize("compressed, count, size, bound", [
    # 40 messages of 1 MiB in 40 KiB: the read held all 40 (40 MiB) for an app taking none
    (True, 40, 1024 * 1024 - 1, 7 * 1024 * 1024),
    # 20,000 empty-ish messages in 160 KB: ~6 MB of queued messages from one read
    (False, 20_000, 4, 1024 * 1024),
], ids=["deflate-1MiB-messages", "tiny-messages"])
def test_one_read_queues_no_more_than_ws_max_queue_messages(compressed: bool, count: int, size: int,
                                                            bound: int) -> None:
    """--ws-max-queue bounds the messages one read can queue too: the frame layer is fed a
    slice at a time and the rest of the read waits unparsed, so a connection holds about
    --ws-max-queue x --ws-max-size, not whatever one read's frames decompress to. Nothing is
    lost or reordered, and a close and end of input sent behind the messages are seen after
    them (1000, not 1006)."""
    import tracemalloc

    async def main() -> None:
        release, received = asyncio.Event(), []
        extension = b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n" if compressed else b"\r\n"
        driven = Driven(held_back_app(release, received), ws_max_queue=4, ws_max_size=1024 * 1024,
                        ws_ping_interval=0, ws_per_message_deflate=compressed)
        driven.send(HANDSHAKE[:-2] + extension)
        await driven.settle()
        assert driven.output.startswith(b"HTTP/1.1 101 ")
        assert (b"permessage-deflate" in driven.output) == compressed
        make = deflated_frame if compressed else (lambda payload: frame_bytes(BINARY, payload, mask_key=ZERO_MASK))
        read = b"".join(make(message_number(i, size)) for i in range(count))
        read += frame_bytes(CLOSE, (1000).to_bytes(2, "big"), mask_key=ZERO_MASK)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            driven.send(read)
            await driven.settle()
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert held < bound, f"{held} bytes held after one read of {len(read)}"
        assert not driven.transport.reading
        driven.half_close()
        await driven.settle()
        assert not driven.closed  # the end of input waits behind the messages it follows
        release.set()
        for _ in range(200):
            await driven.settle()
            if received and received[-1]["type"] == "websocket.disconnect":
                break
        assert [m["bytes"] for m in received[:-1]] == [message_number(i, size) for i in range(count)]
        assert received[-1] == {"type": "websocket.disconnect", "code": 1000, "reason": ""}

    run(main)
