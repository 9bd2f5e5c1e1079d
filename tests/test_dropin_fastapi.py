"""The promise of the library: a FastAPI app from FastAPI's tutorials keeps working when its
Starlette/FastAPI classes are imported from fastserve instead.

``make_app`` builds the app from the tutorials (request files, forms and files, form data,
WebSockets with a connection manager and with a policy refusal, templates, static files, status
codes, using the Request directly, lifespan, testing) out of one set of imports; every test runs
once with FastAPI's own classes and once with fastserve's, and must pass both ways.
"""
import contextlib
import types
from typing import Annotated, Union

import pytest
from fastapi import Cookie, FastAPI, File, Form, Query
from fastapi.responses import HTMLResponse


def fastapi_classes() -> types.SimpleNamespace:
    import fastapi
    from fastapi.staticfiles import StaticFiles
    from fastapi.templating import Jinja2Templates
    from fastapi.testclient import TestClient

    return types.SimpleNamespace(
        StaticFiles=StaticFiles,
        status=fastapi.status,
        Jinja2Templates=Jinja2Templates,
        TestClient=TestClient,
        UploadFile=fastapi.UploadFile,
        Request=fastapi.Request,
        WebSocket=fastapi.WebSocket,
        WebSocketDisconnect=fastapi.WebSocketDisconnect,
        HTTPException=fastapi.HTTPException,
        WebSocketException=fastapi.WebSocketException,
        BackgroundTasks=fastapi.BackgroundTasks,
        Response=fastapi.Response,
    )


def fastserve_classes() -> types.SimpleNamespace:
    from fastserve import status
    from fastserve.background import BackgroundTasks
    from fastserve.datastructures import UploadFile
    from fastserve.exceptions import HTTPException, WebSocketException
    from fastserve.requests import Request
    from fastserve.responses import Response
    from fastserve.staticfiles import StaticFiles
    from fastserve.templating import Jinja2Templates
    from fastserve.testclient import TestClient
    from fastserve.websockets import WebSocket, WebSocketDisconnect

    return types.SimpleNamespace(
        StaticFiles=StaticFiles,
        status=status,
        Jinja2Templates=Jinja2Templates,
        TestClient=TestClient,
        UploadFile=UploadFile,
        Request=Request,
        WebSocket=WebSocket,
        WebSocketDisconnect=WebSocketDisconnect,
        HTTPException=HTTPException,
        WebSocketException=WebSocketException,
        BackgroundTasks=BackgroundTasks,
        Response=Response,
    )


def make_app(api: types.SimpleNamespace, directory) -> FastAPI:
    # The tutorials' module-level imports, bound from the set under test.
    UploadFile, Request, WebSocket = api.UploadFile, api.Request, api.WebSocket
    WebSocketDisconnect, HTTPException, status = api.WebSocketDisconnect, api.HTTPException, api.status

    (directory / "static").mkdir()
    (directory / "static" / "styles.css").write_text("h1 { color: green; }")
    (directory / "templates").mkdir()
    (directory / "templates" / "item.html").write_text(
        '<link href="{{ url_for(\'static\', path=\'/styles.css\') }}" rel="stylesheet">'
        '<h1><a href="{{ url_for(\'read_item\', id=id) }}">Item ID: {{ id }}</a></h1>'
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.items = {"foo": {"name": "Foo"}}
        yield
        app.state.items.clear()

    app = FastAPI(lifespan=lifespan)
    app.mount("/static", api.StaticFiles(directory=directory / "static"), name="static")
    templates = api.Jinja2Templates(directory=directory / "templates")

    # --- Request Files
    @app.post("/files/")
    async def create_file(file: Annotated[bytes, File()]):
        return {"file_size": len(file)}

    @app.post("/uploadfile/")
    async def create_upload_file(file: UploadFile):
        contents = await file.read()
        return {"filename": file.filename, "content_type": file.content_type, "size": len(contents)}

    @app.post("/optional-uploadfile/")
    async def create_optional_upload_file(file: Union[UploadFile, None] = None):
        return {"filename": file.filename if file else None}

    @app.post("/uploadfiles/")
    async def create_upload_files(files: list[UploadFile] = File(...)):
        return {"filenames": [file.filename for file in files]}

    @app.post("/described-uploadfiles/")
    async def create_described_files(files: Annotated[list[UploadFile], File(description="Several files")]):
        return {"sizes": [len(await file.read()) for file in files]}

    # --- Request Forms and Files, Form Data
    @app.post("/forms-files/")
    async def create_form_file(
        file: Annotated[bytes, File()], fileb: Annotated[UploadFile, File()], token: Annotated[str, Form()]
    ):
        return {"file_size": len(file), "token": token, "fileb_content_type": fileb.content_type}

    @app.post("/login/")
    async def login(username: Annotated[str, Form()], password: Annotated[str, Form()]):
        return {"username": username}

    # --- Response Status Code, Handling Errors
    @app.post("/items/", status_code=status.HTTP_201_CREATED)
    async def create_item(name: str):
        return {"name": name}

    @app.get("/items/{id}", response_class=HTMLResponse)
    async def read_item(request: Request, id: str):
        if id not in request.app.state.items:
            raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="Item not found")
        return templates.TemplateResponse(request=request, name="item.html", context={"id": id})

    # --- Background Tasks
    app.state.notifications = []

    def write_notification(email: str, message=""):
        app.state.notifications.append(f"notification for {email}: {message}")

    @app.post("/send-notification/{email}")
    async def send_notification(email: str, background_tasks: api.BackgroundTasks):
        background_tasks.add_task(write_notification, email, message="some notification")
        return {"message": "Notification sent in the background"}

    # --- Response - Change Status Code, Response Headers
    tasks = {"foo": "Listen to the Bar Fighters"}

    @app.put("/get-or-create-task/{task_id}", status_code=200)
    def get_or_create_task(task_id: str, response: api.Response):
        response.headers["X-Cat-Dog"] = "alone in the world"
        if task_id not in tasks:
            tasks[task_id] = "This didn't exist before"
            response.status_code = status.HTTP_201_CREATED
        return tasks[task_id]

    # --- Using the Request Directly
    @app.get("/client/{item_id}")
    def read_root(item_id: str, request: Request):
        return {"client_host": request.client.host, "item_id": item_id}

    # --- WebSockets
    @app.websocket("/ws")
    async def websocket_endpoint(websocket: WebSocket):
        await websocket.accept()
        try:
            while True:
                data = await websocket.receive_text()
                await websocket.send_text(f"Message text was: {data}")
        except WebSocketDisconnect as exc:
            app.state.echo_closed = exc.code

    @app.websocket("/items/{item_id}/ws")
    async def websocket_with_token(
        websocket: WebSocket,
        item_id: str,
        session: Annotated[Union[str, None], Cookie()] = None,
        token: Annotated[Union[str, None], Query()] = None,
    ):
        if session is None and token is None:
            raise api.WebSocketException(code=status.WS_1008_POLICY_VIOLATION)
        await websocket.accept()
        await websocket.send_json({"item_id": item_id, "token": token})
        await websocket.close()

    class ConnectionManager:
        def __init__(self):
            self.active_connections: list[WebSocket] = []

        async def connect(self, websocket: WebSocket):
            await websocket.accept()
            self.active_connections.append(websocket)

        def disconnect(self, websocket: WebSocket):
            self.active_connections.remove(websocket)

        async def broadcast(self, message: str):
            for connection in self.active_connections:
                await connection.send_text(message)

    manager = ConnectionManager()
    app.state.departed = []

    @app.websocket("/chat/{client_id}")
    async def chat(websocket: WebSocket, client_id: int):
        await manager.connect(websocket)
        try:
            while True:
                data = await websocket.receive_text()
                await manager.broadcast(f"Client #{client_id} says: {data}")
        except WebSocketDisconnect:
            manager.disconnect(websocket)
            app.state.departed.append(client_id)
            await manager.broadcast(f"Client #{client_id} left the chat")

    return app


@pytest.fixture(params=["fastapi", "fastserve"])
def api(request) -> types.SimpleNamespace:
    return fastapi_classes() if request.param == "fastapi" else fastserve_classes()


@pytest.fixture
def client(api, tmp_path):
    with api.TestClient(make_app(api, tmp_path)) as client:
        yield client


def test_request_files(client):
    assert client.post("/files/", files={"file": ("a.bin", b"12345")}).json() == {"file_size": 5}
    response = client.post("/uploadfile/", files={"file": ("notes.txt", b"hello", "text/plain")})
    assert response.json() == {"filename": "notes.txt", "content_type": "text/plain", "size": 5}
    assert client.post("/optional-uploadfile/").json() == {"filename": None}
    assert client.post("/optional-uploadfile/", files={"file": ("o.txt", b"o")}).json() == {"filename": "o.txt"}
    missing = client.post("/uploadfile/")
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "file"]


def test_multiple_uploads(client):
    files = [("files", ("a.txt", b"1")), ("files", ("b.txt", b"22"))]
    assert client.post("/uploadfiles/", files=files).json() == {"filenames": ["a.txt", "b.txt"]}
    assert client.post("/described-uploadfiles/", files=files).json() == {"sizes": [1, 2]}


def test_forms_and_files(client):
    response = client.post(
        "/forms-files/",
        files={"file": ("f", b"abc"), "fileb": ("g.png", b"\x89PNG", "image/png")},
        data={"token": "secret"},
    )
    assert response.json() == {"file_size": 3, "token": "secret", "fileb_content_type": "image/png"}
    assert client.post("/login/", data={"username": "ada", "password": "x"}).json() == {"username": "ada"}
    assert client.post("/login/", data={"username": "ada"}).status_code == 422


def test_status_codes_and_errors(client, api):
    created = client.post("/items/", params={"name": "Bar"})
    assert created.status_code == api.status.HTTP_201_CREATED == 201
    assert created.json() == {"name": "Bar"}
    missing = client.get("/items/nope")
    assert missing.status_code == 404 and missing.json() == {"detail": "Item not found"}


def test_templates_and_static_files(client):
    page = client.get("/items/foo")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text == (
        '<link href="http://testserver/static/styles.css" rel="stylesheet">'
        '<h1><a href="http://testserver/items/foo">Item ID: foo</a></h1>'
    )
    css = client.get("/static/styles.css")
    assert css.status_code == 200 and css.text == "h1 { color: green; }"
    assert css.headers["content-type"].startswith("text/css")
    assert client.get("/static/styles.css", headers={"if-none-match": css.headers["etag"]}).status_code == 304
    missing = client.get("/static/nope.css")
    assert missing.status_code == 404 and missing.json() == {"detail": "Not Found"}
    assert client.post("/static/styles.css").status_code == 405


def test_background_tasks(client):
    response = client.post("/send-notification/ada@example.com")
    assert response.json() == {"message": "Notification sent in the background"}
    assert client.app.state.notifications == ["notification for ada@example.com: some notification"]


def test_response_parameter(client):
    existing = client.put("/get-or-create-task/foo")
    assert existing.status_code == 200 and existing.json() == "Listen to the Bar Fighters"
    assert existing.headers["x-cat-dog"] == "alone in the world"
    assert client.put("/get-or-create-task/bar").status_code == 201


def test_request_directly(client):
    assert client.get("/client/7").json() == {"client_host": "testclient", "item_id": "7"}


def test_websocket_echo(client):
    with client.websocket_connect("/ws") as websocket:
        websocket.send_text("hi")
        assert websocket.receive_text() == "Message text was: hi"
    assert client.app.state.echo_closed == 1000


def test_websocket_refused_and_accepted(client, api):
    with pytest.raises(api.WebSocketDisconnect) as refused:
        with client.websocket_connect("/items/foo/ws"):
            pass
    assert refused.value.code == api.status.WS_1008_POLICY_VIOLATION
    with client.websocket_connect("/items/foo/ws?token=t") as websocket:
        assert websocket.receive_json() == {"item_id": "foo", "token": "t"}
        with pytest.raises(api.WebSocketDisconnect) as closed:
            websocket.receive_text()
    assert closed.value.code == 1000


def test_websocket_disconnect_is_caught_by_the_endpoint(client):
    with client.websocket_connect("/chat/1") as first:
        with client.websocket_connect("/chat/2") as second:
            second.send_text("hello")
            assert first.receive_text() == "Client #2 says: hello"
            assert second.receive_text() == "Client #2 says: hello"
        # The endpoint's ``except WebSocketDisconnect`` ran: it tells the others.
        assert first.receive_text() == "Client #2 left the chat"
    assert client.app.state.departed[0] == 2


def test_lifespan_runs_with_the_client(api, tmp_path):
    app = make_app(api, tmp_path)
    with api.TestClient(app) as client:
        assert client.get("/items/foo").status_code == 200
        assert app.state.items == {"foo": {"name": "Foo"}}
    assert app.state.items == {}


def test_openapi_documents_the_same_app(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert make_app(fastserve_classes(), tmp_path / "a").openapi() == make_app(fastapi_classes(), tmp_path / "b").openapi()


# --------------------------------------------------------------------------- how the classes count


def test_annotation_classes_are_recognised_by_starlettes_checks():
    import starlette.datastructures
    import starlette.requests
    import starlette.websockets

    import starlette.background

    from fastserve.background import BackgroundTasks
    from fastserve.datastructures import UploadFile
    from fastserve.requests import HTTPConnection, Request
    from fastserve.websockets import WebSocket

    assert issubclass(UploadFile, starlette.datastructures.UploadFile)
    assert issubclass(BackgroundTasks, starlette.background.BackgroundTasks)
    assert issubclass(Request, starlette.requests.Request)
    assert issubclass(WebSocket, starlette.websockets.WebSocket)
    assert issubclass(HTTPConnection, starlette.requests.HTTPConnection)
    # FastAPI tries Request before WebSocket: a WebSocket must not pass for a Request.
    assert not issubclass(WebSocket, starlette.requests.Request)
    assert not issubclass(Request, starlette.websockets.WebSocket)


def test_caught_and_compared_classes_are_starlettes_own():
    import starlette.requests
    import starlette.websockets

    from fastserve import exceptions, requests, testclient, websockets

    assert websockets.WebSocketDisconnect is starlette.websockets.WebSocketDisconnect
    assert websockets.WebSocketDisconnected is starlette.websockets.WebSocketDisconnected
    assert websockets.WebSocketState is starlette.websockets.WebSocketState
    assert testclient.WebSocketDisconnect is starlette.websockets.WebSocketDisconnect
    assert exceptions.ClientDisconnect is requests.ClientDisconnect is starlette.requests.ClientDisconnect


def test_fastapi_client_disconnect_caught_by_fastserve_name():
    from fastserve.requests import ClientDisconnect

    app = FastAPI()
    seen = []

    @app.post("/upload")
    async def upload(request: fastserve_classes().Request):
        try:
            await request.body()
        except ClientDisconnect:
            seen.append("disconnect")

    async def run() -> None:
        messages = iter([{"type": "http.request", "body": b"x", "more_body": True}, {"type": "http.disconnect"}])
        sent = []

        async def receive():
            return next(messages)

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/upload", "headers": [], "query_string": b"", "app": app}
        await app(scope, receive, send)

    import anyio

    anyio.run(run)
    assert seen == ["disconnect"]


WITHOUT_STARLETTE = r"""
import sys
import importlib.abc

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("starlette", "fastapi", "pydantic", "pydantic_core"):
            raise ModuleNotFoundError(name)
        return None

sys.meta_path.insert(0, Block())
from fastserve import exceptions, requests, websockets, datastructures
from fastserve.routing import Router, WebSocketRoute
from fastserve.testclient import TestClient

assert websockets.WebSocketDisconnect.__module__ == "fastserve.websockets"
assert exceptions.ClientDisconnect.__module__ == "fastserve.exceptions"
assert datastructures.UploadFile.__bases__ == (object,)
assert not any(name.startswith(("starlette", "fastapi")) for name in sys.modules)

closed = []

async def echo(websocket):
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except websockets.WebSocketDisconnect as exc:
        closed.append(exc.code)

with TestClient(Router([WebSocketRoute("/ws", echo)])).websocket_connect("/ws") as session:
    session.send_text("hi")
    assert session.receive_text() == "hi"
assert closed == [1000], closed
print("ok")
"""


def test_fastserve_works_without_starlette_installed():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", WITHOUT_STARLETTE], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
