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
    (root / "site" / "docs").mkdir()
    (root / "site" / "docs" / "index.html").write_text("<p>docs</p>")
    (root / "sp ace.txt").write_text("space")
    (root / "caf\u00e9.txt").write_text("cafe")
    (root / "empty.txt").write_text("")
    (root / "noext").write_text("n")
    (root / "notes.txt.gz").write_bytes(b"\x1f\x8b\x08\x00")
    for path in [*root.iterdir(), *(root / "site").iterdir(), *(root / "site" / "docs").iterdir()]:
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


# Each path under each precondition and range a client sends, ETAG standing for the ETag that
# library gave the file (each makes its own): the answers must match (status, fields, body).
VALIDATED_PATHS = [
    "/static/a.txt", "/static/empty.txt", "/static/noext", "/static/sp%20ace.txt", "/static/caf%C3%A9.txt",
    "/static/missing", "/site/", "/site/docs", "/site/docs/", "/site/nope", "/file/a.txt", "/file/empty.txt",
]
VALIDATORS = [
    {"if-none-match": "ETAG"},
    {"if-none-match": "*"},
    {"if-none-match": '"other", ETAG'},
    {"if-none-match": "W/ETAG"},
    {"if-modified-since": "Mon, 01 Jan 2001 00:00:00 GMT"},
    {"if-modified-since": "Sun, 31 Dec 2000 00:00:00 GMT"},
    {"if-modified-since": "Monday, 01-Jan-01 00:00:00 GMT"},
    {"if-modified-since": "Mon Jan  1 00:00:00 2001"},
    {"if-modified-since": "not a date"},
    {"if-none-match": "ETAG", "if-modified-since": "Sun, 31 Dec 2000 00:00:00 GMT"},
    {"if-range": "ETAG", "range": "bytes=0-1"},
    {"if-range": '"other"', "range": "bytes=0-1"},
    {"if-range": "Mon, 01 Jan 2001 00:00:00 GMT", "range": "bytes=0-1"},
    {"if-range": "Tue, 02 Jan 2001 00:00:00 GMT", "range": "bytes=0-1"},
    {"range": "bytes=0-0,-1"},
    {"range": "bytes=-0"},
    {"range": "bytes=1-2,0-0"},
    {"accept-encoding": "gzip, br"},
]


@pytest.mark.parametrize("headers", VALIDATORS, ids=[str(h) for h in VALIDATORS])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("path", VALIDATED_PATHS)
def test_a_conditional_or_ranged_request_gets_the_same_answer(
    clients: tuple[TestClient, TestClient], path: str, method: str, headers: dict[str, str]
) -> None:
    answers = []
    for client in clients:
        etag = client.get(path).headers.get("etag", '"none"')
        sent = {name: value.replace("ETAG", etag) for name, value in headers.items()}
        answers.append(_seen(client.request(method, path, headers=sent, follow_redirects=False)))
    assert answers[1] == answers[0]


@pytest.mark.parametrize(
    "headers", [{"if-match": '"other"'}, {"if-unmodified-since": "Sun, 31 Dec 2000 00:00:00 GMT"}]
)
def test_a_failed_if_match_or_if_unmodified_since_is_412_where_starlettes_static_files_sends_the_file(
    clients: tuple[TestClient, TestClient], headers: dict[str, str]
) -> None:
    # RFC 9110 sections 13.1.1 and 13.1.4: the origin answers 412 when the condition is false;
    # Starlette's StaticFiles never reads these fields (README says so). A FileResponse reads
    # no precondition in either library (an app decides those), so it sends the file both ways.
    starlette_client, fastserve_client = clients
    assert starlette_client.get("/static/a.txt", headers=headers).status_code == 200
    refused = fastserve_client.get("/static/a.txt", headers=headers)
    assert (refused.status_code, refused.text) == (412, "Precondition Failed")
    assert fastserve_client.get("/static/a.txt", headers={"if-match": "*"}).status_code == 200
    assert _seen(fastserve_client.get("/file/a.txt", headers=headers)) == _seen(
        starlette_client.get("/file/a.txt", headers=headers)
    )


def test_a_gzip_file_asked_for_by_name_is_application_gzip_where_starlette_says_text_plain(
    clients: tuple[TestClient, TestClient],
) -> None:
    starlette_client, fastserve_client = clients
    assert starlette_client.get("/static/notes.txt.gz").headers["content-type"] == "text/plain; charset=utf-8"
    answer = fastserve_client.get("/static/notes.txt.gz")
    assert answer.headers["content-type"] == "application/gzip"
    assert "content-encoding" not in answer.headers and answer.content == b"\x1f\x8b\x08\x00"
