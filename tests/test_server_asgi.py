"""The ASGI bridge: ``python -m fastserve module:app`` on a real loopback port, for what the kernel
decides (file bodies by sendfile, a request body arriving in pieces). The protocol rules run the same
app in-process on both request readers: ``test_asgi_requests.py``."""
import socket
import subprocess
import sys
import textwrap
import time

import httpx2
import pytest

from bridge_app import APP

BIG = bytes(range(256)) * 12 * 1024  # 3 MiB


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(base, *flags):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastserve", "asgi_test_app:app", "--port", str(port), *flags],
        cwd=base,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    pytest.fail("server did not start: " + proc.stdout.read().decode())


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("asgi")
    static = base / "static"
    static.mkdir()
    (static / "a.txt").write_text("static a")
    (static / "big.bin").write_bytes(BIG)
    (base / "asgi_test_app.py").write_text(f"STATIC = {str(static)!r}\n" + textwrap.dedent(APP))
    return base


@pytest.fixture(scope="module")
def server(app_dir):
    # --pathsend: the app's FileResponse and its zerocopysend answer go out by sendfile
    proc, port = start(app_dir, "--max-body-size", "1000000", "--graceful-timeout", "1", "--pathsend")
    yield port
    proc.terminate()
    assert proc.wait(10) == 0


def test_get_and_post(server):
    with httpx2.Client(base_url=f"http://127.0.0.1:{server}") as client:
        assert client.get("/echo?q=1").text == "GET /echo 0 1"
        assert client.post("/echo", content=b"x" * 100).text == "POST /echo 100 None"
        assert client.get("/echo").headers["server"] == "fastserve"


def test_request_body_streams_to_the_app(server):
    body = bytes(range(256)) * 3500  # 896000 bytes
    with httpx2.Client(base_url=f"http://127.0.0.1:{server}") as client:
        chunks, total = client.post("/upload", content=body).text.split()
        assert int(total) == len(body)
        assert int(chunks) > 1  # handed over as it arrived, not in one piece
        slow = client.post("/upload?slow=1", content=(body[i:i + 8192] for i in range(0, len(body), 8192)))
        assert slow.text.split()[1] == str(len(body))


def test_file_response_goes_out_with_pathsend(server):
    with httpx2.Client(base_url=f"http://127.0.0.1:{server}") as client:
        response = client.get("/download")
        assert response.status_code == 200
        assert response.headers["content-length"] == str(len(BIG))
        assert response.content == BIG
        head = client.head("/download")
        assert head.headers["content-length"] == str(len(BIG)) and head.content == b""
        assert client.get("/echo").status_code == 200  # the connection is still in step


def test_zerocopysend_slices_and_file_position(server):
    with httpx2.Client(base_url=f"http://127.0.0.1:{server}") as client:
        response = client.get("/zerocopy/")
        assert response.headers["transfer-encoding"] == "chunked"
        assert response.content == BIG[:10] + BIG[100:120] + BIG[1000:]


def test_a_response_the_app_cuts_short_with_no_framing_ends_in_a_reset(server):
    # An HTTP/1.0 body without Content-Length ends where the connection does: a FIN after the
    # app's failure would hand the client its first 10 bytes as the whole body. A reset cannot
    # be taken for an end.
    with socket.create_connection(("127.0.0.1", server), timeout=5) as sock:
        sock.sendall(b"GET /half/?unsized HTTP/1.0\r\nHost: x\r\n\r\n")
        received = b""
        with pytest.raises(ConnectionResetError):
            while True:
                data = sock.recv(65536)
                assert data, f"a clean end of the connection after {received!r}"
                received += data
    assert received.startswith(b"HTTP/1.1 200 ") and b"x" * 10 in received


@pytest.mark.parametrize("query, body", [("unsized", b"a\r\n" + b"x" * 10 + b"\r\n"), ("", b"x" * 10)],
                         ids=["chunked", "content-length"])
def test_a_response_the_app_cuts_short_in_its_framing_ends_in_a_fin(server, query, body):
    # A chunked body without its last chunk, or one short of its Content-Length, shows itself cut
    # short (RFC 9112 section 8): the connection ends with a FIN after every byte the app sent,
    # as under uvicorn; a reset would take from the client what it had not read yet.
    with socket.create_connection(("127.0.0.1", server), timeout=5) as sock:
        sock.sendall(f"GET /half/?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        time.sleep(0.2)  # the app has failed and the connection is closed before the client reads
        received = b""
        while data := sock.recv(65536):
            received += data
    head, _, sent = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and sent == body
