"""The connection without sockets: bytes in, bytes out, time moved by hand.

``InProcessServer`` builds a worker's ``ServerState`` for a target (a directory, a
``StaticFiles`` or an ASGI app) on a private event loop; ``open()`` gives a ``Client`` whose
``HttpProtocol`` writes to a ``RecordingTransport``. Requests go in with ``send``; the answers
come back parsed with ``responses``. ``tick(seconds)`` moves the state's clock, so timeouts
are tested without sleeping. ``reader`` picks who reads request heads: ``"scanner"`` (plain
GET/HEAD heads by ``requesthead``, as the server does) or ``"httptools"`` (every head).
"""
from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple

from fastserve._speedups.protocol import HttpProtocol
from fastserve.config import Config
from fastserve.exceptions import HTTPException
from fastserve.responses import PlainTextResponse
from fastserve.server.app_loader import load_app
from fastserve.server.worker import build_state
from server_helpers import RawResponse, build_request

READERS = ("scanner", "httptools")


class CountingTransport:
    """The transport calls a connection makes, answered without a socket; writes are only counted
    (``bench/inprocess.py`` measures the connection's own cost with it)."""

    protocol: Any = None  # told connection_lost on close, on loop's next turn
    loop: Any = None

    def __init__(self) -> None:
        self.closed = False
        self.aborted = False
        self.reading = True
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1

    def get_extra_info(self, name: str) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(name)

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self._lost()

    def abort(self) -> None:
        self.aborted = True
        self._lost()

    def _lost(self) -> None:
        # As asyncio does: the protocol hears of the close on the loop's next turn.
        if not self.closed and self.protocol is not None:
            self.loop.call_soon(self.protocol.connection_lost, None)
        self.closed = True


class RecordingTransport(CountingTransport):
    """A ``CountingTransport`` that keeps what is written, in ``data``."""

    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.writes += 1
        self.data += data


def parse_responses(data: bytes, head_requests: Iterable[bool] = ()) -> Tuple[List[RawResponse], bytes]:
    """Every complete response at the front of ``data``, and what is left.

    ``head_requests`` says, in order, which responses answer a HEAD (they carry no body).
    """
    heads = list(head_requests)
    out: List[RawResponse] = []
    rest = bytes(data)
    while rest:
        end = rest.find(b"\r\n\r\n")
        if end < 0:
            break
        lines = rest[:end].split(b"\r\n")
        version, status, *reason = lines[0].split(b" ", 2)
        assert version in (b"HTTP/1.1", b"HTTP/1.0"), lines[0]
        headers = [tuple(part.strip() for part in line.split(b":", 1)) for line in lines[1:]]
        response = RawResponse(
            version.decode(), int(status), reason[0].decode("latin-1") if reason else "",
            [(name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in headers],
            raw_head=rest[:end + 4],
        )
        body_start = end + 4
        is_head = heads[len(out)] if len(out) < len(heads) else False
        length = response.header("content-length")
        if is_head or response.status in (204, 304) or response.status < 200:
            body_end = body_start
        elif response.header("transfer-encoding") == "chunked":
            body = bytearray()
            pos = body_start
            while True:
                line_end = rest.find(b"\r\n", pos)
                if line_end < 0:
                    return out, rest
                size = int(rest[pos:line_end].split(b";")[0], 16)
                if size == 0:
                    body_end = rest.find(b"\r\n\r\n", line_end - 2 if line_end >= 2 else 0) + 4
                    break
                body += rest[line_end + 2:line_end + 2 + size]
                pos = line_end + 2 + size + 2
            response.body = bytes(body)
            out.append(response)
            rest = rest[body_end:]
            continue
        elif length is not None:
            body_end = body_start + int(length)
            if len(rest) < body_end:
                break
        else:
            body_end = len(rest)  # read to the close
        response.body = rest[body_start:body_end]
        out.append(response)
        rest = rest[body_end:]
    return out, rest


def request(method: str, target: str, headers: Iterable[Tuple[str, str]] = (), body: bytes = b"",
            version: str = "HTTP/1.1") -> bytes:
    """One request's bytes, with a Host field (and Content-Length for a body)."""
    if body:
        headers = [*headers, ("Content-Length", str(len(body)))]
    return build_request(method, target, headers, version=version, body=body)


class Client:
    """One connection to an ``InProcessServer``."""

    def __init__(self, server: "InProcessServer") -> None:
        self.server = server
        self.transport = RecordingTransport()
        self.conn = HttpProtocol(server.state, server.loop)
        self.transport.protocol, self.transport.loop = self.conn, server.loop
        self.conn.connection_made(self.transport)
        self.heads: List[bool] = []
        self.done: List[RawResponse] = []
        self.taken = 0  # bytes of transport.data parsed into done

    def send(self, data: bytes, heads: Iterable[bool] = ()) -> "Client":
        """Feed ``data``; ``heads`` marks which of the requests in it are HEAD requests."""
        self.heads += list(heads)
        self.conn.data_received(data)
        self.server.settle()
        return self

    def request(self, method: str, target: str, headers: Iterable[Tuple[str, str]] = (), body: bytes = b"") -> RawResponse:
        """Send one request and return its response (which must be complete)."""
        before = len(self.parsed())
        self.send(request(method, target, headers, body), [method == "HEAD"])
        responses = self.parsed()
        assert len(responses) == before + 1, f"expected one more response, have {responses[before:]}"
        return responses[-1]

    def parsed(self) -> List[RawResponse]:
        """Every complete response written so far, in order."""
        fresh = bytes(self.transport.data[self.taken:])
        if fresh:
            found, rest = parse_responses(fresh, self.heads[len(self.done):])
            self.done += found
            self.taken = len(self.transport.data) - len(rest)
        return self.done

    def wait_for(self, count: int) -> List[RawResponse]:
        """Every response written, once there are at least ``count`` (see ``run_until``)."""
        self.server.run_until(lambda: len(self.parsed()) >= count)
        return self.parsed()

    def eof(self) -> None:
        if not self.conn.eof_received():
            self.transport.close()
        self.server.settle()

    @property
    def closed(self) -> bool:
        return self.transport.closed


@dataclass
class InProcessServer:
    """A worker's state for ``target`` on a private loop; see the module docstring."""

    target: Any
    reader: str = "scanner"
    options: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        config = Config(target=str(self.target) if isinstance(self.target, os.PathLike) else self.target, **self.options)
        app = load_app(config)
        self.app = app
        self.state = build_state(config, app, self.loop)
        self.state.scan_heads = self.reader == "scanner"
        self.now = 0.0
        self.state.tick(self.now)
        if self.state.asgi_bridge is not None:
            self.loop.run_until_complete(self.state.asgi_bridge.startup())

    def open(self) -> Client:
        return Client(self)

    def tick(self, seconds: float) -> None:
        """Move the clock ``seconds`` on; connections past a timeout are closed by it."""
        self.now += seconds
        self.state.tick(self.now)
        self.settle()

    def settle(self) -> None:
        """Let callbacks and tasks the connection started run until nothing is left to do."""
        for _ in range(200):
            self.loop.run_until_complete(asyncio.sleep(0))
            if not self.loop._ready:  # type: ignore[attr-defined]
                break

    def run_until(self, done: Any, timeout: float = 5.0) -> None:
        """Run the loop until ``done()`` is true, for apps that hand work to threads (whose
        results come back through the loop on their own time); fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        self.settle()
        while not done():
            assert time.monotonic() < deadline, f"not done after {timeout} s"
            self.loop.run_until_complete(asyncio.sleep(0.001))
            self.settle()

    def close(self) -> None:
        if self.state.asgi_bridge is not None:
            self.loop.run_until_complete(self.state.asgi_bridge.shutdown())
        # Apps still running (one that never answers) are cancelled while the loop can run them.
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.settle()
        self.loop.close()


def cli_options(*argv: str) -> Tuple[Any, Dict[str, Any]]:
    """``(target, options)`` for an ``InProcessServer`` as ``python -m fastserve *argv`` would
    run: the flags are read by the CLI's own parser, so a rule tested in-process through its
    flag covers the flag's spelling too."""
    from fastserve.cli import config_from_args

    config = config_from_args(list(argv))
    options = {each.name: getattr(config, each.name) for each in dataclasses.fields(config)}
    return options.pop("target"), options


def call_asgi(app: Any, method: str, target: str, headers: Iterable[Tuple[str, str]] = (),
              loop: Optional[asyncio.AbstractEventLoop] = None) -> RawResponse:
    """``app``'s answer to one request, called directly (no server), as a ``RawResponse``."""
    path, _, query = target.partition("?")
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
        "method": method, "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": query.encode(), "headers": [(n.lower().encode(), v.encode("latin-1")) for n, v in headers],
        "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 40000),
    }
    messages: List[Dict[str, Any]] = []

    async def receive() -> Dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Dict[str, Any]) -> None:
        messages.append(message)

    async def call() -> None:
        try:
            await app(scope, receive, send)
        except HTTPException as exc:  # what Starlette's exception middleware answers for it
            await PlainTextResponse(exc.detail, exc.status_code, exc.headers)(scope, receive, send)

    if loop is None:
        asyncio.run(call())
    else:
        loop.run_until_complete(call())
    start = messages[0]
    assert start["type"] == "http.response.start"
    body = b"".join(m.get("body", b"") for m in messages[1:])
    assert not messages[-1].get("more_body", False)
    headers = [(bytes(n).decode("latin-1").lower(), bytes(v).decode("latin-1")) for n, v in start["headers"]]
    return RawResponse("HTTP/1.1", start["status"], "", headers, body)
