"""The ASGI bridge: ``python -m fastserve module:app`` on a real loopback port."""
import socket
import subprocess
import sys
import textwrap
import time

import httpx2
import pytest

APP = '''
import asyncio
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Mount, Route
from fastserve.responses import FileResponse
from fastserve.staticfiles import StaticFiles

async def whoami(request):
    return PlainTextResponse(f"{request.client.host} {request.url.scheme}")

async def echo(request):
    body = await request.body()
    return PlainTextResponse(f"{request.method} {request.url.path} {len(body)} {request.query_params.get('q')}")

async def stream(request):
    async def chunks():
        for i in range(3):
            yield f"part{i};"
    return StreamingResponse(chunks())

async def upload(request):
    chunks = total = 0
    async for chunk in request.stream():
        if chunk:
            chunks += 1
            total += len(chunk)
            if request.query_params.get("slow"):
                await asyncio.sleep(0.001)
    return PlainTextResponse(f"{chunks} {total}")

async def boom(request):
    raise ValueError("boom")

async def download(request):
    return FileResponse(STATIC + "/big.bin")

async def zerocopy(scope, receive, send):
    # three slices of one file, sent chunked (no content-length), the middle one from the file position
    assert "http.response.zerocopysend" in scope["extensions"]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    with open(STATIC + "/big.bin", "rb") as f:
        await send({"type": "http.response.zerocopysend", "file": f, "offset": 0, "count": 10, "more_body": True})
        f.seek(100)
        await send({"type": "http.response.zerocopysend", "file": f, "count": 20, "more_body": True})
        assert f.tell() == 120
        await send({"type": "http.response.zerocopysend", "file": f, "offset": 1000, "more_body": False})

async def hang(scope, receive, send):
    await asyncio.Event().wait()  # never answers

async def half(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]})
    await send({"type": "http.response.body", "body": b"x" * 10, "more_body": True})
    raise RuntimeError("gave up halfway")

async def scope_view(scope, receive, send):
    import json
    message = await receive()
    body = json.dumps({
        "method": scope["method"], "path": scope["path"], "raw_path": scope["raw_path"].decode("latin-1"),
        "query_string": scope["query_string"].decode("latin-1"), "http_version": scope["http_version"],
        "headers": [[name.decode("latin-1"), value.decode("latin-1")] for name, value in scope["headers"]],
        "body": message["body"].decode("latin-1"), "more_body": message["more_body"],
    }).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})

async def raw(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"no length", "more_body": False})

app = Starlette(routes=[
    Route("/echo", echo, methods=["GET", "POST"]),
    Route("/stream", stream),
    Route("/boom", boom),
    Route("/whoami", whoami),
    Route("/upload", upload, methods=["POST"]),
    Mount("/raw", raw),
    Mount("/scope", scope_view),
    Mount("/hang", hang),
    Mount("/half", half),
    Route("/download", download),
    Mount("/zerocopy", zerocopy),
    Mount("/static", StaticFiles(directory=STATIC)),
])
'''


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
    proc, port = start(app_dir, "--max-body-size", "1000000", "--graceful-timeout", "1")
    yield port
    proc.terminate()
    assert proc.wait(10) == 0


def exchange(port, raw: bytes, expect_close=False) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw)
        if not expect_close:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


def test_get_and_post(server):
    with httpx2.Client(base_url=f"http://127.0.0.1:{server}") as client:
        assert client.get("/echo?q=1").text == "GET /echo 0 1"
        assert client.post("/echo", content=b"x" * 100).text == "POST /echo 100 None"
        assert client.get("/echo").headers["server"] == "fastserve"


def test_streaming_response_is_chunked(server):
    with httpx2.Client(base_url=f"http://127.0.0.1:{server}") as client:
        response = client.get("/stream")
        assert response.headers["transfer-encoding"] == "chunked"
        assert response.text == "part0;part1;part2;"


def test_chunked_request_body(server):
    data = exchange(
        server,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    assert data.startswith(b"HTTP/1.1 200 ")
    assert data.endswith(b"POST /echo 8 None")


def test_app_exception_is_500_and_the_connection_keeps_working(server):
    with httpx2.Client(base_url=f"http://127.0.0.1:{server}") as client:
        assert client.get("/boom").status_code == 500
        assert client.get("/echo").status_code == 200


def test_body_too_large_is_413_and_close(server):
    data = exchange(
        server, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000001\r\n\r\n" + b"x" * 100, expect_close=True
    )
    assert data.startswith(b"HTTP/1.1 413 ")
    assert b"Connection: close" in data
    chunked = exchange(
        server,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + (b"10000\r\n" + b"y" * 65536 + b"\r\n") * 16,
        expect_close=True,
    )
    assert chunked.startswith(b"HTTP/1.1 413 ")


def test_http10_without_length_closes_to_end_the_body(server):
    data = exchange(server, b"GET /raw/ HTTP/1.0\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"connection: close" in head.lower()
    assert body == b"no length"


def test_pipelined_requests_are_answered_in_order(server):
    requests = b"".join(
        b"GET /echo?q=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i if i % 2 else b"GET /static/a.txt HTTP/1.1\r\nHost: x\r\n\r\n"
        for i in range(10)
    )
    data = exchange(server, requests + b"GET /echo?q=last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    bodies = [part for part in data.split(b"HTTP/1.1 ")[1:]]
    assert len(bodies) == 11
    for i, response in enumerate(bodies[:10]):
        expected = b"GET /echo 0 %d" % i if i % 2 else b"static a"
        assert response.startswith(b"200 ") and response.endswith(expected), (i, response)
    assert bodies[10].endswith(b"GET /echo 0 last")


def _scope_of(port, head: bytes) -> dict:
    import json

    data = exchange(port, head)
    assert data.startswith(b"HTTP/1.1 200 "), data
    return json.loads(data.partition(b"\r\n\r\n")[2])


def test_plain_and_unusual_heads_give_the_app_the_same_scope(server):
    # The first head is read by fastserve's scanner; the obs-text header sends the second to httptools.
    plain = b"GET /scope/a%20b?x=1&y HTTP/1.1\r\nHost: x\r\nX-Mixed-Case:\t v 1 \r\nx-mixed-case: v2\r\nAccept: */*\r\n"
    scanned = _scope_of(server, plain + b"\r\n")
    parsed = _scope_of(server, plain + b"X-Note: caf\xc3\xa9\r\n\r\n")
    assert scanned["headers"] == [["host", "x"], ["x-mixed-case", "v 1"], ["x-mixed-case", "v2"], ["accept", "*/*"]]
    assert parsed["headers"][:4] == scanned["headers"]
    assert parsed["headers"][4] == ["x-note", "caf\u00c3\u00a9"]
    for key in ("method", "path", "raw_path", "query_string", "http_version", "body", "more_body"):
        assert scanned[key] == parsed[key], key
    assert (scanned["raw_path"], scanned["query_string"], scanned["body"], scanned["more_body"]) == (
        "/scope/a%20b", "x=1&y", "", False)


def test_plain_http10_and_head_requests_reach_the_app(server):
    with socket.create_connection(("127.0.0.1", server), timeout=5) as sock:
        for _ in range(2):  # kept alive: the same connection answers twice
            sock.sendall(b"GET /scope/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            data = b""
            while not data.endswith(b"}"):
                chunk = sock.recv(65536)
                assert chunk, data
                data += chunk
            assert b'"http_version": "1.0"' in data and b"connection: keep-alive" in data.lower()
    head = exchange(server, b"HEAD /echo?q=h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", expect_close=True)
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")  # headers only


def test_plain_and_unusual_heads_pipelined_to_an_app(server):
    requests = (
        b"GET /echo?q=1 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /echo?q=3 HTTP/1.1\r\nHost: x\r\nX: \xff\r\n\r\n"
        b"GET /static/a.txt HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /echo?q=5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    responses = exchange(server, requests).split(b"HTTP/1.1 ")[1:]
    expected = [b"GET /echo 0 1", b"POST /echo 3 None", b"GET /echo 0 3", b"static a", b"GET /echo 0 5"]
    assert len(responses) == len(expected)
    for response, body in zip(responses, expected):
        assert response.startswith(b"200 ") and response.endswith(body), response


def test_static_files_mounted_in_the_app(server):
    with httpx2.Client(base_url=f"http://127.0.0.1:{server}") as client:
        assert client.get("/static/a.txt").text == "static a"
        assert client.get("/static/missing").status_code == 404


def test_request_body_streams_to_the_app(server):
    body = bytes(range(256)) * 3500  # 896000 bytes
    with httpx2.Client(base_url=f"http://127.0.0.1:{server}") as client:
        chunks, total = client.post("/upload", content=body).text.split()
        assert int(total) == len(body)
        assert int(chunks) > 1  # handed over as it arrived, not in one piece
        slow = client.post("/upload?slow=1", content=(body[i:i + 8192] for i in range(0, len(body), 8192)))
        assert slow.text.split()[1] == str(len(body))


def test_expect_100_continue(server):
    with socket.create_connection(("127.0.0.1", server), timeout=5) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        response = sock.recv(4096)
        assert response.startswith(b"HTTP/1.1 200 ") and response.endswith(b"1 5")


def test_expect_100_continue_refused_without_reading(server):
    # The app answers without asking for the body: no 100, and the connection ends after the answer.
    data = exchange(
        server, b"POST /raw/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", expect_close=True
    )
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"100 Continue" not in data


def test_oversized_body_behind_another_request_is_413_in_turn(server):
    data = exchange(
        server,
        b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n" + b"z" * 1000,
        expect_close=True,
    )
    first, _, rest = data.partition(b"GET /echo 0 None")
    assert first.startswith(b"HTTP/1.1 200 ")
    assert rest.startswith(b"HTTP/1.1 413 ")


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


def test_proxy_headers_from_a_trusted_address(server):
    with httpx2.Client(base_url=f"http://127.0.0.1:{server}") as client:
        forwarded = {"x-forwarded-for": "203.0.113.9", "x-forwarded-proto": "https"}
        assert client.get("/whoami", headers=forwarded).text == "203.0.113.9 https"
        assert client.get("/whoami").text == "127.0.0.1 http"


def test_proxy_headers_from_an_untrusted_address_are_ignored(app_dir):
    proc, port = start(app_dir, "--forwarded-allow-ips", "10.9.9.9")
    try:
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}") as client:
            forwarded = {"x-forwarded-for": "203.0.113.9", "x-forwarded-proto": "https"}
            assert client.get("/whoami", headers=forwarded).text == "127.0.0.1 http"
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def test_app_that_never_reads_the_body_keeps_the_connection_usable(server):
    with socket.create_connection(("127.0.0.1", server), timeout=5) as sock:
        body = b"b" * 300_000
        sock.sendall(b"POST /raw/ HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        sock.sendall(b"GET /echo?q=after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 ")
    assert data.endswith(b"GET /echo 0 after")


def test_app_that_never_responds_does_not_block_others(server):
    stuck = socket.create_connection(("127.0.0.1", server), timeout=5)
    stuck.sendall(b"GET /hang/ HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        with httpx2.Client(base_url=f"http://127.0.0.1:{server}", timeout=5) as client:
            for _ in range(5):
                assert client.get("/echo").status_code == 200
    finally:
        stuck.close()
    with httpx2.Client(base_url=f"http://127.0.0.1:{server}", timeout=5) as client:
        assert client.get("/echo").status_code == 200


def test_app_that_raises_after_starting_cuts_the_connection(server):
    with socket.create_connection(("127.0.0.1", server), timeout=5) as sock:
        sock.sendall(b"GET /half/ HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and body == b"x" * 10  # short of the promised 100: cut
    with httpx2.Client(base_url=f"http://127.0.0.1:{server}", timeout=5) as client:
        assert client.get("/echo").status_code == 200
