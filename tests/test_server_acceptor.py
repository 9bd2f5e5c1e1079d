"""The acceptor's batch path, on a real listening socket (the kernel's queue decides what waits).

uvloop takes one queued connection per loop turn; a busy worker with long turns takes the rest
of the queue in one batch, and a worker with short turns leaves them to uvloop.
"""
from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Any, List

import pytest
import uvloop

from fastserve.server import acceptor as acceptor_module
from fastserve.server.acceptor import Acceptor


class Made(asyncio.Protocol):
    def __init__(self, made: List[Any]) -> None:
        self.made = made

    def connection_made(self, transport: Any) -> None:
        self.made.append(transport)


def queued_connections(long_turn: bool, busy: bool, clients: int = 12) -> int:
    """Connections the batch path took from a queue of ``clients`` (uvloop's own path not started)."""

    async def scenario() -> int:
        loop = asyncio.get_running_loop()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.setblocking(False)
        made: List[Any] = []
        held = [object()] * (acceptor_module.BATCH_ABOVE if busy else 1)
        acceptor = Acceptor(loop, lambda sock_fd=-1: Made(made), listener, 64, None, held)
        acceptor._watch()  # only the batch path: uvloop's server would take one per turn as well
        sockets = [socket.create_connection(listener.getsockname()) for _ in range(clients)]
        try:
            acceptor.seen = time.monotonic() - (0.05 if long_turn else 0.0)
            acceptor._take_batch()
            for _ in range(5):  # let the hand-overs make their transports
                await asyncio.sleep(0)
            return len(made)
        finally:
            acceptor._unwatch()
            for transport in made:
                transport.close()
            for client in sockets:
                client.close()
            listener.close()

    return uvloop.run(scenario())


def test_a_busy_worker_with_long_turns_takes_the_whole_queue_at_once() -> None:
    assert queued_connections(long_turn=True, busy=True) == 12


def test_short_turns_or_few_connections_leave_accepting_to_uvloop() -> None:
    assert queued_connections(long_turn=False, busy=True) == 0
    assert queued_connections(long_turn=True, busy=False) == 0


def test_a_connection_the_batch_path_takes_is_served_and_keeps_no_socket_object(tmp_path) -> None:
    """The transport gets the bare descriptor and the protocol is told it: neither keeps a
    socket object for it (about 160 bytes per idle connection), the answer goes out by the
    protocol's own send, and closing the transport closes the descriptor once."""
    import gc
    import os

    from fastserve._speedups.protocol import HttpProtocol
    from fastserve.config import Config
    from fastserve.server.worker import build_state
    from fastserve.staticfiles import StaticFiles

    (tmp_path / "a.txt").write_bytes(b"hello\n")

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        app = StaticFiles(directory=tmp_path, answers="static")
        state = build_state(Config(target=app), app, loop)
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.setblocking(False)
        held = [object()] * acceptor_module.BATCH_ABOVE
        acceptor = Acceptor(loop, lambda sock_fd=-1: HttpProtocol(state, loop, sock_fd), listener, 64, None, held)
        acceptor._watch()
        client = socket.create_connection(listener.getsockname())
        try:
            acceptor.seen = time.monotonic() - 0.05
            acceptor._take_batch()
            for _ in range(5):
                await asyncio.sleep(0)
            (conn,) = state.connections
            fd = conn.sock_fd
            assert fd >= 0 and os.fstat(fd)
            kept = gc.get_referents(conn.transport)
            assert [type(o).__name__ for o in kept if isinstance(o, int) and o == fd] == ["AcceptedSocket"]
            assert not any(isinstance(o, socket.socket) or type(o).__name__ == "PseudoSocket" for o in kept)
            client.sendall(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while not answer.endswith(b"hello\n"):
                await asyncio.sleep(0.001)
                try:
                    answer += client.recv(4096, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    pass
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and not conn.transport_holds_data
            client.shutdown(socket.SHUT_WR)  # the server shut its side after the answer, and lingers until this
            for _ in range(5):  # the close reaches the transport and connection_lost
                await asyncio.sleep(0)
            assert not state.connections
            with pytest.raises(OSError):
                os.fstat(fd)  # closed by the transport
            other = socket.socket()
            if other.fileno() != fd:
                os.dup2(other.fileno(), fd)  # the number is reused by a new connection
            try:
                del conn, kept
                gc.collect()  # the old transport and its AcceptedSocket go; the new one stays open
                assert os.fstat(fd)
            finally:
                if other.fileno() != fd:
                    os.close(fd)
                other.close()
        finally:
            acceptor._unwatch()
            client.close()
            listener.close()

    uvloop.run(scenario())


@pytest.mark.parametrize("sent", ["nothing", "half a ClientHello", "a ClientHello"])
def test_a_tls_client_that_never_finishes_its_handshake_is_closed(monkeypatch, tmp_path, sent) -> None:
    """uvloop would wait 60 s; the acceptor gives a handshake ``TLS_HANDSHAKE_TIMEOUT``, whether
    the client stalls before its first byte, half way through its ClientHello, or after it (the
    server's flight sent, the client's never coming)."""
    trustme = pytest.importorskip("trustme")
    import ssl

    monkeypatch.setattr(acceptor_module, "TLS_HANDSHAKE_TIMEOUT", 0.3)
    cert = trustme.CA().issue_cert("127.0.0.1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.check_hostname, client_context.verify_mode = False, ssl.CERT_NONE
    outgoing = ssl.MemoryBIO()
    with pytest.raises(ssl.SSLWantReadError):
        client_context.wrap_bio(ssl.MemoryBIO(), outgoing).do_handshake()
    hello = outgoing.read()
    first_bytes = {"nothing": b"", "half a ClientHello": hello[:len(hello) // 2], "a ClientHello": hello}[sent]

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        made: List[Any] = []
        acceptor = Acceptor(loop, lambda sock_fd=-1: Made(made), listener, 8, context, [])
        await acceptor.start()
        client = socket.create_connection(listener.getsockname())
        client.sendall(first_bytes)
        client.setblocking(False)
        started = loop.time()
        try:
            while loop.time() - started < 5.0:
                try:
                    if client.recv(65536) == b"":
                        break
                except BlockingIOError:
                    pass
                except ConnectionResetError:
                    break
                await asyncio.sleep(0.05)
            return loop.time() - started
        finally:
            client.close()
            queue = acceptor.close_keeping_queue()
            if queue >= 0:
                os.close(queue)

    waited = uvloop.run(scenario())
    assert waited < 3.0
