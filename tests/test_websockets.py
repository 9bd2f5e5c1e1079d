"""fastserve.websockets: the connection object a WebSocket endpoint talks through.

Most tests run a small raw ASGI app built on ``fastserve.websockets.WebSocket`` and drive it
with fastserve's ``TestClient`` and with Starlette's, which must see the same behaviour. The
state-machine tests feed the WebSocket scripted ASGI messages directly, and every misuse is
checked against Starlette's ``WebSocket`` doing the same thing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from starlette.testclient import TestClient as StarletteTestClient
from starlette.testclient import WebSocketDenialResponse as StarletteDenialResponse
from starlette.websockets import WebSocket as StarletteWebSocket
from starlette.websockets import WebSocketDisconnect as StarletteDisconnect

from fastserve.datastructures import URLPath
from fastserve.responses import PlainTextResponse, StreamingResponse
from fastserve.testclient import TestClient, WebSocketDenialResponse
from fastserve.websockets import (
    WebSocket,
    WebSocketClose,
    WebSocketDisconnect,
    WebSocketDisconnected,
    WebSocketState,
)

Handler = Callable[[WebSocket], Awaitable[None]]


def websocket_app(handler: Handler) -> Any:
    """A raw ASGI app that hands each WebSocket connection to ``handler``."""

    async def app(scope: dict, receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket"
        await handler(WebSocket(scope, receive, send))

    return app


@dataclass
class ClientKit:
    """One test-client implementation and the exceptions its sessions raise."""

    client: Callable[[Any], Any]
    disconnect: type[Exception]
    denial: type[Exception]


@pytest.fixture(params=["fastserve", "starlette"])
def kit(request: pytest.FixtureRequest) -> ClientKit:
    if request.param == "fastserve":
        return ClientKit(TestClient, WebSocketDisconnect, WebSocketDenialResponse)
    return ClientKit(StarletteTestClient, StarletteDisconnect, StarletteDenialResponse)


class ScriptedPeer:
    """Stands in for the server: gives the app a fixed list of messages, records what it sends."""

    def __init__(self, *incoming: dict) -> None:
        self.incoming = list(incoming)
        self.sent: list[dict] = []

    async def receive(self) -> dict:
        return self.incoming.pop(0)

    async def send(self, message: dict) -> None:
        self.sent.append(message)


CONNECT = {"type": "websocket.connect"}
DISCONNECT = {"type": "websocket.disconnect", "code": 1000}


def text(data: str) -> dict:
    return {"type": "websocket.receive", "text": data}


def binary(data: bytes) -> dict:
    return {"type": "websocket.receive", "bytes": data}


def websocket_scope(**extra: Any) -> dict:
    return {
        "type": "websocket",
        "path": "/ws",
        "root_path": "",
        "scheme": "ws",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("testclient", 50000),
        "server": ("testserver", 80),
        "subprotocols": [],
        **extra,
    }


def scripted_websocket(*incoming: dict, websocket_class: type = WebSocket, **scope: Any) -> tuple[Any, ScriptedPeer]:
    peer = ScriptedPeer(*incoming)
    return websocket_class(websocket_scope(**scope), peer.receive, peer.send), peer


# --------------------------------------------------------------------------- sending and receiving


def test_state_enum_values() -> None:
    assert [(state.name, state.value) for state in WebSocketState] == [
        ("CONNECTING", 0),
        ("CONNECTED", 1),
        ("DISCONNECTED", 2),
        ("RESPONSE", 3),
    ]


def test_text_round_trip(kit: ClientKit) -> None:
    async def shout(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text((await websocket.receive_text()).upper())
        await websocket.close()

    with kit.client(websocket_app(shout)).websocket_connect("/ws") as session:
        session.send_text("hello")
        assert session.receive_text() == "HELLO"


def test_bytes_round_trip(kit: ClientKit) -> None:
    async def reverse(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_bytes((await websocket.receive_bytes())[::-1])
        await websocket.close()

    with kit.client(websocket_app(reverse)).websocket_connect("/ws") as session:
        session.send_bytes(b"\x00\x01\xff")
        assert session.receive_bytes() == b"\xff\x01\x00"


def test_json_text_mode_is_compact_utf8_text(kit: ClientKit) -> None:
    async def wrap(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"got": await websocket.receive_json()})
        await websocket.close()

    with kit.client(websocket_app(wrap)).websocket_connect("/ws") as session:
        session.send_json({"name": "Zoë", "tags": [1, 2]})
        assert session.receive_text() == '{"got":{"name":"Zoë","tags":[1,2]}}'


def test_json_binary_mode_uses_utf8_binary_frames(kit: ClientKit) -> None:
    async def wrap(websocket: WebSocket) -> None:
        await websocket.accept()
        data = await websocket.receive_json(mode="binary")
        await websocket.send_json({"got": data}, mode="binary")
        await websocket.close()

    with kit.client(websocket_app(wrap)).websocket_connect("/ws") as session:
        session.send_json(["ü"], mode="binary")
        assert session.receive_bytes() == '{"got":["ü"]}'.encode()


def test_receive_json_binary_mode_reads_bytes_frame() -> None:
    websocket, _ = scripted_websocket(CONNECT, binary(b'{"a": 1}'))

    async def main() -> Any:
        await websocket.accept()
        return await websocket.receive_json(mode="binary")

    assert anyio.run(main) == {"a": 1}


@pytest.mark.parametrize(
    ("method", "messages", "expected"),
    [
        ("iter_text", [text("a"), text("b")], ["a", "b"]),
        ("iter_bytes", [binary(b"a"), binary(b"b")], [b"a", b"b"]),
        ("iter_json", [text("[1]"), text('{"x": null}')], [[1], {"x": None}]),
    ],
)
def test_iterators_end_when_the_client_disconnects(method: str, messages: list, expected: list) -> None:
    websocket, _ = scripted_websocket(CONNECT, *messages, DISCONNECT)

    async def main() -> list:
        await websocket.accept()
        return [item async for item in getattr(websocket, method)()]

    assert anyio.run(main) == expected
    assert websocket.client_state == WebSocketState.DISCONNECTED


def test_iter_text_through_the_test_client_sees_every_message_before_the_disconnect() -> None:
    received: list[str] = []

    async def collect(websocket: WebSocket) -> None:
        await websocket.accept()
        async for message in websocket.iter_text():
            received.append(message)
        received.append("<disconnected>")

    with TestClient(websocket_app(collect)).websocket_connect("/ws") as session:
        session.send_text("one")
        session.send_text("two")
    assert received == ["one", "two", "<disconnected>"]


def test_state_follows_the_handshake_and_the_close() -> None:
    websocket, peer = scripted_websocket(CONNECT, text("hi"))

    async def main() -> None:
        assert (websocket.client_state, websocket.application_state) == (
            WebSocketState.CONNECTING,
            WebSocketState.CONNECTING,
        )
        await websocket.accept()
        assert (websocket.client_state, websocket.application_state) == (
            WebSocketState.CONNECTED,
            WebSocketState.CONNECTED,
        )
        assert await websocket.receive_text() == "hi"
        await websocket.close(code=4000, reason="done")
        assert websocket.application_state == WebSocketState.DISCONNECTED

    anyio.run(main)
    assert peer.sent == [
        {"type": "websocket.accept", "subprotocol": None, "headers": []},
        {"type": "websocket.close", "code": 4000, "reason": "done"},
    ]


# --------------------------------------------------------------------------- closing


def test_client_close_code_and_reason_reach_the_app() -> None:
    websocket, _ = scripted_websocket(CONNECT, {"type": "websocket.disconnect", "code": 4001, "reason": "bye"})

    async def main() -> WebSocketDisconnect:
        await websocket.accept()
        with pytest.raises(WebSocketDisconnect) as info:
            await websocket.receive_text()
        return info.value

    error = anyio.run(main)
    assert (error.code, error.reason) == (4001, "bye")


def test_disconnect_defaults() -> None:
    error = WebSocketDisconnect()
    assert (error.code, error.reason) == (1000, "")
    assert WebSocketDisconnect(1001, None).reason == ""


def test_app_close_code_and_reason_reach_the_client(kit: ClientKit) -> None:
    async def close_after_accept(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close(code=4002, reason="nope")

    with kit.client(websocket_app(close_after_accept)).websocket_connect("/ws") as session:
        with pytest.raises(kit.disconnect) as info:
            session.receive_text()
    assert (info.value.code, info.value.reason) == (4002, "nope")


def test_close_before_accept_refuses_the_handshake(kit: ClientKit) -> None:
    async def refuse(websocket: WebSocket) -> None:
        await websocket.close(code=1008)

    with pytest.raises(kit.disconnect) as info:
        with kit.client(websocket_app(refuse)).websocket_connect("/ws"):
            pass  # pragma: no cover - the handshake fails
    assert info.value.code == 1008


def test_websocket_close_app(kit: ClientKit) -> None:
    with pytest.raises(kit.disconnect) as info:
        with kit.client(WebSocketClose(code=4003, reason="closed for maintenance")).websocket_connect("/ws"):
            pass  # pragma: no cover - the handshake fails
    assert (info.value.code, info.value.reason) == (4003, "closed for maintenance")
    assert WebSocketClose().reason == ""


def test_send_on_a_broken_connection_is_a_1006_disconnect() -> None:
    async def broken_send(message: dict) -> None:
        if message["type"] == "websocket.send":
            raise OSError("connection reset")

    async def receive() -> dict:
        return CONNECT

    websocket = WebSocket(websocket_scope(), receive, broken_send)

    async def main() -> WebSocketDisconnect:
        await websocket.accept()
        with pytest.raises(WebSocketDisconnect) as info:
            await websocket.send_text("lost")
        return info.value

    assert anyio.run(main).code == 1006
    assert websocket.application_state == WebSocketState.DISCONNECTED


# --------------------------------------------------------------------------- handshake details


def test_accept_with_subprotocol_and_headers(kit: ClientKit) -> None:
    async def pick_protocol(websocket: WebSocket) -> None:
        offered = websocket.scope["subprotocols"]
        await websocket.accept(subprotocol=offered[-1], headers=[(b"x-room", b"lobby")])
        await websocket.send_json(offered)
        await websocket.close()

    client = kit.client(websocket_app(pick_protocol))
    with client.websocket_connect("/ws", subprotocols=["chat.v1", "chat.v2"]) as session:
        assert session.accepted_subprotocol == "chat.v2"
        assert session.extra_headers == [(b"x-room", b"lobby")]
        assert session.receive_json() == ["chat.v1", "chat.v2"]


def test_connection_attributes(kit: ClientKit) -> None:
    class Rooms:
        def url_path_for(self, name: str, **params: Any) -> URLPath:
            assert name == "room"
            return URLPath(f"/rooms/{params['room']}", protocol="websocket")

    async def describe(websocket: WebSocket) -> None:
        websocket.scope["router"] = Rooms()
        websocket.scope["path_params"] = {"room": "42"}
        websocket.state.visits = 1
        await websocket.accept()
        await websocket.send_json(
            {
                "url": str(websocket.url),
                "base_url": str(websocket.base_url),
                "header": websocket.headers["x-user"],
                "query": websocket.query_params.getlist("tag"),
                "path_params": websocket.path_params,
                "cookies": websocket.cookies,
                "client": list(websocket.client),
                "state": websocket.state.visits,
                "url_for": str(websocket.url_for("room", room="7")),
                "mapping": websocket["path"],
            }
        )
        await websocket.close()

    client = kit.client(websocket_app(describe))
    client.cookies.set("session", "abc")
    with client.websocket_connect("/ws/room?tag=a&tag=b", headers={"x-user": "ann"}) as session:
        assert session.receive_json() == {
            "url": "ws://testserver/ws/room?tag=a&tag=b",
            "base_url": "ws://testserver/",
            "header": "ann",
            "query": ["a", "b"],
            "path_params": {"room": "42"},
            "cookies": {"session": "abc"},
            "client": ["testclient", 50000],
            "state": 1,
            "url_for": "ws://testserver/rooms/7",
            "mapping": "/ws/room",
        }


def test_app_is_read_from_the_scope() -> None:
    marker = object()
    websocket, _ = scripted_websocket(app=marker)
    assert websocket.app is marker


def test_websocket_requires_a_websocket_scope() -> None:
    with pytest.raises(AssertionError):
        WebSocket({"type": "http", "headers": []}, ScriptedPeer().receive, ScriptedPeer().send)


def test_raw_asgi_app_serving_http_and_websocket(kit: ClientKit) -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await PlainTextResponse("use the websocket")(scope, receive, send)
            return
        websocket = WebSocket(scope, receive, send)
        await websocket.accept()
        async for message in websocket.iter_text():
            await websocket.send_text(f"echo: {message}")

    client = kit.client(app)
    assert client.get("/").text == "use the websocket"
    with client.websocket_connect("/ws") as session:
        session.send_text("a")
        assert session.receive_text() == "echo: a"
        session.send_text("b")
        assert session.receive_text() == "echo: b"


# --------------------------------------------------------------------------- denial responses


def test_denial_response_reaches_the_client(kit: ClientKit) -> None:
    async def deny(websocket: WebSocket) -> None:
        await websocket.send_denial_response(PlainTextResponse("members only", status_code=403))

    with pytest.raises(kit.denial) as info:
        with kit.client(websocket_app(deny)).websocket_connect("/ws"):
            pass  # pragma: no cover - the handshake fails
    assert info.value.status_code == 403
    assert info.value.text == "members only"
    assert info.value.headers["content-type"] == "text/plain; charset=utf-8"


def test_streamed_denial_response_is_reassembled(kit: ClientKit) -> None:
    async def deny(websocket: WebSocket) -> None:
        await websocket.send_denial_response(StreamingResponse(iter([b"too ", b"many"]), status_code=429))
        assert websocket.application_state == WebSocketState.DISCONNECTED

    with pytest.raises(kit.disconnect) as info:  # a denial is a kind of disconnect
        with kit.client(websocket_app(deny)).websocket_connect("/ws"):
            pass  # pragma: no cover - the handshake fails
    assert info.value.status_code == 429  # type: ignore[attr-defined]
    assert info.value.content == b"too many"  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- misuse


async def _send_start(websocket: Any) -> None:
    await websocket.send({"type": "websocket.http.response.start", "status": 403, "headers": []})


async def _finish_denial(websocket: Any) -> None:
    await _send_start(websocket)
    await websocket.send({"type": "websocket.http.response.body", "body": b"", "more_body": False})


async def _accepted(websocket: Any) -> None:
    await websocket.accept()


MISUSES: dict[str, tuple[list[dict], dict, Callable[[Any], Awaitable[Any]], str]] = {
    "first message is not connect": (
        [text("too early")],
        {},
        lambda ws: ws.receive(),
        "Expected ASGI message \"websocket.connect\", but got 'websocket.receive'",
    ),
    "connect twice": (
        [CONNECT, CONNECT],
        {},
        lambda ws: _twice(ws.receive),
        "Expected ASGI message \"websocket.receive\" or \"websocket.disconnect\", but got 'websocket.connect'",
    ),
    "receive after disconnect": (
        [CONNECT, DISCONNECT],
        {},
        lambda ws: _times(3, ws.receive),
        'Cannot call "receive" once a disconnect message has been received.',
    ),
    "receive_text after disconnect": (
        [CONNECT, DISCONNECT],
        {},
        lambda ws: _then(ws, _accepted, lambda: ws.receive(), lambda: ws.receive_text()),
        'Cannot call "receive" once a disconnect message has been received.',
    ),
    "send data before accept": (
        [CONNECT],
        {},
        lambda ws: ws.send_text("hi"),
        'Expected ASGI message "websocket.accept", "websocket.close" or "websocket.http.response.start", '
        "but got 'websocket.send'",
    ),
    "accept twice": (
        [CONNECT],
        {},
        lambda ws: _twice(ws.accept),
        "Expected ASGI message \"websocket.send\" or \"websocket.close\", but got 'websocket.accept'",
    ),
    "send after close": (
        [CONNECT],
        {},
        lambda ws: _then(ws, _accepted, lambda: ws.close(), lambda: ws.send_text("late")),
        'Cannot call "send" once a close message has been sent.',
    ),
    "close twice": (
        [CONNECT],
        {},
        lambda ws: _twice(ws.close),
        'Cannot call "send" once a close message has been sent.',
    ),
    "data during a denial response": (
        [CONNECT],
        {"websocket.http.response": {}},
        lambda ws: _then(ws, _send_start, lambda: ws.send_text("x")),
        "Expected ASGI message \"websocket.http.response.body\", but got 'websocket.send'",
    ),
    "send after a denial response": (
        [CONNECT],
        {"websocket.http.response": {}},
        lambda ws: _then(ws, _finish_denial, lambda: ws.send_text("x")),
        'Cannot call "send" once a close message has been sent.',
    ),
    "receive_text before accept": (
        [CONNECT],
        {},
        lambda ws: ws.receive_text(),
        'WebSocket is not connected. Need to call "accept" first.',
    ),
    "receive_bytes before accept": (
        [CONNECT],
        {},
        lambda ws: ws.receive_bytes(),
        'WebSocket is not connected. Need to call "accept" first.',
    ),
    "receive_json before accept": (
        [CONNECT],
        {},
        lambda ws: ws.receive_json(),
        'WebSocket is not connected. Need to call "accept" first.',
    ),
    "receive_json with an unknown mode": (
        [CONNECT],
        {},
        lambda ws: _then(ws, _accepted, lambda: ws.receive_json(mode="xml")),
        'The "mode" argument should be "text" or "binary".',
    ),
    "send_json with an unknown mode": (
        [CONNECT],
        {},
        lambda ws: _then(ws, _accepted, lambda: ws.send_json({}, mode="xml")),
        'The "mode" argument should be "text" or "binary".',
    ),
    "denial response without server support": (
        [CONNECT],
        {},
        lambda ws: ws.send_denial_response(PlainTextResponse("no", status_code=403)),
        "The server doesn't support the Websocket Denial Response extension.",
    ),
}


async def _twice(step: Callable[[], Awaitable[Any]]) -> None:
    await _times(2, step)


async def _times(count: int, step: Callable[[], Awaitable[Any]]) -> None:
    for _ in range(count):
        await step()


async def _then(ws: Any, setup: Callable[[Any], Awaitable[Any]], *steps: Callable[[], Awaitable[Any]]) -> None:
    await setup(ws)
    for step in steps:
        await step()


def _misuse_error(websocket_class: type, name: str) -> RuntimeError:
    incoming, extensions, action, _ = MISUSES[name]
    websocket, _ = scripted_websocket(*incoming, websocket_class=websocket_class, extensions=extensions)

    async def main() -> RuntimeError:
        with pytest.raises(RuntimeError) as info:
            await action(websocket)
        return info.value

    return anyio.run(main)


@pytest.mark.parametrize("name", list(MISUSES))
def test_misuse_raises_the_same_runtime_error_as_starlette(name: str) -> None:
    ours = _misuse_error(WebSocket, name)
    theirs = _misuse_error(StarletteWebSocket, name)
    assert str(ours) == MISUSES[name][3]
    assert str(ours) == str(theirs)
    assert type(ours).__name__ == type(theirs).__name__


def test_disconnected_misuse_is_a_runtime_error_subclass() -> None:
    assert issubclass(WebSocketDisconnected, RuntimeError)
    assert isinstance(_misuse_error(WebSocket, "close twice"), WebSocketDisconnected)
