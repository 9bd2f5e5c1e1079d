"""Routing: map request paths to endpoints.

``Router(routes=[Route(...), WebSocketRoute(...), Mount(...)])`` is a complete ASGI application:
it dispatches HTTP and WebSocket requests, runs the ``lifespan`` context, and builds URLs back
from route names (``url_path_for``).

Path templates hold parameters as ``{name}`` or ``{name:convertor}`` (``str`` - the default -
``path``, ``int``, ``float``, ``uuid``; add more with :func:`register_url_convertor`).

Errors a Router answers by itself (so a bare Router behaves like a finished app):

- no route matches: 404 ``Not Found`` (a WebSocket is closed instead);
  a path that only differs by a trailing slash is redirected (307) when ``redirect_slashes``;
- the path matches but the method does not: 405 ``Method Not Allowed`` with ``Allow``;
- an endpoint raises ``fastserve.exceptions.HTTPException``: its status, headers and detail
  (plain text; JSON ``{"detail": ...}`` when the detail is not a string; no body for 204/304);
  raised in a WebSocket endpoint before ``accept`` it rejects the handshake;
- an endpoint raises ``fastserve.exceptions.WebSocketException``: the WebSocket is closed with
  its code and reason;
- an endpoint lets the error of ``await request.json()`` escape: 400 ``Invalid JSON``.
  ``Request.json()`` still raises ``json.JSONDecodeError`` (a subclass of it, to be exact) so an
  app can handle bad JSON itself; the Router only answers 400 when the app did not. It does
  this only for errors raised by ``Request.json()`` on the request body: a JSONDecodeError from
  anything else (a corrupt file the app reads, say) is a server bug and stays a 500.

Inside a Starlette or FastAPI application (``app`` in the scope) the 404, the 405 and an
endpoint's ``HTTPException`` or ``WebSocketException`` are raised instead, for the
application's exception handlers to answer, as Starlette's routes leave them.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
import traceback
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from decimal import Decimal
from enum import Enum
from typing import Any, ClassVar, Generic, TypeVar

from fastserve._interop import ClaimsFrameworkInstances, counts_as, framework_base
from fastserve.concurrency import is_async_callable, run_in_threadpool
from fastserve.datastructures import URL, Headers, URLPath, is_valid_host_header
from fastserve.exceptions import FastServeDeprecationWarning, HTTPException, WebSocketException
from fastserve.requests import Request, RequestJSONDecodeError
from fastserve.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastserve.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "BaseRoute",
    "Convertor",
    "Host",
    "Match",
    "Mount",
    "NoMatchFound",
    "Route",
    "Router",
    "WebSocketRoute",
    "compile_path",
    "get_route_path",
    "register_url_convertor",
    "request_response",
    "websocket_session",
]

Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]

T = TypeVar("T")


class NoMatchFound(Exception):
    """``url_path_for`` found no route with that name and exactly those path parameters."""

    def __init__(self, name: str, path_params: Mapping[str, Any]) -> None:
        params = ", ".join(path_params)
        super().__init__(f'No route exists for name "{name}" and params "{params}".')


# Where Starlette is installed this is Starlette's own class (see _interop): ``except
# NoMatchFound`` with either import catches a miss from either framework's routes, and a
# Starlette ``Mount`` holding a fastserve ``Router`` moves on to its next route after a miss.
NoMatchFound = framework_base("starlette.routing", "NoMatchFound", NoMatchFound)  # type: ignore[misc]


class Match(Enum):
    """What a route makes of a scope: ``NONE``, ``PARTIAL`` (the path matches but the method
    does not: a candidate for ``405``) or ``FULL``."""

    NONE = 0
    PARTIAL = 1
    FULL = 2


# Routers compare a route's answer with ``is``: where Starlette is installed this is Starlette's
# own ``Match``, so fastserve's routes match inside a Starlette or FastAPI router and Starlette's
# inside fastserve's (a look-alike enum matched nothing there, and the router's slash redirect
# then answered every request with a 307 to itself). See ``fastserve._interop``.
Match = framework_base("starlette.routing", "Match", Match)  # type: ignore[misc]


# --------------------------------------------------------------------------- path convertors


class Convertor(Generic[T]):
    """Turns one path segment pattern into a value and back."""

    regex: ClassVar[str] = ""

    def convert(self, value: str) -> T:
        raise NotImplementedError()

    def to_string(self, value: T) -> str:
        raise NotImplementedError()


class StringConvertor(Convertor[str]):
    regex = "[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        value = str(value)
        assert "/" not in value, "May not contain path separators"
        assert value, "Must not be empty"
        return value


class PathConvertor(Convertor[str]):
    regex = ".*"

    def convert(self, value: str) -> str:
        return str(value)

    def to_string(self, value: str) -> str:
        return str(value)


class IntegerConvertor(Convertor[int]):
    regex = "[0-9]+"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        value = int(value)
        assert value >= 0, "Negative integers are not supported"
        return str(value)


class FloatConvertor(Convertor[float]):
    regex = r"[0-9]+(?:\.[0-9]+)?"

    def convert(self, value: str) -> float:
        return float(value)

    def to_string(self, value: float) -> str:
        value = float(value)
        assert value >= 0.0, "Negative floats are not supported"
        assert not math.isnan(value), "NaN values are not supported"
        assert not math.isinf(value), "Infinite values are not supported"
        # Plain positional digits (never "1e-07"), shortest round-trip form, no trailing zeros.
        text = format(Decimal(repr(value)), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text


class UUIDConvertor(Convertor[uuid.UUID]):
    # Any case, dashes optional (32 hex digits in a row too), as uuid.UUID reads them and Starlette routes them.
    regex = "[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"

    def convert(self, value: str) -> uuid.UUID:
        return uuid.UUID(value)

    def to_string(self, value: uuid.UUID) -> str:
        return str(value)


CONVERTOR_TYPES: dict[str, Convertor[Any]] = {
    "str": StringConvertor(),
    "path": PathConvertor(),
    "int": IntegerConvertor(),
    "float": FloatConvertor(),
    "uuid": UUIDConvertor(),
}


# Starlette's registry where it is installed: a convertor registered with either framework's
# register_url_convertor is known to the routes of both.
_FRAMEWORK_CONVERTOR_TYPES: dict[str, Any] = framework_base("starlette.convertors", "CONVERTOR_TYPES", {})


def register_url_convertor(key: str, convertor: Convertor[Any]) -> None:
    """Make ``{name:key}`` available in route paths compiled from now on (Starlette's routes'
    too, where Starlette is installed)."""
    CONVERTOR_TYPES[key] = convertor
    _FRAMEWORK_CONVERTOR_TYPES[key] = convertor


def _convertor(name: str) -> Convertor[Any]:
    convertor = CONVERTOR_TYPES.get(name) or _FRAMEWORK_CONVERTOR_TYPES.get(name)
    assert convertor is not None, f"Unknown path convertor '{name}'"
    return convertor


# --------------------------------------------------------------------------- path templates

_PARAM = re.compile(r"{([a-zA-Z_][a-zA-Z0-9_]*)(:[a-zA-Z_][a-zA-Z0-9_]*)?}")


def compile_path(path: str) -> tuple[re.Pattern[str], str, dict[str, Convertor[Any]]]:
    """``"/users/{id:int}"`` -> (regex matching the path, ``"/users/{id}"``, ``{"id": IntegerConvertor}``)."""
    pattern = "^"
    path_format = ""
    convertors: dict[str, Convertor[Any]] = {}
    duplicates: set[str] = set()
    end = 0
    for param in _PARAM.finditer(path):
        name, convertor = param.group(1), _convertor((param.group(2) or ":str")[1:])
        literal = path[end : param.start()]
        pattern += re.escape(literal) + f"(?P<{name}>{convertor.regex})"
        path_format += literal + "{" + name + "}"
        if name in convertors:
            duplicates.add(name)
        convertors[name] = convertor
        end = param.end()
    if duplicates:
        plural = "s" if len(duplicates) > 1 else ""
        raise ValueError(f"Duplicated param name{plural} {', '.join(sorted(duplicates))} at path {path}")
    tail = path[end:]
    if path.startswith("/"):
        pattern += re.escape(tail) + "$"
        flags = 0
    else:
        # A Host template: the port is not matched (Host.matches reads the host without it), and
        # host names are case-insensitive (RFC 9110 section 4.2.3).
        pattern += re.escape(tail if tail.endswith("]") else tail.rsplit(":", 1)[0]) + "$"
        flags = re.IGNORECASE
    path_format += tail
    return re.compile(pattern, flags), path_format, convertors


_SLOT = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}")  # a parameter's slot in a path format


def replace_params(
    path: str, param_convertors: Mapping[str, Convertor[Any]], path_params: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """Fill the ``{name}`` slots of the template ``path``; return the path and the params left
    over (a new dict: ``path_params`` is left as it was)."""
    remaining = dict(path_params)

    def fill(slot: re.Match[str]) -> str:
        name = slot.group(1)
        if name not in remaining:
            return slot.group(0)
        return param_convertors[name].to_string(remaining.pop(name))

    # One pass over the template: a value that reads like a slot ("{id}") is not filled again.
    return _SLOT.sub(fill, path), remaining


def get_route_path(scope: Scope) -> str:
    """The part of ``scope["path"]`` this app routes on: the path below ``root_path``."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if not root_path or not path.startswith(root_path):
        return path
    if path == root_path:
        return ""
    if path[len(root_path)] == "/":
        return path[len(root_path) :]
    return path  # "/apple" is not below "/app"


def _match_params(route: Route | WebSocketRoute | Mount, scope: Scope) -> dict[str, Any] | None:
    """The converted path parameters when ``route``'s template matches, else None."""
    matched = route.path_regex.match(get_route_path(scope))
    if matched is None:
        return None
    return {name: route.param_convertors[name].convert(value) for name, value in matched.groupdict().items()}


def _is_plain_function(endpoint: Any) -> bool:
    """Functions and methods are endpoints taking a request; anything else is an ASGI app."""
    while isinstance(endpoint, functools.partial):
        endpoint = endpoint.func
    return inspect.isfunction(endpoint) or inspect.ismethod(endpoint)


def get_name(endpoint: Any) -> str:
    return getattr(endpoint, "__name__", type(endpoint).__name__)


# --------------------------------------------------------------------------- endpoint adapters


def request_response(func: Callable[[Request], Awaitable[Response] | Response]) -> ASGIApp:
    """An ASGI app calling ``func(request)`` (in a worker thread if it is not async) and sending
    the response it returns. Uploaded files of a parsed form are closed once it has been sent."""
    call_async = is_async_callable(func)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)

        async def respond(scope: Scope, receive: Receive, send: Send) -> None:
            if call_async:
                response = await func(request)  # type: ignore[misc]
            else:
                response = await run_in_threadpool(func, request)
            await response(scope, receive, send)

        try:
            await _under_the_apps_handlers(respond, request, scope, receive, send)
        finally:
            await request.close()

    return app


async def _under_the_apps_handlers(app: ASGIApp, conn: Any, scope: Scope, receive: Receive, send: Send) -> None:
    """Run an endpoint's ``app``; inside a Starlette or FastAPI application, an exception it
    raises that one of the application's handlers is registered for (an ``HTTPException`` by
    its status first, then by the exception's classes, nearest first) is answered by that
    handler, called with ``conn`` (the endpoint's request or websocket) and the exception, here
    at the endpoint, as Starlette's endpoints are: inside the middleware of the routes and mounts
    around it. Anything else is raised on. A handler cannot answer once the response began:
    ``RuntimeError``."""
    handlers = scope.get("starlette.exception_handlers")
    if handlers is None:
        await app(scope, receive, send)
        return
    by_class, by_status = handlers
    started = False

    async def watch(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            started = True
        await send(message)

    try:
        await app(scope, receive, watch)
    except Exception as exc:
        handler = by_status.get(exc.status_code) if isinstance(exc, HTTPException) else None
        if handler is None:
            handler = next((by_class[cls] for cls in type(exc).__mro__ if cls in by_class), None)
        if handler is None:
            raise
        if started:
            raise RuntimeError("Caught handled exception, but response already started.") from exc
        if is_async_callable(handler):
            response = await handler(conn, exc)
        else:
            response = await run_in_threadpool(handler, conn, exc)
        if response is not None:
            await response(scope, receive, watch)
        exc.__traceback__ = None  # a handled exception kept for reuse gathers no frames


def websocket_session(func: Callable[[Any], Awaitable[None]]) -> ASGIApp:
    """An ASGI app calling ``await func(websocket)`` with a ``fastserve.websockets.WebSocket``."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        from fastserve.websockets import WebSocket

        websocket = WebSocket(scope, receive=receive, send=send)

        async def session(scope: Scope, receive: Receive, send: Send) -> None:
            await func(websocket)

        await _under_the_apps_handlers(session, websocket, scope, receive, send)

    return app


# --------------------------------------------------------------------------- what wraps a route's app


def _wrapped(app: ASGIApp, middleware: Sequence[Any] | None, max_body_size: int | None = None) -> ASGIApp:
    """``app`` inside ``middleware`` (each a ``(cls, args, kwargs)`` triple, as Starlette's
    ``Middleware`` unpacks: the first listed is the outermost) and, outside those, the
    ``max_body_size`` limit, as Starlette's routes wrap their app."""
    for cls, args, kwargs in reversed(middleware or ()):
        app = cls(app, *args, **kwargs)
    if max_body_size is not None:
        app = _BodyLimit(app, max_body_size)
    return app


_BODY_COUNT_KEY = "fastserve.body_count"  # the request's _BodyCount, once a limit counts it


class _TooLarge(Exception):
    """The request body went past the limit in force."""


class _Refused(Exception):
    """The limit answered ``413`` in the place of the app's answer."""


class _BodyCount:
    """One request's body bytes against the limit in force: the innermost ``max_body_size``
    (a Route's over its Mount's over its Router's) decides, once the request reaches it."""

    def __init__(self, limit: int, declared: int | None, receive: Receive, send: Send) -> None:
        self.limit = limit  # an inner limit replaces it as the request reaches it
        self.declared = declared  # the request's Content-Length, None without a usable one
        self.received = 0
        self.started = False
        self.receive = receive
        self.send = send

    def declared_over(self) -> bool:
        """Whether the Content-Length is over the limit in force now."""
        return self.declared is not None and self.declared > self.limit

    async def counted_receive(self) -> Message:
        if self.declared_over():
            raise _TooLarge
        message = await self.receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                raise _TooLarge
        return message

    async def checked_send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            if self.declared_over():
                # Answered without reading a body declared too large: 413 in its place.
                await _too_large()({"type": "http"}, self.receive, self.send)
                raise _Refused
        await self.send(message)


def _too_large() -> Response:
    return PlainTextResponse("Content Too Large", status_code=413)


def _declared_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    return int(value) if value is not None and value.isdigit() else None


class _OwnBodyLimit:
    """``max_body_size=N`` of a Route, Mount or Router: an HTTP request whose body (declared by
    ``Content-Length``, or received) passes N bytes is answered ``413 Content Too Large``, unless
    the app's response has begun (then the app's read raises). An inner limit replaces an outer
    one for the requests that reach it, larger or smaller."""

    def __init__(self, app: ASGIApp, max_body_size: int) -> None:
        self.app = app
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        count: _BodyCount | None = scope.get(_BODY_COUNT_KEY)
        if count is not None:  # an outer limit counts this request: this one is in force now
            count.limit = self.max_body_size
            if count.received > count.limit:
                raise _TooLarge
            await self.app(scope, receive, send)
            return
        count = _BodyCount(self.max_body_size, _declared_length(scope), receive, send)
        scope[_BODY_COUNT_KEY] = count
        try:
            await self.app(scope, count.counted_receive, count.checked_send)
        except _TooLarge:
            if count.started:
                raise
            await _too_large()(scope, receive, send)
        except _Refused:
            pass
        finally:
            scope.pop(_BODY_COUNT_KEY, None)


# Starlette's own limit where it is installed: one request then has one count whichever
# framework's routes, mounts and app set the limits (Starlette(max_body_size=...) around a
# fastserve Route(max_body_size=...)), and the innermost decides across them.
_BodyLimit = framework_base("starlette.middleware.body_limit", "RequestBodyLimitMiddleware", _OwnBodyLimit)


# --------------------------------------------------------------------------- routes


def _framework_route(name: str) -> Any:
    """Starlette's routing class ``name``, the base of fastserve's of that name (``object``
    without Starlette): Starlette's ``SchemaGenerator`` and middleware and FastAPI's router read
    a route's kind by ``isinstance``. fastserve's classes define every method Starlette's do, so
    none of Starlette's runs on them; each also claims Starlette's instances (``counts_as``), so
    ``==`` between routes of the two frameworks answers alike in either order."""
    return framework_base("starlette.routing", name, object)


@counts_as("starlette.routing", "BaseRoute")
class BaseRoute(_framework_route("BaseRoute"), metaclass=ClaimsFrameworkInstances):  # type: ignore[misc]
    """Something a Router can try: ``matches(scope)``, ``handle(...)``, ``url_path_for(...)``."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        raise NotImplementedError()

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NotImplementedError()

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A route on its own is an ASGI app too (404 / close for what it does not match)."""
        match, child_scope = self.matches(scope)
        if match is Match.NONE:
            if scope["type"] == "http":
                await PlainTextResponse("Not Found", status_code=404)(scope, receive, send)
            elif scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1000, "reason": ""})
            return
        scope.update(child_scope)
        await self.handle(scope, receive, send)


@counts_as("starlette.routing", "Route")
class Route(BaseRoute, _framework_route("Route")):  # type: ignore[misc]
    """An HTTP endpoint at ``path``.

    ``endpoint`` is a function (sync or async) taking a :class:`Request` and returning a response,
    or any ASGI app. Function endpoints answer GET (and HEAD) unless ``methods`` says otherwise;
    HEAD is allowed wherever GET is.
    """

    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        methods: Collection[str] | None = None,
        name: str | None = None,
        include_in_schema: bool = True,
        middleware: Sequence[Any] | None = None,
        max_body_size: int | None = None,
    ) -> None:
        assert path.startswith("/"), "Routed paths must start with '/'"
        self.path = path
        self.endpoint = endpoint
        self.name = get_name(endpoint) if name is None else name
        self.include_in_schema = include_in_schema
        if _is_plain_function(endpoint):
            self.app: ASGIApp = request_response(endpoint)
            if methods is None:
                methods = ["GET"]
        else:
            self.app = endpoint
        self.app = _wrapped(self.app, middleware, max_body_size)
        self.methods: set[str] | None = None
        if methods is not None:
            self.methods = {method.upper() for method in methods}
            if "GET" in self.methods:
                self.methods.add("HEAD")
        self.path_regex, self.path_format, self.param_convertors = compile_path(path)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        params = _match_params(self, scope)
        if params is None:
            return Match.NONE, {}
        child_scope = {"endpoint": self.endpoint, "path_params": {**scope.get("path_params", {}), **params}}
        if self.methods and scope["method"] not in self.methods:
            return Match.PARTIAL, child_scope
        return Match.FULL, child_scope

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        if name != self.name or path_params.keys() != self.param_convertors.keys():
            raise NoMatchFound(name, path_params)
        path, _ = replace_params(self.path_format, self.param_convertors, path_params)
        return URLPath(path=path, protocol="http")

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.methods and scope["method"] not in self.methods:
            allow = ", ".join(sorted(self.methods))
            if _inside_an_app(scope):
                raise HTTPException(status_code=405, headers={"Allow": allow})
            response = PlainTextResponse("Method Not Allowed", status_code=405, headers={"Allow": allow})
            await response(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def __eq__(self, other: Any) -> bool:
        return (
            isinstance(other, Route)
            and (self.path, self.endpoint, self.methods) == (other.path, other.endpoint, other.methods)
        )

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={self.path!r}, name={self.name!r}, methods={sorted(self.methods or [])!r})"


@counts_as("starlette.routing", "WebSocketRoute")
class WebSocketRoute(BaseRoute, _framework_route("WebSocketRoute")):  # type: ignore[misc]
    """A WebSocket endpoint at ``path``: an async function taking a ``WebSocket``, or an ASGI app."""

    def __init__(
        self, path: str, endpoint: Callable[..., Any], *, name: str | None = None, middleware: Sequence[Any] | None = None
    ) -> None:
        assert path.startswith("/"), "Routed paths must start with '/'"
        self.path = path
        self.endpoint = endpoint
        self.name = get_name(endpoint) if name is None else name
        self.app: ASGIApp = _wrapped(websocket_session(endpoint) if _is_plain_function(endpoint) else endpoint, middleware)
        self.path_regex, self.path_format, self.param_convertors = compile_path(path)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "websocket":
            return Match.NONE, {}
        params = _match_params(self, scope)
        if params is None:
            return Match.NONE, {}
        return Match.FULL, {"endpoint": self.endpoint, "path_params": {**scope.get("path_params", {}), **params}}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        if name != self.name or path_params.keys() != self.param_convertors.keys():
            raise NoMatchFound(name, path_params)
        path, _ = replace_params(self.path_format, self.param_convertors, path_params)
        return URLPath(path=path, protocol="websocket")

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, WebSocketRoute) and (self.path, self.endpoint) == (other.path, other.endpoint)

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={self.path!r}, name={self.name!r})"


class _HandsOver(BaseRoute):
    """A route that hands what it matches to an app of its own (``Mount``, ``Host``), whose
    routes (``_base_app``'s, inside any middleware) are its own for ``url_path_for``."""

    _base_app: ASGIApp
    app: ASGIApp

    @property
    def routes(self) -> list[BaseRoute]:
        return getattr(self._base_app, "routes", [])

    name: str | None

    def _names_itself(self, name: str, path_params: Mapping[str, Any]) -> bool:
        """``url_path_for(name, path=...)`` asks for a path below this route itself."""
        return self.name is not None and name == self.name and "path" in path_params

    def _child_name(self, name: str) -> str | None:
        """The name ``name`` asks its routes for (``"<name>:<child>"``, or any name when this
        route has none); None when it asks for no route of this one."""
        if self.name is None:
            return name
        return name[len(self.name) + 1 :] if name.startswith(self.name + ":") else None

    def _child_url(self, child_name: str, path_params: dict[str, Any]) -> URLPath | None:
        """The URL path of the first of its routes that knows ``child_name`` with ``path_params``."""
        for route in self.routes:
            try:
                return route.url_path_for(child_name, **path_params)
            except NoMatchFound:
                continue
        return None

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    _by: ClassVar[str]  # the attribute it routes by: "path" (Mount) or "host" (Host)

    def __eq__(self, other: Any) -> bool:
        kind = Mount if self._by == "path" else Host  # Starlette's Mount or Host counts as it too
        return isinstance(other, kind) and (getattr(self, self._by), self.app) == (getattr(other, self._by), other.app)

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._by}={getattr(self, self._by)!r}, name={self.name or ''!r}, app={self.app!r})"


@counts_as("starlette.routing", "Mount")
class Mount(_HandsOver, _framework_route("Mount")):  # type: ignore[misc]
    """Hands every request below ``path`` to ``app`` (or to a Router of ``routes``).

    The mounted app sees the same ``path``; ``root_path`` grows by the mounted prefix, so the
    app routes on what is left (see :func:`get_route_path`). ``app_root_path`` keeps the
    outermost root path, which ``url_for`` builds absolute URLs from.
    """

    _by = "path"

    def __init__(
        self,
        path: str,
        app: ASGIApp | None = None,
        routes: Sequence[BaseRoute] | None = None,
        name: str | None = None,
        *,
        middleware: Sequence[Any] | None = None,
        max_body_size: int | None = None,
    ) -> None:
        assert path == "" or path.startswith("/"), "Routed paths must start with '/'"
        assert app is not None or routes is not None, "Either 'app=...', or 'routes=' must be specified"
        self.path = path.rstrip("/")
        self._base_app: ASGIApp = app if app is not None else Router(routes=routes)
        self.app: ASGIApp = _wrapped(self._base_app, middleware, max_body_size)
        self.name = name
        self.path_regex, self.path_format, self.param_convertors = compile_path(self.path + "/{path:path}")

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] not in ("http", "websocket"):
            return Match.NONE, {}
        params = _match_params(self, scope)
        if params is None:
            return Match.NONE, {}
        route_path = get_route_path(scope)
        remaining = "/" + params.pop("path")
        matched_prefix = route_path[: -len(remaining)]
        root_path = scope.get("root_path", "")
        return Match.FULL, {
            "path_params": {**scope.get("path_params", {}), **params},
            "app_root_path": scope.get("app_root_path", root_path),
            "root_path": root_path + matched_prefix,
            "endpoint": self.app,
        }

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        child_name = self._child_name(name)
        if self._names_itself(name, path_params):
            # The mount itself, with "path" naming a file or sub-path below it.
            params = {**path_params, "path": str(path_params["path"]).lstrip("/")}
            path, remaining = replace_params(self.path_format, self.param_convertors, params)
            if not remaining:
                return URLPath(path=path)
        elif child_name is not None:
            child_path = path_params.get("path")
            prefix, remaining = replace_params(self.path_format, self.param_convertors, {**path_params, "path": ""})
            if child_path is not None:
                remaining["path"] = child_path
            url = self._child_url(child_name, remaining)
            if url is not None:
                return URLPath(path=prefix.rstrip("/") + str(url), protocol=url.protocol)
        raise NoMatchFound(name, path_params)



def _request_host(scope: Scope) -> str | None:
    """The host the request's ``Host`` field names, lowercased, without its port (an IP literal
    keeps its brackets; any digits count as a port, which routing ignores); None when the field
    is missing or names no valid host."""
    value = Headers(scope=scope).get("host")
    if value is None:
        return None
    cut = value.index("]") + 1 if value.startswith("[") and "]" in value else value.find(":")
    host, port = (value, "") if cut < 0 else (value[:cut], value[cut:])
    if not is_valid_host_header(host) or not (port == "" or (port[:1] == ":" and port[1:].isdigit())):
        return None
    return host.lower()


@counts_as("starlette.routing", "Host")
class Host(_HandsOver, _framework_route("Host")):  # type: ignore[misc]
    """Hands every request whose ``Host`` field matches ``host`` to ``app`` (a template as a
    path's: ``{subdomain}.example.com``; its parameters join ``path_params``). ``url_path_for``
    of its routes carries the host, so ``url_for`` builds the URL on it."""

    _by = "host"

    def __init__(self, host: str, app: ASGIApp, name: str | None = None) -> None:
        assert not host.startswith("/"), "Host must not start with '/'"
        self.host = host
        self.app = self._base_app = app
        self.name = name
        self.host_regex, self.host_format, self.param_convertors = compile_path(host)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] not in ("http", "websocket"):
            return Match.NONE, {}
        host = _request_host(scope)
        matched = None if host is None else self.host_regex.match(host)
        if matched is None:
            return Match.NONE, {}
        params = {name: self.param_convertors[name].convert(value) for name, value in matched.groupdict().items()}
        return Match.FULL, {"path_params": {**scope.get("path_params", {}), **params}, "endpoint": self.app}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        child_name = self._child_name(name)
        if self._names_itself(name, path_params):
            params = dict(path_params)
            path = params.pop("path")
            host, remaining = replace_params(self.host_format, self.param_convertors, params)
            if not remaining:
                return URLPath(path=path, host=host)
        elif child_name is not None:
            host, remaining = replace_params(self.host_format, self.param_convertors, dict(path_params))
            url = self._child_url(child_name, remaining)
            if url is not None:
                return URLPath(path=str(url), protocol=url.protocol, host=host)
        raise NoMatchFound(name, path_params)



# --------------------------------------------------------------------------- router


@asynccontextmanager
async def _no_lifespan(app: Any) -> AsyncIterator[None]:
    yield None


def _lifted(lifespan: Callable[[Any], Any]) -> Lifespan:
    """A (deprecated) plain generator function lifespan, entered and left as an async one."""
    entered = contextmanager(lifespan)

    @asynccontextmanager
    async def lifted(app: Any) -> AsyncIterator[Any]:
        with entered(app) as state:
            yield state

    return lifted


def _inside_an_app(scope: Scope) -> bool:
    """Whether a Starlette or FastAPI application runs this request (it put itself in the
    scope as ``app``): then the routes raise ``HTTPException`` (404, 405, an endpoint's own) and
    ``WebSocketException`` for the application's exception handlers, which answer them (FastAPI's
    as JSON, or an app's own handler), as Starlette's routes do; a Router that is the whole app
    answers them itself."""
    return "app" in scope


def _error_response(exc: HTTPException | RequestJSONDecodeError) -> Response:
    if isinstance(exc, RequestJSONDecodeError):
        return PlainTextResponse("Invalid JSON", status_code=400)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    if isinstance(exc.detail, str):
        return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


@counts_as("starlette.routing", "Router")
class Router(_framework_route("Router"), metaclass=ClaimsFrameworkInstances):  # type: ignore[misc]
    """An ASGI app dispatching to the first matching route (see the module docstring for the
    errors it answers itself).

    ``lifespan`` is a callable taking the app and returning an async context manager: entered at
    startup, left at shutdown; a mapping it yields becomes the lifespan state, copied by the
    server into every request's ``scope["state"]`` (``request.state``).
    """

    def __init__(
        self,
        routes: Sequence[BaseRoute] | None = None,
        redirect_slashes: bool = True,
        default: ASGIApp | None = None,
        lifespan: Lifespan | None = None,
        *,
        middleware: Sequence[Any] | None = None,
        max_body_size: int | None = None,
    ) -> None:
        self.routes: list[BaseRoute] = [] if routes is None else list(routes)
        self.redirect_slashes = redirect_slashes
        self.default: ASGIApp = self.not_found if default is None else default
        if lifespan is None:
            self.lifespan_context: Lifespan = _no_lifespan
        elif inspect.isasyncgenfunction(lifespan):
            warnings.warn(
                "async generator function lifespans are deprecated, use an @contextlib.asynccontextmanager function instead",
                FastServeDeprecationWarning,
                stacklevel=2,
            )
            self.lifespan_context = asynccontextmanager(lifespan)
        elif inspect.isgeneratorfunction(lifespan):
            warnings.warn(
                "generator function lifespans are deprecated, use an @contextlib.asynccontextmanager function instead",
                FastServeDeprecationWarning,
                stacklevel=2,
            )
            self.lifespan_context = _lifted(lifespan)
        else:
            self.lifespan_context = lifespan
        # What __call__ runs: the dispatch (``app``) inside the middleware and the body limit.
        self.middleware_stack: ASGIApp = _wrapped(self.app, middleware, max_body_size)

    # building ----------------------------------------------------------------------------------

    def mount(self, path: str, app: ASGIApp, name: str | None = None) -> None:
        self.routes.append(Mount(path, app=app, name=name))

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Router) and self.routes == other.routes

    __hash__ = object.__hash__

    def host(self, host: str, app: ASGIApp, name: str | None = None) -> None:
        self.routes.append(Host(host, app=app, name=name))

    def add_route(
        self,
        path: str,
        endpoint: Callable[..., Any],
        methods: Collection[str] | None = None,
        name: str | None = None,
        include_in_schema: bool = True,
    ) -> None:
        self.routes.append(Route(path, endpoint, methods=methods, name=name, include_in_schema=include_in_schema))

    def add_websocket_route(self, path: str, endpoint: Callable[..., Any], name: str | None = None) -> None:
        self.routes.append(WebSocketRoute(path, endpoint, name=name))

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        for route in self.routes:
            try:
                return route.url_path_for(name, **path_params)
            except NoMatchFound:
                pass
        raise NoMatchFound(name, path_params)

    # serving -----------------------------------------------------------------------------------

    async def not_found(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1000, "reason": ""})
            return
        if _inside_an_app(scope):
            raise HTTPException(status_code=404)
        await PlainTextResponse("Not Found", status_code=404)(scope, receive, send)

    async def lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False
        await receive()  # lifespan.startup
        try:
            async with self.lifespan_context(scope.get("app", self)) as state:
                if state is not None:
                    if "state" not in scope:
                        raise RuntimeError('The server does not support "state" in the lifespan scope.')
                    scope["state"].update(state)
                await send({"type": "lifespan.startup.complete"})
                started = True
                await receive()  # lifespan.shutdown
        except BaseException:
            failure = "lifespan.shutdown.failed" if started else "lifespan.startup.failed"
            await send({"type": failure, "message": traceback.format_exc()})
            raise
        await send({"type": "lifespan.shutdown.complete"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.middleware_stack(scope, receive, send)

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The dispatch itself, which the router's ``middleware`` wrap."""
        assert scope["type"] in ("http", "websocket", "lifespan"), f"Unsupported scope type {scope['type']!r}"
        scope.setdefault("router", self)
        if scope["type"] == "lifespan":
            await self.lifespan(scope, receive, send)
            return

        chosen: BaseRoute | None = None
        chosen_scope: Scope = {}
        for route in self.routes:
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                chosen, chosen_scope = route, child_scope
                break
            if match is Match.PARTIAL and chosen is None:
                chosen, chosen_scope = route, child_scope  # kept unless a full match follows
        if chosen is not None:
            scope["route"] = chosen
            scope.update(chosen_scope)
            await self._handle_with_errors(chosen, scope, receive, send)
            return

        redirect = self._slash_redirect(scope)
        if redirect is not None:
            await redirect(scope, receive, send)
            return
        await self.default(scope, receive, send)

    def _slash_redirect(self, scope: Scope) -> Response | None:
        """A redirect to the same path with the trailing slash toggled, if a route matches that."""
        route_path = get_route_path(scope)
        if scope["type"] != "http" or not self.redirect_slashes or route_path == "/":
            return None
        path = scope["path"]
        other_scope = {**scope, "path": path.rstrip("/") if route_path.endswith("/") else path + "/"}
        for route in self.routes:
            match, _ = route.matches(other_scope)
            if match is not Match.NONE:
                return RedirectResponse(url=str(URL(scope=other_scope)))
        return None

    async def _handle_with_errors(self, route: BaseRoute, scope: Scope, receive: Receive, send: Send) -> None:
        started = closed = False

        async def watch_send(message: Message) -> None:
            nonlocal started, closed
            if message["type"] in ("http.response.start", "websocket.accept"):
                started = True
            elif message["type"] == "websocket.close":
                closed = True
            await send(message)

        try:
            await route.handle(scope, receive, watch_send)
        except (HTTPException, RequestJSONDecodeError) as exc:
            if isinstance(exc, HTTPException) and _inside_an_app(scope):
                raise  # the app's handlers answer it
            if started or closed:
                raise RuntimeError("Caught handled exception, but response already started.") from exc
            if scope["type"] == "websocket" and "websocket.http.response" not in scope.get("extensions", {}):
                # Without the denial-response extension, refusing the handshake is all a server can do.
                await send({"type": "websocket.close", "code": 1008, "reason": ""})
                return
            await _error_response(exc)(scope, receive, send)
        except WebSocketException as exc:
            if scope["type"] != "websocket" or closed or _inside_an_app(scope):
                raise
            await send({"type": "websocket.close", "code": exc.code, "reason": exc.reason})
