"""A client that asks for a large file and stops reading is dropped after --send-timeout."""
import os
import socket

import pytest

from fastserve.config import MIN_TICK, Config
from server_helpers import open_descriptors, running_server, wait_descriptors, wait_peer_closed

HUGE = 256 * 1024 * 1024  # far more than the kernel's socket buffers can absorb


@pytest.fixture(scope="module")
def stalling_server(tmp_path_factory):
    """--send-timeout 0.5 over a site with a huge (sparse) file; each test leaves it with no
    connection open, as it found it."""
    site = tmp_path_factory.mktemp("send-timeout") / "site"
    site.mkdir()
    with open(site / "huge.bin", "wb") as f:
        f.truncate(HUGE)  # sparse: costs no disk
    (site / "small.txt").write_text("small")
    with running_server(site, ["--send-timeout", "0.5"], log_path=site.parent / "server.log") as srv:
        yield srv


def test_client_that_stops_reading_is_dropped(stalling_server):
    server = stalling_server
    size = HUGE
    baseline = _warm_descriptors(server)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    assert wait_descriptors(server.pid, lambda count: count > baseline)  # the transfer holds the connection
    # The server lets it go within a tick (0.125 s: a quarter of the timeout) of 0.5 s; the
    # client cannot tell yet (its window is full, so the FIN waits behind the data).
    assert wait_descriptors(server.pid, lambda count: count <= baseline)
    received = 0
    try:
        while chunk := sock.recv(1 << 20):
            received += len(chunk)
    except ConnectionResetError:
        pass
    sock.close()
    assert received < size  # cut off, not completed, and reading did not hang
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as fresh:
        fresh.sendall(b"GET /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert fresh.recv(100).startswith(b"HTTP/1.1 200 ")


def _warm_descriptors(server, path: str = "/huge.bin") -> int:
    """Open a file's cache entry with a HEAD; the server's descriptors once that connection is gone."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as warm:
        warm.sendall(b"HEAD %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())
        warm.recv(1000)
        assert wait_peer_closed(warm, 5.0)
        lingering = open_descriptors(server.pid)  # the server lingers until the client closes
    assert wait_descriptors(server.pid, lambda count: count < lingering)
    return open_descriptors(server.pid)


def test_stalled_and_abandoned_transfers_leave_no_descriptor_behind(stalling_server):
    """A transfer waiting for room in the socket watches a duplicate of it: aborting the
    connection (send timeout) or losing it (client gone) must release both, or the socket
    would stay open and the worker would leak a descriptor per slow client."""
    server = stalling_server
    baseline = _warm_descriptors(server)

    stalled = []
    for _ in range(5):  # ask, read a little, then stop reading: dropped by the send timeout
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.recv(65536)
        stalled.append(sock)
    for _ in range(5):  # ask, read a little, then leave
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.recv(65536)
    assert open_descriptors(server.pid) > baseline  # the stalled ones are still held

    # past the send timeout and a tick of the server's clock, every descriptor is released
    assert wait_descriptors(server.pid, lambda count: count <= baseline)
    for sock in stalled:  # the server closed them: reading now ends instead of waiting forever
        sock.settimeout(5)
        try:
            while sock.recv(1 << 20):
                pass
        except ConnectionResetError:
            pass
        sock.close()
    assert open_descriptors(server.pid) <= baseline


def test_short_timeouts_tick_the_clock_faster():
    """Timeouts are checked once a tick: half a second, or a quarter of the shortest
    connection timeout (so a 0.5 s send timeout is kept within 0.125 s, not 0.5 s)."""
    assert Config().clock_tick() == 0.5
    assert Config(send_timeout=0.5).clock_tick() == 0.125
    assert Config(keepalive_timeout=1.0, header_timeout=30.0).clock_tick() == 0.25
    assert Config(header_timeout=0.8, body_timeout=0.4).clock_tick() == 0.1
    assert Config(send_timeout=0.01).clock_tick() == MIN_TICK == 0.05
    assert Config(tick_interval=0.2).clock_tick() == 0.2


def test_a_closing_answer_held_in_memory_is_dropped_when_the_client_stops_reading(tmp_path):
    """Connection: close on a file answered from memory, larger than the kernel's buffers: the
    rest waits in the transport when the answer is over, and the connection lingers. A client
    that takes none of it is dropped at --send-timeout, not kept until it closes."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "big.bin").write_bytes(os.urandom(16 * 1024 * 1024))
    flags = ["--send-timeout", "0.5", "--cache-max-file", str(32 * 1024 * 1024)]
    with running_server(site, flags, log_path=tmp_path / "server.log") as server:
        baseline = _warm_descriptors(server, "/big.bin")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        try:
            sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert wait_descriptors(server.pid, lambda count: count > baseline)
            assert wait_descriptors(server.pid, lambda count: count <= baseline, timeout=4.0)
        finally:
            sock.close()
