"""ASGI 2 (double-callable) apps are wrapped, and what cannot be called is refused at startup."""
import functools
import sys
import textwrap

import httpx2
import pytest

from fastserve.asgi2 import ASGI2Adapter, as_asgi3, is_asgi3
from fastserve.cli import main
from fastserve.config import Config
from fastserve.server.app_loader import AppLoadError, load_app
from fastserve.testclient import TestClient
from server_helpers import ServerProcess

ASGI2_APP = '''
class App:
    """ASGI 2: instantiated with the scope, then called with receive and send."""

    def __init__(self, scope):
        self.scope = scope

    async def __call__(self, receive, send):
        if self.scope["type"] != "http":
            return
        body = f"asgi2 {self.scope['path']}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

def function_app(scope):
    return App(scope)

settings = {"debug": True}
'''


@pytest.fixture
def app_module(tmp_path, monkeypatch):
    (tmp_path / "asgi2_app.py").write_text(textwrap.dedent(ASGI2_APP))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


async def asgi3_function(scope, receive, send):
    pass


class ASGI3Object:
    async def __call__(self, scope, receive, send):
        pass


class ASGI3Awaitable:
    def __init__(self, scope, receive, send):
        pass

    def __await__(self):
        yield


def sync_forwarder(scope, receive, send):  # returns the awaitable of an ASGI 3 app
    return asgi3_function(scope, receive, send)


def asgi2_function(scope):
    return ASGI3Object()


class ASGI2Class:
    def __init__(self, scope):
        pass


@pytest.mark.parametrize(
    "app", [asgi3_function, ASGI3Object(), ASGI3Awaitable, sync_forwarder, functools.partial(asgi3_function)]
)
def test_asgi3_apps_are_used_as_they_are(app):
    assert is_asgi3(app) and as_asgi3(app) is app


@pytest.mark.parametrize("app", [asgi2_function, ASGI2Class, lambda scope: ASGI3Object()])
def test_asgi2_apps_are_wrapped(app):
    assert not is_asgi3(app)
    wrapped = as_asgi3(app)
    assert isinstance(wrapped, ASGI2Adapter) and wrapped.app is app


@pytest.mark.parametrize("app", [None, "module:app", {"debug": True}, sys])
def test_what_cannot_be_called_is_refused(app):
    with pytest.raises(TypeError, match="is not an ASGI app"):
        as_asgi3(app)


def test_loader_wraps_asgi2_and_refuses_non_callables(app_module):
    import asgi2_app

    for target in ("asgi2_app:App", "asgi2_app:function_app"):
        loaded = load_app(Config(target=target))
        assert isinstance(loaded, ASGI2Adapter)
        assert TestClient(loaded).get("/x").text == "asgi2 /x"
    assert isinstance(load_app(Config(target=asgi2_app.App)), ASGI2Adapter)
    with pytest.raises(AppLoadError, match="'asgi2_app:settings' is not an ASGI app: a dict cannot be called"):
        load_app(Config(target="asgi2_app:settings"))
    with pytest.raises(AppLoadError, match="not an ASGI app"):
        load_app(Config(target=42))


def test_cli_refuses_a_non_callable_in_one_line_with_code_3(app_module, capsys):
    assert main(["asgi2_app:settings", "--port", "0"]) == 3
    err = capsys.readouterr().err.strip()
    assert err == "fastserve: 'asgi2_app:settings' is not an ASGI app: a dict cannot be called."


def test_test_client_runs_asgi2_apps_and_refuses_non_callables(app_module):
    import asgi2_app

    assert TestClient(asgi2_app.App).get("/y").text == "asgi2 /y"
    with pytest.raises(TypeError, match="not an ASGI app"):
        TestClient(asgi2_app.settings)


def test_server_runs_an_asgi2_app(app_module, tmp_path):
    server = ServerProcess("asgi2_app:App", log_path=tmp_path / "server.log", cwd=app_module)
    try:
        server.wait_ready()
        with httpx2.Client(base_url=server.url, timeout=5) as client:
            response = client.get("/hello")
        assert response.status_code == 200 and response.text == "asgi2 /hello"
    finally:
        server.stop()


def test_server_refuses_a_non_callable_at_startup(app_module, tmp_path):
    server = ServerProcess("asgi2_app:settings", log_path=tmp_path / "server.log", cwd=app_module)
    code = server.wait_exit(15.0)
    if code is None:
        server.kill_all()
    output = server.output()
    assert code == 3, output
    assert "is not an ASGI app" in output and "Traceback" not in output
