"""Static files take no request body: a large announced one gets 405 at once, unread."""
import socket


def read_all(sock):
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_post_with_a_body_is_answered_before_the_body_is_sent(start_server, docroot):
    server = start_server(docroot.root)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"POST /small.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n")  # no body follows
        data = read_all(sock)  # answered and closed without waiting for 50 MB
    head = data.partition(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 405 ")
    assert b"Allow: GET, HEAD" in head and b"Connection: close" in head


def test_post_without_a_body_keeps_the_connection(start_server, docroot):
    server = start_server(docroot.root)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /small.txt HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        data = read_all(sock)
    assert data.startswith(b"HTTP/1.1 405 ")
    assert data.count(b"HTTP/1.1 200 ") == 1 and data.endswith(docroot.small)
