"""One decision for every static answer: the fast path and ``StaticFiles`` agree, in-process.

``staticanswer.decide`` answers both; these tests hold the server's fast path (wire bytes,
each request reader) and ``StaticFiles`` (ASGI messages, on the very cache the fast path uses)
to the same status, fields and bytes over a matrix of requests, and pin the answers the
copies used to disagree on (dot segments among them: ``/dir/../a.txt`` is ``/a.txt`` on both).
"""
from __future__ import annotations

import asyncio
import gzip
import itertools
import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple
from urllib.parse import unquote, urlsplit

import pytest

from inprocess import call_asgi
from server_helpers import RawResponse

MTIME = 1_700_000_000  # Tue, 14 Nov 2023 22:13:20 GMT
LAST_MODIFIED = "Tue, 14 Nov 2023 22:13:20 GMT"
EARLIER = "Mon, 13 Nov 2023 00:00:00 GMT"
LATER = "Wed, 15 Nov 2023 00:00:00 GMT"
SMALL = bytes(range(256)) * 4           # 1 KiB: held in memory
LARGE = bytes(range(251)) * 40          # 10 KiB: above cache_max_file, sent as file slices
SCRIPT = b"console.log('fastserve');\n" * 40


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "dir").mkdir(parents=True)
    (root / "small.bin").write_bytes(SMALL)
    (root / "large.bin").write_bytes(LARGE)
    (root / "app.js").write_bytes(SCRIPT)
    (root / "app.js.gz").write_bytes(gzip.compress(SCRIPT, mtime=0))
    (root / "bundle.js").write_bytes(SCRIPT * 8)  # compressed on the fly; above cache_max_file
    (root / "dir" / "index.html").write_bytes(b"<p>index</p>\n")
    for path in root.rglob("*"):
        os.utime(path, (MTIME, MTIME))
    return root


COMPARED = ("content-length", "content-range", "content-type", "content-encoding", "etag", "last-modified", "vary",
            "accept-ranges")


def comparable(response: RawResponse) -> Tuple[int, Dict[str, Optional[str]], bytes]:
    """Status, the compared fields and the body, with a multipart boundary made constant."""
    fields = {name: response.header(name) for name in COMPARED}
    body = response.body
    match = re.search(r"boundary=(\S+)", fields["content-type"] or "")
    if match:
        boundary = match.group(1)
        fields["content-type"] = fields["content-type"].replace(boundary, "B" * len(boundary))
        body = body.replace(boundary.encode(), b"B" * len(boundary))
    return response.status, fields, body


def both(server, client, method: str, target: str, headers: List[Tuple[str, str]]) -> Tuple[RawResponse, RawResponse]:
    fast = client.request(method, target, headers)
    app = call_asgi(server.app, method, target, headers, loop=server.loop)
    if method == "HEAD":
        app.body = b""  # what any server does with a body sent for HEAD
    return fast, app


# -- the named regressions ---------------------------------------------------------------------


def test_range_on_precompressed_sibling_sends_the_whole_encoded_representation(site, serve):
    """A Range for a file answered from its .gz sibling gets the whole gzip body (nginx gzip_static):
    never gzip bytes without Content-Encoding, never a Content-Range into the encoded bytes."""
    server = serve(site)
    client = server.open()
    encoded = gzip.compress(SCRIPT, mtime=0)
    for range_value in ("bytes=0-9", "bytes=0-1,5-9", "bytes=-5", f"bytes={len(encoded) + 10}-"):
        for response in both(server, client, "GET", "/app.js", [("Accept-Encoding", "gzip"), ("Range", range_value)]):
            assert response.status == 200, range_value
            assert response.header("content-encoding") == "gzip"
            assert response.header("vary") == "Accept-Encoding"
            assert response.header("content-range") is None
            assert response.header("accept-ranges") is None  # the encoded representation is sent whole
            assert response.header("content-length") == str(len(encoded))
            assert gzip.decompress(response.body) == SCRIPT
    # The identity representation still answers ranges, with its own validator.
    for response in both(server, client, "GET", "/app.js", [("Accept-Encoding", "identity"), ("Range", "bytes=0-9")]):
        assert response.status == 206 and response.body == SCRIPT[:10]
        assert response.header("content-encoding") is None
        assert response.header("content-range") == f"bytes 0-9/{len(SCRIPT)}"
        assert response.header("vary") == "Accept-Encoding"


def test_if_range_with_the_encoded_validator_is_moot_for_the_encoded_representation(site, serve):
    server = serve(site)
    client = server.open()
    etag = client.request("GET", "/app.js", [("Accept-Encoding", "gzip")]).header("etag")
    assert etag.endswith('-gzip"')
    headers = [("Accept-Encoding", "gzip"), ("Range", "bytes=0-9"), ("If-Range", etag)]
    for response in both(server, client, "GET", "/app.js", headers):
        assert response.status == 200 and response.header("etag") == etag
    # the same validator sent for the identity representation does not match it: the whole file
    headers = [("Range", "bytes=0-9"), ("If-Range", etag)]
    for response in both(server, client, "GET", "/app.js", headers):
        assert response.status == 200 and response.body == SCRIPT


@pytest.mark.parametrize("name", ["small.bin", "large.bin"])
def test_416_carries_the_validators(site, serve, name):
    """An unsatisfiable Range names the representation it missed: ETag and Last-Modified, on both faces."""
    server = serve(site, cache_max_file=4096)
    client = server.open()
    size = (site / name).stat().st_size
    for response in both(server, client, "GET", f"/{name}", [("Range", f"bytes={size}-")]):
        assert response.status == 416
        assert response.header("content-range") == f"bytes */{size}"
        assert response.header("content-length") == "0" and response.body == b""
        assert response.header("last-modified") == LAST_MODIFIED
        assert response.header("etag") is not None and response.header("etag").startswith('"')
        assert response.header("content-type") is None


def test_every_405_is_decides(site, serve):
    """The fast path's 405 (written before any lookup, and for a large body refused unread) is
    ``decide``'s: the same status, fields and body."""
    from fastserve._speedups.filecache import FileCache
    from fastserve._speedups.requesthead import RequestHead
    from fastserve._speedups.staticanswer import decide

    decided = decide(FileCache([site]).lookup("/small.bin"), RequestHead(b"DELETE"))
    expected = (decided.status, [(name.decode(), value.decode()) for name, value in decided.fields], decided.body)
    client = serve(site).open()
    for target in ("/small.bin", "/missing"):
        refused = client.request("DELETE", target)
        assert (refused.status, refused.headers[2:], refused.body) == expected  # after Server and Date
    client.send(b"PUT /small.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n")
    refused = client.parsed()[-1]
    assert (refused.status, refused.headers[2:-1], refused.body) == expected
    assert refused.headers[-1] == ("connection", "close") and client.closed


def test_reason_phrases_come_from_one_table(site, serve):
    """Status lines and the server's own plain-text bodies use the RFC 9110 names of headers.reason_phrase.

    (``HTTPException.detail`` keeps Starlette's wording: it is the library's API, not the wire.)
    """
    from fastserve._speedups.headers import reason_phrase
    from inprocess import request

    assert reason_phrase(413) == b"Content Too Large" and reason_phrase(422) == b"Unprocessable Content"
    server = serve(site, max_body_size=10)
    client = server.open()
    refused = client.request("DELETE", "/small.bin")
    assert refused.status == 405 and refused.reason.encode() == refused.body == reason_phrase(405)
    client.send(request("POST", "/small.bin", body=b"x" * 11))
    too_large = client.parsed()[-1]
    assert too_large.status == 413 and too_large.reason == "Content Too Large" and too_large.body == b"Content Too Large"


# -- the equivalence matrix --------------------------------------------------------------------

CONDITIONS = [
    [],
    [("If-None-Match", "{etag}")],
    [("If-None-Match", '"other"')],
    [("If-None-Match", "*")],
    [("If-Match", "{etag}")],
    [("If-Match", '"other"')],
    [("If-Modified-Since", LAST_MODIFIED)],
    [("If-Modified-Since", EARLIER)],
    [("If-Unmodified-Since", EARLIER)],
    [("If-Unmodified-Since", LATER)],
    [("If-None-Match", '"other"'), ("If-Modified-Since", LATER)],
    [("If-None-Match", "{etag}"), ("If-None-Match", '"other"')],  # one list on two lines
    [("If-Match", "{etag}"), ("If-Match", '"other"')],
]
RANGES = [None, "bytes=0-9", "bytes=-5", "bytes=5-", "bytes=0-1,4-6,100-", "bytes=999999-", "bytes=x-y", "pages=1"]
IF_RANGES = ["{etag}", '"other"', LAST_MODIFIED, EARLIER]  # each with the first few ranges
TARGETS = [
    ("/small.bin", []),
    ("/large.bin", []),
    ("/app.js", [("Accept-Encoding", "gzip")]),
    ("/app.js", [("Accept-Encoding", "br;q=1, identity;q=0.5")]),
    ("/bundle.js", []),
    ("/bundle.js", [("Accept-Encoding", "br, gzip")]),
    ("/bundle.js", [("Accept-Encoding", "gzip;q=0.5, zstd")]),
    ("/bundle.js", [("Accept-Encoding", "identity;q=0, gzip")]),
    ("/bundle.js", [("Accept-Encoding", "identity;q=0")]),
    ("/missing.txt", []),
    ("/dir", []),
    ("/dir/", []),
]


@pytest.mark.parametrize("target,extra", TARGETS, ids=[t + "".join(v for _, v in e) for t, e in TARGETS])
def test_fast_path_and_staticfiles_agree(site, serve, target, extra):
    server = serve(site, cache_max_file=4096)
    client = server.open()
    etag = client.request("GET", target, extra).header("etag") or '"none"'
    for _ in range(200):  # the app's encodings are made off its event loop: let them be ready
        fast, app = both(server, client, "GET", target, extra)
        if comparable(fast) == comparable(app):
            break
        server.loop.run_until_complete(asyncio.sleep(0.005))
    disagreements = []
    cases = list(itertools.product(("GET", "HEAD"), CONDITIONS, RANGES, [None]))
    cases += itertools.product(("GET", "HEAD"), CONDITIONS[:3], RANGES[1:], IF_RANGES)
    for method, conditions, range_value, if_range in cases:
        headers = list(extra) + [(name, value.format(etag=etag)) for name, value in conditions]
        if range_value is not None:
            headers.append(("Range", range_value))
        if if_range is not None:
            headers.append(("If-Range", if_range.format(etag=etag)))
        fast, app = both(server, client, method, target, headers)
        if comparable(fast) != comparable(app):
            disagreements.append((method, headers, comparable(fast), comparable(app)))
    assert not disagreements, f"{len(disagreements)} disagreements, first: {disagreements[0]}"


# -- dot segments (RFC 3986 section 5.2.4) ----------------------------------------------------

DOT_SEGMENTS = [
    # target, what it names once its dot segments are removed (None: it climbs above the root)
    ("/dir/../small.bin", "/small.bin"),
    ("/./small.bin", "/small.bin"),
    ("/dir/./index.html", "/dir/index.html"),
    ("/dir/%2e%2e/small.bin", "/small.bin"),
    ("/dir/%2E%2e/large.bin", "/large.bin"),
    ("/dir/.%2e/app.js", "/app.js"),
    ("/dir//../small.bin", "/small.bin"),
    ("/app.js/../dir/./", "/dir/"),
    ("/dir/.", "/dir/"),
    ("/dir/%2e", "/dir/"),
    ("/dir/..", "/"),
    ("/other/../dir", "/dir"),       # a directory without its slash: 301 to /dir/
    ("/../secret.txt", None),
    ("/dir/../../secret.txt", None),
    ("/%2e%2e/secret.txt", None),
    ("/dir/%2e%2e/%2E%2E/secret.txt", None),
    ("/..", None),
]


@pytest.mark.parametrize("target, names", DOT_SEGMENTS)
def test_dot_segments_are_removed_alike_on_both_faces(site, serve, target, names):
    (site.parent / "secret.txt").write_bytes(b"the secret")  # beside the root, never inside it
    server = serve(site, cache_max_file=4096)
    client = server.open()
    fast = client.request("GET", target)
    app = call_asgi(server.app, "GET", unquote(target), loop=server.loop)  # a server gives apps the decoded path
    for response in (fast, app):
        assert b"the secret" not in response.body
        if names is None:
            assert response.status == 404, target
        elif names == "/dir":
            assert response.status == 301 and urlsplit(response.header("location")).path == "/dir/"
        else:
            assert comparable(response) == comparable(client.request("GET", names)), target
    assert (fast.status, fast.body) == (app.status, app.body)
