"""Exceptions an application raises to turn into an HTTP error or a WebSocket close."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus

from fastserve._interop import framework_base

__all__ = [
    "ClientDisconnect",
    "FastServeDeprecationWarning",
    "HTTPException",
    "StarletteDeprecationWarning",
    "WebSocketException",
]


def _reason_phrase(status_code: int) -> str:
    """The standard reason phrase for ``status_code``, or "" for a code HTTP does not define."""
    try:
        return HTTPStatus(status_code).phrase
    except ValueError:
        return ""


class HTTPException(Exception):
    """Raise to answer the current request with ``status_code``.

    ``detail`` defaults to the standard reason phrase ("Not Found" for 404);
    ``headers`` are added to the error response.
    """

    def __init__(
        self,
        status_code: int,
        detail: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status_code = status_code
        self.detail = _reason_phrase(status_code) if detail is None else detail
        self.headers = headers

    def __str__(self) -> str:
        return f"{self.status_code}: {self.detail}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code!r}, detail={self.detail!r})"


class WebSocketException(Exception):
    """Raise inside a WebSocket endpoint to close the connection with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str | None = None) -> None:
        self.code = code
        self.reason = reason or ""

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, reason={self.reason!r})"


# Apps register exception handlers for these and catch them while the framework raises its own
# (a route's 404 and 405, a security dependency's 401): where Starlette is installed they are
# Starlette's classes, as Starlette finds a handler along the raised exception's __mro__ and
# ``except`` matches the real class (see _interop).
HTTPException = framework_base("starlette.exceptions", "HTTPException", HTTPException)  # type: ignore[misc]
WebSocketException = framework_base("starlette.exceptions", "WebSocketException", WebSocketException)  # type: ignore[misc]


class ClientDisconnect(Exception):
    """The client went away before the response (or the request body) was complete."""


# Apps catch it around ``await request.body()``: where Starlette is installed it is Starlette's
# class, so the same ``except`` works whichever framework's Request raised it (see _interop).
ClientDisconnect = framework_base("starlette.requests", "ClientDisconnect", ClientDisconnect)  # type: ignore[misc]


class FastServeDeprecationWarning(
    DeprecationWarning, framework_base("starlette.exceptions", "StarletteDeprecationWarning", Warning)  # type: ignore[misc]
):
    """Warned when code uses a fastserve name or behaviour that has a newer replacement.

    A ``DeprecationWarning``, and, where Starlette has one, a ``StarletteDeprecationWarning``,
    so filters and ``pytest.warns`` written for Starlette catch it.
    """


# The name Starlette gives its deprecation warnings: where Starlette is installed its own class
# (see _interop), so ``pytest.warns`` and warning filters written against ``starlette.exceptions``
# keep catching what Starlette and FastAPI warn as well as fastserve's (a subclass of it) after
# the import is swapped; an alias of fastserve's class named that way made them miss Starlette's.
StarletteDeprecationWarning = framework_base(  # type: ignore[misc]
    "starlette.exceptions", "StarletteDeprecationWarning", FastServeDeprecationWarning
)
