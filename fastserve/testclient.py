"""``TestClient``: call an ASGI app in-process, the way a test wants to.

``TestClient`` is an httpx ``Client`` whose transport hands each request straight to the app:
the app runs on an event loop in a helper thread (an anyio blocking portal), reads the request
body as it asks for it, and its response body is read back chunk by chunk as httpx consumes it.
``websocket_connect()`` opens a ``WebSocketTestSession`` the same way, and ``with TestClient(app)``
runs the app's lifespan startup before the block and its shutdown after it.

Outside a ``with`` block every request (and every WebSocket session) gets an event loop of its own;
inside one, all of them share the loop the lifespan runs on.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import warnings
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal
from urllib.parse import unquote

import anyio
import anyio.from_thread

from fastserve._interop import framework_base
from fastserve.asgi2 import ASGI2App, ASGI3App, ASGIInstance, as_asgi3
from fastserve.exceptions import FastServeDeprecationWarning, StarletteDeprecationWarning
from fastserve.websockets import WebSocketDisconnect  # Starlette's class where Starlette is installed
from fastserve.types import ASGIApp, Message, Receive, Scope, Send

try:
    import httpx2 as httpx
except ModuleNotFoundError:  # pragma: no cover - exercised only where httpx2 is missing
    try:
        import httpx  # type: ignore[no-redef]
    except ModuleNotFoundError:
        raise RuntimeError(
            "fastserve.testclient needs the httpx2 package (or httpx). Install it with:\n    $ pip install httpx2\n"
        ) from None

__all__ = [
    "ASGI2App",
    "ASGI3App",
    "ASGIApp",
    "ASGIInstance",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "StarletteDeprecationWarning",
    "TestClient",
    "WebSocketDenialResponse",
    "WebSocketDisconnect",
    "WebSocketTestSession",
]


PortalFactory = Callable[[], AbstractContextManager[anyio.from_thread.BlockingPortal]]

# The ASGI spec versions the scopes claim. HTTP is 2.4 (an app is never left sending to a client
# that stopped reading: it is cancelled); fastserve's server says 2.3 there, as uvicorn does, so
# that middleware an app stacks takes the same branch under both. WebSocket stays at 2.3 here (a
# session that has been left swallows what the app still sends instead of raising OSError), where
# the server, which raises, says 2.4 with its denial extension.
_ASGI_SPEC = {"http": "2.4", "websocket": "2.3", "lifespan": "2.0"}
_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


# --------------------------------------------------------------------------- exceptions


def _denial_bases() -> tuple[type, ...]:
    """Starlette's ``WebSocketDenialResponse`` where Starlette's test client is installed and
    uses the same httpx (``except`` naming either class then catches fastserve's), else the
    classes it is made of."""
    theirs = framework_base("starlette.testclient", "WebSocketDenialResponse", None) if httpx.__name__ == "httpx2" else None
    if isinstance(theirs, type) and issubclass(theirs, httpx.Response) and issubclass(theirs, WebSocketDisconnect):
        return (theirs,)
    return (httpx.Response, WebSocketDisconnect)


class WebSocketDenialResponse(*_denial_bases()):  # type: ignore[misc]
    """The app refused the WebSocket handshake with an HTTP response (status, headers, body):
    an httpx ``Response`` and a ``WebSocketDisconnect``, and Starlette's exception of this name
    where Starlette is installed."""


class _Upgrade(Exception):
    """Carries a WebSocket session out of the transport to ``websocket_connect``."""

    def __init__(self, session: WebSocketTestSession) -> None:
        self.session = session


# --------------------------------------------------------------------------- WebSocket sessions


def _check_json_mode(mode: str) -> None:
    if mode not in ("text", "binary"):
        raise RuntimeError('The "mode" argument should be "text" or "binary".')


class WebSocketTestSession:
    """The client end of one WebSocket connection to the app; use it as a context manager.

    Entering performs the handshake (raising ``WebSocketDisconnect`` if the app closes instead
    of accepting, ``WebSocketDenialResponse`` if it answers with an HTTP response); leaving
    tells the app the client went away, stops it, and re-raises anything the app raised.
    """

    def __init__(self, app: ASGIApp, scope: Scope, portal_factory: PortalFactory) -> None:
        self.app = app
        self.scope = scope
        self.portal_factory = portal_factory
        self.accepted_subprotocol: str | None = None
        self.extra_headers: list[tuple[bytes, bytes]] | None = None
        self._accepted = False
        self._client_closed = False

    def __enter__(self) -> WebSocketTestSession:
        with contextlib.ExitStack() as stack:
            self.portal = portal = stack.enter_context(self.portal_factory())
            portal.call(self._open_channels)
            self._app_task = portal.start_task_soon(self._run_app)
            stack.push(self._stop_app)
            self.send({"type": "websocket.connect"})
            message = self.receive()
            self._raise_on_close(message)
            if message["type"] != "websocket.accept":
                raise RuntimeError(f'Expected ASGI message "websocket.accept", but got {message["type"]!r}')
            self._accepted = True
            self.accepted_subprotocol = message.get("subprotocol")
            self.extra_headers = message.get("headers")
            self._exit_stack = stack.pop_all()
        return self

    def __exit__(self, *exc_info: Any) -> bool | None:
        return self._exit_stack.__exit__(*exc_info)

    # -- on the event loop

    async def _open_channels(self) -> None:
        self._to_app_tx, self._to_app_rx = anyio.create_memory_object_stream[Message](float("inf"))
        self._from_app_tx, self._from_app_rx = anyio.create_memory_object_stream[Message](float("inf"))
        self._cancel_scope = anyio.CancelScope()

    async def _run_app(self) -> None:
        try:
            with self._cancel_scope:
                await self.app(self.scope, self._to_app_rx.receive, self._from_app_tx.send)
        finally:
            self._from_app_tx.close()  # wakes a client waiting for a message that will not come

    def _close_channels(self) -> None:
        for channel in (self._to_app_tx, self._to_app_rx, self._from_app_tx, self._from_app_rx):
            channel.close()

    async def _stop_running_app(self) -> None:
        """Tell an accepted app the client has gone (unless it already did) and let it react
        (until it finishes or every task waits on something, at most a second), then cancel
        whatever is left of it."""
        if self._accepted:
            if not self._client_closed:
                await self._to_app_tx.send({"type": "websocket.disconnect", "code": 1000, "reason": None})
            with anyio.move_on_after(1):
                await anyio.wait_all_tasks_blocked()
        self._cancel_scope.cancel()

    # -- in the caller's thread

    def _stop_app(self, exc_type: Any, exc: BaseException | None, traceback: Any) -> None:
        if not self._app_task.done():
            self.portal.call(self._stop_running_app)
        concurrent.futures.wait([self._app_task])
        self.portal.call(self._close_channels)
        error = self._app_task.exception()
        if error is not None and error is not exc:
            raise error

    def _raise_on_close(self, message: Message) -> None:
        if message["type"] == "websocket.close":
            raise WebSocketDisconnect(code=message.get("code", 1000), reason=message.get("reason", ""))
        if message["type"] == "websocket.http.response.start":
            body = []
            while True:
                part = self.receive()
                assert part["type"] == "websocket.http.response.body", f"Unexpected message {part['type']!r}"
                body.append(part.get("body", b""))
                if not part.get("more_body", False):
                    break
            raise WebSocketDenialResponse(
                status_code=message["status"], headers=message.get("headers", []), content=b"".join(body)
            )

    def send(self, message: Message) -> None:
        """Send a raw ASGI message to the app."""
        if message["type"] == "websocket.disconnect":
            self._client_closed = True
        self.portal.call(self._to_app_tx.send, message)

    def send_text(self, data: str) -> None:
        self.send({"type": "websocket.receive", "text": data})

    def send_bytes(self, data: bytes) -> None:
        self.send({"type": "websocket.receive", "bytes": data})

    def send_json(self, data: Any, mode: Literal["text", "binary"] = "text") -> None:
        """Send ``data`` as compact JSON in a text frame, or UTF-8 encoded in a binary frame."""
        _check_json_mode(mode)
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        if mode == "text":
            self.send({"type": "websocket.receive", "text": text})
        else:
            self.send({"type": "websocket.receive", "bytes": text.encode("utf-8")})

    def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Tell the app the client closed the connection."""
        self.send({"type": "websocket.disconnect", "code": code, "reason": reason})

    def receive(self) -> Message:
        """The next raw ASGI message from the app.

        When the app has finished and sent everything, re-raise what it raised, or report an
        abnormal closure (1006) if it just returned without closing the connection.
        """
        try:
            return self.portal.call(self._from_app_rx.receive)
        except anyio.EndOfStream:
            pass
        concurrent.futures.wait([self._app_task])
        error = self._app_task.exception()
        if error is not None:
            raise error
        raise WebSocketDisconnect(code=1006, reason="The application returned without closing the connection.")

    def receive_text(self) -> str:
        message = self.receive()
        self._raise_on_close(message)
        return message["text"]

    def receive_bytes(self) -> bytes:
        message = self.receive()
        self._raise_on_close(message)
        return message["bytes"]

    def receive_json(self, mode: Literal["text", "binary"] = "text") -> Any:
        """The next message parsed as JSON, from a text frame or a UTF-8 binary frame."""
        _check_json_mode(mode)
        message = self.receive()
        self._raise_on_close(message)
        return json.loads(message["text"] if mode == "text" else message["bytes"].decode("utf-8"))


# --------------------------------------------------------------------------- HTTP exchanges


def _request_messages(stream: Iterable[bytes]) -> Iterator[Message]:
    """The request body as ``http.request`` messages, one per chunk the client produces.

    Reads one chunk ahead so the last message can say ``more_body: False``.
    """
    pending: bytes | None = None
    for chunk in stream:
        if isinstance(chunk, str):
            chunk = chunk.encode("utf-8")
        if not chunk:
            continue
        if pending is not None:
            yield {"type": "http.request", "body": pending, "more_body": True}
        pending = bytes(chunk)
    yield {"type": "http.request", "body": pending or b"", "more_body": False}


class _HTTPExchange:
    """One request run through the app.

    ``start()`` (in the caller's thread) runs the app until it starts the response; the body
    then flows through a zero-capacity channel, one chunk per ``portal.call``, as httpx reads
    it, so a streaming app advances only as fast as the test consumes.
    """

    def __init__(self, transport: _TestClientTransport, scope: Scope, request: httpx.Request) -> None:
        self.transport = transport
        self.scope = scope
        self.request = request
        self.start_message: Message | None = None
        self.trailers: list[tuple[bytes, bytes]] = []
        self.debug_info: dict[str, Any] | None = None
        self._trailers_expected = False
        self._request_messages = _request_messages(request.stream)  # type: ignore[arg-type]
        self._request_complete = False
        self._body_complete = False

    # -- on the event loop

    async def _open(self) -> None:
        self._started = anyio.Event()
        self._response_complete = anyio.Event()
        self._body_tx, self._body_rx = anyio.create_memory_object_stream[tuple[bytes, bool]](0)
        self._cancel_scope = anyio.CancelScope()

    async def _run_app(self) -> None:
        try:
            with self._cancel_scope:
                async with self._body_tx:
                    await self.transport.app(self.scope, self._receive, self._send)
        finally:
            self._started.set()  # an app that never responded must not leave start() waiting

    async def _receive(self) -> Message:
        if not self._request_complete:
            message = next(self._request_messages)
            self._request_complete = not message["more_body"]
            return message
        # The body has been read: the next event is the client going away once it has the response
        # (answered without a checkpoint when it has it, so a cancelled poll still hears it).
        if not self._response_complete.is_set():
            await self._response_complete.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            assert self.start_message is None, 'The app sent "http.response.start" twice.'
            self.start_message = message
            self._trailers_expected = bool(message.get("trailers", False))
            self._started.set()
        elif kind == "http.response.body":
            assert self.start_message is not None, 'The app sent "http.response.body" before "http.response.start".'
            assert not self._body_complete, 'The app sent "http.response.body" after body completed.'
            self._body_complete = not message.get("more_body", False)
            last = self._body_complete and not self._trailers_expected
            await self._body_tx.send((bytes(message.get("body", b"")), last))
            if last:  # the client has the whole response: from now on ``receive`` says it left
                self._response_complete.set()
        elif kind == "http.response.trailers":
            assert self._trailers_expected, 'The app sent "http.response.trailers" without declaring trailers.'
            assert self._body_complete, 'The app sent "http.response.trailers" before body completed.'
            assert not self._response_complete.is_set(), (
                'The app sent "http.response.trailers" after response completed.'
            )
            self.trailers.extend(message.get("headers", []))
            if not message.get("more_trailers", False):
                self._response_complete.set()
        elif kind == "http.response.debug":
            self.debug_info = message["info"]
        # Other messages (an extension this client does not offer, such as ``http.response.push``)
        # are ignored, as a server that does not offer the extension would.

    async def _receive_chunk(self) -> bytes:
        chunk, last = await self._body_rx.receive()
        if last:
            self._response_complete.set()
        return chunk

    def _cancel_if_incomplete(self) -> None:
        if not self._response_complete.is_set():
            self._cancel_scope.cancel()

    def _close_channel(self) -> None:
        self._body_tx.close()
        self._body_rx.close()

    # -- in the caller's thread

    def start(self) -> httpx.Response:
        with contextlib.ExitStack() as stack:
            self.portal = stack.enter_context(self.transport.portal_factory())
            self.portal.call(self._open)
            stack.push(self._finish)
            self._app_task = self.portal.start_task_soon(self._run_app)
            self.portal.call(self._started.wait)
            if self.start_message is None:
                stack.close()  # waits for the app and re-raises its error, if it raised one
                if self.transport.raise_server_exceptions:
                    raise AssertionError("TestClient did not receive any response.")
                return httpx.Response(500, request=self.request)
            self._exit_stack = stack.pop_all()
        self.transport._open_exchanges.add(self)
        return self._response()

    def _response(self) -> httpx.Response:
        assert self.start_message is not None
        response = httpx.Response(
            status_code=self.start_message["status"],
            headers=list(self.start_message.get("headers", [])),
            stream=_TestClientResponseStream(self),
            request=self.request,
        )
        if self._trailers_expected:
            response.extensions["http.response.trailers"] = self.trailers  # filled in as the body is read
        if self.debug_info is not None:
            response.extensions["http.response.debug"] = self.debug_info
            if "template" in self.debug_info:
                response.template = self.debug_info["template"]  # type: ignore[attr-defined]
            if "context" in self.debug_info:
                response.context = self.debug_info["context"]  # type: ignore[attr-defined]
        return response

    def iter_body(self) -> Generator[bytes, None, None]:
        """Response body chunks until the app returns (so work it does after the body, like
        background tasks, is finished when reading ends)."""
        skip = self.request.method == "HEAD"
        while True:
            try:
                chunk = self.portal.call(self._receive_chunk)
            except anyio.EndOfStream:
                break
            if chunk and not skip:
                yield chunk
        self.close()

    def close(self) -> None:
        """Done with the response: stop the app if it is still sending, and release the loop."""
        self._exit_stack.close()

    def abort(self) -> None:
        """Stop the app whatever it is doing (the client is shutting down)."""
        self.portal.call(self._cancel_scope.cancel)
        self.close()

    def _finish(self, exc_type: Any, exc: BaseException | None, traceback: Any) -> None:
        self.transport._open_exchanges.discard(self)
        if not self._app_task.done():
            self.portal.call(self._cancel_if_incomplete)
        concurrent.futures.wait([self._app_task])
        self.portal.call(self._close_channel)
        error = self._app_task.exception()
        if exc_type is None and error is not None and self.transport.raise_server_exceptions:
            raise error


class _TestClientResponseStream(httpx.SyncByteStream):
    def __init__(self, exchange: _HTTPExchange) -> None:
        self._exchange = exchange

    def __iter__(self) -> Iterator[bytes]:
        return self._exchange.iter_body()

    def close(self) -> None:
        self._exchange.close()


# --------------------------------------------------------------------------- the transport


def _header_tokens_ordered(headers: httpx.Headers, name: str) -> list[str]:
    """The comma-separated tokens of every ``name`` header, in order."""
    return [token.strip() for value in headers.get_list(name) for token in value.split(",") if token.strip()]


def _header_tokens(headers: httpx.Headers, name: str) -> set[str]:
    return {token.lower() for token in _header_tokens_ordered(headers, name)}


def _handshake_problem(headers: httpx.Headers) -> tuple[int, str] | None:
    """Why a request to a ws:// URL is not a WebSocket opening handshake (status, reason), or None."""
    if "upgrade" not in _header_tokens(headers, "connection"):
        return 400, 'Missing "Connection: Upgrade" header.'
    if "websocket" not in _header_tokens(headers, "upgrade"):
        return 400, 'Missing "Upgrade: websocket" header.'
    if not headers.get("sec-websocket-key"):
        return 400, 'Missing "Sec-WebSocket-Key" header.'
    if headers.get("sec-websocket-version") != "13":
        return 426, "Unsupported WebSocket version (only 13 is)."
    return None


class _TestClientTransport(httpx.BaseTransport):
    """An httpx transport that answers every request by calling the ASGI app."""

    def __init__(
        self,
        app: ASGIApp,
        portal_factory: PortalFactory,
        raise_server_exceptions: bool = True,
        root_path: str = "",
        *,
        client: tuple[str, int] = ("testclient", 50000),
        app_state: dict[str, Any] | None = None,
    ) -> None:
        self.app = app
        self.portal_factory = portal_factory
        self.raise_server_exceptions = raise_server_exceptions
        self.root_path = root_path
        self.client = client
        self.app_state = {} if app_state is None else app_state
        self._open_exchanges: set[_HTTPExchange] = set()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme in ("ws", "wss"):
            return self._handle_websocket(request)
        scope = self._scope(request, "http")
        scope.update(method=request.method, extensions={"http.response.debug": {}, "http.response.trailers": {}})
        return _HTTPExchange(self, scope, request).start()

    def _handle_websocket(self, request: httpx.Request) -> httpx.Response:
        problem = _handshake_problem(request.headers)
        if problem is not None:
            status, reason = problem
            headers = {"sec-websocket-version": "13"} if status == 426 else {}
            return httpx.Response(status, headers=headers, text=reason, request=request)
        scope = self._scope(request, "websocket")
        scope.update(
            subprotocols=_header_tokens_ordered(request.headers, "sec-websocket-protocol"),
            extensions={"websocket.http.response": {}},
        )
        raise _Upgrade(WebSocketTestSession(self.app, scope, self.portal_factory))

    def _scope(self, request: httpx.Request, scope_type: str) -> Scope:
        url = request.url
        raw_path = url.raw_path.split(b"?", 1)[0]
        port = _DEFAULT_PORTS[url.scheme] if url.port is None else url.port
        return {
            "type": scope_type,
            "asgi": {"version": "3.0", "spec_version": _ASGI_SPEC[scope_type]},
            "http_version": "1.1",
            "scheme": url.scheme,
            "path": unquote(raw_path.decode("ascii")),
            "raw_path": raw_path,
            "root_path": self.root_path,
            "query_string": url.query,
            "headers": [(name.lower(), value) for name, value in request.headers.raw],
            "client": self.client,
            "server": [url.raw_host.decode("ascii"), port],
            "state": self.app_state.copy(),
        }

    def close(self) -> None:
        """Stop every app still streaming a response nobody finished reading."""
        with contextlib.ExitStack() as stack:
            while self._open_exchanges:
                stack.callback(self._open_exchanges.pop().abort)


# --------------------------------------------------------------------------- lifespan


class _Lifespan:
    """Drives the app's lifespan protocol for ``with TestClient(app)``.

    An app that returns straight away on the lifespan scope does not use it: there is then
    nothing to start or stop. One that fails a phase has its exception re-raised (or, if it
    only reported the failure, a ``RuntimeError`` carrying its message).
    """

    def __init__(self, app: ASGIApp, state: dict[str, Any]) -> None:
        self.app = app
        self.state = state
        self.error: Exception | None = None
        self._to_app_tx, self._to_app_rx = anyio.create_memory_object_stream[Message](float("inf"))
        self._from_app_tx, self._from_app_rx = anyio.create_memory_object_stream[Message](float("inf"))

    async def run(self) -> None:
        asgi = {"version": "3.0", "spec_version": _ASGI_SPEC["lifespan"]}
        scope = {"type": "lifespan", "asgi": asgi, "state": self.state}
        try:
            await self.app(scope, self._to_app_rx.receive, self._from_app_tx.send)
        except Exception as error:  # re-raised by the phase that was waiting for the app
            self.error = error
        finally:
            self._from_app_tx.close()

    async def startup(self) -> None:
        await self._run_phase("startup")

    async def shutdown(self) -> None:
        await self._run_phase("shutdown")

    def close(self) -> None:
        for channel in (self._to_app_tx, self._to_app_rx, self._from_app_tx, self._from_app_rx):
            channel.close()

    async def _next_message(self) -> Message | None:
        try:
            return await self._from_app_rx.receive()
        except anyio.EndOfStream:  # the app has returned
            return None

    async def _run_phase(self, phase: str) -> None:
        await self._to_app_tx.send({"type": f"lifespan.{phase}"})
        message = await self._next_message()
        if message is None:
            if self.error is not None:
                raise self.error
            return  # no lifespan support
        if message["type"] == f"lifespan.{phase}.complete":
            return
        assert message["type"] == f"lifespan.{phase}.failed", f"Unexpected lifespan message {message['type']!r}"
        # Nothing more will be sent to the app; wait for it to finish (usually by raising the failure).
        self._to_app_tx.close()
        while await self._next_message() is not None:
            pass
        if self.error is not None and not isinstance(self.error, anyio.EndOfStream):
            raise self.error
        raise RuntimeError(f"Lifespan {phase} failed: {message.get('message', '')}")


# --------------------------------------------------------------------------- the client


def _warn_if_timeout(timeout: Any) -> None:
    """A ``timeout`` given to the client or a request has no effect: the app runs in-process.

    Warned about with ``FastServeDeprecationWarning``: a ``StarletteDeprecationWarning``, as
    Starlette's client warns, and a ``DeprecationWarning``.
    """
    if timeout is not httpx.USE_CLIENT_DEFAULT:
        warnings.warn(
            "You should not use the 'timeout' argument with the TestClient: the app runs in-process, "
            "so no timeout applies.",
            FastServeDeprecationWarning,
            stacklevel=3,
        )


class TestClient(httpx.Client):
    """An httpx ``Client`` that sends every request to ``app`` in-process.

    ``raise_server_exceptions``: re-raise what the app raised (default); when False the caller
    gets the response the app managed to send, or an empty 500 when it sent none. ``root_path``
    and ``client`` (the peer address) go into every scope. ``backend`` is the anyio backend the
    app runs on ("asyncio" or "trio").
    """

    __test__ = False  # not a test class, whatever its name says
    portal: anyio.from_thread.BlockingPortal | None = None
    _lifespan: _Lifespan | None = None
    task: concurrent.futures.Future[None]

    def __init__(
        self,
        app: Any,
        base_url: str = "http://testserver",
        raise_server_exceptions: bool = True,
        root_path: str = "",
        backend: Literal["asyncio", "trio"] = "asyncio",
        backend_options: dict[str, Any] | None = None,
        cookies: Any = None,
        headers: Mapping[str, str] | None = None,
        follow_redirects: bool = True,
        client: tuple[str, int] = ("testclient", 50000),
        *,
        timeout: Any = httpx.USE_CLIENT_DEFAULT,
    ) -> None:
        _warn_if_timeout(timeout)
        self.async_backend: dict[str, Any] = {"backend": backend, "backend_options": backend_options or {}}
        self.app: ASGIApp = as_asgi3(app)
        self.app_state: dict[str, Any] = {}
        transport = _TestClientTransport(
            self.app,
            portal_factory=self._portal_factory,
            raise_server_exceptions=raise_server_exceptions,
            root_path=root_path,
            client=client,
            app_state=self.app_state,
        )
        default_headers = httpx.Headers(headers)
        default_headers.setdefault("user-agent", "testclient")
        super().__init__(
            base_url=base_url,
            headers=default_headers,
            transport=transport,
            follow_redirects=follow_redirects,
            cookies=cookies,
        )

    @contextlib.contextmanager
    def _portal_factory(self) -> Generator[anyio.from_thread.BlockingPortal, None, None]:
        if self.portal is not None:
            yield self.portal
        else:
            with anyio.from_thread.start_blocking_portal(**self.async_backend) as portal:
                yield portal

    def websocket_connect(
        self, url: str, subprotocols: Sequence[str] | None = None, **kwargs: Any
    ) -> WebSocketTestSession:
        """A WebSocket session with the app at ``url`` (relative to ``base_url``, as ws/wss).

        The handshake happens when the session is entered (``with client.websocket_connect(...)``).
        Other keyword arguments (``headers``, ``params``, ``cookies``...) shape the handshake request.
        """
        headers = httpx.Headers(kwargs.pop("headers", None))
        headers.setdefault("connection", "upgrade")
        headers.setdefault("upgrade", "websocket")
        headers.setdefault("sec-websocket-key", "testserver==")
        headers.setdefault("sec-websocket-version", "13")
        if subprotocols is not None:
            headers.setdefault("sec-websocket-protocol", ", ".join(subprotocols))
        try:
            response = self.request("GET", self._websocket_url(url), headers=headers, **kwargs)
        except _Upgrade as upgrade:
            return upgrade.session
        raise RuntimeError(f"Expected WebSocket upgrade, got {response.status_code}: {response.text}")

    def _websocket_url(self, url: str) -> httpx.URL:
        merged = self._merge_url(url)
        if merged.scheme in ("http", "https"):
            merged = merged.copy_with(scheme="wss" if merged.scheme == "https" else "ws")
        return merged

    def __enter__(self) -> TestClient:
        with contextlib.ExitStack() as stack:
            self.portal = portal = stack.enter_context(anyio.from_thread.start_blocking_portal(**self.async_backend))
            stack.callback(self._forget_portal)
            self._lifespan = _Lifespan(self.app, self.app_state)
            stack.callback(portal.call, self._lifespan.close)
            self.task = portal.start_task_soon(self.lifespan)
            portal.call(self.wait_startup)
            stack.callback(portal.call, self.wait_shutdown)
            stack.callback(self._transport.close)
            self._exit_stack = stack.pop_all()
        return self

    def _lifespan_session(self) -> _Lifespan:
        if self._lifespan is None:  # called outside ``with``: one session, driven by the caller
            self._lifespan = _Lifespan(self.app, self.app_state)
        return self._lifespan

    async def lifespan(self) -> None:
        """Run the app's ``lifespan`` scope until the app returns.

        ``with client:`` runs it in the background; ``wait_startup()`` and
        ``wait_shutdown()`` drive it. An exception the app raises is re-raised by the phase
        waiting for it.
        """
        await self._lifespan_session().run()

    async def wait_startup(self) -> None:
        """Send ``lifespan.startup`` and wait for the app's answer; raises if startup failed."""
        await self._lifespan_session().startup()

    async def wait_shutdown(self) -> None:
        """Send ``lifespan.shutdown`` and wait for the app's answer; raises if shutdown failed."""
        await self._lifespan_session().shutdown()

    def request(self, method: str, url: Any, **kwargs: Any) -> httpx.Response:  # type: ignore[override]
        """httpx's ``Client.request``; a ``timeout`` is warned about (the app runs in-process,
        so no timeout applies), as Starlette's client does."""
        _warn_if_timeout(kwargs.get("timeout", httpx.USE_CLIENT_DEFAULT))
        return super().request(method, url, **kwargs)

    def __exit__(self, *exc_info: Any) -> None:
        # The client stays usable afterwards, with an event loop per request again.
        self._exit_stack.close()

    def _forget_portal(self) -> None:
        self.portal = None
        self._lifespan = None
