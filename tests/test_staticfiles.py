"""fastserve.staticfiles.StaticFiles as an ASGI app: Starlette's API and behaviour."""
import logging
import os
import socket
import threading
import time

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from fastserve.staticfiles import StaticFiles
from inprocess import request


@pytest.fixture
def root(tmp_path):
    (tmp_path / "example.txt").write_text("<file content>")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "index.html").write_text("<h1>Index</h1>")
    (tmp_path / "big.bin").write_bytes(bytes(range(256)) * 2048)  # 512 KiB: not held in memory
    return tmp_path


def client_for(app, **kwargs):
    """A client for ``app`` mounted at ``/`` in a Starlette app, whose handlers answer the
    ``HTTPException`` it raises (standalone it raises them, as Starlette's does)."""
    return TestClient(Starlette(routes=[Mount("/", app=app)]), **kwargs)


def test_constructor_and_attributes(root):
    app = StaticFiles(directory=root, html=True, follow_symlink=True)
    assert app.directory == root
    assert app.packages is None
    assert app.all_directories == [root]
    assert app.html is True
    assert app.follow_symlink is True
    assert app.config_checked is False


def test_serves_a_file_with_validators(root):
    response = client_for(StaticFiles(directory=root)).get("/example.txt")
    assert response.status_code == 200
    assert response.text == "<file content>"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["content-length"] == "14"
    assert response.headers["etag"].startswith('"')
    assert "last-modified" in response.headers
    assert response.headers["accept-ranges"] == "bytes"


def test_head_has_headers_only(root):
    response = client_for(StaticFiles(directory=root)).head("/example.txt")
    assert response.status_code == 200
    assert response.headers["content-length"] == "14"
    assert response.content == b""


def test_large_file_streams_from_disk(root):
    response = client_for(StaticFiles(directory=root)).get("/big.bin")
    assert response.status_code == 200
    assert response.content == (root / "big.bin").read_bytes()


def test_not_modified_and_precondition_failed(root):
    client = client_for(StaticFiles(directory=root))
    first = client.get("/example.txt")
    etag, last_modified = first.headers["etag"], first.headers["last-modified"]
    assert client.get("/example.txt", headers={"if-none-match": etag}).status_code == 304
    assert client.get("/example.txt", headers={"if-none-match": f'W/{etag}, "other"'}).status_code == 304
    assert client.get("/example.txt", headers={"if-modified-since": last_modified}).status_code == 304
    assert client.get("/example.txt", headers={"if-none-match": '"other"'}).status_code == 200
    assert client.get("/example.txt", headers={"if-match": '"other"'}).status_code == 412
    assert client.get("/example.txt", headers={"if-match": etag}).status_code == 200
    not_modified = client.get("/example.txt", headers={"if-none-match": etag})
    assert not_modified.content == b"" and not_modified.headers["etag"] == etag


def test_ranges(root):
    client = client_for(StaticFiles(directory=root))
    response = client.get("/example.txt", headers={"range": "bytes=1-4"})
    assert response.status_code == 206
    assert response.content == b"file"
    assert response.headers["content-range"] == "bytes 1-4/14"
    unsatisfiable = client.get("/example.txt", headers={"range": "bytes=100-"})
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers["content-range"] == "bytes */14"
    big = client.get("/big.bin", headers={"range": "bytes=-10"})
    assert big.status_code == 206 and big.content == (root / "big.bin").read_bytes()[-10:]


@pytest.mark.parametrize("big", [False, True])
def test_static_answers_honour_max_ranges(root, big):
    """``answers="static"`` takes at most ``max_ranges`` ranges, as the server's --max-ranges:
    a Range header listing more gets the whole file."""
    name, size = ("/big.bin", 512 * 1024) if big else ("/example.txt", 14)
    client = client_for(StaticFiles(directory=root, answers="static", max_ranges=2))
    two = client.get(name, headers={"range": "bytes=0-0,2-2"})
    assert two.status_code == 206 and two.headers["content-type"].startswith("multipart/byteranges")
    three = client.get(name, headers={"range": "bytes=0-0,2-2,4-4"})
    assert three.status_code == 200 and len(three.content) == size and "content-range" not in three.headers
    many = ",".join(f"{i}-{i}" for i in range(0, 40, 2))  # 20: past the default 16 as well
    assert client_for(StaticFiles(directory=root, answers="static")).get(
        name, headers={"range": f"bytes={many}"}).status_code == 200
    assert client_for(StaticFiles(directory=root, answers="static", max_ranges=20)).get(
        name, headers={"range": f"bytes={many}"}).status_code == 206


def test_the_server_gives_its_max_ranges_to_the_static_files_it_runs(root):
    """A directory the server serves, and a fastserve StaticFiles it runs as the app, answer
    ranges by --max-ranges, should a request reach the app instead of the fast path."""
    import asyncio

    from fastserve.config import Config
    from fastserve.server.app_loader import load_app
    from fastserve.server.worker import build_state

    assert load_app(Config(target=str(root), max_ranges=3)).max_ranges == 3
    app = StaticFiles(directory=root, answers="static")

    async def start() -> None:
        build_state(Config(target=app, max_ranges=40), app, asyncio.get_running_loop())

    asyncio.run(start())
    many = ",".join(f"{i}-{i}" for i in range(0, 40, 2))
    assert client_for(app).get("/example.txt", headers={"range": f"bytes={many}"}).status_code == 206


def test_answers_are_starlettes_unless_the_static_paths_are_asked_for(root):
    starlette_like = client_for(StaticFiles(directory=root))
    static_like = client_for(StaticFiles(directory=root, answers="static"))
    refused = starlette_like.get("/example.txt", headers={"range": "bytes=4-1"})
    assert (refused.status_code, refused.text) == (400, "Range header: start must be less than end")
    missed = starlette_like.get("/example.txt", headers={"range": "bytes=100-"})
    assert missed.status_code == 416 and "etag" not in missed.headers
    # The server's static path: a Range that cannot be used is ignored (RFC 9110 section 14.2),
    # and a 416 names the representation it missed.
    ignored = static_like.get("/example.txt", headers={"range": "bytes=4-1"})
    assert (ignored.status_code, ignored.text) == (200, "<file content>")
    missed = static_like.get("/example.txt", headers={"range": "bytes=100-"})
    assert missed.status_code == 416 and missed.headers["etag"].startswith('"')
    # A precondition is answered before the Range is looked at, both ways.
    etag = starlette_like.get("/example.txt").headers["etag"]
    assert starlette_like.get("/example.txt", headers={"range": "bytes=4-1", "if-none-match": etag}).status_code == 304
    # A 304 repeats the ETag; the static path's repeats Last-Modified too, as nginx's does.
    not_modified = starlette_like.get("/example.txt", headers={"if-none-match": etag})
    assert not_modified.headers["etag"] == etag and "last-modified" not in not_modified.headers
    not_modified = static_like.get("/example.txt", headers={"if-none-match": etag})
    assert not_modified.headers["etag"] == etag and "last-modified" in not_modified.headers
    with pytest.raises(ValueError, match="answers"):
        StaticFiles(directory=root, answers="nginx")


def test_missing_file_is_404(root):
    response = client_for(StaticFiles(directory=root)).get("/404.txt")
    assert response.status_code == 404
    assert response.text == "Not Found"


def test_other_methods_are_405_with_allow(root):
    response = client_for(StaticFiles(directory=root)).post("/example.txt")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


def test_missing_directory_raises_at_init(tmp_path):
    with pytest.raises(RuntimeError, match="does not exist"):
        StaticFiles(directory=tmp_path / "nope")


def test_missing_directory_raises_at_first_request_when_not_checked(tmp_path):
    app = StaticFiles(directory=tmp_path / "nope", check_dir=False)
    with pytest.raises(RuntimeError, match="does not exist"):
        client_for(app).get("/")


def test_directory_that_is_a_file_raises_at_first_request(root):
    app = StaticFiles(directory=root / "example.txt", check_dir=False)
    with pytest.raises(RuntimeError, match="is not a directory"):
        client_for(app).get("/")


def test_traversal_never_leaves_the_directory(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (tmp_path / "secret.txt").write_text("secret")
    client = client_for(StaticFiles(directory=served))
    for path in ["/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt"]:
        response = client.get(path)
        assert response.status_code == 404, path
        assert "secret" not in response.text


def test_symlink_outside_directory(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", served / "link.txt")
    assert client_for(StaticFiles(directory=served)).get("/link.txt").status_code == 404
    followed = client_for(StaticFiles(directory=served, follow_symlink=True)).get("/link.txt")
    assert followed.status_code == 200 and followed.text == "secret"


def test_name_too_long_is_404(root):
    assert client_for(StaticFiles(directory=root)).get("/" + "x" * 5000).status_code == 404


def test_permission_error_is_401(root, monkeypatch):
    def refusing_open(path, flags, *args):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(os, "open", refusing_open)
    assert client_for(StaticFiles(directory=root)).get("/example.txt").status_code == 401


def test_html_mode(root):
    client = client_for(StaticFiles(directory=root, html=True), follow_redirects=False)
    index = client.get("/dir/")
    assert index.status_code == 200 and index.text == "<h1>Index</h1>"
    redirect = client.get("/dir")
    assert redirect.status_code == 307
    assert redirect.headers["location"] == "http://testserver/dir/"
    assert client.get("/nope").status_code == 404
    (root / "404.html").write_text("<h1>Custom</h1>")
    fresh = client_for(StaticFiles(directory=root, html=True))
    custom = fresh.get("/nope")
    assert custom.status_code == 404 and custom.text == "<h1>Custom</h1>"


def test_directory_without_html_mode_is_404(root):
    assert client_for(StaticFiles(directory=root)).get("/dir/").status_code == 404


def test_packages(tmp_path, monkeypatch):
    package = tmp_path / "mypkg"
    (package / "statics").mkdir(parents=True)
    (package / "assets").mkdir()
    (package / "__init__.py").write_text("")
    (package / "statics" / "a.txt").write_text("from statics")
    (package / "assets" / "b.txt").write_text("from assets")
    monkeypatch.syspath_prepend(str(tmp_path))
    app = StaticFiles(packages=["mypkg", ("mypkg", "assets")])
    assert len(app.all_directories) == 2
    client = client_for(app)
    assert client.get("/a.txt").text == "from statics"
    assert client.get("/b.txt").text == "from assets"


def test_missing_package_directory_asserts(tmp_path, monkeypatch):
    (tmp_path / "otherpkg").mkdir()
    (tmp_path / "otherpkg" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(AssertionError, match="could not be found"):
        StaticFiles(packages=["otherpkg"])


def test_mounted_in_starlette_app_honours_root_path(root):
    app = Starlette(routes=[Mount("/static", app=StaticFiles(directory=root), name="static")])
    client = TestClient(app)
    assert client.get("/static/example.txt").text == "<file content>"
    assert client.get("/static/nope.txt").status_code == 404  # raised, answered by Starlette's handlers
    behind_proxy = TestClient(app, root_path="/prefix")
    assert behind_proxy.get("/prefix/static/example.txt").text == "<file content>"
    assert behind_proxy.get("/static/example.txt").status_code == 404  # as Starlette's own StaticFiles


def test_subclass_overriding_lookup_path_is_used(root):
    class OnlyExample(StaticFiles):
        def lookup_path(self, path):
            full_path, stat_result = super().lookup_path("example.txt")
            return full_path, stat_result

    app = OnlyExample(directory=root)
    assert not app.uses_own_lookup()
    assert client_for(app).get("/anything").text == "<file content>"


def test_get_path_and_lookup_path(root):
    app = StaticFiles(directory=root)
    assert app.get_path({"path": "/dir/../example.txt", "root_path": ""}) == "example.txt"
    full_path, stat_result = app.lookup_path("example.txt")
    assert full_path == os.path.realpath(root / "example.txt") and stat_result.st_size == 14
    assert app.lookup_path("../etc/passwd") == ("", None)
    assert app.lookup_path("missing") == ("", None)


def test_is_not_modified(root):
    from fastserve.datastructures import Headers

    app = StaticFiles(directory=root)
    response_headers = Headers(headers={"etag": '"abc"', "last-modified": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert app.is_not_modified(response_headers, Headers(headers={"if-none-match": '"abc"'}))
    assert app.is_not_modified(response_headers, Headers(headers={"if-none-match": "*"}))
    assert not app.is_not_modified(response_headers, Headers(headers={"if-none-match": '"xyz"'}))
    assert app.is_not_modified(
        response_headers, Headers(headers={"if-modified-since": "Wed, 21 Oct 2015 07:28:00 GMT"})
    )
    assert not app.is_not_modified(
        response_headers, Headers(headers={"if-modified-since": "Tue, 20 Oct 2015 07:28:00 GMT"})
    )


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_runs_under_uvicorn(root):
    import httpx2
    import uvicorn

    port = _free_port()
    app = Starlette(routes=[Mount("/", app=StaticFiles(directory=root, html=True))])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}") as client:
            assert client.get("/example.txt").text == "<file content>"
            assert client.get("/dir/").text == "<h1>Index</h1>"
            assert client.get("/missing").status_code == 404
            assert client.get("/big.bin").content == (root / "big.bin").read_bytes()
    finally:
        server.should_exit = True
        thread.join(10)


def test_not_modified_for_a_precompressed_file_keeps_vary(root):
    import gzip

    (root / "app.js").write_text("let a = 1;" * 100)
    (root / "app.js.gz").write_bytes(gzip.compress((root / "app.js").read_bytes()))
    client = client_for(StaticFiles(directory=root, precompressed=True))
    first = client.get("/app.js", headers={"accept-encoding": "gzip"})
    assert first.headers["content-encoding"] == "gzip" and first.headers["vary"] == "Accept-Encoding"
    again = client.get("/app.js", headers={"accept-encoding": "gzip", "if-none-match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["vary"] == "Accept-Encoding"
    assert again.headers["etag"] == first.headers["etag"]
    assert "content-length" not in again.headers


# -- freshness: every filesystem change is seen on the next request ----------------------------


def test_a_file_written_after_a_miss_is_served_next(root):
    client = client_for(StaticFiles(directory=root))
    assert client.get("/report.txt").status_code == 404
    (root / "report.txt").write_text("generated")
    assert client.get("/report.txt").text == "generated"


def test_a_deleted_file_is_gone_next(root):
    client = client_for(StaticFiles(directory=root))
    etag = client.get("/example.txt").headers["etag"]
    (root / "example.txt").unlink()
    assert client.get("/example.txt").status_code == 404
    assert client.get("/example.txt", headers={"if-none-match": etag}).status_code == 404


def test_a_rewritten_file_is_served_new(root):
    client = client_for(StaticFiles(directory=root))
    first = client.get("/example.txt")
    (root / "example.txt").write_text("<new content!>")  # same size
    os.utime(root / "example.txt", ns=(0, 10**18))
    second = client.get("/example.txt")
    assert second.text == "<new content!>" and second.headers["etag"] != first.headers["etag"]
    assert client.get("/example.txt", headers={"if-none-match": first.headers["etag"]}).status_code == 200


def test_a_retargeted_symlink_is_followed_next(root):
    (root / "a.txt").write_text("A")
    (root / "b.txt").write_text("B")
    os.symlink("a.txt", root / "current.txt")
    client = client_for(StaticFiles(directory=root))
    assert client.get("/current.txt").text == "A"
    os.replace(root / "b.txt", root / "b2.txt")
    os.unlink(root / "current.txt")
    os.symlink("b2.txt", root / "current.txt")
    assert client.get("/current.txt").text == "B"


def test_a_file_in_an_earlier_directory_shadows_the_later_one_next(tmp_path):
    from fastserve._speedups.filecache import FileCache

    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (second / "app.css").write_text("second")
    cache = FileCache([first, second], valid_for=0)
    assert cache.lookup("/app.css").body == b"second"
    (first / "app.css").write_text("first")
    assert cache.lookup("/app.css").body == b"first"


def test_html_mode_sees_new_index_and_404_pages(root):
    client = client_for(StaticFiles(directory=root, html=True))
    (root / "empty").mkdir()
    assert client.get("/empty/").status_code == 404
    (root / "empty" / "index.html").write_text("now here")
    assert client.get("/empty/").text == "now here"
    (root / "404.html").write_text("custom")
    assert client.get("/nothing").text == "custom"


def test_cache_valid_keeps_answers_for_that_long(root):
    client = client_for(StaticFiles(directory=root, cache_valid=3600))
    assert client.get("/example.txt").status_code == 200
    (root / "example.txt").unlink()
    assert client.get("/example.txt").status_code == 200  # the opted-in window: not looked up again


def test_no_thread_hop_per_request(root, monkeypatch):
    import anyio.to_thread

    client = client_for(StaticFiles(directory=root))
    assert client.get("/example.txt").status_code == 200  # the one-off configuration check ran

    async def no_threads(*args, **kwargs):
        raise AssertionError("a request went through a worker thread")

    monkeypatch.setattr(anyio.to_thread, "run_sync", no_threads)
    assert client.get("/example.txt").status_code == 200
    assert client.get("/dir/").status_code == 404
    assert client.get("/missing").status_code == 404


# -- replacements of the lookup methods are used on the next request -----------------------------


def test_class_patched_after_construction_is_used(root, monkeypatch):
    app = StaticFiles(directory=root)
    client = client_for(app)
    assert client.get("/anything").status_code == 404
    original = StaticFiles.lookup_path

    def only_example(self, path):
        return original(self, "example.txt")

    monkeypatch.setattr(StaticFiles, "lookup_path", only_example)
    assert client.get("/anything").text == "<file content>"
    monkeypatch.undo()
    assert client.get("/anything").status_code == 404  # and back to the cache


def test_instance_replacements_are_used(root):
    from fastserve.responses import PlainTextResponse

    app = StaticFiles(directory=root)
    client = client_for(app)
    assert client.get("/example.txt").status_code == 200
    app.file_response = lambda full_path, stat_result, scope, status_code=200: PlainTextResponse(
        f"size {stat_result.st_size}"
    )
    assert client.get("/example.txt").text == "size 14"
    del app.file_response
    app.get_path = lambda scope: "example.txt"
    assert client.get("/whatever").text == "<file content>"
    del app.get_path

    async def teapot(path, scope):
        return PlainTextResponse(f"tea for {path}", status_code=418)

    app.get_response = teapot
    teapot_response = client.get("/dir/x")
    assert teapot_response.status_code == 418 and teapot_response.text == "tea for dir/x"
    del app.get_response
    app.is_not_modified = lambda response_headers, request_headers: True
    assert client.get("/example.txt").status_code == 304


def test_subclass_get_path_with_the_cache(root):
    class Flat(StaticFiles):
        def get_path(self, scope):
            return os.path.basename(super().get_path(scope))

    app = Flat(directory=root)
    assert app.uses_own_lookup()
    assert client_for(app).get("/deep/deeper/example.txt").text == "<file content>"


def test_settings_changed_after_construction_are_used(root):
    app = StaticFiles(directory=root)
    client = client_for(app, follow_redirects=False)
    assert client.get("/dir/").status_code == 404
    app.html = True
    assert client.get("/dir/").text == "<h1>Index</h1>"


# -- standalone, it raises like Starlette's --------------------------------------------------


def test_standalone_raises_http_exception(root):
    from starlette.exceptions import HTTPException

    client = TestClient(StaticFiles(directory=root))
    with pytest.raises(HTTPException) as missing:
        client.get("/missing.txt")
    assert missing.value.status_code == 404
    with pytest.raises(HTTPException) as method:
        client.post("/example.txt")
    assert method.value.status_code == 405 and method.value.headers == {"Allow": "GET, HEAD"}
    assert client.get("/example.txt").text == "<file content>"


def test_mounted_in_a_fastserve_router_its_errors_are_answered(root):
    from fastserve.routing import Mount as FastserveMount
    from fastserve.routing import Router
    from fastserve.testclient import TestClient as FastserveTestClient

    client = FastserveTestClient(Router([FastserveMount("/static", StaticFiles(directory=root))]))
    assert client.get("/static/example.txt").text == "<file content>"
    missing = client.get("/static/missing.txt")
    assert (missing.status_code, missing.text) == (404, "Not Found")
    method = client.post("/static/example.txt")
    assert (method.status_code, method.headers["allow"]) == (405, "GET, HEAD")


def test_standalone_raises_under_fastserve_test_client(root):
    from fastserve.exceptions import HTTPException
    from fastserve.testclient import TestClient as FastserveTestClient

    with pytest.raises(HTTPException) as missing:
        FastserveTestClient(StaticFiles(directory=root)).get("/missing.txt")
    assert missing.value.status_code == 404


# -- get_response with only the scope keys it needs ----------------------------------------


def test_get_response_with_only_the_method(root):
    import anyio
    from starlette.exceptions import HTTPException

    app = StaticFiles(directory=root)
    response = anyio.run(app.get_response, "example.txt", {"method": "GET"})
    assert response.status_code == 200 and response.headers["content-length"] == "14"
    for path in (app.get_path({"path": "/../example.txt"}), "missing.txt", "/etc/passwd", "dir"):
        with pytest.raises(HTTPException) as raised:
            anyio.run(app.get_response, path, {"method": "GET"})
        assert raised.value.status_code == 404, path
    with pytest.raises(HTTPException) as method:
        anyio.run(app.get_response, "example.txt", {"method": "PUT"})
    assert method.value.status_code == 405
    html = StaticFiles(directory=root, html=True)
    assert anyio.run(html.get_response, "dir/", {"method": "GET"}).status_code == 200
    scope = {"type": "http", "method": "GET", "path": "/dir", "headers": [(b"host", b"example.com")]}
    redirect = anyio.run(html.get_response, "dir", scope)  # the redirect reads the path and host
    assert redirect.status_code == 307 and redirect.headers["location"] == "http://example.com/dir/"


# -- precompressed siblings, on request ------------------------------------------------------


def test_precompressed_siblings_when_asked_for(root):
    import gzip

    import brotli

    text = b"body { color: red; }\n" * 100
    (root / "style.css").write_bytes(text)
    (root / "style.css.gz").write_bytes(gzip.compress(text))
    (root / "style.css.br").write_bytes(brotli.compress(text))
    default = client_for(StaticFiles(directory=root)).get("/style.css", headers={"accept-encoding": "gzip, br"})
    assert "content-encoding" not in default.headers and "vary" not in default.headers  # off, as in Starlette
    client = client_for(StaticFiles(directory=root, precompressed=True))
    brotli = client.get("/style.css", headers={"accept-encoding": "gzip, br"})
    assert brotli.headers["content-encoding"] == "br" and brotli.headers["vary"] == "Accept-Encoding"
    assert brotli.headers["content-type"] == "text/css; charset=utf-8"
    gzipped = client.get("/style.css", headers={"accept-encoding": "gzip"})
    assert gzipped.headers["content-encoding"] == "gzip" and gzipped.content == text
    identity = client.get("/style.css", headers={"accept-encoding": "identity"})
    assert "content-encoding" not in identity.headers and identity.headers["vary"] == "Accept-Encoding"
    assert len({brotli.headers["etag"], gzipped.headers["etag"], identity.headers["etag"]}) == 3
    (root / "style.css.br").unlink()
    assert client.get("/style.css", headers={"accept-encoding": "br, gzip"}).headers["content-encoding"] == "gzip"


def test_the_server_follows_the_apps_keywords_and_replacements(root):
    from fastserve.config import Config
    from fastserve.server.app_loader import load_app
    from fastserve.server.worker import static_cache_for

    config = Config(target=str(root))
    assert static_cache_for(StaticFiles(directory=root, answers="static"), config).precompressed is False
    assert static_cache_for(StaticFiles(directory=root, precompressed=True, answers="static"), config).precompressed is True
    assert load_app(config).precompressed is True and load_app(Config(target=str(root), precompressed=False)).precompressed is False
    patched = StaticFiles(directory=root, answers="static")
    patched.lookup_path = lambda path: ("", None)
    assert static_cache_for(patched, config) is None  # the server runs the app's own methods
    assert static_cache_for(StaticFiles(directory=root), config) is None  # it answers as Starlette's


def test_the_server_says_when_a_staticfiles_app_is_called_as_an_app(root, caplog):
    from fastserve.server.serve import _report_static_app

    with caplog.at_level(logging.INFO, logger="fastserve"):
        _report_static_app(StaticFiles(directory=root, answers="static"))
        assert caplog.messages == []
        _report_static_app(StaticFiles(directory=root))
    (message,) = caplog.messages
    assert "called for every request" in message and 'answers="static"' in message


# Requests whose answers differ between the fast path and a StaticFiles answering as Starlette's.
AS_AN_APP = [
    ("GET", "/example.txt", []),
    ("GET", "/example.txt", [("Range", "items=0-1")]),    # 400, Starlette's text
    ("GET", "/example.txt", [("Range", "bytes=5-1")]),    # 400
    ("GET", "/example.txt", [("Range", "bytes=900-999")]),  # 416 without validators
    ("GET", "/example.txt", [("If-None-Match", "*")]),    # 304 without Last-Modified
    ("GET", "/missing.txt", []),                          # the 404 page, with its validators
    ("HEAD", "/missing.txt", []),
    ("GET", "/dir", []),                                  # 307 to the absolute URL
    ("POST", "/example.txt", []),                         # HTTPException(405) unhandled: 500
]


@pytest.mark.parametrize(("method", "target", "headers"), AS_AN_APP)
def test_the_server_runs_a_staticfiles_that_answers_as_starlettes_as_an_app(root, serve, method, target, headers):
    """``python -m fastserve module:app`` with ``app = StaticFiles(...)`` answers what the app
    answers (as under uvicorn): the fast path's own answers are for ``answers="static"``."""
    (root / "404.html").write_text("<p>not here</p>")
    app = StaticFiles(directory=root, html=True)
    own = TestClient(app, raise_server_exceptions=False, base_url="http://127.0.0.1", follow_redirects=False)
    expected = own.request(method, target, headers=headers)
    client = serve(app).open()
    client.send(request(method, target, headers), [method == "HEAD"])
    (answer,) = client.wait_for(1)
    assert answer.status == expected.status_code
    if answer.status == 500:  # the server's own answer to an app that raised, as uvicorn's
        assert answer.body == b"Internal Server Error"
        return
    server_fields = {"date", "server", "connection"}
    assert [field for field in answer.headers if field[0] not in server_fields] == list(expected.headers.multi_items())
    assert answer.body == expected.content
