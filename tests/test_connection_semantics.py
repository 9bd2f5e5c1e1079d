"""HTTP/1.1 connection semantics of the static origin, in-process with each request reader:
keep-alive by default, Connection: close honoured, HTTP/1.0, pipelined requests answered in
order (ready answers gathered into one write), nothing answered after a close.

(Moved from test_server_static.py; sendfile over a real socket stays there.)
"""
from __future__ import annotations

from typing import List, Optional, Tuple
from urllib.parse import quote

import pytest

from inprocess import Client
from server_helpers import INDEX_HTML, NOT_FOUND_HTML, UNICODE_NAME, DocRoot, build_request, parse_byteranges


@pytest.fixture
def client(serve, docroot: DocRoot) -> Client:
    return serve(docroot.root).open()


def etag_of(client: Client, name: str) -> str:
    etag = client.request("HEAD", name).header("etag")
    assert etag is not None
    return etag


def test_keep_alive_is_the_default(client, docroot):
    for target in ["/small.txt", "/medium.bin", "/missing", "/small.txt", "/dir/"]:
        assert client.request("GET", target).header("connection") is None
    assert not client.closed
    assert client.request("GET", "/small.txt").body == docroot.small


@pytest.mark.parametrize("name, attr", [("/small.txt", "small"), ("/large.bin", "large")])
def test_connection_close_is_answered_and_honoured(client, docroot, name, attr):
    response = client.request("GET", name, [("Connection", "close")])
    assert response.body == getattr(docroot, attr) and response.header("connection") == "close"
    assert client.closed


def test_http10_closes_by_default(client, docroot):
    client.send(build_request("GET", "/small.txt", version="HTTP/1.0"), [False])
    (response,) = client.parsed()
    assert response.body == docroot.small and response.header("connection") == "close"
    assert client.closed


def test_http10_keep_alive_stays_open(client, docroot):
    keep = [("Connection", "keep-alive")]

    def exchange(target: str, headers: List[Tuple[str, str]]):
        client.send(build_request("GET", target, headers, version="HTTP/1.0"), [False])
        return client.parsed()[-1]

    for _ in range(3):
        response = exchange("/small.txt", keep)
        assert response.body == docroot.small and response.header("connection") == "keep-alive"
    big = exchange("/large.bin", keep)
    assert big.header("connection") == "keep-alive" and big.body == docroot.large
    not_modified = exchange("/small.txt", keep + [("If-None-Match", response.header("etag"))])
    assert not_modified.status == 304 and not_modified.header("connection") == "keep-alive"
    assert not client.closed


Expected = Tuple[str, str, List[Tuple[str, str]], int, Optional[bytes]]


def pipeline_plan(docroot: DocRoot, etags: dict) -> List[Expected]:
    """(method, target, headers, status, body or None when the body is checked separately)."""
    large = docroot.large
    return [
        ("GET", "/small.txt", [], 200, docroot.small),
        ("GET", "/missing-1", [], 404, NOT_FOUND_HTML),
        ("GET", "/large.bin", [], 200, large),
        ("HEAD", "/small.txt", [], 200, b""),
        ("GET", "/small.txt", [("If-None-Match", etags["/small.txt"])], 304, b""),
        ("GET", "/medium.bin", [], 200, docroot.medium),
        ("HEAD", "/large.bin", [], 200, b""),
        ("GET", "/dir/", [], 200, INDEX_HTML),
        ("GET", "/dir", [], 301, b""),
        ("GET", "/large.bin", [("Range", "bytes=100-199")], 206, large[100:200]),
        ("POST", "/small.txt", [("Content-Length", "0")], 405, None),
        ("GET", "/nope/nope", [], 404, NOT_FOUND_HTML),
        ("GET", "/" + quote(UNICODE_NAME), [], 200, docroot.unicode_body),
        ("GET", "/medium.bin", [("Range", "bytes=0-9,100-109")], 206, None),
        ("GET", "/large.bin", [], 200, large),
        ("HEAD", "/missing-2", [], 404, b""),
        ("GET", "/small.txt?x=1", [], 200, docroot.small),
        ("GET", "/large.bin", [("If-None-Match", etags["/large.bin"])], 304, b""),
        ("GET", "/page.html", [], 200, b"<!doctype html><p>a page</p>\n"),
        ("GET", "/small.txt", [], 200, docroot.small),
    ]


def test_pipelined_requests_are_answered_in_order(serve, docroot):
    server = serve(docroot.root)
    etags = {name: etag_of(server.open(), name) for name in ("/small.txt", "/large.bin")}
    client = server.open()
    plan = pipeline_plan(docroot, etags)
    client.send(b"".join(build_request(m, t, h) for m, t, h, _, _ in plan), [m == "HEAD" for m, *_ in plan])
    responses = client.parsed()
    assert len(responses) == len(plan)
    for index, ((method, target, _, status, body), response) in enumerate(zip(plan, responses)):
        assert response.status == status, f"response {index} ({method} {target}): {response.status}"
        if body is not None:
            assert response.body == body, f"response {index} ({method} {target}): wrong body"
    assert responses[8].header("location") == "/dir/"
    assert responses[10].header("allow") == "GET, HEAD"
    assert responses[3].header("content-length") == str(len(docroot.small))
    assert responses[6].header("content-length") == str(len(docroot.large))
    assert responses[9].header("content-range") == f"bytes 100-199/{len(docroot.large)}"
    parts = parse_byteranges(responses[13].body, responses[13].content_type_boundary())
    assert [part.data for part in parts] == [docroot.medium[0:10], docroot.medium[100:110]]
    # nothing extra was sent, and the connection is still usable
    assert bytes(client.transport.data[client.taken:]) == b""
    assert client.request("GET", "/small.txt").body == docroot.small


def test_pipeline_ending_with_connection_close(client, docroot):
    batch = (build_request("GET", "/large.bin") + build_request("GET", "/small.txt")
             + build_request("GET", "/small.txt", [("Connection", "close")])
             + build_request("GET", "/medium.bin"))  # after the close: never answered
    client.send(batch)
    bodies = [response.body for response in client.parsed()]
    assert bodies == [docroot.large, docroot.small, docroot.small]
    assert client.parsed()[-1].header("connection") == "close" and client.closed


@pytest.mark.parametrize("version, headers", [("HTTP/1.1", [("Connection", "close")]), ("HTTP/1.0", [])])
def test_request_sent_after_a_closing_one_in_the_same_write_is_ignored(client, docroot, version, headers):
    client.send(build_request("GET", "/small.txt", headers, version=version) + build_request("GET", "/medium.bin"))
    (response,) = client.parsed()
    assert (response.status, response.body) == (200, docroot.small)
    assert client.closed and bytes(client.transport.data[client.taken:]) == b""
