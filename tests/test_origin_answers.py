"""What a CDN in front of ``python -m fastserve DIR`` is told, byte for byte, in-process.

Each test pins a rule where fastserve's static answers differed from what RFC 9110/9111 ask of
an origin (found by comparing them with nginx's, ``tests/tools/nginx_compare.py``), on the
server's fast path (each request reader) and on the ``StaticFiles`` app it runs, which answer
through the one decision (``staticanswer.decide``).
"""
from __future__ import annotations

import gzip
import os
import time
from pathlib import Path
from typing import List, Tuple

import pytest

from inprocess import call_asgi, request
from server_helpers import RawResponse, check_byteranges

MTIME = 1_700_000_000
SCRIPT = b"console.log('fastserve');\n" * 40


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    (root / "a.txt").write_bytes(b"0123456789" * 100)
    (root / "big.bin").write_bytes(bytes(range(256)) * 1200)  # above --cache-max-file: sent from the file
    (root / "empty.txt").write_bytes(b"")
    (root / "app.js").write_bytes(SCRIPT)
    (root / "app.js.gz").write_bytes(gzip.compress(SCRIPT, mtime=0))
    for path in root.iterdir():
        os.utime(path, (MTIME, MTIME))
    return root


def both(server, method: str, target: str, headers: List[Tuple[str, str]] = ()) -> Tuple[RawResponse, RawResponse]:
    """The fast path's answer and the served ``StaticFiles`` app's, to the same request."""
    fast = server.open().request(method, target, list(headers))
    app = call_asgi(server.app, method, target, headers, loop=server.loop)
    return fast, app


# -- RFC 9111: a 416 is no answer for a cache to keep ------------------------------------------


@pytest.mark.parametrize("name", ["a.txt", "big.bin", "app.js"])
def test_416_names_the_representation_but_gives_no_freshness(site, serve_cli, name):
    """A ``Cache-Control: public, max-age=60`` on a 416 let a shared cache store it and hand it to
    the next plain GET of the URL (one request with ``Range: bytes=999999-`` through a CDN made
    the file unreachable for a minute). The 416 keeps the validators and Vary, not the freshness."""
    server = serve_cli(str(site))
    plain = server.open().request("GET", f"/{name}")
    assert plain.header("cache-control") == "public, max-age=60"  # the file's own answers keep it
    for response in both(server, "GET", f"/{name}", [("Range", "bytes=999999-")]):
        assert response.status == 416
        assert response.header("content-range") == f"bytes */{(site / name).stat().st_size}"
        assert response.header("cache-control") is None and response.header("expires") is None
        assert response.header("etag") == plain.header("etag")
        assert response.header("last-modified") == plain.header("last-modified")
        assert response.header("vary") == plain.header("vary")
    for status, headers in ((206, [("Range", "bytes=0-3")]), (304, [("If-None-Match", plain.header("etag"))])):
        for response in both(server, "GET", f"/{name}", headers):
            assert response.status == status and response.header("cache-control") == "public, max-age=60"


# -- RFC 9110 section 14.1.1: an empty representation ------------------------------------------


@pytest.mark.parametrize("value", ["bytes=0-", "bytes=-5", "bytes=0-0", "bytes=0-0,-1", "bytes=5-,-1"])
def test_a_range_on_an_empty_file_gets_the_whole_empty_file(site, serve_cli, value):
    """``Range: bytes=-5`` on an empty file is satisfiable (section 14.1.1) and no 206 can carry
    a part of nothing: the answer is the whole file, 200 with no content, as nginx sends (also
    for a range from 0). It was 416."""
    server = serve_cli(str(site))
    for method in ("GET", "HEAD"):
        for response in both(server, method, "/empty.txt", [("Range", value)]):
            assert response.status == 200, (method, value)
            assert response.header("content-length") == "0" and response.body == b""
            assert response.header("content-range") is None
            assert response.header("etag") is not None
    for response in both(server, "GET", "/empty.txt", [("Range", "bytes=5-")]):  # past the end: unsatisfiable
        assert response.status == 416 and response.header("content-range") == "bytes */0"


# -- media types -------------------------------------------------------------------------------


def test_a_compressed_file_asked_for_by_its_own_name_is_labelled_compressed(site, serve_cli):
    """``/app.js.gz`` is sent as it is, without a Content-Encoding: it is gzip, not JavaScript
    (``text/javascript`` there made a browser or a CDN's minifier read gzip bytes as a script).
    The sibling answering ``/app.js`` for a gzip client keeps ``app.js``'s type."""
    server = serve_cli(str(site))
    for response in both(server, "GET", "/app.js.gz"):
        assert response.status == 200
        assert response.header("content-type") == "application/gzip"
        assert response.header("content-encoding") is None
        assert response.body == (site / "app.js.gz").read_bytes()
    for response in both(server, "GET", "/app.js", [("Accept-Encoding", "gzip")]):
        assert response.header("content-type") == "text/javascript; charset=utf-8"
        assert response.header("content-encoding") == "gzip"


# -- a directory's one URL ---------------------------------------------------------------------


def test_a_directory_without_its_slash_is_moved_permanently_query_kept(site, serve_cli):
    """301, as nginx and Apache answer it (it was 307, which no cache keeps without being told):
    the slash form is the directory's one URL; the query goes along. A Starlette-style
    ``StaticFiles`` keeps Starlette's 307."""
    from fastserve.staticfiles import StaticFiles

    (site / "docs").mkdir()
    (site / "docs" / "index.html").write_bytes(b"<p>docs</p>\n")
    server = serve_cli(str(site))
    for method in ("GET", "HEAD"):
        for response in both(server, method, "/docs?page=2&q=a%20b"):
            assert response.status == 301
            assert response.header("location").endswith("/docs/?page=2&q=a%20b")
    drop_in = call_asgi(StaticFiles(directory=site, html=True), "GET", "/docs?page=2")
    assert drop_in.status == 307 and drop_in.header("location").endswith("/docs/?page=2")


# -- a file written while it is read --------------------------------------------------------


def test_a_file_written_while_it_is_read_is_held_with_the_validators_of_its_bytes(site, monkeypatch):
    """A deploy that copies over a file in place can change it between the stat and the read:
    the bytes read then were held (and sent, for as long as the cache trusts its stat) under the
    old stat's ETag and Content-Length. The file is read again under the newer stat."""
    from fastserve._speedups.filecache import FileCache
    from fastserve._speedups.headers import make_etag

    path = site / "a.txt"
    real_pread = os.pread
    writes = []

    def pread_during_a_deploy(fd, count, offset):
        data = real_pread(fd, count, offset)
        if not writes:  # the deploy writes the new version just after the first read
            writes.append(True)
            path.write_bytes(b"the new version\n")
        return data

    monkeypatch.setattr(os, "pread", pread_during_a_deploy)
    entry = FileCache([site]).lookup("/a.txt")
    monkeypatch.undo()
    now = path.stat()
    assert entry.body == b"the new version\n"
    assert entry.etag == make_etag(now.st_mtime_ns, now.st_size)
    assert dict(entry.fields)[b"content-length"] == b"16"


# -- precompressed siblings ------------------------------------------------------------------


def test_a_sibling_older_than_its_file_is_not_sent(site, serve_cli):
    """``app.js`` changed after ``app.js.gz`` was made: gzip clients got the old script while
    others got the new one, under one URL (a CDN keeps both, by Vary). The stale sibling is left
    out: every client gets the current content (here compressed on the fly, or sent as it is)."""
    (site / "app.js").write_bytes(b"console.log('the new version');\n" * 60)
    os.utime(site / "app.js", (MTIME + 60, MTIME + 60))  # the .gz keeps MTIME: older
    server = serve_cli(str(site))
    current = (site / "app.js").read_bytes()
    for method in ("GET", "HEAD"):
        for response in both(server, method, "/app.js", [("Accept-Encoding", "gzip")]):
            assert response.status == 200
            if method == "GET":
                coded = response.header("content-encoding") == "gzip"
                assert (gzip.decompress(response.body) if coded else response.body) == current
    # a sibling as new as its file (or newer) is sent
    os.utime(site / "app.js.gz", (MTIME + 60, MTIME + 60))
    server = serve_cli(str(site), "--compress", "off")
    for response in both(server, "GET", "/app.js", [("Accept-Encoding", "gzip")]):
        assert response.header("content-encoding") == "gzip"
        assert response.body == (site / "app.js.gz").read_bytes()
        assert response.header("vary") == "Accept-Encoding"


# -- a modification time in the future ----------------------------------------------------------


def test_last_modified_is_never_later_than_the_date(site, serve_cli):
    """RFC 9110 section 8.8.2.1: a file whose mtime is ahead of the server's clock (unpacked or
    copied from a machine whose clock is ahead) is sent with the answer's Date, or earlier, as
    its Last-Modified (it was sent a day ahead, which a cache's heuristics read as "just
    changed" for a day); that date then answers If-Modified-Since with 304."""
    from fastserve._speedups.headers import parse_http_date

    ahead = time.time() + 86400
    os.utime(site / "a.txt", (ahead, ahead))
    os.utime(site / "big.bin", (ahead, ahead))
    server = serve_cli(str(site))
    for name in ("a.txt", "big.bin"):
        for response in both(server, "GET", f"/{name}"):
            date = response.header("date")  # the app's answer gets its Date from the server: now
            last_modified = response.header("last-modified")
            assert parse_http_date(last_modified.encode()) <= (parse_http_date(date.encode()) if date else time.time())
            for revalidated in both(server, "GET", f"/{name}", [("If-Modified-Since", last_modified)]):
                assert revalidated.status == 304 and revalidated.header("last-modified") == last_modified


def test_a_large_file_rewritten_in_place_is_never_sent_under_its_old_validators(site, serve_cli):
    """``cp`` over a file sent from its descriptor keeps the inode: within --cache-valid the new
    bytes went out under the old ETag and Content-Length (a CDN kept them so). The descriptor is
    checked on each request: the answer is the new file, with its own validators."""
    server = serve_cli(str(site), "--cache-valid", "3600")
    path = site / "big.bin"
    first = server.open().request("GET", "/big.bin")
    assert first.body == path.read_bytes()
    new = bytes(reversed(path.read_bytes()))[:200_000] + b"the new version"
    with open(path, "r+b") as rewritten:  # in place: the same inode
        rewritten.truncate(0)
        rewritten.write(new)
    os.utime(path, (MTIME + 60, MTIME + 60))
    for response in both(server, "GET", "/big.bin"):
        assert response.status == 200 and response.body == new
        assert response.header("content-length") == str(len(new))
        assert response.header("etag") != first.header("etag")
    # the file unchanged: answered from the cache, still the same
    again = server.open().request("GET", "/big.bin")
    assert again.body == new and again.header("etag") == response.header("etag")


# -- RFC 9110 section 15.3.7.2: the parts of a multipart/byteranges answer ------------------------

# Range value -> the parts sent, in order: overlapping or adjacent ranges merged (a server may,
# whatever their order), the rest in the order listed, a merged one where the first of its
# ranges was listed, an unsatisfiable one left out. One part left is a plain 206. A negative
# offset counts from the end of the file.
PART_ORDERS = [
    ("bytes=20-29,0-9", [(20, 29), (0, 9)]),
    ("bytes=0-9,20-29", [(0, 9), (20, 29)]),
    ("bytes=500-509,0-9,100-109", [(500, 509), (0, 9), (100, 109)]),
    ("bytes=-10,0-9", [(-10, -1), (0, 9)]),
    ("bytes=100-149,0-9,120-199", [(100, 199), (0, 9)]),
    ("bytes=100-109,0-9,110-119", [(100, 119), (0, 9)]),
    ("bytes=300-309,50-59,0-4,3-9", [(300, 309), (50, 59), (0, 9)]),
    ("bytes=50-59,999999-,0-9", [(50, 59), (0, 9)]),
    ("bytes=20-29,0-9,25-", [(20, -1), (0, 9)]),
    ("bytes=20-29,0-25", [(0, 29)]),
]


@pytest.mark.parametrize("name", ["a.txt", "big.bin"])
@pytest.mark.parametrize("value, parts", PART_ORDERS, ids=[value for value, _ in PART_ORDERS])
def test_byteranges_parts_come_in_the_order_listed(site, serve_cli, name, value, parts):
    """RFC 9110 section 15.3.7.2: the parts SHOULD come in the order their ranges are listed,
    leaving out only those that were coalesced or unsatisfiable (nginx keeps that order too). They
    were sorted by offset: a client reading them in the order it asked got them in another."""
    server = serve_cli(str(site))
    data = (site / name).read_bytes()
    parts = [(first % len(data), last % len(data)) for first, last in parts]
    for response in both(server, "GET", f"/{name}", [("Range", value)]):
        if len(parts) == 1:
            first, last = parts[0]
            assert response.status == 206 and response.header("content-range") == f"bytes {first}-{last}/{len(data)}"
            assert response.body == data[first:last + 1]
        else:
            check_byteranges(response, data, parts)
    # a HEAD gets the GET's fields: the same length for the same parts
    gets = both(server, "GET", f"/{name}", [("Range", value)])
    for head in both(server, "HEAD", f"/{name}", [("Range", value)]):
        assert head.status == 206 and head.body == b""
        assert head.header("content-length") == gets[0].header("content-length")


# -- a file past 4 GiB ---------------------------------------------------------------------------

HUGE_SIZE = 5 * 1024**3 + 7  # sparse: costs no disk
MARK_AT = 2**32 + 10  # where the bytes written into it lie, past every 32-bit offset


@pytest.fixture
def huge(site: Path) -> Path:
    path = site / "huge.bin"
    with open(path, "wb") as file:
        file.truncate(HUGE_SIZE)
        file.seek(MARK_AT)
        file.write(b"HELLO")
    os.utime(path, (MTIME, MTIME))
    return path


# (Range, status, Content-Range or the multipart parts, body)
HUGE_RANGES = [
    (f"bytes={MARK_AT}-{MARK_AT + 4}", 206, f"bytes {MARK_AT}-{MARK_AT + 4}/{HUGE_SIZE}", b"HELLO"),
    (f"bytes={MARK_AT + 3}-{MARK_AT + 3}", 206, f"bytes {MARK_AT + 3}-{MARK_AT + 3}/{HUGE_SIZE}", b"L"),
    ("bytes=-3", 206, f"bytes {HUGE_SIZE - 3}-{HUGE_SIZE - 1}/{HUGE_SIZE}", b"\0\0\0"),
    (f"bytes={HUGE_SIZE - 1}-", 206, f"bytes {HUGE_SIZE - 1}-{HUGE_SIZE - 1}/{HUGE_SIZE}", b"\0"),
    (f"bytes={MARK_AT}-{MARK_AT + 1},0-0", 206, [(MARK_AT, MARK_AT + 1), (0, 0)], None),
    (f"bytes={HUGE_SIZE}-", 416, f"bytes */{HUGE_SIZE}", b""),
    (f"bytes={2**33}-", 416, f"bytes */{HUGE_SIZE}", b""),
]


@pytest.mark.parametrize("value, status, where, body", HUGE_RANGES, ids=[each[0] for each in HUGE_RANGES])
def test_a_file_past_4_gib_answers_lengths_and_ranges_past_2_to_the_32(site, huge, serve_cli, value, status, where,
                                                                          body):
    """Content-Length, Content-Range and the bytes of a file over 4 GiB, on every face: offsets past
    2^32 are neither cut to 32 bits nor refused (a CDN fetching a video or a disk image in slices
    asks for them)."""
    from fastserve.responses import FileResponse

    server = serve_cli(str(site), "--compress", "off")
    for method in ("GET", "HEAD"):
        whole = server.open().request("HEAD", "/huge.bin")
        assert whole.status == 200 and whole.header("content-length") == str(HUGE_SIZE)
        answers = [(response, False) for response in both(server, method, "/huge.bin", [("Range", value)])]
        # FileResponse reads Range as Starlette does: its parts sorted by offset
        answers.append((call_asgi(FileResponse(huge), method, "/huge.bin", [("Range", value)], loop=server.loop), True))
        for response, parts_sorted in answers:
            assert response.status == status, (method, value)
            if isinstance(where, list):  # the parts, in the order listed
                boundary = response.content_type_boundary()
                expected = b"".join(
                    b"%s--%s\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes %d-%d/%d\r\n\r\n%s"
                    % (b"\r\n" if i else b"", boundary, first, last, HUGE_SIZE, b"HE" if first == MARK_AT else b"\0")
                    for i, (first, last) in enumerate(sorted(where) if parts_sorted else where)
                ) + b"\r\n--%s--" % boundary
                assert response.header("content-length") == str(len(expected))
                assert response.body == (expected if method == "GET" else b"")
            else:
                assert response.header("content-range") == where
                assert response.header("content-length") == str(len(body))
                assert response.body == (body if method == "GET" else b"")


# -- an operator's --header fields beside an answer's own -----------------------------------------

# (method, target, request fields, status, whether the answer is a file's: the cache policy's
# Cache-Control) for the site below with a docs/ directory; "{etag}" is /app.js's ETag.
ANSWER_KINDS = [
    ("GET", "/a.txt", [], 200, True), ("HEAD", "/a.txt", [], 200, True),
    ("GET", "/big.bin", [], 200, True), ("HEAD", "/big.bin", [], 200, True),
    ("GET", "/app.js", [("Accept-Encoding", "gzip")], 200, True),
    ("GET", "/app.js", [("If-None-Match", "{etag}")], 304, True),
    ("HEAD", "/app.js", [("If-None-Match", "{etag}")], 304, True),
    ("GET", "/a.txt", [("Range", "bytes=0-3")], 206, True),
    ("GET", "/big.bin", [("Range", "bytes=0-3,9-9")], 206, True),
    ("HEAD", "/big.bin", [("Range", "bytes=0-3")], 206, True),
    ("GET", "/a.txt", [("Range", "bytes=999999-")], 416, False),
    ("HEAD", "/a.txt", [("Range", "bytes=999999-")], 416, False),
    ("GET", "/app.js", [("If-Match", '"other"')], 412, False),
    ("GET", "/app.js", [("Accept-Encoding", "identity;q=0, br")], 406, False),
    ("GET", "/missing", [], 404, False), ("HEAD", "/missing", [], 404, False),
    ("GET", "/docs", [], 301, False),
    ("POST", "/a.txt", [], 405, False), ("OPTIONS", "/a.txt", [], 405, False),
    ("GET", "/%zz", [], 400, False),
]
OPERATOR = [("Cache-Control", "private, max-age=5"), ("Content-Type", "application/x-operator"),
            ("X-Frame-Options", "DENY")]


def _ask(server, method: str, target: str, fields=()) -> RawResponse:
    """One request on a new connection, waited for (an app may answer from a thread)."""
    client = server.open().send(request(method, target, fields), [method == "HEAD"])
    return client.wait_for(1)[0]


def _kinds(server):
    """Each ANSWER_KINDS request's answer from ``server``, checked to carry no field twice."""
    etag = _ask(server, "GET", "/app.js").header("etag")
    out = []
    for method, target, fields, status, is_file in ANSWER_KINDS:
        response = _ask(server, method, target, [(n, v.format(etag=etag)) for n, v in fields])
        case = (method, target, fields)
        assert response.status == status, case
        names = [name for name, _ in response.headers]
        assert sorted(set(names)) == sorted(names), (case, response.headers)  # every field once
        out.append((case, is_file, response))
    return out


@pytest.fixture
def docs(site):
    (site / "docs").mkdir()
    (site / "docs" / "index.html").write_bytes(b"<p>docs</p>\n")
    return site


def test_a_static_apps_own_fields_win_over_the_operators_on_every_answer(docs, serve):
    """A ``StaticFiles(answers="static", cache_policy=...)`` app run with ``--header
    Cache-Control: ...`` sent two Cache-Control fields on every file answer (and two Content-Type
    with ``--header Content-Type``, on errors too): the fast path put the server's fields before
    the answer's own whatever their names. As an app's own field wins on the ASGI face, the
    answer's own field wins in every head the server writes (fast path, 405, 301, 400, admin
    paths), each field once; the operator's fields go where the answer has none of that name, on
    errors too, but for the representation metadata a 304 leaves out (RFC 9110 section 15.4.5).
    The same app run through the ASGI bridge gets the same values."""
    from fastserve.cachepolicy import CachePolicy
    from fastserve.exceptions import HTTPException
    from fastserve.responses import PlainTextResponse
    from fastserve.staticfiles import StaticFiles

    def static_app():
        return StaticFiles(directory=docs, html=True, answers="static", precompressed=True,
                           cache_policy=CachePolicy(max_age=30))

    fast = serve(static_app(), headers=OPERATOR)
    assert fast.state.static_only  # answered on the fast path
    inner = static_app()

    async def bridged(scope, receive, send):  # the same app, called through the ASGI bridge
        try:
            await inner(scope, receive, send)
        except HTTPException as exc:  # what Starlette's exception middleware answers for it
            await PlainTextResponse(exc.detail, exc.status_code, exc.headers)(scope, receive, send)

    bridge = serve(bridged, headers=OPERATOR)
    assert not bridge.state.static_only
    for (case, is_file, mine), (_, _, theirs) in zip(_kinds(fast), _kinds(bridge)):
        assert mine.header("x-frame-options") == "DENY", case
        wanted = "public, max-age=30" if is_file else "private, max-age=5"
        assert mine.header("cache-control") == wanted, case
        assert (theirs.header("cache-control"), (theirs.header("content-type") or "").split(";")[0]) == (
            mine.header("cache-control"), (mine.header("content-type") or "").split(";")[0]), case  # boundaries aside
        if mine.status in (200, 206) and case[0] == "GET":
            assert mine.header("content-type") != "application/x-operator", case
        if mine.status == 304:  # a cache would relabel the file it stored (RFC 9111 section 4.3.4)
            assert mine.header("content-type") is None, case
    for server in (fast, bridge):
        health = _ask(server, "GET", "/_fastserve/health")
        assert (health.status, health.header("cache-control")) == (200, "no-store")
        assert health.header("content-type").startswith("text/plain")


def test_an_operators_cache_control_header_is_the_directorys_file_policy(docs, serve_cli):
    """For a directory, ``--header 'Cache-Control: ...'`` (an nginx ``add_header Cache-Control``
    carried over) is the cache policy of every file: a file's 200, 206, 304 and HEAD carry the
    operator's value alone (beside the policy's, two ``max-age`` a cache takes the first of or
    reads as stale: RFC 9111 section 4.2.1), and a miss, an error, a 416 or a redirect carry none,
    as nginx's ``add_header`` skips them (a year's ``max-age`` on a 404 has a CDN keep the miss
    after the file is deployed). Other ``--header`` fields go on every answer, errors included."""
    wanted = "public, max-age=31536000"
    server = serve_cli(str(docs), "--header", f"Cache-Control: {wanted}", "--header", "X-Frame-Options: DENY",
                       "--max-age", "120")
    for case, is_file, response in _kinds(server):
        assert response.header("cache-control") == (wanted if is_file else None), case
        assert response.header("x-frame-options") == "DENY", case
    health = server.open().request("GET", "/_fastserve/health")
    assert health.header("cache-control") == "no-store"
    # the StaticFiles app the directory runs (for what the fast path hands it) has the same policy
    app = call_asgi(server.app, "GET", "/app.js")
    assert app.header("cache-control") == wanted
    # without it, the cache policy's
    plain = serve_cli(str(docs), "--max-age", "120").open().request("GET", "/app.js")
    assert plain.header_values("cache-control") == ["public, max-age=120"]


def test_an_operators_field_is_left_out_where_the_connection_answers_with_its_own(serve):
    """The connection's own answers (a malformed request's 400, a 405 before any lookup, the
    admin paths) carry their own Content-Type and Cache-Control once, for an app run with
    ``--header Content-Type`` (an API's default) and ``--header Cache-Control``."""
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    server = serve(app, headers=OPERATOR)
    client = server.open()
    answered = client.request("GET", "/")
    assert [answered.header(n) for n, _ in OPERATOR] == [v for _, v in OPERATOR]
    health = server.open().request("GET", "/_fastserve/health")
    assert (health.header("cache-control"), health.header("x-frame-options")) == ("no-store", "DENY")
    assert health.header("content-type").startswith("text/plain")
    refused = server.open().send(b"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n").parsed()[-1]
    assert refused.status == 400 and refused.header("content-type").startswith("text/plain")
    assert (refused.header("cache-control"), refused.header("x-frame-options")) == ("private, max-age=5", "DENY")
    broken = server.open().send(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
    bad = broken.parsed()[-1]
    assert bad.status == 400 and bad.header("content-type").startswith("text/plain")


# -- Vary on every answer for a file with other representations ----------------------------------

# (request fields, the status) for /app.js, which has a .gz sibling; "{etag}" and "{gz_etag}"
# are the identity's and the sibling's ETags.
VARY_CASES = [
    ([], 200),
    ([("Accept-Encoding", "gzip")], 200),
    ([("Accept-Encoding", "br;q=0.5, gzip;q=0.5")], 200),
    ([("If-None-Match", "{etag}")], 304),
    ([("Accept-Encoding", "gzip"), ("If-None-Match", "{gz_etag}")], 304),
    ([("If-Modified-Since", "Tue, 14 Nov 2023 22:13:20 GMT")], 304),
    ([("Range", "bytes=0-3")], 206),
    ([("Range", "bytes=0-3,9-9")], 206),
    ([("Accept-Encoding", "gzip"), ("Range", "bytes=0-3")], 200),
    ([("Range", "bytes=999999-")], 416),
    ([("If-Match", '"other"')], 412),
    ([("Accept-Encoding", "identity;q=0, br")], 406),
]


@pytest.mark.parametrize("fields, status", VARY_CASES, ids=[str(fields) for fields, _ in VARY_CASES])
def test_every_answer_for_a_file_with_siblings_says_it_varies_once(site, serve_cli, fields, status):
    """A cache keys a URL's answers by Vary: each answer for a file that has other
    representations (200 in each coding, 304, 206, 416, 412, 406; GET and HEAD) carries
    ``Vary: Accept-Encoding`` exactly once, on the fast path and StaticFiles alike; a file that has
    none carries no Vary."""
    server = serve_cli(str(site), "--compress", "off")
    etag = server.open().request("GET", "/app.js").header("etag")
    gz_etag = server.open().request("GET", "/app.js", [("Accept-Encoding", "gzip")]).header("etag")
    headers = [(name, value.format(etag=etag, gz_etag=gz_etag)) for name, value in fields]
    for method in ("GET", "HEAD"):
        for response in both(server, method, "/app.js", headers):
            assert response.status == status, (method, headers)
            assert response.header_values("vary") == ["Accept-Encoding"], (method, headers)
        for response in both(server, method, "/a.txt", [(n, v) for n, v in headers if n != "If-None-Match"]):
            assert response.header_values("vary") == [], (method, headers)
