"""A client that asks for a large file and stops reading is dropped after --send-timeout."""
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
