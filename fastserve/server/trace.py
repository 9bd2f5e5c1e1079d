"""``--log-level trace``: every ASGI call an app gets, and every message it receives and sends.

With the ``fastserve`` logger at TRACE (``--log-level trace``, or a ``--log-config`` that sets
it), the worker runs the app inside ``TracedApp``, which logs on ``fastserve.asgi``:

    ASGI [3] started scope={'type': 'http', 'method': 'GET', 'path': '/items', ...}
    ASGI [3] receive {'type': 'http.request', 'body': '<5 bytes>', 'more_body': False}
    ASGI [3] send {'type': 'http.response.start', 'status': 200, 'headers': '<2 headers>'}
    ASGI [3] completed

Bodies, text and headers of messages are shown by their size (a scope's headers are shown);
the numbers count the app's calls in this worker. At any other level the app runs unwrapped,
so tracing costs nothing unless it is asked for.

Each worker's connections (both faces), and what the static fast path answers without an
ASGI call, are traced on ``fastserve.connection`` by ``ConnectionTrace``:

    127.0.0.1:50312 - HTTP connection made
    127.0.0.1:50312 - static GET /app.js: 200 from memory
    127.0.0.1:50312 - static GET /video.mp4: 206 ranges of the file
    127.0.0.1:50312 - refused 431, closing
    127.0.0.1:50312 - HTTP connection lost

(the first and last as uvicorn's ``--log-level trace`` writes them); below TRACE the worker
has no ``ConnectionTrace``, and the connection checks for one with a pointer comparison.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Optional

from fastserve.server.access_log import escape_text
from fastserve.server.logs import TRACE

logger = logging.getLogger("fastserve.asgi")
connection_logger = logging.getLogger("fastserve.connection")

_SIZED = ("body", "bytes", "text")  # message fields shown by their size
_SCOPE_LEFT_OUT = ("state", "app", "router", "extensions")  # what would flood a line and says little


def traced(app: Any) -> Any:
    """``app`` inside a ``TracedApp`` when the ``fastserve`` logger is at TRACE; else ``app`` itself."""
    if tracing():
        return TracedApp(app)
    return app


class TracedApp:
    """An ASGI 3 app that logs each call of ``app``, and each message, at TRACE (see the module)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.calls = 0

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        self.calls += 1
        number = self.calls
        logger.log(TRACE, "ASGI [%d] started scope=%s", number,
                   {key: value for key, value in scope.items() if key not in _SCOPE_LEFT_OUT})

        async def traced_receive() -> Dict[str, Any]:
            message = await receive()
            logger.log(TRACE, "ASGI [%d] receive %s", number, shown(message))
            return message

        async def traced_send(message: Dict[str, Any]) -> None:
            logger.log(TRACE, "ASGI [%d] send %s", number, shown(message))
            await send(message)

        try:
            await self.app(scope, traced_receive, traced_send)
        except BaseException as exc:
            logger.log(TRACE, "ASGI [%d] raised %r", number, exc)
            raise
        logger.log(TRACE, "ASGI [%d] completed", number)


def shown(message: Dict[str, Any]) -> Dict[str, Any]:
    """``message`` as a trace line shows it: bodies and text by their length, headers by their count."""
    out = {}
    for key, value in message.items():
        if key in _SIZED and isinstance(value, (bytes, bytearray, str)):
            value = f"<{len(value)} {'chars' if isinstance(value, str) else 'bytes'}>"
        elif key == "headers" and isinstance(value, (list, tuple)):
            value = f"<{len(value)} headers>"
        out[key] = value
    return out


def tracing() -> bool:
    """Whether the ``fastserve`` logger is at TRACE (``--log-level trace``), decided as a worker starts."""
    return logging.getLogger("fastserve").isEnabledFor(TRACE)


def connection_trace() -> Optional["ConnectionTrace"]:
    """A ``ConnectionTrace`` at TRACE, else None (the connection then traces nothing)."""
    return ConnectionTrace() if tracing() else None


class ConnectionTrace:
    """Called by a worker's connections at TRACE (see the module): each line names the peer."""

    def connection_made(self, conn: Any) -> None:
        connection_logger.log(TRACE, "%sHTTP connection made", _peer(conn))

    def connection_lost(self, conn: Any, exc: Optional[BaseException]) -> None:
        connection_logger.log(TRACE, "%sHTTP connection lost%s", _peer(conn), f" ({exc!r})" if exc else "")

    def static_answer(self, conn: Any, method: Optional[bytes], target: Optional[bytes], status: int,
                      from_memory: bool, ranges: bool) -> None:
        """The static fast path decided a request's answer: ``status`` 0 waits for an encoding
        being made, -1 (``STATUS_LISTING``) is a directory listing the app renders."""
        if status == 0:
            how = "waits for its encoding"
        elif status < 0:
            how = "is a listing: handed to the app"
        else:
            how = f"{status} {'from memory' if from_memory else 'ranges of the file' if ranges else 'from the file'}"
        connection_logger.log(TRACE, "%sstatic %s %s: %s", _peer(conn), _text(method), _text(target), how)

    def refused(self, conn: Any, method: Optional[bytes], target: Optional[bytes], status: int) -> None:
        """The connection answers ``status`` itself and closes (a request it will not read on)."""
        request = f"{_text(method)} {_text(target)}: " if method else ""
        connection_logger.log(TRACE, "%srefused %s%d, closing", _peer(conn), request, status)


def _peer(conn: Any) -> str:
    """``"host:port - "``, as uvicorn's trace lines begin; empty for a unix socket's peer."""
    client = conn.client
    return "%s:%d - " % tuple(client[:2]) if client else ""


def _text(value: Optional[bytes]) -> str:
    """A request's method or target in a trace line: ``-`` for none, and what is no printable
    text escaped as the access log escapes it (a refused request's line is named as it came:
    a CR or a terminal's escape sequence in it must not act on the log)."""
    return "-" if value is None else escape_text(value.decode("latin-1"))
