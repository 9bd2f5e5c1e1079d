"""Taking connections from the listening socket: fairly under load, and never past the open-file limit.

uvloop's server (libuv) accepts one connection per turn of the event loop. On a worker whose
turns are long (a saturated core serving hundreds of connections) that leaves clients in the
kernel's queue for seconds while the connections already accepted are served many times over.
The ``Acceptor`` watches a duplicate of the listening descriptor as well and, while the worker
holds ``BATCH_ABOVE`` connections and its turns are long (the queue was last seen non-empty
between ``LONG_TURN`` and a second ago), takes up to ``BATCH`` queued ones per turn itself.
Short turns leave accepting to uvloop, whose own path costs less per connection. A connection
the batch path takes keeps no socket object: uvloop's transport is given its descriptor (an
``AcceptedSocket``), and the protocol is told the descriptor, so it asks for no socket either.

Near the open-file limit (``fastserve.server.limits``) it stops accepting altogether, keeping
the listening socket open, so clients wait in the queue instead of being accepted and closed
by libuv; it takes them again when a connection closes.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from functools import partial
from typing import Any, Callable, Collection, Dict, Optional, Type

logger = logging.getLogger("fastserve")

BATCH_ABOVE = 64  # connections held before queued ones are also taken in batches
BATCH = 512  # connections taken per loop turn by the batch path (uvloop takes one more)
LONG_TURN = 0.005  # seconds: a loop turn this long takes connections in batches
# Seconds a TLS client has to finish its handshake (uvloop's default is 60): until then its
# connection holds its ~320 KiB of heap (45-50 KiB of it resident), and counts toward
# --max-connections (worker.Handshakes).
TLS_HANDSHAKE_TIMEOUT = 10.0


class AcceptedSocket(int):
    """A descriptor the batch path accepted, in the shape uvloop's ``connect_accepted_socket``
    takes (``family``, ``type``, ``fileno()``). The transport keeps it for its life and closes
    the descriptor itself; it then calls ``close()``, which has nothing left to do. About half
    the memory of the ``socket.socket`` it replaces, per idle connection."""

    __slots__ = ()
    family = socket.AF_INET
    type = socket.SOCK_STREAM

    def fileno(self) -> int:
        return int(self)

    def close(self) -> None:
        """The transport closed the descriptor already."""


class _AcceptedSocket6(AcceptedSocket):
    __slots__ = ()
    family = socket.AF_INET6


class _AcceptedUnixSocket(AcceptedSocket):
    __slots__ = ()
    family = socket.AF_UNIX


ACCEPTED: Dict[int, Type[AcceptedSocket]] = {
    cls.family: cls for cls in (AcceptedSocket, _AcceptedSocket6, _AcceptedUnixSocket)
}


class Acceptor:
    """The worker's listener. ``factory(sock_fd=-1)`` makes a protocol per connection (given the
    descriptor when the batch path accepted it); ``connections`` holds the worker's open ones;
    ``tls`` an ``ssl.SSLContext`` or None."""

    def __init__(self, loop: asyncio.AbstractEventLoop, factory: Any, sock: socket.socket, backlog: int,
                 tls: Any, connections: Collection[Any], room: Optional[Callable[[], int]] = None) -> None:
        self.loop = loop
        self.factory = factory
        self.sock = sock
        self.backlog = backlog
        self.tls = tls
        self.connections = connections
        self.room = room  # how many more connections may be taken (None: the batch's size)
        self.server: Any = None
        self.watch: Optional[socket.socket] = None  # the duplicate the batch path reads
        self.seen = 0.0  # when the queue was last seen non-empty
        self.paused = False  # paused, or about to serve again (uvloop does not hold the socket)
        self.closed = False
        self.warned = False

    async def start(self) -> None:
        """Serve the socket through uvloop, and watch it for batches."""
        if self.closed:
            return
        self._watch()  # before the first connection is served: the worker's descriptors are all open then
        options = {"ssl": self.tls, "ssl_handshake_timeout": TLS_HANDSHAKE_TIMEOUT} if self.tls is not None else {}
        self.server = await self.loop.create_server(self.factory, sock=self.sock, backlog=self.backlog, **options)
        self.paused = False

    def _watch(self) -> None:
        fd = duplicate(self.sock)
        if fd < 0:
            return  # no descriptor to spare: uvloop's one per turn it is
        self.watch = socket.socket(fileno=fd)
        self.watch.setblocking(False)
        self.loop.add_reader(fd, self._take_batch)

    def _unwatch(self) -> None:
        if self.watch is not None:
            self.loop.remove_reader(self.watch.fileno())
            self.watch.close()
            self.watch = None

    def _take_batch(self) -> None:
        """Queued connections are waiting: take up to ``BATCH`` when the worker is busy."""
        now = time.monotonic()
        since, self.seen = now - self.seen, now
        if self.watch is None or len(self.connections) < BATCH_ABOVE or not LONG_TURN < since < 1.0:
            return  # uvloop takes one per turn, which keeps up while turns are short
        family = self.watch.family
        for _ in range(BATCH if self.room is None else min(BATCH, self.room())):
            try:
                fd, _ = self.watch._accept()  # type: ignore[attr-defined]  # the descriptor alone: no socket object
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError:  # out of descriptors (or memory): leave the rest queued
                return
            self.loop.create_task(hand_over(self.loop, self.factory, fd, family, self.tls))

    def pause(self, why: str = "near the open-file limit") -> bool:
        """Stop accepting (connections wait in the listen queue); False when it cannot.
        ``why`` is said in the warning logged the first time."""
        if self.paused or self.closed:
            return self.paused
        fd = duplicate(self.sock)
        if fd < 0:
            return False
        self._unwatch()
        self.server.close()  # uvloop closes its descriptor; the duplicate keeps the queue
        self.sock = socket.socket(fileno=fd)
        self.paused = True
        if not self.warned:
            self.warned = True
            logger.warning("worker %d: %s with %d connections: new ones wait in the listen queue until one "
                           "closes", os.getpid(), why, len(self.connections))
        return True

    def resume(self) -> None:
        """Accept again (the server is made on the loop's next turn)."""
        if self.paused and not self.closed:
            self.loop.create_task(self.start())

    def close_keeping_queue(self) -> int:
        """Stop accepting for good; returns a duplicate of the listening descriptor (-1: none),
        whose queue the caller still takes (``take_accept_queue``)."""
        self.closed = True
        self._unwatch()
        if self.paused:
            return self.sock.detach()  # the duplicate made by pause()
        fd = duplicate(self.sock)
        self.server.close()  # connections stay open
        return fd


def duplicate(sock: socket.socket) -> int:
    """A duplicate of ``sock``'s descriptor; -1 when no descriptor is left."""
    try:
        return os.dup(sock.fileno())
    except OSError:
        return -1


async def hand_over(loop: asyncio.AbstractEventLoop, factory: Any, fd: int, family: int, tls: Any) -> None:
    """Serve descriptor ``fd`` (a connection of address ``family``), accepted by us rather than
    by uvloop, as the server would have served it; its transport owns the descriptor."""
    sock = socket.socket(family, socket.SOCK_STREAM, 0, fd)
    try:
        sock.setblocking(False)
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        sock.close()  # the client is gone already
        return
    sock.detach()
    options = {"ssl": tls, "ssl_handshake_timeout": TLS_HANDSHAKE_TIMEOUT} if tls is not None else {}
    try:
        accepted = ACCEPTED[family](fd)
        await loop.connect_accepted_socket(partial(factory, fd), accepted, **options)  # type: ignore[arg-type]
    except (OSError, asyncio.TimeoutError):
        pass  # a failed TLS handshake or a client gone: that client's loss only


async def take_accept_queue(fd: int, loop: asyncio.AbstractEventLoop, protocol_factory: Any, tls: Any = None) -> int:
    """Accept what waits in the kernel's accept queue of listening socket ``fd``, then close it.

    Each connection gets a protocol (and TLS when ``tls``, an ``ssl.SSLContext``, is given) as
    the server would have given it, and a turn of the loop to read what the client already
    sent, so its request is answered (with ``Connection: close``) before the worker stops.
    Returns how many were taken.
    """
    listener = socket.socket(fileno=fd)
    handovers = []
    try:
        listener.setblocking(False)
        while True:
            try:
                accepted, _ = listener._accept()  # type: ignore[attr-defined]
            except (BlockingIOError, InterruptedError):
                break
            except ConnectionAbortedError:
                continue  # the client gave up while queued
            except OSError as exc:  # out of descriptors: the rest cannot be taken
                logger.warning("could not accept a queued connection while stopping: %s", exc)
                break
            handovers.append(hand_over(loop, protocol_factory, accepted, listener.family, tls))
    finally:
        listener.close()
    if handovers:  # TLS handshakes run side by side; a failed one is that client's loss only
        await asyncio.gather(*handovers, return_exceptions=True)
        await asyncio.sleep(0)  # start reading them
        await asyncio.sleep(0)  # and read what is already there
    return len(handovers)
