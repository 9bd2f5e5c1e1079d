"""fastserve's ``StaticFiles`` and ``FileResponse`` answer what Starlette's answer, request for request.

Each request goes to a Starlette app that mounts Starlette's ``StaticFiles`` and returns Starlette's
``FileResponse``, and to the same app built from fastserve's classes, through the same client. The
status, the header fields (names, and values except the validators' own, which are opaque tokens
each library makes its own way), in the same order, and the body must be the same.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")

from starlette.applications import Starlette  # noqa: E402
from starlette.routing import Mount, Route  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

# Validators are the same kind of field both ways, with values each library makes itself.
OPAQUE = {"etag", "last-modified", "date"}


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("public")
    (root / "data.json").write_text('{"a": 1}')
    (root / "logo.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (root / "styles.css").write_text("h1 { color: green; }")
    (root / "a.txt").write_text("hello world\n" * 10)
    (root / "blob.bin").write_bytes(bytes(range(256)))
    (root / "site").mkdir()
    (root / "site" / "index.html").write_text("<p>home</p>")
    (root / "site" / "404.html").write_text("<p>missing</p>")
    for path in [*root.iterdir(), *(root / "site").iterdir()]:
        os.utime(path, (978307200, 978307200))  # 2001-01-01: If-Modified-Since can name a later past date
    return root


def _app(directory: Path, *, fastserve: bool) -> Starlette:
    if fastserve:
        from fastserve.responses import FileResponse
        from fastserve.staticfiles import StaticFiles
    else:
        from starlette.responses import FileResponse  # type: ignore[assignment]
        from starlette.staticfiles import StaticFiles  # type: ignore[assignment]

    async def download(request: Any) -> Any:
        name = request.path_params["name"]
        return FileResponse(directory / name, filename=request.query_params.get("as"))

    return Starlette(
        routes=[
            Route("/file/{name}", download, methods=["GET", "HEAD"]),
            Mount("/static", StaticFiles(directory=directory)),
            Mount("/site", StaticFiles(directory=directory / "site", html=True)),
        ]
    )


@pytest.fixture(scope="module")
def clients(directory: Path) -> tuple[TestClient, TestClient]:
    return TestClient(_app(directory, fastserve=False)), TestClient(_app(directory, fastserve=True))


def _seen(response: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, fields and body, with opaque values and a multipart boundary (random, of the
    same length both ways) made constant."""
    fields = [(name, "…" if name in OPAQUE else value) for name, value in response.headers.multi_items()]
    body = response.content
    boundary = response.headers.get("content-type", "").partition("boundary=")[2]
    if boundary:
        constant = "B" * len(boundary)
        fields = [(name, value.replace(boundary, constant)) for name, value in fields]
        body = body.replace(boundary.encode(), constant.encode())
    return response.status_code, fields, body


REQUESTS = [
    ("GET", "/static/data.json", {}),
    ("GET", "/static/logo.svg", {}),
    ("GET", "/static/styles.css", {}),
    ("GET", "/static/a.txt", {}),
    ("GET", "/static/blob.bin", {}),
    ("HEAD", "/static/data.json", {}),
    ("GET", "/site/", {}),
    ("GET", "/site/missing", {}),
    ("HEAD", "/site/missing", {}),
    ("GET", "/static/a.txt", {"if-modified-since": "Mon, 01 Jan 2024 00:00:00 GMT"}),
    ("GET", "/static/a.txt", {"if-modified-since": "Mon, 01 Jan 2024 00:00:00 GMT", "range": "bytes=5-1"}),
    ("GET", "/static/a.txt", {"range": "bytes=0-4"}),
    ("GET", "/static/a.txt", {"range": "bytes=-3"}),
    ("GET", "/static/a.txt", {"range": "bytes=0-4,10-12"}),
    ("GET", "/static/a.txt", {"range": "bytes=100-, 0-1, 3-5"}),
    ("GET", "/file/blob.bin", {"range": "bytes=0-4,10-12,200-"}),
    ("HEAD", "/file/blob.bin", {"range": "bytes=0-4,10-12"}),
    ("HEAD", "/static/a.txt", {"range": "bytes=0-4"}),
    ("HEAD", "/file/a.txt", {"range": "bytes=2-"}),
    ("GET", "/file/data.json", {}),
    ("GET", "/file/data.json?as=data.json", {}),
    ("GET", "/file/logo.svg", {}),
    ("HEAD", "/file/a.txt", {}),
    ("GET", "/file/a.txt", {"range": "bytes=5-9"}),
    # Range headers Starlette refuses with 400 and its own text
    *[
        (method, path, {"range": value})
        for method in ("GET", "HEAD")
        for path in ("/static/a.txt", "/file/a.txt")
        for value in ("bytes: 0-1000", "items=0-100", "bytes=", "bytes=-", "bytes=x-y", "bytes=100-0", "bytes=5-1")
    ],
    # ... and those it answers otherwise
    ("GET", "/static/a.txt", {"range": "bytes=1000-"}),
    ("GET", "/static/a.txt", {"range": "bytes=0-4,1000-2000"}),
    ("GET", "/static/a.txt", {"range": "bytes=0-4,x-y"}),
    ("GET", "/static/a.txt", {"range": " BYTES =0-4"}),
    ("GET", "/static/a.txt", {"range": "bytes=0-1000"}),
    ("HEAD", "/file/a.txt", {"range": "bytes=0-1000"}),
    ("GET", "/static/a.txt", {"range": "bytes=100-0", "if-range": '"not-this-one"'}),
    ("GET", "/file/a.txt", {"range": "bytes=100-0", "if-range": "Thu, 01 Jan 1970 00:00:00 GMT"}),
]


@pytest.mark.parametrize(("method", "path", "headers"), REQUESTS, ids=[f"{m} {p} {h}" for m, p, h in REQUESTS])
def test_the_same_request_gets_the_same_answer(
    clients: tuple[TestClient, TestClient], method: str, path: str, headers: dict[str, str]
) -> None:
    starlette_client, fastserve_client = clients
    expected = _seen(starlette_client.request(method, path, headers=headers))
    assert _seen(fastserve_client.request(method, path, headers=headers)) == expected
