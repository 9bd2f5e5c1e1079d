"""A file the server may not read, and request-targets whose ``%`` is not an escape.

* An unreadable file: ``403`` from the server (what nginx sends; no ``WWW-Authenticate``, so
  not a ``401``), Starlette's ``401`` from the library ``StaticFiles``; a cached file that
  becomes unreadable (``chmod``) is noticed at the next revalidation.
* ``/50%.txt``, ``/%zz``: ``400`` (RFC 3986 §2.1), from the static path and for ASGI apps.

Tests may run as root, whom the filesystem never refuses, so opening is made to refuse a
file without read bits, as it would for any other user.
"""
from __future__ import annotations

import os

import pytest

from fastserve._speedups.filecache import KIND_FILE, KIND_FORBIDDEN, FileCache
from connection_driver import Driven, run
from fastserve.exceptions import HTTPException
from fastserve.staticfiles import StaticFiles
from fastserve.testclient import TestClient


@pytest.fixture
def root(tmp_path):
    (tmp_path / "small.txt").write_bytes(b"small file\n")
    (tmp_path / "50%.txt").write_bytes(b"fifty percent\n")
    return tmp_path



def exchange(app, request: bytes) -> bytes:
    """Bytes in, bytes out: one connection of a server running ``app``."""

    async def main() -> bytes:
        driven = Driven(app)
        driven.send(request)
        await driven.settle()
        return driven.output

    return run(main)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def test_cached_file_made_unreadable_is_noticed(root, refuse_unreadable):
    cache = FileCache([root], valid_for=0.0)
    assert cache.lookup("/small.txt").kind == KIND_FILE
    os.chmod(root / "small.txt", 0)  # neither content nor mtime changes: only the mode
    entry = cache.lookup("/small.txt")
    assert entry.kind == KIND_FORBIDDEN and entry.status == 403
    os.chmod(root / "small.txt", 0o644)
    assert cache.lookup("/small.txt").kind == KIND_FILE


def test_cached_large_file_made_unreadable_is_noticed(root, refuse_unreadable):
    (root / "large.bin").write_bytes(b"x" * 1024)
    cache = FileCache([root], valid_for=0.0, max_body=16)
    assert cache.lookup("/large.bin").file is not None
    os.chmod(root / "large.bin", 0o200)
    assert cache.lookup("/large.bin").kind == KIND_FORBIDDEN


def test_server_answers_an_unreadable_file_with_403(root, refuse_unreadable):
    os.chmod(root / "small.txt", 0)
    response = exchange(StaticFiles(directory=root, answers="static"), b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = response.partition(b"\r\n\r\n")
    assert status_of(response) == 403
    assert b"www-authenticate" not in head.lower()
    assert body == b"Forbidden"


def test_library_keeps_starlettes_401(root, refuse_unreadable):
    os.chmod(root / "small.txt", 0)
    with pytest.raises(HTTPException) as raised:  # standalone, Starlette's StaticFiles raises it too
        TestClient(StaticFiles(directory=root)).get("/small.txt")
    assert raised.value.status_code == 401


@pytest.mark.parametrize("target", [b"/50%.txt", b"/50%25.txt%", b"/%zz", b"/%4", b"/small.txt%", b"/%g1/small.txt"])
def test_static_path_refuses_a_percent_that_is_not_an_escape(root, target):
    response = exchange(StaticFiles(directory=root, answers="static"), b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target)
    assert status_of(response) == 400


def test_an_escaped_percent_is_served(root):
    response = exchange(StaticFiles(directory=root, answers="static"), b"GET /50%25.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(response) == 200 and response.endswith(b"fifty percent\n")


@pytest.mark.parametrize("target", [b"/50%.txt", b"/%zz?q=1", b"/a%2"])
def test_asgi_apps_never_see_a_percent_that_is_not_an_escape(target):
    called = []

    async def app(scope, receive, send):
        called.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    response = exchange(app, b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target)
    assert status_of(response) == 400 and not called
