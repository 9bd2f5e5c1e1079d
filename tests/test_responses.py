"""fastserve.responses driven as real ASGI callables, and through Starlette's TestClient."""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest
import starlette.responses
from starlette.testclient import TestClient

from fastserve._speedups.filecache import described_file
from fastserve._speedups.headers import content_type_for, format_http_date, make_etag
from fastserve._speedups.requesthead import RequestHead
from fastserve._speedups.staticanswer import decide
from fastserve.background import BackgroundTask, BackgroundTasks
from fastserve.concurrency import iterate_in_threadpool, run_in_threadpool, run_until_first_complete
from fastserve.datastructures import URL, MutableHeaders
from fastserve.exceptions import ClientDisconnect
from fastserve.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --------------------------------------------------------------------------- ASGI harness


class Recorder:
    """An ASGI ``send`` that keeps every message, plus a log other code can append events to."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.messages: list[dict[str, Any]] = []
        self.log: list[str] = []
        self.fail_after = fail_after

    async def __call__(self, message: dict[str, Any]) -> None:
        if self.fail_after is not None and len(self.messages) >= self.fail_after:
            raise OSError("client went away")
        self.messages.append(message)
        self.log.append(message["type"])

    @property
    def start(self) -> dict[str, Any]:
        assert self.messages[0]["type"].endswith("http.response.start")
        return self.messages[0]

    @property
    def status(self) -> int:
        return self.start["status"]

    @property
    def headers(self) -> dict[str, str]:
        pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.start["headers"]]
        names = [name for name, _ in pairs if name != "set-cookie"]
        assert len(names) == len(set(names)), f"a header field sent twice: {names}"
        return dict(pairs)

    @property
    def body(self) -> bytes:
        bodies = [m for m in self.messages if m["type"].endswith("http.response.body")]
        assert bodies, "no body message"
        assert all(m.get("more_body", False) for m in bodies[:-1]), "more_body=False before the end"
        assert not bodies[-1].get("more_body", False), "the last body message must end the response"
        return b"".join(bytes(m["body"]) for m in bodies)


def make_receive(disconnect_when: anyio.Event | None = None) -> Any:
    """An ASGI ``receive``: the (empty) request body, then a disconnect once the event is set (or never)."""
    sent_request = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        if disconnect_when is None:
            await anyio.sleep_forever()
        else:
            await disconnect_when.wait()
        return {"type": "http.disconnect"}

    return receive


class DisconnectingClient(Recorder):
    """Records messages and 'disconnects' (sets ``gone``) after the third body message."""

    def __init__(self) -> None:
        super().__init__()
        self.gone = anyio.Event()

    async def __call__(self, message: dict[str, Any]) -> None:
        await super().__call__(message)
        if len([m for m in self.messages if m["type"] == "http.response.body"]) == 3:
            self.gone.set()


def http_scope(
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
    spec_version: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "method": method,
        "path": "/",
        "query_string": b"",
        "headers": headers or [],
        "asgi": {"version": "3.0"},
    }
    if spec_version is not None:
        scope["asgi"]["spec_version"] = spec_version
    scope.update(extra)
    return scope


async def call(response: Any, scope: dict[str, Any] | None = None, receive: Any = None, send: Any = None) -> Recorder:
    recorder = send or Recorder()
    with anyio.fail_after(10):
        await response(scope or http_scope(), receive or make_receive(), recorder)
    return recorder


# --------------------------------------------------------------------------- Response and friends


async def test_response_sends_status_headers_and_body() -> None:
    sent = await call(Response(b"hello", status_code=201, headers={"X-Thing": "1"}, media_type="application/x-y"))
    assert sent.status == 201
    assert sent.start["headers"] == [
        (b"x-thing", b"1"),
        (b"content-length", b"5"),
        (b"content-type", b"application/x-y"),
    ]
    assert sent.body == b"hello"
    assert len(sent.messages) == 2


@pytest.mark.parametrize(
    ("content", "body"),
    [(None, b""), (b"raw", b"raw"), ("caf\u00e9", "caf\u00e9".encode()), (memoryview(b"view"), b"view")],
)
async def test_response_renders_content(content: Any, body: bytes) -> None:
    response = Response(content)
    assert bytes(response.body) == body
    assert response.headers["content-length"] == str(len(body))
    assert "content-type" not in response.headers
    assert (await call(response)).body == body


def test_non_contiguous_memoryview_is_copied_once() -> None:
    strided = memoryview(b"abcdef")[::2]
    assert Response(strided).body == b"ace"


@pytest.mark.parametrize("status_code", [101, 204, 304])
def test_no_content_length_for_bodiless_statuses(status_code: int) -> None:
    assert "content-length" not in Response(status_code=status_code).headers


@pytest.mark.parametrize(
    ("media_type", "expected"),
    [
        ("text/plain", "text/plain; charset=utf-8"),
        ("text/csv; charset=latin-1", "text/csv; charset=latin-1"),
        ("text/html; Charset=ascii", "text/html; Charset=ascii"),
        ("application/json", "application/json"),
    ],
)
def test_text_media_types_get_a_charset(media_type: str, expected: str) -> None:
    assert Response("x", media_type=media_type).headers["content-type"] == expected


def test_given_headers_win_over_computed_ones() -> None:
    response = PlainTextResponse("abc", headers={"Content-Length": "99", "Content-Type": "text/x"})
    assert response.raw_headers == [(b"content-length", b"99"), (b"content-type", b"text/x")]


def test_charset_class_attribute_is_used() -> None:
    class Latin1Response(PlainTextResponse):
        charset = "latin-1"

    response = Latin1Response("caf\u00e9")
    assert response.body == b"caf\xe9"
    assert response.headers["content-type"] == "text/plain; charset=latin-1"


def test_headers_is_a_live_view_over_raw_headers() -> None:
    response = Response(b"x")
    assert isinstance(response.headers, MutableHeaders)
    assert response.headers is response.headers
    response.headers["x-added"] = "1"
    assert (b"x-added", b"1") in response.raw_headers
    response.raw_headers.append((b"x-raw", b"2"))
    assert response.headers["x-raw"] == "2"


SAME_AS_STARLETTE: list[tuple[type, tuple[Any, ...], dict[str, Any]]] = [
    (Response, (b"body",), {}),
    (Response, ("text",), {"media_type": "text/plain"}),
    (Response, (), {"status_code": 204}),
    (Response, ("x",), {"headers": {"Content-Type": "a/b", "X-A": "1"}}),
    (HTMLResponse, ("<h1>Hi</h1>",), {}),
    (PlainTextResponse, ("plain",), {"status_code": 404}),
    (JSONResponse, ({"a": [1, 2.5, None, True], "caf\u00e9": "\u2603"},), {}),
    (JSONResponse, (None,), {}),
    (JSONResponse, ([],), {"media_type": "application/vnd.api+json"}),
    (RedirectResponse, ("/next page?q=a b&x=%20",), {}),
    (RedirectResponse, ("https://example.com/caf\u00e9#frag",), {"status_code": 301}),
    (RedirectResponse, (URL("http://e.com/a"),), {"headers": {"X-Why": "moved"}}),
]


@pytest.mark.parametrize(("cls", "args", "kwargs"), SAME_AS_STARLETTE)
async def test_same_wire_output_as_starlette(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    ours = cls(*args, **kwargs)
    theirs_args = tuple(str(a) if isinstance(a, URL) else a for a in args)
    theirs = getattr(starlette.responses, cls.__name__)(*theirs_args, **kwargs)
    assert ours.status_code == theirs.status_code
    assert ours.raw_headers == theirs.raw_headers
    assert bytes(ours.body) == bytes(theirs.body)
    assert (await call(ours)).messages == (await call(theirs)).messages


def test_json_response_is_compact_utf8_and_rejects_nan() -> None:
    assert JSONResponse({"k": "\u00e9", "n": [1, 2]}).body == '{"k":"\u00e9","n":[1,2]}'.encode()
    with pytest.raises(ValueError):
        JSONResponse(float("nan"))


def test_redirect_response_defaults() -> None:
    response = RedirectResponse("/elsewhere")
    assert response.status_code == 307
    assert response.headers["location"] == "/elsewhere"
    assert response.headers["content-length"] == "0"
    assert response.body == b""


async def test_background_task_runs_after_the_body_is_sent() -> None:
    sent = Recorder()

    async def note(word: str) -> None:
        sent.log.append(f"async:{word}")

    def blocking(word: str) -> None:
        sent.log.append(f"sync:{word}:{threading.current_thread() is threading.main_thread()}")

    tasks = BackgroundTasks([BackgroundTask(note, "first")])
    tasks.add_task(blocking, word="second")
    await call(Response(b"ok", background=tasks), send=sent)
    assert sent.log == ["http.response.start", "http.response.body", "async:first", "sync:second:False"]


async def test_response_on_a_websocket_scope_is_a_denial_response() -> None:
    sent = await call(PlainTextResponse("nope", status_code=403), scope={"type": "websocket", "headers": []})
    assert [m["type"] for m in sent.messages] == ["websocket.http.response.start", "websocket.http.response.body"]
    assert sent.messages[0]["status"] == 403
    assert sent.messages[1]["body"] == b"nope"


# --------------------------------------------------------------------------- cookies

COOKIE_CALLS: list[dict[str, Any]] = [
    {"key": "plain"},
    {"key": "session", "value": "abc123", "max_age": 3600, "path": "/app", "domain": "example.com"},
    {"key": "flags", "value": "1", "secure": True, "httponly": True, "samesite": "strict"},
    {"key": "none", "value": "1", "samesite": None, "path": None},
    {"key": "exp", "value": "v", "expires": 60},
    {"key": "exp", "value": "v", "expires": "Thu, 01 Jan 2099 00:00:00 GMT"},
    {"key": "exp", "value": "v", "expires": datetime(2099, 1, 2, 3, 4, 5, tzinfo=timezone.utc)},
    {"key": "quoted", "value": "needs quoting; yes"},
]


@pytest.mark.parametrize("kwargs", COOKIE_CALLS)
def test_set_cookie_matches_starlette(kwargs: dict[str, Any]) -> None:
    ours, theirs = Response(), starlette.responses.Response()
    ours.set_cookie(**kwargs)
    theirs.set_cookie(**kwargs)
    cookie = [v for k, v in ours.raw_headers if k == b"set-cookie"]
    assert cookie == [v for k, v in theirs.raw_headers if k == b"set-cookie"]
    assert len(cookie) == 1


def test_set_cookie_examples() -> None:
    response = Response()
    response.set_cookie("a", "1", max_age=10, httponly=True)
    response.set_cookie("b", "2", secure=True, samesite="none")
    assert response.headers.getlist("set-cookie") == [
        "a=1; HttpOnly; Max-Age=10; Path=/; SameSite=lax",
        "b=2; Path=/; SameSite=none; Secure",
    ]


def test_set_cookie_rejects_unknown_samesite() -> None:
    with pytest.raises(AssertionError, match="samesite"):
        Response().set_cookie("a", samesite="sometimes")


def test_partitioned_cookie_needs_python_314() -> None:
    response = Response()
    if sys.version_info < (3, 14):
        with pytest.raises(ValueError, match="3.14"):
            response.set_cookie("a", partitioned=True)
    else:
        response.set_cookie("a", partitioned=True)
        assert "Partitioned" in response.headers["set-cookie"]


@pytest.mark.parametrize(
    "kwargs", [{}, {"path": "/x", "domain": "e.com", "secure": True, "httponly": True, "samesite": "strict"}]
)
def test_delete_cookie_matches_starlette(kwargs: dict[str, Any]) -> None:
    ours, theirs = Response(), starlette.responses.Response()
    ours.delete_cookie("gone", **kwargs)
    theirs.delete_cookie("gone", **kwargs)
    assert ours.raw_headers == theirs.raw_headers
    value = ours.headers["set-cookie"]
    assert value.startswith('gone=""; ')
    assert "Max-Age=0" in value and "expires=" in value


def test_cookie_expiry_from_datetime_is_http_date() -> None:
    response = Response()
    when = datetime(2030, 5, 6, 7, 8, 9, tzinfo=timezone.utc) + timedelta(0)
    response.set_cookie("t", "1", expires=when)
    assert "expires=Mon, 06 May 2030 07:08:09 GMT" in response.headers["set-cookie"]


# --------------------------------------------------------------------------- StreamingResponse


async def test_streaming_from_an_async_generator() -> None:
    async def numbers() -> AsyncIterator[str | bytes]:
        yield "one,"
        yield b"two,"
        yield memoryview(b"three")

    response = StreamingResponse(numbers(), media_type="text/csv", headers={"X-Stream": "1"})
    assert "content-length" not in response.headers
    sent = await call(response)
    assert sent.status == 200
    assert sent.headers["content-type"] == "text/csv; charset=utf-8"
    assert sent.headers["x-stream"] == "1"
    assert sent.body == b"one,two,three"
    assert sent.messages[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


async def test_streaming_from_a_sync_iterator_runs_it_in_a_worker_thread() -> None:
    threads: list[bool] = []

    def pieces() -> Iterator[str]:
        for piece in ("a", "b", "c"):
            threads.append(threading.current_thread() is threading.main_thread())
            yield piece

    sent = await call(StreamingResponse(pieces()))
    assert sent.body == b"abc"
    assert threads == [False, False, False]


async def test_streaming_from_a_plain_list() -> None:
    sent = await call(StreamingResponse(["x", "y"], status_code=202, media_type="text/plain"))
    assert sent.status == 202
    assert sent.body == b"xy"


async def test_streaming_stops_when_the_client_disconnects() -> None:
    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"chunk"
            await anyio.sleep(0)

    ran_background: list[bool] = []

    async def background() -> None:
        ran_background.append(True)

    client = DisconnectingClient()
    response = StreamingResponse(endless(), background=BackgroundTask(background))
    await call(response, receive=make_receive(client.gone), send=client)  # returns: the endless stream stopped
    bodies = client.messages[1:]
    assert len(bodies) >= 3
    assert all(m["more_body"] for m in bodies)
    assert ran_background == [True]


async def test_streaming_send_error_on_asgi_2_4_is_a_client_disconnect() -> None:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x"

    with pytest.raises(ClientDisconnect):
        await call(StreamingResponse(body()), scope=http_scope(spec_version="2.4"), send=Recorder(fail_after=3))


async def test_streaming_errors_surface_unwrapped() -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"start"
        raise LookupError("boom")

    with pytest.raises(LookupError, match="boom"):
        await call(StreamingResponse(broken()))


async def test_streaming_background_runs_after_the_last_message() -> None:
    sent = Recorder()

    async def mark() -> None:
        sent.log.append("background")

    await call(StreamingResponse(iter([b"a"]), background=BackgroundTask(mark)), send=sent)
    assert sent.log[-2:] == ["http.response.body", "background"]


async def test_streaming_on_a_websocket_scope_is_a_denial_response() -> None:
    sent = await call(StreamingResponse(iter([b"no"]), status_code=401), scope={"type": "websocket", "headers": []})
    assert {m["type"] for m in sent.messages} == {"websocket.http.response.start", "websocket.http.response.body"}
    assert b"".join(m["body"] for m in sent.messages[1:]) == b"no"


# --------------------------------------------------------------------------- concurrency helpers


async def test_run_in_threadpool_passes_arguments_and_returns() -> None:
    def work(a: int, *, b: int) -> tuple[int, bool]:
        return a + b, threading.current_thread() is threading.main_thread()

    assert await run_in_threadpool(work, 1, b=2) == (3, False)


async def test_iterate_in_threadpool_survives_stop_iteration() -> None:
    assert [item async for item in iterate_in_threadpool(iter(range(4)))] == [0, 1, 2, 3]
    assert [item async for item in iterate_in_threadpool([])] == []


async def test_run_until_first_complete_is_deprecated_and_cancels_the_rest() -> None:
    finished: list[str] = []

    async def quick(name: str) -> None:
        finished.append(name)

    async def forever(name: str) -> None:
        await anyio.sleep_forever()
        finished.append(name)  # pragma: no cover - cancelled

    # The filter Starlette's own test configuration sets for it matches fastserve's warning too.
    starlette_filter = re.escape("run_until_first_complete is deprecated and will be removed in a future version.")
    with pytest.warns(DeprecationWarning, match="^" + starlette_filter):
        await run_until_first_complete((forever, {"name": "slow"}), (quick, {"name": "fast"}))
    assert finished == ["fast"]


# --------------------------------------------------------------------------- FileResponse

PAYLOAD = bytes(range(256)) * 40 + b"tail"  # 10244 bytes, every byte value


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.bin"
    path.write_bytes(PAYLOAD)
    return path


def range_scope(value: str, method: str = "GET", **extra_headers: str) -> dict[str, Any]:
    headers = [(b"range", value.encode())]
    headers += [(k.replace("_", "-").encode(), v.encode()) for k, v in extra_headers.items()]
    return http_scope(method, headers)


def parse_byteranges(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    """Split a multipart/byteranges body into (part headers, part bytes), checking the framing."""
    delimiter = b"--" + boundary.encode()
    assert body.startswith(delimiter + b"\r\n")
    assert body.endswith(b"\r\n" + delimiter + b"--")  # no epilogue, as Starlette's
    inner = body[len(delimiter) + 2 : -(len(delimiter) + 4)]
    parts = []
    for raw_part in inner.split(b"\r\n" + delimiter + b"\r\n"):
        head, _, data = raw_part.partition(b"\r\n\r\n")
        fields = dict(line.decode().split(": ", 1) for line in head.split(b"\r\n"))
        parts.append(({k.lower(): v for k, v in fields.items()}, data))
    return parts


async def test_file_full_body_and_validators(data_file: Path) -> None:
    response = FileResponse(data_file)
    response.chunk_size = 1000  # several body messages
    sent = await call(response)
    st = data_file.stat()
    assert sent.status == 200
    assert sent.body == PAYLOAD
    assert len([m for m in sent.messages if m["type"] == "http.response.body"]) == 11
    assert sent.headers == {
        "content-type": content_type_for(str(data_file)),
        "accept-ranges": "bytes",
        "content-length": str(len(PAYLOAD)),
        "last-modified": format_http_date(st.st_mtime).decode(),
        "etag": make_etag(st.st_mtime_ns, st.st_size).decode(),
    }


def test_default_chunk_size() -> None:
    assert FileResponse.chunk_size == 64 * 1024


@pytest.mark.parametrize("name", ["index.html", "app.js", "logo.png", "notes.txt", "archive.zip", "README"])
async def test_file_content_type_comes_from_the_shared_rules(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"x")
    sent = await call(FileResponse(path))
    assert sent.headers["content-type"] == content_type_for(str(path))
    assert sent.headers["content-type"].count("charset") <= 1


async def test_file_content_type_uses_the_download_name(data_file: Path) -> None:
    sent = await call(FileResponse(data_file, filename="page.html"))
    assert sent.headers["content-type"] == content_type_for("page.html")
    assert sent.headers["content-type"] == "text/html; charset=utf-8"


async def test_file_explicit_media_type(data_file: Path) -> None:
    assert (await call(FileResponse(data_file, media_type="image/png"))).headers["content-type"] == "image/png"
    text = await call(FileResponse(data_file, media_type="text/plain"))
    assert text.headers["content-type"] == "text/plain; charset=utf-8"


async def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    sent = await call(FileResponse(path))
    assert sent.headers["content-length"] == "0"
    assert sent.body == b""


async def test_file_head_from_the_scope_sends_headers_only(data_file: Path) -> None:
    sent = await call(FileResponse(data_file), scope=http_scope("HEAD"))
    assert sent.status == 200
    assert sent.headers["content-length"] == str(len(PAYLOAD))
    assert sent.messages[1:] == [{"type": "http.response.body", "body": b"", "more_body": False}]


async def test_file_head_with_range_gets_the_fields_a_get_would(data_file: Path) -> None:
    # RFC 9110 section 9.3.2, as Starlette's FileResponse answers it: 206, no body.
    sent = await call(FileResponse(data_file), scope=range_scope("bytes=0-9", method="HEAD"))
    assert sent.status == 206
    assert sent.headers["content-length"] == "10"
    assert sent.headers["content-range"] == f"bytes 0-9/{len(PAYLOAD)}"
    assert sent.body == b""


@pytest.mark.parametrize(
    ("value", "first", "last"),
    [("bytes=0-0", 0, 0), ("bytes=100-299", 100, 299), ("bytes=10000-", 10000, 10243), ("bytes=-4", 10240, 10243),
     ("bytes=10240-99999", 10240, 10243)],
)
async def test_file_single_range(data_file: Path, value: str, first: int, last: int) -> None:
    response = FileResponse(data_file)
    response.chunk_size = 64
    sent = await call(response, scope=range_scope(value))
    assert sent.status == 206
    assert sent.headers["content-range"] == f"bytes {first}-{last}/{len(PAYLOAD)}"
    assert sent.headers["content-length"] == str(last - first + 1)
    assert sent.body == PAYLOAD[first : last + 1]
    # the response object itself is unchanged, so it can be sent again
    assert response.headers["content-length"] == str(len(PAYLOAD))


async def test_file_multiple_ranges(data_file: Path) -> None:
    response = FileResponse(data_file, filename="data.bin")
    response.chunk_size = 100
    sent = await call(response, scope=range_scope("bytes=0-9, 500-1499, -4"))
    assert sent.status == 206
    content_type = sent.headers["content-type"]
    assert content_type.startswith("multipart/byteranges; boundary=")
    boundary = content_type.split("boundary=", 1)[1]
    body = sent.body
    assert sent.headers["content-length"] == str(len(body))
    parts = parse_byteranges(body, boundary)
    size = len(PAYLOAD)
    assert [(p["content-range"], data) for p, data in parts] == [
        (f"bytes 0-9/{size}", PAYLOAD[0:10]),
        (f"bytes 500-1499/{size}", PAYLOAD[500:1500]),
        (f"bytes 10240-10243/{size}", PAYLOAD[10240:]),
    ]
    assert {p["content-type"] for p, _ in parts} == {content_type_for("data.bin")}
    assert "content-range" not in sent.headers


async def test_file_overlapping_ranges_are_merged(data_file: Path) -> None:
    sent = await call(FileResponse(data_file), scope=range_scope("bytes=0-9,5-19"))
    assert sent.status == 206
    assert sent.headers["content-range"] == f"bytes 0-19/{len(PAYLOAD)}"
    assert sent.body == PAYLOAD[:20]


async def test_file_multiple_ranges_head(data_file: Path) -> None:
    sent = await call(FileResponse(data_file), scope=range_scope("bytes=0-1,4-5", method="HEAD"))
    assert sent.status == 206
    assert sent.headers["content-type"].startswith("multipart/byteranges; boundary=")
    assert sent.body == b""


@pytest.mark.parametrize("value", ["bytes=20000-", "bytes=10244-10300", "bytes=-0", "bytes=0-4,20000-"])
async def test_file_unsatisfiable_range(data_file: Path, value: str) -> None:
    # Starlette's 416: a plain-text answer naming the length, without the file's fields.
    response = FileResponse(data_file, filename="data.bin", headers={"Cache-Control": "no-cache"})
    sent = await call(response, scope=range_scope(value))
    assert sent.status == 416
    assert sent.headers["content-range"] == f"bytes */{len(PAYLOAD)}"
    assert sent.headers["content-length"] == "0"
    assert sent.headers["content-type"] == "text/plain; charset=utf-8"
    for name in ("content-disposition", "etag", "last-modified", "cache-control"):
        assert name not in sent.headers
    assert sent.body == b""


async def test_file_range_answers_keep_the_apps_headers(data_file: Path) -> None:
    headers = {"Cache-Control": "no-cache", "X-Trace": "1"}
    single = await call(FileResponse(data_file, headers=headers), scope=range_scope("bytes=0-9"))
    multiple = await call(FileResponse(data_file, headers=headers), scope=range_scope("bytes=0-1,4-5"))
    for sent in (single, multiple):
        assert sent.status == 206
        assert sent.headers["cache-control"] == "no-cache"
        assert sent.headers["x-trace"] == "1"
        assert sent.headers["accept-ranges"] == "bytes"
    assert single.body == PAYLOAD[:10]


async def test_file_response_answers_as_the_static_decision_does(data_file: Path) -> None:
    # FileResponse is answered by staticanswer.decide over its own headers: same status,
    # fields and bytes as decide gives for that entry.
    response = FileResponse(data_file, stat_result=os.stat(data_file))
    for value in ("bytes=0-9", "bytes=-5", "bytes=20000-", "bytes=0-1,4-5"):
        request = RequestHead(b"GET", {b"range": value.encode()})
        answer = decide(described_file(str(data_file), os.stat(data_file), list(response.raw_headers)), request)
        sent = await call(response, scope=range_scope(value))
        assert sent.status == answer.status
        if answer.status == 206 and b"multipart" not in dict(answer.fields)[b"content-type"]:
            assert sent.start["headers"] == answer.fields


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("bytes 0-1", "Malformed range header."),
        ("items=0-1", "Only support bytes range"),
        ("bytes=", "Range header: range must be requested"),
        ("bytes=abc", "Range header: range must be requested"),
        ("bytes=-,,", "Range header: range must be requested"),
        ("bytes=5-1", "Range header: start must be less than end"),
    ],
)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_file_malformed_range_is_refused_as_starlette_refuses_it(
    data_file: Path, value: str, text: str, method: str
) -> None:
    sent = await call(FileResponse(data_file), scope=range_scope(value, method=method))
    assert sent.status == 400
    assert sent.headers["content-type"] == "text/plain; charset=utf-8"
    assert sent.body == text.encode()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes=0-4,x-y", "bytes 0-4/"),  # the part that is no range is passed over
        (" Bytes = 2-3", "bytes 2-3/"),
        ("bytes=4-6,0-1", None),  # sorted: 0-1 first, then 4-6
        ("bytes=0-4,5-9", "bytes 0-9/"),  # adjacent ranges are merged
    ],
)
async def test_file_ranges_are_read_as_starlette_reads_them(data_file: Path, value: str, expected: str | None) -> None:
    sent = await call(FileResponse(data_file), scope=range_scope(value))
    assert sent.status == 206
    if expected is not None:
        assert sent.headers["content-range"] == f"{expected}{len(PAYLOAD)}"
    else:
        boundary = sent.headers["content-type"].split("boundary=")[1]
        parts = parse_byteranges(sent.body, boundary)
        assert [part["content-range"] for part, _ in parts] == [f"bytes 0-1/{len(PAYLOAD)}", f"bytes 4-6/{len(PAYLOAD)}"]


async def test_file_too_many_ranges_get_the_whole_file(data_file: Path) -> None:
    many = "bytes=" + ",".join(f"{i * 2}-{i * 2}" for i in range(FileResponse.max_ranges + 1))
    sent = await call(FileResponse(data_file), scope=range_scope(many))
    assert FileResponse.max_ranges == 100
    assert sent.status == 200 and sent.body == PAYLOAD


async def test_file_if_range_that_does_not_match_gets_the_whole_file_unparsed(data_file: Path) -> None:
    sent = await call(FileResponse(data_file), scope=range_scope("bytes=5-1", if_range='"old"'))
    assert sent.status == 200 and sent.body == PAYLOAD


async def test_file_if_range_with_the_current_etag_honours_the_range(data_file: Path) -> None:
    st = data_file.stat()
    etag = make_etag(st.st_mtime_ns, st.st_size).decode()
    sent = await call(FileResponse(data_file), scope=range_scope("bytes=0-3", if_range=etag))
    assert sent.status == 206
    assert sent.body == PAYLOAD[:4]


@pytest.mark.parametrize(
    "mtime",
    [1_700_000_000 + day * 86_400 for day in range(7)],  # Tue 2023-11-14 .. Mon 2023-11-20: every weekday name
)
async def test_file_if_range_with_the_current_date_honours_the_range(data_file: Path, mtime: int) -> None:
    os.utime(data_file, (mtime, mtime))
    date = format_http_date(mtime).decode()
    sent = await call(FileResponse(data_file), scope=range_scope("bytes=0-3", if_range=date))
    assert sent.status == 206


@pytest.mark.parametrize("if_range", ['"stale-etag"', "W/\"weak\"", "Mon, 01 Jan 2001 00:00:00 GMT", "garbage"])
async def test_file_if_range_mismatch_sends_the_whole_file(data_file: Path, if_range: str) -> None:
    sent = await call(FileResponse(data_file), scope=range_scope("bytes=0-3", if_range=if_range))
    assert sent.status == 200
    assert sent.body == PAYLOAD
    assert "content-range" not in sent.headers


async def test_file_range_ignored_for_non_200_status(data_file: Path) -> None:
    sent = await call(FileResponse(data_file, status_code=404), scope=range_scope("bytes=0-3"))
    assert sent.status == 404
    assert sent.body == PAYLOAD


async def test_file_range_ignored_for_post(data_file: Path) -> None:
    sent = await call(FileResponse(data_file), scope=range_scope("bytes=0-3", method="POST"))
    assert sent.status == 200
    assert sent.body == PAYLOAD


async def test_file_pathsend_for_a_full_response(data_file: Path) -> None:
    scope = http_scope(extensions={"http.response.pathsend": {}})
    sent = await call(FileResponse(data_file), scope=scope)
    assert sent.status == 200
    assert sent.messages[1:] == [{"type": "http.response.pathsend", "path": str(data_file)}]


async def test_file_pathsend_path_is_absolute(data_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(data_file.parent)
    sent = await call(FileResponse("data.bin"), scope=http_scope(extensions={"http.response.pathsend": {}}))
    assert sent.messages[1]["path"] == str(data_file)


async def test_file_pathsend_not_used_for_ranges_or_head(data_file: Path) -> None:
    extensions = {"http.response.pathsend": {}}
    ranged = await call(FileResponse(data_file), scope={**range_scope("bytes=0-3"), "extensions": extensions})
    assert ranged.status == 206 and ranged.body == PAYLOAD[:4]
    head = await call(FileResponse(data_file), scope=http_scope("HEAD", extensions=extensions))
    assert head.body == b""


async def test_missing_file_raises(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    with pytest.raises(RuntimeError, match=f"File at path {missing} does not exist."):
        await call(FileResponse(missing))


async def test_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=f"File at path {tmp_path} is not a file."):
        await call(FileResponse(tmp_path))


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("name, words", [("nope.txt", "does not exist"), ("data.bin/below", "does not exist"),
                                         (".", "is not a file")])
async def test_a_path_that_names_no_file_raises_alike_for_get_and_head(data_file: Path, method: str, name: str,
                                                                        words: str) -> None:
    """A GET opens the file, a HEAD only stats it: both raise the same RuntimeError for a path
    that names no regular file, one below a file (NotADirectoryError) included."""
    path = os.path.normpath(data_file.parent / name)
    with pytest.raises(RuntimeError, match=re.escape(f"File at path {path} {words}.")):
        await call(FileResponse(path), scope=http_scope(method))


@pytest.mark.parametrize("change", ["rewritten", "replaced"])
async def test_a_file_changed_after_its_stat_is_described_as_it_is_sent(data_file: Path, change: str) -> None:
    """The file is opened first and the answer's Content-Length, ETag and Last-Modified are the
    opened file's, as nginx describes what it sends: a file rewritten in place or replaced by a
    rename (a deploy) after the stat the response was given (``StaticFiles`` with a
    ``lookup_path`` of its own stats, then answers later) was sent under the old one's length and
    validators (cut short, or a connection closed mid-body, and a cache kept the mix). A field the
    app set itself is kept."""
    stale = os.stat(data_file)
    if change == "rewritten":
        data_file.write_bytes(b"the new version")
    else:
        (data_file.parent / "new.bin").write_bytes(b"the new version")
        os.replace(data_file.parent / "new.bin", data_file)
    os.utime(data_file, (1_700_000_000, 1_700_000_000))
    now = os.stat(data_file)
    sent = await call(FileResponse(data_file, stat_result=stale, headers={"etag": '"mine"'}))
    assert sent.status == 200 and sent.body == b"the new version"
    assert sent.headers["content-length"] == str(len(b"the new version"))
    assert sent.headers["last-modified"] == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert sent.headers["etag"] == '"mine"'
    ranged = await call(FileResponse(data_file, stat_result=stale), scope=range_scope("bytes=4-6"))
    assert ranged.status == 206 and ranged.body == b"new"
    assert ranged.headers["content-range"] == f"bytes 4-6/{len(b'the new version')}"
    assert ranged.headers["etag"] == make_etag(now.st_mtime_ns, now.st_size).decode()
    # the stat it was given still describes the file: it is used as it is (HEAD opens nothing)
    for method in ("GET", "HEAD"):
        same = await call(FileResponse(data_file, stat_result=now), scope=http_scope(method))
        assert same.headers["etag"] == make_etag(now.st_mtime_ns, now.st_size).decode()


async def test_a_file_response_without_a_stat_describes_the_descriptor_it_sends(
    data_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a stat given, a GET opens the file and describes it by that descriptor (``fstat``):
    no window between a stat by name and the open for a deploy to replace the file in."""
    def no_stat(*args: Any, **kwargs: Any) -> os.stat_result:
        raise AssertionError("stat by name")

    expected = os.stat(data_file)
    monkeypatch.setattr(os, "stat", no_stat)
    sent = await call(FileResponse(data_file))
    assert sent.status == 200 and sent.body == PAYLOAD
    assert sent.headers["etag"] == make_etag(expected.st_mtime_ns, expected.st_size).decode()


async def test_a_file_shorter_than_its_slices_raises(data_file: Path) -> None:
    """A file that ends before a slice does (truncated while it is read) cannot give the length
    promised: ``send_slices`` raises, and the server closes the connection."""
    from fastserve.responses import send_slices

    fd = os.open(data_file, os.O_RDONLY)
    try:
        with pytest.raises(RuntimeError, match="shorter than expected"):
            await send_slices(Recorder(), [(0, len(PAYLOAD) + 10)], fd, 4096, data_file)
    finally:
        os.close(fd)


def test_given_stat_result_sets_headers_up_front(tmp_path: Path) -> None:
    path = tmp_path / "never-created.css"
    fake = os.stat_result((0o100644, 0, 0, 1, 0, 0, 1234, 0, 1_700_000_000, 0))
    response = FileResponse(path, stat_result=fake)
    assert response.headers["content-length"] == "1234"
    assert response.headers["last-modified"] == "Tue, 14 Nov 2023 22:13:20 GMT"
    # A stat_result built by hand has no st_mtime_ns; whole seconds are used instead.
    assert response.headers["etag"] == make_etag(1_700_000_000 * 10**9, 1234).decode()
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-type"] == "text/css; charset=utf-8"


def test_given_headers_are_not_overwritten(data_file: Path) -> None:
    given = {"ETag": '"mine"', "Accept-Ranges": "none"}
    response = FileResponse(data_file, headers=given, stat_result=data_file.stat())
    assert response.headers.getlist("etag") == ['"mine"']
    assert response.headers.getlist("accept-ranges") == ["none"]


@pytest.mark.parametrize(
    ("filename", "disposition_type", "expected"),
    [
        ("report.pdf", "attachment", 'attachment; filename="report.pdf"'),
        ("r\u00e9sum\u00e9.pdf", "attachment", "attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf"),
        ("\u6587\u4ef6.txt", "inline", "inline; filename*=utf-8''%E6%96%87%E4%BB%B6.txt"),
        ("my file.txt", "inline", "inline; filename*=utf-8''my%20file.txt"),
        ('say "hi".txt', "attachment", "attachment; filename*=utf-8''say%20%22hi%22.txt"),
        ("gr\u00fc\u00dfe.txt", "attachment", "attachment; filename*=utf-8''gr%C3%BC%C3%9Fe.txt"),
        ("50%.txt", "attachment", "attachment; filename*=utf-8''50%25.txt"),
        ("a\\b.txt", "attachment", "attachment; filename*=utf-8''a%5Cb.txt"),
        ("line\r\nbreak.txt", "attachment", "attachment; filename*=utf-8''line%0D%0Abreak.txt"),  # no header split
        ("dir/\u00e9t\u00e9.txt", "attachment", "attachment; filename*=utf-8''dir/%C3%A9t%C3%A9.txt"),
        ("a+b!.txt", "attachment", "attachment; filename*=utf-8''a%2Bb%21.txt"),
    ],
)
async def test_content_disposition(data_file: Path, filename: str, disposition_type: str, expected: str) -> None:
    response = FileResponse(data_file, filename=filename, content_disposition_type=disposition_type)
    sent = await call(response)
    assert sent.headers["content-disposition"] == expected
    theirs = starlette.responses.FileResponse(data_file, filename=filename, content_disposition_type=disposition_type)
    assert theirs.headers["content-disposition"] == expected


async def test_file_background_runs_after_the_body(data_file: Path) -> None:
    sent = Recorder()

    def mark() -> None:
        sent.log.append("background")

    await call(FileResponse(data_file, background=BackgroundTask(mark)), send=sent)
    assert sent.log[-2:] == ["http.response.body", "background"]


async def test_file_stops_when_the_client_disconnects(data_file: Path) -> None:
    client = DisconnectingClient()
    response = FileResponse(data_file)
    response.chunk_size = 10  # 1025 chunks if nothing stopped it
    await call(response, receive=make_receive(client.gone), send=client)
    bodies = client.messages[1:]
    assert 3 <= len(bodies) < 100
    assert all(m["more_body"] for m in bodies)


async def test_file_on_a_websocket_scope_is_a_denial_response(data_file: Path) -> None:
    sent = await call(FileResponse(data_file), scope={"type": "websocket", "headers": []})
    assert sent.messages[0]["type"] == "websocket.http.response.start"
    assert b"".join(m["body"] for m in sent.messages[1:]) == PAYLOAD


# --------------------------------------------------------------------------- through Starlette's TestClient


def interop_app(file_path: Path) -> Any:
    """A raw ASGI app that answers each path with one fastserve response."""

    async def stream() -> AsyncIterator[bytes]:
        for n in range(3):
            yield f"part{n};".encode()

    routes = {
        "/text": lambda: PlainTextResponse("hello"),
        "/html": lambda: HTMLResponse("<p>hi</p>"),
        "/json": lambda: JSONResponse({"ok": True, "caf\u00e9": 1}),
        "/redirect": lambda: RedirectResponse("/text"),
        "/stream": lambda: StreamingResponse(stream(), media_type="text/plain"),
        "/sync-stream": lambda: StreamingResponse(iter(["a", "b"])),
        "/file": lambda: FileResponse(file_path, filename="data.bin"),
    }

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        response = routes[scope["path"]]()
        if scope["path"] == "/text":
            response.set_cookie("session", "s1", httponly=True)
        await response(scope, receive, send)

    return app


@pytest.fixture
def client(data_file: Path) -> Iterator[TestClient]:
    with TestClient(interop_app(data_file)) as test_client:
        yield test_client


def test_testclient_simple_responses(client: TestClient) -> None:
    text = client.get("/text")
    assert (text.status_code, text.text, text.headers["content-type"]) == (200, "hello", "text/plain; charset=utf-8")
    assert text.cookies["session"] == "s1"
    assert client.get("/html").text == "<p>hi</p>"
    assert client.get("/json").json() == {"ok": True, "caf\u00e9": 1}


def test_testclient_redirect(client: TestClient) -> None:
    followed = client.get("/redirect")
    assert followed.status_code == 200
    assert followed.text == "hello"
    raw = client.get("/redirect", follow_redirects=False)
    assert raw.status_code == 307
    assert raw.headers["location"] == "/text"


def test_testclient_streams(client: TestClient) -> None:
    assert client.get("/stream").text == "part0;part1;part2;"
    assert client.get("/sync-stream").content == b"ab"


def test_testclient_files(client: TestClient) -> None:
    full = client.get("/file")
    assert full.status_code == 200
    assert full.content == PAYLOAD
    assert full.headers["content-disposition"] == 'attachment; filename="data.bin"'
    single = client.get("/file", headers={"Range": "bytes=10-19"})
    assert single.status_code == 206
    assert single.content == PAYLOAD[10:20]
    multi = client.get("/file", headers={"Range": "bytes=0-1,100-101"})
    assert multi.status_code == 206
    boundary = multi.headers["content-type"].split("boundary=")[1]
    assert [data for _, data in parse_byteranges(multi.content, boundary)] == [PAYLOAD[0:2], PAYLOAD[100:102]]
    head = client.head("/file")
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(PAYLOAD))
    assert head.content == b""
    assert client.get("/file", headers={"Range": "bytes=99999-"}).status_code == 416
