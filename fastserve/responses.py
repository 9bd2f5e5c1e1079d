"""ASGI response classes.

Each builds its status, headers and body up front; ``await response(scope, receive, send)`` sends them.
"""

from __future__ import annotations

import functools
import http.cookies
import json
import os
import stat
import sys
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from email.utils import format_datetime
from typing import Any, Union
from urllib.parse import quote

import anyio
import anyio.to_thread

from fastserve._speedups.filecache import described_file, descriptor_unchanged
from fastserve._speedups.headers import content_type_for, format_http_date, make_etag
from fastserve._speedups.requesthead import RequestHead
from fastserve._speedups.staticanswer import StaticAnswer, decide
from fastserve._interop import ClaimsFrameworkInstances, counts_as, framework_base
from fastserve.background import BackgroundTask
from fastserve.concurrency import iterate_in_threadpool
from fastserve.datastructures import URL, MutableHeaders
from fastserve.exceptions import ClientDisconnect
from fastserve.types import Message, Receive, Scope, Send

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

__all__ = [
    "FileResponse",
    "HTMLResponse",
    "JSONResponse",
    "PlainTextResponse",
    "RedirectResponse",
    "Response",
    "StreamingResponse",
]


Content = Union[str, bytes, memoryview]
ContentStream = Union[AsyncIterable[Content], Iterable[Content]]


def _spec_version(scope: Scope) -> tuple[int, ...]:
    return tuple(int(part) for part in scope.get("asgi", {}).get("spec_version", "2.0").split("."))


def _websocket_denial(send: Send) -> Send:
    """Send an HTTP response on a WebSocket scope (rejecting the handshake) as the
    ``websocket.http.response.*`` messages the ASGI denial-response extension defines."""

    async def send_denial(message: Message) -> None:
        if message["type"] in ("http.response.start", "http.response.body"):
            message = {**message, "type": "websocket." + message["type"]}
        await send(message)

    return send_denial


async def _run_until_disconnect(work: Callable[[], Awaitable[None]], receive: Receive) -> None:
    """Run ``work()`` but stop it as soon as the client disconnects.

    Servers older than ASGI 2.4 do not raise from ``send`` when the client is gone, so
    the only way to notice is to watch ``receive`` for ``http.disconnect``.
    """
    try:
        async with anyio.create_task_group() as group:

            async def run_work() -> None:
                await work()
                group.cancel_scope.cancel()

            group.start_soon(run_work)
            while (await receive())["type"] != "http.disconnect":
                pass
            group.cancel_scope.cancel()
    except BaseExceptionGroup as group_error:
        # Surface the one real error, so exception handlers see the type they expect.
        if len(group_error.exceptions) != 1:
            raise
        error = group_error.exceptions[0]
        origin = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
        raise error from origin


@counts_as("starlette.responses", "Response")
class Response(framework_base("starlette.responses", "Response", object), metaclass=ClaimsFrameworkInstances):  # type: ignore[misc]
    """A response whose whole body is known up front.

    ``content`` is rendered to bytes by :meth:`render`; ``content-length`` and
    ``content-type`` (with ``charset`` for ``text/*``) are added unless ``headers`` gives them.
    """

    media_type: str | None = None
    charset = "utf-8"

    def __init__(
        self,
        content: Any = None,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        self.status_code = status_code
        if media_type is not None:
            self.media_type = media_type
        self.background = background
        self.body = self.render(content)
        self.init_headers(headers)

    def render(self, content: Any) -> bytes | memoryview:
        if content is None:
            return b""
        if isinstance(content, bytes):
            return content
        if isinstance(content, memoryview):
            # A byte view of contiguous memory is sent as is; anything else is copied once.
            return content.cast("B") if content.c_contiguous else content.tobytes()
        return content.encode(self.charset)

    def _content_type(self) -> str | None:
        """The content-type value to send, or None for none."""
        content_type = self.media_type
        if content_type is not None and content_type.startswith("text/") and "charset=" not in content_type.lower():
            content_type += "; charset=" + self.charset
        return content_type

    def init_headers(self, headers: Mapping[str, str] | None = None) -> None:
        raw_headers: list[tuple[bytes, bytes]] = []
        if headers is not None:
            raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        given = {name for name, _ in raw_headers}

        body = getattr(self, "body", None)
        has_body = not (self.status_code < 200 or self.status_code in (204, 304))
        if body is not None and has_body and b"content-length" not in given:
            raw_headers.append((b"content-length", str(len(body)).encode("latin-1")))

        content_type = self._content_type()
        if content_type is not None and b"content-type" not in given:
            raw_headers.append((b"content-type", content_type.encode("latin-1")))

        self.raw_headers = raw_headers

    @property
    def headers(self) -> MutableHeaders:
        """The response headers, editable in place (a live view over ``raw_headers``)."""
        if "_headers" not in self.__dict__:
            self._headers = MutableHeaders(raw=self.raw_headers)
        return self._headers

    def set_cookie(
        self,
        key: str,
        value: str = "",
        max_age: int | None = None,
        expires: datetime | str | int | None = None,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = False,
        samesite: str | None = "lax",
        partitioned: bool = False,
    ) -> None:
        """Add a ``set-cookie`` header. ``expires`` is a datetime (must be timezone-aware UTC),
        a preformatted string, or seconds from now."""
        cookie: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
        cookie[key] = value
        morsel = cookie[key]
        if max_age is not None:
            morsel["max-age"] = max_age  # type: ignore[assignment]
        if expires is not None:
            if isinstance(expires, datetime):
                expires = format_datetime(expires, usegmt=True)
            morsel["expires"] = expires  # type: ignore[assignment]
        if path is not None:
            morsel["path"] = path
        if domain is not None:
            morsel["domain"] = domain
        if secure:
            morsel["secure"] = True  # type: ignore[assignment]
        if httponly:
            morsel["httponly"] = True  # type: ignore[assignment]
        if samesite is not None:
            assert samesite.lower() in ("strict", "lax", "none"), "samesite must be either 'strict', 'lax' or 'none'"
            morsel["samesite"] = samesite
        if partitioned:
            if sys.version_info < (3, 14):
                raise ValueError("Partitioned cookies are only supported in Python 3.14 and above.")
            morsel["partitioned"] = True  # type: ignore[assignment]  # pragma: no cover
        self.raw_headers.append((b"set-cookie", morsel.OutputString().encode("latin-1")))

    def delete_cookie(
        self,
        key: str,
        path: str = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = False,
        samesite: str | None = "lax",
        partitioned: bool = False,
    ) -> None:
        """Tell the client to drop cookie ``key`` (expired now; same path/domain as when it was set)."""
        self.set_cookie(
            key,
            max_age=0,
            expires=0,
            path=path,
            domain=domain,
            secure=secure,
            httponly=httponly,
            samesite=samesite,
            partitioned=partitioned,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            send = _websocket_denial(send)
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body})
        if self.background is not None:
            await self.background()


def _framework_class(name: str) -> Any:
    """Starlette's response class called ``name`` where Starlette is installed, else ``object``.

    Each fastserve response class takes it as its second base, after fastserve's ``Response``
    (whose methods come first in the MRO), so that a framework testing ``issubclass`` against
    one of its own classes answers for fastserve's as for Starlette's: FastAPI documents a
    ``response_class`` that is a ``JSONResponse`` with the route's model, and any other with
    ``{"type": "string"}``. See ``fastserve._interop``."""
    return framework_base("starlette.responses", name, object)


@counts_as("starlette.responses", "HTMLResponse")
class HTMLResponse(Response, _framework_class("HTMLResponse")):  # type: ignore[misc]
    media_type = "text/html"


@counts_as("starlette.responses", "PlainTextResponse")
class PlainTextResponse(Response, _framework_class("PlainTextResponse")):  # type: ignore[misc]
    media_type = "text/plain"


@counts_as("starlette.responses", "JSONResponse")
class JSONResponse(Response, _framework_class("JSONResponse")):  # type: ignore[misc]
    """``content`` serialised as compact UTF-8 JSON (no NaN/Infinity, non-ASCII kept as is)."""

    media_type = "application/json"

    def __init__(
        self,
        content: Any,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        super().__init__(content, status_code, headers, media_type, background)

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode(
            "utf-8"
        )


# Characters left as they are in a Location header: URL delimiters and already-escaped "%".
_LOCATION_SAFE = ":/%#?=@[]!$&'()*+,;"


@counts_as("starlette.responses", "RedirectResponse")
class RedirectResponse(Response, _framework_class("RedirectResponse")):  # type: ignore[misc]
    """An empty response pointing the client at ``url`` (307 keeps the method and body)."""

    def __init__(
        self,
        url: str | URL,
        status_code: int = 307,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        super().__init__(content=b"", status_code=status_code, headers=headers, background=background)
        self.headers["location"] = quote(str(url), safe=_LOCATION_SAFE)


@counts_as("starlette.responses", "StreamingResponse")
class StreamingResponse(Response, _framework_class("StreamingResponse")):  # type: ignore[misc]
    """A body produced piece by piece by an async iterable or a plain (blocking) iterable.

    Blocking iterables are advanced in a worker thread. ``str`` pieces are encoded with
    ``charset``. Sending stops when the client disconnects.
    """

    body_iterator: AsyncIterable[Content]

    def __init__(
        self,
        content: ContentStream,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        if isinstance(content, AsyncIterable):
            self.body_iterator = content
        else:
            self.body_iterator = iterate_in_threadpool(content)
        self.status_code = status_code
        if media_type is not None:
            self.media_type = media_type
        self.background = background
        self.init_headers(headers)

    async def listen_for_disconnect(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async for chunk in self.body_iterator:
            if not isinstance(chunk, (bytes, memoryview)):
                chunk = chunk.encode(self.charset)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self.stream_response(_websocket_denial(send))
        elif _spec_version(scope) >= (2, 4):
            # From ASGI 2.4 on, send() raises OSError once the client has gone.
            try:
                await self.stream_response(send)
            except OSError:
                raise ClientDisconnect() from None
        else:
            await _run_until_disconnect(lambda: self.stream_response(send), receive)
        if self.background is not None:
            await self.background()


async def send_slices(
    send: Send, segments: list[bytes | tuple[int, int]], fd: int, chunk_size: int, name: object,
    unchanged: Callable[[], bool] | None = None,
) -> None:
    """Send ``segments`` (a ``StaticAnswer``'s: bytes, and ``(offset, count)`` slices of the file
    open as ``fd``, read in ``chunk_size`` pieces in a worker thread) as ``http.response.body``
    messages, the last one with ``more_body`` false. ``RuntimeError`` when the file ends
    before a slice does (``name`` says which file), or when ``unchanged`` (asked after each
    piece is read, before it is sent: ``OpenFile.content_unchanged``, or
    ``filecache.descriptor_unchanged`` for the size and modification time the answer's
    validators were made from) answers False: a file written in place while it is sent would
    otherwise go out as bytes of two versions under one ETag (RFC 9110 section 8.8.3), which
    the server's cut connection keeps any client from taking for a whole answer."""
    last = len(segments) - 1
    if last < 0:
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    for index, segment in enumerate(segments):
        if isinstance(segment, bytes):
            await send({"type": "http.response.body", "body": segment, "more_body": index < last})
            continue
        offset, count = segment
        if count <= 0 and index == last:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        while count > 0:
            chunk = await anyio.to_thread.run_sync(os.pread, fd, min(chunk_size, count), offset)
            if not chunk:
                raise RuntimeError(f"File at path {name} is shorter than expected.")
            if unchanged is not None and not unchanged():
                raise RuntimeError(f"File at path {name} changed while it was sent.")
            offset += len(chunk)
            count -= len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": count > 0 or index < last})


def starlette_range(value: str, size: int, max_ranges: int) -> tuple[int, str | None]:
    """How Starlette's ``FileResponse`` answers the ``Range`` header ``value`` for a file of
    ``size`` bytes, as ``(status, detail)``: ``(200, None)`` the whole file (more than
    ``max_ranges`` ranges); ``(206, ranges)`` with ``ranges`` a ``Range`` value naming the
    byte ranges to send, sorted and with overlapping or adjacent ones merged, which
    ``staticanswer.decide`` reads as it stands; ``(416, None)`` when a range starts past the
    end; ``(400, text)`` with Starlette's text when the header is refused: no ``=``, a unit
    other than ``bytes``, no usable range (an empty, dash-only or non-numeric one is passed
    over), or a range that ends before it starts. RFC 9110 section 14.2 lets a server ignore
    such a header; the library answers as Starlette does.
    """
    unit, equals, ranges = value.partition("=")
    if not equals:
        return 400, "Malformed range header."
    if unit.strip().lower() != "bytes":
        return 400, "Only support bytes range"
    if ranges.count(",") + 1 > max_ranges:
        return 200, None
    spans = []
    for part in ranges.split(","):
        first, dash, last = part.strip().partition("-")
        first, last = first.strip(), last.strip()
        if not dash:
            continue
        try:
            start = int(first) if first else max(size - int(last), 0)
            end = int(last) + 1 if first and last and int(last) < size else size
        except ValueError:
            continue
        spans.append((start, end))  # end exclusive
    if not spans:
        return 400, "Range header: range must be requested"
    if any(not 0 <= start < size for start, _ in spans):
        return 416, None
    if any(start >= end for start, end in spans):
        return 400, "Range header: start must be less than end"
    if len(spans) > 1:
        spans.sort()
        merged = [spans[0]]
        for start, end in spans[1:]:
            if start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        spans = merged
    return 206, "bytes=" + ",".join(f"{start}-{end - 1}" for start, end in spans)


def starlette_range_answer(request: RequestHead, size: int, etag: str | None, last_modified: str | None) -> Response | None:
    """Prepare ``request`` (a GET or HEAD for a file of ``size`` bytes sent with these
    validators) for ``staticanswer.decide`` to answer its ``Range`` as Starlette does: the
    ``Range`` is replaced by ``starlette_range``'s ranges, or dropped for the whole file
    (also when ``If-Range`` is not exactly the strong ``etag`` or the ``last_modified``
    date), and ``If-Range`` is dropped. Returns the answer instead, when it is Starlette's
    ``400`` (its text) or ``416`` (``Content-Range: bytes */size``, no validators)."""
    if request.range_value is None:
        return None
    if_range = request.if_range
    request.if_range = None
    if if_range is not None:
        value = if_range.decode("latin-1")
        if value.startswith("W/") or value not in (etag, last_modified):
            request.range_value = None
            return None
    status, detail = starlette_range(request.range_value.decode("latin-1"), size, FileResponse.max_ranges)
    request.range_value = None if detail is None or status != 206 else detail.encode("latin-1")
    if status == 400:
        return PlainTextResponse(detail, status_code=400)
    if status == 416:
        return PlainTextResponse(status_code=416, headers={"content-range": f"bytes */{size}"})
    return None


def _content_disposition(disposition_type: str, filename: str) -> str:
    escaped = quote(filename)
    if escaped == filename:
        return f'{disposition_type}; filename="{filename}"'
    # Anything beyond plain URL-safe characters goes in the RFC 5987 extended form.
    return f"{disposition_type}; filename*=utf-8''{escaped}"


@counts_as("starlette.responses", "FileResponse")
class FileResponse(Response, _framework_class("FileResponse")):  # type: ignore[misc]
    """Send a file from disk: validators, ``Range`` requests (206/416), ``HEAD`` and ``pathsend``.

    The content type, ``ETag`` and ``Last-Modified`` come from the same rules the static file
    server uses, and the answer (200, 206 single or multipart, 416 with the validators) from
    the same decision, ``staticanswer.decide``, over this response's headers. The file is read
    in ``chunk_size`` pieces in a worker thread, from a descriptor opened before the answer
    starts: ``Content-Length``, ``ETag`` and ``Last-Modified`` (those not set by the app) are
    that descriptor's, also when a ``stat_result`` was given and the file has changed since.
    ``RuntimeError`` when the path is missing or no regular file.
    """

    chunk_size = 64 * 1024
    max_ranges = 100  # more ranges than this in one Range header: the whole file

    def __init__(
        self,
        path: str | os.PathLike[str],
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
        filename: str | None = None,
        stat_result: os.stat_result | None = None,
        content_disposition_type: str = "attachment",
    ) -> None:
        self.path = path
        self.status_code = status_code
        self.filename = filename
        self.background = background
        # A guessed type already carries the charset the static server uses for it.
        self._guessed_media_type = media_type is None
        self.media_type = content_type_for(os.fsdecode(filename or path)) if media_type is None else media_type
        self.init_headers(headers)
        self.headers.setdefault("accept-ranges", "bytes")
        if filename is not None:
            self.headers.setdefault("content-disposition", _content_disposition(content_disposition_type, filename))
        self.stat_result = stat_result
        self._fields_from_stat: frozenset[str] = frozenset()  # those set_stat_headers added
        if stat_result is not None:
            self.set_stat_headers(stat_result)

    def _content_type(self) -> str | None:
        if self._guessed_media_type:
            return self.media_type
        return super()._content_type()

    def set_stat_headers(self, stat_result: os.stat_result) -> None:
        """Add ``content-length``, ``last-modified`` and ``etag`` (unless already set) from a stat."""
        for name, value in self._stat_fields(stat_result):
            if name not in self.headers:
                self.headers[name] = value
                self._fields_from_stat = getattr(self, "_fields_from_stat", frozenset()) | {name}

    @staticmethod
    def _stat_fields(stat_result: os.stat_result) -> list[tuple[str, str]]:
        mtime_ns = getattr(stat_result, "st_mtime_ns", None)
        if mtime_ns is None:
            mtime_ns = int(stat_result.st_mtime * 1_000_000_000)
        return [
            ("content-length", str(stat_result.st_size)),
            ("last-modified", format_http_date(stat_result.st_mtime).decode("latin-1")),
            ("etag", make_etag(mtime_ns, stat_result.st_size).decode("latin-1")),
        ]

    async def _stat(self) -> os.stat_result:
        """The file's stat (a HEAD's answer, which opens nothing); ``RuntimeError`` as
        ``_regular_file`` raises it."""
        try:
            stat_result = await anyio.to_thread.run_sync(os.stat, self.path)
        except (FileNotFoundError, NotADirectoryError):
            raise self._missing() from None
        return self._regular_file(stat_result)

    def _open(self) -> tuple[int, os.stat_result]:
        """``(descriptor, its fstat)`` for the file to send (run in a worker thread): opened
        first and described by that descriptor, as nginx does, so the fields sent describe the
        bytes read (a file replaced between a stat and an open would otherwise be sent under the
        old one's length and validators). ``RuntimeError`` as ``_stat`` raises it."""
        try:
            # O_NONBLOCK: a FIFO in the file's place must not hold the thread until a writer comes
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except (FileNotFoundError, NotADirectoryError):
            raise self._missing() from None
        try:
            opened = self._regular_file(os.fstat(fd))
        except BaseException:
            os.close(fd)
            raise
        return fd, opened

    def _missing(self) -> RuntimeError:
        """What a path that names no file raises (in Starlette's words), a component of it that
        is no directory included."""
        return RuntimeError(f"File at path {self.path} does not exist.")

    def _regular_file(self, stat_result: os.stat_result) -> os.stat_result:
        """``stat_result``; ``RuntimeError`` (in Starlette's words) when it is no regular file."""
        if not stat.S_ISREG(stat_result.st_mode):
            raise RuntimeError(f"File at path {self.path} is not a file.")
        return stat_result

    def _describe(self, opened: os.stat_result) -> None:
        """Make the fields taken from a stat (``set_stat_headers``'s, not the app's own) those
        of ``opened``, the file being sent."""
        taken: frozenset[str] = getattr(self, "_fields_from_stat", frozenset())
        for name, value in self._stat_fields(opened):
            if name in taken:
                self.headers[name] = value
        self.set_stat_headers(opened)

    def _answer(self, stat_result: os.stat_result, request: RequestHead) -> StaticAnswer:
        """``staticanswer.decide``'s answer to ``request`` for this file, sent with these headers."""
        entry = described_file(os.fsdecode(self.path), stat_result, self.raw_headers, self.status_code)
        return decide(entry, request, self.max_ranges)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        is_http = scope["type"] == "http"
        if scope["type"] == "websocket":
            send = _websocket_denial(send)
        method = scope["method"].upper() if is_http else "GET"

        fd = -1
        stat_result = self.stat_result
        if method == "HEAD":
            if stat_result is None:
                stat_result = await self._stat()
                self.set_stat_headers(stat_result)
        else:
            with anyio.CancelScope(shield=True):  # a cancelled open must not leave the file open
                fd, opened = await anyio.to_thread.run_sync(self._open)
            if stat_result is None or not _same_version(stat_result, opened):
                self._describe(opened)
                stat_result = opened
        try:
            await self._respond(scope, receive, send, is_http, method, stat_result, fd)
        finally:
            if fd >= 0:
                os.close(fd)  # a close of a regular file: no thread needed
        if self.background is not None:
            await self.background()

    async def _respond(self, scope: Scope, receive: Receive, send: Send, is_http: bool, method: str,
                       stat_result: os.stat_result, fd: int) -> None:
        """The answer to ``method`` (``"GET"`` for a WebSocket's scope) for the file
        ``stat_result`` describes, its slices read from ``fd``."""
        header_only = method == "HEAD"
        # Whatever the method, the file is the answer; a GET or HEAD for a 200 honours Range
        # (a HEAD gets a GET's fields, RFC 9110 section 9.3.2), as the static file server and
        # Starlette answer. Preconditions are not evaluated here (as in Starlette): StaticFiles
        # does that before choosing this response.
        request = RequestHead(b"HEAD" if header_only else b"GET")
        if self.status_code == 200 and method in ("GET", "HEAD"):
            for name, value in scope.get("headers", ()):
                name = name.lower()
                if name == b"range" or name == b"if-range":
                    request.set(name, value)
            refusal = starlette_range_answer(
                request, stat_result.st_size, self.headers.get("etag"), self.headers.get("last-modified")
            )
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        answer = self._answer(stat_result, request)

        await send({"type": "http.response.start", "status": answer.status, "headers": answer.fields})
        if answer.segments is None:
            await send({"type": "http.response.body", "body": answer.body, "more_body": False})
        elif (
            is_http
            and answer.status == self.status_code
            and answer.segments == [(0, stat_result.st_size)]
            and "http.response.pathsend" in scope.get("extensions", {})
        ):
            await send({"type": "http.response.pathsend", "path": os.path.abspath(os.fsdecode(self.path))})
        else:
            segments = answer.segments

            unchanged = functools.partial(descriptor_unchanged, fd, stat_result.st_size, stat_result.st_mtime_ns)

            async def send_body() -> None:
                await send_slices(send, segments, fd, self.chunk_size, self.path, unchanged)

            if is_http and _spec_version(scope) < (2, 4):
                await _run_until_disconnect(send_body, receive)
            else:
                await send_body()


def _same_version(described: os.stat_result, opened: os.stat_result) -> bool:
    """Whether the file opened is the one ``described`` stat'ed, unchanged since."""
    return (
        described.st_ino == opened.st_ino and described.st_dev == opened.st_dev
        and described.st_size == opened.st_size and described.st_mtime_ns == opened.st_mtime_ns
    )
