"""Memory per idle keep-alive connection: what a server holds for a client that is connected
but quiet (the memory group of bench/run_bench.py).

For one server at a time: read its resident memory (RSS, every process of its session), open
N connections that each send one GET and read the whole response, then stay open and send
nothing; read the RSS again. The growth divided by N is the cost of one idle connection. A
deadline bounds the step; connections the server closed meanwhile are counted, since a server
that drops idle clients would look cheap. Standard library only, like run_bench.py.
"""
from __future__ import annotations

import os
import selectors
import socket
import time
from dataclasses import dataclass
from typing import Iterator, Optional

# Connections connecting or waiting for their answer at once: enough to be quick, few enough
# that no listen backlog overflows.
IN_FLIGHT = 128
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class IdleMemory:
    """One server's step; sizes in bytes."""

    connections: int  # asked for
    opened: int  # answered and left open
    still_open: int  # of those, not closed by the server by the time the RSS was read
    rss_before: int
    rss_after: int
    seconds: float  # opening them all took this long
    error: Optional[str] = None  # why fewer than asked were opened

    @property
    def per_connection(self) -> Optional[float]:
        """RSS growth per connection opened (bytes); None if none was."""
        return (self.rss_after - self.rss_before) / self.opened if self.opened else None


def session_processes(session_id: int) -> Iterator[tuple[str, list[str]]]:
    """(/proc/<pid>, the fields of its stat after "(comm)") of each live process in a session.

    Each server starts in a session of its own, so this is its master and its workers.
    """
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(os.path.join(entry.path, "stat")) as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        if int(fields[3]) == session_id:
            yield entry.path, fields


def session_rss_bytes(session_id: int) -> int:
    """Resident memory of every live process in a session (a server's master and workers)."""
    total = 0
    for path, _ in session_processes(session_id):
        try:
            with open(os.path.join(path, "statm")) as statm:
                total += int(statm.read().split()[1]) * PAGE_SIZE
        except OSError:
            continue
    return total


class _Exchange:
    """One connection: connect, send the request, read one whole response."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.received = b""
        self.expected: Optional[int] = None  # head + body bytes, once the head is in

    def feed(self, data: bytes) -> bool:
        """Take response bytes; True once the whole response is in."""
        self.received += data
        if self.expected is None:
            end = self.received.find(b"\r\n\r\n")
            if end < 0:
                return False
            length = 0
            for line in self.received[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            self.expected = end + 4 + length
        return len(self.received) >= self.expected


def open_idle_connections(host: str, port: int, path: str, count: int,
                          deadline: float) -> tuple[list[socket.socket], Optional[str]]:
    """`count` keep-alive connections that each had one GET `path` answered in full.

    Returns the open sockets and, if fewer than `count` were opened, why (an error, a close
    by the server, or the `deadline`, a time.monotonic() value).
    """
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    done: list[socket.socket] = []
    started = 0
    problem: Optional[str] = None
    with selectors.DefaultSelector() as selector:
        while len(done) < count and problem is None:
            while started < count and len(selector.get_map()) < IN_FLIGHT:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                sock.connect_ex((host, port))
                selector.register(sock, selectors.EVENT_WRITE, _Exchange(sock))
                started += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                problem = f"deadline passed after {len(done)} connections"
                break
            for key, events in selector.select(min(remaining, 1.0)):
                exchange: _Exchange = key.data
                sock = exchange.sock
                try:
                    if events & selectors.EVENT_WRITE:
                        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if error:
                            raise OSError(error, os.strerror(error))
                        sock.send(request)  # a few dozen bytes: one send takes them
                        selector.modify(sock, selectors.EVENT_READ, exchange)
                        continue
                    data = sock.recv(65536)
                    if not data:
                        raise ConnectionError("closed by the server before the response ended")
                except OSError as exc:
                    problem = f"connection {len(done) + 1}: {exc}"
                    break
                if exchange.feed(data):
                    selector.unregister(sock)
                    done.append(sock)
        for key in list(selector.get_map().values()):
            key.fileobj.close()
    return done, problem


def count_open(sockets: list[socket.socket]) -> int:
    """How many of `sockets` the server has not closed (nothing readable, or data not EOF)."""
    still_open = 0
    with selectors.DefaultSelector() as selector:
        for sock in sockets:
            selector.register(sock, selectors.EVENT_READ)
        readable = {key.fileobj for key, _ in selector.select(0)}
    for sock in sockets:
        if sock not in readable:
            still_open += 1
            continue
        try:
            if sock.recv(1, socket.MSG_PEEK):
                still_open += 1
        except OSError:
            pass
    return still_open


def measure_idle_memory(session_id: int, host: str, port: int, path: str, count: int,
                        time_limit_s: float) -> IdleMemory:
    """One server's step: RSS before, `count` idle connections, RSS after (see the module doc)."""
    rss_before = session_rss_bytes(session_id)
    started = time.monotonic()
    sockets, problem = open_idle_connections(host, port, path, count, started + time_limit_s)
    seconds = time.monotonic() - started
    try:
        time.sleep(0.2)  # let the server finish the turn in which it answered the last one
        rss_after = session_rss_bytes(session_id)
        still_open = count_open(sockets)
    finally:
        for sock in sockets:
            sock.close()
    return IdleMemory(count, len(sockets), still_open, rss_before, rss_after, seconds, problem)
