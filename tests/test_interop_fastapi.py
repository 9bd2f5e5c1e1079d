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
