"""fastserve.requests: HTTPConnection and Request over ASGI scopes, driven directly and through apps."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse as StarletteJSONResponse
from starlette.routing import Route as StarletteRoute
from starlette.testclient import TestClient

from fastserve import exceptions
from fastserve.datastructures import URL, Address, FormData, Headers, QueryParams, State, UploadFile, URLPath
from fastserve.formparsers import MultiPartException
from fastserve.requests import ClientDisconnect, HTTPConnection, Request, RequestJSONDecodeError, cookie_parser
from fastserve.responses import JSONResponse, PlainTextResponse
from fastserve.routing import Route, Router

pytestmark = pytest.mark.anyio


def http_scope(path: str = "/", *, headers: list[tuple[bytes, bytes]] | None = None, **extra: Any) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "server": ("example.org", 80),
        "path": path,
        "root_path": "",
        "query_string": b"",
        "headers": headers if headers is not None else [(b"host", b"example.org")],
    }
    scope.update(extra)
    return scope


def body_receiver(*chunks: bytes) -> Any:
    """A receive() that hands out ``chunks`` as http.request messages, then http.disconnect."""
    messages = [{"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1} for i, chunk in enumerate(chunks)]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        return {"type": "http.disconnect"}

    return receive


# --------------------------------------------------------------------------- HTTPConnection


def test_connection_is_a_read_only_mapping_over_the_scope() -> None:
    scope = http_scope(custom="value")
    conn = HTTPConnection(scope)
    assert conn["custom"] == "value"
    assert dict(conn) == scope
    assert len(conn) == len(scope)
    assert "path" in conn


def test_connections_are_equal_only_to_themselves() -> None:
    scope = http_scope()
    first, second = HTTPConnection(scope), HTTPConnection(scope)
    assert first == first
    assert first != second
    assert len({first, second}) == 2


def test_connection_accepts_http_and_websocket_scopes_only() -> None:
    HTTPConnection(http_scope())
    HTTPConnection({**http_scope(), "type": "websocket"})
    with pytest.raises(AssertionError):
        HTTPConnection({"type": "lifespan"})


def test_url_is_built_from_scheme_host_path_and_query() -> None:
    conn = HTTPConnection(http_scope("/a b/c", query_string=b"x=1&y=2", scheme="https"))
    assert conn.url == "https://example.org/a b/c?x=1&y=2"
    assert conn.url.path == "/a b/c"
    assert conn.url.query == "x=1&y=2"
    assert conn.url is conn.url  # parsed once


def test_base_url_is_the_application_root() -> None:
    conn = HTTPConnection(http_scope("/app/users/1", root_path="/app", query_string=b"q=1"))
    assert conn.base_url == "http://example.org/app/"


def test_base_url_inside_a_mount_uses_app_root_path() -> None:
    # A mount grows root_path, but links are relative to the whole application.
    scope = http_scope("/outer/api/users", root_path="/outer/api", app_root_path="/outer")
    assert HTTPConnection(scope).base_url == "http://example.org/outer/"


def test_headers_are_case_insensitive_and_share_the_scope_list() -> None:
    scope = http_scope(headers=[(b"host", b"example.org"), (b"x-token", b"a"), (b"x-token", b"b")])
    conn = HTTPConnection(scope)
    assert isinstance(conn.headers, Headers)
    assert conn.headers["X-Token"] == "a"
    assert conn.headers.getlist("x-token") == ["a", "b"]


def test_query_params() -> None:
    conn = HTTPConnection(http_scope(query_string=b"a=1&a=2&b=%20x"))
    assert isinstance(conn.query_params, QueryParams)
    assert conn.query_params["a"] == "2"
    assert conn.query_params.getlist("a") == ["1", "2"]
    assert conn.query_params["b"] == " x"


def test_path_params_default_to_empty() -> None:
    assert HTTPConnection(http_scope()).path_params == {}
    assert HTTPConnection(http_scope(path_params={"id": 3})).path_params == {"id": 3}


def test_cookies_from_every_cookie_header() -> None:
    scope = http_scope(
        headers=[(b"host", b"x"), (b"cookie", b'session=abc; theme="dark"'), (b"cookie", b"lang=en; session=def")]
    )
    assert HTTPConnection(scope).cookies == {"session": "def", "theme": "dark", "lang": "en"}


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("a=1; b=2", {"a": "1", "b": "2"}),
        ("  a = 1 ;b=2;", {"a": "1", "b": "2"}),
        ("flag", {"": "flag"}),  # a bare value has an empty name, as browsers treat it
        ("a=b=c", {"a": "b=c"}),  # only the first '=' separates
        ('q="quoted value"', {"q": "quoted value"}),
        ("a=1; a=2", {"a": "2"}),
        ("; ;", {}),
    ],
)
def test_cookie_parser_is_lenient_like_browsers(header: str, expected: dict[str, str]) -> None:
    assert cookie_parser(header) == expected


def test_client_address() -> None:
    assert HTTPConnection(http_scope(client=("10.0.0.1", 5000))).client == Address("10.0.0.1", 5000)
    assert HTTPConnection(http_scope(client=["10.0.0.1", 5000])).client.port == 5000  # type: ignore[union-attr]
    assert HTTPConnection(http_scope()).client is None


def test_session_auth_and_user_require_their_middleware() -> None:
    conn = HTTPConnection(http_scope())
    with pytest.raises(AssertionError, match="SessionMiddleware must be installed"):
        conn.session
    with pytest.raises(AssertionError, match="AuthenticationMiddleware must be installed"):
        conn.auth
    with pytest.raises(AssertionError, match="AuthenticationMiddleware must be installed"):
        conn.user


def test_session_auth_and_user_come_from_the_scope() -> None:
    class Session(dict):
        accessed = False

        def mark_accessed(self) -> None:
            self.accessed = True

    session = Session(cart=[1])
    conn = HTTPConnection(http_scope(session=session, auth="credentials", user="alice"))
    assert conn.session == {"cart": [1]}
    assert session.accessed
    assert conn.auth == "credentials"
    assert conn.user == "alice"


def test_state_lives_in_the_scope_so_every_view_shares_it() -> None:
    scope = http_scope()
    HTTPConnection(scope).state.user_id = 42
    assert isinstance(HTTPConnection(scope).state, State)
    assert HTTPConnection(scope).state.user_id == 42
    assert scope["state"] == {"user_id": 42}


def test_app_is_the_scope_app() -> None:
    marker = object()
    assert HTTPConnection(http_scope(app=marker)).app is marker


def test_url_for_asks_the_router_then_the_app() -> None:
    class Provider:
        def __init__(self, prefix: str) -> None:
            self.prefix = prefix

        def url_path_for(self, name: str, /, **params: Any) -> URLPath:
            return URLPath(f"{self.prefix}/{name}/{params['id']}", protocol="http")

    scope = http_scope(root_path="/root", path="/root/x", app=Provider("/from-app"))
    assert HTTPConnection(scope).url_for("item", id=1) == "http://example.org/root/from-app/item/1"
    scope["router"] = Provider("/from-router")
    url = HTTPConnection(scope).url_for("item", id=2)
    assert isinstance(url, URL)
    assert url == "http://example.org/root/from-router/item/2"


def test_url_for_without_router_or_app_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="can only be used inside a Starlette application or with a router"):
        HTTPConnection(http_scope()).url_for("anything")


def test_url_for_in_a_websocket_scope_gives_a_ws_url() -> None:
    router = Router([Route("/", PlainTextResponse("x"), name="home")])
    scope = {**http_scope(router=router), "type": "websocket", "scheme": "wss"}
    # An http route seen from a secure websocket connection is an https URL.
    assert HTTPConnection(scope).url_for("home") == "https://example.org/"


# --------------------------------------------------------------------------- Request basics


def test_request_needs_an_http_scope() -> None:
    with pytest.raises(AssertionError):
        Request({**http_scope(), "type": "websocket"})


def test_request_method_and_receive() -> None:
    receive = body_receiver(b"")
    request = Request(http_scope(method="PATCH"), receive)
    assert request.method == "PATCH"
    assert request.receive is receive
    assert isinstance(request, HTTPConnection)


async def test_request_without_channels_says_so_in_starlettes_words() -> None:
    """An app's tests match these with ``pytest.raises(match=...)``: Starlette's words, each."""
    said = []
    for cls in (Request, StarletteRequest):
        request = cls(http_scope())
        with pytest.raises(RuntimeError) as no_receive:
            await request.body()
        request = cls(http_scope(extensions={"http.response.push": {}}), body_receiver(b""))
        with pytest.raises(RuntimeError) as no_send:
            await request.send_push_promise("/style.css")
        said.append((str(no_receive.value), str(no_send.value)))
    assert said[0] == said[1] == ("Receive channel has not been made available", "Send channel has not been made available")


async def test_body_joins_every_chunk() -> None:
    request = Request(http_scope(), body_receiver(b"hello ", b"", b"world"))
    assert await request.body() == b"hello world"
    assert await request.body() == b"hello world"  # cached


async def test_stream_yields_chunks_as_they_arrive_then_an_empty_chunk() -> None:
    request = Request(http_scope(), body_receiver(b"a", b"", b"b"))
    assert [chunk async for chunk in request.stream()] == [b"a", b"b", b""]


async def test_stream_can_only_be_consumed_once() -> None:
    request = Request(http_scope(), body_receiver(b"data"))
    async for _ in request.stream():
        pass
    with pytest.raises(RuntimeError, match="Stream consumed"):
        async for _ in request.stream():
            pass


async def test_stream_after_body_replays_it_from_memory() -> None:
    request = Request(http_scope(), body_receiver(b"x", b"y"))
    await request.body()
    assert [chunk async for chunk in request.stream()] == [b"xy", b""]


async def test_disconnect_while_reading_the_body_raises_client_disconnect() -> None:
    messages = [{"type": "http.request", "body": b"part", "more_body": True}, {"type": "http.disconnect"}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    request = Request(http_scope(), receive)
    with pytest.raises(exceptions.ClientDisconnect):
        await request.body()
    assert ClientDisconnect is exceptions.ClientDisconnect
    assert await request.is_disconnected()


async def test_json_decodes_the_body() -> None:
    request = Request(http_scope(), body_receiver(b'{"a": [1, ', b'2]}'))
    assert await request.json() == {"a": [1, 2]}


async def test_invalid_json_raises_json_decode_error() -> None:
    request = Request(http_scope(), body_receiver(b"{not json"))
    with pytest.raises(json.JSONDecodeError) as caught:
        await request.json()
    assert isinstance(caught.value, RequestJSONDecodeError)
    assert caught.value.pos == 1


async def test_json_that_is_not_text_is_a_json_decode_error_too() -> None:
    # json.loads would raise UnicodeDecodeError for this; the app sees one error type for bad JSON.
    request = Request(http_scope(), body_receiver(b'"\xff"'))
    with pytest.raises(json.JSONDecodeError):
        await request.json()


async def test_is_disconnected_does_not_wait_for_a_message() -> None:
    # Like a server's receive(): returns at once when a message is queued, otherwise waits.
    queued: list[dict[str, Any]] = []
    calls = 0

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if queued:
            return queued.pop(0)
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    request = Request(http_scope(), receive)
    with anyio.fail_after(1):
        assert not await request.is_disconnected()  # nothing queued: answered at once
        queued.append({"type": "http.disconnect"})
        assert await request.is_disconnected()
        assert await request.is_disconnected()  # remembered: receive is not asked again
    assert calls == 2


async def test_send_push_promise_copies_client_headers_when_supported() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"host", b"x"), (b"accept", b"text/css"), (b"user-agent", b"ua"), (b"cookie", b"secret=1")]
    await Request(http_scope(headers=headers), body_receiver(b""), send).send_push_promise("/s.css")
    assert sent == []  # the server did not offer push

    scope = http_scope(headers=headers, extensions={"http.response.push": {}})
    await Request(scope, body_receiver(b""), send).send_push_promise("/s.css")
    assert sent == [
        {"type": "http.response.push", "path": "/s.css", "headers": [(b"accept", b"text/css"), (b"user-agent", b"ua")]}
    ]


async def test_send_early_hints_when_supported() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await Request(http_scope(), body_receiver(b""), send).send_early_hints("</a.css>; rel=preload")
    assert sent == []
    scope = http_scope(extensions={"http.response.early_hint": {}})
    await Request(scope, body_receiver(b""), send).send_early_hints("</a.css>; rel=preload", "</b.js>; rel=preload")
    assert sent == [{"type": "http.response.early_hint", "links": [b"</a.css>; rel=preload", b"</b.js>; rel=preload"]}]


# --------------------------------------------------------------------------- Request.form


def form_scope(content_type: bytes, **extra: Any) -> dict[str, Any]:
    return http_scope(method="POST", headers=[(b"host", b"x"), (b"content-type", content_type)], **extra)


MULTIPART = (
    b"--B\r\n"
    b'Content-Disposition: form-data; name="title"\r\n\r\n'
    b"Hello\r\n"
    b"--B\r\n"
    b'Content-Disposition: form-data; name="doc"; filename="a.txt"\r\n'
    b"Content-Type: text/plain\r\n\r\n"
    b"file body\r\n"
    b"--B--\r\n"
)


async def test_form_urlencoded() -> None:
    request = Request(form_scope(b"application/x-www-form-urlencoded"), body_receiver(b"a=1&b=two+words&a=3"))
    form = await request.form()
    assert isinstance(form, FormData)
    assert form.multi_items() == [("a", "1"), ("b", "two words"), ("a", "3")]
    assert await request.form() is form  # parsed once


async def test_form_multipart_with_a_file() -> None:
    request = Request(form_scope(b"multipart/form-data; boundary=B"), body_receiver(MULTIPART[:40], MULTIPART[40:]))
    form = await request.form()
    assert form["title"] == "Hello"
    upload = form["doc"]
    assert isinstance(upload, UploadFile)
    assert (upload.filename, upload.content_type, upload.size) == ("a.txt", "text/plain", 9)
    assert await upload.read() == b"file body"


async def test_form_of_another_content_type_is_empty() -> None:
    request = Request(form_scope(b"application/json"), body_receiver(b'{"a": 1}'))
    assert await request.form() == FormData()
    assert await request.body() == b'{"a": 1}'  # the body was not consumed


async def test_form_as_async_context_manager_closes_uploads() -> None:
    request = Request(form_scope(b"multipart/form-data; boundary=B"), body_receiver(MULTIPART))
    async with request.form() as form:
        upload = form["doc"]
        assert not upload.file.closed
    assert upload.file.closed


async def test_request_close_closes_the_form_files() -> None:
    request = Request(form_scope(b"multipart/form-data; boundary=B"), body_receiver(MULTIPART))
    upload = (await request.form())["doc"]
    await request.close()
    assert upload.file.closed
    await Request(http_scope()).close()  # nothing parsed: nothing to do


async def test_malformed_form_outside_an_app_raises_multipart_exception() -> None:
    request = Request(form_scope(b"multipart/form-data"), body_receiver(MULTIPART))
    with pytest.raises(MultiPartException, match="Missing boundary"):
        await request.form()


async def test_malformed_form_inside_an_app_is_a_400_http_exception() -> None:
    request = Request(form_scope(b"multipart/form-data", app=object()), body_receiver(MULTIPART))
    with pytest.raises(exceptions.HTTPException) as caught:
        await request.form()
    assert (caught.value.status_code, caught.value.detail) == (400, "Missing boundary in multipart.")


async def test_form_limits_are_passed_to_the_parser() -> None:
    request = Request(form_scope(b"application/x-www-form-urlencoded", app=object()), body_receiver(b"a=1&b=2&c=3"))
    with pytest.raises(exceptions.HTTPException, match="Too many fields"):
        await request.form(max_fields=2)


# --------------------------------------------------------------------------- inside apps


def test_request_in_a_route_endpoint() -> None:
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "method": request.method,
                "url": str(request.url),
                "query": dict(request.query_params),
                "id": request.path_params["id"],
                "cookies": request.cookies,
                "json": await request.json(),
                "client": list(request.client or ()),
            }
        )

    client = TestClient(Router([Route("/items/{id:int}", echo, methods=["POST"])]))
    response = client.post("/items/5?x=1", json={"k": "v"}, headers={"cookie": "c=1"})
    assert response.json() == {
        "method": "POST",
        "url": "http://testserver/items/5?x=1",
        "query": {"x": "1"},
        "id": 5,
        "cookies": {"c": "1"},
        "json": {"k": "v"},
        "client": ["testclient", 50000],
    }


def test_invalid_json_in_a_route_endpoint_is_answered_400() -> None:
    async def create(request: Request) -> JSONResponse:
        return JSONResponse(await request.json(), status_code=201)

    client = TestClient(Router([Route("/items", create, methods=["POST"])]))
    response = client.post("/items", content=b"{'single': 'quotes'}", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.text == "Invalid JSON"
    assert client.post("/items", json={"ok": True}).status_code == 201


def test_an_endpoint_may_handle_invalid_json_itself() -> None:
    async def create(request: Request) -> JSONResponse:
        try:
            payload = await request.json()
        except json.JSONDecodeError as exc:
            return JSONResponse({"error": exc.msg, "at": exc.pos}, status_code=422)
        return JSONResponse(payload)

    client = TestClient(Router([Route("/items", create, methods=["POST"])]))
    response = client.post("/items", content=b"[1,]")
    assert response.status_code == 422
    with pytest.raises(json.JSONDecodeError) as raised:  # the json module's own words (they differ by Python)
        json.loads(b"[1,]")
    assert response.json() == {"error": raised.value.msg, "at": raised.value.pos}


def test_fastserve_request_inside_a_starlette_endpoint() -> None:
    async def endpoint(starlette_request: StarletteRequest) -> StarletteJSONResponse:
        request = Request(starlette_request.scope, starlette_request.receive)
        request.state.seen_by = "fastserve"
        return StarletteJSONResponse(
            {
                "name": request.path_params["name"],
                "json": await request.json(),
                "url_for": str(request.url_for("greet", name="x")),
                "base_url": str(request.base_url),
                "shared_state": starlette_request.state.seen_by,
            }
        )

    app = Starlette(routes=[StarletteRoute("/hello/{name}", endpoint, methods=["POST"], name="greet")])
    response = TestClient(app, root_path="/api").post("/hello/ann", json=[1, 2])
    assert response.json() == {
        "name": "ann",
        "json": [1, 2],
        "url_for": "http://testserver/api/hello/x",
        "base_url": "http://testserver/api/",
        "shared_state": "fastserve",
    }


def test_fastserve_form_inside_a_starlette_endpoint() -> None:
    async def endpoint(starlette_request: StarletteRequest) -> StarletteJSONResponse:
        async with Request(starlette_request.scope, starlette_request.receive).form() as form:
            upload = form["upload"]
            assert isinstance(upload, UploadFile)
            return StarletteJSONResponse({"name": form["name"], "file": (await upload.read()).decode()})

    client = TestClient(Starlette(routes=[StarletteRoute("/", endpoint, methods=["POST"])]))
    response = client.post("/", data={"name": "n"}, files={"upload": ("u.txt", b"contents")})
    assert response.json() == {"name": "n", "file": "contents"}
