"""--spa and --error-page: branches of the open-file cache's lookup, so the fast path and StaticFiles agree."""
import os

import pytest

from fastserve._speedups.filecache import KIND_FILE, KIND_FORBIDDEN, KIND_MISSING, FileCache
from fastserve.exceptions import HTTPException
from fastserve.staticfiles import StaticFiles
from fastserve.testclient import TestClient
from inprocess import InProcessServer



@pytest.fixture
def site(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    (root / "index.html").write_text("<p>app shell</p>")
    (root / "app.js").write_text("boot()")
    (root / "errors").mkdir()
    (root / "errors" / "missing.html").write_text("<p>no such page</p>")
    (root / "errors" / "denied.html").write_text("<p>not yours</p>")
    (root / "404.html").write_text("<p>html mode 404</p>")
    (root / "secret.txt").write_text("s")
    os.chmod(root / "secret.txt", 0)
    yield root
    os.chmod(root / "secret.txt", 0o644)


def test_file_cache_spa(site):
    cache = FileCache([site], spa=True)
    for path in ("/users/42", "/about", "/deep/link/", "/v1.2/settings"):
        entry = cache.lookup(path)
        assert (entry.kind, entry.status, entry.body) == (KIND_FILE, 200, b"<p>app shell</p>"), path
    assert cache.lookup("/missing.js").kind == KIND_MISSING  # an asset that is not there stays a 404
    assert cache.lookup("/app.js").body == b"boot()"
    assert FileCache([site]).lookup("/about").kind == KIND_MISSING
    assert FileCache([site], spa=True, dotfiles=False).lookup("/.git").status == 404


def test_file_cache_error_pages(site, refuse_unreadable):
    cache = FileCache([site], html=True, error_pages={404: "/errors/missing.html", 403: "errors/denied.html"})
    missing = cache.lookup("/nope")
    assert (missing.kind, missing.status, missing.body) == (KIND_MISSING, 404, b"<p>no such page</p>")
    assert dict(missing.fields)[b"content-type"].startswith(b"text/html")
    # It stands in for what is not there: no validators to revalidate, no ranges to resume.
    assert {name for name, _ in missing.fields} == {b"content-type", b"content-length"}
    denied = cache.lookup("/secret.txt")
    assert (denied.kind, denied.status, denied.body) == (KIND_FORBIDDEN, 403, b"<p>not yours</p>")
    assert FileCache([site], html=True).lookup("/nope").body == b"<p>html mode 404</p>"
    assert FileCache([site], error_pages={404: "/gone.html"}).lookup("/nope").body == b"Not Found"


def test_staticfiles_spa(site):
    client = TestClient(StaticFiles(directory=site, spa=True))
    response = client.get("/users/42")
    assert response.status_code == 200 and response.text == "<p>app shell</p>"


def test_server_spa_and_error_pages(site, serve_cli):
    client = serve_cli(str(site), "--spa", "--error-page", "404=/errors/missing.html",
                       "--error-page", "403=errors/denied.html", "--header", "X-Test: 1").open()
    for path in ("/users/42", "/about", "/deep/link/"):
        response = client.request("GET", path)
        assert response.status == 200 and response.body == b"<p>app shell</p>", path
        assert response.header("cache-control") == "no-cache"
    head = client.request("HEAD", "/about")
    assert head.status == 200 and head.body == b""
    assert int(head.header("content-length")) == len("<p>app shell</p>")
    missing = client.request("GET", "/missing.js")
    assert missing.status == 404 and missing.body == b"<p>no such page</p>"
    assert not {"etag", "last-modified", "accept-ranges"} & {name for name, _ in missing.headers}
    assert missing.header("x-test") == "1"
    assert client.request("POST", "/about", [("Content-Length", "0")]).status == 405


def test_in_process_403_page(site, refuse_unreadable):
    server = InProcessServer(site, options={"error_pages": [(403, "/errors/denied.html")]})
    try:
        response = server.open().request("GET", "/secret.txt")
        assert response.status == 403 and response.body == b"<p>not yours</p>"
        assert response.header("content-type").startswith("text/html")
    finally:
        server.close()


def test_server_without_spa_keeps_404(site, serve_cli):
    response = serve_cli(str(site)).open().request("GET", "/about")
    assert response.status == 404 and response.body == b"<p>html mode 404</p>"


def test_an_error_page_larger_than_cache_max_file_is_still_used(site, serve_cli):
    """A styled 404 page (40 KiB) above the 16 KiB files are held in memory up to: pages are
    held whole up to 256 KiB (or --cache-max-file when larger); a larger one is not used."""
    styled = b"<!doctype html><style>" + b"p{color:red}" * 3400 + b"</style><p>gone</p>"
    (site / "404.html").write_bytes(styled)
    client = serve_cli(str(site)).open()
    for _ in range(2):  # built, then from the cache
        response = client.request("GET", "/nope")
        assert response.status == 404 and response.body == styled
    huge = b"<p>" + b"x" * (256 * 1024) + b"</p>"
    (site / "errors" / "huge.html").write_bytes(huge)
    assert FileCache([site], error_pages={404: "/errors/huge.html"}).lookup("/nope").body == b"Not Found"
    page = FileCache([site], max_body=512 * 1024, error_pages={404: "/errors/huge.html"}).lookup("/nope")
    assert page.body == huge


def test_cli_error_page_values():
    from fastserve.cli import config_from_args

    config = config_from_args(["--spa", "--error-page", "404=/e/404.html", "--error-page", "403=e/403.html"])
    assert config.spa and config.error_pages == [(404, "/e/404.html"), (403, "e/403.html")]
    for bad in ("500=/x.html", "404", "404=", "abc=/x"):
        with pytest.raises(SystemExit):
            config_from_args(["--error-page", bad])


def test_out_of_descriptors_is_503_and_not_remembered(site, monkeypatch):
    """Opening a file fails with EMFILE/ENFILE: that says nothing of the file, so the answer is
    503 with Retry-After (not a cached 404), and the next lookup opens it again."""
    import errno

    (site / "bundle.js").write_bytes(b"x" * 40_000)  # above --cache-max-file: held open
    real_open = os.open

    def out_of(code):
        def failing_open(*args, **kwargs):
            raise OSError(code, os.strerror(code))
        return failing_open

    exhausted = out_of(errno.EMFILE)
    for code in (errno.EMFILE, errno.ENFILE):
        cache = FileCache([site], max_body=16 * 1024)
        monkeypatch.setattr(os, "open", out_of(code))
        entry = cache.lookup("/bundle.js")
        assert (entry.status, entry.body) == (503, b"Service Unavailable")
        assert (b"retry-after", b"1") in entry.fields
        monkeypatch.setattr(os, "open", real_open)
        assert cache.lookup("/bundle.js").status == 200  # looked up again, not a remembered miss

    server = InProcessServer(site)
    try:
        client = server.open()
        monkeypatch.setattr(os, "open", exhausted)
        response = client.request("GET", "/bundle.js")
        assert response.status == 503 and response.header("retry-after") == "1"
        monkeypatch.setattr(os, "open", real_open)
        response = client.request("GET", "/bundle.js")
        assert response.status == 200 and len(response.body) == 40_000
    finally:
        server.close()
    client = TestClient(StaticFiles(directory=site, cache_valid=1.0))  # the library's cache
    monkeypatch.setattr(os, "open", exhausted)
    with pytest.raises(HTTPException) as raised:  # as StaticFiles raises its 404 (an app's handler answers it)
        client.get("/bundle.js")
    assert (raised.value.status_code, raised.value.headers) == (503, {"Retry-After": "1"})
