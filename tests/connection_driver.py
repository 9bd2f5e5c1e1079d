"""One server connection driven by hand: bytes in, bytes out, time moved by the test.

``Driven`` runs an ``HttpProtocol`` of a server serving ``app`` (a ``StaticFiles(answers="static")`` takes the
static fast path, anything else the ASGI bridge) on a ``ClientTransport`` instead of a
socket, inside the test's own running loop (``inprocess.InProcessServer`` keeps a private
one); ASGI apps run between ``settle()`` calls. The transport keeps what the server wrote and can play a client that stops reading:
then it counts the bytes as unread and pauses the server's writing past a high-water mark,
as uvloop's transport does, until ``drain()``. Timeouts are tested by moving the server's
clock with ``tick``, never by sleeping.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, List

from fastserve._speedups.protocol import HttpProtocol
from fastserve.config import Config
from fastserve.server.worker import build_state
from inprocess import RecordingTransport

HIGH_WATER = 64 * 1024  # what the connection sets on real transports


class AnswerCounter:
    """Counts the answers in a stream of writes, walked head to head by each one's
    Content-Length (so the bodies are not scanned, nor kept); an answer may be split across
    writes (a large one goes out a chunk at a time). Every answer must carry a Content-Length."""

    def __init__(self) -> None:
        self.body_left = 0      # bytes of the current answer's body still to come
        self.partial = b""      # the start of a head cut by the end of a write

    def feed(self, data: bytes) -> int:
        """How many answers begin in ``data``."""
        if self.partial:
            data, self.partial = self.partial + data, b""
        count = pos = 0
        while pos < len(data):
            if self.body_left:
                step = min(self.body_left, len(data) - pos)
                pos += step
                self.body_left -= step
                continue
            end = data.find(b"\r\n\r\n", pos)
            if end < 0:
                self.partial = data[pos:]
                break
            assert data.startswith(b"HTTP/1.1 ", pos), f"no response head at {pos}: {data[pos:pos + 40]!r}"
            head = data[pos:end].lower()
            at = head.index(b"\r\ncontent-length:") + len(b"\r\ncontent-length:")
            self.body_left = int(head[at:head.index(b"\r\n", at)] if b"\r\n" in head[at:] else head[at:])
            pos = end + 4
            count += 1
        return count


class ClientTransport(RecordingTransport):
    """A ``RecordingTransport`` whose client can stop reading (``reading_client=False``): what
    is written then stays unread, and past a high-water mark the connection's writing pauses,
    as uvloop's transport does, until ``drain()``."""

    def __init__(self) -> None:
        super().__init__()
        self.reading_client = True
        self.keep = True      # False: count the answers written instead of keeping them
        self.written = 0
        self.heads = 0        # response heads among the writes
        self.counter = AnswerCounter()
        self.unread = 0
        self.writing_paused = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.writes += 1
        self.written += len(data)
        if self.keep:
            self.heads += data.count(b"HTTP/1.1 ")
            self.data += data
        else:
            self.heads += self.counter.feed(bytes(data))
        if not self.reading_client:
            self.unread += len(data)
            if self.unread > HIGH_WATER and not self.writing_paused:
                self.writing_paused = True
                self.protocol.pause_writing()

    def drain(self) -> None:
        """The client reads everything: the buffer empties and writing resumes."""
        self.unread = 0
        if self.writing_paused:
            self.writing_paused = False
            self.protocol.resume_writing()

    def get_write_buffer_size(self) -> int:
        return self.unread

    def is_reading(self) -> bool:
        return self.reading


class Driven:
    """A connection of a server running ``app`` with ``Config(**config)``; use inside a running loop."""

    def __init__(self, app: Any, **config: Any) -> None:
        self.loop = asyncio.get_running_loop()
        self.state = build_state(Config(target=app, **config), app, self.loop)
        self.transport = ClientTransport()
        self.conn = HttpProtocol(self.state, self.loop)
        self.transport.protocol = self.conn
        self.transport.loop = self.loop
        self.conn.connection_made(self.transport)

    @property
    def output(self) -> bytes:
        return bytes(self.transport.data)

    @property
    def closed(self) -> bool:
        return self.transport.closed

    def send(self, data: bytes) -> None:
        if not self.transport.closed:
            self.conn.data_received(data)

    def half_close(self) -> None:
        """The client sends FIN; like uvloop, close the transport if the protocol says so."""
        if not self.conn.eof_received():
            self.transport.close()

    def tick(self, seconds: float) -> None:
        """Move the server's clock forward and run its timeout checks."""
        self.state.tick(self.state.now + seconds)

    async def settle(self, turns: int = 30) -> None:
        """Let the app's tasks run until they wait on something outside."""
        for _ in range(turns):
            await asyncio.sleep(0)

    async def settle_until_closed(self, timeout: float = 5.0) -> None:
        """``settle`` until the connection is closed, for an app whose file is opened and read
        in worker threads (as a ``FileResponse`` does without ``--pathsend``)."""
        deadline = time.monotonic() + timeout
        await self.settle()
        while not self.closed and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
            await self.settle()


def statuses(output: bytes) -> List[int]:
    """The status of every response head in ``output`` (bodies must not look like heads)."""
    found = []
    at = output.find(b"HTTP/1.1 ")
    while at >= 0:
        found.append(int(output[at + 9:at + 12]))
        at = output.find(b"HTTP/1.1 ", at + 12)
    return found


def run(coroutine_function: Any) -> Any:
    """Run a test's ``async def`` body on a fresh event loop."""
    return asyncio.run(coroutine_function())


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock moves only when the test says (``advance``): timers the
    connection sets on the loop itself (a WebSocket session's pings, pong and close
    timeouts) fire when the test moves past them, never by waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = 0.0

    def time(self) -> float:
        return self.clock

    async def advance(self, seconds: float, turns: int = 30) -> None:
        """Move the clock ``seconds`` on, then let what came due run."""
        self.clock += seconds
        for _ in range(turns):
            await asyncio.sleep(0)


def run_on_virtual_clock(coroutine_function: Any) -> Any:
    """Run a test's ``async def`` body on a fresh ``VirtualClockLoop`` (as ``run`` does)."""
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(coroutine_function(loop))
    finally:
        pending = asyncio.all_tasks(loop)  # apps still running are cancelled, as asyncio.run does
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()
