"""WebSocket sessions: an ASGI app talking over an upgraded HTTP/1.1 connection.

``HttpProtocol`` hands a connection whose request asked for ``Upgrade: websocket`` to a
``WebSocketSession`` once the responses ahead of it are out. The session checks the
handshake, runs the app with the ASGI ``websocket`` messages and moves frames through the
sans-I/O ``websockets`` protocol: bytes from the transport go in, frames come out as events
for the app, and whatever the protocol has to say goes back to the transport.

Flow control runs both ways: ``websocket.send`` waits while the transport is paused, and
reading pauses while more than a few messages wait for the app. What the session says on
its own (pongs, close replies) counts toward the same write bound: while the client is not
reading what we wrote, we stop reading what it sends, so a ping flood from a client that
never reads holds a transport buffer's worth of pongs, not more; past ``--send-timeout``
seconds without progress the connection is dropped. Keepalive pings, the
closing handshake and its timeout are the session's own: the server's ticker skips
upgraded connections.
"""
from __future__ import annotations

import asyncio
import codecs
import contextvars
import logging
import os
import time
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Tuple

from websockets.datastructures import Headers as FrameHeaders
from websockets.exceptions import InvalidState, ProtocolError
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

# One class for HTTP and WebSocket sends, one rule for the status an app's answer starts with.
from fastserve._speedups.asgi_cycle import ClientDisconnected, final_status
from fastserve.types import Message
from fastserve._speedups.headers import current_http_date, serialize_headers

__all__ = ["ClientDisconnected", "WebSocketSession"]

logger = logging.getLogger("fastserve")
TASK_NAME = "fastserve-websocket"  # every session's app task (a stopping worker cancels these first)

Headers = List[Tuple[bytes, bytes]]

# Data messages waiting for the app before the connection stops reading is --ws-max-queue;
# it reads again when a quarter of that (at least one) is left.
# Bytes handed to the frame layer at a time: what it parses in one go can complete many
# messages (thousands of small ones, or, compressed, up to ~1,030 bytes per byte read), so a
# read is fed in slices, and once the queue is full the rest waits unparsed (``unfed``): past
# --ws-max-queue messages, one slice completes at most ~2,700 empty messages, or with
# permessage-deflate about 1 MiB besides the message it ends.
FEED_SLICE = 16 * 1024
COMPRESSED_FEED_SLICE = 1024
# Bytes a client may send before its handshake is answered (they are kept for later).
EARLY_INPUT_LIMIT = 64 * 1024
# Seconds to wait for the peer's half of a closing handshake, or for a closed
# transport to drain, before dropping the connection.
CLOSE_TIMEOUT = 5.0

_Utf8Decoder = codecs.getincrementaldecoder("utf-8")
# Response fields the session writes itself on every non-101 answer.
_OWN_FIELDS = frozenset({b"server", b"date", b"content-length", b"transfer-encoding", b"connection"})
# The type of an HTTP answer to a handshake whose fields name none: the server's own refusals
# and an app's untyped denial, as uvicorn types them.
_PLAIN_TEXT = (b"content-type", b"text/plain; charset=utf-8")

MAX_CLOSE_REASON = 123  # bytes: a close frame's payload is at most 125, 2 of them the code (RFC 6455 section 5.5)


# Fields of a 101 the server writes itself, whatever an app's websocket.accept names.
_HANDSHAKE_FIELDS = frozenset({
    b"upgrade", b"connection", b"sec-websocket-accept", b"sec-websocket-extensions",
    b"content-length", b"transfer-encoding",
})


def _fitting_reason(reason: str) -> str:
    """``reason`` cut to the bytes a close frame holds, between two characters (ASGI lets an
    app give any string)."""
    encoded = reason.encode("utf-8")
    if len(encoded) <= MAX_CLOSE_REASON:
        return reason
    return encoded[:MAX_CLOSE_REASON].decode("utf-8", "ignore")


# Where the app stands in the opening handshake.
_AWAITING_APP = 0   # the app has "websocket.connect" and has not answered yet
_DENYING = 1        # the app is sending an HTTP response instead of accepting
_ACCEPTED = 2       # 101 sent: frames flow
_ANSWERED = 3       # a plain HTTP response went out: there is no WebSocket


class _FrameLog(logging.LoggerAdapter):
    """The frame layer reports every open and close at INFO: those are debug detail here."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        super().log(logging.DEBUG if level == logging.INFO else level, msg, *args, **kwargs)


_frame_log = _FrameLog(logging.getLogger("fastserve.websocket"), {})


def speaks_another_version(headers: Headers) -> bool:
    """Whether a handshake asks for a WebSocket version other than 13, the one RFC 6455 defines
    and the server speaks (section 4.1: one ``Sec-WebSocket-Version`` field, ``13``). A
    handshake that names none is the frame layer's to refuse (400)."""
    versions = [value.strip(b" \t") for name, value in headers if name == b"sec-websocket-version"]
    return bool(versions) and versions != [b"13"]


def offered_subprotocols(headers: Headers) -> List[str]:
    """The subprotocols a handshake request offers, in the client's order."""
    offered: List[str] = []
    for name, value in headers:
        if name == b"sec-websocket-protocol":
            offered.extend(token.strip() for token in value.decode("latin-1").split(",") if token.strip())
    return offered


class WebSocketSession:
    """One WebSocket connection: the handshake, the app's task, frames both ways, the close."""

    def __init__(self, bridge: Any, conn: Any, method: bytes, raw_url: bytes, headers: Headers) -> None:
        self.bridge = bridge
        self.conn = conn
        self.loop: asyncio.AbstractEventLoop = conn.loop
        self.config = bridge.config
        self.method = method
        self.raw_url = raw_url
        self.http_version: Optional[bytes] = conn.protocol  # the HTTP-version the handshake named, for its access line
        self.request_headers = headers
        self.started = time.monotonic()
        self.headers = headers
        self.scope: Dict[str, Any] = bridge.scope_for("websocket", conn, raw_url, headers)
        self.scope["asgi"]["spec_version"] = "2.4"
        self.scope["subprotocols"] = offered_subprotocols(headers)
        self.scope["extensions"] = {"websocket.http.response": {}}
        max_size = self.config.ws_max_size
        extensions = []
        if self.config.ws_per_message_deflate:
            # Small windows keep an idle compressed connection to a few tens of KiB.
            extensions.append(ServerPerMessageDeflateFactory(
                server_max_window_bits=12, client_max_window_bits=12, compress_settings={"memLevel": 5},
            ))
        # The HTTP parser already read the handshake, so the frame layer starts OPEN: ``accept``
        # checks the request and negotiates; its parser reads nothing but frames.
        self.protocol = ServerProtocol(
            extensions=extensions, max_size=max_size if max_size > 0 else None, logger=_frame_log, state=OPEN,
        )
        self.transport: Any = None
        self.handshake = _AWAITING_APP
        self.answered_by_app = False
        self.upgrade_response: Optional[Response] = None
        self.denial: Optional[Tuple[int, Headers, List[bytes]]] = None
        self.task: Optional[asyncio.Task] = None
        self.shutting_down = False
        self.close_deferred = False   # the transport closes once the app returns
        self.app_closed = False
        # toward the app
        self.inbox: Deque[Message] = deque()
        self.inbox_messages = 0
        self.receiver: Optional[asyncio.Future] = None
        self.disconnect: Optional[Message] = None
        self.disconnect_delivered = False
        self.early_input = bytearray()
        # bytes read while the queue was full, not yet parsed (at most one read: reading is
        # paused while there are any), and the end of input seen behind them
        self.unfed = bytearray()
        self.unfed_eof = False
        self.feed_scheduled = False
        self.reading_paused = False
        # why reading is paused: messages wait for the app, the client is not reading our
        # writes (pongs included), early frames wait for the handshake; closing_read: our
        # close frame is out and the reply is read whatever the app does
        self.inbox_full = False
        self.write_blocked = False
        self.early_full = False
        self.closing_read = False
        # a message arriving in fragments: its bytes so far (None between messages), and for
        # text the decoder that checks them as they come
        self.message_text = False
        self.message_bytes: Optional[bytearray] = None
        self.decoder: Any = None
        # toward the client
        self.writable = asyncio.Event()
        self.writable.set()
        # timers
        self.ping_payload: Optional[bytes] = None
        self.ping_timer: Optional[asyncio.TimerHandle] = None
        self.pong_timer: Optional[asyncio.TimerHandle] = None
        self.abort_timer: Optional[asyncio.TimerHandle] = None
        self.send_timer: Optional[asyncio.TimerHandle] = None

    # -- called by the connection ------------------------------------------------------

    def start(self, rest: bytes) -> None:
        """Take over the transport: answer a bad handshake, or hand the app its connect."""
        transport = self.conn.transport
        if transport is None:
            return
        self.transport = transport
        if not transport.is_reading():
            transport.resume_reading()  # the HTTP side may have paused it; the flow is ours now
        if self.conn.writing_paused:
            self.pause_writing()
        if self.scope["path"] is None:
            self._answer_http(400, [], b"Bad Request")
            return
        if self.conn.state.shutting_down:  # the server began stopping while this request waited its turn
            self._answer_http(503, [], b"Service Unavailable")
            return
        if speaks_another_version(self.headers):
            # RFC 6455 section 4.4: a version the server does not speak is answered with the
            # one it does, in 426 Upgrade Required (RFC 9110 section 15.5.22: with Upgrade, and
            # "upgrade" in Connection, section 7.8); the frame layer answered 400 without it.
            self._answer_http(426, [(b"sec-websocket-version", b"13"), (b"upgrade", b"websocket")],
                              b"Failed to open a WebSocket connection: this server speaks Sec-WebSocket-Version 13.\n",
                              connection=b"upgrade, close")
            return
        response = self.protocol.accept(self._handshake_request())
        if response.status_code != 101:
            fields = [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in response.headers.raw_items()
                if name.lower().encode("latin-1") not in _OWN_FIELDS
            ]
            self._answer_http(response.status_code, fields, bytes(response.body))
            return
        self.upgrade_response = response
        self.inbox.append({"type": "websocket.connect"})
        context = contextvars.Context() if self.config.reset_contextvars else None  # None: a copy of the current
        self.task = self.loop.create_task(self._run_app(), name=TASK_NAME, context=context)
        self.task.add_done_callback(self._app_finished)
        if rest:
            self.data_received(rest)

    def data_received(self, data: bytes) -> None:
        if self.handshake != _ACCEPTED:
            if self.handshake == _AWAITING_APP:
                # A client may send frames right behind its request: keep them for after the 101.
                self.early_input += data
                if len(self.early_input) > EARLY_INPUT_LIMIT:
                    self.early_full = True
                    self._update_reading()
            return  # after a refusal nothing the client sends matters
        if self.unfed:
            self.unfed += data  # behind what waits already: order is kept
            self._update_reading()
            return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        """Hand ``data`` to the frame layer a ``FEED_SLICE`` at a time, delivering what each
        slice completes; once the app's queue is full (and our close is not waiting for its
        reply) the rest is kept in ``unfed`` and reading pauses, so the queue holds
        ``--ws-max-queue`` messages plus what one slice completes, never a whole read's worth
        (256 KiB, which compressed could have been ~260 MiB of messages)."""
        size = len(data)
        piece = COMPRESSED_FEED_SLICE if self.protocol.extensions else FEED_SLICE
        if size <= piece and not self.inbox_full:  # most reads: one small message or a few
            self.protocol.receive_data(data)
            self._process_events()
            return
        view = memoryview(data)
        offset = 0
        while offset < size:
            if self.inbox_full and not self.closing_read and self.transport is not None:
                self.unfed += view[offset:]
                self._update_reading()
                return
            self.protocol.receive_data(bytes(view[offset:offset + piece]))
            offset += piece
            self._process_events()

    def _feed_unfed(self) -> None:
        """Parse what waited while the queue was full (``_update_reading`` calls this once the
        app has taken the queue down), then the end of input that came behind it."""
        self.feed_scheduled = False
        if not self.unfed or self.handshake != _ACCEPTED:
            return
        data = bytes(self.unfed)
        self.unfed.clear()
        self._feed(data)
        if not self.unfed:
            if self.unfed_eof:
                self.unfed_eof = False
                self._receive_eof()
            self._update_reading()

    def eof_received(self) -> bool:
        if self.handshake == _ACCEPTED:
            if self.unfed:
                self.unfed_eof = True  # read after the messages waiting in front of it
                return True
            self._receive_eof()
        # True keeps a stopping server's half-open socket until the app has finished.
        return self.close_deferred

    def _receive_eof(self) -> None:
        self.protocol.receive_eof()
        self._flush()
        self._note_closed()

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.transport = None
        self._cancel_timers()
        self.early_input.clear()
        self.unfed.clear()  # nobody is left to answer: what waited unparsed is dropped
        self.unfed_eof = False
        self.writable.set()  # senders wake up and find the connection gone
        if self.handshake == _ACCEPTED:
            received = self.protocol.close_rcvd
            if received is not None:
                self._queue_disconnect(received.code, received.reason)
            else:
                self._queue_disconnect(1006)
        else:
            self._queue_disconnect(1006)
            if self.handshake in (_AWAITING_APP, _DENYING):  # gone before its handshake was answered
                self._log_access(0, 0)  # recorded as the connection records any such: 499
        if self.shutting_down and self.task is not None and not self.task.done():
            # The server is stopping and the client is gone: nobody is left to talk to.
            self.task.cancel()

    def pause_writing(self) -> None:
        """The client is not reading: stop reading it too, and drop it if it never resumes."""
        self.writable.clear()
        self.write_blocked = True
        self._update_reading()
        timeout = self.config.send_timeout
        if self.send_timer is None and timeout and timeout > 0:
            self.send_timer = self.loop.call_later(timeout, self._send_timed_out)

    def resume_writing(self) -> None:
        self.writable.set()
        self.write_blocked = False
        if self.send_timer is not None:
            self.send_timer.cancel()
            self.send_timer = None
        self._update_reading()

    def _send_timed_out(self) -> None:
        self.send_timer = None
        if self.write_blocked:
            self._abort()

    def shutdown(self) -> None:
        """The server is stopping: close with 1012, let the app finish, then close the transport."""
        if self.shutting_down:
            return
        self.shutting_down = True
        if self.transport is None:
            return
        if self.handshake in (_AWAITING_APP, _DENYING):
            self._queue_disconnect(1012, "service restart")
            self._answer_http(503, [], b"Service Unavailable")
        elif self.handshake == _ACCEPTED and self.protocol.state is OPEN:
            self._close_websocket(1012, "service restart")
            self._queue_disconnect(1012, "service restart")

    # -- the app's side ----------------------------------------------------------------

    async def _run_app(self) -> None:
        try:
            await self.bridge.app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            return
        except ClientDisconnected:
            return
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            logger.error("Exception in ASGI application", exc_info=exc)
            if self.handshake in (_AWAITING_APP, _DENYING):
                self._answer_http(500, [], b"Internal Server Error")
            elif self.handshake == _ACCEPTED and self.protocol.state is OPEN and self.transport is not None:
                self._close_websocket(1011, "")
            return
        if self.handshake in (_AWAITING_APP, _DENYING) and self.transport is not None:
            logger.error("ASGI callable returned without sending handshake.")
            self._answer_http(500, [], b"Internal Server Error")
        elif self.handshake == _ACCEPTED and self.protocol.state is OPEN and self.transport is not None:
            self._close_websocket(1000, "")  # the app is done with an open connection: close it cleanly

    def _app_finished(self, task: asyncio.Task) -> None:
        self.task = None
        self.inbox.clear()
        self.message_bytes = None
        if self.close_deferred:
            self.close_deferred = False
            self._end_transport()

    async def receive(self) -> Message:
        while not self.inbox:
            if self.disconnect_delivered and self.disconnect is not None:
                return dict(self.disconnect)  # asked again after the disconnect: same answer
            self.receiver = self.loop.create_future()
            try:
                await self.receiver
            finally:
                self.receiver = None
        message = self.inbox.popleft()
        kind = message["type"]
        if kind == "websocket.receive":
            self.inbox_messages -= 1
            if self.inbox_full and self.inbox_messages <= max(1, self.config.ws_max_queue // 4):
                self.inbox_full = False
                self._update_reading()
        elif kind == "websocket.disconnect":
            self.disconnect_delivered = True
        return message

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self.handshake == _ACCEPTED:
            if kind == "websocket.send":
                await self._send_data(message)
            elif kind == "websocket.close":
                self._app_close(message)
            else:
                raise RuntimeError(f"expected 'websocket.send' or 'websocket.close', got {kind!r}")
            return
        if self.handshake == _ANSWERED:
            if self.answered_by_app:
                raise RuntimeError(f"{kind!r} sent after the handshake was answered with an HTTP response")
            raise ClientDisconnected("the connection is closed")
        if self.transport is None:
            raise ClientDisconnected("the client went away before the handshake completed")
        if self.handshake == _DENYING:
            if kind != "websocket.http.response.body":
                raise RuntimeError(f"expected 'websocket.http.response.body', got {kind!r}")
            self._continue_denial(message)
        elif kind == "websocket.accept":
            self._accept(message)
        elif kind == "websocket.close":
            self.answered_by_app = True
            self._queue_disconnect(1006)
            self._answer_http(403, [], b"")
        elif kind == "websocket.http.response.start":
            # A 1xx is no answer (101 would say the handshake succeeded), nor is 600 or 999.
            status = final_status(message["status"], "websocket.http.response.start")
            self.denial = (status, [(bytes(n).lower(), bytes(v)) for n, v in message.get("headers") or []], [])
            self.handshake = _DENYING
        else:
            raise RuntimeError(
                f"expected 'websocket.accept', 'websocket.close' or 'websocket.http.response.start', got {kind!r}"
            )

    def _accept(self, message: Message) -> None:
        response = self.upgrade_response
        assert response is not None
        subprotocol = message.get("subprotocol")
        if subprotocol and subprotocol not in self.scope["subprotocols"]:
            # RFC 6455 section 4.2.2: the server picks one the client offered; a client fails the
            # connection on any other (as websockets and browsers do), so the app's error is
            # answered 500 before the 101, and logged, rather than left to the client.
            raise RuntimeError(f"websocket.accept: subprotocol {subprotocol!r} was not offered by the client "
                               f"(offered: {self.scope['subprotocols']})")
        # The handshake's own fields are the server's: an app's second Upgrade, Connection,
        # Sec-WebSocket-Accept or -Extensions made the client refuse the 101, and a 1xx has no
        # Content-Length or Transfer-Encoding (RFC 9110 section 8.6, RFC 9112 section 6.1). A
        # Sec-WebSocket-Protocol field is kept (uvicorn sends it) unless 'subprotocol' names one.
        owned = _HANDSHAKE_FIELDS | {b"sec-websocket-protocol"} if subprotocol else _HANDSHAKE_FIELDS
        app_fields = self.bridge.server_headers.merged(
            [(name, bytes(v)) for name, v in ((bytes(n).lower(), v) for n, v in message.get("headers") or [])
             if name not in owned])
        fields = self.bridge.server_headers.for_response([name for name, _ in app_fields], current_http_date())
        for name, value in response.headers.raw_items():
            if name.lower() != "date":
                fields.append((name.lower().encode("latin-1"), value.encode("latin-1")))
        if subprotocol:
            fields.append((b"sec-websocket-protocol", subprotocol.encode("latin-1")))
        head = serialize_headers(101, fields + app_fields)  # refuses header values that could split it
        self.transport.write(head)
        self.handshake = _ACCEPTED
        self.upgrade_response = None
        self._log_access(101, len(head))
        self.early_full = False
        self._update_reading()
        if self.early_input:
            early = bytes(self.early_input)
            self.early_input.clear()
            self.data_received(early)
        self._schedule_ping()

    def _continue_denial(self, message: Message) -> None:
        assert self.denial is not None
        status, fields, body = self.denial
        chunk = message.get("body", b"")
        if chunk:
            body.append(bytes(chunk))
        if message.get("more_body", False):
            return
        self.denial = None
        kept = [(name, value) for name, value in fields if name not in _OWN_FIELDS]
        self.answered_by_app = True
        self._queue_disconnect(1006)
        self._answer_http(status, kept, b"".join(body))

    async def _send_data(self, message: Message) -> None:
        if self.app_closed:
            raise RuntimeError("'websocket.send' after 'websocket.close'")
        if self.transport is None or self.protocol.state is not OPEN:
            raise ClientDisconnected("the WebSocket is closed")
        if not self.writable.is_set():
            await self.writable.wait()
            if self.app_closed:
                raise RuntimeError("'websocket.send' after 'websocket.close'")
            if self.transport is None or self.protocol.state is not OPEN:
                raise ClientDisconnected("the WebSocket is closed")
        data = message.get("bytes")
        text = message.get("text")
        try:
            if data is not None:
                if type(data) is not bytes:
                    # A buffer goes out as its bytes: a memoryview's len() counts its items,
                    # and the frame layer sized the message by it (8 bytes of int32s went as 2).
                    if not isinstance(data, (bytearray, memoryview)):
                        raise TypeError(f"'bytes' in websocket.send must be bytes, not {type(data).__name__}")
                    data = bytes(data)
                self.protocol.send_binary(data)
            elif text is not None:
                self.protocol.send_text(text.encode("utf-8"))
            else:
                raise RuntimeError("'websocket.send' needs 'bytes' or 'text'")
        except InvalidState:
            raise ClientDisconnected("the WebSocket is closed") from None
        self._flush()

    def _app_close(self, message: Message) -> None:
        if self.app_closed:
            raise RuntimeError("'websocket.close' sent twice")
        code = message.get("code")
        code = 1000 if code is None else code
        reason = _fitting_reason(message.get("reason") or "")
        if self.transport is None or self.protocol.state is not OPEN:
            self.app_closed = True  # the connection is already closing: nothing left to say
            return
        try:
            self._close_websocket(code, reason)
        except ProtocolError as exc:
            raise RuntimeError(f"cannot close the WebSocket with code {code!r}: {exc}") from None
        self.app_closed = True
        self._queue_disconnect(code, reason)

    # -- frames in ---------------------------------------------------------------------

    def _process_events(self) -> None:
        for event in self.protocol.events_received():
            assert isinstance(event, Frame)  # a server-side protocol receives frames only
            opcode = event.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY or opcode is Opcode.CONT:
                if not self._collect(event):
                    break  # the connection failed: the rest is moot
            elif opcode is Opcode.PONG:
                self._pong_received(event.data)
            # PING is answered by the frame layer; CLOSE shows in its state, read by _note_closed
        self._flush()
        self._note_closed()

    def _collect(self, frame: Frame) -> bool:
        """Add a data frame to the message being assembled; False when its text is not UTF-8.

        A fragmented message is gathered into one buffer: its memory is its size (bounded by
        ``--ws-max-size``), however many fragments it was cut into. Kept one object per
        fragment, a message of 1-byte fragments held ~50 bytes per byte, and one of empty
        fragments grew with their count, which no size limit sees.
        """
        data: Any = frame.data
        if frame.opcode is not Opcode.CONT:
            self.message_text = frame.opcode is Opcode.TEXT
            if frame.fin:  # a whole message in one frame (RFC 6455 section 5.4: most are)
                if not self.message_text:
                    self._deliver({"type": "websocket.receive", "bytes": data})
                    return True
                try:
                    text = str(data, "utf-8")
                except UnicodeDecodeError:
                    self.protocol.fail(1007, "invalid UTF-8 in a text message")
                    return False
                self._deliver({"type": "websocket.receive", "text": text})
                return True
            self.message_bytes = bytearray()
            self.decoder = _Utf8Decoder() if self.message_text else None
        if self.message_bytes is None:
            return True  # a continuation with no message begun: the frame layer refuses it first
        if self.decoder is not None:
            try:
                self.decoder.decode(data, frame.fin)  # fails at the first bad byte, mid-message too
            except UnicodeDecodeError:
                self.protocol.fail(1007, "invalid UTF-8 in a text message")
                return False
        self.message_bytes += data
        if frame.fin:
            whole, self.message_bytes, self.decoder = self.message_bytes, None, None
            if self.message_text:
                self._deliver({"type": "websocket.receive", "text": whole.decode("utf-8")})
            else:
                self._deliver({"type": "websocket.receive", "bytes": bytes(whole)})
        return True

    def _deliver(self, message: Message) -> None:
        if self.disconnect is not None or self.task is None:
            return  # the app closed (or finished): late messages are dropped
        self.inbox.append(message)
        self.inbox_messages += 1
        if self.inbox_messages >= self.config.ws_max_queue:
            self.inbox_full = True
            self._update_reading()
        self._wake()

    def _note_closed(self) -> None:
        """Once the frame layer left OPEN (close received, protocol error, EOF), tell the app."""
        protocol = self.protocol
        if self.handshake != _ACCEPTED or protocol.state is OPEN:
            return
        self._stop_keepalive()
        if self.disconnect is None:
            close = protocol.close_rcvd if protocol.close_rcvd is not None else protocol.close_sent
            if close is None:
                self._queue_disconnect(1006)
            else:
                self._queue_disconnect(close.code, close.reason)
        if not protocol.eof_sent:
            self._expect_close()

    def _queue_disconnect(self, code: int, reason: str = "") -> None:
        if self.disconnect is not None:
            return
        self.disconnect = {"type": "websocket.disconnect", "code": code, "reason": reason}
        self.inbox.append(self.disconnect)
        self._wake()

    def _wake(self) -> None:
        if self.receiver is not None and not self.receiver.done():
            self.receiver.set_result(None)

    def _update_reading(self) -> None:
        """Read unless the client is not reading us, or (before our close) the app is behind,
        or bytes read before still wait unparsed (parsed first, on the next loop turn, once
        the app is no longer behind)."""
        waiting = (self.inbox_full or self.early_full) and not self.closing_read
        if self.unfed and not waiting and not self.feed_scheduled and self.transport is not None:
            self.feed_scheduled = True
            self.loop.call_soon(self._feed_unfed)
        on = not (self.write_blocked or waiting or self.unfed)
        if self.transport is None or on != self.reading_paused:
            return
        self.reading_paused = not on
        if on:
            self.transport.resume_reading()
        else:
            self.transport.pause_reading()

    # -- bytes out, closing --------------------------------------------------------------

    def _flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                if self.transport is not None:
                    self.transport.write(data)
            else:
                self._end_transport()  # the frame layer is done with the connection

    def _close_websocket(self, code: int, reason: str) -> None:
        """Start the closing handshake from our side (raises ProtocolError for a bad code)."""
        self.protocol.send_close(code, reason)
        self._flush()
        self._stop_keepalive()
        self._expect_close()

    def _expect_close(self) -> None:
        """Our close frame is out: read the reply even if the app stopped reading, but not forever."""
        self.closing_read = True
        self._update_reading()
        if self.abort_timer is None and self.transport is not None:
            self.abort_timer = self.loop.call_later(CLOSE_TIMEOUT, self._abort)

    def _answer_http(self, status: int, fields: Headers, body: bytes, connection: bytes = b"close") -> None:
        """A plain HTTP response instead of a WebSocket, then the end of the connection
        (``connection``: the Connection field's value, which names ``close``)."""
        fields = self.bridge.server_headers.merged(fields)
        own = self.bridge.server_headers.for_response([name for name, _ in fields], current_http_date())
        length: Headers = [(b"content-length", b"%d" % len(body))]
        if status == 204 or status == 304:
            body, length = b"", []  # no content, so no length of it (RFC 9110 §8.6, §15.3.5, §15.4.5)
        elif not any(name == b"content-type" for name, _ in fields):
            fields = [*fields, _PLAIN_TEXT]
        head = serialize_headers(status, [*own, *fields, *length, (b"connection", connection)])
        self.handshake = _ANSWERED
        self.early_input.clear()
        if self.transport is not None:
            self.transport.write(head + body)
            self._log_access(status, len(head) + len(body))
        self._end_transport()

    def _end_transport(self) -> None:
        transport = self.transport
        if transport is None:
            return
        if self.shutting_down and self.task is not None and not self.task.done():
            self.close_deferred = True  # a stopping server lets the app finish first
            return
        self._stop_keepalive()
        transport.close()  # after the buffered bytes; a peer that never reads them is dropped
        if self.abort_timer is None:
            self.abort_timer = self.loop.call_later(CLOSE_TIMEOUT, self._abort)

    def _abort(self) -> None:
        self.abort_timer = None
        transport = self.transport
        if transport is not None:
            self.transport = None
            transport.abort()

    # -- keepalive -----------------------------------------------------------------------

    def _schedule_ping(self) -> None:
        interval = self.config.ws_ping_interval
        if interval and interval > 0 and self.protocol.state is OPEN and self.transport is not None:
            self.ping_timer = self.loop.call_later(interval, self._send_ping)

    def _send_ping(self) -> None:
        self.ping_timer = None
        if self.protocol.state is not OPEN or self.transport is None:
            return
        self.ping_payload = os.urandom(4)
        self.protocol.send_ping(self.ping_payload)
        self._flush()
        timeout = self.config.ws_ping_timeout
        if timeout and timeout > 0:
            self.pong_timer = self.loop.call_later(timeout, self._pong_missing)
        else:
            self.ping_payload = None
            self._schedule_ping()

    def _pong_received(self, data: Any) -> None:
        if self.ping_payload is None or bytes(data) != self.ping_payload:
            return  # unsolicited, or the answer to an older ping
        self.ping_payload = None
        if self.pong_timer is not None:
            self.pong_timer.cancel()
            self.pong_timer = None
        self._schedule_ping()

    def _pong_missing(self) -> None:
        self.pong_timer = None
        if self.protocol.state is not OPEN or self.transport is None:
            return
        if self.reading_paused:
            # The app is behind and we stopped reading: the pong may be waiting unread.
            self.pong_timer = self.loop.call_later(self.config.ws_ping_timeout, self._pong_missing)
            return
        self.ping_payload = None
        self.protocol.fail(1011, "keepalive ping timeout")
        self._flush()
        self._note_closed()

    def _stop_keepalive(self) -> None:
        for timer in (self.ping_timer, self.pong_timer):
            if timer is not None:
                timer.cancel()
        self.ping_timer = self.pong_timer = None
        self.ping_payload = None

    def _cancel_timers(self) -> None:
        self._stop_keepalive()
        for timer in (self.abort_timer, self.send_timer):
            if timer is not None:
                timer.cancel()
        self.abort_timer = self.send_timer = None

    # -- helpers -------------------------------------------------------------------------

    def _handshake_request(self) -> Request:
        """The frame layer's view of the request, built from what the HTTP parser already read."""
        fields = FrameHeaders([(name.decode("latin-1"), value.decode("latin-1")) for name, value in self.headers])
        return Request(
            path=self.raw_url.decode("latin-1"),
            headers=fields,
            method=self.method.decode("latin-1"),
            protocol="HTTP/1.0" if self.conn.http10 else "HTTP/1.1",
        )

    def _log_access(self, status: int, sent: int) -> None:
        """The handshake is answered (101, or an HTTP response), or the client left before it was
        (``status`` and ``sent`` 0, which the connection records as ``CLIENT_CLOSED_REQUEST``,
        499): count it and log it."""
        fields = dict(self.request_headers)
        self.conn.account(self.method, self.raw_url, self.http_version, status, sent, self.started,
                          fields.get(b"user-agent"), fields.get(b"referer"), self.scope["client"])
