"""Cache-Control for static files: fastserve.cachepolicy, carried by the open-file cache's entries."""
import gzip

import pytest

from fastserve._speedups.filecache import FileCache
from fastserve.cachepolicy import IMMUTABLE, NO_CACHE, CachePolicy, is_fingerprinted
from fastserve.staticfiles import StaticFiles
from fastserve.testclient import TestClient


@pytest.mark.parametrize(
    "name",
    [
        "app.3f9a1c2b.js", "main-4KX7QZ2B.css", "chunk.3f9a1c2b4d5e6f70.js", "vendor~0a1b2c3d.js",
        "3f9a1c2b.js", "logo.8f14e45fceea167a.svg", "index-B4xR9kQ2.js", "font_5d41402abc4b2a76.woff2",
    ],
)
def test_fingerprinted_names(name):
    assert is_fingerprinted(name)


@pytest.mark.parametrize(
    "name",
    [
        "app.js", "bootstrap5.css", "ubuntu2204.iso", "jquery-3.7.1.min.js", "components.js",
        "deadbeef.txt", "20240115.log", "README", "favicon.ico", "index.html", "report-2024-final.pdf",
        "abcdefgh.js", "BoRmjWcu.js", "win32api.dll", "es2015.js", "utf8.txt", "x86_64.tar.gz",
    ],
)
def test_ordinary_names_are_not_fingerprinted(name):
    assert not is_fingerprinted(name)


def test_policy_order():
    policy = CachePolicy(
        max_age=120,
        rules=[("/api/*", "no-store"), ("*.map", ""), ("*.js", "public, max-age=5")],
    )
    assert policy("/index.html", b"text/html; charset=utf-8") == NO_CACHE
    assert policy("/docs/app.3f9a1c2b.css", b"text/css") == IMMUTABLE
    assert policy("/robots.txt", b"text/plain") == b"public, max-age=120"
    assert policy("/api/data.json", b"application/json") == b"no-store"  # a glob with "/": the whole path
    assert policy("/x/app.js.map", b"application/json") is None  # empty value: no field
    assert policy("/a/b/app.3f9a1c2b.js", b"text/javascript") == b"public, max-age=5"  # first match wins
    assert CachePolicy()("/a.txt", b"text/plain") == b"public, max-age=60"


def test_policy_refuses_bad_values():
    with pytest.raises(ValueError):
        CachePolicy(rules=[("*", "a\r\nSet-Cookie: x")])
    with pytest.raises(ValueError):
        CachePolicy(max_age=-1)


@pytest.fixture
def site(tmp_path):
    (tmp_path / "index.html").write_text("<p>home</p>")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.html").write_text("<p>docs</p>")
    (tmp_path / "app.3f9a1c2b.js").write_text("console.log(1)")
    (tmp_path / "style.css").write_text("body{}" * 100)
    (tmp_path / "style.css.gz").write_bytes(gzip.compress(b"body{}" * 100))
    (tmp_path / "big.bin").write_bytes(b"x" * (300 * 1024))
    return tmp_path


def test_file_cache_entry_carries_the_policy(site):
    seen = []

    def policy(url_path, content_type):
        seen.append(url_path)
        return CachePolicy()(url_path, content_type)

    cache = FileCache([site], html=True, precompressed=True, cache_policy=policy)
    assert dict(cache.lookup("/app.3f9a1c2b.js").fields)[b"cache-control"] == IMMUTABLE
    assert dict(cache.lookup("/app.3f9a1c2b.js").fields)[b"cache-control"] == IMMUTABLE
    assert seen == ["/app.3f9a1c2b.js"]  # once per entry, not per request
    docs = cache.lookup("/docs/")
    assert dict(docs.fields)[b"cache-control"] == NO_CACHE and seen[-1] == "/docs/index.html"
    css = cache.lookup("/style.css")
    assert (b"cache-control", b"public, max-age=60") in css.fields
    assert (b"cache-control", b"public, max-age=60") in css.not_modified_fields  # a 304 repeats it
    gz = dict(css.variants)["gzip"]
    assert (b"cache-control", b"public, max-age=60") in gz.fields
    assert b"cache-control" not in dict(cache.lookup("/missing").fields)
    assert b"cache-control" not in dict(FileCache([site]).lookup("/style.css").fields)


def test_staticfiles_sends_none_unless_asked(site):
    plain = TestClient(StaticFiles(directory=site, html=True))
    assert "cache-control" not in plain.get("/app.3f9a1c2b.js").headers  # as Starlette
    client = TestClient(StaticFiles(directory=site, html=True, cache_policy=CachePolicy(max_age=30)))
    assert client.get("/app.3f9a1c2b.js").headers["cache-control"] == IMMUTABLE.decode()
    assert client.get("/").headers["cache-control"] == "no-cache"
    response = client.get("/style.css")
    assert response.headers["cache-control"] == "public, max-age=30"
    again = client.get("/style.css", headers={"if-none-match": response.headers["etag"]})
    assert again.status_code == 304 and again.headers["cache-control"] == "public, max-age=30"


# The server's rules, in-process, with the settings the CLI flags give.
HTTPX = [("Accept-Encoding", "gzip, deflate, br, zstd")]  # what an httpx client sends


def test_server_cache_policy(site, serve_cli):
    client = serve_cli(str(site)).open()
    fingerprinted = client.request("GET", "/app.3f9a1c2b.js", HTTPX)
    assert fingerprinted.header("cache-control") == "public, max-age=31536000, immutable"
    assert fingerprinted.body == b"console.log(1)"
    for path in ("/", "/index.html", "/docs/"):
        assert client.request("GET", path, HTTPX).header("cache-control") == "no-cache", path
    css = client.request("GET", "/style.css", [("Accept-Encoding", "identity")])
    assert css.header("cache-control") == "public, max-age=60"
    gz = client.request("GET", "/style.css", [("Accept-Encoding", "gzip")])
    assert gz.header("content-encoding") == "gzip" and gz.header("cache-control") == "public, max-age=60"
    revalidated = client.request("GET", "/style.css", [*HTTPX, ("If-None-Match", gz.header("etag"))])
    assert revalidated.status == 304 and revalidated.header("cache-control") == "public, max-age=60"
    ranged = client.request("GET", "/big.bin", [*HTTPX, ("Range", "bytes=0-9")])  # above --cache-max-file
    assert ranged.status == 206 and ranged.header("cache-control") == "public, max-age=60"
    assert client.request("HEAD", "/big.bin", HTTPX).header("cache-control") == "public, max-age=60"
    missing = client.request("GET", "/nope.txt", HTTPX)
    assert missing.status == 404 and missing.header("cache-control") is None


def test_server_cache_rules_max_age_and_extra_headers(site, serve_cli):
    client = serve_cli(
        str(site), "--max-age", "300", "--cache-rule", "*.html=no-store", "--cache-rule", "/big.*=",
        "--cache-rule", "*.js=public, max-age=10", "--header", "X-Frame-Options: DENY",
        "--header", "Strict-Transport-Security: max-age=63072000",
    ).open()
    assert client.request("GET", "/", HTTPX).header("cache-control") == "no-store"
    assert client.request("GET", "/app.3f9a1c2b.js", HTTPX).header("cache-control") == "public, max-age=10"
    assert client.request("GET", "/big.bin", HTTPX).header("cache-control") is None
    css = client.request("GET", "/style.css", HTTPX)  # the gzip sibling
    assert css.header("content-encoding") == "gzip" and css.header("cache-control") == "public, max-age=300"
    # --header reaches every static answer: 200, 304, 206, 404
    not_modified = client.request("GET", "/style.css", [*HTTPX, ("If-None-Match", css.header("etag"))])
    ranged = client.request("GET", "/big.bin", [*HTTPX, ("Range", "bytes=0-1")])
    missing = client.request("GET", "/nope", HTTPX)
    for response in (css, not_modified, ranged, missing):
        assert response.header("x-frame-options") == "DENY", response
        assert response.header("strict-transport-security") == "max-age=63072000"
    assert (css.status, not_modified.status, ranged.status, missing.status) == (200, 304, 206, 404)


def test_cli_cache_flags():
    from fastserve.cli import config_from_args

    config = config_from_args(["--max-age", "5", "--cache-rule", "*.js=public, max-age=1", "--cache-rule", "*.map="])
    assert config.max_age == 5
    assert config.cache_rules == [("*.js", "public, max-age=1"), ("*.map", "")]
    with pytest.raises(SystemExit):
        config_from_args(["--cache-rule", "no-equals-sign"])


# -- a policy that fails, or answers what would split the head ----------------------------------


def _raising(url_path, content_type):
    raise RuntimeError("policy bug")


@pytest.mark.parametrize("policy", [
    lambda url_path, content_type: b"no-cache\r\nSet-Cookie: evil=1",
    lambda url_path, content_type: b"no-cache\nSet-Cookie: evil=1",
    lambda url_path, content_type: b"no-cache\rSet-Cookie: evil=1",
    lambda url_path, content_type: b"no-cache\x00",
    lambda url_path, content_type: "no-cache",  # a str: not written as it is either
    _raising,
], ids=["crlf", "lf", "cr", "nul", "str", "raises"])
@pytest.mark.parametrize("name, size", [("small.js", 100), ("large.js", 100_000)])  # from memory, from the descriptor
def test_a_cache_policy_value_never_splits_the_head(tmp_path, serve, caplog, policy, name, size):
    """The fast path wrote the policy's value into the file's pre-built head as it was: a CR or LF
    in it started a field of the policy's making (``Set-Cookie``), and a policy that raised, or
    answered a str, broke off the connection without an answer. Each is a 500 now, on both faces,
    with the reason logged, and the connection goes on."""
    from inprocess import call_asgi

    (tmp_path / name).write_bytes(b"x" * size)
    (tmp_path / "ok.txt").write_bytes(b"fine")
    app = StaticFiles(directory=tmp_path, answers="static",
                      cache_policy=lambda url_path, content_type: b"no-cache" if url_path == "/ok.txt" else policy(
                          url_path, content_type))
    client = serve(app).open()
    response = client.request("GET", "/" + name)
    assert (response.status, response.body) == (500, b"Internal Server Error")
    assert b"evil" not in response.raw_head and response.header("cache-control") is None
    assert "the cache policy" in caplog.text and "answering 500" in caplog.text
    good = client.request("GET", "/ok.txt")  # the same connection, answered
    assert (good.status, good.body, good.header("cache-control")) == (200, b"fine", "no-cache")
    library = call_asgi(StaticFiles(directory=tmp_path, cache_policy=app.cache_policy), "GET", "/" + name)
    assert library.status == 500 and library.header("set-cookie") is None
