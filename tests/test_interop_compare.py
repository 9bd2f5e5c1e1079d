"""fastserve's value classes and routes beside Starlette's: ``==`` answers alike in either order,
``isinstance`` against fastserve's class holds for Starlette's namesake, and the machinery that
reads a route's kind by ``isinstance`` (Starlette's ``SchemaGenerator``, FastAPI's router) takes
fastserve's routes as its own."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

pytest.importorskip("starlette")

import fastapi  # noqa: E402
import starlette.datastructures as sd  # noqa: E402
import starlette.routing as sr  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.schemas import SchemaGenerator  # noqa: E402

import fastserve.datastructures as fd  # noqa: E402
import fastserve.routing as fr  # noqa: E402
from fastserve.responses import PlainTextResponse  # noqa: E402
from fastserve.staticfiles import StaticFiles  # noqa: E402
from fastserve.testclient import TestClient  # noqa: E402

# Each value class, with the same content built by either framework's class and a different one.
VALUES: dict[str, tuple[tuple[Any, ...], tuple[Any, ...]]] = {
    "Headers": (({"a": "1", "b": "2"},), ({"a": "1"},)),
    "MutableHeaders": (({"a": "1", "b": "2"},), ({"a": "2", "b": "2"},)),
    "ImmutableMultiDict": (([("a", "1"), ("a", "2"), ("b", "3")],), ([("a", "2"), ("a", "1"), ("b", "3")],)),
    "MultiDict": (([("a", "1")],), ([("a", "1"), ("a", "1")],)),
    "QueryParams": (("a=1&b=2",), ("a=1&b=3",)),
    "FormData": (([("a", "1")],), ([("b", "1")],)),
    "URL": (("http://example.com/a?b=1",), ("http://example.com/a?b=2",)),
    "URLPath": (("/a/b",), ("/a/c",)),
    "Address": (("10.0.0.1", 80), ("10.0.0.1", 81)),
}


@pytest.mark.parametrize("name", sorted(VALUES))
def test_a_value_equals_starlettes_namesake_in_either_order(name: str) -> None:
    same, other = VALUES[name]
    ours, theirs = getattr(fd, name)(*same), getattr(sd, name)(*same)
    assert theirs == getattr(sd, name)(*same)  # what Starlette itself answers
    assert ours == theirs
    assert theirs == ours
    assert not (ours != theirs) and not (theirs != ours)
    different = getattr(sd, name)(*other)
    assert ours != different and different != ours
    assert getattr(fd, name)(*other) != theirs and theirs != getattr(fd, name)(*other)


@pytest.mark.parametrize("name", sorted([*VALUES, "Secret", "State", "CommaSeparatedStrings"]))
def test_isinstance_against_fastserves_class_holds_for_starlettes(name: str) -> None:
    args = VALUES.get(name, (("x",),))[0] if name != "State" else ({"a": 1},)
    theirs = getattr(sd, name)(*args)
    assert isinstance(theirs, getattr(fd, name))
    assert issubclass(getattr(sd, name), getattr(fd, name))


@pytest.mark.parametrize(
    "name", ["Headers", "MutableHeaders", "ImmutableMultiDict", "MultiDict", "QueryParams", "FormData", "Address"]
)
def test_isinstance_against_starlettes_class_holds_for_fastserves(name: str) -> None:
    # Starlette's own code (Headers.__eq__, FastAPI's form reading) asks isinstance against these.
    ours = getattr(fd, name)(*VALUES[name][0])
    assert isinstance(ours, getattr(sd, name))


MULTI_DICTS = ["ImmutableMultiDict", "MultiDict", "QueryParams", "FormData"]


def _multi(module: Any, name: str) -> Any:
    return getattr(module, name)("a=1" if name == "QueryParams" else [("a", "1")])


@pytest.mark.parametrize(("left", "right"), list(itertools.product(MULTI_DICTS, repeat=2)))
def test_multi_dicts_of_either_framework_compare_alike_in_either_order(left: str, right: str) -> None:
    """Starlette's __eq__ asks isinstance against the class of the one it was called on, and of
    two of its classes the subclass is asked first: an ImmutableMultiDict never equals a
    QueryParams. Across the frameworks the answer must not depend on the order."""
    starlettes = _multi(sd, left) == _multi(sd, right)
    for a_mod, b_mod in itertools.product((sd, fd), repeat=2):
        a, b = _multi(a_mod, left), _multi(b_mod, right)
        assert (a == b) == (b == a), (a_mod.__name__, left, b_mod.__name__, right)
        if a_mod is b_mod or left == right:
            assert (a == b) == starlettes
    # The one order Starlette's own __eq__ decides across them: its bare ImmutableMultiDict asks
    # isinstance of its own class, which any of fastserve's multi-dicts counts as.
    if left == "ImmutableMultiDict" and right != left:
        assert _multi(sd, left) == _multi(fd, right)


def test_headers_and_mutable_headers_of_either_framework_are_equal_in_every_order() -> None:
    made = [cls({"a": "1"}) for cls in (sd.Headers, sd.MutableHeaders, fd.Headers, fd.MutableHeaders)]
    for a, b in itertools.product(made, repeat=2):
        assert a == b
    assert fd.Headers({"a": "1"}) != {"a": "1"}


def test_isinstance_over_a_fastapi_requests_values_holds_with_fastserves_classes() -> None:
    app = fastapi.FastAPI()
    seen: dict[str, bool] = {}

    @app.get("/")
    def read(request: fastapi.Request) -> dict[str, bool]:
        seen["headers"] = isinstance(request.headers, fd.Headers)
        seen["query"] = isinstance(request.query_params, fd.QueryParams)
        seen["url"] = isinstance(request.url, fd.URL)
        seen["client"] = isinstance(request.client, fd.Address)
        seen["state"] = isinstance(request.state, fd.State)
        seen["equal"] = request.query_params == fd.QueryParams("q=1") == request.query_params
        return {}

    assert TestClient(app).get("/?q=1").status_code == 200
    assert seen == dict.fromkeys(seen, True) and len(seen) == 6


# --------------------------------------------------------------------------- routes


def endpoint(request: Any) -> Any:
    """
    responses:
      200:
        description: a page
    """
    return PlainTextResponse("endpoint")


def posted(request: Any) -> Any:
    """
    responses:
      201:
        description: made
    """
    return PlainTextResponse("posted", status_code=201)


async def socket(websocket: Any) -> None:
    await websocket.accept()
    await websocket.send_text("socket")
    await websocket.close()


def _route_table(routing: Any) -> list[Any]:
    return [
        routing.Route("/items/{item_id:int}", endpoint),
        routing.Route("/hidden", endpoint, include_in_schema=False),
        routing.WebSocketRoute("/ws", socket),
        routing.Mount("/api", routes=[routing.Route("/made", posted, methods=["POST"])]),
        routing.Host("docs.example.com", app=routing.Router(routes=[routing.Route("/page", endpoint)])),
    ]


def test_starlettes_schema_generator_documents_fastserves_routes_as_starlettes() -> None:
    generator = SchemaGenerator({"openapi": "3.0.0", "info": {"title": "t", "version": "1"}})
    theirs = generator.get_schema(_route_table(sr))
    ours = generator.get_schema(_route_table(fr))
    assert set(theirs["paths"]) == {"/items/{item_id}", "/api/made", "/page"}
    assert ours == theirs


@pytest.mark.parametrize("kind", ["Route", "WebSocketRoute", "Mount", "Host", "Router", "BaseRoute"])
def test_a_fastserve_route_is_an_instance_of_starlettes_class_of_its_name(kind: str) -> None:
    table = {type(route).__name__: route for route in _route_table(fr)}
    route = {**table, "Router": fr.Router(routes=[]), "BaseRoute": table["Route"]}[kind]
    assert isinstance(route, getattr(sr, kind))
    for theirs in [*_route_table(sr), sr.Router(routes=[])]:
        assert isinstance(theirs, getattr(fr, kind)) == isinstance(theirs, getattr(sr, kind))


def test_routes_of_either_framework_compare_alike_in_either_order() -> None:
    for ours, theirs in zip([*_route_table(fr), fr.Router()], [*_route_table(sr), sr.Router()]):
        kind = type(ours).__name__
        if kind == "Host":  # Host compares its app, which here differs by framework
            ours, theirs = fr.Host("h.example", app=socket), sr.Host("h.example", app=socket)
        if kind == "Mount":
            ours, theirs = fr.Mount("/m", app=socket), sr.Mount("/m", app=socket)
        assert ours == theirs, kind
        assert theirs == ours, kind
    assert fr.Route("/a", endpoint) != sr.Route("/b", endpoint)
    assert sr.Route("/b", endpoint) != fr.Route("/a", endpoint)
    assert fr.Mount("/m", app=socket) != sr.Host("m", app=socket)
    assert sr.Host("m", app=socket) != fr.Mount("/m", app=socket)


def test_a_fastserve_route_in_an_included_fastapi_router_is_served_at_its_prefix(tmp_path) -> None:
    (tmp_path / "a.txt").write_text("file")
    router = fastapi.APIRouter()
    router.routes.append(fr.Route("/page", endpoint))
    router.routes.append(fr.Mount("/static", StaticFiles(directory=tmp_path), name="static"))
    router.routes.append(fr.WebSocketRoute("/ws", socket))
    app = fastapi.FastAPI()
    app.include_router(router, prefix="/p")
    client = TestClient(app)
    page = client.get("/p/page")
    assert (page.status_code, page.text) == (200, "endpoint")
    static = client.get("/p/static/a.txt")
    assert (static.status_code, static.text) == (200, "file")
    with client.websocket_connect("/p/ws") as websocket:
        assert websocket.receive_text() == "socket"
    assert client.get("/page").status_code == 404


def test_a_starlette_app_of_fastserve_routes_serves_and_names_them() -> None:
    app = Starlette(routes=_route_table(fr))
    client = TestClient(app)
    assert client.get("/items/3").text == "endpoint"
    assert client.post("/api/made").status_code == 201
    assert client.get("/page", headers={"host": "docs.example.com"}).text == "endpoint"
    assert app.url_path_for("endpoint", item_id=3) == "/items/3"


# --------------------------------------------------------------------------- responses and tasks


@pytest.mark.parametrize(
    "name",
    ["Response", "HTMLResponse", "PlainTextResponse", "JSONResponse", "RedirectResponse", "StreamingResponse", "FileResponse"],
)
def test_isinstance_against_fastserves_response_classes_holds_for_starlettes(name: str) -> None:
    import starlette.responses as theirs

    import fastserve.responses as ours

    assert issubclass(getattr(theirs, name), getattr(ours, name))
    assert issubclass(getattr(ours, name), getattr(theirs, name))
    # a kind is claimed, not every response: Starlette's plain Response is no JSONResponse
    assert isinstance(theirs.Response(), ours.Response)
    if name != "Response":
        assert not isinstance(theirs.Response(), getattr(ours, name))


def test_what_a_fastapi_app_hands_its_middleware_and_endpoints_is_an_instance_of_fastserves_class() -> None:
    from fastserve.background import BackgroundTask, BackgroundTasks
    from fastserve.responses import JSONResponse, Response

    app = fastapi.FastAPI()
    seen: dict[str, bool] = {}

    @app.middleware("http")
    async def look(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        seen["call_next"] = isinstance(response, Response)
        return response

    @app.get("/")
    def read(tasks: fastapi.BackgroundTasks) -> Any:
        seen["tasks"] = isinstance(tasks, BackgroundTasks) and isinstance(tasks, BackgroundTask)
        answer = fastapi.responses.JSONResponse({"a": 1})
        seen["json"] = isinstance(answer, JSONResponse)
        return answer

    assert TestClient(app).get("/").json() == {"a": 1}
    assert seen == {"call_next": True, "tasks": True, "json": True}


# --------------------------------------------------------------------------- warnings


@pytest.mark.parametrize("module", ["fastserve.exceptions", "fastserve.testclient"])
def test_starlette_deprecation_warning_with_fastserves_import_catches_starlettes_and_fastserves(module: str) -> None:
    import importlib
    import warnings

    import starlette.status

    import fastserve.status

    warning = importlib.import_module(module).StarletteDeprecationWarning
    with pytest.warns(warning, match="HTTP_413_CONTENT_TOO_LARGE"):
        starlette.status.HTTP_413_REQUEST_ENTITY_TOO_LARGE  # noqa: B018 - Starlette warns on the read
    with pytest.warns(warning, match="HTTP_413_CONTENT_TOO_LARGE") as caught:
        fastserve.status.HTTP_413_REQUEST_ENTITY_TOO_LARGE  # noqa: B018
    assert issubclass(caught[0].category, DeprecationWarning)
    with pytest.warns(warning, match="timeout"):
        TestClient(fastapi.FastAPI()).get("/", timeout=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=warning)
        starlette.status.HTTP_413_REQUEST_ENTITY_TOO_LARGE  # noqa: B018 - silenced by the filter
        fastserve.status.HTTP_413_REQUEST_ENTITY_TOO_LARGE  # noqa: B018


@pytest.mark.anyio
@pytest.mark.parametrize("framework", ["starlette", "fastserve"])
async def test_except_multipart_exception_with_fastserves_import_catches_either_frameworks_form_error(
    framework: str,
) -> None:
    import importlib

    from fastserve.formparsers import MultiPartException

    request_class = importlib.import_module(f"{framework}.requests").Request

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"--x\r\nno-colon\r\n\r\n1\r\n--x--\r\n", "more_body": False}

    headers = [(b"content-type", b"multipart/form-data; boundary=x")]
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers, "query_string": b""}
    with pytest.raises(MultiPartException) as raised:
        await request_class(scope, receive).form()
    assert raised.value.message == "Invalid multipart data."
