"""A client that asks for a large file and stops reading is dropped after --send-timeout."""
import os
import socket
import time


def test_client_that_stops_reading_is_dropped(start_server, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    size = 256 * 1024 * 1024  # far more than the kernel's socket buffers can absorb
    with open(site / "huge.bin", "wb") as f:
        f.truncate(size)  # sparse: costs no disk
    (site / "small.txt").write_text("small")
    server = start_server(site, "--send-timeout", "1")
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(3.0)  # past the timeout (1 s) and a tick or two of the server's clock
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


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_stalled_and_abandoned_transfers_leave_no_descriptor_behind(start_server, tmp_path):
    """A transfer waiting for room in the socket watches a duplicate of it: aborting the
    connection (send timeout) or losing it (client gone) must release both, or the socket
    would stay open and the worker would leak a descriptor per slow client."""
    site = tmp_path / "site"
    site.mkdir()
    with open(site / "huge.bin", "wb") as f:
        f.truncate(256 * 1024 * 1024)
    server = start_server(site, "--send-timeout", "1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as warm:
        warm.sendall(b"HEAD /huge.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        warm.recv(1000)
    time.sleep(0.3)
    baseline = _open_fds(server.pid)

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
    time.sleep(0.5)
    assert _open_fds(server.pid) > baseline  # the stalled ones are still held

    time.sleep(3.0)  # past the send timeout and a tick or two of the server's clock
    for sock in stalled:  # the server closed them: reading now ends instead of waiting forever
        sock.settimeout(5)
        try:
            while sock.recv(1 << 20):
                pass
        except ConnectionResetError:
            pass
        sock.close()
    deadline = time.monotonic() + 5
    while _open_fds(server.pid) > baseline and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _open_fds(server.pid) <= baseline
