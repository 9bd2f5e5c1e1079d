"""WebSockets through ``python -m fastserve module:app`` on a real loopback port.

Starlette ``WebSocketRoute``s, a FastAPI ``@app.websocket``, a raw ASGI app using
``fastserve.websockets.WebSocket`` and a bare ASGI callable run in one server process; the
tests talk to them with the ``websockets`` client and, where a client library would hide
the protocol (unanswered pings, unmasked frames, invalid UTF-8, flow control), with raw
sockets. The app records what it saw (close codes, progress) behind plain HTTP routes.
Keepalive pings are timer rules: tests/test_websocket_keepalive.py checks them in-process
on a virtual clock.
"""
from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import os
import select
import socket
import struct
import textwrap
import time
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import pytest
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as sync_connect

from server_helpers import ServerProcess, fetch, rss_kib, running_server, server_side_of, wait_released

APP = '''
import asyncio
import contextvars
import gc
import json
import os

from fastapi import FastAPI, WebSocket as ApiWebSocket, WebSocketDisconnect as ApiDisconnect
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocketDisconnect

from fastserve.responses import PlainTextResponse as FastservePlainText
from fastserve.websockets import WebSocket as FastserveWebSocket

EVENTS = {}
RELEASE = {}
CONTEXT = contextvars.ContextVar("context", default="empty")
CONTEXT.set("set at import")  # in the context the server's tasks start from, unless --reset-contextvars


def record(key, event):
    EVENTS.setdefault(key, []).append(event)


def release_event(key):
    return RELEASE.setdefault(key, asyncio.Event())


async def echo(ws):
    key = ws.query_params.get("key", "")
    await ws.accept()
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            record(key, {"code": message["code"], "reason": message.get("reason", "")})
            print(f"disconnect {key} {message['code']}", flush=True)
            return
        if message.get("text") is not None:
            if message["text"] == "close-me":
                await ws.close(4002, "server says bye")
                return
            await ws.send_text(message["text"])
        else:
            await ws.send_bytes(message["bytes"])


async def json_echo(ws):
    await ws.accept()
    data = await ws.receive_json()
    await ws.send_json({"got": data})
    await ws.close()


async def subprotocol(ws):
    offered = ws.scope["subprotocols"]
    chosen = "superchat" if "superchat" in offered else None
    await ws.accept(subprotocol=chosen, headers=[(b"x-fastserve-test", b"accepted")])
    await ws.send_json({"offered": offered, "path": ws.url.path, "query": ws.url.query})
    await ws.close()


async def refuse(ws):
    await ws.close(code=1008)


async def deny(ws):
    await ws.send_denial_response(
        PlainTextResponse("no entry for you", status_code=418, headers={"x-denied": "yes"})
    )


async def deny_untyped(ws):
    await ws.send_denial_response(Response(b"", status_code=401))


async def deny_varying(ws):
    await ws.send_denial_response(PlainTextResponse("not for you", status_code=403, headers={"vary": "Cookie"}))


async def boom_before(ws):
    raise ValueError("boom before accept")


async def boom_after(ws):
    await ws.accept()
    await ws.receive_text()
    raise ValueError("boom after accept")


async def accept_and_return(ws):
    await ws.accept()
    await ws.send_text("bye")


async def no_answer(ws):
    return


async def slow_reader(ws):
    key = ws.query_params["key"]
    await ws.accept()
    await release_event(key).wait()
    count = total = 0
    while True:
        message = await ws.receive()
        if message.get("text") == "done":
            break
        count += 1
        total += len(message["bytes"])
    await ws.send_json({"count": count, "total": total})
    await ws.close()


async def firehose(ws):
    key = ws.query_params["key"]
    count = int(ws.query_params["count"])
    size = int(ws.query_params["size"])
    await ws.accept()
    EVENTS[key] = 0
    for i in range(count):
        await ws.send_bytes(i.to_bytes(4, "big") * (size // 4))
        EVENTS[key] = i + 1
    await ws.close()


async def slow_accept(ws):
    # Accepts once the file named by ?release= exists (the test makes it after SIGTERM).
    print("slow-accept waiting", flush=True)
    while not os.path.exists(ws.query_params["release"]):
        await asyncio.sleep(0.01)
    await ws.accept()


async def sleepy(ws):
    await ws.accept()
    await asyncio.sleep(3600)


async def http_ok(request):
    return PlainTextResponse("ok")


async def http_context(request):
    return PlainTextResponse(CONTEXT.get())


async def ws_context(ws):
    await ws.accept()
    await ws.send_text(CONTEXT.get())
    await ws.close()


async def events(request):
    return JSONResponse(EVENTS.get(request.query_params["key"]))


async def release(request):
    release_event(request.query_params["key"]).set()
    return PlainTextResponse("released")


async def health(request):
    gc.collect()
    sessions = sum(1 for obj in gc.get_objects() if type(obj).__name__ == "WebSocketSession")
    return JSONResponse({"tasks": len(asyncio.all_tasks()), "sessions": sessions})


api = FastAPI()


@api.websocket("/echo")
async def api_echo(websocket: ApiWebSocket):
    await websocket.accept()
    try:
        while True:
            data = await websocket.receive_json()
            await websocket.send_json({"echo": data})
    except ApiDisconnect as exc:
        record(websocket.query_params.get("key", ""), {"code": exc.code})


@api.websocket("/items/{item_id}")
async def api_item(websocket: ApiWebSocket, item_id: int, q: str = ""):
    await websocket.accept()
    await websocket.send_json({"item_id": item_id, "q": q})
    await websocket.close()


async def fastserve_app(scope, receive, send):
    ws = FastserveWebSocket(scope, receive, send)
    if scope["path"].endswith("/deny"):
        await ws.send_denial_response(FastservePlainText("members only", status_code=401))
        return
    await ws.accept()
    async for text in ws.iter_text():
        await ws.send_text(text.upper())


async def bare_asgi(scope, receive, send):
    """No helper classes: what a raw app sees when it sends after the client left or after closing."""
    key = scope["query_string"].decode().partition("=")[2]
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    message = await receive()
    if message["type"] == "websocket.receive" and message.get("text") == "close-then-send":
        await send({"type": "websocket.close", "code": 1000})
        try:
            await send({"type": "websocket.send", "text": "late"})
        except RuntimeError as exc:
            record(key, {"after_close": type(exc).__name__})
        return
    record(key, {"disconnect": message["code"]})
    try:
        await send({"type": "websocket.send", "text": "late"})
    except OSError as exc:
        record(key, {"after_disconnect": type(exc).__name__})


app = Starlette(routes=[
    WebSocketRoute("/echo", echo),
    WebSocketRoute("/json", json_echo),
    WebSocketRoute("/subprotocol", subprotocol),
    WebSocketRoute("/refuse", refuse),
    WebSocketRoute("/deny", deny),
    WebSocketRoute("/deny-untyped", deny_untyped),
    WebSocketRoute("/deny-varying", deny_varying),
    WebSocketRoute("/boom-before", boom_before),
    WebSocketRoute("/boom-after", boom_after),
    WebSocketRoute("/accept-and-return", accept_and_return),
    WebSocketRoute("/no-answer", no_answer),
    WebSocketRoute("/slow-reader", slow_reader),
    WebSocketRoute("/firehose", firehose),
    WebSocketRoute("/slow-accept", slow_accept),
    WebSocketRoute("/sleepy", sleepy),
    Route("/http", http_ok),
    Route("/context", http_context),
    WebSocketRoute("/context", ws_context),
    Route("/events", events),
    Route("/release", release),
    Route("/health", health),
    Mount("/fastapi", api),
    Mount("/fastserve", fastserve_app),
    Mount("/bare", bare_asgi),
])
'''

MAX_SIZE = 64 * 1024
TIMEOUT = 5.0
OPEN_TIMEOUT = 5.0


# ---------------------------------------------------------------------------------------------
# servers


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("ws_app")
    (base / "tests_ws_app.py").write_text(textwrap.dedent(APP))
    return base


@pytest.fixture(scope="module")
def server(app_dir: Path) -> Iterator[ServerProcess]:
    """The app with pings off (raw sockets then see only the frames they provoke)."""
    with running_server(
        Path("tests_ws_app:app"),
        ["--ws-max-size", str(MAX_SIZE), "--ws-ping-interval", "0"],
        log_path=app_dir / "main-server.log", cwd=app_dir,
    ) as srv:
        yield srv
        # Whatever the tests did to it, the server still answers plain HTTP.
        assert srv.alive(), srv.output()
        assert fetch(srv.port, "/http").body == b"ok"


@pytest.fixture(scope="module")
def lean_server(app_dir: Path) -> Iterator[ServerProcess]:
    """Pings off, permessage-deflate off, an access log, and --send-timeout 0.5 (a client that
    stops reading is dropped half a second after the server's writing paused)."""
    with running_server(
        Path("tests_ws_app:app"),
        ["--ws-ping-interval", "0", "--send-timeout", "0.5", "--no-ws-per-message-deflate", "--access-log"],
        log_path=app_dir / "lean-server.log", cwd=app_dir,
    ) as srv:
        yield srv
        assert_http_still_served(srv)


def ws_url(srv: ServerProcess, path: str) -> str:
    return f"ws://127.0.0.1:{srv.port}{path}"


def connect(url: str, **options: object):
    """The sync client, never waiting longer than the tests' timeout for a closing handshake."""
    options.setdefault("close_timeout", TIMEOUT)
    return sync_connect(url, **options)


def events(srv: ServerProcess, key: str, count: int = 1, timeout: float = 3.0) -> list:
    """What the app recorded under ``key``, once it has recorded ``count`` events."""
    deadline = time.monotonic() + timeout
    while True:
        got = json.loads(fetch(srv.port, f"/events?key={key}").body)
        if (got is not None and len(got) >= count) or time.monotonic() > deadline:
            return got
        time.sleep(0.02)


def assert_http_still_served(srv: ServerProcess) -> None:
    response = fetch(srv.port, "/http")
    assert response.status == 200 and response.body == b"ok"


# ---------------------------------------------------------------------------------------------
# a raw WebSocket client


def frame_bytes(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True,
                mask_key: Optional[bytes] = None) -> bytes:
    """One client frame; ``mask=False`` makes the protocol violation a browser never sends."""
    first = (0x80 if fin else 0) | opcode
    length = len(payload)
    mask_bit = 0x80 if mask else 0
    if length < 126:
        head = struct.pack("!BB", first, mask_bit | length)
    elif length < 65536:
        head = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not mask:
        return head + payload
    key = os.urandom(4) if mask_key is None else mask_key
    if key == b"\x00\x00\x00\x00":
        return head + key + payload
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


class RawWebSocket:
    """A blocking socket that speaks just enough WebSocket to misbehave on purpose."""

    def __init__(self, port: int, path: str, headers: List[Tuple[str, str]] = (), *,
                 key: Optional[str] = None, version: str = "13", method: str = "GET",
                 rcvbuf: Optional[int] = None, sndbuf: Optional[int] = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(("127.0.0.1", port))
        self.buffer = bytearray()
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket", "Connection: Upgrade"]
        if key is not False:
            lines.append(f"Sec-WebSocket-Key: {key or base64.b64encode(os.urandom(16)).decode()}")
        lines.append(f"Sec-WebSocket-Version: {version}")
        lines += [f"{name}: {value}" for name, value in headers]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = self._read_until(b"\r\n\r\n")
        status_line, *fields = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split(" ")[1])
        self.header_names: List[str] = []
        self.headers = {}
        for field in fields:
            if field:
                name, _, value = field.partition(":")
                self.header_names.append(name.strip().lower())
                self.headers[name.strip().lower()] = value.strip()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "RawWebSocket":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _fill(self) -> None:
        data = self.sock.recv(256 * 1024)
        if not data:
            raise EOFError("the server closed the connection")
        self.buffer += data

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            self._fill()
        index = self.buffer.index(marker) + len(marker)
        data = bytes(self.buffer[:index])
        del self.buffer[:index]
        return data

    def _read_exact(self, count: int) -> bytes:
        while len(self.buffer) < count:
            self._fill()
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    def read_body(self) -> bytes:
        return self._read_exact(int(self.headers["content-length"]))

    def send(self, opcode: int, payload: bytes, **options: object) -> None:
        self.sock.sendall(frame_bytes(opcode, payload, **options))

    def read_frame(self) -> Tuple[bool, int, bytes]:
        """(fin, opcode, payload) of the next server frame (which must not be masked)."""
        first, second = self._read_exact(2)
        assert not second & 0x80, "a server frame must not be masked"
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read_exact(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read_exact(8))
        return bool(first & 0x80), first & 0x0F, self._read_exact(length)

    def read_close(self) -> Tuple[int, str]:
        """Skip data frames up to the close frame; its (code, reason)."""
        while True:
            _, opcode, payload = self.read_frame()
            if opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                return code, payload[2:].decode()

    def wait_eof(self, timeout: float = TIMEOUT) -> bool:
        """True when the server closes the TCP connection within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            readable, _, _ = select.select([self.sock], [], [], deadline - time.monotonic())
            if not readable:
                return False
            try:
                if not self.sock.recv(65536):
                    return True
            except ConnectionResetError:
                return True
        return False


TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


# ---------------------------------------------------------------------------------------------
# messages


def test_echo_text_bytes_and_json(server: ServerProcess) -> None:
    with connect(ws_url(server, "/echo"), open_timeout=OPEN_TIMEOUT) as ws:
        ws.send("hello wörld")
        assert ws.recv(timeout=TIMEOUT) == "hello wörld"
        ws.send(b"\x00\x01binary\xff")
        assert ws.recv(timeout=TIMEOUT) == b"\x00\x01binary\xff"
        ws.send("")
        assert ws.recv(timeout=TIMEOUT) == ""
    with connect(ws_url(server, "/json"), open_timeout=OPEN_TIMEOUT) as ws:
        ws.send(json.dumps({"a": [1, 2, 3]}))
        assert json.loads(ws.recv(timeout=TIMEOUT)) == {"got": {"a": [1, 2, 3]}}


def test_fragmented_messages_are_reassembled(server: ServerProcess) -> None:
    with connect(ws_url(server, "/echo"), open_timeout=OPEN_TIMEOUT) as ws:
        ws.send(["hel", "lo ", "€uro"])
        assert ws.recv(timeout=TIMEOUT) == "hello €uro"
        ws.send([b"ab", b"", b"cd"])
        assert ws.recv(timeout=TIMEOUT) == b"abcd"
    euro = "€".encode()
    with RawWebSocket(server.port, "/echo") as raw:
        assert raw.status == 101
        # A three-byte character split across frames, with a ping between the fragments.
        raw.send(TEXT, b"price: " + euro[:1], fin=False)
        raw.send(PING, b"mid")
        raw.send(CONT, euro[1:] + b"5", fin=True)
        assert raw.read_frame() == (True, PONG, b"mid")
        assert raw.read_frame() == (True, TEXT, "price: €5".encode())


def test_fastapi_websocket_route(server: ServerProcess) -> None:
    with connect(ws_url(server, "/fastapi/echo?key=api"), open_timeout=OPEN_TIMEOUT) as ws:
        ws.send(json.dumps([1, "two"]))
        assert json.loads(ws.recv(timeout=TIMEOUT)) == {"echo": [1, "two"]}
        ws.close(code=4100, reason="done")
    assert events(server, "api") == [{"code": 4100}]
    with connect(ws_url(server, "/fastapi/items/42?q=needle"), open_timeout=OPEN_TIMEOUT) as ws:
        assert json.loads(ws.recv(timeout=TIMEOUT)) == {"item_id": 42, "q": "needle"}


def test_fastserve_websocket_class_in_a_raw_app(server: ServerProcess) -> None:
    with connect(ws_url(server, "/fastserve/shout"), open_timeout=OPEN_TIMEOUT) as ws:
        ws.send("quiet")
        assert ws.recv(timeout=TIMEOUT) == "QUIET"
    with pytest.raises(InvalidStatus) as info:
        connect(ws_url(server, "/fastserve/deny"), open_timeout=OPEN_TIMEOUT)
    assert info.value.response.status_code == 401
    assert info.value.response.body == b"members only"


def test_scope_subprotocol_and_extra_accept_headers(server: ServerProcess) -> None:
    with connect(ws_url(server, "/subprotocol?x=1"), subprotocols=["chat", "superchat"],
                 open_timeout=OPEN_TIMEOUT) as ws:
        assert ws.subprotocol == "superchat"
        assert ws.response.headers["Sec-WebSocket-Protocol"] == "superchat"
        assert ws.response.headers["X-Fastserve-Test"] == "accepted"
        assert ws.response.headers["Server"] == "fastserve"
        info = json.loads(ws.recv(timeout=TIMEOUT))
    assert info == {"offered": ["chat", "superchat"], "path": "/subprotocol", "query": "x=1"}
    with connect(ws_url(server, "/subprotocol"), open_timeout=OPEN_TIMEOUT) as ws:
        assert ws.subprotocol is None
        assert "Sec-WebSocket-Protocol" not in ws.response.headers
        assert json.loads(ws.recv(timeout=TIMEOUT))["offered"] == []


# ---------------------------------------------------------------------------------------------
# closing


def test_client_close_code_and_reason_reach_the_app(server: ServerProcess) -> None:
    with connect(ws_url(server, "/echo?key=client-close"), open_timeout=OPEN_TIMEOUT) as ws:
        ws.send("ping")
        assert ws.recv(timeout=TIMEOUT) == "ping"
        ws.close(code=4001, reason="bye now")
        # The server answered the closing handshake with the same code.
        assert ws.close_code == 4001
    assert events(server, "client-close") == [{"code": 4001, "reason": "bye now"}]


def test_server_close_code_and_reason_reach_the_client(server: ServerProcess) -> None:
    with connect(ws_url(server, "/echo?key=server-close"), open_timeout=OPEN_TIMEOUT) as ws:
        ws.send("close-me")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=TIMEOUT)
    assert info.value.rcvd.code == 4002
    assert info.value.rcvd.reason == "server says bye"


def test_empty_close_frame_is_1005_and_the_server_closes_tcp(server: ServerProcess) -> None:
    with RawWebSocket(server.port, "/echo?key=empty-close") as raw:
        raw.send(CLOSE, b"")
        assert raw.read_frame() == (True, CLOSE, b"")
        assert raw.wait_eof()
    assert events(server, "empty-close") == [{"code": 1005, "reason": ""}]


def test_abrupt_disconnect_is_1006(server: ServerProcess) -> None:
    with RawWebSocket(server.port, "/echo?key=abrupt") as raw:
        raw.send(TEXT, b"hi")
        assert raw.read_frame() == (True, TEXT, b"hi")
    assert events(server, "abrupt") == [{"code": 1006, "reason": ""}]


def test_app_returning_after_accept_closes_with_1000(server: ServerProcess) -> None:
    with connect(ws_url(server, "/accept-and-return"), open_timeout=OPEN_TIMEOUT) as ws:
        assert ws.recv(timeout=TIMEOUT) == "bye"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=TIMEOUT)
        assert ws.close_code == 1000


def test_send_after_disconnect_raises_oserror(server: ServerProcess) -> None:
    with connect(ws_url(server, "/bare/ws?key=late-send"), open_timeout=OPEN_TIMEOUT) as ws:
        ws.close(code=1000)
    assert events(server, "late-send", 2) == [{"disconnect": 1000}, {"after_disconnect": "ClientDisconnected"}]


def test_send_after_own_close_raises_runtime_error(server: ServerProcess) -> None:
    with connect(ws_url(server, "/bare/ws?key=own-close"), open_timeout=OPEN_TIMEOUT) as ws:
        ws.send("close-then-send")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=TIMEOUT)
        assert ws.close_code == 1000
    assert events(server, "own-close") == [{"after_close": "RuntimeError"}]


# ---------------------------------------------------------------------------------------------
# handshake answers other than 101


# An HTTP answer to a handshake names its body's type, as uvicorn's does: plain text unless the
# app's denial response names another.
PLAIN = "text/plain; charset=utf-8"


def test_close_before_accept_is_403(server: ServerProcess) -> None:
    with pytest.raises(InvalidStatus) as info:
        connect(ws_url(server, "/refuse"), open_timeout=OPEN_TIMEOUT)
    response = info.value.response
    assert (response.status_code, response.headers["content-type"], response.body) == (403, PLAIN, b"")


def test_unknown_route_is_refused_with_403(server: ServerProcess) -> None:
    with pytest.raises(InvalidStatus) as info:
        connect(ws_url(server, "/no-such-route"), open_timeout=OPEN_TIMEOUT)
    response = info.value.response
    assert (response.status_code, response.headers["content-type"]) == (403, PLAIN)


def test_denial_response_without_a_content_type_is_plain_text(server: ServerProcess) -> None:
    with pytest.raises(InvalidStatus) as info:
        connect(ws_url(server, "/deny-untyped"), open_timeout=OPEN_TIMEOUT)
    response = info.value.response
    assert response.status_code == 401
    assert response.headers.get_all("content-type") == [PLAIN]


def test_denial_response_with_custom_status_headers_and_body(server: ServerProcess) -> None:
    with pytest.raises(InvalidStatus) as info:
        connect(ws_url(server, "/deny"), open_timeout=OPEN_TIMEOUT)
    response = info.value.response
    assert response.status_code == 418
    assert response.headers["X-Denied"] == "yes"
    assert response.body == b"no entry for you"


def test_a_denial_responses_vary_takes_the_operators_members(start_server, app_dir: Path) -> None:
    """``--header Vary: Origin`` joins a denial response's own ``Vary``, in one field
    (``ServerHeaders.merged``), as on an app's HTTP answers (tests/test_vary_merge.py)."""
    srv = start_server(Path("tests_ws_app:app"), "--ws-ping-interval", "0", "--header", "Vary: Origin", cwd=app_dir)
    with pytest.raises(InvalidStatus) as info:
        connect(ws_url(srv, "/deny-varying"), open_timeout=OPEN_TIMEOUT)
    response = info.value.response
    assert response.status_code == 403 and response.headers.get_all("vary") == ["Cookie, Origin"]
    with pytest.raises(InvalidStatus) as info:
        connect(ws_url(srv, "/deny-untyped"), open_timeout=OPEN_TIMEOUT)
    assert info.value.response.headers.get_all("vary") == ["Origin"]


def test_app_exception_before_accept_is_500(server: ServerProcess) -> None:
    with pytest.raises(InvalidStatus) as info:
        connect(ws_url(server, "/boom-before"), open_timeout=OPEN_TIMEOUT)
    assert info.value.response.status_code == 500
    assert "boom before accept" in server.output()


def test_app_returning_without_an_answer_is_500(server: ServerProcess) -> None:
    with pytest.raises(InvalidStatus) as info:
        connect(ws_url(server, "/no-answer"), open_timeout=OPEN_TIMEOUT)
    assert info.value.response.status_code == 500


def test_app_exception_after_accept_closes_with_1011(server: ServerProcess) -> None:
    with connect(ws_url(server, "/boom-after"), open_timeout=OPEN_TIMEOUT) as ws:
        ws.send("trigger")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=TIMEOUT)
    assert info.value.rcvd.code == 1011


@pytest.mark.parametrize("options, status", [
    ({"key": False}, 400),                      # no Sec-WebSocket-Key
    ({"key": "c2hvcnQ="}, 400),                 # a key that is not 16 bytes
    ({"version": "8"}, 426),                    # not version 13: the one spoken is named
    ({"method": "POST"}, 405),
])
def test_invalid_handshakes_are_refused(server: ServerProcess, options: dict, status: int) -> None:
    with RawWebSocket(server.port, "/echo", **options) as raw:
        assert raw.status == status
        assert raw.headers["connection"] == ("upgrade, close" if status == 426 else "close")
        assert len(raw.header_names) == len(set(raw.header_names)), raw.header_names
        raw.read_body()
        assert raw.wait_eof()


def test_undecodable_path_is_400(server: ServerProcess) -> None:
    with RawWebSocket(server.port, "/echo%ff") as raw:
        assert raw.status == 400
        assert raw.read_body() == b"Bad Request"
        assert raw.wait_eof()


# ---------------------------------------------------------------------------------------------
# protocol errors and limits


def test_message_over_max_size_is_closed_with_1009(server: ServerProcess) -> None:
    with connect(ws_url(server, "/echo?key=too-big"), open_timeout=OPEN_TIMEOUT, max_size=None) as ws:
        ws.send(b"x" * (MAX_SIZE - 1000))
        assert len(ws.recv(timeout=TIMEOUT)) == MAX_SIZE - 1000  # just below the limit passes
        ws.send(b"x" * (MAX_SIZE + 1))
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=TIMEOUT)
    assert info.value.rcvd.code == 1009
    assert events(server, "too-big")[0]["code"] == 1009


def test_fragmented_message_over_max_size_is_closed_with_1009(server: ServerProcess) -> None:
    with RawWebSocket(server.port, "/echo") as raw:
        raw.send(BINARY, b"a" * 40_000, fin=False)
        raw.send(CONT, b"b" * 40_000, fin=True)
        assert raw.read_close()[0] == 1009
        assert raw.wait_eof()


def test_unmasked_client_frame_is_closed_with_1002(server: ServerProcess) -> None:
    with RawWebSocket(server.port, "/echo?key=unmasked") as raw:
        assert raw.status == 101
        raw.send(TEXT, b"not masked", mask=False)
        assert raw.read_close()[0] == 1002
        assert raw.wait_eof()
    assert events(server, "unmasked")[0]["code"] == 1002


def test_invalid_utf8_text_is_closed_with_1007(server: ServerProcess) -> None:
    with RawWebSocket(server.port, "/echo?key=bad-utf8") as raw:
        raw.send(TEXT, b"ok")
        assert raw.read_frame() == (True, TEXT, b"ok")
        raw.send(TEXT, b"caf\xc3\x28")
        assert raw.read_close()[0] == 1007
        assert raw.wait_eof()
    assert events(server, "bad-utf8")[0]["code"] == 1007


def test_invalid_utf8_in_a_first_fragment_fails_before_the_message_ends(server: ServerProcess) -> None:
    with RawWebSocket(server.port, "/echo") as raw:
        raw.send(TEXT, b"\xff\xfe", fin=False)
        assert raw.read_close()[0] == 1007


def test_frames_sent_right_behind_the_handshake_are_kept(server: ServerProcess) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        sock.sendall(request + frame_bytes(TEXT, b"early bird") + frame_bytes(BINARY, b"second"))
        data = b""
        while data.count(b"early bird") == 0 or data.count(b"second") == 0:
            chunk = sock.recv(65536)
            assert chunk, f"closed early: {data!r}"
            data += chunk
        assert data.startswith(b"HTTP/1.1 101 ")
        assert data.index(b"early bird") < data.index(b"second")
    finally:
        sock.close()


# ---------------------------------------------------------------------------------------------
# extensions


def test_permessage_deflate_is_negotiated(server: ServerProcess) -> None:
    with connect(ws_url(server, "/echo"), open_timeout=OPEN_TIMEOUT) as ws:
        assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
        text = "compress me " * 4000  # 48 KB that travels as a few hundred bytes
        ws.send(text)
        assert ws.recv(timeout=TIMEOUT) == text


def test_permessage_deflate_can_be_turned_off(lean_server: ServerProcess) -> None:
    with connect(ws_url(lean_server, "/echo"), open_timeout=OPEN_TIMEOUT) as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        ws.send("plain")
        assert ws.recv(timeout=TIMEOUT) == "plain"


def test_no_compression_when_the_client_does_not_ask(server: ServerProcess) -> None:
    with connect(ws_url(server, "/echo"), open_timeout=OPEN_TIMEOUT, compression=None) as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response.headers


def test_handshakes_are_access_logged(lean_server: ServerProcess) -> None:
    with connect(ws_url(lean_server, "/echo?logged=1"), open_timeout=OPEN_TIMEOUT) as ws:
        ws.send("x")
        assert ws.recv(timeout=TIMEOUT) == "x"
    with pytest.raises(InvalidStatus):
        connect(ws_url(lean_server, "/refuse?logged=2"), open_timeout=OPEN_TIMEOUT)
    deadline = time.monotonic() + 3
    while '"GET /refuse?logged=2 HTTP/1.1" 403' not in lean_server.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    output = lean_server.output()
    assert '"GET /echo?logged=1 HTTP/1.1" 101' in output
    assert '"GET /refuse?logged=2 HTTP/1.1" 403' in output


# ---------------------------------------------------------------------------------------------
# flow control


def test_send_waits_while_the_client_is_not_reading(server: ServerProcess) -> None:
    count, size = 400, 64 * 1024  # 25 MiB, far more than socket buffers hold
    raw = RawWebSocket(server.port, f"/firehose?key=firehose&count={count}&size={size}", rcvbuf=64 * 1024)
    try:
        assert raw.status == 101
        sent_while_stalled = settled(lambda: json.loads(fetch(server.port, "/events?key=firehose").body))
        assert sent_while_stalled < count // 2, "the app kept sending into an unread socket"
        for i in range(count):
            fin, opcode, payload = raw.read_frame()
            assert (fin, opcode, len(payload)) == (True, BINARY, size)
            assert payload[:8] == i.to_bytes(4, "big") * 2
        assert raw.read_close()[0] == 1000
    finally:
        raw.close()
    assert json.loads(fetch(server.port, "/events?key=firehose").body) == count


def settled(read, quiet: float = 0.3, timeout: float = TIMEOUT):
    """``read()`` once it has returned the same value for ``quiet`` seconds (polled)."""
    value, since, deadline = read(), time.monotonic(), time.monotonic() + timeout
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.03)
        latest = read()
        if latest != value:
            value, since = latest, time.monotonic()
    return value


def push_until_stalled(raw: RawWebSocket, frame: bytes, limit: int, stall: float = 0.5) -> Tuple[int, int, bytes]:
    """Send ``frame`` over and over until the server stops taking bytes for ``stall`` seconds,
    drops the connection, or ``limit`` bytes went out: (bytes sent, frames begun, the unsent
    rest of the last one)."""
    raw.sock.setblocking(False)
    pending = memoryview(b"")
    pushed = frames = 0
    last_progress = time.monotonic()
    while pushed < limit and time.monotonic() - last_progress < stall:
        if not pending:
            pending = memoryview(frame)
            frames += 1
        _, writable, _ = select.select([], [raw.sock], [], 0.1)
        if writable:
            try:
                sent = raw.sock.send(pending)
            except BlockingIOError:
                continue
            except (ConnectionResetError, BrokenPipeError):
                break
            pending = pending[sent:]
            pushed += sent
            last_progress = time.monotonic()
    raw.sock.setblocking(True)
    raw.sock.settimeout(TIMEOUT)
    return pushed, frames, bytes(pending)


def test_reading_pauses_while_the_app_is_not_receiving(server: ServerProcess) -> None:
    size = 32 * 1024
    frame = frame_bytes(BINARY, b"z" * size, mask_key=b"\x00\x00\x00\x00")
    limit = 96 * 1024 * 1024
    raw = RawWebSocket(server.port, "/slow-reader?key=slow", sndbuf=64 * 1024)
    try:
        assert raw.status == 101
        pushed, frames, pending = push_until_stalled(raw, frame, limit, stall=0.25)
        assert pushed < limit // 2, f"the server kept reading {pushed} bytes for an app that was not receiving"
        assert fetch(server.port, "/release?key=slow").body == b"released"
        raw.sock.sendall(pending)
        raw.send(TEXT, b"done")
        _, opcode, payload = raw.read_frame()
        assert opcode == TEXT
        assert json.loads(payload) == {"count": frames, "total": frames * size}
    finally:
        raw.close()


def test_reset_contextvars_starts_each_request_and_websocket_from_an_empty_context(
        server: ServerProcess, app_dir: Path) -> None:
    """As in uvicorn: by default the app's tasks see what was set before the server started
    (here at import); with --reset-contextvars they see none of it."""
    assert fetch(server.port, "/context").body == b"set at import"
    with connect(ws_url(server, "/context")) as ws:
        assert ws.recv() == "set at import"
    with running_server(Path("tests_ws_app:app"), ["--reset-contextvars", "--ws-ping-interval", "0"],
                        log_path=app_dir / "reset-contextvars.log", cwd=app_dir) as srv:
        assert fetch(srv.port, "/context").body == b"empty"
        assert fetch(srv.port, "/context").body == b"empty"  # the next request on a fresh context too
        with connect(ws_url(srv, "/context")) as ws:
            assert ws.recv() == "empty"


def test_a_ping_flood_from_a_client_that_never_reads_is_bounded(lean_server: ServerProcess) -> None:
    """Pongs count toward the write bound: reading stops while the client does not read, so
    the server's memory stays flat, and past --send-timeout the connection is dropped."""
    srv = lean_server
    raw = RawWebSocket(srv.port, "/echo", rcvbuf=16 * 1024, sndbuf=64 * 1024)
    try:
        assert raw.status == 101
        held = server_side_of(srv.pid, raw.sock)
        before = rss_kib(srv.pid)
        limit = 128 * 1024 * 1024
        pushed, _, _ = push_until_stalled(raw, frame_bytes(PING, b"p" * 125) * 64, limit)
        grown = rss_kib(srv.pid) - before
        assert pushed < 32 * 1024 * 1024, f"the server read {pushed} bytes of pings nobody read the pongs of"
        assert grown < 24 * 1024, f"RSS grew by {grown} KiB"
        # Still not reading: past the send timeout the server lets the connection go.
        assert wait_released(srv.pid, held), "never dropped"
        assert raw.wait_eof(timeout=TIMEOUT), "a client that never reads was never dropped"
    finally:
        raw.close()
    assert_http_still_served(srv)


# ---------------------------------------------------------------------------------------------
# many clients, and nothing left behind


def _health(srv: ServerProcess) -> dict:
    return json.loads(fetch(srv.port, "/health").body)


def test_many_concurrent_clients_and_nothing_left_behind(server: ServerProcess) -> None:
    before = _health(server)

    async def client(i: int) -> None:
        path = "/echo" if i % 2 else "/fastapi/echo"
        async with async_connect(ws_url(server, path), open_timeout=OPEN_TIMEOUT, close_timeout=TIMEOUT) as ws:
            for n in range(5):
                if path == "/echo":
                    await ws.send(f"client {i} message {n}")
                    assert await ws.recv() == f"client {i} message {n}"
                else:
                    await ws.send(json.dumps([i, n]))
                    assert json.loads(await ws.recv()) == {"echo": [i, n]}

    async def main() -> None:
        await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(60))), timeout=30)

    asyncio.run(main())
    deadline = time.monotonic() + 3
    while True:
        after = _health(server)
        if (after["sessions"] == 0 and after["tasks"] <= before["tasks"]) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert after["sessions"] == 0, after
    assert after["tasks"] <= before["tasks"], (before, after)
    assert_http_still_served(server)


def test_http_and_websocket_share_the_server(server: ServerProcess) -> None:
    with connect(ws_url(server, "/echo"), open_timeout=OPEN_TIMEOUT) as ws:
        assert_http_still_served(server)
        ws.send("both")
        assert ws.recv(timeout=TIMEOUT) == "both"
    assert_http_still_served(server)


# ---------------------------------------------------------------------------------------------
# other ways to run an app, and stopping


def test_fastapi_app_as_the_served_app(start_server, app_dir: Path) -> None:
    srv = start_server(Path("tests_ws_app:api"), "--ws-ping-interval", "0", cwd=app_dir)
    with connect(ws_url(srv, "/echo"), open_timeout=OPEN_TIMEOUT) as ws:
        ws.send(json.dumps({"x": 1}))
        assert json.loads(ws.recv(timeout=TIMEOUT)) == {"echo": {"x": 1}}


def test_sigterm_closes_open_websockets_with_1012_and_exits_0(start_server, app_dir: Path) -> None:
    srv = start_server(Path("tests_ws_app:app"), "--graceful-timeout", "8", cwd=app_dir)
    with connect(ws_url(srv, "/echo?key=sigterm"), open_timeout=OPEN_TIMEOUT) as ws:
        ws.send("hello")
        assert ws.recv(timeout=TIMEOUT) == "hello"
        started = time.monotonic()
        srv.terminate()
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=TIMEOUT)
        assert info.value.rcvd.code in (1012, 1001)
    assert srv.wait_exit(TIMEOUT) == 0, srv.output()
    assert time.monotonic() - started < 3.0
    assert "disconnect sigterm 1012" in srv.output()  # the app heard about it before the exit


def test_sigterm_with_an_app_that_ignores_the_close(start_server, app_dir: Path) -> None:
    srv = start_server(Path("tests_ws_app:app"), "--graceful-timeout", "0.2", cwd=app_dir)
    with connect(ws_url(srv, "/sleepy"), open_timeout=OPEN_TIMEOUT) as ws:
        started = time.monotonic()
        srv.terminate()
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=TIMEOUT)
        assert info.value.rcvd.code == 1012
    assert srv.wait_exit(TIMEOUT) == 0, srv.output()
    assert time.monotonic() - started < 3.0  # the app is cut off at --graceful-timeout


def wait_output(srv: ServerProcess, text: str, timeout: float = TIMEOUT) -> None:
    """Wait until the server's output holds ``text``."""
    deadline = time.monotonic() + timeout
    while text not in srv.output():
        assert time.monotonic() < deadline, f"no {text!r} within {timeout} s\n{srv.output()}"
        time.sleep(0.01)


def test_sigterm_while_the_app_has_not_accepted_yet_is_503(start_server, app_dir: Path, tmp_path: Path) -> None:
    srv = start_server(Path("tests_ws_app:app"), cwd=app_dir)
    release = tmp_path / "release"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        handshake = pool.submit(connect, ws_url(srv, f"/slow-accept?release={release}"), open_timeout=OPEN_TIMEOUT)
        wait_output(srv, "slow-accept waiting")  # the app has the handshake and has not answered
        srv.terminate()
        wait_output(srv, "shutting down")  # the worker is stopping; now the app accepts
        release.touch()
        with pytest.raises(InvalidStatus) as info:
            handshake.result(TIMEOUT)
    assert info.value.response.status_code == 503
    # The app was let finish (its late accept is refused) before the server exited.
    assert srv.wait_exit(TIMEOUT) == 0, srv.output()
