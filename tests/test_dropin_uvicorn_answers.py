"""A FastAPI app answers under ``python -m fastserve`` as under uvicorn.

The scope offers what uvicorn's does (ASGI spec 2.3, no file extensions unless ``--pathsend``),
so the middleware an app stacks sees the same messages: ``GZipMiddleware`` compresses a
``FileResponse`` or a mounted ``StaticFiles`` file, a middleware that knows nothing of
``http.response.pathsend`` still gets the body, and Starlette's streaming responses watch for
the client leaving (a server-sent-events stream waiting for its next event ends at once).

The in-process tests hold the rules; the last test runs one app under uvicorn and under
``python -m fastserve`` over loopback and compares every answer (status, fields but ``date`` and
``server``, body).
"""
from __future__ import annotations

import asyncio
import gzip
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from connection_driver import Driven, run
from inprocess import parse_responses
from server_helpers import free_port, wait_until_accepting

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from fastapi import BackgroundTasks, FastAPI  # noqa: E402
from fastapi.responses import FileResponse, StreamingResponse  # noqa: E402
from starlette.middleware.gzip import GZipMiddleware  # noqa: E402
from starlette.staticfiles import StaticFiles as StarletteStaticFiles  # noqa: E402

from fastserve.staticfiles import StaticFiles as FastserveStaticFiles  # noqa: E402

TEXT = "".join(f"line {i} of a text file\n" for i in range(2000)).encode()


class HoldsStartUntilBody:
    """A pure ASGI middleware written for uvicorn, as many are (body-rewriting and compressing
    ones): it holds the start message until the first body message, and knows no other kind."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: List[Dict[str, Any]] = []

        async def wrapped(message: Dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                held.append(message)
            elif message["type"] == "http.response.body":
                if held:
                    start = held.pop()
                    start["headers"] = [*start["headers"], (b"x-first-piece", b"%d" % len(message.get("body", b"")))]
                    await send(start)
                await send(message)

        await self.app(scope, receive, wrapped)


def file_app(directory: Path, middleware: Any) -> FastAPI:
    (directory / "data.txt").write_bytes(TEXT)
    app = FastAPI()
    app.add_middleware(middleware)
    app.mount("/starlette", StarletteStaticFiles(directory=directory), name="starlette")
    app.mount("/fastserve", FastserveStaticFiles(directory=directory), name="fastserve")

    @app.get("/file")
    async def file() -> FileResponse:
        return FileResponse(directory / "data.txt")

    return app


FILE_PATHS = ["/file", "/starlette/data.txt", "/fastserve/data.txt"]


@pytest.mark.parametrize("path", FILE_PATHS)
def test_gzip_middleware_compresses_a_file_answer(serve, tmp_path: Path, path: str) -> None:
    client = serve(file_app(tmp_path, GZipMiddleware)).open()
    client.send(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
    (response,) = client.wait_for(1)
    assert response.status == 200
    assert response.header("content-encoding") == "gzip" and "Accept-Encoding" in response.header("vary")
    assert gzip.decompress(response.body) == TEXT


@pytest.mark.parametrize("path", FILE_PATHS)
def test_a_middleware_that_knows_no_pathsend_gets_the_file_body(serve, tmp_path: Path, path: str) -> None:
    client = serve(file_app(tmp_path, HoldsStartUntilBody)).open()
    client.send(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    (response,) = client.wait_for(1)
    assert response.status == 200 and response.body == TEXT
    assert int(response.header("x-first-piece")) > 0


def test_the_scope_offers_what_uvicorns_does_and_pathsend_on_request(serve, tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_bytes(TEXT)
    seen: List[Tuple[str, Dict[str, Any]]] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        seen.append((scope["asgi"]["spec_version"], scope["extensions"]))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(TEXT))]})
        if "http.response.pathsend" in scope["extensions"]:
            await send({"type": "http.response.pathsend", "path": str(tmp_path / "data.txt")})
        else:
            await send({"type": "http.response.body", "body": TEXT})

    assert serve(app).open().request("GET", "/").body == TEXT
    assert serve(app, pathsend=True).open().request("GET", "/").body == TEXT
    assert seen == [
        ("2.3", {}),
        ("2.3", {"http.response.pathsend": {}, "http.response.zerocopysend": {}}),
    ]


def test_pathsend_is_asked_for_by_flag_or_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastserve.cli import config_from_args

    assert not config_from_args(["app:app"]).pathsend
    assert config_from_args(["app:app", "--pathsend"]).pathsend
    monkeypatch.setenv("FASTSERVE_PATHSEND", "1")
    assert config_from_args(["app:app"]).pathsend


def test_with_pathsend_gzip_middleware_passes_a_file_response_through(serve, tmp_path: Path) -> None:
    """``--pathsend`` is the trade it says: the file goes out by sendfile, and Starlette's
    GZipMiddleware, which does not compress a pathsend response, sends it as it is."""
    client = serve(file_app(tmp_path, GZipMiddleware), pathsend=True).open()
    client.send(b"GET /file HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
    (response,) = client.wait_for(1)
    assert response.status == 200 and response.header("content-encoding") is None and response.body == TEXT


def test_a_stream_waiting_for_its_next_event_ends_when_the_client_leaves(serve) -> None:
    """Starlette's StreamingResponse (and FileResponse) listens for ``http.disconnect`` under the
    spec version uvicorn reports: a stream waiting for its next event is cancelled when the
    client goes, not left running until it next sends."""
    ended: List[str] = []
    waiting = asyncio.Event()

    async def events() -> Any:
        try:
            yield "data: hello\n\n"
            waiting.set()
            await asyncio.sleep(3600)
            yield "data: too late\n\n"
        finally:
            ended.append("closed")

    app = FastAPI()

    @app.get("/events")
    async def stream() -> StreamingResponse:
        return StreamingResponse(events(), media_type="text/event-stream")

    server = serve(app)
    client = server.open()
    client.send(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
    server.run_until(waiting.is_set)
    assert b"data: hello" in bytes(client.transport.data)
    client.eof()
    server.run_until(lambda: ended == ["closed"], timeout=2)


# -- the same app under uvicorn and python -m fastserve, over loopback -----------------------------

APP = '''
import asyncio, os
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.gzip import GZipMiddleware
HERE = os.path.dirname(os.path.abspath(__file__))
ENDED = []

class HoldsStartUntilBody:
    def __init__(self, app):
        self.app = app
    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/held"):
            return await self.app(scope, receive, send)
        held = []
        async def wrapped(message):
            if message["type"] == "http.response.start":
                held.append(message)
            elif message["type"] == "http.response.body":
                if held:
                    await send(held.pop())
                await send(message)
        await self.app(scope, receive, wrapped)

app = FastAPI()
app.add_middleware(GZipMiddleware, minimum_size=100)
app.add_middleware(HoldsStartUntilBody)
app.mount("/static", StaticFiles(directory=os.path.join(HERE, "static"), html=True), name="static")

@app.get("/file")
async def file():
    return FileResponse(os.path.join(HERE, "static", "data.txt"))

@app.get("/held/file")
async def held_file():
    return FileResponse(os.path.join(HERE, "static", "data.txt"), filename="data.txt")

@app.get("/scope")
async def scope(request: Request):
    return {"asgi": request.scope["asgi"], "extensions": sorted(request.scope.get("extensions") or {})}

@app.get("/events")
async def events():
    async def stream():
        try:
            yield "data: hello\\n\\n"
            await asyncio.sleep(3600)
        finally:
            ENDED.append("closed")
    return StreamingResponse(stream(), media_type="text/event-stream")

@app.get("/ended")
async def ended():
    return ENDED
'''

REQUESTS = {
    "file, gzip": b"GET /file HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
    "file": b"GET /file HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "file, HEAD": b"HEAD /file HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "file, range": b"GET /file HTTP/1.1\r\nHost: x\r\nRange: bytes=5-104\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
    "static, gzip": b"GET /static/data.txt HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
    "static index, gzip": b"GET /static/ HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
    "held file": b"GET /held/file HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "scope": b"GET /scope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
}


def _exchange(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def _answer(data: bytes, head: bool) -> Tuple[int, List[Tuple[str, str]], bytes]:
    """Status, fields (but date, server and the framing the two servers may choose) and body."""
    [response], _ = parse_responses(data, [head])
    fields, body = response.headers, response.body
    if ("content-encoding", "gzip") in fields:
        body = gzip.decompress(body)
    kept = [field for field in fields if field[0] not in ("date", "server", "transfer-encoding", "connection")]
    if ("content-encoding", "gzip") in fields:  # the compressed length may differ with zlib's buffering
        kept = [field for field in kept if field[0] != "content-length"]
    return response.status, kept, body


@pytest.fixture(scope="module")
def both_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, int]]:
    base = tmp_path_factory.mktemp("uvicorn-parity")
    (base / "parity_app.py").write_text(textwrap.dedent(APP))
    (base / "static").mkdir()
    (base / "static" / "data.txt").write_bytes(TEXT)
    (base / "static" / "index.html").write_text("<h1>index</h1>" + "<p>padding</p>" * 100)
    stamp = time.time() - 100  # one modification time for both servers' validators
    for name in ("data.txt", "index.html"):
        os.utime(base / "static" / name, (stamp, stamp))
    ports = {"uvicorn": free_port(), "fastserve": free_port()}
    procs = [
        subprocess.Popen([sys.executable, "-m", server, "parity_app:app", "--port", str(port), "--log-level", "warning"],
                         cwd=base, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for server, port in ports.items()
    ]
    try:
        for port, proc in zip(ports.values(), procs):
            wait_until_accepting(port, proc, timeout=30)
        yield ports
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            proc.wait(15)


@pytest.mark.parametrize("name", list(REQUESTS))
def test_answers_match_uvicorns_over_loopback(both_servers: Dict[str, int], name: str) -> None:
    raw = REQUESTS[name]
    head = raw.startswith(b"HEAD")
    under_uvicorn = _answer(_exchange(both_servers["uvicorn"], raw), head)
    under_fastserve = _answer(_exchange(both_servers["fastserve"], raw), head)
    assert under_fastserve == under_uvicorn


def test_a_stream_ends_at_the_disconnect_as_under_uvicorn(both_servers: Dict[str, int]) -> None:
    for port in both_servers.values():
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            first = b""
            while b"data: hello" not in first:
                first += sock.recv(4096)
        deadline = time.monotonic() + 5
        while b'["closed"]' not in _exchange(port, b"GET /ended HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):
            assert time.monotonic() < deadline, f"the stream on port {port} outlived its client"
            time.sleep(0.05)


# -- an app's failures are logged in uvicorn's words -----------------------------------------------

async def _raises(scope, receive, send):
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
    raise RuntimeError("the app failed")


async def _returns_unstarted(scope, receive, send):
    if scope["type"] == "websocket":
        await receive()


async def _returns_incomplete(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
    await send({"type": "http.response.body", "body": b"abc", "more_body": True})


HANDSHAKE = (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


@pytest.mark.parametrize("app, raw, line", [
    (_raises, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "Exception in ASGI application"),
    (_returns_unstarted, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "ASGI callable returned without starting response."),
    (_returns_incomplete, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "ASGI callable returned without completing response."),
    (_raises, HANDSHAKE, "Exception in ASGI application"),
    (_returns_unstarted, HANDSHAKE, "ASGI callable returned without sending handshake."),
], ids=["http raises", "http unstarted", "http incomplete", "websocket raises", "websocket no handshake"])
def test_an_app_failure_is_logged_in_uvicorns_words(caplog: pytest.LogCaptureFixture, app: Any, raw: bytes,
                                                     line: str) -> None:
    """Operators alert on these lines (and uvicorn's log configs route them): the same words."""

    async def main() -> None:
        driven = Driven(app)
        driven.send(raw)
        for _ in range(100):
            await driven.settle()
            if any(record.getMessage() == line for record in caplog.records):
                break
            await asyncio.sleep(0.001)

    with caplog.at_level("ERROR", logger="fastserve"):
        run(main)
    assert [record.getMessage() for record in caplog.records if record.levelname == "ERROR"] == [line]
    if line.startswith("Exception"):
        assert caplog.records[-1].exc_info is not None


# -- an app running on after its response (background tasks) --------------------------------------

def _background_app(finished: List[str], go_on: asyncio.Event) -> FastAPI:
    app = FastAPI()

    async def send_mail() -> None:
        await go_on.wait()
        finished.append("mail sent")

    @app.get("/signup")
    async def signup(background_tasks: BackgroundTasks) -> Dict[str, bool]:
        background_tasks.add_task(send_mail)
        return {"ok": True}

    return app


def test_a_background_task_holds_neither_the_next_request_nor_the_close(serve) -> None:
    """As under uvicorn: once a response is complete the connection goes on to its next request
    (or, for a last one, closes) while the app runs its background tasks."""
    finished: List[str] = []
    go_on = asyncio.Event()
    server = serve(_background_app(finished, go_on))
    client = server.open()
    client.send(b"GET /signup HTTP/1.1\r\nHost: x\r\n\r\nGET /signup HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    first, second = client.wait_for(2)
    assert (first.status, first.body, second.status, second.body) == (200, b'{"ok":true}', 200, b'{"ok":true}')
    server.run_until(lambda: client.closed)
    assert finished == []  # both tasks still wait: they held nothing
    go_on.set()
    server.run_until(lambda: finished == ["mail sent", "mail sent"])


STOP_APP = '''
import asyncio, os
from fastapi import BackgroundTasks, FastAPI

app = FastAPI()

async def send_mail():
    print("mail started", flush=True)
    await asyncio.sleep(1)
    with open(os.environ["MAIL_LOG"], "a") as log:
        log.write("mail sent\\n")

@app.get("/signup")
async def signup(background_tasks: BackgroundTasks):
    background_tasks.add_task(send_mail)
    return {"ok": True}
'''


def test_a_stop_waits_for_background_tasks_within_the_graceful_timeout(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Their connections have gone on, but a stopping worker still lets the apps finish (within
    --graceful-timeout), as uvicorn waits for its request tasks."""
    from server_helpers import RawConnection, running_server
    from test_server_process import wait_for

    (tmp_path / "stop_app.py").write_text(textwrap.dedent(STOP_APP))
    monkeypatch.setenv("MAIL_LOG", str(tmp_path / "mail.log"))
    with running_server(Path("stop_app:app"), ["--graceful-timeout", "5"], log_path=tmp_path / "log",
                        cwd=tmp_path) as srv:
        connection = RawConnection(srv.port)
        assert connection.exchange("GET", "/signup", headers=[("Connection", "close")]).status == 200
        assert wait_for(lambda: "mail started" in srv.output(), 5.0), srv.output()
        srv.terminate()
        assert srv.wait_exit(10.0) == 0, srv.output()
        connection.close()
    assert (tmp_path / "mail.log").read_text() == "mail sent\n"
    assert "cancelling" not in srv.output(), srv.output()
