"""The acceptor's batch path, on a real listening socket (the kernel's queue decides what waits).

uvloop takes one queued connection per loop turn; a busy worker with long turns takes the rest
of the queue in one batch, and a worker with short turns leaves them to uvloop.
"""
from __future__ import annotations

import asyncio
import socket
import time
from typing import Any, List

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
        acceptor = Acceptor(loop, lambda: Made(made), listener, 64, None, held)
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
