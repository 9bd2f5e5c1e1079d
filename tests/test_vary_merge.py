"""An operator's ``--header Vary`` joins the answer's own ``Vary`` (RFC 9110 section 12.5.5).

``Vary`` lists the request fields an answer was chosen by; the answer's own (a file sent in an
encoding: ``Accept-Encoding``; a listing: ``Accept``; an app's) and the operator's (``Origin``
for a CDN in front of a CORS-aware app) both hold, so a response carries one ``Vary`` naming
every member of both, each once. The operator's value used to be dropped wherever the answer
had a ``Vary`` of its own, on every face: an app's answer, the static fast path, a listing.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from fastserve._speedups.headers import vary_union
from inprocess import request

TEXT = b"".join(b"line %04d of a text that compresses\n" % i for i in range(100))


@pytest.mark.parametrize("first, second, merged", [
    (b"Accept-Encoding", b"Origin", b"Accept-Encoding, Origin"),
    (b"Accept-Encoding", b"accept-encoding", b"Accept-Encoding"),   # field names have no case
    (b"Accept,Accept-Encoding", b"Origin, ACCEPT", b"Accept, Accept-Encoding, Origin"),
    (b"Accept-Encoding", b"*", b"*"),                               # varies on more than fields
    (b"*", b"Origin", b"*"),
    (b"Accept-Encoding, , Origin", b"Origin", b"Accept-Encoding, , Origin"),  # nothing to add: as written
    (b" , Accept", b"Origin,,", b"Accept, Origin"),                  # empty members dropped (section 5.6.1.2)
    (b"", b"Origin", b"Origin"),
])
def test_vary_union(first, second, merged):
    assert vary_union(first, second) == merged


def app_sending(*fields, status=200):
    async def app(scope, receive, send):
        body = b"" if status == 304 else b"hi"
        await send({"type": "http.response.start", "status": status,
                    "headers": list(fields) + [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    return app


@pytest.mark.parametrize("fields, status, wanted", [
    ([(b"vary", b"Accept-Encoding")], 200, "Accept-Encoding, Origin"),
    ([(b"VARY", b"Accept-Encoding")], 200, "Accept-Encoding, Origin"),
    ([(b"vary", b"Accept-Encoding")], 304, "Accept-Encoding, Origin"),
    ([(b"vary", b"origin, Accept")], 200, "origin, Accept"),
    ([(b"vary", b"Accept"), (b"x-a", b"1"), (b"Vary", b"Accept-Encoding")], 200, "Accept, Accept-Encoding, Origin"),
    ([(b"vary", b"*")], 200, "*"),
    ([], 200, "Origin"),
])
def test_an_apps_vary_takes_the_operators_members(serve, fields, status, wanted):
    response = serve(app_sending(*fields, status=status), headers=[("Vary", "Origin"), ("X-Frame-Options", "DENY")]) \
        .open().request("GET", "/")
    assert response.status == status
    assert response.header_values("vary") == [wanted]  # one field
    assert response.header("x-frame-options") == "DENY"
    assert response.header_values("x-a") == (["1"] if status == 200 and len(fields) == 3 else [])


def test_several_operator_vary_fields_are_one(serve):
    response = serve(app_sending((b"vary", b"accept-encoding")),
                     headers=[("Vary", "Origin"), ("Vary", "Accept-Encoding, Cookie")]).open().request("GET", "/")
    assert response.header_values("vary") == ["accept-encoding, Origin, Cookie"]
    plain = serve(app_sending(), headers=[("Vary", "Origin"), ("Vary", "Cookie")]).open().request("GET", "/")
    assert plain.header_values("vary") == ["Origin, Cookie"]


def ask(client, method, target, headers=()):
    """One request's answer, waited for (an app may answer from a worker thread)."""
    client.send(request(method, target, headers), [method == "HEAD"])
    return client.wait_for(len(client.heads))[-1]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "list").mkdir(parents=True)
    (root / "app.js").write_bytes(TEXT)
    (root / "app.js.gz").write_bytes(gzip.compress(TEXT, mtime=0))
    (root / "pic.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / "list" / "a.txt").write_bytes(b"a\n")
    return root


def test_the_static_answers_vary_takes_the_operators_members(site, serve):
    """A ``StaticFiles(answers="static")`` app answered on the fast path, and the same app called
    through the ASGI bridge: every answer with a Vary of its own (200 in either representation,
    304, 412, 406, 206, 416) names Accept-Encoding and the operator's Origin once; the others
    (a file with one representation, a 404, a 405) carry the operator's alone."""
    from fastserve.staticfiles import StaticFiles

    def app():
        return StaticFiles(directory=site, answers="static", precompressed=True)

    fast = serve(app(), headers=[("Vary", "Origin")])
    assert fast.state.static_only
    inner = app()

    async def bridged(scope, receive, send):
        await inner(scope, receive, send)

    bridge = serve(bridged, headers=[("Vary", "Origin")])
    for server in (fast, bridge):
        client = server.open()
        etag = ask(client, "GET", "/app.js").header("etag")
        for method, target, headers, status in (
            ("GET", "/app.js", [("Accept-Encoding", "gzip")], 200),
            ("HEAD", "/app.js", [("Accept-Encoding", "gzip")], 200),
            ("GET", "/app.js", [], 200),
            ("GET", "/app.js", [("If-None-Match", etag)], 304),
            ("GET", "/app.js", [("If-Match", '"other"')], 412),
            ("GET", "/app.js", [("Accept-Encoding", "identity;q=0, br")], 406),
            ("GET", "/app.js", [("Range", "bytes=0-3")], 206),
            ("GET", "/app.js", [("Range", "bytes=99999-")], 416),
        ):
            response = ask(client, method, target, headers)
            assert response.status == status, (server is fast, method, headers)
            assert response.header_values("vary") == ["Accept-Encoding, Origin"], (server is fast, method, headers)
        assert ask(client, "GET", "/pic.png").header_values("vary") == ["Origin"]
    assert fast.open().request("GET", "/missing").header_values("vary") == ["Origin"]
    assert fast.open().request("DELETE", "/app.js").header_values("vary") == ["Origin"]


def test_a_directory_may_be_given_a_vary(site, serve_cli):
    """``--header Vary`` was refused for a directory, since it went out beside the answer's own;
    merged, it is an operator's field as any other: compressed on the fly, precompressed and
    listed answers name their own members and the operator's, once."""
    server = serve_cli(str(site), "--header", "Vary: Origin", "--listing")
    client = server.open()
    assert ask(client, "GET", "/app.js", [("Accept-Encoding", "gzip")]).header_values("vary") == [
        "Accept-Encoding, Origin"]
    assert ask(client, "GET", "/pic.png").header_values("vary") == ["Origin"]
    listing = ask(client, "GET", "/list/")
    assert listing.status == 200 and listing.header_values("vary") == ["Accept, Accept-Encoding, Origin"]
    assert ask(client, "GET", "/missing").header_values("vary") == ["Origin"]
