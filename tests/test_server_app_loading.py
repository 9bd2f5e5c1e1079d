"""Loading apps like uvicorn does: --factory, --app-dir, --env-file, --lifespan, and the
headers the server adds: --header, --no-server-header, --no-date-header."""
from __future__ import annotations

import logging
import sys
import textwrap
from pathlib import Path

import pytest

from fastserve.config import Config
from fastserve.server.app_loader import AppLoadError, load_app
from inprocess import cli_options
from server_helpers import CliProcess, fetch, port_from_url

APP_SOURCE = textwrap.dedent('''
    import os

    started = []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    started.append(True)
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = ("greeting=%s started=%s" % (os.environ.get("GREETING"), bool(started))).encode()
        headers = [(b"content-length", b"%d" % len(body))]
        if scope["path"] == "/own-server":
            headers += [(b"Server", b"app-server"), (b"x-frame-options", b"SAMEORIGIN")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def no_lifespan(scope, receive, send):
        assert scope["type"] == "http", "this app speaks HTTP only"
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def create_app():
        return app
''')


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "apps"
    directory.mkdir()
    (directory / "loadme.py").write_text(APP_SOURCE)
    return directory


def serve_app(tmp_path: Path, app_dir: Path, target: str, *flags: str, env=None) -> CliProcess:
    return CliProcess([target, "--port", "0", *flags], log_path=tmp_path / "server.log", cwd=app_dir, env=env)


@pytest.fixture
def serve_loadme(app_dir: Path, monkeypatch: pytest.MonkeyPatch, serve_cli):
    """``serve_cli`` for targets in ``loadme``, imported afresh from ``app_dir`` (sys.path and
    sys.modules are restored after the test)."""
    monkeypatch.syspath_prepend(str(app_dir))
    monkeypatch.delitem(sys.modules, "loadme", raising=False)
    return serve_cli


def test_factory_is_called_to_make_the_app(serve_loadme) -> None:
    response = serve_loadme("loadme:create_app", "--factory").open().request("GET", "/")
    assert (response.status, response.body) == (200, b"greeting=None started=True")


def test_a_function_taking_no_arguments_is_taken_for_a_factory(serve_loadme, caplog) -> None:
    """``module:create_app`` without ``--factory``: uvicorn calls it and warns; it is not an
    ASGI app (one is called with a scope), so answering 500 to every request helps nobody."""
    with caplog.at_level(logging.WARNING, logger="fastserve"):
        response = serve_loadme("loadme:create_app").open().request("GET", "/")
    assert (response.status, response.body) == (200, b"greeting=None started=True")
    assert "'loadme:create_app' takes no arguments, so it is taken for an app factory" in caplog.text


@pytest.mark.parametrize("source", [
    "def app(scope, receive, send):\n    return inner(scope, receive, send)",  # ASGI 3, not async itself
    "def app(scope):\n    return inner_asgi2",  # ASGI 2
    "def app(*args):\n    return inner(*args)",
])
def test_only_a_function_that_takes_no_arguments_is_called_at_load(tmp_path: Path, source: str, monkeypatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))  # app_dir is put on it
    module = tmp_path / "nofactory.py"
    module.write_text(source + "\n")
    try:
        loaded = load_app(Config(target="nofactory:app", app_dir=str(tmp_path)))
        function = sys.modules["nofactory"].app
    finally:
        sys.modules.pop("nofactory", None)
    assert getattr(loaded, "app", loaded) is function  # itself, or ASGI 2 wrapped; not called


def test_factory_of_something_not_callable_is_refused(tmp_path: Path, app_dir: Path) -> None:
    with serve_app(tmp_path, app_dir, "loadme:started", "--factory") as srv:
        assert srv.wait_exit(10) == 3
    assert "--factory: 'loadme:started' is not callable." in srv.output()


def test_a_factory_that_cannot_be_called_without_arguments_is_one_line(tmp_path: Path, app_dir: Path) -> None:
    """As uvicorn: its TypeError, in one line, and the exit code of a failed start."""
    (app_dir / "needsargs.py").write_text("def create_app(settings):\n    return None\n")
    with serve_app(tmp_path, app_dir, "needsargs:create_app", "--factory") as srv:
        assert srv.wait_exit(10) == 3
    lines = srv.output().strip().splitlines()
    assert lines == ["fastserve: Error loading ASGI app factory: create_app() missing 1 required positional "
                     "argument: 'settings'"], lines


def test_app_dir_is_where_the_module_is_found(tmp_path: Path, app_dir: Path, monkeypatch, serve_cli) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setattr(sys, "path", list(sys.path))  # --app-dir is put on it for the app's imports
    monkeypatch.delitem(sys.modules, "loadme", raising=False)
    monkeypatch.chdir(elsewhere)
    assert serve_cli("loadme:app", "--app-dir", str(app_dir)).open().request("GET", "/").status == 200
    with CliProcess(["loadme:app", "--port", "0"], log_path=tmp_path / "log2", cwd=elsewhere) as srv:
        assert srv.wait_exit(10) == 3
    assert 'Error loading ASGI app. Could not import module "loadme".' in srv.output()


def test_env_file_is_loaded_before_the_app_without_overriding(tmp_path: Path, app_dir: Path) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text("# settings\nGREETING=from-file\nOTHER='quoted value'\n")
    with serve_app(tmp_path, app_dir, "loadme:app", "--env-file", str(env_file)) as srv:
        assert fetch(port_from_url(srv.wait_listening()), "/").body == b"greeting=from-file started=True"
    with CliProcess(["loadme:app", "--port", "0", "--env-file", str(env_file)], log_path=tmp_path / "log2",
                    cwd=app_dir, env={"GREETING": "from-environment"}) as srv:
        assert fetch(port_from_url(srv.wait_listening()), "/").body == b"greeting=from-environment started=True"


def test_a_module_named_without_its_app_is_told_how_to_name_it(tmp_path: Path, app_dir: Path, caplog) -> None:
    """``fastserve loadme`` typed for ``loadme:app``: a target without ':' is a directory, and
    there was none, which was all the line said; now it says how to name the module's app.
    A package directory named so is served (it is a directory), with a warning that its
    sources are served too."""
    with pytest.raises(AppLoadError) as refused:
        load_app(Config(target="loadme", app_dir=str(app_dir)))
    assert str(refused.value) == (
        f"Directory 'loadme' does not exist. To run an app of the module 'loadme' ({app_dir / 'loadme.py'}), "
        "name it 'module:attribute': loadme:app")
    with pytest.raises(AppLoadError) as refused:
        load_app(Config(target="nothing_here", app_dir=str(app_dir)))
    assert str(refused.value) == "Directory 'nothing_here' does not exist."
    (app_dir / "pkg").mkdir()
    (app_dir / "pkg" / "__init__.py").write_text("app = None\n")
    with caplog.at_level(logging.WARNING, logger="fastserve"):
        load_app(Config(target=str(app_dir / "pkg")))
    assert "is a Python package: its files, sources included, are served as they are" in caplog.text
    assert "(pkg:app)" in caplog.text


def test_missing_env_file_does_not_exist(tmp_path: Path, app_dir: Path) -> None:
    with serve_app(tmp_path, app_dir, "loadme:app", "--env-file", "missing.env") as srv:
        assert srv.wait_exit(10) == 3
    assert "--env-file 'missing.env' does not exist." in srv.output()


def test_lifespan_off_skips_startup(serve_loadme) -> None:
    assert serve_loadme("loadme:app", "--lifespan", "off").open().request("GET", "/").body == b"greeting=None started=False"


def test_lifespan_auto_serves_an_app_without_lifespan(serve_loadme) -> None:
    assert serve_loadme("loadme:no_lifespan").open().request("GET", "/").status == 204


@pytest.mark.parametrize("workers", ["1", "2"])
def test_lifespan_on_refuses_an_app_without_lifespan(tmp_path: Path, app_dir: Path, workers) -> None:
    with serve_app(tmp_path, app_dir, "loadme:no_lifespan", "--lifespan", "on", "--workers", workers) as srv:
        assert srv.wait_exit(10) == 3
    assert "--lifespan on: the app does not run the lifespan protocol" in srv.output()


# -- the headers the server adds (in-process, with the settings the CLI parses) -----------------------


@pytest.fixture
def app_object():
    """``loadme:app``, made from the same source without importing a module."""
    namespace: dict = {}
    exec(APP_SOURCE, namespace)
    return namespace["app"]


def serve_app_object(serve, app, *flags: str):
    _, options = cli_options("loadme:app", *flags)
    return serve(app, **options).open()


def test_header_flag_adds_fields_and_the_app_wins(serve, app_object) -> None:
    flags = ["--header", "X-Frame-Options: DENY", "--header", "Strict-Transport-Security:max-age=60"]
    client = serve_app_object(serve, app_object, *flags)
    response = client.request("GET", "/")
    assert response.body == b"greeting=None started=True"
    assert response.header("x-frame-options") == "DENY"
    assert response.header("strict-transport-security") == "max-age=60"
    assert response.header("server") == "fastserve"
    assert response.header("date") is not None
    own = client.request("GET", "/own-server")  # the app's own Server and X-Frame-Options, each once
    assert own.header("server") == "app-server"
    assert own.header("x-frame-options") == "SAMEORIGIN"


def test_header_flag_can_name_the_server(serve, app_object) -> None:
    client = serve_app_object(serve, app_object, "--header", "server: edge-7")
    assert client.request("GET", "/").header("server") == "edge-7"


def test_no_server_and_no_date_header(serve, app_object) -> None:
    response = serve_app_object(serve, app_object, "--no-server-header", "--no-date-header").request("GET", "/")
    assert response.status == 200
    assert response.header("server") is None
    assert response.header("date") is None


def test_static_answers_carry_the_same_server_fields(docroot, serve_cli) -> None:
    flags = ["--header", "X-Frame-Options: DENY", "--no-date-header", "--header", "server: edge-7"]
    client = serve_cli(str(docroot.root), *flags).open()
    answers = [
        client.request("GET", "/small.txt"), client.request("GET", "/small.txt"),  # the second one from the memo
        client.request("GET", "/small.txt", [("If-None-Match", "*")]),
        client.request("GET", "/large.bin"), client.request("GET", "/missing"), client.request("GET", "/dir"),
        client.request("POST", "/small.txt"),
        client.request("GET", "/medium.bin", [("Range", "bytes=0-9")]),
    ]
    assert [a.status for a in answers] == [200, 200, 304, 200, 404, 301, 405, 206]
    assert answers[3].body == docroot.large
    for answer in answers:
        assert answer.header("x-frame-options") == "DENY"
        assert answer.header("server") == "edge-7"
        assert answer.header("date") is None
    client = serve_cli(str(docroot.root), "--no-server-header").open()
    for answer in [client.request("GET", "/small.txt"), client.request("GET", "/small.txt", [("If-None-Match", "*")])]:
        assert answer.header("server") is None
        assert answer.header("date") is not None
