"""The server side of a WebSocket connection, over the ASGI ``websocket`` messages.

``WebSocket`` tracks two half-connections: what the client has told the app (``client_state``)
and what the app has told the client (``application_state``). Every message in either direction
is checked against them, so a handler that receives after a disconnect or sends after a close
fails loudly instead of confusing the server.
"""

from __future__ import annotations

import enum
import json
from collections.abc import AsyncIterator, Iterable
from typing import Any

from fastserve._interop import counts_as, framework_base
from fastserve.requests import HTTPConnection
from fastserve.responses import Response
from fastserve.types import Message, Receive, Scope, Send

__all__ = [
    "WebSocket",
    "WebSocketClose",
    "WebSocketDisconnect",
    "WebSocketDisconnected",
    "WebSocketState",
]



class WebSocketState(enum.Enum):
    CONNECTING = 0
    CONNECTED = 1
    DISCONNECTED = 2
    RESPONSE = 3  # the handshake is being answered with an HTTP response instead


class WebSocketDisconnect(Exception):
    """The peer closed the connection (``code`` is the WebSocket close code)."""

    def __init__(self, code: int = 1000, reason: str | None = None) -> None:
        self.code = code
        self.reason = reason or ""


class WebSocketDisconnected(RuntimeError):
    """The WebSocket was used in a state where that is not possible (not accepted yet, closed)."""


# Apps catch these and compare states while the framework's WebSocket raises and sets them (a
# FastAPI endpoint gets Starlette's WebSocket): where Starlette is installed they are Starlette's
# classes, so ``except WebSocketDisconnect`` and ``== WebSocketState.CONNECTED`` hold either way.
WebSocketState = framework_base("starlette.websockets", "WebSocketState", WebSocketState)  # type: ignore[misc]
WebSocketDisconnect = framework_base(  # type: ignore[misc]
    "starlette.websockets", "WebSocketDisconnect", WebSocketDisconnect
)
WebSocketDisconnected = framework_base(  # type: ignore[misc]
    "starlette.websockets", "WebSocketDisconnected", WebSocketDisconnected
)


_JSON_MODES = ("text", "binary")
_BAD_MODE = 'The "mode" argument should be "text" or "binary".'
_NOT_ACCEPTED = 'WebSocket is not connected. Need to call "accept" first.'


def _check_json_mode(mode: str) -> None:
    if mode not in _JSON_MODES:
        raise RuntimeError(_BAD_MODE)


def _dump_json(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


@counts_as("starlette.websockets", "WebSocket")
class WebSocket(HTTPConnection):
    """One WebSocket connection, as seen by the application."""

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        super().__init__(scope)
        assert scope["type"] == "websocket", f"Expected a websocket scope, got {scope['type']!r}"
        self._receive = receive
        self._send = send
        self.client_state = WebSocketState.CONNECTING
        self.application_state = WebSocketState.CONNECTING

    # ------------------------------------------------------------------ raw ASGI messages

    async def receive(self) -> Message:
        """The next ASGI message from the client, checked against the connection state."""
        if self.client_state == WebSocketState.CONNECTING:
            message = await self._receive()
            if message["type"] != "websocket.connect":
                raise RuntimeError(f'Expected ASGI message "websocket.connect", but got {message["type"]!r}')
            self.client_state = WebSocketState.CONNECTED
            return message
        if self.client_state == WebSocketState.CONNECTED:
            message = await self._receive()
            if message["type"] not in ("websocket.receive", "websocket.disconnect"):
                raise RuntimeError(
                    'Expected ASGI message "websocket.receive" or "websocket.disconnect", '
                    f"but got {message['type']!r}"
                )
            if message["type"] == "websocket.disconnect":
                self.client_state = WebSocketState.DISCONNECTED
            return message
        raise WebSocketDisconnected('Cannot call "receive" once a disconnect message has been received.')

    async def send(self, message: Message) -> None:
        """Send an ASGI message to the client, checked against the connection state."""
        state = self.application_state
        message_type = message["type"]
        if state == WebSocketState.CONNECTING:
            await self._send_handshake(message)
        elif state == WebSocketState.CONNECTED:
            if message_type not in ("websocket.send", "websocket.close"):
                raise RuntimeError(
                    f'Expected ASGI message "websocket.send" or "websocket.close", but got {message_type!r}'
                )
            if message_type == "websocket.close":
                self.application_state = WebSocketState.DISCONNECTED
            try:
                await self._send(message)
            except OSError:
                # The server reports a connection that is already gone this way.
                self.application_state = WebSocketState.DISCONNECTED
                raise WebSocketDisconnect(code=1006) from None
        elif state == WebSocketState.RESPONSE:
            if message_type != "websocket.http.response.body":
                raise RuntimeError(f'Expected ASGI message "websocket.http.response.body", but got {message_type!r}')
            if not message.get("more_body", False):
                self.application_state = WebSocketState.DISCONNECTED
            await self._send(message)
        else:
            raise WebSocketDisconnected('Cannot call "send" once a close message has been sent.')

    async def _send_handshake(self, message: Message) -> None:
        """The first message of the app: accept, refuse (close) or answer with an HTTP response."""
        next_state = {
            "websocket.accept": WebSocketState.CONNECTED,
            "websocket.close": WebSocketState.DISCONNECTED,
            "websocket.http.response.start": WebSocketState.RESPONSE,
        }.get(message["type"])
        if next_state is None:
            raise RuntimeError(
                'Expected ASGI message "websocket.accept", "websocket.close" or "websocket.http.response.start", '
                f"but got {message['type']!r}"
            )
        self.application_state = next_state
        await self._send(message)

    # ------------------------------------------------------------------ handshake and close

    async def accept(
        self,
        subprotocol: str | None = None,
        headers: Iterable[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """Complete the handshake, choosing ``subprotocol`` and adding ``headers`` to the answer."""
        if self.client_state == WebSocketState.CONNECTING:
            await self.receive()  # the "websocket.connect" message comes first
        await self.send({"type": "websocket.accept", "subprotocol": subprotocol, "headers": list(headers or [])})

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close the connection (before ``accept`` this refuses the handshake)."""
        await self.send({"type": "websocket.close", "code": code, "reason": reason or ""})

    async def send_denial_response(self, response: Response) -> None:
        """Refuse the handshake with a full HTTP ``response`` (needs the server's support)."""
        if "websocket.http.response" not in self.scope.get("extensions", {}):
            raise RuntimeError("The server doesn't support the Websocket Denial Response extension.")
        await response(self.scope, self.receive, self.send)

    # ------------------------------------------------------------------ receiving data

    async def _receive_data(self) -> Message:
        """The next data message; a disconnect raises ``WebSocketDisconnect``."""
        if self.application_state != WebSocketState.CONNECTED:
            raise WebSocketDisconnected(_NOT_ACCEPTED)
        message = await self.receive()
        if message["type"] == "websocket.disconnect":
            # A disconnect without a code is "no status received" (1005).
            raise WebSocketDisconnect(message.get("code", 1005), message.get("reason"))
        return message

    async def receive_text(self) -> str:
        return (await self._receive_data())["text"]

    async def receive_bytes(self) -> bytes:
        return (await self._receive_data())["bytes"]

    async def receive_json(self, mode: str = "text") -> Any:
        """The next message parsed as JSON, read from a text frame or a UTF-8 binary frame."""
        _check_json_mode(mode)
        message = await self._receive_data()
        text = message["text"] if mode == "text" else message["bytes"].decode("utf-8")
        return json.loads(text)

    async def iter_text(self) -> AsyncIterator[str]:
        """Text messages until the client disconnects."""
        try:
            while True:
                yield await self.receive_text()
        except WebSocketDisconnect:
            pass

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        """Binary messages until the client disconnects."""
        try:
            while True:
                yield await self.receive_bytes()
        except WebSocketDisconnect:
            pass

    async def iter_json(self) -> AsyncIterator[Any]:
        """Text messages parsed as JSON until the client disconnects."""
        try:
            while True:
                yield await self.receive_json()
        except WebSocketDisconnect:
            pass

    # ------------------------------------------------------------------ sending data

    async def send_text(self, data: str) -> None:
        await self.send({"type": "websocket.send", "text": data})

    async def send_bytes(self, data: bytes) -> None:
        await self.send({"type": "websocket.send", "bytes": data})

    async def send_json(self, data: Any, mode: str = "text") -> None:
        """Send ``data`` as compact JSON in a text frame, or UTF-8 encoded in a binary frame."""
        _check_json_mode(mode)
        text = _dump_json(data)
        if mode == "text":
            await self.send({"type": "websocket.send", "text": text})
        else:
            await self.send({"type": "websocket.send", "bytes": text.encode("utf-8")})


class WebSocketClose:
    """An ASGI app that closes (or refuses) every WebSocket connection it is given."""

    def __init__(self, code: int = 1000, reason: str | None = None) -> None:
        self.code = code
        self.reason = reason or ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "websocket.close", "code": self.code, "reason": self.reason})
