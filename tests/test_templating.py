"""fastserve.templating.Jinja2Templates: environments, both TemplateResponse call styles, url_for."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import jinja2
import pytest
from fastapi import FastAPI
from fastapi import Request as FastAPIRequest
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.routing import Route as StarletteRoute
from starlette.testclient import TestClient

from fastserve.background import BackgroundTask
from fastserve.requests import Request
from fastserve.responses import HTMLResponse
from fastserve.routing import Mount, Route, Router
from fastserve.templating import Jinja2Templates


@pytest.fixture
def template_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "templates"
    directory.mkdir()
    (directory / "hello.html").write_text("<h1>Hello {{ name }}</h1>")
    (directory / "page.html").write_text("{{ request.url.path }}|{{ title }}|{{ request.method }}")
    (directory / "links.html").write_text("<a href=\"{{ url_for('user', id=7) }}\">user</a>")
    (directory / "escape.html").write_text("{{ value }}")
    (directory / "plain.txt").write_text("{{ value }}")
    return directory


def request_for(path: str = "/", **scope: Any) -> Request:
    return Request({"type": "http", "method": "GET", "path": path, "query_string": b"", "headers": [], **scope})


def render(templates: Jinja2Templates, template_name: str, /, **context: Any) -> str:
    return templates.TemplateResponse(request_for(), template_name, context).body.decode()


# --------------------------------------------------------------------------- construction


def test_directory_as_str_or_pathlike(template_dir: Path) -> None:
    assert render(Jinja2Templates(directory=str(template_dir)), "hello.html", name="str") == "<h1>Hello str</h1>"
    assert render(Jinja2Templates(directory=template_dir), "hello.html", name="path") == "<h1>Hello path</h1>"


def test_a_list_of_directories_is_searched_in_order(template_dir: Path, tmp_path: Path) -> None:
    overrides = tmp_path / "overrides"
    overrides.mkdir()
    (overrides / "hello.html").write_text("override {{ name }}")
    templates = Jinja2Templates(directory=[overrides, str(template_dir)])
    assert render(templates, "hello.html", name="x") == "override x"
    assert render(templates, "escape.html", value="from second") == "from second"


def test_an_environment_instead_of_a_directory() -> None:
    env = jinja2.Environment(loader=jinja2.DictLoader({"t.html": "env says {{ word }}"}))
    templates = Jinja2Templates(env=env)
    assert templates.env is env
    assert "url_for" in env.globals
    assert render(templates, "t.html", word="hi") == "env says hi"


def test_exactly_one_of_directory_and_env(template_dir: Path) -> None:
    with pytest.raises(AssertionError, match="either 'directory' or 'env' arguments must be passed"):
        Jinja2Templates()
    with pytest.raises(AssertionError, match="either 'directory' or 'env' arguments must be passed"):
        Jinja2Templates(directory=template_dir, env=jinja2.Environment())


def test_environment_options_are_deprecated_but_applied(template_dir: Path) -> None:
    with pytest.warns(DeprecationWarning, match="env="):
        templates = Jinja2Templates(directory=template_dir, trim_blocks=True, autoescape=False)
    assert templates.env.trim_blocks is True
    assert render(templates, "escape.html", value="<b>") == "<b>"


def test_no_warning_without_environment_options(template_dir: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Jinja2Templates(directory=template_dir)


def test_html_templates_are_autoescaped(template_dir: Path) -> None:
    templates = Jinja2Templates(directory=template_dir)
    assert render(templates, "escape.html", value="<script>") == "&lt;script&gt;"
    assert render(templates, "plain.txt", value="<script>") == "<script>"


def test_get_template(template_dir: Path) -> None:
    templates = Jinja2Templates(directory=template_dir)
    template = templates.get_template("hello.html")
    assert isinstance(template, jinja2.Template)
    assert template.render(name="direct") == "<h1>Hello direct</h1>"
    with pytest.raises(jinja2.TemplateNotFound):
        templates.get_template("missing.html")


def test_an_existing_url_for_global_is_kept() -> None:
    env = jinja2.Environment(loader=jinja2.DictLoader({"t": "{{ url_for('x') }}"}))
    env.globals["url_for"] = lambda name: f"custom:{name}"
    assert render(Jinja2Templates(env=env), "t") == "custom:x"


# --------------------------------------------------------------------------- TemplateResponse


def test_template_response_carries_template_and_context(template_dir: Path) -> None:
    templates = Jinja2Templates(directory=template_dir)
    request = request_for("/about")
    response = templates.TemplateResponse(request, "page.html", {"title": "About"})
    assert isinstance(response, HTMLResponse)
    assert response.template.name == "page.html"
    assert response.context == {"title": "About", "request": request}
    assert response.body == b"/about|About|GET"
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"


def test_template_response_options(template_dir: Path) -> None:
    templates = Jinja2Templates(directory=template_dir)
    task = BackgroundTask(print)
    response = templates.TemplateResponse(
        request_for(),
        "hello.html",
        {"name": "x"},
        status_code=201,
        headers={"x-frame-options": "deny"},
        media_type="application/xhtml+xml",
        background=task,
    )
    assert response.status_code == 201
    assert response.headers["x-frame-options"] == "deny"
    assert response.media_type == "application/xhtml+xml"
    assert response.background is task
    by_keyword = templates.TemplateResponse(request=request_for(), name="hello.html", context={"name": "k"}, status_code=202)
    assert (by_keyword.status_code, by_keyword.body) == (202, b"<h1>Hello k</h1>")


def test_template_response_without_context(template_dir: Path) -> None:
    response = Jinja2Templates(directory=template_dir).TemplateResponse(request_for("/p"), "page.html")
    assert response.body == b"/p||GET"


def test_context_processors_add_to_every_context(template_dir: Path) -> None:
    def site(request: Request) -> dict[str, Any]:
        return {"title": f"site for {request.url.path}"}

    templates = Jinja2Templates(directory=template_dir, context_processors=[site])
    assert templates.TemplateResponse(request_for("/x"), "page.html").body == b"/x|site for /x|GET"


def test_name_first_call_style_is_deprecated_but_works(template_dir: Path) -> None:
    templates = Jinja2Templates(directory=template_dir)
    request = request_for("/old")
    with pytest.warns(DeprecationWarning, match="pass the request first"):
        response = templates.TemplateResponse("page.html", {"request": request, "title": "Old"}, 203, {"x-a": "1"})
    assert response.body == b"/old|Old|GET"
    assert (response.status_code, response.headers["x-a"]) == (203, "1")


def test_name_first_call_style_needs_request_in_the_context(template_dir: Path) -> None:
    templates = Jinja2Templates(directory=template_dir)
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match='context must include a "request" key'):
        templates.TemplateResponse("page.html", {"title": "no request"})
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match='context must include a "request" key'):
        templates.TemplateResponse("page.html")


def test_keyword_call_without_request_is_deprecated(template_dir: Path) -> None:
    templates = Jinja2Templates(directory=template_dir)
    request = request_for("/kw")
    with pytest.warns(DeprecationWarning, match="requires the `request` argument"):  # the words filters match
        response = templates.TemplateResponse(name="page.html", context={"request": request, "title": "K"})
    assert response.body == b"/kw|K|GET"
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match='context must include a "request" key'):
        templates.TemplateResponse(name="page.html", context={})


@pytest.mark.parametrize("call", [
    lambda templates: templates.TemplateResponse(name="page.html"),
    lambda templates: templates.TemplateResponse(name="page.html", context={"title": "no request"}),
    lambda templates: templates.TemplateResponse("page.html", {"title": "no request"}),
])
def test_a_call_without_any_request_raises_what_either_starlette_raises(template_dir: Path, call) -> None:
    """Starlette 1.x has no deprecated forms: a missing ``request`` is Python's ``TypeError``;
    Starlette 0.x raised ``ValueError`` for them. Code written for either catches it."""
    templates = Jinja2Templates(directory=template_dir)
    with pytest.warns(DeprecationWarning), pytest.raises(TypeError) as raised:
        call(templates)
    assert isinstance(raised.value, ValueError)
    assert "missing 1 required positional argument: 'request'" in str(raised.value)


def test_template_response_argument_errors(template_dir: Path) -> None:
    templates = Jinja2Templates(directory=template_dir)
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'name'"):
        templates.TemplateResponse(request_for())
    with pytest.raises(TypeError, match="unexpected keyword"):
        templates.TemplateResponse(request_for(), "hello.html", colour="red")
    with pytest.raises(TypeError, match="positional"):
        templates.TemplateResponse(request_for(), "hello.html", {}, 200, None, None, None, "extra")


# --------------------------------------------------------------------------- in an app


def test_url_for_in_a_template_inside_a_fastserve_router(template_dir: Path) -> None:
    templates = Jinja2Templates(directory=template_dir)

    async def page(request: Request) -> Any:
        return templates.TemplateResponse(request, "links.html")

    async def user(request: Request) -> Any:
        return HTMLResponse("user")

    router = Router([Mount("/pages", routes=[Route("/", page)]), Route("/users/{id:int}", user, name="user")])
    response = TestClient(router, root_path="/site").get("/site/pages/")
    assert response.text == '<a href="http://testserver/site/users/7">user</a>'


def test_debug_extension_exposes_template_and_context_to_test_clients(template_dir: Path) -> None:
    templates = Jinja2Templates(directory=template_dir)

    async def page(request: Request) -> Any:
        return templates.TemplateResponse(request, "hello.html", {"name": "debug"})

    response = TestClient(Router([Route("/", page)])).get("/")
    assert response.template.name == "hello.html"  # type: ignore[attr-defined]
    assert response.context["name"] == "debug"  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_debug_message_only_when_the_scope_advertises_it(template_dir: Path) -> None:
    templates = Jinja2Templates(directory=template_dir)
    response = templates.TemplateResponse(request_for(), "hello.html", {"name": "n"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}
    await response(scope, receive, send)
    assert [message["type"] for message in sent] == ["http.response.start", "http.response.body"]

    sent.clear()
    await response({**scope, "extensions": {"http.response.debug": {}}}, receive, send)
    assert [message["type"] for message in sent] == ["http.response.debug", "http.response.start", "http.response.body"]
    assert sent[0]["info"] == {"template": response.template, "context": response.context}


def test_fastapi_app_with_fastserve_templates(template_dir: Path) -> None:
    # FastAPI path operations (@app.get) pass through only their own Response class, so pages
    # rendered by fastserve are served from request/response routes: app.add_route or a mount.
    templates = Jinja2Templates(directory=template_dir)
    app = FastAPI()

    @app.get("/users/{id}", name="user")
    async def user(id: int) -> dict[str, int]:
        return {"id": id}

    async def index(request: FastAPIRequest) -> Any:
        return templates.TemplateResponse(request, "links.html")

    async def old(request: FastAPIRequest) -> Any:
        return templates.TemplateResponse("hello.html", {"request": request, "name": "legacy"})

    async def mounted_page(request: Request) -> Any:
        return templates.TemplateResponse(request, "links.html")

    app.add_route("/", index)
    app.add_route("/old", old)
    app.mount("/pages", Router([Route("/", mounted_page)]))

    client = TestClient(app)
    response = client.get("/")
    assert response.status_code == 200
    assert response.text == '<a href="http://testserver/users/7">user</a>'
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.template.name == "links.html"  # type: ignore[attr-defined]
    assert client.get("/users/7").json() == {"id": 7}
    with pytest.warns(DeprecationWarning):
        assert client.get("/old").text == "<h1>Hello legacy</h1>"
    # url_for from inside the mount still resolves against the whole FastAPI app.
    assert client.get("/pages/").text == '<a href="http://testserver/users/7">user</a>'


def test_starlette_app_with_fastserve_templates(template_dir: Path) -> None:
    templates = Jinja2Templates(directory=template_dir)

    async def page(request: StarletteRequest) -> Any:
        return templates.TemplateResponse(request, "page.html", {"title": "S"})

    client = TestClient(Starlette(routes=[StarletteRoute("/s", page)]))
    assert client.get("/s").text == "/s|S|GET"
