"""Hostile multipart bodies through fastserve's own form parser, held to Starlette's: the same
fields and files (names, filenames as sent, ``../`` and NUL included, sizes), or the same
refusal, for parts without headers or names, 10,000 parts, ``filename*`` (RFC 5987: Starlette
and python-multipart read no extended parameter, so such a part is a text field), preambles,
bare LF, header blocks past the limit. One answer differs on purpose: a body whose closing
boundary never comes is refused (400), where Starlette returns the parts before it and drops
the cut one. Every spooled file, on disk or in memory, is closed when the request ends,
answered, refused or failed: the process holds no more descriptors than before.
"""
from __future__ import annotations

import asyncio
import gc
import os
from typing import Any, List, Tuple

import pytest
from starlette.requests import Request as StarletteRequest

from fastserve.requests import Request
from fastserve.responses import PlainTextResponse
from fastserve.routing import Route, Router
from fastserve.testclient import TestClient

BOUNDARY = b"b0undary"
CONTENT_TYPE = b"multipart/form-data; boundary=" + BOUNDARY
END = b"--" + BOUNDARY + b"--\r\n"


def part(headers: List[bytes], data: bytes) -> bytes:
    return b"--" + BOUNDARY + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + data + b"\r\n"


def disposition(rest: bytes) -> bytes:
    return b"Content-Disposition: form-data; " + rest


BODIES = {
    "no-headers": part([], b"value") + END,
    "no-disposition": part([b"Content-Type: text/plain"], b"value") + END,
    "filename-but-no-name": part([disposition(b'filename="f.txt"')], b"v") + END,
    "name-star-only": part([disposition(b"name*=UTF-8''%E2%82%AC")], b"v") + END,
    "10000-fields": b"".join(part([disposition(b'name="f%d"' % i)], b"v") for i in range(10_000)) + END,
    "10000-files": b"".join(part([disposition(b'name="f"; filename="f%d"' % i)], b"v") for i in range(10_000)) + END,
    "10000-parts-without-headers": (b"--" + BOUNDARY + b"\r\n\r\n\r\n") * 10_000 + END,
    "1000-files": b"".join(part([disposition(b'name="f"; filename="f%d"' % i)], b"v" * 100) for i in range(1000)) + END,
    "dot-dot-filename": part([disposition(b'name="f"; filename="../../etc/passwd"')], b"v") + END,
    "nul-in-filename": part([disposition(b'name="f"; filename="a\x00b.txt"')], b"v") + END,
    "nul-in-name": part([disposition(b'name="f\x00g"')], b"v") + END,
    "backslashes-in-filename": part([disposition(b'name="f"; filename="C:\\\\x\\\\y.txt"')], b"v") + END,
    "empty-filename": part([disposition(b'name="f"; filename=""')], b"v") + END,
    "filename-star": part([disposition(b"name=\"f\"; filename*=UTF-8''%E2%82%AC%20rates.txt")], b"v") + END,
    "filename-and-filename-star": part([disposition(b"name=\"f\"; filename=\"euro.txt\"; filename*=UTF-8''%E2%82%AC.txt")],
                                       b"v") + END,
    "filename-star-bad-escape": part([disposition(b"name=\"f\"; filename*=UTF-8''%ZZ")], b"v") + END,
    "filename-star-latin1": part([disposition(b"name=\"f\"; filename*=iso-8859-1'en'%A3%20rates")], b"v") + END,
    "two-dispositions": part([disposition(b'name="a"'), disposition(b'name="b"; filename="x"')], b"x") + END,
    "escaped-quote-in-name": part([disposition(b'name="a\\"b"')], b"x") + END,
    "empty-body": b"",
    "closing-boundary-only": END,
    "preamble-and-epilogue": b"preamble\r\n" + part([disposition(b'name="a"')], b"x") + END + b"epilogue",
    "part-headers-too-large": part([disposition(b'name="a"'), b"X: " + b"h" * 20_000], b"x") + END,
    "header-line-without-colon": part([disposition(b'name="a"'), b"Garbage"], b"x") + END,
    "bare-lf": b"--" + BOUNDARY + b"\nContent-Disposition: form-data; name=\"a\"\n\nx\n--" + BOUNDARY + b"--\n",
    "closing-boundary-without-crlf": part([disposition(b'name="a"')], b"x") + END[:-2],
    "latin1-value": part([disposition(b'name="a"')], b"\xe9") + END,
    "field-past-1-mib": part([disposition(b'name="a"')], b"x" * (1024 * 1024 + 1)) + END,
    "file-on-disk": part([disposition(b'name="a"; filename="big"')], b"x" * (3 * 1024 * 1024)) + END,
}


async def read_form(request_class: Any, body: bytes) -> Any:
    """What ``request_class(scope, receive).form()`` makes of ``body`` (sent in 64 KiB pieces):
    each item (a file as its name, filename and bytes), or the refusal's class and message."""
    pieces = [body[i:i + 65536] for i in range(0, len(body), 65536)] or [b""]

    async def receive() -> dict:
        if not pieces:
            return {"type": "http.disconnect"}
        piece = pieces.pop(0)
        return {"type": "http.request", "body": piece, "more_body": bool(pieces)}

    scope = {"type": "http", "method": "POST", "path": "/", "query_string": b"",
             "headers": [(b"content-type", CONTENT_TYPE)]}
    try:
        form = await request_class(scope, receive).form()
    except Exception as exc:
        return type(exc).__name__, getattr(exc, "message", str(exc))
    items: List[Tuple[str, Any]] = []
    for name, value in form.multi_items():
        if isinstance(value, str):
            items.append((name, value))
        else:
            items.append((name, ("file", value.filename, await value.read())))
    await form.close()
    return items


@pytest.mark.parametrize("name", sorted(BODIES))
def test_a_hostile_body_is_read_as_starlette_reads_it(name: str) -> None:
    ours = asyncio.run(read_form(Request, BODIES[name]))
    theirs = asyncio.run(read_form(StarletteRequest, BODIES[name]))
    assert ours == theirs


@pytest.mark.parametrize("cut", ["inside-a-value", "inside-a-file", "before-the-closing-boundary"])
def test_a_body_whose_closing_boundary_never_comes_is_refused(cut: str) -> None:
    """Starlette drops the cut part and returns the others; fastserve refuses the whole body."""
    body = part([disposition(b'name="a"')], b"one") + part([disposition(b'name="f"; filename="f"')], b"x" * 200_000)
    length = {"inside-a-value": body.index(b"one") + 2, "inside-a-file": len(body) - 1000,
              "before-the-closing-boundary": len(body)}[cut]
    assert asyncio.run(read_form(Request, body[:length])) == (
        "MultiPartException", "Incomplete multipart body: the closing boundary is missing.")


def descriptors() -> int:
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


async def upload(request: Request) -> PlainTextResponse:
    form = await request.form()
    sizes = [len(await value.read()) for _, value in form.multi_items() if not isinstance(value, str)]
    if request.query_params.get("fail"):
        raise RuntimeError("the app fails after reading the form")
    return PlainTextResponse(" ".join(map(str, sizes)))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_spooled_files_are_closed_whatever_becomes_of_the_request() -> None:
    files = [part([disposition(b'name="f"; filename="f%d"' % i)], b"x" * 2 * 1024 * 1024) for i in range(3)]
    cases = [
        ("", b"".join(files) + END, 200),                      # past the spool size: on disk
        ("?fail=1", b"".join(files) + END, 500),               # the app fails after reading them
        ("", BODIES["10000-files"], 400),                      # refused at the 1001st file
        ("", b"".join(files)[:-100], 400),                     # cut before its closing boundary
    ]
    with TestClient(Router(routes=[Route("/up", upload, methods=["POST"])]), raise_server_exceptions=False) as client:
        headers = {"content-type": CONTENT_TYPE.decode()}
        client.post("/up", content=BODIES["1000-files"], headers=headers)
        before = descriptors()
        for query, body, status in cases:
            assert client.post("/up" + query, content=body, headers=headers).status_code == status
            assert descriptors() == before, query
