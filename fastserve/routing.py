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
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from decimal import Decimal
from enum import Enum
from typing import Any, ClassVar, Generic, TypeVar

from fastserve._interop import framework_base
from fastserve.concurrency import is_async_callable, run_in_threadpool
from fastserve.datastructures import URL, URLPath
from fastserve.exceptions import HTTPException, WebSocketException
from fastserve.requests import Request, RequestJSONDecodeError
from fastserve.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastserve.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "BaseRoute",
    "Convertor",
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


_FrameworkNoMatchFound = framework_base("starlette.routing", "NoMatchFound", Exception)


class NoMatchFound(_FrameworkNoMatchFound):  # type: ignore[misc, valid-type]
    """``url_path_for`` found no route with that name and exactly those path parameters.

    Where Starlette is installed this is also Starlette's ``NoMatchFound``, so a Starlette
    ``Mount`` holding a fastserve ``Router`` moves on to its next route after a miss.
    """

    def __init__(self, name: str, path_params: Mapping[str, Any]) -> None:
        params = ", ".join(path_params)
        Exception.__init__(self, f'No route exists for name "{name}" and params "{params}".')


# A miss from this module's routes or from a Starlette app mounted among them.
_NO_MATCH = (NoMatchFound, _FrameworkNoMatchFound)


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
    regex = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"

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


def register_url_convertor(key: str, convertor: Convertor[Any]) -> None:
    """Make ``{name:key}`` available in route paths compiled from now on."""
    CONVERTOR_TYPES[key] = convertor


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
        name, convertor_name = param.group(1), (param.group(2) or ":str")[1:]
        assert convertor_name in CONVERTOR_TYPES, f"Unknown path convertor '{convertor_name}'"
        literal = path[end : param.start()]
        pattern += re.escape(literal) + f"(?P<{name}>{CONVERTOR_TYPES[convertor_name].regex})"
        path_format += literal + "{" + name + "}"
        if name in convertors:
            duplicates.add(name)
        convertors[name] = CONVERTOR_TYPES[convertor_name]
        end = param.end()
    if duplicates:
        plural = "s" if len(duplicates) > 1 else ""
        raise ValueError(f"Duplicated param name{plural} {', '.join(sorted(duplicates))} at path {path}")
    pattern += re.escape(path[end:]) + "$"
    path_format += path[end:]
    return re.compile(pattern), path_format, convertors


def replace_params(
    path_format: str, convertors: Mapping[str, Convertor[Any]], path_params: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """Fill the ``{name}`` slots of ``path_format``; return the path and the params left over."""
    remaining = dict(path_params)
    for name, value in path_params.items():
        slot = "{" + name + "}"
        if slot in path_format:
            path_format = path_format.replace(slot, convertors[name].to_string(value))
            del remaining[name]
    return path_format, remaining


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
        try:
            if call_async:
                response = await func(request)  # type: ignore[misc]
            else:
                response = await run_in_threadpool(func, request)
            await response(scope, receive, send)
        finally:
            await request.close()

    return app


def websocket_session(func: Callable[[Any], Awaitable[None]]) -> ASGIApp:
    """An ASGI app calling ``await func(websocket)`` with a ``fastserve.websockets.WebSocket``."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        from fastserve.websockets import WebSocket

        await func(WebSocket(scope, receive=receive, send=send))

    return app


# --------------------------------------------------------------------------- routes


class BaseRoute:
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


class Route(BaseRoute):
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


class WebSocketRoute(BaseRoute):
    """A WebSocket endpoint at ``path``: an async function taking a ``WebSocket``, or an ASGI app."""

    def __init__(self, path: str, endpoint: Callable[..., Any], *, name: str | None = None) -> None:
        assert path.startswith("/"), "Routed paths must start with '/'"
        self.path = path
        self.endpoint = endpoint
        self.name = get_name(endpoint) if name is None else name
        self.app: ASGIApp = websocket_session(endpoint) if _is_plain_function(endpoint) else endpoint
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


class Mount(BaseRoute):
    """Hands every request below ``path`` to ``app`` (or to a Router of ``routes``).

    The mounted app sees the same ``path``; ``root_path`` grows by the mounted prefix, so the
    app routes on what is left (see :func:`get_route_path`). ``app_root_path`` keeps the
    outermost root path, which ``url_for`` builds absolute URLs from.
    """

    def __init__(
        self,
        path: str,
        app: ASGIApp | None = None,
        routes: Sequence[BaseRoute] | None = None,
        name: str | None = None,
    ) -> None:
        assert path == "" or path.startswith("/"), "Routed paths must start with '/'"
        assert app is not None or routes is not None, "Either 'app=...', or 'routes=' must be specified"
        self.path = path.rstrip("/")
        self.app: ASGIApp = app if app is not None else Router(routes=routes)
        self.name = name
        self.path_regex, self.path_format, self.param_convertors = compile_path(self.path + "/{path:path}")

    @property
    def routes(self) -> list[BaseRoute]:
        return getattr(self.app, "routes", [])

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
        if self.name is not None and name == self.name and "path" in path_params:
            # The mount itself, with "path" naming a file or sub-path below it.
            params = {**path_params, "path": str(path_params["path"]).lstrip("/")}
            path, remaining = replace_params(self.path_format, self.param_convertors, params)
            if not remaining:
                return URLPath(path=path)
        elif self.name is None or name.startswith(self.name + ":"):
            child_name = name if self.name is None else name[len(self.name) + 1 :]
            child_path = path_params.get("path")
            prefix, remaining = replace_params(self.path_format, self.param_convertors, {**path_params, "path": ""})
            if child_path is not None:
                remaining["path"] = child_path
            for route in self.routes:
                try:
                    url = route.url_path_for(child_name, **remaining)
                except _NO_MATCH:
                    continue
                return URLPath(path=prefix.rstrip("/") + str(url), protocol=url.protocol)
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Mount) and (self.path, self.app) == (other.path, other.app)

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={self.path!r}, name={self.name or ''!r}, app={self.app!r})"


# --------------------------------------------------------------------------- router


@asynccontextmanager
async def _no_lifespan(app: Any) -> AsyncIterator[None]:
    yield None


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


class Router:
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
    ) -> None:
        self.routes: list[BaseRoute] = [] if routes is None else list(routes)
        self.redirect_slashes = redirect_slashes
        self.default: ASGIApp = self.not_found if default is None else default
        if lifespan is None:
            self.lifespan_context: Lifespan = _no_lifespan
        elif inspect.isasyncgenfunction(lifespan):
            self.lifespan_context = asynccontextmanager(lifespan)
        else:
            self.lifespan_context = lifespan

    # building ----------------------------------------------------------------------------------

    def mount(self, path: str, app: ASGIApp, name: str | None = None) -> None:
        self.routes.append(Mount(path, app=app, name=name))

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
            except _NO_MATCH:
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
