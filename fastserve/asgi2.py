"""ASGI 2 ("double-callable") apps behind the ASGI 3 calling convention.

An ASGI 3 app is one ``async (scope, receive, send)`` callable; an ASGI 2 app is called with
the scope alone and returns the coroutine function that takes ``(receive, send)``. The server
and ``TestClient`` accept both: ``as_asgi3`` tells them apart once, when the app is loaded.
"""
from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from fastserve.concurrency import is_async_callable
from fastserve.types import Receive, Scope, Send

__all__ = ["ASGI2Adapter", "ASGI2App", "ASGI3App", "ASGIInstance", "as_asgi3", "is_asgi3"]

ASGIInstance = Callable[[Receive, Send], Awaitable[None]]
ASGI2App = Callable[[Scope], ASGIInstance]
ASGI3App = Callable[[Scope, Receive, Send], Awaitable[None]]


def _positional_parameters(app: Any) -> int | None:
    try:
        signature = inspect.signature(app)
    except (TypeError, ValueError):  # some builtins and C callables have none
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in signature.parameters.values()):
        return None
    return sum(1 for p in signature.parameters.values() if p.kind in kinds)


def is_asgi3(app: Any) -> bool:
    """Whether ``app`` takes ``(scope, receive, send)``.

    A coroutine function (or an object whose ``__call__`` is one) is ASGI 3; a class is ASGI 3
    only if its instances are awaitable (an ASGI 2 class is instantiated with the scope); any
    other callable is ASGI 2 when it takes exactly one positional argument, so a plain function
    that returns ``app(scope, receive, send)``'s awaitable counts as ASGI 3.
    """
    if inspect.isclass(app):
        return hasattr(app, "__await__")
    if is_async_callable(app):
        return True
    return _positional_parameters(app) != 1


class ASGI2Adapter:
    """An ASGI 2 app called the ASGI 3 way: ``await ASGI2Adapter(app)(scope, receive, send)``."""

    def __init__(self, app: ASGI2App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        instance = self.app(scope)
        await instance(receive, send)


def as_asgi3(app: Any) -> ASGI3App:
    """``app`` itself when it is ASGI 3, wrapped in ``ASGI2Adapter`` when it is ASGI 2.

    Raises ``TypeError`` when ``app`` is not callable at all.
    """
    if not callable(app):
        raise TypeError(f"a {type(app).__name__} is not an ASGI app (an ASGI app is callable)")
    return app if is_asgi3(app) else ASGI2Adapter(app)
