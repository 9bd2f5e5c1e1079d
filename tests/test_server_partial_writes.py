"""Responses the socket cannot take at once (cached bodies, pipelined answers) arrive whole and in order."""
import os
import socket
import time

import pytest

# --cache-max-file for a 250 KiB body held in memory, and for one sent from its descriptor by sendfile
BODY_PATHS = {"memory": "524288", "sendfile": "16384"}


def read_response(sock, expected_length):
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    while len(body) < expected_length:
        time.sleep(0.001)  # a slow reader: the server must buffer, not drop or reorder
        chunk = sock.recv(8192)
        assert chunk, "connection closed early"
        body += chunk
    return head, body[:expected_length], body[expected_length:]


@pytest.mark.parametrize("body_path", sorted(BODY_PATHS))
def test_body_larger_than_the_socket_buffer(start_server, tmp_path, body_path):
    site = tmp_path / "site"
    site.mkdir()
    payload = os.urandom(250 * 1024)
    (site / "cached.bin").write_bytes(payload)
    (site / "small.txt").write_text("small")
    server = start_server(site, "--cache-max-file", BODY_PATHS[body_path])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", server.port))
    with sock:
        sock.sendall(
            b"GET /cached.bin HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /cached.bin HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        head, body, rest = read_response(sock, len(payload))
        assert head.startswith(b"HTTP/1.1 200 ") and body == payload
        data = rest
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        while len(body) < len(payload) + 5:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
            if b"HTTP/1.1 200" in body[len(payload):] and body.endswith(b"small"):
                break
        assert head.startswith(b"HTTP/1.1 200 ") and body[: len(payload)] == payload
        assert body[len(payload):].startswith(b"HTTP/1.1 200 ") and body.endswith(b"small")
