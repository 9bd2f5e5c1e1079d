"""fastserve.routing: Router, Route, WebSocketRoute, Mount, path convertors, URL reversal, lifespan."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import PlainTextResponse as StarlettePlainText
from starlette.routing import Mount as StarletteMount
from starlette.routing import Route as StarletteRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from fastserve.datastructures import URLPath
from fastserve.exceptions import HTTPException, WebSocketException
from fastserve.requests import Request
from fastserve.responses import JSONResponse, PlainTextResponse, Response
from fastserve.routing import (
    Convertor,
    Host,
    Match,
    Mount,
    NoMatchFound,
    Route,
    Router,
    WebSocketRoute,
    compile_path,
    get_route_path,
    register_url_convertor,
)


async def show_scope(request: Request) -> JSONResponse:
    """Echo what routing put in the scope."""
    return JSONResponse(
        {
            "path": request.scope["path"],
            "root_path": request.scope.get("root_path", ""),
            "path_params": {key: str(value) for key, value in request.path_params.items()},
        }
    )


class ASGIApp:
    """Wraps an ASGI function so a route treats it as an app (plain functions take a request)."""

    def __init__(self, func: Any) -> None:
        self.func = func

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.func(scope, receive, send)


def text(body: str) -> Any:
    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse(body)

    return endpoint


# --------------------------------------------------------------------------- matching


def test_routes_are_tried_in_order_and_the_first_match_wins() -> None:
    client = TestClient(Router([Route("/users/me", text("me")), Route("/users/{name}", text("someone"))]))
    assert client.get("/users/me").text == "me"
    assert client.get("/users/ann").text == "someone"


def test_no_match_is_404() -> None:
    response = TestClient(Router([Route("/", text("home"))])).get("/missing")
    assert (response.status_code, response.text) == (404, "Not Found")


def test_path_params_are_converted() -> None:
    seen: dict[str, Any] = {}

    async def capture(request: Request) -> Response:
        seen.update(request.path_params)
        return Response("ok")

    client = TestClient(
        Router(
            [
                Route("/int/{value:int}", capture),
                Route("/float/{value:float}", capture),
                Route("/uuid/{value:uuid}", capture),
                Route("/path/{value:path}", capture),
                Route("/str/{value}", capture),
            ]
        )
    )
    client.get("/int/42")
    assert seen == {"value": 42}
    client.get("/float/2.5")
    assert seen == {"value": 2.5}
    client.get("/uuid/12345678-1234-5678-1234-567812345678")
    assert seen == {"value": uuid.UUID("12345678-1234-5678-1234-567812345678")}
    client.get("/path/a/b/c.txt")
    assert seen == {"value": "a/b/c.txt"}
    client.get("/str/hello")
    assert seen == {"value": "hello"}


@pytest.mark.parametrize("path", ["/int/-1", "/int/1.5", "/int/x", "/float/abc", "/float/.5", "/uuid/not-a-uuid", "/str/a/b"])
def test_values_a_convertor_rejects_do_not_match(path: str) -> None:
    router = Router(
        [Route("/int/{v:int}", text("i")), Route("/float/{v:float}", text("f")), Route("/uuid/{v:uuid}", text("u")), Route("/str/{v}", text("s"))],
        redirect_slashes=False,
    )
    assert TestClient(router).get(path).status_code == 404


def test_compile_path() -> None:
    regex, path_format, convertors = compile_path("/users/{id:int}/files/{name}.txt")
    assert path_format == "/users/{id}/files/{name}.txt"
    assert set(convertors) == {"id", "name"}
    assert regex.match("/users/7/files/a.b.txt").groupdict() == {"id": "7", "name": "a.b"}  # type: ignore[union-attr]
    assert regex.match("/users/7/files/atxt") is None  # "." is literal, not a wildcard


def test_unknown_convertor_and_duplicated_params_are_rejected() -> None:
    with pytest.raises(AssertionError, match="Unknown path convertor 'nope'"):
        compile_path("/{x:nope}")
    with pytest.raises(ValueError, match="Duplicated param name id at path /{id}/{id}"):
        compile_path("/{id}/{id}")


def test_custom_convertor() -> None:
    class DateConvertor(Convertor[str]):
        regex = r"\d{4}-\d{2}-\d{2}"

        def convert(self, value: str) -> str:
            return value.replace("-", "")

        def to_string(self, value: str) -> str:
            return f"{value[:4]}-{value[4:6]}-{value[6:]}"

    register_url_convertor("isodate", DateConvertor())
    router = Router([Route("/day/{when:isodate}", show_scope, name="day")])
    assert TestClient(router).get("/day/2024-02-29").json()["path_params"] == {"when": "20240229"}
    assert router.url_path_for("day", when="20240229") == "/day/2024-02-29"


def test_get_route_path_strips_the_root_path() -> None:
    assert get_route_path({"path": "/app/users", "root_path": "/app"}) == "/users"
    assert get_route_path({"path": "/app", "root_path": "/app"}) == ""
    assert get_route_path({"path": "/apple", "root_path": "/app"}) == "/apple"
    assert get_route_path({"path": "/other", "root_path": "/app"}) == "/other"
    assert get_route_path({"path": "/users"}) == "/users"


def test_route_matches_reports_partial_for_a_wrong_method() -> None:
    route = Route("/items/{id:int}", text("x"), methods=["POST"])
    scope = {"type": "http", "path": "/items/3", "method": "GET"}
    match, child = route.matches(scope)
    assert match is Match.PARTIAL
    assert child["path_params"] == {"id": 3}
    assert route.matches({**scope, "method": "POST"})[0] is Match.FULL
    assert route.matches({**scope, "path": "/items/x"})[0] is Match.NONE
    assert route.matches({**scope, "type": "websocket"})[0] is Match.NONE


# --------------------------------------------------------------------------- methods


def test_function_endpoints_answer_get_and_head() -> None:
    client = TestClient(Router([Route("/", text("body"))]))
    assert client.get("/").text == "body"
    head = client.head("/")
    assert head.status_code == 200
    assert head.headers["content-length"] == "4"


def test_wrong_method_is_405_with_allow() -> None:
    client = TestClient(Router([Route("/items", text("x"), methods=["POST", "get"])]))
    response = client.delete("/items")
    assert (response.status_code, response.text) == (405, "Method Not Allowed")
    assert response.headers["allow"] == "GET, HEAD, POST"


def test_a_later_full_match_beats_an_earlier_method_mismatch() -> None:
    client = TestClient(Router([Route("/r", text("get")), Route("/r", text("post"), methods=["POST"])]))
    assert client.post("/r").text == "post"
    assert client.put("/r").status_code == 405


def test_route_methods_attribute() -> None:
    assert Route("/", text("x")).methods == {"GET", "HEAD"}
    assert Route("/", text("x"), methods=["post"]).methods == {"POST"}


def test_sync_endpoints_run_in_a_worker_thread() -> None:
    threads: list[int] = []

    def endpoint(request: Request) -> PlainTextResponse:
        threads.append(threading.get_ident())
        return PlainTextResponse(request.path_params["name"])

    client = TestClient(Router([Route("/hi/{name}", endpoint)]))
    assert client.get("/hi/bob").text == "bob"
    assert threads and threads[0] != threading.get_ident()


def test_asgi_app_endpoints_get_every_method() -> None:
    class Echo:
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            await PlainTextResponse(scope["method"])(scope, receive, send)

    route = Route("/echo", Echo())
    assert route.methods is None
    assert route.name == "Echo"
    client = TestClient(Router([route]))
    assert client.delete("/echo").text == "DELETE"
    assert client.patch("/echo").text == "PATCH"


def test_route_name_defaults_to_the_endpoint_name() -> None:
    async def list_users(request: Request) -> Response:
        return Response()

    assert Route("/users", list_users).name == "list_users"
    assert Route("/users", list_users, name="users").name == "users"
    assert Route("/users", list_users, include_in_schema=False).include_in_schema is False


def test_routed_paths_must_start_with_a_slash() -> None:
    with pytest.raises(AssertionError, match="Routed paths must start with '/'"):
        Route("users", text("x"))
    with pytest.raises(AssertionError):
        Mount("api", routes=[])


# --------------------------------------------------------------------------- trailing slashes


def test_trailing_slash_is_redirected_both_ways() -> None:
    client = TestClient(Router([Route("/a", text("a")), Route("/b/", text("b"))]), follow_redirects=False)
    response = client.get("/a/?x=1")
    assert response.status_code == 307
    assert response.headers["location"] == "http://testserver/a?x=1"
    response = client.get("/b")
    assert response.headers["location"] == "http://testserver/b/"


def test_redirect_keeps_the_root_path() -> None:
    client = TestClient(Router([Route("/a", text("a"))]), root_path="/prefix", follow_redirects=False)
    assert client.get("/prefix/a/").headers["location"] == "http://testserver/prefix/a"


def test_redirect_slashes_can_be_turned_off() -> None:
    client = TestClient(Router([Route("/a", text("a"))], redirect_slashes=False), follow_redirects=False)
    assert client.get("/a/").status_code == 404


def test_default_app_handles_what_no_route_matches() -> None:
    client = TestClient(Router([Route("/", text("home"))], default=PlainTextResponse("fallback", status_code=410)))
    response = client.get("/anything")
    assert (response.status_code, response.text) == (410, "fallback")


# --------------------------------------------------------------------------- mounts


def test_mount_grows_root_path_and_keeps_path() -> None:
    router = Router([Mount("/api", routes=[Mount("/v1", routes=[Route("/users/{id:int}", show_scope)])])])
    assert TestClient(router).get("/api/v1/users/3").json() == {
        "path": "/api/v1/users/3",
        "root_path": "/api/v1",
        "path_params": {"id": "3"},
    }


def test_mount_under_a_server_root_path() -> None:
    client = TestClient(Router([Mount("/api", routes=[Route("/x", show_scope)])]), root_path="/site")
    assert client.get("/site/api/x").json()["root_path"] == "/site/api"


def test_mount_path_params_reach_the_mounted_routes() -> None:
    router = Router([Mount("/orgs/{org}", routes=[Route("/repos/{repo}", show_scope)])])
    assert TestClient(router).get("/orgs/acme/repos/web").json()["path_params"] == {"org": "acme", "repo": "web"}


def test_mount_without_trailing_path_redirects_to_the_slash() -> None:
    client = TestClient(Router([Mount("/static", app=PlainTextResponse("mounted"))]), follow_redirects=False)
    assert client.get("/static/file.css").text == "mounted"
    assert client.get("/static").headers["location"] == "http://testserver/static/"


def test_mount_of_an_asgi_app_and_its_routes() -> None:
    inner = Router([Route("/ping", text("pong"), name="ping")])
    mount = Mount("/inner", app=inner, name="inner")
    assert mount.routes == inner.routes
    assert Mount("/x", app=PlainTextResponse("x")).routes == []
    assert TestClient(Router([mount])).get("/inner/ping").text == "pong"


def test_mount_at_the_root() -> None:
    router = Router([Mount("", routes=[Route("/x", show_scope, name="x")])])
    assert TestClient(router).get("/x").json()["root_path"] == ""
    assert router.url_path_for("x") == "/x"


def test_mount_needs_an_app_or_routes() -> None:
    with pytest.raises(AssertionError, match="Either 'app=...', or 'routes=' must be specified"):
        Mount("/x")


# --------------------------------------------------------------------------- url_path_for


def users_router() -> Router:
    return Router(
        [
            Route("/", text("home"), name="home"),
            Route("/users/{id:int}", text("user"), name="user"),
            Route("/price/{amount:float}", text("price"), name="price"),
            WebSocketRoute("/live/{room}", text("ws"), name="live"),
            Mount("/api", name="api", routes=[Route("/items/{item_id}", text("item"), name="item")]),
            Mount("/static", app=PlainTextResponse("file"), name="static"),
            Mount("/shared", routes=[Route("/about", text("about"), name="about")]),
        ]
    )


def test_url_path_for_routes() -> None:
    router = users_router()
    assert router.url_path_for("home") == "/"
    user = router.url_path_for("user", id=7)
    assert isinstance(user, URLPath)
    assert (user, user.protocol) == ("/users/7", "http")
    live = router.url_path_for("live", room="lobby")
    assert (live, live.protocol) == ("/live/lobby", "websocket")


def test_url_path_for_through_mounts() -> None:
    router = users_router()
    assert router.url_path_for("api:item", item_id="a1") == "/api/items/a1"
    assert router.url_path_for("static", path="/css/site.css") == "/static/css/site.css"
    assert router.url_path_for("about") == "/shared/about"  # an unnamed mount is transparent


@pytest.mark.parametrize(
    ("name", "params"),
    [("nope", {}), ("user", {}), ("user", {"id": 1, "extra": 2}), ("home", {"x": 1}), ("api:nope", {}), ("item", {"item_id": 1})],
)
def test_url_path_for_without_an_exact_match_raises(name: str, params: dict[str, Any]) -> None:
    with pytest.raises(NoMatchFound, match=f'No route exists for name "{name}"'):
        users_router().url_path_for(name, **params)


def test_convertors_format_values_back() -> None:
    router = users_router()
    assert router.url_path_for("price", amount=3.0) == "/price/3"
    assert router.url_path_for("price", amount=0.1) == "/price/0.1"
    assert router.url_path_for("price", amount=1e-7) == "/price/0.0000001"
    with pytest.raises(AssertionError, match="Negative integers"):
        router.url_path_for("user", id=-1)
    with pytest.raises(AssertionError, match="Negative floats"):
        router.url_path_for("price", amount=-1.5)
    with pytest.raises(AssertionError, match="path separators"):
        router.url_path_for("api:item", item_id="a/b")


def test_request_url_for_inside_a_mount_is_absolute_to_the_app() -> None:
    async def links(request: Request) -> JSONResponse:
        return JSONResponse({"user": str(request.url_for("user", id=1)), "item": str(request.url_for("api:item", item_id="z"))})

    router = users_router()
    router.routes.append(Mount("/links", routes=[Route("/", links)]))
    assert TestClient(router, root_path="/site").get("/site/links/").json() == {
        "user": "http://testserver/site/users/1",
        "item": "http://testserver/site/api/items/z",
    }


# --------------------------------------------------------------------------- scope bookkeeping


def test_router_and_route_are_put_in_the_scope() -> None:
    seen: dict[str, Any] = {}

    async def endpoint(request: Request) -> Response:
        seen.update(router=request.scope["router"], route=request.scope["route"], endpoint=request.scope["endpoint"])
        return Response()

    route = Route("/x", endpoint)
    outer = Router([Mount("/m", routes=[route])])
    TestClient(outer).get("/m/x")
    assert seen == {"router": outer, "route": route, "endpoint": endpoint}  # the outermost router stays


# --------------------------------------------------------------------------- errors answered by the router


def raises(exc: Exception) -> Any:
    async def endpoint(request: Request) -> Response:
        raise exc

    return endpoint


def test_http_exception_becomes_its_response() -> None:
    client = TestClient(Router([Route("/x", raises(HTTPException(403, "No entry", headers={"X-Why": "closed"})))]))
    response = client.get("/x")
    assert (response.status_code, response.text) == (403, "No entry")
    assert response.headers["x-why"] == "closed"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


def test_http_exception_default_detail_is_the_reason_phrase() -> None:
    response = TestClient(Router([Route("/x", raises(HTTPException(404)))])).get("/x")
    assert (response.status_code, response.text) == (404, "Not Found")


def test_http_exception_with_structured_detail_is_json() -> None:
    detail: Any = {"field": "email", "problem": "taken"}
    response = TestClient(Router([Route("/x", raises(HTTPException(409, detail)))])).get("/x")
    assert response.status_code == 409
    assert response.json() == {"detail": {"field": "email", "problem": "taken"}}


@pytest.mark.parametrize("status", [204, 304])
def test_http_exception_without_a_body(status: int) -> None:
    response = TestClient(Router([Route("/x", raises(HTTPException(status)))])).get("/x")
    assert response.status_code == status
    assert response.content == b""


def test_http_exception_after_the_response_started_is_an_error() -> None:
    async def late(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise HTTPException(500)

    client = TestClient(Router([Route("/x", ASGIApp(late))]))
    with pytest.raises(RuntimeError, match="response already started"):
        client.get("/x")


def test_json_decode_error_not_from_the_request_body_stays_a_server_error() -> None:
    async def corrupt_config(request: Request) -> Response:
        json.loads("{corrupt")
        return Response()

    with pytest.raises(json.JSONDecodeError):
        TestClient(Router([Route("/x", corrupt_config)])).get("/x")
    response = TestClient(Router([Route("/x", corrupt_config)]), raise_server_exceptions=False).get("/x")
    assert response.status_code == 500


def test_invalid_json_body_is_400() -> None:
    async def endpoint(request: Request) -> JSONResponse:
        return JSONResponse(await request.json())

    client = TestClient(Router([Route("/x", endpoint, methods=["POST"])]))
    response = client.post("/x", content=b'{"a": }')
    assert (response.status_code, response.text) == (400, "Invalid JSON")


def test_malformed_form_is_400() -> None:
    async def endpoint(request: Request) -> Response:
        await request.form()
        return Response()

    client = TestClient(Router([Route("/x", endpoint, methods=["POST"])]))
    response = client.post("/x", content=b"--x\r\n", headers={"content-type": "multipart/form-data"})
    assert (response.status_code, response.text) == (400, "Missing boundary in multipart.")


def test_uploaded_files_are_closed_after_the_response() -> None:
    uploads: list[Any] = []

    async def endpoint(request: Request) -> Response:
        uploads.append((await request.form())["f"])
        return Response("ok")

    TestClient(Router([Route("/x", endpoint, methods=["POST"])])).post("/x", files={"f": ("f.txt", b"data")})
    assert uploads[0].file.closed


# --------------------------------------------------------------------------- websockets


def test_websocket_route_with_a_function_endpoint() -> None:
    async def chat(websocket: Any) -> None:
        await websocket.accept()
        name = await websocket.receive_text()
        await websocket.send_text(f"hello {name} in {websocket.path_params['room']}")
        await websocket.close()

    client = TestClient(Router([WebSocketRoute("/ws/{room}", chat)]))
    with client.websocket_connect("/ws/lobby") as session:
        session.send_text("ann")
        assert session.receive_text() == "hello ann in lobby"


def test_websocket_function_endpoint_gets_a_fastserve_websocket() -> None:
    from fastserve.websockets import WebSocket

    kinds: list[type] = []

    async def endpoint(websocket: Any) -> None:
        kinds.append(type(websocket))
        await websocket.accept()
        await websocket.close()

    with TestClient(Router([WebSocketRoute("/ws", endpoint)])).websocket_connect("/ws"):
        pass
    assert kinds == [WebSocket]


def test_websocket_route_with_an_asgi_endpoint() -> None:
    async def raw(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": scope["path_params"]["room"]})
        await send({"type": "websocket.close", "code": 1000})

    client = TestClient(Router([WebSocketRoute("/ws/{room}", ASGIApp(raw))]))
    with client.websocket_connect("/ws/kitchen") as session:
        assert session.receive_text() == "kitchen"


def test_unmatched_websocket_is_closed() -> None:
    client = TestClient(Router([Route("/ws", text("http only"))]))
    with pytest.raises(WebSocketDisconnect) as caught:
        with client.websocket_connect("/ws"):
            pass
    assert caught.value.code == 1000


def test_websocket_exception_closes_with_its_code_and_reason() -> None:
    async def endpoint(websocket: Any) -> None:
        raise WebSocketException(4403, "forbidden room")

    client = TestClient(Router([WebSocketRoute("/ws", endpoint)]))
    with pytest.raises(WebSocketDisconnect) as caught:
        with client.websocket_connect("/ws"):
            pass
    assert (caught.value.code, caught.value.reason) == (4403, "forbidden room")


def test_http_exception_before_accept_rejects_the_websocket_handshake() -> None:
    client = TestClient(Router([WebSocketRoute("/ws", raises(HTTPException(401, "log in first")))]))
    with pytest.raises(WebSocketDenialResponse) as caught:
        with client.websocket_connect("/ws"):
            pass
    # With the denial-response extension the client gets the HTTP error itself.
    assert caught.value.status_code == 401
    assert caught.value.content == b"log in first"


@pytest.mark.anyio
async def test_http_exception_before_accept_without_denial_support_closes_1008() -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    router = Router([WebSocketRoute("/ws", raises(HTTPException(401)))])
    await router({"type": "websocket", "path": "/ws", "headers": [], "query_string": b""}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": ""}]


def test_websocket_routes_do_not_match_http() -> None:
    client = TestClient(Router([WebSocketRoute("/ws", text("x"))]))
    assert client.get("/ws").status_code == 404


# --------------------------------------------------------------------------- lifespan


def test_lifespan_state_reaches_requests() -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
        events.append("startup")
        yield {"db": "connected"}
        events.append("shutdown")

    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.state.db)

    with TestClient(Router([Route("/", endpoint)], lifespan=lifespan)) as client:
        assert events == ["startup"]
        assert client.get("/").text == "connected"
    assert events == ["startup", "shutdown"]


def test_lifespan_receives_the_app() -> None:
    received: list[Any] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        received.append(app)
        yield

    router = Router(lifespan=lifespan)
    with TestClient(router):
        pass
    assert received == [router]


def test_generator_function_lifespans_run_and_are_deprecated_in_starlettes_words() -> None:
    events: list[str] = []

    async def async_lifespan(app: Any) -> AsyncIterator[None]:
        events.append("async up")
        yield
        events.append("async down")

    def lifespan(app: Any) -> Any:
        events.append("up")
        yield {"ready": True}
        events.append("down")

    for given, kind in [(async_lifespan, "async generator"), (lifespan, "generator")]:
        with pytest.warns(DeprecationWarning) as caught:
            router = Router(lifespan=given)
        assert [str(w.message) for w in caught] == [
            f"{kind} function lifespans are deprecated, use an @contextlib.asynccontextmanager function instead"
        ]
        assert caught[0].filename == __file__  # the line that made the Router
        with TestClient(router):
            pass
    assert events == ["async up", "async down", "up", "down"]


def test_lifespan_startup_failure_is_reported() -> None:
    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        raise RuntimeError("database unreachable")
        yield

    with pytest.raises(RuntimeError, match="database unreachable"):
        with TestClient(Router(lifespan=lifespan)):
            pass


async def run_lifespan(router: Router, scope: dict[str, Any]) -> list[dict[str, Any]]:
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with contextlib.suppress(Exception):
        await router(scope, receive, send)
    return sent


@pytest.mark.anyio
async def test_lifespan_messages() -> None:
    assert await run_lifespan(Router(), {"type": "lifespan"}) == [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.complete"},
    ]

    @contextlib.asynccontextmanager
    async def with_state(app: Any) -> AsyncIterator[dict[str, str]]:
        yield {"k": "v"}

    sent = await run_lifespan(Router(lifespan=with_state), {"type": "lifespan"})  # this server has no state
    assert sent[0]["type"] == "lifespan.startup.failed"
    assert 'does not support "state"' in sent[0]["message"]

    @contextlib.asynccontextmanager
    async def failing_shutdown(app: Any) -> AsyncIterator[None]:
        yield
        raise ValueError("flush failed")

    sent = await run_lifespan(Router(lifespan=failing_shutdown), {"type": "lifespan", "state": {}})
    assert [message["type"] for message in sent] == ["lifespan.startup.complete", "lifespan.shutdown.failed"]
    assert "flush failed" in sent[1]["message"]


# --------------------------------------------------------------------------- building


def test_add_route_mount_and_websocket_route() -> None:
    router = Router()
    router.add_route("/r", text("route"), methods=["GET"], name="r")
    router.mount("/m", PlainTextResponse("mounted"), name="m")
    router.add_websocket_route("/w", text("ws"), name="w")
    client = TestClient(router)
    assert client.get("/r").text == "route"
    assert client.get("/m/anything").text == "mounted"
    assert router.url_path_for("w") == "/w"


def test_route_equality_and_repr() -> None:
    endpoint = text("x")
    assert Route("/a", endpoint) == Route("/a", endpoint)
    assert Route("/a", endpoint) != Route("/a", endpoint, methods=["POST"])
    assert repr(Route("/a", endpoint, name="a")) == "Route(path='/a', name='a', methods=['GET', 'HEAD'])"
    assert repr(WebSocketRoute("/w", endpoint, name="w")) == "WebSocketRoute(path='/w', name='w')"


def test_a_route_on_its_own_is_an_asgi_app() -> None:
    client = TestClient(Route("/only/{x}", show_scope))
    assert client.get("/only/1").json()["path_params"] == {"x": "1"}
    assert client.get("/other").status_code == 404


# --------------------------------------------------------------------------- interop


def test_fastserve_router_mounted_in_a_starlette_app() -> None:
    async def starlette_home(request: StarletteRequest) -> StarlettePlainText:
        return StarlettePlainText(str(request.url_for("fast:user", id=5)))

    fast = Router([Route("/users/{id:int}", show_scope, name="user")])
    app = Starlette(routes=[StarletteRoute("/", starlette_home), StarletteMount("/fast", app=fast, name="fast")])
    client = TestClient(app)
    assert client.get("/fast/users/9").json() == {"path": "/fast/users/9", "root_path": "/fast", "path_params": {"id": "9"}}
    assert client.get("/").text == "http://testserver/fast/users/5"
    assert client.get("/fast/nope").status_code == 404


def test_starlette_app_mounted_in_a_fastserve_router() -> None:
    async def starlette_endpoint(request: StarletteRequest) -> StarlettePlainText:
        return StarlettePlainText(f"{request.scope['root_path']} {request.path_params['id']}")

    async def links(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(request.url_for("legacy:thing", id=3)))

    legacy = Starlette(routes=[StarletteRoute("/things/{id}", starlette_endpoint, name="thing")])
    router = Router([Route("/", links), Mount("/legacy", app=legacy, name="legacy")])
    client = TestClient(router)
    assert client.get("/legacy/things/4").text == "/legacy 4"
    assert client.get("/").text == "http://testserver/legacy/things/3"
    with pytest.raises(NoMatchFound):
        router.url_path_for("legacy:missing")


# --------------------------------------------------------------------------- a real server


def test_router_is_a_complete_app_under_uvicorn() -> None:
    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[dict[str, str]]:
        yield {"greeting": "hi"}

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"{request.state.greeting} {request.path_params['name']}")

    app = Router([Route("/hello/{name}", hello)], lifespan=lifespan)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            response = http.get("/hello/world")
            assert (response.status_code, response.text) == (200, "hi world")
            assert http.get("/hello/world/").status_code == 307
            assert http.post("/hello/world").status_code == 405
            assert http.get("/nothing").status_code == 404
    finally:
        server.should_exit = True
        thread.join(5)


# --------------------------------------------------------------------------- Starlette's route keywords


class Tag:
    """A pure ASGI middleware adding ``x-tag`` to HTTP answers; the outer ones add theirs last."""

    def __init__(self, app: Any, tag: str, *, suffix: str = "") -> None:
        self.app, self.tag = app, tag + suffix

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def tagged(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], (b"x-tag", self.tag.encode())]}
            await send(message)

        await self.app(scope, receive, tagged)


def test_routes_mounts_and_routers_take_starlettes_middleware() -> None:
    """``middleware=[Middleware(cls, *args, **kwargs), ...]``, Starlette's ``Middleware`` or any
    ``(cls, args, kwargs)`` triple: the first listed is the outermost, as in Starlette."""
    from starlette.middleware import Middleware

    inner = Router(routes=[Route("/r", text("r"), middleware=[Middleware(Tag, "route")])])
    router = Router(
        routes=[
            Mount("/m", app=inner, middleware=[Middleware(Tag, "mount", suffix="!"), (Tag, ("second",), {})]),
            WebSocketRoute("/ws", ASGIApp(_accept_and_close), middleware=[Middleware(Tag, "ws")]),
        ],
        middleware=[Middleware(Tag, "router")],
    )
    answer = TestClient(router).get("/m/r")
    assert (answer.text, answer.headers.get_list("x-tag")) == ("r", ["route", "second", "mount!", "router"])
    missing = TestClient(router).get("/nope")  # the router's middleware wraps its 404 too
    assert (missing.status_code, missing.headers.get_list("x-tag")) == (404, ["router"])
    assert router.routes[0].routes == inner.routes  # a mount's routes are its app's, middleware or not
    with TestClient(router).websocket_connect("/ws") as websocket:
        with pytest.raises(WebSocketDisconnect):
            websocket.receive_text()


async def _accept_and_close(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": 1000})


async def read_body(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(len(await request.body())))


async def ignore_body(request: Request) -> PlainTextResponse:
    return PlainTextResponse("not read")


@pytest.mark.parametrize("limit", ["starlette's", "fastserve's own"])
def test_max_body_size_answers_413_and_the_innermost_limit_decides(monkeypatch: pytest.MonkeyPatch, limit: str) -> None:
    """Where Starlette is installed the limit is Starlette's own middleware (one count per
    request across both frameworks' routes); fastserve's own, used without Starlette, answers
    the same."""
    import fastserve.routing

    if limit == "fastserve's own":
        monkeypatch.setattr(fastserve.routing, "_BodyLimit", fastserve.routing._OwnBodyLimit)
    router = Router(
        routes=[
            Route("/small", read_body, methods=["POST"]),
            Route("/large", read_body, methods=["POST"], max_body_size=100),
            Route("/ignored", ignore_body, methods=["POST"]),
            Mount("/m", routes=[Route("/r", read_body, methods=["POST"])], max_body_size=5),
        ],
        max_body_size=10,
    )
    client = TestClient(router)

    def post(path: str, body: bytes, chunked: bool = False) -> tuple[int, str]:
        answer = client.post(path, content=iter([body]) if chunked else body)
        return answer.status_code, answer.text

    assert post("/small", b"x" * 10) == (200, "10")
    assert post("/small", b"x" * 11) == (413, "Content Too Large")
    assert post("/small", b"x" * 11, chunked=True) == (413, "Content Too Large")  # counted as received
    assert post("/large", b"x" * 50) == (200, "50")  # the route's limit replaces the router's
    assert post("/large", b"x" * 101) == (413, "Content Too Large")
    assert post("/ignored", b"x" * 11) == (413, "Content Too Large")  # declared too large, never read
    assert post("/ignored", b"x" * 10) == (200, "not read")
    assert post("/m/r", b"x" * 6) == (413, "Content Too Large")
    assert TestClient(Route("/", read_body, methods=["POST"], max_body_size=0)).post("/", content=b"").text == "0"


def test_a_routes_max_body_size_replaces_a_starlette_apps() -> None:
    app = Starlette(routes=[Route("/", read_body, methods=["POST"], max_body_size=100)], max_body_size=10)
    client = TestClient(app)
    assert client.post("/", content=b"x" * 50).text == "50"
    assert client.post("/", content=b"x" * 101).status_code == 413


def test_convertors_registered_with_either_framework_serve_both() -> None:
    from starlette.convertors import register_url_convertor as starlette_register

    class Year(Convertor[int]):
        regex = "[0-9]{4}"

        def convert(self, value: str) -> int:
            return int(value)

        def to_string(self, value: int) -> str:
            return f"{value:04d}"

    starlette_register("fidelity_year", Year())
    register_url_convertor("fidelity_year2", Year())
    for kind in ("fidelity_year", "fidelity_year2"):
        ours = Route(f"/{{y:{kind}}}", show_scope, name="y")
        theirs = StarletteRoute(f"/{{y:{kind}}}", show_scope, name="y")
        assert ours.url_path_for("y", y=7) == theirs.url_path_for("y", y=7) == "/0007"


def test_uuid_paths_are_read_in_any_case_with_or_without_dashes() -> None:
    router = Router(routes=[Route("/{id:uuid}", show_scope)])
    for given in ("00000000-aaaa-ffff-9999-000000000000", "00000000AAAAFFFF9999000000000000"):
        assert TestClient(router).get("/" + given).json()["path_params"] == {"id": "00000000-aaaa-ffff-9999-000000000000"}


def test_routers_are_equal_when_their_routes_are() -> None:
    assert Mount("/m", app=Router([Route("/", show_scope)])) == Mount("/m", app=Router([Route("/", show_scope)]))
    assert Router([Route("/", show_scope)]) != Router([Route("/x", show_scope)])


def test_host_routes_by_the_host_field_and_builds_urls_on_it() -> None:
    api = Router(routes=[Route("/users/{id}", show_scope, name="user")])
    router = Router(
        routes=[Host("{tenant}.example.com", app=api, name="tenant"), Route("/", text("plain"))]
    )
    client = TestClient(router)
    answer = client.get("/users/7", headers={"host": "ACME.example.com:8000"})
    assert answer.json()["path_params"] == {"tenant": "acme", "id": "7"}
    assert client.get("/", headers={"host": "example.com"}).text == "plain"
    assert client.get("/users/7", headers={"host": "example.com"}).status_code == 404
    url = router.url_path_for("tenant:user", tenant="acme", id=7)
    assert (url, url.host) == ("/users/7", "acme.example.com")
    assert str(url.make_absolute_url("http://example.com/")) == "http://acme.example.com/users/7"
    added = Router()
    added.host("static.example.com", app=Route("/", text("s")), name="static")
    assert TestClient(added).get("/", headers={"host": "static.example.com"}).text == "s"
    assert added.routes == [Host("static.example.com", app=added.routes[0].app)]


def test_an_apps_handlers_answer_an_endpoints_exception_inside_the_middleware_around_it() -> None:
    """Inside a Starlette app, an endpoint's exception that the app has a handler for is answered
    at the endpoint, as Starlette's endpoints answer it: the middleware of the mount around it
    sees the handler's answer. One no handler is registered for is raised on (a 500)."""
    from starlette.middleware import Middleware

    class Teapot(Exception):
        pass

    async def forbidden(request: Request) -> Response:
        raise HTTPException(status_code=403, detail="no")

    async def teapot(request: Request) -> Response:
        raise Teapot()

    async def broken(request: Request) -> Response:
        raise KeyError("bug")

    def on_teapot(request: Any, exc: Exception) -> Response:  # a plain function: run in a thread
        return PlainTextResponse(f"teapot at {request.url.path}", status_code=418)

    app = Starlette(
        routes=[
            Mount(
                "/m",
                routes=[Route("/forbidden", forbidden), Route("/teapot", teapot), Route("/broken", broken)],
                middleware=[Middleware(Tag, "mount")],
            )
        ],
        exception_handlers={Teapot: on_teapot},
    )
    client = TestClient(app, raise_server_exceptions=False)
    answers = {path: client.get("/m/" + path) for path in ("forbidden", "teapot", "broken")}
    assert {path: (a.status_code, a.text, a.headers.get("x-tag")) for path, a in answers.items()} == {
        "forbidden": (403, "no", "mount"),
        "teapot": (418, "teapot at /m/teapot", "mount"),
        "broken": (500, "Internal Server Error", None),
    }
