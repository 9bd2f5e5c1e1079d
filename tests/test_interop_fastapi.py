"""A FastAPI app that swapped ``starlette``/``fastapi`` imports for fastserve's keeps working."""
from fastapi import FastAPI

from fastserve.exceptions import HTTPException
from fastserve.responses import HTMLResponse, JSONResponse
from fastserve.staticfiles import StaticFiles
from fastserve.templating import Jinja2Templates
from fastserve.testclient import TestClient


def make_app(tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "hello.html").write_text("<p>Hello {{ name }} at {{ url_for('page') }}</p>")
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "app.css").write_text("p{}")
    templates = Jinja2Templates(directory=tmp_path / "templates")
    app = FastAPI()
    app.mount("/static", StaticFiles(directory=tmp_path / "static"), name="static")

    @app.get("/page", response_class=HTMLResponse)
    async def page(request: __import__("fastapi").Request):
        return templates.TemplateResponse(request, "hello.html", {"name": "Ada"})

    @app.get("/html")
    async def html():
        return HTMLResponse("<b>raw</b>", headers={"x-kind": "fastserve"})

    @app.get("/json")
    async def json_response():
        return JSONResponse({"ok": True}, status_code=201)

    @app.get("/teapot")
    async def teapot():
        raise HTTPException(status_code=418, detail="short and stout", headers={"x-pot": "1"})

    return app


def test_fastapi_endpoints_return_fastserve_responses(tmp_path):
    client = TestClient(make_app(tmp_path))
    page = client.get("/page")
    assert page.status_code == 200
    assert page.text == "<p>Hello Ada at http://testserver/page</p>"
    html = client.get("/html")
    assert html.text == "<b>raw</b>" and html.headers["x-kind"] == "fastserve"
    created = client.get("/json")
    assert created.status_code == 201 and created.json() == {"ok": True}


def test_fastapi_handles_fastserve_http_exception(tmp_path):
    response = TestClient(make_app(tmp_path)).get("/teapot")
    assert response.status_code == 418
    assert response.json() == {"detail": "short and stout"}
    assert response.headers["x-pot"] == "1"


def test_fastserve_static_files_mounted_in_fastapi(tmp_path):
    client = TestClient(make_app(tmp_path))
    assert client.get("/static/app.css").text == "p{}"
    missing = client.get("/static/nope.css")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Not Found"}  # FastAPI's own handler answered


def test_starlette_mount_moves_past_a_fastserve_router_miss():
    from starlette.applications import Starlette
    from starlette.routing import Mount as StarletteMount
    from starlette.routing import Route as StarletteRoute

    from fastserve.responses import PlainTextResponse
    from fastserve.routing import Route, Router

    async def ok(request):
        return PlainTextResponse("ok")

    inner = Router(routes=[Route("/inner", ok, name="inner")])
    app = Starlette(routes=[StarletteMount("/api", app=inner), StarletteRoute("/later", ok, name="later")])
    assert app.url_path_for("later") == "/later"  # the fastserve router's miss did not stop the search
    assert app.url_path_for("inner") == "/api/inner"


def test_an_upload_the_framework_parsed_is_a_fastserve_upload_file():
    """``isinstance(value, UploadFile)`` over ``await request.form()`` (Starlette's documented way
    to tell files from fields) keeps working when ``UploadFile`` is imported from fastserve."""
    from starlette.applications import Starlette
    from starlette.datastructures import UploadFile as StarletteUploadFile
    from starlette.routing import Route

    from fastserve.datastructures import UploadFile

    async def kinds(request):
        form = await request.form()
        return JSONResponse({key: isinstance(value, UploadFile) for key, value in form.multi_items()})

    client = TestClient(Starlette(routes=[Route("/", kinds, methods=["POST"])]))
    answer = client.post("/", data={"name": "Ada"}, files={"doc": ("a.txt", b"hello", "text/plain")})
    assert answer.json() == {"name": False, "doc": True}
    assert issubclass(StarletteUploadFile, UploadFile)

    class Own(UploadFile):  # a subclass claims its own instances only
        pass

    assert not isinstance(StarletteUploadFile(__import__("io").BytesIO()), Own)


def test_handlers_keyed_by_fastserves_http_exception_answer_what_the_framework_raises(tmp_path):
    """FastAPI's "override the default exception handlers" recipe, with the import swapped: a
    handler registered for ``HTTPException`` answers the router's 404 and 405, a security
    dependency's 401 and a mounted StaticFiles miss (Starlette's or fastserve's), as the handler
    registered for Starlette's class does; ``except`` catches the framework's raise too."""
    from fastapi import Depends, WebSocketException as FastAPIWebSocketException
    from fastapi.security import OAuth2PasswordBearer
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.staticfiles import StaticFiles as StarletteStaticFiles

    from fastserve.exceptions import WebSocketException
    from fastserve.responses import PlainTextResponse

    (tmp_path / "static").mkdir()
    app = FastAPI()
    app.mount("/starlette", StarletteStaticFiles(directory=tmp_path / "static"))
    app.mount("/fastserve", StaticFiles(directory=tmp_path / "static"))

    @app.exception_handler(HTTPException)
    async def custom(request, exc):
        return PlainTextResponse(f"custom {exc.status_code}: {exc.detail}", status_code=exc.status_code)

    @app.get("/secure")
    async def secure(token: str = Depends(OAuth2PasswordBearer(tokenUrl="token"))):
        return {"token": token}

    @app.get("/mine")
    async def mine():
        raise HTTPException(status_code=409, detail="taken")

    client = TestClient(app)
    answers = {path: client.get(path) for path in ["/nope", "/secure", "/mine", "/starlette/x.css", "/fastserve/x.css"]}
    assert {path: (r.status_code, r.text) for path, r in answers.items()} == {
        "/nope": (404, "custom 404: Not Found"),
        "/secure": (401, "custom 401: Not authenticated"),
        "/mine": (409, "custom 409: taken"),
        "/starlette/x.css": (404, "custom 404: Not Found"),
        "/fastserve/x.css": (404, "custom 404: Not Found"),
    }
    assert client.post("/mine").text == "custom 405: Method Not Allowed"

    for framework_raise, fastserve_class in [
        (StarletteHTTPException(404), HTTPException),
        (FastAPIWebSocketException(code=1008), WebSocketException),
    ]:
        try:
            raise framework_raise
        except fastserve_class as caught:
            assert caught is framework_raise


def test_isinstance_against_fastserve_connection_classes_holds_for_the_frameworks():
    """A FastAPI app hands its endpoints, dependencies and middleware Starlette's objects; an
    ``isinstance`` test written against the swapped import answers as with Starlette's."""
    from fastapi import Depends
    from starlette.requests import HTTPConnection as StarletteHTTPConnection
    from starlette.requests import Request as StarletteRequest
    from starlette.websockets import WebSocket as StarletteWebSocket

    from fastserve.requests import HTTPConnection, Request
    from fastserve.websockets import WebSocket

    def kinds(conn: object) -> list:
        return [isinstance(conn, cls) for cls in (HTTPConnection, Request, WebSocket)]

    def conn_kinds(conn: HTTPConnection) -> list:  # a dependency shared by HTTP and WebSocket routes
        return kinds(conn)

    app = FastAPI()

    @app.middleware("http")
    async def mark(request, call_next):
        response = await call_next(request)
        response.headers["x-kinds"] = str(kinds(request))
        return response

    @app.get("/http")
    async def http(request: Request, seen: list = Depends(conn_kinds)):
        return {"endpoint": kinds(request), "dependency": seen}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, seen: list = Depends(conn_kinds)):
        await websocket.accept()
        await websocket.send_json({"endpoint": kinds(websocket), "dependency": seen})
        await websocket.close()

    client = TestClient(app)
    answer = client.get("/http")
    assert answer.json() == {"endpoint": [True, True, False], "dependency": [True, True, False]}
    assert answer.headers["x-kinds"] == "[True, True, False]"
    with client.websocket_connect("/ws") as websocket:
        assert websocket.receive_json() == {"endpoint": [True, False, True], "dependency": [True, False, True]}

    class OwnRequest(Request):  # a subclass claims its own instances only
        pass

    assert not issubclass(StarletteRequest, OwnRequest)
    assert issubclass(StarletteWebSocket, WebSocket) and not issubclass(StarletteWebSocket, Request)
    # The claim follows real inheritance: asking Starlette's ABC about an unrelated class ends.
    assert not issubclass(int, StarletteHTTPConnection) and not isinstance({}, HTTPConnection)


def test_fastserve_routes_match_inside_a_starlette_app_and_starlette_routes_inside_fastserves(tmp_path):
    """Routers compare what a route's ``matches`` returns with ``is``: fastserve's ``Route``,
    ``Mount`` and ``WebSocketRoute`` in ``Starlette(routes=...)`` answer as Starlette's own do
    (they had matched nothing, and the slash redirect answered every request with a 307 to
    itself), and Starlette's routes in fastserve's ``Router`` answer there."""
    from starlette.applications import Starlette
    from starlette.routing import Route as StarletteRoute

    from fastserve.responses import PlainTextResponse
    from fastserve.routing import Mount, Route, Router, WebSocketRoute

    (tmp_path / "a.txt").write_text("file")

    async def hello(request):
        return PlainTextResponse("hello")

    async def echo(websocket):
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.close()

    for app in (
        Starlette(routes=[Route("/x", hello), Mount("/static", StaticFiles(directory=tmp_path)), WebSocketRoute("/ws", echo)]),
        Router(routes=[StarletteRoute("/x", hello), Mount("/static", StaticFiles(directory=tmp_path)), WebSocketRoute("/ws", echo)]),
    ):
        client = TestClient(app)
        answers = {
            "/x": client.get("/x"),
            "/x/": client.get("/x/"),
            "/static/a.txt": client.get("/static/a.txt"),
            "/static/b.txt": client.get("/static/b.txt"),
        }
        assert {path: (r.status_code, r.text, len(r.history)) for path, r in answers.items()} == {
            "/x": (200, "hello", 0),
            "/x/": (200, "hello", 1),  # one redirect to /x, as Starlette's routes get
            "/static/a.txt": (200, "file", 0),
            "/static/b.txt": (404, "Not Found", 0),
        }
        wrong_method = client.post("/x")
        # Starlette's Route lists its methods from a set, in an order that varies between runs.
        allowed = set(wrong_method.headers["allow"].split(", "))
        assert (wrong_method.status_code, allowed) == (405, {"GET", "HEAD"})
        with client.websocket_connect("/ws") as websocket:
            websocket.send_text("ping")
            assert websocket.receive_text() == "ping"


def test_fastapi_documents_a_fastserve_json_response_class_with_the_routes_model():
    """FastAPI gives a route whose ``response_class`` is a ``JSONResponse`` the schema of its
    model, and any other class ``{"type": "string"}``; it asks ``issubclass`` against
    Starlette's class, which each of fastserve's response classes derives from."""
    import starlette.responses
    from pydantic import BaseModel

    import fastserve.responses

    class Item(BaseModel):
        name: str

    def documented(response_class: type) -> dict:
        app = FastAPI(default_response_class=response_class)

        @app.get("/item", response_model=Item)
        async def item():
            return {"name": "x"}

        class JsonApi(response_class):  # type: ignore[misc, valid-type]
            media_type = "application/vnd.api+json"

        @app.get("/api", response_model=Item, response_class=JsonApi)
        async def api():
            return {"name": "x"}

        answer = TestClient(app).get("/api")
        assert (answer.json(), answer.headers["content-type"]) == ({"name": "x"}, "application/vnd.api+json")
        return {path: op["get"]["responses"]["200"]["content"] for path, op in app.openapi()["paths"].items()}

    ours = documented(fastserve.responses.JSONResponse)
    assert ours == documented(starlette.responses.JSONResponse)
    assert ours["/api"] == {"application/vnd.api+json": {"schema": {"$ref": "#/components/schemas/Item"}}}
    for name in fastserve.responses.__all__:
        theirs = getattr(starlette.responses, name)
        assert issubclass(getattr(fastserve.responses, name), theirs), name


def test_fastserve_routes_in_a_fastapi_app_leave_their_errors_to_its_handlers():
    """Inside a Starlette or FastAPI app (``app`` in the scope) fastserve's routes raise their
    404, 405 and an endpoint's ``HTTPException`` or ``WebSocketException`` to the app's exception
    handlers, as Starlette's routes do: FastAPI answers them as JSON, an app's own handler as it
    says. The same app built with Starlette's routing classes gets the same answers."""
    import starlette.routing

    import fastserve.routing
    from fastserve.exceptions import WebSocketException
    from fastserve.responses import PlainTextResponse
    from fastserve.websockets import WebSocketDisconnect

    async def teapot(request):
        raise HTTPException(status_code=418, detail="short and stout", headers={"x-pot": "1"})

    async def ok(request):
        return PlainTextResponse("ok")

    async def refuse(websocket):
        await websocket.accept()
        raise WebSocketException(code=4003, reason="not you")

    def answers(routing) -> dict:
        app = FastAPI()
        app.router.routes.append(routing.Route("/teapot", teapot))
        app.router.routes.append(routing.Route("/ok", ok, methods=["POST"]))
        app.router.routes.append(routing.WebSocketRoute("/ws", refuse))
        app.router.routes.append(routing.Mount("/sub", routes=[routing.Route("/ok", ok)]))

        @app.exception_handler(404)
        async def not_found(request, exc):
            return PlainTextResponse(f"custom 404 for {request.url.path}", status_code=404)

        client = TestClient(app)
        seen = {}
        for method, path in [("GET", "/teapot"), ("GET", "/ok"), ("GET", "/sub/nope"), ("GET", "/sub/ok")]:
            answer = client.request(method, path)
            fields = {name: answer.headers.get(name) for name in ("content-type", "allow", "x-pot")}
            seen[path] = (answer.status_code, answer.text, fields)
        with client.websocket_connect("/ws") as websocket:
            try:
                websocket.receive_text()
            except WebSocketDisconnect as closed:
                seen["/ws"] = (closed.code, closed.reason)
        return seen

    ours = answers(fastserve.routing)
    assert ours == answers(starlette.routing)
    assert ours["/teapot"] == (418, '{"detail":"short and stout"}', {"content-type": "application/json", "allow": None, "x-pot": "1"})
    assert ours["/ok"][:2] == (405, '{"detail":"Method Not Allowed"}') and ours["/ok"][2]["allow"] == "POST"
    assert ours["/sub/nope"][:2] == (404, "custom 404 for /sub/nope")
    assert ours["/ws"] == (4003, "not you")
