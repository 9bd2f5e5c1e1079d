"""The read hub (``fastserve._speedups.readhub``): a static root's plain-TCP connections read from
the worker's own epoll set after their first request, on a real listening socket over loopback.

Whatever reads the socket, the client must see the same answers: in order, none lost or doubled,
through split heads, pipelined bursts larger than the hub reads in one turn, paused reading
(a client that does not read), half-closes and resets.
"""
from __future__ import annotations

import asyncio
import socket
import struct
from pathlib import Path
from typing import Any, Awaitable, Callable, Tuple

import uvloop

from fastserve._speedups.protocol import HttpProtocol, ServerState
from fastserve._speedups.readhub import ReadHub
from fastserve.config import Config
from fastserve.server.worker import build_state
from fastserve.staticfiles import StaticFiles

SMALL = b"hello, hub\n"
LARGE = bytes(range(256)) * 4096  # 1 MiB
COPIES = 24  # of LARGE asked for at once: more than loopback's socket buffers hold


Scenario = Callable[[ServerState, ReadHub, Tuple[str, int]], Awaitable[None]]


def serve(tmp_path: Path, scenario: Scenario) -> None:
    """Run ``scenario(state, hub, address)`` against a static root served with a read hub."""
    (tmp_path / "small.txt").write_bytes(SMALL)
    (tmp_path / "large.bin").write_bytes(LARGE)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        app = StaticFiles(directory=tmp_path, answers="static")
        state = build_state(Config(target=app), app, loop)
        hub = ReadHub(loop)
        state.read_hub = hub
        server = await loop.create_server(lambda: HttpProtocol(state, loop), "127.0.0.1", 0)
        try:
            await scenario(state, hub, server.sockets[0].getsockname())
        finally:
            server.close()
            for conn in list(state.connections):
                conn.abort()
            await asyncio.sleep(0)
            hub.close()

    uvloop.run(main())


async def read_answers(reader: asyncio.StreamReader, count: int) -> list:
    """``count`` answers' (status line, body), read by Content-Length."""
    answers = []
    for _ in range(count):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.split(b"\r\n")
        length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length:"))
        answers.append((lines[0], await asyncio.wait_for(reader.readexactly(length), 10)))
    return answers


def get(path: str, *fields: str) -> bytes:
    return ("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path, "".join(f + "\r\n" for f in fields))).encode()


async def until(condition: Callable[[], Any], turns: int = 2000) -> None:
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not reached")


def test_after_its_first_request_a_connection_is_read_by_the_hub_and_answered_the_same(tmp_path: Path) -> None:
    async def scenario(state: ServerState, hub: ReadHub, address: Tuple[str, int]) -> None:
        reader, writer = await asyncio.open_connection(*address)
        writer.write(get("/small.txt"))
        assert await read_answers(reader, 1) == [(b"HTTP/1.1 200 OK", SMALL)]
        assert hub.member_count == 1
        for _ in range(3):
            writer.write(get("/small.txt"))
            assert await read_answers(reader, 1) == [(b"HTTP/1.1 200 OK", SMALL)]
        # A head that arrives a byte at a time (an edge per byte), then one for a missing file.
        for byte in get("/small.txt"):
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0)
        writer.write(get("/missing.txt"))
        assert [status for status, _ in await read_answers(reader, 2)] == [b"HTTP/1.1 200 OK", b"HTTP/1.1 404 Not Found"]
        writer.close()
        await until(lambda: not state.connections)
        assert hub.member_count == 0

    serve(tmp_path, scenario)


def test_a_pipelined_burst_larger_than_one_turns_reads_is_answered_in_full_and_in_order(tmp_path: Path) -> None:
    """More than READS_PER_TURN buffers of requests in one go: the hub reads on in later turns,
    and the connection pauses it while --max-pipeline requests wait; every one is answered."""

    async def scenario(state: ServerState, hub: ReadHub, address: Tuple[str, int]) -> None:
        reader, writer = await asyncio.open_connection(*address)
        writer.write(get("/small.txt"))
        await read_answers(reader, 1)
        one = get("/small.txt", "X-Pad: " + "p" * 200)
        count = (4 * hub.buffer_size) // len(one) + 500
        requests = [one if i % 7 else get("/missing.txt") for i in range(count)]

        async def send_all() -> None:
            writer.write(b"".join(requests))
            await writer.drain()

        sending = asyncio.ensure_future(send_all())
        answers = await read_answers(reader, count)
        await sending
        expected = [b"HTTP/1.1 404 Not Found" if i % 7 == 0 else b"HTTP/1.1 200 OK" for i in range(count)]
        assert [status for status, _ in answers] == expected
        assert all(body == SMALL for status, body in answers if status.endswith(b"OK"))
        writer.write(get("/small.txt"))  # still open, and still read by the hub
        assert await read_answers(reader, 1) == [(b"HTTP/1.1 200 OK", SMALL)]
        assert hub.member_count == 1
        writer.close()

    serve(tmp_path, scenario)


def test_a_client_that_stops_reading_pauses_the_hub_and_is_answered_in_full_once_it_reads(tmp_path: Path) -> None:
    async def scenario(state: ServerState, hub: ReadHub, address: Tuple[str, int]) -> None:
        client = socket.create_connection(address)
        client.sendall(get("/small.txt"))
        loop = asyncio.get_running_loop()
        await until(lambda: hub.member_count == 1)
        client.sendall(get("/large.bin") * COPIES + get("/small.txt"))
        (conn,) = state.connections
        await until(lambda: conn.writing_paused)  # the client reads nothing: the socket is full
        client.setblocking(False)
        received = bytearray()
        while True:
            try:
                chunk = await loop.sock_recv(client, 1 << 20)
            except OSError:
                break
            if not chunk:
                break
            received += chunk
            if received.endswith(SMALL) and received.count(b"HTTP/1.1 200 OK") == COPIES + 2:
                break
        assert received.count(b"HTTP/1.1 200 OK") == COPIES + 2
        assert received.endswith(SMALL) and received.count(LARGE) == COPIES
        client.close()

    serve(tmp_path, scenario)


def test_a_half_close_is_answered_then_closed_and_a_reset_ends_the_connection(tmp_path: Path) -> None:
    async def scenario(state: ServerState, hub: ReadHub, address: Tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        client = socket.create_connection(address)
        client.sendall(get("/small.txt"))
        await until(lambda: hub.member_count == 1)
        client.sendall(get("/small.txt") + get("/missing.txt"))
        client.shutdown(socket.SHUT_WR)  # the FIN comes right behind two requests
        client.setblocking(False)
        received = bytearray()
        while True:
            chunk = await asyncio.wait_for(loop.sock_recv(client, 65536), 10)
            if not chunk:
                break
            received += chunk
        assert received.count(b"HTTP/1.1 200 OK") == 2 and b"HTTP/1.1 404 Not Found" in received
        await until(lambda: not state.connections)
        assert hub.member_count == 0
        client.close()

        reset = socket.create_connection(address)
        reset.sendall(get("/small.txt"))
        await until(lambda: hub.member_count == 1)
        reset.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        reset.close()  # an RST instead of a FIN
        await until(lambda: not state.connections)
        assert hub.member_count == 0

    serve(tmp_path, scenario)


def test_closing_the_hub_stops_watching_its_set(tmp_path: Path) -> None:
    async def scenario(state: ServerState, hub: ReadHub, address: Tuple[str, int]) -> None:
        reader, writer = await asyncio.open_connection(*address)
        writer.write(get("/small.txt"))
        await read_answers(reader, 1)
        assert hub.member_count == 1
        hub.close()
        assert hub.member_count == 0
        hub.ready()  # nothing to read, nothing raised
        writer.close()

    serve(tmp_path, scenario)


class EndsSeen:
    """A ``ServerState.tracer`` that keeps what each connection's ``connection_lost`` was given,
    and raises in the static fast path while ``failing`` is set."""

    def __init__(self) -> None:
        self.lost: list = []
        self.failing = False

    def connection_made(self, conn: Any) -> None:
        pass

    def connection_lost(self, conn: Any, exc: Any) -> None:
        self.lost.append(exc)

    def static_answer(self, conn: Any, *details: Any) -> None:
        if self.failing:
            raise RuntimeError("the fast path broke")

    def refused(self, conn: Any, *details: Any) -> None:
        pass


async def reset_after_one_answer(address: Tuple[str, int]) -> None:
    """A client that reads one answer, then resets (SO_LINGER 0) instead of closing."""
    reader, writer = await asyncio.open_connection(*address)
    writer.write(get("/small.txt"))
    await read_answers(reader, 1)
    await asyncio.sleep(0.05)  # its connection is the hub's by now, where it has one
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def test_a_reset_the_hub_reads_reaches_connection_lost_as_the_transport_gives_it(tmp_path: Path) -> None:
    """uvloop ends a connection whose read fails with that error (connection_lost, the trace
    line): so does the hub, where an abort alone would say the connection ended cleanly."""

    async def scenario(state: ServerState, hub: ReadHub, address: Tuple[str, int]) -> None:
        ends = state.tracer = EndsSeen()
        state.read_hub = None  # read by its transport
        await reset_after_one_answer(address)
        await until(lambda: not state.connections)
        state.read_hub = hub
        await reset_after_one_answer(address)
        await until(lambda: not state.connections)
        assert [type(exc) for exc in ends.lost] == [ConnectionResetError, ConnectionResetError]
        assert hub.member_count == 0

    serve(tmp_path, scenario)


def test_an_error_raised_while_the_hub_reads_is_reported_and_ends_that_connection_alone(tmp_path: Path) -> None:
    async def scenario(state: ServerState, hub: ReadHub, address: Tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        reported: list = []
        loop.set_exception_handler(lambda loop, context: reported.append(context))
        ends = state.tracer = EndsSeen()
        (reader, writer), (other_reader, other_writer) = [await asyncio.open_connection(*address) for _ in range(2)]
        for each_reader, each_writer in ((reader, writer), (other_reader, other_writer)):
            each_writer.write(get("/small.txt"))
            await read_answers(each_reader, 1)
        assert hub.member_count == 2
        ends.failing = True
        writer.write(get("/small.txt"))
        assert await asyncio.wait_for(reader.read(), 10) == b""  # ended, nothing answered
        ends.failing = False
        (context,) = reported
        assert type(context["exception"]) is RuntimeError and context["protocol"] is not None
        await until(lambda: len(ends.lost) == 1)
        assert ends.lost == [context["exception"]]  # connection_lost is told why, as uvloop tells it
        other_writer.write(get("/small.txt"))  # the hub reads the others on
        assert await read_answers(other_reader, 1) == [(b"HTTP/1.1 200 OK", SMALL)]
        assert hub.member_count == 1
        other_writer.close()

    serve(tmp_path, scenario)
