"""The incoming side of a connection: ``HTTPConnection`` (shared by HTTP and WebSocket) and ``Request``.

Both are thin, lazy views over the ASGI ``scope``: nothing is parsed until an attribute is read,
and each parsed value is cached on the instance.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Coroutine, Generator, Iterator, Mapping
from contextlib import asynccontextmanager
from http import cookies as http_cookies
from typing import Any, Generic, NoReturn, TypeVar

import anyio

from fastserve._interop import ClaimsFrameworkInstances, counts_as
from fastserve.datastructures import URL, Address, FormData, Headers, QueryParams, State
from fastserve.exceptions import ClientDisconnect, HTTPException
from fastserve.formparsers import FormParser, MultiPartException, MultiPartParser, parse_content_type
from fastserve.types import Message, Receive, Scope, Send

__all__ = ["ClientDisconnect", "HTTPConnection", "Request", "RequestJSONDecodeError", "cookie_parser"]


T = TypeVar("T")

try:
    from contextlib import aclosing
except ImportError:  # Python 3.9

    @asynccontextmanager  # type: ignore[no-redef]
    async def aclosing(generator: Any) -> Any:
        try:
            yield generator
        finally:
            await generator.aclose()

# Request headers a pushed resource is requested with (they describe the client, not the page).
PUSH_PROMISE_HEADERS = ("accept", "accept-encoding", "accept-language", "cache-control", "user-agent")


def cookie_parser(cookie_string: str) -> dict[str, str]:
    """Parse a ``Cookie`` header the lenient way browsers write it.

    Pairs are split on ``;`` and the first ``=``; a chunk without ``=`` is a value with an empty
    name; surrounding whitespace goes; quoted values are unquoted; the last duplicate wins.
    """
    cookies: dict[str, str] = {}
    for chunk in cookie_string.split(";"):
        name, has_equals, value = chunk.partition("=")
        if not has_equals:
            name, value = "", name
        name, value = name.strip(), value.strip()
        if name or value:
            cookies[name] = http_cookies._unquote(value)
    return cookies


class RequestJSONDecodeError(json.JSONDecodeError):
    """``Request.json()`` was given a body that is not valid JSON."""


@counts_as("starlette.requests", "HTTPConnection")
class HTTPConnection(Mapping[str, Any], metaclass=ClaimsFrameworkInstances):
    """What HTTP requests and WebSocket connections have in common: a read-only mapping over the
    ASGI scope plus parsed views of it (URL, headers, query, cookies, client, state...).

    Where Starlette is installed, ``isinstance(conn, HTTPConnection)`` (and ``Request``,
    ``WebSocket``) also holds for Starlette's objects, the ones a FastAPI or Starlette app hands
    its endpoints, dependencies and middleware (see ``fastserve._interop``)."""

    def __init__(self, scope: Scope, receive: Receive | None = None) -> None:
        assert scope["type"] in ("http", "websocket"), f"Unsupported scope type {scope['type']!r}"
        self.scope = scope

    # Mapping over the scope -----------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        return self.scope[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.scope)

    def __len__(self) -> int:
        return len(self.scope)

    # Two connection objects are the same connection only when they are the same object.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    # Parsed views ----------------------------------------------------------------------------

    @property
    def app(self) -> Any:
        return self.scope["app"]

    @property
    def url(self) -> URL:
        url = self.__dict__.get("_url")
        if url is None:
            url = self._url = URL(scope=self.scope)
        return url

    @property
    def base_url(self) -> URL:
        """The URL of the application's root (``root_path`` of the outermost app, ending in ``/``).

        Inside a ``Mount`` the scope's ``root_path`` grows, but links built with ``url_for`` are
        relative to the whole application, so ``app_root_path`` wins when a server or app set it.
        """
        base_url = self.__dict__.get("_base_url")
        if base_url is None:
            root_path = self.scope.get("app_root_path", self.scope.get("root_path", ""))
            path = root_path if root_path.endswith("/") else root_path + "/"
            base_scope = {**self.scope, "path": path, "query_string": b"", "root_path": root_path}
            base_url = self._base_url = URL(scope=base_scope)
        return base_url

    @property
    def headers(self) -> Headers:
        headers = self.__dict__.get("_headers")
        if headers is None:
            headers = self._headers = Headers(scope=self.scope)
        return headers

    @property
    def query_params(self) -> QueryParams:
        params = self.__dict__.get("_query_params")
        if params is None:
            params = self._query_params = QueryParams(self.scope["query_string"])
        return params

    @property
    def path_params(self) -> dict[str, Any]:
        return self.scope.get("path_params", {})

    @property
    def cookies(self) -> dict[str, str]:
        cookies = self.__dict__.get("_cookies")
        if cookies is None:
            cookies = {}
            for header in self.headers.getlist("cookie"):
                cookies.update(cookie_parser(header))
            self._cookies = cookies
        return cookies

    @property
    def client(self) -> Address | None:
        peer = self.scope.get("client")
        return None if peer is None else Address(*peer)

    @property
    def session(self) -> dict[str, Any]:
        assert "session" in self.scope, "SessionMiddleware must be installed to access request.session"
        session = self.scope["session"]
        mark_accessed = getattr(session, "mark_accessed", None)
        if mark_accessed is not None:
            mark_accessed()
        return session

    @property
    def auth(self) -> Any:
        assert "auth" in self.scope, "AuthenticationMiddleware must be installed to access request.auth"
        return self.scope["auth"]

    @property
    def user(self) -> Any:
        assert "user" in self.scope, "AuthenticationMiddleware must be installed to access request.user"
        return self.scope["user"]

    @property
    def state(self) -> State:
        """Per-request attributes, stored in ``scope["state"]`` so every view of the scope shares them."""
        state = self.__dict__.get("_state")
        if state is None:
            state = self._state = State(self.scope.setdefault("state", {}))
        return state

    def url_for(self, name: str, /, **path_params: Any) -> URL:
        """The absolute URL of the route called ``name``, filled with ``path_params``."""
        provider = self.scope.get("router") or self.scope.get("app")
        if provider is None:
            raise RuntimeError("The `url_for` method can only be used inside a Starlette application or with a router.")
        url_path = provider.url_path_for(name, **path_params)
        return url_path.make_absolute_url(base_url=self.base_url)


# The receive and send of a request made from a scope alone: their errors are Starlette's
# words, which an app's tests match with ``pytest.raises(match=...)``.
async def empty_receive() -> NoReturn:
    raise RuntimeError("Receive channel has not been made available")


async def empty_send(message: Message) -> NoReturn:
    raise RuntimeError("Send channel has not been made available")


class AwaitableOrContextManager(Generic[T]):
    """Lets ``await request.form()`` and ``async with request.form() as form:`` both work.

    The context-manager form closes the value (its uploaded files) on exit.
    """

    __slots__ = ("_awaitable", "_entered")

    def __init__(self, awaitable: Coroutine[Any, Any, T]) -> None:
        self._awaitable = awaitable
        self._entered: Any = None

    def __await__(self) -> Generator[Any, None, T]:
        return self._awaitable.__await__()

    async def __aenter__(self) -> T:
        self._entered = await self._awaitable
        return self._entered

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._entered.close()


@counts_as("starlette.requests", "Request")
class Request(HTTPConnection):
    """An HTTP request: the scope views of :class:`HTTPConnection` plus the method and the body."""

    def __init__(self, scope: Scope, receive: Receive = empty_receive, send: Send = empty_send) -> None:
        super().__init__(scope)
        assert scope["type"] == "http", f"A Request needs an 'http' scope, not {scope['type']!r}"
        self._receive = receive
        self._send = send
        self._stream_consumed = False
        self._is_disconnected = False
        self._form: FormData | None = None

    @property
    def method(self) -> str:
        return self.scope["method"]

    @property
    def receive(self) -> Receive:
        return self._receive

    async def stream(self) -> AsyncGenerator[bytes, None]:
        """The body as it arrives, chunk by chunk, ending with ``b""``.

        Once the body has been read with ``body()`` it is replayed from memory; otherwise the
        body can only be streamed once (a second attempt raises ``RuntimeError``).
        """
        if "_body" in self.__dict__:
            yield self._body
            yield b""
            return
        if self._stream_consumed:
            raise RuntimeError("Stream consumed")
        while not self._stream_consumed:
            message = await self._receive()
            if message["type"] == "http.request":
                if not message.get("more_body", False):
                    self._stream_consumed = True
                chunk = message.get("body", b"")
                if chunk:
                    yield chunk
            elif message["type"] == "http.disconnect":
                self._is_disconnected = True
                raise ClientDisconnect()
        yield b""

    async def body(self) -> bytes:
        if "_body" not in self.__dict__:
            chunks: list[bytes] = []
            async with aclosing(self.stream()) as stream:
                async for chunk in stream:
                    chunks.append(chunk)
            self._body = b"".join(chunks)
        return self._body

    async def json(self) -> Any:
        """The body decoded as JSON.

        A body that is not JSON (or not UTF-8/16/32 text) raises :class:`RequestJSONDecodeError`,
        a ``json.JSONDecodeError``: code catching that keeps working, and a fastserve ``Router``
        recognises it as the client's mistake and answers 400.
        """
        if "_json" not in self.__dict__:
            body = await self.body()
            try:
                self._json = json.loads(body)
            except json.JSONDecodeError as exc:
                raise RequestJSONDecodeError(exc.msg, exc.doc, exc.pos) from None
            except UnicodeDecodeError as exc:
                doc = body.decode("latin-1")
                raise RequestJSONDecodeError(f"Body is not valid JSON text ({exc.reason})", doc, exc.start) from None
        return self._json

    async def _get_form(self, *, max_files: int | float, max_fields: int | float, max_part_size: int) -> FormData:
        if self._form is None:
            media_type, _ = parse_content_type(self.headers.get("content-type", ""))
            parser: FormParser | MultiPartParser | None = None
            try:
                async with aclosing(self.stream()) as stream:
                    if media_type == "multipart/form-data":
                        parser = MultiPartParser(
                            self.headers,
                            stream,
                            max_files=max_files,
                            max_fields=max_fields,
                            max_part_size=max_part_size,
                        )
                    elif media_type == "application/x-www-form-urlencoded":
                        parser = FormParser(self.headers, stream, max_fields=max_fields, max_part_size=max_part_size)
                    self._form = FormData() if parser is None else await parser.parse()
            except MultiPartException as exc:
                # Inside an application a malformed form is the client's fault: answer 400.
                if "app" in self.scope or "router" in self.scope:
                    raise HTTPException(status_code=400, detail=exc.message) from exc
                raise
        return self._form

    def form(
        self,
        *,
        max_files: int | float = 1000,
        max_fields: int | float = 1000,
        max_part_size: int = 1024 * 1024,
    ) -> AwaitableOrContextManager[FormData]:
        """The parsed form body (urlencoded or multipart); empty for any other content type.

        ``await request.form()`` or ``async with request.form() as form:`` (which closes the
        uploaded files on exit). The limits bound how many files and fields a multipart body may
        hold and how large one non-file part may be; going over raises a 400 inside an app.
        """
        return AwaitableOrContextManager(
            self._get_form(max_files=max_files, max_fields=max_fields, max_part_size=max_part_size)
        )

    async def close(self) -> None:
        """Close the files of a parsed form, if any."""
        if self._form is not None:
            await self._form.close()

    async def is_disconnected(self) -> bool:
        """True once the client is known to have gone; checks ``receive`` without waiting."""
        if not self._is_disconnected:
            message: Message = {}
            # Cancel before awaiting: ``receive`` only gets the chance to answer if a message is
            # already waiting, so this never blocks.
            with anyio.CancelScope() as scope:
                scope.cancel()
                message = await self._receive()
            if message.get("type") == "http.disconnect":
                self._is_disconnected = True
        return self._is_disconnected

    async def send_push_promise(self, path: str) -> None:
        """Ask an HTTP/2 server to push ``path`` (does nothing unless the server supports push)."""
        if "http.response.push" not in self.scope.get("extensions", {}):
            return
        headers = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name in PUSH_PROMISE_HEADERS
            for value in self.headers.getlist(name)
        ]
        await self._send({"type": "http.response.push", "path": path, "headers": headers})

    async def send_early_hints(self, link: str, /, *additional_links: str) -> None:
        """Send a 103 Early Hints with these ``Link`` values (when the server supports it)."""
        if "http.response.early_hint" not in self.scope.get("extensions", {}):
            return
        links = [value.encode("latin-1") for value in (link, *additional_links)]
        await self._send({"type": "http.response.early_hint", "links": links})
