"""The ASGI bridge: runs an ASGI 3 app for requests the static fast path does not answer.

``HttpProtocol`` calls ``AsgiBridge.begin`` when a request's headers are complete; the
returned ``HttpCycle`` collects the body and, when its turn in the connection's response
order comes, runs the app as a task. The cycle writes straight to the transport, honours
flow control, and tells the connection when its response is complete.
"""
from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Tuple

from fastserve._speedups.headers import current_http_date, serialize_headers
from fastserve._speedups.pathlookup import origin_form, percent_decode
from fastserve._speedups.protocol import FileSender
from fastserve.config import Config
from fastserve.server.proxy import ProxyTrust

logger = logging.getLogger("fastserve")

Headers = List[Tuple[bytes, bytes]]
_NO_BODY_STATUSES = frozenset({204, 304})
# Body bytes buffered for an app before the connection stops reading from the client.
BODY_HIGH_WATER = 256 * 1024
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _declared_length(headers: Headers) -> int:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return -1


class AsgiBridge:
    """Per worker: the app, its lifespan, and the scope pieces every request shares."""

    def __init__(self, app: Any, config: Config, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.config = config
        self.loop = loop
        self.root_path = config.root_path
        self.proxy = ProxyTrust(config.forwarded_allow_ips) if config.proxy_headers else None
        self.state: Dict[str, Any] = {}
        self._lifespan: Optional[_Lifespan] = None

    async def startup(self) -> None:
        self._lifespan = _Lifespan(self.app, self.state)
        await self._lifespan.startup()

    async def shutdown(self) -> None:
        if self._lifespan is not None:
            await self._lifespan.shutdown()

    def scope_for(self, kind: str, conn: Any, raw_url: bytes, headers: Headers) -> Dict[str, Any]:
        """The scope keys HTTP and WebSocket requests share; ``path`` is None if undecodable."""
        target = origin_form(raw_url)
        raw_path, _, query = (target or b"").partition(b"?")
        path = percent_decode(raw_path) if target is not None else None
        client, scheme = conn.client, "http" if kind == "http" else "ws"
        if self.proxy is not None:
            client, scheme = self.proxy.resolve(client, headers, scheme)
        return {
            "type": kind,
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "server": conn.server,
            "client": client,
            "scheme": scheme,
            "root_path": self.root_path,
            "path": None if path is None else self.root_path + path,
            "raw_path": raw_path,
            "query_string": query,
            "headers": headers,
            "state": dict(self.state),
        }

    def begin(self, conn: Any, method: bytes, raw_url: bytes, headers: Headers) -> "HttpCycle":
        return HttpCycle(self, conn, method, raw_url, headers)

    def websocket(self, conn: Any, method: bytes, raw_url: bytes, headers: Headers) -> Any:
        """The session that takes over ``conn`` after a WebSocket handshake request."""
        from fastserve.server.websocket import WebSocketSession

        return WebSocketSession(self, conn, method, raw_url, headers)


class LifespanFailure(Exception):
    """The app reported that its startup (or shutdown) failed; the server must not serve."""


class _Lifespan:
    """Runs the app's lifespan protocol; an app that does not speak it is simply skipped."""

    def __init__(self, app: Any, state: Dict[str, Any]) -> None:
        self.app = app
        self.state = state
        self.events: "asyncio.Queue[Dict[str, Any]]" = asyncio.Queue()
        self.replies: "asyncio.Queue[Dict[str, Any]]" = asyncio.Queue()
        self.task: Optional[asyncio.Task] = None
        self.supported = True

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        try:
            await self.app(scope, self.events.get, self.replies.put)
        except BaseException as exc:  # the app does not do lifespan
            self.supported = False
            logger.debug("lifespan not supported by the app: %r", exc)
            await self.replies.put({"type": "lifespan.unsupported"})

    async def startup(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())
        await self.events.put({"type": "lifespan.startup"})
        reply = await self.replies.get()
        if reply["type"] == "lifespan.startup.failed":
            raise LifespanFailure(f"application startup failed: {reply.get('message', '')}")

    async def shutdown(self) -> None:
        if not self.supported or self.task is None or self.task.done():
            return
        await self.events.put({"type": "lifespan.shutdown"})
        reply = await self.replies.get()
        if reply["type"] == "lifespan.shutdown.failed":
            logger.error("application shutdown failed: %s", reply.get("message", ""))


class HttpCycle:
    """One request/response exchange between a connection and the app."""

    def __init__(self, bridge: AsgiBridge, conn: Any, method: bytes, raw_url: bytes, headers: Headers) -> None:
        self.bridge = bridge
        self.conn = conn
        self.loop = bridge.loop
        self.head_request = method == b"HEAD"
        self.keep_alive = conn.keep_alive
        self.http10 = conn.http10
        self.scope: Dict[str, Any] = bridge.scope_for("http", conn, raw_url, headers)
        self.bad_request = self.scope["path"] is None
        self.scope["asgi"]["spec_version"] = "2.4"
        self.scope["method"] = method.decode("ascii")
        self.scope["http_version"] = "1.0" if conn.http10 else "1.1"
        self.scope["extensions"] = {"http.response.pathsend": {}, "http.response.zerocopysend": {}}
        self.body: Deque[bytes] = deque()
        self.body_size = 0
        self.more_body = True
        self.buffered = 0
        self.too_large = _declared_length(headers) > bridge.config.max_body_size
        self.expect_continue = (b"expect", b"100-continue") in [(n, v.lower()) for n, v in headers if n == b"expect"]
        self.disconnected = False
        self.refused = False
        self.started = False
        self.complete = False
        self.chunked = False
        self.pending_head: Optional[bytes] = None
        self.waiter: Optional[asyncio.Future] = None
        self.drain: Optional[asyncio.Future] = None
        self.sender: Optional[FileSender] = None
        self.sending: Optional[asyncio.Future] = None
        self.task: Optional[asyncio.Task] = None

    # -- called by the connection ------------------------------------------------------

    def receive_body(self, chunk: bytes) -> None:
        self.body_size += len(chunk)
        if self.complete or self.too_large:
            return  # nobody will read it: drop it
        if self.body_size > self.bridge.config.max_body_size:
            # Stop reading and answer 413 ourselves if the app has not answered yet; the app
            # sees a disconnect, whatever it sends next is dropped, and the connection closes.
            self.too_large = True
            self.keep_alive = False
            self.body.clear()
            self.conn.set_body_backpressure(True)
            if not self.started:
                self.started = self.refused = True
                text = b"Content Too Large"
                self.conn.transport.write(self._build_head(413, [
                    (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(text))
                ]) + text)
                self.complete = True
        else:
            self.body.append(chunk)
            self.buffered += len(chunk)
            if self.buffered > BODY_HIGH_WATER:
                self.conn.set_body_backpressure(True)
        self._wake()

    def body_complete(self) -> None:
        self.more_body = False
        self._wake()

    def start(self) -> None:
        self.task = self.loop.create_task(self.run())

    def resume_writing(self) -> None:
        if self.sender is not None:
            self.sender.resume()
        elif self.drain is not None and not self.drain.done():
            self.drain.set_result(None)

    def connection_lost(self) -> None:
        self.disconnected = True
        self.sender = None
        self._wake()
        for future in (self.drain, self.sending):
            if future is not None and not future.done():
                future.set_result(None)

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    # -- the app's side ----------------------------------------------------------------

    async def run(self) -> None:
        try:
            if self.bad_request:
                await self._send_plain(400, b"Bad Request")
            elif self.too_large:
                await self._send_plain(413, b"Content Too Large")
            else:
                await self.bridge.app(self.scope, self.receive, self.send)
                if not self.started and not self.disconnected:
                    logger.error("ASGI app returned without starting a response")
                    await self._send_plain(500, b"Internal Server Error")
                elif not self.complete and not self.disconnected:
                    logger.error("ASGI app returned without completing its response")
                    self.conn.abort()
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            logger.error("exception in ASGI app", exc_info=exc)
            if not self.started and not self.disconnected:
                await self._send_plain(500, b"Internal Server Error")
            elif not self.complete:
                self.conn.abort()  # the client must not take a cut-short body for a whole one
        finally:
            if self.more_body and (self.expect_continue or self.too_large):
                # The client may still be holding back a body nobody asked for: end here.
                self.keep_alive = False
            self.conn.job_finished(not self.keep_alive)

    async def _send_plain(self, status: int, text: bytes) -> None:
        self.keep_alive = self.keep_alive and status < 500 and status != 413
        await self.send({
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(text))],
        })
        await self.send({"type": "http.response.body", "body": text})

    async def receive(self) -> Dict[str, Any]:
        if self.expect_continue and self.more_body and not self.started and not self.disconnected:
            self.expect_continue = False  # the app wants the body: tell the client to send it
            self.conn.transport.write(CONTINUE)
        while not self.body and self.more_body and not self.disconnected and not self.too_large:
            self.waiter = self.loop.create_future()
            await self.waiter
        if self.disconnected or self.too_large or (self.complete and not self.body):
            return {"type": "http.disconnect"}
        if self.body:
            chunk = self.body.popleft() if len(self.body) == 1 else b"".join(self.body)
            self.body.clear()
            if self.buffered > BODY_HIGH_WATER:
                self.conn.set_body_backpressure(False)
            self.buffered = 0
            return {"type": "http.request", "body": chunk, "more_body": self.more_body}
        if not self.more_body and self.body_size >= 0:
            self.body_size = -1  # the final empty message is sent once
            return {"type": "http.request", "body": b"", "more_body": False}
        # Body done and delivered: wait until the response completes or the client leaves.
        while not self.disconnected and not self.complete:
            self.waiter = self.loop.create_future()
            await self.waiter
        return {"type": "http.disconnect"}

    async def send(self, message: Dict[str, Any]) -> None:
        kind = message["type"]
        if self.disconnected or self.refused:
            return  # gone, or already answered 413 on the app's behalf
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self.started = True
            self.pending_head = self._build_head(message["status"], list(message.get("headers", [])))
            return
        if not self.started:
            raise RuntimeError(f"{kind} sent before http.response.start")
        if self.complete:
            raise RuntimeError(f"{kind} sent after the response completed")
        if kind == "http.response.body":
            more = message.get("more_body", False)
            head, tail = self._framing(len(message.get("body", b"")), more)
            body = message.get("body", b"") if self._sends_body() else b""
            data = head + body + tail
            if data:
                self.conn.transport.write(data)
            await self._after_write(more)
        elif kind == "http.response.pathsend":
            with open(message["path"], "rb") as file:
                size = os.fstat(file.fileno()).st_size
                await self._send_file(file, 0, size, more=False)
        elif kind == "http.response.zerocopysend":
            file = message["file"]
            fd = file.fileno()
            offset = message.get("offset")
            start = os.lseek(fd, 0, os.SEEK_CUR) if offset is None else offset
            count = message.get("count")
            if count is None:
                count = os.fstat(fd).st_size - start
            await self._send_file(file, start, count, more=message.get("more_body", False))
            if offset is None:  # the extension moves the file position when it was used
                os.lseek(fd, start + count, os.SEEK_SET)
        else:
            raise RuntimeError(f"unexpected ASGI message type {kind!r}")

    def _sends_body(self) -> bool:
        return not self.head_request and self.status not in _NO_BODY_STATUSES

    def _framing(self, length: int, more: bool) -> Tuple[bytes, bytes]:
        """Bytes before and after a body piece of ``length``: the head once, chunk framing."""
        head = self.pending_head or b""
        self.pending_head = None
        tail = b""
        if self._sends_body() and self.chunked:
            if length:
                head += b"%x\r\n" % length
                tail = b"\r\n"
            if not more:
                tail += b"0\r\n\r\n"
        return head, tail

    async def _after_write(self, more: bool) -> None:
        if not more:
            self.complete = True
            self._wake()
        elif self.conn.writing_paused:
            self.drain = self.loop.create_future()
            await self.drain

    async def _send_file(self, file: Any, offset: int, count: int, more: bool) -> None:
        """Send ``count`` bytes of ``file`` from ``offset`` with ``os.sendfile``, framed."""
        head, tail = self._framing(count, more)
        if not self._sends_body():
            count = 0
        done = self.sending = self.loop.create_future()
        self.sender = FileSender(
            self.conn, file, file.fileno(), [head, (offset, count), tail], lambda: done.done() or done.set_result(None)
        )
        self.sender.resume()
        if not done.done():
            await done  # set by the sender, or by connection_lost
        self.sender = None
        if not self.disconnected:
            await self._after_write(more)

    def _build_head(self, status: int, headers: Headers) -> bytes:
        self.status = status
        has_length = any(name.lower() == b"content-length" for name, _ in headers)
        if not has_length and status not in _NO_BODY_STATUSES and status >= 200:
            if self.http10:
                self.keep_alive = False  # the end of the body is the end of the connection
            else:
                self.chunked = True
                headers.append((b"transfer-encoding", b"chunked"))
        if not self.keep_alive:
            headers.append((b"connection", b"close"))
        elif self.http10:
            headers.append((b"connection", b"keep-alive"))
        return serialize_headers(status, [(b"server", b"fastserve"), (b"date", current_http_date())] + headers)
