"""fastserve.testclient.TestClient driving raw ASGI, Starlette, FastAPI and StaticFiles apps.

Each test reads as an example of what a test suite can do with the client: send every verb,
stream bodies both ways, keep cookies, follow redirects, see or hide app errors, run the
lifespan, and open WebSocket sessions, on the asyncio and trio backends.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Optional

import anyio.lowlevel
import httpx2
import pytest
import sniffio
from fastapi import FastAPI, Form, UploadFile, WebSocketException
from fastapi import Request as FastAPIRequest
from fastapi import Response as FastAPIResponse
from fastapi import WebSocket as FastAPIWebSocket
from fastapi import WebSocketDisconnect as FrameworkWebSocketDisconnect
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse as StarletteJSONResponse
from starlette.responses import PlainTextResponse as StarlettePlainTextResponse
from starlette.responses import RedirectResponse as StarletteRedirectResponse
from starlette.responses import StreamingResponse as StarletteStreamingResponse
from starlette.routing import Mount, Route
from starlette.templating import Jinja2Templates

from fastserve.requests import Request as FastserveRequest
from fastserve.responses import JSONResponse, PlainTextResponse
from fastserve.staticfiles import StaticFiles
from fastserve.testclient import TestClient, WebSocketDenialResponse, WebSocketTestSession
from fastserve.websockets import WebSocket, WebSocketDisconnect


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


# --------------------------------------------------------------------------- a raw ASGI app


async def read_body(receive: Any) -> tuple[bytes, list[tuple[bytes, bool]]]:
    """The whole request body, and the (chunk, more_body) messages it came in."""
    messages = []
    while True:
        message = await receive()
        assert message["type"] == "http.request"
        messages.append((message.get("body", b""), message.get("more_body", False)))
        if not message.get("more_body", False):
            return b"".join(chunk for chunk, _ in messages), messages


async def echo_app(scope: dict, receive: Any, send: Any) -> None:
    """Answers every request with a JSON description of the scope and body it got."""
    assert scope["type"] == "http"
    body, messages = await read_body(receive)
    description = {
        "method": scope["method"],
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode(),
        "root_path": scope["root_path"],
        "query_string": scope["query_string"].decode(),
        "headers": [[name.decode(), value.decode()] for name, value in scope["headers"]],
        "client": list(scope["client"]),
        "server": list(scope["server"]),
        "scheme": scope["scheme"],
        "http_version": scope["http_version"],
        "asgi": scope["asgi"],
        "body": body.decode(),
        "chunks": [[chunk.decode(), more] for chunk, more in messages],
        "async_library": sniffio.current_async_library(),
    }
    await JSONResponse(description, headers={"x-method": scope["method"]})(scope, receive, send)


def header_values(description: dict, name: str) -> list[str]:
    return [value for key, value in description["headers"] if key == name]


# --------------------------------------------------------------------------- HTTP against a raw app


@pytest.mark.parametrize("verb", ["get", "options", "delete", "query"])
def test_verbs_without_a_body(verb: str, backend: str) -> None:
    client = TestClient(echo_app, backend=backend)
    response = getattr(client, verb)("/things?page=2")
    assert response.status_code == 200
    assert response.json()["method"] == verb.upper()
    assert response.json()["query_string"] == "page=2"
    assert response.json()["async_library"] == backend


@pytest.mark.parametrize("verb", ["post", "put", "patch"])
def test_verbs_with_a_body(verb: str, backend: str) -> None:
    response = getattr(TestClient(echo_app, backend=backend), verb)("/things", content=b"payload")
    assert response.json()["method"] == verb.upper()
    assert response.json()["body"] == "payload"


def test_head_sends_headers_without_a_body() -> None:
    response = TestClient(echo_app).head("/")
    assert response.status_code == 200
    assert response.headers["x-method"] == "HEAD"
    assert int(response.headers["content-length"]) > 0
    assert response.content == b""


def test_any_method_through_request() -> None:
    assert TestClient(echo_app).request("PURGE", "/cache").json()["method"] == "PURGE"


def test_build_request_and_send() -> None:
    client = TestClient(echo_app)
    request = client.build_request("POST", "/built", json={"a": 1})
    response = client.send(request)
    assert isinstance(client, httpx2.Client)
    assert response.json()["body"] == '{"a":1}'
    assert response.request is request


def test_scope_describes_the_request() -> None:
    description = TestClient(echo_app).get("/caf%C3%A9/a%2Fb?q=%20x").json()
    assert description["path"] == "/café/a/b"
    assert description["raw_path"] == "/caf%C3%A9/a%2Fb"
    assert description["query_string"] == "q=%20x"
    assert description["root_path"] == ""
    assert description["scheme"] == "http"
    assert description["http_version"] == "1.1"
    assert description["client"] == ["testclient", 50000]
    assert description["server"] == ["testserver", 80]
    assert description["asgi"]["version"] == "3.0"
    assert header_values(description, "host") == ["testserver"]
    assert header_values(description, "user-agent") == ["testclient"]


def test_base_url_client_address_and_root_path() -> None:
    client = TestClient(echo_app, base_url="https://example.org:8443", client=("10.1.2.3", 4567), root_path="/api")
    description = client.get("/items").json()
    assert description["scheme"] == "https"
    assert description["server"] == ["example.org", 8443]
    assert description["client"] == ["10.1.2.3", 4567]
    assert description["root_path"] == "/api"
    assert description["path"] == "/items"


@pytest.mark.parametrize(
    ("base_url", "server", "host"),
    [
        ("http://[::1]", ["::1", 80], "[::1]"),
        ("https://[::1]:8000", ["::1", 8000], "[::1]:8000"),
        ("http://localhost:0", ["localhost", 0], "localhost:0"),
    ],
)
def test_server_and_host_come_from_the_base_url(base_url: str, server: list, host: str) -> None:
    description = TestClient(echo_app, base_url=base_url).get("/").json()
    assert description["server"] == server
    assert header_values(description, "host") == [host]


def test_default_and_per_request_headers() -> None:
    client = TestClient(echo_app, headers={"User-Agent": "robot/1.0", "X-Team": "blue"})
    description = client.get("/", headers={"X-Request": "1"}).json()
    assert header_values(description, "user-agent") == ["robot/1.0"]
    assert header_values(description, "x-team") == ["blue"]
    assert header_values(description, "x-request") == ["1"]


def test_request_body_is_streamed_to_the_app_chunk_by_chunk() -> None:
    def upload() -> Iterator[bytes]:
        yield b"first,"
        yield b""  # empty pieces are not worth a message
        yield b"second,"
        yield b"third"

    description = TestClient(echo_app).post("/upload", content=upload()).json()
    assert description["chunks"] == [["first,", True], ["second,", True], ["third", False]]


def test_empty_body_is_one_final_message() -> None:
    assert TestClient(echo_app).get("/").json()["chunks"] == [["", False]]


def test_app_hears_http_disconnect_once_the_response_is_read() -> None:
    heard: list[str] = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await read_body(receive)
        await PlainTextResponse("done")(scope, receive, send)
        heard.append((await receive())["type"])

    assert TestClient(app).get("/").text == "done"
    assert heard == ["http.disconnect"]


@pytest.mark.parametrize("request_class", [Request, FastserveRequest])
def test_is_disconnected_is_true_once_the_response_is_sent(backend: str, request_class: type) -> None:
    """``Request.is_disconnected()`` does not wait: right after the last body message it must
    already say the client has left, as Starlette's test client does (apps that clean up after
    the response check it)."""
    seen: dict[str, bool] = {}

    async def app(scope: dict, receive: Any, send: Any) -> None:
        request = request_class(scope, receive)
        await request.body()
        seen["before"] = await request.is_disconnected()
        await PlainTextResponse("done")(scope, receive, send)
        seen["after"] = await request.is_disconnected()

    assert TestClient(app, backend=backend).post("/", content=b"foo").text == "done"
    assert seen == {"before": False, "after": True}


def test_streamed_response_arrives_in_the_chunks_the_app_sent(backend: str) -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for piece in (b"alpha ", b"beta ", b"gamma"):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    with TestClient(app, backend=backend).stream("GET", "/") as response:
        assert response.status_code == 200
        assert list(response.iter_raw()) == [b"alpha ", b"beta ", b"gamma"]


def test_closing_a_stream_early_stops_the_app(backend: str) -> None:
    events: list[str] = []

    async def endless(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            while True:
                await send({"type": "http.response.body", "body": b"tick\n", "more_body": True})
        finally:
            events.append("stopped")

    with TestClient(endless, backend=backend).stream("GET", "/") as response:
        lines = response.iter_lines()
        assert [next(lines), next(lines)] == ["tick", "tick"]
    assert events == ["stopped"]


def test_work_after_the_body_is_finished_before_the_call_returns() -> None:
    events: list[str] = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await PlainTextResponse("ok")(scope, receive, send)
        events.append("cleanup done")

    TestClient(app).get("/")
    assert events == ["cleanup done"]


def test_trailers_are_collected() -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        assert "http.response.trailers" in scope["extensions"]
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"data"})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]})

    response = TestClient(app).get("/")
    assert response.content == b"data"
    assert response.extensions["http.response.trailers"] == [(b"x-checksum", b"abc")]


def test_asgi2_apps_are_supported() -> None:
    class LegacyApp:
        def __init__(self, scope: dict) -> None:
            self.scope = scope

        async def __call__(self, receive: Any, send: Any) -> None:
            await PlainTextResponse(f"legacy {self.scope['path']}")(self.scope, receive, send)

    assert TestClient(LegacyApp).get("/old").text == "legacy /old"


def test_backend_options_reach_the_event_loop() -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        import asyncio

        await PlainTextResponse(type(asyncio.get_running_loop()).__module__)(scope, receive, send)

    assert TestClient(app, backend_options={"use_uvloop": True}).get("/").text.startswith("uvloop")


# --------------------------------------------------------------------------- app errors


class Boom(Exception):
    pass


async def fails_before_responding(scope: dict, receive: Any, send: Any) -> None:
    raise Boom("no response")


async def fails_mid_body(scope: dict, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise Boom("mid body")


async def never_responds(scope: dict, receive: Any, send: Any) -> None:
    await read_body(receive)


@pytest.mark.parametrize("app", [fails_before_responding, fails_mid_body])
def test_server_exceptions_are_raised_by_default(app: Any, backend: str) -> None:
    with pytest.raises(Boom):
        TestClient(app, backend=backend).get("/")


def test_without_raising_an_unanswered_failure_is_an_empty_500() -> None:
    response = TestClient(fails_before_responding, raise_server_exceptions=False).get("/")
    assert (response.status_code, response.content) == (500, b"")


def test_without_raising_the_partial_response_is_returned() -> None:
    response = TestClient(fails_mid_body, raise_server_exceptions=False).get("/")
    assert (response.status_code, response.content) == (200, b"partial")


def test_an_app_that_never_responds() -> None:
    with pytest.raises(AssertionError, match="TestClient did not receive any response."):
        TestClient(never_responds).get("/")
    assert TestClient(never_responds, raise_server_exceptions=False).get("/").status_code == 500


# --------------------------------------------------------------------------- lifespan


_LOOP_TOKEN: anyio.lowlevel.RunVar[object] = anyio.lowlevel.RunVar("loop_token")


def current_loop_token() -> object:
    """An object unique to the running event loop (thread ids get reused, loops' tokens do not)."""
    try:
        return _LOOP_TOKEN.get()
    except LookupError:
        token = object()
        _LOOP_TOKEN.set(token)
        return token


def recording_lifespan_app(events: list[str]) -> Any:
    """A raw app that speaks the lifespan protocol and records what happens when."""

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                phase = message["type"].split(".")[1]
                events.append(phase)
                if phase == "startup":
                    scope["state"]["started_by"] = current_loop_token()
                await send({"type": f"lifespan.{phase}.complete"})
                if phase == "shutdown":
                    return
        else:
            await read_body(receive)
            events.append("request")
            same_loop = scope["state"].get("started_by") is current_loop_token()
            state_keys = sorted(scope["state"])
            scope["state"]["touched"] = True  # must not leak into the next request
            await JSONResponse({"state": state_keys, "same_loop": same_loop})(scope, receive, send)

    return app


def test_lifespan_runs_around_the_with_block(backend: str) -> None:
    events: list[str] = []
    client = TestClient(recording_lifespan_app(events), backend=backend)
    with client:
        assert events == ["startup"]
        assert client.portal is not None
        assert client.get("/").json() == {"state": ["started_by"], "same_loop": True}
        assert client.get("/").json()["state"] == ["started_by"]
    assert events == ["startup", "request", "request", "shutdown"]
    assert client.portal is None


def test_without_with_there_is_no_lifespan_and_each_request_gets_its_own_loop() -> None:
    events: list[str] = []
    client = TestClient(recording_lifespan_app(events))
    assert client.get("/").json() == {"state": [], "same_loop": False}
    assert events == ["request"]


def test_client_stays_usable_after_the_with_block() -> None:
    events: list[str] = []
    client = TestClient(recording_lifespan_app(events))
    with client:
        pass
    assert client.get("/").json() == {"state": ["started_by"], "same_loop": False}
    with client:
        pass
    assert events == ["startup", "shutdown", "request", "startup", "shutdown"]


def test_app_without_lifespan_support() -> None:
    async def http_only(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        await PlainTextResponse("fine")(scope, receive, send)

    with TestClient(http_only) as client:
        assert client.get("/").text == "fine"


def test_lifespan_startup_error_is_raised() -> None:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        raise Boom("database unreachable")
        yield  # pragma: no cover

    with pytest.raises(Boom, match="database unreachable"):
        with TestClient(Starlette(lifespan=lifespan)):
            pass  # pragma: no cover - startup fails


@pytest.mark.parametrize("phase", ["startup", "shutdown"])
def test_reported_lifespan_failure_is_a_runtime_error(phase: str) -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        while True:
            current = (await receive())["type"].split(".")[1]
            outcome = "failed" if current == phase else "complete"
            await send({"type": f"lifespan.{current}.{outcome}", "message": "disk full"})

    with pytest.raises(RuntimeError, match=f"Lifespan {phase} failed: disk full"):
        with TestClient(app):
            pass


def test_lifespan_failure_before_any_message_is_raised() -> None:
    async def http_only(scope: dict, receive: Any, send: Any) -> None:
        assert scope["type"] == "http", "only HTTP here"

    with pytest.raises(AssertionError, match="only HTTP here"):
        with TestClient(http_only):
            pass  # pragma: no cover - startup fails


# --------------------------------------------------------------------------- Starlette and FastAPI apps


async def show_json(request: Request) -> StarletteJSONResponse:
    return StarletteJSONResponse({"received": await request.json()})


async def show_form(request: Request) -> StarletteJSONResponse:
    async with request.form() as form:
        files = [
            {
                "field": name,
                "filename": value.filename,
                "type": value.content_type,
                "text": (await value.read()).decode(),
            }
            for name, value in form.multi_items()
            if not isinstance(value, str)
        ]
        fields = {name: value for name, value in form.multi_items() if isinstance(value, str)}
    return StarletteJSONResponse({"fields": fields, "files": files})


async def count_up(request: Request) -> StarletteStreamingResponse:
    async def numbers() -> AsyncIterator[str]:
        for number in range(1, 4):
            yield f"{number}\n"

    return StarletteStreamingResponse(numbers(), media_type="text/plain")


async def set_cookie(request: Request) -> StarlettePlainTextResponse:
    response = StarlettePlainTextResponse("cookie set")
    response.set_cookie("flavour", request.query_params.get("flavour", "oat"))
    return response


async def show_cookies(request: Request) -> StarletteJSONResponse:
    return StarletteJSONResponse(request.cookies)


async def moved(request: Request) -> StarletteRedirectResponse:
    return StarletteRedirectResponse("/cookies", status_code=307)


async def explode(request: Request) -> None:
    raise Boom("handler failed")


async def show_state(request: Request) -> StarletteJSONResponse:
    return StarletteJSONResponse({"greeting": request.state.greeting, "root_path": request.scope["root_path"]})


async def with_background(request: Request) -> StarlettePlainTextResponse:
    return StarlettePlainTextResponse("queued", background=BackgroundTask(JOURNAL.append, "background ran"))


JOURNAL: list[str] = []

ROUTES = [
    Route("/json", show_json, methods=["POST"]),
    Route("/form", show_form, methods=["POST"]),
    Route("/count", count_up),
    Route("/set-cookie", set_cookie),
    Route("/cookies", show_cookies),
    Route("/moved", moved),
    Route("/explode", explode),
    Route("/state", show_state),
    Route("/background", with_background),
]


@contextlib.asynccontextmanager
async def greeting_lifespan(app: Any) -> AsyncIterator[dict[str, str]]:
    JOURNAL.append("startup")
    yield {"greeting": "hello"}
    JOURNAL.append("shutdown")


@pytest.fixture(params=["starlette", "fastapi"])
def framework_app(request: pytest.FixtureRequest) -> Any:
    """The same routes served by a Starlette app and by a FastAPI app."""
    JOURNAL.clear()
    if request.param == "starlette":
        return Starlette(routes=ROUTES, lifespan=greeting_lifespan)
    return FastAPI(routes=ROUTES, lifespan=greeting_lifespan)


def test_framework_json_body(framework_app: Any) -> None:
    response = TestClient(framework_app).post("/json", json={"name": "Ada", "langs": ["en"]})
    assert response.json() == {"received": {"name": "Ada", "langs": ["en"]}}


def test_framework_form_and_file_upload(framework_app: Any) -> None:
    response = TestClient(framework_app).post(
        "/form",
        data={"title": "report"},
        files=[
            ("attachment", ("notes.txt", b"first file", "text/plain")),
            ("attachment", ("data.csv", b"a,b\n1,2", "text/csv")),
        ],
    )
    assert response.json() == {
        "fields": {"title": "report"},
        "files": [
            {"field": "attachment", "filename": "notes.txt", "type": "text/plain", "text": "first file"},
            {"field": "attachment", "filename": "data.csv", "type": "text/csv", "text": "a,b\n1,2"},
        ],
    }


def test_framework_url_encoded_form(framework_app: Any) -> None:
    response = TestClient(framework_app).post("/form", data={"a": "1", "b": "two words"})
    assert response.json() == {"fields": {"a": "1", "b": "two words"}, "files": []}


def test_framework_streaming_response(framework_app: Any, backend: str) -> None:
    client = TestClient(framework_app, backend=backend)
    with client.stream("GET", "/count") as response:
        assert response.headers["content-type"].startswith("text/plain")
        assert list(response.iter_lines()) == ["1", "2", "3"]
    assert client.get("/count").text == "1\n2\n3\n"


def test_framework_cookies_persist_between_requests(framework_app: Any) -> None:
    client = TestClient(framework_app, cookies={"theme": "dark"})
    assert client.get("/cookies").json() == {"theme": "dark"}
    client.get("/set-cookie?flavour=rye")
    assert client.get("/cookies").json() == {"theme": "dark", "flavour": "rye"}


def test_framework_redirects_are_followed_by_default(framework_app: Any) -> None:
    response = TestClient(framework_app).get("/moved")
    assert response.status_code == 200
    assert response.url == "http://testserver/cookies"
    assert [r.status_code for r in response.history] == [307]


def test_framework_redirects_can_be_left_alone(framework_app: Any) -> None:
    response = TestClient(framework_app, follow_redirects=False).get("/moved")
    assert (response.status_code, response.headers["location"]) == (307, "/cookies")
    assert TestClient(framework_app).get("/moved", follow_redirects=False).status_code == 307


def test_framework_errors_raise_or_become_500(framework_app: Any) -> None:
    with pytest.raises(Boom, match="handler failed"):
        TestClient(framework_app).get("/explode")
    response = TestClient(framework_app, raise_server_exceptions=False).get("/explode")
    assert (response.status_code, response.text) == (500, "Internal Server Error")


def test_framework_lifespan_state_and_root_path(framework_app: Any, backend: str) -> None:
    with TestClient(framework_app, root_path="/api", backend=backend) as client:
        assert JOURNAL == ["startup"]
        assert client.get("/state").json() == {"greeting": "hello", "root_path": "/api"}
    assert JOURNAL == ["startup", "shutdown"]


def test_framework_background_tasks_finish_before_the_call_returns(framework_app: Any) -> None:
    assert TestClient(framework_app).get("/background").text == "queued"
    assert JOURNAL == ["background ran"]


def test_template_responses_expose_template_and_context(tmp_path: Path) -> None:
    (tmp_path / "hello.html").write_text("Hello {{ name }}!")
    templates = Jinja2Templates(directory=str(tmp_path))

    async def page(request: Request) -> Any:
        return templates.TemplateResponse(request, "hello.html", {"name": "Grace"})

    response = TestClient(Starlette(routes=[Route("/", page)])).get("/")
    assert response.text == "Hello Grace!"
    assert response.template.name == "hello.html"
    assert response.context["name"] == "Grace"


# --------------------------------------------------------------------------- FastAPI specifics


class Item(BaseModel):
    name: str
    price: float


def build_fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    def read_item(item_id: int, q: Optional[str] = None) -> dict[str, Any]:
        return {"item_id": item_id, "q": q}

    @app.post("/items", status_code=201)
    def create_item(item: Item) -> Item:
        return item

    @app.post("/upload")
    async def upload(file: UploadFile, label: str = Form()) -> dict[str, Any]:
        return {"label": label, "filename": file.filename, "size": len(await file.read())}

    @app.get("/where", name="where")
    def where(request: FastAPIRequest) -> dict[str, str]:
        return {"url_for": str(request.url_for("where"))}

    @app.websocket("/rooms/{room}")
    async def room(websocket: FastAPIWebSocket, room: str, nick: str = "anon") -> None:
        await websocket.accept(subprotocol=(websocket.scope["subprotocols"] or [None])[0])
        try:
            while True:
                message = await websocket.receive_json()
                await websocket.send_json({"room": room, "nick": nick, "said": message["text"]})
        except FrameworkWebSocketDisconnect:
            pass

    @app.websocket("/private")
    async def private(websocket: FastAPIWebSocket) -> None:
        if websocket.headers.get("authorization") != "Bearer ok":
            raise WebSocketException(code=1008, reason="no token")
        await websocket.accept()
        await websocket.close(code=4000, reason="bye")

    @app.websocket("/deny")
    async def deny(websocket: FastAPIWebSocket) -> None:
        await websocket.send_denial_response(FastAPIResponse("payment required", status_code=402))

    return app


def test_fastapi_path_and_query_parameters() -> None:
    client = TestClient(build_fastapi_app())
    assert client.get("/items/5?q=red").json() == {"item_id": 5, "q": "red"}
    assert client.get("/items/five").status_code == 422


def test_fastapi_json_body_model() -> None:
    response = TestClient(build_fastapi_app()).post("/items", json={"name": "pen", "price": 1.5})
    assert (response.status_code, response.json()) == (201, {"name": "pen", "price": 1.5})


def test_fastapi_upload_file_with_form_field() -> None:
    response = TestClient(build_fastapi_app()).post(
        "/upload", data={"label": "logo"}, files={"file": ("logo.png", b"\x89PNG" + b"\0" * 100, "image/png")}
    )
    assert response.json() == {"label": "logo", "filename": "logo.png", "size": 104}


def test_fastapi_url_for_includes_root_path() -> None:
    response = TestClient(build_fastapi_app(), root_path="/v1").get("/where")
    assert response.json() == {"url_for": "http://testserver/v1/where"}


def test_fastapi_websocket_endpoint(backend: str) -> None:
    client = TestClient(build_fastapi_app(), backend=backend)
    with client.websocket_connect("/rooms/lobby?nick=ann", subprotocols=["chat"]) as session:
        assert session.accepted_subprotocol == "chat"
        session.send_json({"text": "hi"})
        assert session.receive_json() == {"room": "lobby", "nick": "ann", "said": "hi"}


def test_fastapi_websocket_close_raises_both_disconnect_classes() -> None:
    client = TestClient(build_fastapi_app())
    with pytest.raises(FrameworkWebSocketDisconnect) as refused:
        with client.websocket_connect("/private"):
            pass  # pragma: no cover - refused
    assert isinstance(refused.value, WebSocketDisconnect)
    assert (refused.value.code, refused.value.reason) == (1008, "no token")

    with client.websocket_connect("/private", headers={"Authorization": "Bearer ok"}) as session:
        with pytest.raises(WebSocketDisconnect) as closed:
            session.receive_text()
    assert (closed.value.code, closed.value.reason) == (4000, "bye")


def test_fastapi_websocket_denial_response() -> None:
    with pytest.raises(WebSocketDenialResponse) as info:
        with TestClient(build_fastapi_app()).websocket_connect("/deny"):
            pass  # pragma: no cover - denied
    assert (info.value.status_code, info.value.text) == (402, "payment required")


def test_a_denial_is_caught_by_starlettes_class_too() -> None:
    """A test suite that swapped only ``TestClient`` for fastserve's still names Starlette's
    ``WebSocketDenialResponse`` in its ``except`` and ``pytest.raises``."""
    starlette_testclient = pytest.importorskip("starlette.testclient")
    with pytest.raises(starlette_testclient.WebSocketDenialResponse) as info:
        with TestClient(build_fastapi_app()).websocket_connect("/deny"):
            pass  # pragma: no cover - denied
    assert isinstance(info.value, WebSocketDenialResponse)
    assert (info.value.status_code, info.value.text) == (402, "payment required")


# --------------------------------------------------------------------------- WebSockets against raw apps


async def raw_chat(scope: dict, receive: Any, send: Any) -> None:
    """A WebSocket app written against the bare ASGI messages."""
    assert (await receive())["type"] == "websocket.connect"
    offered = scope["subprotocols"]
    await send({"type": "websocket.accept", "subprotocol": offered[0] if offered else None, "headers": []})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        reply = message.get("text") or message["bytes"].decode()
        await send({"type": "websocket.send", "text": f"{scope['scheme']}:{scope['path']}:{reply}"})


def test_raw_websocket_app(backend: str) -> None:
    with TestClient(raw_chat, backend=backend).websocket_connect("/chat", subprotocols=["v2", "v1"]) as session:
        assert isinstance(session, WebSocketTestSession)
        assert session.accepted_subprotocol == "v2"
        session.send_text("hello")
        assert session.receive_text() == "ws:/chat:hello"
        session.send({"type": "websocket.receive", "bytes": b"raw"})
        assert session.receive() == {"type": "websocket.send", "text": "ws:/chat:raw"}


def test_websocket_url_follows_the_base_url_scheme() -> None:
    with TestClient(raw_chat, base_url="https://example.org").websocket_connect("/secure") as session:
        session.send_text("x")
        assert session.receive_text() == "wss:/secure:x"


def test_websocket_sessions_share_the_lifespan_loop() -> None:
    events: list[str] = []
    lifespan_app = recording_lifespan_app(events)

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            websocket = WebSocket(scope, receive, send)
            await websocket.accept()
            await websocket.send_json({"same_loop": scope["state"].get("started_by") is current_loop_token()})
            await websocket.close()
        else:
            await lifespan_app(scope, receive, send)

    with TestClient(app) as client, client.websocket_connect("/") as session:
        assert session.receive_json() == {"same_loop": True}


def test_websocket_app_error_is_raised_from_the_session() -> None:
    async def crashes(scope: dict, receive: Any, send: Any) -> None:
        websocket = WebSocket(scope, receive, send)
        await websocket.accept()
        await websocket.receive_text()
        raise Boom("websocket handler failed")

    with pytest.raises(Boom, match="websocket handler failed"):
        with TestClient(crashes).websocket_connect("/") as session:
            session.send_text("trigger")
            session.receive_text()


def test_websocket_app_returning_without_close_is_an_abnormal_closure() -> None:
    async def walks_away(scope: dict, receive: Any, send: Any) -> None:
        websocket = WebSocket(scope, receive, send)
        await websocket.accept()

    with TestClient(walks_away).websocket_connect("/") as session:
        with pytest.raises(WebSocketDisconnect) as info:
            session.receive_text()
    assert info.value.code == 1006


def test_leaving_the_session_tells_the_app_the_client_is_gone(backend: str) -> None:
    seen: list[int] = []

    async def waits(scope: dict, receive: Any, send: Any) -> None:
        websocket = WebSocket(scope, receive, send)
        await websocket.accept()
        try:
            await websocket.receive_text()
        except WebSocketDisconnect as disconnect:
            seen.append(disconnect.code)

    with TestClient(waits, backend=backend).websocket_connect("/"):
        pass
    assert seen == [1000]


def test_client_close_sends_code_and_reason() -> None:
    seen: list[tuple[int, str]] = []

    async def waits(scope: dict, receive: Any, send: Any) -> None:
        websocket = WebSocket(scope, receive, send)
        await websocket.accept()
        try:
            await websocket.receive_text()
        except WebSocketDisconnect as disconnect:
            seen.append((disconnect.code, disconnect.reason))

    with TestClient(waits).websocket_connect("/") as session:
        session.close(code=4100, reason="going home")
    assert seen == [(4100, "going home")]


def test_request_to_a_ws_url_without_upgrade_headers_is_a_400() -> None:
    response = TestClient(raw_chat).get("ws://testserver/chat")
    assert response.status_code == 400
    assert response.text == 'Missing "Connection: Upgrade" header.'


def test_unsupported_websocket_version_fails_the_handshake() -> None:
    with pytest.raises(RuntimeError, match="Expected WebSocket upgrade, got 426"):
        TestClient(raw_chat).websocket_connect("/chat", headers={"Sec-WebSocket-Version": "8"})


def test_json_mode_is_checked_on_the_client_side() -> None:
    with TestClient(raw_chat).websocket_connect("/chat") as session:
        with pytest.raises(RuntimeError, match='The "mode" argument should be "text" or "binary".'):
            session.send_json({}, mode="xml")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- StaticFiles


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "index.html").write_text("<h1>home</h1>")
    (tmp_path / "style.css").write_text("body { color: red }")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.html").write_text("<h1>docs</h1>")
    (tmp_path / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    return tmp_path


def test_static_files_served_through_the_client(site: Path) -> None:
    client = TestClient(StaticFiles(directory=site))
    response = client.get("/style.css")
    assert response.status_code == 200
    assert response.text == "body { color: red }"
    assert response.headers["content-type"].startswith("text/css")
    assert client.get("/style.css", headers={"If-None-Match": response.headers["etag"]}).status_code == 304
    head = client.head("/style.css")
    assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", "19")
    with pytest.raises(HTTPException) as missing:  # standalone, it raises as Starlette's does
        client.get("/missing.txt")
    assert missing.value.status_code == 404
    with pytest.raises(HTTPException) as method:
        client.post("/style.css")
    assert method.value.status_code == 405


def test_static_files_range_request(site: Path) -> None:
    response = TestClient(StaticFiles(directory=site)).get("/style.css", headers={"Range": "bytes=0-3"})
    assert (response.status_code, response.content) == (206, b"body")
    assert response.headers["content-range"] == "bytes 0-3/19"


def test_static_files_html_mode_redirects_to_the_directory_index(site: Path) -> None:
    client = TestClient(StaticFiles(directory=site, html=True))
    response = client.get("/docs")
    assert response.text == "<h1>docs</h1>"
    assert [(r.status_code, r.headers["location"]) for r in response.history] == [(307, "http://testserver/docs/")]
    assert client.get("/").text == "<h1>home</h1>"


def test_static_files_large_file_streams_in_chunks(site: Path) -> None:
    expected = (site / "big.bin").read_bytes()
    with TestClient(StaticFiles(directory=site)).stream("GET", "/big.bin") as response:
        chunks = list(response.iter_raw())
    assert len(chunks) > 1
    assert b"".join(chunks) == expected


def test_static_files_mounted_in_a_starlette_app(site: Path) -> None:
    app = Starlette(routes=[Mount("/static", app=StaticFiles(directory=site), name="static")])
    client = TestClient(app)
    assert client.get("/static/style.css").text == "body { color: red }"
    assert client.get("/static/nope.css").status_code == 404


# --------------------------------------------------------------------------- Starlette's API surface


def test_lifespan_driven_by_its_documented_methods() -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        events.append("startup")
        yield {"ready": True}
        events.append("shutdown")

    client = TestClient(Starlette(lifespan=lifespan))

    async def drive() -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(client.lifespan)
            await client.wait_startup()
            assert events == ["startup"] and client.app_state == {"ready": True}
            await client.wait_shutdown()
        assert events == ["startup", "shutdown"]

    anyio.run(drive)


def test_with_block_goes_through_the_lifespan_methods() -> None:
    calls: list[str] = []

    class Recording(TestClient):
        async def wait_startup(self) -> None:
            calls.append("wait_startup")
            await super().wait_startup()

        async def wait_shutdown(self) -> None:
            calls.append("wait_shutdown")
            await super().wait_shutdown()

    with Recording(Starlette()):
        assert calls == ["wait_startup"]
    assert calls == ["wait_startup", "wait_shutdown"]


def test_wait_startup_raises_the_apps_failure() -> None:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        raise RuntimeError("no database")
        yield

    client = TestClient(Starlette(lifespan=lifespan))

    async def drive() -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(client.lifespan)
            with pytest.raises(RuntimeError, match="no database"):
                await client.wait_startup()

    anyio.run(drive)


def test_starlette_names_are_exported_by_the_test_client_module():
    import ast
    import inspect

    import starlette.testclient

    import fastserve.testclient

    tree = ast.parse(inspect.getsource(starlette.testclient))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("starlette.") and not (
            node.module.startswith("starlette._")
        ):
            names.update(alias.asname or alias.name for alias in node.names)
    public = {name for name in names if not name.startswith("_")}
    assert "ASGIInstance" in public
    assert public <= set(fastserve.testclient.__all__), public - set(fastserve.testclient.__all__)
    assert all(hasattr(fastserve.testclient, name) for name in fastserve.testclient.__all__)


def test_request_timeout_is_warned_about_like_starlette():
    from starlette.exceptions import StarletteDeprecationWarning

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    client = TestClient(app)
    with pytest.warns(StarletteDeprecationWarning, match="timeout"):
        assert client.get("/", timeout=5).status_code == 204
    # Starlette's own wording, which its users' tests match on.
    with pytest.deprecated_call(match="You should not use the 'timeout' argument with the TestClient."):
        client.get("/", timeout=5)
    with pytest.deprecated_call():
        client.request("GET", "/", timeout=1.0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert client.get("/").status_code == 204  # no timeout given: no warning
    with pytest.warns(StarletteDeprecationWarning, match="timeout"):
        constructed = TestClient(app, timeout=5)  # accepted, warned about, and without effect
    assert constructed.get("/").status_code == 204


def test_a_message_of_an_extension_the_client_does_not_offer_is_ignored():
    # As with Starlette's client: an app that sends a push promise (or any message of an
    # extension it was not offered) still gets its response through.
    async def app(scope, receive, send):
        await send({"type": "http.response.push", "path": "/style.css", "headers": []})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    assert TestClient(app).get("/").text == "ok"


def test_closing_a_websocket_session_without_a_reason_sends_none():
    # The app's ``websocket.disconnect`` carries the reason as given (None), as Starlette's
    # client sends it, so ``WebSocketDisconnect`` reads ``(1000, None)`` both ways.
    seen = []

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        seen.append(await receive())

    with TestClient(app).websocket_connect("/"):
        pass
    assert seen == [{"type": "websocket.disconnect", "code": 1000, "reason": None}]
