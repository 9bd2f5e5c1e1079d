"""--etag off and --if-modified-since exact|before: conditional.evaluate_preconditions and the server."""
import os
import time

import pytest

from fastserve._speedups.conditional import evaluate_preconditions
from fastserve._speedups.filecache import FileCache
from fastserve._speedups.headers import format_http_date
from fastserve.staticfiles import StaticFiles
from fastserve.testclient import TestClient

MTIME = 1_700_000_000
AT = format_http_date(MTIME)
LATER = format_http_date(MTIME + 3600)
EARLIER = format_http_date(MTIME - 1)
FUTURE = format_http_date(time.time() + 86400)
TAG = b'"abc"'


def ims(date, exact, last_modified=MTIME):
    return evaluate_preconditions(b"GET", None, None, None, date, TAG, last_modified, exact)


def test_if_modified_since_modes():
    assert ims(AT, True) == 304 and ims(AT, False) == 304
    assert ims(LATER, True) == 0  # nginx's exact: only the very date
    assert ims(LATER, False) == 304  # before: Starlette's and RFC 9110's comparison
    assert ims(EARLIER, True) == 0 and ims(EARLIER, False) == 0
    assert ims(b"garbage", False) == 0


def test_a_future_date_never_gives_304():
    future_mtime = int(time.time()) + 86400
    assert ims(FUTURE, False) == 0
    assert ims(format_http_date(future_mtime), True, future_mtime) == 0


def test_a_representation_without_etag_matches_only_star():
    assert evaluate_preconditions(b"GET", None, None, b"*", None, b"", MTIME) == 304
    assert evaluate_preconditions(b"GET", None, None, TAG, None, b"", MTIME) == 0
    assert evaluate_preconditions(b"GET", None, None, b'""', None, b"", MTIME) == 0
    assert evaluate_preconditions(b"GET", b"*", None, None, None, b"", MTIME) == 0
    assert evaluate_preconditions(b"GET", TAG, None, None, None, b"", MTIME) == 412
    # If-None-Match present: If-Modified-Since is not looked at (RFC 9110 13.2.2)
    assert evaluate_preconditions(b"GET", None, None, TAG, AT, b"", MTIME) == 0


@pytest.fixture
def site(tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    os.utime(tmp_path / "a.txt", (MTIME, MTIME))
    (tmp_path / "big.bin").write_bytes(b"y" * (300 * 1024))
    os.utime(tmp_path / "big.bin", (MTIME, MTIME))
    return tmp_path


def test_file_cache_without_etag(site):
    entry = FileCache([site], etag=False).lookup("/a.txt")
    assert entry.etag is None
    assert b"etag" not in dict(entry.fields) and b"etag" not in dict(entry.not_modified_fields)
    assert dict(entry.fields)[b"last-modified"] == AT


def test_staticfiles_keywords(site):
    client = TestClient(StaticFiles(directory=site))  # Starlette's comparison by default
    assert client.get("/a.txt", headers={"if-modified-since": LATER.decode()}).status_code == 304
    exact = TestClient(StaticFiles(directory=site, if_modified_since="exact", etag=False))
    response = exact.get("/a.txt", headers={"if-modified-since": LATER.decode()})
    assert response.status_code == 200 and "etag" not in response.headers
    assert exact.get("/a.txt", headers={"if-modified-since": AT.decode()}).status_code == 304
    with pytest.raises(ValueError):
        StaticFiles(directory=site, if_modified_since="after")


# The server's rules, in-process, with the settings the CLI flags give.


@pytest.mark.parametrize("path", ["/a.txt", "/big.bin"])  # held in memory; above --cache-max-file
def test_server_if_modified_since_exact_by_default(site, serve_cli, path):
    client = serve_cli(str(site)).open()
    assert client.request("GET", path, [("If-Modified-Since", AT.decode())]).status == 304
    later = client.request("GET", path, [("If-Modified-Since", LATER.decode())])
    assert later.status == 200 and len(later.body) == int(later.header("content-length")) == (site / path[1:]).stat().st_size
    assert client.request("GET", path, [("If-Modified-Since", FUTURE.decode())]).status == 200


def test_server_if_modified_since_before(site, serve_cli):
    client = serve_cli(str(site), "--if-modified-since", "before").open()
    assert client.request("GET", "/a.txt", [("If-Modified-Since", LATER.decode())]).status == 304
    assert client.request("HEAD", "/a.txt", [("If-Modified-Since", AT.decode())]).status == 304
    assert client.request("GET", "/a.txt", [("If-Modified-Since", EARLIER.decode())]).body == b"hello"
    future = client.request("GET", "/a.txt", [("If-Modified-Since", FUTURE.decode())])
    assert future.status == 200 and future.body == b"hello"


def test_server_etag_off(site, serve_cli):
    client = serve_cli(str(site), "--etag", "off").open()
    response = client.request("GET", "/a.txt")
    assert response.status == 200 and response.header("etag") is None
    assert response.header("last-modified") == AT.decode()
    assert client.request("GET", "/a.txt", [("If-None-Match", '"x"')]).status == 200
    assert client.request("GET", "/a.txt", [("If-None-Match", "*")]).status == 304
    not_modified = client.request("GET", "/a.txt", [("If-Modified-Since", AT.decode())])
    assert not_modified.status == 304 and not_modified.header("etag") is None
    ranged = client.request("GET", "/big.bin", [("Range", "bytes=0-3"), ("If-Range", AT.decode())])
    assert ranged.status == 206 and ranged.body == b"yyyy" and ranged.header("etag") is None
    tagged = client.request("GET", "/big.bin", [("Range", "bytes=0-3"), ("If-Range", '"x"')])
    assert tagged.status == 200 and len(tagged.body) == 300 * 1024
